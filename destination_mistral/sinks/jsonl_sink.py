"""The JSON Lines sink: `<directory>/[<namespace>/]<stream>.jsonl`, one enriched record per line.

A commit is durable (fsync) before the STATE that covers it leaves. An overwrite or a truncate
refresh writes a staging file, renamed over the old one when the stream's COMPLETE status arrives;
a sidecar file names the generation it holds, so that the next attempt of that generation resumes
it. append_dedup rewrites the file through a temporary copy and an atomic rename, so a crash leaves
either the old or the new file, never a half-merged one.
The cache is a small DuckDB file in the same directory."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from destination_mistral.settings import OutputSettings
from destination_mistral.sinks.base import (
    JSON_OPTIONS,
    Batches,
    CacheEntries,
    StagingSink,
    WriteItem,
    attempt_known,
    check_distinct_locations,
    enrichment_fields,
    extracted_at_iso,
    warn_keyless,
)
from destination_mistral.sinks.cache import ResultCache
from destination_mistral.sinks.schema import EXTRACTED_AT, META, RAW_ID, RESERVED_PREFIXES, StreamPlan
from mistral_connection.errors import config_error

logger = logging.getLogger("airbyte")

CACHE_FILE = "_mistral_cache.duckdb"


def check_writable(output: OutputSettings) -> None:
    try:
        output.path.mkdir(parents=True, exist_ok=True)
        probe = output.path / ".destination-mistral-check"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise config_error(
            f"`output.directory` {str(output.path)!r} is not writable: {error.strerror or error}."
        ) from None


# File systems cap a name at 255 bytes; the suffixes added here (".jsonl.generation") need room too.
MAX_NAME_BYTES = 200


def _safe_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).lstrip(".") or "_"
    if len(cleaned.encode()) <= MAX_NAME_BYTES:
        return cleaned
    # A long name keeps a readable start and a digest of the whole, so that two long names that
    # share their start still get files of their own.
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    start = cleaned.encode()[: MAX_NAME_BYTES - 17].decode(errors="ignore")
    return f"{start}-{digest}"


class JsonlSink(StagingSink):
    def __init__(self, output: OutputSettings, cache_enabled: bool) -> None:
        check_writable(output)
        self._cache_con = None
        if cache_enabled:
            from destination_mistral.sinks.duckdb_connection import connect

            self._cache_con = connect(output.path / CACHE_FILE)
        super().__init__(output, ResultCache(self._cache_con) if self._cache_con is not None else None)
        self._handles: dict[tuple[str | None, str], IO[bytes]] = {}

    def path_of(self, plan: StreamPlan) -> Path:
        folder = self.output.path / _safe_name(plan.namespace) if plan.namespace else self.output.path
        return folder / f"{_safe_name(plan.name)}.jsonl"

    def _staging_path(self, plan: StreamPlan) -> Path:
        return self.path_of(plan).with_suffix(".jsonl.staging")

    def _generation_path(self, plan: StreamPlan) -> Path:
        return self.path_of(plan).with_suffix(".jsonl.generation")

    def _write_path(self, plan: StreamPlan) -> Path:
        return self._staging_path(plan) if self.stages(plan) else self.path_of(plan)

    def start(self, plans: Sequence[StreamPlan]) -> None:
        # Compared without case: on macOS and Windows volumes "Users.jsonl" and "users.jsonl" are one file.
        check_distinct_locations(plans, lambda p: str(self.path_of(p)).lower(), "the JSONL file")
        for plan in plans:
            self.path_of(plan).parent.mkdir(parents=True, exist_ok=True)
            self._prepare_staging(plan)
            if plan.sync_mode != "append_dedup":
                path = self._write_path(plan)
                _drop_partial_last_line(path)
                self._handles[plan.key] = open(path, "ab", buffering=0)

    def _sidecar(self, plan: StreamPlan) -> Any:
        """Which generation the staging file holds, or (`applied`) the stream's file holds."""
        try:
            return orjson.loads(self._generation_path(plan).read_bytes())
        except (OSError, ValueError):
            return None  # no sidecar, or a broken one: not a generation this sync can resume

    def _swapped_in_earlier(self, plan: StreamPlan) -> bool:
        return self._sidecar(plan) == {"generation_id": plan.generation_id, "sync_id": plan.sync_id, "applied": True}

    def _staging_resumable(self, plan: StreamPlan) -> bool:
        return self._staging_path(plan).exists() and self._sidecar(plan) == {"generation_id": plan.generation_id}

    def _restart_staging(self, plan: StreamPlan) -> None:
        with open(self._staging_path(plan), "wb") as handle:
            os.fsync(handle.fileno())
        self._generation_path(plan).write_bytes(orjson.dumps({"generation_id": plan.generation_id}))

    @staticmethod
    def _line(plan: StreamPlan, item: WriteItem) -> bytes:
        row: dict[str, Any] = {k: v for k, v in item.record.items() if not str(k).lower().startswith(RESERVED_PREFIXES)}
        row[RAW_ID] = item.raw_id
        row[EXTRACTED_AT] = extracted_at_iso(item.emitted_at)
        row[META] = {"changes": item.changes or []}
        row.update(enrichment_fields(plan, item))
        return orjson.dumps(row, option=JSON_OPTIONS) + b"\n"

    @staticmethod
    def _key(plan: StreamPlan, record: Any, unique: Any) -> tuple:
        """The row's primary key; a record without a value for it gets a key of its own, so that it
        is kept and never merged (as in DuckDB, where NULL equals nothing)."""
        values = [record.get(k) if isinstance(record, dict) else None for k in plan.primary_key]
        if any(v is None for v in values):
            return ("\0keyless", unique)
        return tuple(orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values)

    def _merge(self, plan: StreamPlan, items: list[WriteItem]) -> None:
        target = self._write_path(plan)
        rows: dict[tuple, bytes] = {}
        if target.exists():
            with open(target, "rb") as handle:
                for number, line in enumerate(handle):
                    if line.strip():
                        record = orjson.loads(line)
                        rows[self._key(plan, record, number)] = line if line.endswith(b"\n") else line + b"\n"
        keyless = 0
        for item in items:
            key = self._key(plan, item.record, item.raw_id)
            keyless += key[0] == "\0keyless"
            rows.pop(key, None)  # an update moves to the end, like a fresh insert
            rows[key] = self._line(plan, item)
        warn_keyless(plan, keyless)
        temporary = target.with_suffix(".jsonl.tmp")
        with open(temporary, "wb") as handle:
            handle.writelines(rows.values())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)

    def commit(
        self,
        batches: Batches,
        cache_entries: CacheEntries,
        completes: Sequence[StreamPlan] = (),
    ) -> None:
        touched = []
        for plan, items in batches:
            if not items:
                continue
            if plan.sync_mode == "append_dedup":
                self._merge(plan, items)
                continue
            handle = self._handles[plan.key]
            lines = b"".join(self._line(plan, item) for item in items)
            size = handle.tell()
            try:
                _write_all(handle, lines)
            except OSError:
                # A write cut short (a full disk) would leave half a line for the next sync to
                # append after: take the file back to where this batch began.
                _truncate_quietly(handle, size)
                raise
            touched.append(handle)
        for handle in touched:
            handle.flush()
            os.fsync(handle.fileno())
        if self.cache is not None:
            self.cache.store(cache_entries)
        for plan in self._pending_swaps(completes):
            self._swap(plan)

    def _swap(self, plan: StreamPlan) -> None:
        """The staging file replaces the stream's file (an atomic rename), once its COMPLETE arrived."""
        handle = self._handles.pop(plan.key, None)
        if handle is not None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        os.replace(self._staging_path(plan), self.path_of(plan))
        if attempt_known(plan):
            self._generation_path(plan).write_bytes(
                orjson.dumps({"generation_id": plan.generation_id, "sync_id": plan.sync_id, "applied": True})
            )
        else:
            self._generation_path(plan).unlink(missing_ok=True)
        self._swapped.add(plan.key)
        if plan.sync_mode != "append_dedup":
            self._handles[plan.key] = open(self.path_of(plan), "ab", buffering=0)

    def close(self) -> None:
        for handle in self._handles.values():
            try:
                handle.close()
            except OSError:
                pass  # unbuffered: nothing is left to write, and a failure was already reported
        self._handles.clear()
        if self._cache_con is not None:
            self.cache.close()
            self._cache_con.close()


def _write_all(handle, data: bytes) -> None:
    """Files are opened unbuffered, so that nothing is left in a buffer for close() to write after
    a failed commit was cut back; a raw write may take only part of the bytes."""
    view = memoryview(data)
    while view:
        written = handle.write(view)
        if not written:
            raise OSError(28, "No space left on device (nothing could be written)")
        view = view[written:]


def _truncate_quietly(handle: IO[bytes], size: int) -> None:
    try:
        handle.seek(size)
        handle.truncate(size)
    except (OSError, ValueError):
        pass  # the next start drops the partial line (see _drop_partial_last_line)


def _drop_partial_last_line(path: Path) -> None:
    """A file left by a write that failed half way (a full disk, a killed process) may end in a
    partial line, which no STATE covers: it is cut before this sync appends its first line."""
    try:
        with open(path, "rb+") as handle:
            end = handle.seek(0, os.SEEK_END)
            if end == 0:
                return
            handle.seek(end - 1)
            if handle.read(1) == b"\n":
                return
            position = end
            while position > 0:
                step = min(65536, position)
                handle.seek(position - step)
                chunk = handle.read(step)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    position = position - step + newline + 1
                    break
                position -= step
            handle.truncate(position)
            logger.warning(f"{path.name} ended in a partial line left by an earlier failed write; it was removed.")
    except FileNotFoundError:
        return

"""The JSON Lines sink: `<directory>/[<namespace>/]<stream>.jsonl`, one enriched record per line.

A commit is durable (fsync) before the STATE that covers it leaves. An overwrite or a truncate
refresh writes a staging file, renamed over the old one when the stream's COMPLETE status arrives;
a sidecar file names the generation it holds, so that the next attempt of that generation resumes
it, and a later sync that is no refresh takes its rows in. append_dedup rewrites the file through a
temporary copy and an atomic rename (by the rule in dedup.py), so a crash leaves either the old or
the new file, never a half-merged one. The cache is a small DuckDB file in the same directory."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
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
    check_chunk_tables,
    check_distinct_locations,
    enrichment_fields,
    extracted_at_iso,
    warn_keyless,
)
from destination_mistral.sinks.cache import ResultCache
from destination_mistral.sinks.dedup import Row, cursor_of, merge, row_key, wins
from destination_mistral.sinks.jsonl_chunks import (
    adopt_chunks,
    append_chunks,
    chunks_path,
    keep_chunks_of,
    swap_chunks,
    unchunk,
)
from destination_mistral.sinks.jsonl_files import (
    check_writable,
    drop_partial_last_line,
    first_line_fields,
    read_lines,
    replace_file,
    safe_name,
    truncate_quietly,
    write_all,
)
from destination_mistral.sinks.schema import (
    EXTRACTED_AT,
    GENERATION_ID,
    META,
    RAW_ID,
    RESERVED_PREFIXES,
    StreamPlan,
)

logger = logging.getLogger("airbyte")

CACHE_FILE = "_mistral_cache.duckdb"


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
        folder = self.output.path / safe_name(plan.namespace) if plan.namespace else self.output.path
        return folder / f"{safe_name(plan.name)}.jsonl"

    def _stored_fields(self, plan: StreamPlan, of_chunks: bool, staging: bool) -> list[str]:
        """The fields of the stream's file (or its staging copy), or of the chunk file of either, as
        earlier syncs left them (TableSink._stored_columns for the table outputs)."""
        records = self._staging_path(plan) if staging else self.path_of(plan)
        return first_line_fields(chunks_path(records) if of_chunks else records)

    def _staging_path(self, plan: StreamPlan) -> Path:
        return self.path_of(plan).with_suffix(".jsonl.staging")

    def _generation_path(self, plan: StreamPlan) -> Path:
        return self.path_of(plan).with_suffix(".jsonl.generation")

    def _write_path(self, plan: StreamPlan) -> Path:
        return self._staging_path(plan) if self.stages(plan) else self.path_of(plan)

    def start(self, plans: Sequence[StreamPlan]) -> None:
        # Compared without case: on macOS and Windows volumes "Users.jsonl" and "users.jsonl" are one file.
        check_distinct_locations(
            plans, lambda p: (str(self.path_of(p)).lower(), str(chunks_path(self.path_of(p))).lower()), "the JSONL file"
        )
        check_chunk_tables(plans, self._stored_fields, "the JSONL file")
        for plan in plans:
            self.path_of(plan).parent.mkdir(parents=True, exist_ok=True)
            self._prepare_staging(plan)
            if not self.stages(plan) and self._staging_path(plan).exists():
                self._adopt_staging(plan)
            if plan.chunked:
                if not self.stages(plan):
                    adopt_chunks(self._staging_path(plan), self.path_of(plan))
                keep_chunks_of(self._write_path(plan))
            elif not self.stages(plan):
                unchunk(plan, self.path_of(plan), self._staging_path(plan))
            if plan.sync_mode != "append_dedup":
                self._open(plan)

    def _open(self, plan: StreamPlan) -> None:
        path = self._write_path(plan)
        drop_partial_last_line(path)
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
        # As DuckDB writes it: the sync_id when the catalog gives one.
        row[META] = {"sync_id": plan.sync_id} if plan.sync_id is not None else {}
        row[META]["changes"] = item.changes or []
        row[GENERATION_ID] = plan.generation_id
        row.update(enrichment_fields(plan, item))
        return orjson.dumps(row, option=JSON_OPTIONS) + b"\n"

    @staticmethod
    def _rows(plan: StreamPlan, lines: Iterable[bytes], origin: str) -> dict[tuple, Row]:
        """Lines already written (to the file, or to a staging file) as rows of the merge, one per key:
        a file written under another sync mode holds every version of a key, of which the dedup rule
        keeps one (the later line of equal cursors)."""
        rows: dict[tuple, Row] = {}
        for number, line in enumerate(lines):
            record = orjson.loads(line)
            key = row_key(plan, record, (origin, number))
            cursor = cursor_of(plan, record)
            held = rows.get(key)
            if held is None or wins(cursor, held.cursor):
                rows.pop(key, None)
                rows[key] = Row(key, cursor, False, line)
        return rows

    def _merge(self, plan: StreamPlan, incoming: Iterable[Row], target: Path) -> None:
        held = self._rows(plan, read_lines(target), "file")
        warn_keyless(plan, merge(held, incoming))
        replace_file(target, (row.line for row in held.values()))

    def _merge_items(self, plan: StreamPlan, items: list[WriteItem]) -> None:
        self._merge(plan, [self._row_of(plan, item) for item in items], self._write_path(plan))

    def _row_of(self, plan: StreamPlan, item: WriteItem) -> Row:
        record = item.record
        key = row_key(plan, record, item.raw_id)
        return Row(key, cursor_of(plan, record), plan.deletes(record), self._line(plan, item))

    def _adopt_staging(self, plan: StreamPlan) -> None:
        """Takes in the staging file a truncate refresh left without its COMPLETE: the platform holds
        the STATEs released for its rows, and this sync, which is no refresh, keeps the table's
        rows, so those rows belong there too (appended, or merged by key and cursor)."""
        staging = self._staging_path(plan)
        drop_partial_last_line(staging)
        if plan.sync_mode == "append_dedup":
            rows = self._rows(plan, read_lines(staging), "staging")
            self._merge(plan, rows.values(), self.path_of(plan))
            count = len(rows)
        else:
            target = self.path_of(plan)
            drop_partial_last_line(target)
            data = staging.read_bytes()
            count = data.count(b"\n")
            with open(target, "ab", buffering=0) as handle:
                write_all(handle, data)
                os.fsync(handle.fileno())
        staging.unlink()
        self._generation_path(plan).unlink(missing_ok=True)
        logger.info(
            f"Stream {plan.label}: {count} row(s) left in {staging.name} by a truncate refresh that did not complete "
            "were moved into the file, since their STATEs were acknowledged and this sync is not a refresh."
        )

    def _drop_older_generations(self, plan: StreamPlan) -> None:
        """Removes the rows of generations below minimum_generation_id (a row without one is older)."""
        handle = self._handles.pop(plan.key, None)
        if handle is not None:
            handle.close()
        path = self.path_of(plan)
        minimum = plan.minimum_generation_id
        kept = [line for line in read_lines(path) if (orjson.loads(line).get(GENERATION_ID) or 0) >= minimum]
        replace_file(path, kept)
        if plan.chunked:
            keep_chunks_of(path)
        if plan.sync_mode != "append_dedup":
            self._open(plan)

    def commit(self, batches: Batches, cache_entries: CacheEntries, completes: Sequence[StreamPlan] = ()) -> None:
        touched = []
        for plan, items in batches:
            if not items:
                continue
            if plan.chunked:  # before their records: a crash between leaves chunks to trim, not records without
                append_chunks(plan, items, self._write_path(plan))
            if plan.sync_mode == "append_dedup":
                self._merge_items(plan, items)
                if plan.chunked:
                    keep_chunks_of(self._write_path(plan))
                continue
            handle = self._handles[plan.key]
            lines = b"".join(self._line(plan, item) for item in items)
            size = handle.tell()
            try:
                write_all(handle, lines)
            except OSError:
                # A write cut short (a full disk) would leave half a line for the next sync to
                # append after: take the file back to where this batch began.
                truncate_quietly(handle, size)
                raise
            touched.append(handle)
        for handle in touched:
            handle.flush()
            os.fsync(handle.fileno())
        if self.cache is not None:
            self.cache.store(cache_entries)
        for plan in self._pending_swaps(completes):
            self._swap(plan)
        for plan in self._pending_trims(completes):
            self._drop_older_generations(plan)

    def _swap(self, plan: StreamPlan) -> None:
        """The staging file replaces the stream's file (an atomic rename), once its COMPLETE arrived."""
        handle = self._handles.pop(plan.key, None)
        if handle is not None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        os.replace(self._staging_path(plan), self.path_of(plan))
        if plan.chunked:
            swap_chunks(self._staging_path(plan), self.path_of(plan))
        else:
            unchunk(plan, self.path_of(plan), self._staging_path(plan))
        if attempt_known(plan):
            self._generation_path(plan).write_bytes(
                orjson.dumps({"generation_id": plan.generation_id, "sync_id": plan.sync_id, "applied": True})
            )
        else:
            self._generation_path(plan).unlink(missing_ok=True)
        self._swapped.add(plan.key)
        if plan.sync_mode != "append_dedup":
            self._open(plan)

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


__all__ = ["JsonlSink", "check_writable", "CACHE_FILE"]

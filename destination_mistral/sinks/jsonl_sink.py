"""The JSON Lines sink: `<directory>/[<namespace>/]<stream>.jsonl`, one enriched record per line.

A commit is durable (fsync) before the STATE that covers it leaves. Overwrite writes a staging
file renamed over the old one at the end; append_dedup rewrites the file through a temporary copy
and an atomic rename, so a crash leaves either the old or the new file, never a half-merged one.
The cache is a small DuckDB file in the same directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

import orjson

from mistral_connection.errors import config_error

from destination_mistral.cache import ResultCache
from destination_mistral.config import OutputSettings
from destination_mistral.results import Result
from destination_mistral.schema import EXTRACTED_AT, RAW_ID, RESERVED_PREFIXES, StreamPlan
from destination_mistral.sinks.base import WriteItem, enrichment_fields, extracted_at_iso

CACHE_FILE = "_mistral_cache.duckdb"


def check_writable(output: OutputSettings) -> None:
    try:
        output.path.mkdir(parents=True, exist_ok=True)
        probe = output.path / ".destination-mistral-check"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise config_error(f"`output.directory` {str(output.path)!r} is not writable: {error.strerror or error}.") from None


def _safe_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).lstrip(".")
    return cleaned or "_"


class JsonlSink:
    def __init__(self, output: OutputSettings, cache_enabled: bool) -> None:
        self.output = output
        check_writable(output)
        self.cache = None
        self._cache_con = None
        if cache_enabled:
            from destination_mistral.sinks.duckdb_sink import connect

            self._cache_con = connect(output.path / CACHE_FILE)
            self.cache = ResultCache(self._cache_con)
        self._plans: dict[tuple[str | None, str], StreamPlan] = {}
        self._handles: dict[tuple[str | None, str], IO[bytes]] = {}

    @property
    def location(self) -> str:
        return str(self.output.path)

    def path_of(self, plan: StreamPlan) -> Path:
        folder = self.output.path / _safe_name(plan.namespace) if plan.namespace else self.output.path
        return folder / f"{_safe_name(plan.name)}.jsonl"

    def _staging_path(self, plan: StreamPlan) -> Path:
        return self.path_of(plan).with_suffix(".jsonl.staging")

    def start(self, plans: Sequence[StreamPlan]) -> None:
        for plan in plans:
            self._plans[plan.key] = plan
            target = self.path_of(plan)
            target.parent.mkdir(parents=True, exist_ok=True)
            if plan.sync_mode == "overwrite":
                self._handles[plan.key] = open(self._staging_path(plan), "wb")
            elif plan.sync_mode == "append":
                self._handles[plan.key] = open(target, "ab")

    def lookup(self, keys: Sequence[str]) -> dict[str, Result]:
        return self.cache.lookup(keys) if self.cache is not None else {}

    @staticmethod
    def _line(plan: StreamPlan, item: WriteItem) -> bytes:
        row: dict[str, Any] = {k: v for k, v in item.record.items() if not str(k).lower().startswith(RESERVED_PREFIXES)}
        row[RAW_ID] = item.raw_id
        row[EXTRACTED_AT] = extracted_at_iso(item.emitted_at)
        row.update(enrichment_fields(plan, item, vector_as_list=False))
        return orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS) + b"\n"

    def _merge(self, plan: StreamPlan, items: list[WriteItem]) -> None:
        target = self.path_of(plan)
        rows: dict[tuple, bytes] = {}
        if target.exists():
            with open(target, "rb") as handle:
                for line in handle:
                    if line.strip():
                        record = orjson.loads(line)
                        rows[tuple(orjson.dumps(record.get(k)) for k in plan.primary_key)] = line if line.endswith(b"\n") else line + b"\n"
        for item in items:
            key = tuple(orjson.dumps(item.record.get(k)) for k in plan.primary_key)
            rows.pop(key, None)  # an update moves to the end, like a fresh insert
            rows[key] = self._line(plan, item)
        temporary = target.with_suffix(".jsonl.tmp")
        with open(temporary, "wb") as handle:
            handle.writelines(rows.values())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)

    def commit(self, batches: Sequence[tuple[StreamPlan, list[WriteItem]]], cache_entries: Iterable[tuple[str, str, Result]]) -> None:
        touched = []
        for plan, items in batches:
            if not items:
                continue
            if plan.sync_mode == "append_dedup":
                self._merge(plan, items)
                continue
            handle = self._handles[plan.key]
            handle.write(b"".join(self._line(plan, item) for item in items))
            touched.append(handle)
        for handle in touched:
            handle.flush()
            os.fsync(handle.fileno())
        if self.cache is not None:
            self.cache.store(cache_entries)

    def finish(self) -> None:
        for key, plan in self._plans.items():
            if plan.sync_mode == "overwrite":
                handle = self._handles.pop(key)
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
                os.replace(self._staging_path(plan), self.path_of(plan))

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if self._cache_con is not None:
            self.cache.close()
            self._cache_con.close()

"""The chunks of a chunked-embeddings stream in JSON Lines: `<stream>_chunks.jsonl` beside the
stream's file (and `<stream>_chunks.jsonl.staging` beside its staging copy), one line per chunk of
each record the stream's file holds.

Files have no transactions, so the chunk file is only ever a superset of what it must hold, which
`keep_chunks_of` trims: chunks are written before their records (a crash between leaves chunks
without a record, never a record without its chunks), and trimmed after every change that removes
records (an append_dedup merge, a generation's end, a swap) and at the start of each sync."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import orjson

from destination_mistral.sinks.base import JSON_OPTIONS, WriteItem, extracted_at_iso
from destination_mistral.sinks.chunk_tables import chunked_items, report_unchunked
from destination_mistral.sinks.jsonl_files import drop_partial_last_line, read_lines, replace_file, write_all
from destination_mistral.sinks.schema import (
    CHUNK_INDEX,
    CHUNK_TEXT,
    CHUNK_TOKENS,
    CHUNKS_SUFFIX,
    EMBEDDING,
    EXTRACTED_AT,
    GENERATION_ID,
    RAW_ID,
    StreamPlan,
)


def chunks_path(records: Path) -> Path:
    """`reviews.jsonl` -> `reviews_chunks.jsonl`, `reviews.jsonl.staging` -> `reviews_chunks.jsonl.staging`."""
    stem, _, rest = records.name.partition(".")
    return records.with_name(f"{stem}{CHUNKS_SUFFIX}.{rest}")


def append_chunks(plan: StreamPlan, items: list[WriteItem], records: Path) -> None:
    """Appends (and syncs) the chunk lines of `items`, before their records are written to `records`."""
    lines = b"".join(_line(plan, item, chunk) for item, chunk in _chunks(items))
    if not lines:
        return
    target = chunks_path(records)
    drop_partial_last_line(target)
    with open(target, "ab", buffering=0) as handle:
        write_all(handle, lines)
        os.fsync(handle.fileno())


def keep_chunks_of(records: Path) -> None:
    """Trims the chunk file of `records` to the chunks of the records it holds."""
    target = chunks_path(records)
    if not target.exists():
        return
    raw_ids = {orjson.loads(line).get(RAW_ID) for line in read_lines(records)}
    kept = [line for line in read_lines(target) if _raw_id(line) in raw_ids]
    replace_file(target, kept)


def adopt_chunks(staging: Path, records: Path) -> None:
    """Moves the chunks of a staging copy whose records `records` took in (or took over by a rename
    a crash interrupted before the chunks followed), then trims."""
    source = chunks_path(staging)
    if not source.exists():
        return
    target = chunks_path(records)
    replace_file(target, [*read_lines(target), *read_lines(source)])
    source.unlink()
    keep_chunks_of(records)


def swap_chunks(staging: Path, records: Path) -> None:
    """After the staging copy was renamed over the stream's file: its chunks replace the stream's."""
    source = chunks_path(staging)
    if source.exists():
        os.replace(source, chunks_path(records))
    else:
        chunks_path(records).unlink(missing_ok=True)


def _chunks(items: list[WriteItem]) -> Iterable[tuple[WriteItem, dict]]:
    by_raw_id = {item.raw_id: item for item in items}
    return ((by_raw_id[raw_id], chunk) for raw_id, chunk in chunked_items(items))


def _line(plan: StreamPlan, item: WriteItem, chunk: dict) -> bytes:
    row = {RAW_ID: item.raw_id}
    row.update({name: item.record.get(name) for name in dict.fromkeys([*plan.primary_key, *plan.chunk_fields])})
    row.update(
        {
            CHUNK_INDEX: chunk["index"],
            CHUNK_TEXT: chunk["text"],
            CHUNK_TOKENS: chunk["tokens"],
            EMBEDDING: chunk["vector"],
            EXTRACTED_AT: extracted_at_iso(item.emitted_at),
            GENERATION_ID: plan.generation_id,
        }
    )
    return orjson.dumps(row, option=JSON_OPTIONS) + b"\n"


def _raw_id(line: bytes) -> str | None:
    return orjson.loads(line).get(RAW_ID)


def unchunk(plan: StreamPlan, records: Path, staging: Path) -> None:
    """A stream no longer chunked keeps no chunk file (chunk_tables.ChunkTables.unchunk says why)."""
    removed = [path for path in (chunks_path(records), chunks_path(staging)) if path.exists()]
    for path in removed:
        path.unlink()
    if removed:
        report_unchunked(plan, chunks_path(records).name)

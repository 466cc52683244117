"""How a paid answer becomes rows of the cache table, and how rows become the answer again, for
both caches (DuckDB's and PostgreSQL's): an embedding is a row holding its vector; any other answer
a row holding its JSON; and a record's chunks a row listing the cache keys of its chunks, each chunk
being an embedding row of its own (the row any text of that model and dimension is cached under),
which the pipeline stores as the chunk's answer arrives, before the record is complete.

Chunk vectors are never kept in the record's row: as JSON text they filled DuckDB's memory (it keeps
a long string in memory until its next checkpoint), and as one long list per record a lookup of a
few hundred cached records read lists of hundreds of thousands of floats at once and ran out of it.
An embedding row is 4 KB, however long the record. The chunks' text and token counts are not kept
either: a hit's key is made from its chunks' keys, so the record's own chunks, split again before the
lookup, are those of the answer (chunked_embeddings.py puts them back)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import orjson

from destination_mistral.enrich.results import Result

EMBEDDINGS = "embeddings"
CHUNKS = "embeddings/chunks"


class CacheRow(NamedTuple):
    key: str
    endpoint: str
    model: str | None
    answer: str | None
    vector: np.ndarray | None
    prompt_tokens: int | None
    completion_tokens: int | None
    error: str | None


def rows_to_keep(entries: Iterable[tuple[str, str, Result]]) -> list[CacheRow]:
    """One row per key of the (key, endpoint, result) entries worth keeping: the successes, and the
    paid answers that could not be used (so that they are not paid for again)."""
    kept = {key: _row(key, endpoint, result) for key, endpoint, result in entries if result.ok or result.paid}
    return list(kept.values())


def _row(key: str, endpoint: str, result: Result) -> CacheRow:
    """The row that keeps `result`: a failure's row holds its error and counts only."""
    answer, vector = None, None
    if result.ok and endpoint == EMBEDDINGS:
        vector = np.asarray(result.value, np.float32).ravel()
    elif result.ok and endpoint == CHUNKS:
        # The chunks' own rows are written as each chunk's answer arrives (or were there before).
        answer = orjson.dumps([chunk["key"] for chunk in result.value]).decode()
    elif result.ok:
        answer = orjson.dumps(result.value).decode()
    return CacheRow(
        key, endpoint, result.model, answer, vector, result.prompt_tokens, result.completion_tokens, result.error
    )


def chunk_keys(endpoint: str, answer: str | None) -> list[str]:
    """The keys of the embedding rows a record's chunks row lists (none for any other row)."""
    if endpoint != CHUNKS or answer is None:
        return []
    listed = orjson.loads(answer)
    return listed if isinstance(listed, list) and all(isinstance(key, str) for key in listed) else []


def result(
    endpoint: str,
    model: str | None,
    answer: str | None,
    vector: Any,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    error: str | None,
    vectors: Mapping[str, Any],
) -> Result | None:
    """The cached answer a row holds (`vector` as floats of any sequence), with `vectors` the
    embedding rows found for chunk keys; None for a row that cannot be used, asked for again."""
    counts = {"model": model, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    if error is not None:  # a paid answer that could not be used: not paid again, its error kept
        return Result(error=error, error_kind="answer", cached=True, **counts)
    usable, found = _value(endpoint, answer, vector, vectors)
    return Result(value=found, cached=True, **counts) if usable else None


def _value(endpoint: str, answer: str | None, vector: Any, vectors: Mapping[str, Any]) -> tuple[bool, Any]:
    """(usable, value) of a successful row. A record's chunks come back as their index and vector,
    in order."""
    if endpoint == EMBEDDINGS:
        return vector is not None, None if vector is None else np.asarray(vector, dtype=np.float32)
    if endpoint == CHUNKS:
        keys = chunk_keys(endpoint, answer)
        found = [vectors.get(key) for key in keys]
        if not keys or any(v is None for v in found):
            return False, None  # a chunk's row is missing, or the row predates this layout: pay again
        return True, [{"index": i, "vector": np.asarray(v, dtype=np.float32)} for i, v in enumerate(found)]
    return True, orjson.loads(answer) if answer is not None else None

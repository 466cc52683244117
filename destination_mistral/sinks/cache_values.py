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

from collections.abc import Mapping
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


def rows(key: str, endpoint: str, result: Result) -> list[CacheRow]:
    """The rows that keep `result`: a failure's row holds its error and counts only."""
    counts = (result.prompt_tokens, result.completion_tokens, result.error)
    if not result.ok:
        return [CacheRow(key, endpoint, result.model, None, None, *counts)]
    if endpoint == EMBEDDINGS:
        return [CacheRow(key, endpoint, result.model, None, np.asarray(result.value, np.float32).ravel(), *counts)]
    if endpoint == CHUNKS:
        # The chunks' own rows are written as each chunk's answer arrives (or were there before).
        listed = orjson.dumps([chunk["key"] for chunk in result.value]).decode()
        return [CacheRow(key, endpoint, result.model, listed, None, *counts)]
    return [CacheRow(key, endpoint, result.model, orjson.dumps(result.value).decode(), None, *counts)]


def chunk_keys(endpoint: str, answer: str | None) -> list[str]:
    """The keys of the embedding rows a record's chunks row lists (none for any other row)."""
    if endpoint != CHUNKS or answer is None:
        return []
    listed = orjson.loads(answer)
    return listed if isinstance(listed, list) and all(isinstance(key, str) for key in listed) else []


def value(endpoint: str, answer: str | None, vector: Any, vectors: Mapping[str, Any]) -> tuple[bool, Any]:
    """(usable, value) read back from a row (`vector` as floats of any sequence), with `vectors` the
    embedding rows found for chunk keys; an unusable row is asked for again. A record's chunks come
    back as their index and vector, in order."""
    if endpoint == EMBEDDINGS:
        return vector is not None, None if vector is None else np.asarray(vector, dtype=np.float32)
    if endpoint == CHUNKS:
        keys = chunk_keys(endpoint, answer)
        found = [vectors.get(key) for key in keys]
        if not keys or any(v is None for v in found):
            return False, None  # a chunk's row is missing, or the row predates this layout: pay again
        return True, [{"index": i, "vector": np.asarray(v, dtype=np.float32)} for i, v in enumerate(found)]
    return True, orjson.loads(answer) if answer is not None else None

"""How a cached answer is kept in the cache table's two value columns, for both caches (DuckDB's and
PostgreSQL's): an embedding as its vector; a record's chunks as their index, text and token count in
`answer` and all their vectors one after another in `vector`; any other answer as JSON in `answer`.

Chunk vectors are kept out of the JSON: as decimal text they took three times the space of their
floats, and DuckDB keeps a long string in memory until its next checkpoint, so a sync of a few
thousand chunked records filled the output's buffer pool and its commits failed."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

EMBEDDINGS = "embeddings"
CHUNKS = "embeddings/chunks"
# The endpoints whose answers carry a vector column to read back.
WITH_VECTORS = (EMBEDDINGS, CHUNKS)


def columns(endpoint: str, value: Any) -> tuple[str | None, np.ndarray | None]:
    """(answer, vector) for a successful answer of `endpoint`."""
    if endpoint == EMBEDDINGS:
        return None, np.asarray(value, dtype=np.float32).ravel()
    if endpoint == CHUNKS and value and all(chunk.get("vector") is not None for chunk in value):
        described = [{key: chunk[key] for key in chunk if key != "vector"} for chunk in value]
        vectors = np.concatenate([np.asarray(chunk["vector"], dtype=np.float32).ravel() for chunk in value])
        return orjson.dumps(described).decode(), vectors
    return orjson.dumps(value).decode(), None


def value(endpoint: str, answer: str | None, vector: Any) -> tuple[bool, Any]:
    """(usable, value) read back from the two columns (`vector` as floats of any sequence); an
    unusable row is asked for again."""
    vector = None if vector is None else np.asarray(vector, dtype=np.float32)
    if endpoint == EMBEDDINGS:
        return vector is not None, vector
    parsed = orjson.loads(answer) if answer is not None else None
    if endpoint == CHUNKS and isinstance(parsed, list) and parsed and "vector" not in parsed[0]:
        # Chunks whose vectors are in the vector column (those written before it carry them inline).
        if vector is None or len(vector) % len(parsed):
            return False, None
        for chunk, own in zip(parsed, np.split(vector, len(parsed)), strict=True):
            chunk["vector"] = own
        return True, parsed
    return True, parsed

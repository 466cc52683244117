"""Results already paid for, keyed by sha256(endpoint, model, parameters, input).

The table lives beside the output (in the same DuckDB file, or a DuckDB file in the JSONL
directory), so a nightly re-sync of unchanged records costs nothing and the cache survives
restarts. With DuckDB output the cache rows are written in the same transaction as the records
they enriched. Only successes are cached: a failed record is tried again next time.

Rows go in and out as Arrow tables: DuckDB converts Python lists of 4 KB BLOB parameters one
object at a time, which cost more than the rest of a sync.

All methods run on the destination's single database thread."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import orjson
import pyarrow as pa

from destination_mistral.results import Result

TABLE = "_mistral_cache"
_KEYS_VIEW = "_mistral_cache_keys"
_ROWS_VIEW = "_mistral_cache_rows"

_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key VARCHAR PRIMARY KEY,
    endpoint VARCHAR,
    model VARCHAR,
    answer VARCHAR,
    vector BLOB,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created_at TIMESTAMPTZ DEFAULT current_timestamp
)
"""


def blob_vectors(vectors: pa.Array) -> list[np.ndarray | None]:
    """float32 vectors from a BLOB column, as views of its buffer (no per-row copy)."""
    if isinstance(vectors, pa.ChunkedArray):
        vectors = vectors.combine_chunks()
    if len(vectors) == 0:
        return []
    if pa.types.is_large_binary(vectors.type):
        offset_type = np.int64
    else:
        vectors = vectors.cast(pa.binary())
        offset_type = np.int32
    _, offsets_buffer, data_buffer = vectors.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[vectors.offset:vectors.offset + len(vectors) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    valid = vectors.is_valid().to_numpy(zero_copy_only=False)
    out: list[np.ndarray | None] = []
    for i, (start, end) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist())):
        if not valid[i]:
            out.append(None)
        elif (end - start) % 4 == 0 and start % 4 == 0:
            out.append(data[start:end].view("<f4"))
        else:  # not float-aligned: copy rather than fail
            out.append(np.frombuffer(data[start:end].tobytes()[: (end - start) // 4 * 4], dtype="<f4"))
    return out


class ResultCache:
    def __init__(self, connection) -> None:
        self._con = connection
        self._con.execute(_DDL)

    def lookup(self, keys: Sequence[str]) -> dict[str, Result]:
        if not keys:
            return {}
        wanted = pa.table({"key": pa.array(list(dict.fromkeys(keys)), pa.string())})
        view = _KEYS_VIEW
        self._con.register(view, wanted)
        try:
            rows = self._con.sql(
                f"SELECT c.key, c.endpoint, c.model, c.answer, c.vector, c.prompt_tokens, c.completion_tokens "
                f"FROM {TABLE} c SEMI JOIN {view} w ON c.key = w.key"
            ).to_arrow_table()
        finally:
            self._con.unregister(view)
        if rows.num_rows == 0:
            return {}
        vectors = blob_vectors(rows.column("vector"))
        found = {}
        for key, endpoint, model, answer, vector, prompt_tokens, completion_tokens in zip(
            rows.column("key").to_pylist(), rows.column("endpoint").to_pylist(), rows.column("model").to_pylist(),
            rows.column("answer").to_pylist(), vectors, rows.column("prompt_tokens").to_pylist(),
            rows.column("completion_tokens").to_pylist(),
        ):
            if endpoint == "embeddings":
                value: Any = vector
            else:
                value = orjson.loads(answer) if answer is not None else None
            found[key] = Result(value=value, model=model, prompt_tokens=prompt_tokens,
                                completion_tokens=completion_tokens, cached=True)
        return found

    def store(self, entries: Iterable[tuple[str, str, Result]]) -> None:
        """(key, endpoint, result) for successes; keys already present are left alone."""
        keys, endpoints, models, answers, vectors, prompts, completions = [], [], [], [], [], [], []
        unique = {key: (endpoint, result) for key, endpoint, result in entries if result.ok}
        for key, (endpoint, result) in unique.items():
            keys.append(key)
            endpoints.append(endpoint)
            models.append(result.model)
            if endpoint == "embeddings":
                answers.append(None)
                vectors.append(np.asarray(result.value, dtype="<f4").tobytes() if result.value is not None else None)
            else:
                answers.append(orjson.dumps(result.value).decode())
                vectors.append(None)
            prompts.append(result.prompt_tokens)
            completions.append(result.completion_tokens)
        if not keys:
            return
        rows = pa.table({
            "key": pa.array(keys, pa.string()),
            "endpoint": pa.array(endpoints, pa.string()),
            "model": pa.array(models, pa.string()),
            "answer": pa.array(answers, pa.string()),
            "vector": pa.array(vectors, pa.binary()),
            "prompt_tokens": pa.array(prompts, pa.int32()),
            "completion_tokens": pa.array(completions, pa.int32()),
        })
        view = _ROWS_VIEW
        self._con.register(view, rows)
        try:
            self._con.execute(
                f"INSERT OR IGNORE INTO {TABLE} (key, endpoint, model, answer, vector, prompt_tokens, completion_tokens) "
                f"SELECT key, endpoint, model, answer, vector, prompt_tokens, completion_tokens FROM {view}"
            )
        finally:
            self._con.unregister(view)

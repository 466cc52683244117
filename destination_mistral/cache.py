"""Results already paid for, keyed by sha256(endpoint, model, parameters, input).

The table lives beside the output (in the same DuckDB file, or a DuckDB file in the JSONL
directory), so a nightly re-sync of unchanged records costs nothing and the cache survives
restarts. With DuckDB output the cache rows are written in the same transaction as the records
they enriched. Only successes are cached: a failed record is tried again next time.

All methods run on the destination's single database thread."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import orjson

from destination_mistral.results import Result

TABLE = "_mistral_cache"

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


class ResultCache:
    def __init__(self, connection) -> None:
        self._con = connection
        self._con.execute(_DDL)

    def lookup(self, keys: Sequence[str]) -> dict[str, Result]:
        if not keys:
            return {}
        rows = self._con.execute(
            f"SELECT key, endpoint, model, answer, vector, prompt_tokens, completion_tokens FROM {TABLE} "
            "WHERE key IN (SELECT unnest(?::VARCHAR[]))",
            [list(dict.fromkeys(keys))],
        ).fetchall()
        found = {}
        for key, endpoint, model, answer, vector, prompt_tokens, completion_tokens in rows:
            if endpoint == "embeddings":
                value: Any = np.frombuffer(vector, dtype="<f4") if vector is not None else None
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
                vectors.append(np.asarray(result.value, dtype="<f4").tobytes())
            else:
                answers.append(orjson.dumps(result.value).decode())
                vectors.append(None)
            prompts.append(result.prompt_tokens)
            completions.append(result.completion_tokens)
        if not keys:
            return
        self._con.execute(
            f"INSERT OR IGNORE INTO {TABLE} (key, endpoint, model, answer, vector, prompt_tokens, completion_tokens) "
            "SELECT * FROM (SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
            "unnest(?::BLOB[]), unnest(?::INTEGER[]), unnest(?::INTEGER[]))",
            [keys, endpoints, models, answers, vectors, prompts, completions],
        )

"""Results already paid for, keyed by sha256(endpoint, model, parameters, input).

The table lives beside the output (in the same DuckDB file, or a DuckDB file in the JSONL
directory), so a nightly re-sync of unchanged records costs nothing and the cache survives
restarts. With DuckDB output the cache rows are written in the same transaction as the records
they enriched. Only successes are cached: a failed record is tried again next time.

Rows go in and out as Arrow tables: DuckDB converts Python lists of 4 KB parameters one object at
a time, which cost more than the rest of a sync. Vectors are stored as FLOAT[] (earlier versions
used BLOB, migrated on open): DuckDB joined and read a BLOB column about ten times slower than a
list of floats, which made the lookups of a fully cached re-sync its largest cost.

`lookup` may run on a thread of its own, beside the destination's single database thread, which
runs everything else."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from destination_mistral.enrich.results import Result
from destination_mistral.sinks.base import CacheEntries
from destination_mistral.sinks.cache_values import EMBEDDINGS, chunk_keys, rows_to_keep
from destination_mistral.sinks.cache_values import result as cached_result

TABLE = "_mistral_cache"
_KEYS_VIEW = "_mistral_cache_keys"
_ROWS_VIEW = "_mistral_cache_rows"
_MIGRATION_CHUNK = 5000

# No primary key: the pipeline looks every key up before it sends, and stores each new result once
# (one writer per file, by DuckDB's lock), so a key cannot arrive twice; should one ever, a lookup
# takes either row. Maintaining the index cost a third of each commit of a fresh embeddings sync.
_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    key VARCHAR,
    endpoint VARCHAR,
    model VARCHAR,
    answer VARCHAR,
    vector FLOAT[],
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created_at TIMESTAMPTZ DEFAULT current_timestamp,
    error VARCHAR
)
"""
# `error`: a paid answer that could not be used (not JSON, off the schema, empty). It is kept so
# that the next sync does not pay for the same answer again; its row carries the same error.
_COLUMNS = "key, endpoint, model, answer, vector, prompt_tokens, completion_tokens, error"


def list_vectors(vectors: pa.Array) -> list[np.ndarray | None]:
    """float32 vectors from a FLOAT[] column, as views of its buffer (no per-row copy)."""
    if isinstance(vectors, pa.ChunkedArray):
        vectors = vectors.combine_chunks()
    if len(vectors) == 0:
        return []
    offsets = vectors.offsets.to_numpy()
    values = vectors.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    valid = vectors.is_valid().to_numpy(zero_copy_only=False)
    starts, ends = offsets[:-1].tolist(), offsets[1:].tolist()
    return [values[start:end] if valid[i] else None for i, (start, end) in enumerate(zip(starts, ends, strict=False))]


def vectors_to_list_array(vectors: Sequence[np.ndarray | None]) -> pa.Array:
    """Vectors (or None) as one FLOAT[] column: a single copy into one block."""
    present = [np.asarray(v, dtype=np.float32).ravel() for v in vectors if v is not None]
    mask = np.fromiter((v is None for v in vectors), dtype=bool, count=len(vectors))
    lengths = np.zeros(len(vectors), dtype=np.int32)
    lengths[~mask] = [v.shape[0] for v in present]
    offsets = np.concatenate([np.zeros(1, np.int32), np.cumsum(lengths, dtype=np.int32)])
    values = np.concatenate(present) if present else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), mask=pa.array(mask) if mask.any() else None)


def _blob_vectors(blobs: pa.Array) -> list[np.ndarray | None]:
    return [np.frombuffer(b, dtype="<f4") if b is not None else None for b in blobs.to_pylist()]


class ResultCache:
    def __init__(self, connection) -> None:
        self._con = connection
        self._con.execute(_DDL.format(table=TABLE))
        self._con.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS error VARCHAR")  # caches written before it
        self._migrate_blob_vectors()
        # Lookups read through a cursor of their own (DuckDB: one more connection to the same
        # database), so that the pipeline can run them on another thread while a commit writes:
        # a lookup sits on the path to the next request, and must not queue behind a commit.
        self._reader = self._con.cursor()
        # A table made with a primary key (earlier versions) refuses a second row for a key.
        keyed = self._con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = ? AND constraint_type = 'PRIMARY KEY' "
            "AND schema_name = current_schema()",
            [TABLE],
        ).fetchall()[0][0]
        self._insert = f"INSERT OR IGNORE INTO {TABLE}" if keyed else f"INSERT INTO {TABLE}"

    def close(self) -> None:
        self._reader.close()

    def _migrate_blob_vectors(self) -> None:
        """A cache written with BLOB vectors becomes FLOAT[], in one transaction, so that no answer
        already paid for is lost by the upgrade."""
        kind = self._con.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = ? AND column_name = 'vector' "
            "AND table_schema = current_schema()",
            [TABLE],
        ).fetchall()
        if not kind or kind[0][0] != "BLOB":
            return
        staging = TABLE + "_migrating"
        self._con.begin()
        try:
            self._con.execute(f"DROP TABLE IF EXISTS {staging}")
            self._con.execute(_DDL.format(table=staging))
            # Read through a second cursor: one connection cannot insert while a result is open.
            source = self._con.cursor()
            for batch in source.sql(f"SELECT {_COLUMNS}, created_at FROM {TABLE}").to_arrow_reader(_MIGRATION_CHUNK):
                rows = pa.Table.from_batches([batch])
                vectors = vectors_to_list_array(_blob_vectors(rows.column("vector").combine_chunks()))
                rows = rows.set_column(rows.schema.get_field_index("vector"), "vector", vectors)
                self._con.register(_ROWS_VIEW, rows)
                try:
                    self._con.execute(
                        f"INSERT INTO {staging} ({_COLUMNS}, created_at) "
                        f"SELECT {_COLUMNS}, created_at FROM {_ROWS_VIEW}"
                    )
                finally:
                    self._con.unregister(_ROWS_VIEW)
            source.close()
            self._con.execute(f"DROP TABLE {TABLE}")
            self._con.execute(f"ALTER TABLE {staging} RENAME TO {TABLE}")
            self._con.commit()
        except BaseException:
            self._con.rollback()
            raise

    def lookup(self, keys: Sequence[str]) -> dict[str, Result]:
        """Reads in one snapshot: the matching rows without their vectors (the join scans the key
        column only), the rows of the chunks that records' rows list, then the vectors of the
        embedding rows by rowid. One join that carried the vectors read every vector of the table per
        lookup: 55 ms per 1,000 keys against 20,000 cached rows, 500 ms against 100,000, where this
        takes 20 and 31."""
        if not keys:
            return {}
        reader = self._reader
        reader.begin()
        try:
            rows = self._matching(list(dict.fromkeys(keys)))
            endpoints = rows.column("endpoint").to_pylist()
            answers = rows.column("answer").to_pylist()
            listed = {
                key for endpoint, answer in zip(endpoints, answers, strict=True) for key in chunk_keys(endpoint, answer)
            }
            chunk_rows = self._matching(list(listed)) if listed else None
            vectors = self._vectors([rows, chunk_rows] if chunk_rows is not None else [rows])
        finally:
            reader.commit()
        found = {}
        for key, endpoint, model, answer, prompt_tokens, completion_tokens, error in zip(
            rows.column("key").to_pylist(),
            endpoints,
            rows.column("model").to_pylist(),
            answers,
            rows.column("prompt_tokens").to_pylist(),
            rows.column("completion_tokens").to_pylist(),
            rows.column("error").to_pylist(),
            strict=True,
        ):
            cached = cached_result(
                endpoint, model, answer, vectors.get(key), prompt_tokens, completion_tokens, error, vectors
            )
            if cached is not None:
                found[key] = cached
        return found

    def _matching(self, keys: list[str]) -> pa.Table:
        """The rows of `keys`, without their vectors."""
        reader = self._reader
        reader.register(_KEYS_VIEW, pa.table({"key": pa.array(keys, pa.string())}))
        try:
            return reader.sql(
                "SELECT c.rowid AS row_id, c.key, c.endpoint, c.model, c.answer, c.prompt_tokens, "
                "c.completion_tokens, c.error "
                f"FROM {_KEYS_VIEW} w JOIN {TABLE} c ON c.key = w.key"
            ).to_arrow_table()
        finally:
            reader.unregister(_KEYS_VIEW)

    def _vectors(self, tables: list[pa.Table]) -> dict[str, np.ndarray | None]:
        """The vectors of the embedding rows among `tables`, by key."""
        hits = [
            row
            for rows in tables
            for row, endpoint in zip(
                rows.column("row_id").to_pylist(), rows.column("endpoint").to_pylist(), strict=True
            )
            if endpoint == EMBEDDINGS
        ]
        if not hits:
            return {}
        reader = self._reader
        reader.register(_ROWS_VIEW, pa.table({"row_id": pa.array(hits, pa.int64())}))
        try:
            found = reader.sql(
                f"SELECT key, vector FROM {TABLE} WHERE rowid IN (SELECT row_id FROM {_ROWS_VIEW})"
            ).to_arrow_table()
        finally:
            reader.unregister(_ROWS_VIEW)
        return dict(zip(found.column("key").to_pylist(), list_vectors(found.column("vector")), strict=True))

    def store(self, entries: CacheEntries) -> None:
        """(key, endpoint, result) for successes and paid answers that could not be used."""
        kept = rows_to_keep(entries)
        if not kept:
            return
        rows = pa.table(
            {
                "key": pa.array([row.key for row in kept], pa.string()),
                "endpoint": pa.array([row.endpoint for row in kept], pa.string()),
                "model": pa.array([row.model for row in kept], pa.string()),
                "answer": pa.array([row.answer for row in kept], pa.string()),
                "vector": vectors_to_list_array([row.vector for row in kept]),
                "prompt_tokens": pa.array([row.prompt_tokens for row in kept], pa.int32()),
                "completion_tokens": pa.array([row.completion_tokens for row in kept], pa.int32()),
                "error": pa.array([row.error for row in kept], pa.string()),
            }
        )
        view = _ROWS_VIEW
        self._con.register(view, rows)
        try:
            self._con.execute(f"{self._insert} ({_COLUMNS}) SELECT {_COLUMNS} FROM {view}")
        finally:
            self._con.unregister(view)

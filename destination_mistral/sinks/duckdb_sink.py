"""The DuckDB sink: one table per stream, the namespace as its schema.

Each commit is one transaction holding the records and the cache rows of their results, so a crash
never leaves a record without its cache entry or the reverse. Rows travel as an Arrow table: the
vectors as one float32 block DuckDB copies as is, the record's fields as JSON text cast to their
column types in SQL, so DuckDB never guesses a type and a value that does not fit is recorded in
`_airbyte_meta` instead of failing the batch."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from destination_mistral.enrich.results import Result
from destination_mistral.settings import OutputSettings
from destination_mistral.sinks.base import WriteItem, check_distinct_locations
from destination_mistral.sinks.cache import ResultCache, vectors_to_list_array
from destination_mistral.sinks.schema import (
    ANSWER,
    CACHED,
    COMPLETION_TOKENS,
    EMBEDDING,
    ERROR,
    EXTRACTED_AT,
    META,
    MODEL,
    PROMPT_TOKENS,
    RAW_ID,
    Column,
    StreamPlan,
)
from mistral_connection.errors import config_error

STAGING_PREFIX = "_airbyte_tmp_"
# Which generation each staging table holds, so that the next attempt of the same generation resumes
# it (the platform keeps generation_id across the attempts of a sync; sync_id may be absent).
GENERATIONS_TABLE = "_mistral_generations"
SEQ = "_mistral_seq"
BATCH_VIEW = "_mistral_batch_rows"
logger = logging.getLogger("airbyte")
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
EARLIER_CHANGES = "_mistral_changes"
INTEGER_TYPES = frozenset({"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT"})
CHANGES_TYPE = '[{"field": "VARCHAR", "change": "VARCHAR", "reason": "VARCHAR"}]'


MEMORY_LIMIT = "192MB"
ROOMY_MEMORY_LIMIT = "4GB"


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(path: Path):
    import duckdb

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
    except duckdb.IOException as error:
        text = str(error)
        if "lock" in text.lower():
            raise config_error(
                f"The DuckDB file {str(path)!r} is open in another process (DuckDB allows one writer): close it and retry."
            ) from None
        raise config_error(
            f"`output.path` {str(path)!r} cannot be opened as a DuckDB file: {text.splitlines()[0]}"
        ) from None
    except (OSError, duckdb.Error) as error:
        raise config_error(f"`output.path` {str(path)!r} cannot be written: {str(error).splitlines()[0]}") from None
    con.execute("SET TimeZone = 'UTC'")
    # Half the cores, at least one: the sync's own appends and joins gain little from more, and the
    # pipeline (and, on a shared machine, the source and the API) need the rest. On 2 cores, one
    # DuckDB thread made a 20,000-vector sync 15% faster than two.
    con.execute(f"SET threads = {max(1, (os.cpu_count() or 2) // 2)}")
    # DuckDB's buffer pool defaults to 80% of RAM; the destination shares its machine with the
    # source, and pages it evicts are re-read from the file when needed.
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    # At the default 16 MB the write-ahead log fills every commit or two (a vector is 4 KB, written
    # to the table and to the cache), and each checkpoint rewrites the cache's key index and the
    # partly filled row groups again. Committed transactions are durable in the log either way.
    con.execute("SET checkpoint_threshold = '256MB'")
    # Embeddings are dense floats that no method compresses, yet at each checkpoint DuckDB tries
    # them all: ALP on every FLOAT[n] segment and dict_fsst on every 4 KB cache blob. Measured on
    # 20,000 vectors of 1024 floats, closing the file took 1.3 s with them and 0.4 s without, for a
    # file 2% larger. Text columns keep dictionary and FSST compression.
    for methods in ("alp,alprd,dict_fsst", "alp,alprd"):  # dict_fsst exists from DuckDB 1.3
        try:
            con.execute(f"SET disabled_compression_methods = '{methods}'")
            break
        except duckdb.Error:
            continue
    return con


def check_writable(output: OutputSettings) -> None:
    con = connect(output.path)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS _mistral_check (x INTEGER)")
        con.execute("DROP TABLE _mistral_check")
    except Exception as error:
        raise config_error(
            f"`output.path` {str(output.path)!r} is not writable: {str(error).splitlines()[0]}"
        ) from None
    finally:
        con.close()


def _meta_expr(plan: StreamPlan, target_types: dict[str, str]) -> str:
    """`_airbyte_meta` as Airbyte destinations write it: a value that does not fit its column's type
    (the string "five" for an integer, an object for a date) is stored as NULL and named here, so
    the loss is visible per record instead of silent."""
    checks = []
    for column in plan.columns:
        target = target_types.get(column.name, column.sql_type)
        if target in ("JSON", "VARCHAR"):
            continue
        source = q(column.name)
        checks.append(
            f"CASE WHEN json_type({source}) <> 'NULL' AND {_select_expr(column, target)} IS NULL THEN {_sql_str(column.name)} END"
        )
    fields = "[" + ", ".join(checks + ["NULL::VARCHAR"]) + "]"
    sync = f"'sync_id': {int(plan.sync_id)}, " if plan.sync_id is not None else ""
    # Changes made before the sink (the source's own, a stand-in row's) come first, as JSON text.
    earlier = f"coalesce(from_json({q(EARLIER_CHANGES)}, '{CHANGES_TYPE}'), [])"
    return (
        f"to_json({{{sync}'changes': list_concat({earlier}, list_transform(list_filter({fields}, lambda x: x IS NOT NULL), "
        "lambda f: {'field': f, 'change': 'NULLED', 'reason': 'DESTINATION_TYPECAST_ERROR'}))})"
    )


def _select_expr(column: Column, target_type: str) -> str:
    source = q(column.name)
    if target_type == "JSON":
        return source
    if target_type == "VARCHAR":
        return f"({source} ->> '$')"
    cast = f"TRY_CAST(({source} ->> '$') AS {target_type})"
    if target_type in INTEGER_TYPES:
        # DuckDB rounds 1.5 to 2 when casting to an integer: a fraction does not fit, so it is
        # NULL (and named in _airbyte_meta), never merged with the record whose key really is 2.
        as_double = f"TRY_CAST(({source} ->> '$') AS DOUBLE)"
        return f"CASE WHEN {as_double} <> trunc({as_double}) THEN NULL ELSE {cast} END"
    return cast


class DuckDBSink:
    def __init__(self, output: OutputSettings, cache_enabled: bool) -> None:
        self.output = output
        self.con = connect(output.path)
        self.cache = ResultCache(self.con) if cache_enabled else None
        self._plans: dict[tuple[str | None, str], StreamPlan] = {}
        self._types: dict[tuple[str | None, str], dict[str, str]] = {}
        self._swapped: set[tuple[str | None, str]] = set()  # staged streams already in place

    @property
    def location(self) -> str:
        return str(self.output.path)

    def schema_of(self, plan: StreamPlan) -> str:
        return plan.namespace or self.output.schema

    def _table(self, plan: StreamPlan, staging: bool = False) -> tuple[str, str]:
        return self.schema_of(plan), (STAGING_PREFIX + plan.name if staging else plan.name)

    def _write_table(self, plan: StreamPlan) -> tuple[str, str]:
        return self._table(plan, staging=plan.staged and plan.key not in self._swapped)

    def _existing_columns(self, schema: str, table: str) -> dict[str, str]:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
        return {name: kind for name, kind in rows}

    def _create(self, schema: str, table: str, columns: list[Column]) -> None:
        body = ", ".join(f"{q(c.name)} {c.sql_type}" for c in columns)
        self.con.execute(f"CREATE TABLE {q(schema)}.{q(table)} ({body})")

    def start(self, plans: Sequence[StreamPlan]) -> None:
        # DuckDB compares identifiers without case: "Users" and "users" are one table.
        check_distinct_locations(plans, lambda p: f"{self.schema_of(p)}.{p.name}".lower(), "the DuckDB table")
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {GENERATIONS_TABLE} (schema_name VARCHAR, table_name VARCHAR, generation_id BIGINT, sync_id BIGINT)"
        )
        for plan in plans:
            self._plans[plan.key] = plan
            if (
                plan.staged
                and plan.generation_id is not None
                and plan.sync_id is not None
                and self._generation_applied(plan)
            ):
                # An earlier attempt of this sync (same sync_id and generation) already swapped its
                # table in, and the platform replays from a STATE before that COMPLETE: the table in
                # place is this generation's, and the replayed records go into it.
                self._swapped.add(plan.key)
            schema, table = self._write_table(plan)
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(schema)}")
            existing = self._existing_columns(schema, table)
            if plan.staged and plan.key not in self._swapped:
                resumed = (
                    existing
                    and self.con.execute(
                        f"SELECT count(*) FROM {GENERATIONS_TABLE} WHERE schema_name = ? AND table_name = ? "
                        "AND generation_id IS NOT DISTINCT FROM ?",
                        [schema, table, plan.generation_id],
                    ).fetchone()[0]
                )
                if not resumed:
                    # A staging table of another generation holds data of a sync the platform has
                    # given up on; this one sends everything again.
                    self.con.execute(f"DROP TABLE IF EXISTS {q(schema)}.{q(table)}")
                    self.con.execute(
                        f"DELETE FROM {GENERATIONS_TABLE} WHERE schema_name = ? AND table_name = ?", [schema, table]
                    )
                    self.con.execute(
                        f"INSERT INTO {GENERATIONS_TABLE} VALUES (?, ?, ?, NULL)", [schema, table, plan.generation_id]
                    )
                    existing = {}
            if not existing:
                self._create(schema, table, plan.all_columns())
            else:
                self._evolve(plan, schema, table, existing)
            self._types[plan.key] = self._existing_columns(schema, table)

    def _evolve(self, plan: StreamPlan, schema: str, table: str, existing: dict[str, str]) -> None:
        lowered = {name.lower(): kind for name, kind in existing.items()}
        for column in plan.all_columns():
            current = lowered.get(column.name.lower())
            if current is None:
                self.con.execute(f"ALTER TABLE {q(schema)}.{q(table)} ADD COLUMN {q(column.name)} {column.sql_type}")
            elif column.name == EMBEDDING and plan.embedding_dim and current != column.sql_type:
                raise config_error(
                    f"Table {schema}.{table} holds embeddings of type {current} but this sync produces {column.sql_type} "
                    "(another model or output_dimension): use overwrite once, or write to another table or file."
                )

    def lookup(self, keys: Sequence[str]) -> dict[str, Result]:
        return self.cache.lookup(keys) if self.cache is not None else {}

    def _arrow_batch(self, plan: StreamPlan, items: list[WriteItem]) -> tuple[pa.Table, list[str]]:
        """The batch as Arrow columns, and the select list that names them as `read_json` did: each
        field as JSON (NULL when absent or null), the metadata with its own type."""
        columns: dict[str, pa.Array] = {}
        select: list[str] = []
        for index, column in enumerate(plan.columns):
            name = column.name
            columns[f"c{index}"] = pa.array([_json_text(item.record.get(name)) for item in items], pa.string())
            select.append(f"json(c{index}) AS {q(name)}")
        columns["raw_id"] = pa.array([item.raw_id for item in items], pa.string())
        columns["extracted_at"] = pa.array([item.emitted_at for item in items], pa.int64())
        columns["seq"] = pa.array([item.seq for item in items], pa.int64())
        columns["changes"] = pa.array(
            [_json_text(item.changes) if item.changes else None for item in items], pa.string()
        )
        select += [
            f"raw_id AS {q(RAW_ID)}",
            f"extracted_at AS {q(EXTRACTED_AT)}",
            f"seq AS {q(SEQ)}",
            f"changes AS {q(EARLIER_CHANGES)}",
        ]
        if plan.enrichment != "none":
            results = [item.result for item in items]
            ok = [r is not None and r.ok for r in results]
            values = [r.value if good else None for r, good in zip(results, ok, strict=False)]
            if plan.enrichment == "chat":
                if plan.answer_json:
                    columns["answer"] = pa.array([_json_text(v) for v in values], pa.string())
                    select.append(f"json(answer) AS {q(ANSWER)}")
                else:
                    columns["answer"] = pa.array(
                        [v if v is None or isinstance(v, str) else _json_text(v) for v in values], pa.string()
                    )
                    select.append(f"answer AS {q(ANSWER)}")
            else:
                columns["embedding"] = _vector_array(values, plan.embedding_dim)
                select.append(f"embedding AS {q(EMBEDDING)}")
            columns["model"] = pa.array([r.model if r is not None else None for r in results], pa.string())
            columns["prompt_tokens"] = pa.array(
                [r.prompt_tokens if r is not None else None for r in results], pa.int64()
            )
            columns["completion_tokens"] = pa.array(
                [r.completion_tokens if r is not None else None for r in results], pa.int64()
            )
            columns["cached"] = pa.array([r.cached if r is not None else False for r in results], pa.bool_())
            columns["error"] = pa.array([r.error if r is not None else None for r in results], pa.string())
            select += [
                f"model AS {q(MODEL)}",
                f"prompt_tokens AS {q(PROMPT_TOKENS)}",
                f"completion_tokens AS {q(COMPLETION_TOKENS)}",
                f"cached AS {q(CACHED)}",
                f"error AS {q(ERROR)}",
            ]
        return pa.table(columns), select

    def _insert_batch(self, plan: StreamPlan, items: list[WriteItem]) -> None:
        target_types = self._types[plan.key]
        rows, columns = self._arrow_batch(plan, items)
        exprs: list[str] = []
        names: list[str] = []
        for column in plan.columns:
            names.append(column.name)
            exprs.append(_select_expr(column, target_types.get(column.name, column.sql_type)))
        for column in plan.meta_columns():
            names.append(column.name)
            if column.name == EXTRACTED_AT:
                exprs.append(f"to_timestamp({q(column.name)} / 1000.0)")
            elif column.name == META:
                exprs.append(_meta_expr(plan, target_types))
            else:
                exprs.append(q(column.name))
        source = f"(SELECT {', '.join(columns)} FROM {BATCH_VIEW})"
        self.con.register(BATCH_VIEW, rows)
        try:
            self._insert_rows(plan, names, exprs, source)
        finally:
            try:
                self.con.unregister(BATCH_VIEW)
            except duckdb.Error:
                pass  # an aborted transaction refuses this too; the insert's own error is the one to see

    def _insert_rows(self, plan: StreamPlan, names: list[str], exprs: list[str], source: str) -> None:
        schema, table = self._write_table(plan)
        target = f"{q(schema)}.{q(table)}"
        column_list = ", ".join(q(n) for n in names)
        select = ", ".join(f"{e} AS {q(n)}" for e, n in zip(exprs, names, strict=False))
        if plan.sync_mode != "append_dedup":
            self.con.execute(f"INSERT INTO {target} ({column_list}) SELECT {select} FROM {source}")
            return
        keys = plan.primary_key
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _mistral_batch AS SELECT {select}, {q(SEQ)} FROM {source}")
        # A record without a value for its key is kept as a row of its own and never merged: NULL
        # equals nothing, so it neither replaces nor is replaced (see the README).
        match = " AND ".join(f"{target}.{q(k)} = _mistral_batch.{q(k)}" for k in keys)
        keyless = " OR ".join(f"{q(k)} IS NULL" for k in keys)
        self.con.execute(f"DELETE FROM {target} USING _mistral_batch WHERE {match}")
        partition = ", ".join(q(k) for k in keys)
        self.con.execute(
            f"INSERT INTO {target} ({column_list}) SELECT {column_list} FROM _mistral_batch "
            f"QUALIFY ({keyless}) OR row_number() OVER (PARTITION BY {partition} ORDER BY {q(SEQ)} DESC) = 1"
        )
        without_key = self.con.execute(f"SELECT count(*) FROM _mistral_batch WHERE {keyless}").fetchone()[0]
        if without_key:
            logger.warning(
                f"{without_key} record(s) of stream {plan.label!r} have no value for primary key "
                f"{', '.join(keys)}: each is kept as a row of its own, never merged."
            )
        self.con.execute("DROP TABLE _mistral_batch")

    def commit(
        self,
        batches: Sequence[tuple[StreamPlan, list[WriteItem]]],
        cache_entries: Iterable[tuple[str, str, Result]],
        completes: Sequence[StreamPlan] = (),
    ) -> None:
        cache_entries = list(cache_entries)
        try:
            self._commit(batches, cache_entries, completes)
        except duckdb.OutOfMemoryException:
            # A record of tens of MB needs several times its size while its JSON is cast; the buffer
            # pool is kept small for the common case, and made roomy only for this commit.
            self.con.execute(f"SET memory_limit = '{ROOMY_MEMORY_LIMIT}'")
            try:
                self._commit(batches, cache_entries, completes)
            finally:
                self.con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")

    def _commit(self, batches, cache_entries, completes) -> None:
        swaps = list({plan.key: plan for plan in completes if plan.staged and plan.key not in self._swapped}.values())
        self.con.begin()
        try:
            for plan, items in batches:
                if items:
                    self._insert_batch(plan, items)
            if self.cache is not None:
                self.cache.store(cache_entries)
            for plan in swaps:
                self._swap(plan)
            self.con.commit()
        except BaseException:
            try:
                self.con.rollback()
            except duckdb.Error:
                pass  # a failed COMMIT has already ended the transaction; its own error is the one to raise
            raise
        self._swapped.update(plan.key for plan in swaps)

    def _swap(self, plan: StreamPlan) -> None:
        """The stream's staging table replaces its table, in the commit that holds its last rows."""
        schema, table = self._table(plan)
        _, staging = self._table(plan, staging=True)
        self.con.execute(f"DROP TABLE IF EXISTS {q(schema)}.{q(table)}")
        self.con.execute(f"ALTER TABLE {q(schema)}.{q(staging)} RENAME TO {q(table)}")
        self.con.execute(
            f"DELETE FROM {GENERATIONS_TABLE} WHERE schema_name = ? AND table_name IN (?, ?)", [schema, staging, table]
        )
        if plan.generation_id is not None and plan.sync_id is not None:
            # The table now holds this sync's generation: a replay of it (another attempt of the same
            # sync) writes there. Without a sync_id a replay cannot be told from a new sync.
            self.con.execute(
                f"INSERT INTO {GENERATIONS_TABLE} VALUES (?, ?, ?, ?)",
                [schema, table, plan.generation_id, plan.sync_id],
            )

    def _generation_applied(self, plan: StreamPlan) -> bool:
        schema, table = self._table(plan)
        return bool(
            self.con.execute(
                f"SELECT count(*) FROM {GENERATIONS_TABLE} WHERE schema_name = ? AND table_name = ? AND generation_id = ? AND sync_id = ?",
                [schema, table, plan.generation_id, plan.sync_id],
            ).fetchone()[0]
        )

    def finish(self) -> None:
        """Nothing is swapped at the end of the input: a staged stream whose COMPLETE never came keeps
        the previous table, and its staging table waits for the next attempt of its generation."""

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.con.close()


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    text = orjson.dumps(value, option=_JSON_OPTIONS)
    return None if text == b"null" else text.decode()  # NaN and the like: read_json gave NULL too


def _vector_array(vectors: list[Any], dim: int | None) -> pa.Array:
    """FLOAT[dim] when every vector has the table's size (one copy into a block, no per-float
    work); otherwise a list column, which DuckDB casts to the table's type or rejects, as before."""
    mask = np.fromiter((v is None for v in vectors), dtype=bool, count=len(vectors))
    present = [np.asarray(v, dtype=np.float32).ravel() for v in vectors if v is not None]
    if dim and all(v.shape[0] == dim for v in present):
        block = np.zeros((len(vectors), dim), dtype=np.float32)
        if present:
            block[~mask] = np.stack(present)
        return pa.FixedSizeListArray.from_arrays(
            pa.array(block.reshape(-1)), dim, mask=pa.array(mask) if mask.any() else None
        )
    return vectors_to_list_array(vectors)


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

"""The DuckDB sink: one table per stream, the namespace as its schema.

Each commit is one transaction holding the records and the cache rows of their results, so a crash
never leaves a record without its cache entry or the reverse. A value that does not fit its
column's type is recorded in `_airbyte_meta` instead of failing the batch. The parts:
`duckdb_connection` opens the file, `duckdb_tables` maps a stream to its table and its columns to
SQL, `duckdb_rows` turns a batch into an Arrow table, `duckdb_commit` writes it in a transaction,
and `duckdb_staging` keeps a staged stream's table and swaps it in."""

from __future__ import annotations

from collections.abc import Sequence

from destination_mistral.settings import OutputSettings
from destination_mistral.sinks.base import (
    Batches,
    CacheEntries,
    WriteItem,
    check_chunk_tables,
    check_distinct_locations,
    report_collapse,
)
from destination_mistral.sinks.cache import ResultCache
from destination_mistral.sinks.chunk_tables import chunk_table
from destination_mistral.sinks.duckdb_chunks import (
    chunk_tables,
    prepare_chunks,
    write_chunks,
)
from destination_mistral.sinks.duckdb_commit import commit_atomically, insert_batch
from destination_mistral.sinks.duckdb_connection import connect
from destination_mistral.sinks.duckdb_dedup import collapse_duplicates
from destination_mistral.sinks.duckdb_staging import StagingTables
from destination_mistral.sinks.duckdb_tables import create_table, evolve_table, existing_columns, quoted
from destination_mistral.sinks.schema import StreamPlan
from destination_mistral.sinks.table_sink import STAGING_PREFIX, TableSink


class DuckDBSink(TableSink):
    def __init__(self, output: OutputSettings, cache_enabled: bool) -> None:
        con = connect(output.path)
        super().__init__(output, ResultCache(con) if cache_enabled else None)
        self.con = con
        self._types: dict[tuple[str | None, str], dict[str, str]] = {}
        self._staging: StagingTables | None = None  # made by start

    def _columns(self, schema: str, table: str) -> dict[str, str]:
        # DuckDB compares identifiers without case: "Reviews_Chunks" is the table "reviews_chunks".
        return existing_columns(self.con, schema, table, any_case=True)

    def start(self, plans: Sequence[StreamPlan]) -> None:
        # DuckDB compares identifiers without case: "Users" and "users" are one table.
        check_distinct_locations(
            plans,
            lambda p: (f"{self.schema_of(p)}.{p.name}".lower(), f"{self.schema_of(p)}.{chunk_table(p.name)}".lower()),
            "the DuckDB table",
        )
        check_chunk_tables(plans, self._stored_columns, "the DuckDB table")
        self._staging = StagingTables(self.con)
        for plan in plans:
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(self.schema_of(plan))}")
            self._prepare_staging(plan)
            schema, table = self._write_table(plan)
            existing = existing_columns(self.con, schema, table)
            if not existing:
                create_table(self.con, schema, table, plan.all_columns())
            else:
                evolve_table(self.con, plan, schema, table, existing)
            if not self.stages(plan) and existing_columns(self.con, *self._table(plan, staging=True)):
                commit_atomically(
                    self.con, lambda p=plan: self._staging.adopt(p, *self._table(p), self._table(p, True)[1])
                )
            types = self._types[plan.key] = existing_columns(self.con, schema, table)
            if existing and plan.sync_mode == "append_dedup" and not self.stages(plan):
                target = f"{quoted(schema)}.{quoted(table)}"
                commit_atomically(
                    self.con,
                    lambda p=plan, t=target, k=types: report_collapse(p, collapse_duplicates(self.con, p, t, k)),
                )
            if plan.chunked:
                commit_atomically(self.con, lambda p=plan: self._prepare_chunks(p))
            elif not self.stages(plan):
                commit_atomically(self.con, lambda p=plan: self._unchunk(p))

    def _unchunk(self, plan: StreamPlan) -> None:
        schema, table = self._table(plan)
        chunk_tables(self.con).unchunk(plan, schema, table, self._table(plan, staging=True)[1])

    def _prepare_chunks(self, plan: StreamPlan) -> None:
        schema, table = self._write_table(plan)
        prepare_chunks(self.con, plan, schema, table)
        if not self.stages(plan):
            chunk_tables(self.con).adopt(schema, table, self._table(plan, staging=True)[1])
            chunk_tables(self.con).remove_orphans(schema, table)

    def commit(self, batches: Batches, cache_entries: CacheEntries, completes: Sequence[StreamPlan] = ()) -> None:
        cache_entries = list(cache_entries)
        swaps = self._pending_swaps(completes)
        commit_atomically(self.con, lambda: self._write(batches, cache_entries, swaps, completes))
        self._swapped.update(plan.key for plan in swaps)

    def _write(self, batches, cache_entries, swaps: list[StreamPlan], completes: Sequence[StreamPlan]) -> None:
        for plan, items in batches:
            if items:
                self._insert_batch(plan, items)
        if self.cache is not None:
            self.cache.store(cache_entries)
        for plan in swaps:
            schema, table = self._table(plan)
            _, staging = self._table(plan, staging=True)
            self._staging.swap(plan, schema, table, staging)
            if plan.chunked:
                chunk_tables(self.con).swap(schema, table, staging)
            else:
                self._unchunk(plan)
        for plan in self._pending_trims(completes):
            self._staging.drop_older_generations(plan, *self._table(plan))
            if plan.chunked:
                chunk_tables(self.con).remove_orphans(*self._table(plan))

    def _insert_batch(self, plan: StreamPlan, items: list[WriteItem]) -> None:
        schema, table = self._write_table(plan)
        insert_batch(self.con, plan, items, f"{quoted(schema)}.{quoted(table)}", self._types[plan.key])
        if plan.chunked:
            write_chunks(self.con, plan, items, schema, table)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.con.close()


__all__ = ["DuckDBSink", "STAGING_PREFIX"]

"""The PostgreSQL sink: one table per stream, the namespace as its schema (else `output.schema`).

As with DuckDB, each commit is one transaction holding the records and the cache rows of their
results, and a staged stream (an overwrite, or a truncate refresh) writes to a staging table that
replaces the stream's table in the commit bringing its COMPLETE status. The parts:
`postgres_connection` connects and sorts failures, `postgres_tables` names tables and types their
columns, `postgres_rows` converts a batch, `postgres_commit` writes it (COPY, upserts),
`postgres_staging` keeps staged streams and `postgres_cache` the answers paid for."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg

from destination_mistral.settings import OutputSettings
from destination_mistral.sinks.base import (
    Batches,
    CacheEntries,
    check_chunk_tables,
    check_distinct_locations,
    report_collapse,
)
from destination_mistral.sinks.chunk_tables import chunk_table
from destination_mistral.sinks.postgres_cache import PostgresCache
from destination_mistral.sinks.postgres_chunks import (
    chunk_tables,
    prepare_chunks,
    rename_chunk_index,
    write_chunks,
)
from destination_mistral.sinks.postgres_commit import collapse_duplicates, write_batch
from destination_mistral.sinks.postgres_connection import cannot_create, connect, index_without_vectors, store_failures
from destination_mistral.sinks.postgres_rows import RowLayout, row_layout
from destination_mistral.sinks.postgres_staging import StagingTables
from destination_mistral.sinks.postgres_tables import (
    VectorSupport,
    build_hnsw_index,
    existing_columns,
    ident,
    pg_name,
    prepare_table,
    table_ref,
    vector_support,
)
from destination_mistral.sinks.schema import StreamPlan
from destination_mistral.sinks.table_sink import STAGING_PREFIX, TableSink


class PostgresSink(TableSink):
    def __init__(self, output: OutputSettings, cache_enabled: bool) -> None:
        self.settings = output.postgres
        self.con = connect(self.settings)
        cache = None
        try:
            with self._transaction():
                self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(output.schema)}")
                if cache_enabled:
                    cache = PostgresCache(self.con, connect(self.settings), output.schema)
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReservedName) as error:
            self.con.close()
            raise cannot_create(self.settings, output.schema, error) from None
        except BaseException:
            self.con.close()
            raise
        super().__init__(output, cache)
        self._layouts: dict[tuple[str | None, str], RowLayout] = {}
        self._staging: StagingTables | None = None  # made by start

    @property
    def location(self) -> str:
        return f"{self.settings.location} (schema {self.output.schema})"

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with store_failures(self.settings), self.con.transaction():
            yield

    def _columns(self, schema: str, table: str) -> dict[str, str]:
        return existing_columns(self.con, schema, table)

    def start(self, plans: Sequence[StreamPlan]) -> None:
        # PostgreSQL compares quoted identifiers with case: "Users" and "users" are two tables.
        check_distinct_locations(
            plans,
            lambda p: tuple(f"{pg_name(self.schema_of(p))}.{pg_name(t)}" for t in (p.name, chunk_table(p.name))),
            "the PostgreSQL table",
        )
        try:
            with self._transaction():
                check_chunk_tables(plans, self._stored_columns, "the PostgreSQL table")
                vectors = vector_support(self.con)
                if self.settings.hnsw_index and vectors.schema is None:
                    raise index_without_vectors(self.settings)
                self._staging = StagingTables(self.con, self.output.schema)
                for plan in plans:
                    self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(self.schema_of(plan))}")
                    self._prepare_staging(plan)
                    self._prepare(plan, vectors, self._write_table(plan))
                    staging = self._table(plan, staging=True)
                    if not self.stages(plan) and existing_columns(self.con, *staging):
                        self._staging.adopt(plan, *self._table(plan), staging[1])
                    if plan.sync_mode == "append_dedup" and not self.stages(plan):
                        report_collapse(plan, collapse_duplicates(self.con, plan, table_ref(*self._table(plan))))
                    if plan.chunked:
                        self._prepare_chunks(plan, vectors)
                    elif not self.stages(plan):
                        schema, table = self._table(plan)
                        chunk_tables(self.con).unchunk(plan, schema, table, STAGING_PREFIX + table)
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReservedName) as error:
            # A schema or table the user may not create: its grants, or `output.schema`, are to fix.
            raise cannot_create(self.settings, self.output.schema, error) from None

    def _prepare_chunks(self, plan: StreamPlan, vectors: VectorSupport) -> None:
        schema, table = self._write_table(plan)
        prepare_chunks(self.con, plan, schema, table, vectors)
        if self.settings.hnsw_index:  # search reads the chunks: their vectors are the ones to index
            chunks = chunk_table(table)
            build_hnsw_index(self.con, plan, schema, chunks, existing_columns(self.con, schema, chunks), vectors)
        if not self.stages(plan):
            chunk_tables(self.con).adopt(schema, table, self._table(plan, staging=True)[1])
            chunk_tables(self.con).remove_orphans(schema, table)

    def _prepare(self, plan: StreamPlan, vectors: VectorSupport, where: tuple[str, str]) -> None:
        columns = prepare_table(self.con, plan, *where, vectors)
        if self.settings.hnsw_index:
            build_hnsw_index(self.con, plan, *where, columns, vectors)
        self._layouts[plan.key] = row_layout(plan, columns)

    def lookup(self, keys: Sequence[str]):
        with store_failures(self.settings):
            return super().lookup(keys)

    def commit(self, batches: Batches, cache_entries: CacheEntries, completes: Sequence[StreamPlan] = ()) -> None:
        cache_entries = list(cache_entries)
        swaps = self._pending_swaps(completes)
        with self._transaction():
            for plan, items in batches:
                if items:
                    write_batch(self.con, plan, items, *self._write_table(plan), self._layouts[plan.key])
                    if plan.chunked:
                        write_chunks(self.con, plan, items, *self._write_table(plan))
            if self.cache is not None:
                self.cache.store(cache_entries)
            for plan in swaps:
                schema, table = self._table(plan)
                self._staging.swap(plan, schema, table, self._table(plan, staging=True)[1])
                if plan.chunked:
                    chunk_tables(self.con).swap(schema, table, self._table(plan, staging=True)[1])
                    rename_chunk_index(self.con, schema, table, self._table(plan, staging=True)[1])
                else:
                    chunk_tables(self.con).unchunk(plan, schema, table, self._table(plan, staging=True)[1])
            for plan in self._pending_trims(completes):
                self._staging.drop_older_generations(plan, *self._table(plan))
                if plan.chunked:
                    chunk_tables(self.con).remove_orphans(*self._table(plan))
        self._swapped.update(plan.key for plan in swaps)

    def close(self) -> None:
        try:
            if self.cache is not None:
                self.cache.close()
        finally:
            self.con.close()


__all__ = ["PostgresSink", "STAGING_PREFIX"]

"""What the two table outputs (DuckDB, PostgreSQL) share: a stream is a table in a schema (the
stream's namespace, else the output's), its staging copy is the table of the same name behind
STAGING_PREFIX in that schema, and the bookkeeping of staged streams is asked of the output's own
StagingTables (which record each copy's generation in a table of their own)."""

from __future__ import annotations

from typing import Protocol

from destination_mistral.sinks.base import StagingSink
from destination_mistral.sinks.chunk_tables import chunk_table
from destination_mistral.sinks.schema import StreamPlan

# Airbyte's own name for a table being written before it replaces the stream's.
STAGING_PREFIX = "_airbyte_tmp_"


class StagingTables(Protocol):
    def swapped_in(self, plan: StreamPlan, schema: str, table: str) -> bool: ...

    def resumable(self, plan: StreamPlan, schema: str, table: str) -> bool: ...

    def restart(self, plan: StreamPlan, schema: str, table: str) -> None: ...


class TableSink(StagingSink):
    _staging: StagingTables | None

    def schema_of(self, plan: StreamPlan) -> str:
        return plan.namespace or self.output.schema

    def _table(self, plan: StreamPlan, staging: bool = False) -> tuple[str, str]:
        return self.schema_of(plan), (STAGING_PREFIX + plan.name if staging else plan.name)

    def _columns(self, schema: str, table: str) -> dict[str, str]:
        """The table's columns and their types; empty when there is no such table."""
        raise NotImplementedError

    def _stored_columns(self, plan: StreamPlan, of_chunks: bool, staging: bool) -> dict[str, str]:
        """The columns of the stream's table (or its staging copy), or of the chunk table of either, as
        earlier syncs left them."""
        schema, table = self._table(plan, staging)
        return self._columns(schema, chunk_table(table) if of_chunks else table)

    def _write_table(self, plan: StreamPlan) -> tuple[str, str]:
        return self._table(plan, staging=self.stages(plan))

    def _swapped_in_earlier(self, plan: StreamPlan) -> bool:
        return self._staging.swapped_in(plan, *self._table(plan))

    def _staging_resumable(self, plan: StreamPlan) -> bool:
        return self._staging.resumable(plan, *self._table(plan, staging=True))

    def _restart_staging(self, plan: StreamPlan) -> None:
        self._staging.restart(plan, *self._table(plan, staging=True))

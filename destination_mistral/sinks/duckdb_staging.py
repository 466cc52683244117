"""The DuckDB side of a staged stream (an overwrite, or a truncate refresh): the `_airbyte_tmp_`
table its rows go to, the swap that puts that table in place of the stream's, and the table that
records which generation each staging table, or each swapped-in table, holds."""

from __future__ import annotations

from destination_mistral.sinks.base import attempt_known
from destination_mistral.sinks.duckdb_tables import existing_columns, quoted
from destination_mistral.sinks.schema import StreamPlan

STAGING_PREFIX = "_airbyte_tmp_"
# Which generation each staging table holds, so that the next attempt of the same generation resumes
# it (the platform keeps generation_id across the attempts of a sync; sync_id may be absent).
GENERATIONS_TABLE = "_mistral_generations"


class StagingTables:
    def __init__(self, con) -> None:
        self.con = con
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {GENERATIONS_TABLE} "
            "(schema_name VARCHAR, table_name VARCHAR, generation_id BIGINT, sync_id BIGINT)"
        )

    def swapped_in(self, plan: StreamPlan, schema: str, table: str) -> bool:
        """Whether the stream's table is the one an earlier attempt of this sync swapped in."""
        return bool(
            self.con.execute(
                f"SELECT count(*) FROM {GENERATIONS_TABLE} WHERE schema_name = ? AND table_name = ? "
                "AND generation_id = ? AND sync_id = ?",
                [schema, table, plan.generation_id, plan.sync_id],
            ).fetchone()[0]
        )

    def resumable(self, plan: StreamPlan, schema: str, staging: str) -> bool:
        """Whether the staging table exists and holds this sync's generation."""
        return bool(
            existing_columns(self.con, schema, staging)
            and self.con.execute(
                f"SELECT count(*) FROM {GENERATIONS_TABLE} WHERE schema_name = ? AND table_name = ? "
                "AND generation_id IS NOT DISTINCT FROM ?",
                [schema, staging, plan.generation_id],
            ).fetchone()[0]
        )

    def restart(self, plan: StreamPlan, schema: str, staging: str) -> None:
        """Drops the staging table, which the caller creates again, empty, for this generation."""
        self.con.execute(f"DROP TABLE IF EXISTS {quoted(schema)}.{quoted(staging)}")
        self.con.execute(f"DELETE FROM {GENERATIONS_TABLE} WHERE schema_name = ? AND table_name = ?", [schema, staging])
        self.con.execute(
            f"INSERT INTO {GENERATIONS_TABLE} VALUES (?, ?, ?, NULL)", [schema, staging, plan.generation_id]
        )

    def swap(self, plan: StreamPlan, schema: str, table: str, staging: str) -> None:
        """The staging table replaces the stream's table, inside the commit that holds its last rows."""
        self.con.execute(f"DROP TABLE IF EXISTS {quoted(schema)}.{quoted(table)}")
        self.con.execute(f"ALTER TABLE {quoted(schema)}.{quoted(staging)} RENAME TO {quoted(table)}")
        self.con.execute(
            f"DELETE FROM {GENERATIONS_TABLE} WHERE schema_name = ? AND table_name IN (?, ?)", [schema, staging, table]
        )
        if attempt_known(plan):
            # The table now holds this sync's generation: a replay of it (another attempt of the same
            # sync) writes there.
            self.con.execute(
                f"INSERT INTO {GENERATIONS_TABLE} VALUES (?, ?, ?, ?)",
                [schema, table, plan.generation_id, plan.sync_id],
            )

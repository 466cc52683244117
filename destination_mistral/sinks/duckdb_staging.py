"""The DuckDB side of a staged stream (an overwrite, or a truncate refresh): the `_airbyte_tmp_`
table its rows go to, the swap that puts that table in place of the stream's, and the table that
records which generation each staging table, or each swapped-in table, holds. Also the other ways
a generation ends: rows below minimum_generation_id removed at the stream's COMPLETE, and a staging
table a later sync that is not a refresh takes in (`adopt`)."""

from __future__ import annotations

import logging

from destination_mistral.sinks.base import attempt_known
from destination_mistral.sinks.duckdb_dedup import DELETED, SEQ, upsert
from destination_mistral.sinks.duckdb_tables import existing_columns, quoted
from destination_mistral.sinks.schema import GENERATION_ID, StreamPlan

logger = logging.getLogger("airbyte")

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

    def drop_older_generations(self, plan: StreamPlan, schema: str, table: str) -> None:
        """Removes the rows of generations below the sync's minimum_generation_id (rows written before
        generations were recorded have none, and count as the oldest)."""
        self.con.execute(
            f"DELETE FROM {quoted(schema)}.{quoted(table)} WHERE {quoted(GENERATION_ID)} IS NULL "
            f"OR {quoted(GENERATION_ID)} < ?",
            [plan.minimum_generation_id],
        )

    def adopt(self, plan: StreamPlan, schema: str, table: str, staging: str) -> None:
        """Takes the rows of a staging table into the stream's table, then drops it. A truncate refresh
        that never got its COMPLETE leaves one behind, and the platform holds the STATEs it released
        for those rows: when a later sync of the stream is no refresh (the refresh was cancelled),
        they belong in the table, appended, or merged by key and cursor as any later rows are."""
        found = {name.lower(): name for name in existing_columns(self.con, schema, staging)}
        if not found:
            return
        target = existing_columns(self.con, schema, table)
        names = list(target)
        exprs = [
            f"TRY_CAST({quoted(found[name.lower()])} AS {kind})" if name.lower() in found else f"NULL::{kind}"
            for name, kind in target.items()
        ]
        select = ", ".join(f"{expr} AS {quoted(name)}" for expr, name in zip(exprs, names, strict=True))
        source = f"{quoted(schema)}.{quoted(staging)}"
        destination = f"{quoted(schema)}.{quoted(table)}"
        count = self.con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
        if plan.sync_mode == "append_dedup":
            rows = f"SELECT {select}, row_number() OVER () AS {quoted(SEQ)}, false AS {quoted(DELETED)} FROM {source}"
            upsert(self.con, plan, destination, names, rows, target)
        else:
            columns = ", ".join(quoted(name) for name in names)
            self.con.execute(f"INSERT INTO {destination} ({columns}) SELECT {select} FROM {source}")
        self.con.execute(f"DROP TABLE {source}")
        self.con.execute(f"DELETE FROM {GENERATIONS_TABLE} WHERE schema_name = ? AND table_name = ?", [schema, staging])
        logger.info(
            f"Stream {plan.label}: {count} row(s) left in {staging} by a truncate refresh that did not complete were "
            "moved into the table, since their STATEs were acknowledged and this sync is not a refresh."
        )

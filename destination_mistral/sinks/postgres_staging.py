"""The PostgreSQL side of a staged stream (an overwrite, or a truncate refresh): the `_airbyte_tmp_`
table its rows go to, the swap that puts it in place of the stream's table inside the commit that
brings the stream's COMPLETE status (PostgreSQL's DDL is transactional: readers see the old table or
the new one, never none), and the table recording which generation each staging table, or each
swapped-in table, holds. Also the other ways a generation ends: rows below minimum_generation_id
removed at the stream's COMPLETE, and a staging table a later sync that is not a refresh takes in."""

from __future__ import annotations

import logging

from destination_mistral.sinks.base import attempt_known
from destination_mistral.sinks.postgres_commit import DELETED, SEQ, merge
from destination_mistral.sinks.postgres_tables import existing_columns, ident, index_name, pg_name, table_ref
from destination_mistral.sinks.schema import GENERATION_ID, StreamPlan

logger = logging.getLogger("airbyte")

GENERATIONS_TABLE = "_mistral_generations"


class StagingTables:
    def __init__(self, con, schema: str) -> None:
        """Keeps its records in `schema` (the output's default schema)."""
        self.con = con
        self.table = table_ref(schema, GENERATIONS_TABLE)
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} "
            "(schema_name text, table_name text, generation_id bigint, sync_id bigint)"
        )

    def _count(self, condition: str, values: tuple) -> int:
        return self.con.execute(f"SELECT count(*) FROM {self.table} WHERE {condition}", values).fetchone()[0]

    def swapped_in(self, plan: StreamPlan, schema: str, table: str) -> bool:
        """Whether the stream's table is the one an earlier attempt of this sync swapped in."""
        return bool(
            self._count(
                "schema_name = %s AND table_name = %s AND generation_id = %s AND sync_id = %s",
                (schema, table, plan.generation_id, plan.sync_id),
            )
        )

    def resumable(self, plan: StreamPlan, schema: str, staging: str) -> bool:
        """Whether the staging table exists and holds this sync's generation."""
        return bool(existing_columns(self.con, schema, staging)) and bool(
            self._count(
                "schema_name = %s AND table_name = %s AND generation_id IS NOT DISTINCT FROM %s",
                (schema, staging, plan.generation_id),
            )
        )

    def restart(self, plan: StreamPlan, schema: str, staging: str) -> None:
        """Drops the staging table, which the caller creates again, empty, for this generation."""
        self.con.execute(f"DROP TABLE IF EXISTS {table_ref(schema, staging)}")
        self.con.execute(f"DELETE FROM {self.table} WHERE schema_name = %s AND table_name = %s", (schema, staging))
        self.con.execute(f"INSERT INTO {self.table} VALUES (%s, %s, %s, NULL)", (schema, staging, plan.generation_id))

    def swap(self, plan: StreamPlan, schema: str, table: str, staging: str) -> None:
        """The staging table replaces the stream's table, inside the commit that holds its last rows."""
        self.con.execute(f"DROP TABLE IF EXISTS {table_ref(schema, table)}")
        self.con.execute(f"ALTER TABLE {table_ref(schema, staging)} RENAME TO {ident(table)}")
        # Index names are per schema: the staging table's index takes the name the next staging
        # table's would otherwise collide with.
        self.con.execute(
            f"ALTER INDEX IF EXISTS {table_ref(schema, index_name(staging))} RENAME TO {ident(index_name(table))}"
        )
        self.con.execute(
            f"DELETE FROM {self.table} WHERE schema_name = %s AND table_name IN (%s, %s)", (schema, staging, table)
        )
        if attempt_known(plan):
            # The table now holds this sync's generation: a replay of it (another attempt of the
            # same sync) writes there.
            self.con.execute(
                f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s)", (schema, table, plan.generation_id, plan.sync_id)
            )

    def drop_older_generations(self, plan: StreamPlan, schema: str, table: str) -> None:
        """Removes the rows of generations below the sync's minimum_generation_id (rows written before
        generations were recorded have none, and count as the oldest)."""
        generation = ident(GENERATION_ID)
        self.con.execute(
            f"DELETE FROM {table_ref(schema, table)} WHERE {generation} IS NULL OR {generation} < %s",
            (plan.minimum_generation_id,),
        )

    def adopt(self, plan: StreamPlan, schema: str, table: str, staging: str) -> None:
        """Takes the rows of a staging table into the stream's table, then drops it. A truncate refresh
        that never got its COMPLETE leaves one behind, and the platform holds the STATEs it released
        for those rows: when a later sync of the stream is no refresh (the refresh was cancelled),
        they belong in the table, appended, or merged by key and cursor as any later rows are."""
        present = existing_columns(self.con, schema, staging)
        stored = existing_columns(self.con, schema, table)
        names = [name for name in stored if name in present]
        source, target = table_ref(schema, staging), table_ref(schema, table)
        columns = ", ".join(ident(name) for name in names)
        count = self.con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
        if plan.sync_mode == "append_dedup":
            into = f"({columns}, {ident(SEQ)}, {ident(DELETED)})"
            select = f"SELECT {columns}, row_number() OVER (), false FROM {source}"
            merge(
                self.con,
                plan,
                target,
                names,
                lambda batch: self.con.execute(f"INSERT INTO {batch} {into} {select}"),
                cursor_json=stored.get(pg_name(plan.cursor_field or "")) == "jsonb",
            )
        else:
            self.con.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {source}")
        self.con.execute(f"DROP TABLE {source}")
        self.con.execute(f"DELETE FROM {self.table} WHERE schema_name = %s AND table_name = %s", (schema, staging))
        logger.info(
            f"Stream {plan.label}: {count} row(s) left in {staging} by a truncate refresh that did not complete were "
            "moved into the table, since their STATEs were acknowledged and this sync is not a refresh."
        )

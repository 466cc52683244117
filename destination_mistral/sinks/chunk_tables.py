"""What the two table outputs do alike to a chunked stream's `<table>_chunks`, in the SQL both
speak; each gives its own quoting and column listing. The rule they keep is stated in
duckdb_chunks.py: a chunk row exists exactly for the records its table holds, matched by raw id."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from destination_mistral.sinks.base import WriteItem
from destination_mistral.sinks.schema import CHUNKS_SUFFIX, EXTRACTED_AT, GENERATION_ID, RAW_ID, StreamPlan

logger = logging.getLogger("airbyte")


def report_unchunked(plan: StreamPlan, removed: str) -> None:
    logger.info(f"Stream {plan.label!r} is no longer chunked: its chunks ({removed}) were removed with it.")


def chunk_table(table: str) -> str:
    return table + CHUNKS_SUFFIX


def copied_columns(plan: StreamPlan) -> list[str]:
    """The columns of a chunk's row taken from its record's row."""
    return list(dict.fromkeys([RAW_ID, *plan.primary_key, *plan.chunk_fields, EXTRACTED_AT, GENERATION_ID]))


def chunked_items(items: list[WriteItem]) -> list[tuple[str, dict]]:
    """(raw id, chunk) of every chunk of the items whose result holds chunks (error rows have none)."""
    return [
        (item.raw_id, chunk)
        for item in items
        if item.result is not None and item.result.ok and isinstance(item.result.value, list)
        for chunk in item.result.value
    ]


@dataclass(frozen=True)
class ChunkTables:
    con: object
    quote: Callable[[str], str]  # an identifier, quoted
    columns: Callable[[object, str, str], dict[str, str]]  # a table's columns and types; empty: none

    def ref(self, schema: str, table: str) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}"

    def adopt(self, schema: str, table: str, staging: str) -> None:
        """Moves the chunks of a staging copy whose rows the stream's table took in, then drops them."""
        source = self.columns(self.con, schema, chunk_table(staging))
        if not source:
            return
        names = [name for name in self.columns(self.con, schema, chunk_table(table)) if name in source]
        columns = ", ".join(self.quote(n) for n in names)
        self.con.execute(
            f"INSERT INTO {self.ref(schema, chunk_table(table))} ({columns}) "
            f"SELECT {columns} FROM {self.ref(schema, chunk_table(staging))}"
        )
        self.drop(schema, staging)

    def drop(self, schema: str, table: str) -> bool:
        """Drops the chunk table of `table`; whether there was one."""
        existed = bool(self.columns(self.con, schema, chunk_table(table)))
        self.con.execute(f"DROP TABLE IF EXISTS {self.ref(schema, chunk_table(table))}")
        return existed

    def unchunk(self, plan: StreamPlan, schema: str, table: str, staging: str) -> None:
        """A stream no longer chunked (its enrichment has no `chunking` now) keeps no chunk table: the
        records it writes carry their own vector, and chunks of records it replaces would outlive
        them. For a staged stream this happens with the swap, so a failed sync keeps the old ones."""
        if self.drop(schema, table) | self.drop(schema, staging):
            report_unchunked(plan, chunk_table(table))

    def swap(self, schema: str, table: str, staging: str) -> None:
        """The staging copy's chunks replace the stream's, in the commit that swaps the copy in."""
        self.drop(schema, table)
        self.con.execute(
            f"ALTER TABLE {self.ref(schema, chunk_table(staging))} RENAME TO {self.quote(chunk_table(table))}"
        )

    def remove_orphans(self, schema: str, table: str) -> None:
        """Removes the chunks whose record the table no longer holds."""
        raw_id = self.quote(RAW_ID)
        self.con.execute(
            f"DELETE FROM {self.ref(schema, chunk_table(table))} c WHERE NOT EXISTS "
            f"(SELECT 1 FROM {self.ref(schema, table)} p WHERE p.{raw_id} = c.{raw_id})"
        )

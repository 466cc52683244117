"""append_dedup in DuckDB: one row per primary key, the record with the newest cursor winning.

The rule (the JSONL sink keeps the same one, in `dedup.py`): among the records of a key, the one
whose cursor is greatest wins, a null cursor counting as older than any value and, between equal
cursors (or without a cursor field), the later record winning. A batch is first reduced to its
winner per key, which then replaces the row in place unless that row's cursor is newer. A winner
that is a CDC delete removes the row and is not stored. A record without a value for its key is a
row of its own, never merged (NULL equals nothing).

The same upsert takes the rows of a staging table left by an interrupted truncate refresh, when a
later sync that is not a refresh finds it (see duckdb_staging.py)."""

from __future__ import annotations

from collections.abc import Mapping

from destination_mistral.sinks.base import warn_keyless
from destination_mistral.sinks.duckdb_tables import quoted
from destination_mistral.sinks.schema import EXTRACTED_AT, StreamPlan

# The batch's input order, and whether a record is a CDC delete: columns of the batch beside the table's.
SEQ = "_mistral_seq"
DELETED = "_mistral_deleted"
BATCH = "_mistral_batch"
WINNERS = "_mistral_winners"


def cursor_keys(plan: StreamPlan, types: Mapping[str, str]):
    """The cursor as the two keys it is ordered by, each a function of a table's name ('' for no
    prefix): a typed cursor column compares as its type (the second key is the same); a JSON one
    (the schema gives several types or none, or the field changed type: type_widening.py) would
    compare as text, 9 above 10, so its numbers compare as numbers and its other values as text
    (between the two kinds, `upsert` lets the later record win), as `dedup.py` orders them for JSON
    Lines. The column's type is the table's (`types`, its columns' types), which may be wider than
    the stream declares."""
    name = quoted(plan.cursor_field or "")
    cursor = (plan.cursor_field or "").lower()
    json = next((kind for column, kind in types.items() if column.lower() == cursor), "JSON") == "JSON"

    def column(table: str) -> str:
        return f"{table}.{name}" if table else name

    if not json:
        return column, column
    return (lambda table: f"TRY_CAST({column(table)} AS DOUBLE)"), (lambda table: f"CAST({column(table)} AS VARCHAR)")


def upsert(con, plan: StreamPlan, target: str, names: list[str], rows: str, types: Mapping[str, str]) -> None:
    """Merges `rows` (a SELECT giving the table's columns `names`, typed as the table's, then SEQ and
    DELETED) into `target` (a quoted schema.table, whose columns have `types`) by the plan's
    primary key and cursor."""
    keys = [quoted(k) for k in plan.primary_key]
    columns = ", ".join(quoted(n) for n in names)
    keyless = " OR ".join(f"{k} IS NULL" for k in keys)
    numeric, text = cursor_keys(plan, types)
    order = (f"{numeric('')} DESC NULLS LAST, {text('')} DESC NULLS LAST, " if plan.cursor_field else "") + (
        f"{quoted(SEQ)} DESC"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {BATCH} AS {rows}")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {WINNERS} AS SELECT * FROM {BATCH} WHERE NOT ({keyless}) "
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} ORDER BY {order}) = 1"
    )
    match = " AND ".join(f"{target}.{k} = {WINNERS}.{k}" for k in keys)
    if plan.cursor_field:
        cursor = quoted(plan.cursor_field)
        new_n, new_t, held_n, held_t = numeric(WINNERS), text(WINNERS), numeric(target), text(target)
        # A winner older than the row in place changes nothing: a source may send an old version late.
        # Between a number and another kind of value (a JSON cursor whose field changed type), the
        # later record wins.
        con.execute(
            f"DELETE FROM {WINNERS} USING {target} WHERE {match} AND {target}.{cursor} IS NOT NULL "
            f"AND ({WINNERS}.{cursor} IS NULL OR ({held_n} IS NOT NULL AND {new_n} IS NOT NULL AND {new_n} < {held_n}) "
            f"OR ({held_n} IS NULL AND {new_n} IS NULL AND {new_t} < {held_t}))"
        )
    con.execute(f"DELETE FROM {target} USING {WINNERS} WHERE {match}")
    con.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {WINNERS} WHERE NOT {quoted(DELETED)}")
    con.execute(
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {BATCH} WHERE ({keyless}) AND NOT {quoted(DELETED)}"
    )
    warn_keyless(plan, con.execute(f"SELECT count(*) FROM {BATCH} WHERE {keyless}").fetchone()[0])
    con.execute(f"DROP TABLE {WINNERS}")
    con.execute(f"DROP TABLE {BATCH}")


def collapse_duplicates(con, plan: StreamPlan, target: str, types: Mapping[str, str]) -> int:
    """Keeps one row per key in `target` (a quoted schema.table), by the rule above, and returns how
    many rows it removed. A table written in append or overwrite holds every version of a key: when
    the stream becomes append_dedup, its older versions go at once (as Airbyte's destinations
    rebuild a table whose sync mode changed), not only when each key arrives again."""
    keys = [quoted(k) for k in plan.primary_key]
    keyed = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    numeric, text = cursor_keys(plan, types)
    order = (f"{numeric('')} DESC NULLS LAST, {text('')} DESC NULLS LAST, " if plan.cursor_field else "") + (
        f"{quoted(EXTRACTED_AT)} DESC NULLS LAST, rowid DESC"
    )
    removed = con.execute(
        f"DELETE FROM {target} WHERE rowid IN (SELECT rowid FROM (SELECT rowid, row_number() OVER "
        f"(PARTITION BY {', '.join(keys)} ORDER BY {order}) AS place FROM {target} WHERE {keyed}) WHERE place > 1)"
    ).fetchone()
    return removed[0] if removed else 0

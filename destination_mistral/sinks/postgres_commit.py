"""How a PostgreSQL commit writes one stream's batch: appended with COPY, or (append_dedup) upserted
by primary key, with the configured cursor deciding between two records of one key.

The dedup rule, within the batch and against the rows already stored: the record with the greater
cursor wins, a null cursor is older than any value, and of two records with equal cursors (or with
no cursor configured) the later one wins. A record whose `_ab_cdc_deleted_at` is set (a CDC
delete) that wins removes its key's row and is not stored itself. A record without a value for
its key is a row of its own and never merged (NULL equals nothing), as in the DuckDB output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from destination_mistral.sinks.base import WriteItem, warn_keyless
from destination_mistral.sinks.postgres_rows import RowLayout, batch_rows
from destination_mistral.sinks.postgres_tables import ident, table_ref
from destination_mistral.sinks.schema import EXTRACTED_AT, StreamPlan

BATCH_TABLE = "_mistral_batch"
SEQ = "_mistral_seq"
DELETED = "_mistral_deleted"


def write_batch(con, plan: StreamPlan, items: Sequence[WriteItem], schema: str, table: str, layout: RowLayout) -> None:
    rows = batch_rows(plan, items, layout)
    if plan.sync_mode != "append_dedup":
        copy_rows(con, table_ref(schema, table), layout.names, rows)
        return
    marked = [(*row, item.seq, plan.deletes(item.record)) for row, item in zip(rows, items, strict=False)]
    kinds = dict(zip(layout.names, layout.kinds, strict=True))
    merge(
        con,
        plan,
        table_ref(schema, table),
        layout.names,
        lambda batch: copy_rows(con, batch, [*layout.names, SEQ, DELETED], marked),
        cursor_json=kinds.get(plan.cursor_field or "") == "json",
    )
    keys = plan.primary_key
    warn_keyless(plan, sum(1 for item in items if any(item.record.get(k) is None for k in keys)))


def merge(
    con, plan: StreamPlan, target: str, names: list[str], fill: Callable[[str], None], *, cursor_json: bool
) -> None:
    """Upserts into `target` the rows `fill` puts in the batch table it is given (the columns `names`,
    then SEQ and DELETED). `cursor_json`: the table holds the cursor as jsonb (its field changed type)."""
    batch = ident(BATCH_TABLE)
    con.execute(f"DROP TABLE IF EXISTS pg_temp.{batch}")
    # The batch table has the target's column types, so that cursors compare as the stored rows do.
    con.execute(f"CREATE TEMP TABLE {batch} (LIKE {target})")
    con.execute(f"ALTER TABLE {batch} ADD COLUMN {ident(SEQ)} bigint, ADD COLUMN {ident(DELETED)} boolean")
    fill(batch)
    _upsert(con, plan, target, batch, names, cursor_json)
    con.execute(f"DROP TABLE {batch}")


def copy_rows(con, target: str, names: list[str], rows: list[tuple[Any, ...]]) -> None:
    with (
        con.cursor() as cursor,
        cursor.copy(f"COPY {target} ({', '.join(ident(n) for n in names)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _upsert(con, plan: StreamPlan, target: str, batch: str, names: list[str], cursor_json: bool) -> None:
    keys = [ident(k) for k in plan.primary_key]
    keyed = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    cursor = plan.cursor_field
    order = (f"{ident(cursor)} DESC NULLS LAST, " if cursor else "") + f"{ident(SEQ)} DESC"
    # Within the batch: only the winner of each key stays.
    con.execute(
        f"DELETE FROM {batch} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, row_number() OVER "
        f"(PARTITION BY {', '.join(keys)} ORDER BY {order}) AS place FROM {batch} WHERE {keyed}) ranked "
        "WHERE place > 1)"
    )
    same_key = " AND ".join(f"t.{k} = b.{k}" for k in keys)
    # Against the stored rows: the batch's record wins unless the stored row's cursor is newer. A
    # JSON cursor (its field's type changed: type_widening.py) compares values of one JSON kind, and
    # between two kinds the later record wins, as in the other outputs.
    wins = "TRUE"
    if cursor:
        held, new = f"t.{ident(cursor)}", f"b.{ident(cursor)}"
        kinds = f" OR jsonb_typeof({held}) <> jsonb_typeof({new})" if cursor_json else ""
        wins = f"({held} IS NULL OR {new} >= {held}{kinds})"
    con.execute(f"DELETE FROM {target} t USING {batch} b WHERE {same_key} AND {wins}")
    con.execute(f"DELETE FROM {batch} b WHERE EXISTS (SELECT 1 FROM {target} t WHERE {same_key})")
    columns = ", ".join(ident(n) for n in names)
    con.execute(
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {batch} WHERE NOT {ident(DELETED)} "
        f"ORDER BY {ident(SEQ)}"
    )


def collapse_duplicates(con, plan: StreamPlan, target: str) -> int:
    """Keeps one row per key in `target` by the rule above (of equal cursors, the row extracted
    last) and returns how many rows it removed: a table written in append or overwrite holds every
    version of a key, and when the stream becomes append_dedup its older versions go at once."""
    keys = [ident(k) for k in plan.primary_key]
    keyed = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    cursor = plan.cursor_field
    order = (
        f"{ident(cursor)} DESC NULLS LAST, " if cursor else ""
    ) + f"{ident(EXTRACTED_AT)} DESC NULLS LAST, ctid DESC"
    return con.execute(
        f"DELETE FROM {target} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, row_number() OVER "
        f"(PARTITION BY {', '.join(keys)} ORDER BY {order}) AS place FROM {target} WHERE {keyed}) ranked "
        "WHERE place > 1)"
    ).rowcount

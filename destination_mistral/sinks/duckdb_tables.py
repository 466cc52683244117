"""A stream's DuckDB table and how its columns map to SQL: quoting, creating and evolving the table,
and the expressions that cast each JSON field to its column's type and name in `_airbyte_meta` a
value that does not fit, instead of failing the batch."""

from __future__ import annotations

from destination_mistral.sinks.schema import EMBEDDING, EXTRACTED_AT, GENERATION_ID, META, Column, StreamPlan
from destination_mistral.sinks.type_widening import column_change
from mistral_connection.errors import config_error

# The JSON text of the changes made before the sink, a column of the batch beside the record's.
EARLIER_CHANGES = "_mistral_changes"
INTEGER_TYPES = frozenset({"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT"})
CHANGES_TYPE = '[{"field": "VARCHAR", "change": "VARCHAR", "reason": "VARCHAR"}]'


# information_schema names of the moment types, which convert to JSON as ISO 8601 text.
_MOMENTS = frozenset({"TIMESTAMP WITH TIME ZONE", "TIMESTAMP"})


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def existing_columns(con, schema: str, table: str, any_case: bool = False) -> dict[str, str]:
    """The table's columns and their types, in order; empty when there is no such table. `any_case`:
    the names as DuckDB resolves them, without case."""
    match = (
        "lower(table_schema) = lower(?) AND lower(table_name) = lower(?)"
        if any_case
        else "table_schema = ? AND table_name = ?"
    )
    rows = con.execute(
        f"SELECT column_name, data_type FROM information_schema.columns WHERE {match} ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return {name: kind for name, kind in rows}


def create_table(con, schema: str, table: str, columns: list[Column]) -> None:
    body = ", ".join(f"{quoted(c.name)} {c.sql_type}" for c in columns)
    con.execute(f"CREATE TABLE {quoted(schema)}.{quoted(table)} ({body})")


def evolve_table(con, plan: StreamPlan, schema: str, table: str, existing: dict[str, str]) -> None:
    """Adds the columns the table lacks and changes those the stream now types otherwise, keeping
    their values (type_widening.py); an embedding column of another size is a config error."""
    lowered = {name.lower(): kind for name, kind in existing.items()}
    for column in plan.all_columns():
        current = lowered.get(column.name.lower())
        if current is None:
            con.execute(
                f"ALTER TABLE {quoted(schema)}.{quoted(table)} ADD COLUMN {quoted(column.name)} {column.sql_type}"
            )
        elif column.name == EMBEDDING and plan.embedding_dim and current != column.sql_type:
            raise config_error(
                f"Table {schema}.{table} holds embeddings of type {current} but this sync produces "
                f"{column.sql_type} (another model or output_dimension): use overwrite once, or write to another "
                "table or file."
            )
        elif column in plan.columns:
            kind = column_change(current, column.sql_type, cursor=column.name == plan.cursor_field)
            if kind is not None:
                target = f"{quoted(schema)}.{quoted(table)}"
                value = quoted(column.name)
                if current in _MOMENTS:
                    # As ISO 8601 text (DuckDB's own writing has a space for the T), as new values come.
                    value = f"replace(CAST({value} AS VARCHAR), ' ', 'T')"
                using = f" USING to_json({value})" if kind == "JSON" else ""
                con.execute(f"ALTER TABLE {target} ALTER COLUMN {quoted(column.name)} TYPE {kind}{using}")


def column_exprs(plan: StreamPlan, target_types: dict[str, str]) -> tuple[list[str], list[str]]:
    """The table's column names, and for each the expression that computes it from the batch."""
    exprs: list[str] = []
    names: list[str] = []
    for column in plan.columns:
        names.append(column.name)
        exprs.append(select_expr(column, target_types.get(column.name, column.sql_type)))
    for column in plan.meta_columns():
        names.append(column.name)
        if column.name == EXTRACTED_AT:
            exprs.append(f"to_timestamp({quoted(column.name)} / 1000.0)")
        elif column.name == META:
            exprs.append(meta_expr(plan, target_types))
        elif column.name == GENERATION_ID:
            exprs.append(f"{int(plan.generation_id)}::BIGINT" if plan.generation_id is not None else "NULL::BIGINT")
        else:
            exprs.append(quoted(column.name))
    return names, exprs


def meta_expr(plan: StreamPlan, target_types: dict[str, str]) -> str:
    """`_airbyte_meta` as Airbyte destinations write it: a value that does not fit its column's type
    (the string "five" for an integer, an object for a date) is stored as NULL and named here, so
    the loss is visible per record instead of silent."""
    checks = []
    for column in plan.columns:
        target = target_types.get(column.name, column.sql_type)
        if target in ("JSON", "VARCHAR"):
            continue
        source = quoted(column.name)
        checks.append(
            f"CASE WHEN json_type({source}) <> 'NULL' AND {select_expr(column, target)} IS NULL "
            f"THEN {sql_str(column.name)} END"
        )
    fields = "[" + ", ".join(checks + ["NULL::VARCHAR"]) + "]"
    sync = f"'sync_id': {int(plan.sync_id)}, " if plan.sync_id is not None else ""
    # Changes made before the sink (the source's own, a stand-in row's) come first, as JSON text.
    earlier = f"coalesce(from_json({quoted(EARLIER_CHANGES)}, '{CHANGES_TYPE}'), [])"
    return (
        f"to_json({{{sync}'changes': list_concat({earlier}, "
        f"list_transform(list_filter({fields}, lambda x: x IS NOT NULL), "
        "lambda f: {'field': f, 'change': 'NULLED', 'reason': 'DESTINATION_TYPECAST_ERROR'}))})"
    )


def select_expr(column: Column, target_type: str) -> str:
    source = quoted(column.name)
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

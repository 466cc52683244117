"""The chunks of a chunked-embeddings stream in PostgreSQL, kept in step with the stream's table by
the record's raw id as in DuckDB (duckdb_chunks.py, whose docstring states the rule): chunk rows are
inserted by a join on the stream's table, and the chunks whose record is gone are removed in the
transaction that removed it. The embedding is pgvector's `vector(n)` when the database has it, else
`real[]`, as in the stream's table."""

from __future__ import annotations

from destination_mistral.sinks.base import WriteItem
from destination_mistral.sinks.chunk_tables import ChunkTables, chunk_table, chunked_items, copied_columns
from destination_mistral.sinks.postgres_commit import copy_rows
from destination_mistral.sinks.postgres_rows import storable_text, vector_text
from destination_mistral.sinks.postgres_tables import (
    VectorSupport,
    existing_columns,
    ident,
    index_name,
    pg_name,
    table_ref,
    vector_dimension,
)
from destination_mistral.sinks.schema import CHUNK_INDEX, CHUNK_TEXT, CHUNK_TOKENS, EMBEDDING, RAW_ID, StreamPlan
from mistral_connection.errors import config_error

_BATCH = "_mistral_chunk_batch"


def prepare_chunks(con, plan: StreamPlan, schema: str, table: str, vectors: VectorSupport) -> None:
    """Creates or evolves the chunk table of `table`; removes the chunks of records no longer there."""
    parent = existing_columns(con, schema, table)
    vector = vectors.embedding_type(plan.embedding_dim)
    wanted = [(name, parent[pg_name(name)]) for name in copied_columns(plan)]
    wanted += [(CHUNK_INDEX, "integer"), (CHUNK_TEXT, "text"), (CHUNK_TOKENS, "integer"), (EMBEDDING, vector)]
    target = table_ref(schema, chunk_table(table))
    existing = existing_columns(con, schema, chunk_table(table))
    if not existing:
        con.execute(f"CREATE TABLE {target} ({', '.join(f'{ident(n)} {k}' for n, k in wanted)})")
    for name, kind in wanted if existing else ():
        stored = existing.get(pg_name(name))
        if stored is None:
            con.execute(f"ALTER TABLE {target} ADD COLUMN {ident(name)} {kind}")
        elif name == EMBEDDING and vector_dimension(stored) not in (None, plan.embedding_dim):
            raise config_error(
                f"Table {schema}.{chunk_table(table)} holds embeddings of type {stored} but this sync produces {kind} "
                "(another model or output_dimension): use overwrite once, or write to another table."
            )
        elif name != EMBEDDING and stored != kind:  # the record's column was widened: follow it
            cast = f"to_jsonb({ident(name)})" if kind == "jsonb" else f"{ident(name)}::{kind}"
            con.execute(f"ALTER TABLE {target} ALTER COLUMN {ident(name)} TYPE {kind} USING {cast}")
    chunk_tables(con).remove_orphans(schema, table)


def chunk_tables(con) -> ChunkTables:
    return ChunkTables(con, ident, existing_columns)


def write_chunks(con, plan: StreamPlan, items: list[WriteItem], schema: str, table: str) -> None:
    """After the batch's records are in `table`: drops the chunks of the rows they replaced
    (append_dedup) and inserts the chunks of the records the table now holds."""
    if plan.sync_mode == "append_dedup":
        chunk_tables(con).remove_orphans(schema, table)
    chunks = chunked_items(items)
    if not chunks:
        return
    kind = existing_columns(con, schema, chunk_table(table))[pg_name(EMBEDDING)]
    vector = "vector" if "vector" in kind else "array"
    batch = ident(_BATCH)
    con.execute(f"DROP TABLE IF EXISTS pg_temp.{batch}")
    con.execute(
        f"CREATE TEMP TABLE {batch} (raw_id text, chunk_index integer, chunk_text text, chunk_tokens integer, "
        f"vector {kind})"
    )
    rows = [
        (raw_id, chunk["index"], storable_text(chunk["text"]), chunk["tokens"], vector_text(chunk["vector"], vector))
        for raw_id, chunk in chunks
    ]
    copy_rows(con, batch, ["raw_id", "chunk_index", "chunk_text", "chunk_tokens", "vector"], rows)
    copied = copied_columns(plan)
    columns = ", ".join(ident(n) for n in [*copied, CHUNK_INDEX, CHUNK_TEXT, CHUNK_TOKENS, EMBEDDING])
    select = ", ".join([*(f"p.{ident(n)}" for n in copied), "b.chunk_index", "b.chunk_text", "b.chunk_tokens"])
    con.execute(
        f"INSERT INTO {table_ref(schema, chunk_table(table))} ({columns}) SELECT {select}, b.vector "
        f"FROM {batch} b JOIN {table_ref(schema, table)} p ON p.{ident(RAW_ID)} = b.raw_id"
    )
    con.execute(f"DROP TABLE {batch}")


def rename_chunk_index(con, schema: str, table: str, staging: str) -> None:
    """After a swap: the staging chunk table's HNSW index takes the stream's index name, which the
    next staging copy's index would otherwise collide with (index names are per schema)."""
    con.execute(
        f"ALTER INDEX IF EXISTS {table_ref(schema, index_name(chunk_table(staging)))} "
        f"RENAME TO {ident(index_name(chunk_table(table)))}"
    )

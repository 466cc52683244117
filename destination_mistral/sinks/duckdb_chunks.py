"""The chunks of a chunked-embeddings stream in DuckDB: the table `<table>_chunks` beside the
stream's table (or its staging copy), one row per chunk of each record stored there.

The two are kept in step by the record's raw id: chunk rows are inserted by a join on the stream's
table, so only the records it holds get chunks (a record that lost to a newer cursor, or a CDC delete,
gets none), and the chunks whose record is no longer there (replaced in append_dedup, removed by a
generation's end, left by an interrupted staging copy) are removed in the same transaction that
removed the record. The key, metadata, extraction time and generation are copied from the record's
row, so they have its column types."""

from __future__ import annotations

import pyarrow as pa

from destination_mistral.sinks.base import WriteItem
from destination_mistral.sinks.chunk_tables import ChunkTables, chunk_table, chunked_items, copied_columns
from destination_mistral.sinks.duckdb_rows import vector_array
from destination_mistral.sinks.duckdb_tables import existing_columns, quoted
from destination_mistral.sinks.schema import (
    CHUNK_INDEX,
    CHUNK_TEXT,
    CHUNK_TOKENS,
    EMBEDDING,
    RAW_ID,
    StreamPlan,
)
from mistral_connection.errors import config_error

_CHUNKS_VIEW = "_mistral_chunk_batch"


def prepare_chunks(con, plan: StreamPlan, schema: str, table: str) -> None:
    """Creates or evolves the chunk table of `table`, whose columns it copies; moves in the chunks
    of a staging copy the stream's table adopted; removes the chunks of records no longer there."""
    parent = {name.lower(): kind for name, kind in existing_columns(con, schema, table).items()}
    vector = f"FLOAT[{plan.embedding_dim}]" if plan.embedding_dim else "FLOAT[]"
    wanted = [(name, parent[name.lower()]) for name in copied_columns(plan)]
    wanted += [(CHUNK_INDEX, "INTEGER"), (CHUNK_TEXT, "VARCHAR"), (CHUNK_TOKENS, "INTEGER"), (EMBEDDING, vector)]
    target = f"{quoted(schema)}.{quoted(chunk_table(table))}"
    existing = {name.lower(): kind for name, kind in existing_columns(con, schema, chunk_table(table)).items()}
    if not existing:
        con.execute(f"CREATE TABLE {target} ({', '.join(f'{quoted(n)} {k}' for n, k in wanted)})")
    for name, kind in wanted if existing else ():
        stored = existing.get(name.lower())
        if stored is None:
            con.execute(f"ALTER TABLE {target} ADD COLUMN {quoted(name)} {kind}")
        elif name == EMBEDDING and plan.embedding_dim and stored != kind:
            raise config_error(
                f"Table {schema}.{chunk_table(table)} holds embeddings of type {stored} but this sync produces {kind} "
                "(another model or output_dimension): use overwrite once, or write to another table or file."
            )
        elif stored != kind and name != EMBEDDING:  # the record's column was widened: follow it
            con.execute(f"ALTER TABLE {target} ALTER COLUMN {quoted(name)} TYPE {kind}")
    chunk_tables(con).remove_orphans(schema, table)


def chunk_tables(con) -> ChunkTables:
    return ChunkTables(con, quoted, existing_columns)


def write_chunks(con, plan: StreamPlan, items: list[WriteItem], schema: str, table: str) -> None:
    """After the batch's records are in `table`: drops the chunks of the rows they replaced
    (append_dedup) and inserts the chunks of the records the table now holds."""
    if plan.sync_mode == "append_dedup":
        chunk_tables(con).remove_orphans(schema, table)
    chunks = chunked_items(items)
    if not chunks:
        return
    batch = pa.table(
        {
            "raw_id": pa.array([raw_id for raw_id, _ in chunks], pa.string()),
            "chunk_index": pa.array([chunk["index"] for _, chunk in chunks], pa.int32()),
            "chunk_text": pa.array([chunk["text"] for _, chunk in chunks], pa.string()),
            "chunk_tokens": pa.array([chunk["tokens"] for _, chunk in chunks], pa.int32()),
            "vector": vector_array([chunk["vector"] for _, chunk in chunks], plan.embedding_dim),
        }
    )
    copied = copied_columns(plan)
    columns = ", ".join(quoted(n) for n in [*copied, CHUNK_INDEX, CHUNK_TEXT, CHUNK_TOKENS, EMBEDDING])
    select = ", ".join([*(f"p.{quoted(n)}" for n in copied), "b.chunk_index", "b.chunk_text", "b.chunk_tokens"])
    con.register(_CHUNKS_VIEW, batch)
    try:
        con.execute(
            f"INSERT INTO {quoted(schema)}.{quoted(chunk_table(table))} ({columns}) SELECT {select}, b.vector "
            f"FROM {_CHUNKS_VIEW} b JOIN {quoted(schema)}.{quoted(table)} p ON p.{quoted(RAW_ID)} = b.raw_id"
        )
    finally:
        con.unregister(_CHUNKS_VIEW)

"""A stream's PostgreSQL table: names that fit PostgreSQL's 63-byte identifiers, the column types
(the embedding as pgvector's `vector(n)` when the database has the extension, else `real[]`),
creating and evolving the table, and the optional HNSW index on the embedding."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from destination_mistral.sinks.schema import EMBEDDING, Column, StreamPlan
from destination_mistral.sinks.type_widening import column_change
from mistral_connection.errors import config_error

logger = logging.getLogger("airbyte")

# PostgreSQL cuts longer identifiers silently, which would make two long names one table.
MAX_IDENTIFIER_BYTES = 63
# pgvector's HNSW index takes vectors of at most this many dimensions.
HNSW_MAX_DIMENSIONS = 2000
_TYPES = {
    "VARCHAR": "text",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "DOUBLE": "double precision",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMPTZ": "timestamp with time zone",
    "TIMESTAMP": "timestamp without time zone",
    "JSON": "jsonb",
}
# The stored column's type under the names the widening rule speaks (format_type's spelling).
_SQL_TYPES = {pg: sql for sql, pg in _TYPES.items()}


def pg_name(name: str) -> str:
    """`name` as PostgreSQL keeps it: a long one keeps a readable start and a digest of the whole."""
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return name.encode()[: MAX_IDENTIFIER_BYTES - 13].decode(errors="ignore") + "_" + digest


def ident(name: str) -> str:
    return '"' + pg_name(name).replace('"', '""') + '"'


def table_ref(schema: str, table: str) -> str:
    return f"{ident(schema)}.{ident(table)}"


@dataclass(frozen=True)
class VectorSupport:
    """Where pgvector's types live in this database, or None when it has no pgvector."""

    schema: str | None

    def embedding_type(self, dim: int | None) -> str:
        if self.schema is None:
            return "real[]"
        return f"{ident(self.schema)}.vector" + (f"({dim})" if dim else "")


def vector_support(con) -> VectorSupport:
    """pgvector when the database has it, or when it can be created here (which takes a superuser,
    or a database where an administrator allowed it); else embeddings are `real[]`."""
    schema = _vector_schema(con)
    if schema is None and con.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone():
        import psycopg

        try:
            with con.transaction():  # a savepoint: a refusal leaves the start's transaction usable
                con.execute("CREATE EXTENSION IF NOT EXISTS vector")
            schema = _vector_schema(con)
        except psycopg.errors.InsufficientPrivilege:
            pass
    if schema is None:
        logger.info(
            "PostgreSQL: the vector extension (pgvector) is not installed in this database and cannot be created by "
            "this user, so embeddings are stored as real[]. An administrator can run CREATE EXTENSION vector there."
        )
    return VectorSupport(schema)


def _vector_schema(con) -> str | None:
    row = con.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
    ).fetchone()
    return row[0] if row else None


def table_columns(plan: StreamPlan, vectors: VectorSupport) -> list[tuple[str, str]]:
    """The stream's columns and their PostgreSQL types, in table order."""
    return [(column.name, pg_type(column, plan, vectors)) for column in plan.all_columns()]


def pg_type(column: Column, plan: StreamPlan, vectors: VectorSupport) -> str:
    if column.name == EMBEDDING:
        return vectors.embedding_type(plan.embedding_dim)
    return _TYPES.get(column.sql_type, "jsonb")


def existing_columns(con, schema: str, table: str) -> dict[str, str]:
    """The table's columns and their types as PostgreSQL writes them (`bigint`, `vector(1024)`,
    `real[]`), in order; empty when there is no such table."""
    rows = con.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum",
        (pg_name(schema), pg_name(table)),
    ).fetchall()
    return {name: kind for name, kind in rows}


def prepare_table(con, plan: StreamPlan, schema: str, table: str, vectors: VectorSupport) -> dict[str, str]:
    """Creates the table, or adds the columns it lacks and widens those the stream now types more
    widely (type_widening.py); returns its columns. An embedding column of another size is a config
    error."""
    wanted = table_columns(plan, vectors)
    existing = existing_columns(con, schema, table)
    if not existing:
        body = ", ".join(f"{ident(name)} {kind}" for name, kind in wanted)
        con.execute(f"CREATE TABLE {table_ref(schema, table)} ({body})")
        return existing_columns(con, schema, table)
    declared = {column.name: column.sql_type for column in plan.columns}
    for name, kind in wanted:
        stored = existing.get(pg_name(name))
        if stored is None:
            con.execute(f"ALTER TABLE {table_ref(schema, table)} ADD COLUMN {ident(name)} {kind}")
        elif name in declared and (
            change := column_change(_SQL_TYPES.get(stored, "JSON"), declared[name], cursor=name == plan.cursor_field)
        ):
            kind = _TYPES[change]
            cast = f"to_jsonb({ident(name)})" if kind == "jsonb" else f"{ident(name)}::{kind}"
            con.execute(f"ALTER TABLE {table_ref(schema, table)} ALTER COLUMN {ident(name)} TYPE {kind} USING {cast}")
        elif name == EMBEDDING and plan.embedding_dim and vector_dimension(stored) not in (None, plan.embedding_dim):
            raise config_error(
                f"Table {schema}.{table} holds embeddings of type {stored} but this sync produces "
                f"{plan.embedding_dim} dimensions (another model or output_dimension): use overwrite once, or write "
                "to another table."
            )
    return existing_columns(con, schema, table)


def vector_dimension(kind: str) -> int | None:
    if "vector(" not in kind:
        return None
    return int(kind.split("vector(", 1)[1].rstrip(")"))


def index_name(table: str) -> str:
    return pg_name(f"{table}_mistral_embedding_hnsw")


def build_hnsw_index(
    con, plan: StreamPlan, schema: str, table: str, columns: dict[str, str], vectors: VectorSupport
) -> None:
    """pgvector's HNSW index on the embedding, by cosine distance (how Mistral's embeddings are
    compared). Built on the empty table, so each commit keeps it up to date."""
    kind = columns.get(EMBEDDING, "")
    if "vector" not in kind:  # no embedding here (another mode, a chunked stream's table), or real[]
        return
    dim = vector_dimension(kind)
    if dim is None or dim > HNSW_MAX_DIMENSIONS:
        raise config_error(
            f"`output.hnsw_index`: pgvector builds an HNSW index on at most {HNSW_MAX_DIMENSIONS} dimensions, and "
            f"stream {plan.label!r} has embeddings of {dim or 'unknown'} dimensions: set the enrichment's "
            "`output_dimension` (at most 2000), or turn `output.hnsw_index` off."
        )
    con.execute(
        f"CREATE INDEX IF NOT EXISTS {ident(index_name(table))} ON {table_ref(schema, table)} "
        f"USING hnsw ({ident(EMBEDDING)} {ident(vectors.schema or 'public')}.vector_cosine_ops)"
    )

"""Search in the PostgreSQL output, in SQL, so that only the k nearest rows leave the server:

- a `vector` column (pgvector): ordered by pgvector's cosine distance `<=>`, which an HNSW index
  built with `output.hnsw_index` (vector_cosine_ops) serves; the score is 1 - distance.
- a `real[]` column (a database without pgvector): the cosine similarity computed by the server over
  `unnest(embedding, query)`. Fetching the vectors to compute it with numpy would send every row's
  vector (4 KB at 1024 dimensions) over the network to return k rows; this reads them where they are,
  in one exact scan (there is no index for arrays)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psycopg

from destination_mistral.protocol.describe import first_line
from destination_mistral.search.target import (
    CHUNKS_SUFFIX,
    SCORE,
    Hit,
    Target,
    no_embeddings,
    stream_names,
    unknown_stream,
)
from destination_mistral.settings import OutputSettings
from destination_mistral.sinks.postgres_connection import PostgresUnavailable, connect, store_failures
from destination_mistral.sinks.postgres_tables import existing_columns, ident, pg_name, table_ref
from destination_mistral.sinks.schema import EMBEDDING
from mistral_connection.errors import config_error, transient_error

_VECTOR_SIZE = re.compile(r"vector\((\d+)\)$")


class PostgresSearch:
    def __init__(self, output: OutputSettings, namespace: str | None) -> None:
        self.output = output
        self.settings = output.postgres
        self.schema = namespace or output.schema
        self.con = connect(self.settings)

    def close(self) -> None:
        self.con.close()

    def locate(self, stream: str) -> Target:
        with self._failures():
            tables = [
                row[0]
                for row in self.con.execute(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
                    (pg_name(self.schema),),
                ).fetchall()
            ]
            # PostgreSQL keeps quoted names with their case, and cuts long ones as the sink did.
            table = pg_name(stream)
            if table not in tables:
                where = f"schema {self.schema!r} of {self.settings.location}"
                raise unknown_stream(stream, where, stream_names(tables))
            chunks = pg_name(stream + CHUNKS_SUFFIX)
            name = chunks if chunks in tables else table
            columns = existing_columns(self.con, self.schema, name)
        target = Target(stream, name, f"{self.schema}.{name}", name == chunks, columns)
        if EMBEDDING not in columns:
            raise no_embeddings(target)
        return target

    def nearest(self, target: Target, vector: np.ndarray, k: int) -> list[Hit]:
        table = table_ref(self.schema, target.table)
        kind = target.columns[EMBEDDING]  # vector(1024), a schema-qualified vector, or real[]
        embedding = ident(EMBEDDING)
        others = ", ".join(ident(name) for name in target.columns if name != EMBEDDING)
        with self._failures():
            if "vector" in kind:
                literal = "[" + ",".join(repr(float(x)) for x in vector) + "]"
                cursor = self.con.execute(
                    f"SELECT 1 - ({embedding} <=> %(q)s::{kind}) AS {SCORE}, {others} FROM {table} "
                    f"WHERE {embedding} IS NOT NULL ORDER BY {embedding} <=> %(q)s::{kind} LIMIT %(k)s",
                    {"q": literal, "k": k},
                )
            else:
                # The query normalised here: the server divides by the stored vector's norm only.
                unit = (vector / (np.linalg.norm(vector) or 1.0)).astype(np.float64).tolist()
                similarity = (
                    "(SELECT sum(a::float8 * b) / NULLIF(sqrt(sum(a::float8 * a)), 0) "
                    f"FROM unnest({embedding}, %(q)s::float8[]) AS u(a, b))"
                )
                cursor = self.con.execute(
                    f"SELECT {similarity} AS {SCORE}, {others} FROM {table} WHERE {embedding} IS NOT NULL "
                    f"ORDER BY {SCORE} DESC NULLS LAST LIMIT %(k)s",
                    {"q": unit, "k": k},
                )
            names = [column.name for column in cursor.description]
            return [
                Hit(float(values[0]), dict(zip(names[1:], values[1:], strict=True)))
                for values in cursor.fetchall()
                if values[0] is not None
            ]

    def dimension(self, target: Target) -> int | None:
        sized = _VECTOR_SIZE.search(target.columns[EMBEDDING])
        if sized:
            return int(sized.group(1))
        # real[] (or a vector without a size): the first stored row tells it; pgvector casts to real[].
        with self._failures():
            row = self.con.execute(
                f"SELECT array_length({ident(EMBEDDING)}::real[], 1) FROM {table_ref(self.schema, target.table)} "
                f"WHERE {ident(EMBEDDING)} IS NOT NULL LIMIT 1"
            ).fetchone()
        return row[0] if row else None

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """A server or connection that fails is a transient error: the same search can succeed later."""
        try:
            with store_failures(self.settings):
                yield
        except PostgresUnavailable as error:
            raise transient_error(
                f"PostgreSQL at {self.settings.location} failed during the search ({error}): search again later."
            ) from None
        except psycopg.Error as error:
            # The server answered and refused (a missing privilege, say): the config's user must change.
            raise config_error(
                f"PostgreSQL at {self.settings.location} refused the search ({first_line(error)}): "
                f"check that `output.username` may read schema {self.schema!r}."
            ) from None

"""Search in the DuckDB output (a local file or MotherDuck): `array_cosine_similarity` over the
`_mistral_embedding` column of the stream's table, or of its chunks table when there is one, in SQL,
so that only the k nearest rows leave the database."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import orjson

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
from destination_mistral.sinks.duckdb_tables import quoted
from destination_mistral.sinks.schema import EMBEDDING
from mistral_connection.errors import config_error, transient_error

_FIXED_SIZE = re.compile(r"^FLOAT\[(\d+)\]$")


class DuckDBSearch:
    def __init__(self, output: OutputSettings, namespace: str | None) -> None:
        self.output = output
        self.schema = namespace or output.schema
        self.con = _open(output)

    def close(self) -> None:
        self.con.close()

    def locate(self, stream: str) -> Target:
        tables = self._tables()
        table = _find(tables, stream)
        if table is None:
            raise unknown_stream(stream, f"schema {self.schema!r} of {self.output.location}", stream_names(tables))
        chunks = _find(tables, table + CHUNKS_SUFFIX)
        name = chunks or table
        columns = {
            column: kind
            for column, kind in self.con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
                "AND table_name = ? ORDER BY ordinal_position",
                [self.schema, name],
            ).fetchall()
        }
        target = Target(stream, name, f"{self.schema}.{name}", chunks is not None, columns)
        if EMBEDDING not in columns:
            raise no_embeddings(target)
        return target

    def dimension(self, target: Target) -> int | None:
        fixed = _FIXED_SIZE.match(target.columns[EMBEDDING])
        if fixed:
            return int(fixed.group(1))
        # FLOAT[]: a table created before the model's size was known; its rows tell it.
        first = self.con.execute(
            f"SELECT len({quoted(EMBEDDING)}) FROM {_table(self.schema, target)} "
            f"WHERE {quoted(EMBEDDING)} IS NOT NULL LIMIT 1"
        ).fetchone()
        return first[0] if first else None

    def nearest(self, target: Target, vector: np.ndarray, k: int) -> list[Hit]:
        table = _table(self.schema, target)
        fixed = _FIXED_SIZE.match(target.columns[EMBEDDING])
        # array_ for FLOAT[n] columns, list_ for FLOAT[] ones: DuckDB has one function per type.
        similarity = "array_cosine_similarity" if fixed else "list_cosine_similarity"
        query_type = f"FLOAT[{len(vector)}]" if fixed else "FLOAT[]"
        # Rows without an embedding (the records whose enrichment failed) are left out.
        cursor = self.con.execute(
            f"SELECT {similarity}({quoted(EMBEDDING)}, ?::{query_type}) AS {SCORE}, * EXCLUDE ({quoted(EMBEDDING)}) "
            f"FROM {table} WHERE {quoted(EMBEDDING)} IS NOT NULL ORDER BY {SCORE} DESC NULLS LAST LIMIT ?",
            [vector.tolist(), k],
        )
        names = [column[0] for column in cursor.description]
        json_columns = {name for name, kind in target.columns.items() if kind == "JSON"}
        hits = []
        for values in cursor.fetchall():
            row = {
                name: orjson.loads(value) if name in json_columns and isinstance(value, str) else value
                for name, value in zip(names[1:], values[1:], strict=True)
            }
            hits.append(Hit(float(values[0]), row))
        return hits

    def _tables(self) -> list[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY table_name",
            [self.schema],
        ).fetchall()
        return [row[0] for row in rows]


def _table(schema: str, target: Target) -> str:
    return f"{quoted(schema)}.{quoted(target.table)}"


def _find(tables: list[str], name: str) -> str | None:
    """The table of that name: DuckDB compares identifiers without case, as the sink created them."""
    if name in tables:
        return name
    return next((table for table in tables if table.lower() == name.lower()), None)


def _open(output: OutputSettings):
    import duckdb

    if output.is_motherduck:
        from destination_mistral.sinks.duckdb_connection import connect

        return connect(output.path, output)
    path = Path(output.path)
    if not path.is_file():
        raise config_error(
            f"`output.path` {str(path)!r} is not a DuckDB file: no sync has written to it yet, or the config names "
            "another file."
        )
    try:
        # Read-only: a search never changes the output, and never creates a file in a newer storage format.
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        if isinstance(error, duckdb.IOException) and "lock" in str(error).lower():
            raise transient_error(
                f"The DuckDB file {str(path)!r} is open for writing in another process (a sync, most likely), and "
                "DuckDB lets no other process read it meanwhile: search again once it is done."
            ) from None
        raise config_error(
            f"`output.path` {str(path)!r} cannot be read as a DuckDB file: {first_line(error)}"
        ) from None

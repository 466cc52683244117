"""The answers already paid for, in the PostgreSQL output's default schema (`_mistral_cache`), with
the meaning of sinks/cache.py: keyed by sha256(endpoint, model, parameters, input), successes and
paid answers that could not be used, written in the transaction of the records they enriched.

Lookups read through a connection of their own, since the pipeline runs them on another thread
while a commit writes."""

from __future__ import annotations

from collections.abc import Sequence

from destination_mistral.enrich.results import Result
from destination_mistral.sinks.base import CacheEntries
from destination_mistral.sinks.cache_values import chunk_keys, rows_to_keep
from destination_mistral.sinks.cache_values import result as cached_result
from destination_mistral.sinks.postgres_tables import table_ref

TABLE = "_mistral_cache"
_COLUMNS = "key, endpoint, model, answer, vector, prompt_tokens, completion_tokens, error"


class PostgresCache:
    def __init__(self, con, reader, schema: str) -> None:
        self._con = con
        self._reader = reader
        self._table = table_ref(schema, TABLE)
        # A primary key here (DuckDB's cache has none): PostgreSQL looks keys up through it, and
        # ON CONFLICT needs it.
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} (key text PRIMARY KEY, endpoint text, model text, "
            "answer text, vector real[], prompt_tokens integer, completion_tokens integer, "
            "created_at timestamp with time zone DEFAULT now(), error text)"
        )

    def lookup(self, keys: Sequence[str]) -> dict[str, Result]:
        if not keys:
            return {}
        rows = self._rows(list(dict.fromkeys(keys)))
        listed = {key for row in rows for key in chunk_keys(row[1], row[3])}
        vectors = {row[0]: row[4] for row in [*rows, *(self._rows(list(listed)) if listed else [])] if row[4]}
        found = {}
        for key, *fields in rows:
            cached = cached_result(*fields, vectors)
            if cached is not None:
                found[key] = cached
        return found

    def _rows(self, keys: list[str]) -> list[tuple]:
        return self._reader.execute(f"SELECT {_COLUMNS} FROM {self._table} WHERE key = ANY(%s)", (keys,)).fetchall()

    def store(self, entries: CacheEntries) -> None:
        """(key, endpoint, result) for successes and paid answers that could not be used; keys already
        present are left alone."""
        rows = [
            row._replace(vector=None if row.vector is None else row.vector.tolist()) for row in rows_to_keep(entries)
        ]
        if rows:
            with self._con.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {self._table} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (key) DO NOTHING",
                    rows,
                )

    def close(self) -> None:
        self._reader.close()

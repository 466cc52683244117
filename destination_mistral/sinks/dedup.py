"""The append_dedup rule for an output that merges rows itself (JSON Lines), the same one DuckDB
applies in SQL (duckdb_dedup.py):

- one row per primary key; a record without a value for its key is a row of its own, never merged;
- among the records of a key, the one with the greatest cursor wins; a null cursor (or one that is
  not a value of its column's type) is older than any value; of equal cursors, or without a cursor
  field, the later record wins;
- a batch is first reduced to its winner per key, which replaces the row in place unless that
  row's cursor is newer;
- a winner that is a CDC delete removes the row and is not stored itself.

Cursors compare as values of their column's type (a timestamp as a moment, whatever its offset), as
the typed DuckDB column compares them."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from destination_mistral.sinks.schema import StreamPlan

_FRACTION = re.compile(r"(\.\d{6})\d+")  # Python reads microseconds; sources may send nanoseconds
_INTEGER_TYPES = frozenset({"BIGINT", "INTEGER"})


@dataclass
class Row:
    """A row of the output, or a record about to become one, as the merge sees it."""

    key: tuple
    cursor: Any  # None: no cursor, or one that is older than any
    deleted: bool
    line: bytes


def row_key(plan: StreamPlan, record: Any, unique: Any) -> tuple:
    """The row's primary key; a record without a value for it gets a key of its own (`unique`), so
    that it is kept and never merged (as in DuckDB, where NULL equals nothing)."""
    values = [record.get(k) if isinstance(record, dict) else None for k in plan.primary_key]
    if any(v is None for v in values):
        return ("\0keyless", unique)
    return tuple(orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values)


def is_keyless(key: tuple) -> bool:
    return key[0] == "\0keyless"


def cursor_of(plan: StreamPlan, record: Any) -> Any:
    """The record's cursor as a comparable value of its column's type, or None."""
    if not plan.cursor_field or not isinstance(record, dict):
        return None
    kind = next((c.sql_type for c in plan.columns if c.name == plan.cursor_field), "JSON")
    try:
        return typed(record.get(plan.cursor_field), kind)
    except (ValueError, TypeError, OverflowError):
        return None


def typed(value: Any, kind: str) -> Any:
    """`value` (from JSON) as a value of the SQL type `kind`, as DuckDB's TRY_CAST reads it; raises
    ValueError (or TypeError) for a value that is not one."""
    if value is None:
        return None
    if kind in _INTEGER_TYPES or kind == "DOUBLE":
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        number = float(value.strip()) if isinstance(value, str) else value
        if kind == "DOUBLE":
            number = float(number)
            return None if math.isnan(number) else number
        if isinstance(number, float) and not number.is_integer():
            raise ValueError("a fraction is not an integer")
        if not -(2**63) <= int(number) < 2**63:
            raise ValueError("past BIGINT")
        return int(number)
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word not in ("true", "false"):
            raise ValueError("not a boolean")
        return word == "true"
    if kind in ("DATE", "TIMESTAMPTZ", "TIMESTAMP"):
        if not isinstance(value, str):
            raise ValueError("a date is written as text")
        moment = dt.datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()))
        if kind == "DATE":
            return moment.date()
        if kind == "TIMESTAMPTZ":
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
    if kind == "VARCHAR" and isinstance(value, str):
        return value
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if kind not in ("JSON", "VARCHAR"):
        return text
    # An untyped cursor's numbers compare as numbers and its other values as text; between the two
    # kinds the later record wins (`wins`), as in DuckDB (duckdb_dedup) and PostgreSQL. A text
    # cursor that meets a number (its field's type changed) is one of two kinds as well.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, float(value), "")
    return (0, 0.0, text)


def wins(new: Any, held: Any) -> bool:
    """Whether a record with cursor `new`, arriving later, replaces one with cursor `held`."""
    if held is None:
        return True
    if new is None:
        return False
    if isinstance(new, tuple) and isinstance(held, tuple) and new[0] != held[0]:
        return True  # a number and another kind of JSON value: the later one wins
    try:
        return new >= held
    except TypeError:  # cursors of two types (the column's type changed): the later one wins
        return True


def merge(held: dict[tuple, Row], incoming: Iterable[Row]) -> int:
    """Merges `incoming` (in arrival order) into `held` (key -> row, in file order) by the rule
    above; returns how many incoming records had no key."""
    winners: dict[tuple, Row] = {}
    keyless = 0
    for row in incoming:
        if is_keyless(row.key):
            keyless += 1
            if not row.deleted:  # a delete without a key has no row to remove
                held[row.key] = row
            continue
        current = winners.get(row.key)
        if current is None or wins(row.cursor, current.cursor):
            winners[row.key] = row
    for key, row in winners.items():
        current = held.get(key)
        if current is not None and not wins(row.cursor, current.cursor):
            continue
        held.pop(key, None)  # an update moves to the end, like a fresh insert
        if not row.deleted:
            held[key] = row
    return keyless

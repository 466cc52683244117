"""The stream's JSON schema and primary key, inferred from a file's values (README, "Feeding your own
records", says the rules), and CSV cells typed by it.

JSON Lines values carry their types; a field's type is the one its values share (integers and
fractions together are numbers), several types when they differ, which the output stores as JSON.
CSV cells are text: a column is integer, number or boolean only when every non-empty cell of it
parses cleanly as one, so that a column of zip codes or of ids with letters stays text."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from destination_mistral.local_files.records import Row

INT64 = (-(2**63), 2**63 - 1)  # what an integer column (BIGINT) holds
# Digits 0-9 only (\d would take other scripts' digits), no leading zeros ("007" is a code, not 7),
# no spaces around: such a cell is text a person typed, and stays text.
CSV_INTEGER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
CSV_NUMBER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
CSV_BOOLEANS = {"true": True, "false": False}  # any case
JSON_KINDS = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array"}
ANY_CSV_TYPE = frozenset({"integer", "number", "boolean"})
NUMERIC = frozenset({"integer", "number"})
KEY_BY_DEFAULT = "id"


def json_kind(value) -> str:
    """A JSON value's type; an integer past 64 bits is text, as in CSV, since no integer column
    holds it (a number column would round it)."""
    if type(value) is int and not INT64[0] <= value <= INT64[1]:
        return "string"
    return JSON_KINDS.get(type(value), "string")


def csv_integer(text: str) -> int | None:
    if CSV_INTEGER.fullmatch(text):
        value = int(text)
        if INT64[0] <= value <= INT64[1]:
            return value
    return None


def csv_number(text: str) -> float | None:
    if CSV_NUMBER.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
    return None


def csv_types(text: str) -> frozenset[str]:
    """The types a non-empty CSV cell parses cleanly as (none: it is text)."""
    if CSV_INTEGER.fullmatch(text):
        # Past 64 bits it is an identifier (a card or account number), which a float would round.
        return NUMERIC if csv_integer(text) is not None else frozenset()
    if csv_number(text) is not None:
        return frozenset({"number"})
    if text.lower() in CSV_BOOLEANS:
        return frozenset({"boolean"})
    return frozenset()


def csv_value(text: str, kind: str | None) -> Any:
    """A cell as its column's type; an empty cell is null. A cell that does not parse as its type
    (a --schema that says integer over a cell of text) stays text: the write path stores it as NULL
    and names it in _airbyte_meta, as it does any value its column cannot hold."""
    if text == "":
        return None
    if kind == "integer":
        value = csv_integer(text)
    elif kind == "number":
        value = csv_number(text)
    elif kind == "boolean":
        value = CSV_BOOLEANS.get(text.lower())
    else:
        return text
    return text if value is None else value


class ColumnStats:
    __slots__ = ("types", "candidates", "nulls", "first_null_line")

    def __init__(self) -> None:
        self.types: set[str] = set()  # JSONL: the types of the values seen
        self.candidates: frozenset[str] = ANY_CSV_TYPE  # CSV: what every non-empty cell parsed as
        self.nulls = 0  # empty cells, nulls, or records without the field
        self.first_null_line: int | None = None

    def null_at(self, line: int, count: int = 1) -> None:
        self.nulls += count
        if self.first_null_line is None:
            self.first_null_line = line

    def json_type(self, from_csv: bool) -> str | list[str]:
        if from_csv:
            seen = self.candidates if self.candidates != ANY_CSV_TYPE else frozenset()  # only empty cells
            kind = next((k for k in ("integer", "number", "boolean") if k in seen), "string")
        elif self.types and self.types <= NUMERIC:
            kind = "number" if "number" in self.types else "integer"
        elif len(self.types) == 1:
            kind = next(iter(self.types))
        elif self.types:
            return (["null"] if self.nulls else []) + sorted(self.types)
        else:
            kind = "string"  # only nulls: nothing says otherwise
        return ["null", kind] if self.nulls else kind


class Inference:
    """What one pass over the rows learns: each column's types and empty values, in the order the
    columns first appear (a CSV's header order)."""

    def __init__(self, from_csv: bool) -> None:
        self.from_csv = from_csv
        self.columns: dict[str, ColumnStats] = {}
        self.rows = 0
        self._first_line: int | None = None

    def add(self, row: Row) -> None:
        self.rows += 1
        if self._first_line is None:
            self._first_line = row.line
        for name, value in row.fields.items():
            stats = self.columns.get(name)
            if stats is None:
                stats = self.columns[name] = ColumnStats()
                if self.rows > 1:  # the records before this one lack the field
                    stats.null_at(self._first_line, self.rows - 1)
            if value is None or (self.from_csv and value == ""):
                stats.null_at(row.line)
            elif self.from_csv:
                if stats.candidates:
                    stats.candidates &= csv_types(value)
            else:
                stats.types.add(json_kind(value))
        if len(row.fields) < len(self.columns):
            for name, stats in self.columns.items():
                if name not in row.fields:
                    stats.null_at(row.line)

    def json_schema(self) -> dict[str, Any]:
        properties = {name: {"type": stats.json_type(self.from_csv)} for name, stats in self.columns.items()}
        return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": properties}

    def default_key(self) -> list[str]:
        """`id`, when every record has one; otherwise no key (and the load appends)."""
        stats = self.columns.get(KEY_BY_DEFAULT)
        return [KEY_BY_DEFAULT] if stats is not None and not stats.nulls else []

    def first_line_without(self, name: str) -> int | None:
        stats = self.columns.get(name)
        return stats.first_null_line if stats is not None else None


def single_types(json_schema: Mapping[str, Any]) -> dict[str, str | None]:
    """Each property's one type besides null (None when it has several, or none), which CSV cells
    are converted to."""
    types: dict[str, str | None] = {}
    for name, prop in (json_schema.get("properties") or {}).items():
        kind = prop.get("type") if isinstance(prop, Mapping) else None
        kinds = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []
        kinds = [k for k in kinds if k != "null"]
        types[name] = kinds[0] if len(kinds) == 1 else None
    return types


def describe_columns(json_schema: Mapping[str, Any]) -> str:
    """`id integer, review string, rating null|integer`: the schema as the summary shows it."""
    parts = []
    for name, prop in (json_schema.get("properties") or {}).items():
        kind = prop.get("type", "any") if isinstance(prop, Mapping) else "any"
        parts.append(f"{name} {'|'.join(kind) if isinstance(kind, list) else kind}")
    return ", ".join(parts)

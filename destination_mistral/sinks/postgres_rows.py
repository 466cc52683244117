"""A batch of records as the rows COPY sends to PostgreSQL: each field converted to its column's type
in Python (PostgreSQL has no TRY_CAST), a value that does not fit (the string "five" for an
integer, a text holding a NUL byte, which PostgreSQL cannot store) stored as NULL and named in
`_airbyte_meta.changes`, as the DuckDB output does, instead of failing the batch."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from destination_mistral.sinks.base import JSON_OPTIONS, WriteItem, enrichment_fields
from destination_mistral.sinks.chunk_tables import chunked_items
from destination_mistral.sinks.postgres_tables import pg_name
from destination_mistral.sinks.schema import (
    ANSWER,
    CHUNK_TEXT,
    EMBEDDING,
    EXTRACTED_AT,
    GENERATION_ID,
    META,
    RAW_ID,
    StreamPlan,
)

logger = logging.getLogger("airbyte")

_NO_FIT = object()
_INT_BOUNDS = {"bigint": 2**63, "integer": 2**31, "smallint": 2**15}
_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})
_FRACTION = re.compile(r"(\.\d{6})\d+")  # Python reads microseconds; sources may send nanoseconds


@dataclass(frozen=True)
class RowLayout:
    """The columns a batch writes, in order, and the kind of value each one takes."""

    names: list[str]
    kinds: list[str]
    fields: int  # how many of them are the record's own fields


def row_layout(plan: StreamPlan, table: dict[str, str]) -> RowLayout:
    """The plan's columns as the table (name -> PostgreSQL type) holds them."""
    meta = [RAW_ID, EXTRACTED_AT, META, GENERATION_ID]
    enrichment = [column.name for column in plan.meta_columns() if column.name not in meta]
    names = [column.name for column in plan.columns] + meta + enrichment
    return RowLayout(names, [value_kind(table[pg_name(name)]) for name in names], len(plan.columns))


def value_kind(pg_type: str) -> str:
    base = pg_type.replace('"', "").split(".")[-1]
    if base.startswith("vector"):
        return "vector"
    if base.endswith("[]"):
        return "array"
    if base in _INT_BOUNDS:
        return base
    if base.startswith("timestamp"):
        return "timestamptz" if "with time zone" in base else "timestamp"
    return {
        "double precision": "float",
        "real": "float",
        "numeric": "float",
        "boolean": "bool",
        "date": "date",
        "jsonb": "json",
        "json": "json",
    }.get(base, "text")


def batch_rows(plan: StreamPlan, items: Sequence[WriteItem], layout: RowLayout) -> list[tuple]:
    return [_row(plan, item, layout) for item in items]


def _row(plan: StreamPlan, item: WriteItem, layout: RowLayout) -> tuple:
    changes = list(item.changes or [])
    values: list[Any] = []
    for name, kind in zip(layout.names[: layout.fields], layout.kinds, strict=False):
        raw = item.record.get(name)
        if isinstance(raw, str) and name in plan.primary_key and "\x00" in raw:
            # A key of NULL would never merge with the record's other versions (append_dedup): its
            # NUL bytes become U+FFFD instead, as lone surrogates do everywhere.
            logger.warning(
                f"A primary key value of stream {plan.label!r} holds a NUL byte, which PostgreSQL cannot store: "
                "it is stored with U+FFFD in its place."
            )
            raw = raw.replace("\x00", "\ufffd")
        value = None if raw is None else convert(raw, kind)
        if value is _NO_FIT:
            changes.append({"field": name, "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"})
            value = None
        values.append(value)
    if plan.chunked and any(storable_text(chunk["text"]) is None for _, chunk in chunked_items([item])):
        # The chunks are rows of their own table, without _airbyte_meta: their record names the loss.
        changes.append({"field": CHUNK_TEXT, "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"})
    enrichment = enrichment_fields(plan, item)
    added: list[Any] = []
    for name, kind in zip(layout.names[layout.fields + 4 :], layout.kinds[layout.fields + 4 :], strict=False):
        value = enrichment.get(name)
        if name == EMBEDDING:
            value = vector_text(value, kind)
        elif value is not None and (kind == "json" or (name == ANSWER and not isinstance(value, str))):
            value = _json(value)
        if isinstance(value, str) and storable_text(value, kind) is None:
            # An answer holding a NUL byte (paid for, and kept in the cache): NULL and named, as a field.
            changes.append({"field": name, "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"})
            value = None
        added.append(value)
    meta: dict[str, Any] = {"sync_id": plan.sync_id} if plan.sync_id is not None else {}
    meta["changes"] = changes
    extracted = dt.datetime.fromtimestamp(item.emitted_at / 1000.0, tz=dt.UTC)
    return (*values, item.raw_id, extracted, _json(meta), plan.generation_id, *added)


def convert(value: Any, kind: str) -> Any:
    """`value` (from JSON) as a value of `kind`, or _NO_FIT."""
    try:
        if kind in _INT_BOUNDS:
            return _integer(value, _INT_BOUNDS[kind])
        if kind == "float":
            return _NO_FIT if isinstance(value, bool) else float(value.strip() if isinstance(value, str) else value)
        if kind == "bool":
            return _boolean(value)
        if kind in ("date", "timestamptz", "timestamp"):
            return _moment(value, kind) if isinstance(value, str) else _NO_FIT
        if kind == "json":
            text = _json(value)
            return text if text is None or storable_text(text, kind) is not None else _NO_FIT
    except (ValueError, TypeError, OverflowError):
        return _NO_FIT
    text = value if isinstance(value, str) else _json(value)
    return text if text is None or storable_text(text) is not None else _NO_FIT


def storable_text(text: str | None, kind: str = "text") -> str | None:
    """The text, or None when PostgreSQL cannot store it in a column of `kind`: its text type holds
    no NUL byte, and jsonb no escaped one."""
    if text is None or "\x00" in text or (kind == "json" and "\\u0000" in text):
        return None
    return text


def _integer(value: Any, bound: int) -> Any:
    if isinstance(value, bool):
        return _NO_FIT
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            value = float(value)
    if isinstance(value, float):
        if not value.is_integer():
            return _NO_FIT  # 1.5 is not the key 2
        value = int(value)
    if not isinstance(value, int):
        return _NO_FIT
    return value if -bound <= value < bound else _NO_FIT


def _boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else _NO_FIT
    return _NO_FIT


def _moment(text: str, kind: str) -> Any:
    text = _FRACTION.sub(r"\1", text.strip())
    if kind == "date":
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            return dt.datetime.fromisoformat(text).date()
    moment = dt.datetime.fromisoformat(text)
    if kind == "timestamptz":
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def vector_text(vector: Any, kind: str) -> str | None:
    """A vector as pgvector's text (`[1,2]`) or a `real[]` literal (`{1,2}`): nine significant
    digits hold a float32 exactly."""
    if vector is None:
        return None
    values = np.asarray(vector, dtype=np.float32).ravel().tolist()
    body = ("%.9g," * len(values))[:-1] % tuple(values) if values else ""
    return f"[{body}]" if kind == "vector" else "{" + body + "}"


def _json(value: Any) -> str | None:
    text = orjson.dumps(value, option=JSON_OPTIONS)
    return None if text == b"null" else text.decode()

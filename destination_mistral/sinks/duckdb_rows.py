"""A batch of records as the Arrow table the DuckDB sink inserts from: the vectors as one float32
block DuckDB copies as is, the record's fields as JSON text that `duckdb_tables` casts to their
column types in SQL, so DuckDB never guesses a type."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from destination_mistral.sinks.base import JSON_OPTIONS, WriteItem, enrichment_fields
from destination_mistral.sinks.cache import vectors_to_list_array
from destination_mistral.sinks.duckdb_dedup import DELETED, SEQ
from destination_mistral.sinks.duckdb_tables import EARLIER_CHANGES, quoted
from destination_mistral.sinks.schema import (
    ANSWER,
    CACHED,
    COMPLETION_TOKENS,
    EMBEDDING,
    ERROR,
    EXTRACTED_AT,
    MODE_COLUMNS,
    MODEL,
    PROMPT_TOKENS,
    RAW_ID,
    StreamPlan,
)

_RESULT_TYPES = {
    MODEL: pa.string(),
    PROMPT_TOKENS: pa.int64(),
    COMPLETION_TOKENS: pa.int64(),
    CACHED: pa.bool_(),
    ERROR: pa.string(),
}

# The Arrow type of each SQL type of schema.MODE_COLUMNS other than JSON (written as JSON text).
_MODE_TYPES = {"VARCHAR": pa.string(), "BOOLEAN": pa.bool_(), "INTEGER": pa.int64(), "BIGINT": pa.int64()}


def arrow_batch(plan: StreamPlan, items: list[WriteItem]) -> tuple[pa.Table, list[str]]:
    """The batch as Arrow columns, and the select list that names them as the table's columns:
    each field as JSON (NULL when absent or null), the metadata with its own type."""
    columns: dict[str, pa.Array] = {}
    select: list[str] = []
    for index, column in enumerate(plan.columns):
        name = column.name
        columns[f"c{index}"] = pa.array([json_text(item.record.get(name)) for item in items], pa.string())
        select.append(f"json(c{index}) AS {quoted(name)}")
    columns["raw_id"] = pa.array([item.raw_id for item in items], pa.string())
    columns["extracted_at"] = pa.array([item.emitted_at for item in items], pa.int64())
    columns["seq"] = pa.array([item.seq for item in items], pa.int64())
    columns["changes"] = pa.array([json_text(item.changes) if item.changes else None for item in items], pa.string())
    columns["deleted"] = pa.array([plan.deletes(item.record) for item in items], pa.bool_())
    select += [
        f"raw_id AS {quoted(RAW_ID)}",
        f"extracted_at AS {quoted(EXTRACTED_AT)}",
        f"seq AS {quoted(SEQ)}",
        f"changes AS {quoted(EARLIER_CHANGES)}",
        f"deleted AS {quoted(DELETED)}",
    ]
    if plan.enrichment_mode == "none":
        return pa.table(columns), select
    fields = [enrichment_fields(plan, item) for item in items]
    if plan.enrichment_mode == "chat":
        answers = [f[ANSWER] for f in fields]
        if plan.answer_json:
            columns["answer"] = pa.array([json_text(v) for v in answers], pa.string())
            select.append(f"json(answer) AS {quoted(ANSWER)}")
        else:
            columns["answer"] = pa.array(
                [v if v is None or isinstance(v, str) else json_text(v) for v in answers], pa.string()
            )
            select.append(f"answer AS {quoted(ANSWER)}")
    elif plan.enrichment_mode in MODE_COLUMNS:
        for index, column in enumerate(MODE_COLUMNS[plan.enrichment_mode]):
            values, name = [f[column.name] for f in fields], f"mode{index}"
            if column.sql_type == "JSON":
                columns[name] = pa.array([json_text(v) for v in values], pa.string())
                select.append(f"json({name}) AS {quoted(column.name)}")
            else:
                columns[name] = pa.array(values, _MODE_TYPES[column.sql_type])
                select.append(f"{name} AS {quoted(column.name)}")
    else:
        columns["embedding"] = vector_array([f[EMBEDDING] for f in fields], plan.embedding_dim)
        select.append(f"embedding AS {quoted(EMBEDDING)}")
    for name, kind in _RESULT_TYPES.items():
        columns[name] = pa.array([f[name] for f in fields], kind)
        select.append(quoted(name))
    return pa.table(columns), select


def json_text(value: Any) -> str | None:
    if value is None:
        return None
    text = orjson.dumps(value, option=JSON_OPTIONS)
    return None if text == b"null" else text.decode()  # orjson writes NaN and the infinities as null


def vector_array(vectors: list[Any], dim: int | None) -> pa.Array:
    """FLOAT[dim] when every vector has the table's size (one copy into a block, no per-float
    work); otherwise a list column, which DuckDB casts to the table's type or rejects."""
    mask = np.fromiter((v is None for v in vectors), dtype=bool, count=len(vectors))
    present = [np.asarray(v, dtype=np.float32).ravel() for v in vectors if v is not None]
    if dim and all(v.shape[0] == dim for v in present):
        block = np.zeros((len(vectors), dim), dtype=np.float32)
        if present:
            block[~mask] = np.stack(present)
        return pa.FixedSizeListArray.from_arrays(
            pa.array(block.reshape(-1)), dim, mask=pa.array(mask) if mask.any() else None
        )
    return vectors_to_list_array(vectors)

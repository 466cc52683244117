from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from destination_mistral.results import Result
from destination_mistral.schema import (
    ANSWER,
    CACHED,
    COMPLETION_TOKENS,
    EMBEDDING,
    ERROR,
    EXTRACTED_AT,
    MODEL,
    PROMPT_TOKENS,
    RAW_ID,
    StreamPlan,
)


@dataclass
class WriteItem:
    """One record on its way to the sink (`seq` keeps input order within the stream)."""

    seq: int
    record: Mapping[str, Any]
    emitted_at: int  # ms since the epoch
    raw_id: str
    result: Result | None


def enrichment_fields(plan: StreamPlan, item: WriteItem, *, vector_as_list: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if plan.enrichment == "none":
        return out
    result = item.result or Result()
    if plan.enrichment == "chat":
        out[ANSWER] = result.value if result.ok else None
    else:
        vector = result.value if result.ok else None
        if vector is not None and vector_as_list:
            vector = np.asarray(vector, dtype=np.float32).tolist()
        out[EMBEDDING] = vector
    out[MODEL] = result.model
    out[PROMPT_TOKENS] = result.prompt_tokens
    out[COMPLETION_TOKENS] = result.completion_tokens
    out[CACHED] = result.cached
    out[ERROR] = result.error
    return out


def extracted_at_iso(emitted_at: int) -> str:
    return dt.datetime.fromtimestamp(emitted_at / 1000.0, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


class Sink(Protocol):
    def start(self, plans: Sequence[StreamPlan]) -> None: ...

    def lookup(self, keys: Sequence[str]) -> dict[str, Result]: ...

    def commit(self, batches: Sequence[tuple[StreamPlan, list[WriteItem]]], cache_entries: Iterable[tuple[str, str, Result]]) -> None: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...

    @property
    def location(self) -> str: ...


__all__ = ["WriteItem", "Sink", "enrichment_fields", "extracted_at_iso", "RAW_ID", "EXTRACTED_AT"]

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from destination_mistral.enrich.results import Result
from destination_mistral.sinks.schema import (
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
from mistral_connection.errors import config_error


@dataclass
class WriteItem:
    """One record on its way to the sink (`seq` keeps input order within the stream)."""

    seq: int
    record: Mapping[str, Any]
    emitted_at: int  # ms since the epoch
    raw_id: str
    result: Result | None
    # `_airbyte_meta.changes` made before the sink: the source's own, and the destination's (an
    # emitted_at no output can hold, a record stored as an error row).
    changes: list | None = None


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


def check_distinct_locations(plans: Sequence[StreamPlan], location: Callable[[StreamPlan], str], what: str) -> None:
    """Two streams written to one table or file would be merged, or crash the sync half way: a
    config error names both before anything is written."""
    seen: dict[str, StreamPlan] = {}
    for plan in plans:
        where = location(plan)
        other = seen.get(where)
        if other is not None:
            raise config_error(
                f"Streams {other.label!r} and {plan.label!r} would both be written to {what} {where!r} (names are compared "
                "after normalisation and without case): rename one of them in the connection, or give it another namespace."
            )
        seen[where] = plan


def extracted_at_iso(emitted_at: int) -> str:
    return dt.datetime.fromtimestamp(emitted_at / 1000.0, tz=dt.UTC).isoformat(timespec="milliseconds")


class Sink(Protocol):
    def start(self, plans: Sequence[StreamPlan]) -> None: ...

    def lookup(self, keys: Sequence[str]) -> dict[str, Result]: ...

    def commit(
        self,
        batches: Sequence[tuple[StreamPlan, list[WriteItem]]],
        cache_entries: Iterable[tuple[str, str, Result]],
        completes: Sequence[StreamPlan] = (),
    ) -> None:
        """Stores the batches and the cache entries, then, for each stream in `completes` (whose
        COMPLETE status arrived and whose records are all in this commit or earlier ones), replaces
        what the stream held if this sync stages it. Atomic where the store allows."""

    def finish(self) -> None: ...

    def close(self) -> None: ...

    @property
    def location(self) -> str: ...


__all__ = [
    "WriteItem",
    "Sink",
    "enrichment_fields",
    "extracted_at_iso",
    "check_distinct_locations",
    "RAW_ID",
    "EXTRACTED_AT",
]

"""What the pipeline asks of an enricher, stated once so that it calls these methods directly.

An enricher turns a record into an input (`prepare`), prices inputs for the pacer (`count_tokens`),
and hands out one awaitable result per input (`submit`, or `run` to await it); `flush` sends what a
batching enricher still holds when input pauses or ends. `parse` reads one answer into the results
of the inputs it was sent for: the Batch API's delivery calls it on the lines of a result file.

Every mode's enricher sends its own requests (`OnlineEnricher`): one per record (chat, OCR) or one per
batch of records (embeddings, moderation, classification: batched_requests.py). The Batch API and auto
delivery wrap one of them and offer the same interface."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from destination_mistral.enrich.results import Result


class Input(Protocol):
    # The cache's key: equal inputs are sent once per sync and answered from the cache after.
    key: str
    # Whether the input was cut to the model's limit (`input_too_long: truncate`) instead of being
    # sent whole: the record's `_airbyte_meta.changes` then names the cut (TRUNCATED).
    cut: bool


InputT = TypeVar("InputT", bound=Input)


@runtime_checkable
class Enricher(Protocol[InputT]):
    kind: str  # the mode: "chat", "embeddings", "moderation", "classification" or "ocr"
    endpoint: str  # the route under /v1 its requests go to ("chat/completions", "chat/moderations", ...)
    model: str

    @property
    def dimension(self) -> int | None:
        """The size of every vector written, when known before the first answer; None for chat."""
        ...

    def prepare(self, record: Mapping[str, Any]) -> InputT:
        """The record's input; raises templates.RecordError when the record cannot make one."""
        ...

    def count_tokens(self, items: list[InputT]) -> None:
        """Token counts of inputs about to be sent, taken in one call off the event loop."""
        ...

    def submit(self, item: InputT) -> asyncio.Future[Result]:
        """The future of the item's result (a future, not any awaitable: the pipeline cancels it and
        attaches callbacks); called on the event loop."""
        ...

    async def run(self, item: InputT) -> Result:
        """The item's result: `submit`, awaited."""
        ...

    def flush(self) -> None:
        """Sends what waits for a batch to fill: input paused or ended."""
        ...

    def parse(self, response: Any, items: Sequence[InputT]) -> list[Result]:
        """One result per item from the answer to the request that carried them."""
        ...


class OnlineEnricher(Enricher[InputT], Protocol[InputT]):
    """An enricher that sends its own requests (every mode's): what the Batch API wraps."""

    def body_for(self, item: InputT) -> dict[str, Any]:
        """The body of a request that carries this one input: a line of a Batch API job."""
        ...

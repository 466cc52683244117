"""Enrichers whose requests carry a list of inputs (embeddings, moderations, classifications): inputs
gathered into batches under the per-request limits (embedding_limits.BatchLimits), sent through the
client, and a refused batch split, so that each input gets its own answer or its own refusal.

A subclass says how a batch is written (`request_body`) and read back (`parse`); this class does the
rest, the same way for every endpoint that takes `input: [...]`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from destination_mistral.enrich import batching
from destination_mistral.enrich.batching import plan_batches, too_many_inputs
from destination_mistral.enrich.embedding_input import EmbeddingInput
from destination_mistral.enrich.embedding_limits import BatchLimits
from destination_mistral.enrich.held_inputs import HoldingBatcher
from destination_mistral.enrich.record_text import RecordText
from destination_mistral.enrich.results import Result, failed
from destination_mistral.http.client import MistralClient
from destination_mistral.http.errors import ApiError

ItemT = TypeVar("ItemT", bound=EmbeddingInput)  # a text with its key and its token count


class BatchedEnricher(Generic[ItemT]):
    # The route's path under /v1 (`embeddings`, `moderations`, `chat/classifications`).
    endpoint: str

    def __init__(self, client: MistralClient | None, endpoint: str, text: RecordText) -> None:
        self.client = client
        self.endpoint = endpoint
        self.route = f"POST /v1/{endpoint}"
        self._text = text
        self._batches: HoldingBatcher[ItemT, Result] | None = None
        self._limits = BatchLimits(client, self.route)

    @property
    def _tokenizer(self):
        return self._text.tokenizer

    def count_text(self, text: str) -> int:
        return self._text.tokenizer.count(text)

    def count_tokens(self, items: list[ItemT]) -> None:
        """Takes the token counts that batching will need, for many inputs at once (off the event
        loop: see the tokenizer's count_many)."""
        todo = [item for item in items if not item.counted]
        if todo:
            for item, count in zip(todo, self._tokenizer.count_many([item.text for item in todo]), strict=False):
                item.set_tokens(count)

    # ---- what a subclass says ----------------------------------------------------------------------

    def request_body(self, items: list[ItemT]) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, response: Any, items: list[ItemT]) -> list[Result]:
        """One result per input, in input order; raises InvalidAnswer for an answer that cannot be right."""
        raise NotImplementedError

    def _resend_after(self, error: ApiError) -> bool:
        """Whether the refusal was of a request option the subclass has now dropped (the batch goes
        again as it is)."""
        return False

    # ---- the batching ------------------------------------------------------------------------------

    def body_for(self, item: ItemT) -> dict[str, Any]:
        return self.request_body([item])

    async def run(self, item: ItemT) -> Result:
        return await self.submit(item)

    def submit(self, item: ItemT) -> asyncio.Future[Result]:
        """The future of the item's result: one batch slot, no task of its own per record."""
        if self._batches is None:
            self._batches = HoldingBatcher(
                self._send,
                lambda i: i.tokens,
                self._limits.budget,
                max_inputs=self._limits.input_cap,
                max_linger=batching.MAX_LINGER_SECONDS,
            )
        return self._batches.submit(item)

    def flush(self) -> None:
        if self._batches is not None:
            self._batches.flush()

    @property
    def max_tokens(self) -> int:
        return self._limits.budget()

    def _rebudget(self) -> None:
        if self._batches is not None:
            self._batches.rebudget()

    def _calibrate(self, server_tokens: int | None, items: list[ItemT]) -> None:
        """Takes the server's count of a batch (usage.prompt_tokens) against ours, when it gives one."""
        if server_tokens is not None and server_tokens > 0:
            if self._limits.calibrate(server_tokens / (sum(i.tokens for i in items) or 1)):
                self._rebudget()

    def _precheck(self, items: list[ItemT]) -> Callable[[], None]:
        def check() -> None:
            # A batch formed before a refusal lowered the caps is split before it is sent, not after
            # the server refuses it too.
            if not self._limits.fits(items):
                raise _Resplit()

        return check

    async def _send(self, items: list[ItemT]) -> list[Result]:
        if not self._limits.fits(items):
            return await self._send_split(items)
        try:
            return await self.client.post(
                self.endpoint,
                self.request_body(items),
                cost=sum(i.tokens for i in items),
                # Checked inside the client's retry loop: an answer of the wrong shape is sent again.
                validate=lambda response: self.parse(response, items),
                precheck=self._precheck(items),
                splittable=len(items) > 1,
            )
        except _Resplit:
            return await self._send_split(items)
        except ApiError as error:
            if self._resend_after(error):
                return await self._send(items)
            if error.kind == "config":
                raise error.as_config_error(self.route) from None
            if error.kind == "too_large":
                self._learn_refusal(error.message, items)
                if len(items) > 1:
                    return await self._send_halves(items)
                return [failed(f"{error.message} (the input alone is too long for the model)", kind="input")]
            if len(items) > 1:
                # A refusal for one input's content refuses its whole batch: halves find that input,
                # and the others get their answers.
                return await self._send_halves(items)
            return [failed(error.message, kind="input")]

    async def _send_split(self, items: list[ItemT]) -> list[Result]:
        """The batch again, as batches under the current caps (halves if it already fits them)."""
        groups = plan_batches([i.tokens for i in items], max_inputs=self._limits.input_cap, max_tokens=self.max_tokens)
        if len(groups) < 2:
            return await self._send_halves(items)
        return await self._send_parts([[items[i] for i in group] for group in groups])

    async def _send_halves(self, items: list[ItemT]) -> list[Result]:
        half = len(items) // 2
        return await self._send_parts([items[:half], items[half:]])

    async def _send_parts(self, parts: list[list[ItemT]]) -> list[Result]:
        """The parts of a split batch, each answered to its records as soon as it arrives: paid for,
        an answer is kept (and cached) even if another part is refused until the sync fails. A part
        that fails the sync waits for the others already sent, so that none of their answers is
        dropped on the way (the parts share the retry budget, which ends the waiting ones soon)."""
        outcomes = await asyncio.gather(*(self._send_part(part) for part in parts), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [result for part in outcomes for result in part]  # type: ignore[union-attr]

    async def _send_part(self, items: list[ItemT]) -> list[Result]:
        results = await self._send(items)
        if self._batches is not None:
            self._batches.settle(items, results)
        return results

    def _learn_refusal(self, message: str, items: list[ItemT]) -> None:
        """Lowers the cap the refusal is about, for every later batch of the sync."""
        if too_many_inputs(message):
            self._limits.lower_input_cap(len(items))
            if self._batches is not None:
                self._batches.cap_inputs(self._limits.input_cap)
        elif len(items) > 1:
            self._limits.lower_token_ceiling(message, sum(i.tokens for i in items) or 1)
            self._rebudget()


class _Resplit(Exception):
    """A batch that no longer fits the caps, caught before it was sent."""

"""Token-aware batching of embedding inputs.

One input per request would pay the latency and the per-request overhead thousands of times over;
one request per 512 inputs must still stay under the server's token limit. The counts come from
Mistral's tokenizer with a margin, and when the server still answers "too many tokens" the batch is
split in half and retried, down to single inputs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

# Observed server limits per embeddings request (NOTES §6).
MAX_INPUTS_PER_REQUEST = 512
MAX_TOKENS_PER_REQUEST = 16_384
# Our count and the server's can differ by a few percent (another tokenizer version, special tokens).
TOKEN_MARGIN = 0.95
# Once responses have told how the server counts relative to us (usage.prompt_tokens), a small
# margin is enough: the 10% above would cost 10% of throughput under a requests-per-second limit.
CALIBRATED_MARGIN = 0.99
# At most this share of the account's tokens per minute in one batch: see EmbeddingEnricher._budget.
TPM_SHARE_PER_BATCH = 0.1
# How long a partial embeddings batch may wait for more input while other batches are in flight.
MAX_LINGER_SECONDS = 1.0

T = TypeVar("T")
R = TypeVar("R")


def plan_batches(
    token_counts: Sequence[int],
    max_inputs: int = MAX_INPUTS_PER_REQUEST,
    max_tokens: int = int(MAX_TOKENS_PER_REQUEST * TOKEN_MARGIN),
) -> list[list[int]]:
    """Indices grouped into consecutive batches under both limits (an input over the token limit
    alone gets its own batch: the server decides, and it fails alone)."""
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index, count in enumerate(token_counts):
        if current and (len(current) >= max_inputs or tokens + count > max_tokens):
            batches.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += count
    if current:
        batches.append(current)
    return batches


# Input limits reported for the API over time (NOTES section 6): a refusal for too many inputs steps
# down to the next of these below what was refused, then halves, so that one refusal usually finds it.
KNOWN_INPUT_LIMITS = (512, 128)
_TOKENS_MAX = re.compile(r"max(?:imum)? is (\d+)\D+?(\d+)", re.IGNORECASE)
# "the request costs 20500 tokens and the limit ... allows at most 20000 at once" (a rate-limit meter
# smaller than the request).
_COSTS_AT_MOST = re.compile(r"costs (\d+) tokens.*?at most (\d+)", re.IGNORECASE)


def too_many_inputs(message: str) -> bool:
    return "too many inputs" in message.lower()


def tokens_max_and_count(message: str) -> tuple[int, int] | None:
    """(the server's token limit, its count of the refused batch) from "Too many tokens in batch.
    Max is 16384 got 17001", or None when the message says neither."""
    match = _TOKENS_MAX.search(message)
    if match:
        return int(match.group(1)), int(match.group(2))
    match = _COSTS_AT_MOST.search(message)
    return (int(match.group(2)), int(match.group(1))) if match else None


def lower_input_cap(refused: int) -> int:
    """The inputs per request to use after `refused` inputs were refused as too many."""
    for limit in KNOWN_INPUT_LIMITS:
        if limit < refused:
            return limit
    return max(1, refused // 2)


class Batcher(Generic[T, R]):
    """Collects items submitted one by one into batches, sent with `send_batch` as soon as a batch
    is full or `flush()` is called (the pipeline flushes when its input runs dry, so a slow source
    never waits for a batch to fill). `linger` bounds how long a partial batch may wait anyway when
    nothing else is in flight, `max_linger` when something is."""

    def __init__(
        self,
        send_batch: Callable[[list[T]], Awaitable[list[R]]],
        tokens_of: Callable[[T], int],
        max_inputs: int = MAX_INPUTS_PER_REQUEST,
        max_tokens: int = int(MAX_TOKENS_PER_REQUEST * TOKEN_MARGIN),
        linger: float = 0.05,
        max_linger: float | None = None,
    ) -> None:
        self._send_batch = send_batch
        self._tokens_of = tokens_of
        self.max_inputs = max_inputs
        self.max_tokens = max_tokens
        self.linger = linger
        # While batches of this batcher are in flight, a partial one may wait up to this long: their
        # answers free the window that lets more input in, and a half-full request would spend a
        # slot of the account's rate limit on half the records.
        self.max_linger = linger if max_linger is None else max(linger, max_linger)
        self._opened = 0.0
        self._items: list[T] = []
        self._futures: list[asyncio.Future] = []
        self._tokens = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        # The futures of the items sent and not yet answered, by id(item) (an item sent is held by
        # its batch until answered, so no other item has its id meanwhile): see settle.
        self._sent: dict[int, asyncio.Future] = {}

    @property
    def in_flight(self) -> bool:
        return bool(self._tasks)

    def submit(self, item: T) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        count = self._tokens_of(item)
        if self._items and (len(self._items) >= self.max_inputs or self._tokens + count > self.max_tokens):
            self.flush()
        future = loop.create_future()
        if not self._items:
            self._opened = loop.time()
        self._items.append(item)
        self._futures.append(future)
        self._tokens += count
        if len(self._items) >= self.max_inputs:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.linger, self._linger_over)
        return future

    def settle(self, items: list[T], results: list[R]) -> None:
        """Answers some items of a batch in flight before the rest: the part of a split batch
        that was answered, whose records (and the cache) must not wait for, nor lose their answers
        with, a part that is still refused."""
        for item, result in zip(items, results, strict=True):
            future = self._sent.get(id(item))
            if future is not None and not future.done():
                future.set_result(result)

    def _linger_over(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        waited = loop.time() - self._opened
        if self._tasks and waited < self.max_linger:
            self._timer = loop.call_later(min(self.linger, self.max_linger - waited), self._linger_over)
            return
        self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        items, futures = self._items, self._futures
        self._items, self._futures, self._tokens = [], [], 0
        task = asyncio.get_running_loop().create_task(self._run(items, futures))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[T], futures: list[asyncio.Future]) -> None:
        self._sent.update(zip(map(id, items), futures, strict=True))
        try:
            results = await self._send_batch(items)
        except BaseException as error:  # a fatal error reaches every record of the batch not yet answered
            for future in futures:
                if not future.done():
                    future.set_exception(error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        finally:
            for item in items:
                self._sent.pop(id(item), None)
        for future, result in zip(futures, results, strict=False):
            if not future.done():
                future.set_result(result)

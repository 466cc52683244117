"""Inputs held back while the first batch awaits its answer: a batcher that forms no batch from them
until that answer has calibrated the token count, then batches them all under the new budget."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from destination_mistral.enrich.batching import Batcher

T = TypeVar("T")
R = TypeVar("R")


class HoldingBatcher(Generic[T, R]):
    """A Batcher whose inputs wait, unbatched, while its first batch awaits its answer: the answer
    calibrates the count, and batches formed before it would keep the blind margin (5% fewer inputs
    each, so 5% more requests under a requests-per-second limit). The client sends nothing else
    before that answer anyway. `budget` gives the tokens a batch may hold, as of now."""

    def __init__(
        self,
        send_batch: Callable[[list[T]], Awaitable[list[R]]],
        tokens_of: Callable[[T], int],
        budget: Callable[[], int],
        *,
        max_inputs: int,
        max_linger: float,
    ) -> None:
        self._send_batch = send_batch
        self._budget = budget
        self._batcher: Batcher[T, R] = Batcher(
            self._send_first, tokens_of, max_inputs=max_inputs, max_tokens=budget(), max_linger=max_linger
        )
        self._held: list[tuple[T, asyncio.Future]] = []
        self._first_answered = False
        self._flush_held = False

    @property
    def _holding(self) -> bool:
        return not self._first_answered and self._batcher.in_flight

    def submit(self, item: T) -> asyncio.Future:
        if self._holding:
            future = asyncio.get_running_loop().create_future()
            self._held.append((item, future))
            return future
        self.rebudget()
        return self._batcher.submit(item)

    def flush(self) -> None:
        if self._holding:
            self._flush_held = True  # what waits goes out, in calibrated batches, with the first answer
            return
        self._batcher.flush()

    def rebudget(self) -> None:
        """Batches formed from now on hold what the budget allows now."""
        self._batcher.max_tokens = self._budget()

    def settle(self, items: list[T], results: list[R]) -> None:
        self._batcher.settle(items, results)

    def cap_inputs(self, cap: int) -> None:
        self._batcher.max_inputs = min(self._batcher.max_inputs, cap)

    async def _send_first(self, items: list[T]) -> list[R]:
        try:
            return await self._send_batch(items)
        finally:
            if not self._first_answered:
                self._first_answered = True
                self._release_held()

    def _release_held(self) -> None:
        held, self._held = self._held, []
        self.rebudget()
        for item, future in held:
            _follow(self._batcher.submit(item), future)
        if self._flush_held:
            self._batcher.flush()


def _follow(source: asyncio.Future, target: asyncio.Future) -> None:
    """`target` ends as `source` does (the future handed out for a held input)."""

    def copy(done: asyncio.Future) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif done.exception() is not None:
            target.set_exception(done.exception())
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)

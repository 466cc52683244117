"""This sync's own answers: those paid for but not yet in the cache table, and the requests still in
flight with the records waiting for each. Both are keyed by the input's cache key, so that equal
inputs are sent once per sync."""

from __future__ import annotations

import asyncio

from destination_mistral.enrich.results import Result
from destination_mistral.sync.streams import PendingItem, StreamRuntime

Waiter = tuple[StreamRuntime, PendingItem]


class FreshAnswers:
    """Answers paid for in this sync that the cache table does not hold yet: they answer equal inputs
    until a commit stores them with the rows."""

    def __init__(self) -> None:
        self._answers: dict[str, tuple[str, Result]] = {}  # key: (endpoint, result)

    def __len__(self) -> int:
        return len(self._answers)

    def __contains__(self, key: str) -> bool:
        return key in self._answers

    def get(self, key: str) -> Result:
        return self._answers[key][1]

    def add(self, key: str, endpoint: str, result: Result) -> None:
        self._answers[key] = (endpoint, result)

    def entries(self) -> list[tuple[str, str, Result]]:
        return [(key, endpoint, result) for key, (endpoint, result) in self._answers.items()]

    def stored(self, entries: list[tuple[str, str, Result]]) -> None:
        for key, _, _ in entries:
            self._answers.pop(key, None)


class InFlight:
    """One request (or batch slot) per distinct input being answered, and the records that wait
    for it: the first of them gets the answer, the others a copy marked as cached."""

    def __init__(self) -> None:
        self._requests: dict[str, asyncio.Future[Result]] = {}
        self._waiters: dict[str, list[Waiter]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._requests

    def start(self, key: str, request: asyncio.Future[Result], waiter: Waiter) -> None:
        self._requests[key] = request
        self._waiters[key] = [waiter]

    def join(self, key: str, waiter: Waiter) -> None:
        self._waiters[key].append(waiter)

    def finish(self, key: str) -> list[Waiter]:
        self._requests.pop(key, None)
        return self._waiters.pop(key, [])

    def requests(self) -> list[asyncio.Future[Result]]:
        return list(self._requests.values())

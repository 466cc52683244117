"""The log of the tokens started in the last sixty seconds (and of those booked ahead), oldest first:
no window of sixty seconds, sliding or fixed, may carry more than the minute's limit. The token
bucket's burst is thus paid back when it leaves the window a minute later, not by a refill slower than
the limit for the whole sync."""

from __future__ import annotations

import collections


class LoggedStart:
    """A start in the log of the last sixty seconds: its cost is settled when the answer arrives."""

    __slots__ = ("when", "cost", "live")

    def __init__(self, when: float, cost: float) -> None:
        self.when = when
        self.cost = cost
        self.live = True


class MinuteLog:
    def __init__(self) -> None:
        self._log: collections.deque[LoggedStart] = collections.deque()
        self._sum = 0.0

    def allows(self, start: float, cost: float, now: float, limit: float) -> float:
        """The earliest time from `start` at which the tokens started in the sixty seconds before it,
        plus `cost`, stay within `limit` (a request larger than the limit waits for an empty minute)."""
        log = self._log
        while log and log[0].when <= now - 60.0:
            old = log.popleft()
            old.live = False
            self._sum -= old.cost
        need = min(cost, limit)
        total = self._sum
        for entry in log:  # oldest first: each that must leave the window moves the start after it
            if total + need <= limit + 1e-6:
                break
            start = max(start, entry.when + 60.0)
            total -= entry.cost
        return start

    def add(self, when: float, cost: float) -> LoggedStart:
        entry = LoggedStart(when, cost)
        self._log.append(entry)
        self._sum += cost
        return entry

    def take_back(self, entry: LoggedStart | None, cost: float) -> None:
        """Takes `cost` off a start still in the log (settled lower, or not sent)."""
        if entry is not None and entry.live:
            entry.cost -= cost
            self._sum -= cost

    def clear(self) -> None:
        self._log.clear()
        self._sum = 0.0

"""Fixed-window mode: a server that counts tokens per fixed minute (or shorter window) rather than in
a smooth bucket, learned either from a refusal whose Retry-After is far longer than a smooth bucket
would need to refill the shortfall (the Retry-After then says when the window ends), or from what the
server has left jumping up at a reset. From then on each window's budget is booked whole (requests
start in the first window that has room for their cost), so a sync spends every window's limit and
meets no more refusals."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from destination_mistral.http.tickets import Ticket
from destination_mistral.http.token_bucket import TokenBucket


class FixedWindows:
    # The share of a window's budget that is booked (see book).
    FILL_SHARE = 0.98
    # The share of a window at its end in which no start is booked (see book).
    GUARD_SHARE = 0.05
    # The length of a fixed window: the limit is per minute.
    SECONDS = 60.0

    def __init__(self, bucket: TokenBucket, clock: Callable[[], float]) -> None:
        self._bucket = bucket  # read for the minute's limit and the refill it would allow
        self._clock = clock
        # The end of the server's current window once it is known, and the tokens booked per window
        # (0: the window ending at `end`, 1: the next, ...).
        self.end: float | None = None
        self._used: dict[int, float] = {}
        self._others: dict[int, float] = {}  # what the server counted in a window besides our starts
        # What one window holds and how long it lasts. The limit is announced per minute, but a
        # server may count in shorter windows (its headers then show a smaller "remaining" at each
        # reset): both are learned from the server, and a window is never assumed to hold more
        # than the server was seen to give, or the pacer would book whole minutes into one window
        # and wait a minute per batch.
        self._seconds = self.SECONDS
        self._budget: float | None = None
        self._most_remaining = 0.0  # the most tokens the server was seen to have left, in any mode
        self._most_left = 0.0  # the most the server said it had left, as it said it
        self._last_remaining: tuple[float, float] | None = None  # (when, what) the server last said it had left

    def _index(self, when: float) -> int:
        assert self.end is not None
        return max(0, math.floor((when - self.end) / self._seconds) + 1)

    def _start(self, index: int) -> float:
        assert self.end is not None
        return self.end + (index - 1) * self._seconds

    def _limit(self) -> float:
        limit = self._bucket.per_minute or 0.0
        if self._budget is not None:
            return min(limit, self._budget)
        return limit * self._seconds / 60.0

    def _spent(self, index: int) -> float:
        return self._used.get(index, 0.0) + self._others.get(index, 0.0)

    def book(self, start: float, cost: float) -> tuple[float, int]:
        """The first window from `start` on with room for `cost` (an empty one takes any cost)."""
        # A little of each window is left: our count of what is in flight is an estimate until the
        # answers settle it, and one refusal holds every start until the window ends.
        limit = self._limit() * self.FILL_SHARE
        # Our windows' edges are known to within the time between two answers: a start in the last
        # moments of one may reach the server in the next, which is then booked whole already.
        guard = max(0.05, self.GUARD_SHARE * self._seconds)
        index = self._index(start)
        while True:
            spent = self._spent(index)
            late = max(start, self._start(index)) > self._start(index + 1) - guard
            if not late and (spent <= 0 or spent + cost <= limit):
                break
            index += 1
        self._used[index] = self._used.get(index, 0.0) + cost
        current = self._index(self._clock())
        for old in [k for k in self._used if k < current]:
            del self._used[old]
        for old in [k for k in self._others if k < current]:
            del self._others[old]
        return max(start, self._start(index)), index

    def settle(self, ticket: Ticket, actual: float) -> None:
        """The server counted `actual` for what `ticket` was charged in its window."""
        if ticket.window in self._used:
            self._used[ticket.window] += actual - ticket.charged

    def give_back(self, ticket: Ticket) -> None:
        """A start that was not sent: its window has its charge back."""
        if ticket.window in self._used:
            self._used[ticket.window] = max(0.0, self._used[ticket.window] - ticket.charged)

    def reset(self) -> None:
        """Back to the smooth bucket (the limit changed: the windows are learned again)."""
        self.end = None
        self._used = {}
        self._others = {}

    def hear(self, remaining: float, now: float, ticket: Ticket | None, inflight: Iterable[Ticket]) -> bool:
        """The server has `remaining` tokens left, as of the answer to `ticket`. True when the windows
        are booked and took the figure; False leaves it to the bucket."""
        per_minute = self._bucket.per_minute
        # The server counted every request that reached it before this answer was made; those
        # started after this one may not have been counted yet, so they come off its figure.
        self._most_remaining = max(
            self._most_remaining, min(remaining + (ticket.charged if ticket is not None else 0.0), per_minute)
        )
        self._notice_reset(remaining, now, inflight)
        self._most_left = max(self._most_left, remaining)
        if self.end is None:
            return False
        current = self._index(now)
        # The most the server was seen to have left is the window's budget, at the least (adding
        # this answer's own cost back could count a request from before the reset).
        self._budget = max(self._budget or 0.0, min(remaining, per_minute))
        # Our own starts in the window are known, booked. What the server counts beyond those that
        # have started by now is someone else's (another client, or a window begun before the
        # sync), at the least: the server may have counted before some of ours arrived, never
        # after now. (Taking its figure as of the request's own start would count ours twice, and
        # leave every window a latency's worth of requests short.)
        ours = self._used.get(current, 0.0) - sum(
            t.charged for t in inflight if t.window == current and t.started > now
        )
        others = self._limit() - remaining - ours
        if others > self._others.get(current, 0.0):
            self._others[current] = others
        return True

    def _notice_reset(self, remaining: float, now: float, inflight: Iterable[Ticket]) -> None:
        """A fixed window shows itself without a refusal: what the server has left jumps up at each
        reset by far more than a bucket refills in the time between two answers (a smooth bucket's
        figure only ever grows by its refill; other clients only lower it). The reset gives the
        windows' phase, the most the server was seen to have their budget and length, and from then
        on each window's budget is booked whole. Without this, a server's low figure just before its
        reset reads as a bucket's, and holds the pace down after the reset too."""
        last, self._last_remaining = self._last_remaining, (now, remaining)
        if last is None:
            return
        then, before = last
        # The slack covers the time between the server's figure and our reading of it.
        if remaining - before <= self._bucket.rate * (now - then + 0.25) + 0.25 * self._bucket.capacity:
            return
        if self.end is not None:
            self._align(now)
            return
        # A window that holds what the server was seen to have at most lasts that share of a minute
        # (two resets one after the other could be two windows apart, if one went by unseen).
        per_minute = self._bucket.per_minute
        budget = min(max(self._most_left, remaining), per_minute or 0.0)
        if budget <= 0:
            return
        self._seconds = max(0.5, 60.0 * budget / (per_minute or 1.0))
        self._budget = budget
        self.end = now + self._seconds
        self._used = {}
        self._others = {}
        for ticket in inflight:  # starts booked ahead go to the windows they fall in
            if ticket.started > now and ticket.charged:
                ticket.window = self._index(ticket.started)
                ticket.logged = None
                self._used[ticket.window] = self._used.get(ticket.window, 0.0) + ticket.charged

    def _align(self, reset: float) -> None:
        """A reset seen while windows are booked: the nearest edge of ours moves to it when it is
        earlier (the server's reset came no later than it was seen)."""
        edge = round((reset - self.end) / self._seconds)
        shift = reset - (self.end + edge * self._seconds)
        # Seen late by up to an answer's latency; an edge found from a refusal's Retry-After, in
        # whole seconds, may be later still. Only a reset seen before our edge is news: our edge
        # then lags the server's less than before (moving it earlier, never past what was seen).
        if -self._seconds / 4 <= shift < 0:
            self.end += shift

    def refused(self, now: float, retry_after: float | None, tokens_left: float, cost: float | None) -> bool:
        """A refusal that says the token budget is spent, for a request that cost `cost`. True when it
        is a fixed window's: nothing more starts in the server's current window, whose end the windows
        now know, and what was booked ahead must book again."""
        if self.end is not None:
            self._refused_in_window(now, retry_after)
            return True
        if retry_after is None or cost is None:
            return False
        limit = self._bucket.per_minute
        # A smooth bucket refills the shortfall in shortfall / (limit/60) seconds; a wait far
        # longer says the server counts per fixed window, which ends when the wait does.
        refill = max(0.0, cost - tokens_left) * 60.0 / limit
        # (Retry-After comes in whole seconds: a bucket's wait is its refill rounded up; half as
        # long again covers our estimate of the shortfall.)
        if not math.ceil(1.5 * refill) + 1 <= retry_after <= self.SECONDS + 1:
            return False
        share = 60.0 * self._most_remaining / limit
        if 0 < self._most_remaining < 0.9 * limit and retry_after <= share + 1:
            # The server never had the minute's limit to give, and its window ends within
            # that share of a minute: its windows are that short and hold what it was seen
            # to have. (A minute another client half spent ends later than its share.)
            self._budget = self._most_remaining
            self._seconds = max(0.5, share)
        self.end = now + retry_after
        self._used = {}
        self._others = {0: self._limit()}  # nothing more until the reset
        return True

    def _refused_in_window(self, now: float, retry_after: float | None) -> None:
        """A refusal while windows are booked: the server's current window is spent. Its reset is
        within the Retry-After (whole seconds: within the last second of it); an edge of ours
        outside that range moves into it."""
        self._others[self._index(now)] = self._limit()
        if retry_after is not None:
            edge = self._start(self._index(now) + 1)
            earliest, latest = now + max(0.0, retry_after - 1.0), now + retry_after
            if not earliest <= edge <= latest:
                self.end += (latest if edge > latest else (earliest + latest) / 2) - edge

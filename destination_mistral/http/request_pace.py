"""The request pace: starts are spaced at the pace that comes from, in order, the configured cap, the
limit the server announces (`x-ratelimit-limit-req-minute`) and, when the server says nothing but
429s, a fraction of the rate achieved that creeps back up while requests succeed."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping

from destination_mistral.http.headers import float_header


class RequestPace:
    # One multiplicative cut per this many seconds: 64 requests refused together are one signal,
    # not 64 (which would take the pace from 100/s to 0.2/s at once).
    CUT_INTERVAL = 1.0
    MIN_STARTS_TO_PACE = 8
    # When the limit is first announced, the server also says how many requests it would accept at
    # once (x-ratelimit-remaining-req-minute): up to this many seconds' worth of them start together
    # instead of being spaced. Only this first figure is used: later ones are stale while requests
    # are in flight.
    BURST_SECONDS = 1.0
    # After this long without a refusal, the pace grows quickly again (see grow).
    QUIET_SECONDS = 3.0

    def __init__(self, cap_rps: float | None, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.cap = cap_rps
        self.rate: float | None = cap_rps
        self.learned: float | None = None  # requests/s announced by the server
        self._next_slot = 0.0
        self._last_cut = float("-inf")
        self._starts: collections.deque[float] = collections.deque(maxlen=4096)
        self._burst = 0
        self._announced = False  # whether successful answers have carried the limit
        self._raised_at: float | None = None  # the pace when the limits last rose

    def ceiling(self) -> float | None:
        limits = [r for r in (self.cap, self.learned) if r]
        return min(limits) if limits else None

    def earliest(self, start: float) -> tuple[float, bool]:
        """The earliest start from `start` on that the pace allows, and whether it is one of the
        first burst's (which start together)."""
        if self._burst > 0:
            self._burst -= 1
            return start, True
        if self.rate:
            start = max(start, self._next_slot)
        return start, False

    def book(self, start: float, bursting: bool) -> None:
        """A start was booked at `start`: the next one is a slot later."""
        if bursting:
            self._next_slot = max(self._next_slot, start)
        elif self.rate:
            self._next_slot = max(self._next_slot, start) + 1.0 / self.rate
        self._starts.append(start)

    def observed_rate(self, window: float = 2.0) -> float:
        now = self._clock()
        recent = sum(1 for t in self._starts if now - window <= t <= now)
        return recent / window

    def give_back_slots(self) -> None:
        """The limits rose: slots booked at the old pace are given back, so that the starts that book
        again are spaced at the new one from now."""
        self._raised_at = self.rate
        self._next_slot = min(self._next_slot, self._clock())

    def learn(self, headers: Mapping[str, str]) -> bool:
        """Takes the limit the server announces; True when it rose above the one known (the slots
        booked at the old pace are given back)."""
        limit = float_header(headers, "x-ratelimit-limit-req-minute")
        if not (limit and limit > 0):
            return False
        learned = limit / 60.0
        if learned == self.learned:
            return False
        first = self.learned is None
        raised = not first and learned > self.learned
        if raised:
            self.rate = max(self.rate or 0.0, min(learned, self.cap or learned))
            self.give_back_slots()
        self.learned = learned
        ceiling = self.ceiling()
        self.rate = min(self.rate, ceiling) if self.rate else ceiling
        remaining = float_header(headers, "x-ratelimit-remaining-req-minute")
        if first and remaining and self.rate:
            # One of them is left in reserve: the server counts what is already on the way.
            self._burst = max(0, int(min(remaining, self.rate * self.BURST_SECONDS)) - 1)
        return raised

    def forget_unannounced(self, announced: bool) -> bool:
        """Whether the answers stopped announcing a limit they announced before: the pace goes back
        to the user's cap."""
        self._announced = self._announced or announced
        if self._announced and not announced and self.learned is not None:
            self.learned = None
            self.rate = self.cap
            return True
        return False

    def grow(self) -> bool:
        """A success: the pace grows towards its ceiling. True once it has grown by half since the
        limits last rose (starts booked at the old pace may then start sooner)."""
        if not self.rate:
            return False
        ceiling = self.ceiling()
        if ceiling is not None and self.rate >= ceiling:
            return False
        # Slow to grow right after a refusal; once refusals have stopped for a while, quick,
        # so that a pace cut to a fraction by a burst of 429s does not take minutes to recover.
        quiet = self._clock() - self._last_cut > self.QUIET_SECONDS
        grown = self.rate * (1.2 if quiet else 1.02) + 0.05
        self.rate = min(grown, ceiling) if ceiling else grown
        return self._raised_at is not None and self.rate >= 1.5 * self._raised_at

    def stop_burst(self) -> None:
        self._burst = 0

    def cut(self, now: float) -> None:
        """A refusal that blames the pace: it is cut, once per CUT_INTERVAL."""
        if now - self._last_cut < self.CUT_INTERVAL:
            return
        self._last_cut = now
        ceiling = self.ceiling()
        if self.learned and self.rate and self.rate >= self.learned:
            # Refused at the announced pace: the server's window is tighter than its header says
            # (or another client shares the key); step just below it.
            self.rate = max(0.2, self.learned * 0.9)
            return
        if not self.rate and not ceiling and sum(1 for t in self._starts if now - 2.0 <= t) < self.MIN_STARTS_TO_PACE:
            # A handful of starts says nothing about the pace (one refused probe would read as 0.5/s
            # and book every later request seconds apart): the refused request waits its own
            # Retry-After, and the pace is cut once there is a rate to cut.
            return
        current = self.rate or self.observed_rate() or 1.0
        self.rate = max(0.2, current * 0.7)
        if ceiling:
            self.rate = min(self.rate, ceiling)

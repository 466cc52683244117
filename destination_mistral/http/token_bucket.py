"""The tokens-per-minute limit in its smooth form: a bucket refilled at the minute's limit (the
configured cap or `x-ratelimit-limit-tokens-minute`), with the log of the last minute's starts
(minute_log.py) so that its burst never makes a minute carry more than the limit. The server's
`x-ratelimit-remaining-tokens-minute` lowers the level when it says less is left (another client on
the same key, or a fixed window that started before this sync)."""

from __future__ import annotations

import collections
from collections.abc import Callable

from destination_mistral.http.minute_log import LoggedStart, MinuteLog
from destination_mistral.http.tickets import Ticket


class TokenBucket:
    # The bucket holds at least this share of the minute's limit (and at least the largest request
    # seen, or that request could never start); the refill is what the minute leaves.
    BURST_SHARE = 0.05
    # The share of the limit's rate the bucket refills at: see rate.
    RATE_SHARE = 0.99

    def __init__(self, cap_tpm: float | None, clock: Callable[[], float]) -> None:
        self.cap_tpm = cap_tpm
        self.learned_tpm: float | None = None
        # The costs of the last requests: the bucket holds the largest of them. Only the last few, so
        # that one large early request (a first batch formed before the limit was known) does not
        # keep the bucket large, and the rate low, for the whole sync.
        self._recent_costs: collections.deque[float] = collections.deque(maxlen=16)
        self.level: float | None = None  # None until a token limit is known
        self._stamp = clock()
        self._heard = False  # whether the server has told its remaining tokens yet
        self._announced = False  # whether successful answers have carried the limit
        self._log = MinuteLog()

    @property
    def per_minute(self) -> float | None:
        limits = [v for v in (self.cap_tpm, self.learned_tpm) if v]
        return min(limits) if limits else None

    @property
    def capacity(self) -> float:
        limit = self.per_minute or 0.0
        largest = max(self._recent_costs) if self._recent_costs else 0.0
        return min(limit, max(limit * self.BURST_SHARE, largest))

    @property
    def rate(self) -> float:
        """Tokens per second: the minute's limit spread evenly, less a hundredth for what our count and
        clock cannot know of the server's (the log of the last minute's starts, not a slower refill,
        keeps the first burst within the minute)."""
        return (self.per_minute or 0.0) * self.RATE_SHARE / 60.0

    def level_at(self, when: float) -> float:
        assert self.level is not None
        if self.level >= self.capacity:  # the first burst (see hear_remaining) until it is spent
            return self.level
        return min(self.capacity, self.level + self.rate * max(0.0, when - self._stamp))

    def _set_level(self, level: float, when: float) -> None:
        # The stamp never moves back: a level booked for a future start must not earn refill twice.
        self.level = level
        self._stamp = max(self._stamp, when)

    def reserve(self, start: float, cost: float, now: float) -> tuple[float, LoggedStart]:
        """The earliest start from `start` on at which both the bucket and the last minute have room
        for `cost`, which is taken from them."""
        if self.level is None:
            self._set_level(self.capacity, now)
        self._recent_costs.append(min(cost, self.per_minute))
        start = self._log.allows(start, cost, now, self.per_minute or 0.0)
        need = min(cost, self.capacity)
        if self.level_at(start) < need:
            start = max(self._stamp, start) + (need - self.level_at(max(self._stamp, start))) / self.rate
        self._set_level(self.level_at(start) - cost, start)
        return start, self._log.add(start, cost)

    def settle(self, ticket: Ticket, actual: float) -> None:
        """The server counted `actual` for what `ticket` was charged."""
        if self.level is not None:
            self.level -= actual - ticket.charged
            self._log.take_back(ticket.logged, ticket.charged - actual)

    def give_back(self, ticket: Ticket) -> None:
        """A start that was not sent: its charge goes back."""
        if self.level is not None:
            self.level = min(self.capacity, self.level + ticket.charged)
            self._log.take_back(ticket.logged, ticket.charged)

    def learn_limit(self, limit: float | None) -> bool:
        """Takes the limit the server announces; True when it rose above the one known."""
        if not (limit and limit > 0 and limit != self.learned_tpm):
            return False
        raised = self.learned_tpm is not None and limit > self.learned_tpm
        self.learned_tpm = limit
        if self.level is not None:
            self.level = min(self.level, self.capacity)
        return raised

    def forget_unannounced(self, announced: bool) -> bool:
        """Whether the answers stopped announcing a limit they announced before: the learned limit is
        dropped (the user's cap stays)."""
        self._announced = self._announced or announced
        if self._announced and not announced and self.learned_tpm is not None:
            self.learned_tpm = None
            return True
        return False

    def hear_remaining(self, ceiling: float, now: float) -> None:
        """The server has `ceiling` tokens left for the starts not yet counted: the level is no higher."""
        if not self._heard and not self.cap_tpm:
            # The first figure the server gives is what it would accept now (a smooth bucket starts
            # full, a fixed window has its remainder): a sync may spend it at once rather than pace
            # from an empty bucket. Only the first: later ones are read as ceilings, below.
            self._heard = True
            self._set_level(
                min(max(ceiling, self.level_at(now) if self.level is not None else 0.0), self.per_minute), now
            )
            return
        self._heard = True
        if self.level is None:
            self._set_level(min(self.capacity, ceiling), now)
            return
        # The level is kept at its stamp, which is in the future while starts are booked ahead: the
        # server's figure, valid now, earns the refill up to the stamp before the two compare.
        ahead = max(0.0, self._stamp - now) * self.rate
        if ceiling + ahead < self.level_at(now):
            self.level = ceiling + ahead

    def spent_until(self, until: float, now: float, booked: float) -> None:
        """Nothing is left until `until`, and the starts booked before now (`booked` tokens), which a
        hold sends together at `until`, are paid from what the bucket holds then."""
        if self.level is not None:
            self.level = min(self.level_at(now), 0.0) - booked
            self._stamp = max(until, now)

    def restart(self, now: float) -> None:
        """The limit rose: the bucket refills from empty at the new rate (what is in flight is spent),
        and the last minute's starts are forgotten with the pace they were booked at."""
        self.level = 0.0 if self.per_minute else None
        self._stamp = now
        self._log.clear()

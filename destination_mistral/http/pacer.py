"""One pacer for every request of a sync: chat, embeddings and batch-API uploads.

Mistral accounts are limited in requests per second, tokens per minute and tokens per month, and for
bulk embeddings tokens bind first (720 requests/min x 16k-token batches is more than 5M tokens/min).
So a request starts only when both the request pace and the token budget allow its cost:

- requests: starts are spaced at the pace that comes from, in order, the configured cap, the limit
  the server announces (`x-ratelimit-limit-req-minute`) and, when the server says nothing but 429s,
  a fraction of the rate achieved that creeps back up while requests succeed;
- tokens: a bucket refilled at the minute's limit (the configured cap or
  `x-ratelimit-limit-tokens-minute`), and a log of the tokens started in the last sixty seconds, so
  that no window of sixty seconds, sliding or fixed, ever carries more than the limit: the bucket's
  burst is paid back when it leaves the window a minute later, not by a refill slower
  than the limit for the whole sync. The server's
  `x-ratelimit-remaining-tokens-minute` lowers the level when it says less is left (another client on
  the same key, or a fixed window that started before this sync), and a refusal that says the budget
  is spent holds every start until the Retry-After or the reset;
- a fixed window: when a refusal's Retry-After is far longer than a smooth bucket would need to
  refill the shortfall, the server counts per fixed minute, and its Retry-After says when the minute
  ends. From then on each minute's budget is booked whole (requests start in the first minute that
  has room for their cost), so a sync spends every minute's limit and meets no more refusals;
- cost: our own token count, scaled by how the server counted earlier requests of the same route
  (`x-ratelimit-tokens-query-cost`, else `usage`), and settled with the server's figure when the answer
  arrives, so that an estimate that was off does not accumulate."""

from __future__ import annotations

import collections
import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from destination_mistral.http.headers import float_header, header


@dataclass
class Ticket:
    """What a started request was charged, to settle when its answer arrives."""

    seq: int
    route: str
    estimate: float  # our own count
    charged: float  # what the bucket took (estimate x the route's ratio)
    started: float
    window: int | None = None  # the fixed window it was booked in (fixed-window mode)
    logged: _Start | None = None  # its entry in the log of the last minute's starts


class _Start:
    """A start in the log of the last sixty seconds: its cost is settled when the answer arrives."""

    __slots__ = ("when", "cost", "live")

    def __init__(self, when: float, cost: float) -> None:
        self.when = when
        self.cost = cost
        self.live = True


class Pacer:
    # One multiplicative cut per this many seconds: 64 requests refused together are one signal,
    # not 64 (which would take the pace from 100/s to 0.2/s at once).
    CUT_INTERVAL = 1.0
    MIN_STARTS_TO_PACE = 8
    # When the limit is first announced, the server also says how many requests it would accept at
    # once (x-ratelimit-remaining-req-minute): up to this many seconds' worth of them start together
    # instead of being spaced. Only this first figure is used: later ones are stale while requests
    # are in flight.
    BURST_SECONDS = 1.0
    # The token bucket holds at least this share of the minute's limit (and at least the largest
    # request seen, or that request could never start); the refill is what the minute leaves.
    TOKEN_BURST_SHARE = 0.05
    # The server's count is taken to be below ours only once it has counted this many of our tokens.
    CALIBRATION_TOKENS = 2_000
    # The share of the limit's rate the bucket refills at: see token_rate.
    TOKEN_RATE_SHARE = 0.99
    # After this long without a refusal, the request pace grows quickly again (see on_success).
    QUIET_SECONDS = 3.0
    # The share of a fixed window's budget that is booked (see _book_window).
    WINDOW_FILL_SHARE = 0.98
    # The share of a fixed window at its end in which no start is booked (see _book_window).
    WINDOW_GUARD_SHARE = 0.05
    # The length of a fixed window: the limit is per minute.
    WINDOW_SECONDS = 60.0

    def __init__(
        self, cap_rps: float | None = None, clock: Callable[[], float] = time.monotonic, *, cap_tpm: float | None = None
    ) -> None:
        self._clock = clock
        # ---- requests
        self.cap = cap_rps
        self.rate: float | None = cap_rps
        self.learned: float | None = None  # requests/s announced by the server
        self._next_slot = 0.0
        self._last_cut = float("-inf")
        self._starts: collections.deque[float] = collections.deque(maxlen=4096)
        self._burst = 0
        # ---- tokens
        self.cap_tpm = cap_tpm
        self.learned_tpm: float | None = None
        # The costs of the last requests: the bucket holds the largest of them. Only the last few, so
        # that one large early request (a first batch formed before the limit was known) does not
        # keep the bucket large, and the rate low, for the whole sync.
        self._recent_costs: collections.deque[float] = collections.deque(maxlen=16)
        self._level: float | None = None  # None until a token limit is known
        self._tokens_heard = False  # whether the server has told its remaining tokens yet
        self._stamp = clock()
        self.hold_until = float("-inf")  # no start before this (a spent budget, until its reset)
        self.ratios: dict[str, float] = {}
        self._counted: dict[str, float] = {}  # per route, how many of our tokens the server has counted
        # Fixed-window mode: the end of the server's current window once a refusal told it, and the
        # tokens booked per window (0: the window ending at _window_end, 1: the next, ...).
        self._window_end: float | None = None
        self._window_used: dict[int, float] = {}
        self._window_others: dict[int, float] = {}  # what the server counted in a window besides our starts
        # What one window holds and how long it lasts. The limit is announced per minute, but a
        # server may count in shorter windows (its headers then show a smaller "remaining" at each
        # reset): both are learned from the server, and a window is never assumed to hold more
        # than the server was seen to give, or the pacer would book whole minutes into one window
        # and wait a minute per batch.
        self._window_seconds = self.WINDOW_SECONDS
        self._window_budget: float | None = None
        self._most_remaining = 0.0  # the most tokens the server was seen to have left, in any mode
        self._most_left = 0.0  # the most the server said it had left, as it said it
        self._last_remaining: tuple[float, float] | None = None  # (when, what) the server last said it had left
        self._inflight: dict[int, Ticket] = {}
        self._seq = itertools.count()
        # The starts of the last sixty seconds (and those booked ahead), oldest first, and their sum.
        self._minute_log: collections.deque[_Start] = collections.deque()
        self._minute_sum = 0.0
        # ---- month
        self.month_spent: str | None = None  # why the monthly quota is known to be spent
        # Whether successful answers have carried the limits (see _forget_unannounced).
        self._announced_tokens = False
        self._announced_requests = False
        # Bumped when the limits rise: starts booked at the old pace are
        # booked again (see MistralClient._wait_for_start).
        self.epoch = 0
        self._epoch_rate: float | None = None

    # ---- the token bucket ---------------------------------------------------------------------------

    @property
    def tokens_per_minute(self) -> float | None:
        limits = [v for v in (self.cap_tpm, self.learned_tpm) if v]
        return min(limits) if limits else None

    @property
    def token_capacity(self) -> float:
        limit = self.tokens_per_minute or 0.0
        largest = max(self._recent_costs) if self._recent_costs else 0.0
        return min(limit, max(limit * self.TOKEN_BURST_SHARE, largest))

    @property
    def token_rate(self) -> float:
        """Tokens per second: the minute's limit spread evenly, less a hundredth for what our count and
        clock cannot know of the server's (the log of the last minute's starts, not a slower refill,
        keeps the first burst within the minute)."""
        return (self.tokens_per_minute or 0.0) * self.TOKEN_RATE_SHARE / 60.0

    def _level_at(self, when: float) -> float:
        assert self._level is not None
        if self._level >= self.token_capacity:  # the first burst (see _learn_tokens) until it is spent
            return self._level
        return min(self.token_capacity, self._level + self.token_rate * max(0.0, when - self._stamp))

    def _set_level(self, level: float, when: float) -> None:
        # The stamp never moves back: a level booked for a future start must not earn refill twice.
        self._level = level
        self._stamp = max(self._stamp, when)

    def cost_of(self, route: str, estimate: float) -> float:
        ratio = self.ratios.get(route, 1.0)
        if ratio < 1.0 and self._counted.get(route, 0.0) < self.CALIBRATION_TOKENS:
            # One short request (a probe of a single input) says little: 52 where we counted 54 would
            # have the first burst of full batches under-charged by 4%, and refused.
            ratio = 1.0
        return estimate * ratio

    # ---- reserving a start --------------------------------------------------------------------------

    def reserve(self, estimate: float = 0.0, route: str = "") -> tuple[float, Ticket]:
        """Books the earliest start that both limits allow for a request of `estimate` tokens (our
        count) and returns (seconds to wait, ticket). Both reservations are made for the same
        instant, so a request held back by one limit does not bunch up with later ones on the other."""
        now = self._clock()
        cost = self.cost_of(route, estimate)
        start = max(now, self.hold_until)
        bursting = self._burst > 0
        if bursting:
            self._burst -= 1
        elif self.rate:
            start = max(start, self._next_slot)
        window = None
        if self.tokens_per_minute and cost > 0 and self._window_end is not None:
            start, window = self._book_window(start, cost)
        elif self.tokens_per_minute and cost > 0:
            if self._level is None:
                self._set_level(self.token_capacity, now)
            self._recent_costs.append(min(cost, self.tokens_per_minute))
            start = self._minute_allows(start, cost, now)
            need = min(cost, self.token_capacity)
            if self._level_at(start) < need:
                start = max(self._stamp, start) + (need - self._level_at(max(self._stamp, start))) / self.token_rate
            self._set_level(self._level_at(start) - cost, start)
            logged = _Start(start, cost)
        if bursting:
            self._next_slot = max(self._next_slot, start)
        elif self.rate:
            self._next_slot = max(self._next_slot, start) + 1.0 / self.rate
        self._starts.append(start)
        ticket = Ticket(next(self._seq), route, estimate, cost if self.tokens_per_minute else 0.0, start, window)
        if self.tokens_per_minute and cost > 0 and window is None:
            ticket.logged = logged
            self._minute_log.append(logged)
            self._minute_sum += cost
        self._inflight[ticket.seq] = ticket
        return start - now, ticket

    def _minute_allows(self, start: float, cost: float, now: float) -> float:
        """The earliest time from `start` at which the tokens started in the sixty seconds before it,
        plus `cost`, stay within the minute's limit (a request larger than the limit waits for an
        empty minute)."""
        limit = self.tokens_per_minute or 0.0
        log = self._minute_log
        while log and log[0].when <= now - 60.0:
            old = log.popleft()
            old.live = False
            self._minute_sum -= old.cost
        need = min(cost, limit)
        total = self._minute_sum
        for entry in log:  # oldest first: each that must leave the window moves the start after it
            if total + need <= limit + 1e-6:
                break
            start = max(start, entry.when + 60.0)
            total -= entry.cost
        return start

    def _unlog(self, ticket: Ticket, cost: float) -> None:
        """Takes `cost` off the ticket's entry in the minute's log (settled lower, or not sent)."""
        entry = ticket.logged
        if entry is not None and entry.live:
            entry.cost -= cost
            self._minute_sum -= cost

    # ---- fixed-window mode ---------------------------------------------------------------------------

    def _window_of(self, when: float) -> int:
        assert self._window_end is not None
        return max(0, math.floor((when - self._window_end) / self._window_seconds) + 1)

    def _window_start(self, index: int) -> float:
        assert self._window_end is not None
        return self._window_end + (index - 1) * self._window_seconds

    def _window_limit(self) -> float:
        limit = self.tokens_per_minute or 0.0
        if self._window_budget is not None:
            return min(limit, self._window_budget)
        return limit * self._window_seconds / 60.0

    def _window_spent(self, index: int) -> float:
        return self._window_used.get(index, 0.0) + self._window_others.get(index, 0.0)

    def _book_window(self, start: float, cost: float) -> tuple[float, int]:
        """The first window from `start` on with room for `cost` (an empty one takes any cost)."""
        # A little of each window is left: our count of what is in flight is an estimate until the
        # answers settle it, and one refusal holds every start until the window ends.
        limit = self._window_limit() * self.WINDOW_FILL_SHARE
        # Our windows' edges are known to within the time between two answers: a start in the last
        # moments of one may reach the server in the next, which is then booked whole already.
        guard = max(0.05, self.WINDOW_GUARD_SHARE * self._window_seconds)
        index = self._window_of(start)
        while True:
            spent = self._window_spent(index)
            late = max(start, self._window_start(index)) > self._window_start(index + 1) - guard
            if not late and (spent <= 0 or spent + cost <= limit):
                break
            index += 1
        self._window_used[index] = self._window_used.get(index, 0.0) + cost
        current = self._window_of(self._clock())
        for old in [k for k in self._window_used if k < current]:
            del self._window_used[old]
        for old in [k for k in self._window_others if k < current]:
            del self._window_others[old]
        return max(start, self._window_start(index)), index

    def delay(self, estimate: float = 0.0, route: str = "") -> float:
        """Reserve a start and return how long to wait for it (the ticket is settled on its own)."""
        wait, ticket = self.reserve(estimate, route)
        self._inflight.pop(ticket.seq, None)
        return wait

    def held_for(self) -> float:
        """How long starts are still held (a refusal said the budget is spent until then)."""
        return max(0.0, self.hold_until - self._clock())

    def cancel(self, ticket: Ticket) -> None:
        """A reserved start that was not sent: its tokens go back."""
        if self._inflight.pop(ticket.seq, None) is None or not ticket.charged:
            return
        if ticket.window is not None:
            if ticket.window in self._window_used:
                self._window_used[ticket.window] = max(0.0, self._window_used[ticket.window] - ticket.charged)
        elif self._level is not None:
            self._level = min(self.token_capacity, self._level + ticket.charged)
            self._unlog(ticket, ticket.charged)

    # ---- what answers say ---------------------------------------------------------------------------

    def observed_rate(self, window: float = 2.0) -> float:
        now = self._clock()
        recent = sum(1 for t in self._starts if now - window <= t <= now)
        return recent / window

    def on_headers(self, headers: Mapping[str, str], ticket: Ticket | None = None) -> None:
        self._learn_requests(headers)
        self._learn_tokens(headers, ticket)
        month = float_header(headers, "x-ratelimit-remaining-tokens-month")
        if month is not None and month <= 0:
            self.month_spent = "x-ratelimit-remaining-tokens-month is 0" + _reset_note(headers)

    def _learn_requests(self, headers: Mapping[str, str]) -> None:
        limit = float_header(headers, "x-ratelimit-limit-req-minute")
        if limit and limit > 0:
            learned = limit / 60.0
            if learned != self.learned:
                first = self.learned is None
                if not first and learned > self.learned:
                    self.rate = max(self.rate or 0.0, min(learned, self.cap or learned))
                    self._raised()
                self.learned = learned
                ceiling = self._ceiling()
                self.rate = min(self.rate, ceiling) if self.rate else ceiling
                remaining = float_header(headers, "x-ratelimit-remaining-req-minute")
                if first and remaining and self.rate:
                    # One of them is left in reserve: the server counts what is already on the way.
                    self._burst = max(0, int(min(remaining, self.rate * self.BURST_SECONDS)) - 1)

    def _learn_tokens(self, headers: Mapping[str, str], ticket: Ticket | None) -> None:
        limit = float_header(headers, "x-ratelimit-limit-tokens-minute")
        if limit and limit > 0 and limit != self.learned_tpm:
            raised = self.learned_tpm is not None and limit > self.learned_tpm
            self.learned_tpm = limit
            if self._level is not None:
                self._level = min(self._level, self.token_capacity)
            if raised:
                self._restart_tokens()
        remaining = float_header(headers, "x-ratelimit-remaining-tokens-minute")
        if remaining is None or not self.tokens_per_minute:
            return
        now = self._clock()
        # The server counted every request that reached it before this answer was made; those
        # started after this one may not have been counted yet, so they come off its figure.
        self._most_remaining = max(
            self._most_remaining,
            min(remaining + (ticket.charged if ticket is not None else 0.0), self.tokens_per_minute),
        )
        self._notice_reset(remaining, now)
        self._most_left = max(self._most_left, remaining)
        if self._window_end is not None:
            current = self._window_of(now)
            # The most the server was seen to have left is the window's budget, at the least (adding
            # this answer's own cost back could count a request from before the reset).
            self._window_budget = max(self._window_budget or 0.0, min(remaining, self.tokens_per_minute))
            # Our own starts in the window are known, booked. What the server counts beyond those that
            # have started by now is someone else's (another client, or a window begun before the
            # sync), at the least: the server may have counted before some of ours arrived, never
            # after now. (Taking its figure as of the request's own start would count ours twice, and
            # leave every window a latency's worth of requests short.)
            ours = self._window_used.get(current, 0.0) - sum(
                t.charged for t in self._inflight.values() if t.window == current and t.started > now
            )
            others = self._window_limit() - remaining - ours
            if others > self._window_others.get(current, 0.0):
                self._window_others[current] = others
            return
        after = sum(t.charged for t in self._inflight.values() if ticket is None or t.seq > ticket.seq)
        ceiling = remaining - after
        if not self._tokens_heard and not self.cap_tpm:
            # The first figure the server gives is what it would accept now (a smooth bucket starts
            # full, a fixed window has its remainder): a sync may spend it at once rather than pace
            # from an empty bucket. Only the first: later ones are read as ceilings, below.
            self._tokens_heard = True
            self._set_level(
                min(max(ceiling, self._level_at(now) if self._level is not None else 0.0), self.tokens_per_minute), now
            )
            return
        self._tokens_heard = True
        if self._level is None:
            self._set_level(min(self.token_capacity, ceiling), now)
            return
        # The level is kept at its stamp, which is in the future while starts are booked ahead: the
        # server's figure, valid now, earns the refill up to the stamp before the two compare.
        ahead = max(0.0, self._stamp - now) * self.token_rate
        if ceiling + ahead < self._level_at(now):
            self._level = ceiling + ahead

    def _notice_reset(self, remaining: float, now: float) -> None:
        """A fixed window shows itself without a refusal: what the server has left jumps up at each
        reset by far more than a bucket refills in the time between two answers (a smooth bucket's
        figure only ever grows by its refill; other clients only lower it). The reset gives the
        windows' phase, the most the server was seen to have their budget and length, and from then
        on each window's budget is booked whole. Without this, a
        server's low figure just before its reset reads as a bucket's, and holds the pace down
        after the reset too."""
        last, self._last_remaining = self._last_remaining, (now, remaining)
        if last is None:
            return
        then, before = last
        # The slack covers the time between the server's figure and our reading of it.
        if remaining - before <= self.token_rate * (now - then + 0.25) + 0.25 * self.token_capacity:
            return
        if self._window_end is not None:
            self._align_windows(now)
            return
        # A window that holds what the server was seen to have at most lasts that share of a minute
        # (two resets one after the other could be two windows apart, if one went by unseen).
        budget = min(max(self._most_left, remaining), self.tokens_per_minute or 0.0)
        if budget <= 0:
            return
        self._window_seconds = max(0.5, 60.0 * budget / (self.tokens_per_minute or 1.0))
        self._window_budget = budget
        self._window_end = now + self._window_seconds
        self._window_used = {}
        self._window_others = {}
        for ticket in self._inflight.values():  # starts booked ahead go to the windows they fall in
            if ticket.started > now and ticket.charged:
                ticket.window = self._window_of(ticket.started)
                ticket.logged = None
                self._window_used[ticket.window] = self._window_used.get(ticket.window, 0.0) + ticket.charged

    def _align_windows(self, reset: float) -> None:
        """A reset seen while windows are booked: the nearest edge of ours moves to it when it is
        earlier (the server's reset came no later than it was seen)."""
        edge = round((reset - self._window_end) / self._window_seconds)
        shift = reset - (self._window_end + edge * self._window_seconds)
        # Seen late by up to an answer's latency; an edge found from a refusal's Retry-After, in
        # whole seconds, may be later still. Only a reset seen before our edge is news: our edge
        # then lags the server's less than before (moving it earlier, never past what was seen).
        if -self._window_seconds / 4 <= shift < 0:
            self._window_end += shift

    def settle(
        self, ticket: Ticket | None, headers: Mapping[str, str], usage: Mapping[str, object] | None = None
    ) -> None:
        """The answer to `ticket` arrived: the server's own count of its cost replaces our estimate
        in the bucket and teaches the route's ratio."""
        if ticket is None:
            return
        self._inflight.pop(ticket.seq, None)
        actual = float_header(headers, "x-ratelimit-tokens-query-cost")
        if actual is None and isinstance(usage, Mapping):
            for name in ("total_tokens", "prompt_tokens"):
                value = usage.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                    actual = float(value)
                    break
        if actual is None or ticket.estimate <= 0:
            return
        ratio = actual / ticket.estimate
        self._counted[ticket.route] = self._counted.get(ticket.route, 0.0) + ticket.estimate
        old = self.ratios.get(ticket.route)
        # Quick to learn that the server counts more (or the bucket over-spends), slow to forget it.
        weight = 0.5 if old is None or ratio > old else 0.1
        self.ratios[ticket.route] = ratio if old is None else old + weight * (ratio - old)
        if ticket.window is not None and ticket.charged:
            if ticket.window in self._window_used:
                self._window_used[ticket.window] += actual - ticket.charged
        elif self._level is not None and ticket.charged:
            self._level -= actual - ticket.charged
            self._unlog(ticket, ticket.charged - actual)

    def on_success(
        self, headers: Mapping[str, str], ticket: Ticket | None = None, usage: Mapping[str, object] | None = None
    ) -> None:
        self.settle(ticket, headers, usage)
        self.on_headers(headers, ticket)
        self._forget_unannounced(headers)
        if self.rate:
            ceiling = self._ceiling()
            if ceiling is None or self.rate < ceiling:
                # Slow to grow right after a refusal; once refusals have stopped for a while, quick,
                # so that a pace cut to a fraction by a burst of 429s does not take minutes to recover.
                quiet = self._clock() - self._last_cut > self.QUIET_SECONDS
                grown = self.rate * (1.2 if quiet else 1.02) + 0.05
                self.rate = min(grown, ceiling) if ceiling else grown
                if self._epoch_rate is not None and self.rate >= 1.5 * self._epoch_rate:
                    self._raised()

    def _forget_unannounced(self, headers: Mapping[str, str]) -> None:
        """A server that announced a limit on its answers and no longer does has lifted it: pacing by
        it would hold the sync at the old pace for good. (A server that names its limits only when it
        refuses is another matter: what it said is kept.) The user's caps stay."""
        tokens = header(headers, "x-ratelimit-limit-tokens-minute") is not None
        requests = header(headers, "x-ratelimit-limit-req-minute") is not None
        self._announced_tokens = self._announced_tokens or tokens
        self._announced_requests = self._announced_requests or requests
        if self._announced_tokens and not tokens and self.learned_tpm is not None:
            self.learned_tpm = None
            self._restart_tokens()
        if self._announced_requests and not requests and self.learned is not None:
            self.learned = None
            self.rate = self.cap
            self._raised()

    def _restart_tokens(self) -> None:
        """The token limit rose: the bucket starts again from what the new limit holds,
        and starts booked at the old pace are booked again."""
        now = self._clock()
        # What is in flight is spent; the bucket refills from empty at the new rate. Starts booked
        # ahead were charged to the old bucket: they book (and pay) again.
        self._level = 0.0 if self.tokens_per_minute else None
        self._stamp = now
        self._window_end = None
        self._window_used = {}
        self._window_others = {}
        self._minute_log.clear()
        self._minute_sum = 0.0
        for ticket in self._inflight.values():
            ticket.logged = None
            ticket.window = None
            if ticket.started > now:
                ticket.charged = 0.0
        self._raised()

    def _raised(self) -> None:
        self.epoch += 1
        self._epoch_rate = self.rate
        # Request slots booked at the old pace are given back: the starts that book again are spaced
        # at the new one from now.
        self._next_slot = min(self._next_slot, self._clock())

    def _rebook_ahead(self, now: float) -> None:
        """Starts booked ahead were charged to a model of the server that a refusal just proved
        wrong: they book again (see MistralClient._wait_for_start), into the windows that have room,
        rather than all start together at the reset."""
        for ticket in self._inflight.values():
            if ticket.started > now:
                ticket.charged = 0.0
                ticket.window = None
                ticket.logged = None
        self.epoch += 1

    def _refused_in_window(self, now: float, retry_after: float | None) -> None:
        """A refusal while windows are booked: the server's current window is spent. Its reset is
        within the Retry-After (whole seconds: within the last second of it); an edge of ours
        outside that range moves into it, and what was booked ahead books again."""
        self._window_others[self._window_of(now)] = self._window_limit()
        if retry_after is not None:
            edge = self._window_start(self._window_of(now) + 1)
            earliest, latest = now + max(0.0, retry_after - 1.0), now + retry_after
            if not earliest <= edge <= latest:
                self._window_end += (latest if edge > latest else (earliest + latest) / 2) - edge
        self._rebook_ahead(now)

    def on_throttled(
        self, retry_after: float | None, headers: Mapping[str, str] | None = None, ticket: Ticket | None = None
    ) -> bool:
        """A 429. Returns True when the headers say a budget is spent: then every start is held
        until the Retry-After (a fixed window refuses everything until it ends, so starting others
        would only collect more refusals); otherwise only the refused request waits and the pace is
        cut, once per CUT_INTERVAL."""
        headers = headers or {}
        if ticket is not None:
            self._inflight.pop(ticket.seq, None)
        self.on_headers(headers, None)
        self._burst = 0
        now = self._clock()
        tokens_left = float_header(headers, "x-ratelimit-remaining-tokens-minute")
        requests_left = float_header(headers, "x-ratelimit-remaining-req-minute")
        spent = (tokens_left is not None and tokens_left <= (ticket.charged if ticket else 0.0)) or (
            requests_left is not None and requests_left <= 0
        )
        if spent:
            wait = retry_after if retry_after is not None else 1.0
            # Refusals of requests that were already on their way when the hold began repeat what the
            # first one said: the level it set already pays for the starts booked ahead.
            already_held = now < self.hold_until
            self.hold_until = max(self.hold_until, now + wait)
            limit = self.tokens_per_minute
            if tokens_left is not None and limit and self._window_end is not None:
                self._refused_in_window(now, retry_after)
                return True
            if tokens_left is not None and limit and retry_after is not None and ticket is not None:
                # A smooth bucket refills the shortfall in shortfall / (limit/60) seconds; a wait far
                # longer says the server counts per fixed window, which ends when the wait does.
                cost = ticket.charged or self.cost_of(ticket.route, ticket.estimate)
                refill = max(0.0, cost - tokens_left) * 60.0 / limit
                # (Retry-After comes in whole seconds: a bucket's wait is its refill rounded up; half as
                # long again covers our estimate of the shortfall.)
                if retry_after >= math.ceil(1.5 * refill) + 1 and retry_after <= self.WINDOW_SECONDS + 1:
                    end = now + retry_after
                    share = 60.0 * self._most_remaining / limit
                    if self._window_end is None and 0 < self._most_remaining < 0.9 * limit and retry_after <= share + 1:
                        # The server never had the minute's limit to give, and its window ends within
                        # that share of a minute: its windows are that short and hold what it was seen
                        # to have. (A minute another client half spent ends later than its share.)
                        self._window_budget = self._most_remaining
                        self._window_seconds = max(0.5, share)
                    self._window_end = end
                    self._window_used = {}
                    self._window_others = {0: self._window_limit()}  # nothing more until the reset
                    self._rebook_ahead(now)
                    return True
            if tokens_left is not None and self._level is not None and not already_held:
                # Nothing is left until the reset, and the starts booked before this refusal, which
                # the hold now sends together at the reset, are paid from the next window's budget.
                booked = sum(t.charged for t in self._inflight.values() if t.started > now)
                self._level = min(self._level_at(now), 0.0) - booked
                self._stamp = max(self.hold_until, now)
            if tokens_left is not None and tokens_left <= 0 and self.tokens_per_minute:
                return True  # tokens bind: the request pace is not to blame
        if (
            not spent
            and requests_left is not None
            and requests_left > 0
            and (tokens_left is None or ticket is None or tokens_left > ticket.charged)
        ):
            # The server says it has requests and tokens left: this refusal is not about the pace
            # (a passing overload), so only the refused request waits. Cutting the pace for it
            # would crawl the whole sync, and hold every commit behind the slowest record.
            return False
        if now - self._last_cut < self.CUT_INTERVAL:
            return spent
        self._last_cut = now
        ceiling = self._ceiling()
        if self.learned and self.rate and self.rate >= self.learned:
            # Refused at the announced pace: the server's window is tighter than its header says
            # (or another client shares the key); step just below it.
            self.rate = max(0.2, self.learned * 0.9)
            return spent
        if not self.rate and not ceiling and sum(1 for t in self._starts if now - 2.0 <= t) < self.MIN_STARTS_TO_PACE:
            # A handful of starts says nothing about the pace (one refused probe would read as 0.5/s
            # and book every later request seconds apart): the refused request waits its own
            # Retry-After, and the pace is cut once there is a rate to cut.
            return spent
        current = self.rate or self.observed_rate() or 1.0
        self.rate = max(0.2, current * 0.7)
        if ceiling:
            self.rate = min(self.rate, ceiling)
        return spent

    def on_failure(self, ticket: Ticket | None) -> None:
        """A request that got no usable answer: the server may or may not have counted it, so its
        charge stays spent (the safe side of the limit)."""
        if ticket is not None:
            self._inflight.pop(ticket.seq, None)

    def _ceiling(self) -> float | None:
        limits = [r for r in (self.cap, self.learned) if r]
        return min(limits) if limits else None


def _reset_note(headers: Mapping[str, str]) -> str:
    for name in ("x-ratelimit-reset-tokens-month", "x-ratelimit-reset-month", "ratelimitbysize-reset"):
        value = header(headers, name)
        if value:
            return f"; the server says it resets at {value} ({name})"
    return ""

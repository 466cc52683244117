"""One pacer for every request of a sync: chat, embeddings and batch-API uploads.

Mistral accounts are limited in requests per second, tokens per minute and tokens per month, and for
bulk embeddings tokens bind first (720 requests/min x 16k-token batches is more than 5M tokens/min).
So a request starts only when both the request pace and the token budget allow its cost. The Pacer
books each start with the pieces below and tells them what the answers say:

- requests (request_pace.py): starts spaced at the configured cap, the announced limit, or a pace
  learned from 429s;
- tokens (token_bucket.py, minute_log.py): a bucket refilled at the minute's limit, and a log of the
  tokens started in the last sixty seconds, so that no window of sixty seconds, sliding or fixed, ever
  carries more than the limit. A refusal that says the budget is spent holds every start until the
  Retry-After or the reset;
- fixed windows (fixed_windows.py): a server found to count per fixed minute has each minute's budget
  booked whole, so a sync spends every minute's limit and meets no more refusals;
- cost (token_costs.py): our own token count, scaled by how the server counted earlier requests of
  the same route, and settled with the server's figure when the answer arrives (tickets.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from destination_mistral.http.fixed_windows import FixedWindows
from destination_mistral.http.headers import float_header, header
from destination_mistral.http.request_pace import RequestPace
from destination_mistral.http.tickets import InFlight, Ticket
from destination_mistral.http.token_bucket import TokenBucket
from destination_mistral.http.token_costs import CostRatios, server_count

__all__ = ["Pacer", "Ticket"]


class Pacer:
    def __init__(
        self, cap_rps: float | None = None, clock: Callable[[], float] = time.monotonic, *, cap_tpm: float | None = None
    ) -> None:
        self._clock = clock
        self.requests = RequestPace(cap_rps, clock)
        self.tokens = TokenBucket(cap_tpm, clock)
        self.windows = FixedWindows(self.tokens, clock)
        self.costs = CostRatios()
        self._inflight = InFlight()
        self.hold_until = float("-inf")  # no start before this (a spent budget, until its reset)
        self.month_spent: str | None = None  # why the monthly quota is known to be spent
        # Bumped when the limits rise, or a refusal proves the starts booked ahead wrong: those
        # starts are booked again (see MistralClient._wait_for_start).
        self.epoch = 0

    @property
    def rate(self) -> float | None:
        """Requests per second, None while nothing paces them."""
        return self.requests.rate

    @property
    def ratios(self) -> dict[str, float]:
        return self.costs.ratios

    @property
    def tokens_per_minute(self) -> float | None:
        return self.tokens.per_minute

    @property
    def token_capacity(self) -> float:
        return self.tokens.capacity

    @property
    def token_rate(self) -> float:
        return self.tokens.rate

    def cost_of(self, route: str, estimate: float) -> float:
        return self.costs.cost_of(route, estimate)

    # ---- reserving a start --------------------------------------------------------------------------

    def reserve(self, estimate: float = 0.0, route: str = "") -> tuple[float, Ticket]:
        """Books the earliest start that both limits allow for a request of `estimate` tokens (our
        count) and returns (seconds to wait, ticket). Both reservations are made for the same
        instant, so a request held back by one limit does not bunch up with later ones on the other."""
        now = self._clock()
        cost = self.cost_of(route, estimate)
        start, bursting = self.requests.earliest(max(now, self.hold_until))
        per_minute = self.tokens.per_minute
        window = logged = None
        if per_minute and cost > 0 and self.windows.end is not None:
            start, window = self.windows.book(start, cost)
        elif per_minute and cost > 0:
            start, logged = self.tokens.reserve(start, cost, now)
        self.requests.book(start, bursting)
        ticket = self._inflight.issue(route, estimate, cost if per_minute else 0.0, start, window, logged)
        return start - now, ticket

    def delay(self, estimate: float = 0.0, route: str = "") -> float:
        """Reserve a start and return how long to wait for it (the ticket is settled on its own)."""
        wait, ticket = self.reserve(estimate, route)
        self._inflight.drop(ticket)
        return wait

    def held_for(self) -> float:
        """How long starts are still held (a refusal said the budget is spent until then)."""
        return max(0.0, self.hold_until - self._clock())

    def cancel(self, ticket: Ticket) -> None:
        """A reserved start that was not sent: its tokens go back."""
        if not self._inflight.drop(ticket) or not ticket.charged:
            return
        if ticket.window is not None:
            self.windows.give_back(ticket)
        else:
            self.tokens.give_back(ticket)

    # ---- what answers say ---------------------------------------------------------------------------

    def on_headers(self, headers: Mapping[str, str], ticket: Ticket | None = None) -> None:
        if self.requests.learn(headers):
            self.epoch += 1
        self._learn_tokens(headers, ticket)
        month = float_header(headers, "x-ratelimit-remaining-tokens-month")
        if month is not None and month <= 0:
            self.month_spent = "x-ratelimit-remaining-tokens-month is 0" + _reset_note(headers)

    def _learn_tokens(self, headers: Mapping[str, str], ticket: Ticket | None) -> None:
        if self.tokens.learn_limit(float_header(headers, "x-ratelimit-limit-tokens-minute")):
            self._restart_tokens()
        remaining = float_header(headers, "x-ratelimit-remaining-tokens-minute")
        if remaining is None or not self.tokens.per_minute:
            return
        now = self._clock()
        if not self.windows.hear(remaining, now, ticket, self._inflight):
            self.tokens.hear_remaining(remaining - self._inflight.charged_after(ticket), now)

    def settle(
        self, ticket: Ticket | None, headers: Mapping[str, str], usage: Mapping[str, object] | None = None
    ) -> None:
        """The answer to `ticket` arrived: the server's own count of its cost replaces our estimate
        in the bucket and teaches the route's ratio."""
        if ticket is None:
            return
        self._inflight.drop(ticket)
        actual = server_count(headers, usage)
        if not self.costs.learn(ticket.route, ticket.estimate, actual) or not ticket.charged:
            return
        if ticket.window is not None:
            self.windows.settle(ticket, actual)
        else:
            self.tokens.settle(ticket, actual)

    def on_success(
        self, headers: Mapping[str, str], ticket: Ticket | None = None, usage: Mapping[str, object] | None = None
    ) -> None:
        self.settle(ticket, headers, usage)
        self.on_headers(headers, ticket)
        self._forget_unannounced(headers)
        if self.requests.grow():
            self._raised()

    def _forget_unannounced(self, headers: Mapping[str, str]) -> None:
        """A server that announced a limit on its answers and no longer does has lifted it: pacing by
        it would hold the sync at the old pace for good. (A server that names its limits only when it
        refuses is another matter: what it said is kept.) The user's caps stay."""
        if self.tokens.forget_unannounced(header(headers, "x-ratelimit-limit-tokens-minute") is not None):
            self._restart_tokens()
        if self.requests.forget_unannounced(header(headers, "x-ratelimit-limit-req-minute") is not None):
            self._raised()

    def _restart_tokens(self) -> None:
        """The token limit rose: the bucket starts again from what the new limit holds,
        and starts booked at the old pace are booked again."""
        now = self._clock()
        self.tokens.restart(now)
        self.windows.reset()
        # Starts booked ahead were charged to the old bucket: they book (and pay) again.
        for ticket in self._inflight:
            ticket.logged = None
            ticket.window = None
            if ticket.started > now:
                ticket.charged = 0.0
        self._raised()

    def _raised(self) -> None:
        self.epoch += 1
        self.requests.give_back_slots()

    def _rebook_ahead(self, now: float) -> None:
        """Starts booked ahead were charged to a model of the server that a refusal just proved
        wrong: they book again (see MistralClient._wait_for_start), into the windows that have room,
        rather than all start together at the reset."""
        for ticket in self._inflight:
            if ticket.started > now:
                ticket.charged = 0.0
                ticket.window = None
                ticket.logged = None
        self.epoch += 1

    def on_throttled(
        self, retry_after: float | None, headers: Mapping[str, str] | None = None, ticket: Ticket | None = None
    ) -> bool:
        """A 429. Returns True when the headers say a budget is spent: then every start is held
        until the Retry-After (a fixed window refuses everything until it ends, so starting others
        would only collect more refusals); otherwise only the refused request waits and the pace is
        cut, once per RequestPace.CUT_INTERVAL."""
        headers = headers or {}
        if ticket is not None:
            self._inflight.drop(ticket)
        self.on_headers(headers, None)
        self.requests.stop_burst()
        now = self._clock()
        tokens_left = float_header(headers, "x-ratelimit-remaining-tokens-minute")
        requests_left = float_header(headers, "x-ratelimit-remaining-req-minute")
        spent = (tokens_left is not None and tokens_left <= (ticket.charged if ticket else 0.0)) or (
            requests_left is not None and requests_left <= 0
        )
        if spent and self._hold(now, retry_after, tokens_left, ticket):
            return True
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
        self.requests.cut(now)
        return spent

    def _hold(self, now: float, retry_after: float | None, tokens_left: float | None, ticket: Ticket | None) -> bool:
        """A budget is spent: every start waits for the Retry-After. True when the tokens bind, and
        the request pace is not to blame."""
        wait = retry_after if retry_after is not None else 1.0
        # Refusals of requests that were already on their way when the hold began repeat what the
        # first one said: the level it set already pays for the starts booked ahead.
        already_held = now < self.hold_until
        self.hold_until = max(self.hold_until, now + wait)
        if tokens_left is None:
            return False
        if self.tokens.per_minute:
            cost = (ticket.charged or self.cost_of(ticket.route, ticket.estimate)) if ticket is not None else None
            if self.windows.refused(now, retry_after, tokens_left, cost):
                self._rebook_ahead(now)
                return True
        if not already_held:
            # Nothing is left until the reset, and the starts booked before this refusal, which
            # the hold now sends together at the reset, are paid from the next window's budget.
            self.tokens.spent_until(self.hold_until, now, self._inflight.charged_ahead(now))
        return tokens_left <= 0 and bool(self.tokens.per_minute)

    def on_failure(self, ticket: Ticket | None) -> None:
        """A request that got no usable answer: the server may or may not have counted it, so its
        charge stays spent (the safe side of the limit)."""
        if ticket is not None:
            self._inflight.drop(ticket)


def _reset_note(headers: Mapping[str, str]) -> str:
    for name in ("x-ratelimit-reset-tokens-month", "x-ratelimit-reset-month", "ratelimitbysize-reset"):
        value = header(headers, name)
        if value:
            return f"; the server says it resets at {value} ({name})"
    return ""

"""Account limits, per API key, in the three dimensions Mistral workspaces have (NOTES §1): requests per
second, tokens per minute and tokens per month. Every check is O(1): a token bucket or a window counter
is a few float operations, never a log of past requests, because the emulator is benchmarked at
thousands of requests per second.

A request goes through two gates:
- `RateLimiter.begin` in the middleware, before the body is read: the requests-per-second bucket.
- `RequestLimits.admit(cost)` in the inference handler, once the body is validated and its prompt
  tokens are counted: the monthly quota, then the tokens-per-minute meter. A malformed request
  therefore costs nothing and gets its 4xx, and the cost is never counted twice.
The headers of the response come from `RequestLimits.headers()`, computed when the response is built so
that they describe the state after this request.
"""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Callable

from .errors import ApiError, mistral_error

TPM_SHAPES = ("smooth", "fixed")
RATE_LIMIT_BODIES = ("2026", "legacy")


class TokenBucket:
    """Refills continuously at `rate` per second up to `capacity`; starts full."""

    def __init__(self, rate: float, capacity: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self.clock = clock
        self.level = self.capacity
        self.stamp = clock()

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def try_acquire(self, cost: float = 1.0) -> tuple[bool, float]:
        """(accepted, seconds until a retry of the same cost would be accepted)."""
        self._refill(self.clock())
        if self.level >= cost:
            self.level -= cost
            return True, 0.0
        return False, (cost - self.level) / self.rate

    def remaining(self) -> int:
        """Units that would be accepted right now."""
        self._refill(self.clock())
        return int(math.floor(self.level))


class FixedWindow:
    """`budget` units per window of `window` seconds. Windows follow one another from the meter's
    creation (the first request after start-up or after the limit is set), so a run always starts at
    the beginning of a window: a benchmark does not depend on where in the clock's minute it started.
    A request is accepted when its cost fits what is left of the current window; when it does not, it
    waits for the next window, however small the shortfall."""

    def __init__(self, budget: float, window: float, clock: Callable[[], float] = time.monotonic):
        if budget <= 0 or window <= 0:
            raise ValueError("budget and window must be positive")
        self.budget = budget
        self.window = window
        self.clock = clock
        self.start = clock()
        self.used = 0.0

    def _roll(self, now: float) -> None:
        if now >= self.start + self.window:
            # Skip every whole window that went by, in O(1).
            self.start += math.floor((now - self.start) / self.window) * self.window
            self.used = 0.0

    def try_acquire(self, cost: float) -> tuple[bool, float]:
        now = self.clock()
        self._roll(now)
        if self.used + cost <= self.budget:
            self.used += cost
            return True, 0.0
        return False, self.start + self.window - now

    def remaining(self) -> int:
        self._roll(self.clock())
        return int(self.budget - self.used)


def next_month_start(wall: float) -> float:
    """Unix time of the first second of the next UTC calendar month."""
    t = time.gmtime(wall)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


class MonthQuota:
    """Tokens per UTC calendar month. Requests are admitted while anything is left; each one is then
    charged its whole usage (prompt and completion tokens: what a month is billed on), so the last
    admitted request may overdraw and the remainder shows as 0. Real quotas reset with the calendar
    month; so does this one, when the wall clock crosses into the next month."""

    def __init__(self, limit: int, wall: Callable[[], float] = time.time):
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.wall = wall
        self.used = 0
        self.resets_at = next_month_start(wall())

    def _roll(self) -> float:
        now = self.wall()
        if now >= self.resets_at:
            self.used = 0
            self.resets_at = next_month_start(now)
        return now

    def spent(self) -> bool:
        self._roll()
        return self.used >= self.limit

    def charge(self, tokens: int) -> None:
        self.used += tokens

    def remaining(self) -> int:
        self._roll()
        return max(0, self.limit - self.used)

    def seconds_to_reset(self) -> float:
        return self.resets_at - self._roll()


class KeyLimits:
    """The meters of one API key. Each is rebuilt (full again) when its own settings change."""

    __slots__ = ("rps", "tpm", "tpm_params", "month")

    def __init__(self) -> None:
        self.rps: TokenBucket | None = None
        self.tpm: TokenBucket | FixedWindow | None = None
        self.tpm_params: tuple = ()
        self.month: MonthQuota | None = None


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.clock = clock
        self.wall = wall
        self.keys: dict[str, KeyLimits] = {}

    def reset(self) -> None:
        """Fresh meters for every key: a new second, minute window and month. Setting a limit at run
        time does this, so that a test or a benchmark run starts from a known state."""
        self.keys.clear()

    def begin(self, key: str, settings) -> RequestLimits | None:
        """None when no limit is configured (no headers, no cost). Else the request's view of its
        key's limits, after the requests-per-second check: raises ApiError 429 when that refuses."""
        rps = settings.rate_limit_rps
        tpm = settings.tokens_per_minute
        month = settings.tokens_per_month
        if not (rps or tpm or month):
            return None
        limits = self.keys.get(key)
        if limits is None:
            limits = self.keys[key] = KeyLimits()
        if rps:
            if limits.rps is None or limits.rps.rate != rps:
                # One second of requests at most in a burst (at least one request).
                limits.rps = TokenBucket(rps, clock=self.clock)
        else:
            limits.rps = None
        if tpm:
            params = (tpm, settings.tpm_shape, settings.tpm_window_seconds)
            if limits.tpm_params != params:
                limits.tpm = build_tpm_meter(tpm, settings.tpm_shape, settings.tpm_window_seconds, self.clock)
                limits.tpm_params = params
        else:
            limits.tpm, limits.tpm_params = None, ()
        if month:
            if limits.month is None or limits.month.limit != month:
                limits.month = MonthQuota(month, self.wall)
        else:
            limits.month = None
        request = RequestLimits(limits, rps, tpm, settings.rate_limit_body)
        if limits.rps is not None:
            accepted, wait = limits.rps.try_acquire()
            if not accepted:
                raise request.refusal("rps", wait)
        return request


def build_tpm_meter(per_minute: float, shape: str, window_seconds: float, clock: Callable[[], float]):
    """The long-run rate is always `per_minute` / 60 tokens per second. `window_seconds` (60 on the real
    API, as far as anyone knows) sets how much of it is available at once: the smooth bucket holds that
    many seconds of tokens, the fixed window lasts that long. A shorter window lets a benchmark see many
    windows in a 30 s run while clients still pace by the per-minute figure the headers announce."""
    capacity = per_minute * window_seconds / 60.0
    if shape == "smooth":
        return TokenBucket(per_minute / 60.0, capacity=capacity, clock=clock)
    if shape == "fixed":
        return FixedWindow(capacity, window_seconds, clock=clock)
    raise ValueError(f"tpm_shape must be one of {TPM_SHAPES}, got {shape!r}")


class RequestLimits:
    """One request's dealings with its key's meters: admit its token cost, charge its completion to the
    month, and describe the state in headers."""

    __slots__ = ("limits", "rps_rate", "tpm", "body_shape", "cost", "cause")

    def __init__(self, limits: KeyLimits, rps_rate: float | None, tpm: float | None, body_shape: str):
        self.limits = limits
        self.rps_rate = rps_rate
        self.tpm = tpm
        self.body_shape = body_shape
        self.cost = 0
        # Why the request was refused ("rps", "tokens_minute", "tokens_month"), for the statistics.
        self.cause: str | None = None

    def admit(self, cost: int) -> None:
        """Spends `cost` prompt tokens, or raises ApiError: 429 when the month is spent or the minute's
        tokens are short (with the Retry-After that meter gives), 400 when the request alone costs more
        than the per-minute meter can ever hold."""
        limits = self.limits
        month = limits.month
        if month is not None and month.spent():
            raise self.refusal("tokens_month", month.seconds_to_reset())
        meter = limits.tpm
        if meter is not None:
            capacity = meter.capacity if isinstance(meter, TokenBucket) else meter.budget
            if cost > capacity:
                # A 429 here would be a deadlock: no wait ever makes room for it. A 400 tells the client
                # to split, in the words the per-request token limit already uses ("Too many tokens",
                # "split into more batches"), so a client that splits oversized batches does so here too.
                raise ApiError(
                    400,
                    mistral_error(
                        f"Too many tokens for the rate limit: the request costs {cost} tokens and the limit of "
                        f"{fmt_number(self.tpm)} tokens per minute allows at most {int(capacity)} at once; "
                        f"split into more batches.",
                        "invalid_request_prompt",
                        "3210",
                    ),
                    self.headers(),
                )
            accepted, wait = meter.try_acquire(cost)
            if not accepted:
                raise self.refusal("tokens_minute", wait, cost)
        self.cost = cost
        if month is not None:
            month.charge(cost)

    def charge_month(self, tokens: int) -> None:
        """Completion tokens, known once the answer is made; the month is billed on them too."""
        if self.limits.month is not None and tokens:
            self.limits.month.charge(tokens)

    def refusal(self, cause: str, wait: float, cost: int | None = None) -> ApiError:
        self.cause = cause
        body = month_spent_body(self.body_shape) if cause == "tokens_month" else rate_limited_body(self.body_shape)
        headers = self.headers(cost)
        headers["Retry-After"] = retry_after_header(wait)
        error = ApiError(429, body, headers)
        error.cause = cause
        return error

    def headers(self, cost: int | None = None) -> dict[str, str]:
        """Sent on every /v1 response while a limit is configured. Each remaining-* value is what would be
        accepted right now (0: the next request of any cost is refused), not a count since a reset."""
        limits = self.limits
        out: dict[str, str] = {}
        if limits.rps is not None:
            # The real API announces its per-second limit per minute (e.g. 720 for 12/s).
            out["x-ratelimit-limit-req-minute"] = str(int(math.ceil(self.rps_rate * 60)))
            out["x-ratelimit-remaining-req-minute"] = str(limits.rps.remaining())
        if limits.tpm is not None:
            out["x-ratelimit-limit-tokens-minute"] = fmt_number(self.tpm)
            out["x-ratelimit-remaining-tokens-minute"] = str(max(0, limits.tpm.remaining()))
            out["x-ratelimit-tokens-query-cost"] = str(self.cost if cost is None else cost)
        if limits.month is not None:
            out["x-ratelimit-limit-tokens-month"] = str(limits.month.limit)
            out["x-ratelimit-remaining-tokens-month"] = str(limits.month.remaining())
        return out


def fmt_number(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


def rate_limited_body(shape: str = "2026") -> dict:
    """Both bodies seen on real 429s (NOTES §1). Neither says which limit was hit: only the headers do."""
    if shape == "legacy":
        return {"message": "Requests rate limit exceeded"}
    return mistral_error("Rate limit exceeded", "rate_limited", "1300")


def month_spent_body(shape: str = "2026") -> dict:
    """The real body for a spent monthly quota is unconfirmed. Chosen: the 2026 envelope with the same
    type and code as any 429 (a client that only knows "429 = rate limited" stays correct), and a message
    that names the month, so a client or a person can tell it from a per-minute refusal that a wait
    fixes. The legacy shape keeps its message-only form."""
    message = "Monthly token limit exceeded"
    if shape == "legacy":
        return {"message": message}
    return mistral_error(message, "rate_limited", "1300")


def retry_after_header(wait_seconds: float) -> str:
    """Whole seconds, at least 1, rounded up: the form the real API sends."""
    # The epsilon keeps float noise (2.0000000001 s) from adding a whole second.
    return str(max(1, int(math.ceil(wait_seconds - 1e-9))))

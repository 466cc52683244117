"""How long requests may keep trying. A 429 is backpressure: it is waited out for as long as the sync
makes progress, and the sync stops once nothing has succeeded for `max_retry_seconds`. A service
failure is sent again with backoff, at most `max_retries` times and `max_retry_seconds` long. A
request that costs more than the limits take in a minute stops the sync rather than wait for good."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from destination_mistral.http.pacer import Pacer
from destination_mistral.settings import Limits
from mistral_connection.errors import config_error, transient_error

# A request waiting for its start (or after a refusal) looks up this often: whether the limits rose,
# so that it can start sooner, and whether the sync has gone without progress for too long.
PACE_RECHECK_SECONDS = 1.0
# The longest a 429 with no (or a zero) Retry-After makes its request wait, when refusals follow one
# another.
MAX_THROTTLE_FLOOR_SECONDS = 5.0

_COMMITTED = "the records before this one are committed."


class ProgressBudget:
    """The sync's deadline: when a request last succeeded (or the first one started), shared by every
    request, since a sync makes progress or not."""

    def __init__(
        self, limits: Limits, pacer: Pacer, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self.limits = limits
        self.pacer = pacer
        self._clock = clock
        self._sleep = sleep
        self._last_progress: float | None = None
        self._throttled_in_a_row = 0  # 429s since the last success

    def started(self) -> None:
        """A request is sent: the deadline runs from the first one."""
        if self._last_progress is None:
            self._last_progress = self._clock()

    def answered(self) -> None:
        """The service answered, even if it refused this record."""
        self._last_progress = self._clock()

    def succeeded(self) -> None:
        self._last_progress = self._clock()
        self._throttled_in_a_row = 0

    def check(self, route: str, why: str = "") -> None:
        """Raises once nothing has succeeded for max_retry_seconds."""
        if self._last_progress is None:
            return
        since = self._clock() - self._last_progress
        if since < self.limits.max_retry_seconds:
            return
        raise transient_error(
            f"Nothing has succeeded for {since:.0f} s (limits.max_retry_seconds is {self.limits.max_retry_seconds:g}): "
            f"{why or 'the rate limit holds every request'} ({route}). The sync stops so that it can be retried "
            f"later; {_COMMITTED}"
        )

    async def wait(self, route: str, wait: float, why: str) -> None:
        """Sleeps `wait`, in slices, stopping the sync once nothing has succeeded for max_retry_seconds."""
        while True:
            self.check(route, why)
            if wait <= 0:
                return
            step = min(wait, PACE_RECHECK_SECONDS)
            await self._sleep(step)
            wait -= step

    def throttled(self, wait: float) -> float:
        """The wait after a 429: a Retry-After of 0 (or none) on refusal after refusal grows while
        nothing passes, rather than a thousand requests a second against a server that refuses them all."""
        self._throttled_in_a_row += 1
        return max(wait, min(MAX_THROTTLE_FLOOR_SECONDS, 0.05 * 2 ** min(self._throttled_in_a_row - 1, 8)))

    def check_fits_the_cap(self, cost: float, route: str) -> None:
        """A request that costs more than the user's own tokens-per-minute cap could never start."""
        cap = self.limits.tokens_per_minute
        if cap and cost and self.pacer.cost_of(route, cost) > cap:
            raise config_error(
                f"One request to {route} costs about {self.pacer.cost_of(route, cost):,.0f} tokens, more than "
                f"limits.tokens_per_minute ({cap:,.0f}) allows in a whole minute, so it could never be sent: raise "
                "limits.tokens_per_minute, or lower the enrichment's max_tokens / max_input_tokens."
            )

    def why_held(self, cost: float, route: str) -> str:
        """Why a request of `cost` fits no minute of the account's limit as it stands, or ""."""
        per_minute = self.pacer.tokens_per_minute
        charged = self.pacer.cost_of(route, cost)
        if per_minute and charged > per_minute:
            return (
                f"one request costs about {charged:,.0f} tokens, more than the account's limit of {per_minute:,.0f} "
                "tokens per minute (lower the enrichment's max_tokens / max_input_tokens, or raise the workspace's "
                "limit)"
            )
        return ""

    def check_held(self, route: str, waited: float, why: str) -> None:
        """Raises once a request that fits no minute of the limit has waited max_retry_seconds: others'
        progress says nothing of this one."""
        if why and waited >= self.limits.max_retry_seconds:
            raise transient_error(
                f"A request to {route} waited {waited:.0f} s: {why}. The sync stops so that it can be "
                f"retried later; {_COMMITTED}"
            )


class RequestAttempts:
    """One request's failures of the service, and how long the rate limit has refused it for its size."""

    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._failures = 0
        self._first_failure: float | None = None
        self._first_over_limit: float | None = None

    def over_limit(self, route: str, text: str) -> None:
        """The request costs more tokens than the rate limit takes at once: backpressure, bounded for
        this request on its own, since other requests' progress says nothing of whether it can pass."""
        now = self._clock()
        self._first_over_limit = now if self._first_over_limit is None else self._first_over_limit
        if now - self._first_over_limit >= self.limits.max_retry_seconds:
            raise transient_error(
                f"The Mistral API refused {route} for {now - self._first_over_limit:.0f} s because the request "
                f"costs more tokens than the account's rate limit takes at once ({text}). Raise the workspace's "
                f"tokens-per-minute limit, or lower the enrichment's max_tokens / max_input_tokens; {_COMMITTED}"
            )

    def failed(self, route: str, cause: str, retry_after: float | None, backoff: Callable[[int], float]) -> float:
        """The service failed: how long to wait before sending again, or the transient_error once
        max_retries or max_retry_seconds is spent."""
        now = self._clock()
        if self._first_failure is None:
            self._first_failure = now
        delay = retry_after if retry_after is not None else backoff(self._failures)
        self._failures += 1
        limits = self.limits
        if self._failures > limits.max_retries or (now - self._first_failure) + delay > limits.max_retry_seconds:
            raise transient_error(
                f"The Mistral API failed {route}: {cause} (after {self._failures} attempts over "
                f"{now - self._first_failure:.0f} s). The sync stops so that it can be retried later; {_COMMITTED}"
            )
        return delay

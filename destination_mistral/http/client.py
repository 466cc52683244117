"""One async HTTP client for the whole sync.

Why it looks like this: at hundreds of requests per second on 2 cores the client's CPU cost per
request matters, so one aiohttp session reuses its connections (transport.py) and orjson does the
JSON (answers.py). A shared pacer (pacer.py) starts each request when the account's request and token
limits allow its cost.

Failures are sorted by cause, because the cause decides who can fix them:
- the service (connection refused or reset, DNS, TLS, timeouts, 5xx, an answer truncated, not JSON,
  too large or of the wrong shape): sent again with backoff, at most `max_retries` times and
  `max_retry_seconds` long, then the sync stops with a transient_error naming the route and the
  cause. A record row never carries a service failure: the next sync would have enriched it.
- the rate limit (429): backpressure. The refused request waits (Retry-After, or what the pacer
  knows) and goes again without spending its retries, for as long as the sync makes progress; when
  nothing has succeeded for `max_retry_seconds`, or the monthly quota is spent, the sync stops.
- the request (400/422): ApiError with its kind; the enricher turns a record's fault into its error
  row, and a parameter's into a config_error.
- the account or the address (401/403, unknown model, 404 route, redirect): config_error at once.
(The classes and the sorting are in errors.py and refusals.py, the retry and progress budgets in
retry_budget.py; this module is the request loop that acts on them.)"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from destination_mistral.http.answers import decode_answer, error_body, has_id
from destination_mistral.http.errors import (
    RETRYABLE_STATUSES,
    InvalidAnswer,
    ResponseTooLarge,
    api_message,
    monthly_quota_spent,
    over_rate_limit_at_once,
    retry_after_seconds,
    transport_cause,
)
from destination_mistral.http.multipart import file_upload_body
from destination_mistral.http.pacer import Pacer, Ticket
from destination_mistral.http.probe import FirstRequestProbe
from destination_mistral.http.refusals import UnexplainedRefusals, month_error, raise_if_fatal
from destination_mistral.http.retry_budget import PACE_RECHECK_SECONDS, ProgressBudget, RequestAttempts
from destination_mistral.http.transport import Sender, Transport
from destination_mistral.settings import Limits
from mistral_connection import MistralConnection

MAX_BACKOFF_SECONDS = 30.0
THROTTLED = "the rate limit refuses every request"


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0


class MistralClient:
    def __init__(
        self,
        connection: MistralConnection,
        limits: Limits,
        *,
        sender: Sender | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self.limits = limits
        self.pacer = Pacer(limits.requests_per_second, clock, cap_tpm=limits.tokens_per_minute)
        self.stats = RequestStats()
        self._transport = Transport(connection, limits, sender)
        self._sleep = sleep
        self._clock = clock
        self._semaphore = asyncio.Semaphore(limits.max_concurrent_requests)
        self._refusals = UnexplainedRefusals()
        self._progress = ProgressBudget(limits, self.pacer, clock, sleep)
        self._probe = FirstRequestProbe()

    async def __aenter__(self) -> MistralClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._transport.close()

    async def get(self, path: str, *, validate: Callable[[Any], Any] | None = None) -> Any:
        return await self.request("GET", path, None, validate=validate)

    async def post(
        self,
        path: str,
        payload: Mapping[str, Any],
        *,
        cost: float = 0.0,
        validate: Callable[[Any], Any] | None = None,
        precheck: Callable[[], None] | None = None,
        splittable: bool = False,
        created: Callable[[], Awaitable[Any | None]] | None = None,
    ) -> Any:
        return await self.request(
            "POST",
            path,
            orjson.dumps(payload),
            cost=cost,
            validate=validate,
            precheck=precheck,
            splittable=splittable,
            created=created,
        )

    async def get_bytes(self, path: str) -> bytes:
        """A file's raw content (GET /v1/files/{id}/content answers octet-stream, not JSON)."""
        return await self.request("GET", path, None, decode=False)

    async def upload_file(self, filename: str, content: bytes, purpose: str) -> Any:
        """POST /v1/files (http/multipart.py). Before a retry, the file is looked up by its name
        (which the caller makes unique), so that an upload whose answer was lost is not made twice."""
        body, content_type = file_upload_body(filename, content, purpose)

        async def uploaded() -> Any | None:
            listed = await self.get(f"files?search={quote(filename)}&purpose={quote(purpose)}&page_size=10")
            found = [
                f for f in (listed or {}).get("data") or () if isinstance(f, Mapping) and f.get("filename") == filename
            ]
            return found[0] if found else None

        return await self.request(
            "POST",
            "files",
            body,
            content_type=content_type,
            validate=has_id,
            created=uploaded,
        )

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        content_type: str | None = None,
        decode: bool = True,
        cost: float = 0.0,
        validate: Callable[[Any], Any] | None = None,
        precheck: Callable[[], None] | None = None,
        splittable: bool = False,
        created: Callable[[], Awaitable[Any | None]] | None = None,
    ) -> Any:
        """Sends one request until it gets a usable answer, and returns it (decoded JSON, passed
        through `validate`, which raises InvalidAnswer for an answer of the wrong shape and may
        return what it read). `cost` is the request's token count as we count it, for the pacer.
        `precheck` is called just before sending and may raise to abandon the request (a batch
        that no longer fits what the server has since said it accepts). `splittable`: the caller can
        send the request as smaller ones (a batch), so a refusal for its size is raised to it.
        `created`, for a request that creates something (a file, a batch job): before each retry it
        looks for what an attempt whose answer was lost may have created, and that is the answer if
        found, so that a retry never creates (and bills) a second one."""
        import aiohttp

        url = self.connection.url(path)
        route = f"{method} /v1/{path.lstrip('/')}"
        attempts = RequestAttempts(self.limits, self._clock)
        while True:
            if self.pacer.month_spent:
                raise month_error(route, self.pacer.month_spent)
            status: int | None = None
            headers: Mapping[str, str] = {}
            raw = b""
            cause = ""
            await self._probe.wait()
            try:
                async with self._semaphore:
                    if precheck is not None:  # before booking: what the server said meanwhile may split it
                        precheck()
                    # Paced inside the semaphore: waiting requests do not book far-future slots that a
                    # later change of pace could not take back.
                    self._progress.check_fits_the_cap(cost, route)
                    ticket = await self._wait_for_start(cost, route)
                    if precheck is not None:
                        try:
                            precheck()
                        except BaseException:
                            self.pacer.cancel(ticket)
                            raise
                    self._progress.started()
                    self.stats.requests += 1
                    try:
                        status, headers, raw = await self._transport.send(method, url, body, content_type)
                    except (TimeoutError, aiohttp.ClientError, ConnectionError, OSError, ResponseTooLarge) as error:
                        cause = transport_cause(error, self.limits.timeout_seconds)
            finally:
                self._probe.end()
            if status is not None and 200 <= status < 300:
                try:
                    value = decode_answer(raw, decode, validate)
                except InvalidAnswer as invalid:
                    cause = f"HTTP {status} with {invalid}"
                    self.pacer.on_headers(headers)
                    self.pacer.on_failure(ticket)
                else:
                    usage = value.get("usage") if decode and isinstance(value, Mapping) else None
                    self.pacer.on_success(headers, ticket, usage)
                    self._progress.succeeded()
                    self._refusals.reset()
                    return value
            answered = status is not None and not cause
            parsed = error_body(raw) if answered else None
            text = api_message(parsed, raw) if answered else ""
            if answered:
                raise_if_fatal(status, parsed, raw, route)
            if status == 429:
                await self._wait_throttled(route, headers, text, ticket)
                continue
            if status in (400, 413, 422) and answered and not splittable and over_rate_limit_at_once(text):
                # More tokens than the rate limit takes at once: backpressure, as a 429 is, until the
                # limit is raised; never the record's error.
                self.pacer.on_failure(ticket)
                attempts.over_limit(route, text)
                self.stats.throttled += 1
                await self._progress.wait(route, max(self._backoff(3), 1.0), THROTTLED)
                continue
            if answered and status not in RETRYABLE_STATUSES:
                self.pacer.on_failure(ticket)
                self._refused(status, parsed, text, route)
            if not cause:
                cause = f"HTTP {status}" + (f": {text}" if text else "")
                self.pacer.on_headers(headers)
            self.pacer.on_failure(ticket)
            # The service failed: retry with backoff, bounded in count and in time.
            retry_after = retry_after_seconds(headers) if status is not None else None
            delay = attempts.failed(route, cause, retry_after, self._backoff)
            self.stats.retries += 1
            await self._sleep(delay)
            if created is not None:
                made = await created()
                if made is not None:
                    return made

    async def _wait_for_start(self, cost: float, route: str) -> Ticket:
        """Books a start with the pacer and sleeps until it. The sleep is taken in slices: a start
        booked at a slow pace is booked again when the limits rise (or stop being announced), instead
        of keeping its place a minute ahead; and a sync in which nothing has succeeded for
        max_retry_seconds stops rather than wait on."""
        wait, ticket = self.pacer.reserve(cost, route)
        epoch = self.pacer.epoch
        waited = 0.0
        while True:
            wait = max(wait, self.pacer.held_for())  # a refusal since the booking says the budget is spent
            if wait <= 0:
                return ticket
            why = self._progress.why_held(cost, route)
            self._progress.check(route, why)
            self._progress.check_held(route, waited, why)
            step = min(wait, PACE_RECHECK_SECONDS)
            await self._sleep(step)
            wait -= step
            waited += step
            if self.pacer.epoch != epoch:
                self.pacer.cancel(ticket)
                wait, ticket = self.pacer.reserve(cost, route)
                epoch = self.pacer.epoch

    async def _wait_throttled(self, route: str, headers: Mapping[str, str], text: str, ticket: Ticket) -> None:
        """A 429 is backpressure, not a failure: the refused request waits and is sent again without
        spending its retries, for as long as the sync makes progress."""
        self.stats.throttled += 1
        month = monthly_quota_spent(headers, text)
        if month:
            self.pacer.month_spent = month
            raise month_error(route, month)
        retry_after = retry_after_seconds(headers)
        self.pacer.on_throttled(retry_after, headers, ticket)
        wait = retry_after if retry_after is not None else max(self.pacer.held_for(), self._backoff(2))
        await self._progress.wait(route, self._progress.throttled(wait), THROTTLED)

    def _refused(self, status: int, body: Any, text: str, route: str) -> None:
        """A 400/422 (or another 4xx): the request was understood and refused."""
        error = self._refusals.error_for(status, body, text, route)
        if error.kind != "unknown":
            # The service answered; the sync is making progress even if this record is not.
            self._progress.answered()
        raise error

    @staticmethod
    def _backoff(attempt: int) -> float:
        # Full jitter: concurrent requests that failed together do not retry together.
        return random.uniform(0, min(MAX_BACKOFF_SECONDS, 0.5 * (2**attempt)))

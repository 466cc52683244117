"""One async HTTP client for the whole sync.

Why it looks like this: at hundreds of requests per second on 2 cores the client's CPU cost per
request matters, so one aiohttp session reuses its connections and orjson does the JSON. A shared
pacer (http/pacer.py) starts each request when the account's request and token limits allow its cost.

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
(The classes and the sorting are in http/errors.py; this module is the request loop that acts on them.)"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from destination_mistral.http.errors import (
    RETRYABLE_STATUSES,
    ApiError,
    InvalidAnswer,
    ResponseTooLarge,
    api_message,
    classify_refusal,
    monthly_quota_spent,
    over_rate_limit_at_once,
    retry_after_seconds,
    transport_cause,
)
from destination_mistral.http.pacer import Pacer, Ticket
from destination_mistral.settings import Limits
from mistral_connection import MistralConnection
from mistral_connection.errors import INVALID_KEY_MESSAGE, config_error, transient_error

logger = logging.getLogger("airbyte")

# Refusals (400/422) that name neither the input nor a parameter, in a row with nothing accepted in
# between: the request itself is wrong for this API, and one clear error beats a million error rows.
MAX_UNEXPLAINED_REFUSALS_IN_A_ROW = 50
MAX_BACKOFF_SECONDS = 30.0
# A request waiting for its start (or after a refusal) looks up this often: whether the limits rose,
# so that it can start sooner, and whether the sync has gone without progress for too long.
PACE_RECHECK_SECONDS = 1.0
# The longest a 429 with no (or a zero) Retry-After makes its request wait, when refusals follow one another.
MAX_THROTTLE_FLOOR_SECONDS = 5.0

# (status, headers, body); status None for a connection failure or a timeout.
Sender = Callable[[str, str, bytes | None], Awaitable[tuple[int, Mapping[str, str], bytes]]]


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
        self._sender = sender
        self._sleep = sleep
        self._clock = clock
        self._session = None
        self._semaphore = asyncio.Semaphore(limits.max_concurrent_requests)
        self._refusals_in_a_row = 0
        self._throttled_in_a_row = 0  # 429s since the last success
        # When a request last succeeded (or the first one started): a 429 is waited on for as long
        # as something succeeds within max_retry_seconds.
        self._last_progress: float | None = None
        # Until the first answer arrives, one request goes alone: its headers may announce the
        # account's limits, and a first burst of max_concurrent_requests would otherwise meet a
        # wall of 429s. Costs one round trip per sync.
        self._probed: asyncio.Event | None = None
        self._probing = False

    async def __aenter__(self) -> MistralClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self):
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.limits.max_concurrent_requests, ttl_dns_cache=300, keepalive_timeout=60
            )
            headers = {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "destination-mistral/0.1",
            }
            headers.update(self.connection.auth_headers())
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.limits.timeout_seconds),
                raise_for_status=False,
            )
        return self._session

    async def _send(
        self, method: str, url: str, body: bytes | None, content_type: str | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        cap = self.limits.max_response_bytes
        if self._sender is not None:
            status, headers, raw = await self._sender(method, url, body)
            if len(raw) > cap:
                raise ResponseTooLarge(_too_large(cap))
            return status, headers, raw
        session = self._ensure_session()
        headers = {"Content-Type": content_type} if content_type else None
        # Redirects are not followed: the key goes to the configured host only (a redirect would carry
        # a query-parameter key, and the request itself, to whatever host the answer names).
        async with session.request(
            method, url, data=body, params=self.connection.auth_params() or None, headers=headers, allow_redirects=False
        ) as response:
            # The answer is read up to a cap: a runaway answer (a 30 MB chat completion) must not
            # take the memory of the whole sync.
            if response.content_length is not None and response.content_length > cap:
                raise ResponseTooLarge(_too_large(cap))
            data = bytearray()
            async for chunk in response.content.iter_chunked(1 << 16):
                data += chunk
                if len(data) > cap:
                    raise ResponseTooLarge(_too_large(cap))
            return response.status, response.headers, bytes(data)

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
    ) -> Any:
        return await self.request(
            "POST", path, orjson.dumps(payload), cost=cost, validate=validate, precheck=precheck, splittable=splittable
        )

    async def get_bytes(self, path: str) -> bytes:
        """A file's raw content (GET /v1/files/{id}/content answers octet-stream, not JSON)."""
        return await self.request("GET", path, None, decode=False)

    async def upload_file(self, filename: str, content: bytes, purpose: str) -> Any:
        """POST /v1/files as multipart/form-data. The body is built once as bytes, so that a retry
        sends exactly the same upload."""
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/jsonl\r\n\r\n".encode(),
            content,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
        return await self.request(
            "POST", "files", b"".join(parts), content_type=f"multipart/form-data; boundary={boundary}", validate=_has_id
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
    ) -> Any:
        """Sends one request until it gets a usable answer, and returns it (decoded JSON, passed
        through `validate`, which raises InvalidAnswer for an answer of the wrong shape and may
        return what it read). `cost` is the request's token count as we count it, for the pacer.
        `precheck` is called just before sending and may raise to abandon the request (a batch
        that no longer fits what the server has since said it accepts). `splittable`: the caller can
        send the request as smaller ones (a batch), so a refusal for its size is raised to it."""
        import aiohttp

        url = self.connection.url(path)
        route = f"{method} /v1/{path.lstrip('/')}"
        failures = 0
        first_failure: float | None = None
        first_over_limit: float | None = None
        while True:
            if self.pacer.month_spent:
                raise self._month_error(route, self.pacer.month_spent)
            status: int | None = None
            headers: Mapping[str, str] = {}
            raw = b""
            cause = ""
            await self._wait_for_probe()
            try:
                async with self._semaphore:
                    if precheck is not None:  # before booking: what the server said meanwhile may split it
                        precheck()
                    # Paced inside the semaphore: waiting requests do not book far-future slots that a
                    # later change of pace could not take back.
                    self._check_fits_the_cap(cost, route)
                    ticket = await self._wait_for_start(cost, route)
                    if precheck is not None:
                        try:
                            precheck()
                        except BaseException:
                            self.pacer.cancel(ticket)
                            raise
                    if self._last_progress is None:
                        self._last_progress = self._clock()
                    self.stats.requests += 1
                    try:
                        status, headers, raw = await self._send(method, url, body, content_type)
                    except (TimeoutError, aiohttp.ClientError, ConnectionError, OSError, ResponseTooLarge) as error:
                        cause = transport_cause(error, self.limits.timeout_seconds)
            finally:
                self._end_probe()
            if status is not None and 200 <= status < 300:
                try:
                    value = self._read_answer(raw, decode, validate)
                except InvalidAnswer as invalid:
                    cause = f"HTTP {status} with {invalid}"
                    self.pacer.on_headers(headers)
                    self.pacer.on_failure(ticket)
                else:
                    self.pacer.on_success(
                        headers, ticket, value.get("usage") if decode and isinstance(value, Mapping) else None
                    )
                    self._last_progress = self._clock()
                    self._refusals_in_a_row = 0
                    self._throttled_in_a_row = 0
                    return value
            parsed: Any = None
            if status is not None and not cause and raw:
                try:
                    parsed = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    parsed = None
            text = api_message(parsed, raw) if status is not None and not cause else ""
            if status is not None and not cause:
                self._raise_if_fatal(status, parsed, raw, route)
            if status == 429:
                await self._wait_throttled(route, headers, text, ticket)
                continue
            if status in (400, 413, 422) and not cause and not splittable and over_rate_limit_at_once(text):
                # More tokens than the rate limit takes at once: backpressure, as a 429 is, until the
                # limit is raised; never the record's error. Bounded for this request on its own,
                # since other requests' progress says nothing of whether this one can ever pass.
                self.pacer.on_failure(ticket)
                now = self._clock()
                first_over_limit = now if first_over_limit is None else first_over_limit
                if now - first_over_limit >= self.limits.max_retry_seconds:
                    raise transient_error(
                        f"The Mistral API refused {route} for {now - first_over_limit:.0f} s because the request costs more "
                        f"tokens than the account's rate limit takes at once ({text}). Raise the workspace's tokens-per-minute "
                        "limit, or lower the enrichment's max_tokens / max_input_tokens; the records before this one are committed."
                    )
                self.stats.throttled += 1
                await self._wait_without_progress(
                    route, max(self._backoff(3), 1.0), "the rate limit refuses every request"
                )
                continue
            if status is not None and not cause and status not in RETRYABLE_STATUSES:
                self.pacer.on_failure(ticket)
                self._refused(status, parsed, text, route)
            if not cause:
                cause = f"HTTP {status}" + (f": {text}" if text else "")
                self.pacer.on_headers(headers)
            self.pacer.on_failure(ticket)
            # The service failed: retry with backoff, bounded in count and in time.
            now = self._clock()
            if first_failure is None:
                first_failure = now
            retry_after = retry_after_seconds(headers) if status is not None else None
            delay = retry_after if retry_after is not None else self._backoff(failures)
            failures += 1
            if failures > self.limits.max_retries or (now - first_failure) + delay > self.limits.max_retry_seconds:
                raise transient_error(
                    f"The Mistral API failed {route}: {cause} (after {failures} attempts over {now - first_failure:.0f} s). "
                    "The sync stops so that it can be retried later; the records before this one are committed."
                )
            self.stats.retries += 1
            await self._sleep(delay)

    def _read_answer(self, raw: bytes, decode: bool, validate: Callable[[Any], Any] | None) -> Any:
        if not decode:
            return raw
        if not raw.strip():
            raise InvalidAnswer("an empty body")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidAnswer("a body that is not complete JSON (truncated or not JSON)") from None
        return validate(value) if validate is not None else value

    def _check_fits_the_cap(self, cost: float, route: str) -> None:
        """A request that costs more than the user's own tokens-per-minute cap could never start."""
        cap = self.limits.tokens_per_minute
        if cap and cost and self.pacer.cost_of(route, cost) > cap:
            raise config_error(
                f"One request to {route} costs about {self.pacer.cost_of(route, cost):,.0f} tokens, more than "
                f"limits.tokens_per_minute ({cap:,.0f}) allows in a whole minute, so it could never be sent: raise "
                "limits.tokens_per_minute, or lower the enrichment's max_tokens / max_input_tokens."
            )

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
            why = self._why_held(cost, route)
            self._check_progress(route, why)
            if why and waited >= self.limits.max_retry_seconds:
                # Others' progress says nothing of this one: it fits no minute of the limit as it stands.
                raise transient_error(
                    f"A request to {route} waited {waited:.0f} s: {why}. The sync stops so that it can be "
                    "retried later; the records before this one are committed."
                )
            step = min(wait, PACE_RECHECK_SECONDS)
            await self._sleep(step)
            wait -= step
            waited += step
            if self.pacer.epoch != epoch:
                self.pacer.cancel(ticket)
                wait, ticket = self.pacer.reserve(cost, route)
                epoch = self.pacer.epoch

    def _why_held(self, cost: float, route: str) -> str:
        per_minute = self.pacer.tokens_per_minute
        charged = self.pacer.cost_of(route, cost)
        if per_minute and charged > per_minute:
            return (
                f"one request costs about {charged:,.0f} tokens, more than the account's limit of {per_minute:,.0f} "
                "tokens per minute (lower the enrichment's max_tokens / max_input_tokens, or raise the workspace's limit)"
            )
        return ""

    def _check_progress(self, route: str, why: str = "") -> None:
        """Raises once nothing has succeeded for max_retry_seconds."""
        if self._last_progress is None:
            return
        since = self._clock() - self._last_progress
        if since < self.limits.max_retry_seconds:
            return
        raise transient_error(
            f"Nothing has succeeded for {since:.0f} s (limits.max_retry_seconds is {self.limits.max_retry_seconds:g}): "
            f"{why or 'the rate limit holds every request'} ({route}). The sync stops so that it can be retried later; "
            "the records before this one are committed."
        )

    async def _wait_throttled(self, route: str, headers: Mapping[str, str], text: str, ticket: Ticket) -> None:
        """A 429 is backpressure, not a failure: the refused request waits and is sent again without
        spending its retries, for as long as the sync makes progress."""
        self.stats.throttled += 1
        month = monthly_quota_spent(headers, text)
        if month:
            self.pacer.month_spent = month
            raise self._month_error(route, month)
        retry_after = retry_after_seconds(headers)
        self.pacer.on_throttled(retry_after, headers, ticket)
        wait = retry_after if retry_after is not None else max(self.pacer.held_for(), self._backoff(2))
        # A Retry-After of 0 (or none) on refusal after refusal: the waits grow while nothing passes,
        # rather than a thousand requests a second against a server that refuses them all.
        self._throttled_in_a_row += 1
        wait = max(wait, min(MAX_THROTTLE_FLOOR_SECONDS, 0.05 * 2 ** min(self._throttled_in_a_row - 1, 8)))
        await self._wait_without_progress(route, wait, "the rate limit refuses every request")

    async def _wait_without_progress(self, route: str, wait: float, why: str) -> None:
        """Sleeps `wait`, in slices, stopping the sync once nothing has succeeded for
        max_retry_seconds (the deadline is the same for every request: a sync makes progress or not)."""
        while True:
            self._check_progress(route, why)
            if wait <= 0:
                return
            step = min(wait, PACE_RECHECK_SECONDS)
            await self._sleep(step)
            wait -= step

    def _month_error(self, route: str, why: str) -> Exception:
        return transient_error(
            f"The Mistral account's monthly token quota is spent ({why}); {route} is refused until it resets. "
            "The sync stops; the records before this one are committed. Raise the workspace's monthly limit or run again after the reset."
        )

    def _refused(self, status: int, body: Any, text: str, route: str) -> None:
        """A 400/422 (or another 4xx): the request was understood and refused."""
        message = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        kind, field = classify_refusal(status, body, text) if status in (400, 413, 422) else ("unknown", None)
        error = ApiError(message, status, body, kind=kind, field=field)
        if kind == "config" and field not in ("encoding_format",):
            raise error.as_config_error(route)
        if kind == "unknown":
            self._refusals_in_a_row += 1
            if self._refusals_in_a_row >= MAX_UNEXPLAINED_REFUSALS_IN_A_ROW:
                raise config_error(
                    f"The Mistral API refused {self._refusals_in_a_row} requests in a row to {route} (last: {message}): "
                    "check the enrichment's settings and `base_url`."
                )
        else:
            self._refusals_in_a_row = 0
            # The service answered; the sync is making progress even if this record is not.
            self._last_progress = self._clock()
        raise error

    async def _wait_for_probe(self) -> None:
        if self._probed is None:
            self._probed = asyncio.Event()
            self._probing = True
            return
        if not self._probed.is_set():
            await self._probed.wait()

    def _end_probe(self) -> None:
        if self._probing:
            self._probing = False
            self._probed.set()

    @staticmethod
    def _backoff(attempt: int) -> float:
        # Full jitter: concurrent requests that failed together do not retry together.
        return random.uniform(0, min(MAX_BACKOFF_SECONDS, 0.5 * (2**attempt)))

    def _raise_if_fatal(self, status: int, body: Any, raw: bytes, route: str) -> None:
        """Failures that every following request would hit too: one clear error beats a
        million identical error rows."""
        if status in (401, 403):
            raise config_error(INVALID_KEY_MESSAGE.format(status=status))
        if 300 <= status < 400:
            raise config_error(
                f"The API answered {route} with a redirect (HTTP {status}), which destination-mistral does not follow so "
                "that the key only goes to the configured host: set `base_url` to the address the API is served from."
            )
        text = api_message(body, raw)
        if status in (400, 404) and (
            "invalid model" in text.lower() or (isinstance(body, Mapping) and body.get("type") == "invalid_model")
        ):
            raise config_error(
                f"The Mistral API does not know the model ({text}): set the enrichment's `model` to one listed by GET /v1/models."
            )
        if status == 404 and ("not found" in text.lower() or not text):
            raise config_error(
                f"The API answered 404 for {route}: check `base_url` (it should be the API root, e.g. https://api.mistral.ai)."
            )


def _too_large(cap: int) -> str:
    return f"an answer larger than limits.max_response_mb ({cap / (1 << 20):g} MB)"


def _has_id(value: Any) -> Any:
    if not isinstance(value, Mapping) or not isinstance(value.get("id"), str):
        raise InvalidAnswer("an answer without an id")
    return value

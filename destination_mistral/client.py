"""One async HTTP client for the whole sync.

Why it looks like this: at hundreds of requests per second on 2 cores the client's CPU cost per
request matters, so one aiohttp session reuses its connections and orjson does the JSON. Retries
are per request, bounded in count and in total time, and follow what the server says (Retry-After,
retry-after-ms, x-ratelimit-*) rather than sleeping a fixed long time. A shared pacer slows every
request when the account's limit is reached, instead of letting each one burst into 429s."""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import orjson

from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from mistral_connection import MistralConnection
from mistral_connection.errors import INVALID_KEY_MESSAGE, config_error, transient_error

from destination_mistral.config import Limits

logger = logging.getLogger("airbyte")

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# After this many requests in a row have exhausted their retries on transient failures, the API is
# down or throttling hard: failing the sync (retried by the platform) beats writing every remaining
# record with an error.
MAX_CONSECUTIVE_FAILED_REQUESTS = 50
MAX_BACKOFF_SECONDS = 30.0

# (status, headers, body); status None for a connection failure or a timeout.
Sender = Callable[[str, str, bytes | None], Awaitable[tuple[int, Mapping[str, str], bytes]]]


class ApiError(Exception):
    """A request failed for good. `message` is safe to store: status and the API's short message."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


def api_message(body: Any, raw: bytes = b"") -> str:
    """The server's short error text, from any of the error shapes Mistral has used."""
    text = ""
    if isinstance(body, Mapping):
        value = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(value, list) and value:
            first = value[0]
            if isinstance(first, Mapping):
                loc = ".".join(str(p) for p in first.get("loc", []))
                text = f"{first.get('msg', '')} ({loc})" if loc else str(first.get("msg", ""))
            else:
                text = str(first)
        elif isinstance(value, Mapping):
            text = str(value.get("message") or value)
        elif value is not None:
            text = str(value)
    elif raw:
        text = raw[:200].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:200]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                return val
    return value


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    millis = _header(headers, "retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _float_header(headers: Mapping[str, str], name: str) -> float | None:
    value = _header(headers, name)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class RatePacer:
    """Spaces request starts. Without a cap it does nothing until the server pushes back; a 429
    sets the pace to a fraction of the rate actually achieved, which then creeps up again while
    requests succeed (additive increase, multiplicative decrease)."""

    def __init__(self, cap_rps: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap_rps
        self.rate: float | None = cap_rps
        self._clock = clock
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._starts: collections.deque[float] = collections.deque(maxlen=4096)

    def delay(self) -> float:
        """Reserve the next start slot and return how long to wait for it."""
        now = self._clock()
        start = max(now, self._paused_until)
        if self.rate:
            start = max(start, self._next_slot)
            self._next_slot = start + 1.0 / self.rate
        self._starts.append(start)
        return start - now

    async def acquire(self) -> None:
        wait = self.delay()
        if wait > 0:
            await asyncio.sleep(wait)

    def observed_rate(self, window: float = 2.0) -> float:
        now = self._clock()
        recent = sum(1 for t in self._starts if now - window <= t <= now)
        return recent / window

    def on_throttled(self, retry_after: float | None) -> None:
        current = self.rate or self.observed_rate() or 1.0
        self.rate = max(0.2, current * 0.7)
        if self.cap:
            self.rate = min(self.rate, self.cap)
        if retry_after:
            self._paused_until = max(self._paused_until, self._clock() + retry_after)

    def on_success(self, headers: Mapping[str, str]) -> None:
        remaining = _float_header(headers, "x-ratelimit-remaining-req-minute")
        limit = _float_header(headers, "x-ratelimit-limit-req-minute")
        if remaining is not None and limit and remaining < 0.1 * limit:
            # Close to the per-minute budget: spread what is left rather than hit the wall.
            target = max(0.2, limit / 60.0)
            self.rate = min(self.rate, target) if self.rate else target
            return
        if self.rate and (self.cap is None or self.rate < self.cap):
            grown = self.rate * 1.02 + 0.05
            self.rate = min(grown, self.cap) if self.cap else grown


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0


class MistralClient:
    def __init__(self, connection: MistralConnection, limits: Limits, *, sender: Sender | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.connection = connection
        self.limits = limits
        self.pacer = RatePacer(limits.requests_per_second)
        self.stats = RequestStats()
        self._sender = sender
        self._sleep = sleep
        self._session = None
        self._semaphore = asyncio.Semaphore(limits.max_concurrent_requests)
        self._consecutive_failures = 0

    async def __aenter__(self) -> "MistralClient":
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
            connector = aiohttp.TCPConnector(limit=self.limits.max_concurrent_requests, ttl_dns_cache=300, keepalive_timeout=60)
            headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "destination-mistral/0.1"}
            headers.update(self.connection.auth_headers())
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.limits.timeout_seconds),
                raise_for_status=False,
            )
        return self._session

    async def _send(self, method: str, url: str, body: bytes | None) -> tuple[int, Mapping[str, str], bytes]:
        if self._sender is not None:
            return await self._sender(method, url, body)
        session = self._ensure_session()
        async with session.request(method, url, data=body, params=self.connection.auth_params() or None) as response:
            return response.status, response.headers, await response.read()

    async def get(self, path: str) -> Any:
        return await self.request("GET", path, None)

    async def post(self, path: str, payload: Mapping[str, Any]) -> Any:
        return await self.request("POST", path, orjson.dumps(payload))

    async def request(self, method: str, path: str, body: bytes | None) -> Any:
        import aiohttp

        url = self.connection.url(path)
        route = f"{method} /v1/{path.lstrip('/')}"
        started = time.monotonic()
        attempt = 0
        waited = 0.0
        while True:
            status: int | None
            headers: Mapping[str, str] = {}
            raw = b""
            async with self._semaphore:
                # Paced inside the semaphore: waiting requests do not book far-future slots that a
                # later change of pace could not take back.
                wait = self.pacer.delay()
                if wait > 0:
                    await self._sleep(wait)
                self.stats.requests += 1
                try:
                    status, headers, raw = await self._send(method, url, body)
                except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, OSError) as error:
                    status, failure = None, ("timeout" if isinstance(error, asyncio.TimeoutError) else type(error).__name__)
            if status is not None and 200 <= status < 300:
                self.pacer.on_success(headers)
                self._consecutive_failures = 0
                try:
                    return orjson.loads(raw) if raw else None
                except orjson.JSONDecodeError:
                    raise ApiError(f"HTTP {status}: the response is not JSON", status) from None
            parsed: Any = None
            if raw:
                try:
                    parsed = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    parsed = None
            message = f"HTTP {status}: {api_message(parsed, raw)}" if status is not None else f"request failed: {failure}"
            self._raise_if_fatal(status, parsed, raw, route)
            retry_after = retry_after_seconds(headers) if status is not None else None
            if status == 429:
                self.stats.throttled += 1
                self.pacer.on_throttled(retry_after)
            retryable = status is None or status in RETRYABLE_STATUSES
            if not retryable:
                raise ApiError(message, status, parsed)
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            # Time spent is the larger of the clock and the waits asked for, so that the bound
            # also holds under a test's fake sleep.
            spent = max(time.monotonic() - started, waited)
            if attempt >= self.limits.max_retries or spent + delay > self.limits.max_retry_seconds:
                self._consecutive_failures += 1
                if self._consecutive_failures >= MAX_CONSECUTIVE_FAILED_REQUESTS:
                    raise transient_error(
                        f"The Mistral API failed {self._consecutive_failures} requests in a row after retries "
                        f"(last: {route} {message}); the sync stops so that it can be retried later."
                    )
                raise ApiError(f"{message} (after {attempt + 1} attempts)", status, parsed)
            attempt += 1
            waited += delay
            self.stats.retries += 1
            if status == 429 and retry_after is not None:
                # The pacer now holds every request, this one included, until Retry-After has passed.
                continue
            await self._sleep(delay)

    @staticmethod
    def _backoff(attempt: int) -> float:
        # Full jitter: concurrent requests that failed together do not retry together.
        return random.uniform(0, min(MAX_BACKOFF_SECONDS, 0.5 * (2**attempt)))

    def _raise_if_fatal(self, status: int | None, body: Any, raw: bytes, route: str) -> None:
        """Failures that every following request would hit too: one clear error beats a
        million identical error rows."""
        if status in (401, 403):
            raise config_error(INVALID_KEY_MESSAGE.format(status=status))
        text = api_message(body, raw)
        if status in (400, 404) and ("invalid model" in text.lower() or (isinstance(body, Mapping) and body.get("type") == "invalid_model")):
            raise config_error(f"The Mistral API does not know the model ({text}): set the enrichment's `model` to one listed by GET /v1/models.")
        if status == 404 and ("not found" in text.lower() or not text):
            raise config_error(
                f"The API answered 404 for {route}: check `base_url` (it should be the API root, e.g. https://api.mistral.ai)."
            )


def is_fatal(error: BaseException) -> bool:
    return isinstance(error, AirbyteTracedException)

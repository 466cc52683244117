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
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import orjson

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
    """Spaces request starts at the account's pace.

    The pace comes from, in order: the configured cap; the limit the server announces in
    `x-ratelimit-limit-req-minute` (learned from the first response, so a sync paces itself without
    being told its tier); and, when the server says nothing but 429s, a fraction of the rate actually
    achieved, which creeps back up while requests succeed (additive increase, multiplicative
    decrease). A 429 never pauses the other requests: the refused one waits its own Retry-After
    (see MistralClient.request), and only the pace changes."""

    # One multiplicative cut per this many seconds: 64 requests refused together are one signal,
    # not 64 (which would take the pace from 100/s to 0.2/s at once).
    CUT_INTERVAL = 1.0
    MIN_STARTS_TO_PACE = 8
    # When the limit is first announced, the server also says how many requests it would accept at
    # once (x-ratelimit-remaining-req-minute): up to this many seconds' worth of them start together
    # instead of being spaced, since a rate limiter that has them to give is not pushed into a 429.
    # Only this first figure is used: later ones are stale while requests are in flight.
    BURST_SECONDS = 1.0

    def __init__(self, cap_rps: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap_rps
        self.rate: float | None = cap_rps
        self.learned: float | None = None  # requests/s announced by the server
        self._clock = clock
        self._next_slot = 0.0
        self._last_cut = float("-inf")
        self._starts: collections.deque[float] = collections.deque(maxlen=4096)
        self._burst = 0

    def _ceiling(self) -> float | None:
        limits = [r for r in (self.cap, self.learned) if r]
        return min(limits) if limits else None

    def delay(self) -> float:
        """Reserve the next start slot and return how long to wait for it."""
        now = self._clock()
        start = now
        if self._burst > 0:
            self._burst -= 1
            self._next_slot = max(self._next_slot, now)
        elif self.rate:
            start = max(now, self._next_slot)
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
        self._burst = 0
        now = self._clock()
        if now - self._last_cut < self.CUT_INTERVAL:
            return
        self._last_cut = now
        ceiling = self._ceiling()
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

    def on_headers(self, headers: Mapping[str, str]) -> None:
        limit = _float_header(headers, "x-ratelimit-limit-req-minute")
        if limit and limit > 0:
            learned = limit / 60.0
            if learned != self.learned:
                first = self.learned is None
                self.learned = learned
                ceiling = self._ceiling()
                self.rate = min(self.rate, ceiling) if self.rate else ceiling
                remaining = _float_header(headers, "x-ratelimit-remaining-req-minute")
                if first and remaining and self.rate:
                    # One of them is left in reserve: the server counts what is already on the way.
                    self._burst = max(0, int(min(remaining, self.rate * self.BURST_SECONDS)) - 1)

    def on_success(self, headers: Mapping[str, str]) -> None:
        self.on_headers(headers)
        if self.rate:
            ceiling = self._ceiling()
            if ceiling is None or self.rate < ceiling:
                grown = self.rate * 1.02 + 0.05
                self.rate = min(grown, ceiling) if ceiling else grown


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
        # Until the first answer arrives, one request goes alone: its headers may announce the
        # account's limit, and a first burst of max_concurrent_requests would otherwise meet a
        # wall of 429s. Costs one round trip per sync.
        self._probed: asyncio.Event | None = None
        self._probing = False

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

    async def _send(self, method: str, url: str, body: bytes | None,
                    content_type: str | None = None) -> tuple[int, Mapping[str, str], bytes]:
        if self._sender is not None:
            return await self._sender(method, url, body)
        session = self._ensure_session()
        headers = {"Content-Type": content_type} if content_type else None
        # Redirects are not followed: the key goes to the configured host only (a redirect would carry
        # a query-parameter key, and the request itself, to whatever host the answer names).
        async with session.request(method, url, data=body, params=self.connection.auth_params() or None,
                                   headers=headers, allow_redirects=False) as response:
            return response.status, response.headers, await response.read()

    async def get(self, path: str) -> Any:
        return await self.request("GET", path, None)

    async def post(self, path: str, payload: Mapping[str, Any]) -> Any:
        return await self.request("POST", path, orjson.dumps(payload))

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
        return await self.request("POST", "files", b"".join(parts), content_type=f"multipart/form-data; boundary={boundary}")

    async def request(self, method: str, path: str, body: bytes | None, *, content_type: str | None = None,
                      decode: bool = True) -> Any:
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
            await self._wait_for_probe()
            try:
                async with self._semaphore:
                    # Paced inside the semaphore: waiting requests do not book far-future slots that a
                    # later change of pace could not take back.
                    wait = self.pacer.delay()
                    if wait > 0:
                        await self._sleep(wait)
                    self.stats.requests += 1
                    try:
                        status, headers, raw = await self._send(method, url, body, content_type)
                    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, OSError) as error:
                        status, failure = None, ("timeout" if isinstance(error, asyncio.TimeoutError) else type(error).__name__)
            finally:
                self._end_probe()
            if status is not None and 200 <= status < 300:
                self.pacer.on_success(headers)
                self._consecutive_failures = 0
                if not decode:
                    return raw
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
                self.pacer.on_headers(headers)
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
            # Only this request waits; the others keep their paced slots.
            await self._sleep(delay)

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

    def _raise_if_fatal(self, status: int | None, body: Any, raw: bytes, route: str) -> None:
        """Failures that every following request would hit too: one clear error beats a
        million identical error rows."""
        if status in (401, 403):
            raise config_error(INVALID_KEY_MESSAGE.format(status=status))
        if status is not None and 300 <= status < 400:
            raise config_error(
                f"The API answered {route} with a redirect (HTTP {status}), which destination-mistral does not follow so "
                "that the key only goes to the configured host: set `base_url` to the address the API is served from."
            )
        text = api_message(body, raw)
        if status in (400, 404) and ("invalid model" in text.lower() or (isinstance(body, Mapping) and body.get("type") == "invalid_model")):
            raise config_error(f"The Mistral API does not know the model ({text}): set the enrichment's `model` to one listed by GET /v1/models.")
        if status == 404 and ("not found" in text.lower() or not text):
            raise config_error(
                f"The API answered 404 for {route}: check `base_url` (it should be the API root, e.g. https://api.mistral.ai)."
            )


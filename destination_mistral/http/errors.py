"""What a failed request means: the refusal classes the enrichers act on, and the sorting of a
failure by its cause (the record, a parameter, the batch's size, the rate limit, the monthly quota,
the network), which decides whether the client sends it again, waits, or stops the sync."""

from __future__ import annotations

import asyncio
import email.utils
import re
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any

from destination_mistral.http.headers import float_header, header
from mistral_connection.errors import config_error

# Statuses that say the service failed this time and may not the next.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})


class ApiError(Exception):
    """The API refused a request for a reason of the request itself (HTTP 400/422, not a service
    failure). `message` is safe to store: status and the API's short message. `kind` says whose fault
    it is: "input" (the record's content: too long, invalid), "too_large" (the batch, not any one
    record), "config" (a parameter the user set; `field` names it) or "unknown"."""

    def __init__(
        self, message: str, status: int | None = None, body: Any = None, kind: str = "unknown", field: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.kind = kind
        self.field = field

    def as_config_error(self, route: str = "the request") -> Exception:
        where = f"`{self.field}`" if self.field else "the enrichment's settings"
        return config_error(f"The Mistral API refused {route} because of a parameter ({self.message}): check {where}.")


class InvalidAnswer(Exception):
    """A 2xx answer whose content cannot be right (truncated, not JSON, the wrong shape): the service
    failed, so the request is sent again, as after a 5xx. The message names the cause, never content."""


class ResponseTooLarge(Exception):
    pass


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


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    millis = header(headers, "retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = header(headers, "retry-after")
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


_INPUT_WORDS = ("input", "prompt", "token", "context", "content", "message", "too long", "too large", "length", "text")
_INPUT_FIELDS = frozenset({"input", "inputs", "messages", "prompt", "content", "text"})
_PARAMETER_WORDS = (
    "extra inputs are not permitted",
    "extra_forbidden",
    "unknown parameter",
    "unrecognized",
    "not supported",
    "unsupported parameter",
)


def classify_refusal(status: int, body: Any, message: str) -> tuple[str, str | None]:
    """(kind, field) of a 400/422: whose fault it is, and the parameter it names if any."""
    text = message.lower()
    if is_batch_too_large(status, message):
        return "too_large", None
    field: str | None = None
    kind_hint = ""
    if isinstance(body, Mapping):
        detail = body.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], Mapping):
            loc = [str(p) for p in detail[0].get("loc", []) if p != "body" and not str(p).isdigit()]
            field = loc[0] if loc else None
            kind_hint = str(detail[0].get("type", ""))
        param = body.get("param")
        if isinstance(param, str) and param:
            field = param
    if field in _INPUT_FIELDS:
        return "input", None
    if kind_hint == "extra_forbidden" or any(word in text for word in _PARAMETER_WORDS):
        return "config", field
    if field:
        return "config", field
    if any(word in text for word in _INPUT_WORDS):
        return "input", None
    return "unknown", None


_MONTH = re.compile(r"month", re.IGNORECASE)


def monthly_quota_spent(headers: Mapping[str, str], message: str) -> str | None:
    """Why a 429 means the monthly quota is spent (naming the limit and its reset when the headers
    say them), or None."""
    remaining = float_header(headers, "x-ratelimit-remaining-tokens-month")
    if remaining is not None and remaining <= 0:
        why = "x-ratelimit-remaining-tokens-month is 0"
    elif _MONTH.search(message):
        why = f"the API says: {message}"
    else:
        return None
    limit = float_header(headers, "x-ratelimit-limit-tokens-month")
    if limit:
        why += f"; the limit is {limit:,.0f} tokens per month"
    wait = retry_after_seconds(headers)
    if wait is not None:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + wait))
        why += f"; it resets in {wait / 3600:.1f} h, at {when} (Retry-After)"
    return why


def transport_cause(error: BaseException, timeout: float) -> str:
    """A short, content-free name for a failure to get an answer (never the URL: with a query
    parameter key placement it holds the key)."""
    import aiohttp

    if isinstance(error, ResponseTooLarge):
        return str(error)
    if isinstance(error, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return f"no answer within timeout_seconds ({timeout:g} s)"
    if (
        isinstance(error, aiohttp.ClientConnectorDNSError)
        or isinstance(getattr(error, "os_error", None), socket.gaierror)
        or isinstance(error, socket.gaierror)
    ):
        return "the host name could not be resolved (DNS)"
    if isinstance(error, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError)):
        return "the TLS handshake failed"
    if isinstance(error, ConnectionRefusedError) or isinstance(
        getattr(error, "os_error", None), ConnectionRefusedError
    ):
        return "the connection was refused"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "the connection could not be made"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "the answer was cut off before its end"
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError, ConnectionResetError)):
        return "the connection was closed before the answer"
    return f"the request failed ({type(error).__name__})"


def over_rate_limit_at_once(message: str) -> bool:
    """Whether a 400 says the request costs more tokens than the account's rate limit takes at once
    (not more than the model or the endpoint accepts): the record is not at fault, and the request
    may fit once the limit is raised, or split."""
    text = message.lower()
    return "for the rate limit" in text or ("rate limit" in text and "at once" in text)


def is_batch_too_large(status: int | None, message: str) -> bool:
    text = message.lower()
    return status in (400, 413, 422) and (
        "too many tokens" in text or "too many inputs" in text or "split into more batches" in text or status == 413
    )

"""What the client makes of an answer's bytes: the body read up to limits.max_response_mb, decoded as
JSON and checked by the caller's `validate`, and an error answer's body parsed for its message."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from destination_mistral.http.errors import InvalidAnswer, ResponseTooLarge


def too_large(cap: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"an answer larger than limits.max_response_mb ({cap / (1 << 20):g} MB)")


def check_size(raw: bytes | bytearray, cap: int) -> None:
    if len(raw) > cap:
        raise too_large(cap)


async def read_body(response: Any, cap: int) -> bytes:
    """An aiohttp response's body, refused as soon as it is known to exceed `cap`: a runaway answer
    (a 30 MB chat completion) must not take the memory of the whole sync."""
    if response.content_length is not None and response.content_length > cap:
        raise too_large(cap)
    data = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        data += chunk
        check_size(data, cap)
    return bytes(data)


def decode_answer(raw: bytes, decode: bool, validate: Callable[[Any], Any] | None) -> Any:
    """A 2xx answer's content: its JSON passed through `validate` (the raw bytes when not `decode`).
    Raises InvalidAnswer for a body that cannot be right."""
    if not decode:
        return raw
    if not raw.strip():
        raise InvalidAnswer("an empty body")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidAnswer("a body that is not complete JSON (truncated or not JSON)") from None
    return validate(value) if validate is not None else value


def error_body(raw: bytes) -> Any:
    """An error answer's JSON, None when it has none."""
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def has_id(value: Any) -> Any:
    if not isinstance(value, Mapping) or not isinstance(value.get("id"), str):
        raise InvalidAnswer("an answer without an id")
    return value

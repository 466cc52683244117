"""API-key checks: the Bearer header the SDK sends, or a query parameter for proxy-style base URLs."""

from __future__ import annotations

import hmac

from aiohttp import web

from .errors import unauthorized


def presented_key(request: web.Request, query_names: tuple[str, ...]) -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return ""  # a malformed header is a wrong key, not a missing one
    for name in query_names:
        value = request.query.get(name)
        if value:
            return value
    return None


def check(request: web.Request, expected: str, query_names: tuple[str, ...]) -> str:
    """Returns the key on success; raises the gateway's 401 otherwise."""
    key = presented_key(request, query_names)
    if key is None:
        raise unauthorized(no_key=True)
    # Constant-time comparison: the emulator is a product, so it keeps the habits of one.
    if not hmac.compare_digest(key.encode(), expected.encode()):
        raise unauthorized(no_key=False)
    return key

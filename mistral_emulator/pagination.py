"""Page arithmetic and opaque cursors, kept apart from the routes so they can be tested without sockets."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def page_slice(items: Sequence[T], page: int, page_size: int) -> Sequence[T]:
    """0-based page numbers, as everywhere in the Mistral API; a page past the end is empty."""
    start = page * page_size
    return items[start : start + page_size]


def page_count(total: int, page_size: int) -> int:
    return (total + page_size - 1) // page_size if page_size > 0 else 0


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(token: str | None) -> int | None:
    """Returns the offset, or None for a token this server did not issue."""
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if not raw.startswith("o:") or not raw[2:].isdigit():
        return None
    return int(raw[2:])


def cursor_page(items: Sequence[T], offset: int, page_size: int) -> tuple[Sequence[T], str | None]:
    chunk = items[offset : offset + page_size]
    end = offset + len(chunk)
    return chunk, (encode_cursor(end) if end < len(items) else None)

"""How error messages name what they met: never the value itself, which may be personal data."""

from __future__ import annotations

from typing import Any


def first_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:limit]


def json_kind(value: Any) -> str:
    """What a JSON value is, as a message names it ("an object", "a string")."""
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)

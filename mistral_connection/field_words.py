"""How config messages name a field (`stream_overrides[0].enrichment.mode`), list choices ("a, b or
c"), and tell the options of a `oneOf` apart: shared by both connectors' config checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

FieldPath = tuple[str | int, ...]


def dotted(path: FieldPath) -> str:
    """`stream_overrides[0].enrichment.mode`: a field as the messages name it."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def or_words(values: Sequence[Any]) -> str:
    words = [str(value) for value in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def discriminator(options: Sequence[Mapping[str, Any]]) -> str | None:
    """The property whose `const` tells the options of a `oneOf` apart (`mode`, `type`), or None."""
    common: set[str] | None = None
    for option in options:
        consts = {name for name, prop in option.get("properties", {}).items() if "const" in prop}
        common = consts if common is None else common & consts
    return min(common) if common else None

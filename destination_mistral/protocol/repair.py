"""Repairs of values no output can hold, for input lines that are not strict JSON (orjson refuses
them; the standard parser reads them)."""

from __future__ import annotations

import math
from typing import Any

import orjson

# orjson writes at most this many nested levels; the sinks serialise every record with it.
MAX_DEPTH = 254
INT64 = (-(2**63), 2**64 - 1)  # orjson's integer range: beyond it, it reads (and writes) numbers as floats


def scrub(value: Any) -> Any:
    """Lone surrogates cannot be encoded as UTF-8 (nor stored, nor sent): each becomes U+FFFD. An
    integer past 64 bits becomes a float, as orjson reads it from a clean line: the same record
    must not be a float on one line and an integer no serializer takes on another."""
    if type(value) is int and not INT64[0] <= value <= INT64[1]:
        return float(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def without_non_finite(value: Any) -> tuple[Any, bool]:
    """The value with NaN and Infinity replaced by None, and whether any was (one walk)."""
    if type(value) is float:
        return (value, False) if math.isfinite(value) else (None, True)
    if isinstance(value, dict):
        pairs = {k: without_non_finite(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(changed for _, changed in pairs.values())
    if isinstance(value, list):
        pairs = [without_non_finite(v) for v in value]
        return [v for v, _ in pairs], any(changed for _, changed in pairs)
    return value, False


def too_deep(raw: bytes | str, data: Any) -> bool:
    """Whether `data` (read from `raw`) is nested deeper than orjson writes."""
    if isinstance(raw, bytes):
        brackets = raw.count(b"{") + raw.count(b"[")
    else:
        brackets = raw.count("{") + raw.count("[")
    if brackets <= MAX_DEPTH:  # cheap: only a line with many brackets can be too deep
        return False
    try:
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return True
    return False

"""Response headers read by name whatever their case: the pacer reads the rate-limit headers, the
error sorting Retry-After and the monthly quota's."""

from __future__ import annotations

from collections.abc import Mapping


def header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                return val
    return value


def float_header(headers: Mapping[str, str], name: str) -> float | None:
    value = header(headers, name)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

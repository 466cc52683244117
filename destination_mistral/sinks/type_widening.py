"""When a later sync types a field more widely than the column that holds it (an integer become a
string, or several types), the column is widened so that the stored values are kept and the new
ones fit, instead of being nulled as values that do not fit (which, for a key, would break dedup).
Both table outputs apply this one rule, each in its own SQL."""

from __future__ import annotations

# Conversions that keep every stored value: to text, to JSON, and from an integer to a double.
_WIDER = {"VARCHAR", "JSON"}
_INTEGERS = {"BIGINT", "INTEGER"}


def widened(stored: str, declared: str) -> bool:
    """Whether a column of the (DuckDB-named) type `stored` becomes `declared` for this sync."""
    if stored == declared or stored == "JSON":
        return False
    if declared in _WIDER:
        return not (declared == "VARCHAR" and stored == "JSON")
    return stored in _INTEGERS and declared == "DOUBLE"

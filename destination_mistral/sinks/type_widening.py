"""What becomes of a column when a later sync types its field otherwise (an integer become a string,
a date a date-time, a boolean an integer): nothing is lost, stored or new. Both table outputs apply
this one rule, each in its own SQL.

- The new values fit the column as it is (a date in a timestamp, any scalar in text): the column
  stays.
- Every stored value converts to the new type without loss (to text, to JSON, a date to a timestamp
  at midnight; not a 64-bit integer to a double, which rounds past 2**53): the column takes the new
  type.
- Otherwise the column becomes JSON, which holds the stored values and the new ones as they are,
  instead of nulling one or the other (which, for a key, would also break dedup).

A cursor column never mixes text with numbers or moments: "10" sorts below "9" as text, so such a
change makes it JSON, where values of one kind compare as that kind and, between two kinds, the later
record wins (dedup.py, duckdb_dedup.py, postgres_commit.py)."""

from __future__ import annotations

_TEXT = "VARCHAR"
_JSON = "JSON"
_SCALARS = frozenset({"BIGINT", "INTEGER", "DOUBLE", "BOOLEAN", "DATE", "TIMESTAMPTZ", "TIMESTAMP"})
# declared -> the stored types its values fit in without loss. Not a 64-bit integer in a double: past
# 2**53 it would be rounded.
_FITS_IN = {
    "INTEGER": {"BIGINT", "DOUBLE"},
    "DATE": {"TIMESTAMPTZ", "TIMESTAMP"},
}
# stored -> the types every stored value converts to without loss (besides text and JSON).
_CONVERTS_TO = {
    "INTEGER": {"BIGINT", "DOUBLE"},
    "DATE": {"TIMESTAMPTZ", "TIMESTAMP"},
}
# information_schema's names for the types the outputs create.
_NAMES = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}


def column_change(stored: str, declared: str, cursor: bool = False) -> str | None:
    """The (DuckDB-named) type a column of type `stored` takes for a sync that declares `declared`,
    or None when it stays as it is."""
    stored = _NAMES.get(stored, stored)
    if stored in (declared, _JSON):
        return None
    text_and_other = _TEXT in (stored, declared) and declared != _JSON
    if cursor and text_and_other:
        return _JSON
    if stored in _FITS_IN.get(declared, ()) or (stored == _TEXT and declared in _SCALARS):
        return None
    if declared in (_TEXT, _JSON) or declared in _CONVERTS_TO.get(stored, ()):
        return declared
    return _JSON

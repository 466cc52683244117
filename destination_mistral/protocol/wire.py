"""The protocol's dataclasses as the JSON objects on the wire, written as the CDK's serializer writes
them: a field left None is left out, an enum is its value, `global_` is `global`. Written here
rather than with that serializer (serpyco-rs), whose import and set-up take a quarter of a second."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from typing import Any

# Python keywords the dataclasses had to rename.
WIRE_NAMES = {"global_": "global"}
_FIELD_NAMES: dict[type, tuple[tuple[str, str], ...]] = {}


def _field_names(cls: type) -> tuple[tuple[str, str], ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple((f.name, WIRE_NAMES.get(f.name, f.name)) for f in fields(cls))
    return names


def as_wire(value: Any) -> Any:
    """A protocol dataclass (or a list of them) as a JSON-ready object. Dicts are the JSON the
    message already held (a schema, a state blob) and are returned as they are."""
    if hasattr(value, "__dataclass_fields__"):
        wire = {}
        for name, wire_name in _field_names(type(value)):
            field_value = getattr(value, name)
            if field_value is not None:
                wire[wire_name] = as_wire(field_value)
        return wire
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [as_wire(item) for item in value]
    return value

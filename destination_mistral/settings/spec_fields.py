"""destination-mistral's own spec fields: spec_fields.yaml, which `spec` shows after the shared
credential block, `check` and `write` validate configs against, and the settings objects take
their defaults from. One file, so that the form, the validation and the defaults cannot drift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from mistral_connection.field_words import discriminator

SPEC_FIELDS_FILE = "spec_fields.yaml"
# The YAML stays beside the package's other data files, where the distribution ships them.
_DATA_PACKAGE = "destination_mistral"


@lru_cache(maxsize=1)
def own_fields() -> Mapping[str, Any]:
    """The parsed spec_fields.yaml: `required`, `properties` and `groups`. Shared by every caller:
    read it, never change it (mistral_connection.spec copies it before building the spec)."""
    text = resources.files(_DATA_PACKAGE).joinpath(SPEC_FIELDS_FILE).read_text(encoding="utf-8")
    # The C loader when the machine has it: `write` reads this file on every run.
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@lru_cache(maxsize=1)
def own_schema() -> Mapping[str, Any]:
    """The own fields as one JSON schema of the config object. Keys are in the order jsonschema
    reports problems in: the value's type, then missing fields, then each field in the form's order."""
    fields = own_fields()
    return {"type": "object", "required": list(fields.get("required", [])), "properties": fields["properties"]}


def option_values(options: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    return [option["properties"][key]["const"] for option in options]


def field_schema(*path: str) -> Mapping[str, Any]:
    """The schema at `path`: property names, and for a `oneOf` the value that chooses an option,
    e.g. field_schema("enrichment", "chat", "response_format", "json_schema", "name")."""
    schema: Mapping[str, Any] = own_schema()
    for step in path:
        options = schema.get("oneOf")
        if options:
            key = discriminator(options)
            schema = next(option for option in options if option["properties"][key]["const"] == step)
        else:
            schema = schema["properties"][step]
    return schema


def defaults(*path: str) -> dict[str, Any]:
    """The `default` of each property of the object at `path` that has one."""
    properties = field_schema(*path).get("properties", {})
    return {name: prop["default"] for name, prop in properties.items() if "default" in prop}

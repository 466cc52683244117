"""Builds each connector's full spec from the one credential block in spec.yaml."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from airbyte_cdk.models import ConnectorSpecification

SPEC_FILE = "spec.yaml"


@lru_cache(maxsize=1)
def credential_block() -> Mapping[str, Any]:
    """The parsed spec.yaml. An installed package carries a copy (setup.py puts it there); a
    source checkout reads the top-level file itself, so there is never a second copy to edit."""
    packaged = resources.files("mistral_connection").joinpath(SPEC_FILE)
    if packaged.is_file():
        text = packaged.read_text(encoding="utf-8")
    else:
        text = (Path(__file__).resolve().parent.parent / SPEC_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def connection_specification(title: str, own_fields: Mapping[str, Any]) -> dict[str, Any]:
    """The credential block followed by a connector's own fields (a JSON-schema fragment with
    `properties`, optional `required` and `groups`). Own fields are ordered after the credentials."""
    block = copy.deepcopy(dict(credential_block()))
    properties = dict(block["properties"])
    offset = 1 + max(p.get("order", 0) for p in properties.values())
    for name, prop in copy.deepcopy(dict(own_fields.get("properties", {}))).items():
        if name in properties:
            raise ValueError(f"field {name!r} is already defined by spec.yaml")
        prop["order"] = offset + prop.get("order", 0)
        properties[name] = prop
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": title,
        "type": "object",
        "required": list(block.get("required", [])) + list(own_fields.get("required", [])),
        "additionalProperties": True,
        "properties": properties,
        "groups": list(block.get("groups", [])) + list(own_fields.get("groups", [])),
    }


def connector_specification(
    title: str,
    own_fields: Mapping[str, Any],
    documentation_url: str,
    **extra: Any,
) -> ConnectorSpecification:
    # Imported here: a write reads the credential block (to check `key_placement`) and never needs
    # the CDK, whose import costs a large part of its start-up.
    from airbyte_cdk.models import ConnectorSpecification

    return ConnectorSpecification(
        documentationUrl=documentation_url,
        connectionSpecification=connection_specification(title, own_fields),
        **extra,
    )

"""The manifest uses only what the CDK in the venv supports without deprecation: no component type
its declarative schema marks deprecated (JsonFileSchemaLoader: schemas are inline), and building
every stream (as check, discover and read do) reports no deprecated field."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from importlib import resources
from typing import Any

import yaml

from source_mistral.source import SourceMistral
from unit_tests.source.mistral_responses import CONFIG


def _types(node: Any) -> Iterator[str]:
    """The component types a manifest names, outside its stream schemas (where `type` is JSON's)."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            yield node["type"]
        for key, value in node.items():
            if key != "schemas":
                yield from _types(value)
    elif isinstance(node, list):
        for item in node:
            yield from _types(item)


def test_the_manifest_uses_no_component_type_the_cdk_marks_deprecated():
    schema = yaml.safe_load(
        resources.files("airbyte_cdk.sources.declarative").joinpath("declarative_component_schema.yaml").read_text()
    )
    deprecated = {name for name, definition in schema["definitions"].items() if definition.get("deprecated")}
    assert "JsonFileSchemaLoader" in deprecated, "the CDK's schema marks what it deprecates"
    manifest = yaml.safe_load(resources.files("source_mistral").joinpath("manifest.yaml").read_text())
    used = set(_types(manifest))
    assert {"DeclarativeStream", "InlineSchemaLoader", "HttpRequester"} <= used
    assert not used & deprecated, sorted(used & deprecated)


def test_building_the_streams_reports_no_deprecated_component_field():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = SourceMistral(config=CONFIG)
        streams = source.streams(source._config)
    assert {s.name for s in streams} >= {"models", "files", "batch_jobs", "batch_job_results"}
    assert [w.message for w in source.deprecation_warnings()] == []
    assert not [str(w.message) for w in caught if "deprecated" in str(w.message).lower()]

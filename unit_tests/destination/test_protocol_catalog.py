"""The configured catalog read into the protocol's dataclasses: the same objects, with the same
defaults, whichever entry point it came through; fields the protocol adds later, or that a
hand-made catalog leaves out, never stop a sync."""

from __future__ import annotations

import json

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalog as CdkCatalog
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, FailureType
from airbyte_cdk.models import ConfiguredAirbyteStream as CdkStream
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from airbyte_protocol_dataclasses.models import AirbyteStream, ConfiguredAirbyteStream, DestinationSyncMode, SyncMode

from destination_mistral.protocol.catalog import catalog_from_json
from destination_mistral.protocol.files import read_config, read_configured_catalog

SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}, "review": {"type": "string"}}}


def _one(entry: dict) -> ConfiguredAirbyteStream:
    streams = catalog_from_json({"streams": [entry]}, "of the test").streams
    assert len(streams) == 1
    return streams[0]


def test_a_stream_is_the_protocols_dataclass_the_cdk_hands_over_too():
    configured = _one(
        {
            "stream": {"name": "reviews", "json_schema": SCHEMA, "supported_sync_modes": ["full_refresh"]},
            "sync_mode": "full_refresh",
            "destination_sync_mode": "append",
        }
    )
    assert type(configured) is ConfiguredAirbyteStream is CdkStream
    assert type(configured.stream) is AirbyteStream


def test_missing_optional_fields_take_the_protocols_defaults():
    configured = _one({"stream": {"name": "reviews", "json_schema": SCHEMA}})
    assert configured.sync_mode is SyncMode.full_refresh
    assert configured.destination_sync_mode is DestinationSyncMode.append
    assert configured.stream.supported_sync_modes == [], "required by the protocol, absent from hand-made catalogs"
    assert configured.stream.namespace is None
    assert configured.primary_key is configured.stream.source_defined_primary_key is None
    assert configured.sync_id is configured.generation_id is configured.minimum_generation_id is None
    assert configured.cursor_field is configured.include_files is configured.destination_object_name is None


def test_unknown_extra_fields_are_ignored_at_every_level():
    catalog = catalog_from_json(
        {
            "streams": [
                {
                    "stream": {
                        "name": "reviews",
                        "json_schema": SCHEMA,
                        "supported_sync_modes": ["full_refresh", "incremental", "someday"],
                        "x-stream-extra": {"a": 1},
                    },
                    "sync_mode": "incremental",
                    "destination_sync_mode": "append_dedup",
                    "primary_key": [["id"]],
                    "x-entry-extra": [1, 2],
                    "future_field": None,
                }
            ],
            "x-catalog-extra": True,
        },
        "of the test",
    )
    configured = catalog.streams[0]
    assert configured.stream.supported_sync_modes == [SyncMode.full_refresh, SyncMode.incremental], (
        "an unknown mode is left out"
    )
    assert configured.destination_sync_mode is DestinationSyncMode.append_dedup
    assert configured.primary_key == [["id"]]
    assert not hasattr(configured, "x-entry-extra") and not hasattr(configured, "future_field")


def test_every_field_the_protocol_defines_is_kept():
    configured = _one(
        {
            "stream": {
                "name": "reviews",
                "namespace": "shop",
                "json_schema": SCHEMA,
                "supported_sync_modes": ["incremental"],
                "source_defined_cursor": True,
                "default_cursor_field": ["updated_at"],
                "source_defined_primary_key": [["id"]],
                "is_resumable": False,
                "is_file_based": False,
            },
            "sync_mode": "incremental",
            "destination_sync_mode": "overwrite",
            "cursor_field": ["updated_at"],
            "destination_object_name": "reviews_out",
            "primary_key": [["id"]],
            "generation_id": 4,
            "minimum_generation_id": 4,
            "sync_id": 99,
            "include_files": False,
        }
    )
    stream = configured.stream
    assert (stream.name, stream.namespace, stream.json_schema) == ("reviews", "shop", SCHEMA)
    assert (stream.source_defined_cursor, stream.default_cursor_field, stream.source_defined_primary_key) == (
        True,
        ["updated_at"],
        [["id"]],
    )
    assert (stream.is_resumable, stream.is_file_based) == (False, False)
    assert (configured.sync_mode, configured.destination_sync_mode) == (
        SyncMode.incremental,
        DestinationSyncMode.overwrite,
    )
    assert (configured.cursor_field, configured.destination_object_name, configured.include_files) == (
        ["updated_at"],
        "reviews_out",
        False,
    )
    assert (configured.generation_id, configured.minimum_generation_id, configured.sync_id) == (4, 4, 99)


def test_malformed_fields_the_destination_does_not_read_are_left_out_not_refused():
    configured = _one(
        {
            "stream": {
                "name": "reviews",
                "namespace": "",
                "json_schema": SCHEMA,
                "supported_sync_modes": "full_refresh",
                "source_defined_cursor": "yes",
                "default_cursor_field": [1],
                "is_resumable": 1,
            },
            "cursor_field": "updated_at",
            "destination_object_name": 3,
            "include_files": "no",
        }
    )
    stream = configured.stream
    assert stream.namespace is None, "an empty namespace is no namespace"
    assert stream.supported_sync_modes == []
    assert stream.source_defined_cursor is stream.default_cursor_field is stream.is_resumable is None
    assert configured.cursor_field is configured.destination_object_name is configured.include_files is None


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"streams": None}, "no `streams` list"),
        ([], "no `streams` list"),
        (
            {"streams": [{"stream": {"json_schema": SCHEMA}}]},
            "Stream 1 of the configured catalog has no `stream` object with a name",
        ),
        ({"streams": [{"stream": {"name": "s"}}]}, "no `json_schema` object"),
        (
            {"streams": [{"stream": {"name": "s", "json_schema": SCHEMA}, "sync_mode": "sometimes"}]},
            "sync_mode 'sometimes'",
        ),
        (
            {"streams": [{"stream": {"name": "s", "json_schema": SCHEMA}, "sync_mode": ["full_refresh"]}]},
            "sync_mode ['full_refresh']",
        ),
        (
            {"streams": [{"stream": {"name": "s", "json_schema": SCHEMA}, "destination_sync_mode": "upsert"}]},
            "destination_sync_mode 'upsert'",
        ),
        (
            {"streams": [{"stream": {"name": "s", "json_schema": SCHEMA}, "destination_sync_mode": {"a": 1}}]},
            "does not define",
        ),
        (
            {"streams": [{"stream": {"name": "s", "json_schema": SCHEMA, "namespace": 3}}]},
            "namespace that is not a string",
        ),
        (
            {"streams": [{"stream": {"name": "s", "json_schema": SCHEMA}, "primary_key": ["id"]}]},
            "`primary_key` that is not a list",
        ),
        (
            {"streams": [{"stream": {"name": "s", "json_schema": SCHEMA, "source_defined_primary_key": [[1]]}}]},
            "`source_defined_primary_key` that is not a list",
        ),
        (
            {"streams": [{"stream": {"name": "s", "json_schema": SCHEMA}, "generation_id": -1}]},
            "`generation_id` that is not a non-negative",
        ),
        (
            {"streams": [{"stream": {"name": "s", "json_schema": SCHEMA}, "sync_id": True}]},
            "`sync_id` that is not a non-negative",
        ),
    ],
)
def test_what_the_platform_never_sends_is_a_config_error_naming_the_entry(raw, words):
    with pytest.raises(AirbyteTracedException) as raised:
        catalog_from_json(raw, "of the test")
    assert raised.value.failure_type == FailureType.config_error
    assert words in raised.value.message, raised.value.message


def test_a_catalog_from_json_equals_the_cdks_objects_it_was_dumped_from():
    """So plan_stream reads the same fields with the same values from both entry points."""
    cdk_catalog = CdkCatalog(
        streams=[
            CdkStream(
                stream=AirbyteStream(
                    name="reviews", namespace="shop", json_schema=SCHEMA, supported_sync_modes=[SyncMode.incremental]
                ),
                sync_mode=SyncMode.incremental,
                destination_sync_mode=DestinationSyncMode.append_dedup,
                primary_key=[["id"]],
                generation_id=3,
                minimum_generation_id=3,
                sync_id=12,
            )
        ]
    )
    read = catalog_from_json(ConfiguredAirbyteCatalogSerializer.dump(cdk_catalog), "passed in")
    assert read == cdk_catalog


def test_catalog_and_config_files_that_cannot_be_read_are_config_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{streams: nope")
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([1]))
    for read, path, words in (
        (read_configured_catalog, tmp_path / "missing.json", "cannot be read"),
        (read_configured_catalog, broken, "is not valid JSON"),
        (read_config, broken, "could not be read as JSON"),
        (read_config, listed, "holds a JSON list, not an object"),
    ):
        with pytest.raises(AirbyteTracedException) as raised:
            read(str(path))
        assert raised.value.failure_type == FailureType.config_error
        assert words in raised.value.message, raised.value.message

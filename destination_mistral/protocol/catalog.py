"""The configured catalog, as the protocol's own dataclasses (`ConfiguredAirbyteCatalog`, the class
the CDK re-exports), so that plan_stream reads the same objects whichever entry point the catalog
came through. The JSON is checked first: what the platform would never send is refused with a
message naming the entry, not a TypeError; what the destination does not read is left out when it
is malformed rather than refused (an older or newer platform's fields must not stop a sync)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airbyte_protocol_dataclasses.models import AirbyteStream, DestinationSyncMode, SyncMode

# The names the destination knows them by.
from airbyte_protocol_dataclasses.models import ConfiguredAirbyteCatalog as Catalog
from airbyte_protocol_dataclasses.models import ConfiguredAirbyteStream as CatalogStream

from mistral_connection.errors import config_error

SYNC_MODES = frozenset(mode.value for mode in SyncMode)
# Every destination sync mode the protocol defines (plan_stream says which ones this destination writes).
DESTINATION_SYNC_MODES = frozenset(mode.value for mode in DestinationSyncMode)


def _is_key(value: Any) -> bool:
    """A primary key as the protocol writes it: a list of field paths, each a list of names."""
    return isinstance(value, list) and all(
        isinstance(path, list) and all(isinstance(p, str) for p in path) for path in value
    )


def _names(value: Any) -> list[str] | None:
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _configured_stream(entry: Mapping[str, Any], stream: Mapping[str, Any]) -> CatalogStream:
    modes = stream.get("supported_sync_modes")
    return CatalogStream(
        stream=AirbyteStream(
            name=stream["name"],
            json_schema=stream["json_schema"],
            # Required by the protocol, never read here: a catalog without it (hand-made) still syncs.
            supported_sync_modes=[SyncMode(m) for m in modes if isinstance(m, str) and m in SYNC_MODES]
            if isinstance(modes, list)
            else [],
            source_defined_cursor=_flag(stream.get("source_defined_cursor")),
            default_cursor_field=_names(stream.get("default_cursor_field")),
            source_defined_primary_key=stream.get("source_defined_primary_key"),
            namespace=stream.get("namespace") or None,
            is_resumable=_flag(stream.get("is_resumable")),
            is_file_based=_flag(stream.get("is_file_based")),
        ),
        sync_mode=SyncMode(entry.get("sync_mode", "full_refresh")),
        destination_sync_mode=DestinationSyncMode(entry.get("destination_sync_mode", "append")),
        cursor_field=_names(entry.get("cursor_field")),
        destination_object_name=entry.get("destination_object_name")
        if isinstance(entry.get("destination_object_name"), str)
        else None,
        primary_key=entry.get("primary_key"),
        generation_id=entry.get("generation_id"),
        minimum_generation_id=entry.get("minimum_generation_id"),
        sync_id=entry.get("sync_id"),
        include_files=_flag(entry.get("include_files")),
    )


def catalog_from_json(raw: Any, where: str) -> Catalog:
    """A configured catalog from its JSON, refusing what the platform would never send with a message
    naming the entry."""
    if not isinstance(raw, dict) or not isinstance(raw.get("streams"), list):
        raise config_error(f"The configured catalog {where} has no `streams` list: pass a configured catalog.")
    streams = []
    for index, entry in enumerate(raw["streams"]):
        stream = entry.get("stream") if isinstance(entry, dict) else None
        if not isinstance(stream, dict) or not isinstance(stream.get("name"), str) or not stream["name"]:
            raise config_error(f"Stream {index + 1} of the configured catalog has no `stream` object with a name.")
        name = stream["name"]
        if not isinstance(stream.get("json_schema"), dict):
            raise config_error(f"Stream {name!r} of the configured catalog has no `json_schema` object.")
        sync_mode = entry.get("sync_mode", "full_refresh")
        if not isinstance(sync_mode, str) or sync_mode not in SYNC_MODES:
            raise config_error(
                f"Stream {name!r} of the configured catalog has sync_mode {entry.get('sync_mode')!r}: "
                "use full_refresh or incremental."
            )
        mode = entry.get("destination_sync_mode", "append")
        if not isinstance(mode, str) or mode not in DESTINATION_SYNC_MODES:
            raise config_error(
                f"Stream {name!r} of the configured catalog has destination_sync_mode {str(mode)[:40]!r}, "
                "which the Airbyte protocol does not define: use overwrite, append or append_dedup."
            )
        namespace = stream.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise config_error(f"Stream {name!r} of the configured catalog has a namespace that is not a string.")
        for field, key in (
            ("primary_key", entry.get("primary_key")),
            ("source_defined_primary_key", stream.get("source_defined_primary_key")),
        ):
            if key is not None and not _is_key(key):
                raise config_error(
                    f"Stream {name!r} of the configured catalog has a `{field}` that is not a list of "
                    'field paths (e.g. [["id"]]).'
                )
        for field in ("sync_id", "generation_id", "minimum_generation_id"):
            value = entry.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise config_error(
                    f"Stream {name!r} of the configured catalog has a `{field}` that is not a non-negative integer."
                )
        streams.append(_configured_stream(entry, stream))
    return Catalog(streams=streams)

"""The Airbyte messages and catalog as the write path holds them: plain objects over the parsed JSON.

Why not the CDK's protocol classes: importing `airbyte_cdk` costs about a second (its package builds
every serializer on import), more than enriching 5,000 records takes, and a nightly sync whose
records are all answered by the cache would spend most of its run starting up. `write` reads and
writes the protocol's JSON directly; the CDK's classes appear only where the CDK calls in
(`DestinationMistral.write`, used by PyAirbyte-style callers and the standard tests), converted at
that edge (destination.py)."""

from __future__ import annotations

from typing import Any, Mapping

from mistral_connection.errors import config_error

STATE_TYPES = frozenset({"STREAM", "GLOBAL", "LEGACY"})
SYNC_MODES = frozenset({"full_refresh", "incremental"})
# Every destination sync mode the protocol defines (plan_stream says which ones this destination writes).
DESTINATION_SYNC_MODES = frozenset({"append", "overwrite", "append_dedup", "update", "soft_delete"})


class Record:
    """A RECORD's payload: the fields the destination reads, named as the protocol names them.
    `changes` are the record's `_airbyte_meta.changes` so far: the source's own (a field it
    truncated, say) and any the destination made while reading the message."""

    __slots__ = ("stream", "namespace", "data", "emitted_at", "changes")

    def __init__(self, stream: str, data: dict, emitted_at: int, namespace: str | None = None,
                 changes: list | None = None) -> None:
        self.stream = stream
        self.data = data
        self.emitted_at = emitted_at
        self.namespace = namespace
        self.changes = changes

    def __repr__(self) -> str:  # never the data: it may be personal
        return f"Record(stream={self.stream!r}, namespace={self.namespace!r}, fields={len(self.data)})"


class State:
    """A STATE message, kept as the JSON object it arrived as, so that it leaves exactly as the source
    wrote it (plus the destination's record count)."""

    __slots__ = ("message",)

    def __init__(self, message: dict) -> None:
        self.message = message

    def with_record_count(self, records: int) -> dict:
        state = dict(self.message.get("state") or {})
        state["destinationStats"] = {"recordCount": float(records)}
        return {**self.message, "type": "STATE", "state": state}


class StreamStatus:
    """A TRACE STREAM_STATUS message. The platform sends COMPLETE for a stream once the source has
    read all of it, before closing stdin; a source that fails closes stdin without it. Only then may
    an overwrite or a truncate refresh replace what the stream held before."""

    __slots__ = ("stream", "namespace", "status")

    def __init__(self, stream: str, namespace: str | None, status: str) -> None:
        self.stream = stream
        self.namespace = namespace or None
        self.status = status

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.namespace, self.stream)

    def __repr__(self) -> str:
        return f"StreamStatus(stream={self.stream!r}, namespace={self.namespace!r}, status={self.status!r})"


def state_problem(state: Any) -> str | None:
    """Why a STATE message's `state` is not one the protocol defines, or None. The checks a platform
    would trip over when it stores the state: the shape, not the source's own blob."""
    if not isinstance(state, dict):
        return "its `state` is not an object"
    kind = state.get("type", "LEGACY")
    if kind not in STATE_TYPES:
        return f"state type {str(kind)[:40]!r} is none of STREAM, GLOBAL, LEGACY"
    if kind == "STREAM":
        stream = state.get("stream")
        descriptor = stream.get("stream_descriptor") if isinstance(stream, dict) else None
        if not isinstance(descriptor, dict) or not isinstance(descriptor.get("name"), str):
            return "a STREAM state needs `stream.stream_descriptor.name`"
    elif kind == "GLOBAL":
        if not isinstance(state.get("global"), dict):
            return "a GLOBAL state needs a `global` object"
    return None


class CatalogStream:
    """The part of a configured stream the destination reads, with the protocol's defaults."""

    __slots__ = ("name", "namespace", "json_schema", "source_defined_primary_key", "destination_sync_mode",
                 "primary_key", "sync_id", "generation_id", "minimum_generation_id")

    def __init__(self, entry: Mapping[str, Any]) -> None:
        stream = entry["stream"]
        self.name: str = stream["name"]
        self.namespace: str | None = stream.get("namespace") or None
        self.json_schema: dict = stream["json_schema"]
        self.source_defined_primary_key = stream.get("source_defined_primary_key")
        self.destination_sync_mode = entry.get("destination_sync_mode", "append")
        self.primary_key = entry.get("primary_key")
        self.sync_id = entry.get("sync_id")
        self.generation_id = entry.get("generation_id")
        self.minimum_generation_id = entry.get("minimum_generation_id")

    # plan_stream reads `configured.stream.<field>` as on the CDK's ConfiguredAirbyteStream.
    @property
    def stream(self) -> "CatalogStream":
        return self


class Catalog:
    __slots__ = ("streams",)

    def __init__(self, streams: list[CatalogStream]) -> None:
        self.streams = streams


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
        if entry.get("sync_mode", "full_refresh") not in SYNC_MODES:
            raise config_error(f"Stream {name!r} of the configured catalog has sync_mode {entry.get('sync_mode')!r}: "
                               "use full_refresh or incremental.")
        mode = entry.get("destination_sync_mode", "append")
        if mode not in DESTINATION_SYNC_MODES:
            raise config_error(f"Stream {name!r} of the configured catalog has destination_sync_mode {str(mode)[:40]!r}, "
                               "which the Airbyte protocol does not define: use overwrite, append or append_dedup.")
        namespace = stream.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise config_error(f"Stream {name!r} of the configured catalog has a namespace that is not a string.")
        for field in ("primary_key", "source_defined_primary_key"):
            key = entry.get(field) if field == "primary_key" else stream.get(field)
            if key is not None and not (isinstance(key, list) and all(
                    isinstance(path, list) and all(isinstance(p, str) for p in path) for path in key)):
                raise config_error(f"Stream {name!r} of the configured catalog has a `{field}` that is not a list of "
                                   "field paths (e.g. [[\"id\"]]).")
        for field in ("sync_id", "generation_id", "minimum_generation_id"):
            value = entry.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise config_error(f"Stream {name!r} of the configured catalog has a `{field}` that is not a non-negative integer.")
        streams.append(CatalogStream(entry))
    return Catalog(streams)

"""Builders for catalogs and input messages, shared by the tests and the benchmarks in tools/."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteRecordMessage,
    AirbyteStateMessage,
    AirbyteStateType,
    AirbyteStream,
    AirbyteStreamState,
    AirbyteStreamStatus,
    AirbyteStreamStatusTraceMessage,
    AirbyteTraceMessage,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteStream,
    DestinationSyncMode,
    StreamDescriptor,
    SyncMode,
    TraceType,
    Type,
)
from airbyte_cdk.models.airbyte_protocol import AirbyteStateBlob

REVIEW_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "product": {"type": "string"},
        "rating": {"type": ["null", "integer"]},
        "review": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "reviewed_at": {"type": "string", "format": "date-time"},
    },
}


def configured_stream(
    name: str = "reviews",
    mode: str = "append",
    primary_key: Sequence[str] | None = ("id",),
    schema: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    sync_id: int | None = None,
    generation_id: int | None = None,
    minimum_generation_id: int | None = None,
) -> ConfiguredAirbyteStream:
    return ConfiguredAirbyteStream(
        stream=AirbyteStream(
            name=name,
            json_schema=dict(schema or REVIEW_SCHEMA),
            supported_sync_modes=[SyncMode.full_refresh],
            namespace=namespace,
        ),
        sync_mode=SyncMode.full_refresh,
        destination_sync_mode=DestinationSyncMode(mode),
        primary_key=[[k] for k in primary_key] if primary_key else None,
        sync_id=sync_id,
        generation_id=generation_id if generation_id is not None else (0 if sync_id is not None else None),
        minimum_generation_id=minimum_generation_id
        if minimum_generation_id is not None
        else (0 if sync_id is not None else None),
    )


def catalog(*streams: ConfiguredAirbyteStream) -> ConfiguredAirbyteCatalog:
    return ConfiguredAirbyteCatalog(streams=list(streams) or [configured_stream()])


def record(
    data: Mapping[str, Any], stream: str = "reviews", namespace: str | None = None, emitted_at: int = 1_700_000_000_000
) -> AirbyteMessage:
    return AirbyteMessage(
        type=Type.RECORD,
        record=AirbyteRecordMessage(stream=stream, data=dict(data), emitted_at=emitted_at, namespace=namespace),
    )


def state(value: Mapping[str, Any], stream: str = "reviews", namespace: str | None = None) -> AirbyteMessage:
    return AirbyteMessage(
        type=Type.STATE,
        state=AirbyteStateMessage(
            type=AirbyteStateType.STREAM,
            stream=AirbyteStreamState(
                stream_descriptor=StreamDescriptor(name=stream, namespace=namespace),
                stream_state=AirbyteStateBlob(**value),
            ),
        ),
    )


def complete(stream: str = "reviews", namespace: str | None = None) -> AirbyteMessage:
    """The status the platform sends once a stream has been read whole, before closing stdin."""
    return AirbyteMessage(
        type=Type.TRACE,
        trace=AirbyteTraceMessage(
            type=TraceType.STREAM_STATUS,
            emitted_at=1_700_000_000_000,
            stream_status=AirbyteStreamStatusTraceMessage(
                stream_descriptor=StreamDescriptor(name=stream, namespace=namespace),
                status=AirbyteStreamStatus.COMPLETE,
            ),
        ),
    )


def review(i: int, text: str | None = None, **extra: Any) -> dict[str, Any]:
    topics = ["battery drains quickly", "shipping was slow", "screen is bright", "sound is rich", "case feels cheap"]
    return {
        "id": i,
        "product": f"product-{i % 5}",
        "rating": 1 + i % 5,
        "review": text if text is not None else f"Review {i}: the {topics[i % len(topics)]}.",
        "tags": ["t", str(i % 3)],
        "reviewed_at": "2025-03-01T10:00:00Z",
        **extra,
    }


def messages_with_states(
    records: Iterable[Mapping[str, Any]],
    every: int = 10,
    stream: str = "reviews",
    namespace: str | None = None,
    completed: bool = True,
) -> list[AirbyteMessage]:
    """The records with a STATE every `every` of them and, as the platform sends it when the source
    succeeds, the stream's COMPLETE status at the end (`completed=False`: the source failed)."""
    out: list[AirbyteMessage] = []
    count = 0
    for data in records:
        out.append(record(data, stream=stream, namespace=namespace))
        count += 1
        if count % every == 0:
            out.append(state({"position": count}, stream=stream, namespace=namespace))
    if count % every:
        out.append(state({"position": count}, stream=stream, namespace=namespace))
    if completed:
        out.append(complete(stream, namespace))
    return out


def serialize(messages: Iterable[AirbyteMessage]) -> str:
    import orjson
    from airbyte_cdk.models import AirbyteMessageSerializer

    return "".join(orjson.dumps(AirbyteMessageSerializer.dump(m)).decode() + "\n" for m in messages)

"""The messages the pipeline receives: plain objects over the parsed JSON (records are the hot path:
they never become the protocol's dataclasses)."""

from __future__ import annotations

from airbyte_protocol_dataclasses.models import AirbyteStateMessage, AirbyteStateStats

from destination_mistral.protocol.wire import as_wire


class Record:
    """A RECORD's payload: the fields the destination reads, named as the protocol names them.
    `changes` are the record's `_airbyte_meta.changes` so far: the source's own (a field it
    truncated, say) and any the destination made while reading the message."""

    __slots__ = ("stream", "namespace", "data", "emitted_at", "changes")

    def __init__(
        self, stream: str, data: dict, emitted_at: int, namespace: str | None = None, changes: list | None = None
    ) -> None:
        self.stream = stream
        self.data = data
        self.emitted_at = emitted_at
        self.namespace = namespace
        self.changes = changes

    def __repr__(self) -> str:  # never the data: it may be personal
        return f"Record(stream={self.stream!r}, namespace={self.namespace!r}, fields={len(self.data)})"


class State:
    """A STATE message. `message` is the JSON object it arrived as, so that it leaves exactly as the
    source wrote it (plus the destination's record count): the dataclasses would drop a field the
    protocol does not name and cannot hold the source's blobs. `parsed` is the protocol's view of
    its `state` (state.state_message)."""

    __slots__ = ("message", "parsed")

    def __init__(self, message: dict, parsed: AirbyteStateMessage) -> None:
        self.message = message
        self.parsed = parsed

    def with_record_count(self, records: int) -> dict:
        state = dict(self.message.get("state") or {})
        state["destinationStats"] = as_wire(AirbyteStateStats(recordCount=float(records)))
        return {**self.message, "type": "STATE", "state": state}

    def __repr__(self) -> str:
        return f"State(type={self.parsed.type.value if self.parsed.type else None!r})"


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

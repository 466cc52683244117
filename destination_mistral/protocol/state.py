"""A STATE message's `state` read into the protocol's dataclasses: the shape a platform checks when
it stores the state (its type, the streams it covers), so that a state it would refuse stops the
sync at its own line. The blobs (`stream_state`, `shared_state`, a LEGACY `data`) are the source's
own: they are not copied, and travel untouched in the message's JSON (see messages.State)."""

from __future__ import annotations

from typing import Any

from airbyte_protocol_dataclasses.models import (
    AirbyteGlobalState,
    AirbyteStateMessage,
    AirbyteStateStats,
    AirbyteStateType,
    AirbyteStreamState,
    StreamDescriptor,
)

STATE_TYPES = frozenset(kind.value for kind in AirbyteStateType)


class StateProblem(ValueError):
    """Why a `state` is not one the protocol defines, worded to follow "the STATE message is not valid"."""


def _descriptor(stream: Any) -> StreamDescriptor | None:
    descriptor = stream.get("stream_descriptor") if isinstance(stream, dict) else None
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("name"), str):
        return None
    namespace = descriptor.get("namespace")
    return StreamDescriptor(name=descriptor["name"], namespace=namespace if isinstance(namespace, str) else None)


def _stats(stats: Any) -> AirbyteStateStats | None:
    count = stats.get("recordCount") if isinstance(stats, dict) else None
    if isinstance(count, bool) or not isinstance(count, (int, float)):
        return None
    return AirbyteStateStats(recordCount=float(count))


def state_message(state: Any) -> AirbyteStateMessage:
    """The protocol's view of a STATE message's `state`; raises StateProblem for one it does not define.
    Only what a platform would trip over is refused: a GLOBAL state's malformed stream entries are
    left out of the view, not refused, as the platform itself passes them through."""
    if not isinstance(state, dict):
        raise StateProblem("its `state` is not an object")
    kind = state.get("type", "LEGACY")
    if not isinstance(kind, str) or kind not in STATE_TYPES:
        raise StateProblem(f"state type {str(kind)[:40]!r} is none of STREAM, GLOBAL, LEGACY")
    message = AirbyteStateMessage(type=AirbyteStateType(kind), sourceStats=_stats(state.get("sourceStats")))
    if kind == "STREAM":
        descriptor = _descriptor(state.get("stream"))
        if descriptor is None:
            raise StateProblem("a STREAM state needs `stream.stream_descriptor.name`")
        message.stream = AirbyteStreamState(stream_descriptor=descriptor)
    elif kind == "GLOBAL":
        shared = state.get("global")
        if not isinstance(shared, dict):
            raise StateProblem("a GLOBAL state needs a `global` object")
        entries = shared.get("stream_states")
        descriptors = (_descriptor(entry) for entry in entries) if isinstance(entries, list) else ()
        message.global_ = AirbyteGlobalState(
            stream_states=[AirbyteStreamState(stream_descriptor=d) for d in descriptors if d]
        )
    return message

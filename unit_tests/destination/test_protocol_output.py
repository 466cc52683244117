"""Lines written to stdout through the protocol's dataclasses (LOG messages), messages handed over in
process, and the record fields the parser keeps from the source."""

from __future__ import annotations

import json
import logging

import orjson
from airbyte_cdk.models import AirbyteMessageSerializer
from airbyte_protocol_dataclasses.models import (
    AirbyteGlobalState,
    AirbyteLogMessage,
    AirbyteMessage,
    AirbyteRecordMessage,
    AirbyteStateMessage,
    AirbyteStateStats,
    AirbyteStateType,
    AirbyteStreamState,
    AirbyteStreamStatus,
    AirbyteStreamStatusTraceMessage,
    AirbyteTraceMessage,
    Level,
    StreamDescriptor,
    TraceType,
    Type,
)

from destination_mistral.protocol.input_lines import InputParser, parse_message_objects, source_changes
from destination_mistral.protocol.logs import LogMessageFormatter
from destination_mistral.protocol.masking import register_secrets
from destination_mistral.protocol.wire import as_wire


def _format(level: int, text: str) -> dict:
    record = logging.LogRecord("airbyte", level, __file__, 1, text, None, None)
    return orjson.loads(LogMessageFormatter().format(record))


def test_log_lines_are_log_messages_with_the_protocols_levels():
    assert _format(logging.WARNING, "Stream x: careful") == {
        "type": "LOG",
        "log": {"level": "WARN", "message": "Stream x: careful"},
    }
    assert _format(logging.CRITICAL, "gone")["log"]["level"] == "FATAL"
    assert _format(5, "below debug")["log"]["level"] == "INFO"


def test_log_lines_mask_registered_secrets():
    register_secrets(["sk-protocol-test-secret"])
    assert _format(logging.INFO, "key sk-protocol-test-secret refused")["log"]["message"] == "key **** refused"


def test_dataclasses_are_written_as_the_cdks_serializer_writes_them():
    messages = [
        AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=Level.INFO, message="hi")),
        AirbyteMessage(
            type=Type.TRACE,
            trace=AirbyteTraceMessage(
                type=TraceType.STREAM_STATUS,
                emitted_at=1.5,
                stream_status=AirbyteStreamStatusTraceMessage(
                    stream_descriptor=StreamDescriptor("s", "n"), status=AirbyteStreamStatus.COMPLETE
                ),
            ),
        ),
        AirbyteMessage(
            type=Type.STATE,
            state=AirbyteStateMessage(
                type=AirbyteStateType.GLOBAL,
                destinationStats=AirbyteStateStats(recordCount=2.0),
                global_=AirbyteGlobalState(stream_states=[AirbyteStreamState(stream_descriptor=StreamDescriptor("s"))]),
            ),
        ),
    ]
    for message in messages:
        wire = as_wire(message)
        assert wire == AirbyteMessageSerializer.dump(AirbyteMessageSerializer.load(wire))
    assert "global" in as_wire(messages[2])["state"] and "global_" not in as_wire(messages[2])["state"]


def test_messages_handed_over_in_process_are_read_as_their_lines_are():
    objects = [
        {"type": "RECORD", "record": {"stream": "s", "data": {"n": 2**70, "t": "x"}, "emitted_at": 1_700_000_000}},
        as_wire(
            AirbyteMessage(
                type=Type.RECORD, record=AirbyteRecordMessage(stream="s", data={"a": 1}, emitted_at=5, namespace="n")
            )
        ),
        {"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "s"}}}},
        {
            "type": "TRACE",
            "trace": {
                "type": "STREAM_STATUS",
                "stream_status": {"stream_descriptor": {"name": "s"}, "status": "COMPLETE"},
            },
        },
    ]
    from_objects = list(parse_message_objects(objects))
    from_lines = list(
        InputParser().parse((json.dumps(o) + "\n").encode() for o in objects)
    )  # as a Python source writes them
    assert [
        (type(m).__name__, {s: getattr(m, s) for s in type(m).__slots__ if s != "parsed"}) for m in from_objects
    ] == [(type(m).__name__, {s: getattr(m, s) for s in type(m).__slots__ if s != "parsed"}) for m in from_lines]
    assert from_objects[0].data["n"] == float(2**70), (
        "a number past 64 bits arrives as a float either way, not a TypeError"
    )


def test_a_sources_changes_of_an_unknown_shape_are_dropped_not_fatal():
    changes = [
        {"field": "a", "change": "TRUNCATED", "reason": "SOURCE_FIELD_SIZE_LIMITATION", "extra": 1},
        {"field": "b", "change": ["NULLED"], "reason": "x"},
        {"field": "c", "change": {"k": 1}, "reason": "x"},
        {"field": "d", "change": "REMOVED", "reason": "x"},
        "NULLED",
    ]
    assert source_changes({"changes": changes}) == [
        {"field": "a", "change": "TRUNCATED", "reason": "SOURCE_FIELD_SIZE_LIMITATION"}
    ]
    assert source_changes({"changes": []}) is source_changes(None) is source_changes({"changes": "x"}) is None

"""STATE messages: checked through the protocol's dataclasses, passed on as the JSON they arrived as
(plus the destination's record count), whatever fields the source or the platform put in them."""

from __future__ import annotations

import orjson
import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from airbyte_protocol_dataclasses.models import AirbyteStateStats, AirbyteStateType, StreamDescriptor

from destination_mistral.protocol.input_lines import InputParser
from destination_mistral.protocol.messages import State
from destination_mistral.protocol.stdout import message_line


def _state(message: dict) -> State:
    (parsed,) = InputParser().parse([orjson.dumps(message)])
    assert type(parsed) is State
    return parsed


def test_a_stream_state_leaves_as_it_arrived_plus_the_record_count():
    message = {
        "type": "STATE",
        "id": 7,
        "x-platform": {"a": [1, 2]},
        "state": {
            "type": "STREAM",
            "sourceStats": {"recordCount": 3.0},
            "x-extra": "kept",
            "stream": {
                "stream_descriptor": {"name": "reviews", "namespace": "shop"},
                "stream_state": {"cursor": "2024-01-01", "__ab_private": True, "big": 2**63, "nested": {"z": None}},
            },
        },
    }
    state = _state(message)
    assert state.parsed.type is AirbyteStateType.STREAM
    assert state.parsed.stream.stream_descriptor == StreamDescriptor(name="reviews", namespace="shop")
    assert state.parsed.stream.stream_state is None, "the blob stays in the JSON, not the view"
    assert state.parsed.sourceStats == AirbyteStateStats(recordCount=3.0)
    out = state.with_record_count(3)
    assert out == {**message, "state": {**message["state"], "destinationStats": {"recordCount": 3.0}}}
    assert orjson.loads(message_line(out)) == out, "the line carries every field, values and types unchanged"
    assert "destinationStats" not in message["state"], "the message read is not changed"


def test_a_record_count_replaces_one_the_source_sent():
    out = _state(
        {"type": "STATE", "state": {"type": "LEGACY", "data": {"x": 1}, "destinationStats": {"recordCount": 99}}}
    ).with_record_count(0)
    assert out["state"] == {"type": "LEGACY", "data": {"x": 1}, "destinationStats": {"recordCount": 0.0}}


def test_a_state_without_a_type_is_legacy():
    state = _state({"type": "STATE", "state": {"data": {"cursor": 5}}})
    assert state.parsed.type is AirbyteStateType.LEGACY
    assert state.with_record_count(1)["state"] == {"data": {"cursor": 5}, "destinationStats": {"recordCount": 1.0}}


def test_a_global_states_malformed_stream_entries_are_passed_on_not_refused():
    message = {
        "type": "STATE",
        "state": {
            "type": "GLOBAL",
            "global": {
                "shared_state": {"lsn": 12},
                "stream_states": [
                    {"stream_descriptor": {"name": "a"}, "stream_state": {"n": 1}},
                    {"stream_descriptor": {"namespace": "no name"}},
                    "not an object",
                    {"stream_descriptor": {"name": "b", "namespace": 5}},
                ],
            },
        },
    }
    state = _state(message)
    assert [s.stream_descriptor for s in state.parsed.global_.stream_states] == [
        StreamDescriptor("a"),
        StreamDescriptor("b"),
    ]
    assert state.with_record_count(2)["state"]["global"] == message["state"]["global"]


@pytest.mark.parametrize(
    "state, words",
    [
        ([1], "its `state` is not an object"),
        ({"type": "SHARED"}, "state type 'SHARED' is none of STREAM, GLOBAL, LEGACY"),
        ({"type": ["STREAM"]}, "state type \"['STREAM']\" is none of"),
        ({"type": None}, "state type 'None' is none of"),
        ({"type": "STREAM", "stream": {"stream_state": {}}}, "a STREAM state needs `stream.stream_descriptor.name`"),
        ({"type": "STREAM", "stream": {"stream_descriptor": {"name": 3}}}, "a STREAM state needs"),
        ({"type": "GLOBAL", "global": []}, "a GLOBAL state needs a `global` object"),
    ],
)
def test_a_state_the_protocol_does_not_define_stops_the_sync_at_its_line(state, words):
    with pytest.raises(AirbyteTracedException) as raised:
        list(InputParser().parse([b"\n", orjson.dumps({"type": "STATE", "state": state})]))
    assert raised.value.failure_type == FailureType.config_error
    assert "Input line 2 is a STATE message that is not valid" in raised.value.message
    assert words in raised.value.message, raised.value.message

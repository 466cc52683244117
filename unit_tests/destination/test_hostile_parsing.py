"""The input parser and the template sandbox against hostile lines and templates, without a sync."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.enrich.templates import RecordError, compile_template, render
from destination_mistral.protocol.input_lines import InputParser
from destination_mistral.protocol.messages import Record


def _parse(*lines: bytes):
    return list(InputParser().parse(lines))


def test_invalid_utf8_and_lone_surrogates_are_replaced_not_fatal():
    messages = _parse(b'{"type": "RECORD", "record": {"stream": "s", "data": {"t": "a\xffb \\ud800"}}}\n')
    assert isinstance(messages[0], Record)
    assert messages[0].data["t"] == "a\ufffdb \ufffd", "broken characters become U+FFFD"


@pytest.mark.parametrize(
    "line, words",
    [
        (b"not json\n", "line 2 is not valid JSON"),
        (b'{"type": "NOPE"}\n', "message type 'NOPE'"),
        (b'{"type": "RECORD", "record": {"stream": "s", "data": [1]}}\n', "an array as its data"),
        (
            b'{"type": "RECORD", "record": {"stream": "s", "data": {"x": ' + b"[" * 2000 + b"]" * 2000 + b"}}}\n",
            "nested too deeply",
        ),
    ],
)
def test_broken_lines_are_config_errors_naming_the_line(line, words):
    with pytest.raises(AirbyteTracedException) as raised:
        _parse(b"\n", line)
    assert raised.value.failure_type == FailureType.config_error
    assert words in raised.value.message, raised.value.message
    assert "line 2" in raised.value.message, "lines are numbered as read, blank ones included"


def test_messages_a_destination_has_no_use_for_are_skipped():
    assert (
        _parse(b'{"type": "LOG", "log": {"level": "INFO", "message": "x"}}\n', b'{"type": "TRACE", "trace": {}}\n')
        == []
    )


@pytest.mark.parametrize(
    "template", ["{{ 'x' * 10**9 }}", "{{ [0] * 10**9 }}", "{{ 2 ** 100000000 }}", "{{ r.__class__ }}"]
)
def test_templates_cannot_exhaust_memory_or_reach_internals(template):
    with pytest.raises(RecordError, match="blocked by the sandbox"):
        render(compile_template(template), {"r": "text"})


def test_a_null_field_prints_as_nothing_not_as_none():
    assert render(compile_template("[{{ a }}]"), {"a": None}) == "[]"

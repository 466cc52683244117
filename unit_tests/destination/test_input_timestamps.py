"""`emitted_at` is milliseconds by the protocol; senders that send seconds must not land in 1970."""

import orjson
import pytest

from destination_mistral.protocol.input_lines import InputParser


def _emitted_at(value):
    line = orjson.dumps({"type": "RECORD", "record": {"stream": "s", "data": {"a": 1}, "emitted_at": value}})
    return next(InputParser().parse([line])).emitted_at


@pytest.mark.parametrize(
    "sent, stored",
    [(1_700_000_000_000, 1_700_000_000_000), (1_700_000_000, 1_700_000_000_000), (1_700_000_000.5, 1_700_000_000_500)],
)
def test_emitted_at_in_seconds_is_read_as_seconds(sent, stored):
    assert _emitted_at(sent) == stored

"""source-mistral under API faults: every record of every stream exactly once, or a clear transient
failure after bounded retries. Scenarios in integration_tests/hostile_inputs/source_faults.py."""

from __future__ import annotations

import pytest

from integration_tests.hostile_inputs.harness import LEAK_KEY, leaks
from integration_tests.hostile_inputs.source_faults import SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_source_reads_everything_or_fails_clearly_under_faults(scenario, tmp_path):
    captures = scenario.run(tmp_path)
    assert not leaks(captures, {"api key": LEAK_KEY}), "the key must not appear in any output"

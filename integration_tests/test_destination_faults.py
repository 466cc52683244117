"""destination-mistral under API faults (429 with Retry-After, 5xx, dropped connections, truncated
bodies): every record exactly once with its result or its error, or a transient_error after bounded
retries. The scenarios live in integration_tests/hostile_inputs/faults.py, shared with the secrets test."""

from __future__ import annotations

import pytest

from integration_tests.hostile_inputs.faults import SCENARIOS
from integration_tests.hostile_inputs.harness import LEAK_KEY, leaks


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_api_faults_lose_no_record(scenario, tmp_path):
    captures = scenario.run(tmp_path)
    assert not leaks(captures, {"api key": LEAK_KEY}), "the key must not appear in any output"

"""Hostile and broken input, one test per case of the corpus (integration_tests/hostile_inputs/corpus.py):
each ends in a clear per-record error or a config_error naming the problem, never a bare traceback,
and nothing committed before it is lost."""

from __future__ import annotations

import pytest

from integration_tests.hostile_inputs.corpus import BY_NAME, earlier_sync, run_case
from integration_tests.hostile_inputs.harness import LEAK_KEY, leaks


@pytest.fixture(scope="module")
def leak_emulator():
    from mistral_emulator import EmulatorServer, EmulatorSettings

    with EmulatorServer(
        api_key=LEAK_KEY, settings=EmulatorSettings(seed=7, files=3, batch_jobs=2, agents=2, fine_tuning_jobs=2)
    ) as server:
        yield server


@pytest.fixture(scope="module")
def earlier(leak_emulator, tmp_path_factory):
    return earlier_sync(tmp_path_factory.mktemp("earlier"), leak_emulator.base_url)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_hostile_input_gets_a_clear_answer_and_loses_nothing(name, tmp_path, leak_emulator, earlier):
    captures = run_case(BY_NAME[name], tmp_path, leak_emulator.base_url, earlier)
    assert not leaks(captures, {"api key": LEAK_KEY}), "the key must not appear in any output"

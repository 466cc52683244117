"""destination-mistral killed (SIGKILL) at several points of a sync, then resumed from the last STATE
it emitted, as the platform does. The scenarios and what each sync mode promises after a crash are
in integration_tests/hostile_inputs/crashes.py, shared with the secrets test."""

from __future__ import annotations

import pytest

from integration_tests.hostile_inputs.crashes import SCENARIOS
from integration_tests.hostile_inputs.harness import LEAK_KEY, leaks


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_a_killed_sync_resumes_without_losing_a_record(scenario, tmp_path):
    captures = scenario.run(tmp_path)
    assert not leaks(captures, {"api key": LEAK_KEY}), "the key must not appear in any output"


def test_no_state_leaves_before_the_commit_that_covers_it(tmp_path, monkeypatch):
    """The race behind a crash that loses data: a STATE arriving while the sink is still writing the
    records before it must wait for that write. A slow sink makes the window wide."""
    import threading
    import time

    from destination_mistral.destination import DestinationMistral
    from destination_mistral.sinks.duckdb_sink import DuckDBSink
    from tests.support.builders import catalog, configured_stream, messages_with_states, review

    committed = [0]
    lock = threading.Lock()
    real_commit = DuckDBSink.commit

    def slow_commit(self, batches, entries, completes=()):
        time.sleep(0.05)
        real_commit(self, batches, entries, completes)
        with lock:
            committed[0] += sum(len(items) for _, items in batches)

    monkeypatch.setattr(DuckDBSink, "commit", slow_commit)
    config = {
        "api_key": "k",
        "base_url": "http://127.0.0.1:9",
        "enrichment": {"mode": "none"},
        "output": {"type": "duckdb", "path": str(tmp_path / "out.duckdb")},
    }
    messages = messages_with_states((review(i) for i in range(300)), every=10)

    def slowly():  # STATEs keep arriving while a commit is being written
        for message in messages:
            time.sleep(0.001)
            yield message

    released = 0
    for message in DestinationMistral().write(config, catalog(configured_stream(mode="append_dedup")), slowly()):
        if message.type.value == "STATE":
            released += 10
            with lock:
                assert committed[0] >= released, (
                    f"STATE for {released} records left when only {committed[0]} were committed"
                )
    assert released == 300

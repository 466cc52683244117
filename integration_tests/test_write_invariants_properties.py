"""Property-based tests of destination-mistral's write invariants, replayed as the Airbyte platform
runs a sync: random interleavings of records (keys from a small set, sometimes null, missing or a
string; odd values; out-of-range emitted_at; unicode), STREAM and GLOBAL STATEs and COMPLETE
statuses over one or two streams in every sync mode, with the source failing early or the disk
filling up on the n-th commit, then the platform's replay from just after the last STATE the
destination emitted. The model and its checks are in integration_tests/invariant_model.py.

Why this matters: a STATE that covers a record not in the output is data loss the platform can never
repair, and a replay that pays again for answers already committed is money spent twice."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from destination_mistral.http.client import MistralClient
from integration_tests.invariant_model import (
    CHAT_REVIEWS,
    Complete,
    Rec,
    Scenario,
    StateMsg,
    SyncRun,
    scenarios,
)
from mistral_emulator import EmulatorServer, EmulatorSettings
from mistral_emulator.faults import FaultInjector

# Generated runs per property (every call of the test body, shrinking included), printed at the end.
RUNS: Counter = Counter()

PHASES = (Phase.explicit, Phase.reuse, Phase.generate)  # no shrinking: a run is a few syncs long
NONE_CONFIG = {"api_key": "k-123456", "base_url": "http://127.0.0.1:9", "enrichment": {"mode": "none"}}


@pytest.fixture(scope="module", autouse=True)
def report_generated_runs(pytestconfig):
    yield
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else _nothing():
        print("\ngenerated runs per property: " + ", ".join(f"{name}={count}" for name, count in sorted(RUNS.items())))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture(scope="module")
def module_emulator(emulator_api_key):
    """One emulator for this module: hypothesis runs many examples in one test call, and each resets
    the counts and the fault sequence it uses."""
    with EmulatorServer(
        api_key=emulator_api_key, settings=EmulatorSettings(seed=5, files=0, batch_jobs=0, agents=0, fine_tuning_jobs=0)
    ) as server:
        yield server


@pytest.fixture(scope="module")
def quick_retries():
    """Retries of a failed request without the backoff's real waiting (up to seconds each)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(MistralClient, "_backoff", staticmethod(lambda attempt: 0.0))
    yield
    patch.undo()


def replay(run: SyncRun, final_attempts: int = 1, on_failure=None, after_previous=None) -> None:
    """The previous sync, then this sync's interrupted attempts, then attempts without interruption
    until one succeeds (at most `final_attempts`)."""
    run.run_previous()
    if after_previous is not None:
        after_previous()
    for interruption in run.scenario.interruptions:
        if run.done:
            break
        run.run_attempt(interruption)
    failures = 0
    for _ in range(final_attempts):
        if run.done:
            break
        attempt = run.run_attempt(None)
        if attempt.error is not None:
            failures += 1
            if on_failure is not None:
                on_failure(failures)
    run.finish()
    if not run.done:
        run.fail("the sync never completed: its last attempt, without interruption, did not succeed")


@settings(
    max_examples=80,
    deadline=None,
    phases=PHASES,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_every_state_covers_committed_rows_across_failures_and_replays(scenario: Scenario):
    """Properties 1, 2 and 4 for every sync mode, with no API in the way (enrichment none)."""
    RUNS["states_cover_committed_rows"] += 1
    with tempfile.TemporaryDirectory() as workdir:
        replay(SyncRun(scenario, Path(workdir), NONE_CONFIG))


FAULTS = st.fixed_dictionaries(
    {
        "fault_500": st.sampled_from([0.0, 0.25]),
        "fault_truncate": st.sampled_from([0.0, 0.2]),
        "fault_drop": st.sampled_from([0.0, 0.1]),
        "fault_429": st.sampled_from([0.0, 0.04]),  # each costs the 1 s its Retry-After asks
    }
)


@settings(
    max_examples=40,
    deadline=None,
    phases=PHASES,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(
    scenario=scenarios(reviews=CHAT_REVIEWS, odd=False, max_events=10, max_interruptions=2),
    faults=FAULTS,
    retries=st.sampled_from([1, 3]),
    concurrency=st.sampled_from([1, 4]),
    seed=st.integers(0, 1000),
)
def test_replays_never_pay_again_for_answers_already_committed(
    scenario, faults, retries, concurrency, seed, module_emulator, emulator_api_key, quick_retries
):
    """Property 3 (and 1, 2, 4 with chat answers and API faults): an answer committed to the cache is
    never requested again, and over all attempts the API answers at most once per distinct prompt
    plus what failed attempts received but had not committed when they stopped."""
    RUNS["replays_pay_once"] += 1
    emulator = module_emulator
    emulator.configure(fault_500=0.0, fault_truncate=0.0, fault_drop=0.0, fault_429=0.0, fault_routes=None)
    config = {
        "api_key": emulator_api_key,
        "base_url": emulator.base_url,
        "enrichment": {"mode": "chat", "prompt_template": "{{ review }}"},
        "limits": {"max_retries": retries, "max_concurrent_requests": concurrency, "max_retry_seconds": 60},
    }
    with tempfile.TemporaryDirectory() as workdir:
        run = SyncRun(scenario, Path(workdir), config, chat=True, emulator=emulator)

        def faults_on() -> None:  # this example's faults, from its own seed, on the chat route only
            emulator._call(lambda: setattr(emulator._state, "faults", FaultInjector(seed)))
            emulator.configure(fault_routes=["POST /v1/chat/completions"], **faults)

        def service_recovers(failures: int) -> None:
            if failures >= 2:  # as when the platform retries later, once the service is back
                emulator.configure(fault_500=0.0, fault_truncate=0.0, fault_drop=0.0, fault_429=0.0)

        replay(run, final_attempts=5, on_failure=service_recovers, after_previous=faults_on)
        run.check_paid_total()
    emulator.configure(fault_500=0.0, fault_truncate=0.0, fault_drop=0.0, fault_429=0.0, fault_routes=None)


def test_a_truncate_refresh_replayed_from_before_its_complete_keeps_the_rows_its_states_covered(tmp_path):
    """The platform resumes a truncate refresh from the last STATE it got. When the destination had
    already applied the stream's COMPLETE (swapped the staging table in) but emitted no STATE after
    it, the replay sends the stream's last records and its COMPLETE again: the rows the earlier STATE
    covered must still be there when that COMPLETE is applied a second time."""
    script = (
        Rec(0, "t0", 1, "first", 7, 1_700_000_000_000),
        StateMsg(1, "STREAM", 0),
        Rec(0, "t1", 2, "second", 7, 1_700_000_000_000),
        Complete(0),
        StateMsg(4, "STREAM", 0),
    )
    # The source fails just after the COMPLETE (before the last STATE), then the platform replays.
    scenario = Scenario(
        ("truncate_append",), (Rec(0, "p0-s0", 9, "old", 7, 1_700_000_000_000),), script, (("stop", 4),)
    )
    replay(SyncRun(scenario, tmp_path, NONE_CONFIG))


def test_a_failed_last_commit_in_chat_mode_releases_no_state_for_its_records(
    module_emulator, emulator_api_key, tmp_path
):
    """The disk fills up on the commit that holds a chat record: its STATE must not leave. (The
    sync's last commit fails; the committer, woken meanwhile, commits the answers' cache rows alone
    and must not take that as the lost batch being stored.)"""
    module_emulator.configure(fault_500=0.0, fault_truncate=0.0, fault_drop=0.0, fault_429=0.0, fault_routes=None)
    config = {
        "api_key": emulator_api_key,
        "base_url": module_emulator.base_url,
        "enrichment": {"mode": "chat", "prompt_template": "{{ review }}"},
    }
    script = (Rec(0, "t0", 1, "good battery", 7, 1_700_000_000_000), StateMsg(1, "STREAM", 0))
    scenario = Scenario(("append",), (), script, (("enospc", 1),))
    replay(SyncRun(scenario, tmp_path, config, chat=True, emulator=module_emulator))


def test_a_record_with_an_integer_past_64_bits_on_a_repaired_line_fails_no_sync(tmp_path):
    """An integer past 64 bits is read as a float from clean JSON; on a line the parser must repair
    (a lone surrogate, invalid UTF-8) it stays an integer, which the rest of the write path must
    still handle rather than stop every attempt of the sync on the same record."""
    script = (Rec(0, "t0", 1, "\ud800 lone surrogate", 2**70, 1_700_000_000_000), StateMsg(1, "STREAM", 0), Complete(0))
    scenario = Scenario(("append",), (), script, ())
    replay(SyncRun(scenario, tmp_path, NONE_CONFIG))

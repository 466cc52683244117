"""API fault scenarios for destination-mistral: each runs a sync against an emulator that injects
faults and checks that every record is written exactly once, with its result or an explicit error,
or that the sync stops with a transient_error after bounded retries."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from integration_tests.hostile_inputs.harness import (
    LEAK_KEY,
    Capture,
    Scenario,
    catalog_dict,
    chat_config,
    embed_config,
    input_lines,
    output_files,
    query,
    review,
    write_in_process,
)
from mistral_emulator import EmulatorServer, EmulatorSettings

CHAT_ROUTE = "POST /v1/chat/completions"
EMBED_ROUTE = "POST /v1/embeddings"


@contextmanager
def leak_emulator(**knobs: Any):
    with EmulatorServer(
        api_key=LEAK_KEY, settings=EmulatorSettings(seed=11, files=3, batch_jobs=2, agents=2, fine_tuning_jobs=2)
    ) as server:
        if knobs:
            server.configure(**knobs)
        yield server


def _reference(emu, workdir: Path, config_of, records) -> dict[int, Any]:
    """The answers of a fault-free sync: what a faulty sync must store, or nothing at all."""
    emu.configure(fault_429=0, fault_500=0, fault_drop=0, fault_truncate=0)
    out = workdir / "reference.duckdb"
    capture = write_in_process(
        "reference", workdir / "reference", config_of(emu.base_url, out), catalog_dict(), input_lines(records)
    )
    assert not capture.errors, capture.describe()
    column = "_mistral_answer" if "chat" in str(config_of) else "_mistral_embedding"
    return dict(query(out, f"SELECT id, {column} FROM reviews"))


def _mixed(kind: str, workdir: Path, rates: dict[str, float], count: int) -> list[Capture]:
    config_of = chat_config if kind == "chat" else embed_config
    route = CHAT_ROUTE if kind == "chat" else EMBED_ROUTE
    column = "_mistral_answer" if kind == "chat" else "_mistral_embedding"
    records = [review(i, f"distinct text {i} about the battery") for i in range(count)]
    with leak_emulator(fault_routes=[route.split(" ")[1]], **rates) as emu:
        out = workdir / "out.duckdb"
        config = config_of(emu.base_url, out, limits={"max_retries": 8, "max_concurrent_requests": 8})
        # Embeddings batch many inputs per request: small batches give the faults more requests to hit.
        lines = input_lines(records, every=5)
        capture = write_in_process(f"mixed faults at {kind}", workdir / "faulty", config, catalog_dict(), lines)
        injected = emu.stats()["routes"].get(route, {})
        reference = _reference(emu, workdir, config_of, records)
    capture.files = output_files(workdir)
    assert capture.returncode == 0 and not capture.errors, capture.describe()
    assert set(injected) - {"200"}, f"the emulator should have injected faults: {injected}"
    rows = query(out, f"SELECT id, {column}, _mistral_error FROM reviews")
    ids = [r[0] for r in rows]
    assert sorted(ids) == list(range(count)), (
        f"every input record exactly once: {len(ids)} rows, {len(set(ids))} distinct"
    )
    for record_id, value, error in rows:
        assert (value is None) != (error is None), (
            f"record {record_id}: a result or an explicit error, not both or neither"
        )
        if value is not None:
            assert value == reference[record_id], (
                f"record {record_id}: the stored result differs from the fault-free one (truncated body?)"
            )
    return [capture]


def mixed_faults_at_chat(workdir: Path) -> list[Capture]:
    return _mixed("chat", workdir, dict(fault_429=0.10, fault_500=0.05, fault_drop=0.03, fault_truncate=0.03), 100)


def mixed_faults_at_embeddings(workdir: Path) -> list[Capture]:
    return _mixed(
        "embeddings", workdir, dict(fault_429=0.10, fault_500=0.10, fault_drop=0.05, fault_truncate=0.05), 120
    )


def truncated_bodies_are_retried_not_stored(workdir: Path) -> list[Capture]:
    captures = _mixed("chat", workdir, dict(fault_truncate=0.3), 40)
    return captures


def exhausted_retries_stop_with_transient_error(workdir: Path) -> list[Capture]:
    with leak_emulator(fault_500=1.0, fault_routes=["/v1/chat/completions"]) as emu:
        config = chat_config(emu.base_url, workdir / "out.duckdb", on_error="fail", limits={"max_retries": 2})
        started = time.monotonic()
        capture = write_in_process(
            "exhausted retries, on_error fail",
            workdir / "run",
            config,
            catalog_dict(),
            input_lines([review(i) for i in range(5)]),
        )
        elapsed = time.monotonic() - started
        attempts = sum(emu.stats()["routes"].get(CHAT_ROUTE, {}).values())
    capture.files = output_files(workdir)
    assert [e["failure_type"] for e in capture.errors] == ["transient_error"], capture.describe()
    message = capture.errors[0]["message"]
    assert "POST /v1/chat/completions" in message and "after 3 attempts" in message, capture.errors
    assert attempts <= 5 * 3, f"at most max_retries + 1 attempts per record: {attempts}"
    assert elapsed < 20, f"retries must be bounded in time: {elapsed:.1f}s"
    return [capture]


def exhausted_retries_stop_the_sync_even_with_on_error_record(workdir: Path) -> list[Capture]:
    # Every request fails; many retries are allowed, so max_retry_seconds is what ends the wait. A
    # service failure is never a record's error row (the next sync would have enriched it): the sync
    # stops with a transient_error and no row carries an HTTP error.
    with leak_emulator(fault_500=1.0, fault_routes=["/v1/chat/completions"]) as emu:
        out = workdir / "out.duckdb"
        config = chat_config(emu.base_url, out, limits={"max_retries": 20, "max_retry_seconds": 1})
        started = time.monotonic()
        capture = write_in_process(
            "exhausted retries, on_error record",
            workdir / "run",
            config,
            catalog_dict(),
            input_lines([review(i) for i in range(6)]),
        )
        elapsed = time.monotonic() - started
    capture.files = output_files(workdir)
    assert [e["failure_type"] for e in capture.errors] == ["transient_error"], capture.describe()
    assert "POST /v1/chat/completions" in capture.errors[0]["message"], capture.errors
    rows = query(out, "SELECT id, _mistral_error FROM reviews ORDER BY id") if out.exists() else []
    assert not [r for r in rows if r[1] is not None], f"no row may carry a service failure: {rows}"
    assert elapsed < 10, f"max_retry_seconds must bound the waiting: {elapsed:.1f}s"
    return [capture]


def api_down_stops_the_sync_with_transient_error(workdir: Path) -> list[Capture]:
    with leak_emulator(fault_500=1.0, fault_routes=["/v1/chat/completions"]) as emu:
        config = chat_config(
            emu.base_url, workdir / "out.duckdb", limits={"max_retries": 0, "max_concurrent_requests": 4}
        )
        capture = write_in_process(
            "API down", workdir / "run", config, catalog_dict(), input_lines([review(i) for i in range(80)], every=20)
        )
    capture.files = output_files(workdir)
    assert [e["failure_type"] for e in capture.errors] == ["transient_error"], capture.describe()
    assert "POST /v1/chat/completions" in capture.errors[0]["message"], capture.errors
    return [capture]


SCENARIOS = [
    Scenario(f.__name__, f)
    for f in (
        mixed_faults_at_chat,
        mixed_faults_at_embeddings,
        truncated_bodies_are_retried_not_stored,
        exhausted_retries_stop_with_transient_error,
        exhausted_retries_stop_the_sync_even_with_on_error_record,
        api_down_stops_the_sync_with_transient_error,
    )
]

"""`destination-mistral write` when the service fails: an unreachable API (a closed port, a host that
does not resolve) or answers that are always truncated stop the sync with a transient_error naming
the route and the cause, and no row is written with a service failure as its error."""

from __future__ import annotations

import socket

from integration_tests.hostile_inputs.faults import leak_emulator
from integration_tests.hostile_inputs.harness import (
    LEAK_KEY,
    catalog_dict,
    chat_config,
    embed_config,
    input_lines,
    query,
    review,
    write_in_process,
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_stopped(capture, out, cause: str, route: str) -> None:
    assert capture.returncode != 0, capture.describe()
    assert [e["failure_type"] for e in capture.errors] == ["transient_error"], capture.describe()
    message = capture.errors[0]["message"]
    assert route in message and cause in message, message
    assert LEAK_KEY not in capture.stdout + capture.stderr
    rows = query(out, "SELECT _mistral_error FROM reviews WHERE _mistral_error IS NOT NULL") if out.exists() else []
    assert not rows, f"a service failure must not become error rows: {rows[:3]}"


def test_a_closed_port_stops_the_sync_instead_of_erroring_every_row(tmp_path):
    out = tmp_path / "out.duckdb"
    config = embed_config(f"http://127.0.0.1:{closed_port()}", out, limits={"max_retries": 1})
    capture = write_in_process(
        "closed port", tmp_path / "run", config, catalog_dict(), input_lines([review(i) for i in range(20)])
    )
    assert_stopped(capture, out, "refused", "POST /v1/embeddings")


def test_a_host_that_does_not_resolve_stops_the_sync_naming_dns(tmp_path):
    out = tmp_path / "out.duckdb"
    config = chat_config("https://api.does-not-exist.invalid", out, limits={"max_retries": 1})
    capture = write_in_process(
        "dns failure", tmp_path / "run", config, catalog_dict(), input_lines([review(i) for i in range(5)])
    )
    assert_stopped(capture, out, "DNS", "POST /v1/chat/completions")


def test_answers_always_truncated_stop_the_sync_and_store_nothing_wrong(tmp_path):
    out = tmp_path / "out.duckdb"
    with leak_emulator(fault_truncate=1.0, fault_routes=["/v1/embeddings"]) as emu:
        config = embed_config(emu.base_url, out, limits={"max_retries": 2})
        capture = write_in_process(
            "truncated", tmp_path / "run", config, catalog_dict(), input_lines([review(i) for i in range(10)])
        )
    assert_stopped(capture, out, "POST /v1/embeddings", "POST /v1/embeddings")
    assert "after 3 attempts" in capture.errors[0]["message"]


def test_check_against_a_closed_port_says_what_failed_without_speaking_of_a_sync(tmp_path):
    from destination_mistral.destination import DestinationMistral

    config = chat_config(f"http://127.0.0.1:{closed_port()}", tmp_path / "out.duckdb", limits={"max_retries": 0})
    import logging

    status = DestinationMistral().check(logging.getLogger("airbyte"), config)
    assert status.status.value == "FAILED"
    assert "connection was refused" in status.message and "`base_url`" in status.message, status.message
    assert "sync stops" not in status.message and "records before" not in status.message, status.message
    assert LEAK_KEY not in status.message

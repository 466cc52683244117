"""The edges of the rate-limit promise, each a case an outside tester broke: a cap below one
request's cost, an API that refuses everything, a rate meter smaller than one request, refusals that
are not about the pace, and a limit raised in the middle of a sync. In none of them is a record
written with a rate-limit error, and none of them hangs: the sync ends, with its records or with an
error that names the limit, after committing what came before."""

from __future__ import annotations

import threading

from integration_tests.hostile_inputs.harness import (
    catalog_dict,
    chat_config,
    embed_config,
    input_lines,
    query,
    replay_after_last_state,
    review,
    write_subprocess,
)
from integration_tests.test_destination_rate_limits import emulator, text


def stopped_with(capture, failure_type):
    """The one error a sync that stopped by itself (not killed, not hung) ended with, of this type."""
    assert capture.returncode not in (0, None, -9), f"the sync must stop by itself: {capture.describe()}"
    [error] = capture.errors
    assert error["failure_type"] == failure_type, error
    return error


def rows(out):
    return query(out, "SELECT id, _mistral_error FROM reviews ORDER BY id") if out.exists() else []


def test_a_token_cap_below_one_requests_cost_is_a_config_error_not_a_hang(tmp_path):
    emu = emulator()
    try:
        out = tmp_path / "out.duckdb"
        config = chat_config(emu.base_url, out, limits={"tokens_per_minute": 200, "max_retry_seconds": 20})
        records = [review(i, text(i, words=600)) for i in range(6)]
        capture = write_subprocess(
            "cap below cost", tmp_path / "run", config, catalog_dict(), input_lines(records, every=2), timeout=90
        )
    finally:
        emu.__exit__(None, None, None)
    error = stopped_with(capture, "config_error")
    assert "limits.tokens_per_minute" in error["message"], error


def test_an_api_that_refuses_everything_stops_the_sync_after_max_retry_seconds(tmp_path):
    emu = emulator(fault_429=1.0, rate_limit_rps=3)
    try:
        out = tmp_path / "out.duckdb"
        config = chat_config(emu.base_url, out, limits={"max_retry_seconds": 6, "max_concurrent_requests": 16})
        records = [review(i, text(i, words=10)) for i in range(60)]
        capture = write_subprocess(
            "all refused", tmp_path / "run", config, catalog_dict(), input_lines(records, every=5), timeout=120
        )
    finally:
        emu.__exit__(None, None, None)
    error = stopped_with(capture, "transient_error")
    assert "max_retry_seconds" in error["message"], error
    assert not rows(out), "nothing succeeded, so nothing is written"


def test_a_rate_meter_smaller_than_one_request_is_waited_out_never_written_as_the_records_error(tmp_path):
    # For six seconds the account's limit takes at most ~66 tokens at once, less than one request costs:
    # the server answers 400 "split into more batches". Then the limit is raised: every record gets
    # its answer and none carries the refusal.
    emu = emulator()
    try:
        out = tmp_path / "out.duckdb"
        config = chat_config(emu.base_url, out, limits={"max_concurrent_requests": 8, "max_retry_seconds": 60})
        records = [review(i, text(i, words=30)) for i in range(40)]
        emu.configure(tokens_per_minute=4_000, tpm_window_seconds=1.0)
        raise_limit = threading.Timer(6.0, lambda: emu.configure(tokens_per_minute=2_000_000, tpm_window_seconds=3.0))
        raise_limit.start()
        capture = write_subprocess(
            "meter below cost", tmp_path / "run", config, catalog_dict(), input_lines(records, every=5), timeout=120
        )
        raise_limit.join()
    finally:
        emu.__exit__(None, None, None)
    assert capture.returncode == 0 and not capture.errors, capture.describe()
    written = rows(out)
    assert [r[0] for r in written] == list(range(40))
    assert not [r for r in written if r[1] is not None], (
        f"a refusal by the rate limit is not the record's error: {written[:3]}"
    )


def test_a_single_embedding_input_over_the_rate_meter_stops_the_sync_naming_the_limit(tmp_path):
    emu = emulator(tokens_per_minute=300)
    try:
        out = tmp_path / "out.duckdb"
        config = embed_config(emu.base_url, out, limits={"max_retry_seconds": 5})
        records = [review(i, text(i, words=600)) for i in range(3)]
        capture = write_subprocess(
            "input over meter", tmp_path / "run", config, catalog_dict(), input_lines(records, every=1), timeout=90
        )
    finally:
        emu.__exit__(None, None, None)
    error = stopped_with(capture, "transient_error")
    assert "rate limit" in error["message"], error
    assert not [r for r in rows(out) if r[1] is not None], "no row carries the refusal as its error"


def test_chunks_answered_before_the_limit_stops_a_sync_are_kept_and_not_paid_again(tmp_path):
    # The records' chunks go as one batch that the tokens-per-minute meter cannot take at once (400:
    # split), its first half is answered and the second refused until max_retry_seconds. The answered
    # chunks are cached before the sync stops, and the next attempt pays only for the rest.
    emu = emulator(tokens_per_minute=4_000, tpm_shape="smooth")
    try:
        out = tmp_path / "out.duckdb"
        chunking = {"max_tokens": 256, "overlap_tokens": 32}
        config = embed_config(emu.base_url, out, limits={"max_retry_seconds": 6})
        config["enrichment"]["chunking"] = chunking
        records = [review(i, text(i, words=1000)) for i in range(3)]
        lines = input_lines(records, every=1)
        first = write_subprocess("limit stops", tmp_path / "first", config, catalog_dict(), lines, timeout=90)
        paid_first = emu.stats()["tokens"]["prompt"]
        cached = query(out, "SELECT count(*) FROM _mistral_cache")[0][0] if out.exists() else 0
        emu.configure(tokens_per_minute=2_000_000)
        again = replay_after_last_state(lines, first)
        second = write_subprocess("limit raised", tmp_path / "second", config, catalog_dict(), again, timeout=90)
        paid = emu.stats()["tokens"]["prompt"]
    finally:
        emu.__exit__(None, None, None)
    stopped_with(first, "transient_error")
    assert paid_first > 0 and cached > 0, f"the answered chunks are kept: {paid_first} tokens paid, {cached} cached"
    assert second.returncode == 0 and not second.errors, second.describe()
    [(chunk_tokens, chunk_count)] = query(out, "SELECT sum(_mistral_chunk_tokens), count(*) FROM reviews_chunks")
    assert [r[0] for r in rows(out)] == [0, 1, 2] and not [r for r in rows(out) if r[1] is not None]
    assert paid == chunk_tokens, f"every chunk paid once: {paid} tokens paid for {chunk_count} chunks of {chunk_tokens}"

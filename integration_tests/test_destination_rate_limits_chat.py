"""`destination-mistral write` against the emulator under a chat workload's limits: a smooth token
bucket with a request limit, and a spent monthly quota (the helpers and the embeddings cases are in
test_destination_rate_limits.py; a file of its own so that the two long waits run side by side)."""

from __future__ import annotations

from integration_tests.hostile_inputs.harness import LEAK_KEY, chat_config, query, review
from integration_tests.test_destination_rate_limits import assert_complete, emulator, refusals, run, text


def test_chat_under_a_smooth_token_limit_and_a_request_limit_writes_every_answer(tmp_path):
    emu = emulator(tokens_per_minute=6_000, tpm_shape="smooth", rate_limit_rps=8)
    try:
        out = tmp_path / "out.duckdb"
        records = [review(i, text(i, words=40)) for i in range(80)]
        capture = run(
            tmp_path, chat_config(emu.base_url, out, limits={"max_concurrent_requests": 16}), records, every=10
        )
        seen = refusals(emu)
    finally:
        emu.__exit__(None, None, None)
    assert_complete(capture, out, 80, "_mistral_answer")
    assert seen["rate_limited"] <= 3, f"429s should be few: {seen}"


def test_a_spent_monthly_quota_stops_the_sync_naming_it_after_committing_what_came_before(tmp_path):
    emu = emulator(tokens_per_month=3_000)
    try:
        out = tmp_path / "out.duckdb"
        records = [review(i, text(i)) for i in range(200)]
        # Small batches (each flushed at its STATE by a slow trickle is not needed: the month ends
        # after a few thousand tokens, so most records never get sent).
        capture = run(tmp_path, chat_config(emu.base_url, out, limits={"max_concurrent_requests": 2}), records, every=5)
    finally:
        emu.__exit__(None, None, None)
    assert capture.returncode != 0 and [e["failure_type"] for e in capture.errors] == ["transient_error"], (
        capture.describe()
    )
    message = capture.errors[0]["message"]
    assert "monthly" in message and "month" in message and "resets" in message, message
    assert LEAK_KEY not in capture.stdout + capture.stderr
    rows = (
        query(out, "SELECT id, _mistral_answer IS NOT NULL, _mistral_error FROM reviews ORDER BY id")
        if out.exists()
        else []
    )
    assert len(rows) < 200, "the sync stopped at the quota"
    assert all(r[1] and r[2] is None for r in rows), (
        f"committed rows carry their answers, never the quota error: {rows[:3]}"
    )
    states = [s["state"]["stream"]["stream_state"]["position"] for s in capture.states]
    assert states == sorted(states) and (not states or states[-1] <= len(rows)), "a STATE covers only committed rows"

"""`destination-mistral write` (a real process) against the emulator under each shape of account
limit: tokens per minute as a smooth bucket or as a fixed one-minute window that refuses until the
minute ends, requests per second, and a monthly token quota. Under the per-minute and per-second
limits every record gets its result, no row carries a rate-limit error and 429s stay few: the pacer
keeps under the limits instead of learning them from refusals. A spent month stops the sync with a
transient error naming it, after committing what came before."""

from __future__ import annotations

import pytest

from integration_tests.hostile_inputs.harness import (
    LEAK_KEY,
    catalog_dict,
    embed_config,
    input_lines,
    query,
    review,
    write_subprocess,
)
from mistral_emulator import EmulatorServer, EmulatorSettings

WORDS = ("battery", "screen", "shipping", "keyboard", "speaker", "camera", "charger", "hinge", "fan", "case")


def text(i: int, words: int = 60) -> str:
    # Distinct per record (the cache would answer repeats), about 130 tokens for 60 words.
    return f"review {i}: " + " ".join(f"{WORDS[(i + k) % len(WORDS)]}{k % 7}" for k in range(words))


def emulator(**knobs):
    server = EmulatorServer(
        api_key=LEAK_KEY, settings=EmulatorSettings(seed=5, files=1, batch_jobs=1, agents=1, fine_tuning_jobs=1)
    )
    server.__enter__()
    server.configure(**knobs)
    return server


def refusals(emu) -> dict:
    stats = emu.stats()
    return {
        "rate_limited": stats.get("rate_limited", 0),
        "by": stats.get("rate_limited_by", {}),
        "routes": stats["routes"],
    }


def run(tmp_path, config, records, every=50, timeout=240):
    capture = write_subprocess(
        "rate limits", tmp_path / "run", config, catalog_dict(), input_lines(records, every=every), timeout=timeout
    )
    return capture


def assert_complete(capture, out, count, column):
    assert capture.returncode == 0 and not capture.errors, capture.describe()
    rows = query(out, f"SELECT id, {column} IS NOT NULL, _mistral_error FROM reviews ORDER BY id")
    assert [r[0] for r in rows] == list(range(count)), f"every record exactly once: {len(rows)} rows"
    errors = [r for r in rows if r[2] is not None or not r[1]]
    assert not errors, f"no row may carry a rate-limit (or any) error: {errors[:3]}"


@pytest.mark.parametrize("shape", ["smooth", "fixed"])
def test_embeddings_under_a_token_per_minute_limit_write_every_vector_with_few_429s(tmp_path, shape):
    # 200 records of ~130 tokens: a little more than one minute's budget, so the sync must wait for
    # the bucket to refill (smooth) or for the next window (fixed, about a minute).
    emu = emulator(tokens_per_minute=20_000, tpm_shape=shape)
    try:
        out = tmp_path / "out.duckdb"
        records = [review(i, text(i)) for i in range(200)]
        capture = run(tmp_path, embed_config(emu.base_url, out), records)
        seen = refusals(emu)
    finally:
        emu.__exit__(None, None, None)
    assert_complete(capture, out, 200, "_mistral_embedding")
    assert seen["by"].get("tokens_minute", 0) <= 2, (
        f"the pacer should keep under the limit, not meet it in 429s: {seen}"
    )

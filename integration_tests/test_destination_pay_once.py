"""Never pay twice: an answer the API was paid for reaches the cache even when the sync fails before
the record it belongs to can be committed, so the next attempt does not send it again."""

from __future__ import annotations

import duckdb
import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.destination import DestinationMistral
from integration_tests.conftest import make_postgres_database
from tests.support.builders import catalog, configured_stream, messages_with_states, review

CHAT = "POST /v1/chat/completions"


def config_for(emulator, tmp_path, **extra):
    return {
        "api_key": emulator.api_key,
        "base_url": emulator.base_url,
        "model": "mistral-small-latest",
        "enrichment": {"mode": "chat", "prompt_template": "{{ review }}", "temperature": 0},
        "output": {"type": "duckdb", "path": str(tmp_path / "out.duckdb")},
        **extra,
    }


def answered(emulator) -> int:
    return int(emulator.stats()["routes"].get(CHAT, {}).get("200", 0))


def cached_answers(tmp_path) -> int:
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM _mistral_cache").fetchone()[0]
    finally:
        con.close()


def test_on_error_fail_keeps_the_answers_already_paid_for(fresh_emulator, tmp_path):
    """Record 20 cannot be enriched (blank text) and `on_error` is `fail`: the sync stops there, every
    answer paid for is in the cache, and the next sync (with the record fixed) pays only for the
    inputs never answered."""
    fresh_emulator.configure(latency_ms=100)
    records = [review(i, f"distinct text {i}") for i in range(40)]
    records[20] = review(20, "   ")
    config = config_for(fresh_emulator, tmp_path, on_error="fail", limits={"max_concurrent_requests": 8})
    with pytest.raises(AirbyteTracedException):
        list(
            DestinationMistral().write(
                config, catalog(configured_stream(mode="append_dedup")), messages_with_states(records, every=40)
            )
        )
    paid = answered(fresh_emulator)
    assert paid >= 20, "the records before the failed one are enriched and committed"
    assert cached_answers(tmp_path) == paid, "every answer paid for is in the cache after the failed sync"
    fresh_emulator.reset_stats()
    records[20] = review(20, "now with text")
    list(
        DestinationMistral().write(
            config_for(fresh_emulator, tmp_path),
            catalog(configured_stream(mode="append_dedup")),
            messages_with_states(records, every=40),
        )
    )
    assert answered(fresh_emulator) == 40 - paid, "the second sync sends only the inputs never answered"


def test_a_failing_service_keeps_the_answers_already_paid_for(fresh_emulator, tmp_path):
    """The API starts failing part way: the sync stops with a transient error, and the answers that
    arrived before are cached, committed with or without their records."""
    fresh_emulator.configure(latency_ms=20)
    records = [review(i, f"other text {i}") for i in range(30)]
    config = config_for(fresh_emulator, tmp_path, limits={"max_retries": 1, "max_retry_seconds": 3})
    list(
        DestinationMistral().write(
            config, catalog(configured_stream(mode="append_dedup")), messages_with_states(records[:10], every=10)
        )
    )
    fresh_emulator.configure(fault_500=1.0)
    with pytest.raises(AirbyteTracedException) as caught:
        list(
            DestinationMistral().write(
                config, catalog(configured_stream(mode="append_dedup")), messages_with_states(records, every=10)
            )
        )
    assert caught.value.failure_type.value == "transient_error"
    fresh_emulator.configure(fault_500=0.0)
    fresh_emulator.reset_stats()
    list(
        DestinationMistral().write(
            config, catalog(configured_stream(mode="append_dedup")), messages_with_states(records, every=10)
        )
    )
    assert answered(fresh_emulator) == 20, "the ten answers of the first sync are not paid again"


def test_a_killed_sync_does_not_pay_again_for_answers_received_a_second_before(fresh_emulator, tmp_path):
    """SIGKILL while answers arrive: those received more than a second before the kill are in the
    cache (committed within a second, whatever the records' own commits), so the rerun does not pay
    for them again."""
    import json
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from airbyte_cdk.models import AirbyteMessageSerializer, ConfiguredAirbyteCatalogSerializer

    fresh_emulator.configure(latency_ms=50)
    records = [review(i, f"killed text {i}") for i in range(300)]
    config = config_for(fresh_emulator, tmp_path, limits={"max_concurrent_requests": 2})
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(
        json.dumps(ConfiguredAirbyteCatalogSerializer.dump(catalog(configured_stream(mode="append"))))
    )
    stdin = "".join(
        json.dumps(AirbyteMessageSerializer.dump(m)) + "\n" for m in messages_with_states(records, every=300)
    )
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "destination-mistral"),
            "write",
            "--config",
            str(tmp_path / "config.json"),
            "--catalog",
            str(tmp_path / "catalog.json"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process.stdin.write(stdin.encode())
    process.stdin.close()
    deadline = time.monotonic() + 30
    while answered(fresh_emulator) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    settled = answered(fresh_emulator)
    time.sleep(1.6)  # past the cache's one-second commit
    received = answered(fresh_emulator)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 20 <= settled and received < 300, "the kill must land while answers are still arriving"
    fresh_emulator.configure(latency_ms=0)
    fresh_emulator.reset_stats()
    list(
        DestinationMistral().write(
            config, catalog(configured_stream(mode="append")), messages_with_states(records, every=300)
        )
    )
    assert answered(fresh_emulator) <= 300 - settled, "answers received a second before the kill are not paid again"


def test_a_paid_answer_that_cannot_be_used_is_not_paid_for_again(fresh_emulator, tmp_path):
    """An answer cut by max_tokens is not valid JSON: the record's row carries that error, and the
    answer, paid for, is cached, so that the next sync writes the same error without a request."""
    enrichment = {
        "mode": "chat",
        "prompt_template": "{{ review }}",
        "temperature": 0,
        "max_tokens": 2,
        "response_format": {"type": "json_object"},
    }
    config = {**config_for(fresh_emulator, tmp_path), "enrichment": enrichment}
    records = [review(i, f"cut answer {i}") for i in range(5)]
    list(
        DestinationMistral().write(
            config, catalog(configured_stream(mode="append_dedup")), messages_with_states(records)
        )
    )
    first = answered(fresh_emulator)
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    errors = [r[0] for r in con.execute("SELECT _mistral_error FROM reviews").fetchall()]
    con.close()
    assert first == 5 and all(e and "not valid JSON" in e for e in errors), errors
    list(
        DestinationMistral().write(
            config, catalog(configured_stream(mode="append_dedup")), messages_with_states(records)
        )
    )
    assert answered(fresh_emulator) == first, "the unusable answers were paid once"
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    rows = con.execute("SELECT _mistral_error, _mistral_cached FROM reviews").fetchall()
    con.close()
    assert all(e and "not valid JSON" in e and cached for e, cached in rows), rows


def embedded_inputs(emulator) -> int:
    return int(emulator.stats()["embeddings"]["inputs"])


def chunked_config(emulator, tmp_path, output=None, **extra):
    return {
        "api_key": emulator.api_key,
        "base_url": emulator.base_url,
        "enrichment": {"mode": "embeddings", "fields": ["review"], "chunking": {"max_tokens": 64, "overlap_tokens": 0}},
        "output": output or {"type": "duckdb", "path": str(tmp_path / "out.duckdb")},
        **extra,
    }


SHARED = ("Every order ships within two days, and returns are free for a month after delivery. " * 3).strip()


@pytest.mark.parametrize("kind", ["duckdb", "jsonl", "postgres"])
def test_a_chunk_shared_by_records_is_paid_once_in_this_sync_and_the_next(fresh_emulator, tmp_path, kind, request):
    """Records that share a paragraph (a signature, a policy) pay for its chunk once: a chunk is an
    input like any other, cached under its own text, in every output's cache."""
    if kind == "postgres":
        output = make_postgres_database(request.getfixturevalue("postgres_server"), request.node.nodeid, True)
    elif kind == "jsonl":
        output = {"type": "jsonl", "directory": str(tmp_path / "jsonl")}
    else:
        output = None
    config = chunked_config(fresh_emulator, tmp_path, output)
    first = [review(i, f"{SHARED}\n\nReview {i} says the battery of unit {i} lasts {i} hours.") for i in range(20)]
    list(DestinationMistral().write(config, catalog(configured_stream()), messages_with_states(first, every=5)))
    assert embedded_inputs(fresh_emulator) == 21, "twenty own paragraphs and the shared one"
    fresh_emulator.reset_stats()
    later = [review(100 + i, f"{SHARED}\n\nLater review {i} finds the case of unit {i} scratched.") for i in range(20)]
    list(DestinationMistral().write(config, catalog(configured_stream()), messages_with_states(later, every=5)))
    assert embedded_inputs(fresh_emulator) == 20, "the shared paragraph is cached"
    if kind == "duckdb":
        con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
        try:
            shared = con.execute(
                "SELECT count(DISTINCT _mistral_embedding) FROM reviews_chunks WHERE _mistral_chunk_index = 0"
            ).fetchone()[0]
        finally:
            con.close()
        assert shared == 1, "every record's first chunk has the shared paragraph's vector"


def test_a_failed_sync_keeps_the_chunks_it_received_of_a_record_it_could_not_finish(fresh_emulator, tmp_path):
    """A record of hundreds of chunks, sent in several requests, whose later requests are refused (the
    month's token quota is spent): the chunks answered before are cached as they arrive, and the next
    attempt pays only for the others."""
    text = "\n\n".join(
        f"Paragraph {p} of the long manual explains step {p} of the setup in detail." for p in range(2500)
    )
    config = chunked_config(fresh_emulator, tmp_path, limits={"max_concurrent_requests": 1})
    fresh_emulator.configure(tokens_per_month=20_000)
    with pytest.raises(AirbyteTracedException) as caught:
        list(DestinationMistral().write(config, catalog(configured_stream()), messages_with_states([review(1, text)])))
    assert caught.value.failure_type.value == "transient_error"
    received = embedded_inputs(fresh_emulator)
    fresh_emulator.configure(tokens_per_month=None)
    fresh_emulator.reset_stats()
    list(DestinationMistral().write(config, catalog(configured_stream()), messages_with_states([review(1, text)])))
    paid_again = embedded_inputs(fresh_emulator)
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    try:
        chunks = con.execute("SELECT count(*) FROM reviews_chunks").fetchone()[0]
    finally:
        con.close()
    assert received > 0 and paid_again == chunks - received, (received, paid_again, chunks)

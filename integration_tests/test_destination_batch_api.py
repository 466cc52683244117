"""Delivery through Mistral's Batch API: the same rows as online delivery, STATE only after the
job's results are committed, and failures of a job become per-record errors, never a gap."""

from __future__ import annotations

import duckdb
import pytest
from airbyte_cdk.models import Type

from destination_mistral.destination import DestinationMistral
from tests.support.builders import catalog, configured_stream, messages_with_states, review

SCHEMA = (
    '{"type": "object", "properties": {'
    '"sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]}, '
    '"topics": {"type": "array", "items": {"type": "string"}}}, '
    '"required": ["sentiment", "topics"]}'
)
CHAT = {
    "mode": "chat",
    "prompt_template": "Review of {{ product }}: {{ review }}",
    "temperature": 0,
    "random_seed": 3,
    "response_format": {"type": "json_schema", "name": "facts", "schema": SCHEMA},
}
EMBED = {"mode": "embeddings", "fields": ["product", "review"]}
COMPARED = "id, product, review, _mistral_answer, _mistral_embedding, _mistral_model, _mistral_error"


def _config(emulator, path, enrichment, delivery):
    return {
        "api_key": emulator.api_key,
        "base_url": emulator.base_url,
        "model": "mistral-small-latest",
        "enrichment": enrichment,
        "output": {"type": "duckdb", "path": str(path)},
        "cache": {"enabled": False},
        "delivery": delivery,
    }


def _rows(path, columns=COMPARED):
    con = duckdb.connect(str(path), read_only=True)
    try:
        present = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'reviews'"
            ).fetchall()
        }
        wanted = ", ".join(c for c in columns.split(", ") if c in present)
        return con.execute(f"SELECT {wanted} FROM reviews ORDER BY id").fetchall()
    finally:
        con.close()


def _write(config, messages):
    return list(DestinationMistral().write(config, catalog(configured_stream(mode="append_dedup")), messages))


def _routes(emulator):
    return emulator.stats()["routes"]


@pytest.mark.parametrize("enrichment", [CHAT, EMBED], ids=["chat", "embeddings"])
def test_batch_delivery_writes_the_same_rows_as_online_delivery(fresh_emulator, tmp_path, enrichment):
    messages = messages_with_states([review(i) for i in range(25)], every=10)
    _write(_config(fresh_emulator, tmp_path / "online.duckdb", enrichment, {"mode": "online"}), messages)
    out = _write(
        _config(fresh_emulator, tmp_path / "batch.duckdb", enrichment, {"mode": "batch", "poll_max_seconds": 0.2}),
        messages,
    )
    online, batch = _rows(tmp_path / "online.duckdb"), _rows(tmp_path / "batch.duckdb")
    assert len(batch) == 25 and all(row[-1] is None for row in batch), "every record has a result"
    assert batch == online, "batch and online delivery must write identical enrichments"
    routes = _routes(fresh_emulator)
    assert routes.get("POST /v1/batch/jobs", {}).get("200", 0) >= 1, f"a batch job was created: {routes}"
    assert routes.get("POST /v1/files", {}).get("200", 0) >= 1, "the input went up as a file"
    assert sum(1 for m in out if m.type == Type.STATE) == 3, "every STATE is released once its records are committed"


def test_per_line_errors_of_a_batch_job_become_per_record_errors(fresh_emulator, tmp_path, monkeypatch):
    # The server refuses a line the destination took to be within the limit (as with a model whose
    # tokenizer the destination does not know): the destination's count is made to pass it.
    monkeypatch.setattr("destination_mistral.enrich.record_text.upper_bound_for", lambda model, text: 1)
    records = [review(i) for i in range(6)] + [review(6, text="x" * 200_000)]
    config = _config(
        fresh_emulator,
        tmp_path / "b.duckdb",
        {"mode": "embeddings", "fields": ["review"], "input_too_long": "error"},
        {"mode": "batch", "poll_max_seconds": 0.2},
    )
    _write(config, messages_with_states(records, every=100))
    rows = _rows(tmp_path / "b.duckdb", "id, _mistral_error")
    assert len(rows) == 7, "no record is dropped"
    errors = {r[0]: r[1] for r in rows if r[1]}
    assert list(errors) == [6], f"only the oversized input fails, with its error: {errors}"


def test_auto_delivery_sends_records_beyond_the_threshold_through_a_batch_job(fresh_emulator, tmp_path):
    config = _config(
        fresh_emulator, tmp_path / "a.duckdb", EMBED, {"mode": "auto", "auto_threshold": 5, "poll_max_seconds": 0.2}
    )
    _write(config, messages_with_states([review(i) for i in range(20)], every=20))
    assert len(_rows(tmp_path / "a.duckdb")) == 20
    routes = _routes(fresh_emulator)
    assert routes.get("POST /v1/embeddings", {}).get("200", 0) >= 1, "the first records go online"
    assert routes.get("POST /v1/batch/jobs", {}).get("200", 0) >= 1, "the rest go through a batch job"


def test_a_create_whose_answer_is_cut_off_is_found_again_instead_of_made_twice(fresh_emulator, tmp_path):
    """The server creates the file or the job, then its answer is cut off: the retry finds what was
    created (by the file's unique name, by the job's metadata token) and never creates, nor pays
    for, a second one."""
    import requests

    fresh_emulator.configure(fault_truncate=0.7, fault_routes=["POST /v1/batch/jobs", "POST /v1/files"])
    delivery = {"mode": "batch", "poll_max_seconds": 0.2}
    out = tmp_path / "out.duckdb"
    messages = _write(_config(fresh_emulator, out, EMBED, delivery), messages_with_states(review(i) for i in range(4)))
    assert not [m for m in messages if m.type == Type.TRACE and m.trace.error], "the sync succeeds"
    assert len(_rows(out)) == 4
    fresh_emulator.configure(fault_truncate=0.0, fault_routes=[])
    headers = {"Authorization": f"Bearer {fresh_emulator.api_key}"}
    jobs = requests.get(f"{fresh_emulator.base_url}/v1/batch/jobs", headers=headers, timeout=10).json()["data"]
    ours = [job for job in jobs if (job.get("metadata") or {}).get("created_by") == "destination-mistral"]
    assert len(ours) == 1, f"one job, whatever the lost answers: {len(ours)}"
    files = requests.get(
        f"{fresh_emulator.base_url}/v1/files", params={"purpose": "batch"}, headers=headers, timeout=10
    ).json()["data"]
    assert len([f for f in files if f["filename"].startswith("destination-mistral-")]) == 1
    routes = _routes(fresh_emulator)
    cut = routes["POST /v1/batch/jobs"].get("truncated", 0) + routes["POST /v1/files"].get("truncated", 0)
    assert cut >= 1, f"answers were cut off: {routes['POST /v1/batch/jobs']}, {routes['POST /v1/files']}"

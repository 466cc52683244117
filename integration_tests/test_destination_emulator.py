"""destination-mistral against the emulator, in process: every mode, answer format, output and
sync mode, the cache, failures and check."""

from __future__ import annotations

import json

import duckdb
import pytest
from airbyte_cdk.models import Status, Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.destination import DestinationMistral
from destination_mistral.enrich import batching
from tests.support.builders import REVIEW_SCHEMA, catalog, configured_stream, messages_with_states, review

SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "topics": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["sentiment", "topics"],
}


def make_config(emulator, tmp_path, enrichment, output="duckdb", **extra):
    out = (
        {"type": "duckdb", "path": str(tmp_path / "out.duckdb")}
        if output == "duckdb"
        else {"type": "jsonl", "directory": str(tmp_path / "jsonl")}
    )
    return {
        "api_key": emulator.api_key,
        "base_url": emulator.base_url,
        "model": "mistral-small-latest",
        "enrichment": enrichment,
        "output": out,
        **extra,
    }


def write(config, configured, messages):
    return list(DestinationMistral().write(config, configured, messages))


def rows(tmp_path, query):
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def api_calls(emulator, route=None):
    stats = emulator.stats()
    routes = {r: sum(c.values()) for r, c in stats["routes"].items() if r.startswith(("POST /v1", "GET /v1"))}
    return routes.get(route, 0) if route else sum(routes.values())


CHAT = {"mode": "chat", "prompt_template": "Review of {{ product }}: {{ review }}", "temperature": 0}
EMBED = {"mode": "embeddings", "fields": ["product", "review"]}


def test_chat_text_answers_are_written_with_model_and_tokens(emulator, tmp_path):
    out = write(
        make_config(emulator, tmp_path, CHAT),
        catalog(configured_stream()),
        messages_with_states(review(i) for i in range(12)),
    )
    assert sum(1 for m in out if m.type == Type.STATE) == 2
    result = rows(
        tmp_path,
        "SELECT id, _mistral_answer, _mistral_model, _mistral_prompt_tokens, _mistral_completion_tokens, "
        "_mistral_error FROM reviews ORDER BY id",
    )
    assert [r[0] for r in result] == list(range(12))
    assert all(isinstance(r[1], str) and r[1] for r in result), "every record should have a text answer"
    assert all(r[2] and r[3] > 0 and r[4] > 0 and r[5] is None for r in result)


@pytest.mark.parametrize(
    "response_format", [{"type": "json_object"}, {"type": "json_schema", "schema": json.dumps(SCHEMA)}]
)
def test_json_answers_are_stored_parsed(emulator, tmp_path, response_format):
    enrichment = {**CHAT, "response_format": response_format}
    write(
        make_config(emulator, tmp_path, enrichment),
        catalog(configured_stream()),
        messages_with_states(review(i) for i in range(5)),
    )
    result = rows(
        tmp_path,
        "SELECT typeof(_mistral_answer), json_type(_mistral_answer), _mistral_answer->>'sentiment', _mistral_error "
        "FROM reviews",
    )
    assert all(r[0] == "JSON" and r[1] == "OBJECT" and r[3] is None for r in result), result
    if response_format["type"] == "json_schema":
        assert all(r[2] in ("positive", "neutral", "negative") for r in result), "answers must follow the user's schema"


def test_embeddings_are_batched_and_searchable(emulator, tmp_path):
    emulator.reset_stats()
    write(
        make_config(emulator, tmp_path, EMBED),
        catalog(configured_stream()),
        messages_with_states((review(i) for i in range(60)), every=1000),
    )
    assert api_calls(emulator, "POST /v1/embeddings") <= 2, (
        "60 short inputs fit in one embeddings request (two at worst)"
    )
    result = rows(tmp_path, "SELECT typeof(_mistral_embedding), _mistral_model FROM reviews LIMIT 1")
    assert result[0] == ("FLOAT[1024]", "mistral-embed")
    best = rows(
        tmp_path,
        "SELECT a.id, b.id, array_cosine_similarity(a._mistral_embedding, b._mistral_embedding) s "
        "FROM reviews a, reviews b WHERE a.id = 0 AND b.id <> 0 ORDER BY s DESC LIMIT 1",
    )
    assert best[0][1] % 5 == 0, "the nearest review should share the same words (same topic)"


def test_second_sync_makes_no_api_calls(fresh_emulator, tmp_path):
    emulator = fresh_emulator
    for enrichment in (CHAT, EMBED):
        config = make_config(emulator, tmp_path, enrichment)
        configured = catalog(configured_stream(mode="append_dedup"))
        write(config, configured, messages_with_states(review(i) for i in range(30)))
        assert api_calls(emulator) > 0
        emulator.reset_stats()
        write(config, configured, messages_with_states(review(i) for i in range(30)))
        assert api_calls(emulator) == 0, (
            f"{enrichment['mode']}: an unchanged input must not be sent again: {emulator.stats()['routes']}"
        )
        cached = rows(
            tmp_path, "SELECT count(*) FILTER (WHERE _mistral_cached), count(*), count(DISTINCT id) FROM reviews"
        )
        assert cached[0] == (30, 30, 30), "append_dedup keeps every record exactly once, now answered from the cache"
        (tmp_path / "out.duckdb").unlink()
        emulator.reset_stats()


def test_append_dedup_upserts_by_primary_key(emulator, tmp_path):
    config = make_config(emulator, tmp_path, {"mode": "none"})
    configured = catalog(configured_stream(mode="append_dedup"))
    first = [review(i) for i in range(20)]
    write(config, configured, messages_with_states(first + [review(3, "updated")]))
    write(config, configured, messages_with_states([review(5, "later"), review(25)]))
    result = dict(rows(tmp_path, "SELECT id, review FROM reviews"))
    assert sorted(result) == list(range(20)) + [25], "every key of the input exactly once"
    assert result[3] == "updated" and result[5] == "later", "the latest record per key wins"


def test_overwrite_replaces_and_append_accumulates(emulator, tmp_path):
    config = make_config(emulator, tmp_path, {"mode": "none"})
    write(config, catalog(configured_stream(mode="append")), messages_with_states(review(i) for i in range(3)))
    write(config, catalog(configured_stream(mode="append")), messages_with_states(review(i) for i in range(3)))
    assert rows(tmp_path, "SELECT count(*) FROM reviews")[0][0] == 6
    write(config, catalog(configured_stream(mode="overwrite")), messages_with_states(review(i) for i in range(2)))
    assert rows(tmp_path, "SELECT count(*) FROM reviews")[0][0] == 2


def test_overwrite_keeps_previous_data_when_the_sync_fails(fresh_emulator, tmp_path):
    config = make_config(fresh_emulator, tmp_path, CHAT, on_error="fail", limits={"max_retries": 0})
    write(config, catalog(configured_stream(mode="overwrite")), messages_with_states(review(i) for i in range(4)))
    fresh_emulator.configure(fault_500=1.0, fault_routes=["/v1/chat/completions"])
    with pytest.raises(AirbyteTracedException):
        write(
            config, catalog(configured_stream(mode="overwrite")), messages_with_states(review(i) for i in range(10, 14))
        )
    assert [r[0] for r in rows(tmp_path, "SELECT id FROM reviews ORDER BY id")] == [0, 1, 2, 3]


def test_namespaces_map_to_duckdb_schemas_and_overrides_apply_per_stream(emulator, tmp_path):
    config = make_config(emulator, tmp_path, CHAT, stream_overrides=[{"stream_name": "vectors", "enrichment": EMBED}])
    configured = catalog(configured_stream("reviews", namespace="shop"), configured_stream("vectors", namespace="shop"))
    messages = messages_with_states(
        (review(i) for i in range(3)), stream="reviews", namespace="shop"
    ) + messages_with_states((review(i) for i in range(3)), stream="vectors", namespace="shop")
    write(config, configured, messages)
    assert rows(tmp_path, "SELECT count(_mistral_answer) FROM shop.reviews")[0][0] == 3
    assert rows(tmp_path, "SELECT count(_mistral_embedding) FROM shop.vectors")[0][0] == 3


def test_jsonl_output_writes_one_file_per_stream(emulator, tmp_path):
    config = make_config(emulator, tmp_path, EMBED, output="jsonl")
    configured = catalog(configured_stream("reviews", mode="append_dedup"), configured_stream("other", namespace="ns"))
    messages = messages_with_states(review(i) for i in range(4)) + messages_with_states(
        (review(i) for i in range(2)), stream="other", namespace="ns"
    )
    write(config, configured, messages)
    write(config, configured, messages_with_states(review(i) for i in range(4)))
    lines = [json.loads(text) for text in (tmp_path / "jsonl" / "reviews.jsonl").read_text().splitlines()]
    assert [row["id"] for row in lines] == [0, 1, 2, 3], "append_dedup: each record once"
    assert len(lines[0]["_mistral_embedding"]) == 1024 and lines[0]["_mistral_error"] is None
    assert len((tmp_path / "jsonl" / "ns" / "other.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "jsonl" / "_mistral_cache.duckdb").exists(), "the cache lives beside the output"


def test_a_failing_service_stops_the_sync_instead_of_writing_error_rows(fresh_emulator, tmp_path):
    """5xx answers are the service's fault, not the records': after the retries the sync stops with a
    transient error, no record is stored as failed, and the next sync enriches every one."""
    config = make_config(fresh_emulator, tmp_path, EMBED, limits={"max_retries": 0})
    fresh_emulator.configure(fault_500=1.0, fault_routes=["/v1/embeddings"])
    configured = catalog(configured_stream(mode="append_dedup"))
    with pytest.raises(AirbyteTracedException) as caught:
        write(config, configured, messages_with_states(review(i) for i in range(5)))
    assert caught.value.failure_type.value == "transient_error", caught.value.message
    assert rows(tmp_path, "SELECT count(*) FROM reviews WHERE _mistral_error IS NOT NULL")[0][0] == 0, (
        "a service failure is never written as a record's error"
    )
    fresh_emulator.configure(fault_500=0.0)
    write(config, configured, messages_with_states(review(i) for i in range(5)))
    assert (
        rows(tmp_path, "SELECT count(*) FROM reviews WHERE _mistral_error IS NULL AND _mistral_embedding IS NOT NULL")[
            0
        ][0]
        == 5
    )


def test_missing_template_field_is_a_record_error(emulator, tmp_path):
    # The schema declares `title` (a template naming a field the schema lacks is refused at the start);
    # this record does not have it.
    schema = {**REVIEW_SCHEMA, "properties": {**REVIEW_SCHEMA["properties"], "title": {"type": "string"}}}
    config = make_config(emulator, tmp_path, {"mode": "chat", "prompt_template": "{{ title }}"})
    write(config, catalog(configured_stream(schema=schema)), messages_with_states([review(1)]))
    assert rows(tmp_path, "SELECT _mistral_error FROM reviews")[0][0].startswith("template: 'title' is undefined")


def test_transient_faults_and_rate_limits_are_absorbed_by_retries(fresh_emulator, tmp_path):
    fresh_emulator.configure(fault_500=0.2, fault_429=0.1, rate_limit_rps=100)
    config = make_config(fresh_emulator, tmp_path, CHAT, limits={"max_retries": 8, "max_concurrent_requests": 16})
    write(
        config, catalog(configured_stream()), messages_with_states(review(i, f"distinct text {i}") for i in range(60))
    )
    result = rows(tmp_path, "SELECT count(*), count(*) FILTER (WHERE _mistral_error IS NULL) FROM reviews")
    assert result[0] == (60, 60), "every record should be enriched despite 5xx, 429 and the rate limit"
    faults = fresh_emulator.stats()["routes"]["POST /v1/chat/completions"]
    assert set(faults) - {"200"}, "the emulator should have injected failures"


def test_oversized_batch_is_split_when_the_server_rejects_it(fresh_emulator, tmp_path, monkeypatch):
    monkeypatch.setattr(batching, "MAX_INPUTS_PER_REQUEST", 5000)
    monkeypatch.setattr(batching, "MAX_TOKENS_PER_REQUEST", 10_000_000)
    config = make_config(fresh_emulator, tmp_path, EMBED)
    write(
        config,
        catalog(configured_stream()),
        messages_with_states((review(i, f"text number {i} " * 8) for i in range(1200)), every=5000),
    )
    routes = fresh_emulator.stats()["routes"]["POST /v1/embeddings"]
    assert routes.get("400", 0) >= 1, f"the server should have rejected the first batch: {routes}"
    assert rows(tmp_path, "SELECT count(*) FROM reviews WHERE _mistral_embedding IS NOT NULL")[0][0] == 1200


def test_state_messages_report_destination_record_counts(emulator, tmp_path):
    out = write(
        make_config(emulator, tmp_path, {"mode": "none"}),
        catalog(configured_stream()),
        messages_with_states((review(i) for i in range(25)), every=10),
    )
    counts = [m.state.destinationStats.recordCount for m in out if m.type == Type.STATE]
    assert counts == [10, 10, 5]


def test_api_key_never_reaches_output_or_messages(fresh_emulator, tmp_path):
    config = make_config(fresh_emulator, tmp_path, CHAT, on_error="record")
    out = write(config, catalog(configured_stream()), messages_with_states(review(i) for i in range(3)))
    assert fresh_emulator.api_key.encode() not in (tmp_path / "out.duckdb").read_bytes()
    assert all(fresh_emulator.api_key not in str(m) for m in out)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({}, None),
        ({"api_key": "wrong-key-000"}, "rejected the API key"),
        ({"model": "mistral-smal-latest"}, "Did you mean"),
        ({"model": "mistral-embed"}, "cannot do chat completions"),
        (
            {"enrichment": {"mode": "embeddings", "fields": ["a"], "model": "mistral-small-latest"}},
            "cannot produce embeddings",
        ),
        ({"output": {"type": "duckdb", "path": "/proc/forbidden/out.duckdb"}}, "output.path"),
        ({"output": {"type": "jsonl", "directory": "/proc/forbidden"}}, "output.directory"),
    ],
)
def test_check_reports_what_is_wrong(emulator, tmp_path, change, expected):
    config = {**make_config(emulator, tmp_path, CHAT), **change}
    status = DestinationMistral().check(None, config)
    if expected is None:
        assert status.status == Status.SUCCEEDED, status.message
    else:
        assert status.status == Status.FAILED and expected in status.message, status.message
        assert "wrong-key-000" not in status.message


@pytest.mark.parametrize(
    ("enrichment", "column"),
    [
        ({**EMBED, "max_input_tokens": 20, "input_too_long": "truncate"}, "_mistral_embedding"),
        ({**CHAT, "max_input_tokens": 20, "input_too_long": "truncate"}, "_mistral_answer"),
    ],
    ids=["embeddings", "chat"],
)
def test_an_input_cut_to_the_limit_is_named_truncated_in_the_rows_meta_and_counted_in_the_log(
    emulator, tmp_path, caplog, enrichment, column
):
    long_review = {**review(1), "review": "The battery lasts and lasts. " * 40}
    write(
        make_config(emulator, tmp_path, enrichment),
        catalog(configured_stream()),
        messages_with_states([long_review, review(2)]),
    )
    result = rows(tmp_path, f"SELECT id, {column} IS NOT NULL, _mistral_error, _airbyte_meta FROM reviews ORDER BY id")
    assert [r[:3] for r in result] == [(1, True, None), (2, True, None)], "both enriched"
    changes = {r[0]: json.loads(r[3])["changes"] for r in result}
    assert changes[1] == [{"field": column, "change": "TRUNCATED", "reason": "DESTINATION_FIELD_SIZE_LIMITATION"}]
    assert changes[2] == [], "a short input is sent whole and says nothing"
    assert "1 with their input cut to the model's limit" in caplog.text
    assert "1 record(s) had an input longer than the model's limit" in caplog.text


def test_an_input_truncated_to_the_models_own_limit_is_accepted_as_the_real_api_would(emulator, tmp_path):
    # Long English words: a count by letters (about one token per four) says far more tokens than
    # mistral-embed's tokenizer, which cut this input to exactly its 8,192 tokens.
    words = "internationalization characteristically documentation responsibilities "
    long_review = {**review(1), "review": words * 1500}
    enrichment = {**EMBED, "model": "mistral-embed", "input_too_long": "truncate"}
    write(
        make_config(emulator, tmp_path, enrichment), catalog(configured_stream()), messages_with_states([long_review])
    )
    result = rows(tmp_path, "SELECT _mistral_embedding IS NOT NULL, _mistral_error, _airbyte_meta FROM reviews")
    assert result[0][:2] == (True, None), result[0][1]
    assert json.loads(result[0][2])["changes"][0]["change"] == "TRUNCATED"


def test_an_input_whose_start_is_only_whitespace_is_an_input_error_row_not_a_refusal_by_the_api(emulator, tmp_path):
    # Cut to its first 8,192 tokens, the text is blank: nothing is sent, and the row says why.
    blank_start = {**review(1), "review": "\n" * 20_000 + "hello world"}
    enrichment = {**EMBED, "fields": ["review"], "model": "mistral-embed", "input_too_long": "truncate"}
    before = api_calls(emulator, "POST /v1/embeddings")
    write(
        make_config(emulator, tmp_path, enrichment), catalog(configured_stream()), messages_with_states([blank_start])
    )
    (error, meta), *_ = rows(tmp_path, "SELECT _mistral_error, _airbyte_meta FROM reviews")
    assert "only whitespace in its first 8192 tokens" in error and "HTTP" not in error, error
    assert json.loads(meta)["changes"] == [], "nothing was cut and sent"
    assert api_calls(emulator, "POST /v1/embeddings") == before


def test_a_chat_prompt_truncated_to_fit_the_models_context_is_accepted_as_the_real_api_would(emulator, tmp_path):
    # Long English words: a count by letters says more than twice the tokens of the model's tokenizer,
    # which cut this prompt to 28,000 tokens, within a 32,768-token context with 4,096 for the answer.
    words = "internationalization characteristically documentation responsibilities "
    long_review = {**review(1), "review": words * 6_000}
    enrichment = {**CHAT, "input_too_long": "truncate", "max_input_tokens": 28_000}
    config = {**make_config(emulator, tmp_path, enrichment), "model": "voxtral-small-latest"}
    write(config, catalog(configured_stream()), messages_with_states([long_review]))
    result = rows(tmp_path, "SELECT _mistral_answer IS NOT NULL, _mistral_error, _airbyte_meta FROM reviews")
    assert result[0][:2] == (True, None), result[0][1]
    assert json.loads(result[0][2])["changes"][0]["change"] == "TRUNCATED"


def test_a_chat_prompt_is_cut_to_the_context_the_api_lists_for_a_model_the_destination_does_not_know(
    emulator, tmp_path
):
    # voxtral-small: 32,768 tokens by GET /v1/models, where the names' table would say 131,072.
    words = "internationalization characteristically documentation responsibilities "
    long_review = {**review(1), "review": words * 6_000}
    enrichment = {**CHAT, "input_too_long": "truncate"}
    config = {**make_config(emulator, tmp_path, enrichment), "model": "voxtral-small-latest"}
    write(config, catalog(configured_stream()), messages_with_states([long_review, review(2)]))
    result = rows(
        tmp_path, "SELECT id, _mistral_answer IS NOT NULL, _mistral_error, _airbyte_meta FROM reviews ORDER BY id"
    )
    assert [r[:3] for r in result] == [(1, True, None), (2, True, None)], result[0][2]
    assert json.loads(result[0][3])["changes"][0]["change"] == "TRUNCATED"


def test_a_max_tokens_that_leaves_no_room_for_a_prompt_in_the_models_context_is_a_config_error(emulator, tmp_path):
    # voxtral-small: 32,768 tokens of context, learnt from GET /v1/models.
    enrichment = {**CHAT, "input_too_long": "truncate", "max_tokens": 40_000}
    config = {**make_config(emulator, tmp_path, enrichment), "model": "voxtral-small-latest"}
    before = api_calls(emulator, "POST /v1/chat/completions")
    with pytest.raises(AirbyteTracedException) as raised:
        write(config, catalog(configured_stream()), messages_with_states([review(1)]))
    assert raised.value.failure_type.value == "config_error"
    assert "`max_tokens` (40000)" in raised.value.message and "at most 32751" in raised.value.message
    assert api_calls(emulator, "POST /v1/chat/completions") == before, "nothing is sent"

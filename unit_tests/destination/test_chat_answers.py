"""Chat answers: text kept as is, JSON parsed and checked against the user's schema."""

from destination_mistral.enrich.chat import ChatEnricher
from destination_mistral.settings import ChatSettings, ResponseFormat

SCHEMA = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
    "required": ["sentiment"],
}


def response(content, finish="stop"):
    return {
        "model": "mistral-small-latest",
        "usage": {"prompt_tokens": 11, "completion_tokens": 5},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
    }


def enricher(kind="text", schema=None, **kw):
    return ChatEnricher(
        ChatSettings(
            model="mistral-small-latest",
            prompt_template="{{ review }}",
            response_format=ResponseFormat(type=kind, schema=schema),
            **kw,
        ),
        None,
    )


def test_text_answer_and_usage():
    result = enricher().read_answer(response("Fine."))
    assert result.value == "Fine." and result.prompt_tokens == 11 and result.completion_tokens == 5


def test_json_schema_answer_is_stored_parsed():
    result = enricher("json_schema", SCHEMA).read_answer(response('```json\n{"sentiment": "positive"}\n```'))
    assert result.value == {"sentiment": "positive"}, "the parsed JSON is stored, not a string of it"


def test_answer_violating_the_schema_is_a_record_error():
    result = enricher("json_schema", SCHEMA).read_answer(response('{"sentiment": "meh"}'))
    assert result.value is None and "schema" in result.error and "meh" not in result.error, (
        "no answer content in errors"
    )


def test_truncated_json_says_so():
    result = enricher("json_object").read_answer(response('{"a": ', finish="length"))
    assert "not valid JSON" in result.error and "max_tokens" in result.error


def test_request_body_has_only_known_fields_and_cache_key_tracks_parameters():
    a = enricher(temperature=0.0, random_seed=1)
    b = enricher(temperature=0.5, random_seed=1)
    item_a = a.prepare({"review": "ok"})
    body = a.request_body(item_a)
    assert set(body) <= {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "random_seed",
        "safe_prompt",
        "response_format",
    }
    assert item_a.key != b.prepare({"review": "ok"}).key, "a different temperature must not reuse a cached answer"
    assert item_a.key == a.prepare({"review": "ok", "other": 1}).key, "same prompt, same parameters: same key"


def test_over_long_prompt_is_truncated_or_flagged():
    long = {"review": "battery " * 500}
    truncating = enricher(max_input_tokens=30, input_too_long="truncate").prepare(long)
    assert len(truncating.messages[0]["content"]) < len(long["review"])
    try:
        enricher(max_input_tokens=30).prepare(long)
    except Exception as error:
        assert "max_input_tokens" in str(error)
    else:
        raise AssertionError("input_too_long=error should flag the record")

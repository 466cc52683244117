"""Chat request validation and answers, without sockets."""

import orjson
import pytest

from mistral_emulator.account import Account
from mistral_emulator.errors import ApiError
from mistral_emulator.inference import chat_completion, stream_chunks
from mistral_emulator.settings import EmulatorSettings

LOOKUP = Account(EmulatorSettings(files=0, batch_jobs=0, agents=0, fine_tuning_jobs=0)).model


def _chat(**body):
    body.setdefault("model", "mistral-small-latest")
    body.setdefault("messages", [{"role": "user", "content": "Tell me about French cheese"}])
    return chat_completion(body, LOOKUP)


def _error(**body):
    with pytest.raises(ApiError) as info:
        _chat(**body)
    return info.value


def test_unknown_field_is_rejected_like_fastapi():
    err = _error(max_completion_tokens=5)
    assert err.status == 422
    assert err.body["detail"][0]["type"] == "extra_forbidden"
    assert err.body["detail"][0]["loc"] == ["body", "max_completion_tokens"]


def test_missing_model_is_a_422_field_required():
    with pytest.raises(ApiError) as info:
        chat_completion({"messages": []}, LOOKUP)
    assert info.value.status == 422
    assert {"type": "missing", "loc": ["body", "model"]}.items() <= info.value.body["detail"][0].items()


def test_unknown_and_embedding_models_are_400_invalid_model():
    for model in ("mistral-larg-latest", "mistral-embed"):
        err = _error(model=model)
        assert err.status == 400 and err.body["type"] == "invalid_model" and err.body["code"] == "1500", err.body


def test_same_request_gives_the_same_answer_and_seed_changes_it():
    a = _chat(random_seed=1).response["choices"][0]["message"]["content"]
    b = _chat(random_seed=1).response["choices"][0]["message"]["content"]
    c = _chat(random_seed=2).response["choices"][0]["message"]["content"]
    assert a == b, "answers must be deterministic"
    assert a != c, "random_seed should vary the answer"


def test_max_tokens_truncates_with_finish_reason_length():
    r = _chat(max_tokens=3).response
    assert r["choices"][0]["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 3


def test_context_overflow_is_400():
    err = _error(model="ministral-3b-latest", max_tokens=300_000)
    assert err.status == 400 and "maximum context length" in err.body["message"]


def test_stream_starts_with_role_and_ends_with_usage_and_the_same_text():
    result = _chat()
    events = [e for e, _ in stream_chunks(result)]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-1]["usage"] == result.response["usage"]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert text == result.response["choices"][0]["message"]["content"]


def test_forced_tool_choice_returns_a_call_with_schema_valid_arguments():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    r = _chat(tools=tools, tool_choice="any").response["choices"][0]
    assert r["finish_reason"] == "tool_calls"
    args = orjson.loads(r["message"]["tool_calls"][0]["function"]["arguments"])
    assert "city" in args

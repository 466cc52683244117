"""Chat completions and embeddings over HTTP: modes, streaming, limits and error bodies."""

import base64
import json

import jsonschema
import numpy as np
import pytest
import requests


def _post(emu, path, body):
    return requests.post(emu.base_url + path, json=body, headers={"Authorization": f"Bearer {emu.api_key}"}, timeout=10)


def _chat(emu, **body):
    body.setdefault("model", "mistral-small-latest")
    body.setdefault("messages", [{"role": "user", "content": "The delivery was late and the box was broken."}])
    return _post(emu, "/v1/chat/completions", body)


def test_text_answer_has_usage_and_is_deterministic(emulator):
    a, b = _chat(emulator, random_seed=4).json(), _chat(emulator, random_seed=4).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    usage = a["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert a["object"] == "chat.completion" and a["choices"][0]["finish_reason"] == "stop"


def test_json_object_mode_answers_a_json_object(emulator):
    content = _chat(emulator, response_format={"type": "json_object"}).json()["choices"][0]["message"]["content"]
    assert isinstance(json.loads(content), dict)


def test_json_schema_mode_answers_valid_json_with_content_from_the_prompt(emulator):
    schema = {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
            "issues": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["sentiment", "issues", "urgency"],
        "additionalProperties": False,
    }
    r = _chat(
        emulator,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}},
    )
    answer = json.loads(r.json()["choices"][0]["message"]["content"])
    jsonschema.validate(answer, schema)
    assert answer["sentiment"] == "negative", "a complaint should read as negative"


def test_streaming_sends_role_first_usage_last_and_done(emulator):
    r = requests.post(
        emulator.base_url + "/v1/chat/completions",
        stream=True,
        timeout=10,
        headers={"Authorization": f"Bearer {emulator.api_key}"},
        json={"model": "mistral-small-latest", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = [line[len("data: ") :] for line in r.iter_lines(decode_unicode=True) if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["usage"]["completion_tokens"] > 0 and chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_unknown_field_is_422_extra_forbidden(emulator):
    r = _chat(emulator, store=True)
    assert r.status_code == 422
    assert r.json()["detail"][0] == {
        "type": "extra_forbidden",
        "loc": ["body", "store"],
        "msg": "Extra inputs are not permitted",
        "input": True,
    }


def test_invalid_model_body_matches_the_real_api(emulator):
    r = _chat(emulator, model="mistral-larg-latest")
    assert r.status_code == 400
    assert r.json() == {
        "object": "error",
        "message": "Invalid model: mistral-larg-latest",
        "type": "invalid_model",
        "param": None,
        "code": "1500",
    }


def test_malformed_json_is_422(emulator):
    r = requests.post(
        emulator.base_url + "/v1/chat/completions",
        data=b"{not json",
        headers={"Authorization": f"Bearer {emulator.api_key}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


def test_embeddings_float_and_base64_are_the_same_vectors(emulator):
    texts = ["invoice overdue", "overdue invoice reminder", "football match tonight"]
    floats = _post(emulator, "/v1/embeddings", {"model": "mistral-embed", "input": texts}).json()
    b64 = _post(
        emulator, "/v1/embeddings", {"model": "mistral-embed", "input": texts, "encoding_format": "base64"}
    ).json()
    vf = np.array([d["embedding"] for d in floats["data"]], dtype=np.float32)
    vb = np.array([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64["data"]])
    assert vf.shape == (3, 1024) and np.allclose(vf, vb)
    assert [d["index"] for d in floats["data"]] == [0, 1, 2]
    assert float(vf[0] @ vf[1]) > float(vf[0] @ vf[2]), "texts sharing words must be closer"
    assert floats["usage"]["prompt_tokens"] > 0 and floats["usage"]["completion_tokens"] == 0


def test_output_dimension_only_for_codestral_embed(emulator):
    r = _post(
        emulator, "/v1/embeddings", {"model": "codestral-embed", "input": "def f(): pass", "output_dimension": 256}
    )
    assert len(r.json()["data"][0]["embedding"]) == 256
    assert (
        len(
            _post(emulator, "/v1/embeddings", {"model": "codestral-embed", "input": "x"}).json()["data"][0]["embedding"]
        )
        == 1536
    )
    assert (
        _post(
            emulator, "/v1/embeddings", {"model": "codestral-embed", "input": "x", "output_dimension": 4096}
        ).status_code
        == 400
    )
    assert (
        _post(emulator, "/v1/embeddings", {"model": "mistral-embed", "input": "x", "output_dimension": 256}).status_code
        == 400
    )


@pytest.mark.parametrize(
    "inputs, message",
    [
        (["w"] * 513, "Too many inputs in request, split into more batches."),
        (["word " * 3000] * 6, "Too many tokens overall, split into more batches."),
    ],
)
def test_request_limits_answer_400_like_the_real_api(emulator, inputs, message):
    r = _post(emulator, "/v1/embeddings", {"model": "mistral-embed", "input": inputs})
    assert r.status_code == 400 and r.json()["message"] == message
    assert r.json()["type"] == "invalid_request_prompt"


def test_single_input_over_8192_tokens_and_empty_input_are_400(emulator):
    assert _post(emulator, "/v1/embeddings", {"model": "mistral-embed", "input": "word " * 9000}).status_code == 400
    assert _post(emulator, "/v1/embeddings", {"model": "mistral-embed", "input": ["ok", ""]}).status_code == 400


def test_chat_model_cannot_embed_and_input_type_is_checked(emulator):
    assert (
        _post(emulator, "/v1/embeddings", {"model": "mistral-small-latest", "input": "x"}).json()["type"]
        == "invalid_model"
    )
    assert _post(emulator, "/v1/embeddings", {"model": "mistral-embed", "input": 3}).status_code == 422


def test_moderation_flags_by_category(emulator):
    r = _post(
        emulator, "/v1/moderations", {"model": "mistral-moderation-latest", "input": ["I will kill you", "nice day"]}
    )
    results = r.json()["results"]
    assert results[0]["categories"]["violence_and_threats"] is True
    assert not any(results[1]["categories"].values())
    chat = _post(
        emulator,
        "/v1/chat/moderations",
        {"model": "mistral-moderation-latest", "input": [{"role": "user", "content": "hello"}]},
    )
    assert chat.status_code == 200 and len(chat.json()["results"]) == 1


def test_an_embedding_input_of_whitespace_is_text_and_only_an_empty_one_is_refused(emulator):
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    url = emulator.base_url + "/v1/embeddings"
    for text in (" ", "\n", "\t", "\r\n", "\u3000", "\n" * 4000):
        answer = requests.post(url, json={"model": "mistral-embed", "input": [text]}, headers=headers, timeout=30)
        assert answer.status_code == 200, (repr(text[:4]), answer.text)
    empty = requests.post(url, json={"model": "mistral-embed", "input": [""]}, headers=headers, timeout=30)
    assert empty.status_code == 400 and "is empty" in empty.json()["message"]

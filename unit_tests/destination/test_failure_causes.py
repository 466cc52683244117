"""Failures sorted by cause. The service failing (transport, 5xx, a 200 that is truncated, not JSON,
too large or of the wrong shape) is retried and then stops the sync with a transient_error naming
the route and the cause, never the key or the record. A 429 waits without spending retries, for as
long as the sync makes progress; a spent monthly quota stops at once. Only a refusal of the record's
own content is its error row."""

import asyncio
import base64
import socket
import ssl

import aiohttp
import numpy as np
import orjson
import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.enrich.chat import ChatEnricher
from destination_mistral.enrich.embeddings import EmbeddingEnricher
from destination_mistral.http.client import MistralClient
from destination_mistral.settings import ChatSettings, EmbeddingSettings, Limits
from mistral_connection import MistralConnection

KEY = "sk-secret-value-0123"
CONNECTION = MistralConnection.from_config({"api_key": KEY, "base_url": "http://127.0.0.1:1"})
RECORD_TEXT = "private record text 4711"


class Script:
    """A sender that plays answers in order: (status, headers, body bytes) or an exception to raise."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, method, url, body):
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(orjson.loads(body))
        return answer


def client_for(script, **limits):
    now = [0.0]

    async def sleep(seconds):
        now[0] += seconds

    return MistralClient(CONNECTION, Limits(**limits), sender=script, sleep=sleep, clock=lambda: now[0])


def chat_answer(content="fine"):
    return (
        200,
        {},
        orjson.dumps(
            {
                "model": "mistral-small-latest",
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
            }
        ),
    )


def run_chat(script, **limits):
    client = client_for(script, **limits)
    enricher = ChatEnricher(ChatSettings(model="mistral-small-latest", prompt_template="{{ t }}"), client)
    item = enricher.prepare({"t": RECORD_TEXT})
    return asyncio.run(enricher.run(item))


def expect_transient(script, route, cause, **limits):
    with pytest.raises(AirbyteTracedException) as caught:
        run_chat(script, **limits)
    error = caught.value
    assert error.failure_type == FailureType.transient_error, error.message
    assert route in error.message and cause in error.message, error.message
    assert (
        KEY not in error.message
        and RECORD_TEXT not in error.message
        and RECORD_TEXT not in (error.internal_message or "")
    )
    return error


TRANSPORT = [
    (ConnectionRefusedError(111, "Connection refused"), "connection was refused"),
    (ConnectionResetError(104, "Connection reset by peer"), "closed before the answer"),
    (aiohttp.ServerDisconnectedError(), "closed before the answer"),
    (socket.gaierror(-2, "Name or service not known"), "DNS"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "TLS"),
    (TimeoutError(), "timeout_seconds"),
    (aiohttp.ClientPayloadError("Response payload is not completed"), "cut off"),
]


@pytest.mark.parametrize("failure, cause", TRANSPORT, ids=[type(f).__name__ for f, _ in TRANSPORT])
def test_each_transport_failure_is_retried_then_stops_the_sync_naming_route_and_cause(failure, cause):
    script = Script(failure)
    expect_transient(script, "POST /v1/chat/completions", cause, max_retries=2)
    assert script.calls == 3, "max_retries=2: three attempts, then the sync stops"


@pytest.mark.parametrize("failure, cause", TRANSPORT[:2], ids=["refused", "reset"])
def test_a_transport_failure_that_clears_gives_the_answer(failure, cause):
    result = run_chat(Script(failure, chat_answer("ok")), max_retries=2)
    assert result.ok and result.value == "ok"


BAD_CHAT_ANSWERS = [
    ((200, {}, b'{"choices": [{"message": {"content": "fi'), "not complete JSON"),
    ((200, {}, b"<html>bad gateway</html>"), "not complete JSON"),
    ((200, {}, b""), "empty body"),
    ((200, {}, b"[1, 2]"), "not a JSON object"),
    ((200, {}, b'{"model": "m", "choices": []}'), "without choices"),
    ((502, {}, b'{"message": "bad gateway"}'), "HTTP 502"),
]


@pytest.mark.parametrize("answer, cause", BAD_CHAT_ANSWERS, ids=[c for _, c in BAD_CHAT_ANSWERS])
def test_a_chat_answer_of_the_wrong_shape_is_retried_then_stops_the_sync(answer, cause):
    script = Script(answer)
    expect_transient(script, "POST /v1/chat/completions", cause, max_retries=1)
    assert script.calls == 2


def test_a_truncated_200_is_retried_and_the_complete_answer_is_kept():
    result = run_chat(Script((200, {}, b'{"choices": [{"mess'), chat_answer("whole")))
    assert result.ok and result.value == "whole", "a truncated body is never stored, nor an error row"


def test_an_answer_over_the_size_cap_is_a_service_failure_not_a_memory_spike():
    huge = chat_answer("x" * 5000)
    script = Script(huge)
    expect_transient(script, "POST /v1/chat/completions", "max_response_mb", max_retries=1, max_response_bytes=1000)


def test_429s_are_waited_on_without_spending_retries():
    refused = (429, {"Retry-After": "2"}, b'{"message": "Rate limit exceeded"}')
    script = Script(*([refused] * 12 + [chat_answer("after the wait")]))
    result = run_chat(script, max_retries=0)
    assert result.ok and result.value == "after the wait", "twelve 429s with max_retries 0 must still end in the answer"


def test_429s_with_no_progress_for_max_retry_seconds_stop_the_sync():
    refused = (429, {"Retry-After": "10"}, b'{"message": "Rate limit exceeded"}')
    script = Script(refused)
    error = expect_transient(script, "POST /v1/chat/completions", "rate limit", max_retry_seconds=60)
    assert script.calls <= 7, "at most max_retry_seconds / Retry-After waits"
    assert "max_retry_seconds" in error.message


def test_a_spent_monthly_quota_stops_at_once_naming_the_limit():
    month = (
        429,
        {"x-ratelimit-remaining-tokens-month": "0", "Retry-After": "86400"},
        b'{"message": "Rate limit exceeded"}',
    )
    script = Script(month)
    error = expect_transient(script, "POST /v1/chat/completions", "monthly", max_retry_seconds=10_000)
    assert script.calls == 1, "no wait for a quota that resets next month"
    assert "x-ratelimit-remaining-tokens-month" in error.message


def test_a_429_message_about_the_monthly_quota_stops_at_once():
    script = Script((429, {}, b'{"message": "Monthly token quota exceeded"}'))
    expect_transient(script, "POST /v1/chat/completions", "monthly")
    assert script.calls == 1


def test_a_200_saying_the_month_is_spent_keeps_its_answer_and_stops_before_the_next_request():
    last = (200, {"x-ratelimit-remaining-tokens-month": "0"}, chat_answer("last one")[2])
    script = Script(last)
    client = client_for(script)
    enricher = ChatEnricher(ChatSettings(model="mistral-small-latest", prompt_template="{{ t }}"), client)

    async def two():
        first = await enricher.run(enricher.prepare({"t": "a"}))
        with pytest.raises(AirbyteTracedException) as caught:
            await enricher.run(enricher.prepare({"t": "b"}))
        return first, caught.value

    first, error = asyncio.run(two())
    assert first.ok and first.value == "last one"
    assert "monthly" in error.message and script.calls == 1


def test_a_refusal_of_the_records_content_is_its_error_row():
    script = Script(
        (
            400,
            {},
            b'{"object": "error", "message": "Prompt contains 300000 tokens, too large for model with 262144 '
            b'maximum context length", "type": "invalid_request_error"}',
        )
    )
    result = run_chat(script)
    assert not result.ok and result.error_kind == "input" and "too large" in result.error
    assert script.calls == 1, "the record's own fault is not retried"


def test_a_refused_parameter_stops_the_sync_with_a_config_error_naming_it():
    script = Script(
        (
            422,
            {},
            b'{"detail": [{"loc": ["body", "temperature"], "msg": "Input should be less than or equal to 1.5", '
            b'"type": "less_than_equal"}]}',
        )
    )
    with pytest.raises(AirbyteTracedException) as caught:
        run_chat(script)
    assert caught.value.failure_type == FailureType.config_error and "`temperature`" in caught.value.message


def test_a_chat_answer_off_the_users_schema_stays_a_record_error():
    from destination_mistral.settings import ResponseFormat

    client = client_for(Script(chat_answer('{"sentiment": "meh"}')))
    schema = {"type": "object", "properties": {"sentiment": {"enum": ["positive"]}}, "required": ["sentiment"]}
    enricher = ChatEnricher(
        ChatSettings(
            model="mistral-small-latest",
            prompt_template="{{ t }}",
            response_format=ResponseFormat(type="json_schema", schema=schema),
        ),
        client,
    )
    result = asyncio.run(enricher.run(enricher.prepare({"t": "x"})))
    assert not result.ok and "schema" in result.error, "the service worked: the answer is the record's result error"


def test_chat_requests_carry_a_default_max_tokens_unless_set():
    default = ChatEnricher(ChatSettings(model="mistral-small-latest", prompt_template="{{ t }}"), None)
    item = default.prepare({"t": "x"})
    assert default.request_body(item)["max_tokens"] == 4096
    chosen = ChatEnricher(ChatSettings(model="mistral-small-latest", prompt_template="{{ t }}", max_tokens=50), None)
    assert chosen.request_body(chosen.prepare({"t": "x"}))["max_tokens"] == 50
    assert (
        item.key
        == ChatEnricher(ChatSettings(model="mistral-small-latest", prompt_template="{{ t }}"), None)
        .prepare({"t": "x"})
        .key
    )


def test_a_prompt_beyond_the_models_context_is_the_records_error():
    from destination_mistral.enrich.templates import RecordError

    enricher = ChatEnricher(ChatSettings(model="open-mistral-7b", prompt_template="{{ t }}"), None)
    with pytest.raises(RecordError, match="characters"):
        enricher.prepare({"t": "word " * 400_000})  # 2M characters: over, without tokenizing
    with pytest.raises(RecordError, match="tokens"):
        enricher.prepare({"t": "word " * 40_000})  # tokenized: over 32k less max_tokens


# ---- embeddings ------------------------------------------------------------------------------------


def vectors(n, dim=4, value=0.5, encode=True):
    vector = np.full(dim, value, dtype="<f4")
    embedding = base64.b64encode(vector.tobytes()).decode() if encode else vector.tolist()
    return [{"object": "embedding", "index": i, "embedding": embedding} for i in range(n)]


def embed_answer(data):
    return 200, {}, orjson.dumps({"model": "mistral-embed", "usage": {"prompt_tokens": 3}, "data": data})


def run_embeddings(script, texts, **limits):
    client = client_for(script, **limits)
    enricher = EmbeddingEnricher(EmbeddingSettings(fields=(("t",),), output_dimension=4), client)
    items = [enricher.prepare({"t": t}) for t in texts]
    return asyncio.run(enricher._send(items))


NAN = base64.b64encode(np.array([np.nan, 1, 1, 1], dtype="<f4").tobytes()).decode()
BAD_EMBEDDINGS = [
    (vectors(3, dim=5), "size 5, not 4"),
    (vectors(2), "2 vectors for 3 inputs"),
    (vectors(4), "4 vectors for 3 inputs"),
    ([{**v, "index": 0} for v in vectors(3)], "duplicate or missing"),
    ([{**v, "index": i + 1} for i, v in enumerate(vectors(3))], "duplicate or missing"),
    ([{**v, "embedding": NAN} for v in vectors(3)], "NaN"),
    ([{**v, "embedding": "@@not base64@@"} for v in vectors(3)], "unreadable"),
    ([{**v, "embedding": ["a", "b", "c", "d"]} for v in vectors(3)], "unreadable"),
]


@pytest.mark.parametrize("data, cause", BAD_EMBEDDINGS, ids=[c for _, c in BAD_EMBEDDINGS])
def test_an_embeddings_answer_of_the_wrong_shape_is_retried_then_stops_the_sync(data, cause):
    script = Script(embed_answer(data))
    with pytest.raises(AirbyteTracedException) as caught:
        run_embeddings(script, ["a", "b", "c"], max_retries=1)
    assert caught.value.failure_type == FailureType.transient_error
    assert "POST /v1/embeddings" in caught.value.message and cause in caught.value.message, caught.value.message
    assert script.calls == 2


def test_one_bad_embeddings_answer_is_sent_again_and_every_record_gets_its_vector():
    script = Script(embed_answer(vectors(2)), embed_answer(vectors(3, value=0.25)))
    results = run_embeddings(script, ["a", "b", "c"])
    assert [r.ok for r in results] == [True, True, True] and all(r.value[0] == 0.25 for r in results)


def test_float_vectors_with_nan_are_refused_too():
    data = vectors(1, encode=False)
    data[0]["embedding"][1] = float("inf")
    # orjson writes inf as null: a null in a vector is as unreadable as an infinity.
    with pytest.raises(AirbyteTracedException):
        run_embeddings(Script(embed_answer(data)), ["a"], max_retries=0)


def test_an_input_refused_for_its_content_is_found_by_halving_and_only_it_is_an_error_row():
    def answer(body):
        if any("poison" in text for text in body["input"]):
            return (
                400,
                {},
                b'{"object": "error", "message": "Input contains invalid content", "type": "invalid_request_error"}',
            )
        return embed_answer(vectors(len(body["input"])))

    results = run_embeddings(Script(answer), ["a", "b", "poison", "d", "e"])
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert results[2].error_kind == "input" and "invalid content" in results[2].error

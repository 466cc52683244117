"""The HTTP client: bounded retries that follow the server's hints; a service that keeps failing
stops the sync with a transient_error, a refused parameter with a config_error."""

import asyncio

import orjson
import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.http.client import MistralClient
from destination_mistral.http.errors import ApiError, retry_after_seconds
from destination_mistral.http.pacer import Pacer
from destination_mistral.settings import Limits
from mistral_connection import MistralConnection

CONNECTION = MistralConnection.from_config({"api_key": "sk-secret-value", "base_url": "http://127.0.0.1:1"})


def scripted(*responses):
    calls = []
    queue = list(responses)

    async def sender(method, url, body):
        calls.append((method, url, body))
        status, headers, payload = queue.pop(0)
        return status, headers, orjson.dumps(payload)

    return sender, calls


def make_client(sender, sleeps, **limits):
    now = [0.0]

    async def fake_sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    return MistralClient(CONNECTION, Limits(**limits), sender=sender, sleep=fake_sleep, clock=lambda: now[0])


def test_retry_after_is_honoured_on_429():
    sender, calls = scripted((429, {"Retry-After": "2"}, {"message": "Rate limit exceeded"}), (200, {}, {"ok": True}))
    sleeps = []
    client = make_client(sender, sleeps)
    assert asyncio.run(client.post("chat/completions", {})) == {"ok": True}
    assert sum(sleeps) == pytest.approx(2.0, abs=0.01), "the wait must be the server's Retry-After, not a fixed sleep"
    assert len(calls) == 2 and client.stats.throttled == 1


def test_a_5xx_is_retried_max_retries_times_then_stops_the_sync_naming_route_and_status():
    sender, calls = scripted(*[(503, {}, {"message": "overloaded"})] * 3)
    sleeps = []
    client = make_client(sender, sleeps, max_retries=2)
    with pytest.raises(AirbyteTracedException) as caught:
        asyncio.run(client.post("embeddings", {}))
    assert len(calls) == 3, "max_retries=2 means three attempts"
    assert caught.value.failure_type == FailureType.transient_error
    message = caught.value.message
    assert "POST /v1/embeddings" in message and "HTTP 503" in message and "overloaded" in message, message
    assert "sk-secret-value" not in message
    assert all(s <= 30 for s in sleeps), "backoff must stay short"


def test_429s_stop_the_sync_once_nothing_has_succeeded_for_max_retry_seconds():
    sender, calls = scripted(*[(429, {"Retry-After": "40"}, {})] * 5)
    client = make_client(sender, [], max_retries=10, max_retry_seconds=60)
    with pytest.raises(AirbyteTracedException) as caught:
        asyncio.run(client.post("embeddings", {}))
    assert caught.value.failure_type == FailureType.transient_error and "rate limit" in caught.value.message
    assert len(calls) == 2, "a wait that would pass max_retry_seconds without progress must not be started"


def test_a_refused_parameter_is_a_config_error_naming_it():
    sender, calls = scripted(
        (
            422,
            {},
            {"detail": [{"loc": ["body", "foo"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}]},
        )
    )
    client = make_client(sender, [])
    with pytest.raises(AirbyteTracedException) as caught:
        asyncio.run(client.post("chat/completions", {}))
    assert len(calls) == 1, "a refusal is not retried"
    assert caught.value.failure_type == FailureType.config_error and "`foo`" in caught.value.message


def test_a_refusal_naming_the_input_is_an_api_error_of_kind_input():
    sender, calls = scripted(
        (
            400,
            {},
            {
                "object": "error",
                "message": "Prompt contains 40000 tokens, too large for model with 32768 maximum context length",
                "type": "invalid_request_message_order",
            },
        )
    )
    client = make_client(sender, [])
    with pytest.raises(ApiError) as caught:
        asyncio.run(client.post("chat/completions", {}))
    assert len(calls) == 1 and caught.value.kind == "input", caught.value.kind


def test_bad_key_is_a_config_error_without_the_key():
    sender, _ = scripted((401, {}, {"message": "Unauthorized"}))
    client = make_client(sender, [])
    with pytest.raises(AirbyteTracedException) as caught:
        asyncio.run(client.post("chat/completions", {}))
    assert caught.value.failure_type == FailureType.config_error
    assert "sk-secret-value" not in caught.value.message and "api_key" in caught.value.message


def test_unknown_model_is_a_config_error():
    sender, _ = scripted((400, {}, {"object": "error", "message": "Invalid model: nope", "type": "invalid_model"}))
    with pytest.raises(AirbyteTracedException) as caught:
        asyncio.run(make_client(sender, []).post("chat/completions", {}))
    assert caught.value.failure_type == FailureType.config_error and "model" in caught.value.message


def test_retry_after_forms():
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({}) is None


def test_pacer_slows_down_on_429_and_recovers():
    now = [0.0]
    pacer = Pacer(None, clock=lambda: now[0])
    for _ in range(20):
        assert pacer.delay() == 0.0, "without a cap or a 429 there is no pacing"
    pacer.on_throttled(None)
    assert pacer.rate is not None and pacer.rate < 20
    slowed = pacer.rate
    for _ in range(50):
        pacer.on_success({})
    assert pacer.rate > slowed, "the pace should creep back up while requests succeed"


def test_pacer_respects_the_configured_cap():
    now = [0.0]
    pacer = Pacer(10.0, clock=lambda: now[0])
    delays = [pacer.delay() for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_pacer_slows_when_ratelimit_headers_say_the_budget_is_nearly_spent():
    pacer = Pacer(None)
    pacer.on_success({"x-ratelimit-limit-req-minute": "600", "x-ratelimit-remaining-req-minute": "10"})
    assert pacer.rate == pytest.approx(10.0)

"""The HTTP client: bounded retries that follow the server's hints, fatal errors stop everything."""

import asyncio

import orjson
import pytest

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from mistral_connection import MistralConnection

from destination_mistral.client import ApiError, MistralClient, RatePacer, retry_after_seconds
from destination_mistral.config import Limits

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
    async def fake_sleep(seconds):
        sleeps.append(seconds)

    return MistralClient(CONNECTION, Limits(**limits), sender=sender, sleep=fake_sleep)


def test_retry_after_is_honoured_on_429():
    sender, calls = scripted((429, {"Retry-After": "2"}, {"message": "Rate limit exceeded"}), (200, {}, {"ok": True}))
    sleeps = []
    client = make_client(sender, sleeps)
    assert asyncio.run(client.post("chat/completions", {})) == {"ok": True}
    assert sleeps and sleeps[0] == pytest.approx(2.0, abs=0.01) and max(sleeps) <= 2.0, "the wait must be the server's Retry-After, not a fixed sleep"
    assert len(calls) == 2 and client.stats.throttled == 1


def test_retries_are_bounded_in_count_and_report_status_and_message():
    sender, calls = scripted(*[(503, {}, {"message": "overloaded"})] * 3)
    sleeps = []
    client = make_client(sender, sleeps, max_retries=2)
    with pytest.raises(ApiError) as caught:
        asyncio.run(client.post("embeddings", {}))
    assert len(calls) == 3, "max_retries=2 means three attempts"
    assert "HTTP 503" in caught.value.message and "overloaded" in caught.value.message
    assert all(s <= 30 for s in sleeps), "backoff must stay short"


def test_retries_are_bounded_in_total_time():
    sender, calls = scripted(*[(429, {"Retry-After": "40"}, {})] * 5)
    client = make_client(sender, [], max_retries=10, max_retry_seconds=60)
    with pytest.raises(ApiError):
        asyncio.run(client.post("embeddings", {}))
    assert len(calls) == 2, "a retry that would exceed max_retry_seconds must not be attempted"


def test_client_errors_are_not_retried():
    sender, calls = scripted((422, {}, {"detail": [{"loc": ["body", "foo"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}]}))
    client = make_client(sender, [])
    with pytest.raises(ApiError) as caught:
        asyncio.run(client.post("chat/completions", {}))
    assert len(calls) == 1
    assert "Extra inputs are not permitted" in caught.value.message


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
    pacer = RatePacer(None, clock=lambda: now[0])
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
    pacer = RatePacer(10.0, clock=lambda: now[0])
    delays = [pacer.delay() for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_pacer_slows_when_ratelimit_headers_say_the_budget_is_nearly_spent():
    pacer = RatePacer(None)
    pacer.on_success({"x-ratelimit-limit-req-minute": "600", "x-ratelimit-remaining-req-minute": "10"})
    assert pacer.rate == pytest.approx(10.0)

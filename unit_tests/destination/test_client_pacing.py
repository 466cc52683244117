"""Adaptive pacing: the pace comes from the cap and the server's headers, and a 429 makes only the
refused request wait, never every request."""

import asyncio

import orjson
import pytest

from destination_mistral.http.client import MistralClient
from destination_mistral.http.pacer import Pacer
from destination_mistral.settings import Limits
from mistral_connection import MistralConnection

CONNECTION = MistralConnection.from_config({"api_key": "sk-secret-value", "base_url": "http://127.0.0.1:1"})


def test_pacer_learns_the_limit_from_the_ratelimit_headers():
    now = [0.0]
    pacer = Pacer(None, clock=lambda: now[0])
    assert pacer.delay() == 0.0, "nothing is known yet: no pacing"
    pacer.on_success({"x-ratelimit-limit-req-minute": "600", "x-ratelimit-remaining-req-minute": "590"})
    assert pacer.rate == pytest.approx(10.0), "600 requests a minute is 10 requests/s"
    burst = [pacer.delay() for _ in range(9)]
    assert burst == [0.0] * 9, "one second's worth that the server says it has room for starts at once, less one"
    delays = [pacer.delay() for _ in range(3)]
    assert delays == pytest.approx([0.0, 0.1, 0.2]), "then starts must be spaced at the learned pace"
    pacer.on_success({"x-ratelimit-limit-req-minute": "600", "x-ratelimit-remaining-req-minute": "590"})
    assert pacer.delay() == pytest.approx(0.3), "a later remaining count is stale and gives no new burst"
    for _ in range(100):
        pacer.on_success({"x-ratelimit-limit-req-minute": "600"})
    assert pacer.rate == pytest.approx(10.0), "success must not grow the pace past the announced limit"


def test_the_first_burst_is_no_larger_than_what_the_server_says_remains():
    now = [0.0]
    pacer = Pacer(None, clock=lambda: now[0])
    pacer.delay()
    pacer.on_success({"x-ratelimit-limit-req-minute": "600", "x-ratelimit-remaining-req-minute": "3"})
    assert [pacer.delay() for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_a_429_ends_the_burst():
    now = [0.0]
    pacer = Pacer(None, clock=lambda: now[0])
    pacer.on_success({"x-ratelimit-limit-req-minute": "600", "x-ratelimit-remaining-req-minute": "590"})
    pacer.on_throttled(1.0)
    assert pacer.delay() == 0.0 and pacer.delay() > 0, "after a refusal, starts are spaced again"


def test_configured_cap_wins_over_a_higher_announced_limit():
    pacer = Pacer(5.0)
    pacer.on_success({"x-ratelimit-limit-req-minute": "6000"})
    assert pacer.rate == pytest.approx(5.0)


def test_many_429s_at_once_are_one_slow_down_signal():
    now = [0.0]
    pacer = Pacer(None, clock=lambda: now[0])
    for _ in range(40):
        pacer.delay()
    pacer.on_throttled(1.0)
    first = pacer.rate
    for _ in range(63):
        pacer.on_throttled(1.0)
    assert pacer.rate == first, "concurrent refusals must not compound into a near-stop"
    now[0] += 2.0
    pacer.on_throttled(1.0)
    assert pacer.rate < first, "a refusal after the interval slows the pace again"


def test_a_429_delays_only_the_refused_request():
    """Two requests in flight; the first is refused with Retry-After: 5. The second must go on at
    once, and the first must wait its own 5 s (a fake clock: the test takes no time)."""
    log = []
    answers = {"a": [(429, {"Retry-After": "5"}), (200, {})], "b": [(200, {})]}
    loop_time = [0.0]

    async def sender(method, url, body):
        name = orjson.loads(body)["name"]
        status, headers = answers[name].pop(0)
        log.append((name, status, loop_time[0]))
        return status, headers, orjson.dumps({"name": name})

    async def fake_sleep(seconds):
        loop_time[0] += seconds
        await asyncio.sleep(0)

    async def main():
        client = MistralClient(CONNECTION, Limits(max_concurrent_requests=4), sender=sender, sleep=fake_sleep)
        return await asyncio.gather(client.post("embeddings", {"name": "a"}), client.post("embeddings", {"name": "b"}))

    results = asyncio.run(main())
    assert results == [{"name": "a"}, {"name": "b"}]
    assert [(name, status) for name, status, _ in log] == [("a", 429), ("b", 200), ("a", 200)], (
        f"request b must go while a waits, not after a's retry ({log})"
    )
    a_retry = [t for name, status, t in log if name == "a"][1]
    assert a_retry >= 5.0, "the refused request must wait the server's Retry-After"


def test_the_first_request_goes_alone_and_its_headers_pace_the_rest():
    in_flight = [0]
    peak = [0]
    starts = []

    async def sender(method, url, body):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        starts.append(len(starts))
        await asyncio.sleep(0)
        in_flight[0] -= 1
        return 200, {"x-ratelimit-limit-req-minute": "1200"}, b"{}"

    sleeps = []

    async def fake_sleep(seconds):
        sleeps.append(seconds)

    async def main():
        client = MistralClient(CONNECTION, Limits(max_concurrent_requests=16), sender=sender, sleep=fake_sleep)
        first = asyncio.ensure_future(client.post("chat/completions", {}))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(client.post("chat/completions", {})) for _ in range(5)]
        await asyncio.gather(first, *rest)
        return client

    client = asyncio.run(main())
    assert client.pacer.rate == pytest.approx(20.0), "the pace is learned from the first response"
    assert sleeps and all(s == pytest.approx(0.05 * (i + 1), abs=0.01) for i, s in enumerate(sleeps[:4])), (
        f"requests after the first are spaced at the learned pace: {sleeps}"
    )

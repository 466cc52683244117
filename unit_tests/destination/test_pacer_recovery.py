"""The pace recovers: a refusal that is not about the pace does not slow the sync, and a limit raised
in the middle of a sync is used at once, by starts that were booked at the old pace too."""

import asyncio

import pytest

from destination_mistral.http.client import MistralClient
from destination_mistral.http.pacer import Pacer
from destination_mistral.settings import Limits
from mistral_connection import MistralConnection

CONNECTION = MistralConnection.from_config({"api_key": "sk-secret-value", "base_url": "http://127.0.0.1:1"})


def test_a_429_while_the_server_says_requests_are_left_does_not_cut_the_pace():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.on_success({"x-ratelimit-limit-req-minute": "480", "x-ratelimit-remaining-req-minute": "400"})
    assert pacer.rate == 8.0
    for _ in range(20):  # a burst of refusals from a passing overload, a second apart
        now[0] += 1.0
        _, ticket = pacer.reserve(10, "r")
        pacer.on_throttled(
            1.0, {"x-ratelimit-limit-req-minute": "480", "x-ratelimit-remaining-req-minute": "300"}, ticket
        )
    assert pacer.rate == 8.0, "the server had requests left: the pace was not the cause"


def test_a_pace_cut_by_refusals_grows_back_quickly_once_they_stop():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    for _ in range(10):  # refusals that say nothing: the pace is cut
        now[0] += 0.1
        pacer.reserve(0, "r")
    for _ in range(8):
        now[0] += 1.0
        _, ticket = pacer.reserve(0, "r")
        pacer.on_throttled(None, {}, ticket)
    cut = pacer.rate
    assert cut is not None and cut < 1.0
    for _ in range(30):  # answers again, a little apart
        now[0] += max(1.0 / pacer.rate, 0.05)
        pacer.on_success({})
    assert pacer.rate > 20 * cut, (
        f"the pace should recover within seconds, not minutes: {cut:.2f} -> {pacer.rate:.2f}/s"
    )


def test_starts_booked_at_a_low_token_limit_are_booked_again_when_the_limit_rises():
    now = [0.0]
    sleeps = []

    async def fake_sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds
        if len(sleeps) == 2:  # meanwhile an answer announces a far higher limit
            client.pacer.on_success(
                {"x-ratelimit-limit-tokens-minute": "2000000", "x-ratelimit-remaining-tokens-minute": "1999000"}
            )

    client = MistralClient(CONNECTION, Limits(), sleep=fake_sleep, clock=lambda: now[0])
    client.pacer.on_success({"x-ratelimit-limit-tokens-minute": "3000", "x-ratelimit-remaining-tokens-minute": "0"})

    async def main():
        return await client._wait_for_start(1_000, "POST /v1/chat/completions")

    ticket = asyncio.run(main())
    assert now[0] < 5.0, f"booked ~20 s ahead at 3,000 tokens/min, it should start soon after the rise: {now[0]:.1f} s"
    assert ticket.started <= now[0] + 1e-6


def test_a_limit_no_longer_announced_on_answers_is_lifted():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.on_success(
        {
            "x-ratelimit-limit-req-minute": "12",
            "x-ratelimit-limit-tokens-minute": "600",
            "x-ratelimit-remaining-tokens-minute": "0",
        }
    )
    assert pacer.rate == 0.2 and pacer.tokens_per_minute == 600
    pacer.on_success({})  # the workspace's limits were removed: the answers stop naming them
    assert pacer.tokens_per_minute is None and pacer.rate is None
    assert pacer.delay(5_000, "r") == 0.0, "no limit left to wait for"


def test_a_server_that_names_its_limits_only_when_it_refuses_keeps_them():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    _, ticket = pacer.reserve(100, "r")
    pacer.on_throttled(
        1.0, {"x-ratelimit-limit-tokens-minute": "600", "x-ratelimit-remaining-tokens-minute": "0"}, ticket
    )
    pacer.on_success({})
    assert pacer.tokens_per_minute == 600


def test_a_raised_request_limit_gives_back_the_slots_booked_at_the_old_pace():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.on_success({"x-ratelimit-limit-req-minute": "12"})  # 0.2/s
    waits = [pacer.delay(0, "r") for _ in range(10)]
    assert max(waits) > 40
    pacer.on_success({"x-ratelimit-limit-req-minute": "60000"})
    assert pacer.delay(0, "r") < 1.0, "a start booked after the rise goes at the new pace"


def test_refusals_without_a_retry_after_wait_longer_and_longer():
    sleeps, now = [], [0.0]
    answers = iter(
        [(429, {"Retry-After": "0"}, b'{"message": "Rate limit exceeded"}')] * 6 + [(200, {}, b'{"ok": true}')]
    )

    async def sender(method, url, body):
        return next(answers)

    async def fake_sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    client = MistralClient(CONNECTION, Limits(), sender=sender, sleep=fake_sleep, clock=lambda: now[0])
    assert asyncio.run(client.post("chat/completions", {})) == {"ok": True}
    # Six refusals in a row: 0.05 s, then twice as long each time.
    assert sum(sleeps) == pytest.approx(0.05 * (2**6 - 1)), f"waits grow while every request is refused: {sleeps}"

"""The account limits over HTTP: requests per second, tokens per minute (smooth and fixed), tokens per
month. Headers on every response, Retry-After per shape, refusals counted by cause, the knobs on the
command line and at run time, and how the official SDK surfaces a refusal. Time is stepped on a fake
clock (`EmulatorServer.use_clock`), never slept."""

import calendar

import pytest
import requests

from mistral_emulator import EmulatorProcess, EmulatorSettings
from mistral_emulator.inference import TOKENS_PER_MESSAGE
from mistral_emulator.tokens import count_embedding_tokens, count_prompt_tokens

TEXT = "the battery is great and the screen is bright, rated five of five"
COST = count_embedding_tokens("mistral-embed", TEXT)  # an embedding input: by the model's tokenizer
RATE_LIMITED = {
    "object": "error",
    "message": "Rate limit exceeded",
    "type": "rate_limited",
    "param": None,
    "code": "1300",
}
MONTH_SPENT = {
    "object": "error",
    "message": "Monthly token limit exceeded",
    "type": "rate_limited",
    "param": None,
    "code": "1300",
}


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def emu(fresh_emulator):
    return fresh_emulator


@pytest.fixture
def clock(emu):
    clock = Clock(1000.0)
    # Mid-month, so that the calendar month does not turn during a test.
    emu.use_clock(clock, Clock(float(calendar.timegm((2026, 3, 15, 12, 0, 0)))))
    return clock


def _h(emu):
    return {"Authorization": f"Bearer {emu.api_key}"}


def embed(emu, n=1):
    return requests.post(
        emu.base_url + "/v1/embeddings",
        headers=_h(emu),
        timeout=10,
        json={"model": "mistral-embed", "input": [TEXT] * n},
    )


def chat(emu, stream=False):
    return requests.post(
        emu.base_url + "/v1/chat/completions",
        headers=_h(emu),
        timeout=10,
        stream=stream,
        json={"model": "mistral-small-latest", "stream": stream, "messages": [{"role": "user", "content": TEXT}]},
    )


def stats(emu):
    return requests.get(emu.base_url + "/admin/stats", timeout=10).json()


def test_every_v1_response_carries_the_headers_of_each_configured_limit(emu, clock):
    emu.configure(rate_limit_rps=100, tokens_per_minute=10_000, tokens_per_month=1_000_000)
    listing = requests.get(emu.base_url + "/v1/models", headers=_h(emu), timeout=10)
    assert listing.status_code == 200
    assert listing.headers["x-ratelimit-limit-req-minute"] == "6000"
    assert listing.headers["x-ratelimit-limit-tokens-minute"] == "10000"
    assert listing.headers["x-ratelimit-remaining-tokens-minute"] == "10000", "listing spends no tokens"
    assert listing.headers["x-ratelimit-tokens-query-cost"] == "0"
    assert listing.headers["x-ratelimit-limit-tokens-month"] == "1000000"
    assert listing.headers["x-ratelimit-remaining-tokens-month"] == "1000000"

    r = embed(emu, 3)
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == 3 * COST
    assert r.headers["x-ratelimit-tokens-query-cost"] == str(3 * COST), "an embedding costs its inputs' tokens"
    assert r.headers["x-ratelimit-remaining-tokens-minute"] == str(10_000 - 3 * COST)
    assert r.headers["x-ratelimit-remaining-tokens-month"] == str(1_000_000 - 3 * COST)
    assert int(r.headers["x-ratelimit-remaining-req-minute"]) < 100


def test_chat_costs_its_prompt_per_minute_and_its_whole_usage_per_month(emu, clock):
    emu.configure(tokens_per_minute=10_000, tokens_per_month=1_000_000)
    for stream in (False, True):
        before = int(
            requests.get(emu.base_url + "/v1/models", headers=_h(emu), timeout=10).headers[
                "x-ratelimit-remaining-tokens-month"
            ]
        )
        r = chat(emu, stream=stream)
        assert r.status_code == 200
        prompt = count_prompt_tokens(TEXT) + TOKENS_PER_MESSAGE
        assert r.headers["x-ratelimit-tokens-query-cost"] == str(prompt), f"stream={stream}: the prompt is the cost"
        after = int(
            requests.get(emu.base_url + "/v1/models", headers=_h(emu), timeout=10).headers[
                "x-ratelimit-remaining-tokens-month"
            ]
        )
        if not stream:
            usage = r.json()["usage"]
            assert before - after == usage["total_tokens"], "the month is charged prompt and completion tokens"
        else:
            assert b"[DONE]" in r.content and before - after > prompt


def test_smooth_tokens_per_minute_refuses_with_the_refill_time(emu, clock):
    # 600 tokens per minute = 10 per second; the bucket holds 600.
    emu.configure(tokens_per_minute=600, tpm_shape="smooth")
    n = 600 // COST
    assert embed(emu, n).status_code == 200
    left = 600 - n * COST
    refused = embed(emu, 1)
    assert refused.status_code == 429
    assert refused.json() == RATE_LIMITED
    expected = -(-(COST - left) // 10)  # seconds for the missing tokens at 10/s, rounded up
    assert refused.headers["Retry-After"] == str(max(1, expected))
    assert refused.headers["x-ratelimit-remaining-tokens-minute"] == str(left)
    assert refused.headers["x-ratelimit-tokens-query-cost"] == str(COST)
    clock.now += max(1, expected)
    assert embed(emu, 1).status_code == 200, "after Retry-After the same request is accepted"
    counted = stats(emu)
    assert counted["rate_limited_by"] == {"rps": 0, "tokens_minute": 1, "tokens_month": 0}
    assert counted["routes"]["POST /v1/embeddings"] == {"200": 2, "429": 1}


def test_fixed_window_refuses_until_the_window_ends(emu, clock):
    emu.configure(tokens_per_minute=600, tpm_shape="fixed")
    n = 600 // COST
    assert embed(emu, n).status_code == 200
    clock.now += 20
    refused = embed(emu, 1)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "40"
    clock.now += 39.5
    assert embed(emu, 1).headers["Retry-After"] == "1", "no tokens come back before the window ends"
    clock.now += 0.5
    fresh = embed(emu, n)
    assert fresh.status_code == 200, "a new window holds the whole limit again"
    assert stats(emu)["rate_limited_by"]["tokens_minute"] == 2


def test_short_window_announces_the_per_minute_limit(emu, clock):
    emu.configure(tokens_per_minute=6_000, tpm_shape="fixed", tpm_window_seconds=5)
    r = embed(emu, 1)
    assert r.headers["x-ratelimit-limit-tokens-minute"] == "6000"
    assert r.headers["x-ratelimit-remaining-tokens-minute"] == str(500 - COST), "5 s of a 6000/min rate is 500"


@pytest.mark.parametrize("shape", ["smooth", "fixed"])
def test_request_over_the_whole_limit_is_a_400_that_says_to_split(emu, clock, shape):
    emu.configure(tokens_per_minute=COST * 2, tpm_shape=shape)
    r = embed(emu, 3)
    assert r.status_code == 400, "a 429 would be retried forever: no wait makes room for it"
    body = r.json()
    assert body["type"] == "invalid_request_prompt" and "split into more batches" in body["message"]
    assert f"{COST * 2} tokens per minute" in body["message"]
    assert embed(emu, 2).status_code == 200, "nothing was spent by the refused request"


def test_spent_month_refuses_every_request_that_costs_tokens(emu, clock):
    emu.configure(tokens_per_month=COST)
    assert embed(emu, 1).status_code == 200
    for response in (embed(emu, 1), chat(emu), chat(emu, stream=True)):
        assert response.status_code == 429
        assert response.json() == MONTH_SPENT
        assert response.headers["x-ratelimit-remaining-tokens-month"] == "0"
        assert response.headers["x-ratelimit-limit-tokens-month"] == str(COST)
        assert int(response.headers["Retry-After"]) == 16 * 86400 + 12 * 3600, "until 1 April 00:00 UTC"
    listing = requests.get(emu.base_url + "/v1/files", headers=_h(emu), timeout=10)
    assert listing.status_code == 200, "reading the account costs no tokens"
    assert listing.headers["x-ratelimit-remaining-tokens-month"] == "0"
    assert stats(emu)["rate_limited_by"] == {"rps": 0, "tokens_minute": 0, "tokens_month": 3}


def test_requests_per_second_refusal_is_counted_as_rps(emu, clock):
    emu.configure(rate_limit_rps=2)
    codes = [requests.get(emu.base_url + "/v1/models", headers=_h(emu), timeout=10) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert codes[2].headers["Retry-After"] == "1" and codes[2].headers["x-ratelimit-remaining-req-minute"] == "0"
    assert codes[2].headers["x-ratelimit-limit-req-minute"] == "120"
    clock.now += 0.5
    assert requests.get(emu.base_url + "/v1/models", headers=_h(emu), timeout=10).status_code == 200
    assert stats(emu)["rate_limited_by"] == {"rps": 1, "tokens_minute": 0, "tokens_month": 0}


def test_admin_config_sets_limits_at_run_time_and_stats_count_refusals_by_cause(emu):
    def config(**knobs):
        r = requests.post(emu.base_url + "/admin/config", json=knobs, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    knobs = config(rate_limit_rps=1)
    assert {"tokens_per_minute", "tpm_shape", "tpm_window_seconds", "tokens_per_month", "rate_limit_body"} <= set(knobs)
    requests.get(emu.base_url + "/v1/models", headers=_h(emu), timeout=10)
    assert requests.get(emu.base_url + "/v1/models", headers=_h(emu), timeout=10).status_code == 429
    # 60 tokens per minute refill 1 per second: a second request right after the first cannot fit.
    config(rate_limit_rps=None, tokens_per_minute=60, tpm_shape="fixed")
    assert embed(emu, 1).status_code == 200
    assert embed(emu, 60 // COST).status_code == 429
    config(tokens_per_minute=None, tokens_per_month=1)
    assert embed(emu, 1).status_code == 200, "the month admits while anything is left"
    assert embed(emu, 1).status_code == 429
    counted = stats(emu)
    assert counted["rate_limited_by"] == {"rps": 1, "tokens_minute": 1, "tokens_month": 1}
    assert counted["rate_limited"] == 3
    bad = requests.post(emu.base_url + "/admin/config", json={"tpm_shape": "sliding"}, timeout=10)
    assert bad.status_code == 400 and "tpm_shape" in bad.json()["detail"]


def test_setting_a_limit_at_run_time_starts_fresh_meters(emu, clock):
    emu.configure(tokens_per_month=COST)
    embed(emu, 1)
    assert embed(emu, 1).status_code == 429
    emu.configure(tokens_per_month=COST)
    assert embed(emu, 1).status_code == 200, "a test or a benchmark run starts from a known state"


def test_legacy_429_body_is_selectable_and_applies_to_injected_429s(emu, clock):
    emu.configure(rate_limit_rps=1, rate_limit_body="legacy")
    embed(emu, 1)
    assert embed(emu, 1).json() == {"message": "Requests rate limit exceeded"}
    emu.configure(rate_limit_rps=None, tokens_per_month=1)
    embed(emu, 1)
    assert embed(emu, 1).json() == {"message": "Monthly token limit exceeded"}
    emu.configure(tokens_per_month=None, fault_429=1.0)
    assert embed(emu, 1).json() == {"message": "Requests rate limit exceeded"}


def test_command_line_flags_set_the_limits():
    settings = EmulatorSettings(files=1, batch_jobs=1, agents=1, fine_tuning_jobs=1)
    settings.update(
        tokens_per_minute=5_000_000,
        tpm_shape="fixed",
        tokens_per_month=9_000_000,
        rate_limit_rps=12,
        rate_limit_body="legacy",
    )
    with EmulatorProcess(api_key="k", settings=settings) as process:
        config = process.configure()
        assert (
            config["tokens_per_minute"],
            config["tpm_shape"],
            config["tokens_per_month"],
            config["rate_limit_rps"],
            config["rate_limit_body"],
        ) == (5_000_000, "fixed", 9_000_000, 12, "legacy")
        r = requests.get(process.base_url + "/v1/models", headers={"Authorization": "Bearer k"}, timeout=10)
        assert r.headers["x-ratelimit-limit-tokens-minute"] == "5000000"
        assert r.headers["x-ratelimit-limit-req-minute"] == "720", "12 requests per second, announced per minute"
        assert r.headers["x-ratelimit-limit-tokens-month"] == "9000000"


@pytest.mark.parametrize(
    "knobs,message",
    [
        ({"tokens_per_minute": 60, "tpm_shape": "smooth"}, "Rate limit exceeded"),
        ({"rate_limit_rps": 1}, "Rate limit exceeded"),
        ({"tokens_per_month": 1}, "Monthly token limit exceeded"),
    ],
    ids=["tokens_minute", "rps", "tokens_month"],
)
def test_official_sdk_raises_sdkerror_429_for_each_limit(emu, clock, knobs, message):
    pytest.importorskip("mistralai")
    from mistralai.client import Mistral
    from mistralai.client import errors as sdk_errors

    emu.configure(**knobs)
    client = Mistral(api_key=emu.api_key, server_url=emu.base_url)
    client.embeddings.create(model="mistral-embed", inputs=[TEXT])
    with pytest.raises(sdk_errors.SDKError) as info:
        client.embeddings.create(model="mistral-embed", inputs=[TEXT] * (60 // COST))
    assert info.value.status_code == 429
    assert message in str(info.value.body)

"""The emulator's account limits on a fake clock: the requests-per-second bucket, both shapes of the
tokens-per-minute meter, the monthly quota, the headers and the Retry-After they give."""

import calendar

import pytest

from mistral_emulator.errors import ApiError
from mistral_emulator.ratelimit import (
    FixedWindow,
    MonthQuota,
    RateLimiter,
    TokenBucket,
    build_tpm_meter,
    next_month_start,
    retry_after_header,
)
from mistral_emulator.settings import EmulatorSettings


class Clock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


def limiter_with(clock=None, wall=None, **knobs):
    settings = EmulatorSettings()
    settings.update(**knobs)
    return RateLimiter(clock=clock or Clock(), wall=wall or Clock(1_767_225_600.0)), settings


def refusal(fn, *args):
    with pytest.raises(ApiError) as info:
        fn(*args)
    return info.value


# ---- requests per second -------------------------------------------------------------------------------


def test_bucket_allows_one_second_of_burst_then_refuses_with_the_wait():
    clock = Clock()
    bucket = TokenBucket(5, clock=clock)
    assert all(bucket.try_acquire()[0] for _ in range(5)), "a full bucket holds one second of requests"
    accepted, wait = bucket.try_acquire()
    assert not accepted and abs(wait - 0.2) < 1e-9, f"next token arrives in 1/rate seconds, got {wait}"
    clock.now += 0.2
    assert bucket.try_acquire()[0], "a refilled token is usable"


def test_slow_rates_still_allow_one_request():
    bucket = TokenBucket(0.5, clock=Clock())
    assert bucket.try_acquire()[0]
    accepted, wait = bucket.try_acquire()
    assert not accepted and wait == 2.0


def test_retry_after_is_whole_seconds_at_least_one_and_ignores_float_noise():
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"
    assert retry_after_header(2.0000000000004) == "2", "float noise must not add a whole second"


def test_rps_headers_report_the_minute_limit_and_the_requests_left_now():
    limiter, settings = limiter_with(rate_limit_rps=2)
    headers = limiter.begin("k", settings).headers()
    assert headers["x-ratelimit-limit-req-minute"] == "120"
    assert headers["x-ratelimit-remaining-req-minute"] == "1"
    assert "x-ratelimit-limit-tokens-minute" not in headers, "no token headers without a token limit"


def test_rps_refusal_is_a_429_naming_its_cause_with_retry_after():
    clock = Clock()
    limiter, settings = limiter_with(clock, rate_limit_rps=2)
    limiter.begin("k", settings)
    limiter.begin("k", settings)
    error = refusal(limiter.begin, "k", settings)
    assert error.status == 429 and error.cause == "rps"
    assert error.headers["Retry-After"] == "1" and error.headers["x-ratelimit-remaining-req-minute"] == "0"
    assert limiter.begin("other-key", settings) is not None, "each key has its own bucket"


def test_no_limit_configured_means_no_verdict_and_no_headers():
    limiter, settings = limiter_with()
    assert limiter.begin("k", settings) is None


# ---- tokens per minute, smooth -------------------------------------------------------------------------


def test_smooth_bucket_holds_a_minute_and_refills_at_a_sixtieth_per_second():
    clock = Clock()
    meter = build_tpm_meter(6000, "smooth", 60, clock)
    assert meter.try_acquire(6000)[0], "a full bucket holds the whole per-minute limit"
    accepted, wait = meter.try_acquire(250)
    assert not accepted and wait == pytest.approx(2.5), "250 tokens at 100 tokens/s"
    clock.now += 2.5
    assert meter.try_acquire(250)[0]


def test_smooth_refusal_retry_after_is_the_refill_time_rounded_up():
    clock = Clock()
    limiter, settings = limiter_with(clock, tokens_per_minute=600, tpm_shape="smooth")
    limiter.begin("k", settings).admit(590)
    error = refusal(limiter.begin("k", settings).admit, 35)
    # 10 tokens left, 25 missing at 10 tokens/s: 2.5 s, sent as 3.
    assert error.status == 429 and error.cause == "tokens_minute"
    assert error.headers["Retry-After"] == "3"
    assert error.headers["x-ratelimit-remaining-tokens-minute"] == "10"
    assert error.headers["x-ratelimit-tokens-query-cost"] == "35"
    clock.now += 3
    limiter.begin("k", settings).admit(35)


def test_admitted_request_headers_show_its_cost_and_what_is_left():
    limiter, settings = limiter_with(tokens_per_minute=1000)
    request = limiter.begin("k", settings)
    request.admit(52)
    headers = request.headers()
    assert headers["x-ratelimit-limit-tokens-minute"] == "1000"
    assert headers["x-ratelimit-remaining-tokens-minute"] == "948"
    assert headers["x-ratelimit-tokens-query-cost"] == "52"
    other = limiter.begin("k", settings)
    assert other.headers()["x-ratelimit-tokens-query-cost"] == "0", "a route that spends no tokens costs 0"


def test_a_refused_request_spends_no_tokens():
    clock = Clock()
    limiter, settings = limiter_with(clock, tokens_per_minute=600)
    limiter.begin("k", settings).admit(500)
    refusal(limiter.begin("k", settings).admit, 200)
    limiter.begin("k", settings).admit(100)


# ---- tokens per minute, fixed window -------------------------------------------------------------------


def test_fixed_window_refuses_what_does_not_fit_until_the_window_ends():
    clock = Clock()
    window = FixedWindow(1000, 60, clock=clock)
    assert window.try_acquire(900)[0]
    clock.now += 20
    accepted, wait = window.try_acquire(200)
    assert not accepted and wait == pytest.approx(40), "a fixed window gives no tokens back before it ends"
    clock.now += 39.9
    assert not window.try_acquire(200)[0], "still the same window"
    clock.now += 0.1
    assert window.try_acquire(1000)[0], "a new window holds the whole budget"


def test_fixed_window_skips_idle_windows_and_keeps_its_phase():
    clock = Clock(0.0)
    window = FixedWindow(100, 10, clock=clock)
    window.try_acquire(100)
    clock.now = 1234.5  # 123 windows later, 4.5 s into one
    assert window.try_acquire(100)[0]
    accepted, wait = window.try_acquire(1)
    assert not accepted and wait == pytest.approx(5.5)


def test_fixed_refusal_retry_after_is_the_time_left_in_the_window():
    clock = Clock()
    limiter, settings = limiter_with(clock, tokens_per_minute=600, tpm_shape="fixed")
    limiter.begin("k", settings).admit(600)
    clock.now += 15.2
    error = refusal(limiter.begin("k", settings).admit, 1)
    assert error.headers["Retry-After"] == "45" and error.cause == "tokens_minute"
    assert error.headers["x-ratelimit-remaining-tokens-minute"] == "0"


def test_short_window_keeps_the_per_minute_rate_but_shrinks_the_burst():
    clock = Clock()
    limiter, settings = limiter_with(clock, tokens_per_minute=6000, tpm_shape="fixed", tpm_window_seconds=5)
    request = limiter.begin("k", settings)
    request.admit(500)
    assert request.headers()["x-ratelimit-limit-tokens-minute"] == "6000", "the header announces the per-minute rate"
    error = refusal(limiter.begin("k", settings).admit, 1)
    assert error.headers["Retry-After"] == "5"


@pytest.mark.parametrize("shape", ["smooth", "fixed"])
def test_a_request_larger_than_the_whole_limit_is_a_400_not_a_429(shape):
    # A 429 would be retried forever: no wait makes room for it.
    limiter, settings = limiter_with(tokens_per_minute=1000, tpm_shape=shape)
    error = refusal(limiter.begin("k", settings).admit, 1001)
    assert error.status == 400 and error.cause is None
    assert "1000 tokens per minute" in error.body["message"] and "split into more batches" in error.body["message"]
    limiter.begin("k", settings).admit(1000)


def test_changing_the_shape_rebuilds_the_meter():
    limiter, settings = limiter_with(tokens_per_minute=100)
    limiter.begin("k", settings).admit(100)
    settings.update(tpm_shape="fixed")
    limiter.begin("k", settings).admit(100)


def test_reset_gives_every_key_full_meters():
    limiter, settings = limiter_with(tokens_per_minute=100, rate_limit_rps=1)
    limiter.begin("k", settings).admit(100)
    limiter.reset()
    limiter.begin("k", settings).admit(100)


# ---- tokens per month ----------------------------------------------------------------------------------


def test_month_admits_while_anything_is_left_then_refuses_every_request():
    limiter, settings = limiter_with(tokens_per_month=100)
    first = limiter.begin("k", settings)
    first.admit(60)
    first.charge_month(30)
    assert first.headers()["x-ratelimit-remaining-tokens-month"] == "10"
    second = limiter.begin("k", settings)
    second.admit(50)  # 10 left: admitted, and the month overdraws
    assert second.headers()["x-ratelimit-remaining-tokens-month"] == "0"
    for cost in (1, 0):
        error = refusal(limiter.begin("k", settings).admit, cost)
        assert error.status == 429 and error.cause == "tokens_month"
        assert error.body == {
            "object": "error",
            "message": "Monthly token limit exceeded",
            "type": "rate_limited",
            "param": None,
            "code": "1300",
        }
        assert error.headers["x-ratelimit-limit-tokens-month"] == "100"
        assert error.headers["x-ratelimit-remaining-tokens-month"] == "0"


def test_spent_month_retry_after_points_at_the_next_calendar_month():
    wall = Clock(calendar.timegm((2026, 3, 31, 23, 0, 0)))
    limiter, settings = limiter_with(wall=wall, tokens_per_month=10)
    limiter.begin("k", settings).admit(10)
    error = refusal(limiter.begin("k", settings).admit, 1)
    assert error.headers["Retry-After"] == "3600"
    wall.now += 3600
    limiter.begin("k", settings).admit(5)


def test_next_month_start_wraps_the_year():
    assert next_month_start(calendar.timegm((2026, 12, 15, 12, 0, 0))) == calendar.timegm((2027, 1, 1, 0, 0, 0))


def test_month_quota_is_checked_before_the_minute():
    limiter, settings = limiter_with(tokens_per_minute=1000, tokens_per_month=10)
    limiter.begin("k", settings).admit(10)
    assert refusal(limiter.begin("k", settings).admit, 5000).cause == "tokens_month", (
        "a spent month is the answer that tells the client to stop, whatever the request"
    )


def test_month_quota_resets_the_used_count_on_a_new_month():
    wall = Clock(calendar.timegm((2026, 1, 31, 23, 59, 59)))
    quota = MonthQuota(5, wall)
    quota.charge(5)
    assert quota.spent()
    wall.now += 1
    assert not quota.spent() and quota.remaining() == 5


# ---- 429 bodies ----------------------------------------------------------------------------------------


def test_legacy_body_shape_is_selectable():
    limiter, settings = limiter_with(rate_limit_rps=1, rate_limit_body="legacy")
    limiter.begin("k", settings)
    assert refusal(limiter.begin, "k", settings).body == {"message": "Requests rate limit exceeded"}


def test_bad_knob_values_are_refused():
    settings = EmulatorSettings()
    for knobs in (
        {"tpm_shape": "sliding"},
        {"rate_limit_body": "2025"},
        {"tpm_window_seconds": 0},
        {"tokens_per_minute": -1},
    ):
        with pytest.raises(ValueError):
            settings.update(**knobs)

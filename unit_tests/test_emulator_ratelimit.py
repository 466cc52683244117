"""The emulator's token bucket and Retry-After rounding."""

from mistral_emulator.ratelimit import RateLimiter, TokenBucket, retry_after_header


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


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


def test_retry_after_is_whole_seconds_at_least_one():
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"


def test_headers_report_the_minute_limit_and_the_requests_left_now():
    limiter = RateLimiter(clock=Clock())
    accepted, _, headers = limiter.check("k", 2)
    assert accepted
    assert headers["x-ratelimit-limit-req-minute"] == "120"
    assert headers["x-ratelimit-remaining-req-minute"] == "1"
    assert limiter.check("k", None) is None, "no limit configured means no verdict and no headers"

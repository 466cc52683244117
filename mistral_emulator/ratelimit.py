"""Per-key token bucket. The bucket holds one second of requests (at least one), refills at the
configured rate, and tells a refused caller how long until the next token."""

from __future__ import annotations

import math
import time
from typing import Callable, Optional


class TokenBucket:
    def __init__(self, rate: float, capacity: Optional[float] = None, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self.clock = clock
        self.level = self.capacity
        self.stamp = clock()

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def try_acquire(self) -> tuple[bool, float]:
        """(accepted, seconds to wait before a retry would be accepted)."""
        self._refill(self.clock())
        if self.level >= 1.0:
            self.level -= 1.0
            return True, 0.0
        return False, (1.0 - self.level) / self.rate

    def remaining(self) -> int:
        """Requests that would be accepted right now."""
        return int(math.floor(self.level))


class RateLimiter:
    """One bucket per API key, rebuilt when the configured rate changes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}

    def check(self, key: str, rate: Optional[float]) -> Optional[tuple[bool, float, dict[str, str]]]:
        """None when rate limiting is off; else (accepted, retry_after_seconds, headers)."""
        if not rate:
            return None
        bucket = self.buckets.get(key)
        if bucket is None or bucket.rate != rate:
            bucket = self.buckets[key] = TokenBucket(rate, clock=self.clock)
        accepted, wait = bucket.try_acquire()
        headers = {
            "x-ratelimit-limit-req-minute": str(int(math.ceil(rate * 60))),
            # Documented choice: requests that would be accepted right now (the bucket level), so a
            # client that sees 0 knows its next request would be refused.
            "x-ratelimit-remaining-req-minute": str(bucket.remaining()),
        }
        return accepted, wait, headers


def retry_after_header(wait_seconds: float) -> str:
    """Whole seconds, at least 1, rounded up: the form the real API sends."""
    return str(max(1, int(math.ceil(wait_seconds))))

"""GCRA, in process: `burst` requests at once, then `per_minute`, per owner."""

from __future__ import annotations

import pytest

from app.errors import RateLimited
from app.ratelimit import LocalRateLimiter, Unlimited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_burst_is_allowed_then_the_next_request_waits() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(per_minute=60, burst=3, clock=clock)
    for _ in range(3):
        await limiter.check("alice")
    with pytest.raises(RateLimited) as refused:
        await limiter.check("alice")
    assert refused.value.status == 429
    assert refused.value.code == "rate_limited"
    assert refused.value.headers["Retry-After"] == "1"


async def test_tokens_come_back_at_the_configured_rate() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(per_minute=60, burst=2, clock=clock)
    await limiter.check("alice")
    await limiter.check("alice")
    clock.now += 0.5
    with pytest.raises(RateLimited):
        await limiter.check("alice")
    clock.now += 0.5  # one emission interval (1 s at 60/min) after the burst
    await limiter.check("alice")
    with pytest.raises(RateLimited):
        await limiter.check("alice")


async def test_refused_requests_do_not_consume_tokens() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(per_minute=60, burst=1, clock=clock)
    await limiter.check("alice")
    for _ in range(10):
        with pytest.raises(RateLimited):
            await limiter.check("alice")
    clock.now += 1.0
    await limiter.check("alice")


async def test_owners_have_separate_buckets() -> None:
    limiter = LocalRateLimiter(per_minute=60, burst=1, clock=Clock())
    await limiter.check("alice")
    await limiter.check("bob")
    with pytest.raises(RateLimited):
        await limiter.check("alice")


async def test_retry_after_rounds_up_to_whole_seconds() -> None:
    limiter = LocalRateLimiter(per_minute=6, burst=1, clock=Clock())  # one every 10 s
    await limiter.check("alice")
    with pytest.raises(RateLimited) as refused:
        await limiter.check("alice")
    assert refused.value.headers["Retry-After"] == "10"


async def test_unlimited_never_refuses() -> None:
    limiter = Unlimited()
    for _ in range(1000):
        await limiter.check("alice")

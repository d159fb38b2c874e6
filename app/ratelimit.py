"""Per-owner rate limits on the routes that issue URLs (GCRA: a token bucket in one number).

Each owner may make `burst` requests at once, refilled at `per_minute`. The state per owner is
one "theoretical arrival time"; a request is allowed while that time is no more than the burst
tolerance ahead of now. The in-process limiter and the Redis one run the same algorithm; Redis
runs it as one Lua script on its own clock, so replicas share limits without a
read-modify-write race or clock skew between them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from app.errors import RateLimited, RateLimiterUnavailable
from app.metrics import metrics

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("s3gate.ratelimit")

REDIS_KEY_PREFIX = "s3gate:ratelimit:"
REDIS_TIMEOUT_SECONDS = 0.25  # a limiter that cannot answer fast must not hold requests up
WARNING_INTERVAL_SECONDS = 10.0
LOCAL_MAX_OWNERS = 100_000

# KEYS[1] owner key; ARGV: emission interval (s), burst tolerance (s), requests wanted. Returns
# "GRANTED WAIT": how many of them are allowed (as many as the burst has room for) and, when
# none is, the seconds to wait. TIME is Redis' clock, the same for every replica.
_GCRA_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = tolerance - (tat - now)
if room < 0 then
  return '0 ' .. tostring(-room)
end
local granted = math.min(wanted, math.floor(room / interval) + 1)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return tostring(granted) .. ' 0'
"""


class RateLimiter(Protocol):
    async def check(self, owner: str) -> None:
        """Count one request for `owner`; raise RateLimited when over the limit."""

    async def take(self, owner: str, wanted: int) -> int:
        """Count up to `wanted` requests for `owner` (a batch): how many the burst allows,
        at least one; RateLimited when none is."""

    async def aclose(self) -> None: ...


def _granted(interval: float, tolerance: float, tat: float, now: float, wanted: int) -> int:
    """How many of `wanted` requests fit in the burst at `now` (0: none; the Lua twin above)."""
    room = tolerance - (tat - now)
    if room < 0:
        return 0
    return min(wanted, math.floor(room / interval) + 1)


def _limits(per_minute: int, burst: int) -> tuple[float, float]:
    interval = 60.0 / per_minute
    return interval, interval * (burst - 1)


def _refuse(wait_seconds: float) -> RateLimited:
    metrics().rate_limited.inc()
    retry_after = max(1, math.ceil(wait_seconds))
    return RateLimited(
        f"Too many requests; retry in {retry_after} s.", headers={"Retry-After": str(retry_after)}
    )


class Unlimited:
    """S3GATE_RATE_LIMIT_PER_MINUTE=0."""

    async def check(self, owner: str) -> None:
        return None

    async def take(self, owner: str, wanted: int) -> int:
        return wanted

    async def aclose(self) -> None:
        return None


class LocalRateLimiter:
    """Per process: right for one replica; with several, each allows the full rate."""

    def __init__(
        self, per_minute: int, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval, self._tolerance = _limits(per_minute, burst)
        self._clock = clock
        self._tat: dict[str, float] = {}

    async def check(self, owner: str) -> None:
        await self.take(owner, 1)

    async def take(self, owner: str, wanted: int) -> int:
        now = self._clock()
        tat = max(self._tat.get(owner, now), now)
        granted = _granted(self._interval, self._tolerance, tat, now, wanted)
        if not granted:
            raise _refuse(tat - now - self._tolerance)
        if len(self._tat) >= LOCAL_MAX_OWNERS:
            # Owners whose bucket is full again carry no state worth keeping.
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        self._tat[owner] = tat + granted * self._interval
        return granted

    async def aclose(self) -> None:
        return None


class RedisRateLimiter:
    """Shared by every replica through Redis; what happens when Redis fails is a setting."""

    def __init__(
        self,
        redis: Redis,
        per_minute: int,
        burst: int,
        *,
        fail_open: bool,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = REDIS_KEY_PREFIX,
    ) -> None:
        self._redis = redis
        self._prefix = prefix  # keeps this limiter's keys apart from another's on one Redis
        self._interval, self._tolerance = _limits(per_minute, burst)
        self._fail_open = fail_open
        self._script = redis.register_script(_GCRA_LUA)
        self._clock = clock
        self._warned_at = -math.inf

    @classmethod
    def from_url(
        cls,
        url: str,
        per_minute: int,
        burst: int,
        *,
        fail_open: bool,
        prefix: str = REDIS_KEY_PREFIX,
    ) -> RedisRateLimiter:
        """A limiter on the Redis at `url`, with short timeouts."""
        from redis.asyncio import Redis  # only replicas that share limits need the client

        redis = Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            decode_responses=True,
        )
        return cls(redis, per_minute, burst, fail_open=fail_open, prefix=prefix)

    async def check(self, owner: str) -> None:
        await self.take(owner, 1)

    async def take(self, owner: str, wanted: int) -> int:
        from redis.exceptions import RedisError

        try:
            answer = await self._script(
                keys=[self._prefix + owner], args=[self._interval, self._tolerance, wanted]
            )
            granted, wait = str(answer).split()
        except (RedisError, OSError) as exc:
            self._warn(type(exc).__name__)
            if self._fail_open:
                return wanted
            raise RateLimiterUnavailable() from None
        if not int(granted):
            raise _refuse(float(wait))
        return int(granted)

    def _warn(self, reason: str) -> None:
        # One line per interval, not one per request, while Redis is down.
        now = self._clock()
        if now - self._warned_at >= WARNING_INTERVAL_SECONDS:
            self._warned_at = now
            action = "allowing requests unlimited" if self._fail_open else "refusing requests"
            log.warning("rate limiter: Redis failed (%s); %s", reason, action)

    async def aclose(self) -> None:
        await self._redis.aclose()

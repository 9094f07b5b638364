"""Fixed-window attempt counters and quotas in Redis, shared by every worker and machine."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import redis.asyncio as aioredis

from screenaware.errors import RateLimited
from screenaware.storage.redisstore import Script, global_key

# KEYS: the counters; ARGV[1]: the window, ARGV[1 + i]: the limit of KEYS[i].
# Checking and counting are one atomic step, so the decision for an attempt always
# sees every attempt before it, even in a burst over many workers: either every
# counter still has room and all of them count it, or none changes and the answer
# is the longest wait among the full ones.
_ACQUIRE = Script("""
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count + 1 > tonumber(ARGV[i + 1]) then
    wait = math.max(wait, redis.call('TTL', key), 1)
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[1]) end
end
return 0
""")

# Give back one attempt per counter; a counter that expired meanwhile is not
# recreated (it would have no expiry), and one back at zero is removed.
_REFUND = Script("""
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 and redis.call('DECR', key) <= 0 then
    redis.call('DEL', key)
  end
end
return 0
""")


class RateLimiter:
    """At most ``limit`` counted attempts per key within a fixed ``window``.

    An attempt is counted *before* the work it guards (e.g. a password check) and
    refunded when that work succeeds, so a counter holds the failures of its window
    plus the attempts still running. A burst therefore cannot pass the limit: the
    attempt that would make a counter exceed it is refused before any work.

    Args:
        redis: zero-argument callable returning the open Redis client.
        prefix: key prefix, e.g. ``login``.
        limits: the allowed attempts per key kind (the part before the first ``:``
            of a key, e.g. ``email`` or ``addr``).
        window: seconds a counted attempt stays counted (from the first of the window).
    """

    def __init__(
        self,
        redis: Callable[[], aioredis.Redis],
        prefix: str,
        limits: dict[str, int],
        window: int,
    ) -> None:
        self._redis_factory = redis
        self._prefix = prefix
        self._limits = limits
        self._window = window

    def _key(self, key: str) -> str:
        return global_key(f"rl:{self._prefix}:{key}")

    def _limit(self, key: str) -> int:
        return self._limits[key.split(":", 1)[0]]

    async def acquire(self, keys: Sequence[str]) -> None:
        """Count one attempt against every key, or against none if any is full.

        Raises:
            RateLimited: a key has no room left; nothing was counted.
        """
        wait = await _ACQUIRE(
            self._redis_factory(),
            [self._key(key) for key in keys],
            [self._window, *(self._limit(key) for key in keys)],
        )
        if int(wait) > 0:
            raise RateLimited(int(wait))

    async def refund(self, keys: Sequence[str]) -> None:
        """Give back an attempt counted by :meth:`acquire` (it succeeded)."""
        await _REFUND(self._redis_factory(), [self._key(key) for key in keys], [])


# KEYS[1]: the counter; ARGV: the amount, the limit, the window. Adding and giving
# back a refused amount are one atomic step, so a refusal never uses units of the
# window (concurrent takers see only what was kept). Returns 0, or the wait.
_TAKE = Script("""
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if used > tonumber(ARGV[2]) then
  if redis.call('DECRBY', KEYS[1], ARGV[1]) <= 0 then
    local wait = redis.call('TTL', KEYS[1])
    redis.call('DEL', KEYS[1])
    return math.max(wait, 1)
  end
  return math.max(redis.call('TTL', KEYS[1]), 1)
end
return 0
""")

_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECRBY', KEYS[1], ARGV[1]) end
return 0
"""


class Quota:
    """At most ``limit`` units per key in each fixed window of ``window`` seconds.

    Args:
        redis: zero-argument callable returning the open Redis client.
        prefix: key prefix, e.g. ``logs``.
        window: the window in seconds.
    """

    def __init__(self, redis: Callable[[], aioredis.Redis], prefix: str, window: int) -> None:
        self._redis_factory = redis
        self._prefix = prefix
        self._window = window

    def _key(self, key: str) -> str:
        return global_key(f"quota:{self._prefix}:{key}")

    async def take(self, key: str, amount: int, limit: int) -> None:
        """Use ``amount`` units of ``key``, or none of them if that passes ``limit``.

        Raises:
            RateLimited: the amount does not fit; nothing was used.
        """
        wait = await _TAKE(self._redis_factory(), [self._key(key)], [amount, limit, self._window])
        if int(wait) > 0:
            raise RateLimited(int(wait))

    async def give_back(self, key: str, amount: int) -> None:
        """Return units taken for work that was not done (e.g. a refused upload)."""
        # Only while the window lasts: a key recreated without expiry would never reset.
        await self._redis_factory().eval(_GIVE_BACK, 1, self._key(key), amount)

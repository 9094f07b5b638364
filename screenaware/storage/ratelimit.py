"""Fixed-window failure counters in Redis, shared by every worker and machine."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import redis.asyncio as aioredis

from screenaware.errors import RateLimited


class RateLimiter:
    """Refuses once a key has ``limit`` failures within ``window`` seconds.

    Args:
        redis: zero-argument callable returning the open Redis client.
        prefix: key prefix, e.g. ``login``.
        limits: the allowed failures per key kind (the part before the first ``:``
            of a key, e.g. ``email`` or ``addr``).
        window: seconds a failure counts.
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
        return f"{{sa}}:rl:{self._prefix}:{key}"

    async def check(self, keys: Sequence[str]) -> None:
        """Raise :class:`RateLimited` if any key is over its limit."""
        redis = self._redis_factory()
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(self._key(key))
                pipe.ttl(self._key(key))
            replies = await pipe.execute()
        for key, count, ttl in zip(keys, replies[::2], replies[1::2], strict=True):
            if count is not None and int(count) >= self._limits[key.split(":", 1)[0]]:
                raise RateLimited(max(int(ttl), 1))

    async def fail(self, keys: Sequence[str]) -> None:
        """Count one failure for each key (the window starts at the first)."""
        redis = self._redis_factory()
        async with redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(self._key(key))
                pipe.expire(self._key(key), self._window, nx=True)
            await pipe.execute()


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
        return f"{{sa}}:quota:{self._prefix}:{key}"

    async def take(self, key: str, amount: int, limit: int) -> None:
        """Use ``amount`` units of ``key``; :class:`RateLimited` if that passes ``limit``."""
        full_key = self._key(key)
        async with self._redis_factory().pipeline(transaction=True) as pipe:
            pipe.incrby(full_key, amount)
            pipe.expire(full_key, self._window, nx=True)
            pipe.ttl(full_key)
            used, _, ttl = await pipe.execute()
        if int(used) > limit:
            raise RateLimited(max(int(ttl), 1))

    async def give_back(self, key: str, amount: int) -> None:
        """Return units taken for work that was not done (e.g. a refused upload)."""
        # Only while the window lasts: a key recreated without expiry would never reset.
        await self._redis_factory().eval(_GIVE_BACK, 1, self._key(key), amount)

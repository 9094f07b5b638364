"""Small helpers at the Redis boundary."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, WatchError

from screenaware.errors import StorageUnavailable


class Script:
    """A Lua script run by digest (EVALSHA), loaded on first use per server.

    Unlike redis-py's ``register_script``, it is not bound to one client, so it
    can be created before the client exists (clients open in the lifespan).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted or was flushed of scripts: load it and go on.
            return await client.eval(self.source, len(keys), *keys, *args)


# KEYS[1]: a lock; ARGV[1]: the caller's token. Deletes the lock only if it is still
# the caller's: it may have expired meanwhile and been taken by someone else.
RELEASE_LOCK = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

T = TypeVar("T")


async def optimistic(
    client: aioredis.Redis,
    keys: Sequence[str],
    body: Callable[[Any], Awaitable[T]],
    attempts: int = 100,
) -> T:
    """Run ``body`` as an optimistic transaction over ``keys`` (WATCH/MULTI/EXEC).

    ``body(pipe)`` reads through ``pipe`` (immediate mode while watching), then
    calls ``pipe.multi()`` and queues its writes; it is run again if any watched
    key changed before EXEC. An exception from ``body`` aborts without writing.

    Raises:
        StorageUnavailable: still conflicting after ``attempts`` tries.
    """
    async with client.pipeline(transaction=True) as pipe:
        for _ in range(attempts):
            try:
                await pipe.watch(*keys)
                result = await body(pipe)
                await pipe.execute()
                return result
            except WatchError:
                continue
            finally:
                await pipe.reset()
    raise StorageUnavailable("too much contention on " + ", ".join(keys), backend="redis")


class RedisStore:
    """Base of the stores: how to reach the Redis client, which exists only once the
    lifespan has opened it (so stores can be built with the app).

    Args:
        redis: zero-argument callable returning the open Redis client.
    """

    def __init__(self, redis: Callable[[], aioredis.Redis]) -> None:
        self._redis_factory = redis

    @property
    def _redis(self) -> aioredis.Redis:
        return self._redis_factory()

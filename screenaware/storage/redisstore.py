"""Small helpers at the Redis boundary, and the key scheme's two hash tags.

A Redis Cluster places a key by the CRC16 of its hash tag (the part in braces), and
a Lua script, MULTI transaction or WATCH may touch the keys of one slot only. So:

- a user's keys carry that user's tag, ``{u:<user uuid>}`` (see :func:`user_scoped`):
  the users spread over every master, and a user's own scripts stay on one slot;
- global keys (indexes over all users such as the email and API-key indexes, the
  shared signing keys, the rate-limit counters, the crash-store budget, the clock
  slots) carry ``{sa}`` (:func:`global_key`); the Heartbeat API's keys carry
  ``{hb}``, in :mod:`heartbeat.store`.

No script or transaction mixes the two tags: an operation that must change a
user's record and a global index runs as two single-slot steps, ordered so that a
crash (or a concurrent reader) between them sees only a harmless state; the
modules doing so say why their order is safe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError, WatchError

from screenaware.errors import StorageUnavailable

GLOBAL_TAG = "{sa}"


def global_key(name: str) -> str:
    """A key of the global slot (``{sa}:<name>``)."""
    return f"{GLOBAL_TAG}:{name}"


def user_tag(user: str) -> str:
    """The hash tag of a user's keys: every key of one user lands on one slot."""
    return f"{{u:{user}}}"


def user_scoped(user: str, name: str) -> str:
    """A key of ``user``'s slot (``{u:<user>}:<name>``)."""
    return f"{user_tag(user)}:{name}"


class Script:
    """A Lua script run by digest (EVALSHA), loaded on first use per server.

    Unlike redis-py's ``register_script``, it is not bound to one client, so it
    can be created before the client exists (clients open in the lifespan).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self,
        client: aioredis.Redis,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        raw: bool = False,
    ) -> Any:
        """Run the script; ``raw``: its replies as bytes, never decoded as text."""
        options = {NEVER_DECODE: True} if raw else {}
        try:
            return await client.execute_command(
                "EVALSHA", self.sha, len(keys), *keys, *args, **options
            )
        except NoScriptError:
            # Redis restarted or was flushed of scripts: load it and go on.
            return await client.execute_command(
                "EVAL", self.source, len(keys), *keys, *args, **options
            )


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
    if isinstance(client, RedisCluster):
        # redis-py's cluster pipeline runs commands between WATCH and MULTI in a
        # thread of their own with a new event loop (blocking this one): the
        # transaction runs instead on a plain client over the connections of the
        # master of the keys' slot (all keys of a transaction share one slot).
        await client.initialize()
        client = aioredis.Redis(connection_pool=_NodePool(client.get_node_from_key(keys[0])))
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


class _NodePool:
    """The pool interface a plain client needs, over one cluster node's own
    connections (taken from and given back to the node, as its commands do)."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        self.connection_kwargs = node.connection_kwargs

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        # Connected by its first command; the pipeline gives it back (release) in
        # every case, a failed connect included.
        return self._node.acquire_connection()

    async def release(self, connection: Any) -> None:
        self._node.release(connection)

    async def aclose(self) -> None:
        """Nothing: the node's connections belong to the cluster client."""


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

"""The periodic round every integration runs: each worker loops, the per-user Redis
locks share the work, and a bad round never ends the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from screenaware.errors import StorageUnavailable
from screenaware.integrations.store import IntegrationStore, held_lock

LOG = logging.getLogger(__name__)


class PeriodicSync:
    """Base of an integration's sync service: what both hold, the per-user sync
    lock, and the round that syncs the due users forever.

    Subclasses set ``name`` (the integration's key), ``label`` (for logs) and
    :meth:`lock_key`, and implement :meth:`sync`.

    Args:
        store: the integration store (credentials, state).
        redis: zero-argument callable returning the open Redis client.
        interval: seconds between syncs of a user.
        timeout: seconds per request to the integration's server.
        max_bytes: the largest answer read from it.
        lock_ttl_ms: how long a dead holder keeps a user's lock.
        clock: the current Unix time in seconds.
        exists: whether a user still exists; a listed user who does not is
            disconnected by the round (a deletion that died before it disconnected
            them leaves no credentials behind for long). None: every listed user does.
    """

    name: str
    label: str

    def __init__(
        self,
        store: IntegrationStore,
        redis: Callable[[], aioredis.Redis],
        *,
        interval: int,
        timeout: float,
        max_bytes: int,
        lock_ttl_ms: int,
        clock: Callable[[], float] = time.time,
        exists: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        self._exists = exists
        self._get_redis = redis
        self.interval = interval
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._lock_ttl_ms = lock_ttl_ms
        self._clock = clock
        # How long a connect, disconnect or booking waits for a running sync.
        self.lock_wait = timeout * 2

    @property
    def _redis(self) -> aioredis.Redis:
        return self._get_redis()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @staticmethod
    def lock_key(user: str) -> str:
        """The Redis key of a user's sync lock."""
        raise NotImplementedError

    def _held(self, user: str, wait: float) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold the user's sync lock; yields False when it stayed taken ``wait`` s."""
        return held_lock(self._redis, self.lock_key(user), ttl_ms=self._lock_ttl_ms, wait=wait)

    async def sync(self, user: str, *, force: bool = False) -> bool:
        """Sync one user if due and not being synced elsewhere; returns whether it ran."""
        raise NotImplementedError

    async def disconnect(self, user: str, *, purge: bool) -> None:
        """Forget a user's connection; with ``purge`` what it brought in too."""
        raise NotImplementedError

    async def sync_due(self) -> int:
        """Sync every connected user whose last attempt is ``interval`` old; returns
        how many this worker synced."""
        done = 0
        for user in await self._store.users(self.name):
            try:
                if self._exists is not None and not await self._exists(user):
                    await self.disconnect(user, purge=False)
                    continue
                done += await self.sync(user)
            except (StorageUnavailable, RedisError) as exc:
                LOG.warning("%s sync of a user postponed: %s", self.label, exc)
        return done

    async def run(self) -> None:
        """Sync due users forever (each worker runs this; the locks share the work)."""
        tick = max(0.5, min(self.interval / 4, 30.0))
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                raise asyncio.CancelledError  # a cancellation swallowed below still ends it
            await asyncio.sleep(tick)
            try:
                await self.sync_due()
            except (StorageUnavailable, RedisError, OSError) as exc:
                # A store that is down is reported by the outage log; retry later.
                LOG.warning("%s sync round postponed: %s", self.label, type(exc).__name__)
            except Exception:  # the loop must survive a bad round; the next one retries
                LOG.exception("%s sync round failed", self.label)

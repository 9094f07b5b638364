"""The periodic round every integration runs: each worker loops, the per-user Redis
locks share the work, and a bad round never ends the loop."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from screenaware.errors import StorageUnavailable
from screenaware.integrations.store import IntegrationStore

LOG = logging.getLogger(__name__)


class PeriodicSync:
    """Base of an integration's sync service: syncs the due users forever.

    Subclasses set ``name`` (the integration's key), ``label`` (for logs),
    ``interval`` and ``_store``, and implement :meth:`sync`.
    """

    name: str
    label: str
    interval: float
    _store: IntegrationStore

    async def sync(self, user: str, *, force: bool = False) -> bool:
        """Sync one user if due and not being synced elsewhere; returns whether it ran."""
        raise NotImplementedError

    async def sync_due(self) -> int:
        """Sync every connected user whose last attempt is ``interval`` old; returns
        how many this worker synced."""
        done = 0
        for user in await self._store.users(self.name):
            try:
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

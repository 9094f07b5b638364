"""Leases of point-clock slots: no two live processes stamp with the same slot.

Each of the :attr:`UniqueClock.SLOTS <screenaware.storage.influx.UniqueClock.SLOTS>`
slots is a Redis key ``{sa}:clock_slot:<n>`` holding its owner, set with
``SET NX EX ttl``: a process takes the lowest free slot, renews its key every
``ttl / 3`` seconds and deletes it when it stops. A process that dies frees its
slot ``ttl`` seconds later; one that cannot renew stops stamping ``2/3 ttl`` after
its last renewal, before the key can expire, so a slot is never in use by two live
processes. While Redis is down (or all slots are held) a process has no slot, its
clock refuses to stamp (503), and the lease is retried in the background.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from screenaware.storage.batching import cancel_task
from screenaware.storage.influx import UniqueClock
from screenaware.storage.outages import REDIS, REDIS_ERRORS, OutageLog
from screenaware.storage.redisstore import RELEASE_LOCK, Script, global_key

LOG = logging.getLogger(__name__)

SLOT_KEY_PREFIX = global_key("clock_slot:")

# One round trip, atomic: the lowest slot whose key is free becomes ours. Every slot
# key is passed in KEYS (all share the {sa} hash tag), as a Redis Cluster requires.
_ACQUIRE = Script(
    """
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'EX', ARGV[2]) then return i - 1 end
end
return -1
"""
)

# Ours: extend. Gone (Redis lost its data): take it back. Another owner's: 0.
_RENEW = Script(
    """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""
)


def slot_key(slot: int) -> str:
    """The Redis key of ``slot``."""
    return f"{SLOT_KEY_PREFIX}{slot}"


_ALL_KEYS = [slot_key(slot) for slot in range(UniqueClock.SLOTS)]


class SlotLease:
    """Leases a slot for ``clock`` and keeps it leased while the process runs.

    Args:
        redis: returns the open Redis client.
        clock: the point clock that gets the slot (and loses it when the lease lapses).
        ttl: seconds a slot key lives without renewal.
        outages: counts failed lease attempts as Redis failures.
        retry_every: seconds between attempts while no slot is held, or after a
            renewal that failed.
        monotonic: the clock lease deadlines are measured on (the clock's own).
    """

    def __init__(
        self,
        redis: Callable[[], aioredis.Redis],
        clock: UniqueClock,
        *,
        ttl: int,
        outages: OutageLog,
        retry_every: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._ttl = ttl
        self._outages = outages
        self._retry_every = retry_every
        self._monotonic = monotonic
        # Names the holder for whoever looks at the key; the random part makes it unique.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self.slot: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._all_taken_logged = False
        self._renewed = False

    async def start(self) -> None:
        """Try to lease now, then keep renewing (or retrying) in the background."""
        await self.step()
        self._task = asyncio.create_task(self._loop(), name="clock-slot-lease")

    async def stop(self) -> None:
        """Stop renewing and free the slot for the next process."""
        await cancel_task(self._task)
        self._task = None
        self._clock.revoke()
        if self.slot is None:
            return
        try:
            await RELEASE_LOCK(self._redis(), [slot_key(self.slot)], [self.owner])
        except REDIS_ERRORS as exc:
            # It expires by itself after ttl seconds.
            LOG.info("could not free clock slot %d: %s", self.slot, type(exc).__name__)
        self.slot = None

    def pause(self) -> float:
        """How long the background loop waits before its next step.

        After a failed renewal the lease may lapse while Redis is away; once Redis is
        back, the clock must not wait a third of the ttl to stamp again.

        Returns:
            A third of the ttl after a renewal, else ``retry_every`` (no slot, or the
            last renewal failed).
        """
        return self._ttl / 3 if self.slot is not None and self._renewed else self._retry_every

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.pause())
            try:
                await self.step()
            except Exception:
                # A bug must not end the renewals: the clock would stop for good.
                LOG.exception("clock slot lease failed")

    async def step(self) -> None:
        """One renewal of the slot held, or one attempt to lease one."""
        # Measured before the call: the key lives ttl seconds from when Redis ran it,
        # which is later.
        started = self._monotonic()
        self._renewed = False
        try:
            if self.slot is not None and not await self._renew():
                LOG.warning("clock slot %d is held by another process; leasing another", self.slot)
                self._clock.revoke()
                self.slot = None
            if self.slot is None:
                self.slot = await self._acquire()
                if self.slot is None:
                    return
                LOG.info("leased clock slot %d", self.slot)
        except REDIS_ERRORS as exc:
            self._outages.failure(REDIS, exc)
            return
        # Stop stamping well before the key could expire unrenewed.
        self._clock.lease(self.slot, started + self._ttl * 2 / 3)
        self._renewed = True

    async def _renew(self) -> bool:
        assert self.slot is not None
        return bool(await _RENEW(self._redis(), [slot_key(self.slot)], [self.owner, self._ttl]))

    async def _acquire(self) -> int | None:
        slot = int(await _ACQUIRE(self._redis(), _ALL_KEYS, [self.owner, self._ttl]))
        if slot < 0:
            if not self._all_taken_logged:
                LOG.warning("all %d clock slots are held; retrying", UniqueClock.SLOTS)
                self._all_taken_logged = True
            return None
        self._all_taken_logged = False
        return slot

"""What the Heartbeat resources do, as plain async functions over the stores.

Order of a beat: the device's token is checked in Redis, the ``beat`` point is
made durable in InfluxDB (the source of truth), and only then the Redis counters
move. A Redis counter is therefore never ahead of InfluxDB, and
``screenaware rebuild-stats`` can always recompute them from it.

Beats of concurrent requests go through these steps in batches: one Redis
look-up of the batch's tokens, one InfluxDB write, one Redis script counting
them, then every beat of the batch is answered. Devices and load generators send
their next beat once answered; the next batch waits a moment (``regroup``) for
the ones just answered to come back, so that they share one round instead of
splitting into two that alternate, each paying for a look-up, a write (InfluxDB's
cost is mostly per write) and a count.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from heartbeat.stats import build_stats
from heartbeat.store import HeartbeatStore, hash_token
from screenaware.errors import StorageUnavailable, WriteQueueFull
from screenaware.storage.batching import Coalescer, cancel_task
from screenaware.storage.influx import GroupCommitWriter, Point, UniqueClock
from screenaware.storage.lineprotocol import encode
from screenaware.storage.outages import INFLUXDB, REDIS_DOWN, OutageLog, backend_of

LOG = logging.getLogger(__name__)

Clock = Callable[[], float]


class HeartbeatService:
    """Beats, visits and statistics.

    Args:
        store: the Redis store.
        writer: the InfluxDB group-commit writer.
        clock: returns the current Unix time in seconds (injected for tests).
        point_time: stamps points with times no other process repeats.
        max_batch: beats handled together at most (one InfluxDB write).
        max_pending: beats that may wait; past it a beat fails at once with
            :class:`~screenaware.errors.WriteQueueFull` (503).
        regroup: seconds a round waits, after the last one answered, for the
            beats of the devices it answered (see
            :class:`~screenaware.storage.batching.Coalescer`); 0: no wait.
        outages: where the failures of uncounted visits go (logged per outage,
            not per visit).
    """

    def __init__(
        self,
        store: HeartbeatStore,
        writer: GroupCommitWriter,
        clock: Clock,
        point_time: UniqueClock,
        *,
        max_batch: int = 5000,
        max_pending: int = 100_000,
        regroup: float = 0.0,
        outages: OutageLog | None = None,
    ) -> None:
        self.store = store
        self.outages = outages or OutageLog(60)
        self._writer = writer
        self._clock = clock
        self._point_time = point_time
        # A batch's outcome per beat: None (no such token) or the acknowledgement second.
        self._beats: Coalescer[str, int | None] = Coalescer(
            self._record_beats,
            name="hb-beats",
            max_batch=max_batch,
            max_pending=max_pending,
            full_error=lambda: WriteQueueFull("too many beats queued"),
            regroup=regroup,
        )

    def now(self) -> int:
        """The current Unix time in whole seconds."""
        return int(self._clock())

    async def beat(self, token: str) -> int | None:
        """Record one beat of the device owning ``token``.

        Returns:
            The beat's acknowledgement time in Unix seconds, or None when no
            device owns the token (nothing is recorded).
        """
        return await self._beats.submit(hash_token(token))

    async def close(self) -> None:
        """Finish the beats already received (worker shutdown)."""
        await self._beats.stop()

    async def _record_beats(self, digests: list[str]) -> list[int | None]:
        devices = await self.store.look_up(digests)
        beats = [(device, self._point_time()) for device in devices if device is not None]
        if not beats:
            return [None] * len(digests)
        # encode() is Point's line byte for byte (tests/test_lineprotocol.py), at a
        # fraction of its cost per beat.
        await self._writer.write(
            [encode("beat", {"device": str(device)}, {"n": 1}, stamp) for device, stamp in beats]
        )
        counted = [(device, stamp // 1_000_000_000) for device, stamp in beats]
        # Stored first, then counted: a counter is never ahead of InfluxDB.
        await self.store.count_beats(counted)
        seconds = iter(second for _, second in counted)
        return [None if device is None else next(seconds) for device in devices]

    async def visit(self, page: str) -> None:
        """Count a page view.

        A page must still render when InfluxDB is down, so a failed visit is
        logged and dropped; the Redis counter only moves after the point is stored.
        """
        try:
            # Stamped inside: a clock without its slot (Redis down) drops the visit too.
            point = Point("visit").tag("page", page).field("n", 1).time(self._point_time())
            await self._writer.write([point])
            await self.store.record_visit()
        except (StorageUnavailable, *REDIS_DOWN) as exc:
            # One line per outage, not per page view.
            self.outages.failure(backend_of(exc) or INFLUXDB, exc)
            LOG.debug("visit to %s not counted: %s", page, type(exc).__name__)
        except OSError as exc:
            LOG.warning("visit to %s not counted: %s", page, type(exc).__name__)

    async def stats(self) -> dict[str, Any]:
        """The current statistics object."""
        now = self.now()
        return build_stats(await self.store.read(now), now)


class StatsBroadcaster:
    """One ticker per worker: computes the stats once a second for all sockets.

    Each subscriber gets a one-slot queue; a slow socket only ever misses
    intermediate messages and never delays the others.

    Args:
        stats: coroutine function producing the stats object.
        interval: seconds between messages.
        outages: counts a tick that found a store down (else a line every second).
    """

    def __init__(
        self,
        stats: Callable[[], Awaitable[dict[str, Any]]],
        interval: float = 1.0,
        outages: OutageLog | None = None,
    ):
        self._stats = stats
        self._outages = outages or OutageLog(60)
        self._interval = interval
        self._queues: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> int:
        """How many sockets listen now."""
        return len(self._queues)

    def subscribe(self) -> asyncio.Queue[str]:
        """Register a socket; returns the queue its messages arrive in."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._queues.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stats-ticker")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        """Forget a socket; the ticker stops when none is left."""
        self._queues.discard(queue)

    async def stop(self) -> None:
        """Stop the ticker (worker shutdown)."""
        await cancel_task(self._task)
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._interval
        while self._queues:
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            next_tick += self._interval
            try:
                payload = json.dumps(await self._stats())
            except Exception as exc:
                backend = backend_of(exc)
                if backend is None:
                    LOG.warning("stats tick skipped: %s", type(exc).__name__)
                else:
                    self._outages.failure(backend, exc)
                continue
            for queue in list(self._queues):
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(payload)

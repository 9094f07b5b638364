"""What the Heartbeat resources do, as plain async functions over the stores.

Order of a beat: the device's token is checked in Redis, the ``beat`` point is
made durable in InfluxDB (the source of truth), and only then the Redis counters
move. A Redis counter is therefore never ahead of InfluxDB, and
``screenaware rebuild-stats`` can always recompute them from it.

Beats of concurrent requests go through these steps in batches. While InfluxDB
stores batch N, the worker reads the requests of batch N+1; when N's write
returns and N+1 is waiting, a single Redis script counts N and looks N+1's tokens
up (one round trip for both), then N is acknowledged while N+1's write goes out.
Under load a batch costs one Redis round trip and one InfluxDB write instead of
two and one; a batch with nobody behind it is counted at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from heartbeat.stats import build_stats
from heartbeat.store import HeartbeatStore, hash_token
from screenaware.errors import StorageUnavailable, WriteQueueFull
from screenaware.storage.batching import Coalescer, Later, cancel_task
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
        outages: OutageLog | None = None,
    ) -> None:
        self.store = store
        self.outages = outages or OutageLog(60)
        self._writer = writer
        self._clock = clock
        self._point_time = point_time
        # A batch's outcome per beat: None (no such token), the acknowledgement
        # second, or that second Later, when the next batch's round counts the beat.
        self._beats: Coalescer[str, int | None] = Coalescer(
            self._record_beats,
            name="hb-beats",
            max_batch=max_batch,
            max_pending=max_pending,
            full_error=lambda: WriteQueueFull("too many beats queued"),
        )
        self._uncounted: _Stored | None = None

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
        # The last call counts its batch itself (nothing queued behind it); this is
        # only a safety net.
        if self._uncounted is not None:
            stored, self._uncounted = self._uncounted, None
            await self.store.count_beats(stored.counts)
            stored.settle(None)

    async def _record_beats(self, digests: list[str]) -> list[int | Later[int | None] | None]:
        # The previous batch is stored; its counters move in this batch's round.
        previous, self._uncounted = self._uncounted, None
        try:
            devices = await self.store.count_and_look_up(
                previous.counts if previous is not None else [], digests
            )
        except BaseException as exc:
            if previous is not None:
                previous.settle(exc)
            raise
        if previous is not None:
            previous.settle(None)
        beats = [(device, self._point_time()) for device in devices if device is not None]
        if not beats:
            return [None] * len(digests)
        # encode() is Point's line byte for byte (tests/test_lineprotocol.py), at a
        # fraction of its cost per beat.
        await self._writer.write(
            [encode("beat", {"device": str(device)}, {"n": 1}, stamp) for device, stamp in beats]
        )
        counted = [(device, stamp // 1_000_000_000) for device, stamp in beats]
        if not self._beats.waiting:
            # Nobody behind: count now (a lone beat pays two round trips, as before).
            await self.store.count_beats(counted)
            acknowledged: Iterator[int | Later[int | None]] = iter(s for _, s in counted)
        else:
            # The queued batch, taken as soon as this call returns, counts these
            # beats in the round that looks its own tokens up.
            stored = _Stored(counted)
            self._uncounted = stored
            acknowledged = iter(Later(future) for future in stored.futures)
        return [None if device is None else next(acknowledged) for device in devices]

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


class _Stored:
    """A batch of beats stored in InfluxDB, waiting for the next round to count it."""

    def __init__(self, counts: list[tuple[int, int]]) -> None:
        self.counts = counts
        loop = asyncio.get_running_loop()
        self.futures: list[asyncio.Future[int | None]] = [loop.create_future() for _ in counts]

    def settle(self, error: BaseException | None) -> None:
        """Acknowledge every beat (each with its second), or fail them all with ``error``."""
        for (_, second), future in zip(self.counts, self.futures, strict=True):
            if error is None:
                future.set_result(second)
            elif isinstance(error, Exception):
                future.set_exception(error)
            else:
                future.cancel()  # the worker's loop is ending

"""Spread the connections of one gunicorn master over its workers.

gunicorn hands every worker the same listening socket and lets them race for each
connection. An event loop woken for a listening socket accepts every connection
waiting there, so a client that opens four keep-alive connections at once (a sensor
catching up, an ActivityWatch import, nginx's upstream pool) mostly lands three or
four of them on one worker, and their requests then share one core while the other
idles (uvicorn-worker#34, gunicorn#2670). Measured with four snapshot batches in
flight on two workers: 104 and 69 requests per worker before, 87 and 86 with this.

Here a worker accepts one connection per wake-up, and only while it holds no more
connections than each of its live siblings; otherwise it stops listening for
``defer_s`` and then accepts whatever still waits, so a sibling that is busy never
keeps a connection waiting longer than that. The workers publish their counts on a
:class:`ConnectionBoard`, memory the master maps before it forks them: a worker's
count is published whenever it changes and every ``publish_s``; a slot whose
worker is gone, or that was not refreshed for ``stale_s`` (its worker hangs), counts
as free.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import multiprocessing
import os
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

LOG = logging.getLogger(__name__)

_SLOT = struct.Struct("=qqd")  # pid, open connections, CLOCK_MONOTONIC of the last publish


class ConnectionBoard:
    """Open connections per worker, in anonymous shared memory inherited by fork.

    Create it in the master before the workers fork; each worker then claims a slot.
    A count is a hint for spreading connections, not a lock: a reader may see one
    publish old, which costs at most one connection landing unevenly.

    Args:
        slots: how many workers may publish at once (a worker finding none free
            accepts without looking at the others).
        stale_s: a slot not published for this long counts as free.
    """

    def __init__(self, slots: int, stale_s: float = 2.0) -> None:
        self.slots = slots
        self.stale_s = stale_s
        self._memory = mmap.mmap(-1, slots * _SLOT.size)
        self._claiming = multiprocessing.Lock()

    def _live(self, now: float) -> Iterable[tuple[int, int, int]]:
        """(slot, pid, count) of the slots published within ``stale_s``, fewest
        connections first, whose process still exists (checked only as reached)."""
        fresh = [
            (count, slot, pid)
            for slot, (pid, count, at) in enumerate(_SLOT.iter_unpack(self._memory))
            if pid and now - at < self.stale_s
        ]
        for count, slot, pid in sorted(fresh):
            if _exists(pid):
                yield slot, pid, count

    def claim(self, pid: int) -> int | None:
        """Take a free slot for worker ``pid``; None when every slot is live."""
        # Bounded: a worker killed while holding the lock must not stop the next
        # one from booting (two claiming the same slot only blur the counts).
        got = self._claiming.acquire(timeout=1.0)
        try:
            now = time.monotonic()
            taken = {slot for slot, _, _ in self._live(now)}
            for slot in range(self.slots):
                if slot not in taken:
                    _SLOT.pack_into(self._memory, slot * _SLOT.size, pid, 0, now)
                    return slot
            return None
        finally:
            if got:
                self._claiming.release()

    def publish(self, slot: int, pid: int, count: int) -> None:
        """Record that worker ``pid`` in ``slot`` holds ``count`` connections now."""
        _SLOT.pack_into(self._memory, slot * _SLOT.size, pid, count, time.monotonic())

    def release(self, slot: int) -> None:
        """Free ``slot``: its worker stopped accepting."""
        _SLOT.pack_into(self._memory, slot * _SLOT.size, 0, 0, 0.0)

    def fewest_elsewhere(self, slot: int) -> int | None:
        """The smallest count published by a live worker other than ``slot``'s."""
        for other, _, count in self._live(time.monotonic()):
            if other != slot:
                return count
        return None


def _exists(pid: int) -> bool:
    """Whether process ``pid`` exists (a killed worker's slot is free at once, not
    only once it went stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CountedSet(set[Any]):
    """A set that calls ``added`` after every add and ``discarded`` after every
    discard (for uvicorn's ``server_state.connections``: its protocols add
    themselves as they connect and discard themselves as they close)."""

    def __init__(self, added: Callable[[], None], discarded: Callable[[], None]) -> None:
        super().__init__()
        self.added = added
        self.discarded = discarded

    def add(self, item: Any) -> None:
        super().add(item)
        self.added()

    def discard(self, item: Any) -> None:
        super().discard(item)
        self.discarded()


class AcceptGate:
    """Accept from listening sockets one connection at a time, least loaded first.

    Args:
        sockets: the listening sockets (the gate closes them in :meth:`close`).
        board: the master's board.
        defer_s: how long at most to leave a waiting connection to siblings that
            hold fewer connections (then it is taken, however busy they are).
        recheck_s: how often to look again meanwhile.
        publish_s: how often to publish the count even when it does not change.
    """

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        board: ConnectionBoard,
        *,
        defer_s: float = 0.005,
        recheck_s: float = 0.0005,
        publish_s: float = 0.5,
    ) -> None:
        self.sockets = list(sockets)
        self.board = board
        # The server's set of open connections (uvicorn's server_state.connections).
        self.connections = CountedSet(self._connected, self.publish)
        self._serve: Callable[[socket.socket], Coroutine[Any, Any, Any]] | None = None
        self.defer_s = defer_s
        self.recheck_s = recheck_s
        self.publish_s = publish_s
        self.pid = os.getpid()
        self.slot: int | None = None
        # Accepted, not yet in ``connections``: counted, or two accepted at once
        # would look like one to the siblings.
        self._pending = 0
        self._handing_over: set[asyncio.Task[Any]] = set()  # referenced until done
        # Per listening fd: when the waiting connection was first and last left to a
        # sibling.
        self._yielding: dict[int, tuple[float, float]] = {}
        self._listening: set[int] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False

    @property
    def count(self) -> int:
        """Open connections, those accepted and not yet connected included."""
        return len(self.connections) + self._pending

    def _connected(self) -> None:
        self._pending = max(self._pending - 1, 0)
        self.publish()

    def publish(self) -> None:
        """Publish the current count (called whenever it changes)."""
        if self.slot is not None and not self._closed:
            self.board.publish(self.slot, self.pid, self.count)

    def start(self, serve: Callable[[socket.socket], Coroutine[Any, Any, Any]]) -> None:
        """Claim a board slot and start listening on every socket.

        Args:
            serve: hands an accepted non-blocking socket to the server's protocol.
        """
        self._serve = serve
        self.slot = self.board.claim(self.pid)
        if self.slot is None:
            LOG.warning("connection board full: this worker accepts without balancing")
        for sock in self.sockets:
            sock.setblocking(False)
            self._listen(sock)
        self._tick()

    def _later(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        handle: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(handle)
            callback(*args)

        handle = asyncio.get_running_loop().call_later(delay, run)
        self._timers.add(handle)

    def _tick(self) -> None:
        if not self._closed:
            self.publish()
            self._later(self.publish_s, self._tick)

    def _listen(self, sock: socket.socket) -> None:
        if not self._closed:
            self._listening.add(sock.fileno())
            asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, sock)

    def _readable(self, sock: socket.socket) -> None:
        if self._yields(sock.fileno()):
            return
        try:
            conn, _ = sock.accept()
        except OSError:
            # BlockingIOError: a sibling was quicker; ECONNABORTED, EMFILE and the
            # like: the connection is gone or cannot be taken now, the next
            # wake-up tries again.
            return
        conn.setblocking(False)
        assert self._serve is not None  # set by start()
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self._pending += 1
        self._handing_over.add(task)
        task.add_done_callback(self._handed_over)
        self.publish()

    def _yields(self, fd: int) -> bool:
        """Whether to leave the waiting connection to a sibling for now (and stop
        listening for ``recheck_s``): while one holds fewer connections, for at most
        ``defer_s`` from the first time this wait was left to it."""
        if self.slot is None:
            return False
        now = time.monotonic()
        first, last = self._yielding.get(fd, (now, now))
        if now - last > 3 * self.recheck_s:
            first = now  # a new connection, not the one last left to a sibling
        fewest = self.board.fewest_elsewhere(self.slot)
        if fewest is None or self.count <= fewest or now - first >= self.defer_s:
            self._yielding.pop(fd, None)
            return False
        self._yielding[fd] = (first, now)
        asyncio.get_running_loop().remove_reader(fd)
        self._listening.discard(fd)
        self._later(self.recheck_s, self._listen_again, fd)
        return True

    def _listen_again(self, fd: int) -> None:
        for sock in self.sockets:
            if sock.fileno() == fd:
                self._listen(sock)

    def _handed_over(self, task: asyncio.Task[Any]) -> None:
        self._handing_over.discard(task)
        if task.cancelled() or task.exception() is not None:
            # Never connected (the peer left while it was set up, or the worker stops).
            self._pending = max(self._pending - 1, 0)
            self.publish()

    def close(self) -> None:
        """Stop accepting, free the board slot and close the listening sockets."""
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        loop = asyncio.get_running_loop()
        for fd in self._listening:
            loop.remove_reader(fd)
        self._listening.clear()
        if self.slot is not None:
            self.board.release(self.slot)
        for sock in self.sockets:
            sock.close()

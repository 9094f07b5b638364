"""Spread the connections of one gunicorn master over its workers.

gunicorn hands every worker the same listening socket and lets them race for each
connection. An event loop woken for a listening socket accepts every connection
waiting there, so a client that opens four keep-alive connections at once (a sensor
catching up, an ActivityWatch import, nginx's upstream pool) mostly lands three or
four of them on one worker, and their requests then share one core while the other
idles (uvicorn-worker#34, gunicorn#2670). Measured with four snapshot batches in
flight on two workers: 104 and 69 requests per worker before, 87 and 86 with this.

Here a worker accepts one connection per wake-up, and only while it holds no more
connections than each of its live siblings; otherwise it stops listening, looks again
every ``recheck_s``, and after ``defer_s`` takes the connection anyway, so a sibling
that is busy never keeps a connection waiting longer than that. The workers publish
their counts on a :class:`ConnectionBoard`, memory the master maps before it forks
them: a worker's count is published whenever it changes and every ``publish_s``; a
slot whose worker is gone, or that was not refreshed for ``stale_s`` (its worker
hangs), counts as free.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import mmap
import multiprocessing
import os
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable, Sequence
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
        # fork: the master must not start a resource tracker or forkserver for it.
        self._claiming = multiprocessing.get_context("fork").Lock()

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

    def publish(self, slot: int, pid: int, count: int) -> bool:
        """Record that worker ``pid`` in ``slot`` holds ``count`` connections now.

        Returns:
            False when the slot is no longer ``pid``'s (it went stale and another
            worker claimed it): claim a new one.
        """
        owner = _SLOT.unpack_from(self._memory, slot * _SLOT.size)[0]
        if owner != pid:
            return False
        _SLOT.pack_into(self._memory, slot * _SLOT.size, pid, count, time.monotonic())
        return True

    def release(self, slot: int, pid: int) -> None:
        """Free ``slot`` if it is still ``pid``'s: its worker stopped accepting."""
        if _SLOT.unpack_from(self._memory, slot * _SLOT.size)[0] == pid:
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
    """A set that calls ``added(item)`` after every add and ``removed()`` after
    every discard or remove (for uvicorn's ``server_state.connections``: its
    protocols add themselves as they connect and drop themselves as they close)."""

    def __init__(self, added: Callable[[Any], None], removed: Callable[[], None]) -> None:
        super().__init__()
        self.added = added
        self.removed = removed

    def add(self, item: Any) -> None:
        super().add(item)
        self.added(item)

    def discard(self, item: Any) -> None:
        super().discard(item)
        self.removed()

    def remove(self, item: Any) -> None:
        super().remove(item)
        self.removed()


class _Handover:
    """An accepted connection until its protocol joins the open connections."""

    __slots__ = ("protocol", "task")

    def __init__(self) -> None:
        self.protocol: asyncio.BaseProtocol | None = None
        self.task: asyncio.Task[None] | None = None


class AcceptGate:
    """Accept from listening sockets one connection at a time, least loaded first.

    Args:
        sockets: the listening sockets (the gate closes them in :meth:`close`).
        board: the master's board.
        defer_s: how long at most to leave a waiting connection to siblings that
            hold fewer connections (then it is taken, however busy they are).
        recheck_s: how often to look again meanwhile (uvloop's timers count whole
            milliseconds: less would be a busy loop).
        publish_s: how often to publish the count even when it does not change.
        retry_s: how long to stop listening after an accept failed for want of
            descriptors or memory.
    """

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        board: ConnectionBoard,
        *,
        defer_s: float = 0.005,
        recheck_s: float = 0.001,
        publish_s: float = 0.5,
        retry_s: float = 1.0,
    ) -> None:
        self.sockets = list(sockets)
        self.board = board
        self.defer_s = defer_s
        self.recheck_s = recheck_s
        self.publish_s = publish_s
        self.retry_s = retry_s
        # The server's open connections (becomes uvicorn's server_state.connections).
        self.connections = CountedSet(self._joined, self._dropped)
        self.pid = os.getpid()
        self.slot: int | None = None
        self._protocol: Callable[[], asyncio.BaseProtocol] | None = None
        self._tls: ssl.SSLContext | None = None
        # Accepted, their protocol not yet among the connections: counted too, or
        # two accepted at once would look like one to the siblings.
        self._pending: set[_Handover] = set()
        self._by_protocol: dict[asyncio.BaseProtocol, _Handover] = {}
        # Per listening fd: when its waiting connection was first left to a sibling.
        self._yielding: dict[int, float] = {}
        self._listening: set[int] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._failures: set[type[BaseException]] = set()
        self._closed = False

    @property
    def count(self) -> int:
        """Open connections, those accepted and not yet connected included."""
        return len(self.connections) + len(self._pending)

    def publish(self) -> None:
        """Publish the current count (called whenever it changes)."""
        if self.slot is None or self._closed:
            return
        if not self.board.publish(self.slot, self.pid, self.count):
            # This worker hung for longer than stale_s and lost its slot.
            self.slot = self.board.claim(self.pid)
            if self.slot is not None:
                self.board.publish(self.slot, self.pid, self.count)

    def start(
        self, protocol: Callable[[], asyncio.BaseProtocol], tls: ssl.SSLContext | None = None
    ) -> None:
        """Claim a board slot and start listening on every socket.

        Args:
            protocol: makes the server's protocol for a new connection.
            tls: the server's TLS context (None: plain TCP).
        """
        self._protocol = protocol
        self._tls = tls
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
        if not self._closed and sock.fileno() not in self._listening:
            self._listening.add(sock.fileno())
            asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, sock)

    def _unlisten(self, sock: socket.socket, for_s: float) -> None:
        asyncio.get_running_loop().remove_reader(sock.fileno())
        self._listening.discard(sock.fileno())
        self._later(for_s, self._listen_again, sock)

    def _listen_again(self, sock: socket.socket) -> None:
        if self._closed:
            return
        waiting = select.poll()  # not select(): no limit on the descriptor's number
        waiting.register(sock, select.POLLIN)
        if not waiting.poll(0):
            # Nothing waits any more (a sibling took it): the next one is new.
            self._yielding.pop(sock.fileno(), None)
        self._listen(sock)

    def _yields(self, sock: socket.socket) -> bool:
        """Whether to leave the waiting connection to a sibling for now: while one
        holds fewer connections, for at most ``defer_s`` from the first time."""
        if self.slot is None or self.count == 0:
            return False  # (no count is below none: the board need not be read)
        fd = sock.fileno()
        now = time.monotonic()
        first = self._yielding.get(fd)
        fewest = self.board.fewest_elsewhere(self.slot)
        if fewest is None or self.count <= fewest:
            return False
        if first is None:
            self._yielding[fd] = now
        elif now - first >= self.defer_s:
            return False
        self._unlisten(sock, self.recheck_s)
        return True

    def _readable(self, sock: socket.socket) -> None:
        if self._yields(sock):
            return
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            self._yielding.pop(sock.fileno(), None)
            return  # a sibling was quicker, or the client left: nothing waits
        except OSError as exc:
            # Out of descriptors or memory (EMFILE, ENOBUFS, ...): the connection
            # stays queued, and listening on would wake this loop at once, again
            # and again.
            LOG.warning("cannot accept a connection now (%s): listening again in %ss",
                        exc, self.retry_s)  # fmt: skip
            self._unlisten(sock, self.retry_s)
            return
        self._yielding.pop(sock.fileno(), None)
        conn.setblocking(False)
        handover = _Handover()
        handover.task = asyncio.get_running_loop().create_task(self._hand_over(handover, conn))
        self._pending.add(handover)
        handover.task.add_done_callback(functools.partial(self._handed_over, handover))
        self.publish()

    def _new_protocol(self, handover: _Handover) -> asyncio.BaseProtocol:
        assert self._protocol is not None  # set by start()
        handover.protocol = self._protocol()
        self._by_protocol[handover.protocol] = handover
        return handover.protocol

    async def _hand_over(self, handover: _Handover, conn: socket.socket) -> None:
        await asyncio.get_running_loop().connect_accepted_socket(
            functools.partial(self._new_protocol, handover), conn, ssl=self._tls
        )

    def _joined(self, item: Any) -> None:
        # Only a protocol this gate made ends a hand-over: a WebSocket protocol
        # that takes over an upgraded connection joins too, as a connection already
        # counted.
        handover = self._by_protocol.pop(item, None)
        if handover is not None:
            self._pending.discard(handover)
        self.publish()

    def _dropped(self) -> None:
        self.publish()
        # Fewer now: a wait left to a sibling may be this worker's to take. Without
        # this, two workers would each leave connections to the other while both sit
        # out their re-check (a flood of short connections ran at a third).
        for sock in self.sockets:
            if sock.fileno() in self._yielding:
                self._listen(sock)

    def _handed_over(self, handover: _Handover, task: asyncio.Task[Any]) -> None:
        if handover.protocol is not None:
            self._by_protocol.pop(handover.protocol, None)
        if handover in self._pending:
            self._pending.discard(handover)
            self._dropped()  # never joined
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and type(exc) not in self._failures:
            # Once per kind: a client leaving mid-handshake is common, a broken
            # hand-over would lose every connection.
            self._failures.add(type(exc))
            LOG.warning("a connection failed while it was set up", exc_info=exc)

    async def close(self) -> None:
        """Stop accepting, free the board slot and close the listening sockets, then
        wait for the connections being handed over (so that the server's shutdown
        finds them among its connections)."""
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        loop = asyncio.get_running_loop()
        for fd in self._listening:
            loop.remove_reader(fd)
        self._listening.clear()
        if self.slot is not None:
            self.board.release(self.slot, self.pid)
        for sock in self.sockets:
            sock.close()
        tasks = [h.task for h in self._pending if h.task is not None]
        if tasks:
            await asyncio.wait(tasks)
        await asyncio.sleep(0)  # the last connection_made callbacks run

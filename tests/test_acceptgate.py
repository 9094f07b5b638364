"""Connections spread over the workers (screenaware/acceptgate.py).

The board is tested across a real fork; the gate inside a real gunicorn, with raw
sockets opened all at once, as a client's connection pool opens them.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from screenaware.acceptgate import ConnectionBoard, CountedSet
from screenaware.config import Config
from screenaware.web.headers import WORKER_PID_HEADER
from tests.service import Service, run_service


def _publish_in_child(board: ConnectionBoard, count: int, published: Any, done: Any) -> None:
    pid = os.getpid()
    slot = board.claim(pid)
    assert slot is not None
    board.publish(slot, pid, count)
    published.set()
    done.wait(30)


def test_a_forked_workers_count_is_seen_by_its_sibling_while_it_lives() -> None:
    board = ConnectionBoard(slots=4)
    mine = board.claim(os.getpid())
    assert mine == 0
    assert board.fewest_elsewhere(mine) is None  # alone: nobody to defer to
    fork = multiprocessing.get_context("fork")
    published, done = fork.Event(), fork.Event()
    child = fork.Process(target=_publish_in_child, args=(board, 7, published, done))
    child.start()
    try:
        assert published.wait(30)
        assert board.fewest_elsewhere(mine) == 7  # written by the child, read here
        board.publish(mine, os.getpid(), 3)
        other = board.claim(os.getppid())  # a live process of our own choosing
        assert other not in (None, mine, 1)  # the child holds slot 1
        assert other is not None
        board.publish(other, os.getppid(), 5)
        assert board.fewest_elsewhere(mine) == 5
        assert board.fewest_elsewhere(other) == 3
        board.release(other)
        assert board.fewest_elsewhere(mine) == 7
    finally:
        done.set()
        child.join(30)
    assert child.exitcode == 0
    # Gone: its slot is free at once, long before it would go stale.
    assert board.fewest_elsewhere(mine) is None
    assert board.claim(os.getppid()) == 1


def test_a_slot_not_published_for_stale_s_is_free_and_a_full_board_claims_none() -> None:
    board = ConnectionBoard(slots=2, stale_s=0.2)
    first, second = board.claim(os.getpid()), board.claim(os.getppid())
    assert (first, second) == (0, 1)
    assert board.claim(os.getpid()) is None  # full: that worker accepts without looking
    board.publish(0, os.getpid(), 1)
    assert board.fewest_elsewhere(0) == 0
    time.sleep(0.3)  # neither publishes: both hang
    assert board.fewest_elsewhere(0) is None
    assert board.claim(os.getpid()) == 0


def test_the_counted_set_reports_every_change() -> None:
    changes: list[tuple[str, int]] = []
    connections = CountedSet(
        lambda: changes.append(("added", len(connections))),
        lambda: changes.append(("discarded", len(connections))),
    )
    connections.add("a")
    connections.add("b")
    connections.discard("a")
    connections.discard("missing")
    assert changes == [("added", 1), ("added", 2), ("discarded", 1), ("discarded", 1)]
    assert connections == {"b"}


def _started(service: Service) -> list[int]:
    """The workers' pids, once every one of them is serving."""
    pids = service.worker_pids()
    deadline = time.monotonic() + 60
    while not all(
        f"[{pid}] [INFO] Application startup complete." in service.log.read_text() for pid in pids
    ):
        assert time.monotonic() < deadline, service.log.read_text()[-2000:]
        time.sleep(0.1)
    return pids


@contextmanager
def _connections(service: Service, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections opened at once (each handshake done before any request)."""
    host, port = service.url.removeprefix("http://").split(":")
    socks = [socket.create_connection((host, int(port)), timeout=30) for _ in range(count)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _answering_pid(sock: socket.socket) -> int:
    sock.sendall(b"GET /.well-known/health HTTP/1.1\r\nHost: test\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == WORKER_PID_HEADER.lower():
            return int(value)
    raise AssertionError(head)


def _spread(service: Service, count: int) -> collections.Counter[int]:
    with _connections(service, count) as socks:
        spread = collections.Counter(_answering_pid(sock) for sock in socks)
    time.sleep(0.3)  # the workers see the closes before the next round opens
    return spread


def _config(config: Config) -> Config:
    return dataclasses.replace(config, worker_pid_header=True)


def test_connections_opened_at_once_are_spread_evenly_over_the_workers(
    config: Config, tmp_path: Path
) -> None:
    with run_service(_config(config), tmp_path, workers=2) as service:
        pids = _started(service)
        for _ in range(5):
            spread = _spread(service, 4)
            assert sorted(spread) == sorted(pids), spread
            assert sorted(spread.values()) == [2, 2], spread
        spread = _spread(service, 6)
        assert sorted(spread.values()) == [3, 3], spread


def test_a_stopped_sibling_delays_a_connection_only_briefly(config: Config, tmp_path: Path) -> None:
    with run_service(_config(config), tmp_path, workers=2) as service:
        first, second = _started(service)
        os.kill(second, signal.SIGSTOP)
        try:
            # The stopped worker published 0 connections: the running one takes
            # the first, then defers to it for each further one, and takes those
            # too when nobody else did (well before the stopped one counts as stale).
            with _connections(service, 3) as socks:
                for sock in socks:
                    sock.settimeout(1.5)
                assert [_answering_pid(sock) for sock in socks] == [first] * 3
        finally:
            os.kill(second, signal.SIGCONT)


def test_a_worker_started_again_takes_its_share(config: Config, tmp_path: Path) -> None:
    with run_service(_config(config), tmp_path, workers=2) as service:
        first, second = _started(service)
        os.kill(second, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            pids = service.worker_pids()
            if len(pids) == 2 and second not in pids:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        pids = _started(service)
        assert first in pids
        # The killed worker's slot is free as soon as it is gone (not after stale_s).
        spread = _spread(service, 4)
        assert sorted(spread) == sorted(pids), spread
        assert sorted(spread.values()) == [2, 2], spread


def test_with_balancing_off_the_workers_race_and_still_serve(
    config: Config, tmp_path: Path
) -> None:
    with run_service(
        dataclasses.replace(_config(config), balance_connections=False), tmp_path, workers=2
    ) as service:
        pids = _started(service)
        spread = _spread(service, 4)
        assert sum(spread.values()) == 4
        assert set(spread) <= set(pids)


def test_connections_one_after_another_are_all_answered(config: Config, tmp_path: Path) -> None:
    # A client that opens a connection per request (no keep-alive).
    with run_service(_config(config), tmp_path, workers=2) as service:
        pids = _started(service)
        seen: collections.Counter[int] = collections.Counter()
        for _ in range(40):
            with _connections(service, 1) as (sock,):
                seen[_answering_pid(sock)] += 1
        assert sum(seen.values()) == 40
        assert set(seen) <= set(pids)

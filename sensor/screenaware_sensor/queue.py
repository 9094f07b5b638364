"""The local queue: every snapshot is stored here (SQLite) before it is uploaded.

A snapshot leaves the queue only after the server answered 200 for it. If the sensor
dies between the server's 200 and the delete, the snapshot is sent again; the server
stores a snapshot by its user and start, so the copy lands on the same points and
counts once. The queue keeps at most ``capacity`` snapshots: past that the oldest go,
with a log line. Snapshots the server refuses for good (400, 413 alone) move to the
``rejected`` table, so one bad snapshot never blocks the rest.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screenaware_sensor.snapshot import iso_ms

log = logging.getLogger("screenaware_sensor.queue")

REJECTED_KEEP = 10_000  # refused snapshots kept for inspection


@dataclass(frozen=True)
class Queued:
    """One queued snapshot: its row id, end time (Unix ms) and JSON text."""

    id: int
    taken_ms: int
    body: str


# How long a queue waits for another connection of the file (the sensor's threads).
BUSY_SECONDS = 30.0


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch ``db`` to WAL, waiting while another connection holds the file.

    SQLite answers "database is locked" at once, without its busy handler, when two
    connections switch a new file's journal mode together (the snapshot and upload
    threads opening a first queue): retry for as long as the busy timeout would wait.
    """
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class SnapshotQueue:
    """A bounded FIFO of snapshots in one SQLite file. One instance per thread.

    Args:
        path: the SQLite file (created with its directory).
        capacity: snapshots kept at most; the oldest are dropped beyond.
    """

    def __init__(self, path: Path, capacity: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.capacity = capacity
        # Autocommit; the few multi-statement changes open their own transaction.
        self.db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_SECONDS)
        # WAL: the snapshot thread and the upload thread do not block each other.
        # synchronous=FULL: an enqueued snapshot survives a power cut (one write / 10 s).
        _enable_wal(self.db)
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS snapshot (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                taken_ms INTEGER NOT NULL,
                body TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS rejected (
                id INTEGER PRIMARY KEY,
                taken_ms INTEGER NOT NULL,
                body TEXT NOT NULL,
                reason TEXT NOT NULL,
                rejected_ms INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            """
        )

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def put(self, snapshot: dict[str, Any], taken_ms: int) -> None:
        """Store one snapshot (and remember its end as the last one taken)."""
        self.put_many([(snapshot, taken_ms)], {"last_taken_ms": str(taken_ms)})

    def put_many(
        self, snapshots: Sequence[tuple[dict[str, Any], int]], meta: Mapping[str, str] | None = None
    ) -> None:
        """Store snapshots ``(body, taken_ms)`` and ``meta`` values in one transaction."""
        rows = [
            (taken_ms, json.dumps(body, ensure_ascii=False, separators=(",", ":")))
            for body, taken_ms in snapshots
        ]
        with self._transaction():
            self.db.executemany("INSERT INTO snapshot (taken_ms, body) VALUES (?, ?)", rows)
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (meta or {}).items()
            )
            dropped = self._trim() if rows else None
        if dropped:
            count, first, last = dropped
            log.warning(
                "queue full (%d snapshots): dropped the %d oldest, taken %s to %s",
                self.capacity,
                count,
                iso_ms(first),
                iso_ms(last),
            )

    def _trim(self) -> tuple[int, int, int] | None:
        (size,) = self.db.execute("SELECT count(*) FROM snapshot").fetchone()
        excess = size - self.capacity
        if excess <= 0:
            return None
        row = self.db.execute(
            "SELECT count(*), min(taken_ms), max(taken_ms), max(id) FROM"
            " (SELECT id, taken_ms FROM snapshot ORDER BY id LIMIT ?)",
            (excess,),
        ).fetchone()
        self.db.execute("DELETE FROM snapshot WHERE id <= ?", (row[3],))
        return int(row[0]), int(row[1]), int(row[2])

    def last_taken_ms(self) -> int | None:
        """End of the last snapshot taken with this queue (survives restarts)."""
        value = self.meta("last_taken_ms")
        return int(value) if value else None

    def meta(self, name: str) -> str | None:
        """A value kept beside the queue (e.g. a bridge cursor)."""
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def peek(self, limit: int, max_bytes: int) -> list[Queued]:
        """The oldest snapshots: at most ``limit`` and ``max_bytes`` together (at least one)."""
        rows = self.db.execute(
            "SELECT id, taken_ms, body FROM snapshot ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        batch: list[Queued] = []
        size = 2
        for row in rows:
            size += len(row[2].encode()) + 1
            if batch and size > max_bytes:
                break
            batch.append(Queued(int(row[0]), int(row[1]), str(row[2])))
        return batch

    def delete(self, items: Sequence[Queued]) -> None:
        """Remove delivered snapshots."""
        with self._transaction():
            self.db.executemany("DELETE FROM snapshot WHERE id = ?", [(q.id,) for q in items])

    def reject(self, items: Sequence[Queued], reason: str) -> None:
        """Move snapshots the server refuses for good out of the way (kept for inspection)."""
        now = int(time.time() * 1000)
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO rejected (id, taken_ms, body, reason, rejected_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                [(q.id, q.taken_ms, q.body, reason[:2000], now) for q in items],
            )
            self.db.executemany("DELETE FROM snapshot WHERE id = ?", [(q.id,) for q in items])
            self.db.execute(
                "DELETE FROM rejected WHERE id NOT IN"
                " (SELECT id FROM rejected ORDER BY id DESC LIMIT ?)",
                (REJECTED_KEEP,),
            )
        for q in items:
            log.error("server refused snapshot taken %s for good: %s", iso_ms(q.taken_ms), reason)

    def __len__(self) -> int:
        (size,) = self.db.execute("SELECT count(*) FROM snapshot").fetchone()
        return int(size)

    def rejected_count(self) -> int:
        """Snapshots kept in the ``rejected`` table."""
        (size,) = self.db.execute("SELECT count(*) FROM rejected").fetchone()
        return int(size)

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

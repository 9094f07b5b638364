"""Import of an aw-server export file (``GET /api/0/export``, or the web UI's
export button): ``{"buckets": {id: {id, type, client, hostname, created, data,
events: [{timestamp, duration, data}]}}}``.

The conversion is the sensor bridge's own (:mod:`screenaware_sensor.activitywatch`):
window buckets give the focused window, afk buckets of the same host where the
person was away, web buckets the documents of the browser window; snapshots of at
most 10 s. Other bucket types are reported as skipped.

The file is parsed as a stream (``ijson``) into a scratch SQLite database on disk,
so neither a 200 MB file nor its events are ever held in memory; the conversion
then reads one UTC day of events at a time. Everything is converted and validated
once before the first snapshot is stored, so a bad file stores nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import math
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import ijson
import marshmallow
import orjson

from schemas.activity import WindowSchema
from screenaware.activity import SnapshotService
from screenaware.errors import Invalid
from screenaware.portability.spool import Spool
from screenaware.timeutil import from_ms, iso
from screenaware_sensor.activitywatch import (
    DAY_MS,
    SNAPSHOT_MS,
    Event,
    browser_of,
    bucket_kind,
    cut,
    event_of,
)
from screenaware_sensor.snapshot import Privacy

_window_schema = WindowSchema()
_NO_FILTERS = Privacy()
FUTURE_MS = DAY_MS  # as live snapshots: at most a day ahead of the server's clock


class SnapshotChecker:
    """Loads the snapshots a conversion builds as the API's schema would, each
    distinct window once: the ≤ 10 s pieces of one stretch share their window, and
    the schema's work per snapshot was most of an import's time."""

    MAX_CACHED = 10_000

    def __init__(self) -> None:
        self._windows: dict[bytes, dict[str, Any]] = {}

    def load(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The snapshot as :class:`SnapshotSchema` would load it; :class:`Invalid`
        naming ``where`` when a window breaks the API's limits."""
        if len(self._windows) > self.MAX_CACHED:
            self._windows.clear()
        windows = []
        for window in body["windows"]:
            key = orjson.dumps(window, option=orjson.OPT_SORT_KEYS)
            loaded = self._windows.get(key)
            if loaded is None:
                try:
                    loaded = _window_schema.load(window)
                except marshmallow.ValidationError as exc:
                    raise bad(where, f"Gives an invalid window: {exc.messages}") from None
                self._windows[key] = loaded
            windows.append(loaded)
        duration = int(body["durationMs"])
        if not 1 <= duration <= SNAPSHOT_MS:
            raise bad(where, "Gives a snapshot of more than 10 s.")  # never, by construction
        taken = dt.datetime.fromisoformat(body["timeTaken"])
        return {"timeTaken": taken, "durationMs": duration, "windows": windows}


def bad(where: str, message: str) -> Invalid:
    """The error of a bad file: ``where`` names the item and field."""
    return Invalid(f"{where}: {message}", {where: [message]})


class JsonEvents:
    """The parse events of a JSON file, read as a stream (``ijson``); parse errors
    as :class:`Invalid`."""

    def __init__(self, source: IO[bytes]) -> None:
        self._it = ijson.basic_parse(source, use_float=True)

    def next(self) -> tuple[str, Any]:
        try:
            event: tuple[str, Any] = next(self._it)
            return event
        except StopIteration:
            raise bad("file", "Ends too early (truncated?).") from None
        except ijson.JSONError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "not JSON"
            raise bad("file", f"Not valid JSON ({reason}).") from None

    def value(self, first: tuple[str, Any]) -> Any:
        """Build the value starting with ``first`` (small values only)."""
        builder = ijson.ObjectBuilder()
        builder.event(*first)
        depth = 1 if first[0] in ("start_map", "start_array") else 0
        while depth:
            event = self.next()
            builder.event(*event)
            if event[0] in ("start_map", "start_array"):
                depth += 1
            elif event[0] in ("end_map", "end_array"):
                depth -= 1
        return builder.value

    def skip(self, first: tuple[str, Any]) -> None:
        depth = 1 if first[0] in ("start_map", "start_array") else 0
        while depth:
            kind, _ = self.next()
            if kind in ("start_map", "start_array"):
                depth += 1
            elif kind in ("end_map", "end_array"):
                depth -= 1


@dataclass
class Bucket:
    id: str
    kind: str
    type: str
    hostname: str | None
    events: int = 0


@dataclass
class Scratch:
    """The events of a file, on disk, indexed by bucket and time."""

    db: sqlite3.Connection
    handle: IO[bytes]
    buckets: dict[str, Bucket] = field(default_factory=dict)

    @classmethod
    def create(cls) -> Scratch:
        handle = tempfile.NamedTemporaryFile(suffix=".sqlite3")
        # The thread that parses is not the one that converts.
        db = sqlite3.connect(handle.name, check_same_thread=False)
        db.execute("PRAGMA journal_mode = OFF")  # scratch data: no crash safety needed
        db.execute("PRAGMA synchronous = OFF")
        db.execute("CREATE TABLE events (bucket TEXT, start INTEGER, end INTEGER, data TEXT)")
        return cls(db, handle)

    def close(self) -> None:
        self.db.close()
        self.handle.close()

    def events(self, bucket: str, start: int, end: int) -> list[Event]:
        """The bucket's events overlapping ``[start, end)``, oldest first."""
        rows = self.db.execute(
            "SELECT start, end, data FROM events WHERE bucket = ? AND start < ? AND end > ? "
            "ORDER BY start",
            (bucket, end, start),
        )
        return [Event(s, e, json.loads(d)) for s, e, d in rows]

    def span(self, bucket: str) -> tuple[int, int] | None:
        row = self.db.execute(
            "SELECT min(start), max(end) FROM events WHERE bucket = ?", (bucket,)
        ).fetchone()
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))


# What the conversion takes from events, and the API's limits on it.
_LIMITS = {
    "window": (("app", 512), ("title", 4096)),
    "web": (("url", 4096), ("title", 4096)),
    "afk": (("status", 64),),
}


def _event(item: Any, where: str, now_ms: int, kind: str) -> Event | None:
    if not isinstance(item, dict):
        raise bad(where, "Not an object.")
    if not isinstance(item.get("timestamp"), str):
        raise bad(f"{where}.timestamp", "Missing or not a string.")
    duration = item.get("duration", 0)
    if (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not math.isfinite(duration)
    ):
        raise bad(f"{where}.duration", "Not a number of seconds.")
    if duration < 0:
        raise bad(f"{where}.duration", "Negative.")
    if item.get("data") is not None and not isinstance(item["data"], dict):
        raise bad(f"{where}.data", "Not an object.")
    for name, longest in _LIMITS.get(kind, ()):
        value = (item.get("data") or {}).get(name)
        if value is not None and not isinstance(value, str):
            raise bad(f"{where}.data.{name}", "Not a string.")
        if value is not None and len(value) > longest:
            raise bad(f"{where}.data.{name}", f"Longer than {longest} characters.")
    try:
        event = event_of(item)
    except ValueError:
        raise bad(f"{where}.timestamp", "Not an ISO 8601 time.") from None
    if event is not None and (event.start < 0 or event.end > now_ms + FUTURE_MS):
        raise bad(f"{where}.timestamp", "Before 1970 or more than a day in the future.")
    return event


def load(source: IO[bytes], now_ms: int) -> Scratch:
    """Parse an export file into a scratch database; :class:`Invalid` naming the
    first bad bucket, event index and field."""
    events = JsonEvents(source)
    scratch = Scratch.create()
    try:
        if events.next()[0] != "start_map":
            raise bad("file", "Not an aw-server export (expected an object).")
        seen_buckets = False
        while (item := events.next())[0] == "map_key":
            if item[1] != "buckets":
                events.skip(events.next())
                continue
            seen_buckets = True
            if events.next()[0] != "start_map":
                raise bad("buckets", "Not an object.")
            while (key := events.next())[0] == "map_key":
                _bucket(events, scratch, str(key[1]), now_ms)
        if not seen_buckets:
            raise bad("buckets", "Missing.")
        scratch.db.execute("CREATE INDEX by_time ON events (bucket, start)")
        scratch.db.commit()
        return scratch
    except BaseException:
        scratch.close()
        raise


def _bucket(events: JsonEvents, scratch: Scratch, bucket_id: str, now_ms: int) -> None:
    where = f"buckets.{bucket_id}"
    if events.next()[0] != "start_map":
        raise bad(where, "Not an object.")
    meta: dict[str, Any] = {}
    rows: list[tuple[str, int, int, str]] = []
    count = 0
    while (key := events.next())[0] == "map_key":
        name = str(key[1])
        first = events.next()
        if name != "events":
            if first[0] in ("start_map", "start_array"):
                events.skip(first)
            else:
                meta[name] = first[1]
            continue
        if first[0] != "start_array":
            raise bad(f"{where}.events", "Not an array.")
        # Events of buckets the conversion does not use are checked, not kept. The
        # type comes before the events in aw-server's files; when it does not, they
        # are kept until the type is known.
        keep = "type" not in meta or bucket_kind(bucket_id, meta) != ""
        index = 0
        while (start := events.next())[0] != "end_array":
            kind = bucket_kind(bucket_id, meta)
            event = _event(events.value(start), f"{where}.events[{index}]", now_ms, kind)
            index += 1
            if event is not None and keep:
                rows.append((bucket_id, event.start, event.end, json.dumps(dict(event.data))))
                count += 1
            if len(rows) >= 5000:
                scratch.db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
                rows.clear()
    if rows:
        scratch.db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
    for name in ("type", "hostname"):
        if meta.get(name) is not None and not isinstance(meta[name], str):
            raise bad(f"{where}.{name}", "Not a string.")
    scratch.buckets[bucket_id] = Bucket(
        bucket_id,
        bucket_kind(bucket_id, meta),
        str(meta.get("type") or ""),
        meta.get("hostname"),
        count,
    )


def snapshots(scratch: Scratch) -> Iterator[dict[str, Any]]:
    """The snapshots of the file, validated as the API validates them, by window
    bucket and then time, one UTC day of events at a time."""
    buckets = scratch.buckets
    checker = SnapshotChecker()
    webs = sorted(b for b, info in buckets.items() if info.kind == "web")
    for window_id in sorted(b for b, info in buckets.items() if info.kind == "window"):
        host = buckets[window_id].hostname
        afk_ids = sorted(
            b for b, info in buckets.items() if info.kind == "afk" and info.hostname == host
        )
        afk_id = afk_ids[0] if afk_ids else None
        span = scratch.span(window_id)
        if span is None:
            continue
        day = span[0] // DAY_MS * DAY_MS
        while day < span[1]:
            end = day + DAY_MS
            windows = scratch.events(window_id, day, end)
            afk = scratch.events(afk_id, day, end) if afk_id is not None else None
            web = {browser_of(b): scratch.events(b, day, end) for b in webs}
            for body, _taken in cut(windows, afk, web, day, end, _NO_FILTERS):
                yield checker.load(body, f"buckets.{window_id}")
            day = end


def skipped(scratch: Scratch) -> list[dict[str, str]]:
    return [
        {"item": b.id, "reason": f"bucket type {b.type or 'unknown'!r} is not imported"}
        for b in sorted(scratch.buckets.values(), key=lambda b: b.id)
        if b.kind == ""
    ]


@dataclass
class Summary:
    snapshots: int = 0
    start: int | None = None
    end: int | None = None

    def add(self, snapshot: Mapping[str, Any]) -> None:
        end = int(snapshot["timeTaken"].timestamp() * 1000)
        begin = end - int(snapshot["durationMs"])
        self.snapshots += 1
        self.start = begin if self.start is None else min(self.start, begin)
        self.end = end if self.end is None else max(self.end, end)

    def answer(self, skipped: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "snapshots": self.snapshots,
            "skipped": skipped,
            "from": None if self.start is None else iso(from_ms(self.start)),
            "to": None if self.end is None else iso(from_ms(self.end)),
        }


async def count(source: Callable[[], Iterator[dict[str, Any]]]) -> int:
    """How many snapshots ``source()`` gives, converting (and so checking) all of
    them in a thread: :class:`Invalid` here means nothing was stored."""
    return await asyncio.to_thread(lambda: sum(1 for _ in source()))


async def store_batches(
    service: SnapshotService,
    user: str,
    source: Callable[[], Iterator[dict[str, Any]]],
    total: int,
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Store the snapshots of ``source()`` in batches; the summary.

    Reading the scratch database and converting run in a thread (a large file
    takes a while), one batch at a time, so the event loop never waits on them.

    Args:
        service: stores the snapshots.
        user: their owner.
        source: a fresh iterator of the converted snapshots, all valid
            (:func:`count` went through them first).
        total: how many there are.
        batch_size: snapshots per ``ingest``.
        progress: told (stored, total) after each batch.
    """
    summary = Summary()
    snapshots_left = source()
    while batch := await asyncio.to_thread(
        lambda: list(itertools.islice(snapshots_left, batch_size))
    ):
        for snapshot in batch:
            summary.add(snapshot)
        await service.ingest(user, batch)
        if progress:
            progress(summary.snapshots, total)
    if progress and not summary.snapshots:
        progress(0, total)
    return summary


async def ingest(
    service: SnapshotService,
    user: str,
    scratch: Scratch,
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Convert and check everything, then store it in batches; the summary."""

    def source() -> Iterator[dict[str, Any]]:
        return snapshots(scratch)

    total = await count(source)
    # The whole file is valid past here.
    summary = await store_batches(service, user, source, total, batch_size, progress)
    return summary.answer(skipped(scratch))


async def import_file(
    service: SnapshotService,
    user: str,
    spool: Spool,
    now_ms: int,
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Parse, check and store an aw-server export; the summary."""
    scratch = await asyncio.to_thread(load, spool.reader(), now_ms)
    try:
        return await ingest(service, user, scratch, batch_size, progress)
    finally:
        scratch.close()

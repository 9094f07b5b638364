"""Import of a WakaTime data dump (heartbeats): ``{range, days: [{date,
heartbeats: [{time, entity, type, category, project, language, branch, is_write,
...}]}]}``.

Each heartbeat covers the time to the next one, up to the timeout (WakaTime's
keystroke timeout, 15 minutes by default); the last one, with no next, covers
nothing, as in WakaTime's own sums. The covered time becomes focused-window
snapshots of at most 10 s: the editor's window (``editor`` when the dump names it,
else ``wakatime``) titled ``<file name> - <project>``, with ``entity`` as its
document (an ``app`` heartbeat's entity is the application instead). Where one of
the user's projects has the name of a WakaTime project (any case), that name
becomes one of its keywords, so attribution files the time under it.

The dump is parsed as a stream, one day at a time, into a scratch SQLite file
sorted by time; everything is checked before anything is stored.
"""

from __future__ import annotations

import asyncio
import math
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from screenaware.activity import SnapshotService
from screenaware.identity import ProjectStore
from screenaware.portability.activitywatch import (
    FUTURE_MS,
    JsonEvents,
    SnapshotChecker,
    bad,
    count,
    store_batches,
)
from screenaware.portability.spool import Spool
from screenaware.timeutil import from_ms, iso

SNAPSHOT_MS = 10_000
_TEXT = ("entity", "type", "category", "project", "language", "branch", "editor")


class Heartbeats:
    """The heartbeats of a dump on disk, by time."""

    def __init__(self) -> None:
        self._handle = tempfile.NamedTemporaryFile(suffix=".sqlite3")
        self.db = sqlite3.connect(self._handle.name, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute(
            "CREATE TABLE beats (time INTEGER, seq INTEGER, entity TEXT, type TEXT, "
            "project TEXT, editor TEXT)"
        )
        self.count = 0

    def add(self, time_ms: int, beat: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO beats VALUES (?, ?, ?, ?, ?, ?)",
            (time_ms, self.count, beat["entity"], beat.get("type") or "file",
             beat.get("project") or "", beat.get("editor") or ""),
        )  # fmt: skip
        self.count += 1

    def ordered(self) -> Iterator[tuple[int, str, str, str, str]]:
        yield from self.db.execute(
            "SELECT time, entity, type, project, editor FROM beats ORDER BY time, seq"
        )

    def projects(self) -> list[str]:
        rows = self.db.execute("SELECT DISTINCT project FROM beats WHERE project != ''")
        return sorted(str(r[0]) for r in rows)

    def close(self) -> None:
        self.db.close()
        self._handle.close()


def _heartbeat(item: Any, where: str, now_ms: int) -> tuple[int, dict[str, Any]]:
    if not isinstance(item, dict):
        raise bad(where, "Not an object.")
    time = item.get("time")
    if isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time):
        raise bad(f"{where}.time", "Missing or not a number of Unix seconds.")
    time_ms = round(time * 1000)
    if time_ms < 0 or time_ms > now_ms + FUTURE_MS:
        raise bad(f"{where}.time", "Before 1970 or more than a day in the future.")
    if not isinstance(item.get("entity"), str) or not item["entity"].strip():
        raise bad(f"{where}.entity", "Missing or not a string.")
    if len(item["entity"]) > 4096:
        raise bad(f"{where}.entity", "Longer than 4096 characters.")
    for name in _TEXT[1:]:
        if item.get(name) is not None and not isinstance(item[name], str):
            raise bad(f"{where}.{name}", "Not a string.")
    for name, longest in (("project", 256), ("editor", 512)):
        if len(item.get(name) or "") > longest:
            raise bad(f"{where}.{name}", f"Longer than {longest} characters.")
    return time_ms, item


def load(source: IO[bytes], now_ms: int) -> Heartbeats:
    """Parse a dump; :class:`Invalid` naming the first bad day, heartbeat and field."""
    events = JsonEvents(source)
    beats = Heartbeats()
    try:
        if events.next()[0] != "start_map":
            raise bad("file", "Not a WakaTime dump (expected an object).")
        seen = False
        while (key := events.next())[0] == "map_key":
            first = events.next()
            if key[1] != "days":
                events.skip(first)
                continue
            seen = True
            if first[0] != "start_array":
                raise bad("days", "Not an array.")
            index = 0
            while (start := events.next())[0] != "end_array":
                _day(events, start, f"days[{index}]", beats, now_ms)
                index += 1
        if not seen:
            raise bad("days", "Missing.")
        beats.db.execute("CREATE INDEX by_time ON beats (time, seq)")
        beats.db.commit()
        return beats
    except BaseException:
        beats.close()
        raise


def _day(
    events: JsonEvents, start: tuple[str, Any], where: str, beats: Heartbeats, now: int
) -> None:
    if start[0] != "start_map":
        raise bad(where, "Not an object.")
    while (key := events.next())[0] == "map_key":
        first = events.next()
        if key[1] != "heartbeats":
            events.skip(first)
            continue
        if first[0] != "start_array":
            raise bad(f"{where}.heartbeats", "Not an array.")
        index = 0
        while (item := events.next())[0] != "end_array":
            time_ms, beat = _heartbeat(events.value(item), f"{where}.heartbeats[{index}]", now)
            beats.add(time_ms, beat)
            index += 1


def _name(entity: str) -> str:
    return re.split(r"[\\/]", entity.rstrip("\\/"))[-1] or entity


def window(entity: str, kind: str, project: str, editor: str) -> dict[str, Any]:
    """The focused window a heartbeat stands for."""
    title = f"{_name(entity)} - {project}" if project else _name(entity)
    if kind == "app":
        return {"processName": entity, "title": title, "isFocused": True}
    return {
        "processName": editor or "wakatime",
        "title": title,
        "isFocused": True,
        "documents": [{"path": entity, "title": _name(entity)}],
    }


def snapshots(beats: Heartbeats, timeout_ms: int) -> Iterator[dict[str, Any]]:
    """The snapshots of the dump, validated as the API validates them, by time."""
    previous: tuple[int, str, str, str, str] | None = None
    checker = SnapshotChecker()
    for current in beats.ordered():
        if previous is not None:
            yield from _covered(previous, min(current[0], previous[0] + timeout_ms), checker)
        previous = current


def _covered(
    beat: tuple[int, str, str, str, str], end: int, checker: SnapshotChecker
) -> Iterator[dict[str, Any]]:
    start, entity, kind, project, editor = beat
    shown = window(entity, kind, project, editor)
    t = start
    while t < end:
        taken = min(t + SNAPSHOT_MS, end)
        body = {"timeTaken": iso(from_ms(taken)), "durationMs": taken - t, "windows": [shown]}
        yield checker.load(body, f"heartbeat at {iso(from_ms(start))}")
        t = taken


async def keywords(projects: ProjectStore, user: str, names: list[str]) -> list[str]:
    """Make each WakaTime project name a keyword of the user's project of that name;
    returns the names that found a project."""
    mine = await projects.projects(user)
    by_name = {str(p["name"]).lower(): p for p in mine.values()}
    matched = []
    for name in names:
        project = by_name.get(name.lower())
        if project is None:
            continue
        matched.append(name)
        have = project.get("keywords") or []
        if not any(k.lower() == name.lower() for k in have):
            await projects.update_project(user, project["uuid"], {"keywords": [*have, name]})
    return matched


async def import_file(
    service: SnapshotService,
    projects: ProjectStore,
    user: str,
    spool: Spool,
    now_ms: int,
    timeout_ms: int,
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Parse, check and store a WakaTime dump; the summary."""
    beats = await asyncio.to_thread(load, spool.reader(), now_ms)
    try:

        def source() -> Iterator[dict[str, Any]]:
            return snapshots(beats, timeout_ms)

        total = await count(source)
        # Valid as a whole past here: store.
        matched = await keywords(projects, user, beats.projects())
        summary = await store_batches(service, user, source, total, batch_size, progress)
        answer = summary.answer([])
        answer["heartbeats"] = beats.count
        answer["projects"] = matched
        return answer
    finally:
        beats.close()

"""Snapshot ingest: validate times, attribute, write ``window`` and ``activity`` points.

A snapshot covers ``[start, start + durationMs]``: ``timeTaken`` is its end,
the deprecated ``time`` its start, and without either it ends on receipt.
Every window becomes a ``window`` point and the activity window one ``activity``
point, all at the snapshot's start (ms precision), so a snapshot sent again
lands on the same points and is stored once.
"""

from __future__ import annotations

import json
import logging
import uuid as uuidlib
from collections.abc import Callable, Sequence
from typing import Any

from screenaware.activity.attribution import NONE, Attributor, activity_window
from screenaware.activity.store import DAY_MS, ActivityStore
from screenaware.errors import Invalid
from screenaware.storage.influx import GroupCommitWriter, Point
from screenaware.timeutil import to_ms

LOG = logging.getLogger(__name__)

FUTURE_LIMIT_MS = DAY_MS
_NS_PER_MS = 1_000_000


def snapshot_start_ms(snapshot: dict[str, Any], now_ms: int) -> tuple[int, str | None]:
    """The start of a snapshot in Unix ms, and the field it came from."""
    duration = int(snapshot["durationMs"])
    if snapshot.get("timeTaken") is not None:
        return to_ms(snapshot["timeTaken"]) - duration, "timeTaken"
    if snapshot.get("time") is not None:
        return to_ms(snapshot["time"]), "time"
    return now_ms - duration, None


def snapshot_id(user: str, start_ms: int) -> str:
    """Links a snapshot's window points to its activity point; stable on resend."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"snapshot:{user}:{start_ms}"))


class SnapshotService:
    """Turns validated snapshots into points.

    Args:
        writer: the InfluxDB group-commit writer.
        store: the Redis activity store (rules, applications, cache counters).
        clock: the current Unix time in seconds.
        min_score: how sure learned associations must be to attribute.
    """

    def __init__(
        self,
        writer: GroupCommitWriter,
        store: ActivityStore,
        clock: Callable[[], float],
        min_score: int = 3,
    ) -> None:
        self._writer = writer
        self._store = store
        self._clock = clock
        self._min_score = min_score

    def _starts(self, snapshots: Sequence[dict[str, Any]]) -> list[int]:
        now_ms = int(self._clock() * 1000)
        starts, errors = [], {}
        for index, snapshot in enumerate(snapshots):
            start, source = snapshot_start_ms(snapshot, now_ms)
            end = start + int(snapshot["durationMs"])
            if source and end > now_ms + FUTURE_LIMIT_MS:
                errors[str(index)] = {source: ["More than a day in the future."]}
            starts.append(start)
        if errors:
            raise Invalid("Invalid request body", errors if len(snapshots) > 1 else errors["0"])
        return starts

    async def ingest(self, user: str, snapshots: Sequence[dict[str, Any]]) -> int:
        """Store a batch of snapshots; returns how many were activity (not away).

        Nothing is written unless every snapshot is valid; the answer comes only
        after InfluxDB acknowledged every point.
        """
        starts = self._starts(snapshots)
        # The same start twice in one batch is the same snapshot: the last one wins.
        by_start = dict(zip(starts, snapshots, strict=True))
        projects, categories, learned = await self._store.rules(user)
        attributor = Attributor(projects, categories, learned, self._min_score)
        points: list[Point] = []
        apps: dict[str, str] = {}
        for start_ms, snapshot in sorted(by_start.items()):
            points.extend(self._points(user, start_ms, snapshot, attributor, apps))
        await self._writer.write(points)
        days = {start // DAY_MS for start in by_start}
        await self._store.after_ingest(user, apps, days)
        return sum(1 for snapshot in by_start.values() if snapshot["windows"])

    @staticmethod
    def _points(
        user: str,
        start_ms: int,
        snapshot: dict[str, Any],
        attributor: Attributor,
        apps: dict[str, str],
    ) -> list[Point]:
        time_ns = start_ms * _NS_PER_MS
        duration = int(snapshot["durationMs"])
        sid = snapshot_id(user, start_ms)
        windows = snapshot["windows"]
        points = [
            Point("window")
            .tag("user", user)
            .tag("idx", str(idx))
            .tag("focused", "true" if window.get("isFocused") else "false")
            .field("snapshot", sid)
            .field("process", window.get("processName") or "")
            .field("title", window.get("title") or "")
            .field("screen", float(window.get("screenPercentage") or 0.0))
            .field("visible", float(window.get("visiblePercentage") or 0.0))
            .field("documents", json.dumps(window.get("documents") or []))
            .field("tags", json.dumps(window.get("tags") or {}))
            .field("duration_ms", duration)
            .time(time_ns)
            for idx, window in enumerate(windows)
        ]
        active = activity_window(windows)
        if active is None:
            return points  # no windows: away, no activity
        a = attributor.attribute(active)
        if a.application and a.application_uuid:
            apps[a.application_uuid] = a.application
        points.append(
            Point("activity")
            .tag("user", user)
            .tag("project", a.project_uuid or NONE)
            .tag("category", a.category_uuid or NONE)
            .tag("application", a.application_uuid or NONE)
            .field("duration_ms", duration)
            .field("document", a.base_document or "")
            .field("title", a.title)
            .field("process", a.process)
            .field("reason", a.reason or "")
            .field("snapshot", sid)
            .time(time_ns)
        )
        return points

"""Streams and substreams over days in the user's zone, and corrections.

A day is sessionised from one InfluxDB query and cached in Redis under the write
counters of the UTC days it overlaps (the same counters /times uses), so a write
or a correction touching a day recomputes that day only. The missing days of one
call are queried concurrently (a few at a time), each sessionised as it arrives;
a day's streams and its substreams are cached apart, so each endpoint reads only
what it answers. Plain streams of days the ``activity_runs`` rollup holds are
sessionised from their runs instead (:mod:`.rollup`), exactly what the raw rows give.

A correction (``PUT /api/stream/{uuid}/project``) appends to ``activity``, for
every snapshot of the stream, a reversing entry (negative ``duration_ms``, old
project) and a new entry (new project), both tagged with a fresh ``rev``; nothing
is ever deleted, and /times stays one ``sum()``. It then teaches the stream's
features to the learning store.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import redis.asyncio as aioredis

from screenaware.activity import (
    DAY_MS,
    NONE,
    ActivityStore,
    LearningStore,
    TimelineStore,
    application_name,
    features,
)
from screenaware.errors import Invalid, NotFound
from screenaware.storage.ids import uuid7_ms
from screenaware.storage.influx import GroupCommitWriter, InfluxClient, Point, Series
from screenaware.storage.redisstore import Script, user_scoped
from screenaware.streams.rollup import RunsRollup
from screenaware.streams.sessionise import (
    CORRECTED,
    Activity,
    Thresholds,
    gap_streams,
    make_streams,
    resolve_values,
    stream_summaries,
    summaries_of_runs,
    summarize,
)
from screenaware.timeutil import from_ms, iso, requested_range, to_ms

LOG = logging.getLogger(__name__)


def rev_key(user: str) -> str:
    """The user's correction revision counter."""
    return user_scoped(user, "rev")


def day_cache_key(user: str, zone: str, day: str, digest: str) -> str:
    """The prefix of one day's cached streams (a part name follows it)."""
    return user_scoped(user, f"sess:{zone}:{day}:{digest}")


# KEYS: the user's revision counter; ARGV: a revision restored from an export.
# Later corrections must sort after every restored one.
_RAISE_REV = Script("""
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
""")

CORRECTION_FIELDS = ("project", "category", "application", "rev", "document", "title",
                     "process", "reason")  # fmt: skip

DAY_CACHE_TTL = 7 * 86_400
MAX_SPAN = dt.timedelta(days=400)

DAY_QUERIES_AT_ONCE = 4
STREAM_COLUMNS = '"duration_ms", "project", "rev"'
DAY_COLUMNS = (
    '"duration_ms", "document", "title", "reason", "project", "category", "application", "rev"'
)


def local_days(start: dt.datetime, end: dt.datetime, zone: ZoneInfo) -> list[dt.date]:
    first, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def day_span_ms(day: dt.date, zone: ZoneInfo) -> tuple[int, int]:
    """``[start, end)`` of a local day in Unix ms (23 or 25 hours on DST days)."""
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return to_ms(start), to_ms(end)


class StreamService:
    """Streams, substreams and corrections for one user at a time.

    Args:
        influx: the InfluxDB client.
        writer: the group-commit writer (corrections).
        activity: the activity store (write counters, projects).
        learning: the learned associations.
        timeline: the users' coverage and lock (corrections and overlap
            resolution of one user take turns).
        redis: zero-argument callable returning the open Redis client (day cache).
        clock: the current Unix time in seconds.
        thresholds: the sessionisation thresholds.
        runs: the runs rollup plain streams are read through (None: raw days).
    """

    def __init__(
        self,
        influx: InfluxClient,
        writer: GroupCommitWriter,
        activity: ActivityStore,
        learning: LearningStore,
        timeline: TimelineStore,
        redis: Callable[[], aioredis.Redis],
        clock: Callable[[], float],
        thresholds: Thresholds,
        runs: RunsRollup | None = None,
    ) -> None:
        self._influx = influx
        self._writer = writer
        self._activity = activity
        self._learning = learning
        self._timeline = timeline
        self._redis = redis
        self._clock = clock
        self.thresholds = thresholds
        self._runs = runs

    def range(self, params: Mapping[str, Any], zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """The requested range: by default the current day in ``zone``."""
        now = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC)
        return requested_range(params.get("start"), params.get("end"), zone, now, MAX_SPAN)

    # --- days ---------------------------------------------------------------

    async def _query(self, user: str, span: tuple[int, int], columns: str) -> list[Series]:
        """One query: the ``activity`` entries of ``[start, end)`` ms."""
        # Without GROUP BY, InfluxDB merges all series into one, time-ordered.
        return await self._influx.query(
            f'SELECT {columns} FROM "activity" '  # noqa: S608 - constants only
            'WHERE "user" = $user AND time >= $start AND time < $end',
            {"user": user, "start": span[0] * 1_000_000, "end": span[1] * 1_000_000},
            # A day is thousands of raw rows: MessagePack costs InfluxDB less to write.
            binary=True,
        )

    async def _activities(self, user: str, span: tuple[int, int], columns: str) -> list[Activity]:
        """The activity of ``[start, end)`` ms, corrections applied."""
        series = await self._query(user, span, columns)
        return [a for s in series for a in resolve_values(s.columns, s.values)]

    async def _sessionise_day(
        self, user: str, span: tuple[int, int], gate: asyncio.Semaphore, part: str
    ) -> dict[str, list[dict[str, Any]]]:
        if part == "streams":
            # Streams need only times and projects: a light query, no substreams,
            # sessionised straight from the answer's columns.
            async with gate:
                series = await self._query(user, span, STREAM_COLUMNS)
            return {
                "streams": [
                    summary
                    for s in series
                    for summary in stream_summaries(user, s.columns, s.values, self.thresholds)
                ]
            }
        async with gate:
            activities = await self._activities(user, span, DAY_COLUMNS)
        streams = make_streams(user, activities, self.thresholds)
        return {
            "expanded": [summarize(s) for s in streams],
            "substreams": [sub.public() for s in streams for sub in s.substreams],
        }

    async def days(
        self, user: str, days: Sequence[dt.date], zone: ZoneInfo, part: str
    ) -> list[list[dict[str, Any]]]:
        """One part of each sessionised day — ``streams``, ``expanded`` (streams with
        what they hold) or ``substreams`` — from the cache where no write touched the
        day since."""
        spans = [day_span_ms(day, zone) for day in days]
        utc_days = sorted({d for s, e in spans for d in range(s // DAY_MS, (e - 1) // DAY_MS + 1)})
        counters = dict(zip(utc_days, await self._activity.counters(user, utc_days), strict=True))
        settings = [
            self.thresholds.join_gap,
            self.thresholds.interruption,
            self.thresholds.idle_gap,
        ]
        bases = []
        for (start, end), day in zip(spans, days, strict=True):
            stamp = [counters[d] for d in range(start // DAY_MS, (end - 1) // DAY_MS + 1)]
            digest = hashlib.sha256(json.dumps([settings, stamp]).encode()).hexdigest()[:24]
            bases.append(day_cache_key(user, zone.key, day.isoformat(), digest))
        cached = await self._redis().mget([f"{base}:{part}" for base in bases])
        out = [None if c is None else orjson.loads(c) for c in cached]
        missing = [i for i, c in enumerate(out) if c is None]
        if missing:
            computed = await self._compute(user, [spans[i] for i in missing], counters, part)
            async with self._redis().pipeline(transaction=False) as pipe:
                for i, data in zip(missing, computed, strict=True):
                    out[i] = data[part]
                    for name, value in data.items():
                        pipe.set(f"{bases[i]}:{name}", orjson.dumps(value), ex=DAY_CACHE_TTL)
                await pipe.execute()
        return [d or [] for d in out]

    async def _compute(
        self,
        user: str,
        spans: Sequence[tuple[int, int]],
        counters: Mapping[int, str | None],
        part: str,
    ) -> Sequence[dict[str, list[dict[str, Any]]]]:
        """The parts of days missing from the cache (plain streams through the runs
        rollup where it can answer)."""
        if part == "streams" and self._runs is not None:
            runs = await self._runs.day_runs(user, spans, counters)
            if runs is not None:
                return [{"streams": summaries_of_runs(user, r, self.thresholds)} for r in runs]
        gate = asyncio.Semaphore(DAY_QUERIES_AT_ONCE)
        return await asyncio.gather(*(self._sessionise_day(user, s, gate, part) for s in spans))

    # --- reading ------------------------------------------------------------

    async def streams(
        self, user: str, params: Mapping[str, Any], zone: ZoneInfo
    ) -> list[dict[str, Any]] | dict[str, list[dict[str, Any]]]:
        start, end = self.range(params, zone)
        start_ms, end_ms = to_ms(start), to_ms(end)
        part = "expanded" if params.get("expanded") else "streams"
        found = [
            s
            for day in await self.days(user, local_days(start, end, zone), zone, part)
            for s in day
            if start_ms <= s["time"] <= end_ms
        ]
        if params.get("projectUuid"):
            wanted = None if params["projectUuid"] == NONE else str(params["projectUuid"])
            found = [s for s in found if s["projectUuid"] == wanted]
        found = [s for s in found if s["durationMs"] >= params.get("minDuration", 0)]
        found.sort(key=lambda s: s["time"])
        if params.get("showGaps"):
            found = sorted(found + gap_streams(user, found), key=lambda s: s["time"])
        if params.get("sort") == "time DESC":
            found.reverse()
        page = found[params.get("offset", 0) :][: params.get("limit", 1000)]
        expanded = bool(params.get("expanded"))
        shaped = [self._shape(s, expanded) for s in page]
        if not params.get("groupByDay"):
            return shaped
        grouped: dict[str, list[dict[str, Any]]] = {}
        for raw, stream in zip(page, shaped, strict=True):
            key = from_ms(raw["time"]).astimezone(zone).date().isoformat()
            grouped.setdefault(key, []).append(stream)
        return grouped

    @staticmethod
    def _shape(stream: Mapping[str, Any], expanded: bool) -> dict[str, Any]:
        out = {"uuid": stream["uuid"], "time": iso(from_ms(stream["time"])),
               "durationMs": stream["durationMs"]}  # fmt: skip
        if stream.get("isGap"):
            out["isGap"] = True
            return out
        out["projectUuid"] = stream["projectUuid"]
        if expanded:
            for key in ("applications", "baseDocuments", "titles"):
                out[key] = stream[key]
        return out

    async def substreams(
        self, user: str, params: Mapping[str, Any], zone: ZoneInfo
    ) -> list[dict[str, Any]]:
        start, end = self.range(params, zone)
        start_ms, end_ms = to_ms(start), to_ms(end)
        found = [
            s
            for day in await self.days(user, local_days(start, end, zone), zone, "substreams")
            for s in day
            if start_ms <= s["time"] <= end_ms and s["durationMs"] >= params.get("minDuration", 0)
        ]
        found.sort(key=lambda s: s["time"], reverse=params.get("sort") == "time DESC")
        page = found[params.get("offset", 0) :][: params.get("limit", 1000)]
        return [{**s, "time": iso(from_ms(s["time"]))} for s in page]

    # --- corrections --------------------------------------------------------

    async def correct(
        self, user: str, stream_uuid: str, project: str | None, zone: ZoneInfo
    ) -> int:
        """Re-attribute every snapshot of a stream; returns how many changed."""
        start_ms = uuid7_ms(stream_uuid)
        if start_ms is None:
            raise NotFound("Stream not found")
        day = from_ms(start_ms).astimezone(zone).date()
        span = day_span_ms(day, zone)
        # Under the user's timeline lock: a reversing entry must reverse what the
        # snapshot owns now, which a concurrent overlap resolution could change.
        async with self._timeline.locked(user) as held:
            # What other workers resolved but have not written yet goes first:
            # the reversing entries must reverse what the ledger will say.
            await self._timeline.flush(user, held.journal)
            # The process name is needed only to learn from a correction.
            activities = await self._activities(user, span, DAY_COLUMNS + ', "process"')
            streams = make_streams(user, activities, self.thresholds)
            stream = next((s for s in streams if s.uuid == stream_uuid), None)
            if stream is None:
                raise NotFound("Stream not found")
            projects, _, _ = await self._activity.rules(user)
            if project is not None and project not in projects:
                raise Invalid(
                    "projectUuid must be one of your projects",
                    {"projectUuid": ["Unknown project."]},
                )
            # Revisions must sort in the order they were made, across workers and
            # within a millisecond: a per-user counter, zero-padded.
            rev = f"{await self._redis().incr(rev_key(user)):012d}"
            points = []
            changed = [a for a in stream.activities if a.project != project]
            for act in changed:
                for owner, sign in ((act.project, -1), (project, 1)):
                    points.append(
                        Point("activity")
                        .tag("user", user)
                        .tag("project", owner or NONE)
                        .tag("category", act.category or NONE)
                        .tag("application", act.application or NONE)
                        .tag("rev", rev)
                        .field("duration_ms", sign * act.duration)
                        .field("document", act.document or "")
                        .field("title", act.title)
                        .field("process", act.process)
                        .field("reason", CORRECTED if sign > 0 else "reversed by correction")
                        .time(act.start * 1_000_000 + act.offset)
                    )
            await self._writer.write(points)
            await self._timeline.set_project(
                user, [(a.start, a.offset) for a in changed], project or NONE
            )
        await self._activity.after_ingest(user, {}, {a.start // DAY_MS for a in changed})
        keys = features(
            [a.document for a in stream.activities],
            [application_name(a.process) for a in stream.activities],
            [a.title for a in stream.activities],
        )
        await self._learning.learn(user, keys, project)
        LOG.info("stream %s corrected: %d snapshots", stream_uuid, len(changed))
        return len(changed)

    async def restore_corrections(self, user: str, entries: Sequence[Mapping[str, Any]]) -> None:
        """Write correction entries of an export as they were (same revisions).

        Each entry has ``timeMs``, ``durationMs`` and the :data:`CORRECTION_FIELDS`;
        writing one twice lands on the same point. The revision counter is raised
        past the highest restored revision.
        """
        if not entries:
            return
        points = [
            Point("activity")
            .tag("user", user)
            .tag("project", e["project"] or NONE)
            .tag("category", e["category"] or NONE)
            .tag("application", e["application"] or NONE)
            .tag("rev", e["rev"])
            .field("duration_ms", int(e["durationMs"]))
            .field("document", e["document"] or "")
            .field("title", e["title"] or "")
            .field("process", e["process"] or "")
            .field("reason", e["reason"] or "")
            .time(int(e["timeMs"]) * 1_000_000)
            for e in entries
        ]
        await self._writer.write(points)
        await self._activity.after_ingest(user, {}, {int(e["timeMs"]) // DAY_MS for e in entries})
        highest = max(int(e["rev"]) for e in entries)
        await _RAISE_REV(self._redis(), [rev_key(user)], [highest])

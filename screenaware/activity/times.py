"""``GET /api/times``: sums of ``activity.duration_ms`` by group and time bucket.

InfluxDB does the summing (``sum()`` with ``GROUP BY time(1h|1d), <tag>`` and
``tz()``), over the ``activity_15m`` rollup for whole clean buckets and over the
``activity`` ledger for the rest (:mod:`.rollup`); Python only places the sums
into the zone-aware buckets (weeks and months roll up from days) and shapes the
documented answer. Answers are cached in Redis as JSON, keyed by the write counters
of the days the range touches.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import logging
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from screenaware.activity import rollup
from screenaware.activity.attribution import NONE
from screenaware.activity.store import DAY_MS, ActivityStore, DayState
from screenaware.errors import StorageUnavailable, WriteRejected
from screenaware.storage.influx import InfluxClient, Series
from screenaware.storage.lineprotocol import encode
from screenaware.timeutil import buckets, iso, requested_range, to_ms

LOG = logging.getLogger(__name__)

GROUP_TAGS = {
    "projectUuid": "project",
    "categoryUuid": "category",
    "applicationUuid": "application",
}
MAX_RANGE = dt.timedelta(days=731)
QUERIES_AT_ONCE = 4
ROLLUP_LINES_PER_WRITE = 5000
_NS_PER_MS = 1_000_000

# (bucket index or None, group key or None) -> ms
Sums = Mapping[tuple[int | None, str | None], int]


def shape(
    start: dt.datetime,
    end: dt.datetime,
    group_by: str | None,
    bucket_list: list[tuple[dt.datetime, dt.datetime]] | None,
    sums: Sums,
    groups: list[str],
    nest_time_inside_groups: bool,
) -> dict[str, Any]:
    """The documented /times object from bucket and group sums.

    Every bucket and every group given is listed, with 0 where nothing was logged;
    activity without a group value is under the key ``none`` with a null id.
    """

    def node(begin: dt.datetime, finish: str, total: int, group: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"start": iso(begin), "end": finish, "sum": total}
        if group_by and group is not None:
            out[group_by] = None if group == NONE else group
        return out

    def total(bucket: int | None, group: str | None) -> int:
        if bucket is None and group is None:
            return sum(sums.values())
        if bucket is None:
            return sum(v for (_, g), v in sums.items() if g == group)
        if group is None:
            return sum(v for (b, _), v in sums.items() if b == bucket)
        return sums.get((bucket, group), 0)

    root = node(start, iso(end), total(None, None), None)
    if bucket_list is None and group_by is None:
        return root
    if bucket_list is None:
        root["groupType"] = group_by
        root["grouped"] = {g: node(start, iso(end), total(None, g), g) for g in groups}
        return root

    def time_level(group: str | None) -> dict[str, Any]:
        level = {}
        for index, (begin, finish) in enumerate(bucket_list):
            entry = node(begin, iso(finish), total(index, group), group)
            if group_by and group is None:
                entry["groupType"] = group_by
                entry["grouped"] = {g: node(begin, iso(finish), total(index, g), g) for g in groups}
            level[iso(begin)] = entry
        return level

    if group_by and nest_time_inside_groups:
        root["groupType"] = group_by
        root["grouped"] = {}
        for g in groups:
            entry = node(start, iso(end), total(None, g), g)
            entry["groupType"] = "time"
            entry["grouped"] = time_level(g)
            root["grouped"][g] = entry
        return root
    root["groupType"] = "time"
    root["grouped"] = time_level(None)
    return root


def csv_rows(answer: dict[str, Any], group_by: str | None) -> tuple[list[str], list[list[Any]]]:
    """The /times answer as CSV columns and rows: one row per bucket and group (the
    leaves of the answer), durations in ms, times ISO 8601."""
    columns = ["start", "end", *([group_by] if group_by else []), "sum"]
    rows: list[list[Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if "grouped" in node:
            for child in node["grouped"].values():
                walk(child)
            return
        rows.append(
            [node["start"], node["end"], *([node.get(group_by)] if group_by else []), node["sum"]]
        )

    walk(answer)
    return columns, rows


class TimesService:
    """Answers /times for one user.

    Args:
        influx: the InfluxDB client.
        store: the activity store (cache, write counters, rollup state).
        clock: the current Unix time in seconds.
        rollup: read whole clean buckets from the ``activity_15m`` rollup (False:
            every answer sums the raw ledger).
        lock_ttl_ms: how long the rollup of a user stays taken by a writer that died.
        lease_ms: the least time a rollup write may start with before the lock
            would expire (longer than an InfluxDB write may take).
    """

    def __init__(
        self,
        influx: InfluxClient,
        store: ActivityStore,
        clock: Callable[[], float],
        *,
        rollup: bool = True,
        lock_ttl_ms: int = 30_000,
        lease_ms: int = 11_000,
    ) -> None:
        self._influx = influx
        self._store = store
        self._clock = clock
        self._rollup = rollup
        self._lock_ttl_ms = lock_ttl_ms
        self._lease_ms = lease_ms

    def range(self, params: Mapping[str, Any], zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """The requested range; by default the current day in ``zone``."""
        now = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC)
        return requested_range(params.get("start"), params.get("end"), zone, now, MAX_RANGE)

    async def times(self, user: str, params: Mapping[str, Any], zone_name: str) -> dict[str, Any]:
        """The /times answer as an object (see :meth:`answer_json`)."""
        answer: dict[str, Any] = orjson.loads(await self.answer_json(user, params, zone_name))
        return answer

    async def answer_json(self, user: str, params: Mapping[str, Any], zone_name: str) -> bytes:
        """The /times answer as JSON: cached answers are served as they were stored."""
        zone = ZoneInfo(zone_name)
        start, end = self.range(params, zone)
        group_by = params.get("groupBy")
        resolution = params.get("resolution")
        nest = bool(params.get("nestTimeBucketsInsideGroups"))
        start_ms, end_ms = to_ms(start), to_ms(end)
        first_day = start_ms // DAY_MS
        # One round: the groups listed, the days' write counters (the cache key) and
        # their rollup counters. Groups without time in the range are listed too
        # (sum 0); they are not part of the cache key (a write invalidates exactly
        # the days it touches): a cached answer that lacks a group the user has
        # since got is recomputed.
        state = await self._store.day_state(user, group_by, first_day, end_ms // DAY_MS)
        key = self._store.answer_key(
            user, [start_ms, end_ms, group_by, resolution, nest, zone_name], state.counters
        )
        cached = await self._store.cached(key)
        if cached is not None and set(state.known) <= set(cached[0]):
            return cached[1]
        bucket_list = buckets(start, end, resolution, zone) if resolution else None
        sums, found = await self._sums(
            user, start_ms, end_ms, group_by, resolution, bucket_list, zone_name, state
        )
        groups = sorted({*found, *state.known}, key=lambda g: (g == NONE, g))
        answer = orjson.dumps(shape(start, end, group_by, bucket_list, sums, groups, nest))
        await self._store.cache(key, groups, answer)
        return answer

    async def _sums(
        self,
        user: str,
        start_ms: int,
        end_ms: int,
        group_by: str | None,
        resolution: str | None,
        bucket_list: list[tuple[dt.datetime, dt.datetime]] | None,
        zone_name: str,
        state: DayState,
    ) -> tuple[dict[tuple[int | None, str | None], int], set[str]]:
        tag = GROUP_TAGS[group_by] if group_by else None
        starts = [to_ms(b) * _NS_PER_MS for b, _ in bucket_list] if bucket_list else []
        sums: dict[tuple[int | None, str | None], int] = defaultdict(int)
        groups: set[str] = set()

        def bucket_of(time_ns: int) -> int | None:
            if not bucket_list:
                return None
            return max(0, bisect.bisect_right(starts, time_ns) - 1)

        def add(series: list[Series]) -> None:
            for s in series:
                group = s.tags.get(tag) if tag else None
                if group is not None:
                    groups.add(group)
                for time_ns, value in s.values:
                    if value is not None:
                        sums[(bucket_of(int(time_ns)), group)] += int(value)

        def statement(measurement: str, lo: int, hi: int) -> Awaitable[list[Series]]:
            return self._query(measurement, user, lo, hi, resolution, tag, zone_name)

        boundaries = [to_ms(b) for b, _ in bucket_list] if bucket_list else []
        if bucket_list:
            boundaries.append(to_ms(bucket_list[-1][1]))
        first_day = start_ms // DAY_MS
        plan = None
        if self._rollup:
            clean = [state.clean(i) for i in range(len(state.counters))]
            plan = rollup.layout(start_ms, end_ms, boundaries, first_day, clean)
        if plan is None:
            add(await statement("activity", start_ms, end_ms + 1))
            return sums, groups
        gate = asyncio.Semaphore(QUERIES_AT_ONCE)

        async def gated(query: Awaitable[list[Series]]) -> list[Series]:
            async with gate:
                return await query

        # Days still being written (today's, and any in the future) are read raw
        # but not rolled up: the next snapshot would make them dirty again.
        now_ms = int(self._clock() * 1000)
        over = {day for day in plan.dirty_days if (day + 1) * DAY_MS <= now_ms}
        token = secrets.token_hex(8)
        answers = await asyncio.gather(
            *(gated(statement(rollup.MEASUREMENT, lo, hi)) for lo, hi in plan.clean),
            *(gated(statement("activity", lo, hi)) for lo, hi in plan.edges),
            *(gated(self._buckets(user, lo, hi)) for lo, hi in plan.dirty),
        )
        for series in answers[: len(plan.clean) + len(plan.edges)]:
            add(series)
        lo, hi = plan.core
        rows = [row for series in answers[len(plan.clean) + len(plan.edges) :] for row in series]
        for s in rows:
            group = s.tags.get(tag) if tag else None
            for time_ns, value in s.values:
                if value is not None and lo * _NS_PER_MS <= int(time_ns) < hi * _NS_PER_MS:
                    if group is not None:
                        groups.add(group)
                    sums[(bucket_of(int(time_ns)), group)] += int(value)
        # The lock is asked for after the raw sums were read: the counters of the
        # marks were read before either (a write acknowledged since bumped past them).
        if over and await self._store.take_rollup(user, token, self._lock_ttl_ms):
            marks = {day: state.counters[day - first_day] or "0" for day in sorted(over)}
            await self._roll_up(user, token, rows, marks)
        return sums, groups

    def _query(
        self,
        measurement: str,
        user: str,
        lo: int,
        hi: int,
        resolution: str | None,
        tag: str | None,
        zone_name: str,
    ) -> Awaitable[list[Series]]:
        """``sum(duration_ms)`` of ``[lo, hi)`` (Unix ms), grouped as the answer is."""
        dimensions = []
        if resolution:
            dimensions.append("time(1h)" if resolution == "hour" else "time(1d)")
        if tag:
            dimensions.append(f'"{tag}"')
        statement = (
            f'SELECT sum("duration_ms") FROM "{measurement}" '  # noqa: S608 - constants only
            'WHERE "user" = $user AND time >= $start AND time < $end'
        )
        if dimensions:
            statement += " GROUP BY " + ", ".join(dimensions) + " fill(none)"
        if resolution:
            # The zone is a validated IANA name (never free text): tz() takes no
            # bind parameter.
            statement += f" tz('{zone_name}')"
        return self._influx.query(
            statement, {"user": user, "start": lo * _NS_PER_MS, "end": hi * _NS_PER_MS}
        )

    def _buckets(self, user: str, lo: int, hi: int) -> Awaitable[list[Series]]:
        """The raw sums of ``[lo, hi)`` by rollup bucket and tag set."""
        tags = ", ".join(f'"{t}"' for t in rollup.TAGS)
        return self._influx.query(
            'SELECT sum("duration_ms") FROM "activity" '  # noqa: S608 - constants only
            'WHERE "user" = $user AND time >= $start AND time < $end '
            f"GROUP BY time({rollup.BUCKET_MS // 60_000}m), {tags} fill(none)",
            {"user": user, "start": lo * _NS_PER_MS, "end": hi * _NS_PER_MS},
        )

    async def _roll_up(
        self, user: str, token: str, rows: list[Series], marks: Mapping[int, str]
    ) -> None:
        """Write the rollup of the dirty days in ``marks`` from their raw sums
        (``rows``) and mark them clean at the counters read before those sums were
        (a write acknowledged later bumps its day past the mark: the day stays
        dirty; a slower writer's older sums are marked with its older counters).
        Holding the user's rollup lock; the days are unmarked before the first
        write, so a failure or a death mid-way leaves them dirty (the answer came
        from the raw sums anyway)."""
        day_ns = DAY_MS * _NS_PER_MS
        lines = [
            encode(
                rollup.MEASUREMENT,
                {"user": user, **{t: s.tags.get(t) for t in rollup.TAGS}},
                {"duration_ms": int(value)},
                int(time_ns),
            )
            for s in rows
            for time_ns, value in s.values
            if value is not None and int(time_ns) // day_ns in marks
        ]
        try:
            for begin in range(0, len(lines), ROLLUP_LINES_PER_WRITE):
                # A write starts only with the lock held for longer than it can take,
                # so no other writer's newer rollup of these days can be overwritten.
                unmarked = marks if begin == 0 else ()
                if not await self._store.rollup_lease(user, token, self._lease_ms, unmarked):
                    LOG.info("rollup of %s not written: its lock expired", user)
                    return
                chunk = lines[begin : begin + ROLLUP_LINES_PER_WRITE]
                await self._influx.write_lines("\n".join(chunk).encode())
        except WriteRejected as exc:
            LOG.error("rollup of %s refused by InfluxDB: %s", user, exc)
            await self._store.release_rollup(user, token)
            return
        except StorageUnavailable as exc:
            # The write may still land: the lock is kept until it expires.
            LOG.warning("rollup of %s not written: %s", user, exc)
            return
        await self._store.commit_rollup(user, token, marks)

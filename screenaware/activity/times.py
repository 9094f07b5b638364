"""``GET /api/times``: sums of ``activity.duration_ms`` by group and time bucket.

InfluxDB does the summing (``sum()`` with ``GROUP BY time(1h|1d), <tag>`` and
``tz()``); Python only places the sums into the zone-aware buckets (weeks and
months roll up from days) and shapes the documented answer. Answers are cached
in Redis, keyed by the write counters of the days the range touches.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from screenaware.activity.attribution import NONE
from screenaware.activity.store import ActivityStore
from screenaware.storage.influx import InfluxClient
from screenaware.timeutil import buckets, iso, requested_range, to_ms

GROUP_TAGS = {
    "projectUuid": "project",
    "categoryUuid": "category",
    "applicationUuid": "application",
}
MAX_RANGE = dt.timedelta(days=731)

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
        store: the activity store (cache and its counters).
        clock: the current Unix time in seconds.
    """

    def __init__(
        self, influx: InfluxClient, store: ActivityStore, clock: Callable[[], float]
    ) -> None:
        self._influx = influx
        self._store = store
        self._clock = clock

    def range(self, params: Mapping[str, Any], zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """The requested range; by default the current day in ``zone``."""
        now = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC)
        return requested_range(params.get("start"), params.get("end"), zone, now, MAX_RANGE)

    async def times(self, user: str, params: Mapping[str, Any], zone_name: str) -> dict[str, Any]:
        zone = ZoneInfo(zone_name)
        start, end = self.range(params, zone)
        group_by = params.get("groupBy")
        resolution = params.get("resolution")
        nest = bool(params.get("nestTimeBucketsInsideGroups"))
        start_ms, end_ms = to_ms(start), to_ms(end)
        # Groups without time in the range are listed too (sum 0). They are not
        # part of the cache key (a write invalidates exactly the days it touches);
        # a cached answer that lacks a group the user has since got is recomputed.
        known = await self._store.group_ids(user, group_by) if group_by else []
        key = await self._store.cache_key(
            user, start_ms, end_ms, [start_ms, end_ms, group_by, resolution, nest, zone_name]
        )
        cached = await self._store.cached(key)
        if cached is not None and set(known) <= set(cached["groups"]):
            return dict(cached["answer"])
        bucket_list = buckets(start, end, resolution, zone) if resolution else None
        sums, found = await self._sums(
            user, start_ms, end_ms, group_by, resolution, bucket_list, zone_name
        )
        groups = sorted({*found, *known}, key=lambda g: (g == NONE, g))
        answer = shape(start, end, group_by, bucket_list, sums, groups, nest)
        await self._store.cache(key, {"groups": groups, "answer": answer})
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
    ) -> tuple[dict[tuple[int | None, str | None], int], list[str]]:
        dimensions = []
        if resolution:
            dimensions.append("time(1h)" if resolution == "hour" else "time(1d)")
        tag = GROUP_TAGS[group_by] if group_by else None
        if tag:
            dimensions.append(f'"{tag}"')
        statement = (
            'SELECT sum("duration_ms") FROM "activity" '
            'WHERE "user" = $user AND time >= $start AND time <= $end'
        )
        if dimensions:
            statement += " GROUP BY " + ", ".join(dimensions) + " fill(none)"
        if resolution:
            # The zone is a validated IANA name (never free text): tz() takes no
            # bind parameter.
            statement += f" tz('{zone_name}')"
        series = await self._influx.query(
            statement,
            {"user": user, "start": start_ms * 1_000_000, "end": end_ms * 1_000_000 + 999_999},
        )
        starts = [to_ms(b) * 1_000_000 for b, _ in bucket_list] if bucket_list else []
        sums: dict[tuple[int | None, str | None], int] = defaultdict(int)
        groups: set[str] = set()
        for s in series:
            group = s.tags.get(tag) if tag else None
            if group is not None:
                groups.add(group)
            for time_ns, value in s.values:
                if value is None:
                    continue
                bucket = None
                if bucket_list:
                    bucket = max(0, bisect.bisect_right(starts, int(time_ns)) - 1)
                sums[(bucket, group)] += int(value)
        return sums, sorted(groups, key=lambda g: (g == NONE, g))

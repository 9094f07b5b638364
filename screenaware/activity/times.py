"""``GET /api/times``: sums of ``activity.duration_ms`` by group and time bucket.

InfluxDB does the summing (``sum()`` with ``GROUP BY time(1h|1d), <tag>`` and
``tz()``), over the ``activity_15m`` rollup for whole clean buckets and over the
``activity`` ledger for the rest (:mod:`.rollup`); Python only places the sums
into the zone-aware buckets (weeks and months roll up from days) and shapes the
documented answer. Answers are cached in Redis as gzip-compressed JSON, valid while
no day of the range is written (see :meth:`ActivityStore.day_state`).
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import logging
import secrets
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from screenaware.activity import rollup
from screenaware.activity.attribution import NONE
from screenaware.activity.store import DAY_MS, ActivityStore, DayState, daily_field
from screenaware.errors import QueryFailed, StorageUnavailable, WriteRejected
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
DIRTY_DAYS = rollup.DIRTY_DAYS_PER_QUERY
ROLLUP_LINES_PER_WRITE = 5000
_NS_PER_MS = 1_000_000

# (bucket index or None, group key or None) -> ms
Sums = Mapping[tuple[int | None, str | None], int]


def _iso(moment: dt.datetime) -> str:
    """:func:`screenaware.timeutil.iso`, faster (``isoformat`` instead of ``strftime``:
    a year by day formats ~730 of them)."""
    utc = moment.astimezone(dt.UTC)
    if utc.year < 1000:  # strftime and isoformat pad such years differently
        return iso(utc)
    return utc.isoformat(timespec="milliseconds")[:-6] + "Z"


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

    def node(begin: str, finish: str, total: int, group: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"start": begin, "end": finish, "sum": total}
        if group_by and group is not None:
            out[group_by] = None if group == NONE else group
        return out

    # The totals by bucket and by group, once (not a scan of every sum per bucket).
    by_bucket: dict[int | None, int] = defaultdict(int)
    by_group: dict[str | None, int] = defaultdict(int)
    for (b, g), v in sums.items():
        by_bucket[b] += v
        by_group[g] += v
    everything = sum(sums.values())

    def total(bucket: int | None, group: str | None) -> int:
        if bucket is None and group is None:
            return everything
        if bucket is None:
            return by_group.get(group, 0)
        if group is None:
            return by_bucket.get(bucket, 0)
        return sums.get((bucket, group), 0)

    first, last = _iso(start), _iso(end)
    root = node(first, last, total(None, None), None)
    if bucket_list is None and group_by is None:
        return root
    if bucket_list is None:
        root["groupType"] = group_by
        root["grouped"] = {g: node(first, last, total(None, g), g) for g in groups}
        return root
    # Each bucket's times formatted once (a year by day lists them once per group).
    bounds = [_iso(begin) for begin, _ in bucket_list]
    bounds.append(_iso(bucket_list[-1][1]))

    def time_level(group: str | None) -> dict[str, Any]:
        level = {}
        for index in range(len(bucket_list)):
            begin, finish = bounds[index], bounds[index + 1]
            entry = node(begin, finish, total(index, group), group)
            if group_by and group is None:
                entry["groupType"] = group_by
                entry["grouped"] = {g: node(begin, finish, total(index, g), g) for g in groups}
            level[begin] = entry
        return level

    if group_by and nest_time_inside_groups:
        root["groupType"] = group_by
        root["grouped"] = {}
        for g in groups:
            entry = node(first, last, total(None, g), g)
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


def gzip(data: bytes) -> bytes:
    """``data`` gzip-compressed, fast (level 1: a year's answer in ~1 ms)."""
    return zlib.compress(data, 1, wbits=31)


def gunzip(data: bytes) -> bytes:
    """The bytes :func:`gzip` compressed."""
    return zlib.decompress(data, wbits=31)


class _Tally:
    """The sums of an answer by bucket and group, and the groups found."""

    def __init__(
        self, tag: str | None, bucket_list: list[tuple[dt.datetime, dt.datetime]] | None
    ) -> None:
        self.tag = tag
        self.sums: dict[tuple[int | None, str | None], int] = defaultdict(int)
        self.groups: set[str] = set()
        self._starts = [to_ms(b) * _NS_PER_MS for b, _ in bucket_list] if bucket_list else []

    def bucket_of(self, time_ns: int) -> int | None:
        """The index of the answer bucket holding ``time_ns`` (None: no buckets)."""
        if not self._starts:
            return None
        return max(0, bisect.bisect_right(self._starts, time_ns) - 1)

    def add(self, series: list[Series]) -> None:
        """Add sums InfluxDB grouped as the answer is (by the tag, if any)."""
        for s in series:
            group = s.tags.get(self.tag) if self.tag else None
            if group is not None:
                self.groups.add(group)
            for time_ns, value in s.values:
                if value is not None:
                    self.sums[(self.bucket_of(int(time_ns)), group)] += int(value)


def _gate() -> Callable[[Awaitable[list[Series]]], Awaitable[list[Series]]]:
    """Run queries at most :data:`QUERIES_AT_ONCE` at a time."""
    gate = asyncio.Semaphore(QUERIES_AT_ONCE)

    async def gated(query: Awaitable[list[Series]]) -> list[Series]:
        async with gate:
            return await query

    return gated


def _bucket_lines(user: str, rows: list[Series], marks: Mapping[int, str]) -> list[str]:
    """``activity_15m`` lines of the UTC days in ``marks`` from raw sums by bucket."""
    day_ns = DAY_MS * _NS_PER_MS
    return [
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


# After InfluxDB refused the daily rollup's retention policy, how long (s) a worker
# goes without asking again (each ask is two statements).
POLICY_RETRY_S = 600.0


def _runs(days: list[int], longest: int) -> list[tuple[int, int]]:
    """Sorted UTC day numbers as ranges ``[lo, hi)`` in Unix ms of consecutive days,
    each at most ``longest`` days."""
    runs: list[tuple[int, int]] = []
    for day in days:
        if runs and runs[-1][1] == day * DAY_MS and runs[-1][1] - runs[-1][0] < longest * DAY_MS:
            runs[-1] = (runs[-1][0], (day + 1) * DAY_MS)
        else:
            runs.append((day * DAY_MS, (day + 1) * DAY_MS))
    return runs


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
        self._policy_ready = False
        self._policy_retry_at = 0.0  # after a refusal, ask again only this late

    def range(self, params: Mapping[str, Any], zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """The requested range; by default the current day in ``zone``."""
        now = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC)
        return requested_range(params.get("start"), params.get("end"), zone, now, MAX_RANGE)

    async def times(self, user: str, params: Mapping[str, Any], zone_name: str) -> dict[str, Any]:
        """The /times answer as an object (see :meth:`answer_gzip`)."""
        answer: dict[str, Any] = orjson.loads(
            gunzip(await self.answer_gzip(user, params, zone_name))
        )
        return answer

    async def answer_gzip(self, user: str, params: Mapping[str, Any], zone_name: str) -> bytes:
        """The /times answer as gzip-compressed JSON: cached answers are kept so and
        served as they were stored (a year by day is ~0.5 MB of JSON, ~20 KB so)."""
        zone = ZoneInfo(zone_name)
        start, end = self.range(params, zone)
        group_by = params.get("groupBy")
        resolution = params.get("resolution")
        nest = bool(params.get("nestTimeBucketsInsideGroups"))
        start_ms, end_ms = to_ms(start), to_ms(end)
        first_day = start_ms // DAY_MS
        # One round: the groups listed, the days' write counters, their rollup
        # counters and the answer cached for these parameters, if it was computed at
        # the counters the days have now. Groups without time in the range are listed
        # too (sum 0); they do not invalidate a cached answer (a write invalidates
        # exactly the days it touches): one that lacks a group the user has since got
        # is recomputed.
        params_key = ["gz", start_ms, end_ms, group_by, resolution, nest, zone_name]
        state = await self._store.day_state(user, group_by, params_key, first_day, end_ms // DAY_MS)
        if state.cached is not None:
            return state.cached
        bucket_list = buckets(start, end, resolution, zone) if resolution else None
        days: list[int] = []
        if self._rollup and resolution in rollup.DAILY_RESOLUTIONS:
            known = bucket_list if resolution == "day" else None
            days = rollup.local_days(start, end, zone, known)
        tally = _Tally(GROUP_TAGS[group_by] if group_by else None, bucket_list)
        if days:
            await self._daily_sums(
                user, tally, start_ms, end_ms, days, resolution, zone_name, state
            )
        else:
            await self._sums(
                user, tally, start_ms, end_ms, resolution, bucket_list, zone_name, state
            )
        groups = sorted({*tally.groups, *state.known}, key=lambda g: (g == NONE, g))
        answer = gzip(
            orjson.dumps(shape(start, end, group_by, bucket_list, tally.sums, groups, nest))
        )
        await self._store.cache(state, groups, answer)
        return answer

    async def _sums(
        self,
        user: str,
        tally: _Tally,
        start_ms: int,
        end_ms: int,
        resolution: str | None,
        bucket_list: list[tuple[dt.datetime, dt.datetime]] | None,
        zone_name: str,
        state: DayState,
    ) -> None:
        """Sum ``[start_ms, end_ms]`` into ``tally``: whole clean 15-minute buckets from
        ``activity_15m``, the rest from the ledger (dirty days rolled up again)."""
        add, sums, groups, bucket_of = tally.add, tally.sums, tally.groups, tally.bucket_of
        tag = tally.tag

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
            return
        gated = _gate()

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
            await self._roll_up(user, token, _bucket_lines(user, rows, marks), marks)

    async def _daily_sums(
        self,
        user: str,
        tally: _Tally,
        start_ms: int,
        end_ms: int,
        days: list[int],
        resolution: str | None,
        zone_name: str,
        state: DayState,
    ) -> None:
        """Sum ``[start_ms, end_ms]`` into ``tally`` with its whole local days
        (``days``: their starts, then the last one's end) from ``activity_1d``.

        Clean local days are read from the daily rollup; dirty ones from the
        15-minute buckets of the UTC days they touch (``activity_15m`` where clean,
        the ledger where not), and rolled up again once over; the partial days at
        the range's ends from the ledger, as the answer groups them.
        """
        tag, first_day = tally.tag, start_ms // DAY_MS
        count = len(days) - 1
        fields = [daily_field(zone_name, day) for day in days[:-1]]
        stamps = [
            state.stamp(days[i] // DAY_MS - first_day, (days[i + 1] - 1) // DAY_MS - first_day)
            for i in range(count)
        ]
        stored = await self._store.daily_stamps(user, zone_name, days[:-1])
        clean = [stored[i] == stamps[i] for i in range(count)]
        clean_ns = {days[i] * _NS_PER_MS for i in range(count) if clean[i]}
        dirty = [i for i in range(count) if not clean[i]]
        # The UTC days the dirty local days touch, by whether their buckets are clean.
        touched = sorted(
            {d for i in dirty for d in range(days[i] // DAY_MS, (days[i + 1] - 1) // DAY_MS + 1)}
        )
        clean_15m = [d for d in touched if state.clean(d - first_day)]
        dirty_15m = [d for d in touched if not state.clean(d - first_day)]
        gated = _gate()
        edges = [(a, b) for a, b in ((start_ms, days[0]), (days[-1], end_ms + 1)) if a < b]
        queries = [
            *(
                gated(self._query("activity", user, lo, hi, resolution, tag, zone_name))
                for lo, hi in edges
            ),
            *(gated(self._buckets(user, lo, hi)) for lo, hi in _runs(dirty_15m, DIRTY_DAYS)),
        ]
        if clean_ns:
            first = min(clean_ns) // _NS_PER_MS
            after = days[max(i for i in range(count) if clean[i]) + 1]
            queries.append(gated(self._daily(user, zone_name, first, after, tag)))
        # Only the clean days the dirty local days touch, run by run: one span from the
        # first to the last would read every clean day between (a year of 15-minute
        # points when a day a year ago and yesterday are dirty).
        queries.extend(
            gated(self._points(rollup.MEASUREMENT, user, lo, hi))
            for lo, hi in _runs(clean_15m, DIRTY_DAYS)
        )
        now_ms = int(self._clock() * 1000)
        token = secrets.token_hex(8)
        answers = await asyncio.gather(*queries)
        for series in answers[: len(edges)]:
            tally.add(series)
        runs = len(_runs(dirty_15m, DIRTY_DAYS))
        raw = [s for series in answers[len(edges) : len(edges) + runs] for s in series]
        rest = answers[len(edges) + runs :]
        if clean_ns:
            for s in rest.pop(0):
                group = s.tags.get(tag) if tag else None
                for time_ns, value in s.values:
                    if value is not None and int(time_ns) in clean_ns:
                        if group is not None:
                            tally.groups.add(group)
                        tally.sums[(tally.bucket_of(int(time_ns)), group)] += int(value)
        day_ns = DAY_MS * _NS_PER_MS
        # activity_15m holds the sums of its clean days only (the others are stale).
        bucketed = set(clean_15m)
        starts_ns = [day * _NS_PER_MS for day in days]
        # The 15-minute sums of the dirty local days, by local day and tag set.
        per_day: dict[tuple[int, tuple[str | None, ...]], int] = defaultdict(int)
        sources = [(s, True) for s in raw] + [(s, False) for series in rest for s in series]
        for s, from_ledger in sources:
            group = s.tags.get(tag) if tag else None
            key = tuple(s.tags.get(t) for t in rollup.TAGS)
            for time_ns, value in s.values:
                t = int(time_ns)
                index = bisect.bisect_right(starts_ns, t) - 1
                if value is None or not 0 <= index < count or clean[index]:
                    continue
                if from_ledger or t // day_ns in bucketed:
                    if group is not None:
                        tally.groups.add(group)
                    tally.sums[(tally.bucket_of(t), group)] += int(value)
                    per_day[(index, key)] += int(value)
        over_15m = {d for d in dirty_15m if (d + 1) * DAY_MS <= now_ms}
        over_days = {i for i in dirty if days[i + 1] <= now_ms}
        if not (over_15m or over_days):
            return
        if not await self._store.take_rollup(user, token, self._lock_ttl_ms):
            return
        marks = {d: state.counters[d - first_day] or "0" for d in sorted(over_15m)}
        lines = _bucket_lines(user, raw, marks)
        daily_lines = [
            encode(
                rollup.DAILY,
                {"user": user, "zone": zone_name, **dict(zip(rollup.TAGS, key, strict=True))},
                {"duration_ms": value},
                days[index] * _NS_PER_MS,
            )
            for (index, key), value in per_day.items()
            if index in over_days
        ]
        daily = {fields[i]: stamps[i] for i in sorted(over_days)}
        await self._roll_up(user, token, lines, marks, daily, daily_lines)

    def _daily(
        self, user: str, zone_name: str, lo: int, hi: int, tag: str | None
    ) -> Awaitable[list[Series]]:
        """The ``activity_1d`` points of ``zone_name`` in ``[lo, hi)``, by ``tag``."""
        statement = (
            f'SELECT "duration_ms" FROM "{rollup.DAILY_RP}"."{rollup.DAILY}" '  # noqa: S608 - constants only
            'WHERE "user" = $user AND "zone" = $zone AND time >= $start AND time < $end'
        )
        if tag:
            statement += f' GROUP BY "{tag}"'
        return self._influx.query(
            statement,
            {"user": user, "zone": zone_name, "start": lo * _NS_PER_MS, "end": hi * _NS_PER_MS},
        )

    def _points(self, measurement: str, user: str, lo: int, hi: int) -> Awaitable[list[Series]]:
        """The points of a rollup in ``[lo, hi)`` by tag set, as they are (no sum)."""
        tags = ", ".join(f'"{t}"' for t in rollup.TAGS)
        return self._influx.query(
            f'SELECT "duration_ms" FROM "{measurement}" '  # noqa: S608 - constants only
            f'WHERE "user" = $user AND time >= $start AND time < $end GROUP BY {tags}',
            {"user": user, "start": lo * _NS_PER_MS, "end": hi * _NS_PER_MS},
        )

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
        self,
        user: str,
        token: str,
        lines: list[str],
        marks: Mapping[int, str],
        daily: Mapping[str, str] | None = None,
        daily_lines: list[str] | None = None,
    ) -> None:
        """Write rollup ``lines`` of the dirty UTC days in ``marks`` (and
        ``daily_lines`` of the local days in ``daily``: field -> stamp) from their raw
        sums, and mark them clean at the counters read before those sums were (a
        write acknowledged later bumps its day past the mark: the day stays dirty; a
        slower writer's older sums are marked with its older counters). Holding the
        user's rollup lock; the days are unmarked before the first write, so a
        failure or a death mid-way leaves them dirty (the answer came from the raw
        sums anyway)."""
        daily = daily or {}
        # The counters every written sum was read at: the UTC days' marks, and each
        # local day's stamp (the counters of the UTC days it touches, from its first).
        read_at = dict(marks)
        for field, stamp in daily.items():
            first_day = int(field.rsplit(":", 1)[1]) // DAY_MS
            read_at.update({first_day + k: c for k, c in enumerate(stamp.split(","))})
        # Also when every local day is empty (no lines): stamping them clean makes later
        # answers read the policy, which must exist by then.
        if daily and not self._policy_ready and self._clock() < self._policy_retry_at:
            daily, daily_lines = {}, []
        elif daily and not self._policy_ready:
            try:
                await self._influx.ensure_retention_policy(
                    rollup.DAILY_RP, rollup.DAILY_SHARD_WEEKS
                )
                self._policy_ready = True
            except (QueryFailed, StorageUnavailable) as exc:
                # A server that manages retention itself (InfluxDB 2.x/3.x through the
                # v1 API) may refuse it: the 15-minute rollup is still written, the
                # local days stay unmarked and are summed from it.
                LOG.warning("no %r retention policy, no daily rollup: %s", rollup.DAILY_RP, exc)
                self._policy_retry_at = self._clock() + POLICY_RETRY_S
                daily, daily_lines = {}, []
        chunks: list[tuple[str | None, list[str]]] = [
            (policy, group[begin : begin + ROLLUP_LINES_PER_WRITE])
            for policy, group in ((None, lines), (rollup.DAILY_RP, daily_lines or []))
            for begin in range(0, len(group), ROLLUP_LINES_PER_WRITE)
        ]
        try:
            for number, (policy, chunk) in enumerate(chunks or [(None, [])]):
                # A write starts only with the lock held for longer than it can take,
                # so no other writer's newer rollup of these days can be overwritten.
                first = number == 0
                if not await self._store.rollup_lease(
                    user,
                    token,
                    self._lease_ms,
                    marks if first else (),
                    daily if first else (),
                    read_at if first else None,
                ):
                    LOG.info("rollup of %s not written: its lock expired", user)
                    return
                if chunk:
                    await self._influx.write_lines("\n".join(chunk).encode(), policy)
        except (WriteRejected, QueryFailed) as exc:
            LOG.error("rollup of %s refused by InfluxDB: %s", user, exc)
            await self._store.release_rollup(user, token)
            return
        except StorageUnavailable as exc:
            # The write may still land: the lock is kept until it expires.
            LOG.warning("rollup of %s not written: %s", user, exc)
            return
        await self._store.commit_rollup(user, token, marks, daily)

"""Log points: ingest, the admin review of log series, and the points of crash dumps.

Every point gets a time-ordered uuid (UUIDv7 layout: the first 48 bits are the
point's time in Unix ms), so a look-up by uuid is a one-millisecond range query.
Points sharing type, level, origin and millisecond still never replace each
other: the sub-millisecond digits of their times come from a Redis sequence.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from schemas.logs import SEMVER, TAG_SAFE
from screenaware.errors import Invalid, NotFound
from screenaware.storage.ids import uuid7, uuid7_ms
from screenaware.storage.influx import GroupCommitWriter, InfluxClient, Point, Series
from screenaware.storage.redisstore import global_key
from screenaware.timeutil import from_ms, iso

LOG = logging.getLogger(__name__)

SEQUENCE = global_key("log_seq")
DEFAULT_INTERVAL = 300
# Log types per query of GET /api/logs (a row is a type and a count: small).
SERIES_PAGE = 1000
# Points of one type listed from one nanosecond at most (see LogService._tie).
TIE_MAX = 10_000
_NS_PER_MS = 1_000_000
_FIELDS = ("uuid", "message", "details", "userUuid", "originId", "version", "deleted")


def parse_message(message: str) -> tuple[float | None, bool | None]:
    """What a message says as a number and as a boolean, if anything."""
    text = message.strip()
    numeric = None
    try:
        value = float(text)
        if math.isfinite(value):
            numeric = value
    except ValueError:
        pass
    flag = {"true": True, "false": False}.get(text.lower())
    return numeric, flag


def to_point(entry: Mapping[str, Any], time_ns: int, point_uuid: str, user: str | None) -> Point:
    """The ``log`` point of a validated entry."""
    data = entry["data"]
    numeric, flag = parse_message(data["message"])
    if "messageNumeric" in data:
        numeric = data["messageNumeric"]
    if "messageBool" in data:
        flag = data["messageBool"]
    owner = user or (str(data["userUuid"]) if data.get("userUuid") else None)
    point: Point = (
        Point("log")
        .tag("type", entry["type"])
        .tag("level", entry["level"])
        .tag("origin", data["origin"])
        .field("uuid", point_uuid)
        .field("message", data["message"])
        .field("details", data.get("details", ""))
        .field("version", data["version"])
        .field("deleted", False)
        .time(time_ns)
    )
    if numeric is not None:
        point.field("messageNumeric", float(numeric))
    if flag is not None:
        point.field("messageBool", bool(flag))
    if owner:
        point.field("userUuid", owner)
    if data.get("originId"):
        point.field("originId", data["originId"])
    return point


def public_point(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as the documented log point object."""
    out: dict[str, Any] = {
        "type": row.get("type"),
        "level": row.get("level"),
        "uuid": row.get("uuid"),
        "time": iso(from_ms(int(row["time"]) // _NS_PER_MS)),
        "deleted": bool(row.get("deleted") or False),
        "message": row.get("message") or "",
        "details": row.get("details") or "",
        "userUuid": row.get("userUuid"),
        "origin": row.get("origin"),
        "originId": row.get("originId"),
        "version": row.get("version"),
    }
    if row.get("messageNumeric") is not None:
        out["messageNumeric"] = row["messageNumeric"]
    if row.get("messageBool") is not None:
        out["messageBool"] = row["messageBool"]
    return out


def _rows(series: Sequence[Series]) -> list[dict[str, Any]]:
    return [row for s in series for row in s.rows()]


def _newest_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The listing order: time descending, then uuid descending (a total order)."""
    return sorted(rows, key=lambda row: (int(row["time"]), str(row["uuid"])), reverse=True)


def bucket_count(start_ms: int, end_ms: int, width_ms: int) -> int:
    """How many epoch-aligned intervals of ``width_ms`` the range touches (InfluxDB's)."""
    return end_ms // width_ms - start_ms // width_ms + 1


def describe_span(seconds: int) -> str:
    """A duration for messages: ``5 minutes``, ``1 hour``, ``34.7 days``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size or unit == "second":
            value = seconds / size
            text = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
            return f"{text} {unit}" + ("" if text == "1" else "s")
    raise AssertionError("unreachable")


class LogService:
    """Log ingest and review.

    Args:
        influx: the InfluxDB client (queries).
        writer: the group-commit writer.
        redis: zero-argument callable returning the open Redis client.
        clock: the current Unix time in seconds.
        page_points: the most points one InfluxDB query of a listing returns.
        max_buckets: the most intervals a grouped answer may have.
    """

    def __init__(
        self,
        influx: InfluxClient,
        writer: GroupCommitWriter,
        redis: Callable[[], aioredis.Redis],
        clock: Callable[[], float],
        page_points: int = 100,
        max_buckets: int = 10_000,
    ) -> None:
        self._influx = influx
        self._writer = writer
        self._redis = redis
        self._clock = clock
        self.page_points = page_points
        self.max_buckets = max_buckets

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def ingest(self, entries: Sequence[Mapping[str, Any]], user: str | None) -> list[str]:
        """Store validated entries; returns their uuids once they are durable."""
        last = int(await self._redis().incrby(SEQUENCE, len(entries)))
        now = self.now_ms()
        points, uuids = [], []
        for offset, entry in enumerate(entries):
            ms = entry["data"].get("time", now)
            point_uuid = uuid7(ms)
            # The sub-millisecond digits: a cluster-wide sequence keeps points of
            # the same series and millisecond apart (up to a million of them).
            sub = (last - len(entries) + 1 + offset) % _NS_PER_MS
            points.append(to_point(entry, ms * _NS_PER_MS + sub, point_uuid, user))
            uuids.append(point_uuid)
        await self._writer.write(points)
        return uuids

    # --- review -----------------------------------------------------------

    async def series(self, start_ms: int, end_ms: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Every log type with its count in the range, in pages, sorted by type.

        InfluxDB answers the series of ``GROUP BY "type"`` in tag order, so SLIMIT and
        SOFFSET page through them: neither side holds more than one page, however
        many types anonymous senders made up.
        """
        offset = 0
        while True:
            result = await self._influx.query(
                'SELECT count("uuid") FROM "log" WHERE time >= $start AND time <= $end '
                'GROUP BY "type" SLIMIT $slimit SOFFSET $soffset',
                {**self._range(start_ms, end_ms), "slimit": SERIES_PAGE, "soffset": offset},
            )
            yield [{"type": s.tags["type"], "count": int(s.values[0][1])} for s in result]
            if len(result) < SERIES_PAGE:
                return
            offset += SERIES_PAGE

    @staticmethod
    def _range(start_ms: int, end_ms: int) -> dict[str, Any]:
        return {"start": start_ms * _NS_PER_MS, "end": end_ms * _NS_PER_MS + _NS_PER_MS - 1}

    def _where(
        self, log_type: str, start_ms: int, end_ms: int, user: str | None
    ) -> tuple[str, dict[str, Any]]:
        clause = '"type" = $type AND time >= $start AND time <= $end'
        params = {"type": log_type, **self._range(start_ms, end_ms)}
        if user:
            clause += ' AND "userUuid" = $user'
            params["user"] = user
        return clause, params

    async def points(
        self,
        log_type: str,
        start_ms: int,
        end_ms: int,
        user: str | None,
        limit: int,
        offset: int = 0,
        cursor: str | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The points of a series, newest first (ties in time: larger uuid first), in pages.

        Each InfluxDB query asks for at most ``page_points`` points, so neither the
        worker nor influxd holds more than one page, whatever ``limit`` and the range.

        Args:
            limit: the most points to list.
            offset: points to skip first (InfluxQL's OFFSET; only without ``cursor``).
            cursor: the uuid of the last point of the previous page: listing goes on
                after it, and so every point comes exactly once.

        Raises:
            Invalid: ``cursor`` names no log point.
        """
        clause, params = self._where(log_type, start_ms, end_ms, user)
        remaining = limit
        async for rows in self._walk(clause, params, offset, cursor):
            page = rows[:remaining]
            remaining -= len(page)
            if page:
                yield [public_point(row) for row in page]
            if remaining <= 0:
                return

    async def _walk(
        self, clause: str, params: dict[str, Any], offset: int, cursor: str | None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The rows of the range in listing order, at most ``page_points`` per query."""
        clause += " AND time <= $upper"
        start_ns, upper = params["start"], params["end"]
        if cursor is not None:
            at = await self._time_of(cursor)
            if at is None:
                raise Invalid("cursor names no log point", {"cursor": ["No such log point."]})
            if at <= upper:
                # The rest of the cursor's own nanosecond first, then older points.
                async for rows in self._tie(clause, params, at, below=cursor):
                    yield rows
                upper = at - 1
        while upper >= start_ns:
            result = await self._influx.query(
                f'SELECT * FROM "log" WHERE {clause} '  # noqa: S608 - constants only
                "ORDER BY time DESC LIMIT $limit OFFSET $offset",
                {**params, "upper": upper, "limit": self.page_points, "offset": offset},
            )
            offset = 0
            rows = _rows(result)
            if len(rows) < self.page_points:
                # Everything down to the start of the range is here.
                yield _newest_first(rows)
                return
            # A full page may cut through the points of its oldest nanosecond (of other
            # levels or origins): take that nanosecond whole, then go on below it.
            oldest = int(rows[-1]["time"])
            yield _newest_first([r for r in rows if int(r["time"]) > oldest])
            known = [r for r in rows if int(r["time"]) == oldest]
            async for tied in self._tie(clause, params, oldest, known=known):
                yield tied
            upper = oldest - 1

    async def _tie(
        self,
        clause: str,
        params: dict[str, Any],
        at_ns: int,
        below: str | None = None,
        known: Sequence[dict[str, Any]] = (),
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The points of one nanosecond in uuid order (below ``below``), in pages.

        Their uuids come first (small), then the points not ``known`` already, a page
        at a time. Several points of one type share a nanosecond only when the
        sub-millisecond sequence wraps onto an equal value; at most ``TIE_MAX`` of
        them are listed.
        """
        at = {**params, "upper": at_ns, "at": at_ns}
        result = await self._influx.query(
            f'SELECT "uuid" FROM "log" WHERE {clause} AND time = $at LIMIT $limit',  # noqa: S608
            {**at, "limit": TIE_MAX},
        )
        uuids = sorted((str(row["uuid"]) for row in _rows(result)), reverse=True)
        if below is not None:
            uuids = [u for u in uuids if u < below]
        have = {str(row["uuid"]): row for row in known}
        for first in range(0, len(uuids), self.page_points):
            chunk = uuids[first : first + self.page_points]
            missing = [u for u in chunk if u not in have]
            rows = [have[u] for u in chunk if u in have]
            if missing:
                match = " OR ".join(f'"uuid" = $u{i}' for i in range(len(missing)))
                result = await self._influx.query(
                    f'SELECT * FROM "log" WHERE {clause} AND time = $at AND ({match})',  # noqa: S608
                    {**at, **{f"u{i}": u for i, u in enumerate(missing)}},
                )
                rows += _rows(result)
            yield _newest_first(rows)

    async def _time_of(self, point_uuid: str) -> int | None:
        ms = uuid7_ms(point_uuid)
        if ms is None:
            return None
        result = await self._influx.query(
            'SELECT "uuid" FROM "log" WHERE time >= $start AND time <= $end AND "uuid" = $uuid '
            "LIMIT 1",
            {**self._range(ms, ms), "uuid": point_uuid},
        )
        rows = _rows(result)
        return int(rows[0]["time"]) if rows else None

    async def count(self, log_type: str, start_ms: int, end_ms: int, user: str | None) -> int:
        clause, params = self._where(log_type, start_ms, end_ms, user)
        statement = f'SELECT count("uuid") FROM "log" WHERE {clause}'  # noqa: S608 - constants
        result = await self._influx.query(statement, params)
        return int(result[0].values[0][1]) if result else 0

    async def grouped(
        self,
        log_type: str,
        start_ms: int,
        end_ms: int,
        user: str | None,
        interval_s: int = DEFAULT_INTERVAL,
    ) -> list[dict[str, Any]]:
        """Counts in intervals (5 minutes unless asked) over the range, empty ones included.

        Raises:
            Invalid: the range needs more than ``max_buckets`` intervals.
        """
        width_ms = interval_s * 1000
        needed = bucket_count(start_ms, end_ms, width_ms)
        if needed > self.max_buckets:
            raise Invalid(
                f"A grouped answer has at most {self.max_buckets} intervals (of "
                f"{describe_span(interval_s)}: {describe_span(self.max_buckets * interval_s)}); "
                f"this range needs {needed}. "
                "Ask for a shorter range or a coarser interval (e.g. interval=1h).",
                {"interval": [f"At most {self.max_buckets} intervals per answer."]},
            )
        clause, params = self._where(log_type, start_ms, end_ms, user)
        # The width is a validated integer; InfluxQL takes no bind parameter there.
        statement = (
            f'SELECT count("uuid") FROM "log" WHERE {clause} '  # noqa: S608 - constants only
            f"GROUP BY time({int(interval_s)}s) fill(0)"
        )
        result = await self._influx.query(statement, params)
        values = result[0].values if result else []
        if not values:
            # No point at all: InfluxDB answers no series, so make the empty intervals.
            first = start_ms - start_ms % width_ms
            values = [[ms * _NS_PER_MS, 0] for ms in range(first, end_ms + 1, width_ms)]
        return [
            {"time": iso(from_ms(int(t) // _NS_PER_MS)), "count": int(c or 0)} for t, c in values
        ]

    async def point(self, point_uuid: str) -> dict[str, Any]:
        """One point by its uuid: a query over its millisecond only."""
        ms = uuid7_ms(point_uuid)
        if ms is None:
            raise NotFound("Log point not found")
        result = await self._influx.query(
            'SELECT * FROM "log" WHERE time >= $start AND time <= $end AND "uuid" = $uuid LIMIT 1',
            {**self._range(ms, ms), "uuid": point_uuid},
        )
        rows = _rows(result)
        if not rows:
            raise NotFound("Log point not found")
        return public_point(rows[0])

    # --- crash dumps ------------------------------------------------------

    async def record_crash(
        self,
        point_uuid: str,
        ms: int,
        fields: Mapping[str, str],
        size: int,
        sha256: str,
        user: str | None,
    ) -> None:
        """Write the ``crash_sensor`` point of a stored dump (fields, size, SHA-256)."""
        version = fields.get("ver", "")
        origin = fields.get("prod") or "sensor"
        entry = {
            "type": "crash_sensor",
            "level": "error",
            "data": {
                "origin": origin if re.match(TAG_SAFE, origin) else "sensor",
                "version": version if re.match(SEMVER, version) else "0.0.0",
                "originId": fields.get("guid", ""),
                "message": "crash",
                "details": json.dumps({"fields": dict(fields), "size": size, "sha256": sha256}),
            },
        }
        sub = int(await self._redis().incr(SEQUENCE)) % _NS_PER_MS
        await self._writer.write([to_point(entry, ms * _NS_PER_MS + sub, point_uuid, user)])

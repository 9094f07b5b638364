"""Log points and crash dumps: ingest, and the admin review of grouped log series.

Every point gets a time-ordered uuid (UUIDv7 layout: the first 48 bits are the
point's time in Unix ms), so a look-up by uuid is a one-millisecond range query.
Points sharing type, level, origin and millisecond still never replace each
other: the sub-millisecond digits of their times come from a Redis sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from schemas.logs import SEMVER, TAG_SAFE
from screenaware.errors import BodyTooLarge, Invalid, NotFound
from screenaware.storage.ids import uuid7, uuid7_ms
from screenaware.storage.influx import GroupCommitWriter, InfluxClient, Point, Series
from screenaware.timeutil import from_ms, iso

LOG = logging.getLogger(__name__)

SEQUENCE = "{sa}:log_seq"
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
    point = (
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


def _sync_and_close(out: Any) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()


def _rows(series: Sequence[Series]) -> list[dict[str, Any]]:
    return [row for s in series for row in s.rows()]


class LogService:
    """Log ingest and review.

    Args:
        influx: the InfluxDB client (queries).
        writer: the group-commit writer.
        redis: zero-argument callable returning the open Redis client.
        clock: the current Unix time in seconds.
        crash_dir: where crash dumps are kept.
        crash_max_bytes: the largest dump accepted.
    """

    def __init__(
        self,
        influx: InfluxClient,
        writer: GroupCommitWriter,
        redis: Callable[[], aioredis.Redis],
        clock: Callable[[], float],
        crash_dir: Path,
        crash_max_bytes: int,
        max_buckets: int = 10_000,
    ) -> None:
        self._influx = influx
        self._max_buckets = max_buckets
        self._writer = writer
        self._redis = redis
        self._clock = clock
        self.crash_dir = crash_dir
        self.crash_max_bytes = crash_max_bytes

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

    async def series(self, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """Every log type with its count in the range."""
        result = await self._influx.query(
            'SELECT count("uuid") FROM "log" WHERE time >= $start AND time <= $end GROUP BY "type"',
            self._range(start_ms, end_ms),
        )
        found = [{"type": s.tags["type"], "count": int(s.values[0][1])} for s in result]
        return sorted(found, key=lambda item: item["type"])

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
        self, log_type: str, start_ms: int, end_ms: int, user: str | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """The points of a series, newest first."""
        clause, params = self._where(log_type, start_ms, end_ms, user)
        # LIMIT and OFFSET take no bind parameters; both are validated integers.
        result = await self._influx.query(
            f'SELECT * FROM "log" WHERE {clause} ORDER BY time DESC '  # noqa: S608 - constants
            f"LIMIT {int(limit)} OFFSET {int(offset)}",
            params,
        )
        return [public_point(row) for row in _rows(result)]

    async def count(self, log_type: str, start_ms: int, end_ms: int, user: str | None) -> int:
        clause, params = self._where(log_type, start_ms, end_ms, user)
        statement = f'SELECT count("uuid") FROM "log" WHERE {clause}'  # noqa: S608 - constants
        result = await self._influx.query(statement, params)
        return int(result[0].values[0][1]) if result else 0

    async def grouped(
        self, log_type: str, start_ms: int, end_ms: int, user: str | None
    ) -> list[dict[str, Any]]:
        """Counts in 5-minute intervals over the range, empty intervals included.

        Raises:
            Invalid: the range has more intervals than the configured limit (every
                one is answered, so a range of years would fill a worker's memory).
        """
        intervals = (end_ms - start_ms) // 300_000 + 1
        if intervals > self._max_buckets:
            raise Invalid(
                f"At most {self._max_buckets} 5-minute intervals per request",
                {"start": ["The range is too long for structure=grouped."]},
            )
        clause, params = self._where(log_type, start_ms, end_ms, user)
        statement = f'SELECT count("uuid") FROM "log" WHERE {clause} GROUP BY time(5m) fill(0)'  # noqa: S608
        result = await self._influx.query(statement, params)
        values = result[0].values if result else []
        if not values:
            # No point at all: InfluxDB answers no series, so make the empty intervals.
            first = start_ms - start_ms % 300_000
            values = [[ms * _NS_PER_MS, 0] for ms in range(first, end_ms + 1, 300_000)]
        return [
            {"time": iso(from_ms(int(t) // _NS_PER_MS)), "count": int(c or 0)} for t, c in values
        ]

    async def point(self, point_uuid: str) -> dict[str, Any]:
        """One point by its uuid: a query over its millisecond only."""
        ms = uuid7_ms(point_uuid)
        if ms is None:
            raise NotFound("Log point not found")
        result = await self._influx.query(
            'SELECT * FROM "log" WHERE time >= $start AND time <= $end AND "uuid" = $uuid',
            {**self._range(ms, ms), "uuid": point_uuid},
        )
        rows = _rows(result)
        if not rows:
            raise NotFound("Log point not found")
        return public_point(rows[0])

    # --- crash dumps ------------------------------------------------------

    def dump_path(self, point_uuid: str) -> Path:
        """Where the dump of a crash point lives (the uuid is parsed, never a path)."""
        return self.crash_dir / f"{uuidlib.UUID(point_uuid)}.dmp"

    async def store_crash(
        self, fields: Mapping[str, str], chunks: AsyncIterator[bytes], user: str | None
    ) -> str:
        """Stream a dump to disk (refusing it once it passes the limit), then record
        a ``crash_sensor`` point with the upload's fields, size and SHA-256."""
        self.crash_dir.mkdir(parents=True, exist_ok=True)
        now = self.now_ms()
        point_uuid = uuid7(now)
        final = self.dump_path(point_uuid)
        partial = final.with_suffix(".part")
        digest, size = hashlib.sha256(), 0
        try:
            # File I/O runs in threads: a slow disk must not stall the event loop.
            out = await asyncio.to_thread(open, partial, "wb")
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.crash_max_bytes:
                        raise BodyTooLarge(self.crash_max_bytes)
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
                await asyncio.to_thread(_sync_and_close, out)
            finally:
                out.close()
            await asyncio.to_thread(os.replace, partial, final)
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
                    "details": json.dumps(
                        {"fields": dict(fields), "size": size, "sha256": digest.hexdigest()}
                    ),
                },
            }
            sub = int(await self._redis().incr(SEQUENCE)) % _NS_PER_MS
            await self._writer.write([to_point(entry, now * _NS_PER_MS + sub, point_uuid, user)])
        except BaseException:
            partial.unlink(missing_ok=True)
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
            raise
        LOG.info("crash dump %s stored (%d bytes)", point_uuid, size)
        return point_uuid

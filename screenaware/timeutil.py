"""Time helpers: ISO strings as the API writes them, zone-aware calendar buckets."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


def iso(moment: dt.datetime) -> str:
    """``2015-05-17T05:52:22.907Z``: UTC, milliseconds, ``Z``."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def to_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def day_bounds(moment: dt.datetime, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """Start of the local day of ``moment`` and its last millisecond."""
    local = moment.astimezone(zone).date()
    start = dt.datetime.combine(local, dt.time(), zone)
    end = dt.datetime.combine(local + dt.timedelta(days=1), dt.time(), zone)
    return start, end - dt.timedelta(milliseconds=1)


def bucket_start(moment: dt.datetime, resolution: str, zone: ZoneInfo) -> dt.datetime:
    """The start of the bucket holding ``moment`` (local hour, day, ISO week, month)."""
    local = moment.astimezone(zone)
    if resolution == "hour":
        # Whole-hour steps from a local hour start stay aligned across DST changes.
        floored = local.replace(minute=0, second=0, microsecond=0)
        return floored.astimezone(dt.UTC)
    day = local.date()
    if resolution == "week":
        day -= dt.timedelta(days=day.weekday())
    elif resolution == "month":
        day = day.replace(day=1)
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def next_bucket(start: dt.datetime, resolution: str, zone: ZoneInfo) -> dt.datetime:
    """The start of the bucket after the one starting at ``start``."""
    if resolution == "hour":
        return start + dt.timedelta(hours=1)
    local = start.astimezone(zone).date()
    if resolution == "day":
        following = local + dt.timedelta(days=1)
    elif resolution == "week":
        following = local + dt.timedelta(days=7)
    else:
        following = (local.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return dt.datetime.combine(following, dt.time(), zone).astimezone(dt.UTC)


def buckets(
    start: dt.datetime, end: dt.datetime, resolution: str, zone: ZoneInfo
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Every bucket ``[begin, next)`` that overlaps ``[start, end]``."""
    out = []
    current = bucket_start(start, resolution, zone)
    while current <= end:
        following = next_bucket(current, resolution, zone)
        out.append((current, following))
        current = following
    return out

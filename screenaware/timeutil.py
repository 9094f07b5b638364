"""Time helpers: ISO strings as the API writes them, zone-aware calendar buckets."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from zoneinfo import ZoneInfo

from screenaware.errors import Invalid


@functools.cache
def zone_names() -> frozenset[str]:
    """The IANA zone names this machine knows, and ``UTC`` (read once: it walks the disk)."""
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def parse_zone(name: str) -> ZoneInfo:
    """The zone of an IANA name; the one parser of every zone the service accepts.

    Only names listed by :func:`zoneinfo.available_timezones` (and ``UTC``) pass:
    ``ZoneInfo`` itself would open paths such as ``America`` (a directory),
    ``/etc/localtime`` or ``../..`` and fail with an ``OSError``.

    Raises:
        ValueError: the name is not a known zone.
    """
    if name not in zone_names():
        raise ValueError(f"Unknown IANA time zone {name!r}")
    return ZoneInfo(name)


def iso(moment: dt.datetime) -> str:
    """``2015-05-17T05:52:22.907Z``: UTC, milliseconds, ``Z``."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def from_ms(ms: int) -> dt.datetime:
    """The UTC moment of a Unix time in milliseconds."""
    return EPOCH + ms * _MS


def to_ms(moment: dt.datetime) -> int:
    """A moment as Unix milliseconds, exactly (sub-millisecond parts are dropped).

    Integer arithmetic on purpose: ``int(moment.timestamp() * 1000)`` goes through a
    float and loses a millisecond for some times (``00:00:00.001`` of 2004-02-01 gave
    ``...000``). A naive moment counts as UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - EPOCH) // _MS


def day_bounds(moment: dt.datetime, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """Start of the local day of ``moment`` and its last millisecond."""
    local = moment.astimezone(zone).date()
    start = dt.datetime.combine(local, dt.time(), zone)
    end = dt.datetime.combine(local + dt.timedelta(days=1), dt.time(), zone)
    return start, end - dt.timedelta(milliseconds=1)


def requested_range(
    start: dt.datetime | None,
    end: dt.datetime | None,
    zone: ZoneInfo,
    now: dt.datetime,
    longest: dt.timedelta,
) -> tuple[dt.datetime, dt.datetime]:
    """The range a query asks for, in UTC: by default the current day in ``zone``;
    with only one end given, that end's day.

    Raises:
        Invalid: ``start`` after ``end``, or a range longer than ``longest``.
    """
    given_start = start
    if start is None:
        start = day_bounds(end if end is not None else now, zone)[0]
    if end is None:
        end = day_bounds(given_start if given_start is not None else now, zone)[1]
    if start > end:
        raise Invalid("start is after end", {"start": ["Must not be after end."]})
    if end - start > longest:
        raise Invalid(f"The range is longer than {longest.days} days", {"end": ["Too long."]})
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


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

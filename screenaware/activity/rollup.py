"""The ``activity_15m`` rollup: what ``/times`` reads instead of a long raw range.

``activity`` is an append-only ledger (corrections and overlaps add reversing and
new entries), so summing a year of it means reading every entry. The rollup holds
one point per user, tag set (project, category, application) and 15-minute UTC
bucket: ``duration_ms`` is the sum of the ledger's entries in that bucket, written
with the bucket's start as its time, so a rewrite of a bucket replaces it
(idempotent). Reversing entries keep a tag set present with a sum of 0, so a
bucket's tag sets only ever grow and a recomputed day overwrites every point the
previous computation wrote.

Which days hold the raw sums is kept per user and UTC day in Redis (see
:mod:`.store`): every writer of ``activity`` bumps the day's write counter after
InfluxDB acknowledged the write; a day is *clean* when its rollup was computed
at the counter the day has now, else *dirty*. ``/times`` answers from the rollup
for clean days and whole buckets, from the ledger for the edges of the range and
for dirty days (which it rolls up again on the way), so the answer is the raw sum
to the millisecond.

15 minutes: every zone in use since 1972 is offset from UTC by a multiple of 15
minutes (+05:30, +05:45, +12:45), so its hours and days start on a bucket boundary.
A range whose buckets do not (Africa/Monrovia before 1972) is answered from the raw
ledger alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from screenaware.activity.store import DAY_MS
from screenaware.timeutil import buckets, to_ms

MEASUREMENT = "activity_15m"
# The daily rollup: per user, zone, tag set and local day (written at the day's
# start), the sum of that local day's entries. A local day is clean while the write
# counters of the UTC days it touches are the ones it was rolled up at.
DAILY = "activity_1d"
# ... in a retention policy of its own with long shards: a year of days is read from
# one or two shards instead of 53 weekly ones (InfluxDB 1.6 pays per shard opened:
# 16-19 ms for 2,190 points in 53 shards, 6-8 ms in one). Kept forever, as
# ``autogen`` keeps ``activity``.
DAILY_RP = "rollups"
DAILY_SHARD_WEEKS = 520
# Answers in these resolutions read their whole local days from the daily rollup.
DAILY_RESOLUTIONS = frozenset({"day", "week", "month"})
BUCKET_MS = 15 * 60_000
# At most this many stretches of clean days are read from the rollup (the shortest
# clean stretches between dirty days are read raw instead), and dirty days are read
# raw in queries of at most this many days.
MAX_CLEAN_STRETCHES = 4
DIRTY_DAYS_PER_QUERY = 31
# Tags of the rollup besides the user: what /times groups by.
TAGS = ("project", "category", "application")


@dataclass(frozen=True)
class Layout:
    """How one /times range is read.

    Attributes:
        edges: raw ranges ``[lo, hi)`` in Unix ms, not whole buckets, read as the
            answer groups them.
        clean: ranges ``[lo, hi)`` read from the rollup.
        dirty: whole UTC days ``[lo, hi)`` read raw by bucket and tag set, both for
            the answer (the part inside ``core``) and to roll them up again.
        core: the whole buckets of the range, ``[lo, hi)``.
        dirty_days: the UTC day numbers of ``dirty``.
    """

    edges: list[tuple[int, int]]
    clean: list[tuple[int, int]]
    dirty: list[tuple[int, int]]
    core: tuple[int, int]
    dirty_days: list[int] = field(default_factory=list)


def layout(
    start_ms: int,
    end_ms: int,
    boundaries: Iterable[int],
    first_day: int,
    clean: Sequence[bool],
) -> Layout | None:
    """Split the range ``[start_ms, end_ms]`` (end inclusive) between rollup and raw.

    Args:
        start_ms: the range's start.
        end_ms: the range's last millisecond.
        boundaries: the starts and ends of the answer's buckets (Unix ms).
        first_day: the UTC day number of ``clean[0]``.
        clean: per UTC day from ``first_day``, whether its rollup is clean.

    Returns:
        The layout, or None when the range holds no whole bucket or an answer
        bucket starts inside a rollup bucket (then the raw ledger answers alone).
    """
    lo = -(-start_ms // BUCKET_MS) * BUCKET_MS
    hi = (end_ms + 1) // BUCKET_MS * BUCKET_MS
    if hi <= lo or any(lo < b < hi and b % BUCKET_MS for b in boundaries):
        return None
    edges = [(a, b) for a, b in ((start_ms, lo), (hi, end_ms + 1)) if a < b]
    # Runs of days alike: [clean?, first day, day after the last].
    runs: list[list[int]] = []
    for day in range(lo // DAY_MS, (hi - 1) // DAY_MS + 1):
        ok = int(clean[day - first_day])
        if runs and runs[-1][0] == ok:
            runs[-1][2] = day + 1
        else:
            runs.append([ok, day, day + 1])
    while sum(run[0] for run in runs) > MAX_CLEAN_STRETCHES:
        shortest = min((r for r in runs if r[0]), key=lambda r: r[2] - r[1])
        shortest[0] = 0
        merged: list[list[int]] = []
        for run in runs:
            if merged and merged[-1][0] == run[0]:
                merged[-1][2] = run[2]
            else:
                merged.append(run)
        runs = merged
    clean_ranges: list[tuple[int, int]] = []
    dirty_ranges: list[tuple[int, int]] = []
    dirty_days: list[int] = []
    for ok, first, after in runs:
        if ok:
            clean_ranges.append((max(first * DAY_MS, lo), min(after * DAY_MS, hi)))
            continue
        dirty_days.extend(range(first, after))
        for day in range(first, after, DIRTY_DAYS_PER_QUERY):
            dirty_ranges.append((day * DAY_MS, min(day + DIRTY_DAYS_PER_QUERY, after) * DAY_MS))
    return Layout(edges, clean_ranges, dirty_ranges, (lo, hi), dirty_days)


def local_days(
    start: dt.datetime,
    end: dt.datetime,
    zone: ZoneInfo,
    day_buckets: list[tuple[dt.datetime, dt.datetime]] | None = None,
) -> list[int]:
    """The starts of the whole local days inside ``[start, end]`` (end inclusive),
    then the end of the last one, in Unix ms.

    ``day_buckets``: the range's local days, if already known (``buckets(start, end,
    "day", zone)``).

    Returns:
        ``[]`` when the range holds no whole local day, or when a local midnight is
        not on a rollup bucket's boundary (then a day cannot be summed from buckets).
    """
    start_ms, after = to_ms(start), to_ms(end) + 1
    days = day_buckets or buckets(start, end, "day", zone)
    bounds = [to_ms(b) for b, _ in days] + [to_ms(days[-1][1])]
    whole = [b for b in bounds if start_ms <= b <= after]
    if len(whole) < 2 or any(b % BUCKET_MS for b in whole):
        return []
    return whole

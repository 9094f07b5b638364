"""The ``activity_runs`` rollup: what plain ``/streams`` reads instead of raw days.

Streams depend only on the *runs* of a day's activity (a run: activity of one
project with no idle gap inside; see :mod:`.sessionise`), and runs are
associative: the runs of two consecutive stretches give the runs of the whole by
joining the last run of the first to the first of the second where the project
goes on without an idle gap (:func:`.sessionise.merge_runs`). So the rollup holds,
per user and 15-minute UTC bucket, the runs of the activity that starts in it
(corrections and overlap trims applied), as one JSON string field ``runs``
(``[[start, last end, latest end, activity time, project or null], ...]``)
written at the bucket's start. A local day is made of whole buckets (every zone in
use since 1972 is offset from UTC by a multiple of 15 minutes), so its runs are its
buckets' runs merged, exactly what sessionising its raw rows gives.

A bucket gets a point as soon as the ledger has any entry in it, and the ledger is
append-only, so a day rolled up again overwrites every point it wrote before
(idempotent, nothing to delete). Which days hold what the ledger says is kept as
for ``/times`` (:mod:`screenaware.storage.rollupmarks`), marked with the write
counter of the day and the idle gap the runs were cut with, so a change of that
threshold reads raw again. Dirty days are read raw, and rolled up on the way once
they are over; a range whose days do not start on a bucket boundary is answered
from the raw ledger alone.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

# The bucket of the /times rollup: local days of every zone in use start on one.
from screenaware.activity import BUCKET_MS, DAY_MS
from screenaware.errors import StorageUnavailable, WriteRejected
from screenaware.storage.influx import InfluxClient, Series
from screenaware.storage.lineprotocol import encode
from screenaware.storage.redisstore import user_scoped
from screenaware.storage.rollupmarks import RollupMarks
from screenaware.streams.sessionise import Run, bucket_runs, merge_runs, ordered_columns

LOG = logging.getLogger(__name__)

MEASUREMENT = "activity_runs"
QUERIES_AT_ONCE = 4
LINES_PER_WRITE = 5000
# InfluxDB 1.x keeps string fields up to 64 KiB: a day with a bucket whose runs do
# not fit (hundreds of project changes in 15 minutes) stays raw.
MAX_FIELD_BYTES = 60_000
RAW_COLUMNS = '"duration_ms", "project", "rev"'
_NS_PER_MS = 1_000_000


def rolled_key(user: str) -> str:
    """The user's hash: UTC day number -> the mark its runs were rolled up at."""
    return user_scoped(user, "srolled")


def lock_key(user: str) -> str:
    """Who is writing the user's runs rollup."""
    return user_scoped(user, "srollock")


def encode_runs(runs: Sequence[Run]) -> str:
    """A bucket's runs as the ``runs`` field."""
    return orjson.dumps(
        [[r.start, r.last_end, r.max_end, r.duration, r.project] for r in runs]
    ).decode()


def decode_runs(text: str) -> list[Run]:
    """A bucket's runs from its ``runs`` field."""
    return [
        Run(project, 0, 0, start, last_end, max_end, duration)
        for start, last_end, max_end, duration, project in orjson.loads(text)
    ]


class RunsRollup:
    """Reads the runs of local days through the rollup, rolling days up on the way.

    Args:
        influx: the InfluxDB client.
        marks: the rolled days and the lock of this rollup.
        counters: the write counters of UTC days (``ActivityStore.counters``).
        clock: the current Unix time in seconds.
        idle_gap: the idle gap (ms) runs are cut at.
        lock_ttl_ms: how long the rollup of a user stays taken by a writer that died.
        lease_ms: the least time a rollup write may start with before the lock
            would expire (longer than an InfluxDB write may take).
    """

    def __init__(
        self,
        influx: InfluxClient,
        marks: RollupMarks,
        clock: Callable[[], float],
        idle_gap: int,
        *,
        lock_ttl_ms: int = 30_000,
        lease_ms: int = 11_000,
    ) -> None:
        self._influx = influx
        self._marks = marks
        self._clock = clock
        self._idle_gap = idle_gap
        self._lock_ttl_ms = lock_ttl_ms
        self._lease_ms = lease_ms

    def mark(self, counter: str | None) -> str:
        """What a day rolled up at write counter ``counter`` is marked with."""
        return f"{counter or '0'}/{self._idle_gap}"

    async def day_runs(
        self, user: str, spans: Sequence[tuple[int, int]], counters: Mapping[int, str | None]
    ) -> list[list[Run]] | None:
        """The runs of each local day ``[start, end)`` (Unix ms).

        Args:
            user: the user.
            spans: the days.
            counters: the write counters of every UTC day the spans touch, read
                before this call (a write acknowledged later leaves its day dirty).

        Returns:
            One list of runs per span, or None when a span does not start and end
            on a bucket boundary (then the caller reads raw).
        """
        if not spans or any(s % BUCKET_MS or e % BUCKET_MS for s, e in spans):
            return None
        utc = sorted({d for s, e in spans for d in range(s // DAY_MS, (e - 1) // DAY_MS + 1)})
        lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
        marks = await self._marks.marks(user, utc)
        clean = [m == self.mark(counters.get(d)) for d, m in zip(utc, marks, strict=True)]
        now_ms = int(self._clock() * 1000)
        # Stretches of consecutive clean days: one query each.
        stretches: list[list[int]] = []
        for day, ok in zip(utc, clean, strict=True):
            if ok:
                if stretches and stretches[-1][1] == day:
                    stretches[-1][1] = day + 1
                else:
                    stretches.append([day, day + 1])
        dirty = [day for day, ok in zip(utc, clean, strict=True) if not ok]
        # A dirty day that is over is read whole, to be rolled up; days still being
        # written (today's, future ones) only where asked: the next snapshot would
        # make them dirty again.
        over = {day for day in dirty if (day + 1) * DAY_MS <= now_ms}
        raw_spans = [
            (day * DAY_MS, (day + 1) * DAY_MS)
            if day in over
            else (max(day * DAY_MS, lo), min((day + 1) * DAY_MS, hi))
            for day in dirty
        ]
        gate = asyncio.Semaphore(QUERIES_AT_ONCE)

        async def clean_runs(a: int, b: int) -> dict[int, list[Run]]:
            async with gate:
                series = await self._query(MEASUREMENT, '"runs"', user, a, b)
            return {
                int(time_ns) // _NS_PER_MS: decode_runs(text)
                for s in series
                for time_ns, text in s.values
                if text is not None
            }

        async def raw_runs(day: int, a: int, b: int) -> tuple[dict[int, list[Run]], Any]:
            # Each raw day is reduced to its bucket runs as it arrives: a month of
            # raw rows alive at once would make the collector walk them again and again.
            async with gate:
                series = await self._query("activity", RAW_COLUMNS, user, a, b)
            values = [row for s in series for row in s.values]
            columns = series[0].columns if series else []
            starts, ends, durations, projects = ordered_columns(columns, values)
            found = bucket_runs(starts, ends, durations, projects, self._idle_gap, BUCKET_MS)
            return found, self._lines(user, values, found) if day in over else None

        answers, raw = await asyncio.gather(
            asyncio.gather(
                *(clean_runs(max(a * DAY_MS, lo), min(b * DAY_MS, hi)) for a, b in stretches)
            ),
            asyncio.gather(
                *(raw_runs(day, a, b) for day, (a, b) in zip(dirty, raw_spans, strict=True))
            ),
        )
        buckets: dict[int, list[Run]] = {}
        for found in answers:
            buckets.update(found)
        rollable: dict[int, list[str]] = {}
        for day, (found, lines) in zip(dirty, raw, strict=True):
            buckets.update(found)
            if lines is not None:
                rollable[day] = lines
        out = [
            merge_runs((buckets.get(b, ()) for b in range(s, e, BUCKET_MS)), self._idle_gap)
            for s, e in spans
        ]
        if rollable:
            await self._roll_up(user, rollable, {d: self.mark(counters.get(d)) for d in rollable})
        return out

    def _query(
        self, measurement: str, columns: str, user: str, lo: int, hi: int
    ) -> Awaitable[list[Series]]:
        return self._influx.query(
            f'SELECT {columns} FROM "{measurement}" '  # noqa: S608 - constants only
            'WHERE "user" = $user AND time >= $start AND time < $end',
            {"user": user, "start": lo * _NS_PER_MS, "end": hi * _NS_PER_MS},
            binary=True,
        )

    def _lines(
        self, user: str, values: Sequence[Sequence[Any]], found: Mapping[int, Sequence[Run]]
    ) -> list[str] | None:
        """The rollup points of a raw day: one per bucket the ledger has any entry
        in (its runs may be none, all its time trimmed away), so a rewrite
        overwrites every point an earlier one wrote. None: a bucket is too big."""
        with_entries = sorted(
            {int(row[0]) // _NS_PER_MS // BUCKET_MS * BUCKET_MS for row in values}
        )
        lines = []
        for bucket in with_entries:
            text = encode_runs(found.get(bucket, ()))
            if len(text) > MAX_FIELD_BYTES:
                return None
            lines.append(encode(MEASUREMENT, {"user": user}, {"runs": text}, bucket * _NS_PER_MS))
        return lines

    async def _roll_up(
        self, user: str, days: Mapping[int, list[str]], marks: Mapping[int, str]
    ) -> None:
        """Write the rollup points of days read raw and mark them, holding the
        user's lock (asked for after the raw days were read: their counters were
        read before). The days are unmarked before the first write, so a failure
        or a death mid-way leaves them dirty (the answer came from the raw rows)."""
        token = secrets.token_hex(8)
        if not await self._marks.take(user, token, self._lock_ttl_ms):
            return
        lines = [line for day in sorted(days) for line in days[day]]
        try:
            for begin in range(0, len(lines), LINES_PER_WRITE):
                # A write starts only with the lock held for longer than it can take,
                # so no other writer's newer rollup of these days can be overwritten.
                unmarked = list(days) if begin == 0 else []
                # The marks are "<counter>/<idle gap>": the counters the rows were read at.
                read_at = {d: marks[d].split("/")[0] for d in unmarked}
                if not await self._marks.lease(user, token, self._lease_ms, unmarked, read_at):
                    LOG.info("runs rollup of %s not written: its lock expired", user)
                    return
                chunk = lines[begin : begin + LINES_PER_WRITE]
                await self._influx.write_lines("\n".join(chunk).encode())
        except WriteRejected as exc:
            # The answer stands (it came from the raw rows); the days stay dirty.
            LOG.error("runs rollup of %s refused by InfluxDB: %s", user, exc)
            await self._marks.release(user, token)
            return
        except StorageUnavailable as exc:
            # The write may still land: the lock is kept until it expires.
            LOG.warning("runs rollup of %s not written: %s", user, exc)
            return
        await self._marks.commit(user, token, marks)

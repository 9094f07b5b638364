"""Recompute every Heartbeat counter in Redis from InfluxDB (after a Redis loss)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from heartbeat.store import DeviceRecord, HeartbeatStore, RawStats
from screenaware.storage.influx import InfluxClient

LOG = logging.getLogger(__name__)

NS = 1_000_000_000
DAY_NS = 86400 * NS

Progress = Callable[[int, int], None]


async def compute_longest_absence(
    influx: InfluxClient, first_ns: int, last_ns: int, progress: Progress | None = None
) -> int:
    """The longest gap, in whole seconds, between consecutive beats of any device.

    Works a day at a time on the seconds that saw a beat (``GROUP BY time(1s)``), so
    a long history never has to fit in memory and the gaps match what the live
    counters compute from whole-second acknowledgement times.
    """
    longest = 0
    previous: int | None = None
    start = first_ns - first_ns % DAY_NS
    days = (last_ns - start) // DAY_NS + 1
    for day in range(days):
        window_start = start + day * DAY_NS
        series = await influx.query(
            "SELECT count(n) FROM beat WHERE time >= $start AND time < $end "
            "GROUP BY time(1s) fill(none)",
            {"start": window_start, "end": window_start + DAY_NS},
        )
        for row in series[0].values if series else []:
            second = int(row[0]) // NS
            if previous is not None:
                longest = max(longest, second - previous)
            previous = second
        if progress is not None:
            progress(day + 1, days)
    return longest


async def rebuild_stats(
    influx: InfluxClient, store: HeartbeatStore, now: int, progress: Progress | None = None
) -> RawStats:
    """Recompute the counters from the ``beat`` and ``visit`` points and store them.

    Run it while no beats arrive (service stopped): beats counted live during the
    run would be overwritten by the recomputed values.

    Returns:
        The counters now in Redis.
    """
    counts = await influx.query("SELECT count(n) FROM beat GROUP BY device")
    lasts = await influx.query("SELECT last(n) FROM beat GROUP BY device")
    firsts = await influx.query("SELECT first(n) FROM beat")
    visits = await influx.query("SELECT count(n) FROM visit")
    first_visit = await influx.query("SELECT first(n) FROM visit")

    num_beats = {int(s.tags["device"]): int(s.values[0][1]) for s in counts}
    last_beat = {int(s.tags["device"]): int(s.values[0][0]) // NS for s in lasts}
    names = await store.device_names()
    devices = tuple(
        DeviceRecord(
            id=device_id,
            name=names.get(device_id, f"device {device_id}"),
            num_beats=num_beats.get(device_id, 0),
            last_beat=last_beat.get(device_id),
        )
        for device_id in sorted(set(names) | set(num_beats))
    )

    first_ns = int(firsts[0].values[0][0]) if firsts else None
    longest = 0
    if first_ns is not None:
        last_ns = max(last_beat.values()) * NS + NS - 1
        longest = await compute_longest_absence(influx, first_ns, last_ns, progress)

    current = await store.read(now)
    candidates = [current.first_setup]
    if first_ns is not None:
        candidates.append(first_ns // NS)
    if first_visit:
        candidates.append(int(first_visit[0].values[0][0]) // NS)

    raw = RawStats(
        first_setup=min(candidates),
        last_seen=max(last_beat.values()) if last_beat else None,
        longest_absence=longest,
        total_beats=sum(num_beats.values()),
        visits=int(visits[0].values[0][1]) if visits else 0,
        devices=devices,
    )
    next_id = max([await store.next_device_id(), *(d.id + 1 for d in devices)])
    await store.replace_counters(raw, next_id)
    LOG.info("rebuilt stats: %d beats of %d devices", raw.total_beats, len(devices))
    return raw

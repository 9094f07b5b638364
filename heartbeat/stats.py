"""Presence statistics derived from the stored counters: plain functions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from heartbeat.store import RawStats


def build_stats(raw: RawStats, now: int) -> dict[str, Any]:
    """The ``GET /api/stats`` object, fields in the documented order.

    Args:
        raw: the counters as stored.
        now: the current Unix time in whole seconds.
    """
    relative = max(0, now - raw.last_seen) if raw.last_seen is not None else 0
    return {
        "last_seen": raw.last_seen,
        "last_seen_relative": relative,
        # The absence going on right now counts once it is the longest.
        "longest_absence": max(raw.longest_absence, relative),
        "num_visits": raw.visits,
        "total_beats": raw.total_beats,
        "devices": [
            {"id": d.id, "name": d.name, "last_beat": d.last_beat, "num_beats": d.num_beats}
            for d in sorted(raw.devices, key=lambda d: d.id)
        ],
        "uptime": max(0, now - raw.first_setup),
    }


def format_duration(seconds: int) -> str:
    """A short human duration: ``45 seconds``, ``3 minutes``, ``2 days 4 hours``."""
    seconds = max(0, int(seconds))
    units = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
    for i, (_, size) in enumerate(units):
        if seconds >= size or size == 1:
            # The largest unit and the one below it: precise enough for presence.
            parts: list[str] = []
            for unit, unit_size in units[i : i + 2]:
                count = seconds // unit_size
                seconds -= count * unit_size
                if count or not parts:
                    parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
            return " ".join(parts)
    return "0 seconds"


def format_timestamp(unix: int | None) -> str:
    """``2023-11-02 08:50:20 UTC``, or ``never``."""
    if unix is None:
        return "never"
    moment = dt.datetime.fromtimestamp(unix, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")

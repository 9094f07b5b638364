"""The pure stats and formatting functions."""

from __future__ import annotations

import re

from heartbeat.pages import last_seen_badge, render_badge
from heartbeat.stats import build_stats, format_duration, format_timestamp
from heartbeat.store import DeviceRecord, RawStats, new_token


def raw(**changes: object) -> RawStats:
    values: dict[str, object] = {
        "first_setup": 1000,
        "last_seen": 1900,
        "longest_absence": 300,
        "total_beats": 12,
        "visits": 4,
        "devices": (
            DeviceRecord(id=1, name="b", num_beats=2, last_beat=1900),
            DeviceRecord(id=0, name="a", num_beats=10, last_beat=1500),
        ),
    }
    values.update(changes)
    return RawStats(**values)  # type: ignore[arg-type]


def test_build_stats_orders_fields_and_devices() -> None:
    stats = build_stats(raw(), now=2000)
    assert list(stats) == [
        "last_seen",
        "last_seen_relative",
        "longest_absence",
        "num_visits",
        "total_beats",
        "devices",
        "uptime",
    ]
    assert stats["last_seen_relative"] == 100
    assert stats["longest_absence"] == 300
    assert stats["uptime"] == 1000
    assert [d["id"] for d in stats["devices"]] == [0, 1]


def test_current_absence_wins_once_longest() -> None:
    assert build_stats(raw(), now=2500)["longest_absence"] == 600


def test_no_beat_yet() -> None:
    stats = build_stats(raw(last_seen=None, longest_absence=0, devices=()), now=2000)
    assert stats["last_seen"] is None
    assert stats["last_seen_relative"] == 0
    assert stats["longest_absence"] == 0


def test_clock_behind_last_seen_never_goes_negative() -> None:
    assert build_stats(raw(), now=1800)["last_seen_relative"] == 0


def test_format_duration() -> None:
    assert format_duration(0) == "0 seconds"
    assert format_duration(1) == "1 second"
    assert format_duration(61) == "1 minute 1 second"
    assert format_duration(3600) == "1 hour"
    assert format_duration(90061) == "1 day 1 hour"
    assert format_duration(-5) == "0 seconds"


def test_format_timestamp() -> None:
    assert format_timestamp(None) == "never"
    assert format_timestamp(0) == "1970-01-01 00:00:00 UTC"


def test_badges_escape_and_colour() -> None:
    svg = render_badge("a<b", "c&d", "#fff")
    assert "a&lt;b" in svg and "c&amp;d" in svg
    fresh = last_seen_badge(build_stats(raw(), now=1910))
    stale = last_seen_badge(build_stats(raw(), now=1900 + 2 * 86400))
    assert "#4c1" in fresh and "10 seconds ago" in fresh
    assert "#e05d44" in stale


def test_device_tokens_never_read_as_an_option() -> None:
    # One in 64 URL-safe tokens began with "-", which `--beat-token TOKEN` took for an
    # option (a CI run failed on it); 2,000 draws missed that with probability 1e-14.
    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{42}", t) for t in tokens)

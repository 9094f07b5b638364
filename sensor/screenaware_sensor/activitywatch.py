"""ActivityWatch events -> ScreenAware snapshots: the one conversion both the
sensor's bridge (live, from aw-server's REST API) and the server's import of an
aw-server export file use. Standard library only.

The focused window counts where the person was not afk (a window bucket without
an afk bucket counts whole), a browser's window gets the tab's URL of its web
bucket as its document, and the result is cut into snapshots of at most 10 s.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from screenaware_sensor.snapshot import Privacy, Window, build_snapshot

DAY_MS = 86_400_000
SNAPSHOT_MS = 10_000  # the API's longest snapshot
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Browsers whose window a web bucket's name stands for (aw-watcher-web-<browser>).
BROWSER_APPS = {"chrome": ("chrome", "chromium"), "firefox": ("firefox",)}


@dataclass(frozen=True)
class Event:
    """An ActivityWatch event, in Unix milliseconds."""

    start: int
    end: int
    data: Mapping[str, Any]


def to_ms(value: str) -> int:
    """An ActivityWatch timestamp (ISO 8601) as exact Unix milliseconds."""
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - EPOCH) // dt.timedelta(milliseconds=1)


def to_iso(ms: int) -> str:
    """Unix milliseconds as the ISO 8601 aw-server takes."""
    return (EPOCH + dt.timedelta(milliseconds=ms)).isoformat()


def event_of(item: Mapping[str, Any]) -> Event | None:
    """An event of aw-server's JSON (``timestamp``, ``duration`` in s, ``data``);
    None for events without duration.

    Raises:
        KeyError, TypeError, ValueError: not an event.
    """
    begin = to_ms(item["timestamp"])
    length = round(float(item.get("duration", 0)) * 1000)
    if length <= 0:
        return None
    data = item.get("data") or {}
    if not isinstance(data, Mapping):
        raise TypeError("data is not an object")
    return Event(begin, begin + length, data)


def browser_of(bucket_id: str) -> str:
    """The browser a web bucket watches (``aw-watcher-web-chrome_host`` -> chrome)."""
    return bucket_id.removeprefix("aw-watcher-web-").split("_")[0]


def bucket_kind(bucket_id: str, info: Mapping[str, Any]) -> str:
    """``window``, ``afk``, ``web``, or ``""`` for buckets the conversion does not use."""
    kind = str(info.get("type", ""))
    if kind == "currentwindow" or bucket_id.startswith("aw-watcher-window"):
        return "window"
    if kind == "afkstatus" or bucket_id.startswith("aw-watcher-afk"):
        return "afk"
    if kind == "web.tab.current" or bucket_id.startswith("aw-watcher-web"):
        return "web"
    return ""


def _covering(events: Sequence[Event], starts: Sequence[int], at: int) -> Event | None:
    index = bisect.bisect_right(starts, at) - 1
    if index >= 0 and events[index].end > at:
        return events[index]
    return None


def _browser_matches(browser: str, app: str) -> bool:
    app = app.lower()
    return any(name in app for name in BROWSER_APPS.get(browser, (browser,)))


def cut(
    windows: Sequence[Event],
    afk: Sequence[Event] | None,
    web: Mapping[str, Sequence[Event]],
    start: int,
    end: int,
    privacy: Privacy,
) -> list[tuple[dict[str, Any], int]]:
    """Snapshots (body, taken_ms) of ``[start, end)``: not-afk window time, ≤ 10 s each."""
    bounds = {start, end}
    for events in (windows, afk or (), *web.values()):
        for e in events:
            bounds.update(t for t in (e.start, e.end) if start < t < end)
    points = sorted(bounds)
    w_starts = [e.start for e in windows]
    a_starts = [e.start for e in afk] if afk is not None else []
    web_starts = {name: [e.start for e in events] for name, events in web.items()}
    runs: list[list[Any]] = []  # [start, end, key]
    for a, b in itertools.pairwise(points):
        window = _covering(windows, w_starts, a)
        if window is None:
            continue
        if afk is not None:
            status = _covering(afk, a_starts, a)
            if status is None or status.data.get("status") != "not-afk":
                continue
        app = str(window.data.get("app", ""))
        url = ""
        for browser, events in web.items():
            tab = _covering(events, web_starts[browser], a)
            if tab is not None and _browser_matches(browser, app) and tab.data.get("url"):
                url = str(tab.data["url"])
                break
        key = (app, str(window.data.get("title", "")), url)
        if runs and runs[-1][1] == a and runs[-1][2] == key:
            runs[-1][1] = b
        else:
            runs.append([a, b, key])
    snapshots = []
    for run_start, run_end, (app, title, url) in runs:
        seen = Window(title, app, True, 1.0, 1.0, (url,) if url else ())
        t = run_start
        while t < run_end:
            taken = min(t + SNAPSHOT_MS, run_end)
            snapshots.append((build_snapshot([seen], taken, taken - t, privacy), taken))
            t = taken
    return snapshots

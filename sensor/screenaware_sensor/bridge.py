"""The ActivityWatch bridge: a local aw-server's buckets, cut into snapshots.

For people whose desktop has no source here (Windows, macOS, Wayland) but runs
ActivityWatch. Each pass reads, per ``aw-watcher-window_*`` bucket, the window events
after its cursor together with the afk bucket of the same host and the
``aw-watcher-web-*`` buckets; the focused window counts where the person was not afk,
a browser's window gets the tab's URL as its document, and the result is cut into
snapshots of at most 10 s. The cursor moves in the same transaction that queues the
snapshots, so each stretch of time is sent once. The newest event of a bucket is
still growing (heartbeats extend it): a pass goes only up to the end both the window
and the afk bucket have recorded, and the next pass continues from there.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from screenaware_sensor.queue import SnapshotQueue
from screenaware_sensor.snapshot import Privacy, Window, build_snapshot

log = logging.getLogger("screenaware_sensor.bridge")

DAY_MS = 86_400_000
SNAPSHOT_MS = 10_000  # the API's longest snapshot
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Browsers whose window a web bucket's name stands for (aw-watcher-web-<browser>).
BROWSER_APPS = {"chrome": ("chrome", "chromium"), "firefox": ("firefox",)}


class BridgeError(Exception):
    """aw-server cannot be read now."""


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


class AwClient:
    """Reads aw-server's REST API (``/api/0``).

    Args:
        url: e.g. ``http://127.0.0.1:5600``.
        timeout: seconds per request.
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        # http(s) only: the settings refuse every other scheme.
        request = urllib.request.Request(self.url + "/api/0" + path + query)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            err.close()
            raise BridgeError(f"aw-server answered {err.code} for {path}") from None
        except (OSError, ValueError) as exc:
            raise BridgeError(f"aw-server unreachable at {self.url}: {exc}") from None

    def buckets(self) -> dict[str, dict[str, Any]]:
        """Every bucket by id."""
        found = self._get("/buckets/")
        return found if isinstance(found, dict) else {}

    def events(
        self, bucket: str, start: int | None = None, end: int | None = None, limit: int = -1
    ) -> list[Event]:
        """The bucket's events overlapping ``[start, end]``, oldest first."""
        params = {"limit": str(limit)}
        if start is not None:
            params["start"] = to_iso(start)
        if end is not None:
            params["end"] = to_iso(end)
        raw = self._get(f"/buckets/{urllib.parse.quote(bucket, safe='')}/events", params)
        events = []
        for item in raw if isinstance(raw, list) else ():
            begin = to_ms(item["timestamp"])
            length = round(float(item.get("duration", 0)) * 1000)
            if length > 0:
                events.append(Event(begin, begin + length, item.get("data") or {}))
        events.sort(key=lambda e: e.start)
        return events


def _kind(bucket_id: str, info: Mapping[str, Any]) -> str:
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


def bridge_pass(
    aw: AwClient, queue: SnapshotQueue, now_ms: int, privacy: Privacy, first_days: float
) -> int:
    """Queue everything final since each window bucket's cursor; the snapshots queued.

    Args:
        aw: the aw-server client.
        queue: the sensor's queue (it also keeps the cursors).
        now_ms: now, Unix milliseconds.
        privacy: the filters.
        first_days: how far back a bucket seen for the first time is read.

    Raises:
        BridgeError: aw-server cannot be read.
    """
    buckets = aw.buckets()
    kinds = {bid: _kind(bid, info) for bid, info in buckets.items()}
    webs = sorted(b for b, k in kinds.items() if k == "web")
    queued = 0
    for window_id in sorted(b for b, k in kinds.items() if k == "window"):
        host = buckets[window_id].get("hostname")
        afk_ids = [b for b, k in kinds.items() if k == "afk" and buckets[b].get("hostname") == host]
        afk_id = afk_ids[0] if afk_ids else None
        cursor_name = f"aw-cursor:{window_id}"
        stored = queue.meta(cursor_name)
        cursor = int(stored) if stored else now_ms - int(first_days * DAY_MS)
        # Final: what both buckets have recorded; their newest events may still grow.
        newest = aw.events(window_id, limit=1)
        if not newest:
            continue
        final = min(now_ms, newest[-1].end)
        if afk_id is not None:
            newest_afk = aw.events(afk_id, limit=1)
            final = min(final, newest_afk[-1].end if newest_afk else cursor)
        while cursor < final:
            step_end = min(final, cursor + DAY_MS)  # a day per request keeps memory bounded
            windows = aw.events(window_id, cursor, step_end)
            afk = aw.events(afk_id, cursor, step_end) if afk_id is not None else None
            web = {b.removeprefix("aw-watcher-web-").split("_")[0]: aw.events(b, cursor, step_end)
                   for b in webs}  # fmt: skip
            snapshots = cut(windows, afk, web, cursor, step_end, privacy)
            queue.put_many(snapshots, meta={cursor_name: str(step_end)})
            queued += len(snapshots)
            cursor = step_end
    if queued:
        log.info("bridge: queued %d snapshots from ActivityWatch", queued)
    return queued

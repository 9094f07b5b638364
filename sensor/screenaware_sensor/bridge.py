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

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from screenaware_sensor.activitywatch import (
    DAY_MS,
    Event,
    browser_of,
    bucket_kind,
    cut,
    event_of,
    to_iso,
)
from screenaware_sensor.queue import SnapshotQueue
from screenaware_sensor.snapshot import Privacy

log = logging.getLogger("screenaware_sensor.bridge")

__all__ = ["AwClient", "BridgeError", "Event", "bridge_pass", "cut"]


class BridgeError(Exception):
    """aw-server cannot be read now."""


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
            event = event_of(item)
            if event is not None:
                events.append(event)
        events.sort(key=lambda e: e.start)
        return events


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
    kinds = {bid: bucket_kind(bid, info) for bid, info in buckets.items()}
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
            web = {browser_of(b): aw.events(b, cursor, step_end) for b in webs}
            snapshots = cut(windows, afk, web, cursor, step_end, privacy)
            queue.put_many(snapshots, meta={cursor_name: str(step_end)})
            queued += len(snapshots)
            cursor = step_end
    if queued:
        log.info("bridge: queued %d snapshots from ActivityWatch", queued)
    return queued

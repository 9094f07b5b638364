"""The sensor's loop: a snapshot every interval into the queue, uploads beside it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from screenaware_sensor.bridge import AwClient, BridgeError, bridge_pass
from screenaware_sensor.config import Settings
from screenaware_sensor.queue import SnapshotQueue
from screenaware_sensor.snapshot import Privacy, build_snapshot
from screenaware_sensor.source import SourceError, WindowSource
from screenaware_sensor.upload import Backoff, Client, Status, deliver

log = logging.getLogger("screenaware_sensor")

EX_OK = 0
EX_USAGE = 2
EX_TEMPFAIL = 75
BEAT_PERIOD = 60.0  # seconds between two Heartbeat beats, as the heartbeat clients do


class Sensor:
    """Takes snapshots from a window source and delivers the queue.

    Args:
        settings: the validated settings.
        open_source: opens the window source (again after it was lost).
        clock: wall-clock seconds (time.time).
    """

    def __init__(
        self,
        settings: Settings,
        open_source: Callable[[], WindowSource],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.open_source = open_source
        self.clock = clock
        self.privacy = Privacy(settings.exclude_title, settings.exclude_app)
        self.source: WindowSource | None = None
        self.interval_ms = max(1, round(settings.interval * 1000))
        # Whether the last snapshot saw the person at the screen (beats need that).
        self.active = False
        self.snapshot_taken = threading.Event()
        self.upload_failed = False

    def _queue(self) -> SnapshotQueue:
        return SnapshotQueue(self.settings.queue, self.settings.queue_capacity)

    def _client(self) -> Client:
        return Client(self.settings.server, self.settings.key)

    def take(self, queue: SnapshotQueue) -> bool:
        """Take one snapshot into the queue; False if the screen could not be read.

        The snapshot covers the interval before now, but never the time of the previous
        snapshot (a late tick or a restart must not count a second twice).
        """
        taken_ms = int(self.clock() * 1000)
        last = queue.last_taken_ms()
        start = taken_ms - self.interval_ms
        if last is not None and start < last <= taken_ms:
            start = last
        if taken_ms - start < 1:
            return True  # nothing new to cover
        try:
            if self.source is None:
                self.source = self.open_source()
            idle = self.source.idle_seconds()
            away = idle is not None and idle >= self.settings.idle
            windows = None if away else self.source.windows()
        except SourceError as exc:
            log.error("%s", exc)
            if self.source is not None:
                self.source.close()
            self.source = None
            self.active = False
            return False
        queue.put(build_snapshot(windows, taken_ms, taken_ms - start, self.privacy), taken_ms)
        self.active = windows is not None
        self.snapshot_taken.set()
        return True

    def collect(self, queue: SnapshotQueue) -> bool:
        """One snapshot from the screen, or one bridge pass; False if the source failed."""
        if not self.settings.from_activitywatch:
            return self.take(queue)
        try:
            bridge_pass(
                AwClient(self.settings.from_activitywatch),
                queue,
                int(self.clock() * 1000),
                self.privacy,
                self.settings.queue_days,
            )
        except BridgeError as exc:
            log.error("%s", exc)
            return False
        self.snapshot_taken.set()  # beats need a screen source: the bridge sends none
        return True

    def beat(self) -> bool:
        """One ``POST /api/beat`` with the device token, if the person is at the screen."""
        if not self.settings.beat_token or not self.active:
            return False
        client = Client(self.settings.beat_server or self.settings.server, "", timeout=15)
        try:
            # The Heartbeat API takes the raw device token, no "Bearer".
            resp = client.post("/api/beat", b"", authorization=self.settings.beat_token)
        except OSError as exc:
            log.info("beat failed: %s", exc)
            return False
        if resp.status != 200:
            log.warning("beat refused: %d %s", resp.status, resp.text[:200])
            return False
        return True

    def run_once(self) -> int:
        """One snapshot, deliver everything queued; the exit code (0, 75 or 2)."""
        queue = self._queue()
        try:
            took = self.collect(queue)
            self.beat()  # a failed beat is presence missed, not data lost: no exit code
            outcome = deliver(queue, self._client())
        finally:
            queue.close()
            if self.source is not None:
                self.source.close()
        if outcome.status is Status.REFUSED:
            log.error("refused: %s", outcome.message)
            return EX_USAGE
        if outcome.status is Status.UNREACHABLE:
            log.warning("server unreachable, %d snapshots stay queued", len(self._queue()))
            return EX_TEMPFAIL
        log.info("delivered %d snapshots", outcome.sent)
        return EX_OK if took else EX_TEMPFAIL

    def run_forever(self, stop: threading.Event) -> int:
        """Snapshots every interval until ``stop`` is set; uploads run in a thread."""
        wake = threading.Event()
        uploader = threading.Thread(
            target=self._upload_loop, args=(stop, wake), name="upload", daemon=True
        )
        uploader.start()
        beater = None
        if self.settings.beat_token:
            beater = threading.Thread(
                target=self._beat_loop, args=(stop,), name="beat", daemon=True
            )
            beater.start()
        queue = self._queue()
        try:
            next_tick = time.monotonic()
            while not stop.is_set():
                self.collect(queue)
                wake.set()
                next_tick += self.settings.interval
                now = time.monotonic()
                if next_tick < now:  # suspended or too slow: start over from now
                    next_tick = now + self.settings.interval
                stop.wait(next_tick - now)
        finally:
            queue.close()
            if self.source is not None:
                self.source.close()
            wake.set()
            self.snapshot_taken.set()
            uploader.join(timeout=35)
            if beater is not None:
                beater.join(timeout=20)
        return 1 if self.upload_failed else EX_OK

    def _beat_loop(self, stop: threading.Event) -> None:
        self.snapshot_taken.wait()  # the first snapshot tells whether anyone is there
        while not stop.is_set():
            self.beat()
            stop.wait(BEAT_PERIOD)

    def _upload_loop(self, stop: threading.Event, wake: threading.Event) -> None:
        queue = self._queue()
        client = self._client()
        backoff = Backoff()
        retry = False
        try:
            while not stop.is_set():
                if not retry:  # delivered: wait for the next snapshot
                    wake.wait()
                wake.clear()
                if stop.is_set():
                    break
                outcome = deliver(queue, client, should_stop=stop.is_set)
                retry = outcome.status is not Status.DELIVERED
                if not retry:
                    backoff.success()
                    continue
                # Failed: try again once the back-off (or the server's Retry-After) is
                # over, not only at the next snapshot.
                delay = backoff.failure(outcome.retry_after)
                if outcome.status is Status.REFUSED:
                    log.error("upload refused (%s); snapshots stay queued", outcome.message)
                log.info("next upload attempt in %.1f s (%d queued)", delay, len(queue))
                stop.wait(delay)
        except Exception:
            log.exception("upload thread failed")
            self.upload_failed = True
            stop.set()
            raise
        finally:
            queue.close()

"""``screenaware-sensor``: the command line."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from screenaware_sensor.config import ConfigError, Settings, load_settings
from screenaware_sensor.runner import EX_TEMPFAIL, EX_USAGE, Sensor
from screenaware_sensor.source import SourceError, WindowSource

log = logging.getLogger("screenaware_sensor")


def open_source(environ: Mapping[str, str]) -> WindowSource:
    """The window source of this desktop (X11; elsewhere, use the ActivityWatch bridge)."""
    if not environ.get("DISPLAY"):
        raise SourceError(
            "no X display ($DISPLAY is not set); on Windows, macOS and Wayland-only "
            "desktops use ActivityWatch and the sensor's bridge instead"
        )
    from screenaware_sensor.x11 import X11Source  # python-xlib only where it is used

    return X11Source(environ["DISPLAY"])


def _lock(queue: Path) -> int | None:
    """Hold an exclusive lock beside the queue file: one sensor per queue."""
    queue.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{queue}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the sensor; the exit code (0 delivered, 75 try again later, 2 usage or refused key)."""
    env = os.environ if environ is None else environ
    try:
        settings: Settings = load_settings(sys.argv[1:] if argv is None else argv, env)
    except ConfigError as exc:
        print(f"screenaware-sensor: error: {exc}", file=sys.stderr)
        return EX_USAGE
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for warning in settings.warnings:
        log.warning("%s", warning)
    try:
        lock = _lock(settings.queue)
    except OSError as exc:
        print(f"screenaware-sensor: error: queue {settings.queue}: {exc}", file=sys.stderr)
        return EX_USAGE
    if lock is None:
        log.error("another sensor is using the queue %s", settings.queue)
        return EX_TEMPFAIL
    sensor = Sensor(settings, lambda: open_source(env))
    try:
        if settings.once:
            return sensor.run_once()
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log.info("sensor started: %s every %g s, queue %s", settings.server, settings.interval,
                 settings.queue)  # fmt: skip
        return sensor.run_forever(stop)
    except sqlite3.Error as exc:
        log.error("queue %s: %s", settings.queue, exc)
        return EX_USAGE
    finally:
        os.close(lock)

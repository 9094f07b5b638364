"""gunicorn config scripts/test gives every gunicorn it starts (GUNICORN_CMD_ARGS).

A uvicorn worker stops on SIGTERM by finishing its requests and then raising the
signal again with the default action, so it dies without running ``atexit``, where
coverage writes its data: the worker's lines would go uncounted. After the worker
has set up its signals, this installs a SIGTERM/SIGINT handler that writes the
coverage data first and then dies of the signal as before.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

import coverage


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: runs in each worker after its signal set-up, before serving."""
    cov = coverage.Coverage.current()
    if cov is None:
        return

    def save_then_die(signum: int, frame: FrameType | None) -> None:
        cov.stop()
        cov.save()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, save_then_die)

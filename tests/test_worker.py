"""The gunicorn worker class, loaded by gunicorn's own application machinery."""

from __future__ import annotations

import gc
import os
import signal
import time
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from screenaware.config import Config
from screenaware.worker import Worker
from tests.service import run_service


async def _asgi(scope: Any, receive: Any, send: Any) -> None:
    """A do-nothing ASGI app: the worker is under test, not the service."""


class _Application(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    def load_config(self) -> None:
        """gunicorn's defaults."""

    def load(self) -> Any:
        return _asgi


def test_loading_the_app_freezes_what_is_alive_out_of_the_collectors_sight() -> None:
    application = _Application()
    worker = Worker(0, os.getppid(), [], application, 30, application.cfg, Logger(application.cfg))
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        worker.load_wsgi()
        assert worker.wsgi is _asgi
        # The objects alive when the app was loaded (this test's among them).
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
    assert worker.cfg.access_log_format  # gunicorn's configuration reached the worker
    assert Worker.CONFIG_KWARGS["access_log"] is False


def test_a_quick_shutdown_of_the_master_alone_stops_the_workers_cleanly(
    config: Config, tmp_path: Path
) -> None:
    # SIGINT to the master only (``kill -INT``, not Ctrl-C to the process group):
    # gunicorn sends its workers SIGQUIT. They must finish their lifespan (the write
    # queues' last flush) and exit, not wait for the master's SIGKILL.
    with run_service(config, tmp_path) as service:
        pids = service.worker_pids()
        # Each worker's loop is running (a worker still starting dies of SIGQUIT's
        # default action, as it would on main, which is not what this tests).
        deadline = time.monotonic() + 60
        while not all(
            f"[{pid}] [INFO] Application startup complete." in service.log.read_text()
            for pid in pids
        ):
            assert time.monotonic() < deadline, service.log.read_text()[-2000:]
            time.sleep(0.1)
        service.proc.send_signal(signal.SIGINT)
        assert service.proc.wait(60) == 0
        log = service.log.read_text()
    assert "SIGKILL" not in log, log[-2000:]
    for pid in pids:
        assert f"[{pid}] [INFO] Application shutdown complete." in log, log[-2000:]
        assert not Path(f"/proc/{pid}").exists()

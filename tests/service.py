"""Run the real service (gunicorn + uvicorn workers) as a subprocess."""

from __future__ import annotations

import datetime as dt
import os
import resource
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from screenaware.config import Config
from screenaware.storage.localservers import free_port, gunicorn_argv, worker_pids
from screenaware.web.metrics import prepare_multiprocess_dir


def clear_of_midnight() -> dt.datetime:
    """10:00 UTC yesterday: in the past, and hours from a UTC midnight.

    Streams are sessionised per day and end at midnight, so a test that expects one
    stream from "an hour ago" fails when it runs just after midnight (a CI run did).
    """
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=1) + dt.timedelta(hours=10)


@dataclass
class Service:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def worker_pids(self) -> list[int]:
        return worker_pids(self.proc.pid)


@contextmanager
def run_service(
    config: Config,
    log_dir: Path,
    workers: int = 2,
    port: int | None = None,
    gunicorn_args: Sequence[str] = (),
    scheme: str = "http",
    ca: Path | None = None,
    max_open_files: int | None = None,
) -> Iterator[Service]:
    """Start gunicorn serving ``config`` (on ``port``, else a free one); stop it afterwards.

    ``gunicorn_args`` are added to its command line (as ``screenaware serve`` passes
    its extra arguments). ``scheme`` "https" with ``ca``, the bundle that signed the
    ``--certfile`` among them, for a service serving TLS itself. ``max_open_files``:
    gunicorn's RLIMIT_NOFILE (its workers inherit it).
    """

    def limit() -> None:
        if max_open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))

    port = port or free_port()
    env = {
        **os.environ,
        **config.as_environ(),
        "SCREENAWARE_WORKERS": str(workers),
        **prepare_multiprocess_dir(log_dir / f"metrics-{port}"),
    }
    log = log_dir / f"gunicorn-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                *gunicorn_argv("screenaware.asgi:app", workers=workers, bind=f"127.0.0.1:{port}"),
                *gunicorn_args,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=limit if max_open_files is not None else None,
        )
    service = Service(f"{scheme}://127.0.0.1:{port}", proc, log)
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {log.read_text()[-2000:]}")
            try:
                health = httpx.get(service.url + "/.well-known/health", timeout=2, verify=verify)
                if health.status_code == 200:
                    # Every worker must be up, not just the first.
                    if len(service.worker_pids()) == workers:
                        break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield service
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

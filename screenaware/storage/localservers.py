"""Start and stop a local ``influxd`` and ``redis-server`` with the project's config files.

Used by ``screenaware services`` (and so ``scripts/services`` and ``scripts/run``)
and by the test fixtures, which start their own pair on free ports in a temp dir.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template

LOG = logging.getLogger(__name__)

CONF_DIR = Path(__file__).parent.parent / "conf"


def gunicorn_argv(
    app: str, *, workers: int, bind: str, control_socket: str | None = None
) -> list[str]:
    """The gunicorn command line of the service (also used for the bench baseline).

    Args:
        app: the ASGI app as ``module:attribute``.
        workers: worker processes.
        bind: ``HOST:PORT``.
        control_socket: path of gunicorn's control socket; None disables it, which
            lets several instances run at once (tests beside a running service).
    """
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
    argv = [
        gunicorn,
        app,
        "--worker-class",
        "screenaware.worker.Worker",
        "--workers",
        str(workers),
        "--bind",
        bind,
        "--graceful-timeout",
        "10",
    ]
    if control_socket is None:
        argv.append("--no-control-socket")
    else:
        argv += ["--control-socket", control_socket]
    return argv


class ServiceError(RuntimeError):
    """A local server could not be started or did not answer."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def host_port(url: str, default_port: int) -> tuple[str, int]:
    """Host and port of a URL."""
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def influx_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether an InfluxDB answers ``/ping`` at ``url``."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/ping", timeout=timeout) as resp:  # noqa: S310
            return bool(resp.status == 204)
    except OSError:
        return False


def redis_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis answers PING at ``host:port`` (NOAUTH counts as answering)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def _wait(check: object, what: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what} exited with status {proc.returncode}")
        time.sleep(0.1)
    raise ServiceError(f"{what} did not answer within {timeout:.0f} s")


def _binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        raise ServiceError(f"{name} is not installed (run scripts/setup)")
    return path


def _write_conf(template: str, target: Path, **values: object) -> Path:
    text = Template((CONF_DIR / template).read_text()).substitute(values)
    target.write_text(text)
    return target


@dataclass
class Server:
    """A started server process."""

    name: str
    proc: subprocess.Popen[bytes]
    pidfile: Path | None = None

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate it and wait (kill after ``timeout``)."""
        stop_pid(self.proc.pid, timeout, self.proc)
        if self.pidfile is not None:
            self.pidfile.unlink(missing_ok=True)


def stop_pid(pid: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM a process, then SIGKILL if it is still there after ``timeout``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait()


def alive(pid: int) -> bool:
    """Whether a process still runs (a zombie does not; ours gets reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        pass  # not our child: only /proc tells a zombie from a live process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def worker_pids(master: int) -> list[int]:
    """The child processes of ``master`` (gunicorn's workers), from /proc."""
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(p) for p in children.read_text().split()]


def start_influxd(
    data_dir: Path,
    port: int,
    host: str = "127.0.0.1",
    *,
    detach: bool = False,
    timeout: float = 60,
    auth: bool = False,
) -> Server:
    """Start ``influxd`` with data under ``data_dir``; returns once it answers.

    Args:
        data_dir: where its data, configuration and log go.
        port: its HTTP port.
        host: its HTTP address.
        detach: in its own session (survives the caller's Ctrl-C).
        timeout: seconds to wait for its ``/ping``.
        auth: HTTP authentication on (InfluxDB lets the first admin be created without).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = _write_conf(
        "influxdb.conf.tmpl",
        data_dir / "influxdb.conf",
        data_dir=data_dir,
        host=host,
        port=port,
        rpc_port=free_port(),
        auth_enabled="true" if auth else "false",
    )
    log = open(data_dir / "influxd.log", "ab")
    proc = subprocess.Popen(
        [_binary("influxd"), "-config", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=detach,
    )
    log.close()
    url = f"http://{host}:{port}"
    try:
        _wait(lambda: influx_answers(url), "influxd", proc, timeout)
    except ServiceError:
        stop_pid(proc.pid, 5, proc)
        raise
    return Server("influxd", proc)


def start_redis(
    data_dir: Path, port: int, host: str = "127.0.0.1", *, detach: bool = False, timeout: float = 30
) -> Server:
    """Start ``redis-server`` (AOF on) with data under ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = _write_conf(
        "redis.conf.tmpl", data_dir / "redis.conf", data_dir=data_dir, host=host, port=port
    )
    proc = subprocess.Popen(
        [_binary("redis-server"), str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=detach,
    )
    try:
        _wait(lambda: redis_answers(host, port), "redis-server", proc, timeout)
    except ServiceError:
        stop_pid(proc.pid, 5, proc)
        raise
    return Server("redis-server", proc)

"""``scripts/run`` as a new user runs it: set-up, local databases, gunicorn, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from screenaware.storage.localservers import alive, free_port, influx_answers, redis_answers

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.e2e
def test_scripts_run_serves_and_ctrl_c_stops_everything_it_started(tmp_path: Path) -> None:
    influx_port, redis_port, port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCREENAWARE_")}
    env.update(
        SCREENAWARE_DATA_DIR=str(tmp_path / "var"),
        SCREENAWARE_INFLUX_URL=f"http://127.0.0.1:{influx_port}",
        SCREENAWARE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        SCREENAWARE_BIND=f"127.0.0.1:{port}",
        SCREENAWARE_SECRET_KEY="run-script-secret",
    )
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        # Its own process group, like a shell's foreground job: Ctrl-C signals the group.
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "run")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pidfiles = [tmp_path / "var" / "run" / f"{name}.pid" for name in ("influxd", "redis-server")]
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/.well-known/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        pids = [int(p.read_text()) for p in pidfiles]
        assert all(alive(pid) for pid in pids)
        token = httpx.post(
            f"{url}/api/devices",
            json={"name": "Laptop"},
            headers={"Authorization": "run-script-secret"},
        ).json()["token"]
        assert httpx.post(f"{url}/api/beat", headers={"Authorization": token}).status_code == 200
        assert httpx.get(f"{url}/api/stats").json()["total_beats"] == 1

        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        text = log.read_text()
        assert "influxd: stopped" in text
        assert "redis-server: stopped" in text
        assert not any(alive(pid) for pid in pids)
        assert not any(p.exists() for p in pidfiles)
        assert not influx_answers(env["SCREENAWARE_INFLUX_URL"], timeout=0.5)
        assert not redis_answers("127.0.0.1", redis_port)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

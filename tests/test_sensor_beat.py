"""The sensor's Heartbeat beats (--beat-token) and its systemd user unit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import screenaware_sensor
from screenaware.config import Config
from tests.conftest import SECRET_KEY
from tests.service import Service, run_service
from tests.xdesktop import Desktop, x_desktop

pytestmark = pytest.mark.e2e

SENSOR = Path(sys.executable).parent / "screenaware-sensor"
UNIT = Path(screenaware_sensor.__file__).parent / "screenaware-sensor.service"


@pytest.fixture
def service(config: Config, tmp_path: Path) -> Iterator[Service]:
    with run_service(config, tmp_path, workers=2) as svc:
        yield svc


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    with x_desktop(tmp_path / "x") as d:
        yield d


def total_beats(url: str) -> int:
    return int(httpx.get(url + "/api/stats", timeout=10).json()["total_beats"])


def run_for(seconds: float, argv: list[str], display: str, log: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCREENAWARE_SENSOR_")}
    env["DISPLAY"] = display
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        try:
            time.sleep(seconds)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=40) == 0, log.read_text()


def test_beats_while_active_once_a_minute_none_while_idle(
    service: Service, desktop: Desktop, tmp_path: Path
) -> None:
    device = httpx.post(
        service.url + "/api/devices", json={"name": "Desk"}, headers={"Authorization": SECRET_KEY}
    )
    assert device.status_code == 200, device.text
    token = device.json()["token"]
    desktop.xterm("work")
    base = [str(SENSOR), "--server", service.url, "--key", "unused", "--interval", "1",
            "--beat-token", token, "--queue", str(tmp_path / "queue.sqlite3")]  # fmt: skip
    log = tmp_path / "sensor.log"

    desktop.xdotool("mousemove", "10", "10")
    run_for(4, [*base, "--idle", "3600"], desktop.display, log)
    # Four snapshots, one beat: beats go once a minute, not once a snapshot.
    assert total_beats(service.url) == 1, log.read_text()

    time.sleep(1.5)  # no input for longer than --idle 1: away
    run_for(3, [*base, "--idle", "1"], desktop.display, log)
    assert total_beats(service.url) == 1, log.read_text()

    desktop.xdotool("mousemove", "20", "20")
    env = {**os.environ, "DISPLAY": desktop.display}
    done = subprocess.run([*base, "--once"], env=env, capture_output=True, text=True, timeout=60)
    assert total_beats(service.url) == 2, done.stderr
    stats = httpx.get(service.url + "/api/stats", timeout=10).json()
    assert [(d["name"], d["num_beats"]) for d in stats["devices"]] == [("Desk", 2)]


def test_the_systemd_user_unit_is_valid_and_runs_the_installed_sensor(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert "ExecStart=%h/.local/bin/screenaware-sensor\n" in text
    assert "RestartPreventExitStatus=2\n" in text  # a refused key is not retried forever
    # systemd's own checker, with the command pointed at the installed sensor.
    unit = tmp_path / "screenaware-sensor.service"
    unit.write_text(text.replace("%h/.local/bin/screenaware-sensor", str(SENSOR)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr

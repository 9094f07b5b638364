"""The sensor end to end: the installed screenaware-sensor, a real X desktop, the real service.

The key is a login token (the service takes it as a bearer token, as it will an API key).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from screenaware.activity.attribution import application_uuid
from screenaware.config import Config
from screenaware.storage.localservers import free_port, start_influxd
from screenaware_sensor.queue import SnapshotQueue
from screenaware_sensor.snapshot import Privacy, Window, build_snapshot
from screenaware_sensor.upload import Client
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.service import Service, run_service
from tests.xdesktop import Desktop, x_desktop

pytestmark = pytest.mark.e2e

SENSOR = Path(sys.executable).parent / "screenaware-sensor"
PROJECT = "6a1c4d2e-8f3b-4c5d-9e7f-0a1b2c3d4e5f"


@pytest.fixture
def service_config(config: Config) -> Config:
    return config.replace(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD)


@pytest.fixture
def service(service_config: Config, tmp_path: Path) -> Iterator[Service]:
    with run_service(service_config, tmp_path, workers=2) as svc:
        yield svc


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    with x_desktop(tmp_path / "x") as d:
        yield d


def user_token(url: str, email: str = "sensor@example.org") -> str:
    """An API key of a new user (created by the admin), as a person makes one for the
    sensor: ``POST /api/keys`` with the login token."""
    admin = httpx.post(
        url + "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert admin.status_code == 200, admin.text
    made = httpx.post(
        url + "/api/users",
        json={"email": email, "password": "user-password-1"},
        headers={"Authorization": f"Bearer {admin.json()['token']}"},
    )
    assert made.status_code == 201, made.text
    key = httpx.post(
        url + "/api/keys",
        json={"name": "sensor"},
        headers={"Authorization": f"Bearer {made.json()['token']}"},
    )
    assert key.status_code == 201, key.text
    return str(key.json()["key"])


def sensor(
    *args: str, display: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCREENAWARE_SENSOR_")}
    env.pop("DISPLAY", None)
    if display:
        env["DISPLAY"] = display
    return subprocess.run(
        [str(SENSOR), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def times(url: str, token: str, start: str, end: str, **params: str) -> dict[str, object]:
    resp = httpx.get(
        url + "/api/times",
        params={"start": start, "end": end, "tz": "UTC", **params},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def around_now() -> tuple[str, str]:
    now = dt.datetime.now(dt.UTC)
    fmt = "%Y-%m-%dT%H:%M:%S.000Z"
    return (now - dt.timedelta(hours=1)).strftime(fmt), (now + dt.timedelta(hours=1)).strftime(fmt)


def test_once_under_xvfb_lands_under_the_application_and_the_project(
    service: Service, desktop: Desktop, tmp_path: Path
) -> None:
    token = user_token(service.url)
    work = tmp_path / "Projects" / "Website"
    work.mkdir(parents=True)
    (work / "index.html").write_text("<p>hi</p>")
    made = httpx.post(
        service.url + "/api/projects",
        json={"uuid": PROJECT, "name": "Website", "localPaths": [str(tmp_path / "Projects")]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert made.status_code == 201, made.text
    editor = desktop.xterm("index.html - editor", cwd=work)
    desktop.xterm("scratch", cwd=tmp_path)
    desktop.activate(editor)
    queue = tmp_path / "queue.sqlite3"

    done = sensor(
        "--once", "--server", service.url, "--key", token, "--queue", str(queue),
        "--idle", "3600", display=desktop.display,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    start, end = around_now()
    by_app = times(service.url, token, start, end, groupBy="applicationUuid")
    assert by_app["sum"] == 10000
    assert {k: v["sum"] for k, v in by_app["grouped"].items()} == {  # type: ignore[attr-defined]
        application_uuid("xterm"): 10000
    }
    by_project = times(service.url, token, start, end, groupBy="projectUuid")
    assert {k: v["sum"] for k, v in by_project["grouped"].items()} == {PROJECT: 10000}  # type: ignore[attr-defined]
    assert len(SnapshotQueue(queue, 10)) == 0

    # A refused key: exit 2, and the snapshot stays queued for a corrected key.
    done = sensor(
        "--once", "--server", service.url, "--key", "not-a-valid-key", "--queue", str(queue),
        "--idle", "3600", display=desktop.display,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "401" in done.stderr
    assert len(SnapshotQueue(queue, 10)) == 1


def test_server_down_snapshots_queue_then_each_is_delivered_once(
    service_config: Config, desktop: Desktop, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    queue = tmp_path / "queue.sqlite3"
    desktop.activate(desktop.xterm("offline work"))
    args = ("--once", "--server", url, "--key", "k", "--queue", str(queue), "--interval", "1",
            "--idle", "3600")  # fmt: skip
    for _ in range(3):
        done = sensor(*args[:4], "placeholder", *args[5:], display=desktop.display)
        assert done.returncode == 75, done.stderr  # EX_TEMPFAIL: try again later
        time.sleep(1.1)  # so each snapshot covers its whole second
    assert len(SnapshotQueue(queue, 100)) == 3
    with run_service(service_config, tmp_path, workers=2, port=port) as svc:
        token = user_token(svc.url)
        done = sensor(*args[:4], token, *args[5:], display=desktop.display)
        assert done.returncode == 0, done.stderr
        start, end = around_now()
        # Three queued while the server was down, one taken now: 1 s each, once each.
        assert times(svc.url, token, start, end)["sum"] == 4000
        assert len(SnapshotQueue(queue, 100)) == 0
        # Nothing is sent twice: another run adds only its own second.
        time.sleep(1.1)
        assert sensor(*args[:4], token, *args[5:], display=desktop.display).returncode == 0
        assert times(svc.url, token, start, end)["sum"] == 5000


DAY = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)


def prefill(queue: Path, count: int) -> int:
    """``count`` back-to-back 10-second snapshots of one busy window; their total ms."""
    q = SnapshotQueue(queue, 10**6)
    window = Window("report.md - editor", "code", True, 0.5, 1.0, ("/home/a/report.md",))
    t0 = int(DAY.timestamp() * 1000)
    try:
        takes = [t0 + i * 10_000 for i in range(1, count + 1)]
        q.put_many([(build_snapshot([window], t, 10_000, Privacy()), t) for t in takes])
    finally:
        q.close()
    return count * 10_000


def day_times(url: str, token: str) -> int:
    total = times(url, token, "2026-11-30T00:00:00.000Z", "2026-11-30T23:59:59.999Z")["sum"]
    assert isinstance(total, int)
    return total


def test_a_resend_after_a_crash_between_upload_and_dequeue_counts_once(
    service: Service, tmp_path: Path
) -> None:
    token = user_token(service.url)
    queue = tmp_path / "queue.sqlite3"
    total = prefill(queue, 1500)
    # What a sensor killed right after the server's 200 leaves behind: the first batch
    # delivered but still queued.
    q = SnapshotQueue(queue, 10**6)
    batch = q.peek(1000, 10**9)
    body = ("[" + ",".join(item.body for item in batch) + "]").encode()
    assert Client(service.url, token).post("/api/snapshots", body).status == 200
    assert len(q) == 1500
    q.close()
    assert day_times(service.url, token) == 1000 * 10_000
    done = sensor("--once", "--server", service.url, "--key", token, "--queue", str(queue))
    assert done.returncode == 75, done.stderr  # no display, so no new snapshot
    assert "delivered 1500 snapshots" in done.stderr
    assert len(SnapshotQueue(queue, 10)) == 0
    assert day_times(service.url, token) == total


def queued(queue: Path) -> int:
    q = SnapshotQueue(queue, 10**6)
    try:
        return len(q)
    finally:
        q.close()


def test_kill_9_mid_upload_loses_nothing_and_counts_nothing_twice(
    service: Service, tmp_path: Path
) -> None:
    token = user_token(service.url)
    queue = tmp_path / "queue.sqlite3"
    count = 6000
    total = prefill(queue, count)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCREENAWARE_SENSOR_")}
    env.pop("DISPLAY", None)  # no window source: only the queue moves
    argv = [str(SENSOR), "--server", service.url, "--key", token, "--queue", str(queue)]
    kills = 0
    left = count
    log = open(tmp_path / "sensor.log", "wb")
    try:
        while left and kills < 3:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
            deadline = time.monotonic() + 60
            while queued(queue) == left:  # the first batch of this run is delivered
                assert proc.poll() is None, (tmp_path / "sensor.log").read_text()
                assert time.monotonic() < deadline, "nothing was delivered"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)  # most likely in the middle of the next batch
            proc.wait()
            kills += 1
            left = queued(queue)
        assert kills == 3 and 0 < left < count, "the sensor finished before three kills"
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while queued(queue):
            assert time.monotonic() < deadline, "the queue did not drain"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
    finally:
        log.close()
    assert day_times(service.url, token) == total
    activity = httpx.get(
        service.url + "/api/streams",
        params={"start": "2026-11-30T00:00:00.000Z", "end": "2026-11-30T23:59:59.999Z",
                "tz": "UTC", "expanded": "true"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )  # fmt: skip
    assert activity.status_code == 200, activity.text
    assert json.loads(activity.text)[0]["applications"][0]["durationMs"] == total


def attempts(log: str) -> list[float]:
    """Times (s) of the sensor's upload attempts the server answered 503, from its log."""
    found = []
    for line in log.splitlines():
        if "server busy (503" in line:
            stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            found.append(stamp.timestamp())
    return found


def test_503_retry_after_is_honoured_then_the_queue_drains(
    service_config: Config, tmp_path: Path
) -> None:
    # An InfluxDB of this test's own, to stop and start again: while it is down the
    # service answers the uploads 503 with Retry-After.
    port = free_port()
    influxd = start_influxd(tmp_path / "influx", port)
    config = service_config.replace(influx_url=f"http://127.0.0.1:{port}", retry_after=3)
    try:
        with run_service(config, tmp_path, workers=2) as svc:
            token = user_token(svc.url)
            queue = tmp_path / "queue.sqlite3"
            total = prefill(queue, 20)
            influxd.stop()
            env = {k: v for k, v in os.environ.items() if not k.startswith("SCREENAWARE_SENSOR_")}
            env.pop("DISPLAY", None)
            log_path = tmp_path / "sensor.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [str(SENSOR), "--server", svc.url, "--key", token, "--queue", str(queue)],
                    env=env,
                    stdout=log,
                    stderr=log,
                )
                try:
                    time.sleep(8)
                    tried = attempts(log_path.read_text())
                    # Back-off alone would have tried 4 times by now (0.5-1, 1-2, 2-4 s).
                    assert 2 <= len(tried) <= 3, log_path.read_text()
                    assert all(b - a >= 2.95 for a, b in itertools.pairwise(tried))
                    assert queued(queue) == 20
                    influxd = start_influxd(tmp_path / "influx", port)
                    deadline = time.monotonic() + 60
                    while queued(queue):
                        assert time.monotonic() < deadline, log_path.read_text()
                        time.sleep(0.1)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=40)
            assert day_times(svc.url, token) == total
    finally:
        influxd.stop()

"""The ActivityWatch bridge against the real aw-server, fed through the real aw-client.

aw-server and aw-client live in their own virtualenv (``.venv-activitywatch``, made by
``scripts/setup --test``): their pins must not meet the project's dependencies.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from screenaware.activity.attribution import application_uuid
from screenaware.config import Config
from screenaware.storage.localservers import free_port
from screenaware_sensor.queue import SnapshotQueue
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.service import Service, clear_of_midnight, run_service

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
AW_BIN = ROOT / ".venv-activitywatch" / "bin"
SENSOR = Path(sys.executable).parent / "screenaware-sensor"

# Runs under aw-client's own interpreter: {"ops": [...]} on stdin, results on stdout.
FEEDER = r"""
import json, sys
from datetime import datetime, timedelta, timezone
from aw_client import ActivityWatchClient
from aw_core.models import Event

spec = json.load(sys.stdin)
client = ActivityWatchClient("screenaware-test", testing=True, port=spec["port"])
out = []
for op in spec["ops"]:
    if op[0] == "bucket":
        client.create_bucket(op[1], event_type=op[2])
    elif op[0] == "events":
        client.insert_events(op[1], [
            Event(timestamp=datetime.fromisoformat(t), duration=timedelta(seconds=d), data=data)
            for t, d, data in op[2]
        ])
    elif op[0] == "heartbeat":
        _, bucket, t, data = op
        client.heartbeat(bucket, Event(timestamp=datetime.fromisoformat(t), data=data),
                         pulsetime=120, queued=False)
    elif op[0] == "query":
        start, end = (datetime.fromisoformat(x) for x in op[2])
        out.append(client.query(op[1], [(start, end)])[0])
print(json.dumps(out))
"""


@pytest.fixture
def aw_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    home = tmp_path / "aw-home"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    with open(tmp_path / "aw-server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(AW_BIN / "aw-server"), "--testing", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "aw-server.log").read_text()
            try:
                if httpx.get(url + "/api/0/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "aw-server did not start"
            time.sleep(0.1)
        yield url, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def feed(port: int, *ops: list[object]) -> list[object]:
    done = subprocess.run(
        [str(AW_BIN / "python"), "-c", FEEDER],
        input=json.dumps({"port": port, "ops": ops}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def service(config: Config, tmp_path: Path) -> Iterator[Service]:
    cfg = config.replace(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD)
    with run_service(cfg, tmp_path, workers=2) as svc:
        yield svc


def user_token(url: str) -> str:
    admin = httpx.post(
        url + "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    made = httpx.post(
        url + "/api/users",
        json={"email": "aw@example.org", "password": "user-password-1"},
        headers={"Authorization": f"Bearer {admin.json()['token']}"},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


def iso(t: dt.datetime) -> str:
    return t.isoformat()


QUERY = """
window = query_bucket("{window}");
afk = query_bucket("{afk}");
afk = filter_keyvals(afk, "status", ["not-afk"]);
events = filter_period_intersect(window, afk);
apps = merge_events_by_keys(events, ["app"]);
RETURN = {{"total": sum_durations(events), "apps": apps}};
"""


def aw_report(port: int, window: str, afk: str, span: list[str]) -> tuple[int, dict[str, int]]:
    """Not-afk window time as aw-server itself computes it: total and per app, in ms."""
    (report,) = feed(port, ["query", QUERY.format(window=window, afk=afk), span])
    apps = {e["data"]["app"]: round(e["duration"] * 1000) for e in report["apps"]}  # type: ignore[index]
    return round(report["total"] * 1000), apps  # type: ignore[index]


def test_bridge_sends_the_not_afk_window_time_aw_server_reports_once(
    aw_server: tuple[str, int], service: Service, tmp_path: Path
) -> None:
    aw_url, port = aw_server
    host = "testhost"
    window, afk, web = (
        f"aw-watcher-window_{host}",
        f"aw-watcher-afk_{host}",
        "aw-watcher-web-chrome",
    )
    t0 = clear_of_midnight()

    def at(seconds: float) -> str:
        return iso(t0 + dt.timedelta(seconds=seconds))

    code = {"app": "code", "title": "main.py - screenaware - Code"}
    chrome = {"app": "Google-chrome", "title": "ActivityWatch - Google Chrome"}
    feed(
        port,
        ["bucket", window, "currentwindow"],
        ["bucket", afk, "afkstatus"],
        ["bucket", web, "web.tab.current"],
        ["events", window, [[at(0), 95, code], [at(95), 105, chrome], [at(200), 100, code]]],
        ["events", afk, [[at(0), 150, {"status": "not-afk"}], [at(150), 30, {"status": "afk"}],
                         [at(180), 120, {"status": "not-afk"}]]],
        ["events", web, [[at(95), 105, {"url": "https://github.com/ActivityWatch",
                                        "title": "ActivityWatch", "audible": False,
                                        "incognito": False}]]],
    )  # fmt: skip
    span = [at(-3600), at(3600)]
    total, apps = aw_report(port, window, afk, span)
    assert (total, apps) == (270_000, {"code": 195_000, "Google-chrome": 75_000})

    token = user_token(service.url)
    queue = tmp_path / "queue.sqlite3"
    args = ["--once", "--from-activitywatch", aw_url, "--server", service.url, "--key", token,
            "--queue", str(queue)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCREENAWARE_SENSOR_")}
    env.pop("DISPLAY", None)  # the bridge needs no display

    def run() -> None:
        done = subprocess.run(
            [str(SENSOR), *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr

    def times() -> dict[str, int]:
        resp = httpx.get(
            service.url + "/api/times",
            params={"start": span[0], "end": span[1], "groupBy": "applicationUuid"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 200, resp.text
        return {k: v["sum"] for k, v in resp.json()["grouped"].items()}

    run()
    assert times() == {application_uuid("code"): 195_000, application_uuid("google-chrome"): 75_000}
    # The browser window carries the tab's URL, so the site is its base document.
    streams = httpx.get(
        service.url + "/api/streams",
        params={"start": span[0], "end": span[1], "expanded": "true"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    documents = {d["baseDocumentPath"] for s in streams for d in s["baseDocuments"]}
    assert "github.com" in documents

    # Run again with nothing new: nothing is sent twice.
    run()
    assert sum(times().values()) == 270_000

    # The newest events grow (heartbeats merge into them); only the new part is sent.
    feed(
        port,
        ["heartbeat", window, at(330), code],
        ["heartbeat", afk, at(330), {"status": "not-afk"}],
    )
    total, apps = aw_report(port, window, afk, span)
    assert (total, apps["code"]) == (300_000, 225_000)
    run()
    assert times() == {application_uuid("code"): 225_000, application_uuid("google-chrome"): 75_000}
    q = SnapshotQueue(queue, 10)
    assert len(q) == 0
    assert q.meta(f"aw-cursor:{window}") is not None
    q.close()


def test_bridge_unreachable_exits_75(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SENSOR), "--once", "--from-activitywatch", f"http://127.0.0.1:{free_port()}",
         "--server", f"http://127.0.0.1:{free_port()}", "--key", "k", "--queue",
         str(tmp_path / "q.sqlite3")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 75
    assert "aw-server unreachable" in done.stderr

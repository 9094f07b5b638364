"""Import of a WakaTime heartbeats data dump, built from the documented format."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from falcon import testing

from screenaware.activity.attribution import NONE
from screenaware.app import create_app
from screenaware.config import Config
from screenaware.portability import wakatime
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, FakeClock, InfluxHelper, bearer

BIN = str(Path(sys.executable).with_name("screenaware"))
T0 = dt.datetime(2023, 11, 13, 23, 50, tzinfo=dt.UTC).timestamp()
RANGE = {"start": "2023-11-13T00:00:00.000Z", "end": "2023-11-14T23:59:59.999Z", "tz": "UTC"}
SA = "5d4a1c7e-8f3b-4c2a-9e6d-1b0a2c3d4e5f"


def beat(offset: float, entity: str, project: str | None, kind: str = "file") -> dict[str, Any]:
    return {
        "id": f"beat-{offset}", "time": T0 + offset, "entity": entity, "type": kind,
        "category": "coding", "project": project, "language": "Python", "branch": "main",
        "is_write": False, "dependencies": [], "lines": 120, "lineno": 7, "cursorpos": 3,
        "user_agent_id": "ua-1", "machine_name_id": "m-1", "created_at": "2023-11-14T00:00:00Z",
    }  # fmt: skip


def dump() -> dict[str, Any]:
    """Two days (the first day's last heartbeats cross midnight UTC), heartbeats out
    of order within a day, unicode and Windows paths, a gap over the timeout, an app
    heartbeat, and a project that has no ScreenAware project."""
    first = [
        beat(60, "/home/ann/src/sa/ünïcode/café.py", "ScreenAware"),
        beat(0, "/home/ann/src/sa/a.py", "ScreenAware"),
        beat(120, "/home/ann/src/sa/ünïcode/café.py", "ScreenAware"),
    ]
    second = [
        beat(2030, "/tmp/notes.md", "misc"),
        beat(2000, "C:\\Users\\Ann\\sa\\main.py", "ScreenAware"),
        beat(2100, "Slack", "misc", kind="app"),
        beat(2105, "/tmp/notes.md", "misc"),
    ]
    return {
        "user": {"username": "ann"},
        "range": {"start": T0 - 3600, "end": T0 + 86_400},
        "days": [
            {"date": "2023-11-13", "heartbeats": first},
            {"date": "2023-11-14", "heartbeats": second},
        ],
    }


async def upload(api: Api, headers: dict[str, str], body: bytes) -> Any:
    return await api.client.simulate_post(
        "/api/import/wakatime", body=body, headers={**headers, "Content-Type": "application/json"}
    )


async def times(api: Api, headers: dict[str, str], group: str) -> dict[str, int]:
    result = await api.client.simulate_get(
        "/api/times", params={**RANGE, "groupBy": group}, headers=headers
    )
    assert result.status_code == 200, result.text
    return {k: v["sum"] for k, v in result.json["grouped"].items()}


async def test_heartbeats_cover_the_time_to_the_next_up_to_the_timeout(
    api: Api, influx_db: InfluxHelper
) -> None:
    user = await api.new_user("ann@example.org")
    made = await api.client.simulate_post(
        "/api/projects", json={"uuid": SA, "name": "screenaware"}, headers=user
    )
    assert made.status_code == 201
    result = await upload(api, user, orjson.dumps(dump()))
    assert result.status_code == 200, result.text
    summary = result.json
    # 0-60, 60-120, 120-1020 (the gap to 2000 is over 15 min), 2000-2030, 2030-2100,
    # 2100-2105; the last heartbeat covers nothing.
    assert summary["from"] == "2023-11-13T23:50:00.000Z"
    assert summary["to"] == "2023-11-14T00:25:05.000Z"
    assert summary["heartbeats"] == 7 and summary["projects"] == ["ScreenAware"]
    assert summary["snapshots"] == 6 + 6 + 90 + 3 + 7 + 1
    by_project = await times(api, user, "projectUuid")
    assert by_project == {SA: 1_050_000, NONE: 75_000}
    project = await api.client.simulate_get(f"/api/projects/{SA}", headers=user)
    assert project.json["keywords"] == ["ScreenAware"]
    apps = await times(api, user, "applicationUuid")
    assert sorted(apps.values()) == [5_000, 1_120_000]  # slack, and the editor
    subs = await api.client.simulate_get("/api/substreams", params={**RANGE}, headers=user)
    documents = {s["baseDocumentPath"] for s in subs.json}
    assert {"café.py", "main.py", "notes.md"} <= documents

    points = influx_db.count("activity")
    again = await upload(api, user, orjson.dumps(dump()))
    assert again.status_code == 200 and again.json == summary
    assert influx_db.count("activity") == points
    assert await times(api, user, "projectUuid") == by_project
    project = await api.client.simulate_get(f"/api/projects/{SA}", headers=user)
    assert project.json["keywords"] == ["ScreenAware"], "the keyword is added once"


async def test_one_heartbeat_covers_nothing(api: Api, influx_db: InfluxHelper) -> None:
    user = await api.new_user("ann@example.org")
    one = {"days": [{"date": "2023-11-13", "heartbeats": [beat(0, "/a.py", "x")]}]}
    result = await upload(api, user, orjson.dumps(one))
    assert result.status_code == 200, result.text
    assert result.json == {
        "snapshots": 0, "skipped": [], "from": None, "to": None, "heartbeats": 1, "projects": []
    }  # fmt: skip
    assert influx_db.count("activity") == 0


async def test_the_timeout_is_a_setting(identity_config: Config, clock: FakeClock) -> None:
    environ = {**identity_config.as_environ(), "SCREENAWARE_WAKATIME_TIMEOUT": "30"}
    cfg = Config.load(environ=environ)
    assert cfg.wakatime_timeout == 30
    async with testing.ASGIConductor(create_app(cfg, clock=clock)) as client:
        login = await client.simulate_post(
            "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        api = Api(client, bearer(login.json["token"]))
        user = await api.new_user("ann@example.org")
        result = await upload(api, user, orjson.dumps(dump()))
        assert result.status_code == 200, result.text
        # Each gap is cut to 30 s: 0-30, 60-90, 120-150, 2000-2030, 2030-2060, 2100-2105.
        assert sum((await times(api, user, "applicationUuid")).values()) == 155_000
    beats = wakatime.load(io.BytesIO(orjson.dumps(dump())), int(T0 * 1000) + 86_400_000)
    try:
        ms = sum(s["durationMs"] for s in wakatime.snapshots(beats, 30_000))
    finally:
        beats.close()
    assert ms == 155_000


async def test_malformed_dumps_store_nothing(api: Api, influx_db: InfluxHelper) -> None:
    user = await api.new_user("ann@example.org")

    def changed(field: str, value: Any) -> bytes:
        data = dump()
        data["days"][1]["heartbeats"][2][field] = value
        return orjson.dumps(data)

    def two_bad() -> bytes:
        data = dump()
        data["days"][1]["heartbeats"][2]["time"] = "later"
        data["days"][0]["heartbeats"][1]["entity"] = ["a.py"]
        return orjson.dumps(data)

    cases = {
        "the first of two": (two_bad(), "days[0].heartbeats[1].entity: Missing or not"),
        "truncated": (orjson.dumps(dump())[:-40], "file: "),
        "time": (changed("time", "yesterday"), "days[1].heartbeats[2].time: Missing or not"),
        "entity": (changed("entity", None), "days[1].heartbeats[2].entity: Missing"),
        "project": (changed("project", 7), "days[1].heartbeats[2].project: Not a string."),
        "long": (changed("entity", "x" * 5000), "days[1].heartbeats[2].entity: Longer"),
        "future": (changed("time", T0 + 10 * 86_400), "days[1].heartbeats[2].time: Before"),
        "days": (b'{"days": {"a": 1}}', "days: Not an array."),
        "no days": (b'{"range": {}}', "days: Missing."),
        "not an object": (b'"dump"', "file: Not a WakaTime dump"),
    }
    for name, (body, message) in cases.items():
        result = await upload(api, user, body)
        # The file's content is refused; the request itself fits the document.
        assert result.status_code == 422, (name, result.text)
        assert result.json["message"].startswith(message), (name, result.json)
        assert influx_db.count("activity") == 0, name


async def test_cli_import(api: Api, identity_config: Config, tmp_path: Path) -> None:
    user = await api.new_user("ann@example.org")
    file = tmp_path / "wakatime.json"
    file.write_bytes(orjson.dumps(dump()))
    env = {**os.environ, **identity_config.as_environ()}
    done = subprocess.run(
        [BIN, "import", "wakatime", str(file), "--user", "ann@example.org"],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["snapshots"] == 113
    assert b"import wakatime: 113/113 items" in done.stderr
    assert sum((await times(api, user, "projectUuid")).values()) == 1_125_000
    file.write_bytes(b'{"days": [{"heartbeats": [{"time": "soon"}]}]}')
    refused = subprocess.run(
        [BIN, "import", "wakatime", str(file), "--user", "ann@example.org"],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert b"days[0].heartbeats[0].time" in refused.stderr


async def test_an_import_over_live_data_follows_the_one_timeline_rule(api: Api) -> None:
    """Live snapshots inside the imported time: each millisecond counts once, and
    the outcome does not depend on which came first."""
    live = [
        {
            "timeTaken": dt.datetime.fromtimestamp(T0 + 15 + 10 * i, dt.UTC).isoformat(),
            "windows": [{"processName": "slack", "title": "chat", "isFocused": True}],
        }
        for i in range(6)
    ]  # 23:50:05 - 23:51:05, inside the import's first 17 minutes

    async def post_live(user: dict[str, str]) -> None:
        result = await api.client.simulate_post("/api/snapshots", json=live, headers=user)
        assert result.status_code in (200, 201), result.text

    first = await api.new_user("live-first@example.org")
    await post_live(first)
    assert (await upload(api, first, orjson.dumps(dump()))).status_code == 200
    second = await api.new_user("import-first@example.org")
    assert (await upload(api, second, orjson.dumps(dump()))).status_code == 200
    await post_live(second)
    apps = await times(api, first, "applicationUuid")
    assert sum(apps.values()) == 1_125_000, "the union: the live minute is not added"
    assert len(apps) == 2 and 0 < min(apps.values()) < 65_000
    assert await times(api, second, "applicationUuid") == apps


async def test_multipart_upload(api: Api) -> None:
    user = await api.new_user("ann@example.org")
    boundary = "waka-7"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="w.json"\r\n'
            "Content-Type: application/json\r\n\r\n"
        ).encode()
        + orjson.dumps(dump())
        + f"\r\n--{boundary}--\r\n".encode()
    )
    result = await api.client.simulate_post(
        "/api/import/wakatime",
        body=body,
        headers={**user, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert result.status_code == 200, result.text
    assert result.json["snapshots"] == 113

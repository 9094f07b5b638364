"""Export, restore and imports against real servers: two instances, each with its
own influxd and redis-server."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pty
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from falcon import testing

from screenaware.app import create_app
from screenaware.config import Config
from screenaware.storage.localservers import free_port, start_influxd, start_redis
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    SECRET_KEY,
    FakeClock,
    InfluxHelper,
    Servers,
    bearer,
)
from tests.service import run_service

UTC = dt.UTC
BIN = str(Path(sys.executable).with_name("screenaware"))
P1 = "0fcdd1ec-05f7-49cc-931f-530c2c2f085c"
P2 = "98254cc5-b623-43b6-8537-d9e0122cf975"
P3 = "fe79e96c-a8ff-4ead-90eb-2c799db17439"
P4 = "1b2a3c4d-0000-4000-8000-000000000004"
DAY = {"start": "2023-11-14T00:00:00.000Z", "end": "2023-11-14T23:59:59.999Z", "tz": "UTC"}


@dataclass
class Instance:
    client: testing.ASGIConductor
    admin: dict[str, str]
    influx: InfluxHelper
    redis: redis.Redis
    config: Config

    async def new_user(self, email: str) -> dict[str, str]:
        result = await self.client.simulate_post(
            "/api/users",
            json={"email": email, "password": "user-password-1"},
            headers=self.admin,
        )
        assert result.status_code == 201, result.text
        return bearer(result.json["token"])

    async def get(self, headers: dict[str, str], path: str, **params: Any) -> Any:
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
        result = await self.client.simulate_get(path, params=query, headers=headers)
        assert result.status_code == 200, result.text
        return result.json

    async def post(self, headers: dict[str, str], path: str, body: Any) -> Any:
        result = await self.client.simulate_post(path, json=body, headers=headers)
        assert result.status_code in (200, 201), result.text
        return result.json


@pytest.fixture(scope="module")
def other_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """A second influxd and redis-server: the instance a user moves to."""
    base = tmp_path_factory.mktemp("other")
    influx_port, redis_port = free_port(), free_port()
    influxd = start_influxd(base / "influxdb", influx_port)
    redis_server = start_redis(base / "redis", redis_port)
    yield Servers(
        f"http://127.0.0.1:{influx_port}",
        f"redis://127.0.0.1:{redis_port}/0",
        influxd,
        redis_server,
        base,
    )
    redis_server.stop()
    influxd.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2023, 11, 15, 12, 0, tzinfo=UTC).timestamp())


async def _instance(servers: Servers, tmp: Path, clock: FakeClock) -> AsyncIterator[Instance]:
    influx = InfluxHelper(servers.influx_url, "test_" + uuid.uuid4().hex[:12])
    client = redis.Redis.from_url(servers.redis_url, decode_responses=True)
    client.flushall()
    config = Config.load(
        environ={},
        influx_url=servers.influx_url,
        influx_db=influx.database,
        redis_url=servers.redis_url,
        secret_key=SECRET_KEY,
        data_dir=str(tmp),
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        import_max_line_bytes=64 * 1024,
        import_max_bytes=8 * 1024 * 1024,
        import_batch=7,  # small batches and pages, so the tests cross their edges
        export_page_rows=250,
    )
    try:
        async with testing.ASGIConductor(create_app(config, clock=clock)) as conductor:
            login = await conductor.simulate_post(
                "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            assert login.status_code == 200, login.text
            yield Instance(conductor, bearer(login.json["token"]), influx, client, config)
    finally:
        influx.drop()
        client.flushall()
        client.close()


@pytest.fixture
async def source(servers: Servers, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Instance]:
    async for instance in _instance(servers, tmp_path / "a", clock):
        yield instance


@pytest.fixture
async def target(
    other_servers: Servers, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Instance]:
    async for instance in _instance(other_servers, tmp_path / "b", clock):
        yield instance


def at(hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime(2023, 11, 14, hour, minute, second, tzinfo=UTC)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", ".000Z")


def snaps(
    start: dt.datetime, minutes: float, app: str, title: str, **window: Any
) -> list[dict[str, Any]]:
    out = []
    for i in range(int(minutes * 6)):
        end = start + dt.timedelta(seconds=10 * (i + 1))
        focused = {"processName": app, "title": title, "isFocused": True, **window}
        other = {"processName": "slack", "title": "chat", "visiblePercentage": 0.25}
        hidden = {"processName": "htop", "title": "", "screenPercentage": 0.1}
        out.append({"timeTaken": iso(end), "windows": [focused, other, hidden]})
    return out


async def fill(inst: Instance) -> dict[str, str]:
    """A user with nested projects, a task, a category, a day of activity with
    documents and tags, away time, and a correction."""
    user = await inst.new_user("ann@example.org")
    await inst.client.simulate_put(
        "/api/users/me", json={"timezone": "Europe/Berlin", "nameFirst": "Ann"}, headers=user
    )
    for body in (
        {"uuid": P1, "name": "influx", "keywords": ["influxdb"]},
        {"uuid": P2, "name": "sa", "keywords": ["screenaware"], "localPaths": ["/src/sa"]},
        {"uuid": P3, "name": "unruled"},
        {"uuid": P4, "name": "sa-web", "parentProject": P2, "keywords": ["frontend"]},
    ):
        await inst.post(user, "/api/projects", body)
    await inst.post(
        user, "/api/tasks", {"uuid": str(uuid.uuid4()), "title": "t", "projectUuid": P2}
    )
    await inst.post(user, "/api/categories", {"name": "reading", "applications": ["evince"]})
    doc = {"documents": [{"path": "/src/sa/main.py", "title": "main.py — ünïcode"}]}
    batch = (
        snaps(at(10, 0), 5, "code", "influxdb tuning", tags={"focus": 1.0})
        + snaps(at(10, 5), 3, "code", "editing", **doc)
        + snaps(at(10, 8), 2, "evince", "paper.pdf")
        + snaps(at(10, 10), 3, "chrome", "frontend PR")
        + [{"timeTaken": iso(at(10, 13, 10)), "windows": []}]  # away
        + snaps(at(10, 25), 5, "code", "influxdb tuning")
    )
    await inst.post(user, "/api/snapshots", batch[30:])
    await inst.post(user, "/api/snapshots", batch[:30])
    streams = await inst.get(user, "/api/streams", **DAY)
    target = next(s for s in streams if s["projectUuid"] == P4)
    result = await inst.client.simulate_put(
        f"/api/stream/{target['uuid']}/project", json={"projectUuid": P3}, headers=user
    )
    assert result.status_code == 200, result.text
    return user


def _no_user(value: Any) -> Any:
    """An answer without what names the user (its uuid differs between instances)."""
    if isinstance(value, dict):
        return {k: _no_user(v) for k, v in value.items() if k not in ("uuid", "userUuid", "id")}
    if isinstance(value, list):
        return [_no_user(v) for v in value]
    return value


async def answers(inst: Instance, user: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group in ("projectUuid", "categoryUuid", "applicationUuid"):
        out[f"times-{group}"] = await inst.get(
            user, "/api/times", **DAY, groupBy=group, resolution="hour"
        )
    out["streams"] = _no_user(await inst.get(user, "/api/streams", **DAY, expanded=True))
    out["substreams"] = _no_user(await inst.get(user, "/api/substreams", **DAY))
    out["projects"] = _no_user(await inst.get(user, "/api/projects"))
    out["tasks"] = sorted(_no_user(t)["title"] for t in await inst.get(user, "/api/tasks"))
    out["categories"] = await inst.get(user, "/api/categories")
    out["associations"] = await inst.get(user, f"/api/projects/{P3}/associations")
    me = await inst.get(user, "/api/users/me")
    out["me"] = (me["timezone"], me["nameFirst"])
    return out


async def export(inst: Instance, headers: dict[str, str], **params: str) -> bytes:
    result = await inst.client.simulate_get("/api/export", headers=headers, params=params)
    assert result.status_code == 200, result.text
    assert result.headers["content-type"].startswith("application/x-ndjson")
    return result.content


async def restore(inst: Instance, user: dict[str, str], body: bytes) -> testing.Result:
    return await inst.client.simulate_post(
        "/api/import/screenaware",
        body=body,
        headers={**user, "Content-Type": "application/x-ndjson"},
    )


async def test_export_restore_round_trip_into_another_instance(
    source: Instance, target: Instance
) -> None:
    ann = await fill(source)
    before = await answers(source, ann)
    assert before["associations"], "the correction taught something"
    assert before["times-projectUuid"]["sum"] > 0
    data = await export(source, ann)
    lines = [orjson.loads(line) for line in data.splitlines()]
    assert lines[0]["format"] == "screenaware-export" and lines[0]["version"] == 2
    kinds = [line.get("type") for line in lines[1:]]
    assert kinds.count("snapshot") == 18 * 6, "every snapshot with windows, once"
    assert kinds.count("project") == 4 and kinds.count("task") == 1
    assert kinds.count("correction") == 2 * 3 * 6
    assert "password" not in data.decode() and "scrypt" not in data.decode()
    snapshot = next(line for line in lines if line.get("type") == "snapshot")
    assert snapshot["windows"][0]["tags"] == {"focus": 1.0}

    bob = await target.new_user("bob@elsewhere.org")
    result = await restore(target, bob, data)
    assert result.status_code == 200, result.text
    summary = result.json
    assert summary["snapshots"] == 18 * 6 and summary["corrections"] == 36
    assert summary["from"] == "2023-11-14T10:00:00.000Z"
    after = await answers(target, bob)
    assert after == before

    # Twice changes nothing.
    points = target.influx.count("activity"), target.influx.count("window")
    again = await restore(target, bob, data)
    assert again.status_code == 200, again.text
    assert (target.influx.count("activity"), target.influx.count("window")) == points
    assert await answers(target, bob) == before

    # A correction made after the restore still wins over the restored ones.
    sums = await target.get(bob, "/api/times", **DAY, groupBy="projectUuid")
    assert sums["grouped"][P3]["sum"] == 180_000
    streams = await target.get(bob, "/api/streams", **DAY)
    moved = next(s for s in streams if s["projectUuid"] == P3)
    result = await target.client.simulate_put(
        f"/api/stream/{moved['uuid']}/project", json={"projectUuid": P1}, headers=bob
    )
    assert result.status_code == 200, result.text
    times = await target.get(bob, "/api/times", **DAY, groupBy="projectUuid")
    assert times["grouped"][P3]["sum"] == 0
    assert times["grouped"][P1]["sum"] == sums["grouped"][P1]["sum"] + 180_000

    # A later snapshot taking time from a corrected one: the same on both instances
    # (what it takes, it takes from the corrected project).
    dave = await target.new_user("dave@elsewhere.org")
    assert (await restore(target, dave, data)).status_code == 200
    late = [{"timeTaken": iso(at(10, 11, 15)), "windows": [{"processName": "vim", "title": "x"}]}]
    await source.post(ann, "/api/snapshots", late)
    await target.post(dave, "/api/snapshots", late)
    overlapped = await answers(source, ann)
    assert overlapped != before
    assert (
        overlapped["times-projectUuid"]["grouped"]["2023-11-14T10:00:00.000Z"]["grouped"][P3]["sum"]
        == 175_000
    )
    assert await answers(target, dave) == overlapped
    # Exported now (the overlap came after the correction), restored: the same.
    carl = await target.new_user("carl@elsewhere.org")
    assert (await restore(target, carl, await export(source, ann))).status_code == 200
    assert await answers(target, carl) == overlapped


async def test_export_of_others_only_for_admins(source: Instance) -> None:
    ann = await fill(source)
    eve = await source.new_user("eve@example.org")
    me = await source.get(ann, "/api/users/me")
    denied = await source.client.simulate_get(
        "/api/export", headers=eve, params={"user": me["uuid"]}
    )
    assert denied.status_code == 404
    by_admin = await export(source, source.admin, user=me["uuid"])
    own = await export(source, ann)
    assert by_admin.splitlines()[1:] == own.splitlines()[1:]
    assert len(own.splitlines()) > 100
    assert (await source.client.simulate_get("/api/export")).status_code == 401
    bad = await source.client.simulate_get(
        "/api/export", headers=source.admin, params={"user": "x"}
    )
    assert bad.status_code == 400


async def _stored(inst: Instance) -> tuple[int, int, list[str]]:
    keys = sorted(
        str(k) for k in inst.redis.keys("*") if ":tgen:" not in str(k) and ":rev:" not in str(k)
    )
    return inst.influx.count("activity"), inst.influx.count("window"), keys


async def test_malformed_files_are_refused_and_store_nothing(
    source: Instance, target: Instance
) -> None:
    ann = await fill(source)
    data = await export(source, ann)
    bob = await target.new_user("bob@elsewhere.org")
    before = await _stored(target)
    lines = data.splitlines(keepends=True)
    snapshot_at = next(i for i, line in enumerate(lines) if b'"snapshot"' in line)
    bad_type = orjson.loads(lines[snapshot_at])
    bad_type["durationMs"] = "ten seconds"
    bad_window = orjson.loads(lines[snapshot_at])
    bad_window["windows"][0]["isFocused"] = {"no": 1}
    project_at = next(i for i, line in enumerate(lines) if b'"project"' in line)
    orphan = orjson.loads(lines[project_at])
    orphan["parentProject"] = str(uuid.uuid4())
    task_at = next(i for i, line in enumerate(lines) if b'"task"' in line)
    lost = orjson.loads(lines[task_at])
    lost["projectUuid"] = str(uuid.uuid4())

    p2_at = next(i for i, line in enumerate(lines) if b'"project"' in line and P2.encode() in line
                 and b'"name":"sa"' in line)  # fmt: skip
    looped = orjson.loads(lines[p2_at])
    looped["parentProject"] = P4  # P4's parent is P2

    def replaced(at: int, item: Any) -> bytes:
        return b"".join([*lines[:at], orjson.dumps(item) + b"\n", *lines[at + 1 :]])

    def attributed(attribution: Any) -> bytes:
        item = orjson.loads(lines[snapshot_at])
        item["attribution"] = attribution
        return replaced(snapshot_at, item)

    key_line = orjson.dumps({"type": "apiKey", "createdAt": "2023-11-14T00:00:00.000Z"})
    future = orjson.loads(lines[snapshot_at])
    future["time"] = "2023-11-17T00:00:00.000Z"  # the clock says 2023-11-15 12:00
    cases = {
        "future": (replaced(snapshot_at, future), f"line {snapshot_at + 1}: time: More than"),
        "orphan": (replaced(project_at, orphan), f"line {project_at + 1}: parentProject"),
        "cycle": (replaced(p2_at, looped), "line "),
        "lost task": (replaced(task_at, lost), f"line {task_at + 1}: projectUuid"),
        "truncated": (data[: len(data) - 20], f"line {len(lines)}: file"),
        "wrong type": (
            b"".join(
                [*lines[:snapshot_at], orjson.dumps(bad_type) + b"\n", *lines[snapshot_at + 1 :]]
            ),
            f"line {snapshot_at + 1}: durationMs",
        ),
        "nested": (
            b"".join(
                [*lines[:snapshot_at], orjson.dumps(bad_window) + b"\n", *lines[snapshot_at + 1 :]]
            ),
            f"line {snapshot_at + 1}: windows.0.isFocused",
        ),
        "cut at a line end": (b"".join(lines[:-3]), f"line {len(lines) - 2}: end: Missing"),
        "no header": (b"".join(lines[1:]), "line 1: format"),
        "version": (b'{"format": "screenaware-export", "version": 9}\n', "line 1: version"),
        "unknown": (lines[0] + b'{"type": "secret"}\n', "line 2: type"),
        "after the end": (data + lines[1], f"line {len(lines) + 1}: type"),
        "wrong count": (
            b"".join(lines[:-1]) + b'{"type": "end", "items": 3}\n',
            f"line {len(lines)}: items",
        ),
        "long line": (
            lines[0] + b'{"type": "profile", "x": "' + b"a" * 100_000 + b'"}\n',
            "line 2: longer than",
        ),
        "not an object": (lines[0] + b"[1, 2]\n", "line 2: file"),
        "attribution": (attributed([P1]), f"line {snapshot_at + 1}: attribution: Not an"),
        "project": (
            attributed({"project": "P1"}),
            f"line {snapshot_at + 1}: attribution.project: Not a uuid.",
        ),
        "category": (
            attributed({"category": 7}),
            f"line {snapshot_at + 1}: attribution.category: Not a uuid.",
        ),
        "reason": (
            attributed({"project": P1, "reason": "r" * 2000}),
            f"line {snapshot_at + 1}: attribution.reason: Not a string",
        ),
        "key name": (
            b"".join([*lines[:snapshot_at], key_line + b"\n", *lines[snapshot_at:]]),
            f"line {snapshot_at + 1}: name: Missing",
        ),
    }
    for name, (body, message) in cases.items():
        result = await restore(target, bob, body)
        # The file's content is refused; the request itself fits the document.
        assert result.status_code == 422, (name, result.text)
        if name == "cycle":
            assert result.json["message"].endswith("would be its own ancestor."), result.json
        assert result.json["message"].startswith(message), (name, result.json)
        assert await _stored(target) == before, name
    too_big = await restore(target, bob, lines[0] + b"\n" * (9 * 1024 * 1024))
    assert too_big.status_code == 413
    assert await _stored(target) == before


async def test_multipart_upload(source: Instance, target: Instance) -> None:
    ann = await fill(source)
    data = await export(source, ann)
    bob = await target.new_user("bob@elsewhere.org")
    boundary = "sa-boundary-1234"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n'
            "Content-Type: application/x-ndjson\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    result = await target.client.simulate_post(
        "/api/import/screenaware",
        body=body,
        headers={**bob, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert result.status_code == 200, result.text
    no_file = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
        + "x" * 100_000
        + f"\r\n--{boundary}--\r\n"
    ).encode()
    missing = await target.client.simulate_post(
        "/api/import/screenaware",
        body=no_file,
        headers={**bob, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert missing.status_code == 400
    assert missing.json["message"] == "The multipart field 'file' is missing"
    assert (await answers(target, bob))["times-projectUuid"] == (await answers(source, ann))[
        "times-projectUuid"
    ]


def cli(
    inst: Instance, *args: str, stderr: Any = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, **inst.config.as_environ()}
    return subprocess.run(
        [BIN, *args], env=env, stdout=subprocess.PIPE, stderr=stderr, timeout=120, check=False
    )


def on_terminal(inst: Instance, *args: str) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """The command run with its standard error on a pseudo-terminal, and what it showed."""
    leader, follower = pty.openpty()
    try:
        result = cli(inst, *args, stderr=follower)
        os.close(follower)
        shown = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 65536):
                shown += chunk
    finally:
        os.close(leader)
    return result, shown


async def test_cli_export_and_import(source: Instance, target: Instance, tmp_path: Path) -> None:
    ann = await fill(source)
    before = await answers(source, ann)
    file = tmp_path / "ann.jsonl"
    done = cli(source, "export", "--user", "ANN@example.org", "-o", str(file))
    assert done.returncode == 0, done.stderr
    assert b"export: " in done.stderr and b"items" in done.stderr  # plain lines, no terminal
    lines = file.read_bytes().splitlines()
    assert orjson.loads(lines[0])["format"] == "screenaware-export"
    assert sum(b'"snapshot"' in line for line in lines) == 18 * 6
    missing = cli(source, "export", "--user", "nobody@example.org")
    assert missing.returncode == 1 and b"no user" in missing.stderr

    # On a terminal: a progress bar (rich) with the count, the size and the rate.
    on_tty = tmp_path / "tty.jsonl"
    exported, shown = on_terminal(source, "export", "--user", "ann@example.org", "-o", str(on_tty))
    assert exported.returncode == 0, shown
    assert f"{len(lines)}/{len(lines)}".encode() in shown and b"items/s" in shown
    assert b"KB" in shown
    assert on_tty.read_bytes().splitlines()[1:] == lines[1:]

    bob = await target.new_user("bob@elsewhere.org")
    result, shown = on_terminal(
        target, "import", "screenaware", str(file), "--user", "bob@elsewhere.org"
    )
    assert result.returncode == 0, shown
    assert b"108/108" in shown and b"items/s" in shown
    assert orjson.loads(result.stdout)["snapshots"] == 18 * 6
    assert await answers(target, bob) == before
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"\n".join(lines[:-1])[:-10])  # cut inside the line before the end
    refused = cli(target, "import", "screenaware", str(broken), "--user", "bob@elsewhere.org")
    assert refused.returncode == 2 and f"line {len(lines) - 1}:".encode() in refused.stderr


async def test_times_and_streams_as_csv(source: Instance) -> None:
    import csv
    import io

    ann = await fill(source)

    async def as_csv(path: str, accept: str = "text/csv", **params: Any) -> list[dict[str, str]]:
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
        result = await source.client.simulate_get(
            path, params=query, headers={**ann, "Accept": accept}
        )
        assert result.status_code == 200, result.text
        assert result.headers["content-type"] == "text/csv; charset=utf-8"
        return list(csv.DictReader(io.StringIO(result.text)))

    hourly = await as_csv("/api/times", **DAY, groupBy="projectUuid", resolution="hour")
    answer = await source.get(ann, "/api/times", **DAY, groupBy="projectUuid", resolution="hour")
    assert list(hourly[0]) == ["start", "end", "projectUuid", "sum"]
    projects = answer["grouped"]["2023-11-14T10:00:00.000Z"]["grouped"]
    assert len(hourly) == 24 * len(projects)
    ten = {
        r["projectUuid"]: int(r["sum"]) for r in hourly if r["start"].startswith("2023-11-14T10")
    }
    assert ten == {(k if k != "none" else ""): v["sum"] for k, v in projects.items()}
    assert sum(int(r["sum"]) for r in hourly) == answer["sum"]
    assert hourly[0]["start"] == "2023-11-14T00:00:00.000Z"
    nested = await as_csv(
        "/api/times", **DAY, groupBy="projectUuid", resolution="day",
        nestTimeBucketsInsideGroups=True,
    )  # fmt: skip
    assert sorted(int(r["sum"]) for r in nested) == sorted(v["sum"] for v in projects.values())
    total = await as_csv("/api/times", "text/csv, application/json;q=0.5", **DAY)
    assert total == [{"start": DAY["start"], "end": DAY["end"], "sum": str(answer["sum"])}]

    streams = await source.get(ann, "/api/streams", **DAY, showGaps=True)
    rows = await as_csv("/api/streams", **DAY, showGaps=True, expanded=True)
    assert [r["uuid"] for r in rows] == [s["uuid"] for s in streams]
    assert [int(r["durationMs"]) for r in rows] == [s["durationMs"] for s in streams]
    assert [r["isGap"] for r in rows] == ["true" if s.get("isGap") else "false" for s in streams]
    assert list(rows[0]) == ["uuid", "time", "durationMs", "projectUuid", "isGap"]
    by_day = await as_csv("/api/streams", **DAY, groupByDay=True)
    assert {r["day"] for r in by_day} == {"2023-11-14"}
    # Without Accept, or preferring JSON: JSON as before.
    plain = await source.client.simulate_get("/api/times", params=DAY, headers=ann)
    assert plain.headers["content-type"].startswith("application/json")
    prefer = await source.client.simulate_get(
        "/api/streams", params=DAY, headers={**ann, "Accept": "application/json, text/csv;q=0.1"}
    )
    assert prefer.headers["content-type"].startswith("application/json")


PA = "3c1e6a52-6f0e-4c55-8d0a-0a1b2c3d4e01"
PB = "3c1e6a52-6f0e-4c55-8d0a-0a1b2c3d4e02"


class Http:
    """A user's calls to a running service."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.client = httpx.Client(base_url=url, headers=headers, timeout=60)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        result = self.client.request(method, path, **kwargs)
        assert result.status_code in (200, 201), (path, result.text)
        return result.json()


def _login(url: str, email: str, password: str) -> dict[str, str]:
    result = httpx.post(url + "/api/auth/local", json={"email": email, "password": password})
    assert result.status_code == 200, result.text
    return bearer(result.json()["token"])


def _new_user(url: str, email: str) -> Http:
    admin = Http(url, _login(url, ADMIN_EMAIL, ADMIN_PASSWORD))
    admin.ok("POST", "/api/users", json={"email": email, "password": "user-password-1"})
    return Http(url, _login(url, email, "user-password-1"))


def _http_answers(user: Http) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group in ("projectUuid", "categoryUuid", "applicationUuid"):
        out[f"times-{group}"] = user.ok(
            "GET", "/api/times", params={**DAY, "groupBy": group, "resolution": "hour"}
        )
    out["streams"] = _no_user(user.ok("GET", "/api/streams", params={**DAY, "expanded": "true"}))
    out["substreams"] = _no_user(user.ok("GET", "/api/substreams", params=DAY))
    out["projects"] = _no_user(user.ok("GET", "/api/projects"))
    out["categories"] = _no_user(user.ok("GET", "/api/categories"))
    return out


@pytest.fixture
def fresh_config(other_servers: Servers, tmp_path: Path) -> Iterator[Config]:
    """A second instance's configuration: its own influxd and redis-server."""
    influx = InfluxHelper(other_servers.influx_url, "test_" + uuid.uuid4().hex[:12])
    client = redis.Redis.from_url(other_servers.redis_url)
    client.flushall()
    yield Config.load(
        environ={},
        influx_url=other_servers.influx_url,
        influx_db=influx.database,
        redis_url=other_servers.redis_url,
        secret_key=SECRET_KEY,
        data_dir=str(tmp_path / "fresh"),
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
    )
    influx.drop()
    client.flushall()
    client.close()


def test_round_trip_keeps_the_attribution_each_snapshot_was_stored_with(
    config: Config, fresh_config: Config, tmp_path: Path
) -> None:
    """The rules change between two stretches of work before the export: restored
    by the export's (final) rules, the first stretch would move to another project
    and category; carried, every answer of the fresh instance is the same."""
    source = config.replace(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD)
    with (
        run_service(source, tmp_path, workers=1) as one,
        run_service(fresh_config, tmp_path, workers=1) as two,
    ):
        ann = _new_user(one.url, "ann@example.org")
        ann.ok("POST", "/api/projects", json={"uuid": PA, "name": "a", "keywords": ["alpha"]})
        ann.ok("POST", "/api/projects", json={"uuid": PB, "name": "b"})
        reading = ann.ok(
            "POST", "/api/categories", json={"name": "reading", "applications": ["code"]}
        )
        made = ann.ok("POST", "/api/keys", json={"name": "laptop sensor"})
        ann.ok("POST", "/api/snapshots", json=snaps(at(9, 0), 5, "code", "alpha work"))
        # New rules: "alpha" now means PB, and code is no longer reading.
        ann.ok("PUT", f"/api/projects/{PA}", json={"keywords": []})
        ann.ok("PUT", f"/api/projects/{PB}", json={"keywords": ["alpha"]})
        ann.ok("PUT", f"/api/categories/{reading['uuid']}", json={"applications": []})
        ann.ok("POST", "/api/snapshots", json=snaps(at(10, 0), 5, "code", "alpha work"))
        ann.ok("POST", "/api/snapshots", json=snaps(at(11, 0), 2, "code", "beta"))
        # A correction on top of the attribution of older rules.
        streams = ann.ok("GET", "/api/streams", params=DAY)
        later = next(s for s in streams if s["projectUuid"] is None)
        ann.ok("PUT", f"/api/stream/{later['uuid']}/project", json={"projectUuid": PA})
        before = _http_answers(ann)
        by_project = before["times-projectUuid"]["grouped"]["2023-11-14T09:00:00.000Z"]
        assert by_project["grouped"][PA]["sum"] == 300_000, "attributed by the old rules"
        by_category = before["times-categoryUuid"]["grouped"]["2023-11-14T09:00:00.000Z"]
        assert by_category["grouped"][reading["uuid"]]["sum"] == 300_000

        exported = ann.client.get("/api/export")
        assert exported.status_code == 200, exported.text
        lines = [orjson.loads(line) for line in exported.content.splitlines()]
        assert lines[0]["version"] == 2
        (key,) = [line for line in lines if line.get("type") == "apiKey"]
        assert key["name"] == "laptop sensor" and key["createdAt"].startswith("20")
        assert made["key"] not in exported.text and made["uuid"] not in exported.text
        first = next(line for line in lines if line.get("type") == "snapshot")
        assert first["attribution"] == {
            "project": PA,
            "category": reading["uuid"],
            "reason": "keyword 'alpha' was found in window title",
        }

        bob = _new_user(two.url, "bob@elsewhere.org")
        restored = bob.ok(
            "POST",
            "/api/import/screenaware",
            content=exported.content,
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert restored["apiKeys"] == 1
        assert restored["skipped"] == [
            {
                "item": "apiKey 'laptop sensor'",
                "reason": "API keys are not restored (the export has no secrets): make new ones",
            }
        ]
        assert bob.ok("GET", "/api/keys") == []
        after = _http_answers(bob)
        assert after == before


def test_a_one_gigabyte_line_is_refused_early_by_every_import(
    config: Config, influx_db: InfluxHelper, tmp_path: Path
) -> None:
    """1 GiB streamed to a real worker as one line (one value): a 422 naming the
    line or the byte where the limit was crossed (the rest of the upload is read
    past, never kept); nothing stored, memory flat."""
    cfg = config.replace(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD)
    header = b'{"format": "screenaware-export", "version": 2}\n{"type": "profile", "x": "'
    heads = {
        "screenaware": (header, "line 2: longer than 1048576 bytes"),
        "activitywatch": (
            b'{"buckets": {"w": {"type": "currentwindow", "events": [{"timestamp": '
            b'"2023-11-14T09:00:00+00:00", "data": {"title": "',
            "file: a value near byte ",
        ),
        "wakatime": (b'{"days": [{"heartbeats": [{"entity": "', "file: a value near byte "),
    }
    piece = b"a" * (1 << 20)
    with run_service(cfg, tmp_path, workers=1) as service:
        (worker,) = service.worker_pids()
        user = _new_user(service.url, "ann@example.org")
        before = _peak_rss_kb(worker)
        for kind, (head, message) in heads.items():

            def body(head: bytes = head) -> Iterator[bytes]:
                yield head
                for _ in range(1024):
                    yield piece

            result = user.client.post(
                f"/api/import/{kind}",
                content=body(),
                headers={"Content-Type": "application/json"},
                timeout=300,
            )
            assert result.status_code == 422, (kind, result.text)
            assert result.json()["message"].startswith(message), result.json()
        grown_mb = (_peak_rss_kb(worker) - before) / 1024
    assert influx_db.count("window") == 0 and influx_db.count("activity") == 0
    assert grown_mb < 20, f"the worker's peak memory grew {grown_mb:.0f} MB"


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))


async def test_export_passes_over_ledger_entries_without_windows_and_reads_version_1(
    source: Instance, target: Instance
) -> None:
    ann = await fill(source)
    me = await source.get(ann, "/api/users/me")
    # Time imported from a calendar has ledger entries but no window points (one
    # before the first snapshot, one between two); window points of no ledger
    # entry (never written by this version) first and last.
    user = me["uuid"]
    calendar = [
        f"activity,user={user},project=none,category=none,application=none "
        f'duration_ms=10000i,reason="",snapshot="cal-{n}" {int(moment.timestamp() * 1e9) + 7}'
        for n, moment in enumerate((at(8, 0), at(10, 20)))
    ]
    bare = [
        f'window,user={user},idx=0,focused=true snapshot="bare-{n}",process="vim",title="x",'
        f'screen=0,visible=0,documents="[]",tags="{{}}",duration_ms=10000i '
        f"{int(moment.timestamp() * 1e9)}"
        for n, moment in enumerate((at(7, 0), at(13, 0)))
    ]
    # Entries of a revision with no first entry at their instant (none is read).
    stray = [
        f"activity,user={user},project={P1},category=none,application=none,rev=000000000099 "
        f'duration_ms=0i,reason="" {int(moment.timestamp() * 1e9) + 3}'
        for moment in (at(7, 30), at(14, 0))
    ]
    written = httpx.post(
        f"{source.influx.url}/write",
        params={"db": source.influx.database},
        content="\n".join(calendar + bare + stray),
    )
    assert written.status_code == 204, written.text
    data = await export(source, ann)
    items = [orjson.loads(line) for line in data.splitlines()]
    snapshots = [item for item in items if item.get("type") == "snapshot"]
    assert len(snapshots) == 18 * 6 + 2
    assert "attribution" not in snapshots[0] and "attribution" not in snapshots[-1]
    assert all("attribution" in s for s in snapshots[1:-1])
    assert snapshots[1]["attribution"]["project"] == P1

    # A version 1 file (no API keys, no attribution): attributed by the file's rules.
    old = [{k: v for k, v in item.items() if k != "attribution"} for item in items]
    old = [item for item in old if item.get("type") != "apiKey"]
    old[0]["version"] = 1
    old[-1]["items"] = len(old) - 2
    bob = await target.new_user("bob@elsewhere.org")
    carl = await target.new_user("carl@elsewhere.org")
    assert (await restore(target, bob, data)).status_code == 200
    result = await restore(target, carl, b"".join(orjson.dumps(i) + b"\n" for i in old))
    assert result.status_code == 200, result.text
    assert result.json["skipped"] == [] and result.json["apiKeys"] == 0
    assert await answers(target, carl) == await answers(target, bob)


async def test_restore_into_the_same_instance_emptied(source: Instance) -> None:
    ann = await fill(source)
    before = await answers(source, ann)
    data = await export(source, ann)
    me = await source.get(ann, "/api/users/me")
    deleted = await source.client.simulate_delete(f"/api/users/{me['uuid']}", headers=source.admin)
    assert deleted.status_code == 200, deleted.text
    again = await source.new_user("ann@example.org")
    assert (await source.get(again, "/api/times", **DAY))["sum"] == 0, "a new, empty user"
    result = await restore(source, again, data)
    assert result.status_code == 200, result.text
    assert await answers(source, again) == before

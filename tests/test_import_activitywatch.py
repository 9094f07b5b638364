"""Import of the real aw-server's own export file (``GET /api/0/export``), fed with
window, afk and web events through the real aw-client."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest

from screenaware.activity.attribution import application_uuid
from screenaware.config import Config
from screenaware.errors import Invalid
from screenaware.portability.activitywatch import count, store_batches
from screenaware.portability.spool import Spool
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, InfluxHelper
from tests.service import run_service
from tests.test_sensor_bridge import aw_report, aw_server, feed, user_token

__all__ = ["aw_server"]  # the fixture, shared with the bridge's tests

pytestmark = pytest.mark.e2e

BIN = str(Path(sys.executable).with_name("screenaware"))

HOST = "laptop"
WINDOW, AFK, WEB = f"aw-watcher-window_{HOST}", f"aw-watcher-afk_{HOST}", "aw-watcher-web-chrome"
T0 = dt.datetime(2023, 11, 14, 9, 0, tzinfo=dt.UTC)


def at(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat()


@pytest.fixture
def aw_export(aw_server: tuple[str, int]) -> tuple[bytes, int, dict[str, int]]:
    """aw-server's own export file, and the not-afk window time its query reports."""
    url, port = aw_server
    code = {"app": "code", "title": "main.py - screenaware - Code"}
    chrome = {"app": "Google-chrome", "title": "ActivityWatch - Google Chrome"}
    feed(
        port,
        ["bucket", WINDOW, "currentwindow"],
        ["bucket", AFK, "afkstatus"],
        ["bucket", WEB, "web.tab.current"],
        ["bucket", "aw-watcher-input_laptop", "os.hid.input"],
        # Across midnight UTC, with a gap, and an event of 1.5 s.
        ["events", WINDOW, [[at(0), 95, code], [at(95), 105, chrome], [at(200), 100, code],
                            [at(300), 1.5, chrome], [at(54_000), 20_000, code]]],
        ["events", AFK, [[at(0), 150, {"status": "not-afk"}], [at(150), 30, {"status": "afk"}],
                         [at(180), 200, {"status": "not-afk"}],
                         [at(60_000), 7_200, {"status": "not-afk"}]]],
        ["events", WEB, [[at(95), 105, {"url": "https://github.com/ActivityWatch",
                                        "title": "ActivityWatch", "audible": False,
                                        "incognito": False}]]],
        ["events", "aw-watcher-input_laptop", [[at(0), 60, {"presses": 3, "clicks": 1}]]],
    )  # fmt: skip
    total, apps = aw_report(port, WINDOW, AFK, [at(-3600), at(86_400 * 2)])
    assert total == 270_000 + 1_500 + 7_200_000, "aw-server's own sum"
    exported = httpx.get(url + "/api/0/export", timeout=30)
    assert exported.status_code == 200
    assert set(exported.json()["buckets"]) == {WINDOW, AFK, WEB, "aw-watcher-input_laptop"}
    return exported.content, total, apps


RANGE = {"start": "2023-11-14T00:00:00.000Z", "end": "2023-11-15T23:59:59.999Z", "tz": "UTC"}


async def times(api: Api, headers: dict[str, str]) -> dict[str, int]:
    result = await api.client.simulate_get(
        "/api/times", params={**RANGE, "groupBy": "applicationUuid"}, headers=headers
    )
    assert result.status_code == 200, result.text
    return {k: v["sum"] for k, v in result.json["grouped"].items()}


async def upload(api: Api, headers: dict[str, str], body: bytes) -> Any:
    return await api.client.simulate_post(
        "/api/import/activitywatch",
        body=body,
        headers={**headers, "Content-Type": "application/json"},
    )


async def test_import_matches_what_aw_server_reports(
    api: Api, aw_export: tuple[bytes, int, dict[str, int]], influx_db: InfluxHelper
) -> None:
    data, total, apps = aw_export
    user = await api.new_user("aw@example.org")
    result = await upload(api, user, data)
    assert result.status_code == 200, result.text
    summary = result.json
    assert summary["skipped"] == [
        {"item": "aw-watcher-input_laptop", "reason": "bucket type 'os.hid.input' is not imported"}
    ]
    assert summary["from"] == "2023-11-14T09:00:00.000Z"
    assert summary["to"] == "2023-11-15T03:40:00.000Z"  # 9:00 + 67 200 s
    assert summary["snapshots"] > total // 10_000
    got = await times(api, user)
    assert sum(got.values()) == total
    assert got == {application_uuid(app.lower()): ms for app, ms in apps.items()}
    streams = await api.client.simulate_get(
        "/api/streams", params={**RANGE, "expanded": "true"}, headers=user
    )
    documents = {d["baseDocumentPath"] for s in streams.json for d in s["baseDocuments"]}
    assert "github.com" in documents

    # The same file again changes nothing.
    points = influx_db.count("activity"), influx_db.count("window")
    again = await upload(api, user, data)
    assert again.status_code == 200 and again.json == summary
    assert (influx_db.count("activity"), influx_db.count("window")) == points
    assert await times(api, user) == got


async def test_multipart_upload(api: Api, aw_export: tuple[bytes, int, dict[str, int]]) -> None:
    data, total, _ = aw_export
    user = await api.new_user("aw@example.org")
    boundary = "aw-boundary-42"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="aw.json"\r\n'
            "Content-Type: application/json\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    result = await api.client.simulate_post(
        "/api/import/activitywatch",
        body=body,
        headers={**user, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert result.status_code == 200, result.text
    assert sum((await times(api, user)).values()) == total


async def test_malformed_exports_store_nothing(
    api: Api, aw_export: tuple[bytes, int, dict[str, int]], influx_db: InfluxHelper
) -> None:
    data, _, _ = aw_export
    user = await api.new_user("aw@example.org")
    parsed = orjson.loads(data)

    def changed(change: Any) -> bytes:
        copy = orjson.loads(data)
        change(copy)
        return orjson.dumps(copy)

    def third_event(copy: Any, field: str, value: Any) -> None:
        copy["buckets"][WINDOW]["events"][2][field] = value

    def two_bad(copy: Any) -> None:
        copy["buckets"][WINDOW]["events"][4]["data"] = "code"
        third_event(copy, "duration", None)

    cases = {
        "the first of two": (
            changed(two_bad),
            f"buckets.{WINDOW}.events[2].duration: Not a number of seconds.",
        ),
        "truncated": (data[: len(data) // 2], "file: Not valid JSON"),
        "not an object": (b"[1, 2, 3]", "file: Not an aw-server export"),
        "no buckets": (b'{"other": 1}', "buckets: Missing."),
        "duration": (
            changed(lambda c: third_event(c, "duration", "long")),
            f"buckets.{WINDOW}.events[2].duration: Not a number of seconds.",
        ),
        "timestamp": (
            changed(lambda c: third_event(c, "timestamp", "yesterday")),
            f"buckets.{WINDOW}.events[2].timestamp: Not an ISO 8601 time.",
        ),
        "data": (
            changed(lambda c: third_event(c, "data", [1])),
            f"buckets.{WINDOW}.events[2].data: Not an object.",
        ),
        "future": (
            changed(lambda c: third_event(c, "timestamp", "2099-01-01T00:00:00+00:00")),
            f"buckets.{WINDOW}.events[2].timestamp: Before 1970",
        ),
        "title": (
            changed(lambda c: third_event(c, "data", {"app": "code", "title": "t" * 4097})),
            f"buckets.{WINDOW}.events[2].data.title: Longer than 4096 characters.",
        ),
        "app": (
            changed(lambda c: third_event(c, "data", {"app": ["code"]})),
            f"buckets.{WINDOW}.events[2].data.app: Not a string.",
        ),
        "bucket": (
            changed(lambda c: c["buckets"].__setitem__(AFK, "afk")),
            f"buckets.{AFK}: Not an object.",
        ),
    }
    assert len(parsed["buckets"][WINDOW]["events"]) > 3
    for name, (body, message) in cases.items():
        result = await upload(api, user, body)
        # The file's content is refused; the request itself fits the document.
        assert result.status_code == 422, (name, result.text)
        assert result.json["message"].startswith(message), (name, result.json)
        assert influx_db.count("activity") == 0 and influx_db.count("window") == 0, name


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))


def test_a_large_export_is_never_held_in_a_worker(config: Config, tmp_path: Path) -> None:
    """40 MB streamed to a real gunicorn worker: its peak memory barely moves."""
    cfg = config.replace(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD)
    filler = "x" * 1000
    window = {"id": WINDOW, "type": "currentwindow", "hostname": HOST, "events": [
        {"timestamp": at(i * 10), "duration": 10.0, "data": {"app": "code", "title": "t"}}
        for i in range(30)
    ]}  # fmt: skip
    head = orjson.dumps({"buckets": {WINDOW: window}})[:-2]  # open: more buckets follow
    event = b'{"timestamp": "2023-11-14T08:00:00+00:00", "duration": 1.0, "data": {"k": "%s"}}'
    count = 40_000

    def body() -> Iterator[bytes]:
        yield head + b', "aw-watcher-input_laptop": {"type": "os.hid.input", "events": ['
        for i in range(count):
            yield (b"," if i else b"") + event % filler.encode()
        yield b"]}}}"

    with run_service(cfg, tmp_path, workers=1) as service:
        (worker,) = service.worker_pids()
        token = user_token(service.url)
        before = _peak_rss_kb(worker)
        result = httpx.post(
            service.url + "/api/import/activitywatch",
            content=body(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=300,
        )
        assert result.status_code == 200, result.text
        assert result.json()["snapshots"] == 30
        assert result.json()["skipped"][0]["item"] == "aw-watcher-input_laptop"
        grown_mb = (_peak_rss_kb(worker) - before) / 1024
    size_mb = count * (len(event) + len(filler)) / 1024 / 1024
    assert size_mb > 40
    assert grown_mb < 20, f"the worker's peak memory grew {grown_mb:.0f} MB for {size_mb:.0f} MB"


class Recorder:
    """Stands in for the snapshot service: which batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    async def ingest(self, user: str, batch: list[dict[str, Any]]) -> int:
        self.batches.append(list(batch))
        return len(batch)


async def test_store_batches_reads_and_converts_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []
    end = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)

    def source() -> Iterator[dict[str, Any]]:
        for n in range(7):
            threads.append(threading.get_ident())  # where the "SQLite read" runs
            yield {"timeTaken": end + dt.timedelta(seconds=n), "durationMs": 1000}

    service = Recorder()
    seen: list[tuple[int, int]] = []
    total = await count(source)
    summary = await store_batches(
        cast(Any, service), "u", source, total, 3, lambda done, of: seen.append((done, of))
    )
    assert total == 7 and len(threads) == 14
    assert loop_thread not in threads
    assert [len(b) for b in service.batches] == [3, 3, 1]
    assert seen == [(3, 7), (6, 7), (7, 7)]
    assert summary.answer([])["snapshots"] == 7


async def test_spool_fill_keeps_an_upload_and_its_limits() -> None:
    async def chunks(pieces: list[bytes]) -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    pieces = [b"x" * 700_000, b"y" * 700_000, b"z\n"]
    with Spool(2_000_000) as spool:
        await spool.fill(chunks(pieces))
        assert spool.reader().read() == b"".join(pieces)
    with Spool(1_000_000) as spool, pytest.raises(Invalid):
        await spool.fill(chunks(pieces))


def test_spool_bounds_the_longest_json_value() -> None:
    def spooled(*chunks: bytes, limit: int = 1024) -> str | None:
        with Spool(10_000_000, None, limit) as spool:
            try:
                for chunk in chunks:
                    spool.write(chunk)
            except Invalid as exc:
                return str(exc)
            assert spool.reader().read() == b"".join(chunks)
            return None

    fine = orjson.dumps({"buckets": {"b": {"events": [{"data": {"t": "x" * 1000}}] * 50}}})
    assert spooled(fine) is None
    assert spooled(*[fine[i : i + 7] for i in range(0, len(fine), 7)]) is None
    assert spooled(b'{"a": "' + b"x" * 1030 + b'"}') == (
        "file: a value near byte 0 is longer than 1024 bytes"
    )
    # Cut across chunks, the stretch still adds up.
    assert spooled(b'{"a": "' + b"x" * 600, b"x" * 600 + b'"}') is not None
    # Escaped quotes do not end a string; nor does a quote after a chunk's backslash.
    assert spooled(b'{"a": "' + b'\\"' * 600 + b'"}') is not None
    assert spooled(b'{"a": "' + b"x" * 600 + b"\\", b'"' + b"x" * 600 + b'"}') is not None
    # Numbers (and whitespace) are values without quotes.
    assert spooled(b'{"a": ' + b"1" * 2000 + b"}") is not None
    assert spooled(b"", b'{"a": 1}', b"") is None


async def test_cli_import(
    api: Api,
    identity_config: Config,
    aw_export: tuple[bytes, int, dict[str, int]],
    tmp_path: Path,
) -> None:
    data, total, _ = aw_export
    user = await api.new_user("aw@example.org")
    file = tmp_path / "aw-export.json"
    file.write_bytes(data)
    env = {**os.environ, **identity_config.as_environ()}
    done = subprocess.run(
        [BIN, "import", "activitywatch", str(file), "--user", "aw@example.org"],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    assert summary["skipped"][0]["item"] == "aw-watcher-input_laptop"
    # Plain lines (no terminal): the count of snapshots and the size of the file.
    assert (
        f"import activitywatch: {summary['snapshots']}/{summary['snapshots']} items".encode()
        in (done.stderr)
    )
    assert b"KB" in done.stderr
    assert sum((await times(api, user)).values()) == total
    file.write_bytes(data.replace(b'"duration"', b'"duration": "x", "_"', 1))
    refused = subprocess.run(
        [BIN, "import", "activitywatch", str(file), "--user", "aw@example.org"],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and b".duration: Not a number" in refused.stderr

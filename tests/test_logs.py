"""Log points, their review, and crash uploads, against the real servers."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from falcon import testing
from hypothesis import given
from hypothesis import strategies as st

from screenaware.config import Config
from screenaware.logs.service import parse_message
from screenaware.storage.ids import _layout, uuid7, uuid7_ms
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, FakeClock, InfluxHelper, bearer
from tests.service import run_service

T0 = dt.datetime(2023, 11, 15, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock((T0 + dt.timedelta(hours=2)).timestamp())


@pytest.fixture
def identity_config(config: Config) -> Config:
    return config.replace(
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        log_rate_anonymous=50,
        crash_max_bytes=64 * 1024,
    )


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def entry(**data: Any) -> dict[str, Any]:
    point_type = data.pop("type", "sensor_scheduler_snapshotSend")
    level = data.pop("level", "info")
    return {
        "type": point_type,
        "level": level,
        "data": {"origin": "sensor-win", "version": "0.4.17", "message": "ok", **data},
    }


async def send(api: Api, body: object, headers: dict[str, str] | None = None) -> testing.Result:
    return await api.client.simulate_post("/api/logs", json=body, headers=headers or {})


@given(st.integers(0, 2**48 - 1), st.integers(0, 2**12 - 1), st.integers(0, 2**62 - 1))
def test_uuid_layout_is_the_canonical_text(ms: int, rand_a: int, rand_b: int) -> None:
    text = _layout(ms, rand_a, rand_b)
    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert parsed.int >> 80 == ms
    assert (parsed.int >> 64) & 0xFFF == rand_a
    assert parsed.int & (2**62 - 1) == rand_b


def test_uuid7_layout() -> None:
    stamp = ms(T0)
    value = uuid7(stamp)
    assert uuid.UUID(value).version == 7
    assert uuid7_ms(value) == stamp
    assert uuid7(stamp) != value
    assert uuid7_ms(str(uuid.uuid4())) is None
    assert uuid7_ms("nonsense") is None


@pytest.mark.parametrize(
    ("message", "numeric", "flag"),
    [
        ("42", 42.0, None),
        ("-0.5", -0.5, None),
        ("1e3", 1000.0, None),
        ("true", None, True),
        ("TRUE", None, True),
        ("False", None, False),
        ("ok", None, None),
        ("nan", None, None),
        ("inf", None, None),
        ("", None, None),
    ],
)
def test_parse_message(message: str, numeric: float | None, flag: bool | None) -> None:
    assert parse_message(message) == (numeric, flag)


async def test_anyone_may_send_and_a_token_fills_the_user(
    api: Api, influx_db: InfluxHelper, clock: FakeClock
) -> None:
    assert (await send(api, entry(time=ms(T0)))).json == {"ok": True}
    headers = await api.new_user("ann@example.org")
    me = (await api.me(headers)).json["uuid"]
    someone = str(uuid.uuid4())
    result = await send(api, [entry(time=ms(T0) + 1, userUuid=someone)], headers)
    assert result.status_code == 200
    rows = influx_db.query('SELECT * FROM "log" ORDER BY time')
    assert [r.get("userUuid") for r in rows] == [None, me]  # the token wins
    first = rows[0]
    assert (first["type"], first["level"], first["origin"]) == (
        "sensor_scheduler_snapshotSend",
        "info",
        "sensor-win",
    )
    assert int(first["time"]) // 1_000_000 == ms(T0)
    assert uuid7_ms(first["uuid"]) == ms(T0)
    # Without data.time: the time of receipt.
    await send(api, entry(type="no_time"))
    row = influx_db.query('SELECT * FROM "log" WHERE "type" = \'no_time\'')[0]
    assert int(row["time"]) // 1_000_000 == int(clock.now * 1000)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"level": "info", "data": {"origin": "o", "version": "1.0.0", "message": "m"}}, "type"),
        (entry(type="has space"), "type"),
        (entry(type="dash-ed"), "type"),
        (entry(type="x" * 129), "type"),
        (entry(level="fatal"), "level"),
        ({"type": "t", "level": "info"}, "data"),
        (entry(time="1700000000000"), "data.time"),
        (entry(time=-1), "data.time"),
        (
            {"type": "t", "level": "info", "data": {"version": "1.0.0", "message": "m"}},
            "data.origin",
        ),
        (entry(origin="line\nbreak"), "data.origin"),
        (entry(origin="ends\\"), "data.origin"),
        (entry(version="1.0"), "data.version"),
        (entry(version="v1.0.0"), "data.version"),
        (entry(userUuid="not-a-uuid"), "data.userUuid"),
        (
            {"type": "t", "level": "info", "data": {"origin": "o", "version": "1.0.0"}},
            "data.message",
        ),
        (entry(message=5), "data.message"),
        (entry(messageNumeric="many"), "data.messageNumeric"),
        (entry(messageBool="maybe"), "data.messageBool"),
        # Strict types (issue 11.5): 0 is no boolean, "1.5" no number, 1.5 no integer.
        (entry(messageBool=0), "data.messageBool"),
        (entry(messageNumeric="1.5"), "data.messageNumeric"),
        (entry(time=1.5), "data.time"),
        (entry(origin="trailing\n"), "data.origin"),
        (entry(version="1.0.0\n"), "data.version"),
        (entry(userUuid="{12345678-1234-1234-1234-123456789abc}"), "data.userUuid"),
        (entry(details="x" * 65537), "data.details"),
        (entry(originId="x" * 257), "data.originId"),
    ],
)
async def test_invalid_points_are_400_naming_the_field_and_store_nothing(
    api: Api, influx_db: InfluxHelper, body: dict[str, Any], path: str
) -> None:
    result = await send(api, [entry(time=ms(T0)), body])
    assert result.status_code == 400, result.text
    errors = result.json["errors"]["1"]
    for part in path.split("."):
        assert part in errors, (path, result.json)
        errors = errors[part]
    assert influx_db.count("log") == 0


async def test_prerelease_versions_and_big_details_are_fine(
    api: Api, influx_db: InfluxHelper
) -> None:
    result = await send(api, entry(version="1.2.3-beta.1+build.5", details="x" * 65536))
    assert result.status_code == 200
    assert influx_db.count("log") == 1


async def test_messages_are_parsed_unless_values_are_given(
    api: Api, influx_db: InfluxHelper
) -> None:
    stamp = ms(T0)
    await send(
        api,
        [
            entry(type="num", time=stamp, message="42.5"),
            entry(type="flag", time=stamp, message="TRUE"),
            entry(type="both", time=stamp, message="7", messageNumeric=8, messageBool=False),
            entry(type="text", time=stamp, message="ok"),
        ],
    )
    rows = {r["type"]: r for r in influx_db.query('SELECT * FROM "log"')}
    assert rows["num"]["messageNumeric"] == 42.5 and rows["num"].get("messageBool") is None
    assert rows["flag"]["messageBool"] is True and rows["flag"].get("messageNumeric") is None
    assert (rows["both"]["messageNumeric"], rows["both"]["messageBool"]) == (8.0, False)
    assert rows["text"].get("messageNumeric") is None and rows["text"].get("messageBool") is None


async def test_many_points_in_one_millisecond_are_all_stored(
    api: Api, influx_db: InfluxHelper
) -> None:
    same = entry(type="burst", time=ms(T0))
    for _ in range(3):
        assert (await send(api, [same] * 400, api.admin)).status_code == 200
    assert influx_db.count("log") == 1200
    uuids = {r["uuid"] for r in influx_db.query('SELECT "uuid" FROM "log"')}
    assert len(uuids) == 1200


async def test_review_series_points_grouped_and_meta(api: Api) -> None:
    alice = str(uuid.uuid4())
    minute = dt.timedelta(minutes=1)
    await send(
        api,
        [
            entry(type="a", time=ms(T0 + 1 * minute), message="one", userUuid=alice),
            entry(type="a", time=ms(T0 + 2 * minute), message="two"),
            entry(type="a", time=ms(T0 + 7 * minute), message="three", userUuid=alice),
            entry(type="a", time=ms(T0 + 20 * minute), message="four"),
            entry(type="b", time=ms(T0 + 3 * minute), message="x"),
        ],
    )
    span = {"start": "2023-11-15T10:00:00.000Z", "end": "2023-11-15T10:24:59.999Z"}
    series = await api.client.simulate_get("/api/logs", params=span, headers=api.admin)
    assert series.json == [{"type": "a", "count": 4}, {"type": "b", "count": 1}]

    points = await api.client.simulate_get("/api/logs/a", params=span, headers=api.admin)
    assert [p["message"] for p in points.json] == ["four", "three", "two", "one"]  # newest first
    first = points.json[-1]
    assert first["time"] == "2023-11-15T10:01:00.000Z"
    assert (first["level"], first["deleted"], first["origin"], first["version"]) == (
        "info", False, "sensor-win", "0.4.17",
    )  # fmt: skip
    assert first["userUuid"] == alice
    page = await api.client.simulate_get(
        "/api/logs/a", params={**span, "limit": 2, "offset": 1}, headers=api.admin
    )
    assert [p["message"] for p in page.json] == ["three", "two"]
    mine = await api.client.simulate_get(
        "/api/logs/a", params={**span, "userUuid": alice}, headers=api.admin
    )
    assert [p["message"] for p in mine.json] == ["three", "one"]

    grouped = await api.client.simulate_get(
        "/api/logs/a", params={**span, "structure": "grouped"}, headers=api.admin
    )
    assert grouped.json == [
        {"time": "2023-11-15T10:00:00.000Z", "count": 2},
        {"time": "2023-11-15T10:05:00.000Z", "count": 1},
        {"time": "2023-11-15T10:10:00.000Z", "count": 0},
        {"time": "2023-11-15T10:15:00.000Z", "count": 0},
        {"time": "2023-11-15T10:20:00.000Z", "count": 1},
    ]
    empty = await api.client.simulate_get(
        "/api/logs/nothing", params={**span, "structure": "grouped"}, headers=api.admin
    )
    assert [b["count"] for b in empty.json] == [0] * 5
    # Years of 5-minute counts would fill the worker (found by the contract fuzzing).
    decades = {"start": "2015-05-17T05:52:22.907Z", "end": "2053-07-31T11:07:44Z"}
    for log_type in ("a", "nothing"):
        huge = await api.client.simulate_get(
            f"/api/logs/{log_type}", params={**decades, "structure": "grouped"}, headers=api.admin
        )
        assert huge.status_code == 422 and "start" in huge.json["errors"], huge.text
    meta = await api.client.simulate_get(
        "/api/logs/a", params={**span, "metaonly": "true"}, headers=api.admin
    )
    assert meta.json == {"count": 4}
    meta = await api.client.simulate_get(
        "/api/logs/a", params={**span, "metaonly": "true", "userUuid": alice}, headers=api.admin
    )
    assert meta.json == {"count": 2}
    # Default range: the last two days (the clock is 12:00).
    assert (await api.client.simulate_get("/api/logs", headers=api.admin)).json[0]["count"] == 4


async def test_point_by_uuid(api: Api) -> None:
    await send(api, entry(type="c", time=ms(T0), message="find me", details="stack"))
    listed = await api.client.simulate_get(
        "/api/logs/c", params={"start": "2023-11-15T00:00:00Z"}, headers=api.admin
    )
    point_uuid = listed.json[0]["uuid"]
    found = await api.client.simulate_get(f"/api/logs/point/{point_uuid}", headers=api.admin)
    assert found.status_code == 200
    assert found.json == listed.json[0]
    assert found.json["details"] == "stack"
    for missing in (uuid7(ms(T0)), str(uuid.uuid4()), "garbage"):
        result = await api.client.simulate_get(f"/api/logs/point/{missing}", headers=api.admin)
        assert result.status_code == 404


async def test_review_is_for_admins(api: Api) -> None:
    user = await api.new_user("bob@example.org")
    for path in ("/api/logs", "/api/logs/a", f"/api/logs/point/{uuid7(0)}",
                 f"/api/logs/crash/{uuid7(0)}"):  # fmt: skip
        assert (await api.client.simulate_get(path)).status_code == 401, path
        assert (await api.client.simulate_get(path, headers=user)).status_code == 403, path


async def test_anonymous_senders_are_rate_limited(api: Api) -> None:
    assert (await send(api, [entry()] * 50)).status_code == 200
    limited = await send(api, entry())
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    # A token is charged to its user, with a generous limit.
    assert (await send(api, [entry()] * 50, api.admin)).status_code == 200


async def test_review_parameters_are_validated(api: Api) -> None:
    for params in (
        {"limit": "0"},
        {"limit": "10001"},
        {"offset": "-1"},
        {"structure": "flat"},
        {"userUuid": "x"},
        {"start": "0199-01-01T00:00:00Z"},
    ):
        result = await api.client.simulate_get("/api/logs/a", params=params, headers=api.admin)
        assert result.status_code == 400, params
    after = {"start": "2023-11-16T00:00:00Z", "end": "2023-11-15T00:00:00Z"}
    result = await api.client.simulate_get("/api/logs/a", params=after, headers=api.admin)
    assert result.status_code == 422, after


# --- crash uploads through the real gunicorn ------------------------------


async def test_breakpad_upload_download_and_limits(
    identity_config: Config, tmp_path: Path, influx_db: InfluxHelper
) -> None:
    crash_dir = Path(identity_config.data_dir) / "crashes"
    dump = bytes(range(256)) * 100  # 25.6 KB
    with run_service(identity_config, tmp_path) as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            # Breakpad's HTTP uploader: multipart/form-data, fields then the dump.
            resp = await http.post(
                "/api/logs/crash/sensor",
                data={"prod": "sensor-win", "ver": "1.4.2", "guid": "abc-123", "ptime": "42"},
                files={"upload_file_minidump": ("dump.dmp", dump, "application/octet-stream")},
            )
            assert resp.status_code == 200, resp.text
            assert resp.headers["content-type"].startswith("text/plain")
            point_uuid = resp.text
            assert uuid7_ms(point_uuid) is not None
            token = (
                await http.post(
                    "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
                )
            ).json()["token"]
            admin = bearer(token)
            download = await http.get(f"/api/logs/crash/{point_uuid}", headers=admin)
            assert download.status_code == 200
            assert download.content == dump
            point = (await http.get(f"/api/logs/point/{point_uuid}", headers=admin)).json()
            assert (point["type"], point["origin"], point["version"], point["originId"]) == (
                "crash_sensor", "sensor-win", "1.4.2", "abc-123",
            )  # fmt: skip
            details = json.loads(point["details"])
            assert details["size"] == len(dump)
            assert details["sha256"] == hashlib.sha256(dump).hexdigest()
            assert details["fields"]["ptime"] == "42"

            raw = await http.post(
                "/api/logs/crash/sensor?prod=sensor-mac&ver=2.0.0",
                content=b"raw dump",
                headers={"Content-Type": "application/octet-stream"},
            )
            assert raw.status_code == 200
            assert (await http.get(f"/api/logs/crash/{raw.text}", headers=admin)).content == (
                b"raw dump"
            )

            files_before = sorted(p.name for p in crash_dir.iterdir())
            count_before = influx_db.count("log")
            too_big = bytes(70 * 1024)
            over = await http.post(
                "/api/logs/crash/sensor",
                data={"prod": "sensor-win", "ver": "1.4.2"},
                files={"upload_file_minidump": ("dump.dmp", too_big, "application/octet-stream")},
            )
            assert over.status_code == 413
            assert "message" in over.json()
            assert sorted(p.name for p in crash_dir.iterdir()) == files_before
            assert influx_db.count("log") == count_before
            missing = await http.get(f"/api/logs/crash/{uuid7(0)}", headers=admin)
            assert missing.status_code == 404

"""Log points, their review, and crash uploads, against the real servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from falcon import testing
from hypothesis import given
from hypothesis import strategies as st

from screenaware.app import create_app
from screenaware.config import Config, ConfigError
from screenaware.logs.crashes import (
    ANON,
    ANON_TOTAL,
    PENDING,
    SIZES,
    TOTAL,
    CrashLimits,
    CrashStore,
    StoredDump,
    scan,
)
from screenaware.logs.service import bucket_count, describe_span, parse_message
from screenaware.storage.backends import Backends
from screenaware.storage.ids import _layout, uuid7, uuid7_ms
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    SECRET_KEY,
    Api,
    FakeClock,
    InfluxHelper,
    bearer,
)
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
        # Tiny pages, so every listing below runs through the paging of InfluxDB reads.
        log_page_points=4,
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
        assert huge.status_code == 422 and "interval" in huge.json["errors"], huge.text
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


async def test_a_refused_batch_uses_none_of_the_rate_limit(api: Api) -> None:
    assert (await send(api, [entry()] * 40)).status_code == 200
    assert (await send(api, [entry()] * 20)).status_code == 429
    # The 20 refused entries were not kept, so they do not count: 10 more fit.
    assert (await send(api, [entry()] * 10)).status_code == 200
    assert (await send(api, entry())).status_code == 429


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


async def raw_crash(api: Api) -> testing.Result:
    return await api.client.simulate_post(
        "/api/logs/crash/sensor?prod=sensor-mac&ver=2.0.0",
        body=b"raw dump",
        headers={"Content-Type": "application/octet-stream"},
    )


def crash_points(influx_db: InfluxHelper) -> list[dict[str, Any]]:
    return influx_db.query("SELECT * FROM log WHERE \"type\" = 'crash_sensor'")


async def test_a_crash_point_is_never_written_when_its_dump_is_not_kept(
    api: Api, influx_db: InfluxHelper, redis_client: Any, identity_config: Config
) -> None:
    # The accounting refuses the dump (a broken key: Redis answers WRONGTYPE).
    redis_client.set(SIZES, "not a hash")
    failed = await raw_crash(api)
    assert failed.status_code >= 500
    assert "WRONGTYPE" not in failed.text
    assert crash_points(influx_db) == []
    crash_dir = Path(identity_config.data_dir) / "crashes"
    assert stored(crash_dir) == []


async def test_a_crash_point_influxdb_refuses_undoes_the_dump_and_its_accounting(
    api: Api, influx_db: InfluxHelper, redis_client: Any, identity_config: Config, clock: FakeClock
) -> None:
    # A `details` field of another type in the same shard: InfluxDB refuses the point.
    line = f"log,type=other,level=info,origin=o details=1i {int(clock() * 1000)}"
    written = httpx.post(
        f"{influx_db.url}/write",
        params={"db": influx_db.database, "precision": "ms"},
        content=line,
        timeout=10,
    )
    assert written.status_code == 204, written.text
    failed = await raw_crash(api)
    assert failed.status_code >= 500
    assert "conflict" not in failed.text
    assert crash_points(influx_db) == []
    assert stored(Path(identity_config.data_dir) / "crashes") == []
    assert redis_client.hlen(SIZES) == 0
    assert int(redis_client.get(TOTAL) or 0) == 0
    assert int(redis_client.get(ANON_TOTAL) or 0) == 0
    assert redis_client.zcard(ANON) == 0
    assert redis_client.hlen(PENDING) == 0


# --- bounded review answers -------------------------------------------------

WHOLE_RANGE = {"start": "1970-01-01T00:00:00.000Z", "end": "2199-12-31T23:59:59.999Z"}


def write_lines(influx_db: InfluxHelper, lines: list[str]) -> None:
    """Points straight into InfluxDB: e.g. several in one nanosecond, which the API
    avoids but a wrapped sequence can make."""
    resp = httpx.post(
        f"{influx_db.url}/write",
        params={"db": influx_db.database, "precision": "ns"},
        content="\n".join(lines),
        timeout=10,
    )
    assert resp.status_code == 204, resp.text


def log_line(log_type: str, level: str, origin: str, point_uuid: str, ns: int) -> str:
    return (
        f'log,type={log_type},level={level},origin={origin} uuid="{point_uuid}",'
        f'message="m",details="",version="1.0.0",deleted=false {ns}'
    )


async def test_paging_with_limit_and_cursor_lists_every_point_once(
    api: Api, influx_db: InfluxHelper
) -> None:
    stamp = ms(T0)
    # 30 points a millisecond apart, and 5 more in one nanosecond (other levels).
    sent = [entry(type="p", time=stamp + i, message=str(i)) for i in range(30)]
    assert (await send(api, sent, api.admin)).status_code == 200
    tied_ns = (stamp + 10) * 1_000_000 + 500
    tied = [uuid7(stamp + 10) for _ in range(5)]
    levels = ["error", "warn", "debug", "trace", "nothing"]
    write_lines(
        influx_db, [log_line("p", lv, "o", u, tied_ns) for lv, u in zip(levels, tied, strict=True)]
    )
    everything = await api.client.simulate_get(
        "/api/logs/p", params={**WHOLE_RANGE, "limit": 10000}, headers=api.admin
    )
    assert len(everything.json) == 35
    for page_size in (1, 3, 7, 35, 36):
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {**WHOLE_RANGE, "limit": page_size}
        for _ in range(40):
            page = await api.client.simulate_get("/api/logs/p", params=params, headers=api.admin)
            assert page.status_code == 200, page.text
            assert len(page.json) <= page_size
            seen += page.json
            if len(page.json) < page_size:
                break
            params["cursor"] = page.json[-1]["uuid"]
        uuids = [p["uuid"] for p in seen]
        assert len(uuids) == len(set(uuids)) == 35, page_size
        assert uuids == [p["uuid"] for p in everything.json]
        assert set(tied) <= set(uuids)
    times = [p["time"] for p in everything.json]
    assert times == sorted(times, reverse=True)
    # The cursor is a point's uuid; one that names no point is refused.
    # Not a uuid: the document forbids it (400); a uuid of no point: refused (422).
    for bad, status in ((uuid7(stamp - 5), 422), ("nonsense", 400)):
        refused = await api.client.simulate_get(
            "/api/logs/p", params={**WHOLE_RANGE, "cursor": bad}, headers=api.admin
        )
        assert refused.status_code == status, refused.text
        assert "cursor" in refused.json["errors"]
    both = await api.client.simulate_get(
        "/api/logs/p", params={"cursor": tied[0], "offset": 2}, headers=api.admin
    )
    assert both.status_code == 422  # each fits the document, the two together do not


async def test_grouped_range_is_bounded_unless_a_coarser_interval_is_asked(
    api: Api, config: Config
) -> None:
    minute = dt.timedelta(minutes=1)
    await send(
        api,
        [
            entry(type="g", time=ms(T0 + 1 * minute)),
            entry(type="g", time=ms(T0 + 61 * minute)),
            entry(type="g", time=ms(T0 + 62 * minute)),
        ],
    )
    too_wide = await api.client.simulate_get(
        "/api/logs/g", params={**WHOLE_RANGE, "structure": "grouped"}, headers=api.admin
    )
    assert too_wide.status_code == 422
    limit = config.log_grouped_max_buckets
    assert str(limit) in too_wide.json["message"]
    assert "interval" in too_wide.json["errors"]
    # 10,000 five-minute intervals: about 34.7 days is fine, one interval more is not.
    start = dt.datetime(2023, 11, 1, tzinfo=dt.UTC)
    last = start + dt.timedelta(minutes=5 * limit) - dt.timedelta(milliseconds=1)
    span = {"start": start.isoformat(), "end": last.isoformat(), "structure": "grouped"}
    fits = await api.client.simulate_get("/api/logs/g", params=span, headers=api.admin)
    assert fits.status_code == 200
    assert len(fits.json) == limit
    assert fits.headers["x-interval-seconds"] == "300"
    over = {**span, "end": (last + dt.timedelta(minutes=5)).isoformat()}
    refused = await api.client.simulate_get("/api/logs/g", params=over, headers=api.admin)
    assert refused.status_code == 422

    hourly = await api.client.simulate_get(
        "/api/logs/g",
        params={
            "start": "2023-11-15T10:00:00Z",
            "end": "2023-11-15T12:59:59.999Z",
            "structure": "grouped",
            "interval": "1h",
        },
        headers=api.admin,
    )
    assert hourly.status_code == 200
    assert hourly.headers["x-interval-seconds"] == "3600"
    assert hourly.json == [
        {"time": "2023-11-15T10:00:00.000Z", "count": 1},
        {"time": "2023-11-15T11:00:00.000Z", "count": 2},
        {"time": "2023-11-15T12:00:00.000Z", "count": 0},
    ]
    centuries = await api.client.simulate_get(
        "/api/logs/g",
        params={**WHOLE_RANGE, "structure": "grouped", "interval": "3650d"},
        headers=api.admin,
    )
    assert centuries.status_code == 200
    assert sum(b["count"] for b in centuries.json) == 3
    assert centuries.headers["x-interval-seconds"] == str(3650 * 86400)
    empty = await api.client.simulate_get(
        "/api/logs/none",
        params={**WHOLE_RANGE, "structure": "grouped", "interval": "3650d"},
        headers=api.admin,
    )
    assert [b["time"] for b in empty.json] == [b["time"] for b in centuries.json]
    # Not the documented pattern: 400; the pattern, but no multiple of 5m: 422.
    for interval, status in (
        ("1m", 422), ("7m", 422), ("0h", 400), ("5", 400), ("h", 400), ("-5m", 400),
        ("36501d", 422), ("5m5m", 400),
    ):  # fmt: skip
        bad = await api.client.simulate_get(
            "/api/logs/g",
            params={"structure": "grouped", "interval": interval},
            headers=api.admin,
        )
        assert bad.status_code == status, interval
        assert "interval" in bad.json["errors"], interval


async def test_series_listing_pages_through_many_types(api: Api) -> None:
    names = [f"t{i:04d}" for i in range(1203)]
    for chunk in range(0, len(names), 1000):
        batch = [entry(type=name, time=ms(T0)) for name in names[chunk : chunk + 1000]]
        assert (await send(api, batch, api.admin)).status_code == 200
    series = await api.client.simulate_get("/api/logs", params=WHOLE_RANGE, headers=api.admin)
    assert series.status_code == 200
    assert series.json == [{"type": name, "count": 1} for name in names]


async def test_the_worker_killing_grouped_request_is_refused_and_the_worker_lives(
    identity_config: Config, tmp_path: Path
) -> None:
    with run_service(identity_config, tmp_path) as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            token = (
                await http.post(
                    "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
                )
            ).json()["token"]
            device = (
                await http.post(
                    "/api/devices", json={"name": "Laptop"}, headers={"Authorization": SECRET_KEY}
                )
            ).json()["token"]
            pids = sorted(svc.worker_pids())
            sent = {
                "type": "t",
                "level": "info",
                "data": {"origin": "o", "version": "1.0.0", "message": "m", "time": 10**12},
            }
            assert (await http.post("/api/logs", json=sent)).status_code == 200

            async def beat() -> httpx.Response:
                async with httpx.AsyncClient(base_url=svc.url, timeout=30) as other:
                    return await other.post("/api/beat", headers={"Authorization": device})

            began = time.monotonic()
            # The request, for a type with points and for one without.
            for log_type in ("t", "none"):
                answer, acked = await asyncio.gather(
                    http.get(
                        f"/api/logs/{log_type}",
                        params={**WHOLE_RANGE, "structure": "grouped"},
                        headers=bearer(token),
                        timeout=5,
                    ),
                    beat(),
                )
                assert answer.status_code == 422, answer.text
                assert str(identity_config.log_grouped_max_buckets) in answer.json()["message"]
                assert acked.status_code == 200 and int(acked.text) > 0
            assert time.monotonic() - began < 5
            assert sorted(svc.worker_pids()) == pids
            # Listings stream: chunked, no Content-Length of a body built in memory.
            listing = await http.get(
                "/api/logs/t", params={**WHOLE_RANGE, "limit": 10000}, headers=bearer(token)
            )
            assert listing.status_code == 200
            assert listing.headers.get("transfer-encoding") == "chunked"
            assert [p["type"] for p in listing.json()] == ["t"]


# --- the crash store: quotas, budget, empty uploads (real gunicorn) -----------

KIB = 1024


async def login(http: httpx.AsyncClient) -> dict[str, str]:
    resp = await http.post(
        "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    return bearer(resp.json()["token"])


async def upload(
    http: httpx.AsyncClient, dump: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await http.post(
        "/api/logs/crash/sensor",
        data={"prod": "sensor-win", "ver": "1.4.2"},
        files={"upload_file_minidump": ("dump.dmp", dump, "application/octet-stream")},
        headers=headers or {},
    )


def stored(crash_dir: Path) -> list[str]:
    return sorted(p.name for p in crash_dir.iterdir()) if crash_dir.exists() else []


async def test_anonymous_crash_uploads_are_limited_per_address_by_count_and_bytes(
    identity_config: Config, tmp_path: Path
) -> None:
    config = identity_config.replace(
        crash_anonymous_per_hour=10, crash_anonymous_bytes_per_hour=200 * KIB
    )
    crash_dir = Path(config.data_dir) / "crashes"
    with run_service(config, tmp_path) as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            for _ in range(3):
                assert (await upload(http, b"a" * 60 * KIB)).status_code == 200
            # 240 KiB would pass the 200 KiB an address may store per hour.
            over = await upload(http, b"b" * 60 * KIB)
            assert over.status_code == 429, over.text
            assert int(over.headers["retry-after"]) > 3000
            assert "message" in over.json()
            assert len(stored(crash_dir)) == 3
            # The refused upload's bytes were given back: 190 KiB fit.
            assert (await upload(http, b"c" * 10 * KIB)).status_code == 200
            for _ in range(5):  # uploads 6 to 10 of this hour (the refused one counts)
                assert (await upload(http, b"d")).status_code == 200
            eleventh = await upload(http, b"e")
            assert eleventh.status_code == 429
            assert len(stored(crash_dir)) == 9
            # A token is not anonymous: its uploads are not held to those quotas.
            admin = await login(http)
            assert (await upload(http, b"f" * 60 * KIB, admin)).status_code == 200
            assert len(stored(crash_dir)) == 10


async def test_crash_store_budget_evicts_oldest_anonymous_dumps_then_507(
    identity_config: Config, tmp_path: Path, redis_client: Any
) -> None:
    config = identity_config.replace(crash_store_bytes=200 * KIB, crash_anonymous_per_hour=100)
    crash_dir = Path(config.data_dir) / "crashes"
    dumps = {name: name.encode() * (60 * KIB // len(name)) for name in
             ("user1", "anon1", "anon2", "anon3", "user2", "user3", "user4", "user5")}  # fmt: skip
    ids: dict[str, str] = {}
    with run_service(config, tmp_path) as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            admin = await login(http)

            async def put(name: str) -> httpx.Response:
                resp = await upload(http, dumps[name], admin if name.startswith("user") else None)
                if resp.status_code == 200:
                    ids[name] = resp.text
                return resp

            async def present() -> set[str]:
                have = set()
                for name, point_uuid in ids.items():
                    got = await http.get(f"/api/logs/crash/{point_uuid}", headers=admin)
                    if got.status_code == 200:
                        assert got.content == dumps[name]
                        have.add(name)
                    else:
                        assert got.status_code == 404
                return have

            for name in ("user1", "anon1", "anon2"):
                assert (await put(name)).status_code == 200
            # Full (180 of 200 KiB): each new dump evicts the oldest anonymous one.
            assert (await put("anon3")).status_code == 200
            assert await present() == {"user1", "anon2", "anon3"}
            assert (await put("user2")).status_code == 200
            assert (await put("user3")).status_code == 200
            assert await present() == {"user1", "user2", "user3"}
            # Nothing anonymous is left to evict: 507, and nothing is written.
            before = stored(crash_dir)
            full = await put("user4")
            assert full.status_code == 507, full.text
            assert "full" in full.json()["message"]
            assert stored(crash_dir) == before
            assert await present() == {"user1", "user2", "user3"}

    # An operator deletes a dump while the service is down: the restarted service
    # counts the files, not its old totals, so there is room for one more again.
    next(crash_dir.glob(f"{ids['user1']}*")).unlink()
    with run_service(config, tmp_path) as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            admin = await login(http)
            assert (await put("user4")).status_code == 200
            assert (await put("user5")).status_code == 507
    # Redis loses everything: the accounting is rebuilt from the files at start.
    redis_client.flushall()
    with run_service(config, tmp_path) as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            admin = await login(http)
            assert (await put("user5")).status_code == 507
            assert await present() == {"user2", "user3", "user4"}


async def test_uploads_without_a_dump_are_400_and_write_nothing(
    identity_config: Config, tmp_path: Path, influx_db: InfluxHelper
) -> None:
    crash_dir = Path(identity_config.data_dir) / "crashes"
    multipart = {"Content-Type": "multipart/form-data; boundary=XyZ"}
    only_fields = (
        b'--XyZ\r\nContent-Disposition: form-data; name="prod"\r\n\r\nsensor-win\r\n--XyZ--\r\n'
    )
    with run_service(identity_config, tmp_path) as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            for content, headers in (
                (b"--XyZ--\r\n", multipart),
                (b"", multipart),
                (only_fields, multipart),
                (b"", {"Content-Type": "application/octet-stream"}),
                (b"", {}),
            ):
                resp = await http.post("/api/logs/crash/sensor", content=content, headers=headers)
                assert resp.status_code == 400, (content, resp.text)
                assert "message" in resp.json()
            empty_part = await upload(http, b"")
            assert empty_part.status_code == 400
            assert "upload_file_minidump" in empty_part.json()["errors"]
            assert stored(crash_dir) == []
            assert influx_db.count("log") == 0
            # A real dump still goes through, and downloads (streamed from disk).
            dump = bytes(range(256)) * 100
            point_uuid = (await upload(http, dump)).text
            download = await http.get(f"/api/logs/crash/{point_uuid}", headers=await login(http))
            assert download.status_code == 200
            assert download.content == dump
            assert download.headers["content-type"] == "application/octet-stream"
            assert download.headers["content-length"] == str(len(dump))
            assert f"{point_uuid}.dmp" in download.headers["content-disposition"]


def test_scan_counts_dumps_and_removes_stale_partial_files(tmp_path: Path) -> None:
    user, anon, fresh, stale = (uuid7(ms(T0) + i) for i in range(4))
    (tmp_path / f"{user}.dmp").write_bytes(b"u" * 3)
    (tmp_path / f"{anon}.anon.dmp").write_bytes(b"a" * 5)
    (tmp_path / f"{fresh}.part").write_bytes(b"p")
    (tmp_path / f"{stale}.anon.part").write_bytes(b"p")
    os.utime(tmp_path / f"{stale}.anon.part", (1000, 1000))
    (tmp_path / "notes.txt").write_text("not a dump")
    (tmp_path / f"{uuid.uuid4()}.dmp").write_bytes(b"not a v7 uuid")
    found = sorted(scan(tmp_path, stale_before=2000), key=lambda d: d.uuid)
    assert found == [StoredDump(user, 3, False), StoredDump(anon, 5, True)]
    assert not (tmp_path / f"{stale}.anon.part").exists()
    assert (tmp_path / f"{fresh}.part").exists()
    assert scan(tmp_path / "missing", 0) == []


def test_bucket_count_and_spans() -> None:
    assert bucket_count(0, 299_999, 300_000) == 1
    assert bucket_count(299_999, 300_000, 300_000) == 2
    assert bucket_count(0, 10_000 * 300_000 - 1, 300_000) == 10_000
    assert describe_span(300) == "5 minutes"
    assert describe_span(3_000_000) == "34.7 days"
    assert describe_span(3600) == "1 hour"
    assert describe_span(59) == "59 seconds"
    assert describe_span(1) == "1 second"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("log_grouped_max_buckets", "0"),
        ("log_page_points", "0"),
        ("log_page_points", "10001"),
        ("crash_store_bytes", "1000"),  # below crash_max_bytes: the largest dump never fits
        ("crash_anonymous_per_hour", "0"),
        ("crash_anonymous_bytes_per_hour", "0"),
    ],
)
def test_log_and_crash_limits_are_validated(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"SCREENAWARE_{key.upper()}"):
        Config.load(environ={f"SCREENAWARE_{key.upper()}": value})
    assert getattr(Config.load(environ={}), key) > 0


async def test_concurrent_uploads_over_both_workers_share_one_budget(
    identity_config: Config, tmp_path: Path
) -> None:
    config = identity_config.replace(crash_store_bytes=200 * KIB)
    crash_dir = Path(config.data_dir) / "crashes"
    with run_service(config, tmp_path) as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            admin = await login(http)

        async def one(i: int) -> int:
            # A fresh connection each, so the kernel spreads them over both workers.
            async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
                return (await upload(client, bytes([i]) * 60 * KIB, admin)).status_code

        codes = await asyncio.gather(*(one(i) for i in range(8)))
    # Dumps of users are never evicted: three fit in 200 KiB, the others are 507.
    assert sorted(codes) == [200] * 3 + [507] * 5
    sizes = [p.stat().st_size for p in crash_dir.iterdir()]
    assert sizes == [60 * KIB] * 3


async def test_a_web_app_elsewhere_may_read_the_interval_header(
    identity_config: Config, clock: FakeClock
) -> None:
    config = identity_config.replace(cors_origins="https://app.example.org")
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        token = (
            await client.simulate_post(
                "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
        ).json["token"]
        result = await client.simulate_get(
            "/api/logs/a",
            params={"structure": "grouped", "interval": "1h"},
            headers={**bearer(token), "Origin": "https://app.example.org"},
        )
    assert result.status_code == 200
    exposed = result.headers["access-control-expose-headers"].lower()
    assert "x-interval-seconds" in exposed
    assert result.headers["x-interval-seconds"] == "3600"


async def test_a_sync_while_dumps_are_stored_keeps_every_one_in_the_accounting(
    config: Config, tmp_path: Path
) -> None:
    # A worker that (re)starts under load rebuilds the accounting from the files while
    # the others store dumps: one stored while the files were being scanned must stay
    # counted, or the store could pass its budget.
    backends = Backends(config)
    await backends.open()
    directory = tmp_path / "crashes"
    directory.mkdir()
    for i in range(3000):  # a scan that takes a while
        (directory / f"{uuid7(1_700_000_000_000 + i)}.dmp").write_bytes(b"x" * 10)

    async def record(*_: Any) -> None:
        return None

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        yield data

    limits = CrashLimits(max_bytes=1 << 20, store_bytes=1 << 40, anonymous_per_hour=10,
                         anonymous_bytes_per_hour=1 << 30)  # fmt: skip
    store = CrashStore(directory, backends.get_redis, time.time, limits, record)
    redis = backends.get_redis()
    try:
        for _ in range(5):
            dumps = [store.store({}, chunks(b"d" * 100), "user", None, 100) for _ in range(20)]
            await asyncio.gather(store.sync(), *dumps)
            files = [p for p in directory.iterdir() if not p.name.endswith(".part")]
            assert await redis.hlen(SIZES) == len(files)
            assert int(await redis.get(TOTAL) or 0) == sum(p.stat().st_size for p in files)
    finally:
        await backends.close()

"""Streams, substreams, corrections and learning against the real servers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import redis

from screenaware.storage.ids import uuid7
from tests.conftest import Api, FakeClock, InfluxHelper

UTC = dt.UTC
P1 = "0fcdd1ec-05f7-49cc-931f-530c2c2f085c"
P2 = "98254cc5-b623-43b6-8537-d9e0122cf975"
P3 = "fe79e96c-a8ff-4ead-90eb-2c799db17439"
DAY = {"start": "2023-11-14T00:00:00.000Z", "end": "2023-11-14T23:59:59.999Z", "tz": "UTC"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2023, 11, 15, 12, 0, tzinfo=UTC).timestamp())


def at(hour: int, minute: int, second: int = 0, day: int = 14, month: int = 11) -> dt.datetime:
    return dt.datetime(2023, month, day, hour, minute, second, tzinfo=UTC)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", ".000Z")


def snaps(
    start: dt.datetime, minutes: float, app: str, title: str, path: str | None = None
) -> list[dict[str, Any]]:
    """10-second snapshots from ``start`` for ``minutes``."""
    out = []
    for i in range(int(minutes * 6)):
        end = start + dt.timedelta(seconds=10 * (i + 1))
        window: dict[str, Any] = {"processName": app, "title": title, "isFocused": True}
        if path:
            window["documents"] = [{"path": path, "title": title}]
        out.append({"timeTaken": iso(end), "windows": [window]})
    return out


async def setup_user(api: Api, email: str = "ann@example.org") -> dict[str, str]:
    headers = await api.new_user(email)
    for uuid, name, keyword in ((P1, "influx", "influxdb"), (P2, "sa", "screenaware"),
                                (P3, "unruled", None)):  # fmt: skip
        body = {"uuid": uuid, "name": name, "keywords": [keyword] if keyword else []}
        assert (
            await api.client.simulate_post("/api/projects", json=body, headers=headers)
        ).status_code == 201
    return headers


async def post(api: Api, headers: dict[str, str], batch: list[dict[str, Any]]) -> None:
    result = await api.client.simulate_post("/api/snapshots", json=batch, headers=headers)
    assert result.status_code == 200, result.text


async def get(api: Api, headers: dict[str, str], path: str, **params: Any) -> Any:
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
    result = await api.client.simulate_get(path, params=query, headers=headers)
    assert result.status_code == 200, result.text
    return result.json


@pytest.fixture
async def day(api: Api) -> dict[str, str]:
    """10:00-10:05 P1, 10:05-10:06 P2 (short), 10:06-10:10 P1, 10:10-10:13 P2 (long),
    idle until 10:25, 10:25-10:30 P1."""
    headers = await setup_user(api)
    batch = (
        snaps(at(10, 0), 5, "code", "influxdb tuning")
        + snaps(at(10, 5), 1, "chrome", "screenaware PR", "https://github.com/o/r")
        + snaps(at(10, 6), 4, "code", "influxdb tuning")
        + snaps(at(10, 10), 3, "chrome", "screenaware PR", "https://github.com/o/r")
        + snaps(at(10, 25), 5, "code", "influxdb tuning")
    )
    # Out of order, as offline sensors send: the result must not care.
    await post(api, headers, batch[40:])
    await post(api, headers, batch[:40])
    return headers


async def test_streams_follow_the_rules(api: Api, day: dict[str, str]) -> None:
    streams = await get(api, day, "/api/streams", **DAY)
    assert [(s["time"], s["durationMs"], s["projectUuid"]) for s in streams] == [
        ("2023-11-14T10:00:00.000Z", 600_000, P1),
        ("2023-11-14T10:10:00.000Z", 180_000, P2),
        ("2023-11-14T10:25:00.000Z", 300_000, P1),
    ]
    assert all(set(s) == {"uuid", "time", "durationMs", "projectUuid"} for s in streams)
    again = await get(api, day, "/api/streams", **DAY)
    assert [s["uuid"] for s in again] == [s["uuid"] for s in streams]
    # More data later the same day keeps the earlier streams' uuids.
    await post(api, day, snaps(at(15, 0), 2, "code", "influxdb"))
    later = await get(api, day, "/api/streams", **DAY)
    assert [s["uuid"] for s in later[:3]] == [s["uuid"] for s in streams]
    assert len(later) == 4


async def test_gap_streams_sorting_filters_and_pages(api: Api, day: dict[str, str]) -> None:
    with_gaps = await get(api, day, "/api/streams", **DAY, showGaps=True)
    assert [(s["time"], s["durationMs"], s.get("isGap", False)) for s in with_gaps] == [
        ("2023-11-14T10:00:00.000Z", 600_000, False),
        ("2023-11-14T10:10:00.000Z", 180_000, False),
        ("2023-11-14T10:13:00.000Z", 720_000, True),
        ("2023-11-14T10:25:00.000Z", 300_000, False),
    ]
    assert "projectUuid" not in with_gaps[2]
    desc = await get(api, day, "/api/streams", **DAY, sort="time DESC")
    assert [s["time"][11:16] for s in desc] == ["10:25", "10:10", "10:00"]
    assert len(await get(api, day, "/api/streams", **DAY, minDuration=300_000)) == 2
    only = await get(api, day, "/api/streams", **DAY, projectUuid=P2)
    assert [s["projectUuid"] for s in only] == [P2]
    page = await get(api, day, "/api/streams", **DAY, limit=1, offset=1)
    assert [s["time"][11:16] for s in page] == ["10:10"]
    expanded = await get(api, day, "/api/streams", **DAY, expanded=True)
    first = expanded[0]
    assert [a["durationMs"] for a in first["applications"]] == [540_000, 60_000]
    assert first["baseDocuments"] == [{"baseDocumentPath": "github.com", "durationMs": 60_000}]
    assert first["titles"][0] == {"title": "influxdb tuning", "durationMs": 540_000}
    by_day = await get(api, day, "/api/streams", **DAY, groupByDay=True)
    assert list(by_day) == ["2023-11-14"] and len(by_day["2023-11-14"]) == 3


async def test_substreams(api: Api, day: dict[str, str]) -> None:
    subs = await get(api, day, "/api/substreams", **DAY)
    assert [(s["time"][11:16], s["durationMs"], s["baseDocumentPath"]) for s in subs] == [
        ("10:00", 300_000, None),
        ("10:05", 60_000, "github.com"),
        ("10:06", 240_000, None),
        ("10:10", 180_000, "github.com"),
        ("10:25", 300_000, None),
    ]
    second = subs[1]
    assert second["projectUuid"] == P2
    assert second["projectRelationReason"] == "keyword 'screenaware' was found in window title"
    assert set(second) == {
        "uuid", "time", "durationMs", "projectUuid", "categoryUuid", "applicationUuid",
        "baseDocumentPath", "projectRelationReason",
    }  # fmt: skip
    assert len(await get(api, day, "/api/substreams", **DAY, minDuration=240_000)) == 3
    desc = await get(api, day, "/api/substreams", **DAY, sort="time DESC", limit=2)
    assert [s["time"][11:16] for s in desc] == ["10:25", "10:10"]


async def test_midnight_in_the_users_zone_splits_streams(api: Api) -> None:
    headers = await setup_user(api, "night@example.org")
    await api.client.simulate_put(
        "/api/users/me", json={"timezone": "Europe/Berlin"}, headers=headers
    )
    # 23:55-00:05 in Berlin = 22:55-23:05 UTC.
    await post(api, headers, snaps(at(22, 55), 10, "code", "influxdb"))
    span = {"start": "2023-11-14T22:00:00.000Z", "end": "2023-11-15T22:59:59.999Z"}
    streams = await get(api, headers, "/api/streams", **span)
    assert [(s["time"], s["durationMs"]) for s in streams] == [
        ("2023-11-14T22:55:00.000Z", 300_000),
        ("2023-11-14T23:00:00.000Z", 300_000),
    ]
    by_day = await get(api, headers, "/api/streams", **span, groupByDay=True)
    assert list(by_day) == ["2023-11-14", "2023-11-15"]
    utc = await get(api, headers, "/api/streams", **span, tz="UTC")
    assert len(utc) == 1


async def test_dst_day(api: Api) -> None:
    headers = await setup_user(api, "dst@example.org")
    # 29 Oct 2023 in Berlin has 25 hours; 01:00-01:10 UTC is 02:00-02:10 CET.
    await post(api, headers, snaps(at(1, 0, day=29, month=10), 10, "code", "influxdb"))
    streams = await get(
        api, headers, "/api/streams", tz="Europe/Berlin",
        start="2023-10-28T22:00:00.000Z", end="2023-10-29T22:59:59.999Z",
    )  # fmt: skip
    assert [(s["time"], s["durationMs"]) for s in streams] == [
        ("2023-10-29T01:00:00.000Z", 600_000)
    ]


async def test_a_correction_moves_time_and_teaches(
    api: Api, day: dict[str, str], influx_db: InfluxHelper
) -> None:
    streams = await get(api, day, "/api/streams", **DAY)
    long_p2 = streams[1]
    result = await api.client.simulate_put(
        f"/api/stream/{long_p2['uuid']}/project", json={"projectUuid": P3}, headers=day
    )
    assert result.status_code == 200 and result.json == {"ok": True}
    times = await get(api, day, "/api/times", **DAY, groupBy="projectUuid")
    assert {k: v["sum"] for k, v in times["grouped"].items()} == {
        P1: 840_000, P2: 60_000 + 180_000 - 180_000, P3: 180_000,
    }  # fmt: skip
    after = await get(api, day, "/api/streams", **DAY)
    assert after[1]["uuid"] == long_p2["uuid"] and after[1]["projectUuid"] == P3
    subs = await get(api, day, "/api/substreams", **DAY)
    assert subs[3]["projectRelationReason"] == "corrected by user"
    # Nothing was deleted: the ledger grew by a reversing and a new entry per snapshot.
    assert influx_db.count("activity") == 108 + 2 * 18
    assert influx_db.count("window") == 108
    # What was learned: github.com now means P3, for snapshots no rule claims.
    learned = await get(api, day, f"/api/projects/{P3}/associations")
    assert {"kind": "doc", "value": "github.com", "count": 1} in learned
    await post(
        api, day, snaps(at(16, 0), 0.5, "chrome", "a pull request", "https://github.com/x/y")
    )
    await post(
        api, day, snaps(at(17, 0), 0.5, "chrome", "influxdb issue", "https://github.com/x/y")
    )
    late = await get(
        api, day, "/api/substreams", start=iso(at(16, 0)), end=iso(at(18, 0)), tz="UTC"
    )
    assert [(s["projectUuid"], s["projectRelationReason"]) for s in late] == [
        (P3, "learned from 1 correction: 'github.com'"),
        (P1, "keyword 'influxdb' was found in window title"),  # explicit rules win
    ]


async def test_corrections_converge_and_can_be_forgotten(api: Api, day: dict[str, str]) -> None:
    streams = await get(api, day, "/api/streams", **DAY)
    target = streams[1]["uuid"]
    # Back and forth (P1 is left out: the stream would merge with its P1 neighbour).
    for project in (P3, P2, P3):
        result = await api.client.simulate_put(
            f"/api/streams/{target}/project", json={"projectUuid": project}, headers=day
        )
        assert result.status_code == 200
    assert (await get(api, day, "/api/streams", **DAY))[1]["projectUuid"] == P3
    learned = await get(api, day, f"/api/projects/{P3}/associations")
    assert {"kind": "doc", "value": "github.com", "count": 1} in learned
    assert await get(api, day, f"/api/projects/{P2}/associations") == []
    times = await get(api, day, "/api/times", **DAY, groupBy="projectUuid")
    assert times["grouped"][P3]["sum"] == 180_000 and times["sum"] == 1_080_000
    forgot = await api.client.simulate_delete(f"/api/projects/{P3}/associations", headers=day)
    assert forgot.json["ok"] is True and forgot.json["forgotten"] >= 1
    assert await get(api, day, f"/api/projects/{P3}/associations") == []
    # Clearing the project: the stream has none now.
    await api.client.simulate_put(
        f"/api/stream/{target}/project", json={"projectUuid": None}, headers=day
    )
    assert (await get(api, day, "/api/streams", **DAY))[1]["projectUuid"] is None


async def test_correction_errors_and_isolation(api: Api, day: dict[str, str]) -> None:
    target = (await get(api, day, "/api/streams", **DAY))[0]["uuid"]
    other = await api.new_user("mallory@example.org")
    for headers, body, status in (
        (other, {"projectUuid": P1}, 404),  # someone else's stream does not exist for them
        (day, {"projectUuid": "00000000-0000-4000-8000-000000000000"}, 422),
        (day, {}, 400),
        (day, {"projectUuid": "nope"}, 400),
    ):
        result = await api.client.simulate_put(
            f"/api/stream/{target}/project", json=body, headers=headers
        )
        assert result.status_code == status, body
    for missing in (uuid7(1_699_956_000_000), "garbage"):
        result = await api.client.simulate_put(
            f"/api/stream/{missing}/project", json={"projectUuid": P1}, headers=day
        )
        assert result.status_code == 404
    assert await get(api, other, "/api/streams", **DAY) == []
    assert await get(api, other, "/api/substreams", **DAY) == []
    foreign = await api.client.simulate_get(f"/api/projects/{P1}/associations", headers=other)
    assert foreign.status_code == 404


async def test_days_are_cached_until_written(
    api: Api, day: dict[str, str], redis_client: redis.Redis
) -> None:
    first = await get(api, day, "/api/streams", **DAY)
    assert len(redis_client.keys("{u:*}:sess:*")) == 1  # the day's streams
    await get(api, day, "/api/substreams", **DAY)
    keys = sorted(redis_client.keys("{u:*}:sess:*"))
    assert len(keys) == 3  # ... and, from one fuller query, its expanded streams and substreams
    expanded = await get(api, day, "/api/streams", **DAY, expanded=True)
    assert sorted(redis_client.keys("{u:*}:sess:*")) == keys  # served from the cache
    # The light and the full computation agree on the streams themselves.
    assert [{k: s[k] for k in first[0]} for s in expanded] == first
    await post(api, day, snaps(at(20, 0), 1, "code", "influxdb"))
    streams = await get(api, day, "/api/streams", **DAY)
    assert len(streams) == 4
    assert len(redis_client.keys("{u:*}:sess:*")) == 4  # a new entry for the new state


async def test_parameters_are_validated(api: Api, day: dict[str, str]) -> None:
    for params in ({"sort": "project"}, {"limit": "0"}, {"limit": "10001"}, {"minDuration": "-1"},
                   {"projectUuid": "x"}, {"tz": "Nowhere/Land"}):  # fmt: skip
        result = await api.client.simulate_get("/api/streams", params=params, headers=day)
        assert result.status_code == 400, params
    after = {"start": "2023-11-15T00:00:00Z", "end": "2023-11-14T00:00:00Z"}
    result = await api.client.simulate_get("/api/streams", params=after, headers=day)
    assert result.status_code == 422 and "start" in result.json["errors"]
    assert (await api.client.simulate_get("/api/streams")).status_code == 401

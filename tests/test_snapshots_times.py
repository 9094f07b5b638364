"""Snapshot ingest and /times against the real InfluxDB and Redis."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
import redis
from falcon import testing

from screenaware.activity.attribution import application_uuid, category_uuid
from screenaware.activity.catalogue import BUILTIN_CATEGORIES
from tests.conftest import Api, FakeClock, InfluxHelper

UTC = dt.UTC

DOC_EXAMPLE: dict[str, Any] = {
    "created": "2014-10-27T22:09:25.4864278+01:00",
    "durationMs": 8800,
    "windows": [
        {
            "documents": [],
            "processName": "devenv",
            "isFocused": True,
            "screenPercentage": 0.5052083333333334,
            "title": "ScreenAware (Running) - Microsoft Visual Studio",
            "visiblePercentage": 0.9897959183673469,
            "tags": {"firstTag": 5, "screenaware": 3, "thirdTag": 2},
        },
        {
            "documents": [
                {
                    "path": "http://graphicriver.net/category/presentation-templates/powerpoint",
                    "title": "1100+ Powerpoint Templates | GraphicRiver - Google Chrome",
                }
            ],
            "processName": "chrome",
            "screenPercentage": 0.4895833333333333,
            "title": "1100+ Powerpoint Templates | GraphicRiver - Google Chrome",
            "visiblePercentage": 0.9791666666666666,
        },
    ],
}


def at(text: str) -> str:
    return text.replace("+00:00", "Z")


def snap(
    end: str, process: str, title: str = "", path: str | None = None, **extra: Any
) -> dict[str, Any]:
    window: dict[str, Any] = {"processName": process, "title": title, "isFocused": True}
    if path:
        window["documents"] = [{"path": path, "title": title}]
    return {"timeTaken": end, "durationMs": 10000, "windows": [window], **extra}


async def post(api: Api, headers: dict[str, str], body: object) -> testing.Result:
    return await api.client.simulate_post("/api/snapshots", json=body, headers=headers)


async def times(api: Api, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
    result = await api.client.simulate_get("/api/times", params=query, headers=headers)
    assert result.status_code == 200, result.text
    return dict(result.json)


@pytest.fixture
def clock() -> FakeClock:
    # Overrides the shared clock before any token is issued.
    return FakeClock(dt.datetime(2023, 11, 15, 12, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def now(clock: FakeClock) -> FakeClock:
    return clock


# --- ingest --------------------------------------------------------------


async def test_documented_example_is_stored_as_windows_and_one_activity(
    api: Api, now: FakeClock, influx_db: InfluxHelper
) -> None:
    headers = await api.new_user("ann@example.org")
    result = await post(api, headers, DOC_EXAMPLE)
    assert result.status_code == 200 and result.json == {"ok": True}
    windows = influx_db.query('SELECT * FROM "window"')
    assert [(w["idx"], w["focused"], w["process"]) for w in windows] == [
        ("0", "true", "devenv"),
        ("1", "false", "chrome"),
    ]
    assert windows[1]["title"] == DOC_EXAMPLE["windows"][1]["title"]
    assert windows[0]["duration_ms"] == 8800
    activity = influx_db.query('SELECT * FROM "activity"')
    assert len(activity) == 1
    row = activity[0]
    # No time given: it ends on receipt.
    assert int(row["time"]) == (int(now.now * 1000) - 8800) * 1_000_000
    assert row["application"] == application_uuid("devenv")
    assert row["category"] == category_uuid("development")
    assert row["project"] == "none"
    assert row["duration_ms"] == 8800
    assert row["process"] == "devenv"
    assert row["snapshot"] == windows[0]["snapshot"]
    apps = (await api.client.simulate_get("/api/applications", headers=headers)).json
    assert apps == [{"uuid": application_uuid("devenv"), "name": "devenv"}]


async def test_start_comes_from_time_taken_or_time(
    api: Api, now: FakeClock, influx_db: InfluxHelper
) -> None:
    headers = await api.new_user("bob@example.org")
    batch = [
        {
            "timeTaken": "2023-11-15T10:00:30.000Z",
            "durationMs": 4000,
            "windows": [{"processName": "a"}],
        },
        # Apart from a: where snapshots overlap, the later one owns the overlap.
        {"time": "2023-11-15T11:00:00+01:00", "windows": [{"processName": "b"}]},
    ]
    assert (await post(api, headers, batch)).status_code == 200
    rows = influx_db.query('SELECT duration_ms, process FROM "activity"')
    starts = {r["process"]: int(r["time"]) // 1_000_000 for r in rows}
    assert starts["a"] == int(dt.datetime(2023, 11, 15, 10, 0, 26, tzinfo=UTC).timestamp() * 1000)
    assert starts["b"] == int(dt.datetime(2023, 11, 15, 10, 0, tzinfo=UTC).timestamp() * 1000)
    assert {r["process"]: r["duration_ms"] for r in rows} == {"a": 4000, "b": 10000}


async def test_a_snapshot_sent_twice_is_stored_once(
    api: Api, now: FakeClock, influx_db: InfluxHelper
) -> None:
    headers = await api.new_user("cat@example.org")
    one = snap("2023-11-15T10:00:10Z", "code", "x")
    assert (await post(api, headers, one)).status_code == 200
    assert (await post(api, headers, [one, one])).status_code == 200
    assert influx_db.count("activity") == 1
    assert influx_db.count("window") == 1
    body = await times(api, headers, start="2023-11-15T00:00:00Z", end="2023-11-15T23:59:59.999Z")
    assert body["sum"] == 10000


async def test_windowless_snapshots_are_away(
    api: Api, now: FakeClock, influx_db: InfluxHelper
) -> None:
    headers = await api.new_user("dan@example.org")
    assert (await post(api, headers, {"timeTaken": "2023-11-15T10:00:00Z"})).status_code == 200
    assert influx_db.count("activity") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"durationMs": "10"}, "durationMs"),
        ({"durationMs": 0}, "durationMs"),
        ({"durationMs": 10001}, "durationMs"),
        ({"timeTaken": "yesterday"}, "timeTaken"),
        ({"time": 12345}, "time"),
        ({"windows": "none"}, "windows"),
        ({"windows": [{"isFocused": "maybe"}]}, "windows"),
        ({"windows": [{"screenPercentage": 1.5}]}, "windows"),
        ({"windows": [{"visiblePercentage": -0.1}]}, "windows"),
        ({"windows": [{"tags": {"a": "heavy"}}]}, "windows"),
        ({"windows": [{"documents": [{"title": "no path"}]}]}, "windows"),
        ({"windows": [{"title": 5}]}, "windows"),
        # Strict types (issue 11.5): 0 is no boolean, "0.5" no number.
        ({"windows": [{"isFocused": 0}]}, "windows"),
        ({"windows": [{"screenPercentage": "0.5"}]}, "windows"),
        ({"windows": [{"tags": {"": 1.0}}]}, "windows"),
        ({"timeTaken": "0199-01-01T00:00:00Z"}, "timeTaken"),
        ({"timeTaken": "2023-02-29T00:00:00Z"}, "timeTaken"),
    ],
)
async def test_invalid_snapshots_are_400_and_store_nothing(
    api: Api, now: FakeClock, influx_db: InfluxHelper, body: dict[str, Any], field: str
) -> None:
    headers = await api.new_user("eve@example.org")
    good = snap("2023-11-15T10:00:10Z", "code")
    result = await post(api, headers, [good, body])
    assert result.status_code == 400, result.text
    assert field in result.json["errors"]["1"], result.json
    single = await post(api, headers, body)
    assert single.status_code == 400
    assert field in single.json["errors"]
    assert influx_db.count("window") == 0 and influx_db.count("activity") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timeTaken": "2023-11-16T12:00:01Z"}, "timeTaken"),  # > a day ahead
        ({"time": "2023-11-17T00:00:00Z"}, "time"),
    ],
)
async def test_snapshots_in_the_future_are_422_and_store_nothing(
    api: Api, now: FakeClock, influx_db: InfluxHelper, body: dict[str, Any], field: str
) -> None:
    """Valid by the document, refused for their content: 422."""
    headers = await api.new_user("eve@example.org")
    good = snap("2023-11-15T10:00:10Z", "code")
    result = await post(api, headers, [good, body])
    assert result.status_code == 422, result.text
    assert field in result.json["errors"]["1"], result.json
    single = await post(api, headers, body)
    assert single.status_code == 422
    assert field in single.json["errors"]
    assert influx_db.count("window") == 0 and influx_db.count("activity") == 0


async def test_batches_are_limited(api: Api, now: FakeClock) -> None:
    headers = await api.new_user("fay@example.org")
    result = await post(api, headers, [snap("2023-11-15T10:00:10Z", "x")] * 1001)
    assert result.status_code == 400
    assert "1000" in result.json["message"]
    assert (await api.client.simulate_post("/api/snapshots", json=[{}])).status_code == 401


async def test_project_rules_attribute_snapshots(
    api: Api, now: FakeClock, influx_db: InfluxHelper
) -> None:
    headers = await api.new_user("gus@example.org")
    await api.client.simulate_post(
        "/api/projects",
        json={
            "uuid": "0fcdd1ec-05f7-49cc-931f-530c2c2f085c",
            "name": "P",
            "localPaths": ["/myProjectFolder"],
        },
        headers=headers,
    )
    body = snap("2023-11-15T10:00:10Z", "code", "main.py", "/myProjectFolder/src/main.py")
    assert (await post(api, headers, body)).status_code == 200
    row = influx_db.query('SELECT * FROM "activity"')[0]
    assert row["project"] == "0fcdd1ec-05f7-49cc-931f-530c2c2f085c"
    assert row["reason"] == "file part '/myprojectfolder' was found in document path"
    assert row["document"] == "main.py"


async def test_user_categories_win_over_built_ins(
    api: Api, now: FakeClock, influx_db: InfluxHelper
) -> None:
    headers = await api.new_user("hal@example.org")
    made = await api.client.simulate_post(
        "/api/categories",
        json={"name": "Learning", "domains": ["YouTube.com"], "applications": []},
        headers=headers,
    )
    assert made.status_code == 201
    mine = made.json
    assert (mine["name"], mine["domains"], mine["builtin"]) == ("Learning", ["youtube.com"], False)
    listed = (await api.client.simulate_get("/api/categories", headers=headers)).json
    assert listed[0]["uuid"] == mine["uuid"]
    assert {c["name"] for c in listed if c["builtin"]} >= {"development", "media", "browsing"}
    body = snap("2023-11-15T10:00:10Z", "chrome", "talk", "https://www.youtube.com/watch?v=1")
    await post(api, headers, body)
    assert influx_db.query('SELECT * FROM "activity"')[0]["category"] == mine["uuid"]
    changed = await api.client.simulate_put(
        f"/api/categories/{mine['uuid']}", json={"name": "Study"}, headers=headers
    )
    assert changed.json["name"] == "Study" and changed.json["domains"] == ["youtube.com"]
    builtin = listed[-1]["uuid"]
    assert (
        await api.client.simulate_put(
            f"/api/categories/{builtin}", json={"name": "x"}, headers=headers
        )
    ).status_code == 404
    clash = await api.client.simulate_post(
        "/api/categories", json={"name": "Media"}, headers=headers
    )
    assert clash.status_code == 409
    gone = await api.client.simulate_delete(f"/api/categories/{mine['uuid']}", headers=headers)
    assert gone.status_code == 200
    other = await api.new_user("ida@example.org")
    assert all(
        c["builtin"] for c in (await api.client.simulate_get("/api/categories", headers=other)).json
    )


# --- /times ----------------------------------------------------------------

P1 = "0fcdd1ec-05f7-49cc-931f-530c2c2f085c"
P2 = "98254cc5-b623-43b6-8537-d9e0122cf975"


@pytest.fixture
async def day_data(api: Api, now: FakeClock) -> dict[str, str]:
    """08:00 UTC: 3 x 10 s in P1 (code); 09:30: 2 x 10 s in P2 (chrome on github);
    09:45: 1 x 10 s in no project (vlc)."""
    headers = await api.new_user("ray@example.org")
    for uuid, keyword in ((P1, "influxdb"), (P2, "screenaware")):
        await api.client.simulate_post(
            "/api/projects",
            json={"uuid": uuid, "name": keyword, "keywords": [keyword]},
            headers=headers,
        )
    batch = [
        snap("2023-11-14T08:00:10Z", "code", "influxdb tuning"),
        snap("2023-11-14T08:00:20Z", "code", "influxdb tuning"),
        snap("2023-11-14T08:00:30Z", "code", "influxdb tuning"),
        snap("2023-11-14T09:30:10Z", "chrome", "screenaware PR", "https://github.com/o/r"),
        snap("2023-11-14T09:30:20Z", "chrome", "screenaware PR", "https://github.com/o/r"),
        snap("2023-11-14T09:45:10Z", "vlc", "a movie"),
    ]
    assert (await post(api, headers, batch)).status_code == 200
    return headers


RANGE = {"start": "2023-11-14T08:00:00.000Z", "end": "2023-11-14T09:59:59.999Z"}
H8, H9 = "2023-11-14T08:00:00.000Z", "2023-11-14T09:00:00.000Z"
H10 = "2023-11-14T10:00:00.000Z"


async def test_times_total(api: Api, day_data: dict[str, str]) -> None:
    assert await times(api, day_data, **RANGE) == {**RANGE, "sum": 60000}


async def test_times_grouped_by_project(api: Api, day_data: dict[str, str]) -> None:
    body = await times(api, day_data, **RANGE, groupBy="projectUuid")
    assert body == {
        **RANGE,
        "sum": 60000,
        "groupType": "projectUuid",
        "grouped": {
            P1: {**RANGE, "sum": 30000, "projectUuid": P1},
            P2: {**RANGE, "sum": 20000, "projectUuid": P2},
            "none": {**RANGE, "sum": 10000, "projectUuid": None},
        },
    }


async def test_times_by_hour(api: Api, day_data: dict[str, str]) -> None:
    body = await times(api, day_data, **RANGE, resolution="hour")
    assert body == {
        **RANGE,
        "sum": 60000,
        "groupType": "time",
        "grouped": {
            H8: {"start": H8, "end": H9, "sum": 30000},
            H9: {"start": H9, "end": H10, "sum": 30000},
        },
    }


async def test_times_by_hour_then_project(api: Api, day_data: dict[str, str]) -> None:
    body = await times(api, day_data, **RANGE, resolution="hour", groupBy="projectUuid")
    assert body["groupType"] == "time"
    first, second = body["grouped"][H8], body["grouped"][H9]
    assert (first["sum"], first["groupType"]) == (30000, "projectUuid")
    assert first["grouped"] == {
        P1: {"start": H8, "end": H9, "sum": 30000, "projectUuid": P1},
        P2: {"start": H8, "end": H9, "sum": 0, "projectUuid": P2},
        "none": {"start": H8, "end": H9, "sum": 0, "projectUuid": None},
    }
    assert {k: v["sum"] for k, v in second["grouped"].items()} == {P1: 0, P2: 20000, "none": 10000}


async def test_times_by_project_then_hour(api: Api, day_data: dict[str, str]) -> None:
    body = await times(
        api, day_data, **RANGE, resolution="hour", groupBy="projectUuid",
        nestTimeBucketsInsideGroups=True,
    )  # fmt: skip
    assert body["groupType"] == "projectUuid"
    p1 = body["grouped"][P1]
    assert (p1["sum"], p1["projectUuid"], p1["groupType"]) == (30000, P1, "time")
    assert p1["grouped"] == {
        H8: {"start": H8, "end": H9, "sum": 30000, "projectUuid": P1},
        H9: {"start": H9, "end": H10, "sum": 0, "projectUuid": P1},
    }
    assert body["grouped"]["none"]["grouped"][H9]["sum"] == 10000


async def test_times_grouped_by_category_and_application(
    api: Api, day_data: dict[str, str]
) -> None:
    by_category = await times(api, day_data, **RANGE, groupBy="categoryUuid")
    # Every category is listed, the ones without time with 0.
    assert {k: v["sum"] for k, v in by_category["grouped"].items()} == {
        **{rule.uuid: 0 for rule in BUILTIN_CATEGORIES},
        category_uuid("development"): 50000,
        category_uuid("media"): 10000,
    }
    assert by_category["grouped"][category_uuid("media")]["categoryUuid"] == category_uuid("media")
    by_app = await times(api, day_data, **RANGE, groupBy="applicationUuid", resolution="day")
    day = by_app["grouped"]["2023-11-14T00:00:00.000Z"]
    assert (day["start"], day["end"]) == ("2023-11-14T00:00:00.000Z", "2023-11-15T00:00:00.000Z")
    assert {k: v["sum"] for k, v in day["grouped"].items()} == {
        application_uuid("code"): 30000,
        application_uuid("chrome"): 20000,
        application_uuid("vlc"): 10000,
    }


async def test_weeks_and_months_roll_up_from_days(api: Api, now: FakeClock) -> None:
    headers = await api.new_user("wes@example.org")
    await post(
        api,
        headers,
        [
            snap("2023-10-30T12:00:10Z", "code"),  # Monday, October
            snap("2023-10-31T12:00:10Z", "code"),  # Tuesday, October
            snap("2023-11-05T23:59:50Z", "code"),  # Sunday, November, same ISO week
            snap("2023-11-06T00:00:10Z", "code"),  # next Monday
        ],
    )
    span = {"start": "2023-10-30T00:00:00.000Z", "end": "2023-11-12T23:59:59.999Z"}
    weeks = await times(api, headers, **span, resolution="week", tz="UTC")
    assert {k: (v["end"], v["sum"]) for k, v in weeks["grouped"].items()} == {
        "2023-10-30T00:00:00.000Z": ("2023-11-06T00:00:00.000Z", 30000),
        "2023-11-06T00:00:00.000Z": ("2023-11-13T00:00:00.000Z", 10000),
    }
    months = await times(api, headers, **span, resolution="month", tz="UTC")
    assert {k: (v["end"], v["sum"]) for k, v in months["grouped"].items()} == {
        "2023-10-01T00:00:00.000Z": ("2023-11-01T00:00:00.000Z", 20000),
        "2023-11-01T00:00:00.000Z": ("2023-12-01T00:00:00.000Z", 20000),
    }
    # In Berlin (UTC+1) the Sunday 23:59:50 UTC snapshot is already Monday.
    berlin = await times(
        api, headers, start="2023-10-29T23:00:00.000Z", end="2023-11-12T22:59:59.999Z",
        resolution="week", tz="Europe/Berlin",
    )  # fmt: skip
    assert {k: v["sum"] for k, v in berlin["grouped"].items()} == {
        "2023-10-29T23:00:00.000Z": 20000,
        "2023-11-05T23:00:00.000Z": 20000,
    }


async def test_dst_change_day_in_berlin_has_25_hours(api: Api, now: FakeClock) -> None:
    headers = await api.new_user("dst@example.org")
    await post(
        api,
        headers,
        [
            snap("2023-10-28T22:30:10Z", "code"),  # 00:30 CEST, 29 October
            snap("2023-10-29T22:30:10Z", "code"),  # 23:30 CET, 29 October
            snap("2023-10-29T23:30:10Z", "code"),  # 00:30 CET, 30 October
        ],
    )
    await api.client.simulate_put(
        "/api/users/me", json={"timezone": "Europe/Berlin"}, headers=headers
    )
    span = {"start": "2023-10-28T22:00:00.000Z", "end": "2023-10-30T22:59:59.999Z"}
    days = await times(api, headers, **span, resolution="day")  # the user's zone
    assert {k: (v["end"], v["sum"]) for k, v in days["grouped"].items()} == {
        "2023-10-28T22:00:00.000Z": ("2023-10-29T23:00:00.000Z", 20000),
        "2023-10-29T23:00:00.000Z": ("2023-10-30T23:00:00.000Z", 10000),
    }
    hours = await times(
        api, headers, start="2023-10-28T22:00:00.000Z", end="2023-10-29T22:59:59.999Z",
        resolution="hour",
    )  # fmt: skip
    assert len(hours["grouped"]) == 25
    assert hours["sum"] == 20000


async def test_default_range_is_today_in_the_users_zone(api: Api, now: FakeClock) -> None:
    headers = await api.new_user("zed@example.org", timezone="Europe/Berlin")
    now.now = dt.datetime(2023, 11, 14, 23, 30, tzinfo=UTC).timestamp()  # 00:30 on the 15th
    body = await times(api, headers)
    assert (body["start"], body["end"]) == ("2023-11-14T23:00:00.000Z", "2023-11-15T22:59:59.999Z")
    body = await times(api, headers, tz="UTC")
    assert (body["start"], body["end"]) == ("2023-11-14T00:00:00.000Z", "2023-11-14T23:59:59.999Z")


async def test_parameters_may_come_as_a_json_body(api: Api, day_data: dict[str, str]) -> None:
    result = await api.client.simulate_get(
        "/api/times", json={**RANGE, "groupBy": "projectUuid"}, headers=day_data
    )
    assert result.json["groupType"] == "projectUuid" and result.json["sum"] == 60000
    result = await api.client.simulate_get(
        "/api/times", json={**RANGE, "groupBy": "projectUuid"}, params={"groupBy": "categoryUuid"},
        headers=day_data,
    )  # fmt: skip
    assert result.json["groupType"] == "categoryUuid"


@pytest.mark.parametrize(
    ("params", "field", "status"),
    [
        # Each value fits the document; together they are refused (422).
        ({"start": "2023-11-15T00:00:00Z", "end": "2023-11-14T00:00:00Z"}, "start", 422),
        ({"start": "2020-01-01T00:00:00Z", "end": "2023-01-02T00:00:00Z"}, "end", 422),
        ({"groupBy": "taskUuid"}, "groupBy", 400),
        ({"resolution": "minute"}, "resolution", 400),
        ({"tz": "Mars/Olympus"}, "tz", 400),
        ({"start": "soon"}, "start", 400),
        ({"nestTimeBucketsInsideGroups": "perhaps"}, "nestTimeBucketsInsideGroups", 400),
    ],
)
async def test_invalid_times_parameters(
    api: Api, now: FakeClock, params: dict[str, str], field: str, status: int
) -> None:
    headers = await api.new_user("val@example.org")
    result = await api.client.simulate_get("/api/times", params=params, headers=headers)
    assert result.status_code == status
    assert field in result.json["errors"]


async def test_cached_answers_and_exact_invalidation(
    api: Api, day_data: dict[str, str], influx_db: InfluxHelper, redis_client: redis.Redis
) -> None:
    first = await times(api, day_data, **RANGE)
    assert first["sum"] == 60000
    assert len(redis_client.keys("{u:*}:tcache:*")) == 1
    # A point that bypasses the API (no invalidation): the cached answer stays.
    me = (await api.me(day_data)).json["uuid"]
    stamp = int(dt.datetime(2023, 11, 14, 9, 0, tzinfo=UTC).timestamp()) * 10**9
    httpx.post(
        f"{influx_db.url}/write",
        params={"db": influx_db.database},
        content=(
            f"activity,user={me},project=none,category=none,application=none duration_ms=5i {stamp}"
        ),
    )
    assert (await times(api, day_data, **RANGE))["sum"] == 60000
    # A snapshot on another day leaves this range's answer cached.
    await post(api, day_data, snap("2023-11-13T09:00:10Z", "code"))
    assert (await times(api, day_data, **RANGE))["sum"] == 60000
    # A snapshot inside the range invalidates it.
    await post(api, day_data, snap("2023-11-14T09:50:10Z", "code"))
    assert (await times(api, day_data, **RANGE))["sum"] == 60000 + 5 + 10000


async def test_groups_without_time_in_the_range_are_listed_with_0(
    api: Api, day_data: dict[str, str]
) -> None:
    p3 = "3f6b0c3e-8f3e-4c59-9d8e-6a1b2c3d4e5f"
    result = await api.client.simulate_post(
        "/api/projects", json={"uuid": p3, "name": "idle project"}, headers=day_data
    )
    assert result.status_code == 201
    own = await api.client.simulate_post(
        "/api/categories", json={"name": "Reading", "applications": ["okular"]}, headers=day_data
    )
    assert own.status_code in (200, 201), own.text
    # Only the 08:00 hour: P2, vlc and chrome have no time in it.
    early = {"start": H8, "end": "2023-11-14T08:59:59.999Z"}
    by_project = await times(api, day_data, **early, groupBy="projectUuid")
    assert {k: v["sum"] for k, v in by_project["grouped"].items()} == {P1: 30000, P2: 0, p3: 0}
    assert by_project["grouped"][p3] == {**early, "sum": 0, "projectUuid": p3}
    by_app = await times(api, day_data, **early, groupBy="applicationUuid", resolution="hour")
    assert {k: v["sum"] for k, v in by_app["grouped"][H8]["grouped"].items()} == {
        application_uuid("code"): 30000, application_uuid("chrome"): 0,
        application_uuid("vlc"): 0,
    }  # fmt: skip
    by_category = await times(
        api, day_data, **early, groupBy="categoryUuid", resolution="hour",
        nestTimeBucketsInsideGroups=True,
    )  # fmt: skip
    reading = by_category["grouped"][own.json["uuid"]]
    assert (reading["sum"], reading["grouped"][H8]["sum"]) == (0, 0)
    # A project created after an answer was cached is listed at once.
    p4 = "4f6b0c3e-8f3e-4c59-9d8e-6a1b2c3d4e5f"
    await api.client.simulate_post(
        "/api/projects", json={"uuid": p4, "name": "new project"}, headers=day_data
    )
    again = await times(api, day_data, **early, groupBy="projectUuid")
    assert again["grouped"][p4]["sum"] == 0


async def test_two_users_never_see_each_others_time(api: Api, day_data: dict[str, str]) -> None:
    other = await api.new_user("sue@example.org")
    assert (await times(api, other, **RANGE))["sum"] == 0
    body = await times(api, other, **RANGE, groupBy="projectUuid", resolution="hour")
    assert all(bucket["grouped"] == {} for bucket in body["grouped"].values())
    assert (await api.client.simulate_get("/api/applications", headers=other)).json == []


async def test_a_long_range_turns_the_day_hashes_into_tables_leaving_their_fields(
    api: Api, now: FakeClock, redis_client: redis.Redis
) -> None:
    # A hash kept as a list makes every field HMGET asks a search of the whole list
    # (a year took 1.2 ms): the first long range read turns it into a table.
    headers = await api.new_user("tab@example.org")
    first = dt.datetime(2023, 9, 1, 9, 0, 10, tzinfo=UTC)
    body = [snap(at((first + dt.timedelta(days=d)).isoformat()), "code") for d in range(40)]
    assert (await post(api, headers, body)).status_code == 200
    me = (await api.me(headers)).json["uuid"]
    counters = f"{{u:{me}}}:tgen"
    fields = redis_client.hgetall(counters)
    assert len(fields) == 40
    assert redis_client.object("encoding", counters) == "listpack"
    span = {"start": "2023-09-01T00:00:00Z", "end": "2023-10-10T23:59:59Z", "tz": "UTC"}
    short = {"start": "2023-09-01T00:00:00Z", "end": "2023-09-05T23:59:59Z", "tz": "UTC"}
    assert (await times(api, headers, **short))["sum"] == 5 * 10_000
    assert redis_client.object("encoding", counters) == "listpack"  # 5 days: not worth it
    answer = await times(api, headers, **span, resolution="day")
    assert answer["sum"] == 40 * 10_000
    assert redis_client.object("encoding", counters) == "hashtable"
    assert redis_client.hgetall(counters) == fields
    assert await times(api, headers, **span, resolution="day") == answer  # cached

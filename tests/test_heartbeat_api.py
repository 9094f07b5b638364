"""Functional tests of every Heartbeat route against real InfluxDB and Redis."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re

import pytest
import redis
from falcon import testing

from screenaware.app import create_app
from screenaware.config import Config
from tests.conftest import SECRET_KEY, FakeClock, InfluxHelper, dead_url

AUTH = {"Authorization": SECRET_KEY}


async def register(client: testing.ASGIConductor, name: str = "Laptop") -> dict[str, object]:
    result = await client.simulate_post("/api/devices", json={"name": name}, headers=AUTH)
    assert result.status_code == 200, result.text
    return dict(result.json)


async def beat(client: testing.ASGIConductor, token: object) -> testing.Result:
    return await client.simulate_post("/api/beat", headers={"Authorization": str(token)})


# --- devices ---------------------------------------------------------------


async def test_register_devices_get_ids_from_zero_and_tokens(
    client: testing.ASGIConductor, redis_client: redis.Redis
) -> None:
    first = await register(client, "Laptop")
    second = await register(client, "Phone")
    assert list(first) == ["id", "name", "token"]
    assert (first["id"], first["name"]) == (0, "Laptop")
    assert (second["id"], second["name"]) == (1, "Phone")
    for device in (first, second):
        token = str(device["token"])
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", token)  # >= 32 random bytes, URL-safe
    assert first["token"] != second["token"]
    # Only the SHA-256 of a token is stored, never the token itself.
    dump = json.dumps({k: (redis_client.dump(k) or b"").hex() for k in redis_client.keys("*")})
    for device in (first, second):
        token = str(device["token"])
        assert token.encode().hex() not in dump
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert redis_client.get(f"{{hb}}:token:{digest}") == str(device["id"])


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "wrong"}, 401), ({"Authorization": SECRET_KEY + "x"}, 401)],
)
async def test_register_requires_the_secret_key(
    client: testing.ASGIConductor, redis_client: redis.Redis, headers: dict[str, str], status: int
) -> None:
    result = await client.simulate_post("/api/devices", json={"name": "x"}, headers=headers)
    assert result.status_code == status
    assert "message" in result.json
    assert redis_client.keys("{hb}:device:*") == []


async def test_auth_is_checked_before_the_body(client: testing.ASGIConductor) -> None:
    result = await client.simulate_post(
        "/api/devices", body="not json", headers={"Authorization": "wrong"}
    )
    assert result.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 129},
        {"name": 5},
        {"name": None},
        ["name"],
    ],
)
async def test_register_rejects_invalid_bodies(
    client: testing.ASGIConductor, redis_client: redis.Redis, body: object
) -> None:
    result = await client.simulate_post("/api/devices", json=body, headers=AUTH)
    assert result.status_code == 400
    assert result.json["message"]
    assert "errors" in result.json
    assert redis_client.keys("{hb}:device:*") == []


@pytest.mark.parametrize(
    "body",
    ["{nope", '{"name": NaN}', '{"name": 1e999}', '{"name": "\\ud800"}', b'{"name": "\xff"}'],
)
async def test_register_rejects_malformed_json(
    client: testing.ASGIConductor, body: str | bytes
) -> None:
    result = await client.simulate_post(
        "/api/devices",
        body=body,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert result.status_code == 400
    assert result.json["message"]
    assert (await client.simulate_get("/api/stats")).json["devices"] == []


async def test_register_accepts_128_characters_and_unicode(client: testing.ASGIConductor) -> None:
    name = "ü" * 127 + "😀"
    device = await register(client, name)
    assert device["name"] == name
    stats = (await client.simulate_get("/api/stats")).json
    assert stats["devices"][0]["name"] == name


async def test_device_routes_are_post_only(client: testing.ASGIConductor) -> None:
    await register(client)
    for path in ("/api/devices", "/api/devices/0/token/generate", "/api/beat"):
        result = await client.simulate_get(path, headers=AUTH)
        assert result.status_code == 405, path
        assert result.json["message"]


async def test_device_routes_do_not_exist_without_secret_key(
    config: Config, clock: FakeClock
) -> None:
    app = create_app(config.replace(secret_key=""), clock=clock)
    async with testing.ASGIConductor(app) as client:
        for path in ("/api/devices", "/api/devices/0/token/generate"):
            result = await client.simulate_post(
                path, json={"name": "x"}, headers={"Authorization": ""}
            )
            assert result.status_code == 404, path
            assert result.json["message"]
        # The rest of the API stays.
        assert (await client.simulate_get("/api/stats")).status_code == 200


async def test_regenerate_invalidates_the_old_token_at_once(client: testing.ASGIConductor) -> None:
    device = await register(client)
    assert (await beat(client, device["token"])).status_code == 200
    result = await client.simulate_post("/api/devices/0/token/generate", headers=AUTH)
    assert result.status_code == 200
    renewed = result.json
    assert list(renewed) == ["id", "name", "token"]
    assert (renewed["id"], renewed["name"]) == (0, "Laptop")
    assert renewed["token"] != device["token"]
    assert (await beat(client, device["token"])).status_code == 401
    assert (await beat(client, renewed["token"])).status_code == 200
    stats = (await client.simulate_get("/api/stats")).json
    assert stats["devices"][0]["num_beats"] == 2


async def test_regenerate_errors(client: testing.ASGIConductor) -> None:
    await register(client)
    assert (
        await client.simulate_post("/api/devices/7/token/generate", headers=AUTH)
    ).status_code == 404
    assert (
        await client.simulate_post("/api/devices/x/token/generate", headers=AUTH)
    ).status_code == 404
    assert (
        await client.simulate_post("/api/devices/-1/token/generate", headers=AUTH)
    ).status_code == 404
    result = await client.simulate_post("/api/devices/0/token/generate")
    assert result.status_code == 401
    result = await client.simulate_post(
        "/api/devices/0/token/generate", headers={"Authorization": "bad"}
    )
    assert result.status_code == 401


# --- beats -----------------------------------------------------------------


async def test_beat_answers_ack_time_and_is_stored(
    client: testing.ASGIConductor, clock: FakeClock, influx_db: InfluxHelper
) -> None:
    device = await register(client)
    clock.now = 1_700_000_036.75
    result = await beat(client, device["token"])
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    assert result.text == "1700000036"
    rows = influx_db.query("SELECT n, device FROM beat")
    assert len(rows) == 1
    assert rows[0]["device"] == "0"
    assert rows[0]["n"] == 1
    assert int(str(rows[0]["time"])) // 1_000_000_000 == 1_700_000_036


@pytest.mark.parametrize("header", [None, "", "Bearer x", "nonsense", SECRET_KEY])
async def test_beat_needs_a_device_token(
    client: testing.ASGIConductor, influx_db: InfluxHelper, header: str | None
) -> None:
    await register(client)
    headers = {} if header is None else {"Authorization": header}
    result = await client.simulate_post("/api/beat", headers=headers)
    assert result.status_code == 401
    assert result.json["message"]
    assert influx_db.count("beat") == 0
    assert (await client.simulate_get("/api/stats")).json["total_beats"] == 0


async def test_several_beats_in_one_second_are_all_counted_and_stored(
    client: testing.ASGIConductor, influx_db: InfluxHelper
) -> None:
    device = await register(client)
    for _ in range(5):
        assert (await beat(client, device["token"])).status_code == 200
    stats = (await client.simulate_get("/api/stats")).json
    assert stats["total_beats"] == 5
    assert stats["devices"][0]["num_beats"] == 5
    # Same second, same device: the points still have distinct times.
    assert influx_db.count("beat") == 5


async def test_concurrent_beats_with_good_and_bad_tokens_each_get_their_own_answer(
    client: testing.ASGIConductor, influx_db: InfluxHelper
) -> None:
    # Concurrent beats are looked up, written and counted together; a bad token
    # among them fails only its own request.
    laptop, phone = await register(client, "Laptop"), await register(client, "Phone")
    tokens = [laptop["token"]] * 20 + [phone["token"]] * 15 + ["wrong"] * 10
    results = await asyncio.gather(*(beat(client, token) for token in tokens))
    codes = [r.status_code for r in results]
    assert codes == [200] * 35 + [401] * 10
    stats = (await client.simulate_get("/api/stats")).json
    assert stats["total_beats"] == 35
    assert [d["num_beats"] for d in stats["devices"]] == [20, 15]
    assert influx_db.count("beat") == 35
    by_device = influx_db.query('SELECT count(n) FROM beat GROUP BY "device"')
    assert sorted(int(str(r["count"])) for r in by_device) == [15, 20]


# --- stats -----------------------------------------------------------------


async def test_stats_before_any_beat(client: testing.ASGIConductor) -> None:
    result = await client.simulate_get("/api/stats")
    assert result.status_code == 200
    assert result.json == {
        "last_seen": None,
        "last_seen_relative": 0,
        "longest_absence": 0,
        "num_visits": 0,
        "total_beats": 0,
        "devices": [],
        "uptime": 0,
    }
    assert list(result.json) == [
        "last_seen",
        "last_seen_relative",
        "longest_absence",
        "num_visits",
        "total_beats",
        "devices",
        "uptime",
    ]


async def test_stats_follow_beats_absences_and_uptime(
    client: testing.ASGIConductor, clock: FakeClock
) -> None:
    start = int(clock.now)
    laptop = await register(client, "Laptop")
    phone = await register(client, "Phone")
    await register(client, "Silent")
    await beat(client, laptop["token"])  # start
    clock.advance(100)
    await beat(client, phone["token"])  # start+100: gap 100
    clock.advance(30)
    await beat(client, laptop["token"])  # start+130: gap 30
    clock.advance(41)
    stats = (await client.simulate_get("/api/stats")).json
    assert stats["last_seen"] == start + 130
    assert stats["last_seen_relative"] == 41
    assert stats["longest_absence"] == 100
    assert stats["total_beats"] == 3
    assert stats["uptime"] == 171
    assert stats["devices"] == [
        {"id": 0, "name": "Laptop", "last_beat": start + 130, "num_beats": 2},
        {"id": 1, "name": "Phone", "last_beat": start + 100, "num_beats": 1},
        {"id": 2, "name": "Silent", "last_beat": None, "num_beats": 0},
    ]
    assert list(stats["devices"][0]) == ["id", "name", "last_beat", "num_beats"]
    # The absence going on now becomes the longest once it is.
    clock.advance(500)
    stats = (await client.simulate_get("/api/stats")).json
    assert stats["last_seen_relative"] == 541
    assert stats["longest_absence"] == 541


async def test_uptime_is_since_first_setup_not_process_start(
    config: Config, clock: FakeClock
) -> None:
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        assert (await client.simulate_get("/api/stats")).json["uptime"] == 0
    clock.advance(3600)
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        assert (await client.simulate_get("/api/stats")).json["uptime"] == 3600


async def test_visits_count_pages_and_badges_not_api_calls(
    client: testing.ASGIConductor, influx_db: InfluxHelper
) -> None:
    for path in ("/api/stats", "/.well-known/health", "/privacy", "/static/heartbeat.js"):
        assert (await client.simulate_get(path)).status_code == 200, path
    assert (await client.simulate_get("/api/stats")).json["num_visits"] == 0
    for path in ("/", "/stats", "/badge/last-seen", "/badge/total-beats", "/stats/"):
        assert (await client.simulate_get(path)).status_code == 200, path
    assert (await client.simulate_get("/api/stats")).json["num_visits"] == 5
    pages = sorted(str(r["page"]) for r in influx_db.query('SELECT n, "page" FROM visit'))
    assert pages == ["badge/last-seen", "badge/total-beats", "index", "stats", "stats"]


# --- pages and badges ------------------------------------------------------


async def test_index_page_shows_presence(client: testing.ASGIConductor, clock: FakeClock) -> None:
    page = await client.simulate_get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "Test &lt;Server&gt;" in page.text and "<Server>" not in page.text
    assert 'id="last-seen"' in page.text and ">never<" in page.text
    device = await register(client)
    clock.now = 1_700_000_036
    await beat(client, device["token"])
    clock.advance(75)
    page = await client.simulate_get("/")
    assert "2023-11-14 22:13:56 UTC" in page.text
    assert "1 minute 15 seconds" in page.text
    assert "/static/heartbeat.js" in page.text
    assert "<script>" not in page.text  # no inline script: the CSP forbids it
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


async def test_stats_page_lists_devices_escaped(client: testing.ASGIConductor) -> None:
    device = await register(client, "<b>Box</b>")
    await beat(client, device["token"])
    page = await client.simulate_get("/stats")
    assert "&lt;b&gt;Box&lt;/b&gt;" in page.text
    assert "<b>Box</b>" not in page.text
    assert 'id="devices"' in page.text


async def test_privacy_page(client: testing.ASGIConductor) -> None:
    page = await client.simulate_get("/privacy")
    assert page.status_code == 200
    assert "No cookies" in page.text


async def test_badges_are_svg(client: testing.ASGIConductor, clock: FakeClock) -> None:
    result = await client.simulate_get("/badge/last-seen")
    assert result.headers["content-type"].startswith("image/svg+xml")
    assert "never" in result.text
    device = await register(client)
    for _ in range(3):
        await beat(client, device["token"])
    clock.advance(180)
    assert "3 minutes ago" in (await client.simulate_get("/badge/last-seen")).text
    total = await client.simulate_get("/badge/total-beats")
    assert ">3<" in total.text and total.text.startswith("<svg")
    assert (await client.simulate_get("/badge/unknown")).status_code == 404


async def test_static_assets(client: testing.ASGIConductor) -> None:
    js = await client.simulate_get("/static/heartbeat.js")
    assert "WebSocket" in js.text
    assert (await client.simulate_get("/static/heartbeat.css")).status_code == 200


# --- websocket (in-process; timing is tested against gunicorn) -------------


async def test_stats_websocket_sends_stats_at_once(client: testing.ASGIConductor) -> None:
    device = await register(client)
    await beat(client, device["token"])
    async with client.simulate_ws("/api/stats/ws") as ws:
        first = json.loads(await ws.receive_text())
        assert first["total_beats"] == 1
        assert next(iter(first)) == "last_seen"
        await beat(client, device["token"])
        second = json.loads(await ws.receive_text())
        assert second["total_beats"] == 2


# --- health and errors -----------------------------------------------------


async def test_health_ok(client: testing.ASGIConductor) -> None:
    result = await client.simulate_get("/.well-known/health")
    assert result.status_code == 200
    assert result.json == {"status": "ok", "influxdb": "ok", "redis": "ok"}


async def test_unknown_route_and_errors_are_json(client: testing.ASGIConductor) -> None:
    result = await client.simulate_get("/api/nothing-here")
    assert result.status_code == 404
    assert set(result.json) == {"message"}
    result = await client.simulate_delete("/api/stats")
    assert result.status_code == 405
    assert result.json["message"]


async def test_body_over_limit_is_413_and_changes_nothing(
    config: Config, clock: FakeClock, redis_client: redis.Redis
) -> None:
    app = create_app(config.replace(max_body_bytes=2048), clock=clock)
    async with testing.ASGIConductor(app) as client:
        body = json.dumps({"name": "x" * 5000})
        result = await client.simulate_post("/api/devices", body=body, headers=AUTH)
        assert result.status_code == 413
        assert "2048" in result.json["message"]
    assert redis_client.keys("{hb}:device:*") == []


async def test_dead_influxdb_gives_503_and_counts_nothing(
    config: Config, clock: FakeClock, redis_client: redis.Redis
) -> None:
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        device = await register(client)
    broken = config.replace(influx_url=dead_url("http"))
    async with testing.ASGIConductor(create_app(broken, clock=clock)) as client:
        result = await beat(client, device["token"])
        assert result.status_code == 503
        assert result.headers["retry-after"] == str(config.retry_after)
        assert "unavailable" in result.json["message"]
        assert dead_url("http").split(":")[1] not in result.text
        health = await client.simulate_get("/.well-known/health")
        assert health.status_code == 503
        assert health.json["influxdb"] == "unavailable"
        assert health.json["redis"] == "ok"
        # A page still renders; its visit is simply not counted.
        assert (await client.simulate_get("/")).status_code == 200
        stats = (await client.simulate_get("/api/stats")).json
        assert stats["total_beats"] == 0
        assert stats["num_visits"] == 0


async def test_dead_redis_gives_503(config: Config, clock: FakeClock) -> None:
    broken = config.replace(redis_url=dead_url("redis") + "/0")
    async with testing.ASGIConductor(create_app(broken, clock=clock)) as client:
        for method, path in (("GET", "/api/stats"), ("POST", "/api/beat")):
            result = await client.simulate_request(method, path, headers={"Authorization": "x"})
            assert result.status_code == 503, path
            assert result.headers["retry-after"]
            assert result.json["message"]
        health = await client.simulate_get("/.well-known/health")
        assert health.status_code == 503
        assert health.json["redis"] == "unavailable"


async def test_register_accepts_a_form_encoded_body(client: testing.ASGIConductor) -> None:
    result = await client.simulate_post(
        "/api/devices",
        body="name=Phone",
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert result.status_code == 200
    assert result.json["name"] == "Phone"


async def test_internal_errors_never_echo_details(config: Config, clock: FakeClock) -> None:
    app = create_app(config, clock=clock)

    class Broken:
        async def on_get(self, req: object, resp: object) -> None:
            raise RuntimeError(f"boom with {config.secret_key}")

    app.add_route("/broken", Broken())
    async with testing.ASGIConductor(app) as client:
        result = await client.simulate_get("/broken")
    assert result.status_code == 500
    assert result.json == {"message": "Internal server error"}
    assert SECRET_KEY not in result.text

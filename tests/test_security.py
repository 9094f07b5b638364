"""Security: the auth matrix generated from the route table, CORS, body limits per
route, and no secret in the logs."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from falcon import testing
from prometheus_client.parser import text_string_to_metric_families

from screenaware.app import create_app
from screenaware.config import Config
from screenaware.storage.ids import uuid7
from screenaware.web.headers import WORKER_PID_HEADER
from screenaware.web.openapi import build_spec
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, SECRET_KEY, Api, FakeClock, bearer
from tests.service import run_service

# Built in-process (nothing is contacted before the lifespan starts).
SPEC = build_spec(create_app(Config.load(environ={}, secret_key=SECRET_KEY)))
MATRIX = [
    (path, method, op["x-required-role"])
    for path, ops in SPEC["paths"].items()
    for method, op in ops.items()
    if path != "/api/stats/ws"
]


def test_documented_roles_are_the_enforced_roles(config: Config) -> None:
    """The document's x-required-role agrees with each resource's auth_roles."""
    app = create_app(config)
    samples = {"device_id": "0"}
    for path, method, role in MATRIX:
        concrete = path
        for name in ("device_id", "user_id", "project_id", "task_id", "category_id",
                     "stream_uuid", "point_uuid", "log_type", "name"):  # fmt: skip
            concrete = concrete.replace("{" + name + "}", samples.get(name, "x"))
        found = app._router.find(concrete)
        assert found is not None, concrete
        resource = found[0]
        declared = getattr(resource, "auth_roles", {}).get(method.upper())
        if role in ("user", "admin", "all") and declared is not None:
            assert declared == role, (path, method)
        else:
            assert declared is None and role in ("all", "secret-key", "device-token"), (
                path,
                method,
            )


@pytest.fixture
async def owned(api: Api) -> dict[str, Any]:
    """User A's entities, and a plain user, another user and the admin."""
    alice = await api.new_user("alice@example.org")
    mallory = await api.new_user("mallory@example.org")
    project = str(uuid.uuid4())
    await api.client.simulate_post(
        "/api/projects", json={"uuid": project, "name": "p"}, headers=alice
    )
    task = (
        await api.client.simulate_post(
            "/api/tasks", json={"title": "t", "projectUuid": project}, headers=alice
        )
    ).json["uuid"]
    category = (
        await api.client.simulate_post("/api/categories", json={"name": "c"}, headers=alice)
    ).json["uuid"]
    other_user = (await api.me(mallory)).json["uuid"]
    return {
        "alice": alice,
        "mallory": mallory,
        "ids": {
            "project_id": project,
            "task_id": task,
            "category_id": category,
            "user_id": other_user,
            "stream_uuid": uuid7(1_700_000_000_000),
            "point_uuid": uuid7(1_700_000_000_000),
            "log_type": "x",
            "device_id": "0",
            "name": "last-seen",
        },
    }


@pytest.mark.parametrize(("path", "method", "role"), MATRIX)
async def test_auth_matrix(
    api: Api, owned: dict[str, Any], path: str, method: str, role: str
) -> None:
    url = path
    for name, value in owned["ids"].items():
        url = url.replace("{" + name + "}", value)

    async def call(headers: dict[str, str]) -> int:
        result = await api.client.simulate_request(method.upper(), url, json={}, headers=headers)
        return result.status_code

    anonymous = await call({})
    as_user = await call(owned["alice"])
    as_admin = await call(api.admin)
    if role == "all":
        assert anonymous not in (401, 403)
    elif role in ("secret-key", "device-token"):
        assert anonymous == 401 and as_user == 401 and as_admin == 401
    elif role == "admin":
        assert (anonymous, as_user) == (401, 403)
        assert as_admin not in (401, 403)
    else:
        assert anonymous == 401
        assert as_user not in (401, 403) and as_admin not in (401, 403)
    # Another user's entities do not exist for them.
    owned_params = ("{project_id}", "{task_id}", "{category_id}")
    if role == "user" and any(p in path for p in owned_params):
        assert await call(owned["mallory"]) == 404


async def test_cors_is_off_by_default(client: testing.ASGIConductor) -> None:
    result = await client.simulate_get("/api/stats", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in result.headers


async def test_cors_when_configured(config: Config, clock: FakeClock) -> None:
    app = create_app(config.replace(cors_origins="https://app.example.org"), clock=clock)
    async with testing.ASGIConductor(app) as client:
        allowed = await client.simulate_get(
            "/api/stats", headers={"Origin": "https://app.example.org"}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.org"
        other = await client.simulate_get("/api/stats", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_bad_cors_configuration_is_refused(config: Config) -> None:
    from screenaware.config import ConfigError

    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        config.replace(cors_origins="app.example.org/path")


async def test_body_limits_per_route(identity_config: Config, clock: FakeClock) -> None:
    cfg = identity_config.replace(max_body_bytes=4096, bulk_body_bytes=256 * 1024)
    async with testing.ASGIConductor(create_app(cfg, clock=clock)) as client:
        token = (
            await client.simulate_post(
                "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
        ).json["token"]
        big_name = {"name": "p" * 10_000}
        small = await client.simulate_post("/api/projects", json=big_name, headers=bearer(token))
        assert small.status_code == 413
        window = {"processName": "code", "title": "t" * 1000, "isFocused": True}
        batch = [
            {"timeTaken": f"2023-11-14T10:00:{i:02d}Z", "durationMs": 1000, "windows": [window]}
            for i in range(20)
        ]
        assert len(json.dumps(batch)) > 4096
        bulk = await client.simulate_post("/api/snapshots", json=batch, headers=bearer(token))
        assert bulk.status_code == 200


async def test_no_secret_reaches_the_logs(config: Config, tmp_path: Path) -> None:
    cfg = config.replace(
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        jwt_secret="jwt-secret-that-must-not-leak-0123456789",
        log_level="DEBUG",
    )
    with run_service(cfg, tmp_path) as svc:
        started = time.time()
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            token = (
                await http.post(
                    "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
                )
            ).json()["token"]
            await http.post(
                "/api/auth/local", json={"email": ADMIN_EMAIL, "password": "wrong-pass"}
            )
            device = (
                await http.post(
                    "/api/devices", json={"name": "d"}, headers={"Authorization": SECRET_KEY}
                )
            ).json()["token"]
            await http.post("/api/beat", headers={"Authorization": device})
            await http.post("/api/beat", headers={"Authorization": "wrong-device-token"})
            await http.post(
                "/api/users",
                json={"email": "new@example.org", "password": "new-user-password"},
                headers=bearer(token),
            )
            await http.get("/api/users/me", headers=bearer(token + "x"))
        ended = time.time()
        await asyncio.sleep(0.6)  # access lines are written every 0.25 s
        log = svc.log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "screenaware.access"]
    # The log is really there, structured: route, status, duration, user.
    beats = [line for line in access if line["route"] == "/api/beat"]
    assert sorted(line["status"] for line in beats) == [200, 401]
    me = next(line for line in access if line["path"] == "/api/users" and line["method"] == "POST")
    assert me["status"] == 201 and me["user"] and me["duration_ms"] >= 0
    # Each line's time is when it was answered, UTC to the millisecond.
    for line in [*beats, me]:
        moment = dt.datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert len(line["time"]) == len("2026-01-01T00:00:00.000Z")
        unix = moment.replace(tzinfo=dt.UTC).timestamp()
        assert int(started * 1000) / 1000 <= unix <= ended
    for secret in (ADMIN_PASSWORD, SECRET_KEY, cfg.jwt_secret, token, device,
                   "new-user-password", "wrong-pass"):  # fmt: skip
        assert secret not in log


async def test_metrics_count_requests_and_can_need_a_token(
    config: Config, clock: FakeClock
) -> None:
    # In one process the metrics live in prometheus_client's global registry, which
    # earlier tests have counted into: measure the change this test makes.
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:

        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            # The access log adds its counts every 0.25 s, on a timer of this same
            # loop set by the first request since: it fires before this sleep ends.
            await asyncio.sleep(0.3)
            resp = await client.simulate_get("/metrics")
            assert resp.status_code == 200
            return {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(resp.text)
                for sample in family.samples
            }

        def delta(name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0.0) - before.get(key, 0.0)

        before = await scrape()
        for _ in range(3):
            assert (await client.simulate_get("/api/stats")).status_code == 200
        assert (await client.simulate_get("/api/stats/nope")).status_code == 404
        after = await scrape()
        stats = {"route": "/api/stats", "method": "GET"}
        assert delta("screenaware_requests_total", **stats, status="200") == 3
        assert delta("screenaware_request_duration_seconds_count", **stats) == 3
        assert delta("screenaware_request_duration_seconds_bucket", **stats, le="+Inf") == 3
        # The first scrape is counted once it has been answered, the second not yet.
        scrapes = {"route": "/metrics", "method": "GET", "status": "200"}
        assert delta("screenaware_requests_total", **scrapes) == 1
        unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
        assert delta("screenaware_requests_total", **unmatched) == 1
        assert ("screenaware_influx_batch_points_count", ()) in after
    locked = config.replace(metrics_token="metrics-secret")
    async with testing.ASGIConductor(create_app(locked, clock=clock)) as client:
        assert (await client.simulate_get("/metrics")).status_code == 401
        wrong = await client.simulate_get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.simulate_get(
            "/metrics", headers={"Authorization": "Bearer metrics-secret"}
        )
        assert right.status_code == 200


async def test_worker_pid_header_only_when_configured(config: Config, clock: FakeClock) -> None:
    # The tests' proof of which worker answered must not tell strangers anything.
    assert Config.load(environ={}).worker_pid_header is False
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        resp = await client.simulate_get("/api/stats")
        assert resp.status_code == 200
        assert WORKER_PID_HEADER not in resp.headers
    on = Config.load(environ={**config.as_environ(), "SCREENAWARE_WORKER_PID_HEADER": "true"})
    async with testing.ASGIConductor(create_app(on, clock=clock)) as client:
        for path in ("/api/stats", "/api/nothing-here"):  # errors too
            resp = await client.simulate_get(path)
            assert resp.headers[WORKER_PID_HEADER] == str(os.getpid())

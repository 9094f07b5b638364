"""End to end: the real gunicorn with two uvicorn workers, real InfluxDB and Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from screenaware.config import Config
from screenaware.web.headers import WORKER_PID_HEADER
from tests.conftest import SECRET_KEY, InfluxHelper
from tests.service import Service, clear_of_midnight, run_service

pytestmark = pytest.mark.e2e


@pytest.fixture
def service(config: Config, tmp_path: Path) -> Iterator[Service]:
    with run_service(config.replace(worker_pid_header=True), tmp_path, workers=2) as svc:
        yield svc


def served_by(resp: httpx.Response) -> int:
    """The pid of the worker that answered (worker_pid_header is on in these tests)."""
    return int(resp.headers[WORKER_PID_HEADER])


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        yield client


async def register(http: httpx.AsyncClient, name: str) -> str:
    resp = await http.post(
        "/api/devices", json={"name": name}, headers={"Authorization": SECRET_KEY}
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["token"])


async def test_200_concurrent_beats_over_two_workers(
    service: Service, http: httpx.AsyncClient, influx_db: InfluxHelper
) -> None:
    tokens = [await register(http, "Laptop"), await register(http, "Phone")]
    workers = service.worker_pids()
    assert len(workers) == 2
    served: list[int] = []

    async def one(i: int) -> int:
        # A fresh connection per beat, so the kernel spreads them over both workers.
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            resp = await client.post("/api/beat", headers={"Authorization": tokens[i % 2]})
            assert resp.status_code == 200, resp.text
            served.append(served_by(resp))
            return int(resp.text)

    started = int(time.time())
    acks = await asyncio.gather(*(one(i) for i in range(200)))
    assert all(started - 1 <= ack <= time.time() + 1 for ack in acks)

    stats = (await http.get("/api/stats")).json()
    assert stats["total_beats"] == 200
    assert [(d["id"], d["num_beats"]) for d in stats["devices"]] == [(0, 100), (1, 100)]
    assert stats["last_seen"] == max(acks)
    assert influx_db.count("beat") == 200
    # Both workers answered beats, and nothing else did.
    assert set(served) == set(workers), "one worker served nothing"


async def test_websocket_sends_at_once_then_every_second(
    service: Service, http: httpx.AsyncClient
) -> None:
    token = await register(http, "Laptop")
    ws_url = service.url.replace("http://", "ws://") + "/api/stats/ws"
    async with websockets.connect(ws_url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=1.0))
        assert first["total_beats"] == 0
        assert (await http.post("/api/beat", headers={"Authorization": token})).status_code == 200
        second = json.loads(await asyncio.wait_for(ws.recv(), timeout=1.5))
        third = json.loads(await asyncio.wait_for(ws.recv(), timeout=1.5))
        assert second["total_beats"] == 1 or third["total_beats"] == 1
        assert list(third) == list(first)


async def test_chunked_body_over_limit_is_refused_while_streaming(
    http: httpx.AsyncClient, config: Config
) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"name": "'
        for _ in range(config.max_body_bytes // 1024 + 64):
            sent += 1024
            yield b"x" * 1024
        yield b'"}'

    resp = await http.post("/api/devices", content=body(), headers={"Authorization": SECRET_KEY})
    assert resp.status_code == 413
    assert str(config.max_body_bytes) in resp.json()["message"]
    assert (await http.get("/api/stats")).json()["devices"] == []


async def test_graceful_stop_keeps_every_acknowledged_beat(
    service: Service, http: httpx.AsyncClient, influx_db: InfluxHelper
) -> None:
    token = await register(http, "Laptop")
    acknowledged = 0

    async def keep_beating() -> None:
        nonlocal acknowledged
        async with httpx.AsyncClient(base_url=service.url, timeout=5) as client:
            while True:
                try:
                    resp = await client.post("/api/beat", headers={"Authorization": token})
                except httpx.HTTPError:
                    return
                if resp.status_code != 200:
                    return
                acknowledged += 1

    tasks = [asyncio.create_task(keep_beating()) for _ in range(8)]
    await asyncio.sleep(1.0)
    service.proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    assert await asyncio.to_thread(service.proc.wait, 30) == 0
    assert acknowledged > 0
    assert influx_db.count("beat") >= acknowledged


async def test_one_device_beating_fast_on_both_workers_loses_no_point(
    service: Service, http: httpx.AsyncClient, influx_db: InfluxHelper
) -> None:
    # Same device, same instants, two processes: every acknowledged beat must be
    # its own point (InfluxDB would replace one with the same series and time).
    token = await register(http, "Busy")
    acknowledged = 0

    async def client_loop() -> None:
        nonlocal acknowledged
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            for _ in range(150):
                resp = await client.post("/api/beat", headers={"Authorization": token})
                assert resp.status_code == 200
                acknowledged += 1

    await asyncio.gather(*(client_loop() for _ in range(16)))
    assert acknowledged == 2400
    assert influx_db.count("beat") == 2400
    assert (await http.get("/api/stats")).json()["total_beats"] == 2400


async def test_identity_is_shared_by_both_workers(config: Config, tmp_path: Path) -> None:
    # Two workers bootstrap the same admin at once and sign with one generated key:
    # a token one worker issued is accepted by the other. Logins at once: attempts under
    # way count against the login limits (10).
    cfg = config.replace(
        admin_email="root@example.org",
        admin_password="root-password",
        worker_pid_header=True,
        login_max_failures=20,
    )
    with run_service(cfg, tmp_path, workers=2) as svc:
        workers = set(svc.worker_pids())

        async def login() -> tuple[str, int]:
            async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
                resp = await client.post(
                    "/api/auth/local",
                    json={"email": "root@example.org", "password": "root-password"},
                )
                assert resp.status_code == 200, resp.text
                return str(resp.json()["token"]), served_by(resp)

        async def use(token: str) -> int:
            # A fresh connection, so possibly the other worker, checks the token.
            async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
                resp = await client.get("/api/users", headers={"Authorization": f"Bearer {token}"})
                assert resp.status_code == 200, resp.text
                assert len(resp.json()) == 1  # one admin, though both workers created it
                return served_by(resp)

        crossed: set[tuple[int, int]] = set()
        for _ in range(10):  # until each worker has checked a token of the other
            logins = await asyncio.gather(*(login() for _ in range(10)))
            uses = await asyncio.gather(*(use(token) for token, _ in logins))
            crossed |= {
                (issuer, checker)
                for (_, issuer), checker in zip(logins, uses, strict=True)
                if issuer != checker
            }
            if len(crossed) == 2:
                break
        a, b = workers
        assert crossed == {(a, b), (b, a)}, crossed


async def test_activity_end_to_end_over_two_workers(config: Config, tmp_path: Path) -> None:
    # Snapshots through one worker, /times and /streams through the other, a correction,
    # and the caches of both workers agree (all state is in Redis and InfluxDB).
    cfg = config.replace(admin_email="root@example.org", admin_password="root-password")
    now = clear_of_midnight()
    with run_service(cfg, tmp_path, workers=2) as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            token = (
                await http.post(
                    "/api/auth/local",
                    json={"email": "root@example.org", "password": "root-password"},
                )
            ).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            project = {"name": "influx", "keywords": ["influxdb"]}
            assert (await http.post("/api/projects", json=project, headers=auth)).status_code == 201
            batch = [
                {
                    "timeTaken": (now + dt.timedelta(seconds=10 * (i + 1))).isoformat(),
                    "windows": [{"processName": "code", "title": "influxdb", "isFocused": True}],
                }
                for i in range(60)
            ]

            async def post(part: list[dict[str, Any]]) -> None:
                async with httpx.AsyncClient(base_url=svc.url, timeout=30) as fresh:
                    resp = await fresh.post("/api/snapshots", json=part, headers=auth)
                    assert resp.status_code == 200, resp.text

            await asyncio.gather(*(post(batch[i : i + 10]) for i in range(0, 60, 10)))
            span = {
                "start": (now - dt.timedelta(minutes=1)).isoformat(),
                "end": (now + dt.timedelta(minutes=20)).isoformat(),
                "tz": "UTC",
            }
            for _ in range(4):  # fresh connections: both workers answer
                async with httpx.AsyncClient(base_url=svc.url, timeout=30) as fresh:
                    times = (await fresh.get("/api/times", params=span, headers=auth)).json()
                    assert times["sum"] == 600_000
                    streams = (await fresh.get("/api/streams", params=span, headers=auth)).json()
                    assert [s["durationMs"] for s in streams] == [600_000]
            resp = await http.put(
                f"/api/stream/{streams[0]['uuid']}/project",
                json={"projectUuid": None},
                headers=auth,
            )
            assert resp.status_code == 200
            for _ in range(4):
                async with httpx.AsyncClient(base_url=svc.url, timeout=30) as fresh:
                    grouped = (
                        await fresh.get(
                            "/api/times", params={**span, "groupBy": "projectUuid"}, headers=auth
                        )
                    ).json()
                    assert grouped["grouped"]["none"]["sum"] == 600_000
                    streams = (await fresh.get("/api/streams", params=span, headers=auth)).json()
                    assert streams[0]["projectUuid"] is None


async def test_metrics_add_up_every_worker(service: Service, http: httpx.AsyncClient) -> None:
    token = await register(http, "Metered")

    async def beat() -> None:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as fresh:
            assert (
                await fresh.post("/api/beat", headers={"Authorization": token})
            ).status_code == 200

    await asyncio.gather(*(beat() for _ in range(40)))
    await asyncio.sleep(0.6)  # request counts reach the shared metrics every 0.25 s
    text = (await http.get("/metrics")).text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("screenaware_requests_total")
        and 'route="/api/beat"' in line
        and 'status="200"' in line
    )
    assert counted == 40
    flushes = next(
        line
        for line in text.splitlines()
        if line.startswith("screenaware_influx_flush_seconds_count")
    )
    assert float(flushes.rsplit(" ", 1)[1]) >= 1, [
        ln for ln in text.splitlines() if "influx" in ln
    ][:12]

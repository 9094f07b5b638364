"""Scale-out: two service instances behind a real nginx, one InfluxDB, one Redis.

Two gunicorn masters, as two machines would run them: each its own data dir, both
with the same secret key, database and Redis, and their ``crashes`` directories one
shared directory (as a shared mount would make them). Debian's nginx runs the
project's configuration (``screenaware/conf/nginx.conf.tmpl``, the README's) in
front of them. What one instance does, the other sees at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import socket
import ssl
import struct
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import websockets
from websockets.asyncio.client import ClientConnection

from screenaware.config import Config
from screenaware.logs.crashes import TOTAL
from screenaware.storage.localservers import free_port, worker_pids
from screenaware.web.headers import WORKER_PID_HEADER
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, SECRET_KEY, InfluxHelper, Servers, bearer
from tests.nginx import README_LISTEN, Nginx, readme_example, run_nginx
from tests.service import Service, clear_of_midnight, run_service
from tests.tls import make_pki

pytestmark = pytest.mark.e2e

README = Path(__file__).parent.parent / "README.md"
KIB = 1024
# Per email / per client address (small, so the test reaches them quickly).
EMAIL_LIMIT, ADDRESS_LIMIT = 3, 5


@dataclass
class Cluster:
    a: Service
    b: Service
    nginx: Nginx
    redis: redis.Redis
    crashes: Path
    seed_dump: bytes
    seed_uuid: str
    seed_total_after_b: int

    def instance(self, resp: httpx.Response) -> str:
        """Which instance answered: "a" or "b"."""
        pid = int(resp.headers[WORKER_PID_HEADER])
        return "a" if pid in self.a.worker_pids() else "b" if pid in self.b.worker_pids() else "?"


def http(url: str, source: str | None = None) -> httpx.AsyncClient:
    """A client of ``url``, its connections from the loopback address ``source``."""
    transport = httpx.AsyncHTTPTransport(local_address=source) if source else None
    return httpx.AsyncClient(base_url=url, timeout=30, transport=transport)


async def upload(url: str, dump: bytes) -> httpx.Response:
    async with http(url) as client:
        return await client.post(
            "/api/logs/crash/sensor",
            data={"prod": "sensor-win", "ver": "1.4.2"},
            files={"upload_file_minidump": ("dump.dmp", dump, "application/octet-stream")},
        )


@pytest.fixture(scope="module")
def cluster(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("scaleout")
    database = InfluxHelper(servers.influx_url, "test_" + uuid.uuid4().hex[:12])
    client = redis.Redis.from_url(servers.redis_url, decode_responses=True)
    client.flushall()
    shared = base / "shared-crashes"
    shared.mkdir()
    common = Config.load(
        environ={},
        influx_url=servers.influx_url,
        influx_db=database.database,
        redis_url=servers.redis_url,
        secret_key=SECRET_KEY,
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        login_max_failures=EMAIL_LIMIT,
        login_max_failures_per_address=ADDRESS_LIMIT,
        worker_pid_header=True,
        crash_max_bytes=64 * KIB,
        crash_store_bytes=100 * KIB,
        import_max_bytes=16 * 1024 * KIB,
    )
    configs = {}
    for name in ("a", "b"):
        data = base / name
        data.mkdir()
        # Each machine its own data dir; the crash dumps on the shared storage.
        (data / "crashes").symlink_to(shared, target_is_directory=True)
        configs[name] = common.replace(data_dir=str(data))
    # The proxy's address, as README says to start gunicorn behind nginx.
    trust = ["--forwarded-allow-ips", "127.0.0.1"]
    seed = bytes(range(256)) * 160  # 40 KiB
    try:
        with ExitStack() as stack:
            a = stack.enter_context(run_service(configs["a"], base, 1, gunicorn_args=trust))
            # A dump stored through A before B starts: B's start-up rebuilds the crash
            # accounting from the shared directory, which must still count it.
            seeded = asyncio.run(upload(a.url, seed))
            assert seeded.status_code == 200, seeded.text
            b = stack.enter_context(run_service(configs["b"], base, 1, gunicorn_args=trust))
            total = int(client.get(TOTAL) or 0)
            upstreams = [a.url.removeprefix("http://"), b.url.removeprefix("http://")]
            nginx = stack.enter_context(run_nginx(base / "nginx", free_port(), upstreams))
            yield Cluster(a, b, nginx, client, shared, seed, seeded.text, total)
    finally:
        client.flushall()
        client.close()
        database.drop()


@asynccontextmanager
async def admin_of(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with http(url) as client:
        resp = await client.post(
            "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert resp.status_code == 200, resp.text
        yield client, bearer(resp.json()["token"])


async def test_nginx_spreads_requests_over_both_instances(cluster: Cluster) -> None:
    async with http(cluster.nginx.url) as client:
        answers = [await client.get("/api/stats") for _ in range(8)]
    assert all(r.status_code == 200 for r in answers)
    assert {cluster.instance(r) for r in answers} == {"a", "b"}
    # nginx's own record agrees: both upstream servers answered.
    upstreams = set(re.findall(r"127\.0\.0\.1:\d+$", cluster.nginx.access_log.read_text(), re.M))
    assert {cluster.a.url.removeprefix("http://"), cluster.b.url.removeprefix("http://")} <= (
        upstreams
    )


Endpoint = tuple[str, int]


def tcp_sockets() -> list[tuple[Endpoint, Endpoint, str, int]]:
    """IPv4 TCP sockets of this machine: (local, remote, state, inode), from /proc."""

    def endpoint(text: str) -> Endpoint:
        address, port = text.split(":")
        return socket.inet_ntoa(struct.pack("<I", int(address, 16))), int(port, 16)

    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return [
        (endpoint(f[1]), endpoint(f[2]), f[3], int(f[9])) for f in (row.split() for row in rows)
    ]


ESTABLISHED, TIME_WAIT = "01", "06"


async def test_nginx_closes_idle_upstream_connections_before_the_service_does(
    cluster: Cluster,
) -> None:
    # Else nginx may send a request into a connection the service is closing after its
    # keep-alive (gunicorn's 2 s), and a POST that cannot be retried gets a 502. Who
    # closed a connection first is who holds it in TIME_WAIT afterwards.
    ports = {int(s.url.rsplit(":", 1)[1]) for s in (cluster.a, cluster.b)}
    async with http(cluster.nginx.url) as client:
        assert (await client.get("/api/stats")).status_code == 200
    inodes = set()
    for pid in worker_pids(cluster.nginx.proc.pid):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    pooled = {
        (local, remote)
        for local, remote, state, inode in tcp_sockets()
        if state == ESTABLISHED and inode in inodes and remote[1] in ports
    }
    assert pooled, "nginx kept no idle connection to the instances"
    async with asyncio.timeout(10):
        while True:
            await asyncio.sleep(0.2)
            now = {(local, remote): state for local, remote, state, _ in tcp_sockets()}
            if not any(now.get(c) == ESTABLISHED for c in pooled):
                break
    closed_by_service = {(far, near) for near, far in pooled if now.get((far, near)) == TIME_WAIT}
    closed_by_nginx = {c for c in pooled if now.get(c) == TIME_WAIT}
    assert closed_by_service == set()
    assert closed_by_nginx == pooled


async def test_a_token_from_one_instance_works_on_the_other(cluster: Cluster) -> None:
    async with admin_of(cluster.a.url) as (a, admin), http(cluster.b.url) as b:
        me = await b.get("/api/users/me", headers=admin)
        assert me.status_code == 200, me.text
        assert me.json()["email"].lower() == ADMIN_EMAIL.lower()
        assert cluster.instance(me) == "b"
        # A user made through B logs in through A.
        made = await b.post(
            "/api/users",
            json={"email": "cross@example.org", "password": "cross-password-1"},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        login = await a.post(
            "/api/auth/local", json={"email": "cross@example.org", "password": "cross-password-1"}
        )
        assert login.status_code == 200, login.text


def snapshots(start: dt.datetime, count: int) -> list[dict[str, Any]]:
    return [
        {
            "timeTaken": (start + dt.timedelta(seconds=10 * (i + 1))).isoformat(),
            "durationMs": 10_000,
            "windows": [{"processName": "code", "title": "scaleout influxdb", "isFocused": True}],
        }
        for i in range(count)
    ]


async def test_snapshots_through_one_instance_show_in_times_and_streams_of_the_other(
    cluster: Cluster,
) -> None:
    start = clear_of_midnight()
    span = {
        "start": (start - dt.timedelta(minutes=1)).isoformat(),
        "end": (start + dt.timedelta(minutes=30)).isoformat(),
        "tz": "UTC",
    }
    async with admin_of(cluster.a.url) as (a, admin), http(cluster.b.url) as b:
        project = {"name": "scaleout", "keywords": ["influxdb"]}
        assert (await a.post("/api/projects", json=project, headers=admin)).status_code == 201
        first = await a.post("/api/snapshots", json=snapshots(start, 6), headers=admin)
        assert first.status_code == 200, first.text
        # B answers /times and caches the answer (in Redis, shared by both).
        warm = await b.get("/api/times", params=span, headers=admin)
        assert warm.status_code == 200 and warm.json()["sum"] == 60_000, warm.text
        assert cluster.redis.keys("{u:*}:tcache:*"), "B did not cache its answer"
        more = snapshots(start + dt.timedelta(seconds=60), 6)
        assert (await a.post("/api/snapshots", json=more, headers=admin)).status_code == 200
        # Right after the post through A, B's cached answer is stale.
        after = await b.get("/api/times", params=span, headers=admin)
        assert after.json()["sum"] == 120_000, after.text
        assert {cluster.instance(r) for r in (first, warm, after)} == {"a", "b"}

        # A correction through A: B's /streams (already asked once) shows it.
        streams = (await b.get("/api/streams", params=span, headers=admin)).json()
        assert [s["durationMs"] for s in streams] == [120_000]
        assert streams[0]["projectUuid"] is not None
        corrected = await a.put(
            f"/api/stream/{streams[0]['uuid']}/project",
            json={"projectUuid": None},
            headers=admin,
        )
        assert corrected.status_code == 200, corrected.text
        again = (await b.get("/api/streams", params=span, headers=admin)).json()
        assert again[0]["projectUuid"] is None
        grouped = await b.get(
            "/api/times", params={**span, "groupBy": "projectUuid"}, headers=admin
        )
        assert grouped.json()["grouped"]["none"]["sum"] == 120_000


async def total_reaches(ws: ClientConnection, total: int) -> dict[str, Any]:
    """The first stats message with ``total`` beats (the socket sends every second)."""
    async with asyncio.timeout(20):
        while True:
            stats = json.loads(await ws.recv())
            if stats["total_beats"] >= total:
                assert stats["total_beats"] == total, stats
                return dict(stats)


async def test_websocket_stats_on_one_instance_move_with_beats_on_the_other(
    cluster: Cluster,
) -> None:
    async with http(cluster.a.url) as a, http(cluster.b.url) as b:
        resp = await a.post(
            "/api/devices", json={"name": "Roaming"}, headers={"Authorization": SECRET_KEY}
        )
        assert resp.status_code == 200, resp.text
        token = {"Authorization": resp.json()["token"]}
        before = (await a.get("/api/stats")).json()["total_beats"]
        on_a = cluster.a.url.replace("http://", "ws://") + "/api/stats/ws"
        via_nginx = cluster.nginx.url.replace("http://", "ws://") + "/api/stats/ws"
        async with websockets.connect(on_a) as ws_a, websockets.connect(via_nginx) as ws_n:
            assert json.loads(await ws_a.recv())["total_beats"] == before
            assert json.loads(await ws_n.recv())["total_beats"] == before
            assert (await b.post("/api/beat", headers=token)).status_code == 200
            stats = await total_reaches(ws_a, before + 1)
            assert [d["num_beats"] for d in stats["devices"] if d["name"] == "Roaming"] == [1]
            await total_reaches(ws_n, before + 1)
            # The socket through nginx (on whichever instance) follows beats on both.
            assert (await a.post("/api/beat", headers=token)).status_code == 200
            await total_reaches(ws_n, before + 2)
            assert (await b.post("/api/beat", headers=token)).status_code == 200
            await total_reaches(ws_n, before + 3)
            await total_reaches(ws_a, before + 3)


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/local", json={"email": email, "password": password})


async def test_login_limits_are_shared_by_both_instances(cluster: Cluster) -> None:
    async with admin_of(cluster.a.url) as (a, admin), http(cluster.b.url) as b:
        made = await a.post(
            "/api/users",
            json={"email": "limited@example.org", "password": "limited-password-1"},
            headers=admin,
        )
        assert made.status_code == 201
        # Failures for one email, alternately through A and B, count together.
        for i in range(EMAIL_LIMIT):
            wrong = await login(a if i % 2 == 0 else b, "limited@example.org", "wrong")
            assert wrong.status_code == 401
        for client in (a, b):
            refused = await login(client, "limited@example.org", "limited-password-1")
            assert refused.status_code == 429, refused.text
            assert "token" not in refused.json()
    assert int(cluster.redis.get("{sa}:rl:login:email:limited@example.org") or 0) == EMAIL_LIMIT


async def test_the_client_address_through_nginx_reaches_the_limits(cluster: Cluster) -> None:
    # Clients at 127.0.0.2 and 127.0.0.3; nginx (at 127.0.0.1, the trusted proxy) passes
    # their address in X-Forwarded-For. Unknown emails: only the address limit applies.
    async with http(cluster.nginx.url, "127.0.0.2") as client:
        failures = [
            await login(client, f"nobody-{i}@example.org", "wrong") for i in range(ADDRESS_LIMIT)
        ]
        assert [r.status_code for r in failures] == [401] * ADDRESS_LIMIT
        assert {cluster.instance(r) for r in failures} == {"a", "b"}
        refused = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert refused.status_code == 429, refused.text
        # A forged X-Forwarded-For does not pass for another client: nginx appends the
        # real address, and only what the trusted proxy appended is believed.
        forged = await client.post(
            "/api/auth/local",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert forged.status_code == 429, forged.text
    assert int(cluster.redis.get("{sa}:rl:login:addr:127.0.0.2") or 0) == ADDRESS_LIMIT
    assert cluster.redis.get("{sa}:rl:login:addr:203.0.113.9") is None
    async with http(cluster.nginx.url, "127.0.0.3") as other:
        assert (await login(other, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


async def test_crash_dumps_are_shared_by_both_instances(cluster: Cluster) -> None:
    # B started after the seed dump was stored through A; its rebuild counted it.
    assert cluster.seed_total_after_b == len(cluster.seed_dump)
    async with admin_of(cluster.b.url) as (b, admin), http(cluster.a.url) as a:
        seed = await b.get(f"/api/logs/crash/{cluster.seed_uuid}", headers=admin)
        assert seed.status_code == 200
        assert seed.content == cluster.seed_dump
        # 40 + 60 KiB pass the 100 KiB budget: B's upload evicts the dump A stored.
        dump = b"\x5a" * 60 * KIB
        second = await upload(cluster.b.url, dump)
        assert second.status_code == 200, second.text
        assert sorted(p.name for p in cluster.crashes.iterdir()) == [f"{second.text}.anon.dmp"]
        assert (await a.get(f"/api/logs/crash/{cluster.seed_uuid}", headers=admin)).status_code == (
            404
        )
        assert (await a.get(f"/api/logs/crash/{second.text}", headers=admin)).content == dump
        assert int(cluster.redis.get(TOTAL) or 0) == len(dump)
        # And through nginx, up and down.
        third = await upload(cluster.nginx.url, b"via nginx")
        assert third.status_code == 200, third.text
        async with http(cluster.nginx.url) as proxied:
            got = await proxied.get(f"/api/logs/crash/{third.text}", headers=admin)
        assert got.content == b"via nginx"


async def test_an_import_larger_than_the_general_body_limit_passes_nginx(cluster: Cluster) -> None:
    # nginx refuses bodies over 12 MB except on /api/import/: the service decides there.
    body = b"{" * (13 * 1024 * KIB)
    async with admin_of(cluster.nginx.url) as (client, admin):
        resp = await client.post(
            "/api/import/wakatime",
            content=body,
            headers={**admin, "Content-Type": "application/json"},
        )
        assert resp.status_code != 413, resp.text
        assert 400 <= resp.status_code < 500 and "message" in resp.json(), resp.text
        snapshots_too_big = await client.post(
            "/api/snapshots", content=body, headers={**admin, "Content-Type": "application/json"}
        )
        assert snapshots_too_big.status_code == 413  # nginx's own limit, before the service


def readme_nginx_block(text: str) -> str:
    """The nginx configuration block of the README's "Deployment and scale-out"."""
    section = text.split("## Deployment and scale-out", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```nginx\n(.*?)^```$", section, re.M | re.S)
    assert len(blocks) == 1, "one nginx block expected in Deployment and scale-out"
    return str(blocks[0])


def test_the_readme_shows_the_configuration_the_test_runs() -> None:
    assert readme_nginx_block(README.read_text()) == readme_example()


async def test_the_readme_configuration_serves_tls(cluster: Cluster, tmp_path: Path) -> None:
    # The README's example as it is but for the port and certificate files.
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    listen = [
        README_LISTEN[0].replace("443", f"127.0.0.1:{port}"),
        f"ssl_certificate {pki.server_cert};",
        f"ssl_certificate_key {pki.server_key};",
    ]
    upstreams = [cluster.a.url.removeprefix("http://"), cluster.b.url.removeprefix("http://")]
    with run_nginx(tmp_path / "nginx", port, upstreams, listen) as tls:
        assert tls.url.startswith("https://")
        async with httpx.AsyncClient(
            base_url=tls.url, verify=ssl.create_default_context(cafile=pki.ca), timeout=30
        ) as client:
            answers = [await client.get("/api/stats") for _ in range(2)]
    assert [r.status_code for r in answers] == [200, 200]
    assert {cluster.instance(r) for r in answers} == {"a", "b"}

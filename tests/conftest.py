"""Session fixtures: a real influxd and redis-server on free ports in a temp dir."""

from __future__ import annotations

import gzip
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from falcon import testing
from hypothesis import settings
from playwright.async_api import Browser, Page

from screenaware.app import create_app
from screenaware.config import Config
from screenaware.storage.localservers import Server, free_port, start_influxd, start_redis
from tests.browser import launch_chromium, screenshot_file
from tests.rediscluster import Cluster, start_cluster, start_node, sync_client

# What a hung test waits on, printed before pytest-timeout fails it.
pytest_plugins = ["tests.watchdog"]

SECRET_KEY = "test-secret-key-0123456789"

# No per-example deadline: on a loaded 2-core CI machine a GC pause would make a
# correct property test fail as "flaky". HYPOTHESIS_PROFILE=thorough runs many more
# examples by hand, to find rare cases such as the float millisecond bug sooner.
settings.register_profile("default", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# "cluster": the session's Redis is a 3-master Redis Cluster (tests/rediscluster.py)
# instead of one redis-server; the test files chosen for it run unchanged.
ON_CLUSTER = os.environ.get("SCREENAWARE_TEST_REDIS", "") == "cluster"


@dataclass
class Servers:
    influx_url: str
    redis_url: str
    influxd: Server
    redis_server: Server
    base: Path
    cluster: Cluster | None = None


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("servers")
    influx_port, redis_port = free_port(), free_port()
    influxd = start_influxd(base / "influxdb", influx_port)
    cluster = None
    try:
        if ON_CLUSTER:
            cluster = start_cluster(base / "cluster")
            redis_server, redis_url = next(iter(cluster.nodes.values())), cluster.url
        else:
            redis_server = start_redis(base / "redis", redis_port)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
    except Exception:
        influxd.stop()
        raise
    started = Servers(
        influx_url=f"http://127.0.0.1:{influx_port}",
        redis_url=redis_url,
        influxd=influxd,
        redis_server=redis_server,
        base=base,
        cluster=cluster,
    )
    yield started
    # Stop what runs now: a test may have restarted a server in place.
    if cluster is not None:
        cluster.stop()
    else:
        started.redis_server.stop()
    started.influxd.stop()


class InfluxHelper:
    """Synchronous access to the test InfluxDB, for assertions."""

    def __init__(self, url: str, database: str) -> None:
        self.url = url
        self.database = database

    def query(self, q: str, params: dict[str, object] | None = None) -> list[dict[str, Any]]:
        import json

        query = {"db": self.database, "q": q, "epoch": "ns"}
        if params:
            query["params"] = json.dumps(params)
        resp = httpx.get(f"{self.url}/query", params=query, timeout=10)
        resp.raise_for_status()
        result = resp.json()["results"][0]
        assert "error" not in result, result
        rows = []
        for series in result.get("series", []):
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                row.update(series.get("tags") or {})
                rows.append(row)
        return rows

    def count(self, measurement: str) -> int:
        rows = self.query(f'SELECT count(*) FROM "{measurement}"')
        if not rows:
            return 0
        return max(int(v) for k, v in rows[0].items() if k.startswith("count"))

    def drop(self) -> None:
        httpx.post(f"{self.url}/query", data={"q": f'DROP DATABASE "{self.database}"'}, timeout=10)


@pytest.fixture
def influx_db(servers: Servers) -> Iterator[InfluxHelper]:
    helper = InfluxHelper(servers.influx_url, "test_" + uuid.uuid4().hex[:12])
    yield helper
    helper.drop()


@pytest.fixture
def redis_client(servers: Servers) -> Iterator[redis.Redis]:
    client = sync_client(servers.redis_url, decode_responses=True)
    client.flushall()  # on a cluster: every master
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def config(
    servers: Servers, influx_db: InfluxHelper, redis_client: redis.Redis, tmp_path: Path
) -> Config:
    return Config.load(
        environ={},
        influx_url=servers.influx_url,
        influx_db=influx_db.database,
        redis_url=servers.redis_url,
        secret_key=SECRET_KEY,
        server_name="Test <Server>",
        data_dir=str(tmp_path / "var"),
    )


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(config: Config, clock: FakeClock) -> AsyncIterator[testing.ASGIConductor]:
    async with testing.ASGIConductor(create_app(config, clock=clock)) as conductor:
        yield conductor


def dead_url(scheme: str) -> str:
    """A URL at which nothing listens."""
    return f"{scheme}://127.0.0.1:{free_port()}"


@pytest.fixture
def restart_redis(servers: Servers) -> Callable[[], None]:
    """Kill the session's redis-server with SIGKILL and start it again on its data (on a
    cluster: its first node, then wait until the cluster is whole again)."""

    def restart() -> None:
        if servers.cluster is not None:  # the first node, back on its own data
            port = next(iter(servers.cluster.nodes))
            node = servers.cluster.nodes[port].proc
            node.kill()
            node.wait()
            servers.redis_server = start_node(servers.cluster.base, port)
            servers.cluster.nodes[port] = servers.redis_server
            servers.cluster.wait_ok()
            return
        proc = servers.redis_server.proc
        proc.kill()
        proc.wait()
        port = int(servers.redis_url.rsplit(":", 1)[1].split("/")[0])
        servers.redis_server = start_redis(servers.base / "redis", port)

    return restart


ADMIN_EMAIL, ADMIN_PASSWORD = "Admin@Example.org", "admin-password-1"


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def stored_values(redis_url: str) -> dict[str, bytes]:
    """Every Redis key with its value as bytes (a hash's values joined), for checks
    that a secret is stored nowhere; gzip-compressed values (cached /times answers)
    are decompressed, so nothing hides in them."""
    client = sync_client(redis_url)
    out: dict[str, bytes] = {}
    try:
        for key in client.keys("*"):
            kind = client.type(key)
            if kind == b"hash":
                value = b" ".join(_bytes(v) for v in client.hgetall(key).values())
            elif kind == b"string":
                value = _bytes(client.get(key) or b"")
            else:
                continue
            start = value.find(b"\x1f\x8b")
            if start >= 0:
                value += b" " + gzip.decompress(value[start:])
            out[_bytes(key).decode()] = value
    finally:
        client.close()
    return out


@dataclass
class Api:
    client: testing.ASGIConductor
    admin: dict[str, str]

    async def login(self, email: str, password: str) -> testing.Result:
        return await self.client.simulate_post(
            "/api/auth/local", json={"email": email, "password": password}
        )

    async def new_user(
        self, email: str, password: str = "user-password-1", **extra: str
    ) -> dict[str, str]:
        result = await self.client.simulate_post(
            "/api/users",
            json={"email": email, "password": password, **extra},
            headers=self.admin,
        )
        assert result.status_code == 201, result.text
        return bearer(result.json["token"])

    async def me(self, headers: dict[str, str]) -> testing.Result:
        return await self.client.simulate_get("/api/users/me", headers=headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def identity_config(config: Config) -> Config:
    return config.replace(
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        login_max_failures=3,
        login_max_failures_per_address=5,
        jwt_ttl=3600,
    )


@pytest.fixture
async def api(identity_config: Config, clock: FakeClock) -> AsyncIterator[Api]:
    async with testing.ASGIConductor(create_app(identity_config, clock=clock)) as client:
        result = await client.simulate_post(
            "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert result.status_code == 200, result.text
        yield Api(client, bearer(result.json["token"]))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (Debian's, driven by Playwright), closed after the test."""
    async with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh tab (its own cookies and storage) of 1000x700 pixels."""
    context = await browser.new_context(viewport={"width": 1000, "height": 700})
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest, page: Page) -> Callable[[str], Awaitable[Path]]:
    """``await screenshot("name")`` saves the page to var/screenshots/ (git-ignored)."""

    async def take(name: str) -> Path:
        path = screenshot_file(request.node.name, name)
        await page.screenshot(path=path, full_page=True)
        return path

    return take

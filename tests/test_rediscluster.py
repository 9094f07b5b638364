"""The service on a real 3-master Redis Cluster (tests/rediscluster.py): keys spread
by user over every master, the app's health and routes, a failover under beats."""

from __future__ import annotations

import asyncio
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from falcon import testing
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from heartbeat import HeartbeatStore, rebuild_stats
from screenaware.app import create_app
from screenaware.config import Config
from screenaware.identity.accounts import User, UserStore, user_key
from screenaware.identity.credentials import hash_password
from screenaware.identity.keys import ApiKeyStore
from screenaware.identity.projects import ProjectStore
from screenaware.storage.backends import Backends
from tests.conftest import SECRET_KEY, FakeClock, InfluxHelper, Servers
from tests.rediscluster import Cluster, async_client, cluster_ports, start_cluster, start_node

USERS = 1000


@pytest.fixture(scope="module")
def cluster(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's cluster (SCREENAWARE_TEST_REDIS=cluster), else one of this module."""
    if servers.cluster is not None:
        yield servers.cluster
        return
    started = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def cluster_config(
    cluster: Cluster, servers: Servers, influx_db: InfluxHelper, tmp_path: Path
) -> Iterator[Config]:
    cluster.flush()
    yield Config.load(
        environ={},
        influx_url=servers.influx_url,
        influx_db=influx_db.database,
        redis_url=cluster.url,
        secret_key=SECRET_KEY,
        admin_email="admin@example.org",
        admin_password="admin-password-1",
        data_dir=str(tmp_path / "var"),
    )
    cluster.flush()


@pytest.fixture
async def aredis(cluster_config: Config) -> AsyncIterator[aioredis.Redis]:
    client = async_client(cluster_config.redis_url, decode_responses=True)
    # Before concurrent use (see Backends.open): the slot map first.
    await client.initialize()
    yield client
    await client.aclose()


def slot_owners(cluster: Cluster) -> dict[int, int]:
    """Master port by slot, from CLUSTER SLOTS."""
    with cluster.node(cluster.masters()[0]) as client:
        ranges = client.execute_command("CLUSTER SLOTS")
    owners = {}
    for first, last, master, *_ in ranges:
        for slot in range(int(first), int(last) + 1):
            owners[slot] = int(master[1])
    return owners


async def test_the_keys_of_1000_users_spread_over_every_master(
    cluster: Cluster, cluster_config: Config, aredis: aioredis.Redis
) -> None:
    users, projects = UserStore(lambda: aredis), ProjectStore(lambda: aredis)
    keys = ApiKeyStore(lambda: aredis, FakeClock())
    password = await hash_password("user-password-1")
    gate = asyncio.Semaphore(50)

    async def one(n: int) -> str:
        async with gate:
            uuid = str(uuidlib.uuid4())
            await users.create(
                User(uuid, f"u{n}@example.org", "", "", "user", None, password, 0, n)
            )
            await projects.create_project(uuid, {"name": f"Project {n}"})
            await keys.create(uuid, "laptop")
            return uuid

    made = await asyncio.gather(*(one(n) for n in range(USERS)))
    owners = slot_owners(cluster)
    masters = cluster.masters()
    assert len(masters) == 3 and set(owners.values()) == set(masters)
    # Each user's three keys (user, apikeys, projects) share the user's slot.
    by_master = dict.fromkeys(masters, 0)
    for uuid in made:
        by_master[owners[key_slot(user_key(uuid).encode())]] += 1
    slots = {key_slot(user_key(u).encode()) for u in made}
    counted = dict.fromkeys(masters, 0)
    sizes = {}
    for port in masters:
        with cluster.node(port) as node:
            for slot in slots:
                if owners[slot] == port:
                    counted[port] += int(node.execute_command("CLUSTER COUNTKEYSINSLOT", slot))
            sizes[port] = int(node.dbsize())
            scanned = sum(1 for _ in node.scan_iter("{u:*}:*", count=1000))
        # COUNTKEYSINSLOT agrees with a scan of the node: 3 keys per user it holds.
        assert counted[port] == scanned == 3 * by_master[port]
        # A fair share: a third each, at least a fifth.
        assert by_master[port] >= USERS // 5, by_master
    # The global keys ({sa}: emails, the user list, the API key records) are on one.
    assert sum(sizes.values()) == 3 * USERS + 2 * USERS + 1
    assert [u.uuid for u in await users.all()] == made  # by creation


async def test_the_service_runs_on_the_cluster(cluster: Cluster, cluster_config: Config) -> None:
    app = create_app(cluster_config, clock=FakeClock())
    async with testing.ASGIConductor(app) as client:
        health = await client.simulate_get("/.well-known/health")
        assert health.json == {"status": "ok", "influxdb": "ok", "redis": "ok"}
        login = await client.simulate_post(
            "/api/auth/local", json={"email": "admin@example.org", "password": "admin-password-1"}
        )
        assert login.status_code == 200, login.text
        admin = {"Authorization": f"Bearer {login.json['token']}"}
        made = await client.simulate_post(
            "/api/users", json={"email": "ann@example.org", "password": "ann-password-1"},
            headers=admin,
        )  # fmt: skip
        assert made.status_code == 201, made.text
        ann = {"Authorization": f"Bearer {made.json['token']}"}
        project = await client.simulate_post("/api/projects", json={"name": "P"}, headers=ann)
        assert project.status_code == 201, project.text
        key = await client.simulate_post("/api/keys", json={"name": "k"}, headers=ann)
        assert key.status_code == 201, key.text
        listed = await client.simulate_get(
            "/api/projects", headers={"Authorization": f"Bearer {key.json['key']}"}
        )
        assert [p["name"] for p in listed.json] == ["P"]
        device = await client.simulate_post(
            "/api/devices", json={"name": "Laptop"}, headers={"Authorization": SECRET_KEY}
        )
        assert device.status_code == 200, device.text
        token = device.json["token"]
        for _ in range(3):
            beat = await client.simulate_post("/api/beat", headers={"Authorization": token})
            assert beat.status_code == 200, beat.text
        regenerated = await client.simulate_post(
            f"/api/devices/{device.json['id']}/token/generate",
            headers={"Authorization": SECRET_KEY},
        )
        assert regenerated.status_code == 200, regenerated.text
        stats = await client.simulate_get("/api/stats")
        assert stats.json["total_beats"] == 3


async def test_health_says_unavailable_unless_every_slot_is_served(
    cluster_config: Config, tmp_path: Path
) -> None:
    # A lone cluster node serving all slots but one: the cluster state is "fail".
    port = cluster_ports(1)[0]
    lone = start_node(tmp_path / "lone", port)
    try:
        with redis.Redis(port=port) as node:
            node.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16382)
        backends = Backends(cluster_config.replace(redis_url=f"redis+cluster://127.0.0.1:{port}"))
        await backends.open()
        try:
            with pytest.raises(RedisClusterException, match="cluster_state is fail"):
                await backends.ping_redis()
        finally:
            await backends.close()
    finally:
        lone.stop()
    # Nothing at the address: unavailable too, and the answer names no address.
    broken = cluster_config.replace(redis_url=f"redis+cluster://127.0.0.1:{port}")
    async with testing.ASGIConductor(create_app(broken, clock=FakeClock())) as client:
        health = await client.simulate_get("/.well-known/health")
        assert health.status_code == 503
        assert health.json["redis"] == "unavailable"
        assert str(port) not in health.text


def test_a_cross_slot_script_is_refused(cluster: Cluster) -> None:
    """The guard behind every store: a script or transaction over two users' keys
    is refused by the cluster (so the suite on a cluster proves none exists)."""
    with cluster.node(cluster.masters()[0]) as node:
        with pytest.raises(redis.ResponseError, match="hash to the same slot"):  # CROSSSLOT
            node.eval("return 1", 2, user_key("a"), user_key("b"))


async def beats_during(
    client: testing.ASGIConductor, disturb: Callable[[], None], loops: int = 4
) -> list[int]:
    """Register a device, send beats from ``loops`` loops while ``disturb`` runs in a
    thread, and answer the statuses of every beat sent."""
    device = await client.simulate_post(
        "/api/devices", json={"name": "Laptop"}, headers={"Authorization": SECRET_KEY}
    )
    token = device.json["token"]
    statuses: list[int] = []
    done = asyncio.Event()

    async def beats() -> None:
        while not done.is_set():
            answer = await client.simulate_post("/api/beat", headers={"Authorization": token})
            statuses.append(answer.status_code)

    loaders = [asyncio.create_task(beats()) for _ in range(loops)]
    try:
        await asyncio.to_thread(disturb)
    finally:
        done.set()
        await asyncio.gather(*loaders)
    return statuses


async def test_a_master_failover_under_beats_loses_no_acknowledged_beat(
    cluster: Cluster, cluster_config: Config, influx_db: InfluxHelper
) -> None:
    """A replica takes over the master of the Heartbeat API's slot (and of the
    global one, if the same) while beats arrive: every acknowledged beat is in
    InfluxDB and counted in Redis; a beat refused meanwhile answers 503, never 500."""
    slot = key_slot(b"{hb}:meta")
    master = slot_owners(cluster)[slot]
    replica = next(
        p
        for p in cluster.ports
        if p != master and cluster.node(p).info("replication").get("master_port") == master
    )
    app = create_app(cluster_config)
    async with testing.ASGIConductor(app) as client:

        def fail_over() -> None:
            time.sleep(0.5)  # beats flow first
            with cluster.node(replica) as node:
                assert node.execute_command("CLUSTER FAILOVER") in ("OK", b"OK", True)
                deadline = time.monotonic() + 30
                while node.info("replication")["role"] != "master":
                    assert time.monotonic() < deadline, "the replica did not take over"
                    time.sleep(0.05)
            cluster.wait_ok()
            time.sleep(0.5)  # and after

        statuses = await beats_during(client, fail_over)
        assert slot_owners(cluster)[slot] == replica
        acknowledged = statuses.count(200)
        assert set(statuses) <= {200, 503}, set(statuses)
        assert acknowledged >= 0.9 * len(statuses) and acknowledged > 20, statuses
        stats = await client.simulate_get("/api/stats")
        assert stats.json["total_beats"] == acknowledged
    # The source of truth holds each acknowledged beat (a refused one may be there).
    assert influx_db.count("beat") >= acknowledged


async def test_a_killed_master_loses_no_acknowledged_beat_of_the_source_of_truth(
    cluster: Cluster, cluster_config: Config, influx_db: InfluxHelper
) -> None:
    """An unplanned failover (the master of the Heartbeat slot killed): beats answer
    200 or 503; every acknowledged one is in InfluxDB, the source of truth, and
    ``rebuild-stats`` gives the counters back whatever the replica had not got."""
    slot = key_slot(b"{hb}:meta")
    master = slot_owners(cluster)[slot]
    app = create_app(cluster_config)
    async with testing.ASGIConductor(app) as client:

        def kill_master() -> None:
            time.sleep(0.5)
            cluster.nodes[master].proc.kill()
            cluster.nodes[master].proc.wait()
            deadline = time.monotonic() + 30
            while slot_owners(cluster).get(slot) in (None, master):
                assert time.monotonic() < deadline, "no replica took over"
                time.sleep(0.1)
            time.sleep(1.0)  # beats on the new master

        try:
            statuses = await beats_during(client, kill_master)
        finally:
            # The killed node comes back as a replica of the new master.
            cluster.nodes[master] = start_node(cluster.base, master)
            await asyncio.to_thread(cluster.wait_ok)
        acknowledged = statuses.count(200)
        assert set(statuses) <= {200, 503}, set(statuses)
        assert acknowledged > 20, statuses
        assert influx_db.count("beat") >= acknowledged
        backends = Backends(cluster_config)
        await backends.open()
        try:
            raw = await rebuild_stats(
                backends.influx, HeartbeatStore(backends.get_redis), int(time.time())
            )
        finally:
            await backends.close()
        assert raw.total_beats == influx_db.count("beat")
        stats = await client.simulate_get("/api/stats")
        assert stats.json["total_beats"] == influx_db.count("beat") >= acknowledged

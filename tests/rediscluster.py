"""A real Redis Cluster for the tests: 6 ``redis-server --cluster-enabled yes`` (3
masters, each with a replica) on free ports in a temp dir, joined by
``redis-cli --cluster create``, stopped by pid at the end.

``SCREENAWARE_TEST_REDIS=cluster`` makes the session's ``servers`` fixture
(tests/conftest.py) start one instead of the single redis-server, so chosen test
files run unchanged against a cluster (``scripts/test`` does that for a subset).
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster

from screenaware.config import parse_cluster_url
from screenaware.storage.localservers import Server, redis_answers, stop_pid

MASTERS, REPLICAS = 3, 1
# A failover is noticed after this long without an answer (ms): short for tests.
NODE_TIMEOUT_MS = 1500


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_ports(count: int) -> list[int]:
    """``count`` ports free now, each with its cluster bus port (port + 10000) free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 29999)
        if port not in ports and _port_free(port) and _port_free(port + 10000):
            ports.append(port)
    return ports


@dataclass
class Cluster:
    """A started cluster: its nodes by port, and how to reach it."""

    base: Path
    nodes: dict[int, Server] = field(default_factory=dict)

    @property
    def ports(self) -> list[int]:
        return sorted(self.nodes)

    @property
    def url(self) -> str:
        """The service's ``SCREENAWARE_REDIS_URL`` (three of the nodes suffice to start)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node (for CLUSTER and DBSIZE questions to that node)."""
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True)

    def masters(self) -> list[int]:
        """The ports of the nodes that are masters now."""
        found = []
        for port in self.ports:
            with self.node(port) as client:
                try:
                    if client.info("replication")["role"] == "master":
                        found.append(port)
                except redis.ConnectionError:
                    continue
        return found

    def wait_ok(self, timeout: float = 60) -> None:
        """Until every live node says ``cluster_state:ok`` and knows 3 masters, and
        every replica is in sync with its master."""
        deadline = time.monotonic() + timeout
        while True:
            if all(self._node_ok(port) for port, s in self.nodes.items() if s.proc.poll() is None):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not become ok")
            time.sleep(0.1)

    def _node_ok(self, port: int) -> bool:
        with self.node(port) as client:
            try:
                info = client.cluster("INFO")
                replication = client.info("replication")
            except redis.RedisError:
                return False
        if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
            return False  # a replica not yet in sync could not take over
        return info.get("cluster_state") == "ok" and int(info.get("cluster_size", 0)) == MASTERS

    def flush(self) -> None:
        """Empty every master (a FLUSHALL of one node empties only its slots)."""
        for port in self.masters():
            with self.node(port) as client:
                client.flushall()

    def stop(self) -> None:
        for server in self.nodes.values():
            server.stop()


def start_node(base: Path, port: int) -> Server:
    data = base / str(port)
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        "redis-server",
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
        "--cluster-enabled", "yes", "--cluster-config-file", str(data / "nodes.conf"),
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        "--logfile", str(data / "redis.log"), "--daemonize", "no",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = Server("redis-server", proc)
    deadline = time.monotonic() + 30
    while not redis_answers("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_pid(proc.pid, 5, proc)
            raise RuntimeError(f"cluster node {port} did not start")
        time.sleep(0.05)
    return server


def start_cluster(base: Path) -> Cluster:
    """Start 6 nodes and make them a cluster of 3 masters with a replica each."""
    cluster = Cluster(base)
    try:
        for port in cluster_ports(MASTERS * (1 + REPLICAS)):
            cluster.nodes[port] = start_node(base, port)
        create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports)]
        create += ["--cluster-replicas", str(REPLICAS), "--cluster-yes"]
        subprocess.run(create, check=True, capture_output=True, timeout=120)
        cluster.wait_ok()
    except BaseException:
        cluster.stop()
        raise
    return cluster


class TestRedisCluster(RedisCluster):
    """The synchronous cluster client of the test assertions: KEYS, DBSIZE and the
    command counts ask every master (redis-py asks one node), so a test's
    ``keys(pattern)`` sees all."""

    __test__ = False  # not a test class

    def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        kwargs.setdefault("target_nodes", RedisCluster.PRIMARIES)
        return super().keys(pattern, **kwargs)

    def dbsize(self, **kwargs: Any) -> Any:
        kwargs.setdefault("target_nodes", RedisCluster.PRIMARIES)
        return super().dbsize(**kwargs)

    def info(self, section: Any = None, *args: Any, **kwargs: Any) -> Any:
        """``info("commandstats")`` sums the calls of every master."""
        if section != "commandstats" or "target_nodes" in kwargs:
            return super().info(section, *args, **kwargs)
        total: dict[str, dict[str, int]] = {}
        for stats in super().info(section, target_nodes=RedisCluster.PRIMARIES).values():
            for name, entry in stats.items():
                total.setdefault(name, {"calls": 0})["calls"] += int(entry["calls"])
        return total

    def flushall(self, asynchronous: bool = False, **kwargs: Any) -> Any:
        kwargs.setdefault("target_nodes", RedisCluster.PRIMARIES)
        return super().flushall(asynchronous, **kwargs)


def sync_client(url: str, **kwargs: Any) -> redis.Redis:
    """A synchronous client of ``url``: one server's, or a cluster's."""
    if not url.startswith("redis+cluster://"):
        return redis.Redis.from_url(url, **kwargs)
    target = parse_cluster_url(url)
    client = TestRedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes], **kwargs)
    return client  # type: ignore[return-value]  # same commands, other class


def async_client(url: str, **kwargs: Any) -> aioredis.Redis:
    """An asyncio client of ``url``: one server's, or a cluster's."""
    if not url.startswith("redis+cluster://"):
        return aioredis.Redis.from_url(url, **kwargs)
    target = parse_cluster_url(url)
    nodes = [AsyncClusterNode(h, p) for h, p in target.nodes]
    return WarmingCluster(startup_nodes=nodes, **kwargs)  # type: ignore[return-value]


class WarmingCluster(AsyncRedisCluster):
    """Loads the slot map before its first commands run, one at a time: redis-py
    8.1 mixed up replies when a fresh client's first commands ran concurrently (the
    service's Backends.open loads it at start for the same reason)."""

    _warming: asyncio.Lock | None = None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._warming is None:
            self._warming = asyncio.Lock()
        if self._initialize:
            async with self._warming:
                if self._initialize:
                    await self.initialize()
        return await super().execute_command(*args, **kwargs)

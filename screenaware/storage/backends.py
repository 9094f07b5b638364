"""The clients of the two backing stores, opened and closed with the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from screenaware.config import Config, RedisClusterTarget
from screenaware.errors import StorageUnavailable
from screenaware.storage.clockslots import SlotLease
from screenaware.storage.influx import GroupCommitWriter, InfluxClient, UniqueClock
from screenaware.storage.outages import INFLUXDB, REDIS, REDIS_ERRORS, OutageLog

LOG = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


class Backends:
    """InfluxDB client, its group-commit writer, and the Redis client.

    Created with the app; the network clients exist only between :meth:`open`
    and :meth:`close`, which run in the worker's event loop.

    Args:
        config: the service configuration.
        point_clock: the clock stamping points; it gets this process's slot at open.
    """

    def __init__(self, config: Config, point_clock: UniqueClock | None = None) -> None:
        self.config = config
        self.outages = OutageLog(config.outage_log_interval)
        self.point_clock = point_clock or UniqueClock()
        self.slots = SlotLease(
            self.get_redis, self.point_clock, ttl=config.clock_slot_ttl, outages=self.outages
        )
        self.influx = InfluxClient(config, self.outages)
        self.writer = GroupCommitWriter(
            self.influx,
            max_batch_lines=config.write_batch_max,
            max_pending_lines=config.write_queue_max,
        )
        self._redis: aioredis.Redis | None = None
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []

    def on_startup(self, hook: Hook) -> None:
        """Run ``hook`` after the clients open (a failing hook is logged, not fatal)."""
        self._startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        """Run ``hook`` before the clients close (e.g. stopping tickers)."""
        self._shutdown.append(hook)

    def __repr__(self) -> str:
        return f"Backends(influx={self.influx!r})"

    @property
    def redis(self) -> aioredis.Redis:
        """The Redis client (only while open)."""
        if self._redis is None:
            raise RuntimeError("Backends.open() was not called")
        return self._redis

    def get_redis(self) -> aioredis.Redis:
        """The Redis client; stores take this method and call it when they need it."""
        return self.redis

    async def open(self) -> None:
        """Create the clients and make sure the InfluxDB database exists.

        A database that is down now is not fatal: requests answer 503 until it is
        back, and the writer creates the database on its first successful write.
        """
        await self.influx.open()
        self._redis = self._open_redis()
        if isinstance(self._redis, RedisCluster):
            # Load the slot map now, before requests run: redis-py 8.1's asyncio
            # cluster client mixed up replies when its first commands ran
            # concurrently (tests/test_rediscluster.py). A cluster down now is retried
            # by the first command, as any outage is.
            try:
                await self._redis.initialize()
            except REDIS_ERRORS as exc:
                self.outages.failure(REDIS, exc)
        # A Redis that is down now leaves the clock without a slot (beats answer 503)
        # until the lease, retried in the background, succeeds.
        await self.slots.start()
        try:
            await self.influx.ensure_database()
        except StorageUnavailable as exc:
            self.outages.failure(INFLUXDB, exc)

    def _open_redis(self) -> aioredis.Redis:
        target = self.config.redis_cluster
        if target is not None:
            return self._open_cluster(target)
        # A blocking pool: under a burst, requests wait briefly for a connection
        # instead of failing once the pool is exhausted. The wait is bounded by the
        # same time-out as a command: behind a hung Redis, a request waiting for a
        # connection answers 503 after at most two time-outs, not after the whole
        # queue ahead of it has timed out one by one.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.config.redis_url,
            max_connections=self.config.redis_max_connections,
            timeout=self.config.redis_timeout,
            decode_responses=True,
            socket_connect_timeout=3,
            socket_timeout=self.config.redis_timeout,
            # After a Redis restart, pooled connections are dead: a command that
            # finds one reconnects and runs again instead of failing the request.
            # Not after a time-out: a hung server held every request for four
            # time-outs instead of one, and a command that timed out was sent, so a
            # server that is only busy still runs it: a page view was counted twice
            # (tests/test_faults.py).
            retry=Retry(
                ExponentialBackoff(cap=0.5, base=0.02),
                retries=3,
                supported_errors=(RedisConnectionError,),  # its default has TimeoutError
            ),
        )
        # Every answer of Redis ends an outage of it in the log.
        pool.connection_class = _reporting_success(pool.connection_class, self.outages)
        return aioredis.Redis.from_pool(pool)  # closes the pool with the client

    def _open_cluster(self, target: RedisClusterTarget) -> aioredis.Redis:
        """A Redis Cluster client; it finds the nodes on its first command.

        Every store keeps each script and transaction on one slot (the hash tags of
        :mod:`screenaware.storage.redisstore`), which the cluster client routes to
        that slot's master; plain pipelines are split per node by the client.
        """
        cluster = _WaitingCluster(
            self.config.redis_max_connections,
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            # A master that is down (before its replica takes over) stops only the
            # users on its slots; the health check says the cluster is not whole.
            require_full_coverage=False,
            username=target.username,
            password=target.password,
            ssl=target.tls,
            decode_responses=True,
            # Per node. Commands wait at redis_max_connections in flight (see
            # _WaitingCluster); the room above is for pipelines and transactions.
            max_connections=2 * self.config.redis_max_connections,
            socket_connect_timeout=3,
            socket_timeout=self.config.redis_timeout,
            # A failover takes the cluster's node timeout (seconds) and a new slot map:
            # retry with backoff for a few seconds before a request fails (503).
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        reporting = _reporting_success(cluster.connection_kwargs["connection_class"], self.outages)
        # The nodes found later are made with these arguments, the given ones already.
        cluster.connection_kwargs["connection_class"] = reporting
        for node in cluster.startup_nodes:
            node.connection_class = reporting
        # The cluster client offers every command the stores use, with the same
        # signatures; the stores are typed against the plain client.
        return cast(aioredis.Redis, cluster)

    async def ping_redis(self) -> None:
        """Raise unless Redis answers; on a cluster every master must, with the
        cluster state ``ok`` (all slots served)."""
        client = self.redis
        if not isinstance(client, RedisCluster):
            await client.ping()
            return
        info = await client.cluster_info()
        if info.get("cluster_state") != "ok":
            raise RedisClusterException(f"cluster_state is {info.get('cluster_state')}")
        await client.ping(target_nodes=RedisCluster.PRIMARIES)

    async def close(self) -> None:
        """Flush pending writes, free the clock slot and close the clients."""
        await self.writer.stop()
        if self._redis is not None:
            await self.slots.stop()
        await self.influx.close()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


class _WaitingCluster(RedisCluster):
    """A cluster client whose commands wait for room, as the one-server client's
    blocking pool makes them: redis-py's cluster client fails a command at once
    (MaxConnectionsError, 503) when a node has no free connection, so a burst of
    logins answered 503 where one server's client waits.

    Args:
        in_flight: most commands of this client at once (each holds one connection).
    """

    def __init__(self, in_flight: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._room = asyncio.Semaphore(in_flight)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._room:
            return await super().execute_command(*args, **kwargs)


def _reporting_success(connection_class: type[Any], outages: OutageLog) -> type[Any]:
    """``connection_class`` telling ``outages`` of every answer Redis gives.

    A subclass of whichever class the URL chose (TCP, TLS or Unix socket); an
    error answer is an answer too.
    """

    class Reporting(connection_class):  # type: ignore[misc]  # redis-py's classes are untyped here
        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            try:
                response = await super().read_response(*args, **kwargs)
            except ResponseError:
                outages.success(REDIS)
                raise
            outages.success(REDIS)
            return response

    Reporting.__name__ = Reporting.__qualname__ = "Reporting" + connection_class.__name__
    return Reporting


class Lifespan:
    """Falcon middleware opening the backends at startup and closing them at shutdown.

    Around that it runs the hooks registered with :meth:`Backends.on_startup` and
    :meth:`Backends.on_shutdown`; a hook that finds a store down logs it and the
    worker starts anyway.
    """

    def __init__(self, backends: Backends) -> None:
        self._backends = backends

    async def process_startup(self, scope: Any, event: Any) -> None:
        await self._backends.open()
        await _run_hooks(self._backends._startup)

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        await _run_hooks(self._backends._shutdown)
        await self._backends.close()


async def _run_hooks(hooks: Sequence[Hook]) -> None:
    for hook in hooks:
        try:
            await hook()
        except Exception as exc:
            LOG.warning("lifespan hook %s failed: %s", hook.__qualname__, type(exc).__name__)

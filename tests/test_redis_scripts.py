"""The shared Redis scripts against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest
import redis

from screenaware.errors import RateLimited
from screenaware.storage.ratelimit import Quota
from screenaware.storage.redisstore import RELEASE_LOCK
from tests.conftest import Servers
from tests.rediscluster import async_client


async def test_a_refused_amount_is_given_back_atomically(
    servers: Servers, redis_client: redis.Redis
) -> None:
    client = async_client(servers.redis_url)
    try:
        quota = Quota(lambda: client, "test", 600)
        await quota.take("k", 70, 100)
        with pytest.raises(RateLimited) as refused:
            await quota.take("k", 40, 100)
        assert 0 < refused.value.retry_after <= 600
        assert redis_client.get("{sa}:quota:test:k") == "70"
        # Concurrent refusals never make room vanish: 30 units still fit afterwards.
        results = await asyncio.gather(
            *(quota.take("k", 31, 100) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, RateLimited) for r in results)
        await quota.take("k", 30, 100)
        assert redis_client.get("{sa}:quota:test:k") == "100"
        assert 0 < redis_client.ttl("{sa}:quota:test:k") <= 600
        # An amount larger than the whole limit on a fresh key leaves no key behind.
        with pytest.raises(RateLimited):
            await quota.take("fresh", 101, 100)
        assert redis_client.exists("{sa}:quota:test:fresh") == 0
    finally:
        await client.aclose()


async def test_a_lock_is_released_only_by_its_holder(
    servers: Servers, redis_client: redis.Redis
) -> None:
    client = async_client(servers.redis_url)
    try:
        redis_client.set("lock", "theirs")
        assert await RELEASE_LOCK(client, ["lock"], ["ours"]) == 0
        assert redis_client.get("lock") == "theirs"
        assert await RELEASE_LOCK(client, ["lock"], ["theirs"]) == 1
        assert redis_client.exists("lock") == 0
    finally:
        await client.aclose()

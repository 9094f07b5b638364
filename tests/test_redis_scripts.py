"""The shared Redis scripts against a real redis-server."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heartbeat import HeartbeatStore
from heartbeat.store import hash_token
from screenaware.activity.store import (
    WRITE_SUM_DAYS,
    ActivityStore,
    count_writes,
    generations_key,
)
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


async def test_tokens_are_looked_up_and_beats_counted_in_time_order(
    servers: Servers, redis_client: redis.Redis
) -> None:
    client = async_client(servers.redis_url)
    try:
        store = HeartbeatStore(lambda: client)
        laptop, laptop_token = await store.add_device("Laptop", 1_000)
        phone, phone_token = await store.add_device("Phone", 1_000)
        digests = [hash_token(t) for t in (phone_token, "nobody's", laptop_token)]
        # A look-up counts nothing.
        assert await store.look_up(digests) == [phone, None, laptop]
        assert await store.look_up([]) == []
        assert (await store.read(1_000)).total_beats == 0
        # Given out of order: counted in time order.
        await store.count_beats([(laptop, 1_130), (phone, 1_100), (laptop, 1_000)])
        raw = await store.read(1_200)
        assert (raw.total_beats, raw.last_seen, raw.longest_absence) == (3, 1_130, 100)
        assert [(d.num_beats, d.last_beat) for d in raw.devices] == [(2, 1_130), (1, 1_100)]
        # A later beat: an absence of 370 s; an empty batch changes nothing.
        await store.count_beats([(phone, 1_500)])
        await store.count_beats([])
        raw = await store.read(1_500)
        assert (raw.total_beats, raw.last_seen, raw.longest_absence) == (4, 1_500, 370)
    finally:
        await client.aclose()


# Days near the tree's ends (clamped there), and a span where ranges often meet writes.
_days = st.one_of(
    st.integers(20_000, 20_040),
    st.integers(-3, 2),
    st.integers(WRITE_SUM_DAYS - 3, WRITE_SUM_DAYS + 3),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.lists(_days, min_size=1, max_size=6), min_size=0, max_size=8),
    ends=st.tuples(_days, st.integers(0, 45)),  # /times asks at most 731 days
)
def test_the_running_sums_give_the_writes_to_any_range_of_days(
    servers: Servers,
    redis_client: redis.Redis,
    batches: list[list[int]],
    ends: tuple[int, int],
) -> None:
    """A cached /times answer is checked by the running sums of the day counters: for
    any writes and any range they equal the range's counters summed one by one (past
    the tree's ends, at least that: more only invalidates more)."""
    user = str(uuid.uuid4())
    first, last = ends[0], ends[0] + ends[1]

    async def check() -> None:
        client = async_client(servers.redis_url)
        try:
            for batch in batches:
                async with client.pipeline(transaction=False) as pipe:
                    count_writes(pipe, user, batch)
                    await pipe.execute()
            state = await ActivityStore(lambda: client).day_state(user, None, ["p"], first, last)
        finally:
            await client.aclose()
        counters = {int(d): int(n) for d, n in redis_client.hgetall(generations_key(user)).items()}
        exact = sum(n for d, n in counters.items() if first <= d <= last)
        assert state.counters == [
            str(counters[d]) if d in counters else None for d in range(first, last + 1)
        ]
        written = [day for batch in batches for day in batch]
        inside = all(0 <= day < WRITE_SUM_DAYS for day in [*written, first, last])
        if inside:
            assert int(state.written) == exact
        else:  # days past an end share its field with the end day
            assert int(state.written) >= exact

    asyncio.run(check())

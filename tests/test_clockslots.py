"""Point-clock slots leased from the real Redis: unique among live processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from screenaware.config import Config
from screenaware.errors import SlotNotLeased
from screenaware.storage.backends import Backends
from screenaware.storage.clockslots import slot_key
from screenaware.storage.localservers import free_port, start_redis


async def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_slot_held_by_a_live_process_is_never_handed_out_again(config: Config) -> None:
    # 1,000 processes start and stop while one keeps running: none gets its slot
    # (a counter modulo 1,000 came round to it at the 1,000th).
    holder = Backends(config)
    await holder.open()
    try:
        held = holder.point_clock.slot
        assert held is not None
        for _ in range(1000):
            other = Backends(config)
            await other.open()
            try:
                assert other.point_clock.slot is not None
                assert other.point_clock.slot != held
            finally:
                await other.close()
    finally:
        await holder.close()


async def test_live_processes_hold_distinct_slots_and_a_closed_one_frees_its_own(
    config: Config, redis_client: redis.Redis
) -> None:
    opened = [Backends(config) for _ in range(5)]
    for backends in opened:
        await backends.open()
    try:
        slots = [b.point_clock.slot for b in opened]
        assert sorted(slots) == [0, 1, 2, 3, 4]  # type: ignore[type-var]
        # Each key names its holder; closing frees exactly that one.
        assert redis_client.get(slot_key(2)) == opened[2].slots.owner
        third = opened.pop(2)
        await third.close()
        assert redis_client.get(slot_key(2)) is None
        with pytest.raises(SlotNotLeased):
            third.point_clock()
        again = Backends(config)
        await again.open()
        opened.append(again)
        assert again.point_clock.slot == 2
    finally:
        for backends in opened:
            await backends.close()


async def test_redis_down_at_start_means_no_slot_until_the_background_lease_gets_one(
    config: Config, tmp_path: Path
) -> None:
    port = free_port()
    backends = Backends(config.replace(redis_url=f"redis://127.0.0.1:{port}/0"))
    await backends.open()
    server = None
    try:
        # Not a random slot that another process may hold: none, and points wait.
        assert backends.point_clock.slot is None
        with pytest.raises(SlotNotLeased):
            backends.point_clock()
        server = start_redis(tmp_path / "redis", port)
        await wait_for(lambda: backends.point_clock.slot is not None)
        client = redis.Redis(port=port, decode_responses=True)
        assert client.get(slot_key(backends.point_clock.slot or 0)) == backends.slots.owner
        client.close()
        assert backends.point_clock() % 1000 == backends.point_clock.slot
    finally:
        await backends.close()
        if server is not None:
            server.stop()


async def test_the_lease_is_renewed_and_a_lapsed_one_stops_the_clock(
    config: Config, tmp_path: Path
) -> None:
    port = free_port()
    server = start_redis(tmp_path / "redis", port)
    client = redis.Redis(port=port, decode_responses=True)
    # ttl 3 s: renewed every second, valid 2 s past the last renewal.
    backends = Backends(config.replace(redis_url=f"redis://127.0.0.1:{port}/0", clock_slot_ttl=3))
    await backends.open()
    try:
        slot = backends.point_clock.slot
        assert slot is not None
        await asyncio.sleep(4)  # longer than the ttl: the key lives on, renewed
        assert client.get(slot_key(slot)) == backends.slots.owner
        assert 0 < client.ttl(slot_key(slot)) <= 3
        backends.point_clock()
        # Redis gone: no renewal, and within 2 s of the last one the clock stops.
        server.proc.kill()
        server.proc.wait()
        await wait_for(lambda: backends.point_clock.slot is None, timeout=4)
        with pytest.raises(SlotNotLeased):
            backends.point_clock()
        # Back (its AOF kept the key, still ours): the same slot again.
        server = start_redis(tmp_path / "redis", port)
        await wait_for(lambda: backends.point_clock.slot is not None)
        assert backends.point_clock.slot == slot
        # A key another holder took (Redis lost and re-leased it): ours no longer.
        client.set(slot_key(slot), "someone-else", ex=30)
        await wait_for(lambda: backends.point_clock.slot not in (None, slot))
        assert client.get(slot_key(slot)) == "someone-else"
        new_slot = backends.point_clock.slot or 0
        assert client.get(slot_key(new_slot)) == backends.slots.owner
    finally:
        await backends.close()
        client.close()
        server.stop()


async def test_a_failed_renewal_is_retried_a_second_later_not_a_third_of_the_ttl_later(
    config: Config, tmp_path: Path
) -> None:
    port = free_port()
    server = start_redis(tmp_path / "redis", port)
    # ttl 30 s: renewed every 10 s, valid 20 s past the last renewal.
    backends = Backends(config.replace(redis_url=f"redis://127.0.0.1:{port}/0", clock_slot_ttl=30))
    await backends.open()
    try:
        assert backends.point_clock.slot is not None
        assert backends.slots.pause() == 10
        server.proc.kill()
        server.proc.wait()
        await backends.slots.step()  # the renewal fails; the lease is still valid
        assert backends.point_clock.slot is not None
        # Redis may be back in a second: waiting 10 s could let the lease lapse (a
        # hung Redis holds each attempt for its time-out) and then keep the clock
        # stopped, beats answering 503, long after Redis answers again.
        assert backends.slots.pause() == 1.0
        server = start_redis(tmp_path / "redis", port)
        await backends.slots.step()
        assert backends.slots.pause() == 10
    finally:
        await backends.close()
        server.stop()

"""Login limits under concurrency: real gunicorn (two workers), real Redis.

A burst of concurrent logins must not pass the per-email or per-address limit:
every attempt is counted before its password is checked.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from screenaware.config import Config
from screenaware.errors import RateLimited
from screenaware.storage.ratelimit import RateLimiter
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.rediscluster import async_client
from tests.service import Service, run_service

BURST = 200


@pytest.fixture
def limits_config(config: Config) -> Config:
    # The documented defaults (10 per email, 50 per address, 300 s), spelled out.
    return config.replace(
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        login_max_failures=10,
        login_max_failures_per_address=50,
        login_window=300,
    )


@pytest.fixture
def service(limits_config: Config, tmp_path: Path) -> Iterator[Service]:
    with run_service(limits_config, tmp_path, workers=2) as svc:
        yield svc


async def burst(url: str, bodies: list[dict[str, str]]) -> list[httpx.Response]:
    """POST every body to the login at once, each on a connection of its own."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        return list(
            await asyncio.gather(*(client.post("/api/auth/local", json=body) for body in bodies))
        )


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


async def test_a_burst_for_one_email_gets_at_most_the_limit_of_password_checks(
    service: Service, limits_config: Config, redis_client: redis.Redis
) -> None:
    limit = limits_config.login_max_failures
    bodies = [{"email": ADMIN_EMAIL, "password": f"wrong-{i}"} for i in range(BURST - 1)]
    # The right password last: by the time it arrives the limit is taken.
    bodies.append({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    responses = await burst(service.url, bodies)
    counts = statuses(responses)
    assert set(counts) <= {401, 429, 200}, counts
    assert 1 <= counts[401] <= limit, counts
    # A success is given back, so at most one more attempt than the limit was checked.
    assert counts[401] + counts[200] <= limit + 1, counts
    assert counts[429] == BURST - counts[401] - counts[200]
    assert responses[-1].status_code == 429, "the right password inside the burst got a token"
    assert "token" not in responses[-1].json()
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 429)
    # Exactly the failures stay counted.
    assert (
        int(redis_client.get(f"{{sa}}:rl:login:email:{ADMIN_EMAIL.lower()}") or 0) == (counts[401])
    )
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        later = await client.post(
            "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
    assert later.status_code == 429


async def test_a_burst_over_many_emails_gets_at_most_the_address_limit(
    service: Service, limits_config: Config, redis_client: redis.Redis
) -> None:
    limit = limits_config.login_max_failures_per_address
    bodies = [
        {"email": f"guess{i}@example.org", "password": "wrong-password"} for i in range(BURST)
    ]
    counts = statuses(await burst(service.url, bodies))
    assert set(counts) <= {401, 429}, counts
    assert 1 <= counts[401] <= limit, counts
    assert counts[429] == BURST - counts[401]
    assert int(redis_client.get("{sa}:rl:login:addr:127.0.0.1") or 0) == counts[401]
    # The address is spent: even the right password of another email is refused.
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        right = await client.post(
            "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
    assert right.status_code == 429


async def test_both_limits_hold_in_one_burst(
    service: Service, limits_config: Config, redis_client: redis.Redis
) -> None:
    # Many attempts at a few emails: each email keeps its own limit and together
    # they stay within the address limit.
    per_email = limits_config.login_max_failures
    emails = [f"target{i}@example.org" for i in range(8)]
    bodies = [{"email": emails[i % 8], "password": f"wrong-{i}"} for i in range(BURST)]
    responses = await burst(service.url, bodies)
    failed = Counter(
        b["email"] for b, r in zip(bodies, responses, strict=True) if r.status_code == 401
    )
    assert all(n <= per_email for n in failed.values()), failed
    assert sum(failed.values()) <= limits_config.login_max_failures_per_address
    assert statuses(responses)[429] == BURST - sum(failed.values())
    for email in emails:
        stored = redis_client.get(f"{{sa}}:rl:login:email:{email}")
        assert int(stored or 0) == failed[email]


async def test_the_rightful_user_logs_in_as_usual(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:

        async def login(password: str) -> int:
            body = {"email": ADMIN_EMAIL, "password": password}
            return (await client.post("/api/auth/local", json=body)).status_code

        for _ in range(9):
            assert await login("typo-password") == 401
        assert await login(ADMIN_PASSWORD) == 200
        # Successes use up nothing: far more logins than the limit, one after another.
        for _ in range(30):
            assert await login(ADMIN_PASSWORD) == 200
        # ... and do not wipe the failures either (an attacker's count stays).
        assert await login("typo-password") == 401
        assert await login(ADMIN_PASSWORD) == 429


# --- the limiter itself, against the real Redis --------------------------


Limiter = Callable[[dict[str, int], int], RateLimiter]


@pytest.fixture
async def limiter(config: Config, redis_client: redis.Redis) -> AsyncIterator[Limiter]:
    client = async_client(config.redis_url, decode_responses=True, max_connections=400)
    yield lambda limits, window: RateLimiter(lambda: client, "test", limits, window)
    await client.aclose()


async def test_concurrent_attempts_never_pass_the_limit(
    limiter: Limiter, redis_client: redis.Redis
) -> None:
    rl = limiter({"email": 7, "addr": 1000}, 60)

    async def attempt(i: int) -> bool:
        try:
            await rl.acquire(["email:x@example.org", f"addr:10.0.0.{i % 3}"])
        except RateLimited:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(300)))
    assert sum(results) == 7
    # A refused attempt counted nowhere: the address counters hold the 7 only.
    addr = [int(redis_client.get(f"{{sa}}:rl:test:addr:10.0.0.{i}") or 0) for i in range(3)]
    assert sum(addr) == 7
    assert 0 < redis_client.ttl("{sa}:rl:test:email:x@example.org") <= 60


async def test_a_refund_gives_back_one_attempt_and_never_outlives_the_window(
    limiter: Limiter, redis_client: redis.Redis
) -> None:
    rl = limiter({"email": 2}, 1)
    await rl.acquire(["email:a"])
    await rl.acquire(["email:a"])
    with pytest.raises(RateLimited):
        await rl.acquire(["email:a"])
    await rl.refund(["email:a"])
    await rl.acquire(["email:a"])  # room for exactly one again
    with pytest.raises(RateLimited):
        await rl.acquire(["email:a"])
    time.sleep(1.2)
    # The window ended while the attempt ran: the refund must not create a
    # counter without an expiry (which would never go away).
    await rl.refund(["email:a"])
    assert redis_client.exists("{sa}:rl:test:email:a") == 0
    await rl.refund(["email:a"])
    await rl.acquire(["email:a"])
    assert int(redis_client.get("{sa}:rl:test:email:a") or 0) == 1


# --- the current password counts like a login ----------------------------


async def test_guessing_the_current_password_with_a_token_is_limited(api: Api) -> None:
    # identity_config: 3 failures per email. A stolen token is no way around them.
    headers = await api.new_user("victim@example.org")
    for i in range(3):
        result = await api.client.simulate_put(
            "/api/users/me/password",
            json={"oldPassword": f"guess-{i}-password", "password": "taken-over-1"},
            headers=headers,
        )
        assert result.status_code == 401
    right = await api.client.simulate_put(
        "/api/users/me/password",
        json={"oldPassword": "user-password-1", "password": "taken-over-1"},
        headers=headers,
    )
    assert right.status_code == 429
    # The login of that email is limited by the same count, and nothing changed.
    assert (await api.login("victim@example.org", "user-password-1")).status_code == 429
    assert (await api.me(headers)).status_code == 200

"""The key scheme: a user's keys on the user's slot, global indexes on ``{sa}``, and
the two-step changes between them safe when a process dies half way or races."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

from screenaware.config import Config
from screenaware.errors import Conflict
from screenaware.identity.accounts import (
    _DELETE,
    _UPDATE,
    USER_DATA,
    USERS,
    Accounts,
    email_key,
    make_accounts,
    user_api_keys,
    user_key,
)
from screenaware.identity.keys import _UNLIST, ApiKeyStore, digest, key_key
from screenaware.integrations.store import IntegrationStore, connected_users_key
from screenaware.storage.keymigration import new_name
from screenaware.storage.outages import REDIS, backend_of
from screenaware.storage.redisstore import user_scoped
from screenaware.timeutil import iso
from tests.conftest import Api, FakeClock
from tests.rediscluster import async_client

PASSWORD = "user-password-1"
TAG = re.compile(r"^\{(sa|hb|u:[0-9a-f-]{36})\}:")


@pytest.fixture
async def aredis(config: Config, redis_client: redis.Redis) -> AsyncIterator[aioredis.Redis]:
    client = async_client(config.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def accounts(config: Config, aredis: aioredis.Redis) -> Accounts:
    return make_accounts(config, lambda: aredis, FakeClock())


async def test_every_key_has_one_of_the_tags_and_a_deleted_user_leaves_nothing(
    api: Api, clock: FakeClock, redis_client: redis.Redis
) -> None:
    headers = await api.new_user("tess@example.org")
    me = (await api.me(headers)).json["uuid"]
    made = await api.client.simulate_post("/api/keys", json={"name": "k"}, headers=headers)
    assert made.status_code == 201, made.text
    project = await api.client.simulate_post(
        "/api/projects", json={"name": "P", "keywords": ["thesis"]}, headers=headers
    )
    assert project.status_code == 201, project.text
    end = iso(dt.datetime.fromtimestamp(clock.now - 3600, dt.UTC))
    window = {"processName": "editor", "title": "thesis.tex", "isFocused": True}
    snapshot = {"timeTaken": end, "durationMs": 10000, "windows": [window]}
    posted = await api.client.simulate_post("/api/snapshots", json=snapshot, headers=headers)
    assert posted.status_code in (200, 201), posted.text
    keys = [str(k) for k in redis_client.keys("*")]
    assert keys and all(TAG.match(k) for k in keys), [k for k in keys if not TAG.match(k)]
    mine = [k for k in keys if k.startswith(f"{{u:{me}}}:")]
    # The user's own data sits on the user's slot, its indexes on the global one.
    assert {k.split(":", 2)[-1] for k in mine} >= {"user", "apikeys", "projects", "cov", "tgen"}
    assert len({key_slot(k.encode()) for k in mine}) == 1
    deleted = await api.client.simulate_delete(f"/api/users/{me}", headers=api.admin)
    assert deleted.status_code == 200, deleted.text
    left = {str(k).split(":", 2)[-1] for k in redis_client.keys(f"{{u:{me}}}:*")}
    # Only what expires by itself (caches, the released lock's absence) may stay.
    assert left <= {"tcache", "tlock"} and not left & set(USER_DATA), left
    assert redis_client.get(email_key("tess@example.org")) is None
    assert redis_client.zscore(USERS, me) is None


async def test_a_delete_that_died_half_way_leaves_the_email_free(
    accounts: Accounts, aredis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    user = await accounts.create("una@example.org", PASSWORD)
    # Step 1 only (the user's slot); the process dies before the global step.
    assert await _DELETE(aredis, [user_scoped(user.uuid, n) for n in USER_DATA], [])
    assert redis_client.get(email_key("una@example.org")) == user.uuid  # stale
    assert await accounts.store.by_email("una@example.org") is None
    assert [u.uuid for u in await accounts.store.all()] == []
    # A new user takes the stale claim over.
    again = await accounts.create("UNA@example.org", PASSWORD)
    assert (await accounts.store.by_email("una@example.org")) == again
    assert redis_client.zrange(USERS, 0, -1) == [again.uuid]


async def test_a_claim_of_a_live_user_is_never_taken_over(
    accounts: Accounts, redis_client: redis.Redis
) -> None:
    first = await accounts.create("vic@example.org", PASSWORD)
    with pytest.raises(Conflict):
        await accounts.create(" Vic@Example.org ", PASSWORD)
    assert await accounts.store.by_email("vic@example.org") == first
    # The loser's hash went again: one user hash in all.
    assert len(redis_client.keys("{u:*}:user")) == 1


async def test_racing_creates_of_one_email_make_exactly_one_user(
    accounts: Accounts, aredis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    stale = await accounts.create("wes@example.org", PASSWORD)
    # A stale claim (its delete died half way), then 12 creates race for the email.
    await _DELETE(aredis, [user_scoped(stale.uuid, n) for n in USER_DATA], [])
    results = await asyncio.gather(
        *(accounts.create("wes@example.org", PASSWORD) for _ in range(12)), return_exceptions=True
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1 and all(isinstance(r, Conflict) for r in results if r not in won)
    assert await accounts.store.by_email("wes@example.org") == won[0]
    assert [str(k) for k in redis_client.keys("{u:*}:user")] == [user_key(won[0].uuid)]
    assert redis_client.zrange(USERS, 0, -1) == [won[0].uuid]


async def test_api_keys_half_made_or_half_revoked_authenticate_nobody(
    config: Config, accounts: Accounts, aredis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    keys = ApiKeyStore(lambda: aredis, FakeClock())
    user = await accounts.create("xia@example.org", PASSWORD)
    # A create that died after its first step: a global record no list names.
    orphan = "0f6f8a4e-2c6b-4b8e-9d7e-3f1e2a9c5b70"
    redis_client.hset(key_key(digest(orphan)), mapping={"uuid": "k0", "user": user.uuid})
    assert await keys.authenticate(orphan) is None
    # A revocation that died after unlisting: the record is left, the key is dead.
    key, secret = await keys.create(user.uuid, "k")
    assert (await keys.authenticate(secret)) == key
    assert await _UNLIST(aredis, [user_api_keys(user.uuid)], [key.uuid]) == digest(secret)
    assert redis_client.exists(key_key(digest(secret)))
    assert await keys.authenticate(secret) is None
    # A password change that died after its first step: the same.
    _, secret2 = await keys.create(user.uuid, "k2")
    reply = await _UPDATE(aredis, [user_key(user.uuid), user_api_keys(user.uuid)], ["1"])
    assert reply[1:] == [digest(secret2)]
    assert redis_client.exists(key_key(digest(secret2)))
    assert await keys.authenticate(secret2) is None
    # The full change removes the records too; a refused create leaves none.
    _, secret3 = await keys.create(user.uuid, "k3")
    await accounts.set_password(user.uuid, "another-password-1")
    assert not redis_client.exists(key_key(digest(secret3)))
    assert await keys.list(user.uuid) == []
    few = ApiKeyStore(lambda: aredis, FakeClock(), max_per_user=0)
    with pytest.raises(Conflict):
        await few.create(user.uuid, "none")
    assert len(redis_client.keys("{sa}:apikey:*")) == 3  # the three left by the crashes


async def test_a_revoked_key_whose_record_was_lost_is_still_revoked(
    accounts: Accounts, aredis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    keys = ApiKeyStore(lambda: aredis, FakeClock())
    user = await accounts.create("yan@example.org", PASSWORD)
    key, secret = await keys.create(user.uuid, "k")
    redis_client.delete(key_key(digest(secret)))
    revoked = await keys.revoke(user.uuid, key.uuid)
    assert (revoked.uuid, revoked.user) == (key.uuid, user.uuid)
    assert redis_client.hlen(user_api_keys(user.uuid)) == 0


async def test_an_integration_is_listed_before_and_unlisted_after_its_settings(
    config: Config, aredis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    store = IntegrationStore(lambda: aredis, "k" * 32)
    await store.connect("u1", "redmine", {"url": "http://x"})
    assert redis_client.smembers(connected_users_key("redmine")) == {"u1"}
    assert await store.settings("u1", "redmine") == {"url": "http://x"}
    await store.disconnect("u1", "redmine")
    assert await store.users("redmine") == []
    assert await store.settings("u1", "redmine") is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("{sa}:projects:u1", "{u:u1}:projects"),
        ("{sa}:integ:u1:redmine", "{u:u1}:integ:redmine"),
        ("{sa}:sess:u1:UTC:2026-01-01:ab:streams", None),
        ("{sa}:integ-users:redmine", "{sa}:integ-users:redmine"),
        ("{sa}:apikey:ab12", "{sa}:apikey:ab12"),
        ("{sa}:rl:login:email:a@b", "{sa}:rl:login:email:a@b"),
        ("{sa}:projects:", "{sa}:projects:"),
        ("{hb}:meta", "{hb}:meta"),
        ("{u:u1}:projects", "{u:u1}:projects"),
    ],
)
def test_the_migration_renames_only_the_old_per_user_keys(old: str, new: str | None) -> None:
    assert new_name(old) == new


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.MovedError("3999 127.0.0.1:7001"),
        redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis.exceptions.TryAgainError("TRYAGAIN"),
        redis.exceptions.RedisClusterException("no node answered"),
    ],
)
def test_a_cluster_in_transition_counts_as_redis_down(error: Exception) -> None:
    """Answered 503 (retry), not 500: a failover or a slot move passes."""
    assert backend_of(error) == REDIS

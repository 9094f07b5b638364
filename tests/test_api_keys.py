"""API keys against real Redis (in-process) and a real two-worker gunicorn."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
from falcon import testing

from screenaware.app import create_app
from screenaware.config import Config
from screenaware.errors import NotFound
from screenaware.identity.accounts import make_accounts
from screenaware.identity.keys import _TOUCH, ApiKeyStore, digest, key_key
from screenaware.web.auth import is_api_key
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, FakeClock, bearer
from tests.rediscluster import async_client
from tests.service import run_service

PASSWORD = "user-password-1"


def iso_ms(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def make_key(api: Api, headers: dict[str, str], name: str = "laptop") -> dict[str, Any]:
    result = await api.client.simulate_post("/api/keys", json={"name": name}, headers=headers)
    assert result.status_code == 201, result.text
    return dict(result.json)


async def keys_of(api: Api, headers: dict[str, str]) -> list[dict[str, Any]]:
    result = await api.client.simulate_get("/api/keys", headers=headers)
    assert result.status_code == 200, result.text
    return list(result.json)


async def uuid_of(api: Api, headers: dict[str, str]) -> str:
    return str((await api.me(headers)).json["uuid"])


def snapshot(end: str, process: str = "code") -> dict[str, Any]:
    return {"timeTaken": end, "durationMs": 10000, "windows": [{"processName": process}]}


# --- the form of a key --------------------------------------------------------


def test_a_key_is_a_uuid_v4_string_and_a_jwt_never_is() -> None:
    assert is_api_key(str(uuid.uuid4()))
    assert is_api_key(str(uuid.uuid4()).upper())
    assert not is_api_key(str(uuid.uuid1()))
    assert not is_api_key(uuid.uuid4().hex)
    assert not is_api_key(str(uuid.uuid4()) + "x")
    token = jwt.encode({"sub": str(uuid.uuid4())}, "k" * 32, algorithm="HS256")
    assert not is_api_key(token)


# --- create, list, use --------------------------------------------------------


async def test_create_shows_the_key_once_and_stores_only_its_sha256(
    api: Api, clock: FakeClock, redis_client: redis.Redis
) -> None:
    headers = await api.new_user("ann@example.org")
    created = await make_key(api, headers, "  sensor on desk  ")
    assert set(created) == {"uuid", "name", "key", "createdAt"}
    assert created["name"] == "sensor on desk"
    assert created["createdAt"] == iso_ms(clock.now)
    secret = created["key"]
    assert str(uuid.UUID(secret)) == secret and uuid.UUID(secret).version == 4
    assert created["uuid"] != secret
    listed = await keys_of(api, headers)
    assert listed == [
        {
            "uuid": created["uuid"],
            "name": "sensor on desk",
            "createdAt": created["createdAt"],
            "lastUsedAt": None,
        }
    ]
    # Nowhere in Redis is the secret itself, only its SHA-256.
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert redis_client.exists(f"{{sa}}:apikey:{digest}")
    dump = json.dumps(
        {
            key: redis_client.hgetall(key) if redis_client.type(key) == "hash" else None
            for key in redis_client.scan_iter("*")
        }
    )
    assert secret not in dump and secret.replace("-", "") not in dump


async def test_a_key_works_where_the_login_token_does(api: Api, clock: FakeClock) -> None:
    headers = await api.new_user("bob@example.org")
    key = bearer((await make_key(api, headers))["key"])
    me = await api.me(key)
    assert me.status_code == 200 and me.json["email"] == "bob@example.org"
    end = iso_ms(clock.now - 60)
    sent = await api.client.simulate_post("/api/snapshots", json=snapshot(end), headers=key)
    assert sent.status_code == 200, sent.text
    day = dt.datetime.fromtimestamp(clock.now, dt.UTC).date().isoformat()
    got = await api.client.simulate_get(
        "/api/times",
        params={"start": f"{day}T00:00:00Z", "end": f"{day}T23:59:59.999Z"},
        headers=key,
    )
    assert got.status_code == 200, got.text
    assert got.json["sum"] == 10000
    # The same numbers as with the login token: the key is the same user.
    login = await api.client.simulate_get(
        "/api/times",
        params={"start": f"{day}T00:00:00Z", "end": f"{day}T23:59:59.999Z"},
        headers=headers,
    )
    assert login.json == got.json
    # Any case of the key is the key.
    assert (await api.me(bearer(key["Authorization"][7:].upper()))).status_code == 200


async def test_an_admins_key_works_on_admin_routes(api: Api) -> None:
    key = bearer((await make_key(api, api.admin))["key"])
    users = await api.client.simulate_get("/api/users", headers=key)
    assert users.status_code == 200
    assert ADMIN_EMAIL.lower() in {u["email"].lower() for u in users.json}


async def test_unknown_key_and_bad_input(api: Api) -> None:
    headers = await api.new_user("cy@example.org")
    unknown = await api.me(bearer(str(uuid.uuid4())))
    assert unknown.status_code == 401 and unknown.json == {"message": "Invalid API key"}
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": 5}):
        result = await api.client.simulate_post("/api/keys", json=body, headers=headers)
        assert result.status_code == 400, body
        assert "name" in result.json["errors"]
    assert await keys_of(api, headers) == []
    anonymous = await api.client.simulate_post("/api/keys", json={"name": "x"})
    assert anonymous.status_code == 401


async def test_the_number_of_keys_per_user_is_limited(
    identity_config: Config, clock: FakeClock
) -> None:
    cfg = identity_config.replace(api_keys_per_user=2)
    async with testing.ASGIConductor(create_app(cfg, clock=clock)) as client:
        login = await client.simulate_post(
            "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        api = Api(client, bearer(login.json["token"]))
        first = await make_key(api, api.admin, "one")
        clock.advance(1)  # listed oldest first
        await make_key(api, api.admin, "two")
        third = await client.simulate_post("/api/keys", json={"name": "3"}, headers=api.admin)
        assert third.status_code == 409
        assert "At most 2 API keys" in third.json["message"]
        assert [k["name"] for k in await keys_of(api, api.admin)] == ["one", "two"]
        # A revoked key frees its place.
        await client.simulate_delete(f"/api/keys/{first['uuid']}", headers=api.admin)
        await make_key(api, api.admin, "three")


# --- what a key may not do ----------------------------------------------------


async def test_a_key_is_refused_on_the_key_routes_and_password_changes(api: Api) -> None:
    headers = await api.new_user("dan@example.org")
    made = await make_key(api, headers)
    key = bearer(made["key"])
    refused = [
        await api.client.simulate_get("/api/keys", headers=key),
        await api.client.simulate_post("/api/keys", json={"name": "more"}, headers=key),
        await api.client.simulate_delete(f"/api/keys/{made['uuid']}", headers=key),
        await api.client.simulate_put(
            "/api/users/me/password",
            json={"currentPassword": PASSWORD, "password": "taken-over-99"},
            headers=key,
        ),
    ]
    for result in refused:
        assert result.status_code == 403, result.text
        assert "login token" in result.json["message"]
    # Nothing changed: one key, still valid, and the password is the old one.
    assert [k["uuid"] for k in await keys_of(api, headers)] == [made["uuid"]]
    assert (await api.me(key)).status_code == 200
    assert (await api.login("dan@example.org", PASSWORD)).status_code == 200
    assert (await api.login("dan@example.org", "taken-over-99")).status_code == 401


async def test_a_password_change_revokes_the_users_keys(api: Api) -> None:
    # A thief with a login token could have made a key; it must not outlive the change.
    headers = await api.new_user("fay@example.org")
    key = bearer((await make_key(api, headers))["key"])
    assert (await api.me(key)).status_code == 200
    changed = await api.client.simulate_put(
        "/api/users/me/password",
        json={"currentPassword": PASSWORD, "password": "a-new-password-7"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert (await api.me(key)).status_code == 401
    fresh = bearer(changed.json["token"])
    assert await keys_of(api, fresh) == []


async def test_an_admins_key_is_refused_on_admin_key_and_password_routes(api: Api) -> None:
    user = await api.new_user("eve@example.org")
    user_uuid = await uuid_of(api, user)
    user_key = await make_key(api, user)
    admin_key = bearer((await make_key(api, api.admin))["key"])
    admin_uuid = await uuid_of(api, api.admin)
    refused = [
        await api.client.simulate_get(f"/api/users/{user_uuid}/keys", headers=admin_key),
        await api.client.simulate_delete(
            f"/api/users/{user_uuid}/keys/{user_key['uuid']}", headers=admin_key
        ),
        await api.client.simulate_put(
            f"/api/users/{user_uuid}/password",
            json={"password": "new-password-9"},
            headers=admin_key,
        ),
        await api.client.simulate_put(
            f"/api/users/{admin_uuid}/password",
            json={"password": "new-password-9", "currentPassword": ADMIN_PASSWORD},
            headers=admin_key,
        ),
        await api.client.simulate_put(
            "/api/users",
            json={"email": "eve@example.org", "password": "new-password-9"},
            headers=admin_key,
        ),
    ]
    assert [r.status_code for r in refused] == [403] * 5, [r.text for r in refused]
    assert (await api.login("eve@example.org", PASSWORD)).status_code == 200
    assert (await api.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200
    assert (await api.me(bearer(user_key["key"]))).status_code == 200


# --- revoking -----------------------------------------------------------------


async def test_a_revoked_key_is_refused(api: Api) -> None:
    headers = await api.new_user("fay@example.org")
    made = await make_key(api, headers, "old sensor")
    kept = await make_key(api, headers, "new sensor")
    assert (await api.me(bearer(made["key"]))).status_code == 200
    revoked = await api.client.simulate_delete(f"/api/keys/{made['uuid']}", headers=headers)
    assert revoked.status_code == 200
    assert revoked.json["uuid"] == made["uuid"] and revoked.json["name"] == "old sensor"
    assert "key" not in revoked.json
    gone = await api.me(bearer(made["key"]))
    assert gone.status_code == 401 and gone.json == {"message": "Invalid API key"}
    assert (await api.me(bearer(kept["key"]))).status_code == 200
    assert [k["uuid"] for k in await keys_of(api, headers)] == [kept["uuid"]]
    again = await api.client.simulate_delete(f"/api/keys/{made['uuid']}", headers=headers)
    assert again.status_code == 404


async def test_a_user_cannot_see_or_revoke_another_users_keys(api: Api) -> None:
    ann = await api.new_user("ann2@example.org")
    bob = await api.new_user("bob2@example.org")
    ann_key = await make_key(api, ann)
    assert await keys_of(api, bob) == []
    stolen = await api.client.simulate_delete(f"/api/keys/{ann_key['uuid']}", headers=bob)
    assert stolen.status_code == 404 and stolen.json == {"message": "API key not found"}
    assert (await api.me(bearer(ann_key["key"]))).status_code == 200
    assert len(await keys_of(api, ann)) == 1
    # The admin routes are no way round it.
    ann_uuid = await uuid_of(api, ann)
    listed = await api.client.simulate_get(f"/api/users/{ann_uuid}/keys", headers=bob)
    assert listed.status_code == 403
    deleted = await api.client.simulate_delete(
        f"/api/users/{ann_uuid}/keys/{ann_key['uuid']}", headers=bob
    )
    assert deleted.status_code == 403
    assert (await api.me(bearer(ann_key["key"]))).status_code == 200


async def test_an_admin_lists_and_revokes_any_users_keys(api: Api) -> None:
    gil = await api.new_user("gil@example.org")
    hal = await api.new_user("hal@example.org")
    gil_uuid, hal_uuid = await uuid_of(api, gil), await uuid_of(api, hal)
    made = await make_key(api, gil, "gil's sensor")
    listed = await api.client.simulate_get(f"/api/users/{gil_uuid}/keys", headers=api.admin)
    assert listed.status_code == 200
    assert listed.json == await keys_of(api, gil)
    assert [k["name"] for k in listed.json] == ["gil's sensor"]
    assert "key" not in listed.json[0]
    # A key is found only under its own user.
    wrong = await api.client.simulate_delete(
        f"/api/users/{hal_uuid}/keys/{made['uuid']}", headers=api.admin
    )
    assert wrong.status_code == 404
    assert (await api.me(bearer(made["key"]))).status_code == 200
    revoked = await api.client.simulate_delete(
        f"/api/users/{gil_uuid}/keys/{made['uuid']}", headers=api.admin
    )
    assert revoked.status_code == 200 and revoked.json["uuid"] == made["uuid"]
    assert (await api.me(bearer(made["key"]))).status_code == 401
    assert await keys_of(api, gil) == []
    nobody = await api.client.simulate_get(f"/api/users/{uuid.uuid4()}/keys", headers=api.admin)
    assert nobody.status_code == 404


async def test_keys_of_a_deleted_user_die_with_it(api: Api, redis_client: redis.Redis) -> None:
    ivy = await api.new_user("ivy@example.org")
    ivy_uuid = await uuid_of(api, ivy)
    keys = [bearer((await make_key(api, ivy, name))["key"]) for name in ("a", "b")]
    other = bearer((await make_key(api, api.admin))["key"])
    assert all([(await api.me(k)).status_code == 200 for k in keys])
    deleted = await api.client.simulate_delete(f"/api/users/{ivy_uuid}", headers=api.admin)
    assert deleted.status_code == 200
    for key in keys:
        assert (await api.me(key)).status_code == 401
    # Nothing of them is left in Redis; the admin's key is untouched.
    assert not redis_client.exists(f"{{u:{ivy_uuid}}}:apikeys")
    stored = [redis_client.hget(k, "user") for k in redis_client.scan_iter("{sa}:apikey:*")]
    assert stored == [await uuid_of(api, api.admin)]
    assert (await api.me(other)).status_code == 200


# --- lastUsedAt ---------------------------------------------------------------

WRITES = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_hset", "cmdstat_set", "cmdstat_del")


def writes(redis_client: redis.Redis) -> dict[str, int]:
    """Calls so far of the commands that could write (a script's own count too)."""
    stats = redis_client.info("commandstats")
    return {name: int(stats[name]["calls"]) if name in stats else 0 for name in WRITES}


async def test_last_used_is_written_at_most_once_a_minute(
    api: Api, clock: FakeClock, redis_client: redis.Redis
) -> None:
    headers = await api.new_user("jo@example.org")
    made = await make_key(api, headers)
    key = bearer(made["key"])

    async def last_used() -> str | None:
        [listed] = await keys_of(api, headers)
        value = listed["lastUsedAt"]
        assert value is None or isinstance(value, str)
        return value

    assert await last_used() is None
    first = clock.now
    assert (await api.me(key)).status_code == 200
    assert await last_used() == iso_ms(first)
    # Within the minute: many requests, not one Redis write, the time stays.
    before = writes(redis_client)
    for _ in range(19):
        clock.advance(3)
        assert (await api.me(key)).status_code == 200
    assert writes(redis_client) == before
    assert await last_used() == iso_ms(first)
    # A minute after the last write, the next use is written, once.
    clock.advance(3)  # 60 s after the write
    assert (await api.me(key)).status_code == 200
    assert await last_used() == iso_ms(first + 60)
    after = writes(redis_client)
    # One script run, whose one HSET is the write.
    assert {n: after[n] - before[n] for n in WRITES if after[n] != before[n]} == {
        "cmdstat_evalsha": 1,
        "cmdstat_hset": 1,
    }
    clock.advance(59)
    assert (await api.me(key)).status_code == 200
    assert await last_used() == iso_ms(first + 60)


# --- two workers: a revoked key is refused by both at once ----------------------


def served_by(log: Path, mark: int, status: int) -> set[int]:
    pids = set()
    for line in log.read_text(errors="replace")[mark:].splitlines():
        if '"screenaware.access"' not in line:
            continue
        entry = json.loads(line)
        if entry["route"] == "/api/times" and entry["status"] == status:
            pids.add(entry["pid"])
    return pids


async def test_revoked_on_both_workers_at_once(
    identity_config: Config, tmp_path: Path, redis_client: redis.Redis
) -> None:
    with run_service(identity_config, tmp_path, workers=2) as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
            login = await client.post(
                "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            token = bearer(login.json()["token"])
            made = await client.post("/api/keys", json={"name": "sensor"}, headers=token)
            assert made.status_code == 201, made.text
        key = bearer(made.json()["key"])
        now = dt.datetime.now(dt.UTC)
        day = {"start": (now - dt.timedelta(hours=1)).isoformat(), "end": now.isoformat()}

        async def one(path: str = "/api/times") -> int:
            # A fresh connection each, so the kernel spreads them over both workers.
            async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
                return (await client.get(path, params=day, headers=key)).status_code

        async def many(n: int) -> list[int]:
            done: list[int] = []
            for _ in range(n // 10):
                done += await asyncio.gather(*(one() for _ in range(10)))
            return done

        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
            sent = await client.post(
                "/api/snapshots",
                json=snapshot((now - dt.timedelta(minutes=5)).isoformat()),
                headers=key,
            )
            assert sent.status_code == 200, sent.text
        assert await many(40) == [200] * 40
        await asyncio.sleep(0.6)  # access lines are written every 0.25 s
        assert served_by(svc.log, 0, 200) == set(svc.worker_pids()), "a worker served nothing"
        mark = len(svc.log.read_text(errors="replace"))
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
            revoked = await client.delete(f"/api/keys/{made.json()['uuid']}", headers=token)
            assert revoked.status_code == 200
        # Right after the revoke, every request on either worker is refused.
        assert await many(40) == [401] * 40
        await asyncio.sleep(0.6)
        assert served_by(svc.log, mark, 401) == set(svc.worker_pids()), "a worker served nothing"
        assert served_by(svc.log, mark, 200) == set()


async def test_recording_a_use_never_brings_a_revoked_key_back(
    config: Config, redis_client: redis.Redis
) -> None:
    client = async_client(config.redis_url, decode_responses=True)
    try:
        clock = FakeClock()
        accounts = make_accounts(config, lambda: client, clock)
        users = accounts.store
        store = ApiKeyStore(lambda: client, clock, touch_interval=60)
        user = await accounts.create("kim@example.org", PASSWORD)
        key, secret = await store.create(user.uuid, "k")
        hashed = key_key(digest(secret))
        await store.revoke(user.uuid, key.uuid)
        # A worker that read the key just before the revoke records its use after it.
        assert await _TOUCH(client, [hashed], [int(clock.now * 1000) + 120_000, 60_000]) == 0
        assert not redis_client.exists(hashed)
        assert await store.authenticate(secret) is None
        # A key made while its user is being deleted does not outlive the user.
        await users.delete(user.uuid)
        with pytest.raises(NotFound):
            await store.create(user.uuid, "late")
        assert list(redis_client.scan_iter("{sa}:apikey*")) == []
    finally:
        await client.aclose()

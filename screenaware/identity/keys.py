"""API keys: long-lived bearer credentials for sensors and editor plugins.

A key is a random UUID v4 string (the format the editor plugins of other trackers
accept), shown once when it is made; Redis keeps only its SHA-256. It stands for
its user wherever the user's login token does, except on the routes that manage
keys and passwords (see ``auth_login_only`` in :mod:`screenaware.web.auth`).

Keys (the two tags of :mod:`screenaware.storage.redisstore`):
    ``{sa}:apikey:<sha256 hex of the key>`` (hash, global): uuid, user, name,
        createdAt, lastUsedAt (Unix ms; 0 = never used). Global, as a caller
        presents nothing but the secret.
    ``{u:<user uuid>}:apikeys`` (hash, the user's slot): key uuid -> sha256 hex,
        the user's keys. This list is what makes a key valid: a global record
        counts only while its user's list names it with the same digest.
The user delete and the password change remove both with the user. Nothing is
cached per worker: each request reads the key's records, so a revoked key fails on
every worker at once.

The two records sit on different slots of a Redis Cluster, so each change is two
single-slot steps, ordered so that a crash between them leaves only a global record
no list names (which authenticates nobody): a new key's global record is written
first and listed second; a revocation unlists first and deletes the record second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from screenaware.errors import Conflict, NotFound
from screenaware.identity.accounts import (
    User,
    api_key_record,
    user_api_keys,
    user_from_hash,
    user_key,
)
from screenaware.storage.redisstore import RedisStore, Script
from screenaware.timeutil import from_ms, iso
from screenaware.web.auth import Principal


def digest(key: str) -> str:
    """The SHA-256 (hex) under which a key is stored; keys match in any case."""
    return hashlib.sha256(key.lower().encode()).hexdigest()


def key_key(key_digest: str) -> str:
    return api_key_record(key_digest)


def user_keys_key(user_uuid: str) -> str:
    return user_api_keys(user_uuid)


# Step 2 of a create, on the user's slot (step 1 wrote the global record). KEYS:
# user hash, the user's key list. ARGV: key uuid, digest, most keys per user. The
# user must still exist (a key made while its user is deleted would outlive it).
_LIST = Script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then return -2 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
""")

# Step 1 of a revocation, on the user's slot. KEYS: the user's key list. ARGV: key
# uuid. Answers the key's digest (nothing when the user has no such key).
_UNLIST = Script("""
local d = redis.call('HGET', KEYS[1], ARGV[1])
if not d then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return d
""")

# Step 2: KEYS: the key's global record. Answers its fields as they were.
_DROP = Script("""
local fields = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return fields
""")

# KEYS: the key's hash. ARGV: now (ms), least ms between two writes. Checked again
# here so two workers seeing a stale time write it once, and a key revoked meanwhile
# is not brought back as a hash holding only lastUsedAt.
_TOUCH = Script("""
local last = redis.call('HGET', KEYS[1], 'lastUsedAt')
if not last then return 0 end
if tonumber(ARGV[1]) - tonumber(last) < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'lastUsedAt', ARGV[1])
return 1
""")


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    uuid: str
    user: str
    name: str
    created_at: int
    last_used_at: int | None

    def public(self) -> dict[str, Any]:
        """The key as the API lists it."""
        return {
            "uuid": self.uuid,
            "name": self.name,
            "createdAt": iso(from_ms(self.created_at)),
            "lastUsedAt": None if self.last_used_at is None else iso(from_ms(self.last_used_at)),
        }


def _from_hash(data: dict[Any, Any]) -> ApiKey:
    last = int(data.get("lastUsedAt") or 0)
    return ApiKey(
        uuid=data["uuid"],
        user=data["user"],
        name=data.get("name", ""),
        created_at=int(data.get("createdAt") or 0),
        last_used_at=last or None,
    )


class ApiKeyStore(RedisStore):
    """API keys in Redis.

    Args:
        redis: zero-argument callable returning the open Redis client.
        clock: the current Unix time in seconds.
        max_per_user: how many keys one user may hold.
        touch_interval: least seconds between two writes of a key's ``lastUsedAt``
            (a sensor sending every few seconds must not cost a Redis write each).
    """

    def __init__(
        self,
        redis: Callable[[], aioredis.Redis],
        clock: Callable[[], float] = time.time,
        *,
        max_per_user: int = 20,
        touch_interval: int = 60,
    ) -> None:
        super().__init__(redis)
        self._clock = clock
        self._max = max_per_user
        self._touch_ms = touch_interval * 1000

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def create(self, user_uuid: str, name: str) -> tuple[ApiKey, str]:
        """Make a key for ``user_uuid``; returns it and its secret (shown only now).

        Raises:
            NotFound: the user does not exist (any more).
            Conflict: the user holds the most keys allowed already.
        """
        secret = str(uuidlib.uuid4())  # 122 random bits from os.urandom
        key = ApiKey(str(uuidlib.uuid4()), user_uuid, name, self._now_ms(), None)
        fields: list[Any] = [
            "uuid", key.uuid, "user", user_uuid, "name", name,
            "createdAt", key.created_at, "lastUsedAt", 0,
        ]  # fmt: skip
        hashed = digest(secret)
        # The global record first: until the user's list names it, it is no key.
        record = dict(zip(fields[::2], fields[1::2], strict=True))
        await self._redis.hset(key_key(hashed), mapping=record)
        done = await _LIST(
            self._redis,
            [user_key(user_uuid), user_keys_key(user_uuid)],
            [key.uuid, hashed, self._max],
        )
        if done != 1:
            await self._redis.delete(key_key(hashed))
        if done == -1:
            raise NotFound("User not found")
        if done == -2:
            raise Conflict(f"At most {self._max} API keys per user; revoke one first")
        return key, secret

    async def list(self, user_uuid: str) -> list[ApiKey]:
        """The user's keys, oldest first."""
        digests = await self._redis.hvals(user_keys_key(user_uuid))
        if not digests:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for hashed in digests:
                pipe.hgetall(key_key(str(hashed)))
            rows = await pipe.execute()
        keys = [_from_hash(row) for row in rows if row]
        return sorted(keys, key=lambda k: (k.created_at, k.uuid))

    async def revoke(self, user_uuid: str, key_uuid: str) -> ApiKey:
        """Delete one of the user's keys; it stops working on every worker at once.

        Raises:
            NotFound: the user has no key ``key_uuid`` (another user's is not found).
        """
        hashed = await _UNLIST(self._redis, [user_keys_key(user_uuid)], [key_uuid])
        if not hashed:
            raise NotFound("API key not found")
        # Dead already (unlisted); now its record goes.
        flat = await _DROP(self._redis, [key_key(str(hashed))], [])
        if not flat:  # the record was lost (a create that died half way)
            return ApiKey(key_uuid, user_uuid, "", 0, None)
        return _from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))

    async def owner(self, secret: str) -> tuple[ApiKey, User] | None:
        """The key a secret is and its user, or None; records its use at most once
        per interval.

        Two round trips: the global record, then (on the user's slot) the check that
        the user's list still names the key, and the user's hash.
        """
        hashed = digest(secret)
        data = await self._redis.hgetall(key_key(hashed))
        if not data:
            return None
        key = _from_hash(data)
        # One round trip: both keys are on the user's slot (one node of a cluster).
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(user_keys_key(key.user), key.uuid)
            pipe.hgetall(user_key(key.user))
            listed, data = await pipe.execute()
        if listed != hashed or not data:
            return None
        user = user_from_hash(data)
        now = self._now_ms()
        if now - (key.last_used_at or 0) >= self._touch_ms:
            await _TOUCH(self._redis, [key_key(hashed)], [now, self._touch_ms])
        return key, user

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The key a secret is (valid, of a user that exists), or None."""
        found = await self.owner(secret)
        return None if found is None else found[0]


class KeyAuthenticator:
    """Finds the caller an API key stands for (the middleware's key verifier).

    Args:
        keys: the key store (a key of a user gone is no key).
    """

    def __init__(self, keys: ApiKeyStore) -> None:
        self._keys = keys

    async def principal(self, secret: str) -> Principal | None:
        """The key's user as the caller, marked with the key's uuid; None if invalid."""
        found = await self._keys.owner(secret)
        if found is None:
            return None
        key, user = found
        return dataclasses.replace(user.principal(), key=key.uuid)

"""Integration state per user in Redis, with the credentials encrypted.

A connection's settings (URL, user name, password, API key: whatever the
integration needs) are one JSON document encrypted with Fernet (AES-128-CBC +
HMAC-SHA256). The Fernet key is derived from ``SCREENAWARE_ENCRYPTION_KEY``, or,
when that is unset, from a random key generated once and kept in Redis so every
worker and machine shares it (as the JWT signing key is). The settings are never
logged and never returned: the answers show only ``connected``, the last sync
time and the last error in words.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from cryptography.fernet import Fernet, InvalidToken

from screenaware.storage.redisstore import (
    RELEASE_LOCK,
    RedisStore,
    Script,
    global_key,
    user_scoped,
)

ENCRYPTION_KEY = global_key("encryption_key")
# Reads the key, storing the offered one first if there is none (SET NX, then GET).
_SHARED_KEY = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""


# KEYS[1]: a user's integration hash; ARGV: field/value pairs, set only if the
# settings are still there.
_RECORD = Script("""
if redis.call('HEXISTS', KEYS[1], 'settings') == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
""")


@contextlib.asynccontextmanager
async def held_lock(
    redis: aioredis.Redis, key: str, *, ttl_ms: int, wait: float
) -> AsyncIterator[bool]:
    """Hold a Redis lock (SET NX with a TTL, so a dead holder frees it); yields
    False when it stayed taken ``wait`` seconds. Every integration's sync of a user
    runs under one, so two workers or machines never sync one user at once."""
    token = secrets.token_hex(8)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        if await redis.set(key, token, nx=True, px=ttl_ms):
            break
        if loop.time() >= deadline:
            yield False
            return
        await asyncio.sleep(0.05)
    try:
        yield True
    finally:
        await asyncio.shield(RELEASE_LOCK(redis, [key], [token]))


def integration_key(user: str, name: str) -> str:
    return user_scoped(user, f"integ:{name}")


def connected_users_key(name: str) -> str:
    return global_key(f"integ-users:{name}")


def fernet_key(secret: str) -> bytes:
    """The Fernet key derived from a configured or generated secret of any length."""
    digest = hashlib.sha256(b"screenaware-integrations\0" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest)


class CredentialsUnreadable(Exception):
    """Stored credentials no longer decrypt (the encryption key changed)."""


@dataclass(frozen=True)
class State:
    """What a user's connection to one integration shows.

    Attributes:
        configured: settings are stored.
        connected: the last sync succeeded.
        last_sync_ms: when the last sync succeeded (Unix ms), None if never.
        last_error: why the last attempt failed, in words (None after a success).
    """

    configured: bool
    connected: bool
    last_sync_ms: int | None
    last_error: str | None


class IntegrationStore(RedisStore):
    """Encrypted settings and the visible state of each user's integrations.

    Args:
        redis: zero-argument callable returning the open Redis client.
        configured_key: ``SCREENAWARE_ENCRYPTION_KEY`` ("" = generate and share one).
    """

    def __init__(self, redis: Callable[[], aioredis.Redis], configured_key: str) -> None:
        super().__init__(redis)
        self._configured_key = configured_key
        self._fernet: Fernet | None = None

    def __repr__(self) -> str:
        return "IntegrationStore()"

    async def _cipher(self) -> Fernet:
        if self._fernet is None:
            secret = self._configured_key or str(await self._shared_key(secrets.token_urlsafe(48)))
            self._fernet = Fernet(fernet_key(secret))
        return self._fernet

    async def _shared_key(self, offer: str) -> str:
        raw = await self._redis.eval(_SHARED_KEY, 1, ENCRYPTION_KEY, offer)
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def connect(self, user: str, name: str, settings: dict[str, Any]) -> None:
        """Store (replace) a user's settings, encrypted; the state starts anew."""
        token = (await self._cipher()).encrypt(orjson.dumps(settings))
        key = integration_key(user, name)
        # The global list of connected users first, the user's settings second (two
        # slots): a crash between leaves a listed user without settings, whom the
        # periodic sync skips (it reads the settings), never a connected user the
        # sync would not know of.
        await self._redis.sadd(connected_users_key(name), user)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"settings": token, "connected": "0"})
            await pipe.execute()

    async def disconnect(self, user: str, name: str) -> None:
        """Forget a user's settings and state.

        The settings first, then the listing (the reverse of :meth:`connect`): a crash
        between leaves only a listed user without settings.
        """
        await self._redis.delete(integration_key(user, name))
        await self._redis.srem(connected_users_key(name), user)

    async def settings(self, user: str, name: str) -> dict[str, Any] | None:
        """The decrypted settings, None when not connected.

        Raises:
            CredentialsUnreadable: they were encrypted with another key.
        """
        token = await self._redis.hget(integration_key(user, name), "settings")
        if token is None:
            return None
        try:
            data = (await self._cipher()).decrypt(token)
        except InvalidToken:
            raise CredentialsUnreadable(
                "the stored credentials cannot be decrypted (the encryption key changed); "
                "connect again"
            ) from None
        value = orjson.loads(data)
        return value if isinstance(value, dict) else None

    async def record(self, user: str, name: str, *, ok: bool, at_ms: int, error: str = "") -> None:
        """Record the outcome of a sync (only while the user stays connected)."""
        key = integration_key(user, name)
        fields = {
            "connected": "1" if ok else "0",
            "error": error,
            "attempt": str(at_ms),
        }
        if ok:
            fields["synced"] = str(at_ms)
        # Only while connected (a disconnect meanwhile must not leave a state behind),
        # in one step on the user's slot.
        await _RECORD(self._redis, [key], [v for item in fields.items() for v in item])

    async def state(self, user: str, name: str) -> State:
        """The visible state of one integration."""
        raw = await self._redis.hgetall(integration_key(user, name))
        values = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        configured = "settings" in values
        return State(
            configured=configured,
            connected=configured and values.get("connected") == "1",
            last_sync_ms=int(values["synced"]) if values.get("synced") else None,
            last_error=values.get("error") or None,
        )

    async def attempted_ms(self, user: str, name: str) -> int:
        """When the last sync of the user was attempted (0: never)."""
        raw = await self._redis.hget(integration_key(user, name), "attempt")
        return int(raw) if raw else 0

    async def users(self, name: str) -> list[str]:
        """The users connected to an integration."""
        members = await self._redis.smembers(connected_users_key(name))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

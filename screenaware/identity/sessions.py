"""Signed-out browser sessions: a session token stops working when its owner signs out.

A login token is a JWT, valid until it expires; clearing the cookie alone would leave
a copied cookie working. Sign-out therefore records the token's SHA-256 in Redis
until the token would have expired anyway:

    ``{sa}:signedout:<sha256 hex of the token>`` (string, expires after the token TTL;
    global: the token is all a request shows, and one key needs no common slot).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import redis.asyncio as aioredis

from screenaware.storage.redisstore import RedisStore, global_key


def signed_out_key(token: str) -> str:
    return global_key(f"signedout:{hashlib.sha256(token.encode()).hexdigest()}")


class SignedOutSessions(RedisStore):
    """The session tokens signed out before they expired.

    Args:
        redis: returns the open Redis client.
        ttl: the login token lifetime (s): no token outlives it, so neither does its mark.
    """

    def __init__(self, redis: Callable[[], aioredis.Redis], ttl: int) -> None:
        super().__init__(redis)
        self._ttl = ttl

    async def add(self, token: str) -> None:
        """Mark ``token`` signed out."""
        await self._redis.set(signed_out_key(token), 1, ex=self._ttl)

    async def contains(self, token: str) -> bool:
        """Whether ``token`` was signed out."""
        return bool(await self._redis.exists(signed_out_key(token)))

"""Password hashing (scrypt) and HS256 bearer tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

from screenaware.errors import AuthFailed

LOG = logging.getLogger(__name__)

# scrypt cost: ~16 MiB and tens of ms per hash; run off the event loop.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=length,
        maxmem=128 * r * (n + p + 2) + 1024 * 1024,
    )


def hash_password_sync(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


# Verified against when the email is unknown, so both failures cost the same time.
_DUMMY_HASH = f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(b'0' * 16)}${_b64(b'0' * 32)}"


def verify_password_sync(password: str, stored: str | None) -> bool:
    """Check ``password`` against a stored hash (or a dummy one when None)."""
    try:
        scheme, n, r, p, salt, digest = (stored or _DUMMY_HASH).split("$")
        expected = _unb64(digest)
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        LOG.error("unreadable password hash")
        return False
    return scheme == "scrypt" and stored is not None and hmac.compare_digest(actual, expected)


async def hash_password(password: str) -> str:
    """Hash in a thread: scrypt must not stall the event loop."""
    return await asyncio.to_thread(hash_password_sync, password)


async def verify_password(password: str, stored: str | None) -> bool:
    """Verify in a thread; with ``stored`` None it still does the work, then fails."""
    return await asyncio.to_thread(verify_password_sync, password, stored)


# How long a worker trusts its copy of the signing key for verifying tokens before
# reading it again: after the key changes in Redis (lost, then made anew), a token
# under the old key is accepted by a worker at most this long.
KEY_CACHE_SECONDS = 10.0
# A token that fails its signature makes the worker read the key again at once
# (another worker may sign with a newer one), but not more often than this, so a
# flood of forged tokens is not also a flood of Redis calls.
KEY_RELOAD_MIN_SECONDS = 1.0

KeySource = Callable[[str | None], Awaitable[str]]


class TokenIssuer:
    """Signs and checks HS256 bearer tokens.

    All workers (and machines) must agree on the key even when it is lost from
    Redis: tokens are always signed with the key read from the source at that
    moment, verification trusts a cached copy for ``cache_seconds`` only and reads
    again once when a signature does not match, and a worker reading the key offers
    the copy it holds, so a lost key is put back as it was rather than replaced.

    Args:
        secret: coroutine function taking the key this worker holds (None at first)
            and returning the shared key: the stored one, or the offered one (a
            fresh one if None) stored when none is.
        ttl: token lifetime in seconds.
        clock: the current Unix time (token times).
        cache_seconds: how long a read key is trusted for verification.
        reload_min_seconds: least time between two reads forced by a bad signature.
        monotonic: a monotonic clock in seconds (the cache's age).
    """

    def __init__(
        self,
        secret: KeySource,
        ttl: int,
        clock: Callable[[], float] = time.time,
        *,
        cache_seconds: float = KEY_CACHE_SECONDS,
        reload_min_seconds: float = KEY_RELOAD_MIN_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_secret = secret
        self._secret: str | None = None
        self._loaded = 0.0
        self._ttl = ttl
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._reload_min_seconds = reload_min_seconds
        self._monotonic = monotonic

    def __repr__(self) -> str:
        return f"TokenIssuer(ttl={self._ttl})"

    async def _read_key(self) -> str:
        started = self._monotonic()
        self._secret = await self._load_secret(self._secret)
        self._loaded = started
        return self._secret

    async def _cached_key(self) -> str:
        if self._secret is None or self._monotonic() - self._loaded >= self._cache_seconds:
            return await self._read_key()
        return self._secret

    async def issue(self, user_uuid: str, version: int) -> str:
        """A token for the user; ``version`` changes with every password change."""
        now = int(self._clock())
        claims = {
            "sub": user_uuid,
            "iat": now,
            "exp": now + self._ttl,
            "ver": version,
            # Two logins in one second get different tokens, so signing one browser
            # session out (by its token) leaves the other one alone.
            "jti": secrets.token_urlsafe(12),
        }
        # Read the key every time: a token must never be signed with a key that the
        # other workers no longer have (issuing is rare; it follows a scrypt check).
        return jwt.encode(claims, await self._read_key(), algorithm="HS256")

    async def verify(self, token: str) -> tuple[str, int]:
        """The user uuid and password version a valid token names.

        Raises:
            AuthFailed: malformed, wrongly signed, expired, or not HS256.
        """
        key = await self._cached_key()
        try:
            claims = _decode(token, key)
        except jwt.InvalidSignatureError:
            # Perhaps signed with a key another worker read after ours changed.
            if self._monotonic() - self._loaded < self._reload_min_seconds:
                raise AuthFailed("Invalid token") from None
            fresh = await self._read_key()
            if fresh == key:
                raise AuthFailed("Invalid token") from None
            try:
                claims = _decode(token, fresh)
            except jwt.PyJWTError:
                raise AuthFailed("Invalid token") from None
        except jwt.PyJWTError:
            raise AuthFailed("Invalid token") from None
        try:
            expired = int(claims["exp"]) <= int(self._clock())
        except (TypeError, ValueError):
            raise AuthFailed("Invalid token") from None
        if expired:
            raise AuthFailed("Token expired")
        return str(claims["sub"]), int(claims.get("ver", 0))


def _decode(token: str, key: str) -> dict[str, Any]:
    return jwt.decode(
        token,
        key,
        algorithms=["HS256"],
        # Expiry is checked by the caller against the injected clock, not PyJWT's.
        options={
            "require": ["sub", "iat", "exp"],
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
        },
    )

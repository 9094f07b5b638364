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


class TokenIssuer:
    """Signs and checks HS256 bearer tokens.

    Args:
        secret: coroutine function returning the signing key (from config, or
            generated once and kept in Redis, so every worker and machine signs with
            the same key). Asked until it answers once; the key never changes.
        ttl: token lifetime in seconds.
        clock: the current Unix time.
    """

    def __init__(
        self,
        secret: Callable[[], Awaitable[str]],
        ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._load_secret = secret
        self._secret: str | None = None
        self._ttl = ttl
        self._clock = clock

    def __repr__(self) -> str:
        return f"TokenIssuer(ttl={self._ttl})"

    async def _key(self) -> str:
        if self._secret is None:
            self._secret = await self._load_secret()
        return self._secret

    async def issue(self, user_uuid: str, version: int) -> str:
        """A token for the user; ``version`` changes with every password change."""
        now = int(self._clock())
        claims = {"sub": user_uuid, "iat": now, "exp": now + self._ttl, "ver": version}
        return jwt.encode(claims, await self._key(), algorithm="HS256")

    async def verify(self, token: str) -> tuple[str, int]:
        """The user uuid and password version a valid token names.

        Raises:
            AuthFailed: malformed, wrongly signed, expired, or not HS256.
        """
        try:
            claims = jwt.decode(
                token,
                await self._key(),
                algorithms=["HS256"],
                # Expiry is checked below against the injected clock, not PyJWT's.
                options={
                    "require": ["sub", "iat", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            raise AuthFailed("Invalid token") from None
        try:
            expired = int(claims["exp"]) <= int(self._clock())
        except (TypeError, ValueError):
            raise AuthFailed("Invalid token") from None
        if expired:
            raise AuthFailed("Token expired")
        return str(claims["sub"]), int(claims.get("ver", 0))

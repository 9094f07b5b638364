"""Users in Redis, and what accounts do: create, log in, change password.

Keys (see :mod:`screenaware.storage.redisstore` for the two hash tags):
    ``{u:<uuid>}:user`` (hash, the user's slot): uuid, email, nameFirst, nameLast,
        role, timezone, password (scrypt), version (bumped by every password
        change), created. The record of the user: whatever an index says, a user
        exists only if this hash does.
    ``{sa}:email:<lower-case email>`` (string, global): the uuid using that email.
    ``{sa}:users`` (sorted set, global): uuids by creation time.
    A user's API keys are described in :mod:`screenaware.identity.keys`; the user's
    other keys (projects, coverage, ...) carry the user's tag too.

The user's hash and the global indexes sit on different slots of a Redis Cluster,
so no script may change both: every change is two single-slot scripts, in an order
that leaves nothing visible half done when a process dies between them.

- Create writes the user's hash first, then claims the email and lists the uuid
  (one script on the global slot). A crash in between leaves a hash no index names
  and no token was issued for: nobody can reach it.
- Delete removes the user's keys first (the user and its API keys stop working at
  that moment), then the index entries. A crash in between leaves index entries
  naming a user without a hash: readers check the hash (:meth:`UserStore.by_email`
  compares the email it holds; :meth:`UserStore.all` skips missing users), and a
  create finding its email held by such a uuid takes the claim over.
- The takeover is a compare-and-set on the claim it found stale, so two creates
  racing for one freed email cannot both win; a claim whose holder's hash exists
  is never stale, because that hash was written before the claim was made.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from screenaware.config import Config
from screenaware.errors import AuthFailed, Conflict, Invalid, NotFound
from screenaware.identity.credentials import TokenIssuer, hash_password, verify_password
from screenaware.storage.ratelimit import RateLimiter
from screenaware.storage.redisstore import RedisStore, Script, global_key, user_scoped
from screenaware.web.auth import Principal, role_object

LOG = logging.getLogger(__name__)

USERS = global_key("users")
JWT_SECRET_KEY = global_key("jwt_secret")

# The names (after the user's tag) of the user's keys deleted with the user: its
# projects and tasks, API keys, applications, category rules, day counters,
# associations, correction revisions, timeline state and /times rollup marks. Caches
# expire by themselves.
USER_DATA = ("user", "apikeys", "projects", "tasks", "apps", "categories", "tgen", "learn",
             "rev", "cov", "covmeta", "tjournal", "tundo", "trolled", "tdaily", "twsum",
             "trollock", "srolled", "srollock")  # fmt: skip


def user_key(user_uuid: str) -> str:
    return user_scoped(user_uuid, "user")


def email_key(email: str) -> str:
    return global_key(f"email:{normalize_email(email)}")


def api_key_record(key_digest: str) -> str:
    """The global record of an API key by the SHA-256 hex of its secret."""
    return global_key(f"apikey:{key_digest}")


def user_api_keys(user_uuid: str) -> str:
    """The user's own list of its API keys (key uuid -> SHA-256 hex)."""
    return user_scoped(user_uuid, "apikeys")


def normalize_email(email: str) -> str:
    """Emails are unique regardless of case and surrounding white space."""
    return email.strip().lower()


# Step 1 of a create, on the user's slot. KEYS[1]: the user's hash; ARGV: its fields.
_PUT_USER = Script("""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
""")

# Step 2 of a create, on the global slot. KEYS: email index, users set; ARGV: uuid,
# created, the holder found stale before ('' for none). Claims the email if it is
# free or still held by that stale holder (compare-and-set); answers {1} when the
# email is the caller's now, else {0, holder}.
_CLAIM_EMAIL = Script("""
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[3] then return {0, holder} end
redis.call('SET', KEYS[1], ARGV[1])
if holder then redis.call('ZREM', KEYS[2], holder) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return {1}
""")

# Step 1 of a delete, on the user's slot. KEYS: the user's keys, the hash first and
# the API key list second. Answers {email, key digests...}, or nothing if no user.
_DELETE = Script("""
local email = redis.call('HGET', KEYS[1], 'email')
if not email then return false end
local out = {email}
for _, digest in ipairs(redis.call('HVALS', KEYS[2])) do out[#out + 1] = digest end
redis.call('DEL', unpack(KEYS))
return out
""")

# Step 2 of a delete, on the global slot. KEYS: email index, users set, then the
# records of the user's API keys; ARGV: the uuid. The email goes only if it still
# names this user (a create may have taken it over already).
_UNINDEX = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
""")

# Update fields of an existing user only (never resurrect a deleted one), on its
# slot. KEYS: user hash, the user's API key list. ARGV[1] = '1' bumps the version,
# which invalidates every token issued before, and revokes the user's API keys: a
# stolen login token could have made one, and a key that outlived the password
# change would be a permanent takeover. Answers {1, digests of the revoked keys...}
# or {0}; the keys stop working here (their global records, deleted next, are
# only believed while the user's list names them).
_UPDATE = Script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
local out = {1}
if ARGV[1] == '1' then
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  for _, digest in ipairs(redis.call('HVALS', KEYS[2])) do out[#out + 1] = digest end
  redis.call('DEL', KEYS[2])
end
return out
""")


# Store the offered key unless one is stored, and answer the stored one: one round
# trip, and no moment at which two processes could each think their key won.
_SHARED_KEY = Script("""
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
""")


@dataclass(frozen=True)
class User:
    """A stored user (the password hash never leaves this module's callers)."""

    uuid: str
    email: str
    name_first: str
    name_last: str
    role: str
    timezone: str | None
    password: str
    version: int
    created: int

    def public(self) -> dict[str, Any]:
        """The user object of the API (``_id`` is the uuid)."""
        return {
            "_id": self.uuid,
            "uuid": self.uuid,
            "email": self.email,
            "nameFirst": self.name_first,
            "nameLast": self.name_last,
            "role": role_object(self.role),
            "timezone": self.timezone,
            "integrations": {"googleCalendar": {"calendars": []}, "redmine": {"projects": []}},
        }

    def principal(self) -> Principal:
        return Principal(uuid=self.uuid, role=self.role, email=self.email, timezone=self.timezone)


def user_from_hash(data: dict[Any, Any]) -> User:
    return User(
        uuid=data["uuid"],
        email=data["email"],
        name_first=data.get("nameFirst", ""),
        name_last=data.get("nameLast", ""),
        role=data.get("role", "user"),
        timezone=data.get("timezone") or None,
        password=data.get("password", ""),
        version=int(data.get("version", 0)),
        created=int(data.get("created", 0)),
    )


class UserStore(RedisStore):
    """Users in Redis.

    Args:
        redis: zero-argument callable returning the open Redis client.
    """

    def __init__(self, redis: Callable[[], aioredis.Redis]) -> None:
        super().__init__(redis)
        self._on_deleted: list[Callable[[str], Awaitable[None]]] = []

    def on_deleted(self, forget: Callable[[str], Awaitable[None]]) -> None:
        """Call ``forget(user_uuid)`` after each deletion of a user.

        Features above identity that keep a user's data under keys of their own (the
        integrations' encrypted credentials) register here, so identity need not know
        their keys.
        """
        self._on_deleted.append(forget)

    async def get(self, user_uuid: str) -> User | None:
        data = await self._redis.hgetall(user_key(user_uuid))
        return user_from_hash(data) if data else None

    async def require(self, user_uuid: str) -> User:
        user = await self.get(user_uuid)
        if user is None:
            raise NotFound("User not found")
        return user

    async def by_email(self, email: str) -> User | None:
        """The user holding ``email``, checked against the user's own hash (an index
        entry left by a delete that died half way names nobody)."""
        found = await self._redis.get(email_key(email))
        if found is None:
            return None
        user = await self.get(str(found))
        if user is None or normalize_email(user.email) != normalize_email(email):
            return None
        return user

    async def all(self) -> list[User]:
        ids = await self._redis.zrange(USERS, 0, -1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_uuid in ids:
                pipe.hgetall(user_key(str(user_uuid)))
            rows = await pipe.execute()
        return [user_from_hash(row) for row in rows if row]

    async def create(self, user: User) -> None:
        """Store a new user; :class:`Conflict` if the email is taken.

        The hash first, then the claim of the email (see the module's docstring for
        why this order is safe); a claim lost to a live user deletes the hash again.
        """
        fields: list[Any] = [
            "uuid", user.uuid, "email", user.email, "nameFirst", user.name_first,
            "nameLast", user.name_last, "role", user.role, "timezone", user.timezone or "",
            "password", user.password, "version", user.version, "created", user.created,
        ]  # fmt: skip
        if not await _PUT_USER(self._redis, [user_key(user.uuid)], fields):
            raise Conflict("A user with this uuid exists already")
        stale = ""
        # Each further round follows a takeover lost to another create: bounded.
        for _ in range(3):
            reply = await _CLAIM_EMAIL(
                self._redis, [email_key(user.email), USERS], [user.uuid, user.created, stale]
            )
            if int(reply[0]) == 1:
                return
            holder = str(reply[1])
            if await self._holds(holder, user.email):
                break
            stale = holder
        await self._redis.delete(user_key(user.uuid))
        raise Conflict("A user with this email exists already")

    async def _holds(self, holder: str, email: str) -> bool:
        """Whether ``holder``'s claim of ``email`` is live (its user has that email)."""
        other = await self.get(holder)
        return other is not None and normalize_email(other.email) == normalize_email(email)

    async def update(self, user_uuid: str, fields: dict[str, Any], *, bump: bool = False) -> None:
        """Change fields of an existing user; ``bump`` invalidates its tokens and keys."""
        flat = [str(v) for item in fields.items() for v in item]
        reply = await _UPDATE(
            self._redis,
            [user_key(user_uuid), user_api_keys(user_uuid)],
            ["1" if bump else "0", *flat],
        )
        if not int(reply[0]):
            raise NotFound("User not found")
        await self._drop_key_records([str(d) for d in reply[1:]])

    async def _drop_key_records(self, digests: list[str]) -> None:
        """Delete the global records of revoked API keys (already dead: their user's
        list no longer names them), one slot, one command."""
        if digests:
            await self._redis.delete(*(api_key_record(d) for d in digests))

    async def delete(self, user_uuid: str) -> User:
        """Delete a user with its projects, tasks and API keys; returns it as it was.

        The user's keys first, then the global index entries (see the module's
        docstring), then what the features registered with :meth:`on_deleted` keep.
        """
        user = await self.require(user_uuid)
        reply = await _DELETE(self._redis, [user_scoped(user_uuid, n) for n in USER_DATA], [])
        if not reply:
            raise NotFound("User not found")
        email, digests = str(reply[0]), [str(d) for d in reply[1:]]
        await _UNINDEX(
            self._redis,
            [email_key(email), USERS, *(api_key_record(d) for d in digests)],
            [user_uuid],
        )
        for forget in self._on_deleted:
            await forget(user_uuid)
        return user

    async def jwt_secret(self, offer: str | None = None) -> str:
        """The shared signing key, stored by whichever process asks first.

        Args:
            offer: the key the caller holds; stored if Redis has none (it was lost),
                so the tokens signed with it stay valid. None offers a fresh key.
        """
        return str(
            await _SHARED_KEY(self._redis, [JWT_SECRET_KEY], [offer or secrets.token_urlsafe(64)])
        )


class Accounts:
    """Account operations over the store: creation, login, passwords.

    Args:
        store: the user store.
        tokens: issues bearer tokens.
        limiter: counts failed logins.
        clock: the current Unix time.
    """

    def __init__(
        self,
        store: UserStore,
        tokens: TokenIssuer,
        limiter: RateLimiter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self._limiter = limiter
        self._clock = clock

    async def create(
        self,
        email: str,
        password: str,
        *,
        name_first: str = "",
        name_last: str = "",
        role: str = "user",
        timezone: str | None = None,
    ) -> User:
        user = User(
            uuid=str(uuidlib.uuid4()),
            email=email.strip(),
            name_first=name_first,
            name_last=name_last,
            role=role,
            timezone=timezone,
            password=await hash_password(password),
            version=0,
            created=int(self._clock() * 1000),
        )
        await self.store.create(user)
        LOG.info("user %s created with role %s", user.uuid, role)
        return user

    async def token_for(self, user: User) -> str:
        """A bearer token for ``user``."""
        return await self.tokens.issue(user.uuid, user.version)

    @staticmethod
    def _limit_keys(email: str, address: str) -> list[str]:
        return [f"email:{normalize_email(email)}", f"addr:{address}"]

    async def login(self, email: str, password: str, address: str) -> str:
        """A bearer token for valid credentials.

        Unknown email and wrong password fail alike, with the same message and the
        same scrypt work. The attempt counts against the email and the address
        *before* the password is checked (so no burst passes the limits) and is
        given back when it succeeds, so only failures use up the limits.

        Raises:
            RateLimited: too many failures (or attempts under way) lately.
            AuthFailed: wrong email or password.
        """
        keys = self._limit_keys(email, address)
        await self._limiter.acquire(keys)
        user = await self.store.by_email(email)
        ok = await verify_password(password, user.password if user else None)
        if user is None or not ok:
            raise AuthFailed("Wrong email or password")
        await self._limiter.refund(keys)
        return await self.token_for(user)

    async def _prove_password(self, user: User, password: str, address: str) -> None:
        """Check ``user``'s current password, counted like a login attempt.

        A stolen token must not become a way to guess the password without limit,
        so a wrong one uses up the same per-email and per-address limits as a login.

        Raises:
            RateLimited: too many failures lately.
            AuthFailed: the password is wrong.
        """
        keys = self._limit_keys(user.email, address)
        await self._limiter.acquire(keys)
        if not await verify_password(password, user.password):
            raise AuthFailed("The current password is wrong")
        await self._limiter.refund(keys)

    async def set_password(self, user_uuid: str, password: str) -> None:
        """Replace a password; every token issued before stops working."""
        await self.store.update(user_uuid, {"password": await hash_password(password)}, bump=True)

    async def _proves_own(self, user: User, actor: str, current: str | None, address: str) -> bool:
        """Whether ``actor`` changes its own password; if so, prove the current one.

        Raises:
            Invalid: own password without the current one.
            AuthFailed: the current password is wrong.
            RateLimited: too many wrong passwords lately.
        """
        if user.uuid != actor:
            return False
        if current is None:
            raise Invalid(
                "Changing your own password needs your current password",
                {"currentPassword": ["Missing data for required field."]},
            )
        await self._prove_password(user, current, address)
        return True

    async def _fresh_token(self, user_uuid: str) -> str:
        return await self.token_for(await self.store.require(user_uuid))

    async def change_password(
        self, actor: str, target: str, password: str, current: str | None, address: str
    ) -> str | None:
        """``actor`` sets ``target``'s password; every token of ``target`` is voided.

        Changing one's own password needs the current one (a bearer token alone
        must not be enough to lock the owner out); an admin setting someone else's
        does not. Whoever changed their own password gets a fresh token, as the one
        they used is void now with all the others (a thief's copy included).

        Args:
            actor: uuid of the caller.
            target: uuid of the user whose password changes.
            password: the new password.
            current: the target's current password (needed if actor is target).
            address: the caller's address, for the attempt limits.

        Returns:
            A fresh token for the actor if it changed its own password, else None.

        Raises:
            NotFound: no such user.
            Invalid: own password without the current one.
            AuthFailed: the current password is wrong.
            RateLimited: too many wrong current passwords lately.
        """
        user = await self.store.require(target)
        own = await self._proves_own(user, actor, current, address)
        await self.set_password(target, password)
        return await self._fresh_token(target) if own else None

    async def update_by_email(
        self,
        actor: str,
        email: str,
        fields: dict[str, Any],
        password: str | None,
        current: str | None,
        address: str,
    ) -> str | None:
        """``PUT /api/users``: change a user's profile fields and maybe its password.

        The current password (when the actor changes its own) is proven before
        anything changes, so a refused request changes nothing.

        Returns:
            A fresh token if the actor changed its own password, else None.

        Raises:
            NotFound: no user has ``email``.
            Invalid, AuthFailed, RateLimited: as for :meth:`change_password`.
        """
        user = await self.store.by_email(email)
        if user is None:
            raise NotFound("User not found")
        if user.uuid == actor and fields.get("role", user.role) != user.role:
            # An admin taking away their own role could leave nobody to give it back.
            raise Invalid("You cannot change your own role", {"role": ["Not your own."]})
        own = password is not None and await self._proves_own(user, actor, current, address)
        if fields:
            await self.store.update(user.uuid, fields)
        if password is None:
            return None
        await self.set_password(user.uuid, password)
        return await self._fresh_token(user.uuid) if own else None

    async def principal(self, user_uuid: str, version: int) -> Principal | None:
        """The caller a token names, if the user exists and the token is current."""
        user = await self.store.get(user_uuid)
        if user is None or user.version != version:
            return None
        return user.principal()

    async def bootstrap_admin(self, email: str, password: str) -> None:
        """Create the configured admin unless that user exists (any worker may win)."""
        if not email or not password or await self.store.by_email(email):
            return
        try:
            await self.create(email, password, role="admin")
        except Conflict:
            return


def make_accounts(
    config: Config, redis: Callable[[], aioredis.Redis], clock: Callable[[], float] = time.time
) -> Accounts:
    """Wire :class:`Accounts` from the configuration (for the app and the CLI)."""
    store = UserStore(redis)

    async def jwt_secret(offer: str | None) -> str:
        return config.jwt_secret or await store.jwt_secret(offer)

    limiter = RateLimiter(
        redis,
        "login",
        {"email": config.login_max_failures, "addr": config.login_max_failures_per_address},
        config.login_window,
    )
    return Accounts(store, TokenIssuer(jwt_secret, config.jwt_ttl, clock), limiter, clock)

"""Redis side of the activity data: rules for attribution, applications seen,
user categories, and the /times cache with its per-day invalidation.

Keys (all on the user's slot, see :mod:`screenaware.storage.redisstore`):
    ``{u:<user>}:apps`` (hash): application uuid -> name, for ``/api/applications``.
    ``{u:<user>}:categories`` (hash): category uuid -> JSON, the user's own rules.
    ``{u:<user>}:tgen`` (hash): UTC day number -> write counter. Every write to a
        day bumps it; a cached /times answer is keyed by the counters of the days
        its range touches, so a write invalidates exactly the ranges it falls in.
    ``{u:<user>}:tcache:<digest>`` (string, expiring): a cached /times answer.
    ``{u:<user>}:trolled`` (hash): UTC day number -> the write counter the day's
        ``activity_15m`` rollup was computed at (``0``: never written). A day whose
        counter is not this is dirty: /times reads it from the raw ledger.
    ``{u:<user>}:tdaily`` (hash): ``<zone>:<local day start, Unix ms>`` -> the write
        counters (comma-separated) of the UTC days that local day touches, when its
        ``activity_1d`` rollup was computed. A local day whose days' counters are not
        these is dirty.
    ``{u:<user>}:trollock`` (string, expiring): who is writing the user's rollups.
"""

from __future__ import annotations

import hashlib
import json
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.client import NEVER_DECODE

from screenaware.activity.attribution import CategoryRule
from screenaware.activity.catalogue import BUILTIN_CATEGORIES
from screenaware.activity.learning import Association, decode, learn_key
from screenaware.errors import Conflict, NotFound
from screenaware.identity import projects_key
from screenaware.storage.redisstore import RedisStore, Script, user_scoped
from screenaware.storage.rollupmarks import RollupMarks

DAY_MS = 86_400_000
CACHE_TTL = 86_400


def apps_key(user: str) -> str:
    return user_scoped(user, "apps")


def categories_key(user: str) -> str:
    return user_scoped(user, "categories")


def generations_key(user: str) -> str:
    return user_scoped(user, "tgen")


def rolled_key(user: str) -> str:
    return user_scoped(user, "trolled")


def daily_key(user: str) -> str:
    return user_scoped(user, "tdaily")


def rollup_lock_key(user: str) -> str:
    return user_scoped(user, "trollock")


def daily_field(zone: str, day_start_ms: int) -> str:
    """The field of a local day in the daily rollup's hash (:func:`daily_key`)."""
    return f"{zone}:{day_start_ms}"


def times_cache_key(user: str, digest: str) -> str:
    return user_scoped(user, f"tcache:{digest}")


# KEYS[1]: the write counters, KEYS[2]: the rolled days, KEYS[3] (optional): the hash
# whose fields are the groups listed. ARGV: the first and the last UTC day. Returns
# the days' counters and rolled marks, each joined by commas ('' where none), then
# the groups: a year's 732 fields are named here, not sent (packing them as command
# arguments cost more than the rest of a cached answer).
_DAY_STATE = Script("""
local fields = {}
for day = tonumber(ARGV[1]), tonumber(ARGV[2]) do fields[#fields + 1] = tostring(day) end
local function joined(key)
  local values = redis.call('HMGET', key, unpack(fields))
  for i = 1, #fields do
    if not values[i] then values[i] = '' end
  end
  return table.concat(values, ',')
end
local out = {joined(KEYS[1]), joined(KEYS[2])}
if KEYS[3] then
  local names = redis.call('HKEYS', KEYS[3])
  for i = 1, #names do out[#out + 1] = names[i] end
end
return out
""")


# KEYS[1]: the rolled local days. ARGV[1]: a zone, ARGV[2]: its local days' starts
# (Unix ms) joined by commas. Returns their stamps joined by '|' ('' where none).
_DAILY_STAMPS = Script("""
local fields = {}
for day in string.gmatch(ARGV[2], '[^,]+') do fields[#fields + 1] = ARGV[1] .. ':' .. day end
local values = redis.call('HMGET', KEYS[1], unpack(fields))
for i = 1, #fields do
  if not values[i] then values[i] = '' end
end
return table.concat(values, '|')
""")


@dataclass(frozen=True)
class DayState:
    """What /times reads of a user's days before it queries InfluxDB.

    Attributes:
        known: every group the answer lists (for the ``groupBy`` asked).
        counters: the write counter of each UTC day of the range (None: never written).
        rolled: the counter each day's rollup was computed at (None: never).
    """

    known: list[str]
    counters: list[str | None]
    rolled: list[str | None]

    def clean(self, index: int) -> bool:
        """Whether the rollup of the range's ``index``-th day equals its raw sums."""
        rolled = self.rolled[index]
        return rolled is not None and rolled == (self.counters[index] or "0")

    def stamp(self, first: int, last: int) -> str:
        """The write counters of the range's days ``first`` to ``last`` (indexes), as
        a local day touching them is stamped with when it is rolled up."""
        return ",".join(c or "0" for c in self.counters[first : last + 1])


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _rule(data: Mapping[str, Any]) -> CategoryRule:
    return CategoryRule(
        uuid=data["uuid"],
        name=data["name"],
        applications=frozenset(data.get("applications", [])),
        domains=tuple(data.get("domains", [])),
    )


def public_category(rule: CategoryRule, builtin: bool) -> dict[str, Any]:
    return {
        "uuid": rule.uuid,
        "name": rule.name,
        "builtin": builtin,
        "applications": sorted(rule.applications),
        "domains": list(rule.domains),
    }


class ActivityStore(RedisStore):
    """Per-user activity state in Redis.

    Args:
        redis: zero-argument callable returning the open Redis client.
    """

    def __init__(self, redis: Callable[[], aioredis.Redis]) -> None:
        super().__init__(redis)
        # The /times rollup's marks: UTC days of activity_15m, local days of
        # activity_1d (the protocol the /streams rollup shares).
        self._rollup = RollupMarks(redis, rolled_key, rollup_lock_key, generations_key, daily_key)

    async def rules(
        self, user: str
    ) -> tuple[dict[str, Any], list[CategoryRule], dict[str, Association]]:
        """The user's projects, category rules (own first) and learned associations,
        in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(projects_key(user))
            pipe.hgetall(categories_key(user))
            pipe.hgetall(learn_key(user))
            projects, categories, learned = await pipe.execute()
        own = sorted((json.loads(v) for v in categories.values()), key=lambda c: c["name"])
        return (
            {k: json.loads(v) for k, v in projects.items()},
            [*(_rule(c) for c in own), *BUILTIN_CATEGORIES],
            decode(learned),
        )

    async def after_ingest(self, user: str, apps: Mapping[str, str], days: Iterable[int]) -> None:
        """Record the applications seen and bump the written days' counters."""
        async with self._redis.pipeline(transaction=False) as pipe:
            if apps:
                for app_uuid, name in apps.items():
                    pipe.hset(apps_key(user), app_uuid, name)
            for day in set(days):
                pipe.hincrby(generations_key(user), str(day), 1)
            await pipe.execute()

    async def applications(self, user: str) -> dict[str, str]:
        raw = await self._redis.hgetall(apps_key(user))
        return {str(k): str(v) for k, v in raw.items()}

    # --- categories -------------------------------------------------------

    async def categories(self, user: str) -> list[dict[str, Any]]:
        """The user's own categories, then the built-in ones."""
        raw = await self._redis.hgetall(categories_key(user))
        own = sorted((json.loads(v) for v in raw.values()), key=lambda c: c["name"])
        return [public_category(_rule(c), False) for c in own] + [
            public_category(r, True) for r in BUILTIN_CATEGORIES
        ]

    async def save_category(
        self, user: str, data: dict[str, Any], category_uuid: str | None = None
    ) -> dict[str, Any]:
        """Create (``category_uuid`` None) or change one of the user's categories."""
        key = categories_key(user)
        if category_uuid is None:
            category = {
                "uuid": str(uuidlib.uuid4()),
                "applications": [],
                "domains": [],
                **data,
            }
            if any(c.name.lower() == category["name"].lower() for c in BUILTIN_CATEGORIES):
                raise Conflict("A built-in category has this name")
        else:
            raw = await self._redis.hget(key, category_uuid)
            if raw is None:
                raise NotFound("Category not found (built-in categories cannot be changed)")
            category = {**json.loads(raw), **data, "uuid": category_uuid}
        await self._redis.hset(key, category["uuid"], json.dumps(category))
        return public_category(_rule(category), False)

    async def own_categories(self, user: str) -> list[dict[str, Any]]:
        """The user's own categories as stored (for export)."""
        raw = await self._redis.hgetall(categories_key(user))
        return sorted((json.loads(v) for v in raw.values()), key=lambda c: c["uuid"])

    async def restore_category(self, user: str, category: dict[str, Any]) -> None:
        """Store a category with its own uuid (restoring an export), replacing it."""
        rule = _rule(category)  # raises KeyError on a category without uuid or name
        stored = public_category(rule, False)
        del stored["builtin"]
        await self._redis.hset(categories_key(user), rule.uuid, json.dumps(stored))

    async def delete_category(self, user: str, category_uuid: str) -> dict[str, Any]:
        raw = await self._redis.hget(categories_key(user), category_uuid)
        if raw is None or not await self._redis.hdel(categories_key(user), category_uuid):
            raise NotFound("Category not found (built-in categories cannot be deleted)")
        return public_category(_rule(json.loads(raw)), False)

    async def counters(self, user: str, days: list[int]) -> list[str | None]:
        """The write counters of UTC days (None: never written)."""
        if not days:
            return []
        values = await self._redis.hmget(generations_key(user), [str(d) for d in days])
        return [None if v is None else str(v) for v in values]

    # --- /times: cache and rollup state ------------------------------------

    async def day_state(
        self, user: str, group_by: str | None, first_day: int, last_day: int
    ) -> DayState:
        """The groups of ``group_by``, and the write and rollup counters of the UTC
        days ``first_day`` to ``last_day``, in one round trip."""
        keys = [generations_key(user), rolled_key(user)]
        if group_by == "projectUuid":
            keys.append(projects_key(user))
        elif group_by == "categoryUuid":
            keys.append(categories_key(user))
        elif group_by is not None:
            keys.append(apps_key(user))
        found = await _DAY_STATE(self._redis, keys, [first_day, last_day])
        counters = [c or None for c in str(_text(found[0])).split(",")]
        rolled = [r or None for r in str(_text(found[1])).split(",")]
        known: set[str] = {str(_text(k)) for k in found[2:]}
        if group_by == "categoryUuid":
            known.update(rule.uuid for rule in BUILTIN_CATEGORIES)
        return DayState(sorted(known), counters, rolled)

    async def daily_stamps(self, user: str, zone: str, day_starts: list[int]) -> list[str | None]:
        """The stamps the local days of ``zone`` starting at ``day_starts`` (Unix ms)
        were rolled up at (None: never)."""
        if not day_starts:
            return []
        joined = ",".join(str(day) for day in day_starts)
        found = _text(await _DAILY_STAMPS(self._redis, [daily_key(user)], [zone, joined]))
        return [stamp or None for stamp in str(found).split("|")]

    @staticmethod
    def answer_key(user: str, params: Any, counters: list[str | None]) -> str:
        """The cache key of an answer: the parameters and the counters of every UTC
        day the range touches (read by :meth:`day_state`)."""
        digest = hashlib.sha256(
            orjson.dumps([params, counters], default=str, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()[:32]
        return times_cache_key(user, digest)

    async def cached(self, key: str) -> tuple[list[str], bytes] | None:
        """A cached answer: the groups it lists and its gzip-compressed JSON, as stored."""
        # Binary (not decoded: the client decodes replies as UTF-8 otherwise).
        data = await self._redis.execute_command("GET", key, **{NEVER_DECODE: True})
        if data is None:
            return None
        # The groups' JSON never holds a newline (orjson writes none).
        groups, _, answer = bytes(data).partition(b"\n")
        return orjson.loads(groups), answer

    async def cache(self, key: str, groups: list[str], answer: bytes) -> None:
        """Keep an answer (gzip-compressed JSON), served as it is on a hit."""
        await self._redis.set(key, orjson.dumps(groups) + b"\n" + answer, ex=CACHE_TTL)

    async def take_rollup(self, user: str, token: str, ttl_ms: int) -> bool:
        """Try to become the one writer of the user's rollup (no waiting)."""
        return await self._rollup.take(user, token, ttl_ms)

    async def rollup_lease(
        self,
        user: str,
        token: str,
        least_ms: int,
        days: Iterable[int] = (),
        local_days: Iterable[str] = (),
        read_at: Mapping[int, str] | None = None,
    ) -> bool:
        """Whether the caller still holds the rollup with ``least_ms`` to go and its
        sums are not stale; if so, ``days`` (UTC) and ``local_days`` (fields of the
        daily rollup) are dirty until :meth:`commit_rollup` (see
        :meth:`RollupMarks.lease`)."""
        return await self._rollup.lease(user, token, least_ms, days, read_at, local_days)

    async def commit_rollup(
        self,
        user: str,
        token: str,
        marks: Mapping[int, str],
        daily: Mapping[str, str] | None = None,
    ) -> bool:
        """Mark UTC days (``marks``) and local days (``daily``: field -> stamp) rolled
        up at the given counters and let the rollup go, if the caller still holds it."""
        return await self._rollup.commit(user, token, marks, daily)

    async def release_rollup(self, user: str, token: str) -> None:
        """Let the rollup go without marking anything."""
        await self._rollup.release(user, token)

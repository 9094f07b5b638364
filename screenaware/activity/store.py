"""Redis side of the activity data: rules for attribution, applications seen,
user categories, and the /times cache with its per-day invalidation.

Keys (all on the user's slot, see :mod:`screenaware.storage.redisstore`):
    ``{u:<user>}:apps`` (hash): application uuid -> name, for ``/api/applications``.
    ``{u:<user>}:categories`` (hash): category uuid -> JSON, the user's own rules.
    ``{u:<user>}:tgen`` (hash): UTC day number -> write counter. Every write to a
        day bumps it (the rollups compare it with the counter they were computed at).
    ``{u:<user>}:twsum`` (hash): the counters' running sums (a Fenwick tree over UTC
        days, fields 1 to 65536), bumped with them: the writes to any range of days.
    ``{u:<user>}:tcache:<digest>`` (string, expiring): a cached /times answer, named
        by its parameters, after the writes to its range's days when it was computed:
        a write invalidates exactly the ranges it falls in.
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


def write_sums_key(user: str) -> str:
    return user_scoped(user, "twsum")


# The write counters' running sums (a Fenwick tree over UTC days in a hash, fields
# 1 to WRITE_SUM_DAYS): the writes to any range of days are then read from at most
# 2 x 16 fields, not one per day (a write bumps at most 17). Days outside (before
# 1970, after 2149) share the first or the last field: their writes invalidate a
# little more, never less.
WRITE_SUM_DAYS = 1 << 16


def _tree_index(day: int) -> int:
    return min(max(day, 0), WRITE_SUM_DAYS - 1) + 1


def write_sum_bumps(days: Iterable[int]) -> dict[int, int]:
    """The running-sum fields one write to each of ``days`` adds to, and by how much."""
    bumps: dict[int, int] = {}
    for day in set(days):
        index = _tree_index(day)
        while index <= WRITE_SUM_DAYS:
            bumps[index] = bumps.get(index, 0) + 1
            index += index & -index
    return bumps


def count_writes(pipe: Any, user: str, days: Iterable[int]) -> None:
    """Queue on ``pipe`` one write to each of ``days``: its counter and the running sums.

    Called once InfluxDB acknowledged the write: a /times answer read before is then
    invalidated by it (see :meth:`ActivityStore.day_state`). ``pipe`` must be a
    transaction (MULTI/EXEC): a reader between two of the bumps could read a range's
    sum above what it ends at (a field shared by two days' paths raised first), and a
    later write could bring it back to the stamp of an answer that lacks that write.
    """
    for day in set(days):
        pipe.hincrby(generations_key(user), str(day), 1)
    for index, count in write_sum_bumps(days).items():
        pipe.hincrby(write_sums_key(user), str(index), count)


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


# Redis keeps a hash of up to hash-max-listpack-entries fields (512 by default) as one
# list, which HMGET searches from the start for every field asked: a year's 365 days
# from a hash of 365 took 1.2 ms so, against 0.03 ms from a hash table. A value longer
# than hash-max-listpack-value (64 by default) makes Redis store the hash as a table
# (it turns one back only when it loads its data again after a restart): a script
# about to ask a list for many fields sets such a value and deletes it at once. Redis
# before 7 names lists ziplist.
_AS_TABLE = """
local function as_table(key, asked)
  if asked < 16 then return end
  local encoding = redis.call('OBJECT', 'ENCODING', key)
  if encoding == 'listpack' or encoding == 'ziplist' then
    redis.call('HSET', key, '~', string.rep('~', 1024))
    redis.call('HDEL', key, '~')
  end
end
"""


# KEYS[1]: the write counters, KEYS[2]: the rolled days, KEYS[3]: the running sums of
# the counters, KEYS[4]: the cached answer, KEYS[5] (optional): the hash whose fields
# are the groups listed. ARGV: the first and the last UTC day, the first and the last
# running-sum field of the range (see _tree_index), then 'fresh' to pass the cache by
# (or nothing). Returns the writes to the range (the counters' sum), what the cache
# holds after the sum it was computed at if that is the sum now (nil otherwise), the
# days' counters and rolled marks each joined by commas ('' where none; both '' on a
# hit: not needed), then the groups. Counters
# only grow, so an equal sum means no day of the range was written since: a cached
# answer is checked by at most 32 fields, whatever the range, in one round trip. A
# year's 732 fields are named here, not sent (packing them as command arguments cost
# more than the rest of a cached answer).
_DAY_STATE = Script(
    _AS_TABLE
    + """
local function running_sum(index, sign, names, signs)
  while index > 0 do
    names[#names + 1] = tostring(index)
    signs[#signs + 1] = sign
    index = index - bit.band(index, -index)
  end
end
local names, signs = {}, {}
running_sum(tonumber(ARGV[4]), 1, names, signs)
running_sum(tonumber(ARGV[3]) - 1, -1, names, signs)
local writes = 0
if #names > 0 then
  local sums = redis.call('HMGET', KEYS[3], unpack(names))
  for i = 1, #names do writes = writes + signs[i] * (tonumber(sums[i]) or 0) end
end
local stamp = tostring(writes)
local out = {stamp, false, '', ''}
local cached = ARGV[5] ~= 'fresh' and redis.call('GET', KEYS[4])
if cached and string.sub(cached, 1, #stamp + 1) == stamp .. '\\n' then
  out[2] = string.sub(cached, #stamp + 2)
else
  local fields = {}
  for day = tonumber(ARGV[1]), tonumber(ARGV[2]) do fields[#fields + 1] = tostring(day) end
  local function joined(key)
    as_table(key, #fields)
    local values = redis.call('HMGET', key, unpack(fields))
    for i = 1, #fields do
      if not values[i] then values[i] = '' end
    end
    return table.concat(values, ',')
  end
  out[3] = joined(KEYS[1])
  out[4] = joined(KEYS[2])
end
if KEYS[5] then
  local groups = redis.call('HKEYS', KEYS[5])
  for i = 1, #groups do out[#out + 1] = groups[i] end
end
return out
"""
)


# KEYS[1]: the rolled local days. ARGV[1]: a zone, ARGV[2]: its local days' starts
# (Unix ms) joined by commas. Returns their stamps joined by '|' ('' where none).
_DAILY_STAMPS = Script(
    _AS_TABLE
    + """
local fields = {}
for day in string.gmatch(ARGV[2], '[^,]+') do fields[#fields + 1] = ARGV[1] .. ':' .. day end
as_table(KEYS[1], #fields)
local values = redis.call('HMGET', KEYS[1], unpack(fields))
for i = 1, #fields do
  if not values[i] then values[i] = '' end
end
return table.concat(values, '|')
"""
)


@dataclass(frozen=True)
class DayState:
    """What /times reads of a user's days before it queries InfluxDB.

    Attributes:
        known: every group the answer lists (for the ``groupBy`` asked).
        counters: the write counter of each UTC day of the range (None: never written).
            Empty when ``cached`` is set (not read).
        rolled: the counter each day's rollup was computed at (None: never). Empty
            when ``cached`` is set.
        key: the key the answer for these parameters is cached under.
        written: the writes to the range's days so far (the sum of their counters),
            which the cache stores an answer with (see :meth:`ActivityStore.cache`).
        cached: the answer cached for these parameters (gzip JSON) if no day of the
            range was written since and it lists every group ``known`` has; else None.
    """

    known: list[str]
    counters: list[str | None]
    rolled: list[str | None]
    key: str
    written: str
    cached: bytes | None

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
        async with self._redis.pipeline(transaction=True) as pipe:  # see count_writes
            if apps:
                for app_uuid, name in apps.items():
                    pipe.hset(apps_key(user), app_uuid, name)
            count_writes(pipe, user, days)
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
        self, user: str, group_by: str | None, params: Any, first_day: int, last_day: int
    ) -> DayState:
        """The groups of ``group_by`` and the answer cached for ``params`` (all that
        names the answer) if no day of ``first_day`` to ``last_day`` (UTC) was written
        since; if none is, the days' write and rollup counters. One round trip."""
        key = self.answer_key(user, params)
        keys = [generations_key(user), rolled_key(user), write_sums_key(user), key]
        if group_by == "projectUuid":
            keys.append(projects_key(user))
        elif group_by == "categoryUuid":
            keys.append(categories_key(user))
        elif group_by is not None:
            keys.append(apps_key(user))
        args = [first_day, last_day, _tree_index(first_day), _tree_index(last_day)]
        # Binary replies: the cached answer is gzip (the client decodes UTF-8 otherwise).
        found = await _DAY_STATE(self._redis, keys, args, raw=True)
        known: set[str] = {str(_text(k)) for k in found[4:]}
        if group_by == "categoryUuid":
            known.update(rule.uuid for rule in BUILTIN_CATEGORIES)
        if found[1] is not None:
            # The groups' JSON never holds a newline (orjson writes none).
            groups, _, answer = bytes(found[1]).partition(b"\n")
            if known <= set(orjson.loads(groups)):
                return DayState(sorted(known), [], [], key, str(_text(found[0])), answer)
            # A group the user has got since (a new project): computed anew.
            found = await _DAY_STATE(self._redis, keys, [*args, "fresh"], raw=True)
            known = {str(_text(k)) for k in found[4:]} | known
        counters = [c or None for c in str(_text(found[2])).split(",")]
        rolled = [r or None for r in str(_text(found[3])).split(",")]
        return DayState(sorted(known), counters, rolled, key, str(_text(found[0])), None)

    async def daily_stamps(self, user: str, zone: str, day_starts: list[int]) -> list[str | None]:
        """The stamps the local days of ``zone`` starting at ``day_starts`` (Unix ms)
        were rolled up at (None: never)."""
        if not day_starts:
            return []
        joined = ",".join(str(day) for day in day_starts)
        found = _text(await _DAILY_STAMPS(self._redis, [daily_key(user)], [zone, joined]))
        return [stamp or None for stamp in str(found).split("|")]

    @staticmethod
    def answer_key(user: str, params: Any) -> str:
        """The cache key of the answer for ``params`` (the writes to its range when
        it was computed are stored with it: see :meth:`day_state`)."""
        digest = hashlib.sha256(
            orjson.dumps(params, default=str, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()[:32]
        return times_cache_key(user, digest)

    async def cache(self, state: DayState, groups: list[str], answer: bytes) -> None:
        """Keep an answer (gzip-compressed JSON) computed at ``state``, served as it
        is while no day of its range is written (``state.written`` stays the same)."""
        value = b"\n".join((state.written.encode(), orjson.dumps(groups), answer))
        await self._redis.set(state.key, value, ex=CACHE_TTL)

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

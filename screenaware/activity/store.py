"""Redis side of the activity data: rules for attribution, applications seen,
user categories, and the /times cache with its per-day invalidation.

Keys (all on the user's slot, see :mod:`screenaware.storage.redisstore`):
    ``{u:<user>}:apps`` (hash): application uuid -> name, for ``/api/applications``.
    ``{u:<user>}:categories`` (hash): category uuid -> JSON, the user's own rules.
    ``{u:<user>}:tgen`` (hash): UTC day number -> write counter. Every write to a
        day bumps it; a cached /times answer is keyed by the counters of the days
        its range touches, so a write invalidates exactly the ranges it falls in.
    ``{u:<user>}:tcache:<digest>`` (string, expiring): a cached /times answer.
"""

from __future__ import annotations

import hashlib
import json
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from typing import Any

from screenaware.activity.attribution import CategoryRule
from screenaware.activity.catalogue import BUILTIN_CATEGORIES
from screenaware.activity.learning import Association, decode, learn_key
from screenaware.errors import Conflict, NotFound
from screenaware.identity import projects_key
from screenaware.storage.redisstore import RedisStore, user_scoped

DAY_MS = 86_400_000
CACHE_TTL = 86_400


def apps_key(user: str) -> str:
    return user_scoped(user, "apps")


def categories_key(user: str) -> str:
    return user_scoped(user, "categories")


def generations_key(user: str) -> str:
    return user_scoped(user, "tgen")


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

    async def group_ids(self, user: str, group_by: str) -> list[str]:
        """Every group a /times answer lists for ``group_by``, with time or not: the
        user's projects, categories (own and built-in) or applications seen."""
        if group_by == "projectUuid":
            return sorted(str(k) for k in await self._redis.hkeys(projects_key(user)))
        if group_by == "categoryUuid":
            own = [str(k) for k in await self._redis.hkeys(categories_key(user))]
            return sorted({*own, *(rule.uuid for rule in BUILTIN_CATEGORIES)})
        return sorted(str(k) for k in await self._redis.hkeys(apps_key(user)))

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

    # --- /times cache -----------------------------------------------------

    async def cache_key(self, user: str, start_ms: int, end_ms: int, params: Any) -> str:
        """The cache key of an answer: the parameters and the counters of every UTC
        day the range touches."""
        days = [str(d) for d in range(start_ms // DAY_MS, end_ms // DAY_MS + 1)]
        counters = await self._redis.hmget(generations_key(user), days)
        digest = hashlib.sha256(
            json.dumps([params, counters], sort_keys=True, default=str).encode()
        ).hexdigest()[:32]
        return user_scoped(user, f"tcache:{digest}")

    async def cached(self, key: str) -> Any | None:
        raw = await self._redis.get(key)
        return None if raw is None else json.loads(raw)

    async def cache(self, key: str, value: Any) -> None:
        await self._redis.set(key, json.dumps(value), ex=CACHE_TTL)

"""``screenaware migrate-redis-keys``: rename the keys of the one-tag scheme.

Before the Redis Cluster support every key carried the hash tag ``{sa}``, a user's
too (``{sa}:projects:<user>``). Now a user's keys carry the user's tag
(``{u:<user>}:projects``, see :mod:`screenaware.storage.redisstore`). This renames
them on a single Redis, once, with the service stopped; caches are dropped (they
are rebuilt on demand) and global keys keep their names. Renaming is idempotent:
a second run finds nothing to do. On a cluster RENAME cannot cross slots, so the
data is migrated on the single Redis first and then imported into the cluster
(``redis-cli --cluster import``).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from screenaware.storage.redisstore import GLOBAL_TAG, user_scoped

# The old ``{sa}:<name>:<user>`` keys that belong to one user.
USER_KEYS = frozenset(
    {"user", "apikeys", "projects", "tasks", "apps", "categories", "tgen", "learn", "rev",
     "cov", "covmeta", "tjournal", "tundo", "tlock", "calsync", "calpieces", "redminesync",
     "redmine"}
)  # fmt: skip
# Caches of a user, dropped: ``{sa}:tcache:<user>:...``, ``{sa}:sess:<user>:...``.
CACHES = frozenset({"tcache", "sess"})


def new_name(old: str) -> str | None:
    """The key's name in the per-user scheme (the same if global), None to drop it."""
    prefix = GLOBAL_TAG + ":"
    if not old.startswith(prefix):
        return old
    name, _, tail = old[len(prefix) :].partition(":")
    if name in CACHES:
        return None
    if name in USER_KEYS and tail and ":" not in tail:
        return user_scoped(tail, name)
    if name == "integ" and tail.count(":") == 1:
        user, integration = tail.split(":")
        return user_scoped(user, f"integ:{integration}")
    return old


@dataclass(frozen=True)
class Migrated:
    """What a migration did."""

    renamed: int
    dropped: int
    kept: int
    conflicts: int


async def migrate_keys(client: aioredis.Redis, batch: int = 1000) -> Migrated:
    """Rename every old per-user key (RENAMENX: a key already in the new scheme is
    never overwritten; the old one is then left and counted as a conflict)."""
    renamed = dropped = kept = conflicts = 0
    async for raw in client.scan_iter(match=GLOBAL_TAG + ":*", count=batch):
        old = raw.decode() if isinstance(raw, bytes) else str(raw)
        new = new_name(old)
        if new is None:
            dropped += await client.delete(old)
        elif new == old:
            kept += 1
        elif await client.renamenx(old, new):
            renamed += 1
        else:
            conflicts += 1
    return Migrated(renamed, dropped, kept, conflicts)

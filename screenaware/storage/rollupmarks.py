"""Which UTC days of a user's rollup hold what the raw ledger says: the protocol
the ``/times`` and ``/streams`` rollups share.

A rollup is a derived InfluxDB measurement, rewritten one UTC day at a time from
the raw ``activity`` ledger. Every writer of ``activity`` bumps the day's write
counter after InfluxDB acknowledged the write; a rollup marks a day with the
counter it read *before* reading the raw day, so a write acknowledged later leaves
the day dirty. One writer per user and rollup at a time (a lock that expires), a
write starts only with the lock held for longer than it can take, and the days
being written are unmarked before the first write, so a failure or a death
mid-way leaves them dirty.

Keys (on the user's slot): the rolled-days hash (day -> mark) and the lock, both
named by the rollup that uses this class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import redis.asyncio as aioredis

from screenaware.storage.redisstore import RELEASE_LOCK, RedisStore, Script

# KEYS[1]: the rollup lock, KEYS[2] and KEYS[3]: two hashes of rolled days (one
# rollup may keep two kinds of days, e.g. UTC and local; a rollup with one kind names
# its hash twice), KEYS[4]: the write counters of UTC days. ARGV[1]: the caller's
# token, ARGV[2]: the least lease (ms) a write may start with, ARGV[3]: how many of
# the items are KEYS[2]'s (the rest are KEYS[3]'s), ARGV[4]: how many (UTC day,
# counter) pairs follow: the counters the data about to be written was read at. If
# one is no longer the day's, the data is stale (a newer rollup may be in place, and
# readers may be reading it): nothing is unmarked, the lock is let go, 0. Then the
# items: the fields about to be written, unmarked first (a writer that dies mid-way
# leaves them dirty). Or ARGV[2] = -1 to commit: then the items are (field, mark)
# pairs marked as rolled up (ARGV[3] counts pairs), and the lock is let go. 0: the
# lock is no longer the caller's (or too close to expiring, or the data stale).
ROLLUP_LEASE = Script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local first = tonumber(ARGV[3])
local at = 5 + 2 * tonumber(ARGV[4])
if ARGV[2] ~= '-1' then
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then return 0 end
  for i = 5, at - 1, 2 do
    if (redis.call('HGET', KEYS[4], ARGV[i]) or '0') ~= ARGV[i + 1] then
      redis.call('DEL', KEYS[1])
      return 0
    end
  end
  for i = at, #ARGV do
    redis.call('HDEL', i < at + first and KEYS[2] or KEYS[3], ARGV[i])
  end
  return 1
end
for i = at, #ARGV, 2 do
  redis.call('HSET', i < at + 2 * first and KEYS[2] or KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('DEL', KEYS[1])
return 1
""")


class RollupMarks(RedisStore):
    """The rolled-up days of one rollup, and its per-user lock.

    Args:
        redis: zero-argument callable returning the open Redis client.
        rolled_key: the user's hash of rolled days (day number -> mark).
        lock_key: the user's lock key.
        counters_key: the user's hash of write counters (UTC day -> counter).
        local_key: the user's hash of a second kind of rolled days (field -> mark),
            for a rollup that keeps two (None: one).
    """

    def __init__(
        self,
        redis: Callable[[], aioredis.Redis],
        rolled_key: Callable[[str], str],
        lock_key: Callable[[str], str],
        counters_key: Callable[[str], str],
        local_key: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__(redis)
        self._rolled_key = rolled_key
        self._lock_key = lock_key
        self._counters_key = counters_key
        self._local_key = local_key or rolled_key

    def _keys(self, user: str) -> list[str]:
        return [self._lock_key(user), self._rolled_key(user), self._local_key(user),
                self._counters_key(user)]  # fmt: skip

    async def marks(self, user: str, days: Iterable[int]) -> list[str | None]:
        """The marks of UTC days (None: not rolled up)."""
        names = [str(day) for day in days]
        if not names:
            return []
        values = await self._redis.hmget(self._rolled_key(user), names)
        return [None if v is None else v.decode() if isinstance(v, bytes) else str(v)
                for v in values]  # fmt: skip

    async def take(self, user: str, token: str, ttl_ms: int) -> bool:
        """Try to become the one writer of the user's rollup (no waiting)."""
        return bool(await self._redis.set(self._lock_key(user), token, nx=True, px=ttl_ms))

    async def lease(
        self,
        user: str,
        token: str,
        least_ms: int,
        days: Iterable[int] = (),
        read_at: Mapping[int, str] | None = None,
        local_days: Iterable[str] = (),
    ) -> bool:
        """Whether the caller still holds the rollup with ``least_ms`` to go and its
        data is not stale; if so, ``days`` (and ``local_days``, fields of the second
        hash) are unmarked until :meth:`commit` (they are being written).

        Args:
            read_at: the write counter (``"0"``: none) of each UTC day the data about
                to be written was read at. If one has moved since, the lock is let go
                and nothing is written: a newer rollup of the day may be in place.
        """
        names = [str(day) for day in days]
        pairs = [v for day, counter in (read_at or {}).items() for v in (day, counter)]
        args = [token, least_ms, len(names), len(pairs) // 2, *pairs, *names, *local_days]
        return bool(await ROLLUP_LEASE(self._redis, self._keys(user), args))

    async def commit(
        self,
        user: str,
        token: str,
        marks: Mapping[int, str],
        local_marks: Mapping[str, str] | None = None,
    ) -> bool:
        """Mark days (and ``local_marks``' fields of the second hash) rolled up and
        let the rollup go, if the caller still holds it."""
        args: list[str | int] = [token, -1, len(marks), 0]
        for day, mark in marks.items():
            args.extend((day, mark))
        for field, mark in (local_marks or {}).items():
            args.extend((field, mark))
        return bool(await ROLLUP_LEASE(self._redis, self._keys(user), args))

    async def release(self, user: str, token: str) -> None:
        """Let the rollup go without marking anything."""
        await RELEASE_LOCK(self._redis, [self._lock_key(user)], [token])

"""Redis storage of the Heartbeat API: devices, token index and the live counters.

All keys share the hash tag ``{hb}`` so that the Lua scripts touch one slot and
run unchanged on a clustered Redis (every script declares a ``{hb}`` key, so the
cluster client sends it to that slot's node). The API serves one person's devices:
its keys are few and small, so one slot is no bottleneck. Every multi-key change is
one Lua script, so several workers (or machines) never see half an update.

Keys:
    ``{hb}:meta`` (hash): first_setup, next_device_id, total_beats, last_seen,
        longest_absence, visits.
    ``{hb}:device:<id>`` (hash): name, token (SHA-256 hex), num_beats, last_beat.
    ``{hb}:device_ids`` (sorted set): the ids, scored by id.
    ``{hb}:token:<sha256>`` (string): the device id owning that token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from screenaware.storage.redisstore import RedisStore, Script

META = "{hb}:meta"
DEVICE_IDS = "{hb}:device_ids"


def device_key(device_id: int | str) -> str:
    return f"{{hb}}:device:{device_id}"


def token_key(digest: str) -> str:
    return f"{{hb}}:token:{digest}"


_ADD_DEVICE = """
local id = redis.call('HINCRBY', KEYS[1], 'next_device_id', 1) - 1
redis.call('HSETNX', KEYS[1], 'first_setup', ARGV[3])
redis.call('HSET', '{hb}:device:' .. id, 'name', ARGV[1], 'token', ARGV[2], 'num_beats', 0)
redis.call('SET', '{hb}:token:' .. ARGV[2], id)
redis.call('ZADD', KEYS[2], id, id)
return id
"""

# KEYS[1]: the device's hash (declared, so a Redis Cluster runs the script on the
# {hb} slot's node; the token keys it touches share that slot). ARGV: id, digest.
_REGENERATE = """
local key = KEYS[1]
local name = redis.call('HGET', key, 'name')
if not name then return false end
local old = redis.call('HGET', key, 'token')
if old and old ~= '' then redis.call('DEL', '{hb}:token:' .. old) end
redis.call('SET', '{hb}:token:' .. ARGV[2], ARGV[1])
redis.call('HSET', key, 'token', ARGV[2])
return name
"""

# Beats move the counters in one step: KEYS[1] is the meta hash, KEYS[1 + i] the
# device of beat i and ARGV[i] its Unix second, in time order, as many as were
# acknowledged together. The gap to the previous beat of any device is an absence;
# only a later beat moves last_seen, so beats handled out of order by different
# workers never move it backwards.
_COUNT_BEATS = """
local meta = KEYS[1]
local n = #ARGV
if n == 0 then return 0 end
redis.call('HSETNX', meta, 'first_setup', ARGV[1])
local last = tonumber(redis.call('HGET', meta, 'last_seen'))
local longest = tonumber(redis.call('HGET', meta, 'longest_absence') or '0')
for i = 1, n do
  local dev = KEYS[i + 1]
  local now = tonumber(ARGV[i])
  if last and now - last > longest then longest = now - last end
  if not last or now > last then last = now end
  redis.call('HINCRBY', dev, 'num_beats', 1)
  local lb = tonumber(redis.call('HGET', dev, 'last_beat'))
  if not lb or now > lb then redis.call('HSET', dev, 'last_beat', now) end
end
redis.call('HSET', meta, 'last_seen', last, 'longest_absence', longest)
redis.call('HINCRBY', meta, 'total_beats', n)
return n
"""

_READ_STATS = """
redis.call('HSETNX', KEYS[1], 'first_setup', ARGV[1])
local out = {redis.call('HMGET', KEYS[1], 'first_setup', 'last_seen', 'longest_absence',
                        'total_beats', 'visits')}
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local d = redis.call('HMGET', '{hb}:device:' .. id, 'name', 'num_beats', 'last_beat')
  out[#out + 1] = {id, d[1], d[2], d[3]}
end
return out
"""


@dataclass(frozen=True)
class DeviceRecord:
    """A device as stored (without its token)."""

    id: int
    name: str
    num_beats: int
    last_beat: int | None


@dataclass(frozen=True)
class RawStats:
    """The counters as stored; :func:`heartbeat.stats.build_stats` derives the rest."""

    first_setup: int
    last_seen: int | None
    longest_absence: int
    total_beats: int
    visits: int
    devices: tuple[DeviceRecord, ...]


def new_token() -> str:
    """A fresh device token: 32 random bytes, URL-safe base64, never starting with ``-``.

    A leading ``-`` would make ``screenaware-sensor --beat-token TOKEN`` (and most
    command lines) read the token as an option; one in 64 tokens did.
    """
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class HeartbeatStore(RedisStore):
    """Devices and counters of the Heartbeat API in Redis.

    Args:
        redis: a zero-argument callable returning the open Redis client.
    """

    def __init__(self, redis: Callable[[], aioredis.Redis]) -> None:
        super().__init__(redis)
        # EVALSHA with the script's digest; the body is sent only if Redis lacks it.
        self._add_device = Script(_ADD_DEVICE)
        self._regenerate = Script(_REGENERATE)
        self._count_beats = Script(_COUNT_BEATS)
        self._read_stats = Script(_READ_STATS)

    async def mark_first_setup(self, now: int) -> None:
        """Record when the server was first set up (kept if already recorded)."""
        await self._redis.hsetnx(META, "first_setup", str(now))

    async def add_device(self, name: str, now: int) -> tuple[int, str]:
        """Register a device; returns its id and its (only ever shown) token."""
        token = new_token()
        device_id = await self._add_device(
            self._redis, [META, DEVICE_IDS], [name, hash_token(token), now]
        )
        return int(device_id), token

    async def regenerate_token(self, device_id: int) -> tuple[str, str] | None:
        """Give a device a new token, invalidating the old one at once.

        Returns:
            ``(name, token)``, or None when no such device exists.
        """
        token = new_token()
        name = await self._regenerate(
            self._redis, [device_key(device_id)], [device_id, hash_token(token)]
        )
        if name is None:
            return None
        return str(name), token

    async def count_beats(self, beats: list[tuple[int, int]]) -> None:
        """Count beats, given as ``(device id, acknowledged Unix second)``, in one step."""
        ordered = sorted(beats, key=lambda b: b[1])
        await self._count_beats(
            self._redis,
            [META, *(device_key(device) for device, _ in ordered)],
            [second for _, second in ordered],
        )

    async def look_up(self, digests: list[str]) -> list[int | None]:
        """The device owning each token digest (see :func:`hash_token`), or None, in
        one command. Looking up the token's SHA-256 means no comparison of the secret
        itself happens here, so its timing reveals nothing about the token."""
        if not digests:
            return []
        found = await self._redis.mget([token_key(d) for d in digests])
        return [None if f is None else int(f) for f in found]

    async def record_visit(self) -> None:
        """Count one page view."""
        await self._redis.hincrby(META, "visits", 1)

    async def read(self, now: int) -> RawStats:
        """Read every counter in one round trip."""
        reply = await self._read_stats(self._redis, [META, DEVICE_IDS], [now])
        meta = reply[0]
        devices = tuple(
            DeviceRecord(
                id=int(d[0]),
                name=d[1] or "",
                num_beats=_int(d[2]),
                last_beat=None if d[3] is None else int(d[3]),
            )
            for d in reply[1:]
        )
        return RawStats(
            first_setup=_int(meta[0], now),
            last_seen=None if meta[1] is None else int(meta[1]),
            longest_absence=_int(meta[2]),
            total_beats=_int(meta[3]),
            visits=_int(meta[4]),
            devices=devices,
        )

    async def device_names(self) -> dict[int, str]:
        """Every registered device's name by id."""
        ids = [str(i) for i in await self._redis.zrange(DEVICE_IDS, 0, -1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for device_id in ids:
                pipe.hget(device_key(device_id), "name")
            names = await pipe.execute()
        return {int(i): n or "" for i, n in zip(ids, names, strict=True)}

    async def replace_counters(self, raw: RawStats, next_device_id: int) -> None:
        """Overwrite every counter at once (used by ``rebuild-stats``).

        Devices unknown to Redis (lost with it) come back under their id with the
        name they are given in ``raw`` and no token: a new one must be generated.
        """
        async with self._redis.pipeline(transaction=True) as pipe:
            counters = {
                "first_setup": raw.first_setup,
                "longest_absence": raw.longest_absence,
                "total_beats": raw.total_beats,
                "visits": raw.visits,
                "next_device_id": next_device_id,
            }
            for name, value in counters.items():
                pipe.hset(META, name, value)
            if raw.last_seen is not None:
                pipe.hset(META, "last_seen", raw.last_seen)
            else:
                pipe.hdel(META, "last_seen")
            for d in raw.devices:
                key = device_key(d.id)
                pipe.hsetnx(key, "name", d.name)
                pipe.hsetnx(key, "token", "")
                pipe.hset(key, "num_beats", d.num_beats)
                if d.last_beat is None:
                    pipe.hdel(key, "last_beat")
                else:
                    pipe.hset(key, "last_beat", d.last_beat)
                pipe.zadd(DEVICE_IDS, {str(d.id): d.id})
            await pipe.execute()

    async def next_device_id(self) -> int:
        """The id the next registered device will get."""
        value = await self._redis.hget(META, "next_device_id")
        return _int(value)


def _int(value: Any, default: int = 0) -> int:
    return default if value is None or value == "" else int(value)

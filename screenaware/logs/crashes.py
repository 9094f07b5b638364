"""The crash store: dumps on disk, their byte budget in Redis, anonymous quotas.

Every worker (and machine sharing the ``crashes`` directory) shares one budget
through Redis: the bytes of the stored dumps plus those reserved by uploads in
progress. An upload reserves before it reads its body, so concurrent uploads
cannot overshoot the budget together. Past the budget the oldest anonymous dumps
are evicted; when even that cannot make room the upload is refused (507).

The accounting is rebuilt from the directory when a worker starts, so it agrees
with the files after a restart of Redis or of the service, or an operator's
clean-up. Anonymous dumps are named ``<uuid>.anon.dmp``, those of users
``<uuid>.dmp``: the file name alone says which may be evicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import redis.asyncio as aioredis

from screenaware.errors import BodyTooLarge, Malformed, StoreFull
from screenaware.storage.ids import uuid7, uuid7_ms
from screenaware.storage.ratelimit import Quota
from screenaware.storage.redisstore import RELEASE_LOCK, global_key, optimistic

LOG = logging.getLogger(__name__)

_PREFIX = global_key("crash")
TOTAL, SIZES, ANON, ANON_TOTAL, PENDING = (
    f"{_PREFIX}:{name}" for name in ("total", "sizes", "anon", "anon_total", "pending")
)
SYNC_LOCK = f"{_PREFIX}:sync_lock"
_KEYS = [TOTAL, SIZES, ANON, ANON_TOTAL, PENDING]
# A reservation lapses after this long: a worker killed mid-upload does not hold
# its bytes for ever (uploads of 10 MiB take seconds, not half an hour).
UPLOAD_DEADLINE_MS = 30 * 60 * 1000
_CHARGE_STEP = 256 * 1024
_READ_CHUNK = 64 * 1024
USER_SUFFIX, ANON_SUFFIX = ".dmp", ".anon.dmp"

# KEYS: total sizes anon anon_total pending; ARGV: token bytes budget now deadline.
# Returns {1, evicted uuids...} or {0} when even evicting every anonymous dump
# would not make room (then nothing is evicted).
_RESERVE = """
local pending = 0
local entries = redis.call('HGETALL', KEYS[5])
for i = 1, #entries, 2 do
  local bytes, deadline = string.match(entries[i + 1], '^(%d+):(%d+)$')
  if tonumber(deadline) < tonumber(ARGV[4]) then
    redis.call('HDEL', KEYS[5], entries[i])
  else
    pending = pending + tonumber(bytes)
  end
end
local want = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0') + pending
local excess = used + want - tonumber(ARGV[3])
local evicted = {1}
if excess > 0 then
  if excess > tonumber(redis.call('GET', KEYS[4]) or '0') then
    return {0}
  end
  while excess > 0 do
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 99)
    if #oldest == 0 then return {0} end
    for _, id in ipairs(oldest) do
      local size = tonumber(redis.call('HGET', KEYS[2], id) or '0')
      redis.call('ZREM', KEYS[3], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('DECRBY', KEYS[1], size)
      redis.call('DECRBY', KEYS[4], size)
      excess = excess - size
      table.insert(evicted, id)
      if excess <= 0 then break end
    end
  end
end
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2] .. ':' .. ARGV[5])
return evicted
"""

# KEYS as above; ARGV: token uuid size anonymous(0/1) ms. Idempotent per uuid.
_COMMIT = """
redis.call('HDEL', KEYS[5], ARGV[1])
local old = redis.call('HGET', KEYS[2], ARGV[2])
if old then
  redis.call('DECRBY', KEYS[1], old)
  if redis.call('ZREM', KEYS[3], ARGV[2]) == 1 then redis.call('DECRBY', KEYS[4], old) end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('INCRBY', KEYS[1], ARGV[3])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
  redis.call('INCRBY', KEYS[4], ARGV[3])
end
return 1
"""

# KEYS as above; ARGV: uuid. Undoes _COMMIT of a dump whose point could not be written.
_FORGET = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('DECRBY', KEYS[1], old)
  if redis.call('ZREM', KEYS[3], ARGV[1]) == 1 then redis.call('DECRBY', KEYS[4], old) end
end
return 0
"""


@dataclass(frozen=True)
class CrashLimits:
    """What anonymous senders and the whole store may use.

    Args:
        max_bytes: the largest dump.
        store_bytes: the byte budget of all dumps together.
        anonymous_per_hour: uploads per client address and hour without a token.
        anonymous_bytes_per_hour: dump bytes per client address and hour without a token.
    """

    max_bytes: int
    store_bytes: int
    anonymous_per_hour: int
    anonymous_bytes_per_hour: int


@dataclass(frozen=True)
class StoredDump:
    """A dump on disk as the accounting sees it."""

    uuid: str
    size: int
    anonymous: bool


def scan(directory: Path, stale_before: float) -> list[StoredDump]:
    """The dumps in ``directory``; removes partial files older than ``stale_before``.

    Runs in a thread (it touches the disk).
    """
    found: list[StoredDump] = []
    if not directory.is_dir():
        return found
    for entry in os.scandir(directory):
        name = entry.name
        if name.endswith(".part"):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < stale_before:
                    os.unlink(entry.path)
            continue
        anonymous = name.endswith(ANON_SUFFIX)
        stem = name.removesuffix(ANON_SUFFIX if anonymous else USER_SUFFIX)
        if stem == name or uuid7_ms(stem) is None:
            continue
        with contextlib.suppress(FileNotFoundError):
            found.append(StoredDump(stem, entry.stat().st_size, anonymous))
    return found


def _sync_and_close(out: Any) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


Recorder = Callable[[str, int, Mapping[str, str], int, str, str | None], Awaitable[None]]


class CrashStore:
    """Crash dumps on disk within a shared byte budget.

    Args:
        directory: where the dumps are kept.
        redis: zero-argument callable returning the open Redis client.
        clock: the current Unix time in seconds.
        limits: the sizes and quotas.
        record: writes the ``crash_sensor`` point of a stored dump: called with
            (uuid, ms, fields, size, sha256, user) before the dump counts as stored.
    """

    def __init__(
        self,
        directory: Path,
        redis: Callable[[], aioredis.Redis],
        clock: Callable[[], float],
        limits: CrashLimits,
        record: Recorder,
    ) -> None:
        self.directory = directory
        self._redis = redis
        self._clock = clock
        self.limits = limits
        self._record = record
        self._quota = Quota(redis, "crash", 3600)

    def path(self, point_uuid: str, anonymous: bool) -> Path:
        """Where a dump lives (the uuid is parsed, never used as a path)."""
        suffix = ANON_SUFFIX if anonymous else USER_SUFFIX
        return self.directory / f"{uuidlib.UUID(point_uuid)}{suffix}"

    def _candidates(self, point_uuid: str) -> list[tuple[bool, Path]]:
        """Where a dump of either kind would be, as (anonymous, path); none for a
        string that is not a uuid."""
        try:
            return [(anonymous, self.path(point_uuid, anonymous)) for anonymous in (False, True)]
        except ValueError:
            return []

    async def open(self, point_uuid: str) -> tuple[BinaryIO, int] | None:
        """The open file of a dump and its size, or None.

        Opened before the answer starts, so that a dump evicted meanwhile is a 404,
        not an answer cut off (an open file stays readable after its eviction).
        """
        for _, candidate in self._candidates(point_uuid):
            try:
                handle = await asyncio.to_thread(open, candidate, "rb")
            except (FileNotFoundError, IsADirectoryError):
                continue
            return handle, os.fstat(handle.fileno()).st_size
        return None

    async def sync(self) -> None:
        """Rebuild the accounting from the files (at start; one worker at a time).

        Other workers may store dumps meanwhile (a worker restarted under load): a
        dump counted in Redis whose file the scan missed, because it was stored
        after the scan, stays counted if its file is there. Reservations of uploads
        in progress stay.
        """
        redis = self._redis()
        token = secrets.token_hex(8)
        if not await redis.set(SYNC_LOCK, token, nx=True, ex=60):
            return
        try:
            stale = time.time() - UPLOAD_DEADLINE_MS / 1000
            scanned = await asyncio.to_thread(scan, self.directory, stale)
            found = {d.uuid for d in scanned}

            async def rebuild(pipe: Any) -> list[StoredDump]:
                # Read while watching SIZES: a dump committed from here to EXEC
                # changes it, and the rebuild runs again with that dump known.
                counted = [
                    u.decode() if isinstance(u, bytes) else u for u in await pipe.hkeys(SIZES)
                ]
                dumps = scanned + await asyncio.to_thread(
                    self._present, [u for u in counted if u not in found]
                )
                pipe.multi()
                pipe.delete(SIZES, ANON)
                for first in range(0, len(dumps), 1000):
                    chunk = dumps[first : first + 1000]
                    pipe.hset(SIZES, mapping={d.uuid: d.size for d in chunk})
                    anonymous = {d.uuid: uuid7_ms(d.uuid) or 0 for d in chunk if d.anonymous}
                    if anonymous:
                        pipe.zadd(ANON, anonymous)
                pipe.set(TOTAL, sum(d.size for d in dumps))
                pipe.set(ANON_TOTAL, sum(d.size for d in dumps if d.anonymous))
                return dumps

            dumps = await optimistic(redis, [SIZES], rebuild)
            LOG.info("crash store: %d dumps, %d bytes", len(dumps), sum(d.size for d in dumps))
        finally:
            await RELEASE_LOCK(redis, [SYNC_LOCK], [token])

    def _present(self, uuids: list[str]) -> list[StoredDump]:
        """The dumps among ``uuids`` whose file exists now (runs in a thread)."""
        present = []
        for point_uuid in uuids:
            for anonymous, candidate in self._candidates(point_uuid):
                try:
                    size = candidate.stat().st_size
                except FileNotFoundError:
                    continue
                present.append(StoredDump(point_uuid, size, anonymous))
                break
        return present

    async def store(
        self,
        fields: Mapping[str, str],
        chunks: AsyncIterator[bytes],
        user: str | None,
        address: str | None,
        declared: int | None,
    ) -> str:
        """Take one upload: quotas, budget, the file (fsynced), then its point.

        Args:
            fields: the upload's form fields.
            chunks: the dump as it arrives.
            user: the uploader's uuid, None for anonymous uploads.
            address: the client address (anonymous quotas are per address).
            declared: the request's Content-Length, if any (an upper bound of the dump).

        Raises:
            RateLimited: an anonymous address passed its hourly count or bytes.
            StoreFull: no room in the budget, even after evicting anonymous dumps.
            BodyTooLarge: the dump passes the largest size.
            Malformed: the dump is empty.
        """
        anonymous = user is None
        bytes_key, byte_limit = f"bytes:{address}", self.limits.anonymous_bytes_per_hour
        if anonymous:
            await self._quota.take(f"count:{address}", 1, self.limits.anonymous_per_hour)
        now = int(self._clock() * 1000)
        point_uuid = uuid7(now)
        token = f"{point_uuid}:{secrets.token_hex(4)}"
        reserve = min(self.limits.max_bytes, declared or self.limits.max_bytes)
        await self._reserve(token, reserve, now)
        final = self.path(point_uuid, anonymous)
        partial = final.with_suffix(".part")
        digest, size, charged, committed = hashlib.sha256(), 0, 0, False
        try:
            await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
            # File I/O runs in threads: a slow disk must not stall the event loop.
            out = await asyncio.to_thread(open, partial, "wb")
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > reserve:
                        raise BodyTooLarge(self.limits.max_bytes)
                    if anonymous and size - charged >= _CHARGE_STEP:
                        await self._quota.take(bytes_key, size - charged, byte_limit)
                        charged = size
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
                if size == 0:
                    raise Malformed(
                        "The upload carries no dump", {"upload_file_minidump": ["Empty."]}
                    )
                if anonymous and size > charged:
                    await self._quota.take(bytes_key, size - charged, byte_limit)
                    charged = size
                await asyncio.to_thread(_sync_and_close, out)
            finally:
                out.close()
            await asyncio.to_thread(os.replace, partial, final)
            # Accounted first, then recorded: a point in InfluxDB always has its dump.
            # A failed recording undoes the accounting and the file (below).
            await self._redis().eval(
                _COMMIT, len(_KEYS), *_KEYS, token, point_uuid, size, int(anonymous), now
            )
            committed = True
            await self._record(point_uuid, now, fields, size, digest.hexdigest(), user)
        except BaseException:
            await asyncio.to_thread(_unlink_all, [partial, final])
            with contextlib.suppress(Exception):
                if committed:
                    await self._redis().eval(_FORGET, len(_KEYS), *_KEYS, point_uuid)
                await self._redis().hdel(PENDING, token)
                if charged:
                    # Refused or failed: those bytes were not kept, so they do not count.
                    await self._quota.give_back(bytes_key, charged)
            raise
        LOG.info("crash dump %s stored (%d bytes)", point_uuid, size)
        return point_uuid

    async def _reserve(self, token: str, amount: int, now: int) -> None:
        reply = await self._redis().eval(
            _RESERVE,
            len(_KEYS),
            *_KEYS,
            token,
            amount,
            self.limits.store_bytes,
            now,
            now + UPLOAD_DEADLINE_MS,
        )
        if int(reply[0]) != 1:
            raise StoreFull("The crash store is full; try again later")
        evicted = [self.path(u.decode() if isinstance(u, bytes) else u, True) for u in reply[1:]]
        if evicted:
            LOG.info("crash store: evicted %d anonymous dumps", len(evicted))
            await asyncio.to_thread(_unlink_all, evicted)

    @staticmethod
    async def read(handle: BinaryIO) -> AsyncIterator[bytes]:
        """A file in chunks, each read in a thread (never blocking the event loop)."""
        try:
            while chunk := await asyncio.to_thread(handle.read, _READ_CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

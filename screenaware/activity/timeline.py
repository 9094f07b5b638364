"""One person, one timeline: who owns each millisecond where snapshots overlap.

**The rule.** Every millisecond covered by a user's activity snapshots belongs to
exactly one of them: the one of highest *priority* that covers it. Priority is
``(real, end, start, key)``: a real snapshot beats imported calendar time
(keys starting ``cal-``, which is cut into pieces of at most 10 s so it loses
exactly what snapshots cover); then the snapshot taken later (greater ``timeTaken``) wins; on an
equal end the one that started later (the shorter one); then the greater snapshot
key (a hash of the snapshot's content). The rule depends only on the set of
snapshots, so arrival order, batching and worker do not matter. Snapshots without
windows (away) own nothing and cut nothing.

Because a higher-priority snapshot ends at or after a lower one, it can only take
a *suffix* of it: what a snapshot owns is always one interval
``[start, start + effective)``, so its share is one number, the *effective*
duration.

**Coverage.** The recent snapshots of a user (``timeline_days``) live in Redis (a
sorted set scored by start, one compact member per snapshot: its interval, key,
sub-millisecond offset, effective duration, trims so far and tags), so a batch
reads the neighbourhood of all its snapshots in one round trip and never reads
InfluxDB. A per-user lock serialises resolving (ingest, corrections) of one user
across workers. It is held while Redis is read and updated (and while journal
entries of lost or failed writes are written first), not during the batch's own
InfluxDB write, so concurrent requests of one user still share group commits; a
round whose lock expired meanwhile commits nothing (WATCH on the lock):
the batch's points are kept in a per-user *journal* in Redis with the coverage
update, written to InfluxDB after the lock is released, and dropped from the
journal once acknowledged. A journal entry whose writer failed or died is written
by the next lock holder (InfluxDB keeps one copy of a point written twice), and
whoever reads the ledger under the lock (a correction) first writes the whole
journal. An entry InfluxDB refuses for good (4xx: a field type conflict, a time
beyond the retention policy) is dropped and its coverage changes are undone under
the lock, so its snapshots count as new when they are sent again (and are refused
again, not acknowledged). Only a snapshot older than the horizon (a sensor that was offline for
weeks) makes its batch read its neighbourhood from the ``activity`` ledger: one
query per stretch of such snapshots, never per snapshot.

**Ledger.** A new snapshot's ``activity`` entry carries its effective duration at
the time it arrives. When a later snapshot takes time from one already stored, the
loser gets a reversing entry (minus its current effective duration, rev ``t<k>r``)
and, unless nothing is left, a new entry (its new effective duration, rev
``t<k>``), ``k`` counting its trims: append-only, deterministic on retry, and
``sum(duration_ms)`` stays the answer of ``/times``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import redis.asyncio as aioredis

from screenaware.activity.store import DAY_MS, apps_key, count_writes
from screenaware.errors import StorageUnavailable, WriteRejected
from screenaware.storage.influx import GroupCommitWriter
from screenaware.storage.redisstore import RELEASE_LOCK, RedisStore, Script, user_scoped

LOG = logging.getLogger(__name__)


# Key prefix of imported calendar time: it owns only what no snapshot covers.
MEETING_PREFIX = "cal-"
# Marks imported time its source no longer holds: kept in the coverage (its point
# keeps its time) but it cuts nothing, and the same piece may be imported anew.
RETIRED_MARK = "~"


def coverage_key(user: str) -> str:
    return user_scoped(user, "cov")


def meta_key(user: str) -> str:
    return user_scoped(user, "covmeta")


def lock_key(user: str) -> str:
    return user_scoped(user, "tlock")


@dataclass(frozen=True)
class Record:
    """One activity snapshot on the timeline.

    Attributes:
        start: start in Unix ms.
        end: end (``timeTaken``) in Unix ms.
        key: the snapshot key (stable for the same content).
        offset: nanoseconds added to the start so that snapshots starting in the
            same millisecond get points of their own (-1: not placed yet).
        effective: the milliseconds this snapshot owns now.
        trims: how many times later snapshots took time from it.
        project: the project tag now (corrections change it).
        category: the category tag.
        application: the application tag.
    """

    start: int
    end: int
    key: str
    offset: int = -1
    effective: int = 0
    trims: int = 0
    project: str = "none"
    category: str = "none"
    application: str = "none"

    @property
    def priority(self) -> tuple[bool, int, int, str]:
        # Imported meetings (keys MEETING_PREFIX...) lose to every real snapshot.
        return (not self.key.startswith(MEETING_PREFIX), self.end, self.start, self.key)

    @property
    def retired(self) -> bool:
        return RETIRED_MARK in self.key

    @property
    def time_ns(self) -> int:
        return self.start * 1_000_000 + max(self.offset, 0)

    def encode(self) -> str:
        return (
            f"{self.start}|{self.offset}|{self.end}|{self.effective}|{self.trims}|{self.key}|"
            f"{self.project}|{self.category}|{self.application}"
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> Record:
        text = raw.decode() if isinstance(raw, bytes) else raw
        start, offset, end, effective, trims, key, project, category, application = text.split("|")
        return cls(
            int(start),
            int(end),
            key,
            int(offset),
            int(effective),
            int(trims),
            project,
            category,
            application,
        )


@dataclass(frozen=True)
class Plan:
    """What a batch changes: the snapshots it adds (placed, with their effective
    duration) and the stored ones it takes time from, as (before, after)."""

    added: list[Record]
    trimmed: list[tuple[Record, Record]]


def _overlap(a: Record, b: Record) -> bool:
    return a.start < b.end and b.start < a.end


def resolve(existing: Sequence[Record], new: Iterable[Record]) -> Plan:
    """Apply the rule to a batch of new snapshots against the stored neighbourhood.

    Args:
        existing: every stored snapshot that may overlap one of ``new`` (with its
            effective duration as stored).
        new: the batch's activity snapshots; one already stored (same key) or
            repeated in the batch is an identical re-send and changes nothing.

    Returns:
        The plan; the stored snapshots' effective durations only ever shrink.
    """
    known = {r.key for r in existing}
    fresh: dict[str, Record] = {}
    for record in new:
        if record.key not in known and record.key not in fresh:
            fresh[record.key] = record
    if not fresh:
        return Plan([], [])
    everyone = sorted([*existing, *fresh.values()], key=lambda r: r.start)
    starts = [r.start for r in everyone]
    longest = max(r.end - r.start for r in everyone)

    def cut(target: Record, pool: Sequence[Record], pool_starts: Sequence[int], end: int) -> int:
        # Higher-priority snapshots overlapping target take everything from their
        # start on: the owned part ends at the earliest such start.
        lo = bisect.bisect_left(pool_starts, target.start - longest + 1)
        hi = bisect.bisect_left(pool_starts, target.end)
        mine = None
        for other in pool[lo:hi]:
            if other is target or other.retired or not _overlap(other, target):
                continue
            mine = mine or target.priority
            if other.priority > mine:
                end = min(end, other.start)
        return max(0, end - target.start)

    used = {(r.start, r.offset) for r in existing}
    added = []
    for record in sorted(fresh.values(), key=lambda r: (r.start, r.key)):
        offset = 0
        while (record.start, offset) in used:
            offset += 1
        used.add((record.start, offset))
        effective = cut(record, everyone, starts, record.end)
        # Most records of a batch come placed as they will be (the caller's guess):
        # the same record then, not a copy (dataclasses.replace is slow per record).
        if record.offset != offset or record.effective != effective:
            record = replace(record, offset=offset, effective=effective)
        added.append(record)
    batch = sorted(fresh.values(), key=lambda r: r.start)
    batch_starts = [r.start for r in batch]
    trimmed = []
    for record in existing:
        if record.effective <= 0:
            continue  # nothing left to take
        left = cut(record, batch, batch_starts, record.start + record.effective)
        if left < record.effective:
            trimmed.append((record, replace(record, effective=left, trims=record.trims + 1)))
    return Plan(added, trimmed)


def records_from_ledger(columns: Sequence[str], values: Sequence[Sequence[Any]]) -> list[Record]:
    """The timeline records of stored snapshots, rebuilt from their time-ordered
    ``activity`` entries (for snapshots older than the coverage horizon)."""
    ix = {name: index for index, name in enumerate(columns)}
    t, dur, rev, proj = ix["time"], ix["duration_ms"], ix["rev"], ix["project"]
    span, key, cat, app = ix["span_ms"], ix["snapshot"], ix["category"], ix["application"]
    out = []
    for time_ns, rows in itertools.groupby(values, key=lambda row: row[t]):
        group = list(rows)
        original = next((row for row in group if not row[rev]), None)
        if original is None:
            continue
        balance: dict[str, int] = {}
        trims = 0
        for row in group:
            balance[row[proj]] = balance.get(row[proj], 0) + int(row[dur] or 0)
            tag = str(row[rev] or "")
            if tag.startswith("t") and tag.endswith("r") and tag[1:-1].isdigit():
                trims = max(trims, int(tag[1:-1]))
        start, offset = divmod(int(time_ns), 1_000_000)
        length = int(original[span] or original[dur] or 0)
        out.append(
            Record(
                start=start,
                end=start + length,
                key=str(original[key] or f"legacy:{time_ns}"),
                offset=offset,
                effective=sum(balance.values()),
                trims=trims,
                project=str(max(balance, key=balance.__getitem__)),
                category=str(original[cat] or "none"),
                application=str(original[app] or "none"),
            )
        )
    return out


def clusters(spans: Iterable[tuple[int, int]], reach: int) -> list[tuple[int, int]]:
    """The start-score ranges ``[lo, hi)`` holding every stored snapshot that may
    overlap one of ``spans``, merged where they touch."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        lo, hi = start - reach + 1, end
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _decoded_unique(members: Iterable[str | bytes]) -> list[Record]:
    seen: dict[str, None] = {}
    for raw in members:
        seen[raw.decode() if isinstance(raw, bytes) else raw] = None
    return [Record.decode(text) for text in seen]


def journal_key(user: str) -> str:
    return user_scoped(user, "tjournal")


def undo_key(user: str) -> str:
    """Per journal entry: the coverage changes to undo if InfluxDB refuses it."""
    return user_scoped(user, "tundo")


def encode_undo(plan: Plan) -> str:
    """What :func:`_UNDO` needs to take a plan back out of the coverage."""
    # orjson: the same JSON to cjson, a tenth of the stdlib's time for arrays of 1000.
    return orjson.dumps(
        {
            "added": [[r.start, r.key] for r in plan.added],
            "trimmed": [[b.start, b.encode(), a.encode()] for b, a in plan.trimmed],
        }
    ).decode()


# KEYS[1]: the coverage; ARGV[1]: an encode_undo() text. Run under the user's lock.
# An added snapshot goes (whatever later rounds made of it: they were resolved
# against it, but InfluxDB never had it). A trimmed one gets its former member back
# only if it is still as this plan left it; if a later round trimmed it further,
# that round's points (written or journaled) describe it, so it stays.
_UNDO = Script("""
local undo = cjson.decode(ARGV[1])
for _, added in ipairs(undo.added) do
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], added[1], added[1])) do
    local key = string.match(member, '^[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|')
    if key == added[2] then redis.call('ZREM', KEYS[1], member) end
  end
end
for _, trimmed in ipairs(undo.trimmed) do
  if redis.call('ZREM', KEYS[1], trimmed[3]) == 1 then
    redis.call('ZADD', KEYS[1], trimmed[1], trimmed[2])
  end
end
return 0
""")


@dataclass
class Held:
    """What the lock holder learns when it gets the lock.

    Attributes:
        longest: the longest snapshot in the coverage (ms).
        journal: the ids of the journal entries not yet acknowledged.
        token: the holder's lock token (a commit checks the lock is still its own).
        around: the stored snapshots that may overlap the spans the lock was asked
            with (read in the same round as the lock).
        released: a commit let the lock go already.
    """

    longest: int
    journal: list[str]
    token: str = ""
    around: list[Record] = field(default_factory=list)
    released: bool = False


# KEYS: lock, meta, journal, coverage. ARGV: token, ttl ms, reach, then lo/hi pairs
# of start-score ranges (``clusters`` of the spans with ``reach``). Takes the lock
# and, if it got it, reads in the same round what the holder needs: the longest
# snapshot, the journal's ids, and the neighbourhood of the spans (each range
# widened if a stored snapshot is longer than ``reach``; overlapping ranges may
# list a member twice).
_ACQUIRE = Script("""
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local longest = tonumber(redis.call('HGET', KEYS[2], 'longest') or '0')
local extra = math.max(0, longest - tonumber(ARGV[3]))
local found = {}
for i = 4, #ARGV, 2 do
  local lo = string.format('%d', tonumber(ARGV[i]) - extra)
  local members = redis.call('ZRANGEBYSCORE', KEYS[4], lo, '(' .. ARGV[i + 1])
  for _, member in ipairs(members) do found[#found + 1] = member end
end
return {longest, redis.call('HKEYS', KEYS[3]), found}
""")

# KEYS: lock, coverage, journal, undo, meta. ARGV: token, entry id, the entry's
# lines ('' for none), its undo text ('' for none), the horizon (scores below it
# go), the batch's longest snapshot, 1 to release the lock, the number of members
# to remove, those members, then score/member pairs to add. Stores a round's plan
# only if the lock is still the caller's (atomically: a worker whose lock expired
# while it ran commits nothing) and lets the lock go in the same round.
_COMMIT = Script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[4], ARGV[2], ARGV[4]) end
end
local removed = tonumber(ARGV[8])
-- Many members per call (a call costs more than a member), at most 1000 values at
-- once: unpack puts them all on Lua's stack, which has a limit (8000).
for i = 9, 8 + removed, 1000 do
  redis.call('ZREM', KEYS[2], unpack(ARGV, i, math.min(i + 999, 8 + removed)))
end
local first = 9 + removed
if first <= #ARGV then
  for i = first, #ARGV, 1000 do
    redis.call('ZADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
end
local longest = tonumber(ARGV[6])
if longest > tonumber(redis.call('HGET', KEYS[5], 'longest') or '0') then
  redis.call('HSET', KEYS[5], 'longest', longest)
end
if ARGV[7] == '1' then redis.call('DEL', KEYS[1]) end
return 1
""")


class TimelineStore(RedisStore):
    """The users' recent coverage and journal in Redis, and the per-user lock.

    Args:
        redis: zero-argument callable returning the open Redis client.
        writer: the InfluxDB group-commit writer (journal entries).
        horizon_ms: how long a snapshot stays in the coverage (by its start).
        lock_ttl_ms: how long a lock outlives a worker that died holding it; a
            journal entry this old has lost its writer.
        lock_wait_s: how long to wait for the lock before answering 503.
        clock: the current Unix time in seconds.
    """

    def __init__(
        self,
        redis: Callable[[], aioredis.Redis],
        writer: GroupCommitWriter,
        horizon_ms: int,
        lock_ttl_ms: int,
        lock_wait_s: float,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(redis)
        self._writer = writer
        self.horizon_ms = horizon_ms
        self._lock_ttl_ms = lock_ttl_ms
        self._lock_wait_s = lock_wait_s
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @contextlib.asynccontextmanager
    async def locked(self, user: str, spans: Sequence[tuple[int, int]] = ()) -> AsyncIterator[Held]:
        """Hold the user's timeline lock. Journal entries that lost their writer
        are written first.

        Args:
            user: the user.
            spans: read the stored snapshots that may overlap these in the same
                round as the lock (``Held.around``; :meth:`around` gives the same).

        Raises:
            StorageUnavailable: the lock stayed taken for ``lock_wait_s``, or a
                lost journal entry could not be written.
        """
        token = secrets.token_hex(8)
        key = lock_key(user)
        reach = max(max((e - s for s, e in spans), default=1), 1)
        ranges = [bound for lo_hi in clusters(spans, reach) for bound in lo_hi]
        keys = [key, meta_key(user), journal_key(user), coverage_key(user)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait_s
        pause = 0.001
        while True:
            got = await _ACQUIRE(self._redis, keys, [token, self._lock_ttl_ms, reach, *ranges])
            if got:
                break
            if loop.time() > deadline:
                raise StorageUnavailable("timeline lock of a user stayed taken")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.004)
        longest, journal, found = got
        held = Held(int(longest or 0), [], token, _decoded_unique(found))
        try:
            ids = [j.decode() if isinstance(j, bytes) else str(j) for j in journal]
            lost = [j for j in ids if int(j.split(":")[0]) < self._now_ms() - self._lock_ttl_ms]
            if lost:
                if await self.flush(user, lost):
                    # A refused entry's coverage changes were undone: read anew.
                    held.around = await self.around(user, spans, held.longest)
            held.journal = [j for j in ids if j not in lost]
            yield held
        finally:
            if not held.released:
                # Shielded: a cancelled request must still let the others go on.
                await asyncio.shield(RELEASE_LOCK(self._redis, [key], [token]))

    async def flush(self, user: str, ids: Sequence[str]) -> bool:
        """Under the lock: write journal entries to InfluxDB and drop them (entries
        another worker is writing at the same time are simply stored twice: once).
        An entry InfluxDB refuses is dropped and its coverage changes undone, so its
        snapshots are not taken as stored when they are sent again.

        Returns:
            Whether an entry was refused (the coverage changed: resolve again).
        """
        if not ids:
            return False
        refused = False
        bodies = await self._redis.hmget(journal_key(user), list(ids))
        entries = {
            entry: (body.decode() if isinstance(body, bytes) else str(body)).split("\n")
            for entry, body in zip(ids, bodies, strict=True)
            if body
        }
        lines = [line for entry_lines in entries.values() for line in entry_lines]
        try:
            await self._writer.write(lines)
        except WriteRejected:
            # Find which entries InfluxDB refuses: the others are stored (again).
            for entry, entry_lines in entries.items():
                try:
                    await self._writer.write(entry_lines)
                except WriteRejected as exc:
                    LOG.error("journal entry of %s rejected by InfluxDB, dropped: %s", user, exc)
                    await self.undo(user, entry)
                    refused = True
        # The days the points fall on (line protocol ends with the time in ns).
        days = {int(line.rsplit(" ", 1)[1]) // 1_000_000 // DAY_MS for line in lines}
        async with self._redis.pipeline(transaction=True) as pipe:  # see count_writes
            pipe.hdel(journal_key(user), *ids)
            pipe.hdel(undo_key(user), *ids)
            count_writes(pipe, user, days)
            await pipe.execute()
        return refused

    async def undo(self, user: str, entry: str) -> None:
        """Under the lock: take a journal entry's coverage changes back and drop the
        entry (InfluxDB refused its points)."""
        undo = await self._redis.hget(undo_key(user), entry)
        if undo:
            text = undo.decode() if isinstance(undo, bytes) else str(undo)
            await _UNDO(self._redis, [coverage_key(user)], [text])
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hdel(journal_key(user), entry)
            pipe.hdel(undo_key(user), entry)
            await pipe.execute()

    async def around(
        self, user: str, spans: Sequence[tuple[int, int]], longest: int
    ) -> list[Record]:
        """Every stored snapshot that may overlap one of ``spans``, in one round."""
        reach = max(longest, max((e - s for s, e in spans), default=0), 1)
        ranges = clusters(spans, reach)
        if not ranges:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for lo, hi in ranges:
                pipe.zrangebyscore(coverage_key(user), lo, f"({hi}")
            found = await pipe.execute()
        return [Record.decode(raw) for members in found for raw in members]

    async def commit(
        self, user: str, plan: Plan, held: Held, lines: Sequence[str], release: bool = False
    ) -> str:
        """Under the lock: store the plan in the coverage and the batch's points in
        the journal, and drop what fell behind the horizon, in one round. Returns
        the journal entry's id.

        Args:
            user: the user.
            plan: the round's plan.
            held: the lock, as :meth:`locked` gave it.
            lines: the round's points (line protocol).
            release: let the lock go in the same round (the holder is done).

        Raises:
            StorageUnavailable: the lock expired while this round ran (a slow
                InfluxDB during its flushes): another worker may be resolving the
                same snapshots, so this plan is not stored.
        """
        entry = f"{self._now_ms()}:{secrets.token_hex(6)}"
        removed = [before.encode() for before, _ in plan.trimmed]
        members = {r.encode(): r.start for r in plan.added}
        members.update({after.encode(): after.start for _, after in plan.trimmed})
        undo = encode_undo(plan) if lines and (plan.added or plan.trimmed) else ""
        args: list[str | int] = [
            held.token,
            entry,
            "\n".join(lines),
            undo,
            self.oldest_ms(),
            max((r.end - r.start for r in plan.added), default=0),
            1 if release else 0,
            len(removed),
            *removed,
        ]
        for member, score in members.items():
            args.extend((score, member))
        keys = [
            lock_key(user),
            coverage_key(user),
            journal_key(user),
            undo_key(user),
            meta_key(user),
        ]
        if not await _COMMIT(self._redis, keys, args):
            raise StorageUnavailable("the timeline lock of a user expired", backend="redis")
        held.released = release
        return entry

    async def written(
        self,
        user: str,
        entry: str,
        apps: Mapping[str, str],
        days: Iterable[int],
    ) -> None:
        """After InfluxDB acknowledged a batch: drop its journal entry, record the
        applications seen and bump the written days' counters, in one round."""
        async with self._redis.pipeline(transaction=True) as pipe:  # see count_writes
            if entry:
                pipe.hdel(journal_key(user), entry)
                pipe.hdel(undo_key(user), entry)
            for app_uuid, name in apps.items():
                pipe.hset(apps_key(user), app_uuid, name)
            count_writes(pipe, user, days)
            await pipe.execute()

    def oldest_ms(self) -> int:
        """Snapshots starting before this are no longer in the coverage."""
        return self._now_ms() - self.horizon_ms

    async def set_project(
        self, user: str, instants: Sequence[tuple[int, int]], project: str
    ) -> None:
        """Record a correction: the snapshots at ``(start ms, offset)`` now belong
        to ``project`` (snapshots outside the coverage are left alone)."""
        if not instants:
            return
        key = coverage_key(user)
        async with self._redis.pipeline(transaction=False) as pipe:
            for start, _ in instants:
                pipe.zrangebyscore(key, start, start)
            found = await pipe.execute()
        wanted = set(instants)
        old, new = [], {}
        for members in found:
            for raw in members:
                record = Record.decode(raw)
                if (record.start, record.offset) in wanted and record.project != project:
                    old.append(record.encode())
                    new[replace(record, project=project).encode()] = record.start
        if old:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(key, *old)
                pipe.zadd(key, new)
                await pipe.execute()

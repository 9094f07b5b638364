"""Snapshot ingest: validate times, attribute, write ``window`` and ``activity`` points.

A snapshot covers ``[start, start + durationMs]``: ``timeTaken`` is its end,
the deprecated ``time`` its start, and without either it ends on receipt.
Every window becomes a ``window`` point and the activity window one ``activity``
point, all at the snapshot's start (ms precision; snapshots starting in the same
millisecond are kept apart by a few nanoseconds). A snapshot's key is a hash of
its content, so a snapshot sent again is recognised and stored once.

Where activity snapshots overlap, the one-timeline rule (:mod:`.timeline`) decides
who owns each millisecond: the ``activity`` entry carries the snapshot's effective
duration, and the snapshots it takes time from get reversing and new entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from screenaware.activity.attribution import (
    NONE,
    Attribution,
    Attributor,
    StatedAttribution,
    activity_window,
)
from screenaware.activity.store import DAY_MS, ActivityStore
from screenaware.activity.timeline import (
    MEETING_PREFIX,
    RETIRED_MARK,
    Plan,
    Record,
    TimelineStore,
    clusters,
    records_from_ledger,
    resolve,
)
from screenaware.errors import Invalid, StorageUnavailable, WriteQueueFull, WriteRejected
from screenaware.storage.batching import Coalescer
from screenaware.storage.ids import uuid5_text
from screenaware.storage.influx import GroupCommitWriter, InfluxClient
from screenaware.storage.lineprotocol import encode, float_field, string_field, tag_pair
from screenaware.timeutil import to_ms

LOG = logging.getLogger(__name__)

FUTURE_LIMIT_MS = DAY_MS
# The longest a snapshot can be (durationMs is at most 10 s): how far before a
# snapshot another one that overlaps it can start.
TIMELINE_REACH_MS = 10_000
LEDGER_QUERIES_AT_ONCE = 4
# A round resolves at most this many snapshots; this many may wait for rounds.
ROUND_MAX_SNAPSHOTS = 10_000
ROUND_MAX_PENDING = 200_000
LEDGER_COLUMNS = '"duration_ms", "span_ms", "project", "category", "application", "rev", "snapshot"'
_NS_PER_MS = 1_000_000


def snapshot_start_ms(snapshot: dict[str, Any], now_ms: int) -> tuple[int, str | None]:
    """The start of a snapshot in Unix ms, and the field it came from."""
    duration = int(snapshot["durationMs"])
    if snapshot.get("timeTaken") is not None:
        return to_ms(snapshot["timeTaken"]) - duration, "timeTaken"
    if snapshot.get("time") is not None:
        return to_ms(snapshot["time"]), "time"
    return now_ms - duration, None


def snapshot_key(user: str, start_ms: int, snapshot: Mapping[str, Any]) -> str:
    """The snapshot's key: the same for the same content (a re-send), different for
    two devices' snapshots of the same instant. Links window points to activity and
    breaks ties of the one-timeline rule."""
    content = orjson.dumps(
        [snapshot["durationMs"], snapshot["windows"]], option=orjson.OPT_SORT_KEYS
    )
    digest = hashlib.sha256(content).hexdigest()
    return uuid5_text(uuidlib.NAMESPACE_URL, f"snapshot:{user}:{start_ms}:{digest}")


def window_identity(window: Mapping[str, Any]) -> tuple[Any, ...]:
    """Everything of a window that its attribution reads (:meth:`Attributor.attribute`):
    windows with the same identity get the same attribution."""
    documents, tags = window.get("documents"), window.get("tags")
    return (
        window.get("processName"),
        window.get("title"),
        tuple([(d.get("path"), d.get("title")) for d in documents]) if documents else (),
        tuple(tags) if tags else (),
    )


def away_offset(key: str) -> int:
    """Sub-millisecond offset of an away snapshot's window points (activity
    snapshots get theirs from the timeline, counting up from 0)."""
    return 500_000 + int(key[:8], 16) % 500_000


# Imported time is cut into pieces no longer than a snapshot, so a snapshot that
# arrives later takes at most one piece's tail and the ledger reach stays valid.
IMPORTED_PIECE_MS = TIMELINE_REACH_MS


@dataclass(frozen=True)
class ImportedSpan:
    """Time from an outside source (a calendar event) that counts as activity
    where no snapshot covers it.

    Attributes:
        start: start in Unix ms.
        end: end in Unix ms.
        source: a stable id of the event occurrence (with its content), so the
            same event gets the same keys on every sync.
        attribution: its project, category, application, reason and title.
    """

    start: int
    end: int
    source: str
    attribution: Attribution


def uncovered(span: tuple[int, int], owned: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``span`` that none of the ``owned`` intervals cover."""
    start, end = span
    out = []
    cursor = start
    for lo, hi in sorted(owned):
        if hi <= cursor or lo >= end:
            continue
        if lo > cursor:
            out.append((cursor, lo))
        cursor = max(cursor, hi)
        if cursor >= end:
            break
    if cursor < end:
        out.append((cursor, end))
    return out


def pieces(span: tuple[int, int], size: int = IMPORTED_PIECE_MS) -> list[tuple[int, int]]:
    """``span`` cut into consecutive pieces of at most ``size`` ms."""
    start, end = span
    return [(t, min(t + size, end)) for t in range(start, end, size)]


def imported_key(user: str, source: str, start: int, end: int, a: Attribution) -> str:
    """The timeline key of a piece of imported time (it loses to every snapshot)."""
    digest = hashlib.sha256(
        orjson.dumps([user, source, start, end, a.project_uuid, a.category_uuid, a.title])
    ).hexdigest()
    return MEETING_PREFIX + digest[:32]


@dataclass(frozen=True)
class _Candidate:
    """An activity snapshot, attributed, with its points serialised as if it owned
    all of its time at its own millisecond: the round redoes only what the rule
    changes, so the serialising happens outside the user's lock."""

    record: Record
    attribution: Attribution
    window_lines: list[str]
    activity_line: str

    def lines(self, user: str, placed: Record) -> list[str]:
        """The points of the snapshot as the round placed it."""
        if placed.offset == 0 and placed.effective == self.record.effective:
            return [*self.window_lines, self.activity_line]
        # Line protocol ends with the timestamp: only it moves with the offset.
        stamp = str(placed.time_ns)
        moved = [line[: line.rindex(" ") + 1] + stamp for line in self.window_lines]
        return [*moved, activity_line(user, placed, self.attribution)]


@dataclass
class _Job:
    """One request's snapshots, attributed, waiting for a round of its user."""

    user: str
    candidates: dict[str, _Candidate]
    away_lines: list[str]
    away_days: set[int]
    apps: dict[str, str]


class SnapshotService:
    """Turns validated snapshots into points.

    Args:
        writer: the InfluxDB group-commit writer.
        influx: the InfluxDB client (snapshots older than the coverage horizon).
        store: the Redis activity store (rules, applications, cache counters).
        timeline: the users' coverage and lock (the one-timeline rule).
        clock: the current Unix time in seconds.
        min_score: how sure learned associations must be to attribute.
    """

    def __init__(
        self,
        writer: GroupCommitWriter,
        influx: InfluxClient,
        store: ActivityStore,
        timeline: TimelineStore,
        clock: Callable[[], float],
        min_score: int = 3,
    ) -> None:
        self._writer = writer
        self._influx = influx
        self._store = store
        self._timeline = timeline
        self._clock = clock
        self._min_score = min_score
        self._rounds: Coalescer[_Job, asyncio.Task[None]] = Coalescer(
            self._run_rounds,
            name="timeline-rounds",
            max_batch=ROUND_MAX_SNAPSHOTS,
            max_pending=ROUND_MAX_PENDING,
            weight=lambda job: len(job.candidates) + 1,
            full_error=lambda: WriteQueueFull("too many snapshots wait to be resolved"),
        )

    def _starts(self, snapshots: Sequence[dict[str, Any]]) -> list[int]:
        now_ms = int(self._clock() * 1000)
        starts, errors = [], {}
        for index, snapshot in enumerate(snapshots):
            start, source = snapshot_start_ms(snapshot, now_ms)
            end = start + int(snapshot["durationMs"])
            if source and end > now_ms + FUTURE_LIMIT_MS:
                errors[str(index)] = {source: ["More than a day in the future."]}
            starts.append(start)
        if errors:
            raise Invalid("Invalid request body", errors if len(snapshots) > 1 else errors["0"])
        return starts

    async def ingest(self, user: str, snapshots: Sequence[dict[str, Any]]) -> int:
        """Store a batch of snapshots; returns how many were activity (not away).

        Nothing is written unless every snapshot is valid; the answer comes only
        after InfluxDB acknowledged every point.
        """
        return await self._ingest(user, snapshots, None)

    async def ingest_attributed(
        self,
        user: str,
        snapshots: Sequence[dict[str, Any]],
        stated: Sequence[StatedAttribution | None],
    ) -> int:
        """Store a batch of snapshots as :meth:`ingest` does, except that each
        snapshot with a stated attribution keeps that project, category and reason
        instead of what the user's rules say now (a restore: the attribution as
        it was stored). None: by the rules, as :meth:`ingest`.
        """
        return await self._ingest(user, snapshots, stated)

    async def _ingest(
        self,
        user: str,
        snapshots: Sequence[dict[str, Any]],
        stated: Sequence[StatedAttribution | None] | None,
    ) -> int:
        starts = self._starts(snapshots)
        # The user's rules are read while the keys are computed: the request is
        # sent (one turn of the loop) before the hashing starts, not after it.
        rules = asyncio.ensure_future(self._store.rules(user))
        await asyncio.sleep(0)
        # The same content twice (in one batch or again later) is one snapshot.
        by_key: dict[str, tuple[int, dict[str, Any]]] = {}
        given: dict[str, StatedAttribution] = {}
        told_all = stated if stated is not None else [None] * len(snapshots)
        try:
            for start_ms, snapshot, told in zip(starts, snapshots, told_all, strict=True):
                key = snapshot_key(user, start_ms, snapshot)
                by_key[key] = (start_ms, snapshot)
                if told is not None:
                    given[key] = told
        except BaseException:
            rules.cancel()
            raise
        projects, categories, learned = await rules
        attributor = Attributor(projects, categories, learned, self._min_score)
        attributed: dict[tuple[Any, ...], Attribution] = {}
        writer = LineWriter(user)
        apps: dict[str, str] = {}
        candidates: dict[str, _Candidate] = {}
        away: list[tuple[str, int, dict[str, Any]]] = []
        for key, (start_ms, snapshot) in by_key.items():
            active = activity_window(snapshot["windows"])
            if active is None:
                away.append((key, start_ms, snapshot))  # no windows: away, no activity
                continue
            # Attributed once per distinct window of the batch (a sensor catching up
            # sends the same few windows over and over).
            seen = window_identity(active)
            a = attributed.get(seen)
            if a is None:
                a = attributed[seen] = attributor.attribute(active)
            if key in given:
                a = given[key].applied_to(a)
            if a.application and a.application_uuid:
                apps[a.application_uuid] = a.application
            record = Record(
                start=start_ms,
                end=start_ms + int(snapshot["durationMs"]),
                key=key,
                project=a.project_uuid or NONE,
                category=a.category_uuid or NONE,
                application=a.application_uuid or NONE,
                offset=0,
                effective=int(snapshot["durationMs"]),
            )
            time_ns = start_ms * _NS_PER_MS
            candidates[key] = _Candidate(
                record,
                a,
                writer.window_lines(key, time_ns, snapshot),
                writer.activity_line(record, a),
            )
        away_lines = [
            line
            for key, start_ms, snapshot in away
            for line in writer.window_lines(key, start_ms * _NS_PER_MS + away_offset(key), snapshot)
        ]
        job = _Job(
            user,
            candidates,
            away_lines,
            {start // DAY_MS for _, start, _ in away},
            apps,
        )
        # Concurrent batches of one user in this worker are resolved together, in
        # one round under the user's lock; the InfluxDB write follows the round.
        write = await self._rounds.submit(job)
        await asyncio.shield(write)
        return len(candidates)

    async def _run_rounds(self, jobs: list[_Job]) -> list[asyncio.Task[None] | BaseException]:
        by_user: dict[str, list[_Job]] = {}
        for job in jobs:
            by_user.setdefault(job.user, []).append(job)
        outcome: dict[str, asyncio.Task[None] | BaseException] = {}

        async def one(user: str, group: list[_Job]) -> None:
            try:
                outcome[user] = await self._round(user, group)
            except Exception as exc:  # each request of the round raises it
                outcome[user] = exc

        await asyncio.gather(*(one(user, group) for user, group in by_user.items()))
        return [outcome[job.user] for job in jobs]

    async def _round(self, user: str, jobs: list[_Job]) -> asyncio.Task[None]:
        """Resolve a round of one user's batches under the lock; returns the task
        writing their points."""
        candidates: dict[str, _Candidate] = {}
        for job in jobs:
            for key, item in job.candidates.items():
                candidates.setdefault(key, item)
        if not candidates:  # only away snapshots: nothing to resolve
            away_lines = [line for job in jobs for line in job.away_lines]
            away_days = {day for job in jobs for day in job.away_days}
            return asyncio.create_task(self._write(user, away_lines, "", {}, away_days))
        # Resolving under the user's lock: two workers ingesting overlapping
        # snapshots of one user at once still apply the rule in turn. The write
        # happens after it (the journal keeps the points until acknowledged), so
        # concurrent rounds still share InfluxDB writes.
        spans = [(c.record.start, c.record.end) for c in candidates.values()]
        # resolve() places new records itself (offset, effective): theirs are not read.
        records = [c.record for c in candidates.values()]
        async with self._timeline.locked(user, spans) as held:
            existing = held.around
            oldest = self._timeline.oldest_ms()
            old = [span for span in spans if span[0] - TIMELINE_REACH_MS < oldest]
            if old:
                await self._timeline.flush(user, held.journal)  # the ledger complete
                existing = await self._with_ledger(user, existing, old)
            plan = resolve(existing, records)
            if held.journal and len(plan.added) < len(candidates):
                # A snapshot sent again may still wait in the journal entry of a
                # write that failed: it is acknowledged only once InfluxDB has it
                # (if InfluxDB is still down, this answer is a 503 too). An entry
                # InfluxDB refuses leaves the coverage: then this batch is new again.
                if await self._timeline.flush(user, held.journal):
                    existing = await self._timeline.around(user, spans, held.longest)
                    if old:
                        existing = await self._with_ledger(user, existing, old)
                    plan = resolve(existing, records)
            lines: list[str] = []
            for record in plan.added:
                lines.extend(candidates[record.key].lines(user, record))
            for before, after in plan.trimmed:
                lines.extend(trim_lines(user, before, after))
            entry = await self._timeline.commit(user, plan, held, lines, release=True)
        days = {day for job in jobs for day in job.away_days}
        days.update(r.start // DAY_MS for r in plan.added)
        days.update(before.start // DAY_MS for before, _ in plan.trimmed)
        apps = {k: v for job in jobs for k, v in job.apps.items()}
        lines.extend(line for job in jobs for line in job.away_lines)
        return asyncio.create_task(self._write(user, lines, entry, apps, days))

    async def replace_imported(
        self,
        user: str,
        spans: Sequence[ImportedSpan],
        previous: Mapping[str, tuple[int, int]],
    ) -> dict[str, tuple[int, int]]:
        """Make the user's imported time (one source) what ``spans`` say, for the
        parts no snapshot owns now: pieces no longer wanted get reversing entries,
        new ones are added (they lose to any snapshot, now or later). Ledger entries
        only; nothing is deleted.

        Args:
            user: the user.
            spans: everything the source holds now.
            previous: the pieces the last call returned (key -> (start, end)).

        Returns:
            The pieces now imported (key -> (start, end)), for the next call.
        """
        looked = [(s.start, s.end) for s in spans] + list(previous.values())
        async with self._timeline.locked(user, looked) as held:
            existing = held.around
            owned = [
                (r.start, r.start + r.effective)
                for r in existing
                if r.effective > 0 and not r.key.startswith(MEETING_PREFIX)
            ]
            wanted: dict[str, tuple[Record, Attribution]] = {}
            for span in spans:
                a = span.attribution
                for part in uncovered((span.start, span.end), owned):
                    for lo, hi in pieces(part):
                        key = imported_key(user, span.source, lo, hi, a)
                        wanted[key] = (
                            Record(
                                start=lo,
                                end=hi,
                                key=key,
                                project=a.project_uuid or NONE,
                                category=a.category_uuid or NONE,
                                application=a.application_uuid or NONE,
                            ),
                            a,
                        )
            stale = set(previous) - set(wanted)
            # Retired, not removed: the piece keeps its place (no later point lands
            # on its time) but cuts nothing, and the same piece may come back.
            retired = {
                r.key: replace(
                    r, key=f"{r.key}{RETIRED_MARK}{r.trims + 1}", effective=0, trims=r.trims + 1
                )
                for r in existing
                if r.key in stale
            }
            dropped = [(r, retired[r.key]) for r in existing if r.key in retired]
            rest = [retired.get(r.key, r) for r in existing]
            plan = resolve(rest, (record for record, _ in wanted.values()))
            plan = Plan(plan.added, dropped + plan.trimmed)
            lines = [activity_line(user, record, wanted[record.key][1]) for record in plan.added]
            for before, after in plan.trimmed:
                lines.extend(trim_lines(user, before, after))
            changed = bool(plan.added or plan.trimmed)
            entry = await self._timeline.commit(user, plan, held, lines, True) if changed else ""
        days = {r.start // DAY_MS for r in plan.added}
        days.update(before.start // DAY_MS for before, _ in plan.trimmed)
        apps = {
            a.application_uuid: a.application
            for _, a in wanted.values()
            if a.application_uuid and a.application
        }
        if lines:
            await self._write(user, lines, entry, apps, days)
        return {key: (record.start, record.end) for key, (record, _) in wanted.items()}

    async def _write(
        self, user: str, lines: list[str], entry: str, apps: dict[str, str], days: set[int]
    ) -> None:
        try:
            await self._writer.write(lines)
        except WriteRejected:
            if entry:
                # Refused for good: the coverage must not list these snapshots as
                # stored (a re-send would be acknowledged with nothing in InfluxDB).
                # If the lock cannot be had now, the entry stays in the journal and
                # the next flush (under the lock) undoes it.
                with contextlib.suppress(StorageUnavailable):
                    async with self._timeline.locked(user):
                        await self._timeline.undo(user, entry)
            raise
        await self._timeline.written(user, entry, apps, days)

    async def _with_ledger(
        self, user: str, existing: list[Record], spans: Sequence[tuple[int, int]]
    ) -> list[Record]:
        """``existing`` plus the stored snapshots near ``spans`` that the coverage
        no longer holds, read from the ``activity`` ledger (a few stretches at once)."""
        gate = asyncio.Semaphore(LEDGER_QUERIES_AT_ONCE)

        async def stretch(lo: int, hi: int) -> list[Record]:
            async with gate:
                series = await self._influx.query(
                    f'SELECT {LEDGER_COLUMNS} FROM "activity" '  # noqa: S608 - constants only
                    'WHERE "user" = $user AND time >= $start AND time < $end',
                    {"user": user, "start": lo * _NS_PER_MS, "end": hi * _NS_PER_MS},
                )
            return [r for s in series for r in records_from_ledger(s.columns, s.values)]

        found = await asyncio.gather(
            *(stretch(lo, hi) for lo, hi in clusters(spans, TIMELINE_REACH_MS))
        )
        known = {r.key for r in existing}
        return existing + [r for rs in found for r in rs if r.key not in known]


class LineWriter:
    """The ``window`` and ``activity`` lines of one user's batch, written directly
    rather than through :func:`encode` (its sorting and escaping tests per key were
    a tenth of a worker's time in array ingest), with what repeats in a batch
    rendered once: a window's fields (by its JSON text) and an attribution's tags
    and texts. The same lines, byte for byte, as ``tests/test_lineprotocol.py``
    proves against the library.

    Args:
        user: the user whose points these are.
    """

    def __init__(self, user: str) -> None:
        self.user = user
        self._user_tag = tag_pair("user", user)
        self._windows: dict[tuple[int, int, bytes], tuple[str, str] | None] = {}
        # Keyed by the attribution's id: the value holds the object, so the id is
        # not reused while the writer lives.
        self._activities: dict[tuple[int, str, str, str], tuple[Attribution, str, str, str]] = {}

    def window_lines(self, key: str, time_ns: int, snapshot: Mapping[str, Any]) -> list[str]:
        """The ``window`` points of a snapshot (raw facts, never rewritten)."""
        duration = int(snapshot["durationMs"])
        snapshot_field = string_field(key)
        out = []
        for idx, window in enumerate(snapshot["windows"]):
            seen = (idx, duration, orjson.dumps(window))
            try:
                parts = self._windows[seen]
            except KeyError:
                parts = self._windows[seen] = self._window_parts(idx, duration, window)
            if parts is None:  # a field left out: the general encoder
                out.append(_window_line(self.user, key, time_ns, duration, idx, window))
            else:
                out.append(f"{parts[0]}{snapshot_field}{parts[1]}{time_ns}")
        return out

    def _window_parts(
        self, idx: int, duration: int, window: Mapping[str, Any]
    ) -> tuple[str, str] | None:
        """The line of a window before and after its snapshot key (tags and fields
        in key order, as encode() sorts them); None where a field is left out."""
        screen = float_field(float(window.get("screenPercentage") or 0.0))
        visible = float_field(float(window.get("visiblePercentage") or 0.0))
        if screen is None or visible is None:
            return None
        documents = orjson.dumps(window.get("documents") or []).decode()
        tags = orjson.dumps(window.get("tags") or {}).decode()
        return (
            f"window,focused={'true' if window.get('isFocused') else 'false'},idx={idx}"
            f'{self._user_tag} documents="{string_field(documents)}",duration_ms={duration}i,'
            f'process="{string_field(window.get("processName") or "")}",screen={screen},'
            'snapshot="',
            f'",tags="{string_field(tags)}",title="{string_field(window.get("title") or "")}",'
            f"visible={visible} ",
        )

    def activity_line(self, record: Record, a: Attribution) -> str:
        """A new snapshot's ``activity`` entry: its effective duration when it
        arrived (``span_ms`` keeps its own length)."""
        seen = (id(a), record.project, record.category, record.application)
        parts = self._activities.get(seen)
        if parts is None:
            parts = self._activities[seen] = (
                a,
                f"activity{tag_pair('application', record.application)}"
                f"{tag_pair('category', record.category)}{tag_pair('project', record.project)}"
                f'{self._user_tag} document="{string_field(a.base_document or "")}",duration_ms=',
                f'i,process="{string_field(a.process)}",reason="{string_field(a.reason or "")}",'
                'snapshot="',
                f'i,title="{string_field(a.title)}" ',
            )
        _, head, middle, tail = parts
        return (
            f"{head}{int(record.effective)}{middle}{string_field(record.key)}"
            f'",span_ms={int(record.end - record.start)}{tail}{record.time_ns}'
        )


def window_lines(user: str, key: str, time_ns: int, snapshot: Mapping[str, Any]) -> list[str]:
    """The ``window`` points of a snapshot (see :class:`LineWriter`)."""
    return LineWriter(user).window_lines(key, time_ns, snapshot)


def _window_line(
    user: str, key: str, time_ns: int, duration: int, idx: int, window: Mapping[str, Any]
) -> str:
    return encode(
        "window",
        {
            "user": user,
            "idx": str(idx),
            "focused": "true" if window.get("isFocused") else "false",
        },
        {
            "snapshot": key,
            "process": window.get("processName") or "",
            "title": window.get("title") or "",
            "screen": float(window.get("screenPercentage") or 0.0),
            "visible": float(window.get("visiblePercentage") or 0.0),
            # JSON text (orjson's compact form: readers parse it).
            "documents": orjson.dumps(window.get("documents") or []).decode(),
            "tags": orjson.dumps(window.get("tags") or {}).decode(),
            "duration_ms": duration,
        },
        time_ns,
    )


def activity_line(user: str, record: Record, a: Attribution) -> str:
    """A new snapshot's ``activity`` entry (see :class:`LineWriter`)."""
    return LineWriter(user).activity_line(record, a)


def trim_lines(user: str, before: Record, after: Record) -> list[str]:
    """A stored snapshot loses time to a later one: a reversing entry of what it
    owned, and a new entry of what it keeps (none when nothing is left). The rev
    tags count its trims, so a retried write lands on the same points."""
    out = []
    for sign, duration, rev, reason in (
        (-1, before.effective, f"t{after.trims}r", "reversed by overlap"),
        (1, after.effective, f"t{after.trims}", "trimmed by overlap"),
    ):
        if duration <= 0:
            continue
        out.append(
            encode(
                "activity",
                {
                    "user": user,
                    "project": before.project,
                    "category": before.category,
                    "application": before.application,
                    "rev": rev,
                },
                {"duration_ms": sign * duration, "reason": reason, "snapshot": before.key},
                before.time_ns,
            )
        )
    return out

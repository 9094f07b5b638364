"""The ScreenAware export format (JSON Lines) and its restore.

Line 1 is the header ``{"format": "screenaware-export", "version": 2, ...}``; every
other line is one item ``{"type": ..., ...}``, in this order: ``profile``,
``project`` (parents before children), ``task``, ``category``, ``apiKey`` (name and
times, never the secret), ``snapshot`` (as sent: start, duration, windows with
documents and tags; and its ``attribution`` now: the project it counts for,
corrections applied, its category and its reason), ``correction`` (an entry of the
``activity`` ledger made by a stream correction, with its revision: the history),
``association`` (what corrections taught), and last ``{"type": "end", "items": N}``
so that a file cut short is refused. Version 1 files (no API keys, no attribution)
are still restored.

InfluxDB is read in pages by time (keyset pagination with bind parameters), so
an export never holds more than one page of the history.

A restore validates the whole file first (nothing is stored when any line is
bad), then stores it: rules first, then snapshots through the snapshot service
with the attribution of the file (the one-timeline rule as for live data), then
the corrections' entries without their durations (history: the attribution has
their effect already, and replaying them would depend on the order in which
corrections and overlaps came, as a correction reverses what the snapshot owned
then), then the associations. A version 1 file has no
attribution: its snapshots are attributed by the file's rules, then its
corrections' entries are written as they were, then the associations (learned
after the snapshots they would otherwise re-attribute). API keys cannot be
restored (the file has no secrets): the summary lists them under ``skipped``.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import marshmallow
import orjson

from schemas.activity import SnapshotSchema
from screenaware.activity import (
    NONE,
    ActivityStore,
    Association,
    LearningStore,
    SnapshotService,
    StatedAttribution,
)
from screenaware.errors import Conflict, Invalid
from screenaware.identity import Accounts, ApiKeyStore, ProjectStore
from screenaware.portability.spool import Spool
from screenaware.storage.influx import InfluxClient
from screenaware.streams import CORRECTED, CORRECTION_FIELDS, StreamService
from screenaware.timeutil import from_ms, iso, to_ms

DAY_MS = 86_400_000
FORMAT = "screenaware-export"
VERSION = 2
READABLE = (1, 2)  # versions a restore accepts
PAGE_ROWS = 5000
MAX_REASON = 1024
_NS = 1_000_000

_snapshot_schema = SnapshotSchema()


@dataclass(frozen=True)
class Stores:
    """What export and restore read and write, all through their features."""

    accounts: Accounts
    projects: ProjectStore
    activity: ActivityStore
    learning: LearningStore
    snapshots: SnapshotService
    streams: StreamService
    influx: InfluxClient
    keys: ApiKeyStore


def _line(item: Mapping[str, Any]) -> bytes:
    return orjson.dumps(item) + b"\n"


def parents_first(projects: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Projects ordered so that each comes after its parent (cycles broken)."""
    out: list[Mapping[str, Any]] = []
    placed: set[str] = set()

    def place(uuid: str, path: set[str]) -> None:
        if uuid in placed or uuid in path:
            return
        parent = projects[uuid].get("parentProject")
        if isinstance(parent, str) and parent in projects:
            place(parent, path | {uuid})
        placed.add(uuid)
        out.append(projects[uuid])

    for uuid in sorted(projects):
        place(uuid, set())
    return out


def window_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot window as sent, from a ``window`` point."""
    return {
        "title": row.get("title") or "",
        "isFocused": row.get("focused") == "true",
        "processName": row.get("process") or "",
        "screenPercentage": row.get("screen"),
        "visiblePercentage": row.get("visible"),
        "documents": orjson.loads(row.get("documents") or "[]"),
        "tags": orjson.loads(row.get("tags") or "{}"),
    }


def _tag(value: Any) -> str | None:
    return None if value in (None, "", NONE) else str(value)


def state_of(group: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """A snapshot's key and its attribution now, from every ``activity`` entry at
    its instant (its first entry, corrections, time lost to overlaps); None where
    no entry is a snapshot's first (imported calendar time has its own).

    The project is the one holding the snapshot's time (as ``/streams`` reads the
    ledger), the category the first entry's, the reason the first entry's, or
    :data:`CORRECTED` once a correction moved it: restored with this, a snapshot
    counts as it counts now, however its corrections and overlaps interleaved.
    """
    first = next((row for row in group if not row.get("rev")), None)
    if first is None:
        return None
    balance: dict[Any, int] = {}
    for row in group:
        balance[row.get("project")] = balance.get(row.get("project"), 0) + int(
            row.get("duration_ms") or 0
        )
    corrected = any(
        str(row.get("rev") or "").isdigit() and int(row.get("duration_ms") or 0) > 0
        for row in group
    )
    return str(first.get("snapshot") or ""), {
        "project": _tag(max(balance, key=balance.__getitem__)),
        "category": _tag(first.get("category")),
        "reason": CORRECTED if corrected else first.get("reason") or None,
    }


class Originals:
    """The snapshots' attributions, read along with their window points (both
    ascending by time, so one page of each at a time)."""

    def __init__(self, entries: AsyncIterator[tuple[int, str, dict[str, Any]]]) -> None:
        self._entries = entries
        self._next: tuple[int, str, dict[str, Any]] | None = None

    async def at(self, time_ns: int, key: str) -> dict[str, Any] | None:
        """The attribution of the snapshot ``key`` stored at ``time_ns``; None for
        one without (an away snapshot). Entries before it (imported calendar time,
        which has no window points) are passed over."""
        while True:
            if self._next is None:
                self._next = await anext(self._entries, None)
                if self._next is None:  # no more entries
                    return None
            entry_time, entry_key, attribution = self._next
            if entry_time > time_ns:
                return None
            self._next = None
            if entry_time == time_ns and entry_key == key:
                return attribution


class Exporter:
    """Writes one user's data as the export format, line by line.

    Args:
        stores: the stores of the features.
        clock: the current Unix time in seconds.
        page_rows: rows per InfluxDB query.
    """

    def __init__(
        self, stores: Stores, clock: Callable[[], float], page_rows: int = PAGE_ROWS
    ) -> None:
        self._s = stores
        self._clock = clock
        self._page = page_rows

    async def _pages(self, statement: str, user: str) -> AsyncIterator[list[dict[str, Any]]]:
        """Rows of ``statement`` (which filters ``time >= $after``) by page, whole
        timestamps only: rows of the last timestamp of a full page may continue on
        the next page, so they are held back and read again with it."""
        after = 0
        while True:
            series = await self._s.influx.query(
                statement + f" LIMIT {self._page}", {"user": user, "after": after}
            )
            rows = [r for s in series for r in s.rows()]
            if len(rows) < self._page:
                if rows:
                    yield rows
                return
            last = rows[-1]["time"]
            whole = [r for r in rows if r["time"] != last]
            if whole:
                yield whole
                after = int(last)
                continue
            # One timestamp fills a page (a snapshot corrected many times): page
            # through that timestamp alone.
            offset = 0
            while rows:
                yield rows
                offset += len(rows)
                if len(rows) < self._page:
                    break
                series = await self._s.influx.query(
                    statement.replace("time >= $after", "time = $after")
                    + f" LIMIT {self._page} OFFSET {offset}",
                    {"user": user, "after": int(last)},
                )
                rows = [r for s in series for r in s.rows()]
            after = int(last) + 1

    async def snapshots(self, user: str) -> AsyncIterator[dict[str, Any]]:
        """Every stored snapshot of the user, oldest first, each activity snapshot
        with the attribution it was stored with."""
        statement = 'SELECT * FROM "window" WHERE "user" = $user AND time >= $after'
        attributions = Originals(self._states(user))
        async for rows in self._pages(statement, user):
            current: list[dict[str, Any]] = []
            for row in rows:
                if current and row["time"] != current[0]["time"]:
                    yield await self._snapshot(current, attributions)
                    current = []
                current.append(row)
            if current:
                yield await self._snapshot(current, attributions)

    async def _states(self, user: str) -> AsyncIterator[tuple[int, str, dict[str, Any]]]:
        """Every activity snapshot's attribution now (:func:`state_of`), oldest
        first, as (time ns, snapshot key, attribution)."""
        statement = (
            'SELECT "duration_ms", "project", "category", "reason", "rev", "snapshot" '
            'FROM "activity" WHERE "user" = $user AND time >= $after'
        )
        group: list[dict[str, Any]] = []

        def state() -> tuple[int, str, dict[str, Any]] | None:
            found = state_of(group)
            return None if found is None else (int(group[0]["time"]), *found)

        async for rows in self._pages(statement, user):
            for row in rows:
                # An instant's entries may end one page and start the next.
                if group and row["time"] != group[0]["time"]:
                    if (found := state()) is not None:
                        yield found
                    group = []
                group.append(row)
        if group and (found := state()) is not None:
            yield found

    @staticmethod
    async def _snapshot(rows: list[dict[str, Any]], attributions: Originals) -> dict[str, Any]:
        rows.sort(key=lambda r: int(r.get("idx") or 0))
        item: dict[str, Any] = {
            "type": "snapshot",
            "time": iso(from_ms(int(rows[0]["time"]) // _NS)),
            "durationMs": int(rows[0]["duration_ms"]),
            "windows": [window_of(r) for r in rows],
        }
        found = await attributions.at(int(rows[0]["time"]), str(rows[0].get("snapshot") or ""))
        if found is not None:
            item["attribution"] = found
        return item

    async def corrections(self, user: str) -> AsyncIterator[dict[str, Any]]:
        """Every entry of the activity ledger a correction made, oldest first.

        Corrections' revisions are numbers; entries the snapshot ingest itself
        writes under a revision (resolving overlaps) are left out, as a restore's
        ingest writes them again.
        """
        statement = (
            'SELECT * FROM "activity" WHERE "user" = $user AND "rev" =~ /^[0-9]+$/ '
            "AND time >= $after"
        )
        async for rows in self._pages(statement, user):
            for row in rows:
                entry = {"type": "correction", "timeMs": int(row["time"]) // _NS}
                entry["durationMs"] = int(row["duration_ms"])
                for name in CORRECTION_FIELDS:
                    value = row.get(name)
                    entry[name] = None if value in (None, "none") and name in (
                        "project", "category", "application"
                    ) else value  # fmt: skip
                yield entry

    async def lines(
        self, user: str, progress: Callable[[int], None] | None = None
    ) -> AsyncIterator[bytes]:
        """The export of ``user``, one encoded line at a time."""
        found = await self._s.accounts.store.require(user)
        yield _line(
            {
                "format": FORMAT,
                "version": VERSION,
                "exportedAt": iso(from_ms(int(self._clock() * 1000))),
                "user": user,
            }
        )
        yield _line({"type": "profile", **found.public()})
        projects = parents_first(await self._s.projects.projects(user))
        for project in projects:
            yield _line({"type": "project", **project})
        tasks = list((await self._s.projects.tasks(user)).values())
        for task in tasks:
            yield _line({"type": "task", **task})
        categories = await self._s.activity.own_categories(user)
        for category in categories:
            yield _line({"type": "category", **category})
        api_keys = await self._s.keys.list(user)
        for api_key in api_keys:
            shown = api_key.public()
            yield _line(
                {"type": "apiKey", **{k: shown[k] for k in ("name", "createdAt", "lastUsedAt")}}
            )
        items = 1 + len(projects) + len(tasks) + len(categories) + len(api_keys)
        count = 0
        async for snapshot in self.snapshots(user):
            count += 1
            if progress:
                progress(count)
            yield _line(snapshot)
        items += count
        async for correction in self.corrections(user):
            items += 1
            yield _line(correction)
        for key, assoc in sorted((await self._s.learning.all(user)).items()):
            items += 1
            yield _line(
                {"type": "association", "key": key, "project": assoc.project, "count": assoc.count}
            )
        # The last line: a file cut short at a line end (a failure mid-export) is
        # refused on restore instead of restored in part.
        yield _line({"type": "end", "items": items})


# --- restore ------------------------------------------------------------------


def _bad(line: int, field: str, message: str) -> Invalid:
    return Invalid(f"line {line}: {field}: {message}", {"line": line, field: [message]})


def _need(item: Mapping[str, Any], line: int, name: str, kind: type | tuple[type, ...]) -> Any:
    value = item.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _bad(line, name, f"Missing or not a {getattr(kind, '__name__', 'value')}.")
    return value


def _optional(item: Mapping[str, Any], line: int, name: str, kind: type) -> None:
    if item.get(name) is not None and not isinstance(item[name], kind):
        raise _bad(line, name, f"Not a {kind.__name__}.")


def _check_profile(item: Mapping[str, Any], line: int) -> None:
    for name in ("nameFirst", "nameLast", "timezone"):
        _optional(item, line, name, str)
    if item.get("timezone"):
        try:
            ZoneInfo(item["timezone"])
        except (ValueError, ZoneInfoNotFoundError):
            raise _bad(line, "timezone", "Unknown time zone.") from None


def _check_project(item: Mapping[str, Any], line: int) -> None:
    _need(item, line, "uuid", str)
    _need(item, line, "name", str)
    _optional(item, line, "parentProject", str)
    for name in ("localPaths", "contactEmails", "keywords"):
        value = item.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(line, name, "Not a list of strings.")


def _check_task(item: Mapping[str, Any], line: int) -> None:
    _need(item, line, "uuid", str)
    _need(item, line, "projectUuid", str)


def _check_category(item: Mapping[str, Any], line: int) -> None:
    _need(item, line, "uuid", str)
    _need(item, line, "name", str)
    for name in ("applications", "domains"):
        value = item.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(line, name, "Not a list of strings.")


def _check_snapshot(item: Mapping[str, Any], line: int) -> dict[str, Any]:
    if item.get("time") is None:
        raise _bad(line, "time", "Missing.")
    try:
        loaded: dict[str, Any] = _snapshot_schema.load(
            {k: v for k, v in item.items() if k not in ("type", "attribution")}
        )
    except marshmallow.ValidationError as exc:
        field, messages = next(iter(_flatten(exc.messages)))
        raise _bad(line, field, "; ".join(messages)) from None
    stated_attribution(item, line)
    return loaded


def stated_attribution(item: Mapping[str, Any], line: int) -> StatedAttribution | None:
    """A snapshot's ``attribution`` (None when the file has none for it: away, or
    a version 1 file); :class:`Invalid` naming the field when it is malformed."""
    given = item.get("attribution")
    if given is None:
        return None
    if not isinstance(given, dict):
        raise _bad(line, "attribution", "Not an object.")
    ids: dict[str, str | None] = {}
    for name in ("project", "category"):
        value = given.get(name)
        if value is not None:
            try:
                value = str(uuidlib.UUID(value)) if isinstance(value, str) else None
            except ValueError:
                value = None
            if value is None:
                raise _bad(line, f"attribution.{name}", "Not a uuid.")
        ids[name] = value
    reason = given.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise _bad(line, "attribution.reason", f"Not a string of at most {MAX_REASON} characters.")
    return StatedAttribution(ids["project"], ids["category"], reason)


def _check_api_key(item: Mapping[str, Any], line: int) -> None:
    _need(item, line, "name", str)
    _need(item, line, "createdAt", str)
    _optional(item, line, "lastUsedAt", str)


def _flatten(messages: Any, prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    if isinstance(messages, dict):
        for key, value in messages.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(messages, list) and messages and not isinstance(messages[0], str):
        for index, value in enumerate(messages):
            yield from _flatten(value, f"{prefix}.{index}")
    else:
        yield prefix, [str(m) for m in messages] if isinstance(messages, list) else [str(messages)]


def _check_correction(item: Mapping[str, Any], line: int) -> None:
    _need(item, line, "timeMs", int)
    _need(item, line, "durationMs", int)
    rev = _need(item, line, "rev", str)
    if not rev.isdigit():
        raise _bad(line, "rev", "Not a revision number.")
    for name in CORRECTION_FIELDS:
        _optional(item, line, name, str)


def _check_association(item: Mapping[str, Any], line: int) -> None:
    key = _need(item, line, "key", str)
    if key.split(":", 1)[0] not in ("doc", "app", "word") or ":" not in key:
        raise _bad(line, "key", "Not a feature key (doc:, app: or word:).")
    _need(item, line, "project", str)
    count = _need(item, line, "count", int)
    if count < 1:
        raise _bad(line, "count", "Must be at least 1.")


_CHECKS: dict[str, Callable[[Mapping[str, Any], int], Any]] = {
    "profile": lambda item, line: _check_profile(item, line),
    "project": _check_project,
    "task": _check_task,
    "category": _check_category,
    "apiKey": _check_api_key,
    "snapshot": _check_snapshot,
    "correction": _check_correction,
    "association": _check_association,
}


def parse_line(number: int, raw: bytes) -> dict[str, Any]:
    """One line as an object; :class:`Invalid` naming the line otherwise."""
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _bad(number, "file", "Not valid JSON (truncated?).") from None
    if not isinstance(item, dict):
        raise _bad(number, "file", "Not a JSON object.")
    return item


def validate(spool: Spool, now_ms: int | None = None) -> dict[str, int]:
    """Check every line of an export; returns the count of each item type.

    Args:
        spool: the file.
        now_ms: the current time; snapshots ending more than a day later are
            refused here, as the ingest would refuse them.

    Raises:
        Invalid: naming the first bad line and field.
    """
    counts: dict[str, int] = {}
    # Small: what is needed to check the projects' tree and the tasks' projects.
    parents: dict[str, tuple[str | None, int]] = {}
    task_projects: list[tuple[str, int]] = []
    header = ended = False
    number = 0
    for number, raw in spool.lines():
        item = parse_line(number, raw)
        if ended:
            raise _bad(number, "type", "Nothing may follow the end line.")
        if header and item.get("type") == "end":
            items = item.get("items")
            if items != sum(counts.values()):
                raise _bad(
                    number, "items", f"The file has {sum(counts.values())} items, not {items!r}."
                )
            ended = True
            continue
        if not header:
            if item.get("format") != FORMAT:
                raise _bad(number, "format", f"Not a {FORMAT} file.")
            if item.get("version") not in READABLE:
                raise _bad(
                    number,
                    "version",
                    f"Version {item.get('version')!r} is not supported "
                    f"(only {', '.join(map(str, READABLE))}).",
                )
            header = True
            continue
        kind = item.get("type")
        check = _CHECKS.get(kind) if isinstance(kind, str) else None
        if check is None:
            raise _bad(number, "type", f"Unknown item type {kind!r}.")
        checked = check(item, number)
        if kind == "snapshot" and now_ms is not None:
            end = to_ms(checked["time"]) + checked["durationMs"]
            if end > now_ms + DAY_MS:
                raise _bad(number, "time", "More than a day in the future.")
        counts[str(kind)] = counts.get(str(kind), 0) + 1
        if kind == "project":
            parents[item["uuid"]] = (item.get("parentProject"), number)
        elif kind == "task":
            task_projects.append((item["projectUuid"], number))
    if not header:
        raise _bad(1, "file", "Empty file.")
    if not ended:
        raise _bad(number + 1, "end", "Missing: the file is cut short.")
    check_tree(parents, task_projects)
    return counts


def check_tree(
    parents: Mapping[str, tuple[str | None, int]], task_projects: Sequence[tuple[str, int]]
) -> None:
    """Every parent and every task's project is a project of the file, and no
    project is its own ancestor; :class:`Invalid` naming the line otherwise."""
    for uuid, (parent, line) in parents.items():
        if parent is not None and parent not in parents:
            raise _bad(line, "parentProject", "Not a project of this file.")
        seen = {uuid}
        while parent is not None:
            if parent in seen:
                raise _bad(line, "parentProject", "The project would be its own ancestor.")
            seen.add(parent)
            parent = parents[parent][0]
    for project, line in task_projects:
        if project not in parents:
            raise _bad(line, "projectUuid", "Not a project of this file.")


def _version(spool: Spool) -> int:
    """The version of a validated file."""
    number, raw = next(spool.lines())
    return int(parse_line(number, raw)["version"])


class Restorer:
    """Stores a validated export into one user.

    Args:
        stores: the stores of the features.
        batch: snapshots (and corrections) per write.
        clock: the current Unix time in seconds.
    """

    def __init__(self, stores: Stores, batch: int, clock: Callable[[], float]) -> None:
        self._s = stores
        self._batch = batch
        self._clock = clock

    def _items(self, spool: Spool, kind: str) -> Iterator[dict[str, Any]]:
        # Each pass reads one type; lines that cannot be of it are not parsed.
        marker = f'"{kind}"'.encode()
        lines = spool.lines()
        next(lines, None)  # the header
        for number, raw in lines:
            if marker not in raw:
                continue
            item = parse_line(number, raw)
            if item.get("type") == kind:
                yield item

    async def restore(
        self, user: str, spool: Spool, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """Validate, then store; returns what was stored.

        Args:
            user: the uuid of the user restored into.
            spool: the export file.
            progress: called with (snapshots stored, snapshots in the file).
        """
        counts = validate(spool, int(self._clock() * 1000))
        total = counts.get("snapshot", 0)
        await self._profile(user, spool)
        await self._projects(user, spool)
        for task in self._items(spool, "task"):
            data = {k: v for k, v in task.items() if k not in ("type", "userUuid")}
            try:
                await self._s.projects.save_task(user, data)
            except Conflict:
                await self._s.projects.save_task(user, data, data["uuid"])
        for category in self._items(spool, "category"):
            await self._s.activity.restore_category(user, category)
        skipped = [
            {
                "item": f"apiKey {key['name']!r}",
                "reason": "API keys are not restored (the export has no secrets): make new ones",
            }
            for key in self._items(spool, "apiKey")
        ]
        first, last, done = None, None, 0
        batch: list[tuple[dict[str, Any], StatedAttribution | None]] = []
        for item in self._items(spool, "snapshot"):
            snapshot = _check_snapshot(item, 0)
            start = snapshot["time"]
            first = start if first is None or start < first else first
            last = start if last is None or start > last else last
            batch.append((snapshot, stated_attribution(item, 0)))
            if len(batch) >= self._batch:
                done += await self._flush(user, batch, done, progress, total)
        done += await self._flush(user, batch, done, progress, total)
        # Version 2 snapshots carry what their corrections made of them: the
        # entries are kept as history (the projects they name, their revisions)
        # without duration. Version 1 entries are replayed as they were.
        replay = _version(spool) == 1
        entries: list[dict[str, Any]] = []
        for item in self._items(spool, "correction"):
            entries.append(item if replay else {**item, "durationMs": 0})
            if len(entries) >= self._batch:
                await self._s.streams.restore_corrections(user, entries)
                entries = []
        await self._s.streams.restore_corrections(user, entries)
        learned: dict[str, Association] = {}
        for item in self._items(spool, "association"):
            learned[item["key"]] = Association(item["project"], item["count"])
            if len(learned) >= self._batch:
                await self._s.learning.restore(user, learned)
                learned = {}
        await self._s.learning.restore(user, learned)
        return {
            "snapshots": counts.get("snapshot", 0),
            "projects": counts.get("project", 0),
            "tasks": counts.get("task", 0),
            "categories": counts.get("category", 0),
            "corrections": counts.get("correction", 0),
            "associations": counts.get("association", 0),
            "apiKeys": counts.get("apiKey", 0),
            "skipped": skipped,
            "from": iso(first) if first else None,
            "to": iso(last) if last else None,
        }

    async def _flush(
        self,
        user: str,
        batch: list[tuple[dict[str, Any], StatedAttribution | None]],
        done: int,
        progress: Callable[[int, int], None] | None,
        total: int,
    ) -> int:
        if not batch:
            return 0
        await self._s.snapshots.ingest_attributed(
            user, [snapshot for snapshot, _ in batch], [stated for _, stated in batch]
        )
        count = len(batch)
        batch.clear()
        if progress:
            progress(done + count, total)
        return count

    async def _profile(self, user: str, spool: Spool) -> None:
        for profile in self._items(spool, "profile"):
            changes = {
                k: profile[k] for k in ("nameFirst", "nameLast") if isinstance(profile.get(k), str)
            }
            if isinstance(profile.get("timezone"), str):
                changes["timezone"] = profile["timezone"]
            if changes:
                await self._s.accounts.store.update(user, changes)

    async def _projects(self, user: str, spool: Spool) -> None:
        """Create the projects with their uuids (parents first), or update them."""
        projects = {p["uuid"]: p for p in self._items(spool, "project")}
        for project in parents_first(projects):
            data = {k: v for k, v in project.items() if k not in ("type", "id", "userUuid")}
            try:
                await self._s.projects.create_project(user, data)
            except Conflict:  # restored before: the export's version wins
                await self._s.projects.update_project(
                    user, data["uuid"], {k: v for k, v in data.items() if k != "uuid"}
                )

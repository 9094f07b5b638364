"""The Redmine integration: Redmine issues become tasks, tracked time becomes
Redmine time entries.

**Connection.** ``url`` (the Redmine address) and ``apiKey`` (the user's key, "My
account" → "API access key"; the REST API must be enabled by its administrator)
are stored encrypted (:mod:`.store`). Every request sends the key in the
``X-Redmine-API-Key`` header; redirects are not followed, so the key never goes to
another address. An answer is read up to ``redmine_max_bytes``.

**Tasks in.** A mapping (Redmine project id → ScreenAware project uuid, chosen by
the user, or a ScreenAware project created for a Redmine project on request)
decides which issues count: the open issues assigned to the user in a mapped
project (not in its subprojects: those are mapped on their own) become tasks of
the mapped project, titled ``#<id> <subject>``. Each sync makes the tasks follow:
a renamed or moved issue renames or moves its task, one that is closed,
reassigned or in a project no longer mapped loses its task. Only tasks the
integration made are touched (it keeps issue id → task uuid links).

**Time out.** Booking a day books, for each mapped project with time that day
(``/times`` grouped by project, the day in the user's zone), one time entry of
that many hours (two decimals) in the Redmine project, with the user's default
time entry activity (else the first active one) and a comment naming ScreenAware.
The entry ids are kept per day: booking the day again updates those entries
(deletes one whose project has no time left or is no longer mapped) instead of
adding new ones. Streams carry no task in this API, so time is booked per project,
not per issue. With ``dailyBooking`` the periodic sync books the previous day
once a day.

**One worker at a time.** Connects, mapping changes, syncs and bookings of a user
run under the user's Redis lock (``{u:<user>}:redminesync``): two workers or
machines never book one day twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis

from screenaware.activity import TimesService
from screenaware.errors import Conflict, Invalid, NotFound, StorageUnavailable
from screenaware.identity import ProjectStore
from screenaware.integrations.fetch import TooLarge, read_capped
from screenaware.integrations.periodic import PeriodicSync
from screenaware.integrations.store import CredentialsUnreadable, IntegrationStore
from screenaware.storage.redisstore import user_scoped
from screenaware.timeutil import day_bounds, parse_zone

LOG = logging.getLogger(__name__)

NAME = "redmine"
PAGE = 100
# Bounds of one sync's work and memory: more is refused with the reason in words.
MAX_PROJECTS = 2_000
MAX_ISSUES = 5_000
TITLE_MAX = 500
NEW = "new"
HOUR_MS = 3_600_000


def lock_key(user: str) -> str:
    return user_scoped(user, "redminesync")


def state_key(user: str) -> str:
    """The user's Redmine state (mapping, issue links, bookings): nothing secret."""
    return user_scoped(user, "redmine")


class RedmineError(Exception):
    """Redmine could not be asked; the message says why, in words."""


class RedmineFailed(Conflict):
    """A request needs Redmine, and the connection fails (409, like not being
    connected: the state shows the same reason; connecting again or Redmine coming
    back resolves it). The message says why in words and holds no credentials."""


@dataclass(frozen=True)
class RedmineProject:
    """A Redmine project the user can see."""

    id: int
    name: str
    identifier: str


@dataclass(frozen=True)
class RedmineIssue:
    """An open issue assigned to the user."""

    id: int
    project_id: int
    subject: str

    @property
    def title(self) -> str:
        return f"#{self.id} {self.subject}"[:TITLE_MAX]


def _errors(body: bytes) -> str:
    """Redmine's own reasons of a 422 (``{"errors": [...]}``), if any."""
    with contextlib.suppress(orjson.JSONDecodeError):
        data = orjson.loads(body)
        if isinstance(data, dict) and isinstance(data.get("errors"), list):
            return "; ".join(str(e) for e in data["errors"][:5])[:300]
    return ""


class RedmineClient:
    """Redmine's REST API with one user's key (an async context manager).

    Args:
        url: the Redmine address.
        api_key: the user's API key.
        timeout: seconds per request phase.
        max_bytes: the largest answer read.
    """

    def __init__(self, url: str, api_key: str, *, timeout: float, max_bytes: int) -> None:
        self._base = url.rstrip("/")
        self._headers = {"X-Redmine-API-Key": api_key, "Accept": "application/json"}
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return "RedmineClient()"

    async def __aenter__(self) -> RedmineClient:
        self._client = httpx.AsyncClient(
            headers=self._headers, timeout=self._timeout, follow_redirects=False, trust_env=False
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        assert self._client is not None, "use the client as a context manager"
        try:
            async with self._client.stream(
                method, self._base + path, params=params, json=body
            ) as response:
                return response.status_code, await read_capped(response, self._max_bytes)
        except TooLarge:
            raise RedmineError(f"a Redmine answer is larger than {self._max_bytes} bytes") from None
        except httpx.TimeoutException:
            raise RedmineError("the Redmine server did not answer in time") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError):
            raise RedmineError("not a valid Redmine address") from None
        except httpx.HTTPError as exc:
            raise RedmineError(
                f"the Redmine server cannot be reached ({type(exc).__name__})"
            ) from None

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        ok: tuple[int, ...] = (200,),
    ) -> Any:
        status, raw = await self._call(method, path, params=params, body=body)
        if status not in ok:
            reasons = _errors(raw) if status == 422 else ""
            raise RedmineError(
                f"{status} from the Redmine server" + (f": {reasons}" if reasons else "")
            )
        if not raw:
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RedmineError("not a Redmine server (the answer is not JSON)") from None

    async def _pages(
        self, path: str, key: str, params: Mapping[str, Any], cap: int
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = await self._json(
                "GET", path, params={**params, "limit": PAGE, "offset": len(items)}
            )
            found = page.get(key) if isinstance(page, dict) else None
            if not isinstance(found, list):
                raise RedmineError("not a Redmine server (unexpected answer)")
            total = int(page.get("total_count") or 0)
            if total > cap:
                raise RedmineError(f"Redmine lists more than {cap} {key}")
            items.extend(i for i in found if isinstance(i, dict))
            if not found or len(items) >= total:
                return items

    async def current_user(self) -> int:
        """The id of the key's user (checks the address and the key)."""
        answer = await self._json("GET", "/users/current.json")
        try:
            return int(answer["user"]["id"])
        except (KeyError, TypeError, ValueError):
            raise RedmineError("not a Redmine server (unexpected answer)") from None

    async def projects(self) -> list[RedmineProject]:
        """The projects the user can see."""
        found = await self._pages("/projects.json", "projects", {}, MAX_PROJECTS)
        return [
            RedmineProject(int(p["id"]), str(p.get("name", "")), str(p.get("identifier", "")))
            for p in found
            if "id" in p
        ]

    async def my_open_issues(self) -> list[RedmineIssue]:
        """The open issues assigned to the user, in every project."""
        found = await self._pages(
            "/issues.json",
            "issues",
            {"assigned_to_id": "me", "status_id": "open", "sort": "id"},
            MAX_ISSUES,
        )
        return [
            RedmineIssue(int(i["id"]), int(i["project"]["id"]), str(i.get("subject", "")))
            for i in found
            if "id" in i and isinstance(i.get("project"), dict) and "id" in i["project"]
        ]

    async def activity(self) -> int:
        """The time entry activity to book with: the default one, else the first."""
        answer = await self._json("GET", "/enumerations/time_entry_activities.json")
        found = [
            a
            for a in answer.get("time_entry_activities", [])
            if isinstance(a, dict) and a.get("active", True)
        ]
        if not found:
            raise RedmineError("Redmine has no time entry activity to book with")
        chosen = next((a for a in found if a.get("is_default")), found[0])
        return int(chosen["id"])

    async def create_entry(
        self, project_id: int, day: dt.date, hours: float, activity: int, comments: str
    ) -> int:
        """Book a time entry; returns its id."""
        entry = {"project_id": project_id, "spent_on": day.isoformat(), "hours": hours,
                 "activity_id": activity, "comments": comments}  # fmt: skip
        answer = await self._json(
            "POST", "/time_entries.json", body={"time_entry": entry}, ok=(200, 201)
        )
        try:
            return int(answer["time_entry"]["id"])
        except (KeyError, TypeError, ValueError):
            raise RedmineError("not a Redmine server (unexpected answer)") from None

    async def update_entry(self, entry_id: int, hours: float, comments: str) -> bool:
        """Change a time entry's hours; False when it no longer exists."""
        status, raw = await self._call(
            "PUT",
            f"/time_entries/{entry_id}.json",
            body={"time_entry": {"hours": hours, "comments": comments}},
        )
        if status == 404:
            return False
        if status == 403:
            raise RedmineError(
                "403 from the Redmine server (your Redmine role may not edit your own time entries)"
            )
        if status not in (200, 204):
            reasons = _errors(raw) if status == 422 else ""
            raise RedmineError(
                f"{status} from the Redmine server" + (f": {reasons}" if reasons else "")
            )
        return True

    async def delete_entry(self, entry_id: int) -> None:
        """Delete a time entry (one already gone is fine)."""
        status, _ = await self._call("DELETE", f"/time_entries/{entry_id}.json")
        if status not in (200, 204, 404):
            raise RedmineError(f"{status} from the Redmine server")


def comment(project: str, day: dt.date, hours: float) -> str:
    """The comment of a booked entry: it names ScreenAware."""
    return f"ScreenAware: {hours:.2f} h tracked for {project} on {day.isoformat()}"[:255]


@dataclass(frozen=True)
class Booking:
    """One booked time entry."""

    redmine_project_id: int
    project_uuid: str
    hours: float
    time_entry_id: int


class RedmineSync(PeriodicSync):
    """Syncs users' Redmine issues into tasks and books their time in Redmine.

    Args:
        store: the integration store (credentials, state).
        projects: the project store (projects and tasks).
        times: the /times service (a day's time per project).
        redis: zero-argument callable returning the open Redis client.
        zone_of: coroutine function: the name of a user's zone (their days).
        interval: seconds between syncs of a user.
        timeout: seconds per Redmine request phase.
        max_bytes: the largest Redmine answer read.
        clock: the current Unix time in seconds.
    """

    name = NAME
    label = "Redmine"

    def __init__(
        self,
        store: IntegrationStore,
        projects: ProjectStore,
        times: TimesService,
        redis: Callable[[], aioredis.Redis],
        zone_of: Callable[[str], Awaitable[str]],
        *,
        interval: int,
        timeout: float,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
        exists: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        super().__init__(
            store,
            redis,
            interval=interval,
            timeout=timeout,
            max_bytes=max_bytes,
            # A booking makes a few requests per mapped project: a dead holder frees
            # the lock after this long.
            lock_ttl_ms=int((timeout * 20 + 60) * 1000),
            clock=clock,
            exists=exists,
        )
        self._projects = projects
        self._times = times
        self._zone_of = zone_of

    lock_key = staticmethod(lock_key)

    @contextlib.asynccontextmanager
    async def _locked(self, user: str) -> AsyncIterator[None]:
        async with self._held(user, self.lock_wait) as held:
            if not held:
                raise StorageUnavailable(
                    "a Redmine sync of the user is still running", backend="redis"
                )
            yield

    def _client(self, settings: Mapping[str, Any]) -> RedmineClient:
        return RedmineClient(
            str(settings["url"]),
            str(settings["apiKey"]),
            timeout=self._timeout,
            max_bytes=self._max_bytes,
        )

    async def _settings(self, user: str) -> dict[str, Any]:
        """The user's settings.

        Raises:
            Conflict: not connected.
            RedmineFailed: they no longer decrypt.
        """
        try:
            settings = await self._store.settings(user, NAME)
        except CredentialsUnreadable as exc:
            await self._store.record(user, NAME, ok=False, at_ms=self._now_ms(), error=str(exc))
            raise RedmineFailed(str(exc)) from None
        if settings is None:
            raise Conflict("Redmine is not connected")
        return settings

    async def _state(self, user: str, field: str) -> Any:
        raw = await self._redis.hget(state_key(user), field)
        return orjson.loads(raw) if raw else None

    async def _save(self, user: str, field: str, value: Any) -> None:
        await self._redis.hset(state_key(user), field, orjson.dumps(value))

    async def mapping(self, user: str) -> dict[str, str]:
        """The user's mapping: Redmine project id (text) → ScreenAware project uuid."""
        return dict(await self._state(user, "mapping") or {})

    async def daily(self, user: str) -> bool:
        """Whether the previous day is booked every day."""
        return bool(await self._state(user, "daily"))

    # --- connecting --------------------------------------------------------

    async def connect(self, user: str, url: str, api_key: str, *, daily: bool) -> None:
        """Store the connection and sync at once (a failure is recorded, in words).

        The mapping, the issue links and the bookings stay when the address is the
        same (a new key for the same Redmine); another address starts anew.
        """
        async with self._locked(user):
            try:
                old = await self._store.settings(user, NAME)
            except CredentialsUnreadable:
                old = None
            if old is None or str(old.get("url")).rstrip("/") != url.rstrip("/"):
                await self._redis.delete(state_key(user))
            await self._store.connect(user, NAME, {"url": url, "apiKey": api_key})
            await self._save(user, "daily", daily)
            await self._sync_held(user, self._now_ms())

    async def disconnect(self, user: str, *, purge: bool) -> None:
        """Forget the connection; with ``purge`` the tasks it made are deleted too."""
        async with self._locked(user):
            links: dict[str, str] = await self._state(user, "links") or {}
            await self._store.disconnect(user, NAME)
            if purge:
                for task_uuid in links.values():
                    with contextlib.suppress(NotFound):
                        await self._projects.delete_task(user, task_uuid)
            await self._redis.delete(state_key(user))

    # --- tasks in ----------------------------------------------------------

    async def sync(self, user: str, *, force: bool = False) -> bool:
        """Sync one user's tasks (and, with ``dailyBooking``, book the previous day
        once) unless another worker is at it or, without ``force``, did it less than
        ``interval`` ago. Returns whether it ran."""
        async with self._held(user, 0) as held:
            if not held:
                return False
            now_ms = self._now_ms()
            if not force and now_ms - await self._store.attempted_ms(user, NAME) < (
                self.interval * 1000
            ):
                return False
            if await self._sync_held(user, now_ms) and await self.daily(user):
                await self._book_previous_day(user, now_ms)
            return True

    async def _sync_held(self, user: str, now_ms: int) -> bool:
        try:
            settings = await self._store.settings(user, NAME)
        except CredentialsUnreadable as exc:
            await self._store.record(user, NAME, ok=False, at_ms=now_ms, error=str(exc))
            return False
        if settings is None:
            return False
        try:
            async with self._client(settings) as client:
                await client.current_user()
                issues = await client.my_open_issues()
        except RedmineError as exc:
            await self._store.record(user, NAME, ok=False, at_ms=now_ms, error=str(exc))
            return False
        await self._apply(user, issues)
        await self._store.record(user, NAME, ok=True, at_ms=now_ms)
        return True

    async def _apply(self, user: str, issues: list[RedmineIssue]) -> None:
        """Make the integration's tasks follow the issues of the mapped projects."""
        mapping = await self.mapping(user)
        projects = await self._projects.projects(user)
        wanted = {
            str(i.id): (i.title, mapping[str(i.project_id)])
            for i in issues
            if mapping.get(str(i.project_id)) in projects
        }
        links: dict[str, str] = await self._state(user, "links") or {}
        tasks = await self._projects.tasks(user)
        kept: dict[str, str] = {}
        for issue_id, (title, project_uuid) in wanted.items():
            task_uuid = links.get(issue_id) or str(uuidlib.uuid4())
            task = tasks.get(task_uuid)
            try:
                if task is None:
                    data = {"uuid": task_uuid, "title": title, "projectUuid": project_uuid}
                    await self._projects.save_task(user, data)
                elif (task.get("title"), task.get("projectUuid")) != (title, project_uuid):
                    changes = {"title": title, "projectUuid": project_uuid}
                    await self._projects.save_task(user, changes, task_uuid)
            except (Invalid, NotFound, Conflict):
                continue  # the project or task went meanwhile: the next sync tries again
            kept[issue_id] = task_uuid
        for issue_id, task_uuid in links.items():
            if issue_id not in kept:
                with contextlib.suppress(NotFound):
                    await self._projects.delete_task(user, task_uuid)
        await self._save(user, "links", kept)

    async def set_mapping(self, user: str, requested: Mapping[str, str | None]) -> dict[str, str]:
        """Replace the mapping (``"new"``: create a project named after the Redmine
        one; None: not mapped) and sync the tasks at once. Returns the mapping.

        Raises:
            Conflict: not connected.
            Invalid: an unknown ScreenAware or Redmine project, or one project
                mapped twice.
            RedmineFailed: Redmine could not be asked (the reason in words).
        """
        async with self._locked(user):
            settings = await self._settings(user)
            wanted = {k: v for k, v in requested.items() if v is not None}
            projects = await self._projects.projects(user)
            errors: dict[str, list[str]] = {}
            seen: dict[str, str] = {}
            for rid, value in wanted.items():
                if value == NEW:
                    continue
                if value not in projects:
                    errors[rid] = ["Unknown project."]
                elif value in seen:
                    errors[rid] = [f"Project mapped twice (also to {seen[value]})."]
                seen.setdefault(value, rid)
            if errors:
                raise Invalid("Each value must be one of your projects, once", errors)
            now_ms = self._now_ms()
            try:
                async with self._client(settings) as client:
                    known = {str(p.id): p for p in await client.projects()}
            except RedmineError as exc:
                await self._store.record(user, NAME, ok=False, at_ms=now_ms, error=str(exc))
                raise RedmineFailed(str(exc)) from None
            unknown = {rid: ["Unknown Redmine project."] for rid in wanted if rid not in known}
            if unknown:
                raise Invalid("Each key must be a Redmine project you can see", unknown)
            mapping: dict[str, str] = {}
            for rid, value in wanted.items():
                if value == NEW:
                    created = await self._projects.create_project(user, {"name": known[rid].name})
                    value = str(created["uuid"])
                mapping[rid] = value
            await self._save(user, "mapping", mapping)
            await self._sync_held(user, now_ms)
            return mapping

    async def redmine_projects(self, user: str) -> list[RedmineProject]:
        """The Redmine projects the user can see.

        Raises:
            Conflict: not connected.
            RedmineFailed: Redmine could not be asked.
        """
        settings = await self._settings(user)
        try:
            async with self._client(settings) as client:
                return await client.projects()
        except RedmineError as exc:
            await self._store.record(user, NAME, ok=False, at_ms=self._now_ms(), error=str(exc))
            raise RedmineFailed(str(exc)) from None

    # --- time out ----------------------------------------------------------

    async def book(self, user: str, day: dt.date, zone: str) -> list[Booking]:
        """Book ``day`` (in ``zone``) in Redmine; again: update what was booked.

        Raises:
            Conflict: not connected.
            RedmineFailed: Redmine refused or could not be reached (the reason in
                words; what was booked before the failure is kept, and booking
                again completes it).
        """
        async with self._locked(user):
            return await self._book_held(user, day, zone)

    async def _book_held(self, user: str, day: dt.date, zone: str) -> list[Booking]:
        settings = await self._settings(user)
        start, end = day_bounds(
            dt.datetime.combine(day, dt.time(12), parse_zone(zone)), parse_zone(zone)
        )
        answer = await self._times.times(
            user, {"start": start, "end": end, "groupBy": "projectUuid"}, zone
        )
        grouped = answer.get("grouped", {})
        mapping = await self.mapping(user)
        projects = await self._projects.projects(user)
        field = f"booked:{day.isoformat()}"
        booked: dict[str, int] = await self._state(user, field) or {}
        done: list[Booking] = []
        now_ms = self._now_ms()
        try:
            async with self._client(settings) as client:
                # Asked first, so that a wrong key or address is reported even
                # when there is nothing to book.
                await client.current_user()
                activity: int | None = None
                for rid, project_uuid in sorted(mapping.items(), key=lambda kv: int(kv[0])):
                    ms = int(grouped.get(project_uuid, {}).get("sum", 0))
                    hours = round(ms / HOUR_MS, 2)
                    entry = booked.get(rid)
                    if hours <= 0:
                        if entry is not None:
                            await client.delete_entry(entry)
                            del booked[rid]
                            await self._save(user, field, booked)
                        continue
                    name = projects.get(project_uuid, {}).get("name", "a project")
                    text = comment(str(name), day, hours)
                    if entry is None or not await client.update_entry(entry, hours, text):
                        if activity is None:
                            activity = await client.activity()
                        entry = await client.create_entry(int(rid), day, hours, activity, text)
                        booked[rid] = entry
                        # Kept at once: a failure later must not book this twice.
                        await self._save(user, field, booked)
                    done.append(Booking(int(rid), project_uuid, hours, entry))
                for rid in [r for r in booked if r not in mapping]:
                    await client.delete_entry(booked[rid])  # a project no longer mapped
                    del booked[rid]
                    await self._save(user, field, booked)
        except RedmineError as exc:
            await self._store.record(user, NAME, ok=False, at_ms=now_ms, error=str(exc))
            raise RedmineFailed(str(exc)) from None
        await self._store.record(user, NAME, ok=True, at_ms=now_ms)
        return done

    async def _book_previous_day(self, user: str, now_ms: int) -> None:
        zone = await self._zone_of(user)
        today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).astimezone(parse_zone(zone))
        previous = today.date() - dt.timedelta(days=1)
        if await self._state(user, "dailyBooked") == previous.isoformat():
            return
        try:
            await self._book_held(user, previous, zone)
        except Conflict:
            return  # recorded; the next sync tries again
        await self._save(user, "dailyBooked", previous.isoformat())

    # --- the periodic round ------------------------------------------------

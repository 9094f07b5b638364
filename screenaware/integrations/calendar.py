"""The calendar integration: meetings count as activity where no snapshot does.

**Source.** ``url`` is an iCalendar (``.ics``) address or a CalDAV calendar
collection. The address is first asked with a CalDAV ``calendar-query`` REPORT
for the events of the window (a collection answers 207 Multi-Status); an address
that refuses it (Google's secret address, Outlook's published calendars, any
static ``.ics`` file) is read with a GET, which must answer an iCalendar document.
HTTP Basic credentials are sent when given. A document is read up to
``calendar_max_bytes``.

**Events.** Those overlapping the last 30 days and the next day, recurring ones
expanded (``recurring-ical-events``: RRULE, RDATE, EXDATE and changed
occurrences), each in its own time zone (floating times in the service's zone).
All-day, transparent (free), cancelled and declined ones (the user's address,
or the connection's user name, declined) are ignored.

**Time.** Why pieces of imported activity rather than a separate measurement: the
one-timeline rule already makes ``/times`` and ``/streams`` agree for anything on
the timeline. An event becomes ``activity`` ledger entries (category
``meetings``, application ``Calendar``) for the parts no snapshot owns at sync
time, cut into pieces of at most 10 s whose keys rank below every snapshot in the
rule (:mod:`screenaware.activity.timeline`), so a snapshot arriving later takes
the time from them at once (at most the rest of one piece too many, given back
by the next sync). Each sync computes the pieces anew; pieces no longer wanted
(an event moved, changed or cancelled, a snapshot arrived) get reversing entries
and new ones are added: ledger entries only, never deletes.

**Attribution.** The project rules applied to the event: keywords in the summary
(as a window title) or the description (as a document title), contact emails
among the attendees (reason ``attendee 'alice@acme.com' is a contact email``),
and learned associations.

**One worker at a time.** A sync holds the user's Redis lock
(``{u:<user>}:calsync``, SET NX with a TTL); a worker that finds it taken skips
the user, so two workers or machines never sync one user at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar
import orjson
import recurring_ical_events
import redis.asyncio as aioredis

from screenaware.activity import (
    Activity,
    Attribution,
    Attributor,
    ImportedSpan,
    application_uuid,
    category_uuid,
)
from screenaware.errors import StorageUnavailable
from screenaware.integrations.fetch import TooLarge, read_capped
from screenaware.integrations.periodic import PeriodicSync
from screenaware.integrations.store import CredentialsUnreadable, IntegrationStore
from screenaware.storage.redisstore import user_scoped
from screenaware.timeutil import to_ms

LOG = logging.getLogger(__name__)

NAME = "googleCalendar"
PAST_DAYS = 30
FUTURE_DAYS = 1
APPLICATION = "Calendar"
# Bounds of one sync's work and memory (a rule such as FREQ=MINUTELY expands to
# tens of thousands of occurrences): more is refused with the reason in words.
MAX_EVENTS = 20_000
MAX_MEETING_MS = 31 * 86_400_000
CATEGORY = "meetings"


def lock_key(user: str) -> str:
    return user_scoped(user, "calsync")


def pieces_key(user: str) -> str:
    return user_scoped(user, "calpieces")


class CalendarError(Exception):
    """The calendar could not be read; the message says why, in words."""


@dataclass(frozen=True)
class Event:
    """One occurrence of a calendar event, clipped to the sync window.

    Attributes:
        source: UID and occurrence (stable across syncs).
        start: start in Unix ms.
        end: end in Unix ms.
        summary: the SUMMARY.
        description: the DESCRIPTION.
        attendees: the attendees' addresses, lower case.
    """

    source: str
    start: int
    end: int
    summary: str
    description: str
    attendees: tuple[str, ...]


_REPORT = """<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><C:calendar-data/></D:prop>
  <C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">
    <C:time-range start="{start}" end="{end}"/>
  </C:comp-filter></C:comp-filter></C:filter>
</C:calendar-query>"""
_CALDAV_DATA = "{urn:ietf:params:xml:ns:caldav}calendar-data"


def _is_ical(body: bytes) -> bool:
    return body.lstrip(b"\xef\xbb\xbf \t\r\n").upper().startswith(b"BEGIN:VCALENDAR")


async def _read(response: httpx.Response, max_bytes: int) -> bytes:
    try:
        return await read_capped(response, max_bytes)
    except TooLarge:
        raise CalendarError(f"the calendar is larger than {max_bytes} bytes") from None


def _status_error(response: httpx.Response) -> CalendarError:
    return CalendarError(f"{response.status_code} from the calendar server")


async def fetch(
    url: str,
    username: str | None,
    password: str | None,
    window: tuple[dt.datetime, dt.datetime],
    *,
    timeout: float,  # noqa: ASYNC109 - httpx's own timeouts, per phase
    max_bytes: int,
) -> list[bytes]:
    """The iCalendar documents of a calendar address (one for an ``.ics``, one per
    event resource for a CalDAV REPORT).

    Raises:
        CalendarError: unreachable, refused, too large, or not a calendar.
    """
    auth = httpx.BasicAuth(username or "", password or "") if username or password else None
    try:
        async with httpx.AsyncClient(
            auth=auth, timeout=timeout, follow_redirects=True, trust_env=False
        ) as client:
            # A CalDAV collection answers the REPORT with only the window's events;
            # an .ics address refuses it (405, 501, ...) and is read whole by GET.
            start, end = (w.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ") for w in window)
            async with client.stream(
                "REPORT",
                url,
                content=_REPORT.format(start=start, end=end).encode(),
                headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
            ) as response:
                if response.status_code in (401, 403):
                    raise _status_error(response)
                xml = await _read(response, max_bytes) if response.status_code == 207 else b""
            if not xml:
                async with client.stream(
                    "GET", url, headers={"Accept": "text/calendar"}
                ) as response:
                    if not response.is_success:
                        raise _status_error(response)
                    body = await _read(response, max_bytes)
                if not _is_ical(body):
                    raise CalendarError("not an iCalendar document")
                return [body]
    except httpx.TimeoutException:
        raise CalendarError("the calendar server did not answer in time") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError):
        raise CalendarError("not a valid calendar address") from None
    except httpx.HTTPError as exc:
        raise CalendarError(
            f"the calendar server cannot be reached ({type(exc).__name__})"
        ) from None
    try:
        root = ET.fromstring(xml)  # noqa: S314 - bounded by max_bytes, see import
    except ET.ParseError:
        raise CalendarError("not an iCalendar document") from None
    return [el.text.encode() for el in root.iter(_CALDAV_DATA) if el.text]


def _as_utc(value: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(dt.UTC)


def _address(value: Any) -> str:
    return re.sub(r"^mailto:", "", str(value), flags=re.I).strip().lower()


def events(
    documents: Sequence[bytes],
    window: tuple[dt.datetime, dt.datetime],
    zone: ZoneInfo,
    own: Sequence[str],
) -> list[Event]:
    """The occurrences that count, clipped to ``window``.

    Args:
        documents: iCalendar documents.
        window: aware UTC bounds.
        zone: the zone of floating times.
        own: the user's addresses (lower case): an event they declined is ignored.

    Raises:
        CalendarError: a document is not iCalendar.
    """
    mine = {a.lower() for a in own if a}
    lo_ms, hi_ms = to_ms(window[0]), to_ms(window[1])
    out: dict[tuple[str, int, int], Event] = {}
    for document in documents:
        try:
            calendar = icalendar.Calendar.from_ical(document.decode("utf-8", "replace"))
            found = recurring_ical_events.of(calendar).between(window[0], window[1])
        except Exception:  # icalendar raises ValueError, KeyError, ... on bad input
            raise CalendarError("not an iCalendar document") from None
        if len(found) > MAX_EVENTS:
            raise CalendarError(f"the calendar has more than {MAX_EVENTS} events in 31 days")
        for event in found:
            start = event.get("DTSTART")
            if start is None or not isinstance(start.dt, dt.datetime):
                continue  # all-day (a date), or no start
            if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
                continue
            if str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue
            attendees = event.get("ATTENDEE", [])
            if not isinstance(attendees, list):
                attendees = [attendees]
            declined = any(
                _address(a) in mine and str(a.params.get("PARTSTAT", "")).upper() == "DECLINED"
                for a in attendees
                if hasattr(a, "params")
            )
            if declined:
                continue
            begin = _as_utc(start.dt, zone)
            if event.get("DTEND") is not None and isinstance(event["DTEND"].dt, dt.datetime):
                finish = _as_utc(event["DTEND"].dt, zone)
            elif event.get("DURATION") is not None:
                finish = begin + event["DURATION"].dt
            else:
                continue  # no length: a moment, not a meeting
            s_ms, e_ms = max(to_ms(begin), lo_ms), min(to_ms(finish), hi_ms)
            if e_ms <= s_ms:
                continue
            uid = str(event.get("UID", ""))
            occurrence = event.get("RECURRENCE-ID")
            stamp = occurrence.dt.isoformat() if occurrence is not None else begin.isoformat()
            item = Event(
                source=f"{uid}|{stamp}",
                start=s_ms,
                end=e_ms,
                summary=str(event.get("SUMMARY", "")),
                description=str(event.get("DESCRIPTION", "")),
                attendees=tuple(_address(a) for a in attendees),
            )
            out[(item.source, s_ms, e_ms)] = item
    return sorted(out.values(), key=lambda e: (e.start, e.source))


_REASONS = (
    (re.compile(r"^contact email '(.*)' was found in tags$"), "attendee '{}' is a contact email"),
    (re.compile(r"^keyword '(.*)' was found in window title$"), "keyword '{}' in the summary"),
    (
        re.compile(r"^keyword '(.*)' was found in document title$"),
        "keyword '{}' in the description",
    ),
    (
        re.compile(r"^contact email '(.*)' was found in window title$"),
        "contact email '{}' in the summary",
    ),
    (
        re.compile(r"^contact email '(.*)' was found in document title$"),
        "contact email '{}' in the description",
    ),
)


def attribute(attributor: Attributor, event: Event) -> Attribution:
    """The event's attribution: project rules on summary, description and
    attendees; always category ``meetings`` and application ``Calendar``."""
    window = {
        "processName": APPLICATION,
        "title": event.summary,
        "documents": [{"title": event.description}] if event.description else [],
        "tags": dict.fromkeys(event.attendees, ""),
    }
    a = attributor.attribute(window)
    reason = a.reason
    for pattern, text in _REASONS:
        match = pattern.match(reason or "")
        if match:
            reason = text.format(match.group(1))
            break
    return replace(
        a,
        application=APPLICATION,
        application_uuid=application_uuid(APPLICATION.lower()),
        category_uuid=category_uuid(CATEGORY),
        reason=reason,
        base_document=None,
    )


class CalendarSync(PeriodicSync):
    """Syncs users' calendars into their activity.

    Args:
        store: the integration store (settings, state).
        activity: the activity feature (rules, imported time).
        redis: zero-argument callable returning the open Redis client (lock, pieces).
        addresses: coroutine function: the user's own addresses (declined events).
        zone: the zone of floating event times.
        interval: seconds between syncs of a user.
        timeout: the timeout of one fetch (seconds).
        max_bytes: the largest calendar read.
        clock: the current Unix time in seconds.
    """

    name = NAME
    label = "calendar"

    def __init__(
        self,
        store: IntegrationStore,
        activity: Activity,
        redis: Callable[[], aioredis.Redis],
        addresses: Callable[[str], Awaitable[list[str]]],
        zone: ZoneInfo,
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
            # A worker that dies holding the lock frees it after this long.
            lock_ttl_ms=int((timeout * 3 + 60) * 1000),
            clock=clock,
            exists=exists,
        )
        self._activity = activity
        self._addresses = addresses
        self._zone = zone

    lock_key = staticmethod(lock_key)

    async def sync(self, user: str, *, force: bool = False, wait: float = 0.0) -> bool:
        """Sync one user's calendar unless another worker is at it (or, without
        ``force``, did it less than ``interval`` ago). Returns whether it ran."""
        async with self._held(user, wait) as held:
            if not held:
                return False
            now_ms = int(self._clock() * 1000)
            if not force and now_ms - await self._store.attempted_ms(user, NAME) < (
                self.interval * 1000
            ):
                return False
            await self._sync_held(user, now_ms)
            return True

    async def _sync_held(self, user: str, now_ms: int) -> None:
        try:
            settings = await self._store.settings(user, NAME)
        except CredentialsUnreadable as exc:
            await self._store.record(user, NAME, ok=False, at_ms=now_ms, error=str(exc))
            return
        if settings is None:
            return
        now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
        window = (now - dt.timedelta(days=PAST_DAYS), now + dt.timedelta(days=FUTURE_DAYS))
        try:
            documents = await fetch(
                settings["url"],
                settings.get("username"),
                settings.get("password"),
                window,
                timeout=self._timeout,
                max_bytes=self._max_bytes,
            )
            own = [*(await self._addresses(user)), str(settings.get("username") or "")]
            found = await asyncio.to_thread(events, documents, window, self._zone, own)
            if sum(e.end - e.start for e in found) > MAX_MEETING_MS:
                raise CalendarError("the calendar's events overlap too much (over 31 days of them)")
        except CalendarError as exc:
            await self._store.record(user, NAME, ok=False, at_ms=now_ms, error=str(exc))
            return
        await self._import(user, found)
        await self._store.record(user, NAME, ok=True, at_ms=now_ms)

    async def _import(self, user: str, found: Sequence[Event]) -> None:
        projects, categories, learned = await self._activity.store.rules(user)
        attributor = Attributor(projects, categories, learned)
        spans = [ImportedSpan(e.start, e.end, e.source, attribute(attributor, e)) for e in found]
        previous = await self._pieces(user)
        now = await self._activity.snapshots.replace_imported(user, spans, previous)
        await self._redis.set(pieces_key(user), orjson.dumps(now))

    async def _pieces(self, user: str) -> dict[str, tuple[int, int]]:
        raw = await self._redis.get(pieces_key(user))
        if not raw:
            return {}
        return {k: (int(v[0]), int(v[1])) for k, v in orjson.loads(raw).items()}

    async def disconnect(self, user: str, *, purge: bool) -> None:
        """Forget the connection; with ``purge`` the imported time is reversed too.

        Raises:
            StorageUnavailable: a sync of the user held the lock too long.
        """
        async with self._held(user, self.lock_wait) as held:
            if not held:
                raise StorageUnavailable("a calendar sync of the user is still running")
            await self._store.disconnect(user, NAME)
            if purge:
                previous = await self._pieces(user)
                await self._activity.snapshots.replace_imported(user, [], previous)
            # Without purge the imported time stays as it is, no longer tracked.
            await self._redis.delete(pieces_key(user))

"""The calendar integration against real servers: a plain ``.ics`` served over
HTTP by the test, and a real CalDAV server (Radicale).

Meeting time must be exactly the part of each event that no snapshot covers, in
``/times`` and ``/streams`` alike; changes and cancellations move it on the next
sync; the credentials never come back; one worker syncs a user at a time.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from falcon import testing

from screenaware.activity.attribution import application_uuid, category_uuid
from screenaware.app import create_app
from screenaware.config import Config, ConfigError
from screenaware.identity.accounts import user_key
from screenaware.integrations.calendar import CalendarError, fetch, pieces_key
from screenaware.integrations.store import (
    CredentialsUnreadable,
    IntegrationStore,
    connected_users_key,
    integration_key,
)
from screenaware.storage.localservers import free_port
from screenaware.timeutil import iso
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Api,
    FakeClock,
    InfluxHelper,
    Servers,
    stored_values,
)
from tests.rediscluster import async_client

UTC = dt.UTC
DAY = {"start": "2026-11-30T00:00:00.000Z", "end": "2026-11-30T23:59:59.999Z", "tz": "UTC"}
MEETINGS = category_uuid("meetings")
CALENDAR_APP = application_uuid("calendar")
USER = "ann@example.org"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2026, 11, 30, 18, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def identity_config(config: Config) -> Config:
    return config.replace(
        admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD, jwt_ttl=3600, calendar_sync=1
    )


# --- an .ics file served over HTTP by the test ----------------------------------


@dataclass
class IcsServer:
    """A threaded HTTP server answering GET with ``body`` (Basic auth optional)."""

    body: bytes = b""
    credentials: tuple[str, str] | None = None
    delay: float = 0.0
    requests: int = 0
    inflight: int = 0
    max_inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


@pytest.fixture
def ics() -> Iterator[IcsServer]:
    state = IcsServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.requests += 1
                state.inflight += 1
                state.max_inflight = max(state.max_inflight, state.inflight)
            try:
                time.sleep(state.delay)
                if state.credentials:
                    expected = (
                        "Basic " + base64.b64encode(":".join(state.credentials).encode()).decode()
                    )
                    if self.headers.get("Authorization") != expected:
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="cal"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar; charset=utf-8")
                self.send_header("Content-Length", str(len(state.body)))
                self.end_headers()
                self.wfile.write(state.body)
            finally:
                with state.lock:
                    state.inflight -= 1

        def log_message(self, format: str, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{port}/team.ics"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def vevent(uid: str, lines: list[str]) -> str:
    return "\r\n".join(["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20261101T000000Z", *lines,
                        "END:VEVENT"])  # fmt: skip


BERLIN = "\r\n".join([
    "BEGIN:VTIMEZONE", "TZID:Europe/Berlin",
    "BEGIN:STANDARD", "DTSTART:19701025T030000", "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "END:STANDARD",
    "BEGIN:DAYLIGHT", "DTSTART:19700329T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
    "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "END:DAYLIGHT",
    "END:VTIMEZONE",
])  # fmt: skip

# 2026-11-30 (UTC):
#   "Acme sync"      10:00-10:30 UTC, attendee alice@acme.com (a contact email)
#   "Standup"        daily 09:00-09:15 Europe/Berlin from 11-29, 3 times; the 11-30
#                    one moved to 13:00-13:20 Berlin (12:00-12:20 UTC): an exception
#   "Planning"       09:00-09:45 America/New_York (14:00-14:45 UTC): another zone
#   an all-day event, a transparent one and one the user declined: ignored
EVENTS = {
    "acme": vevent("acme@test", [
        "SUMMARY:Acme sync", "DTSTART:20261130T100000Z", "DTEND:20261130T103000Z",
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@acme.com",
        f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{USER}",
    ]),
    "standup": vevent("standup@test", [
        "SUMMARY:Standup", "DTSTART;TZID=Europe/Berlin:20261129T090000",
        "DTEND;TZID=Europe/Berlin:20261129T091500", "RRULE:FREQ=DAILY;COUNT=3",
    ]),
    "standup-moved": vevent("standup@test", [
        "SUMMARY:Standup", "RECURRENCE-ID;TZID=Europe/Berlin:20261130T090000",
        "DTSTART;TZID=Europe/Berlin:20261130T130000",
        "DTEND;TZID=Europe/Berlin:20261130T132000",
    ]),
    "planning": vevent("planning@test", [
        "SUMMARY:Planning", "DTSTART;TZID=America/New_York:20261130T090000",
        "DTEND;TZID=America/New_York:20261130T094500",
    ]),
    "allday": vevent("allday@test", [
        "SUMMARY:Holiday", "DTSTART;VALUE=DATE:20261130", "DTEND;VALUE=DATE:20261201",
    ]),
    "free": vevent("free@test", [
        "SUMMARY:Focus (free)", "TRANSP:TRANSPARENT",
        "DTSTART:20261130T150000Z", "DTEND:20261130T160000Z",
    ]),
    "declined": vevent("declined@test", [
        "SUMMARY:All hands", "DTSTART:20261130T160000Z", "DTEND:20261130T170000Z",
        f"ATTENDEE;PARTSTAT=DECLINED:mailto:{USER}",
    ]),
}  # fmt: skip

NEW_YORK = "\r\n".join([
    "BEGIN:VTIMEZONE", "TZID:America/New_York",
    "BEGIN:STANDARD", "DTSTART:19701101T020000", "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU",
    "TZOFFSETFROM:-0400", "TZOFFSETTO:-0500", "END:STANDARD",
    "BEGIN:DAYLIGHT", "DTSTART:19700308T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU",
    "TZOFFSETFROM:-0500", "TZOFFSETTO:-0400", "END:DAYLIGHT",
    "END:VTIMEZONE",
])  # fmt: skip


def calendar(events: dict[str, str]) -> bytes:
    parts = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//ScreenAware tests//EN", BERLIN,
             NEW_YORK, *events.values(), "END:VCALENDAR", ""]  # fmt: skip
    return "\r\n".join(parts).encode()


def minutes(n: float) -> int:
    return int(n * 60_000)


# The desk during meetings: 10:10:00-10:10:10 (in Acme sync), 12:05:00-12:05:05
# (in the moved standup), and 14:44:55-14:45:05 (across the end of Planning).
SNAPSHOTS = [
    ("2026-11-30T10:10:10.000Z", 10_000),
    ("2026-11-30T12:05:05.000Z", 5_000),
    ("2026-11-30T14:45:05.000Z", 10_000),
]
ACME = minutes(30) - 10_000
STANDUP = minutes(20) - 5_000
PLANNING = minutes(45) - 5_000


async def get(api: Api, headers: dict[str, str], path: str, **params: Any) -> Any:
    result = await api.client.simulate_get(path, params=params, headers=headers)
    assert result.status_code == 200, result.text
    return result.json


async def desk(api: Api, headers: dict[str, str]) -> None:
    body = [
        {"timeTaken": end, "durationMs": ms,
         "windows": [{"processName": "code", "title": "main.py", "isFocused": True}]}
        for end, ms in SNAPSHOTS
    ]  # fmt: skip
    result = await api.client.simulate_post("/api/snapshots", json=body, headers=headers)
    assert result.status_code == 200, result.text


async def connect(api: Api, headers: dict[str, str], **body: str) -> dict[str, Any]:
    result = await api.client.simulate_put(
        "/api/integrations/googleCalendar", json=body, headers=headers
    )
    assert result.status_code == 200, result.text
    answer: dict[str, Any] = result.json
    return answer


async def meeting_ms(api: Api, headers: dict[str, str]) -> dict[str, int]:
    """Meeting time by /times (per category and application) and by the
    substreams of /streams."""
    by_cat = await get(api, headers, "/api/times", **DAY, groupBy="categoryUuid")
    by_app = await get(api, headers, "/api/times", **DAY, groupBy="applicationUuid")
    streams = await get(api, headers, "/api/substreams", **DAY)
    in_streams = sum(s["durationMs"] for s in streams if s.get("applicationUuid") == CALENDAR_APP)
    return {
        "category": by_cat["grouped"].get(MEETINGS, {}).get("sum", 0),
        "application": by_app["grouped"].get(CALENDAR_APP, {}).get("sum", 0),
        "streams": in_streams,
        "total": by_cat["sum"],
    }


async def wait_for_sync(api: Api, headers: dict[str, str], after: str | None) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = (await get(api, headers, "/api/integrations"))["googleCalendar"]
        if state["lastSync"] != after:
            return dict(state)
        await asyncio.sleep(0.2)
    raise AssertionError("no sync happened")


async def meetings_follow_the_calendar(
    api: Api,
    clock: FakeClock,
    influx_db: InfluxHelper,
    publish: Callable[[dict[str, str]], None],
    where: dict[str, str],
) -> None:
    """The whole story against one calendar server: ``publish`` puts the events
    there, ``where`` is the connect body."""
    headers = await api.new_user(USER)
    project = await api.client.simulate_post(
        "/api/projects",
        json={"name": "Acme", "contactEmails": ["alice@acme.com"], "keywords": ["planning"]},
        headers=headers,
    )
    assert project.status_code == 201, project.text
    acme = project.headers["location"].rsplit("/", 1)[1]
    await desk(api, headers)
    publish(EVENTS)
    state = await connect(api, headers, **where)
    assert state["connected"] is True, state
    assert state["lastError"] is None
    assert state["lastSync"] == iso(dt.datetime.fromtimestamp(clock.now, UTC))

    expected = ACME + STANDUP + PLANNING
    got = await meeting_ms(api, headers)
    assert got == {"category": expected, "application": expected, "streams": expected,
                   "total": expected + 25_000}  # fmt: skip
    by_project = await get(api, headers, "/api/times", **DAY, groupBy="projectUuid")
    assert by_project["grouped"][acme]["sum"] == ACME + PLANNING
    streams = await get(api, headers, "/api/substreams", **DAY)
    reasons = {
        s.get("projectRelationReason") for s in streams if s["applicationUuid"] == CALENDAR_APP
    }
    assert "attendee 'alice@acme.com' is a contact email" in reasons
    assert "keyword 'planning' in the summary" in reasons

    # The same calendar again changes nothing (same pieces, no new entries).
    entries = influx_db.query('SELECT count("duration_ms") FROM "activity"')
    clock.advance(5)
    await wait_for_sync(api, headers, state["lastSync"])
    assert influx_db.query('SELECT count("duration_ms") FROM "activity"') == entries
    assert await meeting_ms(api, headers) == got

    # Acme sync is cancelled and Planning moves half an hour later: the next
    # periodic sync moves the time with ledger entries (reversals), never deletes.
    changed = dict(EVENTS)
    changed["acme"] = changed["acme"].replace(
        "SUMMARY:Acme sync", "SUMMARY:Acme sync\r\nSTATUS:CANCELLED"
    )
    changed["planning"] = (
        changed["planning"].replace("T090000", "T093000").replace("T094500", "T101500")
    )
    publish(changed)
    synced = (await get(api, headers, "/api/integrations"))["googleCalendar"]["lastSync"]
    clock.advance(5)
    await wait_for_sync(api, headers, synced)
    moved = minutes(45)  # 14:30-15:15 UTC, the desk at 14:44:55-14:45:05 inside it
    assert await meeting_ms(api, headers) == {
        "category": STANDUP + moved - 10_000,
        "application": STANDUP + moved - 10_000,
        "streams": STANDUP + moved - 10_000,
        "total": STANDUP + moved - 10_000 + 25_000,
    }
    reversals = influx_db.query(
        'SELECT count("duration_ms") FROM "activity" WHERE "duration_ms" < 0'
    )
    assert reversals and reversals[0]["count"] > 0

    # Disconnect with purge: every imported millisecond is reversed.
    result = await api.client.simulate_delete(
        "/api/integrations/googleCalendar", params={"purge": "true"}, headers=headers
    )
    assert result.status_code == 200, result.text
    assert result.json["connected"] is False
    assert await meeting_ms(api, headers) == {"category": 0, "application": 0, "streams": 0,
                                              "total": 25_000}  # fmt: skip


async def test_an_ics_calendar_counts_the_uncovered_part_of_each_meeting(
    api: Api, ics: IcsServer, clock: FakeClock, influx_db: InfluxHelper
) -> None:
    def publish(events: dict[str, str]) -> None:
        ics.body = calendar(events)

    await meetings_follow_the_calendar(api, clock, influx_db, publish, {"url": ics.url})


# --- a real CalDAV server: Radicale -------------------------------------------

CALDAV_USER, CALDAV_PASSWORD = "ann", "caldav-password-1"


@dataclass
class Radicale:
    base: str
    proc: subprocess.Popen[bytes]

    def request(self, method: str, path: str, body: str = "") -> httpx.Response:
        headers = {"Content-Type": "text/calendar; charset=utf-8"} if body else {}
        return httpx.request(
            method, self.base + path, content=body.encode(), headers=headers,
            auth=(CALDAV_USER, CALDAV_PASSWORD), timeout=10,
        )  # fmt: skip


@pytest.fixture
def radicale(tmp_path: Path) -> Iterator[Radicale]:
    """Radicale (PyPI) on a free port with its own storage and htpasswd users."""
    users = tmp_path / "htpasswd"
    users.write_text(f"{CALDAV_USER}:{CALDAV_PASSWORD}\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--config", "",
         "--server-hosts", f"127.0.0.1:{port}",
         "--storage-filesystem-folder", str(tmp_path / "collections"),
         "--auth-type", "htpasswd", "--auth-htpasswd-filename", str(users),
         "--auth-htpasswd-encryption", "plain", "--logging-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = Radicale(f"http://127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(server.base + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("radicale did not start") from None
                time.sleep(0.1)
        assert server.request("MKCALENDAR", "/ann/work/").status_code == 201
        yield server
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


def caldav_publisher(server: Radicale) -> Callable[[dict[str, str]], None]:
    """Puts events through CalDAV: one resource per UID, removed ones deleted."""
    stored: set[str] = set()

    def publish(events: dict[str, str]) -> None:
        by_uid: dict[str, list[str]] = {}
        for text in events.values():
            uid = text.split("UID:", 1)[1].split("\r\n", 1)[0]
            by_uid.setdefault(uid, []).append(text)
        for uid, parts in by_uid.items():
            name = uid.replace("@", "-") + ".ics"
            result = server.request(
                "PUT",
                f"/ann/work/{name}",
                calendar({str(i): p for i, p in enumerate(parts)}).decode(),
            )
            assert result.status_code in (201, 204), result.text
            stored.add(name)
        for name in stored - {u.replace("@", "-") + ".ics" for u in by_uid}:
            assert server.request("DELETE", f"/ann/work/{name}").status_code in (200, 204)
            stored.discard(name)

    return publish


async def test_a_caldav_calendar_counts_the_uncovered_part_of_each_meeting(
    api: Api, radicale: Radicale, clock: FakeClock, influx_db: InfluxHelper
) -> None:
    where = {"url": radicale.base + "/ann/work/", "username": CALDAV_USER,
             "password": CALDAV_PASSWORD}  # fmt: skip
    await meetings_follow_the_calendar(api, clock, influx_db, caldav_publisher(radicale), where)


async def test_a_wrong_caldav_password_is_not_connected_with_the_reason(
    api: Api, radicale: Radicale
) -> None:
    headers = await api.new_user(USER)
    caldav_publisher(radicale)({"acme": EVENTS["acme"]})
    url = radicale.base + "/ann/work/"
    state = await connect(api, headers, url=url, username=CALDAV_USER, password="wrong-one-123")
    assert state["connected"] is False
    assert state["lastError"] == "401 from the calendar server"
    assert (await meeting_ms(api, headers))["category"] == 0
    state = await connect(api, headers, url=url, username=CALDAV_USER, password=CALDAV_PASSWORD)
    assert state["connected"] is True
    assert (await meeting_ms(api, headers))["category"] == minutes(30)


async def test_a_snapshot_after_the_sync_wins_over_the_meeting(
    api: Api, ics: IcsServer, clock: FakeClock
) -> None:
    headers = await api.new_user(USER)
    ics.body = calendar({"acme": EVENTS["acme"]})
    assert (await connect(api, headers, url=ics.url))["connected"] is True
    assert (await meeting_ms(api, headers))["category"] == minutes(30)
    await desk(api, headers)  # 10:10:00-10:10:10 falls in the meeting
    got = await meeting_ms(api, headers)
    # At once: the desk wins, nothing counts twice (the meeting may lose a little
    # more than the desk took until the next sync gives it back).
    assert got["total"] <= minutes(30) + 25_000 - 10_000
    assert got["category"] == got["streams"] >= minutes(30) - 20_000
    synced = (await get(api, headers, "/api/integrations"))["googleCalendar"]["lastSync"]
    clock.advance(5)
    await wait_for_sync(api, headers, synced)
    assert (await meeting_ms(api, headers))["category"] == minutes(30) - 10_000


async def test_a_wrong_password_is_not_connected_with_the_reason(
    servers: Servers, api: Api, ics: IcsServer
) -> None:
    headers = await api.new_user(USER)
    ics.body = calendar({"acme": EVENTS["acme"]})
    ics.credentials = ("ann", "right-password-1")
    state = await connect(api, headers, url=ics.url, username="ann", password="wrong-password-9")
    assert state["connected"] is False
    assert state["lastError"] == "401 from the calendar server"
    assert state["lastSync"] is None
    listed = (await get(api, headers, "/api/integrations"))["googleCalendar"]
    assert listed["connected"] is False and listed["lastError"] == "401 from the calendar server"
    assert (await meeting_ms(api, headers))["category"] == 0

    state = await connect(api, headers, url=ics.url, username="ann", password="right-password-1")
    assert state["connected"] is True and state["lastError"] is None
    assert (await meeting_ms(api, headers))["category"] == minutes(30)
    # Stored encrypted, never returned: neither the password nor the URL appear.
    listed_text = (await api.client.simulate_get("/api/integrations", headers=headers)).text
    assert "right-password-1" not in listed_text and ics.url not in listed_text
    stored = stored_values(servers.redis_url)
    assert any(b"tcache" in key.encode() for key in stored)  # cached answers looked into
    for key, raw in stored.items():
        assert b"right-password-1" not in raw and b"127.0.0.1" not in raw, key


async def test_not_a_calendar_is_said_in_words(api: Api, ics: IcsServer) -> None:
    headers = await api.new_user(USER)
    ics.body = b"<html>hello</html>"
    state = await connect(api, headers, url=ics.url)
    assert state["connected"] is False
    assert state["lastError"] == "not an iCalendar document"


async def test_bad_connect_bodies_are_400_and_change_nothing(api: Api) -> None:
    headers = await api.new_user(USER)
    for body in ({}, {"url": "ftp://example.org/x.ics"}, {"url": "not a url"}, {"url": 5}):
        result = await api.client.simulate_put(
            "/api/integrations/googleCalendar", json=body, headers=headers
        )
        assert result.status_code == 400, (body, result.text)
        assert "url" in result.json["errors"]
    listed = (await get(api, headers, "/api/integrations"))["googleCalendar"]
    assert listed["status"] == "not connected" and listed["connected"] is False
    redmine = (await get(api, headers, "/api/integrations"))["redmine"]
    assert redmine == {
        "key": "redmine", "name": "Redmine",
        "description":
            "Relate spent activity time to tasks/projects you manage inside the Redmine app",
        "status": "not connected", "connected": False, "lastSync": None, "lastError": None,
    }  # fmt: skip


async def connected_user(api: Api, ics: IcsServer) -> str:
    """A new user connected to the served calendar; returns their uuid."""
    headers = await api.new_user(USER)
    user = str((await api.me(headers)).json["uuid"])
    ics.body = calendar({"acme": EVENTS["acme"]})
    result = await api.client.simulate_put(
        "/api/integrations/googleCalendar", json={"url": ics.url}, headers=headers
    )
    assert result.status_code == 200, result.text
    return user


async def test_deleting_a_user_forgets_their_calendar(
    redis_client: redis.Redis, api: Api, ics: IcsServer
) -> None:
    user = await connected_user(api, ics)
    held = (integration_key(user, "googleCalendar"), pieces_key(user))
    assert redis_client.exists(*held) == 2
    assert redis_client.sismember(connected_users_key("googleCalendar"), user)

    deleted = await api.client.simulate_delete(f"/api/users/{user}", headers=api.admin)
    assert deleted.status_code == 200, deleted.text
    # The encrypted credentials, the sync state and the listing go with the user.
    assert redis_client.exists(*held) == 0
    assert not redis_client.sismember(connected_users_key("googleCalendar"), user)
    assert not [k for k in redis_client.scan_iter(match=f"*{user}*") if "lock" not in k]


async def test_a_listed_user_who_is_gone_is_disconnected_by_the_round(
    redis_client: redis.Redis, api: Api, ics: IcsServer
) -> None:
    user = await connected_user(api, ics)
    # A deletion that died after the user's record went, before the integrations
    # forgot them: the periodic round (every 0.5 s here) does it.
    redis_client.delete(user_key(user))
    deadline = time.monotonic() + 10
    while redis_client.exists(integration_key(user, "googleCalendar")):
        assert time.monotonic() < deadline, "the round left the credentials of a gone user"
        await asyncio.sleep(0.1)
    assert not redis_client.sismember(connected_users_key("googleCalendar"), user)
    assert not redis_client.exists(pieces_key(user))


async def test_two_app_instances_never_sync_one_user_at_once(
    api: Api, identity_config: Config, clock: FakeClock, ics: IcsServer
) -> None:
    headers = await api.new_user(USER)
    ics.body = calendar({"acme": EVENTS["acme"]})
    ics.delay = 0.5
    # A second instance (another worker or machine) over the same Redis and InfluxDB.
    async with testing.ASGIConductor(create_app(identity_config, clock=clock)) as other:
        results = await asyncio.gather(
            api.client.simulate_put(
                "/api/integrations/googleCalendar", json={"url": ics.url}, headers=headers
            ),
            other.simulate_put(
                "/api/integrations/googleCalendar", json={"url": ics.url}, headers=headers
            ),
        )
        assert [r.status_code for r in results] == [200, 200]
        assert ics.requests == 2  # both synced, one after the other
        assert ics.max_inflight == 1
        # Periodic syncs of both instances for a while: still one at a time.
        for _ in range(6):
            clock.advance(1)
            await asyncio.sleep(0.5)
        assert ics.requests >= 3
        assert ics.max_inflight == 1
    assert (await meeting_ms(api, headers))["category"] == minutes(30)


async def test_a_caldav_collection_is_asked_for_the_window_only(radicale: Radicale) -> None:
    old = vevent("old@test", ["SUMMARY:Last year", "DTSTART:20251130T100000Z",
                              "DTEND:20251130T110000Z"])  # fmt: skip
    caldav_publisher(radicale)({"acme": EVENTS["acme"], "old": old})
    window = (dt.datetime(2026, 10, 31, tzinfo=UTC), dt.datetime(2026, 12, 1, tzinfo=UTC))
    documents = await fetch(
        radicale.base + "/ann/work/", CALDAV_USER, CALDAV_PASSWORD, window,
        timeout=10, max_bytes=1 << 20,
    )  # fmt: skip
    # The REPORT's time range left last year's event on the server.
    assert len(documents) == 1 and b"Acme sync" in documents[0]
    with pytest.raises(CalendarError, match="larger than 100 bytes"):
        await fetch(radicale.base + "/ann/work/", CALDAV_USER, CALDAV_PASSWORD, window,
                    timeout=10, max_bytes=100)  # fmt: skip


async def test_settings_are_encrypted_with_the_configured_or_the_shared_key(
    servers: Servers, redis_client: redis.Redis
) -> None:
    client = async_client(servers.redis_url)
    try:
        settings = {"url": "https://cal.example.org/secret-token/basic.ics", "password": "pw-1"}
        first = IntegrationStore(lambda: client, "configured-key-1")
        await first.connect("u1", "googleCalendar", settings)
        raw = str(redis_client.hgetall(integration_key("u1", "googleCalendar")))
        assert "secret-token" not in raw and "pw-1" not in raw
        assert (
            await IntegrationStore(lambda: client, "configured-key-1").settings(
                "u1", "googleCalendar"
            )
            == settings
        )
        with pytest.raises(CredentialsUnreadable):
            await IntegrationStore(lambda: client, "another-key").settings("u1", "googleCalendar")
        # Unset: one key is generated and shared through Redis by every instance.
        generated = IntegrationStore(lambda: client, "")
        await generated.connect("u2", "googleCalendar", settings)
        other = IntegrationStore(lambda: client, "")
        assert await other.settings("u2", "googleCalendar") == settings
        assert redis_client.get("{sa}:encryption_key")
        assert "settings" not in repr(other)
    finally:
        await client.aclose()


def test_the_new_settings_are_checked_and_the_key_never_shown() -> None:
    config = Config.load(environ={"SCREENAWARE_ENCRYPTION_KEY": "top-secret-key-9"})
    assert config.calendar_sync == 900
    assert "top-secret-key-9" not in repr(config)
    for name, value in (("CALENDAR_SYNC", "0"), ("CALENDAR_TIMEOUT", "0"),
                        ("CALENDAR_MAX_BYTES", "10")):  # fmt: skip
        with pytest.raises(ConfigError):
            Config.load(environ={f"SCREENAWARE_{name}": value})


async def test_a_calendar_beyond_the_bounds_is_refused_in_words(api: Api, ics: IcsServer) -> None:
    headers = await api.new_user(USER)
    ics.body = calendar({
        str(i): vevent(f"long{i}@test", ["SUMMARY:Marathon", "DTSTART:20261129T180000Z",
                                          "DTEND:20261130T180000Z"])
        for i in range(40)
    })  # fmt: skip
    state = await connect(api, headers, url=ics.url)
    assert state["connected"] is False
    assert state["lastError"] == "the calendar's events overlap too much (over 31 days of them)"
    assert (await meeting_ms(api, headers))["category"] == 0

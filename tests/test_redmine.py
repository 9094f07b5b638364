"""The Redmine integration against a real Redmine (Debian's ``redmine`` with
``redmine-sqlite``), run by the tests from a private copy: its own code tree,
database file, configuration and port, never the machine's.

Issues assigned to the user in mapped projects must become tasks and follow
Redmine (renamed, closed, reassigned); a day's time must be booked once per
project and booked again by updating the same entries; the key never comes back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from falcon import testing

from screenaware.app import create_app
from screenaware.config import Config, ConfigError
from screenaware.integrations.redmine import RedmineClient, RedmineError, state_key
from screenaware.integrations.store import connected_users_key, integration_key
from screenaware.storage.localservers import free_port
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Api,
    FakeClock,
    Servers,
    dead_url,
    stored_values,
)

UTC = dt.UTC
DAY = "2026-11-30"
USER = "ann@example.org"
REDMINE = Path("/usr/share/redmine")
# Where Debian's postinst leaves the migrated database with the default data
# (trackers, statuses, roles, activities); copied, never opened in place.
MACHINE_DB = Path("/var/lib/dbconfig-common/sqlite3/redmine/instances/default/redmine_default")
START_TIMEOUT = 60.0


@dataclass
class Redmine:
    """A running Redmine and its two users: the admin (sets projects up) and
    Ann (whose key ScreenAware gets)."""

    url: str
    admin_key: str
    user_id: int
    user_key: str
    role: int
    developer: int
    closed_status: int

    def call(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        result = httpx.request(
            method, self.url + path, json=body, timeout=30,
            headers={"X-Redmine-API-Key": key or self.admin_key},
        )  # fmt: skip
        assert result.status_code < 300, (method, path, result.status_code, result.text)
        return result.json() if result.content.strip() else None

    def project(self, name: str, role: int | None = None) -> int:
        """A new project with Ann as a manager (Redmine's default Developer may log
        time but not edit it: the manager may also book a day again); returns its id."""
        ident = "p" + uuid.uuid4().hex[:12]
        created = self.call("POST", "/projects.json",
                            {"project": {"name": name, "identifier": ident}})  # fmt: skip
        pid = int(created["project"]["id"])
        member = {"membership": {"user_id": self.user_id, "role_ids": [role or self.role]}}
        self.call("POST", f"/projects/{pid}/memberships.json", member)
        return pid

    def issue(self, project: int, subject: str, assigned: bool = True) -> int:
        body: dict[str, Any] = {"project_id": project, "subject": subject}
        if assigned:
            body["assigned_to_id"] = self.user_id
        return int(self.call("POST", "/issues.json", {"issue": body})["issue"]["id"])

    def entries(self, project: int) -> list[dict[str, Any]]:
        found = self.call("GET", f"/time_entries.json?project_id={project}&limit=100")
        return list(found["time_entries"])


def _env(app: Path) -> dict[str, str]:
    return {**os.environ, "RAILS_ENV": "production", "BUNDLE_GEMFILE": str(app / "Gemfile"),
            "REDMINE_INSTANCE": "default", "REDMINE_LANG": "en"}  # fmt: skip


def _prepare(base: Path) -> tuple[Path, str]:
    """A private Redmine tree under ``base`` with its own instance (database,
    configuration, logs); returns the tree and the admin's new API key."""
    app = base / "app"
    shutil.copytree(REDMINE, app, symlinks=True)
    # Debian's tree links the instance, the configuration and the gem lock to the
    # machine's: the copy gets its own.
    for link in ("instances", "Gemfile.lock", "config/database.yml"):
        (app / link).unlink()
    gemfile = app / "Gemfile"
    gemfile.write_text(gemfile.read_text().replace(f"{REDMINE}/", f"{app}/"))
    # Ruby 3 has no webrick of its own; Debian's ruby-webrick provides the gem.
    (app / "Gemfile.local").write_text('gem "webrick"\n')
    instance = app / "instances" / "default"
    for sub in ("config", "log", "tmp", "files", "public"):
        (instance / sub).mkdir(parents=True)
    database = base / "redmine.sqlite3"
    (instance / "config" / "database.yml").write_text(
        f"production:\n  adapter: sqlite3\n  database: {database}\n  timeout: 5000\n"
    )
    (instance / "config" / "secret_key.txt").write_text(secrets.token_hex(32))
    if os.access(MACHINE_DB, os.R_OK):
        shutil.copyfile(MACHINE_DB, database)
    else:
        # Not readable here (not root): the same schema and default data, made anew.
        # (Two runs: in one, the data task would see the schema before the migration.)
        for task in ("db:migrate", "redmine:load_default_data"):
            subprocess.run(
                ["ruby", "bin/rails", task], cwd=app, env=_env(app), check=True, timeout=300,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
    admin_key = secrets.token_hex(20)
    now = dt.datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(database) as db:
        # Without the browser: the REST API on, and an API key for the admin.
        db.execute("DELETE FROM settings WHERE name = 'rest_api_enabled'")
        db.execute(
            "INSERT INTO settings (name, value, updated_on) VALUES ('rest_api_enabled', '1', ?)",
            (now,),
        )
        db.execute(
            "INSERT INTO tokens (user_id, action, value, created_on, updated_on)"
            " SELECT id, 'api', ?, ?, ? FROM users WHERE login = 'admin'",
            (admin_key, now, now),
        )
    db.close()
    return app, admin_key


@pytest.fixture(scope="session")
def redmine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redmine]:
    """Redmine (WEBrick) on a free port from a private copy; stopped by pid."""
    base = tmp_path_factory.mktemp("redmine")
    app, admin_key = _prepare(base)
    port = free_port()
    log = (base / "server.log").open("wb")
    proc = subprocess.Popen(
        ["ruby", "bin/rails", "server", "-u", "webrick", "-p", str(port), "-b", "127.0.0.1",
         "-P", str(base / "server.pid")],
        cwd=app, env=_env(app), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(url + "/projects.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                tail = (base / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Redmine did not start:\n{tail}")
            time.sleep(0.2)
        server = Redmine(url, admin_key, 0, "", 0, 0, 0)
        login = "ann" + uuid.uuid4().hex[:6]
        ann = server.call("POST", "/users.json", {"user": {
            "login": login, "firstname": "Ann", "lastname": "Example",
            "mail": f"{login}@example.org", "password": "redmine-password-1"}})["user"]  # fmt: skip
        roles = server.call("GET", "/roles.json")["roles"]
        statuses = server.call("GET", "/issue_statuses.json")["issue_statuses"]
        server.user_id = int(ann["id"])
        server.user_key = str(ann["api_key"])
        server.role = next(int(r["id"]) for r in roles if r["name"] == "Manager")
        server.developer = next(int(r["id"]) for r in roles if r["name"] == "Developer")
        server.closed_status = next(int(s["id"]) for s in statuses if s["is_closed"])
        yield server
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2026, 11, 30, 18, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def identity_config(config: Config) -> Config:
    return config.replace(
        admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD, jwt_ttl=7 * 86400, redmine_sync=1,
        redmine_timeout=10.0,
    )  # fmt: skip


# --- helpers -------------------------------------------------------------------


async def call(
    api: Api, headers: dict[str, str], method: str, path: str, body: Any = None, **params: Any
) -> testing.Result:
    return await api.client.simulate_request(
        method, path, json=body, headers=headers, params=params or None
    )


async def ok(
    api: Api, headers: dict[str, str], method: str, path: str, body: Any = None, **params: Any
) -> Any:
    result = await call(api, headers, method, path, body, **params)
    assert result.status_code in (200, 201), (method, path, result.text)
    return result.json


async def connect(api: Api, headers: dict[str, str], url: str, key: str, **more: Any) -> Any:
    return await ok(api, headers, "PUT", "/api/integrations/redmine",
                    {"url": url, "apiKey": key, **more})  # fmt: skip


async def new_project(api: Api, headers: dict[str, str], name: str, keyword: str) -> str:
    result = await call(api, headers, "POST", "/api/projects",
                        {"name": name, "keywords": [keyword]})  # fmt: skip
    assert result.status_code == 201, result.text
    return str(result.headers["location"].rsplit("/", 1)[1])


async def work(api: Api, headers: dict[str, str], at: str, title: str, seconds: int) -> None:
    """``seconds`` of focused work on a window titled ``title`` from ``at``."""
    start = dt.datetime.fromisoformat(at)
    body = [
        {"timeTaken": (start + dt.timedelta(seconds=10 * (i + 1))).isoformat(),
         "durationMs": 10_000,
         "windows": [{"processName": "code", "title": title, "isFocused": True}]}
        for i in range(seconds // 10)
    ]  # fmt: skip
    for chunk in range(0, len(body), 500):
        result = await call(api, headers, "POST", "/api/snapshots", body[chunk : chunk + 500])
        assert result.status_code == 200, result.text


async def tasks(api: Api, headers: dict[str, str]) -> dict[str, str]:
    """Task title → project uuid."""
    return {t["title"]: t["projectUuid"] for t in await ok(api, headers, "GET", "/api/tasks")}


async def state(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    return dict((await ok(api, headers, "GET", "/api/integrations"))["redmine"])


async def wait_for(predicate: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {what}")


# --- tasks in --------------------------------------------------------------------


async def test_issues_of_mapped_projects_become_tasks_and_follow_redmine(
    api: Api, redmine: Redmine, clock: FakeClock, servers: Servers
) -> None:
    headers = await api.new_user(USER)
    acme_rm, beta_rm, other_rm = (redmine.project(n) for n in ("Acme", "Beta Site", "Other"))
    fix = redmine.issue(acme_rm, "Fix the login")
    docs = redmine.issue(acme_rm, "Write the docs")
    redmine.issue(acme_rm, "Someone else's", assigned=False)
    launch = redmine.issue(beta_rm, "Launch")
    redmine.issue(other_rm, "Not mapped")

    answer = await connect(api, headers, redmine.url, redmine.user_key)
    assert answer["connected"] is True and answer["lastError"] is None, answer
    assert answer["status"] == "connected"
    assert await tasks(api, headers) == {}  # nothing mapped yet

    acme = await new_project(api, headers, "Acme", "acme")
    mapped = await ok(api, headers, "PUT", "/api/integrations/redmine/mapping",
                      {str(acme_rm): acme, str(beta_rm): "new"})  # fmt: skip
    beta = mapped["mapping"][str(beta_rm)]
    assert mapped["mapping"] == {str(acme_rm): acme, str(beta_rm): beta}
    listed = {p["id"]: p for p in mapped["projects"]}
    assert listed[acme_rm]["projectUuid"] == acme and listed[other_rm]["projectUuid"] is None
    assert listed[beta_rm]["name"] == "Beta Site"
    # "new" made a ScreenAware project named after the Redmine one.
    assert (await ok(api, headers, "GET", f"/api/projects/{beta}"))["name"] == "Beta Site"
    assert await tasks(api, headers) == {
        f"#{fix} Fix the login": acme, f"#{docs} Write the docs": acme, f"#{launch} Launch": beta,
    }  # fmt: skip
    assert (await ok(api, headers, "GET", "/api/integrations/redmine/mapping"))[
        "mapping"
    ] == mapped["mapping"]

    # Redmine changes: renamed, closed, reassigned away, a new one, and one moved
    # from Acme to Beta. The periodic sync follows.
    redmine.call("PUT", f"/issues/{fix}.json", {"issue": {"subject": "Fix the sign-in"}})
    redmine.call("PUT", f"/issues/{docs}.json", {"issue": {"status_id": redmine.closed_status}})
    redmine.call("PUT", f"/issues/{launch}.json", {"issue": {"project_id": acme_rm}})
    late = redmine.issue(beta_rm, "Late one")
    synced = (await state(api, headers))["lastSync"]
    clock.advance(5)

    async def followed() -> bool:
        return bool((await state(api, headers))["lastSync"] != synced)

    await wait_for(followed, "periodic sync")
    assert await tasks(api, headers) == {
        f"#{fix} Fix the sign-in": acme, f"#{launch} Launch": acme, f"#{late} Late one": beta,
    }  # fmt: skip
    # The same task followed the rename (not a new one).
    ids = {t["title"]: t["uuid"] for t in await ok(api, headers, "GET", "/api/tasks")}
    synced = (await state(api, headers))["lastSync"]
    clock.advance(5)
    await wait_for(followed, "periodic sync")
    assert {t["title"]: t["uuid"] for t in await ok(api, headers, "GET", "/api/tasks")} == ids

    # Unmapping Beta takes its tasks away; disconnecting with purge, the rest.
    await ok(api, headers, "PUT", "/api/integrations/redmine/mapping",
             {str(acme_rm): acme, str(beta_rm): None})  # fmt: skip
    assert set(await tasks(api, headers)) == {f"#{fix} Fix the sign-in", f"#{launch} Launch"}
    await ok(api, headers, "POST", "/api/tasks", {"title": "My own", "projectUuid": acme})
    gone = await ok(api, headers, "DELETE", "/api/integrations/redmine", purge="true")
    assert gone["connected"] is False and gone["status"] == "not connected"
    assert await tasks(api, headers) == {"My own": acme}

    # The key never came back and is stored encrypted.
    for key, raw in stored_values(servers.redis_url).items():
        assert redmine.user_key.encode() not in raw, key


async def test_disconnecting_without_purge_keeps_the_tasks(api: Api, redmine: Redmine) -> None:
    headers = await api.new_user(USER)
    rm = redmine.project("Kept")
    issue = redmine.issue(rm, "Stays")
    await connect(api, headers, redmine.url, redmine.user_key)
    await ok(api, headers, "PUT", "/api/integrations/redmine/mapping", {str(rm): "new"})
    assert list(await tasks(api, headers)) == [f"#{issue} Stays"]
    await ok(api, headers, "DELETE", "/api/integrations/redmine")
    assert list(await tasks(api, headers)) == [f"#{issue} Stays"]
    assert (await state(api, headers))["status"] == "not connected"
    result = await call(api, headers, "GET", "/api/integrations/redmine/mapping")
    assert result.status_code == 409, result.text


async def test_deleting_a_user_forgets_their_redmine(
    redis_client: redis.Redis, api: Api, redmine: Redmine
) -> None:
    headers = await api.new_user(USER)
    user = (await api.me(headers)).json["uuid"]
    rm = redmine.project("Gone")
    redmine.issue(rm, "Left behind")
    await connect(api, headers, redmine.url, redmine.user_key)
    await ok(api, headers, "PUT", "/api/integrations/redmine/mapping", {str(rm): "new"})
    held = (integration_key(user, "redmine"), state_key(user))
    assert redis_client.exists(*held) == 2
    assert redis_client.sismember(connected_users_key("redmine"), user)

    deleted = await api.client.simulate_delete(f"/api/users/{user}", headers=api.admin)
    assert deleted.status_code == 200, deleted.text
    # The encrypted API key, the mapping and links, and the listing go with the user.
    assert redis_client.exists(*held) == 0
    assert not redis_client.sismember(connected_users_key("redmine"), user)
    assert not [k for k in redis_client.scan_iter(match=f"*{user}*") if "lock" not in k]


# --- time out ----------------------------------------------------------------------


async def test_a_day_is_booked_once_and_rebooked_in_place(api: Api, redmine: Redmine) -> None:
    headers = await api.new_user(USER)
    acme_rm, beta_rm, idle_rm = (redmine.project(n) for n in ("Acme", "Beta", "Idle"))
    acme = await new_project(api, headers, "Acme", "acme")
    beta = await new_project(api, headers, "Beta", "beta")
    idle = await new_project(api, headers, "Idle", "idle")
    await connect(api, headers, redmine.url, redmine.user_key)
    await ok(api, headers, "PUT", "/api/integrations/redmine/mapping",
             {str(acme_rm): acme, str(beta_rm): beta, str(idle_rm): idle})  # fmt: skip
    await work(api, headers, "2026-11-30T09:00:00+00:00", "acme.py", 1800)  # 0.5 h
    await work(api, headers, "2026-11-30T10:00:00+00:00", "beta.py", 900)  # 0.25 h
    await work(api, headers, "2026-11-29T10:00:00+00:00", "acme.py", 600)  # another day

    booked = await ok(api, headers, "POST", "/api/integrations/redmine/time-entries",
                      {"date": DAY})  # fmt: skip
    assert booked["date"] == DAY
    got = {e["redmineProjectId"]: e for e in booked["entries"]}
    assert {k: (v["projectUuid"], v["hours"]) for k, v in got.items()} == {
        acme_rm: (acme, 0.5), beta_rm: (beta, 0.25)}  # fmt: skip
    [acme_entry] = redmine.entries(acme_rm)
    [beta_entry] = redmine.entries(beta_rm)
    assert redmine.entries(idle_rm) == []
    assert acme_entry["hours"] == 0.5 and acme_entry["spent_on"] == DAY
    assert acme_entry["id"] == got[acme_rm]["timeEntryId"]
    assert acme_entry["user"]["id"] == redmine.user_id
    assert acme_entry["comments"].startswith("ScreenAware:")
    assert beta_entry["hours"] == 0.25

    # More Acme time, then the day again: the same entries, the new hours.
    await work(api, headers, "2026-11-30T11:00:00+00:00", "acme.py", 900)
    again = await ok(api, headers, "POST", "/api/integrations/redmine/time-entries",
                     {"date": DAY})  # fmt: skip
    assert {e["redmineProjectId"]: e["hours"] for e in again["entries"]} == {
        acme_rm: 0.75, beta_rm: 0.25}  # fmt: skip
    assert [(e["id"], e["hours"]) for e in redmine.entries(acme_rm)] == [(acme_entry["id"], 0.75)]
    assert [(e["id"], e["hours"]) for e in redmine.entries(beta_rm)] == [(beta_entry["id"], 0.25)]

    # An entry deleted in Redmine is booked anew; a project unmapped loses its entry.
    redmine.call("DELETE", f"/time_entries/{beta_entry['id']}.json")
    await ok(api, headers, "PUT", "/api/integrations/redmine/mapping",
             {str(beta_rm): beta, str(idle_rm): idle})  # fmt: skip
    third = await ok(api, headers, "POST", "/api/integrations/redmine/time-entries",
                     {"date": DAY})  # fmt: skip
    assert [(e["redmineProjectId"], e["hours"]) for e in third["entries"]] == [(beta_rm, 0.25)]
    assert redmine.entries(acme_rm) == []
    assert [e["hours"] for e in redmine.entries(beta_rm)] == [0.25]
    # Beta's Redmine project now maps to a project without time that day: its
    # entry goes.
    await ok(api, headers, "PUT", "/api/integrations/redmine/mapping", {str(beta_rm): idle})
    fourth = await ok(api, headers, "POST", "/api/integrations/redmine/time-entries",
                      {"date": DAY})  # fmt: skip
    assert fourth["entries"] == [] and redmine.entries(beta_rm) == []
    listed = await state(api, headers)
    assert listed["connected"] is True and listed["lastError"] is None


async def test_the_daily_job_books_the_previous_day_once(
    api: Api, redmine: Redmine, clock: FakeClock
) -> None:
    # The user's own zone decides the days: 08:00 in Berlin is the next morning.
    headers = await api.new_user(USER, timezone="Europe/Berlin")
    rm = redmine.project("Daily")
    acme = await new_project(api, headers, "Acme", "acme")
    await work(api, headers, "2026-11-30T09:00:00+00:00", "acme.py", 360)  # 0.1 h
    await connect(api, headers, redmine.url, redmine.user_key, dailyBooking=True)
    await ok(api, headers, "PUT", "/api/integrations/redmine/mapping", {str(rm): acme})
    # Still on the 30th: the day is not over, nothing is booked.
    synced = (await state(api, headers))["lastSync"]
    clock.advance(5)

    async def synced_again() -> bool:
        return bool((await state(api, headers))["lastSync"] != synced)

    await wait_for(synced_again, "periodic sync")
    assert redmine.entries(rm) == []
    # The next morning the periodic sync books the 30th, once.
    clock.now = dt.datetime(2026, 12, 1, 7, 0, tzinfo=UTC).timestamp()  # 08:00 in Berlin

    async def booked() -> bool:
        return bool(redmine.entries(rm))

    # Generous: under load one sync round (several requests to WEBrick) took over 20 s.
    await wait_for(booked, "daily booking", timeout=90)
    [entry] = redmine.entries(rm)
    assert entry["spent_on"] == DAY and entry["hours"] == 0.1
    for _ in range(3):
        synced = (await state(api, headers))["lastSync"]
        clock.advance(5)
        await wait_for(synced_again, "periodic sync")
    assert [e["id"] for e in redmine.entries(rm)] == [entry["id"]]


# --- errors --------------------------------------------------------------------------


async def test_a_wrong_key_is_not_connected_with_the_reason(api: Api, redmine: Redmine) -> None:
    headers = await api.new_user(USER)
    answer = await connect(api, headers, redmine.url, "0" * 40)
    assert answer["connected"] is False
    assert answer["lastError"] == "401 from the Redmine server"
    assert answer["status"] == "not connected: 401 from the Redmine server"
    assert (await state(api, headers))["lastError"] == "401 from the Redmine server"
    result = await call(api, headers, "POST", "/api/integrations/redmine/time-entries",
                        {"date": DAY})  # fmt: skip
    assert result.status_code == 409 and result.json["message"] == "401 from the Redmine server"
    # The right key connects (and a key of another form is no secret in the answer).
    answer = await connect(api, headers, redmine.url, redmine.user_key)
    assert answer["connected"] is True
    text = (await call(api, headers, "GET", "/api/integrations")).text
    assert redmine.user_key not in text and redmine.url not in text


async def test_redmine_down_is_said_in_words(api: Api, redmine: Redmine) -> None:
    headers = await api.new_user(USER)
    down = dead_url("http")
    answer = await connect(api, headers, down, redmine.user_key)
    assert answer["connected"] is False
    assert answer["lastError"] == "the Redmine server cannot be reached (ConnectError)"
    result = await call(api, headers, "PUT", "/api/integrations/redmine/mapping", {"1": "new"})
    assert result.status_code == 409, result.text
    assert result.json["message"] == "the Redmine server cannot be reached (ConnectError)"
    result = await call(api, headers, "GET", "/api/integrations/redmine/mapping")
    assert result.status_code == 409, result.text
    # A wrong address on the Redmine server: 404 to /users/current.json.
    not_redmine = await connect(api, headers, redmine.url + "/no-such-prefix", redmine.user_key)
    assert not_redmine["lastError"] == "404 from the Redmine server"


async def test_bad_mapping_input_is_refused_and_changes_nothing(api: Api, redmine: Redmine) -> None:
    headers = await api.new_user(USER)
    rm = redmine.project("Checked")
    acme = await new_project(api, headers, "Acme", "acme")
    path = "/api/integrations/redmine/mapping"
    # Not connected yet: 409.
    result = await call(api, headers, "PUT", path, {str(rm): acme})
    assert result.status_code == 409, result.text
    await connect(api, headers, redmine.url, redmine.user_key)
    await ok(api, headers, "PUT", path, {str(rm): acme})
    bad: list[Any] = [[], {"abc": acme}, {"0": acme}, {str(rm): "not-a-uuid"}, {str(rm): 5}, "x"]
    for body in bad:
        result = await call(api, headers, "PUT", path, body)
        assert result.status_code == 400, (body, result.text)
        assert "mapping" in result.json["errors"], result.json
    unknown = str(uuid.uuid4())
    result = await call(api, headers, "PUT", path, {str(rm): unknown})
    assert result.status_code == 422, result.text
    assert result.json["errors"] == {str(rm): ["Unknown project."]}
    other = redmine.project("Other")
    result = await call(api, headers, "PUT", path, {str(rm): acme, str(other): acme})
    assert result.status_code == 422 and str(other) in result.json["errors"], result.text
    result = await call(api, headers, "PUT", path, {"999999": acme})
    assert result.status_code == 422, result.text
    assert result.json["errors"] == {"999999": ["Unknown Redmine project."]}
    assert (await ok(api, headers, "GET", path))["mapping"] == {str(rm): acme}
    # A new key for the same Redmine keeps the mapping; another address starts anew.
    await connect(api, headers, redmine.url + "/", redmine.user_key)
    assert (await ok(api, headers, "GET", path))["mapping"] == {str(rm): acme}
    await connect(api, headers, redmine.url.replace("127.0.0.1", "localhost"), redmine.user_key)
    assert (await ok(api, headers, "GET", path))["mapping"] == {}
    await ok(api, headers, "PUT", path, {str(rm): acme})
    for body in ({}, {"date": "2026-02-30"}, {"date": "30.11.2026"}):
        result = await call(api, headers, "POST", "/api/integrations/redmine/time-entries", body)
        assert result.status_code == 400, (body, result.text)
    for body in ({"url": redmine.url}, {"url": "ftp://x", "apiKey": "k"},
                 {"url": redmine.url, "apiKey": "has space"}):  # fmt: skip
        result = await call(api, headers, "PUT", "/api/integrations/redmine", body)
        assert result.status_code == 400, (body, result.text)
    assert (await state(api, headers))["connected"] is True


async def test_a_role_that_may_not_edit_time_is_said_in_words(api: Api, redmine: Redmine) -> None:
    headers = await api.new_user(USER)
    rm = redmine.project("Developer only", role=redmine.developer)
    acme = await new_project(api, headers, "Acme", "acme")
    await connect(api, headers, redmine.url, redmine.user_key)
    await ok(api, headers, "PUT", "/api/integrations/redmine/mapping", {str(rm): acme})
    await work(api, headers, "2026-11-30T09:00:00+00:00", "acme.py", 360)
    path, body = "/api/integrations/redmine/time-entries", {"date": DAY}
    assert [e["hours"] for e in (await ok(api, headers, "POST", path, body))["entries"]] == [0.1]
    result = await call(api, headers, "POST", path, body)
    assert result.status_code == 409, result.text
    reason = "403 from the Redmine server (your Redmine role may not edit your own time entries)"
    assert result.json["message"] == reason
    listed = await state(api, headers)
    assert listed["connected"] is False and listed["lastError"] == reason
    assert [e["hours"] for e in redmine.entries(rm)] == [0.1]


async def test_booking_without_a_connection_is_409(api: Api) -> None:
    headers = await api.new_user(USER)
    result = await call(api, headers, "POST", "/api/integrations/redmine/time-entries",
                        {"date": DAY})  # fmt: skip
    assert result.status_code == 409 and result.json["message"] == "Redmine is not connected"
    result = await call(api, headers, "DELETE", "/api/integrations/redmine")
    assert result.status_code == 200 and result.json["connected"] is False


async def test_two_app_instances_book_a_day_once(
    api: Api, redmine: Redmine, identity_config: Config, clock: FakeClock
) -> None:
    headers = await api.new_user(USER)
    rm = redmine.project("Twice")
    acme = await new_project(api, headers, "Acme", "acme")
    await connect(api, headers, redmine.url, redmine.user_key)
    await ok(api, headers, "PUT", "/api/integrations/redmine/mapping", {str(rm): acme})
    await work(api, headers, "2026-11-30T09:00:00+00:00", "acme.py", 720)
    async with testing.ASGIConductor(create_app(identity_config, clock=clock)) as other:
        path, body = "/api/integrations/redmine/time-entries", {"date": DAY}
        results = await asyncio.gather(
            api.client.simulate_post(path, json=body, headers=headers),
            other.simulate_post(path, json=body, headers=headers),
        )
    assert [r.status_code for r in results] == [200, 200]
    assert [e["hours"] for e in redmine.entries(rm)] == [0.2]


async def test_the_client_bounds_and_words(redmine: Redmine) -> None:
    async with RedmineClient(redmine.url, redmine.user_key, timeout=10, max_bytes=4096) as c:
        assert await c.current_user() == redmine.user_id
        assert await c.activity() > 0
    # An answer larger than the bound is refused, not read whole.
    async with RedmineClient(redmine.url, redmine.user_key, timeout=10, max_bytes=100) as c:
        with pytest.raises(RedmineError, match="larger than 100 bytes"):
            await c.current_user()
    async with RedmineClient("http://[::1", "k", timeout=1, max_bytes=1024) as c:
        with pytest.raises(RedmineError, match="not a valid Redmine address"):
            await c.current_user()
    assert "secret" not in repr(RedmineClient(redmine.url, "secret", timeout=1, max_bytes=1024))


@dataclass
class Stub:
    """Not Redmine: an HTTP server answering every GET with ``body`` after ``delay``."""

    url: str = ""
    body: bytes = b""
    delay: float = 0.0


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(state.delay)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


async def test_what_is_not_redmine_is_said_in_words(stub: Stub) -> None:
    for body, reason in ((b"<html>hello</html>", "the answer is not JSON"),
                         (b'{"user": {}}', "unexpected answer"),
                         (b'{"projects": "x"}', "unexpected answer")):  # fmt: skip
        stub.body = body
        async with RedmineClient(stub.url, "k", timeout=5, max_bytes=4096) as client:
            with pytest.raises(RedmineError, match=reason):
                await client.current_user()
            with pytest.raises(RedmineError, match=reason):
                await client.projects()
    stub.body = b'{"time_entry_activities": [{"id": 1, "active": false}]}'
    async with RedmineClient(stub.url, "k", timeout=5, max_bytes=4096) as client:
        with pytest.raises(RedmineError, match="no time entry activity"):
            await client.activity()
    stub.body, stub.delay = b"{}", 1.0
    async with RedmineClient(stub.url, "k", timeout=0.2, max_bytes=4096) as client:
        with pytest.raises(RedmineError, match="did not answer in time"):
            await client.current_user()


async def test_redmine_refusals_carry_its_reasons(redmine: Redmine) -> None:
    rm = redmine.project("Refusing")
    async with RedmineClient(redmine.url, redmine.user_key, timeout=10, max_bytes=1 << 20) as c:
        with pytest.raises(RedmineError, match=r"^422 from the Redmine server: Activity"):
            await c.create_entry(rm, dt.date(2026, 11, 30), 1.0, 999_999, "x")
        entry = await c.create_entry(rm, dt.date(2026, 11, 30), 1.0, await c.activity(), "x")
        with pytest.raises(RedmineError, match=r"^422 from the Redmine server: Hours"):
            await c.update_entry(entry, -1.0, "x")
        await c.delete_entry(entry)
        await c.delete_entry(entry)  # gone already: fine
        assert await c.update_entry(entry, 1.0, "x") is False


async def test_credentials_of_another_key_are_said_in_words(
    api: Api, identity_config: Config, clock: FakeClock
) -> None:
    headers = await api.new_user(USER)
    down = dead_url("http")
    await connect(api, headers, down, "key-1")
    rotated = identity_config.replace(encryption_key="another-encryption-key")
    async with testing.ASGIConductor(create_app(rotated, clock=clock)) as other:
        result = await other.simulate_post(
            "/api/integrations/redmine/time-entries", json={"date": DAY}, headers=headers
        )
        assert result.status_code == 409, result.text
        assert "cannot be decrypted" in result.json["message"]
        listed = (await other.simulate_get("/api/integrations", headers=headers)).json
        assert "cannot be decrypted" in listed["redmine"]["lastError"]
        # Connecting again with the new key works (and starts anew).
        again = await other.simulate_put(
            "/api/integrations/redmine", json={"url": down, "apiKey": "key-2"}, headers=headers
        )
        assert again.status_code == 200, again.text
        assert again.json["lastError"].startswith("the Redmine server cannot be reached")


def test_the_new_settings_are_checked() -> None:
    config = Config.load(environ={})
    assert (config.redmine_sync, config.redmine_timeout) == (900, 20.0)
    for name, value in (("REDMINE_SYNC", "0"), ("REDMINE_TIMEOUT", "0"),
                        ("REDMINE_MAX_BYTES", "10")):  # fmt: skip
        with pytest.raises(ConfigError):
            Config.load(environ={f"SCREENAWARE_{name}": value})

"""The web app at /app/ in headless Chromium, against gunicorn, influxd and redis-server."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

from screenaware.config import Config
from tests.browser import ROOT, screenshot_file
from tests.service import Service, run_service

pytestmark = pytest.mark.browser

ADMIN, ADMIN_PASSWORD = "root@example.org", "root-password-1"
USER, USER_PASSWORD = "ann@example.org", "ann-password-1"
P1 = "0fcdd1ec-05f7-49cc-931f-530c2c2f085c"
P2 = "98254cc5-b623-43b6-8537-d9e0122cf975"
P3 = "fe79e96c-a8ff-4ead-90eb-2c799db17439"
SIZES = {"wide": (1280, 800), "phone": (390, 844)}
# scripts/setup --test installs it from npm (git-ignored); it is injected, never served.
AXE = ROOT / ".test-deps" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def service(config: Config, tmp_path: Path) -> Iterator[Service]:
    cfg = config.replace(admin_email=ADMIN, admin_password=ADMIN_PASSWORD, login_max_failures=3)
    with run_service(cfg, tmp_path, workers=1) as svc:
        yield svc


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        yield client


async def bearer(http: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    resp = await http.post("/api/auth/local", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def snaps(start: dt.datetime, minutes: int, app: str, title: str) -> list[dict[str, Any]]:
    """10-second snapshots from ``start`` for ``minutes``."""
    return [
        {
            "timeTaken": (start + dt.timedelta(seconds=10 * (i + 1))).isoformat(),
            "windows": [{"processName": app, "title": title, "isFocused": True}],
        }
        for i in range(minutes * 6)
    ]


@pytest.fixture
async def user_day(http: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """A user (zone UTC) with three projects and yesterday's activity loaded through the API.

    10:00-10:40 influx (keyword), 10:40-10:45 screenaware, 11:00-11:25 influx: the
    screenaware stretch is its own stream (long enough), an idle gap before 11:00.
    """
    admin = await bearer(http, ADMIN, ADMIN_PASSWORD)
    made = await http.post(
        "/api/users",
        json={"email": USER, "password": USER_PASSWORD, "timezone": "UTC"},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    headers = {"Authorization": f"Bearer {made.json()['token']}"}
    for uuid, name, keyword in ((P1, "Influx", "influxdb"), (P2, "ScreenAware", "screenaware"),
                                (P3, "Unruled", None)):  # fmt: skip
        body = {"uuid": uuid, "name": name, "keywords": [keyword] if keyword else []}
        assert (await http.post("/api/projects", json=body, headers=headers)).status_code == 201
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    batch = (
        snaps(day, 40, "code", "influxdb tuning")
        + snaps(day + dt.timedelta(minutes=40), 5, "chrome", "screenaware PR")
        + snaps(day + dt.timedelta(minutes=60), 25, "code", "influxdb tuning")
    )
    resp = await http.post("/api/snapshots", json=batch, headers=headers)
    assert resp.status_code == 200, resp.text
    return headers, day.date().isoformat()


async def times(http: httpx.AsyncClient, headers: dict[str, str], date: str) -> dict[str, int]:
    resp = await http.get(
        "/api/times",
        params={
            "start": f"{date}T00:00:00.000Z",
            "end": f"{date}T23:59:59.999Z",
            "groupBy": "projectUuid",
        },
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    return {k: v["sum"] for k, v in resp.json()["grouped"].items() if v["sum"]}


async def sign_in(page: Page, url: str, email: str, password: str) -> None:
    await page.goto(url + "/app/")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("link", name="Day")).to_be_visible()


async def ready(page: Page) -> None:
    await page.wait_for_selector("#view[data-ready=true]")


async def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page as it is now."""
    assert AXE.is_file(), f"{AXE} is missing: run scripts/setup --test"
    if not await page.evaluate("typeof window.axe === 'object'"):
        # Through the DevTools protocol, which the page's CSP (script-src 'self') allows.
        await page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target)}))"""
    )
    return found


async def shots(page: Page, test: str, view: str) -> None:
    """The view at both sizes into var/screenshots/; axe-core finds nothing serious."""
    for size, (width, height) in SIZES.items():
        await page.set_viewport_size({"width": width, "height": height})
        path = screenshot_file(test, f"{view}-{size}")
        await page.screenshot(path=path, full_page=True)
        assert path.read_bytes().startswith(b"\x89PNG")
        assert await serious_violations(page) == [], (view, size)
    await page.set_viewport_size({"width": 1280, "height": 800})


async def api_status(page: Page, method: str, path: str) -> int:
    """The status of a request the page itself makes (its cookies, no CSRF header)."""
    status: int = await page.evaluate(
        "async ([method, path]) => (await fetch(path, {method})).status", [method, path]
    )
    return status


async def test_sign_in_day_totals_and_moving_a_stream(
    service: Service, http: httpx.AsyncClient, user_day: tuple[dict[str, str], str], page: Page
) -> None:
    headers, date = user_day
    before = await times(http, headers, date)
    assert before == {P1: 65 * 60_000, P2: 5 * 60_000}

    await page.goto(service.url + "/app/")
    await page.get_by_label("Email").fill(USER)
    await page.get_by_label("Password").fill("wrong password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Wrong email or password")
    await shots(page, "webapp", "sign-in")

    await page.get_by_label("Password").fill(USER_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("link", name="Day")).to_be_visible()
    for name in ("Week", "Projects", "Keys"):
        await expect(page.get_by_role("link", name=name)).to_be_visible()
    # The admin view is hidden from a user, and the API refuses the user too.
    await expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    assert await api_status(page, "GET", "/api/users") == 403
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["sa_session"]["httpOnly"] and cookies["sa_session"]["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie.includes('sa_session')") is False
    # A change without the CSRF header is refused even with the cookie.
    assert await api_status(page, "DELETE", f"/api/projects/{P3}") == 403

    await page.goto(f"{service.url}/app/#/day/{date}")
    await ready(page)
    await expect(page.locator("#day-total")).to_have_text("1 h 10 min")
    projects = page.locator(".totals-by-project li")
    await expect(projects).to_have_count(2)
    await expect(projects.nth(0)).to_contain_text("Influx")
    await expect(projects.nth(0)).to_contain_text("1 h 05 min")
    await expect(projects.nth(1)).to_contain_text("ScreenAware")
    await expect(projects.nth(1)).to_contain_text("5 min")
    await expect(page.locator(".totals-by-application li")).to_have_count(2)
    await expect(page.locator(".timeline button.gap")).not_to_have_count(0)
    await shots(page, "webapp", "day")

    # The ScreenAware stream moves to Unruled: the totals and GET /api/times follow.
    await page.get_by_role("button", name=re.compile(r"10:40.10:45 ScreenAware")).click()
    await expect(page.locator("#stream-details tbody tr")).to_have_count(1)
    await expect(page.locator("#stream-details tbody")).to_contain_text("chrome")
    await shots(page, "webapp", "day-stream")
    await page.get_by_label("Project", exact=True).select_option(label="Unruled")
    await expect(page.get_by_text("Moved to Unruled.")).to_be_visible()
    await expect(projects.nth(1)).to_contain_text("Unruled")
    assert await times(http, headers, date) == {P1: 65 * 60_000, P3: 5 * 60_000}

    # Arrow keys change the day.
    await page.locator("h1").click()
    await page.keyboard.press("ArrowLeft")
    await ready(page)
    expected = (dt.date.fromisoformat(date) - dt.timedelta(days=1)).isoformat()
    await expect(page.get_by_label("Date")).to_have_value(expected)
    await expect(page.get_by_text("No activity on this day.")).to_be_visible()

    await page.get_by_role("link", name="Week").click()
    await ready(page)
    await expect(page.get_by_role("heading", name="Week")).to_be_visible()
    await expect(page.locator("#period-table tbody tr")).to_have_count(7)
    await shots(page, "webapp", "week")


async def test_today_refreshes_itself_without_reload(
    service: Service, http: httpx.AsyncClient, user_day: tuple[dict[str, str], str], page: Page
) -> None:
    headers, _ = user_day
    # Playwright's clock drives the page's timers (the poll is every 30 s).
    await page.clock.install()
    await sign_in(page, service.url, USER, USER_PASSWORD)
    await ready(page)
    await expect(page.get_by_role("heading", name="Day")).to_be_visible()
    await expect(page.locator("#day-total")).to_have_text("0 s")
    await page.evaluate("window.__marker = 'same document'")

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # Today's, even in the first minutes after midnight (the view shows today).
    start = max(now - dt.timedelta(minutes=3), now.replace(hour=0, minute=0, second=0))
    batch = snaps(start, 2, "code", "influxdb tuning")
    assert (await http.post("/api/snapshots", json=batch, headers=headers)).status_code == 200
    await page.clock.run_for(31_000)
    await expect(page.locator("#view")).to_have_attribute("data-refreshed", "1")
    await expect(page.locator("#day-total")).not_to_have_text("0 s")
    await expect(page.locator(".totals-by-project li")).to_contain_text(["Influx"])
    assert await page.evaluate("window.__marker") == "same document"


async def test_keys_created_shown_once_and_revoked(
    service: Service, http: httpx.AsyncClient, user_day: tuple[dict[str, str], str], page: Page
) -> None:
    headers, _ = user_day
    await sign_in(page, service.url, USER, USER_PASSWORD)
    await page.get_by_role("link", name="Keys").click()
    await ready(page)
    await expect(page.get_by_text("No keys yet.")).to_be_visible()
    await page.get_by_label("Name", exact=True).fill("laptop")
    await page.get_by_role("button", name="Create key").click()
    command = page.locator("#sensor-command")
    await expect(command).to_be_visible()
    text = await command.text_content()
    match = re.fullmatch(
        rf"screenaware-sensor --server {re.escape(service.url)} --key ([0-9a-f-]{{36}})", text or ""
    )
    assert match, text
    # The key shown works as a sensor's credential.
    me = await http.get("/api/users/me", headers={"Authorization": f"Bearer {match[1]}"})
    assert me.status_code == 200 and me.json()["email"] == USER
    await expect(page.locator("#keys tbody tr")).to_have_count(1)
    await shots(page, "webapp", "keys")

    await page.get_by_role("button", name="Revoke laptop").click()
    await expect(page.get_by_text("Revoked laptop.")).to_be_visible()
    assert (await http.get("/api/keys", headers=headers)).json() == []
    gone = await http.get("/api/users/me", headers={"Authorization": f"Bearer {match[1]}"})
    assert gone.status_code == 401


async def test_project_crud(
    service: Service, http: httpx.AsyncClient, user_day: tuple[dict[str, str], str], page: Page
) -> None:
    headers, _ = user_day
    await sign_in(page, service.url, USER, USER_PASSWORD)
    await page.get_by_role("link", name="Projects").click()
    await ready(page)
    await expect(page.locator("#projects tbody tr")).to_have_count(3)

    await page.get_by_label("Name", exact=True).fill("Website")
    await page.get_by_label("Parent project").select_option(label="Influx")
    await page.get_by_label("Keywords (comma-separated)").fill("html, css")
    await page.get_by_label("Local paths (one per line)").fill("/home/ann/site")
    await page.get_by_role("button", name="Create project").click()
    await expect(page.get_by_text("Created Website.")).to_be_visible()
    listed = {p["name"]: p for p in (await http.get("/api/projects", headers=headers)).json()}
    site = listed["Website"]
    assert site["parentProject"] == P1
    assert site["keywords"] == ["html", "css"] and site["localPaths"] == ["/home/ann/site"]
    await shots(page, "webapp", "projects")

    await page.get_by_role("button", name="Edit Website").click()
    await page.get_by_label("Name", exact=True).fill("Web site")
    await page.get_by_role("button", name="Save project").click()
    await expect(page.get_by_text("Saved Web site.")).to_be_visible()
    resp = await http.get(f"/api/projects/{site['uuid']}", headers=headers)
    assert resp.json()["name"] == "Web site" and resp.json()["keywords"] == ["html", "css"]

    await page.get_by_role("button", name="Delete Web site").click()
    await expect(page.get_by_text("Deleted Web site.")).to_be_visible()
    names = {p["name"] for p in (await http.get("/api/projects", headers=headers)).json()}
    assert names == {"Influx", "ScreenAware", "Unruled"}


async def test_admin_link_and_sign_out(service: Service, page: Page) -> None:
    await sign_in(page, service.url, ADMIN, ADMIN_PASSWORD)
    await page.get_by_role("link", name="Admin").click()
    await ready(page)
    await expect(page.locator("#users tbody")).to_contain_text(ADMIN)
    await shots(page, "webapp", "admin")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    assert await api_status(page, "GET", "/api/users/me") == 401
    await page.reload()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    # The accessibility check can fail: a control without a label is caught.
    assert await serious_violations(page) == []
    await page.evaluate("document.querySelector('form').append(document.createElement('input'))")
    assert "label" in {v["id"] for v in await serious_violations(page)}


async def test_too_many_failures_say_when_to_retry(service: Service, browser: Browser) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    try:
        await page.goto(service.url + "/app/")
        await page.get_by_label("Email").fill(ADMIN)
        for _ in range(3):
            await page.get_by_label("Password").fill("wrong")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("alert")).to_have_text("Wrong email or password")
            await page.evaluate("document.getElementById('signin-status').replaceChildren()")
        await page.get_by_label("Password").fill(ADMIN_PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text(
            re.compile(r"Try again in \d+ seconds\.")
        )
    finally:
        await context.close()


async def test_app_files_and_headers(http: httpx.AsyncClient) -> None:
    page = await http.get("/app/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith(
        "default-src 'none'; script-src 'self'"
    )
    script = await http.get("/app/app.js")
    assert script.status_code == 200 and "text/javascript" in script.headers["content-type"]
    assert (await http.get("/app/nothing.js")).status_code == 404
    # The README's screenshots sit beside the app's files but are not served.
    assert (await http.get("/app/day-1280x800.png")).status_code == 404


def test_readme_screenshots_are_small_pngs() -> None:
    folder = ROOT / "screenaware" / "webapp" / "screenshots"
    sizes = {"day-1280x800.png": (1280, 800), "day-390x844.png": (390, 844)}
    assert sorted(p.name for p in folder.iterdir()) == sorted(sizes)
    for name, size in sizes.items():
        data = (folder / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) < 200_000, name
        assert (int.from_bytes(data[16:20]), int.from_bytes(data[20:24])) == size, name


async def grouped_times(
    http: httpx.AsyncClient, headers: dict[str, str], first: dt.date, last: dt.date, by: str
) -> dict[str, int]:
    """The non-zero sums of ``/api/times`` over whole UTC days, by ``by``."""
    resp = await http.get(
        "/api/times",
        params={
            "start": f"{first.isoformat()}T00:00:00.000Z",
            "end": f"{last.isoformat()}T23:59:59.999Z",
            "groupBy": by,
            "tz": "UTC",
        },
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    return {k: v["sum"] for k, v in resp.json()["grouped"].items() if v["sum"]}


async def shown_table(page: Page) -> dict[str, Any]:
    """The totals table of the week or month view: header, rows and footer, with ms."""
    table: dict[str, Any] = await page.evaluate(
        """() => {
            const t = document.getElementById("period-table");
            const cells = (row) => [...row.children].slice(1).map((c) => Number(c.dataset.ms));
            return {
                header: [...t.tHead.rows[0].cells].map((c) => c.textContent),
                keys: [...t.tHead.rows[0].cells].slice(1, -1).map((c) => c.dataset.key),
                rows: [...t.tBodies[0].rows].map((r) => [r.cells[0].textContent, ...cells(r)]),
                footer: cells(t.tFoot.rows[0]),
                texts: [...t.tFoot.rows[0].cells].slice(1).map((c) => c.textContent),
            };
        }"""
    )
    return table


def by_key(table: dict[str, Any]) -> dict[str, int]:
    """Footer totals by group key (``none`` is kept as it is)."""
    return dict(zip(table["keys"], table["footer"][:-1], strict=True))


async def test_week_and_month_grouping_and_csv(
    service: Service, http: httpx.AsyncClient, user_day: tuple[dict[str, str], str], page: Page
) -> None:
    headers, date = user_day
    day = dt.date.fromisoformat(date)
    today = dt.datetime.now(dt.UTC).date()
    await sign_in(page, service.url, USER, USER_PASSWORD)
    await page.get_by_role("link", name="Week").click()
    await ready(page)
    first = today - dt.timedelta(days=6)
    await expect(page.locator("#period-title")).to_have_text(f"{first} to {today}")
    table = await shown_table(page)
    assert [row[0] for row in table["rows"]] == [
        (first + dt.timedelta(days=i)).isoformat() for i in range(7)
    ]
    assert by_key(table) == await grouped_times(http, headers, first, today, "projectUuid")
    assert by_key(table) == {P1: 65 * 60_000, P2: 5 * 60_000}
    assert table["footer"][-1] == 70 * 60_000 and table["texts"][-1] == "1 h 10 min"
    assert table["header"] == ["Day", "Influx", "ScreenAware", "Total"]
    # Each day's row is that day's time; the bars follow it.
    row = next(r for r in table["rows"] if r[0] == date)
    assert row[1:] == [65 * 60_000, 5 * 60_000, 70 * 60_000]
    column = page.locator(f".chart .col[data-date='{date}'] .seg")
    await expect(column).to_have_count(2)
    await expect(page.locator(".chart .seg")).to_have_count(2)

    # The CSV is the table shown: same header, rows and footer, durations in minutes.
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download CSV").click()
    download = await info.value
    assert download.suggested_filename == f"screenaware-week-{first}-project.csv"
    text = Path(await download.path()).read_bytes().decode()
    lines = [line.split(",") for line in text.removesuffix("\r\n").split("\r\n")]
    assert lines[0] == ["Day", *(f"{h} (min)" for h in table["header"][1:])]
    expected = [
        [r[0], *(f"{ms / 60000:.2f}" for ms in r[1:])]
        for r in [*table["rows"], ["Total", *table["footer"]]]
    ]
    assert lines[1:] == expected
    assert lines[-1] == ["Total", "65.00", "5.00", "70.00"]
    await shots(page, "webapp", "week")

    # The switch: by application the groups, bars and table are the applications.
    await page.get_by_label("Application").check()
    await expect(page.locator("#period-table thead th")).to_have_text(
        ["Day", "code", "chrome", "Total"]
    )
    await ready(page)
    table = await shown_table(page)
    assert by_key(table) == await grouped_times(http, headers, first, today, "applicationUuid")
    await expect(page.locator(f".chart .col[data-date='{date}'] .seg")).to_have_count(2)
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download CSV").click()
    text = Path(await (await info.value).path()).read_bytes().decode()
    assert text.split("\r\n")[0] == "Day,code (min),chrome (min),Total (min)"
    await shots(page, "webapp", "week-application")
    await page.get_by_label("Category").check()
    await expect(page.locator("#period-table thead th")).to_have_text(
        ["Day", "development", "browsing", "Total"]
    )
    await ready(page)
    assert by_key(await shown_table(page)) == await grouped_times(
        http, headers, first, today, "categoryUuid"
    )

    # The month of the data, by project again; the arrows and ← → change the month.
    await page.goto(f"{service.url}/app/#/month/{date[:7]}")
    await ready(page)
    await page.get_by_label("Project", exact=True).check()
    await expect(page.locator("#period-table thead th")).to_have_text(
        ["Day", "Influx", "ScreenAware", "Total"]
    )
    await ready(page)
    month_first = day.replace(day=1)
    month_last = (month_first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    table = await shown_table(page)
    assert len(table["rows"]) == month_last.day
    assert by_key(table) == await grouped_times(
        http, headers, month_first, month_last, "projectUuid"
    )
    await expect(page.get_by_role("heading", name="Month")).to_be_visible()
    await shots(page, "webapp", "month")
    await page.get_by_role("button", name="Previous month").click()
    await ready(page)
    previous = (month_first - dt.timedelta(days=1)).replace(day=1)
    assert page.url.endswith(f"#/month/{previous.isoformat()[:7]}")
    await expect(page.locator("#period-title")).to_have_text(previous.strftime("%B %Y"))
    await page.locator("h1").click()
    await page.keyboard.press("ArrowRight")
    await ready(page)
    assert page.url.endswith(f"#/month/{date[:7]}")
    await expect(page.locator("#period-total")).to_have_text("1 h 10 min")

    # A name a spreadsheet would run as a formula is defused in the CSV; commas and
    # quotes are quoted.
    name = '=HYPERLINK("x", "y")'
    resp = await http.put(f"/api/projects/{P2}", json={"name": name}, headers=headers)
    assert resp.status_code == 200, resp.text
    await page.reload()
    await ready(page)
    await expect(page.locator("#period-table thead th")).to_have_text(
        ["Day", "Influx", name, "Total"]
    )
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download CSV").click()
    text = Path(await (await info.value).path()).read_bytes().decode()
    header = next(csv.reader(io.StringIO(text)))
    assert header == ["Day", "Influx (min)", f"'{name} (min)", "Total (min)"]


async def test_week_in_the_users_zone(
    service: Service, http: httpx.AsyncClient, page: Page
) -> None:
    """Days are the user's local days: 23:30-00:30 in Tokyo is two days' time."""
    admin = await bearer(http, ADMIN, ADMIN_PASSWORD)
    made = await http.post(
        "/api/users",
        json={"email": USER, "password": USER_PASSWORD, "timezone": "Asia/Tokyo"},
        headers=admin,
    )
    headers = {"Authorization": f"Bearer {made.json()['token']}"}
    zone = ZoneInfo("Asia/Tokyo")
    local_today = dt.datetime.now(zone).date()
    late = dt.datetime.combine(local_today - dt.timedelta(days=2), dt.time(23, 30), zone)
    resp = await http.post(
        "/api/snapshots", json=snaps(late.astimezone(dt.UTC), 60, "code", "x"), headers=headers
    )
    assert resp.status_code == 200, resp.text
    await sign_in(page, service.url, USER, USER_PASSWORD)
    await page.get_by_role("link", name="Week").click()
    await ready(page)
    first = local_today - dt.timedelta(days=6)
    await expect(page.locator("#period-title")).to_have_text(f"{first} to {local_today}")
    table = await shown_table(page)
    rows = {row[0]: row[-1] for row in table["rows"]}
    assert list(rows) == [(first + dt.timedelta(days=i)).isoformat() for i in range(7)]
    assert rows[late.date().isoformat()] == 30 * 60_000
    assert rows[(late.date() + dt.timedelta(days=1)).isoformat()] == 30 * 60_000
    resp = await http.get(
        "/api/times",
        params={"start": f"{first}T00:00:00", "end": f"{local_today}T23:59:59.999",
                "tz": "Asia/Tokyo"},
        headers=headers,
    )  # fmt: skip
    assert table["footer"][-1] == resp.json()["sum"] == 60 * 60_000


async def test_tasks_of_a_project(
    service: Service, http: httpx.AsyncClient, user_day: tuple[dict[str, str], str], page: Page
) -> None:
    headers, _ = user_day
    made = await http.post(
        "/api/tasks", json={"title": "Tune the retention", "projectUuid": P1}, headers=headers
    )
    assert made.status_code == 201, made.text
    await sign_in(page, service.url, USER, USER_PASSWORD)
    await page.get_by_role("link", name="Projects").click()
    await ready(page)
    await expect(page.get_by_role("button", name="Tasks of Influx")).to_have_text("Tasks (1)")
    await page.get_by_role("button", name="Tasks of Influx").click()
    tasks = page.locator("#tasks ul.tasks li span")
    await expect(tasks).to_have_text(["Tune the retention"])
    await expect(page.get_by_label("Task title")).to_be_focused()
    await page.get_by_label("Task title").fill("Write the benchmark")
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("Added task Write the benchmark.")).to_be_visible()
    await expect(tasks).to_have_count(2)
    listed = (await http.get("/api/tasks", headers=headers)).json()
    assert sorted((t["title"], t["projectUuid"]) for t in listed) == [
        ("Tune the retention", P1),
        ("Write the benchmark", P1),
    ]
    await expect(page.get_by_role("button", name="Tasks of Influx")).to_have_text("Tasks (2)")
    await shots(page, "webapp", "tasks")

    await page.get_by_role("button", name="Delete task Tune the retention").click()
    await expect(page.get_by_text("Deleted task Tune the retention.")).to_be_visible()
    await expect(tasks).to_have_text(["Write the benchmark"])
    listed = (await http.get("/api/tasks", headers=headers)).json()
    assert [t["title"] for t in listed] == ["Write the benchmark"]
    # Another project's tasks are its own.
    await page.get_by_role("button", name="Tasks of ScreenAware").click()
    await expect(page.get_by_text("No tasks yet.")).to_be_visible()


async def test_learned_association_shows_on_the_next_stream(
    service: Service, http: httpx.AsyncClient, user_day: tuple[dict[str, str], str], page: Page
) -> None:
    headers, date = user_day
    day = dt.datetime.fromisoformat(f"{date}T14:00:00+00:00")

    def reading(start: dt.datetime) -> list[dict[str, Any]]:
        batch = snaps(start, 10, "firefox", "release notes")
        for snap in batch:
            snap["windows"][0]["documents"] = [{"path": "https://docs.example.org/notes"}]
        return batch

    resp = await http.post("/api/snapshots", json=reading(day), headers=headers)
    assert resp.status_code == 200, resp.text
    await sign_in(page, service.url, USER, USER_PASSWORD)
    await page.goto(f"{service.url}/app/#/day/{date}")
    await ready(page)
    await page.get_by_role("button", name=re.compile(r"^14:00.14:10 No project")).click()
    await expect(page.locator("#stream-details .attribution")).to_have_text("Project: No project")
    await page.get_by_label("Project", exact=True).select_option(label="Unruled")
    await expect(page.get_by_text("Moved to Unruled.")).to_be_visible()
    await expect(page.locator("#stream-details .attribution")).to_contain_text("corrected by user")

    # The next stream of the same document is attributed from what was learned.
    later = day + dt.timedelta(hours=1)
    resp = await http.post("/api/snapshots", json=reading(later), headers=headers)
    assert resp.status_code == 200, resp.text
    subs = await http.get(
        "/api/substreams",
        params={"start": later.isoformat(), "end": (later + dt.timedelta(minutes=11)).isoformat()},
        headers=headers,
    )
    (sub,) = subs.json()
    assert sub["projectUuid"] == P3 and sub["projectRelationReason"].startswith("learned")
    await page.reload()
    await ready(page)
    await page.get_by_role("button", name=re.compile(r"^15:00.15:10 Unruled")).click()
    attribution = page.locator("#stream-details .attribution")
    await expect(attribution).to_have_text(f"Project: Unruled — {sub['projectRelationReason']}")
    await expect(page.locator("#stream-details tbody td .reason")).to_have_text(
        [sub["projectRelationReason"]]
    )
    await shots(page, "webapp", "day-learned")


async def test_admin_views_are_refused_to_a_user(
    service: Service, user_day: tuple[dict[str, str], str], page: Page
) -> None:
    await sign_in(page, service.url, USER, USER_PASSWORD)
    await page.goto(f"{service.url}/app/#/admin/logs")
    await ready(page)
    await expect(page.get_by_role("heading", name="Day")).to_be_visible()
    await expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    await expect(page.get_by_role("link", name="Log review")).to_have_count(0)
    for path in ("/api/users", "/api/logs", "/api/logs/crash_sensor", f"/api/users/{P1}"):
        assert await api_status(page, "GET", path) == 403, path


async def test_admin_users_created_and_deleted(
    service: Service, http: httpx.AsyncClient, page: Page
) -> None:
    admin = await bearer(http, ADMIN, ADMIN_PASSWORD)
    await sign_in(page, service.url, ADMIN, ADMIN_PASSWORD)
    await page.get_by_role("link", name="Admin").click()
    await ready(page)
    await expect(page.get_by_role("link", name="Users")).to_have_attribute("aria-current", "page")
    await page.get_by_label("Email").fill("bob@example.org")
    await page.get_by_label("Password").fill("bob-password-1")
    await page.get_by_label("Role").select_option("admin")
    await page.get_by_label("Time zone (optional)").fill("Europe/Berlin")
    await page.get_by_role("button", name="Create user").click()
    await expect(page.get_by_text("Created bob@example.org (admin).")).to_be_visible()
    await page.get_by_label("Email").fill("carl@example.org")
    await page.get_by_label("Password").fill("carl-password-1")
    await page.get_by_role("button", name="Create user").click()
    await expect(page.get_by_text("Created carl@example.org (user).")).to_be_visible()
    users = {u["email"]: u for u in (await http.get("/api/users", headers=admin)).json()}
    assert users["bob@example.org"]["role"]["title"] == "admin"
    assert users["bob@example.org"]["timezone"] == "Europe/Berlin"
    assert users["carl@example.org"]["role"]["title"] == "user"
    await expect(page.get_by_label("Role of bob@example.org")).to_have_value("admin")
    # Another user's role changes in place; an admin's own role cannot change.
    await page.get_by_label("Role of carl@example.org").select_option("admin")
    await expect(page.get_by_text("carl@example.org is now admin.")).to_be_visible()
    users = {u["email"]: u for u in (await http.get("/api/users", headers=admin)).json()}
    assert users["carl@example.org"]["role"]["title"] == "admin"
    await page.get_by_label("Role of carl@example.org").select_option("user")
    await expect(page.get_by_text("carl@example.org is now user.")).to_be_visible()
    await expect(page.get_by_label(f"Role of {ADMIN}")).to_have_count(0)
    own = await http.put("/api/users", json={"email": ADMIN, "role": "user"}, headers=admin)
    assert own.status_code == 422 and own.json()["message"] == "You cannot change your own role"
    users = {u["email"]: u for u in (await http.get("/api/users", headers=admin)).json()}
    assert users[ADMIN]["role"]["title"] == "admin"
    assert users["carl@example.org"]["role"]["title"] == "user"
    # A refused creation shows the API's message and changes nothing.
    await page.get_by_label("Email").fill("carl@example.org")
    await page.get_by_label("Password").fill("carl-password-1")
    await page.get_by_role("button", name="Create user").click()
    await expect(page.locator("#admin [role=alert]")).to_be_visible()
    await shots(page, "webapp", "admin-users")

    # Admins cannot delete themselves: no button for their own row.
    await expect(page.get_by_role("button", name=f"Delete {ADMIN}")).to_have_count(0)
    await page.get_by_role("button", name="Delete bob@example.org").click()
    await expect(page.get_by_text("Deleted bob@example.org.")).to_be_visible()
    emails = {u["email"] for u in (await http.get("/api/users", headers=admin)).json()}
    assert emails == {ADMIN, "carl@example.org"}
    await expect(page.locator("#users tbody tr")).to_have_count(2)


async def test_admin_log_review_and_crash_reports(
    service: Service, http: httpx.AsyncClient, page: Page
) -> None:
    admin = await bearer(http, ADMIN, ADMIN_PASSWORD)
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    # Three points in one 5-minute interval of an hour ago, one of another series.
    base = (now_ms - 3_600_000) // 300_000 * 300_000 + 1000
    points = [
        {
            "type": "sync_run",
            "level": "info",
            "data": {
                "origin": "sensor",
                "version": "1.2.0",
                "message": f"run {i}",
                "time": base + i * 1000,
                "details": f"detail {i}",
            },
        }
        for i in range(3)
    ] + [
        {
            "type": "sync_error",
            "level": "error",
            "data": {"origin": "sensor", "version": "1.2.0", "message": "boom", "time": base},
        }
    ]
    assert (await http.post("/api/logs", json=points)).status_code == 200
    dump = bytes(range(256)) * 20
    resp = await http.post(
        "/api/logs/crash/sensor",
        data={"prod": "sensor-linux", "ver": "1.2.0", "guid": "g-1"},
        files={"upload_file_minidump": ("dump.dmp", dump, "application/octet-stream")},
    )
    assert resp.status_code == 200, resp.text
    crash_uuid = resp.text

    await sign_in(page, service.url, ADMIN, ADMIN_PASSWORD)
    await page.goto(f"{service.url}/app/#/admin/logs")
    await ready(page)
    series = page.locator("#series-table tbody tr")
    await expect(series).to_have_count(3)
    listed = (await http.get("/api/logs", headers=admin)).json()
    shown = await series.evaluate_all(
        "rows => rows.map((r) => ({type: r.dataset.type, count: Number(r.cells[1].innerText)}))"
    )
    assert shown == listed
    assert {"type": "sync_run", "count": 3} in listed

    await page.get_by_role("button", name="sync_run", exact=True).click()
    await expect(page.locator("#chart-h")).to_have_text("sync_run: 3 points")
    buckets = page.locator(".logchart button.bucket")
    await expect(buckets).to_have_count(1)
    await page.get_by_label("Interval").select_option("5m")
    await expect(page.get_by_role("group", name="Points of sync_run per 5m")).to_be_visible()
    await expect(buckets).to_have_count(1)
    start = dt.datetime.fromtimestamp((base - 1000) / 1000, dt.UTC)
    assert dt.datetime.fromisoformat(await buckets.get_attribute("data-time") or "") == start
    # Keyboard: the bars with points are buttons.
    await buckets.focus()
    await page.keyboard.press("Enter")
    rows = page.locator("#points-table tbody tr")
    await expect(rows).to_have_count(3)
    await expect(rows.locator("td:nth-child(3)")).to_have_text(["run 2", "run 1", "run 0"])
    api_points = (await http.get("/api/logs/sync_run", params={"limit": 10}, headers=admin)).json()
    uuids = await rows.evaluate_all("rows => rows.map((r) => r.dataset.uuid)")
    assert uuids == [p["uuid"] for p in api_points]
    await shots(page, "webapp", "admin-logs")

    await page.get_by_role("button", name=f"Point {uuids[1]}").click()
    await expect(page.locator("#point-h")).to_be_focused()
    await expect(page.locator("dl.point dd[data-key=message]")).to_have_text("run 1")
    await expect(page.locator("#point-details")).to_have_text("detail 1")
    # One point by uuid, typed in.
    await page.get_by_label("Point uuid").fill(uuids[2])
    await page.get_by_role("button", name="Find point").click()
    await expect(page.locator("dl.point dd[data-key=message]")).to_have_text("run 0")
    await page.get_by_label("Point uuid").fill("0190b6a0-0000-7000-8000-000000000000")
    await page.get_by_role("button", name="Find point").click()
    await expect(page.locator("#admin [role=alert]")).to_have_text("Log point not found")
    await expect(page.locator("dl.point")).to_have_count(0)
    await shots(page, "webapp", "admin-point")
    # Another range: a week ago has none of these points.
    week_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).date().isoformat()
    await page.get_by_label("From", exact=True).fill(week_ago)
    await page.get_by_label("To", exact=True).fill(week_ago)
    await page.get_by_role("button", name="Show").click()
    await expect(page.get_by_text("No log points in this range.")).to_be_visible()
    await expect(page.locator(".logchart")).to_have_count(0)

    await page.get_by_role("link", name="Crash reports").click()
    await ready(page)
    crash = page.locator(f"#crash-table tr[data-uuid='{crash_uuid}']")
    await expect(crash).to_contain_text("sensor-linux")
    await expect(crash).to_contain_text(f"{len(dump)} B")
    await shots(page, "webapp", "admin-crashes")
    async with page.expect_download() as info:
        await crash.get_by_role("link", name=re.compile("Download the dump")).click()
    download = await info.value
    assert download.suggested_filename == f"{crash_uuid}.dmp"
    assert Path(await download.path()).read_bytes() == dump


async def test_a_late_view_never_overwrites_the_next_one(
    service: Service, user_day: tuple[dict[str, str], str], page: Page
) -> None:
    """The day view's first request is held back until the projects view has rendered."""
    await sign_in(page, service.url, USER, USER_PASSWORD)
    await ready(page)
    asked, release = asyncio.Event(), asyncio.Event()

    async def hold(route: Route) -> None:
        asked.set()
        await release.wait()
        await route.continue_()

    await page.route(re.compile(r"/api/categories$"), hold)
    await page.goto(f"{service.url}/app/#/day/{user_day[1]}")
    await asyncio.wait_for(asked.wait(), 10)
    await page.get_by_role("link", name="Projects").click()
    await ready(page)
    await expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    release.set()
    # The day view finishes into its own detached element: the projects stay.
    await page.wait_for_timeout(500)
    await expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    await expect(page.get_by_role("heading", name="Day")).to_have_count(0)
    await expect(page.locator("#view")).to_have_count(1)

"""The web app at /app/ in headless Chromium, against gunicorn, influxd and redis-server."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

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
    batch = snaps(now - dt.timedelta(minutes=3), 2, "code", "influxdb tuning")
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

"""The presence page in headless Chromium: it updates live, without a reload."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page

from screenaware.config import Config
from tests.conftest import SECRET_KEY
from tests.service import run_service

pytestmark = pytest.mark.browser


async def test_last_seen_changes_after_a_beat_without_reload(
    config: Config,
    tmp_path: Path,
    page: Page,
    screenshot: Callable[[str], Awaitable[Path]],
) -> None:
    with run_service(config, tmp_path, workers=2) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            device = await http.post(
                "/api/devices", json={"name": "Laptop"}, headers={"Authorization": SECRET_KEY}
            )
            token = device.json()["token"]
            await page.goto(service.url + "/", wait_until="load")
            await page.wait_for_function(
                "document.getElementById('live-status').dataset.state === 'live'"
            )
            # Mark the document: a reload would lose this.
            await page.evaluate("window.__marker = 'same document'")
            last_seen = page.locator("#last-seen")
            assert await last_seen.text_content() == "never"

            ack = int((await http.post("/api/beat", headers={"Authorization": token})).text)
            expected = dt.datetime.fromtimestamp(ack, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            await page.wait_for_function(
                "expected => document.getElementById('last-seen').textContent === expected",
                arg=expected,
                timeout=5000,
            )
            assert await page.evaluate("window.__marker") == "same document"
            assert await page.locator("#total-beats").text_content() == "1"
            since = await page.locator("#time-since").text_content()
            assert since is not None and since.endswith(("second", "seconds"))
            shot = await screenshot("after-beat")
            assert shot.read_bytes().startswith(b"\x89PNG")

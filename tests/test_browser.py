"""The presence page in headless Chromium: it updates live, without a reload."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest

from screenaware.config import Config
from tests.browser import open_page
from tests.conftest import SECRET_KEY
from tests.service import run_service

pytestmark = pytest.mark.browser


async def test_last_seen_changes_after_a_beat_without_reload(
    config: Config, tmp_path: Path
) -> None:
    with run_service(config, tmp_path, workers=2) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            device = await http.post(
                "/api/devices", json={"name": "Laptop"}, headers={"Authorization": SECRET_KEY}
            )
            token = device.json()["token"]
            async with open_page(service.url + "/", tmp_path / "profile") as page:
                await page.wait_for("document.readyState === 'complete'")
                await page.wait_for(
                    "document.getElementById('live-status').dataset.state === 'live'"
                )
                # Mark the document: a reload would lose this.
                await page.evaluate("window.__marker = 'same document'")
                last_seen = "document.getElementById('last-seen').textContent"
                assert await page.evaluate(last_seen) == "never"

                ack = int((await http.post("/api/beat", headers={"Authorization": token})).text)
                expected = dt.datetime.fromtimestamp(ack, tz=dt.UTC).strftime(
                    "%Y-%m-%d %H:%M:%S UTC"
                )
                await page.wait_for(f"{last_seen} === {expected!r}", timeout=5)
                assert await page.evaluate("window.__marker") == "same document"
                total = await page.evaluate("document.getElementById('total-beats').textContent")
                assert total == "1"
                since = await page.evaluate("document.getElementById('time-since').textContent")
                assert since.endswith(("second", "seconds"))
                await page.screenshot(tmp_path / "index.png")
                assert (tmp_path / "index.png").stat().st_size > 1000

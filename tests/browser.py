"""Headless Chromium for the web-page tests: Playwright driving Debian's chromium.

Playwright's own browser builds are never downloaded (no ``playwright install``):
``executable_path`` points at the chromium scripts/setup installs with apt. The
fixtures ``browser``, ``page`` and ``screenshot`` in tests/conftest.py use this.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, async_playwright

ROOT = Path(__file__).resolve().parent.parent
# Git-ignored (var/), kept after the run for a look at what the page showed.
SCREENSHOTS = ROOT / "var" / "screenshots"

# No GPU, no sandbox (root in CI), and nothing that reaches out to the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_binary() -> str:
    """Debian's chromium; scripts/setup --test installs it."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed (scripts/test installs it)"
    return binary


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """Start headless Chromium; close it afterwards."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_binary(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


def screenshot_file(test_name: str, name: str) -> Path:
    """Where a test's screenshot ``name`` goes: var/screenshots/<test>-<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{test_name}-{name}")
    return SCREENSHOTS / f"{safe}.png"

"""``GET /app`` and ``GET /app/{name}``: the web app's page and its files."""

from __future__ import annotations

from pathlib import Path

import falcon
import falcon.asgi

from screenaware.web.headers import SECURITY_HEADERS
from screenaware.web.openapi import operation

STATIC = Path(__file__).parent / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def static_files() -> dict[str, bytes]:
    """The app's files by name, read once (a few tens of KB)."""
    return {
        path.name: path.read_bytes()
        for path in sorted(STATIC.iterdir())
        if path.is_file() and path.suffix in TYPES
    }


class AppPageResource:
    """``GET /app``: the single page; the views are chosen by the URL's fragment."""

    def __init__(self, page: bytes) -> None:
        self._page = page

    @operation(
        "The web app (sign in, day, week, month, projects, keys, admin)",
        "pages",
        responses={200: ("text/html", {"type": "string"})},
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.set_headers(SECURITY_HEADERS)
        resp.content_type = TYPES[".html"]
        resp.data = self._page


class AppAssetResource:
    """``GET /app/{name}``: a script or style sheet of the app; other names are 404."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self._files = {name: data for name, data in files.items() if name != "index.html"}

    @operation(
        "A script or style sheet of the web app",
        "pages",
        responses={200: (("text/javascript", "text/css"), {"type": "string"})},
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        data = self._files.get(name)
        if data is None:
            raise falcon.HTTPNotFound(description=f"No file named {name!r}")
        resp.set_headers(SECURITY_HEADERS)
        resp.content_type = TYPES[Path(name).suffix]
        resp.data = data

"""``GET /api/openapi.json`` and ``GET /api/docs``: the contract, as JSON and as a page.

The page is Swagger UI, served from the files of the ``swagger-ui-py`` package (no
CDN): its bundle and style sheet, and our ``static/docs.js`` that starts it on
``/api/openapi.json``. "Try it out" sends requests to this service, which the
page's Content-Security-Policy (``connect-src 'self'``) allows and nothing else.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import falcon
import falcon.asgi

from screenaware.web.openapi import operation

# What the page needs: its scripts, style sheet and the documents it fetches from
# the service itself; Swagger UI's icons are data: URIs. (It sets styles through
# the DOM, which style-src does not restrict: no 'unsafe-inline'.)
DOCS_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ScreenAware API reference</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/api/docs/favicon-32x32.png">
</head>
<body>
<noscript>This page needs JavaScript; the document itself is
<a href="/api/openapi.json">/api/openapi.json</a>.</noscript>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/docs.js"></script>
</body>
</html>
"""

_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def swagger_ui_dir() -> Path:
    """The ``static`` directory of the installed ``swagger-ui-py`` package.

    Found without importing the package (its handlers import web frameworks).
    """
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def assets() -> dict[str, Path]:
    """The files the page loads, by name under ``/api/docs/``."""
    ui = swagger_ui_dir()
    found = {
        name: ui / name for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
    }
    found["docs.js"] = Path(__file__).parent / "static" / "docs.js"
    return found


class OpenAPIResource:
    """``GET /api/openapi.json``; ``spec`` is set once every route is mounted."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] = {}

    @operation("This document", "pages", responses={200: {"type": "object"}})
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = self.spec


class DocsResource:
    """``GET /api/docs``: the interactive reference."""

    @operation(
        "The interactive reference (Swagger UI) of this document",
        "pages",
        responses={200: ("text/html", {"type": "string"})},
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.set_headers(DOCS_HEADERS)
        resp.content_type = falcon.MEDIA_HTML
        resp.text = PAGE


class DocsAssetResource:
    """``GET /api/docs/{name}``: the page's scripts, style sheet and icon.

    Read into memory once (about 1.6 MB); a name not listed is a 404.
    """

    def __init__(self) -> None:
        self._files = {name: path.read_bytes() for name, path in assets().items()}

    @operation(
        "A script, style sheet or icon of the reference page",
        "pages",
        responses={200: (tuple(_TYPES.values()), {"type": "string", "format": "binary"})},
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        data = self._files.get(name)
        if data is None:
            raise falcon.HTTPNotFound(description=f"No asset named {name!r}")
        resp.set_headers(DOCS_HEADERS)
        resp.cache_control = ["public", "max-age=3600"]
        resp.content_type = _TYPES[Path(name).suffix]
        resp.data = data

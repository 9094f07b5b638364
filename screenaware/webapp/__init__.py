"""The web app at ``/app/``: static files that use the public API only.

Plain JavaScript modules, no build step and nothing loaded from elsewhere: the page's
Content-Security-Policy allows only this origin. The app signs in with a browser
session (``POST /api/auth/session``) and sends the CSRF token on each change.
"""

from __future__ import annotations

from collections.abc import Callable

from screenaware.config import Config
from screenaware.storage.backends import Backends
from screenaware.web.app import App
from screenaware.webapp.resources import AppAssetResource, AppPageResource, static_files

__all__ = ["mount"]


def mount(app: App, config: Config, backends: Backends, clock: Callable[[], float]) -> None:
    """Add ``/app`` (the page) and ``/app/{name}`` (its scripts and style sheet)."""
    files = static_files()
    app.add_route("/app", AppPageResource(files["index.html"]))
    app.add_route("/app/{name}", AppAssetResource(files))

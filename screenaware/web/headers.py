"""Response headers: those of the HTML pages, and the tests' worker pid."""

from __future__ import annotations

import os

import falcon.asgi

WORKER_PID_HEADER = "X-Worker-Pid"

# Pages load only their own scripts and styles; nothing may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class WorkerPidHeader:
    """Middleware: the answering process's pid in ``X-Worker-Pid``.

    Off unless ``worker_pid_header`` is set: the tests use it to prove that a
    request reached a given gunicorn worker; in production it would only tell
    strangers how many workers there are.
    """

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        # Per response, not at start-up: the app may be built before gunicorn forks.
        resp.set_header(WORKER_PID_HEADER, str(os.getpid()))

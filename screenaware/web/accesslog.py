"""Structured logs: one JSON object per line, and one access line per request."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

import falcon.asgi
import orjson

from screenaware.web import metrics

ACCESS = logging.getLogger("screenaware.access")

# Fields a record may carry into the JSON line (set with ``extra=``).
_EXTRA = ("method", "route", "path", "status", "duration_ms", "user", "remote")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key in _EXTRA:
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str) -> None:
    """JSON lines on stderr for the root logger, unless something configured it."""
    root = logging.getLogger()
    if root.handlers:
        return  # under pytest or an embedding program: leave theirs alone
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    root.addHandler(handler)
    root.setLevel(level.upper())


class AccessLog:
    """Middleware: one line per request — route, status, duration, user; never
    headers, bodies or query strings, where credentials could be — and the
    request metrics.

    The lines are the same JSON as every other log line, but they skip the
    ``logging`` machinery and go to stderr in one write every ``flush_every``
    seconds (and at shutdown): at thousands of requests a second, a record and a
    write per request cost more than the request itself.

    Args:
        log: write the access lines.
        measure: count the requests in the metrics.
        flush_every: seconds between writes of the collected lines.
    """

    def __init__(self, log: bool = True, measure: bool = True, flush_every: float = 0.25):
        self._log = log
        self._measure = measure
        self._flush_every = flush_every
        self._lines: list[str] = []
        self._flush_pending = False
        self._pid = os.getpid()
        self._counts: dict[tuple[str, str, str], int] = {}
        # Per (route, method): the histogram's labelled child (labels() takes a lock
        # and a tuple of strings per call), and the time text of the current second.
        self._latency: dict[tuple[str, str], Any] = {}
        self._second = -1
        self._second_text = ""

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.started = time.perf_counter()

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        started = getattr(req.context, "started", None)
        if started is None:
            return
        status = resp.status if isinstance(resp.status, int) else int(str(resp.status)[:3])
        elapsed = time.perf_counter() - started
        # Unmatched paths share one label, so scanners cannot blow up the series.
        route = req.uri_template or "unmatched"
        if self._measure:
            key = (route, req.method, str(status))
            self._counts[key] = self._counts.get(key, 0) + 1
            child = self._latency.get((route, req.method))
            if child is None:
                child = self._latency[route, req.method] = metrics.LATENCY.labels(route, req.method)
            child.observe(elapsed)
        if self._log and ACCESS.isEnabledFor(logging.INFO):
            principal = getattr(req.context, "principal", None)
            millis = int(time.time() * 1000)
            second = millis // 1000
            if second != self._second:
                self._second = second
                self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._lines.append(
                orjson.dumps(
                    {
                        "time": f"{self._second_text}.{millis % 1000:03d}Z",
                        "level": "INFO",
                        "logger": ACCESS.name,
                        "pid": self._pid,
                        "message": f"{req.method} {req.path} {status}",
                        "method": req.method,
                        "route": req.uri_template or None,
                        "path": req.path,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "user": principal.uuid if principal else None,
                        "remote": req.remote_addr,
                    },
                ).decode()
            )
        if not self._flush_pending and (self._lines or self._counts):
            self._flush_pending = True
            asyncio.get_running_loop().call_later(self._flush_every, self.flush)

    def flush(self) -> None:
        """Write the collected lines and add the counted requests to the metrics."""
        self._flush_pending = False
        counts, self._counts = self._counts, {}
        for labels, count in counts.items():
            metrics.REQUESTS.labels(*labels).inc(count)
        if self._lines:
            lines, self._lines = self._lines, []
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()

    async def shutdown(self) -> None:
        """Lifespan shutdown hook: nothing collected is lost."""
        self.flush()

"""Prometheus metrics, shared by all gunicorn workers through the multiprocess mode.

``screenaware serve`` (and the test and bench launchers) point
``PROMETHEUS_MULTIPROC_DIR`` at an empty directory before the workers start; each
worker writes its samples there and ``/metrics`` adds them up. Without that
variable (one process, e.g. tests in-process) the default registry is used.
"""

from __future__ import annotations

import hmac
import os
import shutil
from pathlib import Path

import falcon
import falcon.asgi
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from screenaware.web.openapi import operation

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "screenaware_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
LATENCY = Histogram(
    "screenaware_request_duration_seconds",
    "Time to answer a request",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def prepare_multiprocess_dir(path: Path) -> dict[str, str]:
    """Empty ``path`` and return the environment that makes workers share it."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return {MULTIPROC_ENV: str(path)}


class MetricsResource:
    """``GET /metrics`` in the Prometheus text format; optionally behind a token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def __repr__(self) -> str:
        return "MetricsResource(token='***')"

    @operation(
        "Prometheus metrics of every worker",
        "pages",
        security="metricsToken",
        responses={200: ("text/plain", {"type": "string"})},
        description="Needs the metrics token as a bearer token when one is configured.",
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self._token:
            given = (req.get_header("Authorization") or "").removeprefix("Bearer ").encode()
            if not hmac.compare_digest(given, self._token):
                raise falcon.HTTPUnauthorized(
                    description="A valid metrics token is needed", challenges=["Bearer"]
                )
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = REGISTRY
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(registry)

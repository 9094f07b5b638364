"""Log points and crash reports: ingest, and the admin review of grouped series."""

from __future__ import annotations

from collections.abc import Callable

from screenaware.config import Config
from screenaware.logs.resources import (
    CrashDumpResource,
    CrashUploadResource,
    LogLimits,
    LogPointResource,
    LogsResource,
    LogTypeResource,
)
from screenaware.logs.service import LogService
from screenaware.storage.backends import Backends
from screenaware.storage.ratelimit import Quota
from screenaware.web.app import App


def mount(app: App, config: Config, backends: Backends, clock: Callable[[], float]) -> None:
    """Add the log and crash routes to ``app``."""
    service = LogService(
        backends.influx,
        backends.writer,
        backends.get_redis,
        clock,
        config.data_path / "crashes",
        config.crash_max_bytes,
        max_buckets=config.log_max_buckets,
    )
    limits = LogLimits(
        Quota(backends.get_redis, "logs", 60), config.log_rate_anonymous, config.log_rate_user
    )
    app.body_limits.set("/api/logs", config.bulk_body_bytes)
    # A crash upload may carry a dump of crash_max_bytes plus its form fields; the
    # dump's own limit is checked as it streams to disk.
    app.body_limits.set("/api/logs/crash/sensor", config.crash_max_bytes + 1024 * 1024)
    app.add_route("/api/logs", LogsResource(service, limits, config.log_batch_max))
    app.add_route("/api/logs/point/{point_uuid}", LogPointResource(service))
    app.add_route("/api/logs/crash/sensor", CrashUploadResource(service, limits))
    app.add_route("/api/logs/crash/{point_uuid}", CrashDumpResource(service))
    app.add_route("/api/logs/{log_type}", LogTypeResource(service))

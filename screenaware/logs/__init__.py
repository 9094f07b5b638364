"""Log points and crash reports: ingest, and the admin review of grouped series."""

from __future__ import annotations

from collections.abc import Callable

from screenaware.config import Config
from screenaware.logs.crashes import CrashLimits, CrashStore
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

__all__ = ["mount"]


def mount(app: App, config: Config, backends: Backends, clock: Callable[[], float]) -> None:
    """Add the log and crash routes to ``app``."""
    service = LogService(
        backends.influx,
        backends.writer,
        backends.get_redis,
        clock,
        page_points=config.log_page_points,
        max_buckets=config.log_grouped_max_buckets,
    )
    crashes = CrashStore(
        config.data_path / "crashes",
        backends.get_redis,
        clock,
        CrashLimits(
            max_bytes=config.crash_max_bytes,
            store_bytes=config.crash_store_bytes,
            anonymous_per_hour=config.crash_anonymous_per_hour,
            anonymous_bytes_per_hour=config.crash_anonymous_bytes_per_hour,
        ),
        service.record_crash,
    )
    # The budget must agree with the files after a restart (of Redis or the service).
    backends.on_startup(crashes.sync)
    limits = LogLimits(
        Quota(backends.get_redis, "logs", 60), config.log_rate_anonymous, config.log_rate_user
    )
    app.body_limits.set("/api/logs", config.bulk_body_bytes)
    # A crash upload may carry a dump of crash_max_bytes plus its form fields; the
    # dump's own limit is checked as it streams to disk.
    app.body_limits.set("/api/logs/crash/sensor", config.crash_max_bytes + 1024 * 1024)
    app.add_route("/api/logs", LogsResource(service, limits, config.log_batch_max))
    app.add_route("/api/logs/point/{point_uuid}", LogPointResource(service))
    app.add_route("/api/logs/crash/sensor", CrashUploadResource(crashes, limits))
    app.add_route("/api/logs/crash/{point_uuid}", CrashDumpResource(crashes))
    app.add_route("/api/logs/{log_type}", LogTypeResource(service))

"""Activity: snapshot ingest, attribution to projects, categories and applications,
what corrections teach, and ``/times``.

Other features use only what this module exports: the activity store (the user's
cache generations, applications and categories), the learning store, and the
attribution helpers that corrections and streams share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from screenaware.activity.attribution import (
    NONE,
    Attribution,
    Attributor,
    StatedAttribution,
    application_name,
    application_uuid,
    category_uuid,
)
from screenaware.activity.learning import Association, LearningStore, features
from screenaware.activity.resources import (
    ApplicationsResource,
    CategoriesResource,
    CategoryResource,
    SnapshotsResource,
    TimesResource,
)
from screenaware.activity.rollup import BUCKET_MS
from screenaware.activity.snapshots import ImportedSpan, SnapshotService
from screenaware.activity.store import DAY_MS, ActivityStore, generations_key
from screenaware.activity.timeline import TimelineStore
from screenaware.activity.times import TimesService
from screenaware.config import Config
from screenaware.storage.backends import Backends
from screenaware.web.app import App

__all__ = [
    "BUCKET_MS",
    "DAY_MS",
    "NONE",
    "Activity",
    "ActivityStore",
    "Association",
    "Attribution",
    "Attributor",
    "ImportedSpan",
    "LearningStore",
    "SnapshotService",
    "StatedAttribution",
    "TimelineStore",
    "TimesService",
    "application_name",
    "application_uuid",
    "build",
    "category_uuid",
    "features",
    "generations_key",
    "mount",
]


@dataclass(frozen=True)
class Activity:
    """What the activity feature offers the others."""

    store: ActivityStore
    learning: LearningStore
    timeline: TimelineStore
    snapshots: SnapshotService
    times: TimesService


def build(config: Config, backends: Backends, clock: Callable[[], float]) -> Activity:
    """The activity feature's stores and services (for ``mount`` and the CLI)."""
    store = ActivityStore(backends.get_redis)
    timeline = TimelineStore(
        backends.get_redis,
        backends.writer,
        horizon_ms=config.timeline_days * DAY_MS,
        # A worker that dies holding the lock frees it once a write would have
        # timed out anyway.
        lock_ttl_ms=int(max(config.influx_timeout * 3, 10) * 1000),
        lock_wait_s=config.influx_timeout * 2,
        clock=clock,
    )
    snapshots = SnapshotService(
        backends.writer, backends.influx, store, timeline, clock, config.learn_min_score
    )
    times = TimesService(
        backends.influx,
        store,
        clock,
        rollup=config.times_rollup,
        lock_ttl_ms=int(max(config.influx_timeout * 3, 10) * 1000),
        # A rollup write starts only if the lock outlives the longest write.
        lease_ms=int((config.influx_timeout + 1) * 1000),
    )
    return Activity(store, LearningStore(backends.get_redis), timeline, snapshots, times)


def mount(app: App, config: Config, backends: Backends, clock: Callable[[], float]) -> Activity:
    """Add the snapshot, times, application and category routes to ``app``."""
    feature = build(config, backends, clock)
    store = feature.store
    app.body_limits.set("/api/snapshots", config.bulk_body_bytes)
    app.add_route("/api/snapshots", SnapshotsResource(feature.snapshots, config.snapshot_batch_max))
    app.add_route("/api/times", TimesResource(feature.times, config.timezone))
    app.add_route("/api/applications", ApplicationsResource(store))
    app.add_route("/api/categories", CategoriesResource(store))
    app.add_route("/api/categories/{category_id}", CategoryResource(store))
    return feature

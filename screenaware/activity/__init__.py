"""Activity: snapshot ingest, attribution to projects, categories and applications,
what corrections teach, and ``/times``.

Other features use only what this module exports: the activity store (the user's
cache generations, applications and categories), the learning store, and the
attribution helpers that corrections and streams share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from screenaware.activity.attribution import NONE, application_name
from screenaware.activity.learning import Association, LearningStore, features
from screenaware.activity.resources import (
    ApplicationsResource,
    CategoriesResource,
    CategoryResource,
    SnapshotsResource,
    TimesResource,
)
from screenaware.activity.snapshots import SnapshotService
from screenaware.activity.store import DAY_MS, ActivityStore
from screenaware.activity.times import TimesService
from screenaware.config import Config
from screenaware.storage.backends import Backends
from screenaware.web.app import App

__all__ = [
    "DAY_MS",
    "NONE",
    "Activity",
    "ActivityStore",
    "Association",
    "LearningStore",
    "SnapshotService",
    "TimesService",
    "application_name",
    "features",
    "mount",
]


@dataclass(frozen=True)
class Activity:
    """What the activity feature offers the others."""

    store: ActivityStore
    learning: LearningStore
    snapshots: SnapshotService
    times: TimesService


def mount(app: App, config: Config, backends: Backends, clock: Callable[[], float]) -> Activity:
    """Add the snapshot, times, application and category routes to ``app``."""
    store = ActivityStore(backends.get_redis)
    snapshots = SnapshotService(backends.writer, store, clock, config.learn_min_score)
    times = TimesService(backends.influx, store, clock)
    app.body_limits.set("/api/snapshots", config.bulk_body_bytes)
    app.add_route("/api/snapshots", SnapshotsResource(snapshots, config.snapshot_batch_max))
    app.add_route("/api/times", TimesResource(times, config.timezone))
    app.add_route("/api/applications", ApplicationsResource(store))
    app.add_route("/api/categories", CategoriesResource(store))
    app.add_route("/api/categories/{category_id}", CategoryResource(store))
    return Activity(store, LearningStore(backends.get_redis), snapshots, times)

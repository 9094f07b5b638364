"""Streams: sessionisation of activity into streams and substreams, gap streams,
and corrections (a stream moved to another project, and what that teaches)."""

from __future__ import annotations

from collections.abc import Callable

from screenaware.activity import Activity, generations_key
from screenaware.config import Config
from screenaware.identity import Identity
from screenaware.storage.backends import Backends
from screenaware.storage.rollupmarks import RollupMarks
from screenaware.streams.resources import (
    AssociationsResource,
    StreamProjectResource,
    StreamsResource,
    SubstreamsResource,
)
from screenaware.streams.rollup import RunsRollup, lock_key, rolled_key
from screenaware.streams.service import CORRECTION_FIELDS, StreamService
from screenaware.streams.sessionise import CORRECTED, Thresholds
from screenaware.web.app import App

__all__ = ["CORRECTED", "CORRECTION_FIELDS", "StreamService", "make_service", "mount"]


def make_service(
    config: Config,
    backends: Backends,
    clock: Callable[[], float],
    activity: Activity,
) -> StreamService:
    """The stream service (also for the CLI, which mounts no routes)."""
    thresholds = Thresholds(
        join_gap=config.substream_join_gap * 1000,
        interruption=config.stream_interruption * 1000,
        idle_gap=config.stream_idle_gap * 1000,
    )
    runs = None
    if config.streams_rollup:
        runs = RunsRollup(
            backends.influx,
            RollupMarks(backends.get_redis, rolled_key, lock_key, generations_key),
            clock,
            thresholds.idle_gap,
            # As for the /times rollup: a dead writer's lock lapses once its write
            # would have timed out, and a write starts only if the lock outlives it.
            lock_ttl_ms=int(max(config.influx_timeout * 3, 10) * 1000),
            lease_ms=int((config.influx_timeout + 1) * 1000),
        )
    return StreamService(
        backends.influx,
        backends.writer,
        activity.store,
        activity.learning,
        activity.timeline,
        backends.get_redis,
        clock,
        thresholds,
        runs,
    )


def mount(
    app: App,
    config: Config,
    backends: Backends,
    clock: Callable[[], float],
    *,
    activity: Activity,
    identity: Identity,
) -> StreamService:
    """Add the stream, substream, correction and association routes to ``app``."""
    service = make_service(config, backends, clock, activity)
    zone = config.timezone
    app.add_route("/api/streams", StreamsResource(service, zone))
    app.add_route("/api/substreams", SubstreamsResource(service, zone))
    correction = StreamProjectResource(service, zone)
    app.add_route("/api/stream/{stream_uuid}/project", correction)
    app.add_route("/api/streams/{stream_uuid}/project", correction)
    app.add_route(
        "/api/projects/{project_id}/associations",
        AssociationsResource(activity.learning, identity.projects),
    )
    return service

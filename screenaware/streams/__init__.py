"""Streams: sessionisation of activity into streams and substreams, gap streams,
and corrections (a stream moved to another project, and what that teaches)."""

from __future__ import annotations

from collections.abc import Callable

from screenaware.activity import Activity
from screenaware.config import Config
from screenaware.identity import Identity
from screenaware.storage.backends import Backends
from screenaware.streams.resources import (
    AssociationsResource,
    StreamProjectResource,
    StreamsResource,
    SubstreamsResource,
)
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
    return StreamService(
        backends.influx,
        backends.writer,
        activity.store,
        activity.learning,
        activity.timeline,
        backends.get_redis,
        clock,
        thresholds,
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

"""The Heartbeat API: devices send beats, anyone reads presence statistics."""

from __future__ import annotations

from collections.abc import Callable

from heartbeat.rebuild import rebuild_stats
from heartbeat.resources import (
    STATIC_DIR,
    BadgeResource,
    BeatResource,
    DevicesResource,
    DeviceTokenResource,
    IndexPage,
    PrivacyPage,
    SecretKeyAuth,
    StatsPage,
    StatsResource,
    StatsSocketResource,
)
from heartbeat.service import HeartbeatService, StatsBroadcaster
from heartbeat.store import HeartbeatStore
from screenaware.config import Config
from screenaware.storage.backends import Backends
from screenaware.web.app import App

__all__ = ["HeartbeatService", "HeartbeatStore", "mount", "rebuild_stats"]


def mount(
    app: App, config: Config, backends: Backends, clock: Callable[[], float]
) -> HeartbeatService:
    """Add every Heartbeat route to ``app``.

    The device routes exist only when a secret key is configured (else 404).

    Returns:
        The service (the CLI and tests use it beside the routes).
    """
    store = HeartbeatStore(backends.get_redis)
    service = HeartbeatService(
        store,
        backends.writer,
        clock,
        backends.point_clock,
        max_batch=config.write_batch_max,
        max_pending=config.write_queue_max,
        regroup=config.beat_regroup_ms / 1000,
        outages=backends.outages,
    )
    broadcaster = StatsBroadcaster(service.stats, outages=backends.outages)

    async def mark_first_setup() -> None:
        await store.mark_first_setup(service.now())

    backends.on_startup(mark_first_setup)
    backends.on_shutdown(broadcaster.stop)
    backends.on_shutdown(service.close)
    if config.secret_key:
        auth = SecretKeyAuth(config.secret_key)
        app.add_route("/api/devices", DevicesResource(service, auth))
        app.add_route(
            "/api/devices/{device_id:int(min=0)}/token/generate",
            DeviceTokenResource(service, auth),
        )
    app.add_route("/api/beat", BeatResource(service))
    app.add_route("/api/stats", StatsResource(service))
    app.add_route("/api/stats/ws", StatsSocketResource(service, broadcaster))
    app.add_route("/", IndexPage(service, config.server_name))
    app.add_route("/stats", StatsPage(service, config.server_name))
    app.add_route("/privacy", PrivacyPage(config.server_name))
    app.add_route("/badge/{name}", BadgeResource(service))
    app.add_static_route("/static", str(STATIC_DIR))
    return service

"""The application factory: one Falcon ASGI app serving both APIs."""

from __future__ import annotations

import time
from collections.abc import Callable

import falcon.asgi

import heartbeat
from screenaware import activity, identity, integrations, logs, portability, streams, webapp
from screenaware.config import Config
from screenaware.storage.backends import Backends
from screenaware.storage.influx import UniqueClock
from screenaware.web import accesslog
from screenaware.web import app as web


def create_app(
    config: Config | None = None, *, clock: Callable[[], float] = time.time
) -> falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]:
    """Build the backends, then let each feature mount its routes on the app.

    Args:
        config: the configuration; read from the environment when None.
        clock: returns the current Unix time in seconds (tests pass a fake one).

    Returns:
        The ASGI application; its clients open in the lifespan startup event.
    """
    config = config or Config.load()
    accesslog.configure(config.log_level)
    backends = Backends(config, UniqueClock(lambda: int(clock() * 1_000_000_000)))
    app = web.new_app(config, backends)
    heartbeat.mount(app, config, backends, clock)
    ident = identity.mount(app, config, backends, clock)
    act = activity.mount(app, config, backends, clock)
    stream_service = streams.mount(app, config, backends, clock, activity=act, identity=ident)
    portability.mount(
        app, config, backends, clock, activity=act, identity=ident, streams=stream_service
    )
    integrations.mount(app, config, backends, clock, activity=act, identity=ident)
    logs.mount(app, config, backends, clock)
    webapp.mount(app, config, backends, clock)
    web.mount(app, config, backends)
    return app

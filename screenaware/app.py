"""The application factory: one Falcon ASGI app serving both APIs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi
import falcon.media
import orjson

from heartbeat.resources import mount as mount_heartbeat
from heartbeat.service import HeartbeatService, StatsBroadcaster
from heartbeat.store import HeartbeatStore
from screenaware import errors, logsetup
from screenaware.activity import ActivityStore
from screenaware.activity_api import mount as mount_activity
from screenaware.auth import AuthMiddleware
from screenaware.backends import Backends, Lifespan
from screenaware.config import Config
from screenaware.docs import DocsResource, OpenAPIResource
from screenaware.health import HealthResource
from screenaware.identity import mount as mount_identity
from screenaware.influx import UniqueClock
from screenaware.learning import LearningStore
from screenaware.logs import LogService
from screenaware.logs_api import LogLimits
from screenaware.logs_api import mount as mount_logs
from screenaware.logsetup import AccessLog
from screenaware.metrics import MetricsResource
from screenaware.projects import ProjectStore
from screenaware.ratelimit import Quota
from screenaware.sessions import Thresholds
from screenaware.snapshots import SnapshotService
from screenaware.streams import StreamService
from screenaware.streams_api import mount as mount_streams
from screenaware.times import TimesService
from screenaware.users import make_accounts

LOG = logging.getLogger(__name__)


class BodyLimits:
    """The request body limit of each path: a default, and exceptions by path."""

    def __init__(self, default: int, by_path: dict[str, int] | None = None) -> None:
        self.default = default
        self.by_path = dict(by_path or {})

    def __call__(self, path: str) -> int:
        return self.by_path.get(path.rstrip("/") or "/", self.default)


class App(falcon.asgi.App):
    """Falcon's ASGI app with a request body limit enforced as the body streams in.

    Falcon reads bodies through ``receive``; counting there stops a chunked upload
    with no Content-Length as soon as it passes the limit, before it is buffered.
    """

    def __init__(self, *args: Any, body_limits: BodyLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body_limits = body_limits

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:  # type: ignore[override]
        if scope["type"] == "http":
            receive = _limited_receive(receive, self.body_limits(scope["path"]))
        await super().__call__(scope, receive, send)


def _limited_receive(receive: Any, limit: int) -> Any:
    received = 0

    async def wrapped() -> Any:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise errors.BodyTooLarge(limit)
        return message

    return wrapped


class ContentLengthLimit:
    """Middleware: refuse a declared Content-Length over the limit before reading."""

    def __init__(self, limits: BodyLimits) -> None:
        self._limits = limits

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        limit = self._limits(req.path)
        if req.content_length is not None and req.content_length > limit:
            raise errors.BodyTooLarge(limit)


def _dump_json(media: Any) -> bytes:
    return orjson.dumps(media, option=orjson.OPT_NON_STR_KEYS)


def create_app(
    config: Config | None = None, *, clock: Callable[[], float] = time.time
) -> falcon.asgi.App:
    """Build the service.

    Args:
        config: the configuration; read from the environment when None.
        clock: returns the current Unix time in seconds (tests pass a fake one).

    Returns:
        The ASGI application; its clients open in the lifespan startup event.
    """
    config = config or Config.load()
    logsetup.configure(config.log_level)
    backends = Backends(config, UniqueClock(lambda: int(clock() * 1_000_000_000)))
    store = HeartbeatStore(backends.get_redis)
    service = HeartbeatService(
        store,
        backends.writer,
        clock,
        backends.point_clock,
        max_batch=config.write_batch_max,
        max_pending=config.write_queue_max,
    )
    broadcaster = StatsBroadcaster(service.stats)

    accounts = make_accounts(config, backends.get_redis, clock)

    async def mark_first_setup() -> None:
        await store.mark_first_setup(service.now())

    access = AccessLog(log=config.access_log, measure=config.metrics)

    async def bootstrap_admin() -> None:
        await accounts.bootstrap_admin(config.admin_email, config.admin_password)

    # A crash upload may carry a dump of crash_max_bytes plus its form fields; the
    # dump's own limit is checked as it streams to disk.
    limits = BodyLimits(
        config.max_body_bytes,
        {
            "/api/snapshots": config.bulk_body_bytes,
            "/api/logs": config.bulk_body_bytes,
            "/api/logs/crash/sensor": config.crash_max_bytes + 1024 * 1024,
        },
    )
    middleware: list[Any] = []
    if config.cors_origin_list:
        # Off unless configured: browsers elsewhere may then call the API.
        middleware.append(
            falcon.CORSMiddleware(
                allow_origins="*" if "*" in config.cors_origin_list else config.cors_origin_list,
                expose_headers=["Retry-After", "Location"],
            )
        )
    app = App(
        body_limits=limits,
        middleware=[
            access,
            *middleware,
            Lifespan(
                backends,
                startup=[mark_first_setup, bootstrap_admin],
                shutdown=[broadcaster.stop, service.close, access.shutdown],
            ),
            ContentLengthLimit(limits),
            AuthMiddleware(accounts.tokens, accounts.principal),
        ],
    )
    app.req_options.strip_url_path_trailing_slash = True
    # orjson parses and writes JSON several times faster than the stdlib; snapshot
    # and log arrays of a thousand items spent a noticeable share of a worker there.
    json_handler = falcon.media.JSONHandler(dumps=_dump_json, loads=orjson.loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    errors.register(app, config.retry_after)
    mount_heartbeat(
        app,
        service,
        broadcaster,
        secret_key=config.secret_key,
        server_name=config.server_name,
    )
    projects = ProjectStore(backends.get_redis)
    mount_identity(app, accounts, projects)
    activity = ActivityStore(backends.get_redis)
    learning = LearningStore(backends.get_redis)
    mount_activity(
        app,
        SnapshotService(backends.writer, activity, clock, config.learn_min_score),
        TimesService(backends.influx, activity, clock),
        activity,
        batch_max=config.snapshot_batch_max,
        default_zone=config.timezone,
    )
    thresholds = Thresholds(
        join_gap=config.substream_join_gap * 1000,
        interruption=config.stream_interruption * 1000,
        idle_gap=config.stream_idle_gap * 1000,
    )
    streams = StreamService(
        backends.influx,
        backends.writer,
        activity,
        learning,
        backends.get_redis,
        clock,
        thresholds,
    )
    mount_streams(app, streams, learning, projects, config.timezone)
    redis = backends.get_redis
    mount_logs(
        app,
        LogService(
            backends.influx,
            backends.writer,
            redis,
            clock,
            config.data_path / "crashes",
            config.crash_max_bytes,
        ),
        LogLimits(Quota(redis, "logs", 60), config.log_rate_anonymous, config.log_rate_user),
        config.log_batch_max,
    )
    app.add_route("/.well-known/health", HealthResource(backends))
    app.add_route("/metrics", MetricsResource(config.metrics_token))
    app.add_route("/api/openapi.json", OpenAPIResource())
    app.add_route("/api/docs", DocsResource())
    return app

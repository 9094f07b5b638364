"""The Falcon app every feature mounts on: body limits, JSON, errors, middleware.

:func:`new_app` builds the app with what every route shares; each feature's
``mount`` then adds its routes (and, where it has them, its body limits and
lifespan hooks); :func:`mount` adds the operational routes last.
"""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import falcon.media
import orjson

from screenaware.config import Config
from screenaware.errors import BodyTooLarge
from screenaware.storage.backends import Backends, Lifespan
from screenaware.web import errors
from screenaware.web.accesslog import AccessLog
from screenaware.web.docs import DocsAssetResource, DocsResource, OpenAPIResource
from screenaware.web.headers import WorkerPidHeader
from screenaware.web.health import HealthResource
from screenaware.web.metrics import MetricsResource
from screenaware.web.openapi import build_spec


class BodyLimits:
    """The request body limit of each path: a default, and exceptions by path.

    Features add their own exceptions (bulk ingest, uploads) with :meth:`set`.
    """

    def __init__(self, default: int, by_path: dict[str, int] | None = None) -> None:
        self.default = default
        self.by_path = dict(by_path or {})

    def set(self, path: str, limit: int) -> None:
        """Allow bodies of up to ``limit`` bytes on ``path``."""
        self.by_path[path.rstrip("/") or "/"] = limit

    def __call__(self, path: str) -> int:
        return self.by_path.get(path.rstrip("/") or "/", self.default)


class App(falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]):
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
                raise BodyTooLarge(limit)
        return message

    return wrapped


class ContentLengthLimit:
    """Middleware: refuse a declared Content-Length over the limit before reading."""

    def __init__(self, limits: BodyLimits) -> None:
        self._limits = limits

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        limit = self._limits(req.path)
        if req.content_length is not None and req.content_length > limit:
            raise BodyTooLarge(limit)


def _dump_json(media: Any) -> bytes:
    return orjson.dumps(media, option=orjson.OPT_NON_STR_KEYS)


def new_app(config: Config, backends: Backends) -> App:
    """The app with the access log, CORS, lifespan, body limits, JSON and errors.

    Args:
        config: the service configuration.
        backends: opened and closed with the app's lifespan, running the hooks the
            features register on it.
    """
    access = AccessLog(log=config.access_log, measure=config.metrics)
    backends.on_shutdown(access.shutdown)
    limits = BodyLimits(config.max_body_bytes)
    middleware: list[Any] = [access]
    if config.worker_pid_header:
        middleware.append(WorkerPidHeader())
    if config.cors_origin_list:
        # Off unless configured: browsers elsewhere may then call the API.
        middleware.append(
            falcon.CORSMiddleware(
                allow_origins="*" if "*" in config.cors_origin_list else config.cors_origin_list,
                expose_headers=["Retry-After", "Location", "X-Interval-Seconds"],
            )
        )
    middleware += [Lifespan(backends), ContentLengthLimit(limits)]
    app = App(body_limits=limits, middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    # orjson parses and writes JSON several times faster than the stdlib; snapshot
    # and log arrays of a thousand items spent a noticeable share of a worker there.
    json_handler = falcon.media.JSONHandler(dumps=_dump_json, loads=orjson.loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    errors.register(app, config.retry_after, backends.outages)
    return app


def mount(
    app: falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response],
    config: Config,
    backends: Backends,
) -> None:
    """Add the operational routes: health, Prometheus metrics, OpenAPI and its docs.

    Call it after every feature has mounted: the OpenAPI document is built here,
    from the routes the app then has.
    """
    app.add_route("/.well-known/health", HealthResource(backends))
    app.add_route("/metrics", MetricsResource(config.metrics_token))
    openapi = OpenAPIResource()
    app.add_route("/api/openapi.json", openapi)
    app.add_route("/api/docs", DocsResource())
    app.add_route("/api/docs/{name}", DocsAssetResource())
    openapi.spec = build_spec(app)

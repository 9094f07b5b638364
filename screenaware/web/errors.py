"""The HTTP mapping of the domain exceptions, and the JSON error body."""

from __future__ import annotations

import logging
from typing import Any

import falcon
import falcon.asgi

from screenaware.errors import (
    AuthFailed,
    BodyTooLarge,
    Conflict,
    Forbidden,
    InfluxAnswerTooLarge,
    Invalid,
    Malformed,
    NotFound,
    RateLimited,
    StorageUnavailable,
    StoreFull,
    WriteQueueFull,
    WriteRejected,
)
from screenaware.storage import metrics
from screenaware.storage.outages import INFLUXDB, REDIS, REDIS_DOWN, OutageLog, backend_of

LOG = logging.getLogger(__name__)


class ValidationFailed(falcon.HTTPBadRequest):
    """400 whose body lists the errors per field: the request breaks the document."""

    def __init__(self, errors: Any, message: str = "Invalid request") -> None:
        super().__init__(description=message)
        self.errors = errors


class Unprocessable(falcon.HTTPUnprocessableEntity):
    """422 with the errors per field: the request fits the document, but its content
    is refused (a reference to an unknown project, start after end, ...).

    A 400 therefore always means "not what the OpenAPI document allows", which the
    contract tests hold the service to.
    """

    def __init__(self, errors: Any, message: str) -> None:
        super().__init__(description=message)
        self.errors = errors


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Render every HTTP error as JSON ``{"message": ...}`` (plus ``errors`` on 400)."""
    body: dict[str, Any] = {"message": exc.description or exc.title}
    errors = getattr(exc, "errors", None)
    if errors:
        body["errors"] = errors
    resp.content_type = falcon.MEDIA_JSON
    resp.media = body


def register(
    app: falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response],
    retry_after: int,
    outages: OutageLog,
) -> None:
    """Install the error handlers and the JSON error serializer on ``app``.

    Args:
        app: the application.
        retry_after: seconds a client should wait after a 503.
        outages: counts the 503s of a backend that is down and logs its transitions.
    """

    async def unavailable(
        req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any
    ) -> None:
        # Not a line per request (an outage wrote tens of thousands): the outage log
        # writes when the backend goes down, every so often while it stays down, and
        # when it is up again.
        backend = backend_of(exc) or REDIS
        outages.failure(backend, exc)
        LOG.debug("storage unavailable on %s %s: %s", req.method, req.path, type(exc).__name__)
        metrics.BACKEND_ERRORS.labels(backend).inc()
        if isinstance(exc, WriteQueueFull):
            message = "Too many writes are waiting for the database; try again shortly"
        elif isinstance(exc, InfluxAnswerTooLarge):
            message = "The database's answer is too large; ask for a shorter range"
        else:
            message = "A backing database is unavailable; try again shortly"
        raise falcon.HTTPServiceUnavailable(description=message, retry_after=retry_after)

    async def too_large(
        req: falcon.Request, resp: falcon.Response, exc: BodyTooLarge, params: Any
    ) -> None:
        raise falcon.HTTPContentTooLarge(
            description=f"Request body is larger than {exc.limit} bytes"
        )

    async def internal(
        req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any
    ) -> None:
        if isinstance(exc, falcon.HTTPError):
            raise exc
        LOG.exception("unhandled error on %s %s", req.method, req.path)
        raise falcon.HTTPInternalServerError(description="Internal server error")

    async def rejected(
        req: falcon.Request, resp: falcon.Response, exc: WriteRejected, params: Any
    ) -> None:
        # InfluxDB refused schema-valid data for good (a field of another type
        # already stored by older data, a time beyond the retention policy): the
        # operator must act, a retry will not help. Its text names measurements and
        # fields, so it goes to the log only.
        LOG.error("InfluxDB refused the data of %s %s: %s", req.method, req.path, exc)
        metrics.BACKEND_ERRORS.labels(INFLUXDB).inc()
        raise falcon.HTTPInternalServerError(
            description="The database refused to store this data; it was not stored"
        )

    def simple(status: str) -> Any:
        async def handler(
            req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any
        ) -> None:
            raise falcon.HTTPError(status, description=str(exc))

        return handler

    async def unauthorized(
        req: falcon.Request, resp: falcon.Response, exc: AuthFailed, params: Any
    ) -> None:
        raise falcon.HTTPUnauthorized(description=str(exc), challenges=["Bearer"])

    async def invalid(
        req: falcon.Request, resp: falcon.Response, exc: Invalid, params: Any
    ) -> None:
        if isinstance(exc, Malformed):
            raise ValidationFailed(exc.errors, str(exc))
        raise Unprocessable(exc.errors, str(exc))

    async def limited(
        req: falcon.Request, resp: falcon.Response, exc: RateLimited, params: Any
    ) -> None:
        raise falcon.HTTPTooManyRequests(description=str(exc), retry_after=exc.retry_after)

    app.set_error_serializer(serialize_error)
    app.add_error_handler(AuthFailed, unauthorized)
    app.add_error_handler(Forbidden, simple(falcon.HTTP_403))
    app.add_error_handler(NotFound, simple(falcon.HTTP_404))
    app.add_error_handler(Conflict, simple(falcon.HTTP_409))
    app.add_error_handler(Invalid, invalid)
    app.add_error_handler(RateLimited, limited)
    app.add_error_handler(StoreFull, simple(falcon.HTTP_507))
    # Falcon picks the most specific handler, so order of registration is free.
    app.add_error_handler(Exception, internal)
    app.add_error_handler(BodyTooLarge, too_large)
    app.add_error_handler(StorageUnavailable, unavailable)
    app.add_error_handler(WriteRejected, rejected)
    for down in REDIS_DOWN:  # incl. a Redis Cluster without a master for a slot
        app.add_error_handler(down, unavailable)

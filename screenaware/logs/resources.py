"""Resources of ``/api/logs``: ingest (anyone), crash uploads, and the admin review."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import falcon
import falcon.asgi
import orjson

from schemas.identity import OkSchema
from schemas.logs import (
    CountSchema,
    LogBucketSchema,
    LogPointInSchema,
    LogPointSchema,
    LogQuerySchema,
    LogRangeSchema,
    LogSeriesSchema,
    interval_ok,
)
from screenaware.errors import Invalid, Malformed, NotFound
from screenaware.logs.crashes import CrashStore
from screenaware.logs.service import LogService
from screenaware.storage.ratelimit import Quota
from screenaware.timeutil import to_ms
from screenaware.web.openapi import operation
from screenaware.web.validation import load_body, load_query

LOG = logging.getLogger(__name__)

_point = LogPointSchema()
_points = LogPointSchema(many=True)
_series = LogSeriesSchema(many=True)
_buckets = LogBucketSchema(many=True)

DEFAULT_SPAN = dt.timedelta(days=2)
_CHUNK = 64 * 1024

# Breakpad's form: text fields, then the dump; or the dump as the whole body.
CRASH_UPLOAD = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            # A dump of no bytes is no dump (400).
            "properties": {
                "upload_file_minidump": {"type": "string", "format": "binary", "minLength": 1}
            },
            "required": ["upload_file_minidump"],
            # Breakpad's text fields (prod, ver, guid, ...): any, kept as text.
            "additionalProperties": {},
        },
    },
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}},
}
# Fields may come in the query string too (prod, ver, guid, ...).
CRASH_FIELDS = {
    "in": "query",
    "name": "fields",
    "style": "form",
    "explode": True,
    # Any name, any value: nothing in a query string can break this.
    "schema": {},
}


class LogLimits:
    """Points per minute for anonymous senders (per address) and for users."""

    def __init__(self, quota: Quota, anonymous: int, user: int) -> None:
        self.quota = quota
        self.anonymous = anonymous
        self.user = user

    async def take(self, req: falcon.asgi.Request, amount: int) -> str | None:
        """Charge the sender; returns the caller's uuid when a valid token came along."""
        principal = req.context.principal
        if principal is not None:
            await self.quota.take(f"user:{principal.uuid}", amount, self.user)
            return str(principal.uuid)
        await self.quota.take(f"addr:{req.remote_addr}", amount, self.anonymous)
        return None


async def json_array(
    first: list[dict[str, Any]],
    rest: AsyncIterator[list[dict[str, Any]]],
    dump: Callable[[list[dict[str, Any]]], Any],
) -> AsyncIterator[bytes]:
    """A JSON array written page by page: the worker holds one page, never the answer.

    The first page was fetched before the answer began, so that a dead database
    still gets its 503; a failure after that can only cut the answer off (the
    connection ends without the closing chunk, so no client takes it as whole).
    """
    yield b"[" + orjson.dumps(dump(first))[1:-1]
    separate = bool(first)
    try:
        async for page in rest:
            if page:
                yield (b"," if separate else b"") + orjson.dumps(dump(page))[1:-1]
                separate = True
    except Exception as exc:
        LOG.warning("listing cut off: %s", type(exc).__name__)
        raise
    yield b"]"


async def _stream(
    resp: falcon.asgi.Response,
    pages: AsyncIterator[list[dict[str, Any]]],
    dump: Callable[[list[dict[str, Any]]], Any],
) -> None:
    first: list[dict[str, Any]] = await anext(pages, [])
    resp.content_type = falcon.MEDIA_JSON
    resp.stream = json_array(first, pages, dump)


def _range(service: LogService, params: dict[str, Any]) -> tuple[int, int]:
    end = to_ms(params["end"]) if params.get("end") else service.now_ms()
    start = (
        to_ms(params["start"])
        if params.get("start")
        else end - int(DEFAULT_SPAN.total_seconds() * 1000)
    )
    if start > end:
        raise Invalid("start is after end", {"start": ["Must not be after end."]})
    return start, end


class LogsResource:
    """``POST /api/logs`` (anyone) and ``GET /api/logs`` (admin: the series)."""

    auth_roles = {"POST": "all", "GET": "admin"}

    def __init__(self, service: LogService, limits: LogLimits, batch_max: int) -> None:
        self._service = service
        self._limits = limits
        self.batch_max = batch_max

    @operation("Send one log point or an array", "logs", responses={200: OkSchema})
    @load_body(LogPointInSchema(), batch="batch_max")
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = await self._limits.take(req, len(req.context.body))
        await self._service.ingest(req.context.body, user)
        resp.media = {"ok": True}

    @operation("Log series with their counts", "logs", responses={200: LogSeriesSchema(many=True)})
    @load_query(LogRangeSchema())
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        start, end = _range(self._service, req.context.query)
        await _stream(resp, self._service.series(start, end), _series.dump)


class LogTypeResource:
    """``GET /api/logs/{type}``: points (streamed), 5-minute counts, or just the count."""

    auth_roles = {"GET": "admin"}

    def __init__(self, service: LogService) -> None:
        self._service = service

    @operation(
        "Points of a series, counts, or 5-minute counts",
        "logs",
        responses={
            200: {
                "anyOf": [
                    LogPointSchema(many=True),
                    LogBucketSchema(many=True),
                    CountSchema,
                ]
            }
        },
    )
    @load_query(LogQuerySchema())
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, log_type: str
    ) -> None:
        params = req.context.query
        start, end = _range(self._service, params)
        user = str(params["userUuid"]) if params.get("userUuid") else None
        if params["metaonly"]:
            resp.media = {"count": await self._service.count(log_type, start, end, user)}
        elif params.get("structure") == "grouped":
            interval = params["interval"]
            if not interval_ok(interval):
                raise Invalid(
                    "interval must be a multiple of 5m, at most 36500d",
                    {"interval": ["Must be a multiple of 5m, at most 36500d."]},
                )
            buckets = await self._service.grouped(log_type, start, end, user, interval)
            resp.set_header("X-Interval-Seconds", str(interval))
            resp.media = _buckets.dump(buckets)
        else:
            cursor = str(params["cursor"]) if params.get("cursor") else None
            if cursor is not None and params["offset"]:
                raise Invalid("Use either cursor or offset", {"cursor": ["Not with offset."]})
            pages = self._service.points(
                log_type, start, end, user, params["limit"], params["offset"], cursor
            )
            await _stream(resp, pages, _points.dump)


class LogPointResource:
    """``GET /api/logs/point/{uuid}``."""

    auth_roles = {"GET": "admin"}

    def __init__(self, service: LogService) -> None:
        self._service = service

    @operation("One log point", "logs", responses={200: LogPointSchema})
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, point_uuid: str
    ) -> None:
        resp.media = _point.dump(await self._service.point(point_uuid))


async def _chunks(stream: Any) -> AsyncIterator[bytes]:
    while chunk := await stream.read(_CHUNK):
        yield chunk


class CrashUploadResource:
    """``POST /api/logs/crash/sensor``: a Breakpad upload (multipart or raw body)."""

    auth_roles = {"POST": "all"}

    def __init__(self, store: CrashStore, limits: LogLimits) -> None:
        self._store = store
        self._limits = limits

    @operation(
        "Upload a Breakpad crash dump",
        "logs",
        responses={200: ("text/plain", {"type": "string", "description": "the point's uuid"})},
        request_body=CRASH_UPLOAD,
        parameters=[CRASH_FIELDS],
        description=(
            "Breakpad's multipart form (its fields, then the upload_file_minidump part) "
            "or the raw dump as the body; other fields may come in the query string."
        ),
    )
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = await self._limits.take(req, 1)
        fields = {k: v if isinstance(v, str) else v[-1] for k, v in req.params.items()}
        if (req.content_type or "").startswith("multipart/form-data"):
            point_uuid = await self._multipart(req, fields, user)
        else:
            point_uuid = await self._store.store(
                fields, _chunks(req.stream), user, req.remote_addr, req.content_length
            )
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = point_uuid

    async def _multipart(
        self, req: falcon.asgi.Request, fields: dict[str, str], user: str | None
    ) -> str:
        form = await req.get_media()
        async for part in form:
            if part.filename is not None or part.name == "upload_file_minidump":
                # Breakpad sends its fields before the file; later parts are ignored.
                return await self._store.store(
                    fields, _chunks(part.stream), user, req.remote_addr, req.content_length
                )
            fields[part.name] = (await part.get_text()) or ""
        raise Malformed(
            "No upload_file_minidump part in the upload",
            {"upload_file_minidump": ["Missing."]},
        )


class CrashDumpResource:
    """``GET /api/logs/crash/{uuid}`` (admin): the dump itself, streamed from disk."""

    auth_roles = {"GET": "admin"}

    def __init__(self, store: CrashStore) -> None:
        self._store = store

    @operation(
        "Download a crash dump",
        "logs",
        responses={200: ("application/octet-stream", {"type": "string", "format": "binary"})},
    )
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, point_uuid: str
    ) -> None:
        found = await self._store.open(point_uuid)
        if found is None:
            raise NotFound("No such crash dump")
        handle, size = found
        resp.content_type = "application/octet-stream"
        resp.downloadable_as = f"{uuid.UUID(point_uuid)}.dmp"
        resp.content_length = size
        resp.stream = self._store.read(handle)

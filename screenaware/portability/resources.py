"""Resources of export and imports under ``/api``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import falcon
import falcon.asgi

from schemas.portability import ExportQuerySchema
from screenaware.errors import Invalid, NotFound
from screenaware.portability.native import Exporter
from screenaware.portability.spool import Spool
from screenaware.web.auth import caller
from screenaware.web.validation import load_query


class ExportResource:
    """``GET /api/export``: everything of the caller (an admin: of ``?user=``)."""

    auth_roles = {"GET": "user"}

    def __init__(self, exporter: Exporter, accounts: Any) -> None:
        self._exporter = exporter
        self._accounts = accounts

    @load_query(ExportQuerySchema())
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = caller(req)
        wanted = req.context.query.get("user")
        wanted = str(wanted) if wanted else None
        if wanted and wanted != user:
            if req.context.principal.role != "admin":
                raise NotFound("User not found")  # never confirm another user exists
            user = wanted
        # Checked before the first byte: once streaming, no error answer is possible.
        await self._accounts.store.require(user)
        resp.content_type = "application/x-ndjson"
        resp.downloadable_as = f"screenaware-{user}.jsonl"
        resp.stream = self._exporter.lines(user)


async def upload_chunks(req: falcon.asgi.Request) -> AsyncIterator[bytes]:
    """The uploaded file as it streams in: the multipart field ``file``, or the body."""
    if req.content_type and req.content_type.startswith("multipart/form-data"):
        form = await req.get_media()
        async for part in form:
            if part.name == "file":
                async for chunk in part.stream:
                    yield chunk
                return
            async for _ in part.stream:  # other fields: read past, never kept
                pass
        raise Invalid("The multipart field 'file' is missing", {"file": ["Missing."]})
    async for chunk in req.stream:
        yield chunk


async def spool_upload(req: falcon.asgi.Request, spool: Spool) -> Spool:
    """Spool the upload to disk (the disk writes off the event loop in big pieces)."""
    pending: list[bytes] = []
    size = 0
    async for chunk in upload_chunks(req):
        pending.append(chunk)
        size += len(chunk)
        if size >= 1 << 20:
            await asyncio.to_thread(spool.write, b"".join(pending))
            pending, size = [], 0
    if pending:
        await asyncio.to_thread(spool.write, b"".join(pending))
    return spool


Importer = Callable[[str, Spool], Awaitable[dict[str, Any]]]


class ImportResource:
    """``POST /api/import/<format>``: a file into the caller's account.

    Args:
        importer: stores a spooled file into a user; returns the summary.
        max_bytes: the largest file.
        max_line: the longest line (JSON Lines formats), or None.
    """

    auth_roles = {"POST": "user"}

    def __init__(self, importer: Importer, max_bytes: int, max_line: int | None) -> None:
        self._importer = importer
        self._max_bytes = max_bytes
        self._max_line = max_line

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        with Spool(self._max_bytes, self._max_line) as spool:
            await spool_upload(req, spool)
            resp.media = await self._importer(caller(req), spool)

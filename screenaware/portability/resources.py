"""Resources of export and imports under ``/api``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import falcon
import falcon.asgi

from schemas.portability import ExportQuerySchema, ImportSummarySchema
from screenaware.errors import Malformed, NotFound
from screenaware.portability.native import Exporter
from screenaware.portability.spool import Spool
from screenaware.web.auth import caller
from screenaware.web.openapi import operation
from screenaware.web.validation import load_query


class ExportResource:
    """``GET /api/export``: everything of the caller (an admin: of ``?user=``)."""

    auth_roles = {"GET": "user"}

    def __init__(self, exporter: Exporter, accounts: Any) -> None:
        self._exporter = exporter
        self._accounts = accounts

    @operation(
        "Everything of yours as JSON Lines (an admin: of ?user=<uuid>)",
        "portability",
        responses={200: ("application/x-ndjson", {"type": "string"})},
        description=(
            "A header line naming the format and its version, one item a line (profile, "
            "projects, tasks, categories, API key names without secrets, snapshots as sent "
            "with the attribution they were stored with, corrections, associations), and an "
            "end line counting the items. Streamed."
        ),
    )
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
        raise Malformed("The multipart field 'file' is missing", {"file": ["Missing."]})
    async for chunk in req.stream:
        yield chunk


Importer = Callable[[str, Spool], Awaitable[dict[str, Any]]]


class ImportResource:
    """``POST /api/import/<format>``: a file into the caller's account.

    Args:
        importer: stores a spooled file into a user; returns the summary.
        max_bytes: the largest file.
        max_line: the longest line (JSON Lines formats), or None.
        max_value: the longest JSON value (JSON formats), or None.
    """

    auth_roles = {"POST": "user"}

    def __init__(
        self,
        importer: Importer,
        max_bytes: int,
        max_line: int | None,
        max_value: int | None = None,
    ) -> None:
        self._importer = importer
        self._max_bytes = max_bytes
        self._max_line = max_line
        self._max_value = max_value

    @operation(
        "Import a file into your account (the format is the last part of the path)",
        "portability",
        responses={200: ImportSummarySchema},
        description=(
            "screenaware: a ScreenAware export (JSON Lines); activitywatch: aw-server's "
            "export; wakatime: a WakaTime heartbeats dump. The whole file is checked before "
            "anything is stored (422 naming the first bad item); importing twice changes "
            "nothing. API keys of an export are listed under skipped: they cannot be "
            "restored without their secrets."
        ),
        body_types=(),
        request_body={
            "application/json": {"schema": {"type": "string", "format": "binary"}},
            "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    )
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        with Spool(self._max_bytes, self._max_line, self._max_value) as spool:
            await spool.fill(upload_chunks(req))
            resp.media = await self._importer(caller(req), spool)

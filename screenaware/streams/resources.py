"""Resources of streams, substreams, corrections and learned associations."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import falcon
import falcon.asgi

from schemas.activity import (
    AssociationSchema,
    ForgetSchema,
    StreamProjectSchema,
    StreamSchema,
    StreamsQuerySchema,
    SubstreamSchema,
    SubstreamsQuerySchema,
    ZoneQuerySchema,
)
from schemas.identity import OkSchema
from screenaware.activity import LearningStore
from screenaware.identity import ProjectStore
from screenaware.streams.service import StreamService
from screenaware.web.auth import caller, caller_zone
from screenaware.web.csvout import render, wants_csv
from screenaware.web.openapi import operation
from screenaware.web.validation import load_body, load_query

_associations = AssociationSchema(many=True)


class _Zoned:
    """Resolves the zone: ``tz``, else the user's, else the configured default."""

    def __init__(self, service: StreamService, default_zone: str) -> None:
        self._service = service
        self._default_zone = default_zone

    def zone(self, req: falcon.asgi.Request, tz: str | None) -> ZoneInfo:
        return ZoneInfo(caller_zone(req, tz, self._default_zone))


STREAM_COLUMNS = ("uuid", "time", "durationMs", "projectUuid", "isGap")


def stream_rows(
    answer: list[dict[str, Any]] | dict[str, list[dict[str, Any]]],
) -> tuple[list[str], list[list[Any]]]:
    """/streams as CSV columns and rows: one row per stream (with its day first when
    grouped by day); what ``expanded`` adds is left out."""
    if isinstance(answer, dict):
        columns = ["day", *STREAM_COLUMNS]
        rows = [[day, *(s.get(c, False if c == "isGap" else None) for c in STREAM_COLUMNS)]
                for day, streams in answer.items() for s in streams]  # fmt: skip
        return columns, rows
    return list(STREAM_COLUMNS), [
        [s.get(c, False if c == "isGap" else None) for c in STREAM_COLUMNS] for s in answer
    ]


class StreamsResource(_Zoned):
    """``GET /api/streams``."""

    auth_roles = {"GET": "user"}

    @operation(
        "Streams (and gap streams)",
        "streams",
        responses={
            200: {
                "oneOf": [
                    StreamSchema(many=True),
                    {"type": "object", "additionalProperties": StreamSchema(many=True)},
                ]
            }
        },
        description="With groupByDay, an object of arrays keyed by the local day.",
    )
    @load_query(StreamsQuerySchema())
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        params = req.context.query
        # Already in the shape of StreamSchema; a dump of thousands would only cost time.
        answer = await self._service.streams(caller(req), params, self.zone(req, params.get("tz")))
        if wants_csv(req):
            render(resp, *stream_rows(answer))
            return
        resp.media = answer


class SubstreamsResource(_Zoned):
    """``GET /api/substreams``."""

    auth_roles = {"GET": "user"}

    @operation("Substreams", "streams", responses={200: SubstreamSchema(many=True)})
    @load_query(SubstreamsQuerySchema())
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        params = req.context.query
        zone = self.zone(req, params.get("tz"))
        resp.media = await self._service.substreams(caller(req), params, zone)


class StreamProjectResource(_Zoned):
    """``PUT /api/stream/{uuid}/project`` (and ``/api/streams/{uuid}/project``)."""

    auth_roles = {"PUT": "user"}

    @operation(
        "Correct the project of a stream (teaches the attribution)",
        "streams",
        responses={200: OkSchema},
        description="Also as /api/streams/{stream_uuid}/project.",
    )
    @load_query(ZoneQuerySchema(), from_body=False)
    @load_body(StreamProjectSchema())
    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, stream_uuid: str
    ) -> None:
        project = req.context.body["projectUuid"]
        await self._service.correct(
            caller(req),
            stream_uuid,
            None if project is None else str(project),
            self.zone(req, req.context.query.get("tz")),
        )
        resp.media = {"ok": True}


class AssociationsResource:
    """``GET/DELETE /api/projects/{id}/associations``: what corrections taught."""

    auth_roles = {"GET": "user", "DELETE": "user"}

    def __init__(self, learning: LearningStore, projects: ProjectStore) -> None:
        self._learning = learning
        self._projects = projects

    @operation(
        "What corrections taught about a project",
        "projects",
        responses={200: AssociationSchema(many=True)},
    )
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, project_id: str
    ) -> None:
        await self._projects.project(caller(req), project_id)  # 404 unless the caller's
        resp.media = _associations.dump(await self._learning.for_project(caller(req), project_id))

    @operation(
        "Forget what corrections taught about a project",
        "projects",
        responses={200: ForgetSchema},
    )
    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, project_id: str
    ) -> None:
        await self._projects.project(caller(req), project_id)
        forgotten = await self._learning.forget_project(caller(req), project_id)
        resp.media = {"ok": True, "forgotten": forgotten}

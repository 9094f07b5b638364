"""Resources of snapshots, /times, applications and categories under ``/api``."""

from __future__ import annotations

import falcon
import falcon.asgi
import orjson

from schemas.activity import (
    ApplicationSchema,
    CategoryInSchema,
    CategorySchema,
    SnapshotSchema,
    TimeBucketSchema,
    TimesQuerySchema,
)
from schemas.identity import OkSchema
from screenaware.activity.snapshots import SnapshotService
from screenaware.activity.store import ActivityStore
from screenaware.activity.times import TimesService, csv_rows, gunzip
from screenaware.web.auth import caller, caller_zone
from screenaware.web.csvout import render, wants_csv
from screenaware.web.openapi import operation
from screenaware.web.validation import load_body, load_query

_applications = ApplicationSchema(many=True)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header lets the answer be sent gzip-compressed
    (``gzip`` or ``*`` with a non-zero quality, RFC 9110 12.5.3)."""
    qualities: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        name, _, params = item.partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        qualities[name.strip().lower()] = quality
    if "gzip" in qualities:
        return qualities["gzip"] > 0
    return qualities.get("*", 0.0) > 0


_category = CategorySchema()
_categories = CategorySchema(many=True)


class SnapshotsResource:
    """``POST /api/snapshots``: one snapshot or an array."""

    auth_roles = {"POST": "user"}

    def __init__(self, service: SnapshotService, batch_max: int) -> None:
        self._service = service
        self.batch_max = batch_max

    @operation("Send one snapshot or an array", "activity", responses={200: OkSchema})
    @load_body(SnapshotSchema(), batch="batch_max")
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._service.ingest(caller(req), req.context.body)
        resp.media = {"ok": True}


class TimesResource:
    """``GET /api/times``."""

    auth_roles = {"GET": "user"}

    def __init__(self, service: TimesService, default_zone: str) -> None:
        self._service = service
        self._default_zone = default_zone

    @operation("Time by group and bucket", "activity", responses={200: TimeBucketSchema})
    @load_query(TimesQuerySchema())
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        params = req.context.query
        zone = caller_zone(req, params.get("tz"), self._default_zone)
        answer = await self._service.answer_gzip(caller(req), params, zone)
        if wants_csv(req):
            render(resp, *csv_rows(orjson.loads(gunzip(answer)), params.get("groupBy")))
            return
        # The answer is kept compressed: sent so to a client that takes gzip (httpx,
        # browsers, Grafana), plain to one that does not.
        resp.vary = ("Accept-Encoding",)
        if accepts_gzip(req.get_header("Accept-Encoding")):
            resp.data = answer
            resp.set_header("Content-Encoding", "gzip")
        else:
            resp.data = gunzip(answer)
        resp.content_type = falcon.MEDIA_JSON


class ApplicationsResource:
    """``GET /api/applications``: the applications the caller's snapshots named."""

    auth_roles = {"GET": "user"}

    def __init__(self, store: ActivityStore) -> None:
        self._store = store

    @operation("Your applications", "activity", responses={200: ApplicationSchema(many=True)})
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        apps = await self._store.applications(caller(req))
        ordered = sorted(apps.items(), key=lambda item: (item[1], item[0]))
        resp.media = _applications.dump([{"uuid": u, "name": n} for u, n in ordered])


class CategoriesResource:
    """``GET/POST /api/categories``."""

    auth_roles = {"GET": "user", "POST": "user"}

    def __init__(self, store: ActivityStore) -> None:
        self._store = store

    @operation(
        "Your categories, then the built-in ones",
        "activity",
        responses={200: CategorySchema(many=True)},
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = _categories.dump(await self._store.categories(caller(req)))

    @operation("Create a category", "activity", responses={201: CategorySchema})
    @load_body(CategoryInSchema())
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        category = await self._store.save_category(caller(req), req.context.body)
        resp.status = falcon.HTTP_201
        resp.media = _category.dump(category)


class CategoryResource:
    """``PUT/DELETE /api/categories/{id}`` (the caller's own categories)."""

    auth_roles = {"PUT": "user", "DELETE": "user"}

    def __init__(self, store: ActivityStore) -> None:
        self._store = store

    @operation("Change one of your categories", "activity", responses={200: CategorySchema})
    @load_body(CategoryInSchema(partial=True))
    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, category_id: str
    ) -> None:
        category = await self._store.save_category(caller(req), req.context.body, category_id)
        resp.media = _category.dump(category)

    @operation("Delete one of your categories", "activity", responses={200: CategorySchema})
    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, category_id: str
    ) -> None:
        resp.media = _category.dump(await self._store.delete_category(caller(req), category_id))

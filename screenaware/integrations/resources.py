"""HTTP resources of ``/api/integrations``: thin responders over the services."""

from __future__ import annotations

import falcon
import falcon.asgi
import marshmallow

from schemas.integrations import (
    MAPPING_BODY,
    CalendarConnectSchema,
    DisconnectQuerySchema,
    IntegrationSchema,
    RedmineBookingSchema,
    RedmineBookSchema,
    RedmineConnectSchema,
    RedmineDisconnectQuerySchema,
    RedmineMappingSchema,
    mapping_field,
)
from screenaware.integrations.calendar import NAME as CALENDAR
from screenaware.integrations.calendar import CalendarSync
from screenaware.integrations.redmine import NAME as REDMINE
from screenaware.integrations.redmine import RedmineSync
from screenaware.integrations.store import IntegrationStore, State
from screenaware.timeutil import from_ms, iso
from screenaware.web.auth import caller, caller_zone
from screenaware.web.errors import ValidationFailed
from screenaware.web.openapi import operation
from screenaware.web.validation import load_body, load_query

INTEGRATIONS = {
    "googleCalendar": {
        "name": "Google Calendar",
        "description": "Include time spent in meetings or in transit to your activity data.",
    },
    "redmine": {
        "name": "Redmine",
        "description": (
            "Relate spent activity time to tasks/projects you manage inside the Redmine app"
        ),
    },
}

_schema = IntegrationSchema()
_mapping = RedmineMappingSchema()
_booking = RedmineBookingSchema()


def public(key: str, state: State) -> dict[str, object]:
    """What the user sees of one integration (never its settings)."""
    if state.connected:
        status = "connected"
    elif state.configured and state.last_error:
        status = f"not connected: {state.last_error}"
    elif state.configured:
        status = "connecting"
    else:
        status = "not connected"
    dumped: dict[str, object] = _schema.dump(
        {
            "key": key,
            **INTEGRATIONS[key],
            "status": status,
            "connected": state.connected,
            "lastSync": iso(from_ms(state.last_sync_ms)) if state.last_sync_ms else None,
            "lastError": state.last_error,
        }
    )
    return dumped


class IntegrationsResource:
    """``GET /api/integrations``."""

    auth_roles = {"GET": "user"}

    def __init__(self, store: IntegrationStore) -> None:
        self._store = store

    @operation(
        "Third-party integrations and their state",
        "integrations",
        responses={200: {"type": "object", "additionalProperties": IntegrationSchema}},
        description=(
            "`connected` is true when the last sync succeeded; `lastSync` is when it did, "
            "`lastError` why the last attempt failed."
        ),
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = caller(req)
        resp.media = {key: public(key, await self._store.state(user, key)) for key in INTEGRATIONS}


class CalendarResource:
    """``PUT``/``DELETE /api/integrations/googleCalendar``."""

    auth_roles = {"PUT": "user", "DELETE": "user"}

    def __init__(self, store: IntegrationStore, sync: CalendarSync) -> None:
        self._store = store
        self._sync = sync

    @operation(
        "Connect a calendar (CalDAV collection or .ics address) and sync it",
        "integrations",
        responses={200: IntegrationSchema},
        description=(
            "The credentials are stored encrypted and never shown. The calendar is read "
            "at once; a failure (`401 from the calendar server`, `not an iCalendar "
            "document`) answers 200 with `connected: false` and the reason."
        ),
    )
    @load_body(CalendarConnectSchema())
    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = caller(req)
        body = req.context.body
        settings = {k: body[k] for k in ("url", "username", "password") if body.get(k)}
        await self._store.connect(user, CALENDAR, settings)
        await self._sync.sync(user, force=True, wait=self._sync.lock_wait)
        resp.media = public(CALENDAR, await self._store.state(user, CALENDAR))

    @operation(
        "Disconnect the calendar",
        "integrations",
        responses={200: IntegrationSchema},
        description=(
            "The imported meeting time stays unless `purge=true`, which reverses it "
            "(ledger entries, nothing is deleted)."
        ),
    )
    @load_query(DisconnectQuerySchema(), from_body=False)
    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = caller(req)
        await self._sync.disconnect(user, purge=req.context.query["purge"])
        resp.status = falcon.HTTP_200
        resp.media = public(CALENDAR, await self._store.state(user, CALENDAR))


class RedmineResource:
    """``PUT``/``DELETE /api/integrations/redmine``."""

    auth_roles = {"PUT": "user", "DELETE": "user"}

    def __init__(self, store: IntegrationStore, sync: RedmineSync) -> None:
        self._store = store
        self._sync = sync

    @operation(
        "Connect Redmine (its address and your API key) and sync your issues",
        "integrations",
        responses={200: IntegrationSchema},
        description=(
            "The key is stored encrypted and never shown. Redmine is asked at once; a "
            "failure (`401 from the Redmine server`, `the Redmine server cannot be "
            "reached (ConnectError)`) answers 200 with `connected: false` and the "
            "reason. `dailyBooking: true` books the previous day's time every day. "
            "The same address again keeps the mapping and the bookings."
        ),
    )
    @load_body(RedmineConnectSchema())
    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = req.context.body
        user = caller(req)
        await self._sync.connect(user, body["url"], body["apiKey"], daily=body["dailyBooking"])
        resp.media = public(REDMINE, await self._store.state(user, REDMINE))

    @operation(
        "Disconnect Redmine",
        "integrations",
        responses={200: IntegrationSchema},
        description=(
            "The tasks made from Redmine issues stay (no longer synced) unless "
            "`purge=true`; time entries booked in Redmine stay there."
        ),
    )
    @load_query(RedmineDisconnectQuerySchema(), from_body=False)
    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = caller(req)
        await self._sync.disconnect(user, purge=req.context.query["purge"])
        resp.media = public(REDMINE, await self._store.state(user, REDMINE))


class RedmineMappingResource:
    """``GET``/``PUT /api/integrations/redmine/mapping``."""

    auth_roles = {"GET": "user", "PUT": "user"}

    def __init__(self, sync: RedmineSync) -> None:
        self._sync = sync

    async def _answer(self, user: str, mapping: dict[str, str]) -> dict[str, object]:
        projects = await self._sync.redmine_projects(user)
        listed = [
            {"id": p.id, "name": p.name, "identifier": p.identifier,
             "projectUuid": mapping.get(str(p.id))}
            for p in projects
        ]  # fmt: skip
        dumped: dict[str, object] = _mapping.dump({"mapping": mapping, "projects": listed})
        return dumped

    @operation(
        "The Redmine mapping and the Redmine projects you can see",
        "integrations",
        responses={200: RedmineMappingSchema},
        description="409 when Redmine is not connected or cannot be asked (the reason in words).",
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = caller(req)
        resp.media = await self._answer(user, await self._sync.mapping(user))

    @operation(
        "Map Redmine projects to your projects (their open issues become tasks)",
        "integrations",
        responses={200: RedmineMappingSchema},
        request_body={"application/json": {"schema": MAPPING_BODY}},
        description=(
            "The body is the whole mapping, `{redmineProjectId: projectUuid}`; `new` "
            "creates a project named after the Redmine one. The open issues assigned "
            "to you in a mapped project become its tasks at once and follow Redmine on "
            "every sync. An unknown project (yours or Redmine's), or one of yours "
            "mapped twice: 422. Not connected, or Redmine cannot be asked: 409 with the reason."
        ),
    )
    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = caller(req)
        try:
            requested = mapping_field.deserialize(await req.get_media())
        except marshmallow.ValidationError as exc:
            raise ValidationFailed({"mapping": exc.messages}, "Invalid request body") from None
        mapping = await self._sync.set_mapping(user, requested)
        resp.media = await self._answer(user, mapping)


class RedmineTimeEntriesResource:
    """``POST /api/integrations/redmine/time-entries``."""

    auth_roles = {"POST": "user"}

    def __init__(self, sync: RedmineSync, default_zone: str) -> None:
        self._sync = sync
        self._default_zone = default_zone

    @operation(
        "Book a day's time in Redmine (per mapped project)",
        "integrations",
        responses={200: RedmineBookingSchema},
        description=(
            "One time entry per mapped project with time that day (your time zone), "
            "the hours to two decimals, commented `ScreenAware: ...`. Booking the day "
            "again updates those entries (deletes one left with no time) instead of "
            "adding new ones. Not connected, or Redmine refused or cannot be reached: "
            "409 with the reason."
        ),
    )
    @load_body(RedmineBookSchema())
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = caller(req)
        day = req.context.body["date"]
        booked = await self._sync.book(user, day, caller_zone(req, None, self._default_zone))
        resp.media = _booking.dump(
            {
                "date": day.isoformat(),
                "entries": [
                    {"redmineProjectId": b.redmine_project_id, "projectUuid": b.project_uuid,
                     "hours": b.hours, "timeEntryId": b.time_entry_id}
                    for b in booked
                ],
            }
        )  # fmt: skip

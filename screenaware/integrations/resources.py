"""HTTP resources of ``/api/integrations``: thin responders over the services."""

from __future__ import annotations

import falcon
import falcon.asgi

from schemas.integrations import CalendarConnectSchema, DisconnectQuerySchema, IntegrationSchema
from screenaware.integrations.calendar import NAME as CALENDAR
from screenaware.integrations.calendar import CalendarSync
from screenaware.integrations.store import IntegrationStore, State
from screenaware.timeutil import from_ms, iso
from screenaware.web.auth import caller
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

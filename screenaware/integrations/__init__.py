"""Integrations: third-party services connected per user, their credentials
encrypted (:mod:`.store`), the calendar (:mod:`.calendar`) and Redmine
(:mod:`.redmine`).

Other features use only what this module exports: the integration store and the
two syncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from screenaware.activity import Activity
from screenaware.config import Config
from screenaware.errors import StorageUnavailable
from screenaware.identity import Identity
from screenaware.integrations.calendar import CalendarSync
from screenaware.integrations.redmine import RedmineSync
from screenaware.integrations.resources import (
    CalendarResource,
    IntegrationsResource,
    RedmineMappingResource,
    RedmineResource,
    RedmineTimeEntriesResource,
)
from screenaware.integrations.store import CredentialsUnreadable, IntegrationStore, State
from screenaware.storage.backends import Backends
from screenaware.timeutil import parse_zone
from screenaware.web.app import App

LOG = logging.getLogger(__name__)

__all__ = [
    "CalendarSync",
    "CredentialsUnreadable",
    "IntegrationStore",
    "Integrations",
    "RedmineSync",
    "State",
    "mount",
]


@dataclass(frozen=True)
class Integrations:
    """What the integrations feature offers the others."""

    store: IntegrationStore
    calendar: CalendarSync
    redmine: RedmineSync


def mount(
    app: App,
    config: Config,
    backends: Backends,
    clock: Callable[[], float],
    *,
    activity: Activity,
    identity: Identity,
) -> Integrations:
    """Add the integration routes and the periodic calendar and Redmine syncs to ``app``."""
    store = IntegrationStore(backends.get_redis, config.encryption_key)

    async def exists(user: str) -> bool:
        return await identity.accounts.store.get(user) is not None

    async def addresses(user: str) -> list[str]:
        found = await identity.accounts.store.get(user)
        return [found.email.lower()] if found else []

    calendar = CalendarSync(
        store,
        activity,
        backends.get_redis,
        addresses,
        parse_zone(config.timezone),
        interval=config.calendar_sync,
        timeout=config.calendar_timeout,
        max_bytes=config.calendar_max_bytes,
        clock=clock,
        exists=exists,
    )

    async def zone_of(user: str) -> str:
        found = await identity.accounts.store.get(user)
        if found and found.timezone:
            try:
                parse_zone(found.timezone)
            except ValueError:
                return config.timezone
            return found.timezone
        return config.timezone

    redmine = RedmineSync(
        store,
        identity.projects,
        activity.times,
        backends.get_redis,
        zone_of,
        interval=config.redmine_sync,
        timeout=config.redmine_timeout,
        max_bytes=config.redmine_max_bytes,
        clock=clock,
        exists=exists,
    )

    async def forget(user: str) -> None:
        # A deleted user's credentials and sync state go with them; the time and the
        # tasks they brought in went with the user's data (or stay in InfluxDB, as
        # every snapshot of theirs does).
        for sync in (calendar, redmine):
            try:
                await sync.disconnect(user, purge=False)
            except StorageUnavailable as exc:
                # The user is gone already: the periodic round disconnects them later.
                LOG.warning("%s of a deleted user left to the next round: %s", sync.label, exc)

    identity.accounts.store.on_deleted(forget)
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.create_task(calendar.run(), name="calendar-sync"))
        tasks.append(asyncio.create_task(redmine.run(), name="redmine-sync"))

    async def stop() -> None:
        for task in tasks:
            # Cancelled again until it ends: a cancellation that arrives inside a
            # client library's call can be swallowed there (seen once in a hundred
            # shutdowns of the Redmine loop, which then slept on).
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=1)
            with contextlib.suppress(asyncio.CancelledError):
                await task

    backends.on_startup(start)
    backends.on_shutdown(stop)
    app.add_route("/api/integrations", IntegrationsResource(store))
    app.add_route("/api/integrations/googleCalendar", CalendarResource(store, calendar))
    app.add_route("/api/integrations/redmine", RedmineResource(store, redmine))
    app.add_route("/api/integrations/redmine/mapping", RedmineMappingResource(redmine))
    app.add_route(
        "/api/integrations/redmine/time-entries",
        RedmineTimeEntriesResource(redmine, config.timezone),
    )
    return Integrations(store, calendar, redmine)

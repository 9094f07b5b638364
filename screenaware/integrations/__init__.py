"""Integrations: third-party services connected per user, their credentials
encrypted (:mod:`.store`), and the calendar (:mod:`.calendar`).

Other features use only what this module exports: the integration store (a
later integration, such as Redmine, keeps its settings and state there).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from screenaware.activity import Activity
from screenaware.config import Config
from screenaware.identity import Identity
from screenaware.integrations.calendar import CalendarSync
from screenaware.integrations.resources import CalendarResource, IntegrationsResource
from screenaware.integrations.store import CredentialsUnreadable, IntegrationStore, State
from screenaware.storage.backends import Backends
from screenaware.timeutil import parse_zone
from screenaware.web.app import App

__all__ = [
    "CalendarSync",
    "CredentialsUnreadable",
    "IntegrationStore",
    "Integrations",
    "State",
    "mount",
]


@dataclass(frozen=True)
class Integrations:
    """What the integrations feature offers the others."""

    store: IntegrationStore
    calendar: CalendarSync


def mount(
    app: App,
    config: Config,
    backends: Backends,
    clock: Callable[[], float],
    *,
    activity: Activity,
    identity: Identity,
) -> Integrations:
    """Add the integration routes and the periodic calendar sync to ``app``."""
    store = IntegrationStore(backends.get_redis, config.encryption_key)

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
    )
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.create_task(calendar.run(), name="calendar-sync"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    backends.on_startup(start)
    backends.on_shutdown(stop)
    app.add_route("/api/integrations", IntegrationsResource(store))
    app.add_route("/api/integrations/googleCalendar", CalendarResource(store, calendar))
    return Integrations(store, calendar)

"""Portability: the full export of a user, its restore, and imports from other
trackers (ActivityWatch, WakaTime)."""

from __future__ import annotations

from collections.abc import Callable

from screenaware.activity import Activity
from screenaware.config import Config
from screenaware.identity import Identity
from screenaware.portability import activitywatch, wakatime
from screenaware.portability.native import Exporter, Restorer, Stores
from screenaware.portability.resources import ExportResource, Importer, ImportResource
from screenaware.storage.backends import Backends
from screenaware.streams import StreamService
from screenaware.web.app import App

__all__ = ["Exporter", "Restorer", "Stores", "mount"]


def mount(
    app: App,
    config: Config,
    backends: Backends,
    clock: Callable[[], float],
    *,
    activity: Activity,
    identity: Identity,
    streams: StreamService,
) -> None:
    """Add the export and import routes to ``app``."""
    stores = Stores(
        accounts=identity.accounts,
        projects=identity.projects,
        activity=activity.store,
        learning=activity.learning,
        snapshots=activity.snapshots,
        streams=streams,
        influx=backends.influx,
        keys=identity.keys,
    )
    app.add_route(
        "/api/export",
        ExportResource(Exporter(stores, clock, config.export_page_rows), identity.accounts),
    )
    restorer = Restorer(stores, config.import_batch, clock)

    def now_ms() -> int:
        return int(clock() * 1000)

    # Per format: the importer, the longest line (JSON Lines) or value (JSON).
    longest = config.import_max_line_bytes
    importers: dict[str, tuple[Importer, int | None, int | None]] = {
        "screenaware": (restorer.restore, longest, None),
        "activitywatch": (
            lambda user, spool: activitywatch.import_file(
                activity.snapshots, user, spool, now_ms(), config.import_batch
            ),
            None,
            longest,
        ),
        "wakatime": (
            lambda user, spool: wakatime.import_file(
                activity.snapshots,
                identity.projects,
                user,
                spool,
                now_ms(),
                config.wakatime_timeout * 1000,
                config.import_batch,
            ),
            None,
            longest,
        ),
    }
    for name, (importer, max_line, max_value) in importers.items():
        path = f"/api/import/{name}"
        app.body_limits.set(path, config.import_max_bytes)
        app.add_route(path, ImportResource(importer, config.import_max_bytes, max_line, max_value))

"""The ``screenaware export`` and ``screenaware import`` commands' work.

They run against the configured InfluxDB and Redis directly (no HTTP), through
the same exporter and restorer as the routes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

from screenaware import activity, identity, streams
from screenaware.config import Config
from screenaware.errors import NotFound
from screenaware.portability import activitywatch, wakatime
from screenaware.portability.native import Exporter, Restorer, Stores
from screenaware.portability.spool import Spool
from screenaware.storage.backends import Backends

# progress(items done, items in all or None, bytes done)
Progress = Callable[[int, int | None, int], None]


def make_stores(config: Config, backends: Backends, clock: Callable[[], float]) -> Stores:
    """The stores of the features, built as their ``mount`` builds them."""
    act = activity.build(config, backends, clock)
    return Stores(
        accounts=identity.make_accounts(config, backends.get_redis, clock),
        projects=identity.ProjectStore(backends.get_redis),
        activity=act.store,
        learning=act.learning,
        snapshots=act.snapshots,
        streams=streams.make_service(config, backends, clock, act),
        influx=backends.influx,
        keys=identity.ApiKeyStore(
            backends.get_redis,
            clock,
            max_per_user=config.api_keys_per_user,
            touch_interval=config.api_key_touch_interval,
        ),
    )


async def user_uuid(stores: Stores, email: str) -> str:
    """The uuid of the user with ``email``; :class:`NotFound` otherwise."""
    user = await stores.accounts.store.by_email(email)
    if user is None:
        raise NotFound(f"no user {email}")
    return user.uuid


async def export_user(
    config: Config, backends: Backends, email: str, out: IO[bytes], progress: Progress
) -> int:
    """Write the export of the user with ``email`` to ``out``; returns the lines."""
    stores = make_stores(config, backends, time.time)
    user = await user_uuid(stores, email)
    exporter = Exporter(stores, time.time, config.export_page_rows)
    lines = written = 0
    async for line in exporter.lines(user):
        out.write(line)
        lines += 1
        written += len(line)
        if lines % 500 == 0:
            progress(lines, None, written)
    progress(lines, lines, written)
    return lines


async def import_native(
    config: Config, backends: Backends, email: str, path: Path, progress: Progress
) -> dict[str, Any]:
    """Restore an export file into the user with ``email``."""
    stores = make_stores(config, backends, time.time)
    user = await user_uuid(stores, email)
    with spooled(path, config.import_max_bytes, config.import_max_line_bytes) as spool:
        size = spool.size

        def report(done: int, total: int | None = None) -> None:
            progress(done, total, size)

        return await Restorer(stores, config.import_batch, time.time).restore(user, spool, report)


@contextmanager
def spooled(
    path: Path, max_bytes: int, max_line_bytes: int | None = None, max_value: int | None = None
) -> Iterator[Spool]:
    """A local file copied into a :class:`Spool` (its limits checked), for one import."""
    with Spool(max_bytes, max_line_bytes, max_value) as spool:
        with path.open("rb") as source:
            spool.fill_from(source)
        yield spool


@asynccontextmanager
async def _foreign_file(
    config: Config, backends: Backends, email: str, path: Path, progress: Progress
) -> AsyncIterator[tuple[Stores, str, Spool, Callable[[int, int | None], None]]]:
    """What an ActivityWatch or WakaTime import of a local file needs: the stores,
    the user, the file spooled with the value limit, and its progress report."""
    stores = make_stores(config, backends, time.time)
    user = await user_uuid(stores, email)
    with spooled(path, config.import_max_bytes, None, config.import_max_line_bytes) as spool:
        size = spool.size
        yield stores, user, spool, lambda done, total: progress(done, total, size)


async def import_activitywatch(
    config: Config, backends: Backends, email: str, path: Path, progress: Progress
) -> dict[str, Any]:
    """Import an aw-server export file into the user with ``email``."""
    async with _foreign_file(config, backends, email, path, progress) as (
        stores,
        user,
        spool,
        report,
    ):
        return await activitywatch.import_file(
            stores.snapshots, user, spool, int(time.time() * 1000), config.import_batch, report
        )


async def import_wakatime(
    config: Config, backends: Backends, email: str, path: Path, progress: Progress
) -> dict[str, Any]:
    """Import a WakaTime data dump into the user with ``email``."""
    async with _foreign_file(config, backends, email, path, progress) as (
        stores,
        user,
        spool,
        report,
    ):
        return await wakatime.import_file(
            stores.snapshots,
            stores.projects,
            user,
            spool,
            int(time.time() * 1000),
            config.wakatime_timeout * 1000,
            config.import_batch,
            report,
        )


@contextmanager
def progress_display(stream: Any, what: str) -> Iterator[Progress]:
    """A progress bar (items, bytes, rate, ETA) on a terminal, plain lines otherwise."""
    started = time.monotonic()

    def rate(done: int) -> str:
        return f"{done / max(time.monotonic() - started, 1e-6):.0f}"

    if stream.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        bar = Bar(
            TextColumn(what),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[size]}  {task.fields[rate]} items/s"),
            TimeRemainingColumn(),
            console=Console(file=stream),
        )
        task = bar.add_task(what, total=None, size="", rate="0")

        def show(done: int, total: int | None, size: int) -> None:
            bar.update(task, completed=done, total=total, size=_bytes(size), rate=rate(done))

        with bar:
            yield show
        return

    def plain(done: int, total: int | None, size: int) -> None:
        of = f"/{total}" if total else ""
        print(f"{what}: {done}{of} items, {_bytes(size)}, {rate(done)} items/s", file=stream)

    yield plain


def _bytes(size: float) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


Importer = Callable[[Config, Backends, str, Path, Progress], Awaitable[dict[str, Any]]]
IMPORTERS: dict[str, Importer] = {
    "screenaware": import_native,
    "activitywatch": import_activitywatch,
    "wakatime": import_wakatime,
}

"""The ``screenaware`` command: local services, keys, devices and maintenance."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from screenaware.config import Config, ConfigError
from screenaware.errors import StorageUnavailable
from screenaware.storage import localservers

LOG = logging.getLogger(__name__)


def _progress_bar(stream: Any) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} days")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


async def _with_backends(config: Config, work: Callable[[Any], Awaitable[int]]) -> int:
    from screenaware.storage.backends import Backends

    backends = Backends(config)
    await backends.open()
    try:
        return await work(backends)
    finally:
        await backends.close()


def cmd_gen_key(args: argparse.Namespace, config: Config) -> int:
    """Print a new random secret key."""
    print(secrets.token_urlsafe(32))
    return 0


def cmd_add_device(args: argparse.Namespace, config: Config) -> int:
    """Register a device and print its id, name and token as JSON."""
    from heartbeat import HeartbeatStore

    name = args.name.strip()
    if not 1 <= len(args.name) <= 128 or not name:
        print("error: the name must be 1 to 128 characters, not blank", file=sys.stderr)
        return 2

    async def work(backends: Any) -> int:
        store = HeartbeatStore(backends.get_redis)
        device_id, token = await store.add_device(args.name, int(time.time()))
        print(json.dumps({"id": device_id, "name": args.name, "token": token}))
        return 0

    return asyncio.run(_with_backends(config, work))


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Repeat: ") != first:
            raise ValueError("the passwords differ")
        return first
    # Scripted use: the password is the first line of standard input.
    return sys.stdin.readline().rstrip("\n")


def cmd_create_user(args: argparse.Namespace, config: Config) -> int:
    """Create a user, asking for the password; prints the user as JSON."""
    from schemas.identity import MIN_PASSWORD_LENGTH
    from screenaware.errors import Conflict
    from screenaware.identity import make_accounts

    try:
        password = _read_password(f"Password for {args.email}: ")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(password) < MIN_PASSWORD_LENGTH:
        print(f"error: the password needs {MIN_PASSWORD_LENGTH} characters", file=sys.stderr)
        return 2
    if "@" not in args.email:
        print("error: not an email address", file=sys.stderr)
        return 2

    async def work(backends: Any) -> int:
        accounts = make_accounts(config, backends.get_redis)
        try:
            user = await accounts.create(
                args.email, password, role="admin" if args.admin else "user"
            )
        except Conflict as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(user.public()))
        return 0

    return asyncio.run(_with_backends(config, work))


def cmd_rebuild_stats(args: argparse.Namespace, config: Config) -> int:
    """Recompute the Heartbeat counters in Redis from InfluxDB."""
    from heartbeat import HeartbeatStore, rebuild_stats

    async def work(backends: Any) -> int:
        store = HeartbeatStore(backends.get_redis)
        progress = None if args.quiet else _progress_bar(sys.stderr)
        raw = await rebuild_stats(backends.influx, store, int(time.time()), progress)
        print(
            json.dumps(
                {
                    "total_beats": raw.total_beats,
                    "devices": len(raw.devices),
                    "longest_absence": raw.longest_absence,
                    "num_visits": raw.visits,
                }
            )
        )
        return 0

    return asyncio.run(_with_backends(config, work))


def cmd_migrate_redis_keys(args: argparse.Namespace, config: Config) -> int:
    """Rename the keys of the old one-tag scheme (once, with the service stopped)."""
    from screenaware.storage.keymigration import migrate_keys

    if config.redis_cluster is not None:
        print(
            "error: migrate on the single Redis first, then import it into the cluster "
            "(redis-cli --cluster import)",
            file=sys.stderr,
        )
        return 2

    async def work(backends: Any) -> int:
        done = await migrate_keys(backends.get_redis())
        print(json.dumps(dataclasses.asdict(done)))
        return 1 if done.conflicts else 0

    return asyncio.run(_with_backends(config, work))


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    """Write everything of a user as the JSON Lines export format."""
    from screenaware.errors import NotFound
    from screenaware.portability.commands import export_user, progress_display

    async def work(backends: Any, out: Any) -> int:
        try:
            with progress_display(sys.stderr, "export") as progress:
                lines = await export_user(config, backends, args.user, out, progress)
        except NotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        LOG.info("exported %d lines", lines)
        return 0

    if args.output in (None, "-"):
        return asyncio.run(_with_backends(config, lambda b: work(b, sys.stdout.buffer)))
    with open(args.output, "wb") as out:
        return asyncio.run(_with_backends(config, lambda b: work(b, out)))


def cmd_import(args: argparse.Namespace, config: Config) -> int:
    """Import a file into a user; prints the summary as JSON."""
    from screenaware.errors import Invalid, NotFound
    from screenaware.portability.commands import IMPORTERS, progress_display

    async def work(backends: Any) -> int:
        try:
            with progress_display(sys.stderr, f"import {args.kind}") as progress:
                summary = await IMPORTERS[args.kind](
                    config, backends, args.user, Path(args.file), progress
                )
        except NotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except Invalid as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(summary))
        return 0

    return asyncio.run(_with_backends(config, work))


def cmd_check_config(args: argparse.Namespace, config: Config) -> int:
    """Validate the configuration (loading it already did) and print it, secrets hidden."""
    print(repr(config))
    return 0


def _pidfile(config: Config, name: str) -> Path:
    return config.data_path / "run" / f"{name}.pid"


def cmd_services(args: argparse.Namespace, config: Config) -> int:
    """Start, stop or report the local influxd and redis-server."""
    influx_host, influx_port = localservers.host_port(config.influx_url, 8086)
    redis_host, redis_port = localservers.host_port(config.redis_url, 6379)
    checks: dict[str, Callable[[], bool]] = {
        "influxd": lambda: localservers.influx_answers(config.influx_url),
        "redis-server": lambda: localservers.redis_answers(redis_host, redis_port),
    }
    if args.action == "status":
        down = [name for name, check in checks.items() if not check()]
        for name, check in checks.items():
            print(f"{name}: {'up' if check() else 'down'}")
        return 1 if down else 0
    if args.action == "stop":
        for name in checks:
            pidfile = _pidfile(config, name)
            if pidfile.exists():
                localservers.stop_pid(int(pidfile.read_text()))
                pidfile.unlink(missing_ok=True)
                print(f"{name}: stopped")
            else:
                print(f"{name}: not started by us, left alone")
        return 0
    starters = {
        "influxd": lambda: localservers.start_influxd(
            config.data_path / "influxdb", influx_port, influx_host, detach=True
        ),
        "redis-server": lambda: localservers.start_redis(
            config.data_path / "redis", redis_port, redis_host, detach=True
        ),
    }
    for name, check in checks.items():
        if check():
            print(f"{name}: already answering, left alone")
            continue
        server = starters[name]()
        pidfile = _pidfile(config, name)
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(str(server.proc.pid))
        print(f"{name}: started (pid {server.proc.pid})")
    return 0


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    """Replace this process with gunicorn serving the app (what scripts/run does)."""
    from screenaware.web.metrics import prepare_multiprocess_dir

    control = config.data_path / "run" / "gunicorn.ctl"
    control.parent.mkdir(parents=True, exist_ok=True)
    argv = localservers.gunicorn_argv(
        "screenaware.asgi:app",
        workers=config.workers,
        bind=config.bind,
        control_socket=str(control),
    )
    os.environ.update(prepare_multiprocess_dir(config.data_path / "metrics"))
    os.execv(argv[0], [*argv, *args.gunicorn_args])  # noqa: S606 - our own gunicorn


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``screenaware`` command."""
    parser = argparse.ArgumentParser(prog="screenaware", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("gen-key", help="print a new secret key").set_defaults(func=cmd_gen_key)
    add = sub.add_parser("add-device", help="register a Heartbeat device")
    add.add_argument("name")
    add.set_defaults(func=cmd_add_device)
    rebuild = sub.add_parser("rebuild-stats", help="recompute Redis counters from InfluxDB")
    rebuild.add_argument("--quiet", action="store_true", help="no progress bar")
    rebuild.set_defaults(func=cmd_rebuild_stats)
    migrate = sub.add_parser(
        "migrate-redis-keys", help="rename the keys of the one-tag scheme (once, service off)"
    )
    migrate.set_defaults(func=cmd_migrate_redis_keys)
    create = sub.add_parser("create-user", help="create a ScreenAware user (asks the password)")
    create.add_argument("email")
    create.add_argument("--admin", action="store_true", help="with the admin role")
    create.set_defaults(func=cmd_create_user)
    export = sub.add_parser("export", help="export everything of a user (JSON Lines)")
    export.add_argument("--user", required=True, metavar="EMAIL")
    export.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    export.set_defaults(func=cmd_export)
    imp = sub.add_parser("import", help="import a file into a user")
    imp.add_argument("kind", choices=["screenaware", "activitywatch", "wakatime"])
    imp.add_argument("file")
    imp.add_argument("--user", required=True, metavar="EMAIL")
    imp.set_defaults(func=cmd_import)
    check = sub.add_parser("check-config", help="validate and print the configuration")
    check.set_defaults(func=cmd_check_config)
    services = sub.add_parser("services", help="local influxd and redis-server")
    services.add_argument("action", choices=["start", "stop", "status"])
    services.set_defaults(func=cmd_services)
    serve = sub.add_parser("serve", help="serve with gunicorn (extra arguments go to it)")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``screenaware`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.func is not cmd_serve:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.gunicorn_args = extra
    try:
        config = Config.load()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        result: int = args.func(args, config)
    except localservers.ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError, StorageUnavailable, RedisError) as exc:
        LOG.debug("command failed", exc_info=True)
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

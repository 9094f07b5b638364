"""Settings of the sensor: command line > environment > TOML file > defaults.

Every flag ``--some-flag`` is also ``SCREENAWARE_SENSOR_SOME_FLAG`` in the environment and
``some_flag`` in the TOML file (``$XDG_CONFIG_HOME/screenaware-sensor/config.toml`` unless
``--config`` names another). Lists (``--exclude-title``, ``--exclude-app``) add up over
the three sources instead of replacing each other: a privacy filter written in the file
must not silently vanish because one was also given on the command line.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "SCREENAWARE_SENSOR_"
MAX_INTERVAL = 10.0  # the API's longest snapshot (durationMs 10000)


class ConfigError(Exception):
    """A setting is missing or invalid (exit code 2)."""


@dataclass(frozen=True)
class Settings:
    """The validated settings of one sensor run.

    Attributes:
        server: base URL of the ScreenAware service, without a trailing slash.
        key: API key (or bearer token) sent as ``Authorization: Bearer <key>``.
        interval: seconds each snapshot covers, and between two snapshots.
        queue: SQLite file of the local queue.
        once: take one snapshot, deliver the queue, exit.
        idle: seconds without input after which the person is away.
        queue_days: how many days of snapshots the queue keeps at most.
        beat_token: Heartbeat device token; empty = no beats.
        beat_server: base URL of the Heartbeat API (defaults to ``server``).
        exclude_title: window titles matching one of these are hidden.
        exclude_app: processes (lower-case names) whose windows are hidden.
        log_level: logging level name.
        from_activitywatch: aw-server URL to read instead of the X display; empty = X11.
        warnings: things to log once logging is set up (e.g. a key in a readable file).
    """

    server: str
    key: str = field(repr=False)
    queue: Path
    interval: float = 10.0
    once: bool = False
    idle: float = 180.0
    queue_days: float = 30.0
    beat_token: str = field(default="", repr=False)
    beat_server: str = ""
    exclude_title: tuple[re.Pattern[str], ...] = ()
    exclude_app: tuple[str, ...] = ()
    log_level: str = "INFO"
    from_activitywatch: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def queue_capacity(self) -> int:
        """Snapshots the queue holds at most: ``queue_days`` of back-to-back snapshots."""
        return max(1, math.ceil(self.queue_days * 86400 / self.interval))


def config_home(environ: Mapping[str, str]) -> Path:
    """The XDG configuration directory."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser()


def state_home(environ: Mapping[str, str]) -> Path:
    """The XDG state directory (where the queue lives by default)."""
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local/state")
    return Path(base).expanduser()


def build_parser() -> argparse.ArgumentParser:
    """The command line. Every default is None, so a flag not given can come from elsewhere."""
    parser = argparse.ArgumentParser(
        prog="screenaware-sensor",
        description=(
            "Send window snapshots of this computer to a ScreenAware server. Every flag "
            f"can also be set as {ENV_PREFIX}<FLAG> or in the TOML file "
            "$XDG_CONFIG_HOME/screenaware-sensor/config.toml."
        ),
        argument_default=None,
    )
    parser.add_argument("--server", help="ScreenAware base URL, e.g. https://sa.example.org")
    parser.add_argument("--key", help="API key, sent as 'Authorization: Bearer KEY'")
    parser.add_argument("--interval", help="seconds per snapshot, at most 10 (default 10)")
    parser.add_argument("--queue", help="queue file (default $XDG_STATE_HOME/...)")
    parser.add_argument(
        "--once",
        action="store_const",
        const="true",
        help="one snapshot, deliver the queue, exit 0 (delivered), 75 (server unreachable), "
        "2 (bad arguments or refused key)",
    )
    parser.add_argument("--idle", help="seconds without input that mean away (default 180)")
    parser.add_argument("--queue-days", help="days of snapshots the queue keeps (default 30)")
    parser.add_argument("--beat-token", help="Heartbeat device token: POST /api/beat a minute")
    parser.add_argument("--beat-server", help="Heartbeat base URL (default: --server)")
    parser.add_argument(
        "--exclude-title",
        action="append",
        metavar="REGEX",
        help="hide windows whose title matches (repeatable)",
    )
    parser.add_argument(
        "--exclude-app",
        action="append",
        metavar="NAME",
        help="hide windows of this process (repeatable)",
    )
    parser.add_argument(
        "--from-activitywatch",
        metavar="URL",
        help="read a local aw-server (e.g. http://127.0.0.1:5600) instead of the X display",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    parser.add_argument("--config", help="TOML file instead of the default one")
    return parser


# name -> True when it is a list option.
OPTIONS: dict[str, bool] = {
    "server": False,
    "key": False,
    "interval": False,
    "queue": False,
    "once": False,
    "idle": False,
    "queue_days": False,
    "beat_token": False,
    "beat_server": False,
    "exclude_title": True,
    "exclude_app": True,
    "log_level": False,
    "from_activitywatch": False,
}


def env_name(option: str) -> str:
    """``exclude_title`` -> ``SCREENAWARE_SENSOR_EXCLUDE_TITLE``."""
    return ENV_PREFIX + option.upper()


def _env_list(name: str, value: str) -> list[str]:
    # A list in one variable: a JSON array, or one value (regexes may hold commas).
    if value.lstrip().startswith("["):
        try:
            items = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{name}: not a JSON array of strings: {exc}") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{name}: not a JSON array of strings")
        return items
    return [value] if value else []


def read_toml(path: Path) -> dict[str, Any]:
    """Read the TOML file; unknown keys are an error (a typo must not go unnoticed)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = sorted(set(data) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown settings {', '.join(unknown)}")
    return data


def _number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: must be a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: must be a number, not {value!r}") from None
    if not (low <= number <= high) or math.isnan(number):
        raise ConfigError(f"{name}: must be between {low:g} and {high:g}, not {value!r}")
    return number


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: must be true or false, not {value!r}")


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}: must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse ``argv`` (without the program name) with ``environ`` and the TOML file.

    Raises:
        ConfigError: a setting is missing or invalid.
        SystemExit: argparse's own exit (``--help``, or 2 for unknown flags).
    """
    args = vars(build_parser().parse_args(list(argv)))
    explicit = args.pop("config") or environ.get(ENV_PREFIX + "CONFIG")
    path = (
        Path(explicit).expanduser()
        if explicit
        else config_home(environ) / "screenaware-sensor" / "config.toml"
    )
    file_values: dict[str, Any] = {}
    warnings = []
    if explicit or path.is_file():
        file_values = read_toml(path)
        if "key" in file_values and path.stat().st_mode & 0o077:
            warnings.append(f"{path} holds the API key but others may read it: chmod 600 it")

    # Where each value came from, for error messages.
    raw: dict[str, tuple[str, object]] = {}
    lists: dict[str, list[tuple[str, str]]] = {name: [] for name, many in OPTIONS.items() if many}
    for name, many in OPTIONS.items():
        sources: list[tuple[str, object]] = []
        if name in file_values:
            sources.append((f"{path}: {name}", file_values[name]))
        if env_name(name) in environ:
            sources.append((env_name(name), environ[env_name(name)]))
        if args.get(name) is not None:
            sources.append(("--" + name.replace("_", "-"), args[name]))
        if many:
            for where, value in sources:
                if isinstance(value, str) and where.startswith(ENV_PREFIX):
                    values: list[object] = list(_env_list(where, value))
                elif isinstance(value, list):
                    values = value
                else:
                    raise ConfigError(f"{where}: must be a list of strings")
                for item in values:
                    if not isinstance(item, str):
                        raise ConfigError(f"{where}: must be a list of strings")
                    lists[name].append((where, item))
        elif sources:
            raw[name] = sources[-1]

    def get(name: str) -> tuple[str, object] | None:
        return raw.get(name)

    def text(name: str) -> tuple[str, str] | None:
        got = get(name)
        if got is None:
            return None
        where, value = got
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string")
        return where, value

    server = text("server")
    if server is None or not server[1]:
        raise ConfigError(f"--server (or {env_name('server')}) is required")
    key = text("key")
    if key is None or not key[1].strip():
        raise ConfigError(f"--key (or {env_name('key')}) is required")
    if any(c.isspace() for c in key[1].strip()):
        raise ConfigError(f"{key[0]}: an API key has no white space")

    interval = 10.0
    if (got := get("interval")) is not None:
        interval = _number(got[0], got[1], 0.001, MAX_INTERVAL)
    idle = 180.0
    if (got := get("idle")) is not None:
        idle = _number(got[0], got[1], 1, 86400 * 365)
    queue_days = 30.0
    if (got := get("queue_days")) is not None:
        queue_days = _number(got[0], got[1], 0.0001, 3650)
    once = False
    if (got := get("once")) is not None:
        once = _bool(got[0], got[1])
    queue_path = state_home(environ) / "screenaware-sensor" / "queue.sqlite3"
    if (got_text := text("queue")) is not None and got_text[1]:
        queue_path = Path(got_text[1]).expanduser()
    beat_token = ""
    if (got_text := text("beat_token")) is not None:
        beat_token = got_text[1].strip()
    beat_server = ""
    if (got_text := text("beat_server")) is not None and got_text[1]:
        beat_server = _url(got_text[0], got_text[1])
    from_activitywatch = ""
    if (got_text := text("from_activitywatch")) is not None and got_text[1]:
        from_activitywatch = _url(got_text[0], got_text[1])
    log_level = "INFO"
    if (got_text := text("log_level")) is not None:
        log_level = got_text[1].upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"{got_text[0]}: unknown log level {got_text[1]!r}")

    patterns = []
    for where, pattern in lists["exclude_title"]:
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigError(f"{where}: bad regular expression {pattern!r}: {exc}") from None
    apps = []
    for where, app in lists["exclude_app"]:
        name = normalise_app(app)
        if not name:
            raise ConfigError(f"{where}: an empty application name")
        apps.append(name)

    return Settings(
        server=_url(server[0], server[1]),
        key=key[1].strip(),
        queue=queue_path,
        interval=interval,
        once=once,
        idle=idle,
        queue_days=queue_days,
        beat_token=beat_token,
        beat_server=beat_server,
        exclude_title=tuple(patterns),
        exclude_app=tuple(dict.fromkeys(apps)),
        log_level=log_level,
        from_activitywatch=from_activitywatch,
        warnings=tuple(warnings),
    )


def normalise_app(name: str) -> str:
    """An application name as the server keys it: no directory, no .exe/.app, lower case."""
    base = re.split(r"[\\/]", name.strip())[-1].lower()
    for suffix in (".exe", ".app"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base

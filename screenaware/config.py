"""Configuration: defaults < optional TOML file (``SCREENAWARE_CONFIG``) < env vars.

Every setting has a lower-case key (used in the TOML file) and an environment
variable ``SCREENAWARE_<KEY>``. Values are validated once, when the config is
loaded, so a bad value stops the service at start with a message naming it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screenaware.timeutil import parse_zone

ENV_PREFIX = "SCREENAWARE_"

# Shown as '***' in repr so that a logged config never leaks them.
SECRET_KEYS = frozenset(
    {
        "influx_password",
        "influx_token",
        "secret_key",
        "jwt_secret",
        "admin_password",
        "metrics_token",
        "encryption_key",
    }
)
# URLs may carry credentials in their user-info part.
URL_KEYS = frozenset({"influx_url", "redis_url"})


class ConfigError(ValueError):
    """Raised when a configuration value is missing or invalid."""


@dataclass(frozen=True, repr=False)
class Config:
    """All settings of the service. Build it with :meth:`load`."""

    bind: str = "127.0.0.1:8080"
    workers: int = 2
    # Spread connections evenly over the workers (screenaware/acceptgate.py); false:
    # the workers race for each one, as uvicorn's gunicorn worker does.
    balance_connections: bool = True
    # How long a worker leaves a new connection to a sibling holding fewer at most.
    balance_wait_ms: int = 5
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "screenaware"
    influx_username: str = ""
    influx_password: str = ""
    influx_token: str = ""
    influx_timeout: float = 10.0
    influx_ca_bundle: str = ""
    influx_client_cert: str = ""
    influx_client_key: str = ""
    influx_max_response_bytes: int = 64 * 1024 * 1024
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = 64
    redis_timeout: float = 5.0
    secret_key: str = ""
    server_name: str = "ScreenAware"
    jwt_secret: str = ""
    jwt_ttl: int = 86400
    login_max_failures: int = 10
    login_max_failures_per_address: int = 50
    login_window: int = 300
    api_keys_per_user: int = 20
    api_key_touch_interval: int = 60
    admin_email: str = ""
    admin_password: str = ""
    timezone: str = "UTC"
    data_dir: str = "./var"
    config: str = ""
    max_body_bytes: int = 1024 * 1024
    bulk_body_bytes: int = 8 * 1024 * 1024
    cors_origins: str = ""
    access_log: bool = True
    metrics: bool = True
    metrics_token: str = ""
    # Tests only: tells which worker answered (proof that two workers served).
    worker_pid_header: bool = False
    snapshot_batch_max: int = 1000
    # Imports (/api/import/*): the largest upload spooled to disk, the longest
    # line of a JSON Lines file, and snapshots per ingest batch.
    import_max_bytes: int = 512 * 1024 * 1024
    import_max_line_bytes: int = 1024 * 1024
    import_batch: int = 500
    # A WakaTime heartbeat covers the time to the next one, at most this long (s).
    wakatime_timeout: int = 900
    # Rows per InfluxDB query of an export: what one export holds at once.
    export_page_rows: int = 5000
    substream_join_gap: int = 60
    stream_interruption: int = 120
    stream_idle_gap: int = 300
    learn_min_score: int = 3
    timeline_days: int = 31
    # /times reads whole clean 15-minute buckets from the activity_15m rollup
    # (false: every answer sums the raw activity ledger).
    times_rollup: bool = True
    # /streams reads the runs of clean days from the activity_runs rollup (false:
    # every day is sessionised from the raw activity ledger).
    streams_rollup: bool = True
    log_batch_max: int = 1000
    log_rate_anonymous: int = 6000
    log_rate_user: int = 3_000_000
    crash_max_bytes: int = 10 * 1024 * 1024
    crash_store_bytes: int = 1024 * 1024 * 1024
    crash_anonymous_per_hour: int = 10
    crash_anonymous_bytes_per_hour: int = 50 * 1024 * 1024
    log_grouped_max_buckets: int = 10_000
    log_page_points: int = 100
    write_batch_max: int = 5000
    # How long a round of beats waits, after the last one answered, for the devices
    # it answered to send again (0: off); see heartbeat/service.py.
    beat_regroup_ms: int = 2
    write_queue_max: int = 100_000
    retry_after: int = 5
    outage_log_interval: float = 60.0
    clock_slot_ttl: int = 30
    log_level: str = "INFO"
    # Third-party credentials (integrations) are encrypted with a key derived from
    # this; empty: one generated once and kept in Redis (like jwt_secret).
    encryption_key: str = ""
    # Calendar integration: seconds between syncs of a user, the timeout of one
    # fetch, and the largest calendar document read.
    calendar_sync: int = 900
    calendar_timeout: float = 20.0
    calendar_max_bytes: int = 16 * 1024 * 1024
    # Redmine integration: seconds between syncs of a user's tasks (and checks of the
    # daily booking), the timeout of one request, and the largest answer read.
    redmine_sync: int = 900
    redmine_timeout: float = 20.0
    redmine_max_bytes: int = 8 * 1024 * 1024

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build the config from defaults, the TOML file and the environment.

        Args:
            environ: the environment to read (``os.environ`` when None).
            **overrides: values that win over everything (used by tests and the CLI).

        Raises:
            ConfigError: a value has the wrong type or is out of range.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_path = overrides.get("config") or environ.get(ENV_PREFIX + "CONFIG", "")
        if config_path:
            values.update(_read_toml(config_path))
            values["config"] = config_path
        for name in _field_names():
            env_value = environ.get(ENV_PREFIX + name.upper())
            if env_value is not None:
                values[name] = env_value
        values.update(overrides)
        return cls._from_values(values)

    @classmethod
    def _from_values(cls, values: Mapping[str, Any]) -> Config:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown configuration key(s): {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            converted[name] = _convert(name, known[name].type, value)
        config = cls(**converted)
        config._validate()
        return config

    def _validate(self) -> None:
        _require(self.workers >= 1, "workers", "must be at least 1")
        _require(1 <= self.balance_wait_ms <= 1000, "balance_wait_ms", "must be 1 to 1000 (ms)")
        _require(self.redis_max_connections >= 1, "redis_max_connections", "must be at least 1")
        _require(self.redis_timeout > 0, "redis_timeout", "must be positive")
        _require(self.jwt_ttl >= 1, "jwt_ttl", "must be at least 1 second")
        _require(self.login_max_failures >= 1, "login_max_failures", "must be at least 1")
        _require(
            self.login_max_failures_per_address >= 1,
            "login_max_failures_per_address",
            "must be at least 1",
        )
        _require(self.login_window >= 1, "login_window", "must be at least 1 second")
        _require(self.api_keys_per_user >= 1, "api_keys_per_user", "must be at least 1")
        _require(
            self.api_key_touch_interval >= 1, "api_key_touch_interval", "must be at least 1 second"
        )
        _require(self.max_body_bytes >= 1024, "max_body_bytes", "must be at least 1024")
        _require(self.bulk_body_bytes >= 1024, "bulk_body_bytes", "must be at least 1024")
        origins = [o.strip() for o in self.cors_origins.split(",") if o.strip()]
        _require(
            all(o == "*" or re.match(r"^https?://[^/\s]+$", o) for o in origins),
            "cors_origins",
            "must be '*' or comma-separated origins like https://app.example.org",
        )
        _require(self.snapshot_batch_max >= 1, "snapshot_batch_max", "must be at least 1")
        _require(self.import_max_bytes >= 1024, "import_max_bytes", "must be at least 1024")
        _require(
            self.import_max_line_bytes >= 1024, "import_max_line_bytes", "must be at least 1024"
        )
        _require(self.import_batch >= 1, "import_batch", "must be at least 1")
        _require(self.wakatime_timeout >= 1, "wakatime_timeout", "must be at least 1 second")
        _require(self.export_page_rows >= 250, "export_page_rows", "must be at least 250")
        _require(self.log_batch_max >= 1, "log_batch_max", "must be at least 1")
        for name in ("substream_join_gap", "stream_interruption", "stream_idle_gap"):
            _require(getattr(self, name) >= 0, name, "must not be negative (seconds)")
        _require(self.learn_min_score >= 1, "learn_min_score", "must be at least 1")
        _require(self.calendar_sync >= 1, "calendar_sync", "must be at least 1 second")
        _require(self.calendar_timeout > 0, "calendar_timeout", "must be positive (seconds)")
        _require(self.calendar_max_bytes >= 1024, "calendar_max_bytes", "must be at least 1024")
        _require(self.redmine_sync >= 1, "redmine_sync", "must be at least 1 second")
        _require(self.redmine_timeout > 0, "redmine_timeout", "must be positive (seconds)")
        _require(self.redmine_max_bytes >= 1024, "redmine_max_bytes", "must be at least 1024")
        _require(self.timeline_days >= 1, "timeline_days", "must be at least 1 (days)")
        _require(self.log_rate_anonymous >= 1, "log_rate_anonymous", "must be at least 1")
        _require(self.log_rate_user >= 1, "log_rate_user", "must be at least 1")
        _require(self.crash_max_bytes >= 1, "crash_max_bytes", "must be at least 1")
        _require(
            self.crash_store_bytes >= self.crash_max_bytes,
            "crash_store_bytes",
            "must be at least crash_max_bytes (else a dump of the largest size never fits)",
        )
        for name in ("crash_anonymous_per_hour", "crash_anonymous_bytes_per_hour"):
            _require(getattr(self, name) >= 1, name, "must be at least 1")
        _require(self.log_grouped_max_buckets >= 1, "log_grouped_max_buckets", "must be at least 1")
        _require(1 <= self.log_page_points <= 10_000, "log_page_points", "must be 1 to 10000")
        _require(self.write_batch_max >= 1, "write_batch_max", "must be at least 1")
        _require(0 <= self.beat_regroup_ms <= 100, "beat_regroup_ms", "must be 0 to 100 (ms)")
        _require(self.write_queue_max >= 1, "write_queue_max", "must be at least 1")
        _require(self.influx_timeout > 0, "influx_timeout", "must be positive")
        _require(
            self.influx_max_response_bytes >= 1024,
            "influx_max_response_bytes",
            "must be at least 1024",
        )
        _require(self.retry_after >= 1, "retry_after", "must be at least 1")
        _require(self.outage_log_interval > 0, "outage_log_interval", "must be positive (seconds)")
        _require(self.clock_slot_ttl >= 3, "clock_slot_ttl", "must be at least 3 seconds")
        _require(bool(self.influx_db.strip()), "influx_db", "must not be empty")
        host, _, port = self.bind.rpartition(":")
        _require(
            bool(host) and port.isdigit() and 0 < int(port) < 65536,
            "bind",
            f"must be HOST:PORT, got {self.bind!r}",
        )
        for name in ("influx_username", "influx_password", "influx_token"):
            value = getattr(self, name)
            # They go into an HTTP header; a line break there would inject others.
            _require("\r" not in value and "\n" not in value, name, "must be one line")
        _require(
            all(" " < c < "\x7f" for c in self.influx_url), "influx_url", "must be plain ASCII"
        )
        influx = urllib.parse.urlsplit(self.influx_url)
        _require(
            influx.scheme in ("http", "https") and bool(influx.hostname),
            "influx_url",
            "must be an http:// or https:// URL",
        )
        _require(
            "@" not in influx.netloc or not (self.influx_username or self.influx_password),
            "influx_url",
            "holds credentials and so do SCREENAWARE_INFLUX_USERNAME/PASSWORD: give one of them",
        )
        for name in ("influx_ca_bundle", "influx_client_cert", "influx_client_key"):
            path = getattr(self, name)
            if path:
                _require(influx.scheme == "https", name, "needs an https:// SCREENAWARE_INFLUX_URL")
                _require(os.path.isfile(path), name, f"no such file: {path}")
        _require(
            not self.influx_client_key or bool(self.influx_client_cert),
            "influx_client_key",
            "needs SCREENAWARE_INFLUX_CLIENT_CERT",
        )
        self.influx_tls_context()  # unreadable PEM files stop the start, named
        redis_url = urllib.parse.urlsplit(self.redis_url)
        _require(
            redis_url.scheme in ("redis", "rediss", "unix", *CLUSTER_SCHEMES),
            "redis_url",
            "must be a redis://, rediss://, unix:// or redis+cluster://host:port,... URL",
        )
        if redis_url.scheme in CLUSTER_SCHEMES:
            try:
                parse_cluster_url(self.redis_url)
            except ValueError as exc:
                raise ConfigError(f"{ENV_PREFIX}REDIS_URL: {exc}") from None
        try:
            parse_zone(self.timezone)
        except ValueError:
            raise ConfigError(
                f"{ENV_PREFIX}TIMEZONE: unknown IANA time zone {self.timezone!r}"
            ) from None
        _require(
            self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
            "log_level",
            "must be DEBUG, INFO, WARNING, ERROR or CRITICAL",
        )

    @property
    def redis_cluster(self) -> RedisClusterTarget | None:
        """The cluster ``redis_url`` names (``redis+cluster://``), None for one server."""
        if urllib.parse.urlsplit(self.redis_url).scheme not in CLUSTER_SCHEMES:
            return None
        return parse_cluster_url(self.redis_url)

    @property
    def influx_base_url(self) -> str:
        """``influx_url`` without its credentials (they go in a header)."""
        parts = urllib.parse.urlsplit(self.influx_url)
        netloc = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc)).rstrip("/")

    @property
    def influx_credentials(self) -> tuple[str, str] | None:
        """InfluxDB v1 user and password: from ``influx_url``'s ``user:password@``
        (percent-decoded) or else the username/password settings; None if neither."""
        parts = urllib.parse.urlsplit(self.influx_url)
        if "@" in parts.netloc:
            userinfo = parts.netloc.rpartition("@")[0]
            user, _, password = userinfo.partition(":")
            return urllib.parse.unquote(user), urllib.parse.unquote(password)
        if self.influx_username:
            return self.influx_username, self.influx_password
        return None

    def influx_tls_context(self) -> ssl.SSLContext | None:
        """The TLS settings for an ``https://`` InfluxDB (None for ``http://``).

        Trusts ``influx_ca_bundle`` if set (else the system's CAs) and presents
        ``influx_client_cert`` (with ``influx_client_key``, or the key inside the
        certificate file) if set.

        Raises:
            ConfigError: a file is not usable PEM.
        """
        if urllib.parse.urlsplit(self.influx_url).scheme != "https":
            return None
        try:
            context = ssl.create_default_context(cafile=self.influx_ca_bundle or None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{ENV_PREFIX}INFLUX_CA_BUNDLE: no usable PEM certificates in "
                f"{self.influx_ca_bundle}: {exc.strerror or exc}"
            ) from None
        if self.influx_client_cert:
            try:
                # A password callback, so that an encrypted key fails here instead of
                # OpenSSL prompting on the terminal of a worker.
                context.load_cert_chain(
                    self.influx_client_cert, self.influx_client_key or None, password=_no_password
                )
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    f"{ENV_PREFIX}INFLUX_CLIENT_CERT: cannot load the client certificate "
                    f"and key ({self.influx_client_cert}): {exc.strerror or exc}"
                ) from None
        return context

    @property
    def cors_origin_list(self) -> list[str]:
        """The allowed CORS origins (empty: CORS off)."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def data_path(self) -> Path:
        """The data directory as an absolute path."""
        return Path(self.data_dir).resolve()

    def replace(self, **changes: Any) -> Config:
        """Return a validated copy with some values changed."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(changes)
        return type(self)._from_values(values)

    def as_environ(self) -> dict[str, str]:
        """The settings as ``SCREENAWARE_*`` variables (for a child process)."""
        return {
            ENV_PREFIX + f.name.upper(): str(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "config"
        }

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_KEYS:
                shown = "'***'" if value else "''"
            elif f.name in URL_KEYS:
                shown = repr(redact_url(value))
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"Config({', '.join(parts)})"

    __str__ = __repr__


# Query parameters that carry credentials: redis-py reads ``?password=``, InfluxDB
# 1.x ``?p=``; anything named like a password, token or secret is hidden too.
_SECRET_PARAM = re.compile(r"^(p|pass|pwd|.*password.*|.*passwd.*|.*token.*|.*secret.*)$", re.I)


def redact_url(url: str) -> str:
    """Hide the credentials of a URL: the user-info password and password-like
    query parameters (``redis://h/0?password=...``, ``unix:///s.sock?password=...``)."""
    parts = urllib.parse.urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
    if query:
        params = []
        for param in query.split("&"):
            name, eq, value = param.partition("=")
            if eq and value and _SECRET_PARAM.match(urllib.parse.unquote_plus(name)):
                param = f"{name}=***"
            params.append(param)
        query = "&".join(params)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    if "//" not in url:
        return urllib.parse.urlunsplit(parts._replace(query=query))
    # Built by hand: urlunsplit would turn unix:///path into unix:/path.
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    shown += f"?{query}" if query else ""
    return shown + (f"#{parts.fragment}" if parts.fragment else "")


# ``rediss+cluster://`` speaks TLS to every node.
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True)
class RedisClusterTarget:
    """A Redis Cluster as ``redis+cluster://[user:password@]host:port,host:port,...``
    names it: the nodes to discover the cluster from, and the credentials of all."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None = dataclasses.field(repr=False)
    tls: bool


def parse_cluster_url(url: str) -> RedisClusterTarget:
    """Parse a ``redis+cluster://`` (or ``rediss+cluster://``) URL.

    Every node is ``host:port`` (an IPv6 address in brackets); the path may only be
    empty, ``/`` or ``/0`` (a cluster has database 0 only); no query. Messages never
    show the URL, which may hold a password.

    Raises:
        ValueError: the URL is malformed (the message says how).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in CLUSTER_SCHEMES:
        raise ValueError("a cluster URL starts with redis+cluster:// or rediss+cluster://")
    netloc, slash, path = rest.partition("/")
    if "?" in netloc or "#" in netloc:
        raise ValueError("a cluster URL takes no query or fragment")
    if slash and path not in ("", "0"):
        raise ValueError("a cluster has database 0 only (no path but / or /0)")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if colon else None
    nodes = []
    for number, node in enumerate(hosts.split(","), 1):
        host, colon, port = node.strip().rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"node {number} of the cluster URL is not host:port")
        nodes.append((host, int(port)))
    return RedisClusterTarget(tuple(nodes), username, password, scheme == "rediss+cluster")


def _no_password() -> bytes:
    raise ConfigError(f"{ENV_PREFIX}INFLUX_CLIENT_KEY: encrypted keys are not supported")


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config) if f.name != "config"]


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: {message}")


def _convert(name: str, type_name: Any, value: Any) -> Any:
    env_name = ENV_PREFIX + name.upper()
    # A secret is never echoed, whatever its type: a mistyped one may still be a real
    # one. Nor is a URL that is not a string (a list holding one, say).
    hidden = name in SECRET_KEYS or name in URL_KEYS
    got = f"a {type(value).__name__} (value not shown)" if hidden else repr(value)
    if str(type_name) == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{env_name}: expected true or false, got {got}")
    target = {"int": int, "float": float, "str": str}.get(str(type_name))
    if target is None:
        return value
    if isinstance(value, bool) or (target is str and not isinstance(value, str)):
        raise ConfigError(f"{env_name}: expected {target.__name__}, got {got}")
    try:
        return target(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ConfigError(f"{env_name}: expected {target.__name__}, got {got}") from None


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{ENV_PREFIX}CONFIG: file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{ENV_PREFIX}CONFIG: {path} is not valid TOML: {exc}") from None
    return {key.lower(): value for key, value in data.items()}

"""Outages of the backing stores, logged as transitions instead of once per failure.

An InfluxDB outage used to write one WARNING per failed request (52,375 lines in
one outage). :class:`OutageLog` keeps, per backend and per process, whether it is
down: the first failure logs ``down``, further failures are only counted and
summed up in a ``still down`` line at most every ``interval`` seconds, and the
next successful operation of that backend logs ``up again``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.exceptions

from screenaware.errors import StorageUnavailable

LOG = logging.getLogger("screenaware.outages")

INFLUXDB = "influxdb"
REDIS = "redis"

# Redis errors that mean the server cannot be used (a ResponseError is an answer).
REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    # A Redis Cluster: no node reachable or slots not covered (raised by the client),
    # a slot without its master (CLUSTERDOWN), a slot moving (TRYAGAIN), a slot
    # moved under a transaction on its former master (MOVED/ASK: the client's
    # next commands learn the new map, so a retry succeeds).
    redis.exceptions.RedisClusterException,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,
)
# Every failure of a Redis command (the cluster client's own are no RedisError).
REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)


def backend_of(exc: BaseException) -> str | None:
    """The backend whose outage ``exc`` reports, or None if it reports none."""
    if isinstance(exc, StorageUnavailable):
        return exc.backend
    if isinstance(exc, REDIS_DOWN):
        return REDIS
    return None


def describe(exc: BaseException) -> str:
    """Why a backend failed, safe to log.

    The class name, plus the message for our own exceptions, whose texts name the
    origin and the failure but never credentials. Messages of client libraries are
    left out: they can carry URLs with passwords.
    """
    name = type(exc).__name__
    if isinstance(exc, StorageUnavailable) and str(exc):
        return f"{name}: {exc}"
    return name


@dataclass
class _Down:
    since: float
    last_report: float
    announced: bool
    reason: str
    failures: int = 1  # since it went down
    unreported: int = 0  # since the last line


class OutageLog:
    """Per-backend up/down state of this process, logging only the transitions.

    Args:
        interval: seconds between two ``still down`` lines of one outage at most.
        clock: monotonic seconds (tests pass their own).
        log: where the lines go.
    """

    def __init__(
        self,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger = LOG,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._log = log
        self._down: dict[str, _Down] = {}
        # A backend that flaps (down, up, down...) must not log two lines per flap:
        # within ``interval`` of an "up again" line, a new outage is only counted,
        # and announced once it lasts ``interval`` or with the next outage logged.
        self._up_logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def is_down(self, backend: str) -> bool:
        """Whether the last operation of ``backend`` seen here failed."""
        return backend in self._down

    def failure(self, backend: str, exc: BaseException | str) -> None:
        """Count one failed operation (a request answered 503, a failed check).

        Logs ``down`` on the first failure, ``still down`` with the counts when
        ``interval`` seconds have passed since the last line, and nothing else.
        """
        reason = exc if isinstance(exc, str) else describe(exc)
        now = self._clock()
        state = self._down.get(backend)
        if state is None:
            quiet = now - self._up_logged_at.get(backend, -math.inf) < self._interval
            self._down[backend] = _Down(
                since=now, last_report=now, announced=not quiet, reason=reason
            )
            if not quiet:
                self._log.warning("%s down: %s%s", backend, reason, self._brief(backend))
            return
        state.failures += 1
        state.unreported += 1
        state.reason = reason
        if now - state.last_report < self._interval:
            return
        if state.announced:
            self._log.warning(
                "%s still down after %.0f s: %d failures in the last %.0f s, %d in all; last: %s",
                backend,
                now - state.since,
                state.unreported,
                now - state.last_report,
                state.failures,
                reason,
            )
        else:
            state.announced = True
            self._log.warning(
                "%s down again for %.0f s: %d failures; last: %s%s",
                backend,
                now - state.since,
                state.failures,
                reason,
                self._brief(backend),
            )
        state.last_report = now
        state.unreported = 0

    def success(self, backend: str) -> None:
        """Note a successful operation; logs ``up again`` if ``backend`` was down.

        Called on every successful operation, so the common case is one dict look-up.
        """
        if backend not in self._down:
            return
        state = self._down.pop(backend)
        if not state.announced:
            self._unlogged[backend] = self._unlogged.get(backend, 0) + state.failures
            return
        now = self._clock()
        self._up_logged_at[backend] = now
        # WARNING like the down line, so that a log filtered to warnings shows the
        # end of every outage it shows the start of.
        self._log.warning(
            "%s up again after %.1f s down; %d failures in that time",
            backend,
            now - state.since,
            state.failures,
        )

    def _brief(self, backend: str) -> str:
        count = self._unlogged.pop(backend, 0)
        return f" (and {count} failures in brief outages before)" if count else ""

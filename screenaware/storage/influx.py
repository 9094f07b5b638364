"""InfluxDB through its v1-compatible HTTP API: line protocol writes and InfluxQL.

Two pieces:

* :class:`InfluxClient`: the HTTP boundary (``/ping``, ``/write``, ``/query``), mapping
  transport and server failures to domain exceptions.
* :class:`GroupCommitWriter`: points of concurrent requests go out in one ``/write``;
  each request awaits the outcome of the batch that carried its points, so an answer
  after ``await writer.write(...)`` means the points are stored.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
from influxdb_client.client.write.point import Point

from screenaware.config import Config
from screenaware.errors import (
    InfluxAnswerTooLarge,
    QueryFailed,
    SlotNotLeased,
    StorageUnavailable,
    WriteQueueFull,
    WriteRejected,
)
from screenaware.storage import metrics
from screenaware.storage.batching import Coalescer
from screenaware.storage.http11 import HTTPClient, Response, ResponseTooLarge, TransportError
from screenaware.storage.outages import INFLUXDB, OutageLog

LOG = logging.getLogger(__name__)

__all__ = ["GroupCommitWriter", "InfluxClient", "Point", "Series", "UniqueClock"]


@dataclass
class Series:
    """One series of an InfluxQL result."""

    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """The values as dicts keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


class InfluxClient:
    """Async client for the v1-compatible HTTP API (InfluxDB 1.x, 2.x, 3.x).

    Args:
        config: the service configuration (URL, database, credentials, TLS,
            time-out, answer size cap).
        outages: told of every answer, so that the end of an outage is logged.
    """

    def __init__(self, config: Config, outages: OutageLog | None = None) -> None:
        self._outages = outages
        self._url = config.influx_base_url
        self.database = config.influx_db
        self._timeout = config.influx_timeout
        # Credentials in the URL count as much as the username/password settings.
        self._credentials = config.influx_credentials
        self._token = config.influx_token
        self._tls = config.influx_tls_context()
        self._max_response_bytes = config.influx_max_response_bytes
        self._http: HTTPClient | None = None
        # Built once: encoding query parameters per request is measurable on the hot path.
        self._write_path = "/write?" + urllib.parse.urlencode(
            {"db": self.database, "precision": "ns"}
        )

    def __repr__(self) -> str:
        return f"InfluxClient(database={self.database!r})"

    async def open(self) -> None:
        """Create the HTTP client (call from the running event loop)."""
        headers = {}
        if self._token:
            headers["Authorization"] = f"Token {self._token}"
        elif self._credentials is not None:
            basic = ":".join(self._credentials).encode()
            headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
        self._http = HTTPClient(
            self._url,
            timeout=self._timeout,
            connect_timeout=min(self._timeout, 3.0),
            headers=headers,
            ssl_context=self._tls,
            max_response_bytes=self._max_response_bytes,
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> HTTPClient:
        if self._http is None:
            raise RuntimeError("InfluxClient.open() was not called")
        return self._http

    async def _request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        try:
            resp = await self.http.request(method, path, body, headers)
        except ResponseTooLarge as exc:
            LOG.error(
                "InfluxDB answer to %s passed SCREENAWARE_INFLUX_MAX_RESPONSE_BYTES (%d); not read",
                path.partition("?")[0],
                exc.limit,
            )
            raise InfluxAnswerTooLarge(str(exc)) from None
        except TransportError as exc:
            # The reason names the origin (never credentials) and the failure.
            raise StorageUnavailable(f"InfluxDB unreachable: {exc}") from None
        if resp.status >= 500 or resp.status in (401, 403):
            # Logged by whoever counts the failure (the outage log), not per request here.
            raise StorageUnavailable(f"InfluxDB answered {resp.status} to {path.partition('?')[0]}")
        if self._outages is not None:
            self._outages.success(INFLUXDB)
        return resp

    async def ping(self) -> None:
        """Raise :class:`StorageUnavailable` unless the server answers."""
        resp = await self._request("GET", "/ping")
        if resp.status != 204:
            raise StorageUnavailable(f"InfluxDB ping answered {resp.status}")

    async def ensure_database(self) -> None:
        """Create the database if it does not exist (idempotent)."""
        # CREATE DATABASE takes an identifier, which bind parameters cannot carry.
        await self.query(f"CREATE DATABASE {quote_ident(self.database)}", method="POST")

    async def ensure_retention_policy(self, name: str, shard_weeks: int) -> None:
        """Create a retention policy keeping data forever in shards of ``shard_weeks``
        weeks, if the database has none of that name (an existing one is left as it
        is, whatever its settings)."""
        # Identifiers again: no bind parameters. ``name`` is a constant of ours.
        existing = await self.query(f"SHOW RETENTION POLICIES ON {quote_ident(self.database)}")
        if any(row.get("name") == name for s in existing for row in s.rows()):
            return
        await self.query(
            f"CREATE RETENTION POLICY {quote_ident(name)} ON {quote_ident(self.database)} "
            f"DURATION INF REPLICATION 1 SHARD DURATION {int(shard_weeks)}w",
            method="POST",
        )

    async def write_lines(self, body: bytes, retention_policy: str | None = None) -> None:
        """Write line protocol (nanosecond precision).

        Args:
            body: the lines.
            retention_policy: where to write them (None: the database's default).

        Raises:
            StorageUnavailable: the server is down, slow, or misconfigured.
            WriteRejected: the server refused the data (HTTP 4xx).
        """
        path = self._write_path
        if retention_policy is not None:
            path += "&" + urllib.parse.urlencode({"rp": retention_policy})
        resp = await self._request("POST", path, body)
        if resp.status == 404 and "database not found" in resp.text:
            LOG.warning("database %r missing, creating it", self.database)
            await self.ensure_database()
            resp = await self._request("POST", path, body)
        if resp.status >= 400:
            raise WriteRejected(_error_text(resp))

    async def query(
        self,
        influxql: str,
        params: Mapping[str, Any] | None = None,
        *,
        method: str = "GET",
        binary: bool = False,
    ) -> list[Series]:
        """Run one InfluxQL statement with bind parameters; times come back as ns.

        Args:
            influxql: the statement; user input goes only into ``$name`` parameters.
            params: the bind parameters.
            method: POST for statements that change the database.
            binary: ask for the answer in MessagePack (InfluxDB 1.6+): the same
                structure as JSON, about a quarter less of InfluxDB's CPU for large
                raw answers; a server answering JSON instead is read as JSON.

        Raises:
            StorageUnavailable: the server is down.
            QueryFailed: the server rejected the statement.
        """
        query: dict[str, str] = {"db": self.database, "q": influxql, "epoch": "ns"}
        if params:
            query["params"] = json.dumps(params)
        encoded = urllib.parse.urlencode(query)
        accept = _MSGPACK if binary else {}
        if method == "GET":
            resp = await self._request("GET", "/query?" + encoded, headers=accept)
        else:
            resp = await self._request("POST", "/query", encoded.encode(), {**_FORM, **accept})
        if resp.status >= 400:
            raise QueryFailed(_error_text(resp))
        result = _decode(resp)["results"][0]
        if "error" in result:
            raise QueryFailed(result["error"])
        return [
            Series(
                name=s.get("name", ""),
                columns=s["columns"],
                values=s.get("values", []),
                tags=s.get("tags") or {},
            )
            for s in result.get("series", [])
        ]


def quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_MSGPACK = {"Accept": "application/x-msgpack"}


def _decode(resp: Response) -> Any:
    """A query answer, JSON or MessagePack as its Content-Type says."""
    if resp.headers.get("content-type", "").startswith("application/x-msgpack"):
        return msgpack.unpackb(resp.body)
    return orjson.loads(resp.body)


def _error_text(resp: Response) -> str:
    try:
        answer = _decode(resp)
    except ValueError:
        return resp.text[:200]
    if isinstance(answer, dict) and "error" in answer:
        return str(answer["error"])
    return resp.text[:200]


class UniqueClock:
    """Nanosecond point times that no other live process of the service repeats.

    InfluxDB replaces a point with the same series and time, so two beats of one
    device acknowledged in the same instant by two workers (or machines) must
    still get distinct times. Times have microsecond resolution; the three
    sub-microsecond digits hold this process's ``slot``, leased from Redis and
    held by no other live process (:class:`~screenaware.storage.clockslots.SlotLease`),
    and within a process every value is at least a microsecond after the previous one.

    Without a valid lease the clock refuses to stamp (:class:`SlotNotLeased`, a 503)
    rather than guess a slot another process may hold.

    Args:
        time_ns: the wall clock in nanoseconds.
        slot: a fixed slot (0-999) valid for good; None: none until :meth:`lease`.
        monotonic: the clock, in seconds, that lease deadlines are measured on.
    """

    SLOTS = 1000

    def __init__(
        self,
        time_ns: Callable[[], int] = time.time_ns,
        slot: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._time_ns = time_ns
        self._monotonic = monotonic
        self._slot = 0 if slot is None else slot
        self._valid_until = -math.inf if slot is None else math.inf
        self._last_us = 0

    @property
    def slot(self) -> int | None:
        """The slot, or None while none is validly leased."""
        return self._slot if self._monotonic() < self._valid_until else None

    def lease(self, slot: int, valid_until: float) -> None:
        """Stamp with ``slot`` until ``valid_until`` (on the ``monotonic`` clock)."""
        if not 0 <= slot < self.SLOTS:
            raise ValueError(f"slot must be in 0..{self.SLOTS - 1}, got {slot}")
        self._slot = slot
        self._valid_until = valid_until

    def revoke(self) -> None:
        """Stop stamping: the slot may now belong to another process."""
        self._valid_until = -math.inf

    def __call__(self) -> int:
        if self._monotonic() >= self._valid_until:
            raise SlotNotLeased("no point-clock slot leased; Redis unreachable?")
        now_us = self._time_ns() // 1000
        self._last_us = now_us if now_us > self._last_us else self._last_us + 1
        return self._last_us * 1000 + self._slot


class GroupCommitWriter:
    """Batches the points of concurrent requests into one ``/write``.

    Built on :class:`~screenaware.storage.batching.Coalescer`: while one write is in
    flight new points queue, and the next write carries all of them. An awaited
    :meth:`write` that returns means InfluxDB acknowledged those points.

    Args:
        influx: the client to write through.
        max_batch_lines: points per ``/write`` at most.
        max_pending_lines: points that may wait; past it writes fail fast with
            :class:`WriteQueueFull` (a 503) instead of piling up.
    """

    def __init__(
        self, influx: InfluxClient, *, max_batch_lines: int = 5000, max_pending_lines: int = 100_000
    ) -> None:
        self._influx = influx
        self._coalescer: Coalescer[list[str], None] = Coalescer(
            self._write_batch,
            name="influx-group-commit",
            max_batch=max_batch_lines,
            max_pending=max_pending_lines,
            weight=len,
            full_error=lambda: WriteQueueFull("too many points queued"),
        )

    @property
    def batches_written(self) -> int:
        """How many ``/write`` calls succeeded."""
        return self._coalescer.calls

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        await self._coalescer.stop()

    async def write(self, points: Iterable[Point | str]) -> None:
        """Store points; returns once InfluxDB has acknowledged them.

        Raises:
            WriteQueueFull: too many points are already waiting.
            StorageUnavailable: the batch carrying these points failed.
            WriteRejected: InfluxDB refused these points.
        """
        lines = [p if isinstance(p, str) else p.to_line_protocol() for p in points]
        if lines:
            await self._coalescer.submit(lines)

    async def _write_batch(self, batch: list[list[str]]) -> list[BaseException | None]:
        started = time.perf_counter()
        try:
            await self._influx.write_lines("\n".join(itertools.chain(*batch)).encode())
            metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
            metrics.BATCH_POINTS.observe(sum(len(lines) for lines in batch))
        except WriteRejected:
            if len(batch) == 1:
                raise
            # One request's bad points must not fail its neighbours: retry each alone.
            # Points that did get stored are written again with the same series and
            # time, so InfluxDB keeps one copy.
            outcomes = await asyncio.gather(
                *(self._influx.write_lines("\n".join(lines).encode()) for lines in batch),
                return_exceptions=True,
            )
            return [o if isinstance(o, BaseException) else None for o in outcomes]
        return [None] * len(batch)

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
import collections
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from influxdb_client import Point

from screenaware.config import Config
from screenaware.errors import QueryFailed, StorageUnavailable, WriteQueueFull, WriteRejected

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
        config: the service configuration (URL, database, credentials, time-out).
    """

    def __init__(self, config: Config) -> None:
        self._url = config.influx_url.rstrip("/")
        self.database = config.influx_db
        self._timeout = config.influx_timeout
        self._username = config.influx_username
        self._password = config.influx_password
        self._token = config.influx_token
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"InfluxClient(database={self.database!r})"

    async def open(self) -> None:
        """Create the HTTP client (call from the running event loop)."""
        headers = {"Authorization": f"Token {self._token}"} if self._token else {}
        auth = (self._username, self._password) if self._username else None
        self._http = httpx.AsyncClient(
            base_url=self._url,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 3.0)),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("InfluxClient.open() was not called")
        return self._http

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"InfluxDB unreachable: {type(exc).__name__}") from None
        if resp.status_code >= 500 or resp.status_code in (401, 403):
            LOG.error("InfluxDB answered %s to %s", resp.status_code, path)
            raise StorageUnavailable(f"InfluxDB answered {resp.status_code}")
        return resp

    async def ping(self) -> None:
        """Raise :class:`StorageUnavailable` unless the server answers."""
        resp = await self._request("GET", "/ping")
        if resp.status_code != 204:
            raise StorageUnavailable(f"InfluxDB ping answered {resp.status_code}")

    async def ensure_database(self) -> None:
        """Create the database if it does not exist (idempotent)."""
        # CREATE DATABASE takes an identifier, which bind parameters cannot carry.
        await self.query(f"CREATE DATABASE {quote_ident(self.database)}", method="POST")

    async def write_lines(self, body: bytes) -> None:
        """Write line protocol (nanosecond precision).

        Raises:
            StorageUnavailable: the server is down, slow, or misconfigured.
            WriteRejected: the server refused the data (HTTP 4xx).
        """
        params = {"db": self.database, "precision": "ns"}
        resp = await self._request("POST", "/write", params=params, content=body)
        if resp.status_code == 404 and "database not found" in resp.text:
            LOG.warning("database %r missing, creating it", self.database)
            await self.ensure_database()
            resp = await self._request("POST", "/write", params=params, content=body)
        if resp.status_code >= 400:
            raise WriteRejected(_error_text(resp))

    async def query(
        self,
        influxql: str,
        params: Mapping[str, Any] | None = None,
        *,
        method: str = "GET",
    ) -> list[Series]:
        """Run one InfluxQL statement with bind parameters; times come back as ns.

        Args:
            influxql: the statement; user input goes only into ``$name`` parameters.
            params: the bind parameters.
            method: POST for statements that change the database.

        Raises:
            StorageUnavailable: the server is down.
            QueryFailed: the server rejected the statement.
        """
        query: dict[str, str] = {"db": self.database, "q": influxql, "epoch": "ns"}
        if params:
            query["params"] = json.dumps(params)
        if method == "GET":
            resp = await self._request("GET", "/query", params=query)
        else:
            resp = await self._request("POST", "/query", data=query)
        if resp.status_code >= 400:
            raise QueryFailed(_error_text(resp))
        result = resp.json()["results"][0]
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


def _error_text(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error", resp.text))
    except ValueError:
        return resp.text[:200]


class UniqueClock:
    """Nanosecond timestamps that never repeat within this process.

    InfluxDB replaces a point with the same series and timestamp, so two beats of
    one device in the same clock tick must still get distinct times.
    """

    def __init__(self, time_ns: Any = time.time_ns) -> None:
        self._time_ns = time_ns
        self._last = 0

    def __call__(self) -> int:
        now = self._time_ns()
        self._last = now if now > self._last else self._last + 1
        return self._last


@dataclass
class _Pending:
    lines: list[str]
    future: asyncio.Future[None]


class GroupCommitWriter:
    """Batches the points of concurrent requests into one ``/write``.

    While one write is in flight, new points queue; when it returns, everything
    queued goes out together. No timer delays a lone request, yet under load each
    ``/write`` carries many requests' points.

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
        self._max_batch = max_batch_lines
        self._max_pending = max_pending_lines
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_lines = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches_written = 0

    async def start(self) -> None:
        """Start the flusher task (call from the running event loop)."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="influx-group-commit")

    async def stop(self) -> None:
        """Flush what is queued, then stop the flusher."""
        if self._task is None:
            return
        while self._queue:
            await self._flush(self._take_batch())
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def write(self, points: Iterable[Point | str]) -> None:
        """Store points; returns once InfluxDB has acknowledged them.

        Raises:
            WriteQueueFull: too many points are already waiting.
            StorageUnavailable: the batch carrying these points failed.
            WriteRejected: InfluxDB refused these points.
        """
        lines = [p if isinstance(p, str) else p.to_line_protocol() for p in points]
        if not lines:
            return
        if self._task is None or self._wakeup is None:
            raise RuntimeError("GroupCommitWriter.start() was not called")
        if self._queued_lines + len(lines) > self._max_pending:
            raise WriteQueueFull(f"{self._queued_lines} points already queued")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # The request may be cancelled (client gone) while its batch is in flight;
        # reading the outcome here keeps asyncio from logging it as never retrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(_Pending(lines, future))
        self._queued_lines += len(lines)
        self._wakeup.set()
        await asyncio.shield(future)

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].lines) <= self._max_batch):
            item = self._queue.popleft()
            batch.append(item)
            count += len(item.lines)
        self._queued_lines -= count
        return batch

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                await self._flush(self._take_batch())

    async def _flush(self, batch: Sequence[_Pending]) -> None:
        body = "\n".join(line for item in batch for line in item.lines).encode()
        try:
            await self._influx.write_lines(body)
        except WriteRejected:
            if len(batch) == 1:
                _settle(batch[0], WriteRejected("InfluxDB rejected the points"))
                return
            # One request's bad points must not fail its neighbours: retry each alone.
            # Points that did get stored are simply written again (same series and
            # time, so InfluxDB keeps one copy).
            await asyncio.gather(*(self._flush([item]) for item in batch))
            return
        except StorageUnavailable as exc:
            for item in batch:
                _settle(item, type(exc)(str(exc)))
            return
        except Exception:
            LOG.exception("group commit of %d requests failed", len(batch))
            for item in batch:
                _settle(item, RuntimeError("write failed"))
            return
        self.batches_written += 1
        for item in batch:
            _settle(item, None)


def _settle(item: _Pending, exc: BaseException | None) -> None:
    if item.future.done():
        return
    if exc is None:
        item.future.set_result(None)
    else:
        item.future.set_exception(exc)

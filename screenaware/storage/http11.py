"""A small keep-alive HTTP/1.1 client for one origin: the transport of the InfluxDB client.

Why not httpx: measured on this project's 2-core machine (one process, uvloop, a
real influxd), one ``POST /write`` of seven points costs about 630 µs of CPU through
httpx/httpcore/anyio and about 55 µs through asyncio streams, and a heartbeat worker
under load writes hundreds of batches a second. The protocol InfluxDB needs is
small: requests with a Content-Length body; responses framed by Content-Length,
chunked encoding (large query answers) or the end of the connection.

Measured again against aiohttp's client (keep-alive pool, its C parser) with
``scripts/bench transport``: aiohttp needs 1.75-1.9x the CPU per ``/write`` of
5,000 points (2.1x for 7 points) and about the same for a 30 MB query answer, so
this client stays (the README has the table).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

LOG = logging.getLogger(__name__)

_MAX_HEADERS = 100
# Status lines, header lines and chunk-size lines longer than this are refused.
_LINE_LIMIT = 64 * 1024


class TransportError(Exception):
    """No complete response: refused, reset, timed out, or not HTTP/1.x."""


class ResponseTooLarge(TransportError):
    """The answer is larger than the client's ``max_response_bytes``; it was not read.

    Attributes:
        limit: the configured cap in bytes.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit


class _Stale(Exception):
    """A kept-alive connection turned out closed before any byte of a response."""


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response.

    Attributes:
        status: the status code.
        headers: names lower-cased; a repeated header's values joined by ``", "``.
        body: the whole body, de-chunked.
    """

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` if it is not)."""
        return orjson.loads(self.body)


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class HTTPClient:
    """Requests to one origin over a few kept-alive connections.

    Args:
        url: ``http://`` or ``https://`` origin, optionally with a path prefix; no
            credentials (``user:password@``): give them as an ``Authorization`` header.
        timeout: seconds one request may take in all (waiting for a connection,
            connecting, sending, and reading the whole response).
        connect_timeout: seconds a new connection may take.
        headers: sent with every request (e.g. credentials; never logged).
        max_connections: requests in flight at most; more wait for a free one.
        max_idle: connections kept open between requests.
        ssl_context: for ``https://``: the certificates to trust and the client
            certificate to present (default: the system's CAs, no client certificate).
        max_response_bytes: the largest body read; a larger answer raises
            :class:`ResponseTooLarge` as soon as its size is known, before it is held.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        connect_timeout: float,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 32,
        max_idle: int = 16,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
        if "@" in parts.netloc:
            # Dropping them silently would turn into 401s far from the cause.
            raise ValueError("credentials in the URL: send them as an Authorization header")
        if ssl_context is not None and parts.scheme != "https":
            raise ValueError("a TLS context needs an https:// URL")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme == "https":
            self._ssl: ssl.SSLContext | None = ssl_context or ssl.create_default_context()
        else:
            self._ssl = None
        self._prefix = parts.path.rstrip("/")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.max_response_bytes = max_response_bytes
        common = {"Host": parts.netloc, **(headers or {})}
        if any("\r" in v or "\n" in v for v in common.values()):
            # A credential with a line break would smuggle headers into every request.
            raise ValueError("header values cannot hold CR or LF")
        self._common = "".join(f"{k}: {v}\r\n" for k, v in common.items()).encode("latin-1")
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle
        self._idle: collections.deque[_Connection] = collections.deque()
        self._closed = False

    def __repr__(self) -> str:
        return f"HTTPClient({self.origin!r})"

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request and read its whole response.

        Args:
            method: e.g. ``"GET"``.
            target: path and query, appended to the URL's path prefix.
            body: the request body (sent with a Content-Length).
            headers: extra headers of this request.

        Raises:
            TransportError: no complete response arrived in time.
        """
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"{method} {self._prefix}{target} HTTP/1.1\r\n".encode("latin-1")
            + self._common
            + f"{extra}Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
        )
        try:
            async with asyncio.timeout(self._timeout), self._slots:
                return await self._exchange(method, head, body)
        except TimeoutError:
            raise TransportError(f"no answer within {self._timeout:g} s") from None

    async def close(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    async def _exchange(self, method: str, head: bytes, body: bytes) -> Response:
        while self._idle:
            conn = self._idle.pop()
            if not conn.usable():
                conn.close()
                continue
            try:
                return await self._send(conn, method, head, body)
            except _Stale:
                # The server closed it while idle (a restart, its idle time-out). The
                # request never reached it, or it did and InfluxDB's writes and our
                # statements are idempotent: sending once more on a new connection is
                # safe. The other idle ones most likely died with it.
                LOG.debug("kept-alive connection to %s was closed; reconnecting", self.origin)
                while self._idle:
                    self._idle.pop().close()
        try:
            return await self._send(await self._connect(), method, head, body)
        except _Stale:
            raise TransportError("connection closed before an answer") from None

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, ssl=self._ssl, limit=_LINE_LIMIT
                )
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to {self.origin}: {type(exc).__name__}") from None
        return _Connection(reader, writer)

    async def _send(self, conn: _Connection, method: str, head: bytes, body: bytes) -> Response:
        try:
            try:
                conn.writer.write(head + body if len(body) < 65536 else head)
                if len(body) >= 65536:
                    conn.writer.write(body)
                await conn.writer.drain()
                status_line = await conn.reader.readline()
            except OSError:
                raise _Stale from None
            if not status_line:
                raise _Stale
            response, keep = await _read_response(
                conn.reader, method, status_line, self.max_response_bytes
            )
        except ResponseTooLarge:
            # The rest of the answer is still on the wire: the connection is unusable.
            conn.close()
            raise
        except (OSError, EOFError, ValueError) as exc:
            conn.close()
            raise TransportError(f"bad answer from {self.origin}: {type(exc).__name__}") from None
        except BaseException:
            # _Stale, or cancelled mid-answer: the connection's state is unknown.
            conn.close()
            raise
        if keep and not self._closed and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return response


async def _read_response(
    reader: asyncio.StreamReader, method: str, status_line: bytes, limit: int
) -> tuple[Response, bool]:
    """Parse one response after its status line; returns it and whether to keep the connection.

    Raises:
        ValueError: not HTTP/1.x.
        EOFError: the connection ended early (``IncompleteReadError`` is one).
        ResponseTooLarge: the body would pass ``limit`` bytes.
    """
    while True:
        version, status, headers = await _read_head(reader, status_line)
        if not 100 <= status < 200:
            break
        # An interim answer (we never send Expect, but a proxy may): the real one follows.
        status_line = await reader.readline()
        if not status_line:
            raise EOFError("connection closed after an interim answer")
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader, limit)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            raise ResponseTooLarge(limit)
        parts: list[bytes] = []
        await _read_into(reader, length, parts)
        body = b"".join(parts)
    else:
        body = await _read_to_end(reader, limit)
        keep = False
    return Response(status, headers, body), keep


async def _read_head(
    reader: asyncio.StreamReader, status_line: bytes
) -> tuple[str, int, dict[str, str]]:
    version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or not rest[:3].isdigit():
        raise ValueError("not an HTTP/1.x status line")
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = await reader.readline()
        if not line:
            raise EOFError("connection closed in the headers")
        if line in (b"\r\n", b"\n"):
            return version, int(rest[:3]), headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ValueError("header line without a colon")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise ValueError("too many headers")


async def _read_into(reader: asyncio.StreamReader, size: int, parts: list[bytes]) -> None:
    """Append exactly ``size`` bytes to ``parts``, in pieces of at most 1 MiB.

    influxd sends a large query answer as one chunk of tens of MB. One
    ``readexactly`` of it grows a single buffer as the data arrives and copies it
    out again; pieces joined once at the end cost about half the CPU
    (``scripts/bench transport``).
    """
    while size:
        data = await reader.read(min(size, 1 << 20))
        if not data:
            raise EOFError("connection closed in the body")
        parts.append(data)
        size -= len(data)


async def _read_to_end(reader: asyncio.StreamReader, limit: int) -> bytes:
    parts = []
    total = 0
    while data := await reader.read(1 << 20):
        total += len(data)
        if total > limit:
            raise ResponseTooLarge(limit)
        parts.append(data)
    return b"".join(parts)


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip(), 16)
        if size < 0:
            raise ValueError("negative chunk size")
        if size == 0:
            break
        total += size
        if total > limit:
            raise ResponseTooLarge(limit)
        await _read_into(reader, size, parts)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk without its CRLF")
    # Trailers, if any, end with an empty line.
    while (line := await reader.readline()) not in (b"\r\n", b"\n"):
        if not line:
            raise EOFError("connection closed in the trailers")
    return b"".join(parts)

"""The InfluxDB client's HTTP/1.1 transport: against the real influxd, and against a
local socket server that answers with exactly the bytes a test gives it (framings
and failures influxd does not produce on demand)."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from screenaware.config import Config
from screenaware.storage.http11 import HTTPClient, ResponseTooLarge, TransportError
from tests.conftest import dead_url

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Scripted:
    """A TCP server on 127.0.0.1; each connection runs the test's handler."""

    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Scripted]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> Scripted:
        state = Scripted("")

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            try:
                await handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return state

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def answer(*responses: bytes, close_after: bool = False) -> Handler:
    """A handler answering successive requests of a connection with ``responses``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            await read_request(reader)
            writer.write(response)
            await writer.drain()
        if not close_after:
            await reader.read()  # keep the connection open until the client leaves

    return handler


def client(url: str, timeout: float = 2.0) -> HTTPClient:
    return HTTPClient(url, timeout=timeout, connect_timeout=1.0, headers={"X-Key": "s3cret"})


async def test_a_small_influx_answer_has_a_length_and_a_large_one_comes_chunked(
    config: Config,
) -> None:
    http = client(config.influx_url, timeout=30)
    try:
        db = urllib.parse.quote(config.influx_db)
        created = await http.request(
            "POST",
            "/query",
            f"q=CREATE+DATABASE+%22{db}%22".encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert created.status == 200
        lines = "\n".join(f'big,k=k{i % 5} v={i}i,s="{"x" * 20}" {i}' for i in range(20_000))
        wrote = await http.request("POST", f"/write?db={db}&precision=ns", lines.encode())
        assert (wrote.status, wrote.body) == (204, b"")
        query = urllib.parse.urlencode({"db": config.influx_db, "q": "SELECT v FROM big"})
        big = await http.request("GET", f"/query?{query}")
        assert big.status == 200
        assert big.headers.get("transfer-encoding") == "chunked"
        values = big.json()["results"][0]["series"][0]["values"]
        assert [v for _, v in values] == list(range(20_000))
        small = await http.request("GET", "/ping")
        assert small.status == 204
        bad = await http.request("POST", f"/write?db={db}", b"not line protocol")
        assert bad.status == 400
        assert "error" in bad.json()
        assert "content-length" in bad.headers
    finally:
        await http.close()


async def test_requests_reuse_one_connection(
    serve: Callable[[Handler], Awaitable[Scripted]],
) -> None:
    ok = b"HTTP/1.1 204 No Content\r\n\r\n"
    server = await serve(answer(ok, ok, ok))
    http = client(server.url)
    for _ in range(3):
        assert (await http.request("POST", "/write", b"m v=1")).status == 204
    assert server.connections == 1
    await http.close()


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
            b"hello, world",
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", b"until the end"),
    ],
)
async def test_every_framing_is_read_whole(
    serve: Callable[[Handler], Awaitable[Scripted]], raw: bytes, body: bytes
) -> None:
    server = await serve(answer(raw, close_after=True))
    http = client(server.url)
    response = await http.request("GET", "/x")
    assert (response.status, response.body) == (200, body)
    await http.close()


async def test_a_connection_closed_while_idle_is_replaced_unseen(
    serve: Callable[[Handler], Awaitable[Scripted]],
) -> None:
    # Each connection answers one request and then closes, as a server does after
    # its idle time-out: the next request finds its kept-alive connection dead.
    server = await serve(answer(b"HTTP/1.1 204 No Content\r\n\r\n", close_after=True))
    http = client(server.url)
    for _ in range(3):
        assert (await http.request("POST", "/write", b"m v=1")).status == 204
        await asyncio.sleep(0.05)
    assert server.connections == 3
    await http.close()


async def test_a_request_meeting_a_closing_connection_is_sent_again_on_a_new_one(
    serve: Callable[[Handler], Awaitable[Scripted]],
) -> None:
    # The first connection answers once, then takes the next request and closes
    # without a word (the server's idle time-out struck as the request arrived).
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = server.connections == 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + (b"1" if first else b"2"))
        await writer.drain()
        if first:
            await read_request(reader)

    server = await serve(handler)
    http = client(server.url)
    assert (await http.request("POST", "/write", b"m v=1")).body == b"1"
    assert (await http.request("POST", "/write", b"m v=1")).body == b"2"
    assert server.connections == 2
    await http.close()


async def test_after_a_restart_a_request_is_sent_at_most_twice(
    serve: Callable[[Handler], Awaitable[Scripted]],
) -> None:
    restarted = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            server.requests.append(await read_request(reader))
            if restarted.is_set() and server.connections <= 3:
                return  # an old connection: closed without an answer
            await asyncio.sleep(0.05)  # slow enough that three requests need three connections
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    server = await serve(handler)
    http = client(server.url)
    await asyncio.gather(*(http.request("POST", "/write", b"m v=1") for _ in range(3)))
    assert (server.connections, len(server.requests)) == (3, 3)
    restarted.set()
    assert (await http.request("POST", "/write", b"m v=1")).status == 204
    # One attempt on a dead kept-alive connection, one on a new one; the other two
    # idle connections were dropped instead of tried.
    assert (server.connections, len(server.requests)) == (4, 5)
    await http.close()


async def test_connection_close_is_honoured(
    serve: Callable[[Handler], Awaitable[Scripted]],
) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n1"
    server = await serve(answer(closing))
    http = client(server.url)
    for _ in range(2):
        assert (await http.request("GET", "/")).body == b"1"
    assert server.connections == 2
    await http.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"",
    ],
)
async def test_a_broken_answer_is_a_transport_error_and_the_connection_is_dropped(
    serve: Callable[[Handler], Awaitable[Scripted]], raw: bytes
) -> None:
    server = await serve(answer(raw, close_after=True))
    http = client(server.url)
    with pytest.raises(TransportError):
        await http.request("GET", "/")
    assert not http._idle  # nothing half-read is kept for reuse
    await http.close()


async def test_a_silent_server_times_out_and_a_dead_one_is_refused(
    serve: Callable[[Handler], Awaitable[Scripted]],
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await serve(silent)
    http = client(server.url, timeout=0.3)
    with pytest.raises(TransportError, match="no answer within"):
        await http.request("GET", "/")
    await http.close()
    dead = client(dead_url("http"))
    with pytest.raises(TransportError, match="cannot connect"):
        await dead.request("GET", "/")


async def test_headers_go_out_but_never_into_repr(
    serve: Callable[[Handler], Awaitable[Scripted]],
) -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    server = await serve(record)
    http = HTTPClient(
        server.url + "/prefix/",
        timeout=2,
        connect_timeout=1,
        headers={"Authorization": "Token s3cret"},
    )
    await http.request("POST", "/write?db=x", json.dumps({"a": 1}).encode())
    request = seen[0].decode()
    assert request.startswith("POST /prefix/write?db=x HTTP/1.1\r\n")
    assert "Authorization: Token s3cret\r\n" in request
    assert "Content-Length: 8\r\n" in request
    assert request.endswith('\r\n\r\n{"a": 1}')
    assert "s3cret" not in repr(http)
    await http.close()


def endless(head: bytes) -> Handler:
    """A handler answering with ``head`` and then data for as long as the client reads."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head)
        while True:
            writer.write(b"x" * 65536)
            await writer.drain()

    return handler


@pytest.mark.parametrize(
    "handler",
    [
        # Announced too large: refused from the header, nothing read (the body never comes).
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n"),
        answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nE8D4A51000\r\n"),
        # Chunks within the cap one by one, past it together.
        answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"3e8\r\n" + b"x" * 1000 + b"\r\n"
            + b"3e8\r\n" + b"x" * 1000 + b"\r\n"
        ),
        # No length: read until the cap, not until the end that never comes.
        endless(b"HTTP/1.0 200 OK\r\n\r\n"),
        endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n"),
    ],
    ids=["content-length", "one-chunk", "chunks", "until-close", "chunked-endless"],
)  # fmt: skip
async def test_an_answer_over_the_cap_is_refused_before_it_is_held(
    serve: Callable[[Handler], Awaitable[Scripted]], handler: Handler
) -> None:
    server = await serve(handler)
    http = HTTPClient(server.url, timeout=5, connect_timeout=1, max_response_bytes=1500)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ResponseTooLarge, match="larger than 1500 bytes") as caught:
        await http.request("GET", "/query")
    assert caught.value.limit == 1500
    assert asyncio.get_running_loop().time() - started < 2  # never waited for the rest
    assert not http._idle  # the rest is still on the wire: the connection is dropped
    await http.close()


async def test_an_answer_at_the_cap_is_read(
    serve: Callable[[Handler], Awaitable[Scripted]],
) -> None:
    body = b"y" * 1500
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:700], body[700:]))
    server = await serve(
        answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1500\r\n\r\n" + body,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n",
        )
    )
    http = HTTPClient(server.url, timeout=5, connect_timeout=1, max_response_bytes=1500)
    assert (await http.request("GET", "/a")).body == body
    assert (await http.request("GET", "/b")).body == body
    assert server.connections == 1
    await http.close()


def test_header_values_with_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        HTTPClient(
            "http://127.0.0.1:1",
            timeout=1,
            connect_timeout=1,
            headers={"Authorization": "Token x\r\nX-Evil: 1"},
        )
    with pytest.raises(ValueError, match="not an http"):
        HTTPClient("ftp://127.0.0.1:1", timeout=1, connect_timeout=1)


def test_credentials_in_the_url_are_refused_not_dropped() -> None:
    # InfluxClient turns them into a header; dropped here, they would end as 401s.
    with pytest.raises(ValueError, match="credentials in the URL"):
        HTTPClient("http://user:pw@127.0.0.1:1", timeout=1, connect_timeout=1)
    with pytest.raises(ValueError, match="https://"):
        HTTPClient(
            "http://127.0.0.1:1",
            timeout=1,
            connect_timeout=1,
            ssl_context=ssl.create_default_context(),
        )

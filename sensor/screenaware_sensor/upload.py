"""Delivering the queue: arrays of at most 1,000 snapshots to ``POST /api/snapshots``."""

from __future__ import annotations

import email.utils
import enum
import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message

from screenaware_sensor import __version__
from screenaware_sensor.queue import Queued, SnapshotQueue

log = logging.getLogger("screenaware_sensor.upload")

BATCH_MAX = 1000  # the API's default SCREENAWARE_SNAPSHOT_BATCH_MAX
# Well under the API's 8 MiB bulk body limit; a 413 halves the batch anyway.
BATCH_BYTES = 4 * 1024 * 1024
RETRY_AFTER_MAX = 3600.0
TRANSIENT = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Response:
    """A server answer: status, headers (lower-case names) and body text."""

    status: int
    headers: Mapping[str, str]
    text: str


class Client:
    """A small HTTP client for the ScreenAware API (standard library only).

    Args:
        server: base URL without a trailing slash.
        key: sent as ``Authorization: Bearer <key>``.
        timeout: seconds per request.
    """

    def __init__(self, server: str, key: str, timeout: float = 30.0) -> None:
        self.server = server
        self._auth = f"Bearer {key}"
        self.timeout = timeout
        self._opener = urllib.request.build_opener()

    def post(self, path: str, body: bytes, authorization: str | None = None) -> Response:
        """POST a JSON body; any HTTP status is returned, connection errors raise OSError."""
        # The URL is http(s) only: the settings refuse every other scheme.
        request = urllib.request.Request(  # noqa: S310
            self.server + path,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": authorization or self._auth,
                "User-Agent": f"screenaware-sensor/{__version__}",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                return Response(resp.status, _headers(resp.headers), _text(resp.read()))
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, _headers(err.headers), _text(err.read()))
        except (http.client.HTTPException, ValueError) as exc:
            # A broken answer (e.g. the server died mid-response) is a connection problem.
            raise OSError(str(exc)) from exc


def _headers(headers: Message | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (headers.items() if headers is not None else ())}


def _text(body: bytes) -> str:
    return body[:4096].decode("utf-8", "replace")


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), capped."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, delta), RETRY_AFTER_MAX)


class Backoff:
    """Exponential back-off with jitter: 1, 2, 4 ... ``cap`` seconds, each 50-100% of that.

    Args:
        base: the first delay.
        cap: the longest delay.
        rng: returns a float in [0, 1) (random.random).
    """

    def __init__(
        self, base: float = 1.0, cap: float = 300.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.base, self.cap, self.rng = base, cap, rng
        self.failures = 0

    def failure(self, server_asked: float | None = None) -> float:
        """Record a failure; the seconds to wait (never less than the server asked)."""
        self.failures += 1
        ceiling = min(self.cap, self.base * 2.0 ** min(self.failures - 1, 30))
        delay = ceiling / 2 + self.rng() * ceiling / 2
        return max(delay, server_asked or 0.0)

    def success(self) -> None:
        """Start over after a delivery."""
        self.failures = 0


class Status(enum.Enum):
    """How a delivery attempt ended."""

    DELIVERED = "delivered"  # the queue is empty
    UNREACHABLE = "unreachable"  # connection error, 429, 5xx: try again later
    REFUSED = "refused"  # 401/403/404...: the key or the URL is wrong


@dataclass(frozen=True)
class Outcome:
    """The end of :func:`deliver`."""

    status: Status
    sent: int = 0
    retry_after: float | None = None
    message: str = ""


def deliver(
    queue: SnapshotQueue,
    client: Client,
    batch_max: int = BATCH_MAX,
    batch_bytes: int = BATCH_BYTES,
    should_stop: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Upload the queue, oldest first, until it is empty or the server cannot take more.

    A batch leaves the queue only after the server's 200. A 400, 413 or 422 for a batch
    splits it in halves until the refused snapshots stand alone; those move to the
    queue's ``rejected`` table.
    """
    sent = 0
    limit = batch_max
    while not should_stop():
        batch = queue.peek(limit, batch_bytes)
        if not batch:
            return Outcome(Status.DELIVERED, sent)
        outcome = _send(queue, client, batch)
        if isinstance(outcome, Outcome):
            return Outcome(outcome.status, sent, outcome.retry_after, outcome.message)
        sent += outcome
    return Outcome(Status.DELIVERED if len(queue) == 0 else Status.UNREACHABLE, sent)


def _send(queue: SnapshotQueue, client: Client, batch: list[Queued]) -> int | Outcome:
    body = ("[" + ",".join(q.body for q in batch) + "]").encode()
    try:
        resp = client.post("/api/snapshots", body)
    except OSError as exc:
        log.info("server unreachable: %s", exc)
        return Outcome(Status.UNREACHABLE, message=str(exc))
    if resp.status == 200:
        queue.delete(batch)
        log.debug("delivered %d snapshots", len(batch))
        return len(batch)
    message = _message(resp)
    if resp.status in TRANSIENT:
        log.info("server busy (%d %s)", resp.status, message)
        return Outcome(Status.UNREACHABLE, retry_after=retry_after(resp.headers), message=message)
    if resp.status in (400, 413, 422):
        if len(batch) == 1:
            queue.reject(batch, f"{resp.status} {message}")
            return 0
        middle = len(batch) // 2
        delivered = 0
        for half in (batch[:middle], batch[middle:]):
            got = _send(queue, client, half)
            if isinstance(got, Outcome):
                return got
            delivered += got
        return delivered
    log.error("server refused the upload: %d %s", resp.status, message)
    return Outcome(Status.REFUSED, message=f"{resp.status} {message}")


def _message(resp: Response) -> str:
    try:
        data = json.loads(resp.text)
    except ValueError:
        return resp.text[:200]
    if isinstance(data, dict):
        parts = [str(data.get("message", ""))]
        if "errors" in data:
            parts.append(json.dumps(data["errors"])[:1000])
        return " ".join(p for p in parts if p)
    return resp.text[:200]

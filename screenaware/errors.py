"""Domain exceptions raised by the services and at the storage boundaries.

They know nothing of HTTP: :func:`screenaware.web.errors.register` maps them to
status codes once, so responders never need try/except of their own.
"""

from __future__ import annotations

from typing import Any


class StorageUnavailable(Exception):
    """A backing store (InfluxDB or Redis) cannot be reached or refused to work.

    Args:
        *args: the message.
        backend: which store, ``"influxdb"`` (the default) or ``"redis"``.
    """

    def __init__(self, *args: object, backend: str = "influxdb") -> None:
        super().__init__(*args)
        self.backend = backend


class SlotNotLeased(StorageUnavailable):
    """This process holds no point-clock slot (Redis unreachable since it started, or
    the lease lapsed): points it stamped could collide with another process's."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args, backend="redis")


class WriteQueueFull(StorageUnavailable):
    """Too many points wait for InfluxDB; new writes are refused rather than queued."""


class InfluxAnswerTooLarge(StorageUnavailable):
    """An InfluxDB answer passed the configured size cap, so it was not read (503)."""


class WriteRejected(Exception):
    """InfluxDB refused the data itself (HTTP 400): retrying it will not help."""


class QueryFailed(Exception):
    """InfluxDB answered a query with an error (a bug in our InfluxQL)."""


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class StoreFull(Exception):
    """A store's byte budget leaves no room for this upload (507)."""


class AuthFailed(Exception):
    """Missing or invalid credentials (401)."""


class Forbidden(Exception):
    """The caller's role does not allow this (403)."""


class NotFound(Exception):
    """No such entity, or not the caller's (404: foreign entities do not exist)."""


class Conflict(Exception):
    """The entity exists already (409)."""


class Invalid(Exception):
    """The request is well-formed but its content is not acceptable (422).

    Args:
        message: what is wrong.
        errors: messages per field, as schema validation gives them.
    """

    def __init__(self, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


class Malformed(Invalid):
    """The request breaks the documented contract where no schema loader could check
    it, e.g. a multipart upload without its required part (400, not 422)."""


class RateLimited(Exception):
    """Too many attempts (429)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many attempts; retry in {retry_after} s")
        self.retry_after = retry_after

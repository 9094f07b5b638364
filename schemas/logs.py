"""Schemas of log points and their review queries."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from schemas.activity import LATEST, _time
from schemas.common import Pattern, StrictBoolean, StrictFloat, StrictInteger, Uuid, flag
from schemas.identity import _Lenient

LEVELS = ("nothing", "error", "warn", "info", "debug", "trace")

# semver.org's official pattern.
SEMVER = (
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
TYPE = r"^[A-Za-z0-9_]{1,128}$"
LATEST_MS = int(LATEST.timestamp() * 1000)
# A tag value: no tab, CR or LF, and no trailing backslash (line protocol cannot carry them).
TAG_SAFE = r"^[^\t\r\n]*[^\t\r\n\\]$"


class LogDataSchema(_Lenient):
    time = StrictInteger(validate=validate.Range(min=0, max=LATEST_MS))
    origin = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=128), Pattern(TAG_SAFE)],
    )
    originId = fields.String(validate=validate.Length(max=256))
    version = fields.String(required=True, validate=[validate.Length(max=256), Pattern(SEMVER)])
    userUuid = Uuid()
    message = fields.String(required=True, validate=validate.Length(max=4096))
    messageNumeric = StrictFloat(allow_nan=False)
    messageBool = StrictBoolean()
    details = fields.String(load_default="", validate=validate.Length(max=65536))


class LogPointInSchema(_Lenient):
    """One point of ``POST /api/logs``."""

    type = fields.String(required=True, validate=Pattern(TYPE))
    level = fields.String(required=True, validate=validate.OneOf(LEVELS))
    data = fields.Nested(LogDataSchema, required=True)


class LogPointSchema(Schema):
    """A stored point as answered."""

    type = fields.String(required=True)
    level = fields.String(required=True)
    uuid = fields.String(required=True)
    time = fields.String(required=True)
    deleted = fields.Boolean(required=True)
    message = fields.String()
    details = fields.String()
    userUuid = fields.String(allow_none=True)
    origin = fields.String()
    originId = fields.String(allow_none=True)
    version = fields.String()
    messageNumeric = fields.Float()
    messageBool = fields.Boolean()


class LogRangeSchema(_Lenient):
    """``GET /api/logs``: the series in a range."""

    start = _time()
    end = _time()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
BASE_INTERVAL = 300
# About a century: InfluxDB's nanosecond durations stay far from overflowing.
MAX_INTERVAL = 36500 * 86400


class Interval(fields.String):
    """A bucket width such as ``5m``, ``1h``, ``1d``, ``1w``: loaded as seconds.

    Widths are whole multiples of the documented 5 minutes, so a coarser answer
    sums the standard intervals.
    """

    def __init__(self, **kwargs: Any) -> None:
        # The pattern is in the document (checked in _deserialize, so the default,
        # already in seconds, is not); that the width is a multiple of 5 minutes and
        # at most 36500 days is checked with the request (422), see interval_ok.
        metadata = {"pattern": r"^[1-9][0-9]{0,8}[smhdw]$", **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        match = re.fullmatch(r"([1-9][0-9]{0,8})([smhdw])", text)
        if match is None:
            raise ValidationError("Expected a duration such as 5m, 1h, 1d or 1w.")
        return int(match[1]) * _UNITS[match[2]]


def interval_ok(seconds: int) -> bool:
    """Whether a loaded ``interval`` is a whole multiple of 5 minutes, at most 36500 days."""
    return seconds % BASE_INTERVAL == 0 and BASE_INTERVAL <= seconds <= MAX_INTERVAL


class LogQuerySchema(LogRangeSchema):
    """``GET /api/logs/:type``."""

    userUuid = Uuid()
    structure = fields.String(validate=validate.OneOf(["grouped"]))
    metaonly = flag(load_default=False)
    limit = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=10000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10_000_000))
    cursor = Uuid(
        metadata={"description": "uuid of the last point of the previous page (not with offset)"}
    )
    interval = Interval(
        load_default=BASE_INTERVAL,
        metadata={"description": "with structure=grouped: the bucket width (5m, 1h, 1d, 1w)"},
    )


class LogSeriesSchema(Schema):
    type = fields.String(required=True)
    count = fields.Integer(required=True)


class CountSchema(Schema):
    """``metaonly=true``."""

    count = fields.Integer(required=True)


class LogBucketSchema(Schema):
    time = fields.String(required=True)
    count = fields.Integer(required=True)

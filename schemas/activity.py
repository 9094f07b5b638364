"""Schemas of snapshots, /times, applications and categories."""

from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, post_load, validate

from schemas.common import (
    Moment,
    Pattern,
    StrictBoolean,
    StrictFloat,
    StrictInteger,
    TimeZone,
    Uuid,
    flag,
)
from schemas.identity import _Lenient

GROUP_BY = ("projectUuid", "categoryUuid", "applicationUuid")
RESOLUTIONS = ("hour", "day", "week", "month")


# InfluxDB stores nanoseconds in 64 bits (1677-2262): keep times well inside
# (date-times: schemas.common.Moment; Unix-ms integers up to this).
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def _time() -> Moment:
    return Moment()


def _share() -> StrictFloat:
    # Shares of the screen, 0..1, as in the documented example.
    return StrictFloat(allow_none=True, validate=validate.Range(min=0.0, max=1.0))


class DocumentSchema(_Lenient):
    path = fields.String(required=True, validate=validate.Length(max=4096))
    title = fields.String(allow_none=True, validate=validate.Length(max=4096))


class WindowSchema(_Lenient):
    title = fields.String(allow_none=True, validate=validate.Length(max=4096))
    isFocused = StrictBoolean(load_default=False)
    processName = fields.String(allow_none=True, validate=validate.Length(max=512))
    screenPercentage = _share()
    visiblePercentage = _share()
    tags = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=256)),
        values=StrictFloat(),
        validate=validate.Length(max=200),
    )
    # Nested(many=True), not List(Nested): one load of all items, a third faster
    # than a load per item (the snapshot path's largest cost), the same document.
    documents = fields.Nested(DocumentSchema, many=True, validate=validate.Length(max=100))


class SnapshotSchema(_Lenient):
    """One snapshot of ``POST /api/snapshots`` (unknown fields such as ``created`` ignored)."""

    time = _time()
    timeTaken = _time()
    durationMs = StrictInteger(load_default=10000, validate=validate.Range(min=1, max=10000))
    windows = fields.Nested(
        WindowSchema, many=True, load_default=list, validate=validate.Length(max=200)
    )


class TimesQuerySchema(_Lenient):
    """Parameters of ``GET /api/times`` (query string, or a JSON body)."""

    start = _time()
    end = _time()
    groupBy = fields.String(validate=validate.OneOf(GROUP_BY))
    resolution = fields.String(validate=validate.OneOf(RESOLUTIONS))
    nestTimeBucketsInsideGroups = flag(load_default=False)
    tz = TimeZone()


class TimeBucketSchema(Schema):
    """A node of the /times answer (nested up to twice; documented in the README)."""

    class Meta:
        unknown = EXCLUDE

    start = fields.String(required=True)
    end = fields.String(required=True)
    sum = fields.Integer(required=True)
    groupType = fields.String()
    grouped = fields.Dict()
    projectUuid = fields.String(allow_none=True)
    categoryUuid = fields.String(allow_none=True)
    applicationUuid = fields.String(allow_none=True)


class ApplicationSchema(Schema):
    uuid = fields.String(required=True)
    name = fields.String(required=True)


def _names(max_items: int) -> fields.List[str]:
    return fields.List(
        fields.String(validate=validate.Length(min=1, max=256)),
        validate=validate.Length(max=max_items),
    )


class CategoryInSchema(_Lenient):
    """Body of ``POST /api/categories`` and (partial) ``PUT /api/categories/:id``."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    applications = _names(500)
    domains = _names(500)

    @post_load
    def normalise(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        for key in ("applications", "domains"):
            if key in data:
                data[key] = sorted({v.strip().lower() for v in data[key] if v.strip()})
        return data


class CategorySchema(Schema):
    uuid = fields.String(required=True)
    name = fields.String(required=True)
    builtin = fields.Boolean(required=True)
    applications = fields.List(fields.String())
    domains = fields.List(fields.String())


class _RangeQuery(_Lenient):
    start = _time()
    end = _time()
    minDuration = fields.Integer(load_default=0, validate=validate.Range(min=0))
    limit = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=10000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    sort = fields.String(
        load_default="time ASC", validate=validate.OneOf(["time ASC", "time DESC"])
    )
    tz = TimeZone()


class StreamsQuerySchema(_RangeQuery):
    """Parameters of ``GET /api/streams``."""

    projectUuid = fields.String(
        validate=Pattern(r"^(none|[0-9a-fA-F-]{36})$", error="Not a project uuid.")
    )
    expanded = flag(load_default=False)
    showGaps = flag(load_default=False)
    groupByDay = flag(load_default=False)


class SubstreamsQuerySchema(_RangeQuery):
    """Parameters of ``GET /api/substreams``."""


class ZoneQuerySchema(_Lenient):
    """The query of ``PUT /api/stream/:uuid/project``: the zone of its days."""

    tz = TimeZone()


class StreamProjectSchema(_Lenient):
    """Body of ``PUT /api/stream/:uuid/project``: a project of the caller's, or null."""

    projectUuid = Uuid(required=True, allow_none=True)


class StreamSchema(Schema):
    """A stream (or gap stream) as answered."""

    uuid = fields.String(required=True)
    time = fields.String(required=True)
    durationMs = fields.Integer(required=True)
    projectUuid = fields.String(allow_none=True)
    isGap = fields.Boolean()
    applications = fields.List(fields.Dict())
    baseDocuments = fields.List(fields.Dict())
    titles = fields.List(fields.Dict())


class SubstreamSchema(Schema):
    uuid = fields.String(required=True)
    time = fields.String(required=True)
    durationMs = fields.Integer(required=True)
    projectUuid = fields.String(allow_none=True)
    categoryUuid = fields.String(allow_none=True)
    applicationUuid = fields.String(allow_none=True)
    baseDocumentPath = fields.String(allow_none=True)
    projectRelationReason = fields.String(allow_none=True)


class ForgetSchema(Schema):
    ok = fields.Boolean(required=True)
    forgotten = fields.Integer(required=True)


class AssociationSchema(Schema):
    kind = fields.String(required=True)
    value = fields.String(required=True)
    count = fields.Integer(required=True)

"""Schemas of export and imports."""

from __future__ import annotations

from marshmallow import Schema, fields

from schemas.identity import _Lenient


class ExportQuerySchema(_Lenient):
    """Parameters of ``GET /api/export``."""

    user = fields.UUID(metadata={"description": "An admin may export any user."})


class SkippedSchema(Schema):
    """Something of the file that was not imported, and why."""

    item = fields.String(required=True, metadata={"description": "bucket id, or line"})
    reason = fields.String(required=True)


class ImportSummarySchema(Schema):
    """The answer of every import."""

    snapshots = fields.Integer(required=True)
    skipped = fields.List(fields.Nested(SkippedSchema), required=True)
    start = fields.String(allow_none=True, data_key="from")
    end = fields.String(allow_none=True, data_key="to")

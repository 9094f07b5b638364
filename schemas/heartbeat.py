"""Schemas of the Heartbeat API."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from schemas.common import NOT_BLANK


class DeviceCreateSchema(Schema):
    """Body of ``POST /api/devices``."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=128),
            NOT_BLANK,
        ],
    )


class DeviceSchema(Schema):
    """A device with its token, as answered on creation and regeneration."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    token = fields.String(required=True)


class DeviceStatsSchema(Schema):
    """One device inside the statistics."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    last_beat = fields.Integer(allow_none=True)
    num_beats = fields.Integer(required=True)


class StatsSchema(Schema):
    """``GET /api/stats`` and every WebSocket message, in the documented order."""

    last_seen = fields.Integer(allow_none=True)
    last_seen_relative = fields.Integer(required=True)
    longest_absence = fields.Integer(required=True)
    num_visits = fields.Integer(required=True)
    total_beats = fields.Integer(required=True)
    devices = fields.List(fields.Nested(DeviceStatsSchema), required=True)
    uptime = fields.Integer(required=True)


class HealthSchema(Schema):
    """``GET /.well-known/health``."""

    status = fields.String(required=True)
    influxdb = fields.String(required=True)
    redis = fields.String(required=True)

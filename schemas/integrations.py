"""Schemas of the integration routes (``/api/integrations``)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from schemas.common import Pattern, StrictBoolean


class IntegrationSchema(Schema):
    """One integration as the user sees it (never its credentials)."""

    key = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    status = fields.String(required=True)
    connected = fields.Boolean(required=True)
    lastSync = fields.String(
        allow_none=True, required=True, metadata={"description": "RFC 3339, null: never"}
    )
    lastError = fields.String(
        allow_none=True, required=True, metadata={"description": "why the last sync failed"}
    )


class CalendarConnectSchema(Schema):
    """``PUT /api/integrations/googleCalendar``: a CalDAV collection or ``.ics`` URL."""

    class Meta:
        unknown = EXCLUDE

    url = fields.String(
        required=True,
        validate=[
            validate.Length(max=2048),
            Pattern(
                r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=:@\[\]-]+([/?#][!-~]*)?$",
                error="Not an http(s) URL.",
            ),
        ],
    )
    username = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=320))
    password = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=1024), load_only=True
    )


class DisconnectQuerySchema(Schema):
    """``DELETE /api/integrations/googleCalendar?purge=true``."""

    class Meta:
        unknown = EXCLUDE

    purge = StrictBoolean(
        text=True,
        load_default=False,
        metadata={"description": "also reverse the time imported (ledger entries)"},
    )

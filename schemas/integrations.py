"""Schemas of the integration routes (``/api/integrations``)."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from schemas.common import UUID_PATTERN, Day, Pattern, StrictBoolean, Uuid


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


_HTTP_URL = Pattern(
    r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=:@\[\]-]+([/?#][!-~]*)?$",
    error="Not an http(s) URL.",
)


class RedmineConnectSchema(Schema):
    """``PUT /api/integrations/redmine``: the Redmine address and the user's API key."""

    class Meta:
        unknown = EXCLUDE

    url = fields.String(
        required=True,
        validate=[validate.Length(max=2048), _HTTP_URL],
        metadata={"description": "the Redmine address, e.g. https://redmine.example.org"},
    )
    apiKey = fields.String(
        required=True,
        load_only=True,
        validate=[
            validate.Length(min=1, max=256),
            Pattern(r"^[!-~]+$", error="Not an API key (printable ASCII, no spaces)."),
        ],
        metadata={"description": "Redmine: My account, API access key"},
    )
    dailyBooking = StrictBoolean(
        load_default=False,
        metadata={"description": "book the previous day's time every day"},
    )


class RedmineDisconnectQuerySchema(Schema):
    """``DELETE /api/integrations/redmine?purge=true``."""

    class Meta:
        unknown = EXCLUDE

    purge = StrictBoolean(
        text=True,
        load_default=False,
        metadata={"description": "also delete the tasks made from Redmine issues"},
    )


REDMINE_PROJECT_ID = r"^[1-9][0-9]{0,9}$"
MAX_MAPPED = 1000
# The body of PUT .../mapping is the mapping itself (Redmine project ids are its
# keys), so it is described here and loaded by mapping_field below.
MAPPING_BODY = {
    "type": "object",
    "maxProperties": MAX_MAPPED,
    "propertyNames": {"pattern": REDMINE_PROJECT_ID},
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "pattern": UUID_PATTERN},
            {"type": "string", "enum": ["new"]},
            {"type": "null"},
        ]
    },
    "description": (
        "Redmine project id → ScreenAware project uuid, `new` (a project named after "
        "the Redmine one is created), or null (not mapped). Replaces the mapping."
    ),
    "example": {"12": "d8abeaa0-466e-4228-8e93-404cb8cd984b", "13": "new"},
}


class _MappingValue(fields.Field[str | None]):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        if value == "new":
            return "new"
        return str(Uuid().deserialize(value))


mapping_field = fields.Dict(
    keys=fields.String(validate=Pattern(REDMINE_PROJECT_ID, error="Not a Redmine project id.")),
    values=_MappingValue(allow_none=True),
    validate=validate.Length(max=MAX_MAPPED),
)


class RedmineMappingSchema(Schema):
    """The mapping as answered, with the Redmine projects the user can see."""

    mapping = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "Redmine project id → ScreenAware project uuid"},
    )
    projects = fields.List(
        fields.Nested(lambda: RedmineProjectSchema()),
        metadata={"description": "the Redmine projects the key's user can see"},
    )


class RedmineProjectSchema(Schema):
    """A Redmine project and the ScreenAware project it maps to (null: none)."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    identifier = fields.String(required=True)
    projectUuid = fields.String(allow_none=True, required=True)


class RedmineBookSchema(Schema):
    """``POST /api/integrations/redmine/time-entries``: the day to book."""

    class Meta:
        unknown = EXCLUDE

    date = Day(required=True, metadata={"description": "the day, in your time zone"})


class RedmineEntrySchema(Schema):
    """One booked Redmine time entry."""

    redmineProjectId = fields.Integer(required=True)
    projectUuid = fields.String(required=True)
    hours = fields.Float(required=True)
    timeEntryId = fields.Integer(required=True)


class RedmineBookingSchema(Schema):
    """What a booking did."""

    date = fields.String(required=True)
    entries = fields.List(fields.Nested(RedmineEntrySchema), required=True)

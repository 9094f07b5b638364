"""Fields and validators whose OpenAPI form says exactly what they accept.

The OpenAPI document is generated from the schemas (apispec), and schemathesis
checks that every request the document allows is accepted and every other one
refused. Plain marshmallow fields accept more than their JSON Schema says (``0``
for a boolean, ``"1.5"`` for a number, ``{...}`` uuids, year 0199 for a
date-time); these do not.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from marshmallow import ValidationError, fields, validate

from screenaware.timeutil import parse_zone


class Pattern(validate.Regexp):
    """A regular expression the whole value must match.

    JSON Schema's ``pattern`` (the document's, found here by apispec) is matched
    by an ECMA/Rust engine where ``^...$`` means the whole string; Python's
    ``re.match`` would also take a trailing newline. ``fullmatch`` agrees with it.
    """

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# Python's whitespace (str.isspace), spelt out: ``\s`` differs between regex engines.
_SPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = Pattern(f"^[\\s\\S]*[^{_SPACE}][\\s\\S]*$", error="Must not be blank.")

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class Uuid(fields.UUID):
    """A uuid in its canonical 8-4-4-4-12 hex form only (no braces, no ``urn:``).

    (Validators see the parsed value, so the pattern is checked before parsing and
    handed to the document as metadata.)
    """

    def __init__(self, **kwargs: Any) -> None:
        metadata = {
            "pattern": UUID_PATTERN,
            "example": "d8abeaa0-466e-4228-8e93-404cb8cd984b",
            **kwargs.pop("metadata", {}),
        }
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(UUID_PATTERN, value):
            raise self.make_error("invalid_uuid")
        return super()._deserialize(value, attr, data, **kwargs)


# A calendar date of the years 1970 to 2199 (InfluxDB keeps nanoseconds in 64 bits,
# 1677-2262: well inside), Feb 29 in leap years only (2100 is none).
_YEAR = r"(?:19[7-9][0-9]|2[01][0-9]{2})"
_LEAP = (
    r"(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26])"
    r"|21(?:[02468][48]|[2468]0|[13579][26]))"
)
_DATE = (
    rf"(?:{_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    rf"|{_YEAR}-(?:0[13-9]|1[0-2])-(?:29|30)"
    rf"|{_YEAR}-(?:0[13578]|1[02])-31"
    rf"|{_LEAP}-02-29)"
)
MOMENT_PATTERN = (
    rf"^{_DATE}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{{1,9}})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$"
)


class Moment(fields.AwareDateTime):
    """An RFC 3339 date-time of the years 1970 to 2199; no offset means UTC.

    The pattern is the whole rule (the document carries it); parsing then cannot fail.
    """

    default_error_messages = {"moment": "Not an RFC 3339 date-time of the years 1970 to 2199."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            default_timezone=dt.UTC,
            metadata={
                "pattern": MOMENT_PATTERN,
                "description": "RFC 3339, years 1970 to 2199; UTC without an offset.",
                "example": "2015-05-17T05:52:22.907Z",
            },
            **kwargs,
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(MOMENT_PATTERN, value):
            # Checked before parsing, so that the error is the documented rule.
            raise self.make_error("moment")
        return super()._deserialize(value, attr, data, **kwargs)


DAY_PATTERN = rf"^{_DATE}$"


class Day(fields.Date):
    """A calendar date ``YYYY-MM-DD`` of the years 1970 to 2199."""

    default_error_messages = {"day": "Not a date YYYY-MM-DD of the years 1970 to 2199."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            metadata={
                "pattern": DAY_PATTERN,
                "example": "2015-05-17",
                **kwargs.pop("metadata", {}),
            },
            **kwargs,
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(DAY_PATTERN, value):
            raise self.make_error("day")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON boolean only (not ``0``, ``1`` or ``"yes"``).

    Args:
        text: also take ``"true"``/``"false"``, as a query string spells them.
    """

    def __init__(self, *, text: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = text

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, bool):
            return value
        if self._text and value in ("true", "false"):
            return bool(value == "true")
        raise self.make_error("invalid", input=value)


def flag(**kwargs: Any) -> StrictBoolean:
    """A boolean query parameter: ``true`` or ``false``."""
    return StrictBoolean(text=True, **kwargs)


class StrictFloat(fields.Float):
    """A JSON number only (not ``"1.5"`` or ``true``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class StrictInteger(fields.Integer):
    """A JSON integer: ``5`` or, as JSON Schema counts it, ``5.0``; not ``"5"`` or ``true``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class TimeZone(fields.String):
    """An IANA zone name, checked by :func:`screenaware.timeutil.parse_zone`.

    The OpenAPI document lists the names (``#/components/schemas/TimeZone``).
    """

    default_error_messages = {"zone": "Unknown IANA time zone."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs)
        try:
            parse_zone(name)
        except ValueError:
            raise self.make_error("zone") from None
        return str(name)

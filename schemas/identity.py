"""Schemas of the ScreenAware identity routes: auth, users, projects, tasks."""

from __future__ import annotations

from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    fields,
    post_load,
    validate,
)

from schemas.common import NOT_BLANK as _not_blank
from schemas.common import TimeZone, Uuid

# Part of the contract: the role names with their bit masks, and the password rule.
ROLES = {"user": 2, "admin": 4}
MIN_PASSWORD_LENGTH = 8


def _password() -> fields.String:
    return fields.String(required=True, validate=validate.Length(min=MIN_PASSWORD_LENGTH, max=1024))


def _name() -> fields.String:
    return fields.String(validate=validate.Length(max=100))


def _dedupe(values: list[str], *, fold: bool) -> list[str]:
    seen: set[str] = set()
    out = []
    for value in values:
        key = value.casefold() if fold else value
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class LoginSchema(_Lenient):
    """``POST /api/auth/local`` (JSON or form-encoded)."""

    email = fields.String(required=True, validate=validate.Length(min=1, max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class TokenSchema(Schema):
    token = fields.String(required=True)


class SessionSchema(Schema):
    """A browser session opened: the CSRF token (also in the readable cookie)."""

    ok = fields.Boolean(required=True)
    csrfToken = fields.String(required=True)


class OkSchema(Schema):
    ok = fields.Boolean(required=True)


class TokenOkSchema(Schema):
    """A password change: done, and the fresh token."""

    ok = fields.Boolean(required=True)
    token = fields.String(required=True)


class PasswordSetSchema(Schema):
    """A password set by an admin: done, and a fresh token if it was the admin's own."""

    ok = fields.Boolean(required=True)
    token = fields.String(
        metadata={
            "description": "Only when callers changed their own password: every earlier "
            "token of theirs, the one used included, is void."
        }
    )


class ErrorSchema(Schema):
    """Every error: a message, and the messages per field on a 400."""

    message = fields.String(required=True)
    errors = fields.Dict()


class UserCreateSchema(_Lenient):
    """``POST /api/users``."""

    email = fields.Email(required=True, validate=validate.Length(max=320))
    password = _password()
    nameFirst = _name()
    nameLast = _name()
    timezone = TimeZone(allow_none=True)
    role = fields.String(validate=validate.OneOf(list(ROLES)))


def _current_password(description: str) -> fields.String:
    return fields.String(
        validate=validate.Length(min=1, max=1024), metadata={"description": description}
    )


_CURRENT_FOR_OWN = (
    "The caller's current password: needed when callers set their own password "
    "(a token alone is not enough); not needed for someone else's."
)


class _CurrentPassword(_Lenient):
    """``currentPassword``, with ``oldPassword`` accepted as its older name."""

    currentPassword = _current_password(_CURRENT_FOR_OWN)
    oldPassword = _current_password("Older name of `currentPassword`.")

    @post_load
    def one_name(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        old = data.pop("oldPassword", None)
        if "currentPassword" not in data and old is not None:
            data["currentPassword"] = old
        return data


class UserUpdateSchema(_CurrentPassword):
    """``PUT /api/users`` (admin): the user is found by ``email``."""

    email = fields.String(required=True, validate=validate.Length(min=1, max=320))
    password = fields.String(validate=validate.Length(min=MIN_PASSWORD_LENGTH, max=1024))
    nameFirst = _name()
    nameLast = _name()
    timezone = TimeZone(allow_none=True)
    role = fields.String(
        validate=validate.OneOf(list(ROLES)),
        metadata={"description": "The user's new role (not the admin's own: 422)."},
    )


class OwnProfileSchema(_Lenient):
    """``PUT /api/users/me``: names and time zone."""

    nameFirst = _name()
    nameLast = _name()
    timezone = TimeZone(allow_none=True)


class PasswordSchema(_CurrentPassword):
    """``PUT /api/users/:id/password`` (admin)."""

    password = _password()


class OwnPasswordSchema(_CurrentPassword):
    """``PUT /api/users/me/password``: proves the current password."""

    currentPassword = _current_password(
        "Your current password (needed, 422 without it; `oldPassword` is accepted instead)."
    )
    password = _password()


class RoleSchema(Schema):
    bitMask = fields.Integer(required=True)
    title = fields.String(required=True)


class UserSchema(Schema):
    """A user as answered (never with a password)."""

    _id = fields.String(required=True)
    uuid = fields.String(required=True)
    email = fields.String(required=True)
    nameFirst = fields.String()
    nameLast = fields.String()
    role = fields.Nested(RoleSchema, required=True)
    timezone = fields.String(allow_none=True)
    integrations = fields.Dict()


class ProjectInSchema(_Lenient):
    """Body of ``POST /api/projects`` and (partial) ``PUT /api/projects/:id``."""

    uuid = Uuid()
    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), _not_blank])
    parentProject = Uuid(allow_none=True)
    localPaths = fields.List(
        fields.String(validate=[validate.Length(min=1, max=1024), _not_blank]),
        validate=validate.Length(max=200),
    )
    contactEmails = fields.List(
        fields.Email(validate=validate.Length(max=320)), validate=validate.Length(max=200)
    )
    keywords = fields.List(
        fields.String(validate=[validate.Length(min=1, max=200), _not_blank]),
        validate=validate.Length(max=500),
    )

    @post_load
    def normalise(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        for key in ("uuid", "parentProject"):
            if data.get(key) is not None:
                data[key] = str(data[key])
        if "localPaths" in data:
            data["localPaths"] = _dedupe([p.strip() for p in data["localPaths"]], fold=False)
        if "contactEmails" in data:
            data["contactEmails"] = _dedupe([e.strip() for e in data["contactEmails"]], fold=True)
        if "keywords" in data:
            data["keywords"] = _dedupe([k.strip() for k in data["keywords"]], fold=True)
        return data


class ProjectSchema(Schema):
    """A project as answered."""

    uuid = fields.String(required=True)
    id = fields.String(required=True)
    name = fields.String(required=True)
    userUuid = fields.String(required=True)
    parentProject = fields.String(allow_none=True)
    localPaths = fields.List(fields.String())
    contactEmails = fields.List(fields.String())
    keywords = fields.List(fields.String())


class TaskInSchema(_Lenient):
    """Body of ``POST /api/tasks`` and (partial) ``PUT /api/tasks/:id``."""

    uuid = Uuid()
    title = fields.String(required=True, validate=[validate.Length(min=1, max=500), _not_blank])
    projectUuid = Uuid(required=True)

    @post_load
    def normalise(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        for key in ("uuid", "projectUuid"):
            if data.get(key) is not None:
                data[key] = str(data[key])
        return data


class TaskSchema(Schema):
    """A task as answered."""

    uuid = fields.String(required=True)
    title = fields.String(required=True)
    projectUuid = fields.String(required=True)
    userUuid = fields.String(required=True)


class ApiKeyCreateSchema(_Lenient):
    """``POST /api/keys``: what the key is for."""

    name = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=100), _not_blank],
        metadata={"description": "What the key is for, e.g. the sensor's machine."},
    )


class ApiKeySchema(Schema):
    """A key as listed: never its secret."""

    uuid = fields.String(required=True, metadata={"description": "The key's id (not the key)."})
    name = fields.String(required=True)
    createdAt = fields.String(required=True)
    lastUsedAt = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Last use, to the configured interval (a minute); null: never."},
    )


class ApiKeyCreatedSchema(Schema):
    """A new key, with its secret: shown this once."""

    uuid = fields.String(required=True)
    name = fields.String(required=True)
    key = fields.String(
        required=True,
        metadata={
            "description": "The secret (a UUID v4 string), sent as `Authorization: Bearer "
            "<key>`; only its SHA-256 is stored, it cannot be shown again."
        },
    )
    createdAt = fields.String(required=True)

"""Roles, the authenticated principal, and the middleware enforcing them.

Resources declare the role each method needs in ``auth_roles`` (``{"GET": "user"}``);
:class:`AuthMiddleware` enforces it before the responder runs, so no responder checks
credentials itself. ``"all"`` means no token is needed, but a valid one still
identifies the caller.

A bearer value is a login token (a JWT) or an API key (a UUID v4 string; a JWT never
is one). A key stands for its user everywhere except on the methods a resource lists
in ``auth_login_only`` (e.g. ``{"PUT"}``), answered 403: managing keys and passwords needs the login
token, so a leaked sensor key cannot mint more keys or lock the owner out.

A browser session (``POST /api/auth/session``) carries a login token in the
HttpOnly cookie :data:`SESSION_COOKIE` instead of the header. A browser sends that
cookie by itself, so a state-changing request it authenticates must also prove it
comes from the app (double-submit): the ``X-CSRF-Token`` header must equal the
readable cookie :data:`CSRF_COOKIE`, which a page of another origin cannot read.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import falcon
import falcon.asgi

from schemas.identity import ROLES
from screenaware.errors import AuthFailed, Forbidden
from screenaware.timeutil import parse_zone

LOG = logging.getLogger(__name__)

SESSION_COOKIE = "sa_session"
"""The HttpOnly cookie holding a browser session's login token."""
CSRF_COOKIE = "sa_csrf"
"""The readable cookie whose value the app sends back in :data:`CSRF_HEADER`."""
CSRF_HEADER = "X-CSRF-Token"
# Methods that change nothing need no CSRF proof (the answer goes to the page's
# origin only, and these routes have no side effects).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def role_object(role: str) -> dict[str, Any]:
    """``{"bitMask": 2, "title": "user"}`` as the API shows roles."""
    return {"bitMask": ROLES[role], "title": role}


def has_role(actual: str, required: str) -> bool:
    """Whether ``actual`` satisfies ``required`` (an admin may do what a user may)."""
    if required == "all":
        return True
    return ROLES.get(actual, 0) >= ROLES[required]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    uuid: str
    role: str
    email: str
    timezone: str | None = None
    key: str | None = None
    """The uuid of the API key the caller used; None for a login token."""


def caller(req: falcon.asgi.Request) -> str:
    """The uuid of the authenticated caller (on routes that need a role)."""
    return str(req.context.principal.uuid)


def caller_zone(req: falcon.asgi.Request, tz: str | None, default: str) -> str:
    """The zone for day boundaries: ``tz``, else the caller's own, else ``default``.

    ``tz`` and ``default`` were validated already; a stored zone is checked again
    (one saved before validation was strict falls back to ``default``), since the
    name ends up in InfluxQL's ``tz()``.
    """
    if tz:
        return tz
    principal = req.context.principal
    own = principal.timezone if principal else None
    if own:
        try:
            parse_zone(own)
        except ValueError:
            return default
        return str(own)
    return default


class TokenVerifier(Protocol):
    """Checks a bearer token (see :class:`screenaware.identity.TokenIssuer`)."""

    async def verify(self, token: str) -> tuple[str, int]:
        """The user uuid and token version the token names; raises AuthFailed."""
        ...


PrincipalLoader = Callable[[str, int], Awaitable[Principal | None]]
KeyLoader = Callable[[str], Awaitable[Principal | None]]
"""Finds the caller an API key stands for; None when no such key (or user) exists."""


# The canonical text of a UUID v4, any case: the form of an API key. A JWT has dots,
# so no bearer value is both.
_API_KEY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.I)


def is_api_key(bearer: str) -> bool:
    """Whether a bearer value has the form of an API key (a UUID v4 string)."""
    return _API_KEY.fullmatch(bearer) is not None


async def _no_keys(_secret: str) -> Principal | None:
    return None


async def _none_signed_out(_token: str) -> bool:
    return False


class AuthMiddleware:
    """Enforces each resource's ``auth_roles`` before its responder runs.

    Args:
        tokens: checks bearer tokens.
        load: finds the principal for (user uuid, token version); None when the
            user is gone or the token predates a password change.
        keys: finds the principal for an API key; None when it is unknown.
        signed_out: whether a session cookie's token was signed out.
    """

    def __init__(
        self,
        tokens: TokenVerifier,
        load: PrincipalLoader,
        keys: KeyLoader = _no_keys,
        signed_out: Callable[[str], Awaitable[bool]] = _none_signed_out,
    ) -> None:
        self._tokens = tokens
        self._load = load
        self._keys = keys
        self._signed_out = signed_out

    async def _principal(self, token: str) -> Principal:
        if is_api_key(token):
            principal = await self._keys(token)
            if principal is None:
                raise AuthFailed("Invalid API key")
            return principal
        user_uuid, version = await self._tokens.verify(token)
        principal = await self._load(user_uuid, version)
        if principal is None:
            raise AuthFailed("Invalid token")
        return principal

    async def process_resource(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: Any,
        params: dict[str, Any],
    ) -> None:
        roles = getattr(resource, "auth_roles", None)
        req.context.principal = None
        if not roles or req.method not in roles:
            return
        required = roles[req.method]
        header = req.get_header("Authorization")
        if not header:
            session = _single_cookie(req, SESSION_COOKIE)
            if session:
                await self._session(req, resource, required, session)
                return
            if required == "all":
                return
            raise AuthFailed("Missing bearer token")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            if required == "all":
                return
            raise AuthFailed("Authorization must be 'Bearer <token>'")
        try:
            principal = await self._principal(token.strip())
        except AuthFailed:
            if required == "all":
                # An anonymous sender with a stale token is still anonymous.
                return
            raise
        if principal.key is not None and req.method in getattr(resource, "auth_login_only", ()):
            raise Forbidden("This needs your login token; an API key is not accepted here")
        if not has_role(principal.role, required):
            raise Forbidden(f"This requires the {required} role")
        req.context.principal = principal

    async def _session(
        self, req: falcon.asgi.Request, resource: Any, required: str, token: str
    ) -> None:
        """Authenticate by the session cookie; a state change also needs the CSRF proof."""
        if req.method not in SAFE_METHODS:
            check_csrf(req)
        if is_api_key(token):
            # A cookie only ever holds a login token; a key there was not set by us.
            raise AuthFailed("Invalid session")
        try:
            principal = await self._principal(token)
            if await self._signed_out(token):
                raise AuthFailed("signed out")
        except AuthFailed:
            if required == "all":
                return
            raise AuthFailed("Your session has expired; sign in again") from None
        if not has_role(principal.role, required):
            raise Forbidden(f"This requires the {required} role")
        req.context.principal = principal


def _single_cookie(req: falcon.asgi.Request, name: str) -> str | None:
    """The value of cookie ``name``; None when absent, empty or sent more than once.

    Two values of one name mean a cookie planted for a parent domain or path next
    to ours: trusting either could let a planted one win.
    """
    values = req.get_cookie_values(name) or []
    if len(values) != 1 or not values[0]:
        return None
    return str(values[0])


def check_csrf(req: falcon.asgi.Request) -> None:
    """Refuse (403) unless ``X-CSRF-Token`` equals the CSRF cookie (double-submit)."""
    cookie = _single_cookie(req, CSRF_COOKIE)
    header = req.get_header(CSRF_HEADER) or ""
    if not cookie or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise Forbidden(f"Missing or wrong {CSRF_HEADER} header (the app sends it)")

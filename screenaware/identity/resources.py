"""Resources of the ScreenAware identity routes under ``/api``.

Each resource declares ``auth_roles``; :class:`screenaware.web.auth.AuthMiddleware`
enforces them, so a responder finds the caller in ``req.context.principal``.
"""

from __future__ import annotations

import secrets
from typing import Any

import falcon
import falcon.asgi

from schemas.identity import (
    ApiKeyCreatedSchema,
    ApiKeyCreateSchema,
    ApiKeySchema,
    LoginSchema,
    OkSchema,
    OwnPasswordSchema,
    OwnProfileSchema,
    PasswordSchema,
    PasswordSetSchema,
    ProjectInSchema,
    ProjectSchema,
    SessionSchema,
    TaskInSchema,
    TaskSchema,
    TokenOkSchema,
    TokenSchema,
    UserCreateSchema,
    UserSchema,
    UserUpdateSchema,
)
from screenaware.errors import Invalid
from screenaware.identity.accounts import Accounts
from screenaware.identity.keys import ApiKeyStore
from screenaware.identity.projects import ProjectStore, public_project
from screenaware.identity.sessions import SignedOutSessions
from screenaware.web.auth import CSRF_COOKIE, SESSION_COOKIE, caller
from screenaware.web.openapi import operation
from screenaware.web.validation import load_body

_LOGIN_ONLY = "Needs a login token: an API key is refused here (403)."

OK = {"ok": True}

_user = UserSchema()
_users = UserSchema(many=True)
_project = ProjectSchema()
_projects = ProjectSchema(many=True)
_task = TaskSchema()
_tasks = TaskSchema(many=True)
_key = ApiKeySchema()
_keys = ApiKeySchema(many=True)
_key_created = ApiKeyCreatedSchema()


# The documented catalogue. No outbound network exists here, so none can be
# connected yet; a real integration later fills in its status per user.
def _profile_fields(body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {k: body[k] for k in ("nameFirst", "nameLast") if k in body}
    if "timezone" in body:
        fields["timezone"] = body["timezone"] or ""
    return fields


def _password_set(token: str | None) -> dict[str, Any]:
    """``{ok}``, with the fresh token when callers changed their own password."""
    return OK if token is None else {**OK, "token": token}


class LoginResource:
    """``POST /api/auth/local``."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @operation(
        "Log in: a bearer token",
        "auth",
        responses={200: TokenSchema},
        body_types=("application/json", "application/x-www-form-urlencoded"),
    )
    @load_body(LoginSchema())
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = req.context.body
        token = await self._accounts.login(body["email"], body["password"], req.remote_addr)
        resp.media = {"token": token}


class SessionResource:
    """``/api/auth/session``: a browser session in cookies (sign in, sign out).

    The login token goes into an HttpOnly cookie (no script can read it, so an
    injected one cannot steal it), ``SameSite=Strict`` (no other site's page makes
    the browser send it) and ``Secure`` over HTTPS. The CSRF token goes into a
    readable cookie, which the app echoes in ``X-CSRF-Token`` on each state change.
    Signing out also marks the token signed out, so a copy of the cookie stops working.
    """

    def __init__(self, accounts: Accounts, signed_out: SignedOutSessions, ttl: int) -> None:
        self._accounts = accounts
        self._signed_out = signed_out
        self._ttl = ttl

    def _cookie(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str, value: str
    ) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=self._ttl,
            path="/",
            secure=req.scheme == "https",
            http_only=name == SESSION_COOKIE,
            same_site="Strict",
        )

    @operation(
        "Sign in a browser: the session and CSRF cookies",
        "auth",
        responses={200: SessionSchema},
        description=(
            "Same credentials and limits as POST /api/auth/local. Sets the HttpOnly "
            f"cookie {SESSION_COOKIE} (the session) and the readable cookie {CSRF_COOKIE}; "
            "requests authenticated by the cookie that change state must send the "
            "latter's value in the X-CSRF-Token header."
        ),
    )
    @load_body(LoginSchema())
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = req.context.body
        token = await self._accounts.login(body["email"], body["password"], req.remote_addr)
        csrf = secrets.token_urlsafe(32)
        self._cookie(req, resp, SESSION_COOKIE, token)
        self._cookie(req, resp, CSRF_COOKIE, csrf)
        resp.media = {"ok": True, "csrfToken": csrf}

    @operation(
        "Sign a browser out: its session cookies are cleared",
        "auth",
        responses={200: OkSchema},
    )
    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        for token in req.get_cookie_values(SESSION_COOKIE) or []:
            # Bounded: a Cookie header is limited by the server (gunicorn: 8 KB a field).
            if token:
                await self._signed_out.add(token)
        for name in (SESSION_COOKIE, CSRF_COOKIE):
            resp.unset_cookie(name, path="/", same_site="Strict")
        resp.media = OK


class UsersResource:
    """``/api/users``: list, create, update by email (admin)."""

    auth_roles = {"GET": "admin", "POST": "admin", "PUT": "admin"}
    # PUT may set passwords.
    auth_login_only = {"PUT"}

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @operation("All users", "users", responses={200: UserSchema(many=True)})
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = _users.dump([u.public() for u in await self._accounts.store.all()])

    @operation("Create a user", "users", responses={201: TokenSchema})
    @load_body(UserCreateSchema())
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = req.context.body
        user = await self._accounts.create(
            body["email"],
            body["password"],
            name_first=body.get("nameFirst", ""),
            name_last=body.get("nameLast", ""),
            role=body.get("role", "user"),
            timezone=body.get("timezone"),
        )
        resp.status = falcon.HTTP_201
        resp.media = {"token": await self._accounts.token_for(user)}

    @operation(
        "Update a user found by email",
        "users",
        responses={200: PasswordSetSchema},
        description=(
            "A password change voids every token of that user; admins changing their own "
            "must send `currentPassword` (401 if wrong) and get a fresh token. " + _LOGIN_ONLY
        ),
    )
    @load_body(UserUpdateSchema())
    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = req.context.body
        fields = _profile_fields(body)
        if "role" in body:
            fields["role"] = body["role"]
        token = await self._accounts.update_by_email(
            caller(req),
            body["email"],
            fields,
            body.get("password"),
            body.get("currentPassword"),
            req.remote_addr,
        )
        resp.media = _password_set(token)


class UserResource:
    """``/api/users/{id}``: read and delete (admin)."""

    auth_roles = {"GET": "admin", "DELETE": "admin"}

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @operation("A user", "users", responses={200: UserSchema})
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, user_id: str
    ) -> None:
        resp.media = _user.dump((await self._accounts.store.require(user_id)).public())

    @operation("Delete a user", "users", responses={200: UserSchema})
    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, user_id: str
    ) -> None:
        if user_id == caller(req):
            raise Invalid("Admins cannot delete themselves", {"id": ["That is you."]})
        resp.media = _user.dump((await self._accounts.store.delete(user_id)).public())


class UserPasswordResource:
    """``PUT /api/users/{id}/password`` (admin)."""

    auth_roles = {"PUT": "admin"}
    auth_login_only = {"PUT"}

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @operation(
        "Set a user's password",
        "users",
        responses={200: PasswordSetSchema},
        description=(
            "Voids every token of that user; admins setting their own password must send "
            "`currentPassword` (401 if wrong) and get a fresh token. " + _LOGIN_ONLY
        ),
    )
    @load_body(PasswordSchema())
    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, user_id: str
    ) -> None:
        body = req.context.body
        token = await self._accounts.change_password(
            caller(req), user_id, body["password"], body.get("currentPassword"), req.remote_addr
        )
        resp.media = _password_set(token)


class MeResource:
    """``/api/users/me``: one's own user object and profile."""

    auth_roles = {"GET": "user", "PUT": "user"}

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @operation("Your user", "users", responses={200: UserSchema})
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = _user.dump((await self._accounts.store.require(caller(req))).public())

    @operation("Update your names and time zone", "users", responses={200: UserSchema})
    @load_body(OwnProfileSchema())
    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        fields = _profile_fields(req.context.body)
        if fields:
            await self._accounts.store.update(caller(req), fields)
        resp.media = _user.dump((await self._accounts.store.require(caller(req))).public())


class MyPasswordResource:
    """``PUT /api/users/me/password``."""

    auth_roles = {"PUT": "user"}
    auth_login_only = {"PUT"}

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @operation(
        "Change your password",
        "users",
        responses={200: TokenOkSchema},
        description=(
            "Needs the current password (401 if wrong); voids every earlier token, the one "
            "used included, and the user's API keys, and answers a fresh token. " + _LOGIN_ONLY
        ),
    )
    @load_body(OwnPasswordSchema())
    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = req.context.body
        # Every earlier token is void now; the answer carries a fresh one.
        token = await self._accounts.change_password(
            caller(req), caller(req), body["password"], body.get("currentPassword"), req.remote_addr
        )
        resp.media = {"ok": True, "token": token}


class KeysResource:
    """``/api/keys``: the caller's API keys (login token only)."""

    auth_roles = {"GET": "user", "POST": "user"}
    # A key must not mint or list keys: a leaked one could otherwise live on.
    auth_login_only = {"GET", "POST"}

    def __init__(self, keys: ApiKeyStore) -> None:
        self._keys = keys

    @operation(
        "Your API keys (never their secrets)",
        "keys",
        responses={200: ApiKeySchema(many=True)},
        description=_LOGIN_ONLY,
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = _keys.dump([k.public() for k in await self._keys.list(caller(req))])

    @operation(
        "Make an API key: its secret is shown this once",
        "keys",
        responses={201: ApiKeyCreatedSchema},
        description=(
            "The key (a UUID v4 string) works as `Authorization: Bearer <key>` wherever "
            "your login token does, except on the key routes and password changes. "
            "409 when you hold the most keys allowed. " + _LOGIN_ONLY
        ),
    )
    @load_body(ApiKeyCreateSchema())
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        key, secret = await self._keys.create(caller(req), req.context.body["name"].strip())
        public = key.public()
        resp.status = falcon.HTTP_201
        resp.media = _key_created.dump({**public, "key": secret})


class KeyResource:
    """``DELETE /api/keys/{key_uuid}``: revoke one of the caller's keys."""

    auth_roles = {"DELETE": "user"}
    auth_login_only = {"DELETE"}

    def __init__(self, keys: ApiKeyStore) -> None:
        self._keys = keys

    @operation(
        "Revoke one of your API keys (at once, on every worker)",
        "keys",
        responses={200: ApiKeySchema},
        description="404 for a key that is not yours. " + _LOGIN_ONLY,
    )
    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, key_uuid: str
    ) -> None:
        resp.media = _key.dump((await self._keys.revoke(caller(req), key_uuid)).public())


class UserKeysResource:
    """``GET /api/users/{id}/keys``: any user's API keys (admin, login token only)."""

    auth_roles = {"GET": "admin"}
    auth_login_only = {"GET"}

    def __init__(self, accounts: Accounts, keys: ApiKeyStore) -> None:
        self._accounts = accounts
        self._keys = keys

    @operation(
        "A user's API keys (never their secrets)",
        "keys",
        responses={200: ApiKeySchema(many=True)},
        description=_LOGIN_ONLY,
    )
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, user_id: str
    ) -> None:
        await self._accounts.store.require(user_id)
        resp.media = _keys.dump([k.public() for k in await self._keys.list(user_id)])


class UserKeyResource:
    """``DELETE /api/users/{id}/keys/{key_uuid}``: revoke any user's key (admin)."""

    auth_roles = {"DELETE": "admin"}
    auth_login_only = {"DELETE"}

    def __init__(self, keys: ApiKeyStore) -> None:
        self._keys = keys

    @operation(
        "Revoke a user's API key",
        "keys",
        responses={200: ApiKeySchema},
        description=_LOGIN_ONLY,
    )
    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, user_id: str, key_uuid: str
    ) -> None:
        resp.media = _key.dump((await self._keys.revoke(user_id, key_uuid)).public())


class ProjectsResource:
    """``/api/projects``: the caller's projects."""

    auth_roles = {"GET": "user", "POST": "user"}

    def __init__(self, store: ProjectStore) -> None:
        self._store = store

    @operation("Your projects", "projects", responses={200: ProjectSchema(many=True)})
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        projects = await self._store.projects(caller(req))
        ordered = sorted(projects.values(), key=lambda p: (p["name"].casefold(), p["uuid"]))
        resp.media = _projects.dump([public_project(p, caller(req)) for p in ordered])

    @operation("Create a project", "projects", responses={201: OkSchema})
    @load_body(ProjectInSchema())
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        project = await self._store.create_project(caller(req), req.context.body)
        resp.status = falcon.HTTP_201
        resp.set_header("Location", f"/api/projects/{project['uuid']}")
        resp.media = OK


class ProjectResource:
    """``/api/projects/{id}``."""

    auth_roles = {"GET": "user", "PUT": "user", "DELETE": "user"}

    def __init__(self, store: ProjectStore) -> None:
        self._store = store

    @operation("A project", "projects", responses={200: ProjectSchema})
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, project_id: str
    ) -> None:
        project = await self._store.project(caller(req), project_id)
        resp.media = _project.dump(public_project(project, caller(req)))

    @operation("Change a project", "projects", responses={200: OkSchema})
    @load_body(ProjectInSchema(partial=True))
    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, project_id: str
    ) -> None:
        changes = dict(req.context.body)
        if changes.pop("uuid", project_id) != project_id:
            raise Invalid("uuid differs from the one in the path", {"uuid": ["Mismatch."]})
        await self._store.update_project(caller(req), project_id, changes)
        resp.media = OK

    @operation("Delete a project", "projects", responses={200: ProjectSchema})
    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, project_id: str
    ) -> None:
        old = await self._store.delete_project(caller(req), project_id)
        resp.media = _project.dump(public_project(old, caller(req)))


class TasksResource:
    """``/api/tasks``."""

    auth_roles = {"GET": "user", "POST": "user"}

    def __init__(self, store: ProjectStore) -> None:
        self._store = store

    @operation("Your tasks", "tasks", responses={200: TaskSchema(many=True)})
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        tasks = await self._store.tasks(caller(req))
        ordered = sorted(tasks.values(), key=lambda t: (t["title"].casefold(), t["uuid"]))
        resp.media = _tasks.dump(ordered)

    @operation("Create a task", "tasks", responses={201: TaskSchema})
    @load_body(TaskInSchema())
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        task = await self._store.save_task(caller(req), req.context.body)
        resp.status = falcon.HTTP_201
        resp.set_header("Location", f"/api/tasks/{task['uuid']}")
        resp.media = _task.dump(task)


class TaskResource:
    """``/api/tasks/{id}``."""

    auth_roles = {"GET": "user", "PUT": "user", "DELETE": "user"}

    def __init__(self, store: ProjectStore) -> None:
        self._store = store

    @operation("A task", "tasks", responses={200: TaskSchema})
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, task_id: str
    ) -> None:
        resp.media = _task.dump(await self._store.task(caller(req), task_id))

    @operation("Change a task", "tasks", responses={200: TaskSchema})
    @load_body(TaskInSchema(partial=True))
    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, task_id: str
    ) -> None:
        changes = dict(req.context.body)
        if changes.pop("uuid", task_id) != task_id:
            raise Invalid("uuid differs from the one in the path", {"uuid": ["Mismatch."]})
        resp.media = _task.dump(await self._store.save_task(caller(req), changes, task_id))

    @operation("Delete a task", "tasks", responses={200: TaskSchema})
    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, task_id: str
    ) -> None:
        resp.media = _task.dump(await self._store.delete_task(caller(req), task_id))

"""Resources of the ScreenAware identity routes under ``/api``.

Each resource declares ``auth_roles``; :class:`screenaware.web.auth.AuthMiddleware`
enforces them, so a responder finds the caller in ``req.context.principal``.
"""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi

from schemas.identity import (
    IntegrationSchema,
    LoginSchema,
    OkSchema,
    OwnPasswordSchema,
    OwnProfileSchema,
    PasswordSchema,
    ProjectInSchema,
    ProjectSchema,
    TaskInSchema,
    TaskSchema,
    TokenOkSchema,
    TokenSchema,
    UserCreateSchema,
    UserSchema,
    UserUpdateSchema,
)
from screenaware.errors import Invalid, NotFound
from screenaware.identity.accounts import Accounts
from screenaware.identity.projects import ProjectStore, public_project
from screenaware.web.auth import caller
from screenaware.web.openapi import operation
from screenaware.web.validation import load_body

OK = {"ok": True}

_user = UserSchema()
_users = UserSchema(many=True)
_project = ProjectSchema()
_projects = ProjectSchema(many=True)
_task = TaskSchema()
_tasks = TaskSchema(many=True)

# The documented catalogue. No outbound network exists here, so none can be
# connected yet; a real integration later fills in its status per user.
INTEGRATIONS = {
    "googleCalendar": {
        "name": "Google Calendar",
        "description": "Include time spent in meetings or in transit to your activity data.",
    },
    "redmine": {
        "name": "Redmine",
        "description": (
            "Relate spent activity time to tasks/projects you manage inside the Redmine app"
        ),
    },
}


def _profile_fields(body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {k: body[k] for k in ("nameFirst", "nameLast") if k in body}
    if "timezone" in body:
        fields["timezone"] = body["timezone"] or ""
    return fields


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


class UsersResource:
    """``/api/users``: list, create, update by email (admin)."""

    auth_roles = {"GET": "admin", "POST": "admin", "PUT": "admin"}

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

    @operation("Update a user found by email", "users", responses={200: OkSchema})
    @load_body(UserUpdateSchema())
    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = req.context.body
        user = await self._accounts.store.by_email(body["email"])
        if user is None:
            raise NotFound("User not found")
        fields = _profile_fields(body)
        if fields:
            await self._accounts.store.update(user.uuid, fields)
        if "password" in body:
            await self._accounts.set_password(user.uuid, body["password"])
        resp.media = OK


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

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @operation("Set a user's password", "users", responses={200: OkSchema})
    @load_body(PasswordSchema())
    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, user_id: str
    ) -> None:
        await self._accounts.set_password(user_id, req.context.body["password"])
        resp.media = OK


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

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @operation("Change your password", "users", responses={200: TokenOkSchema})
    @load_body(OwnPasswordSchema())
    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = req.context.body
        await self._accounts.change_own_password(caller(req), body["oldPassword"], body["password"])
        # Every earlier token is void now; hand the caller a fresh one.
        user = await self._accounts.store.require(caller(req))
        resp.media = {"ok": True, "token": await self._accounts.token_for(user)}


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


class IntegrationsResource:
    """``GET /api/integrations``."""

    auth_roles = {"GET": "user"}
    _schema = IntegrationSchema()

    @operation(
        "Third-party integrations",
        "users",
        responses={200: {"type": "object", "additionalProperties": IntegrationSchema}},
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {
            key: self._schema.dump(
                {"key": key, **info, "status": "not connected", "connected": False}
            )
            for key, info in INTEGRATIONS.items()
        }

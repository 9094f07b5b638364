"""Identity: users, login and roles, API keys, projects and tasks.

Other features use only what this module exports: the project store (projects
and their rules are read by attribution and corrections) and the key store (the
export lists the key names).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from screenaware.config import Config
from screenaware.identity.accounts import Accounts, make_accounts
from screenaware.identity.keys import ApiKeyStore, KeyAuthenticator
from screenaware.identity.projects import ProjectStore, projects_key, public_project
from screenaware.identity.resources import (
    KeyResource,
    KeysResource,
    LoginResource,
    MeResource,
    MyPasswordResource,
    ProjectResource,
    ProjectsResource,
    SessionResource,
    TaskResource,
    TasksResource,
    UserKeyResource,
    UserKeysResource,
    UserPasswordResource,
    UserResource,
    UsersResource,
)
from screenaware.identity.sessions import SignedOutSessions
from screenaware.storage.backends import Backends
from screenaware.web.app import App
from screenaware.web.auth import AuthMiddleware

__all__ = [
    "Accounts",
    "ApiKeyStore",
    "Identity",
    "ProjectStore",
    "make_accounts",
    "mount",
    "projects_key",
    "public_project",
]


@dataclass(frozen=True)
class Identity:
    """What the identity feature offers the others."""

    accounts: Accounts
    projects: ProjectStore
    keys: ApiKeyStore


def mount(app: App, config: Config, backends: Backends, clock: Callable[[], float]) -> Identity:
    """Add the identity routes and the bearer-token middleware to ``app``."""
    accounts = make_accounts(config, backends.get_redis, clock)
    projects = ProjectStore(backends.get_redis)
    keys = ApiKeyStore(
        backends.get_redis,
        clock,
        max_per_user=config.api_keys_per_user,
        touch_interval=config.api_key_touch_interval,
    )

    async def bootstrap_admin() -> None:
        await accounts.bootstrap_admin(config.admin_email, config.admin_password)

    backends.on_startup(bootstrap_admin)
    signed_out = SignedOutSessions(backends.get_redis, config.jwt_ttl)
    app.add_middleware(
        AuthMiddleware(
            accounts.tokens,
            accounts.principal,
            KeyAuthenticator(keys).principal,
            signed_out.contains,
        )
    )
    app.add_route("/api/auth/local", LoginResource(accounts))
    app.add_route("/api/auth/session", SessionResource(accounts, signed_out, config.jwt_ttl))
    app.add_route("/api/users", UsersResource(accounts))
    app.add_route("/api/users/me", MeResource(accounts))
    app.add_route("/api/users/me/password", MyPasswordResource(accounts))
    app.add_route("/api/users/{user_id}", UserResource(accounts))
    app.add_route("/api/users/{user_id}/password", UserPasswordResource(accounts))
    app.add_route("/api/users/{user_id}/keys", UserKeysResource(accounts, keys))
    app.add_route("/api/users/{user_id}/keys/{key_uuid}", UserKeyResource(keys))
    app.add_route("/api/keys", KeysResource(keys))
    app.add_route("/api/keys/{key_uuid}", KeyResource(keys))
    app.add_route("/api/projects", ProjectsResource(projects))
    app.add_route("/api/projects/{project_id}", ProjectResource(projects))
    app.add_route("/api/tasks", TasksResource(projects))
    app.add_route("/api/tasks/{task_id}", TaskResource(projects))
    return Identity(accounts, projects, keys)

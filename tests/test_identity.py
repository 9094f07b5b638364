"""Login, users, roles, projects, tasks and integrations against real Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
import redis
from falcon import testing

from screenaware.app import create_app
from screenaware.config import Config
from screenaware.errors import AuthFailed
from screenaware.identity.accounts import JWT_SECRET_KEY, UserStore, user_key
from screenaware.identity.credentials import TokenIssuer
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, FakeClock, bearer
from tests.rediscluster import async_client
from tests.service import run_service

# --- authentication ------------------------------------------------------


async def test_login_gives_an_hs256_token_naming_the_user(api: Api, clock: FakeClock) -> None:
    headers = await api.new_user("ann@example.org")
    me = (await api.me(headers)).json
    result = await api.login("ANN@example.org", "user-password-1")  # any case
    assert result.status_code == 200
    token = result.json["token"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "HS256"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == me["uuid"]
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] - claims["iat"] == 3600


async def test_login_accepts_form_encoded_credentials(api: Api) -> None:
    await api.new_user("form@example.org")
    result = await api.client.simulate_post(
        "/api/auth/local",
        body="email=form%40example.org&password=user-password-1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert result.status_code == 200
    assert (await api.me(bearer(result.json["token"]))).json["email"] == "form@example.org"


async def test_wrong_email_and_wrong_password_look_the_same(api: Api) -> None:
    await api.new_user("bob@example.org")
    unknown = await api.login("nobody@example.org", "user-password-1")
    wrong = await api.login("bob@example.org", "not-the-password")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json == wrong.json == {"message": "Wrong email or password"}


async def test_login_validation(api: Api) -> None:
    result = await api.client.simulate_post("/api/auth/local", json={"email": "x@y.z"})
    assert result.status_code == 400
    assert "password" in result.json["errors"]


async def test_failed_logins_are_rate_limited_per_email(api: Api) -> None:
    await api.new_user("carol@example.org")
    for _ in range(3):
        assert (await api.login("carol@example.org", "wrong-password")).status_code == 401
    limited = await api.login("carol@example.org", "user-password-1")  # even the right one
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert limited.json["message"]
    # Other emails are not blocked by it.
    assert (await api.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


async def test_failed_logins_are_rate_limited_per_address(api: Api) -> None:
    for i in range(5):
        assert (await api.login(f"guess{i}@example.org", "wrong-password")).status_code == 401
    assert (await api.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 429


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Token abc",
    ],
)
async def test_missing_or_malformed_tokens_are_401(api: Api, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    result = await api.client.simulate_get("/api/users/me", headers=headers)
    assert result.status_code == 401
    assert result.json["message"]


async def test_forged_tokens_are_401(api: Api, clock: FakeClock) -> None:
    headers = await api.new_user("dave@example.org")
    me = (await api.me(headers)).json
    now = int(clock.now)
    claims = {"sub": me["uuid"], "iat": now, "exp": now + 60, "ver": 0}
    wrong_key = jwt.encode(claims, "some-other-key-of-sufficient-length-123", algorithm="HS256")
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for token in (wrong_key, f"{header}.{body}.", f"{header}.{body}"):
        assert (await api.me(bearer(token))).status_code == 401, token


async def test_expired_tokens_are_401(api: Api, clock: FakeClock) -> None:
    headers = await api.new_user("erin@example.org")
    assert (await api.me(headers)).status_code == 200
    clock.advance(3601)
    result = await api.me(headers)
    assert result.status_code == 401
    assert "expired" in result.json["message"].lower()


async def test_deleted_users_tokens_are_401(api: Api) -> None:
    headers = await api.new_user("frank@example.org")
    user_id = (await api.me(headers)).json["_id"]
    deleted = await api.client.simulate_delete(f"/api/users/{user_id}", headers=api.admin)
    assert deleted.status_code == 200
    assert deleted.json["email"] == "frank@example.org"
    assert "password" not in deleted.json
    assert (await api.me(headers)).status_code == 401
    assert (await api.login("frank@example.org", "user-password-1")).status_code == 401


async def test_a_role_change_takes_effect_at_once(api: Api) -> None:
    headers = await api.new_user("hank@example.org")
    assert (await api.client.simulate_get("/api/users", headers=headers)).status_code == 403
    for role, status in (("admin", 200), ("user", 403)):
        put = await api.client.simulate_put(
            "/api/users", json={"email": "hank@example.org", "role": role}, headers=api.admin
        )
        assert put.status_code == 200
        # The same token: the role is read per request, not from the token.
        assert (await api.client.simulate_get("/api/users", headers=headers)).status_code == status
        assert (await api.me(headers)).json["role"]["title"] == role
    bad = await api.client.simulate_put(
        "/api/users", json={"email": "hank@example.org", "role": "root"}, headers=api.admin
    )
    assert bad.status_code == 400 and "role" in bad.json["errors"]


async def test_wrong_role_is_403(api: Api) -> None:
    headers = await api.new_user("gina@example.org")
    for method, path in (("GET", "/api/users"), ("POST", "/api/users"), ("PUT", "/api/users")):
        result = await api.client.simulate_request(method, path, headers=headers, json={})
        assert result.status_code == 403, path


async def test_passwords_are_scrypt_hashed_and_never_returned(
    api: Api, redis_client: redis.Redis
) -> None:
    headers = await api.new_user("hank@example.org", "correct horse battery")
    me = (await api.me(headers)).json
    stored = redis_client.hget(user_key(me["uuid"]), "password")
    assert isinstance(stored, str) and stored.startswith("scrypt$")
    assert "correct horse battery" not in stored
    users = (await api.client.simulate_get("/api/users", headers=api.admin)).text
    assert "scrypt" not in users and "password" not in users


async def test_passwords_need_eight_characters(api: Api) -> None:
    result = await api.client.simulate_post(
        "/api/users", json={"email": "short@example.org", "password": "1234567"}, headers=api.admin
    )
    assert result.status_code == 400
    assert "password" in result.json["errors"]


async def test_admin_bootstrap_is_idempotent(identity_config: Config, clock: FakeClock) -> None:
    # A second start (another worker, a restart) neither fails nor duplicates.
    for _ in range(2):
        async with testing.ASGIConductor(create_app(identity_config, clock=clock)) as client:
            result = await client.simulate_post(
                "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            assert result.status_code == 200
            users = await client.simulate_get("/api/users", headers=bearer(result.json["token"]))
            assert [u["role"] for u in users.json] == [{"bitMask": 4, "title": "admin"}]


# --- users ---------------------------------------------------------------


async def test_user_objects_have_the_documented_shape(api: Api) -> None:
    headers = await api.new_user(
        "ivy@example.org", nameFirst="Ivy", nameLast="Lee", timezone="Europe/Vienna"
    )
    me = (await api.me(headers)).json
    assert me["_id"] == me["uuid"]
    uuid.UUID(me["uuid"])
    assert me["email"] == "ivy@example.org"
    assert (me["nameFirst"], me["nameLast"], me["timezone"]) == ("Ivy", "Lee", "Europe/Vienna")
    assert me["role"] == {"bitMask": 2, "title": "user"}
    assert me["integrations"] == {"googleCalendar": {"calendars": []}, "redmine": {"projects": []}}
    one = await api.client.simulate_get(f"/api/users/{me['_id']}", headers=api.admin)
    assert one.json == me
    listed = (await api.client.simulate_get("/api/users", headers=api.admin)).json
    assert me in listed and len(listed) == 2


async def test_emails_are_unique_case_insensitively(api: Api) -> None:
    await api.new_user("jack@example.org")
    result = await api.client.simulate_post(
        "/api/users", json={"email": "JACK@example.org", "password": "12345678"}, headers=api.admin
    )
    assert result.status_code == 409
    result = await api.client.simulate_post(
        "/api/users", json={"email": "not-an-email", "password": "12345678"}, headers=api.admin
    )
    assert result.status_code == 400


async def test_unknown_users_are_404(api: Api) -> None:
    missing = str(uuid.uuid4())
    for method in ("GET", "DELETE"):
        result = await api.client.simulate_request(
            method, f"/api/users/{missing}", headers=api.admin
        )
        assert result.status_code == 404
    result = await api.client.simulate_put(
        f"/api/users/{missing}/password", json={"password": "12345678"}, headers=api.admin
    )
    assert result.status_code == 404
    result = await api.client.simulate_put(
        "/api/users", json={"email": "ghost@example.org", "nameFirst": "G"}, headers=api.admin
    )
    assert result.status_code == 404


async def test_admin_updates_users_by_email_and_sets_passwords(api: Api) -> None:
    headers = await api.new_user("kim@example.org")
    result = await api.client.simulate_put(
        "/api/users",
        json={"email": "KIM@example.org", "nameFirst": "Kim", "password": "new-password-1"},
        headers=api.admin,
    )
    assert result.status_code == 200 and result.json == {"ok": True}
    assert (await api.me(headers)).status_code == 401  # the password change voids old tokens
    login = await api.login("kim@example.org", "new-password-1")
    assert (await api.me(bearer(login.json["token"]))).json["nameFirst"] == "Kim"
    user_id = (await api.me(bearer(login.json["token"]))).json["uuid"]
    result = await api.client.simulate_put(
        f"/api/users/{user_id}/password", json={"password": "third-password"}, headers=api.admin
    )
    assert result.json == {"ok": True}
    assert (await api.login("kim@example.org", "new-password-1")).status_code == 401
    assert (await api.login("kim@example.org", "third-password")).status_code == 200


async def test_users_edit_their_own_profile_and_password(api: Api) -> None:
    headers = await api.new_user("lou@example.org")
    result = await api.client.simulate_put(
        "/api/users/me", json={"nameLast": "Reed", "timezone": "America/New_York"}, headers=headers
    )
    assert result.status_code == 200
    assert (result.json["nameLast"], result.json["timezone"]) == ("Reed", "America/New_York")
    bad_zone = await api.client.simulate_put(
        "/api/users/me", json={"timezone": "Moon/Base"}, headers=headers
    )
    assert bad_zone.status_code == 400 and "timezone" in bad_zone.json["errors"]
    wrong_old = await api.client.simulate_put(
        "/api/users/me/password",
        json={"oldPassword": "nope-nope", "password": "brand-new-pass"},
        headers=headers,
    )
    assert wrong_old.status_code == 401
    assert wrong_old.json == {"message": "The current password is wrong"}
    changed = await api.client.simulate_put(
        "/api/users/me/password",
        json={"oldPassword": "user-password-1", "password": "brand-new-pass"},
        headers=headers,
    )
    assert changed.status_code == 200
    assert (await api.me(headers)).status_code == 401
    assert (await api.me(bearer(changed.json["token"]))).status_code == 200


# --- a token alone does not change its owner's password -------------------


async def admin_uuid(api: Api) -> str:
    return str((await api.me(api.admin)).json["uuid"])


@pytest.mark.parametrize("route", ["by-id", "by-email", "me"])
async def test_changing_ones_own_password_needs_the_current_one(api: Api, route: str) -> None:
    me = await admin_uuid(api)

    async def change(**body: str) -> testing.Result:
        body = {"password": "stolen-session-1", **body}
        if route == "by-id":
            path = f"/api/users/{me}/password"
        elif route == "by-email":
            path, body = "/api/users", {"email": ADMIN_EMAIL, "nameFirst": "Mallory", **body}
        else:
            path = "/api/users/me/password"
        return await api.client.simulate_put(path, json=body, headers=api.admin)

    missing = await change()
    # Needed only for one's own password (and under two names), which the schema
    # cannot say: the request fits the document, its content is refused (422).
    assert missing.status_code == 422, missing.text
    assert missing.json["message"]
    assert missing.json["errors"]["currentPassword"] == ["Missing data for required field."]
    wrong = await change(currentPassword="not-my-password")
    assert wrong.status_code == 401
    assert wrong.json == {"message": "The current password is wrong"}
    # Nothing changed: the names, the token, the password (it still logs in).
    assert (await api.me(api.admin)).json["nameFirst"] == ""
    other_session = bearer((await api.login(ADMIN_EMAIL, ADMIN_PASSWORD)).json["token"])

    done = await change(currentPassword=ADMIN_PASSWORD)
    assert done.status_code == 200, done.text
    assert done.json["ok"] is True
    fresh = bearer(done.json["token"])
    # Every earlier token of the user is void, the one used (a thief's copy) included;
    # the fresh one works.
    assert (await api.me(api.admin)).status_code == 401
    assert (await api.me(other_session)).status_code == 401
    assert (await api.me(fresh)).status_code == 200
    assert (await api.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 401
    assert (await api.login(ADMIN_EMAIL, "stolen-session-1")).status_code == 200
    if route == "by-email":
        assert (await api.me(fresh)).json["nameFirst"] == "Mallory"


async def test_old_password_is_still_accepted_as_the_current_ones_name(api: Api) -> None:
    me = await admin_uuid(api)
    result = await api.client.simulate_put(
        f"/api/users/{me}/password",
        json={"oldPassword": ADMIN_PASSWORD, "password": "renamed-field-1"},
        headers=api.admin,
    )
    assert result.status_code == 200 and "token" in result.json


async def test_an_admin_sets_another_users_password_without_theirs(api: Api) -> None:
    user = await api.new_user("nat@example.org")
    second = bearer((await api.login("nat@example.org", "user-password-1")).json["token"])
    user_id = (await api.me(user)).json["uuid"]
    result = await api.client.simulate_put(
        f"/api/users/{user_id}/password", json={"password": "reset-by-admin"}, headers=api.admin
    )
    assert result.status_code == 200 and result.json == {"ok": True}
    # All of that user's tokens are void; the admin's own token is untouched.
    assert (await api.me(user)).status_code == 401
    assert (await api.me(second)).status_code == 401
    assert (await api.me(api.admin)).status_code == 200
    by_email = await api.client.simulate_put(
        "/api/users",
        json={"email": "nat@example.org", "password": "reset-again-1"},
        headers=api.admin,
    )
    assert by_email.status_code == 200 and by_email.json == {"ok": True}
    assert (await api.login("nat@example.org", "reset-by-admin")).status_code == 401
    assert (await api.login("nat@example.org", "reset-again-1")).status_code == 200


async def test_admins_cannot_delete_themselves(api: Api) -> None:
    me = (await api.me(api.admin)).json
    result = await api.client.simulate_delete(f"/api/users/{me['uuid']}", headers=api.admin)
    assert result.status_code == 422


# --- projects ------------------------------------------------------------


async def create_project(api: Api, headers: dict[str, str], **body: object) -> str:
    result = await api.client.simulate_post("/api/projects", json=body, headers=headers)
    assert result.status_code == 201, result.text
    assert result.json == {"ok": True}
    return result.headers["location"].rsplit("/", 1)[1]


async def test_project_crud(api: Api) -> None:
    headers = await api.new_user("mia@example.org")
    me = (await api.me(headers)).json
    given = str(uuid.uuid4())
    parent = await create_project(api, headers, name="Clients")
    child = await create_project(
        api,
        headers,
        uuid=given,
        name="ScreenAware",
        parentProject=parent,
        localPaths=["c:/myprojects/screenaware", "c:/myprojects/screenaware"],
        contactEmails=["test@someemail.com", "TEST@someemail.com"],
        keywords=["ScreenAware", "influxdb", "screenaware", " InfluxDB "],
    )
    assert child == given
    project = (await api.client.simulate_get(f"/api/projects/{child}", headers=headers)).json
    assert project == {
        "uuid": given,
        "id": given,
        "name": "ScreenAware",
        "userUuid": me["uuid"],
        "parentProject": parent,
        "localPaths": ["c:/myprojects/screenaware"],
        "contactEmails": ["test@someemail.com"],
        "keywords": ["ScreenAware", "influxdb"],
    }
    listed = (await api.client.simulate_get("/api/projects", headers=headers)).json
    assert [p["name"] for p in listed] == ["Clients", "ScreenAware"]
    updated = await api.client.simulate_put(
        f"/api/projects/{child}", json={"name": "SA", "keywords": ["sensor"]}, headers=headers
    )
    assert updated.status_code == 200 and updated.json == {"ok": True}
    project = (await api.client.simulate_get(f"/api/projects/{child}", headers=headers)).json
    assert (project["name"], project["keywords"], project["parentProject"]) == (
        "SA",
        ["sensor"],
        parent,
    )
    deleted = await api.client.simulate_delete(f"/api/projects/{child}", headers=headers)
    assert deleted.status_code == 200 and deleted.json["name"] == "SA"
    assert (
        await api.client.simulate_get(f"/api/projects/{child}", headers=headers)
    ).status_code == 404


async def test_project_validation(api: Api) -> None:
    headers = await api.new_user("ned@example.org")
    for body, field in (
        ({}, "name"),
        ({"name": " "}, "name"),
        ({"name": "x", "uuid": "not-a-uuid"}, "uuid"),
        ({"name": "x", "contactEmails": ["nope"]}, "contactEmails"),
        ({"name": "x", "keywords": [""]}, "keywords"),
        ({"name": "x", "keywords": "one"}, "keywords"),
        ({"name": "x", "parentProject": str(uuid.uuid4())}, "parentProject"),
    ):
        result = await api.client.simulate_post("/api/projects", json=body, headers=headers)
        # An unknown parent fits the document (a uuid): 422, not 400.
        assert result.status_code == (422 if field == "parentProject" else 400), body
        assert field in result.json["errors"], result.json
    assert (await api.client.simulate_get("/api/projects", headers=headers)).json == []
    existing = await create_project(api, headers, name="one")
    again = await api.client.simulate_post(
        "/api/projects", json={"name": "two", "uuid": existing}, headers=headers
    )
    assert again.status_code == 409


async def test_project_cycles_are_refused(api: Api) -> None:
    headers = await api.new_user("ola@example.org")
    a = await create_project(api, headers, name="a")
    b = await create_project(api, headers, name="b", parentProject=a)
    c = await create_project(api, headers, name="c", parentProject=b)
    for project, parent in ((a, c), (a, a), (b, c)):
        result = await api.client.simulate_put(
            f"/api/projects/{project}", json={"parentProject": parent}, headers=headers
        )
        assert result.status_code == 422, (project, parent)
        assert "parentProject" in result.json["errors"]
    # Detaching is fine.
    result = await api.client.simulate_put(
        f"/api/projects/{c}", json={"parentProject": None}, headers=headers
    )
    assert result.status_code == 200


async def test_deleting_a_parent_reparents_children_and_moves_tasks(api: Api) -> None:
    headers = await api.new_user("pia@example.org")
    top = await create_project(api, headers, name="top")
    middle = await create_project(api, headers, name="middle", parentProject=top)
    leaf = await create_project(api, headers, name="leaf", parentProject=middle)
    task = await api.client.simulate_post(
        "/api/tasks", json={"title": "write", "projectUuid": middle}, headers=headers
    )
    assert task.status_code == 201
    await api.client.simulate_delete(f"/api/projects/{middle}", headers=headers)
    project = (await api.client.simulate_get(f"/api/projects/{leaf}", headers=headers)).json
    assert project["parentProject"] == top
    moved = await api.client.simulate_get(f"/api/tasks/{task.json['uuid']}", headers=headers)
    assert moved.json["projectUuid"] == top
    # A top-level project takes its tasks with it.
    await api.client.simulate_delete(f"/api/projects/{top}", headers=headers)
    assert (await api.client.simulate_get("/api/tasks", headers=headers)).json == []
    project = (await api.client.simulate_get(f"/api/projects/{leaf}", headers=headers)).json
    assert project["parentProject"] is None


async def test_other_users_projects_and_tasks_do_not_exist_for_them(api: Api) -> None:
    alice = await api.new_user("alice@example.org")
    mallory = await api.new_user("mallory@example.org")
    project = await create_project(api, alice, name="secret")
    task = (
        await api.client.simulate_post(
            "/api/tasks", json={"title": "t", "projectUuid": project}, headers=alice
        )
    ).json["uuid"]
    for method, path, body in (
        ("GET", f"/api/projects/{project}", None),
        ("PUT", f"/api/projects/{project}", {"name": "mine now"}),
        ("DELETE", f"/api/projects/{project}", None),
        ("GET", f"/api/tasks/{task}", None),
        ("PUT", f"/api/tasks/{task}", {"title": "mine"}),
        ("DELETE", f"/api/tasks/{task}", None),
    ):
        result = await api.client.simulate_request(method, path, json=body, headers=mallory)
        assert result.status_code == 404, (method, path)
    for body in ({"name": "child", "parentProject": project},):
        result = await api.client.simulate_post("/api/projects", json=body, headers=mallory)
        assert result.status_code == 422
    result = await api.client.simulate_post(
        "/api/tasks", json={"title": "x", "projectUuid": project}, headers=mallory
    )
    assert result.status_code == 422
    assert (await api.client.simulate_get("/api/projects", headers=mallory)).json == []
    assert (await api.client.simulate_get("/api/tasks", headers=mallory)).json == []
    # Alice's data is untouched.
    mine = (await api.client.simulate_get(f"/api/projects/{project}", headers=alice)).json
    assert mine["name"] == "secret"


# --- tasks and integrations ---------------------------------------------


async def test_task_crud(api: Api) -> None:
    headers = await api.new_user("quinn@example.org")
    me = (await api.me(headers)).json
    one = await create_project(api, headers, name="one")
    two = await create_project(api, headers, name="two")
    created = await api.client.simulate_post(
        "/api/tasks", json={"title": "Smile at a stranger", "projectUuid": one}, headers=headers
    )
    assert created.status_code == 201
    task = created.json
    assert task == {
        "uuid": task["uuid"],
        "title": "Smile at a stranger",
        "projectUuid": one,
        "userUuid": me["uuid"],
    }
    moved = await api.client.simulate_put(
        f"/api/tasks/{task['uuid']}", json={"projectUuid": two}, headers=headers
    )
    assert moved.json["projectUuid"] == two and moved.json["title"] == "Smile at a stranger"
    assert (await api.client.simulate_get("/api/tasks", headers=headers)).json == [moved.json]
    missing = await api.client.simulate_post("/api/tasks", json={"title": "x"}, headers=headers)
    assert missing.status_code == 400 and "projectUuid" in missing.json["errors"]
    gone = await api.client.simulate_delete(f"/api/tasks/{task['uuid']}", headers=headers)
    assert gone.status_code == 200
    assert (
        await api.client.simulate_get(f"/api/tasks/{task['uuid']}", headers=headers)
    ).status_code == 404


async def test_integrations(api: Api) -> None:
    headers = await api.new_user("rita@example.org")
    result = await api.client.simulate_get("/api/integrations", headers=headers)
    assert set(result.json) == {"googleCalendar", "redmine"}
    for key, item in result.json.items():
        assert item["key"] == key
        assert (item["status"], item["connected"]) == ("not connected", False)
        assert item["name"] and item["description"]
    assert (await api.client.simulate_get("/api/integrations")).status_code == 401


# --- the role matrix -----------------------------------------------------

ROUTES = [
    ("GET", "/api/users", "admin"),
    ("POST", "/api/users", "admin"),
    ("PUT", "/api/users", "admin"),
    ("GET", "/api/users/{other}", "admin"),
    ("DELETE", "/api/users/{other}", "admin"),
    ("PUT", "/api/users/{other}/password", "admin"),
    ("GET", "/api/users/me", "user"),
    ("PUT", "/api/users/me", "user"),
    ("PUT", "/api/users/me/password", "user"),
    ("GET", "/api/projects", "user"),
    ("POST", "/api/projects", "user"),
    ("GET", "/api/projects/{project}", "user"),
    ("PUT", "/api/projects/{project}", "user"),
    ("DELETE", "/api/projects/{project}", "user"),
    ("GET", "/api/tasks", "user"),
    ("POST", "/api/tasks", "user"),
    ("GET", "/api/tasks/{task}", "user"),
    ("GET", "/api/integrations", "user"),
]


@pytest.mark.parametrize(("method", "path", "role"), ROUTES)
async def test_role_matrix(api: Api, method: str, path: str, role: str) -> None:
    other = (await api.me(await api.new_user("other@example.org"))).json["uuid"]
    user = await api.new_user("plain@example.org")
    project = await create_project(api, user, name="p")
    task = (
        await api.client.simulate_post(
            "/api/tasks", json={"title": "t", "projectUuid": project}, headers=user
        )
    ).json["uuid"]
    url = path.format(other=other, project=project, task=task)
    anonymous = await api.client.simulate_request(method, url, json={})
    assert anonymous.status_code == 401
    as_user = await api.client.simulate_request(method, url, json={}, headers=user)
    if role == "admin":
        assert as_user.status_code == 403
    else:
        assert as_user.status_code not in (401, 403)
    as_admin = await api.client.simulate_request(method, url, json={}, headers=api.admin)
    assert as_admin.status_code not in (401, 403)


async def test_entities_survive_a_redis_crash(api: Api, restart_redis: object) -> None:
    headers = await api.new_user("sam@example.org")
    project = await create_project(api, headers, name="durable")
    restart_redis()  # type: ignore[operator]
    login = await api.login("sam@example.org", "user-password-1")
    assert login.status_code == 200
    again = bearer(login.json["token"])
    got = await api.client.simulate_get(f"/api/projects/{project}", headers=again)
    assert got.json["name"] == "durable"
    # The old token still verifies: the signing key survived too.
    assert (await api.me(headers)).status_code == 200


# --- the signing key: every worker agrees, even after Redis lost it -------


@pytest.fixture
async def user_store(config: Config, redis_client: redis.Redis) -> AsyncIterator[UserStore]:
    client = async_client(config.redis_url, decode_responses=True)
    yield UserStore(lambda: client)
    await client.aclose()


async def test_issuers_agree_on_the_key_after_it_is_lost(
    user_store: UserStore, redis_client: redis.Redis
) -> None:
    monotonic = FakeClock(1000.0)

    def worker() -> TokenIssuer:
        return TokenIssuer(user_store.jwt_secret, 3600, monotonic=monotonic)

    a, b = worker(), worker()
    first = await a.issue("u1", 0)
    assert await b.verify(first) == ("u1", 0)
    lost = redis_client.get(JWT_SECRET_KEY)
    redis_client.delete(JWT_SECRET_KEY)
    # A worker started after the loss has no copy: it stores a new key.
    c = worker()
    monotonic.advance(2)
    second = await c.issue("u2", 0)
    new = redis_client.get(JWT_SECRET_KEY)
    assert new and new != lost
    # The others, still holding the lost key, accept it at once (a bad signature
    # makes them read the key again) and sign with it from now on.
    assert await a.verify(second) == ("u2", 0)
    third = await b.issue("u3", 0)
    assert await c.verify(third) == ("u3", 0)
    assert await a.verify(third) == ("u3", 0)
    assert jwt.decode(third, new, algorithms=["HS256"])["sub"] == "u3"
    # A worker that lost the key from Redis while holding it puts it back, so the
    # tokens signed with it stay valid everywhere.
    redis_client.delete(JWT_SECRET_KEY)
    monotonic.advance(2)
    await b.issue("u4", 0)
    assert redis_client.get(JWT_SECRET_KEY) == new
    assert await worker().verify(second) == ("u2", 0)


async def test_a_changed_key_is_trusted_only_for_the_cache_time(
    user_store: UserStore, redis_client: redis.Redis
) -> None:
    monotonic = FakeClock(1000.0)
    issuer = TokenIssuer(user_store.jwt_secret, 3600, monotonic=monotonic, cache_seconds=10)
    token = await issuer.issue("u1", 0)
    redis_client.set(JWT_SECRET_KEY, "replaced-by-an-operator-0123456789")
    monotonic.advance(9)
    assert await issuer.verify(token) == ("u1", 0)
    monotonic.advance(2)
    with pytest.raises(AuthFailed):
        await issuer.verify(token)


async def test_a_forged_token_flood_reads_the_key_at_most_once_a_second(
    user_store: UserStore, redis_client: redis.Redis
) -> None:
    monotonic = FakeClock(1000.0)
    reads = 0

    async def counted(offer: str | None) -> str:
        nonlocal reads
        reads += 1
        return await user_store.jwt_secret(offer)

    issuer = TokenIssuer(counted, 3600, monotonic=monotonic)
    token = await issuer.issue("u1", 0)
    forged = jwt.encode(
        {"sub": "u1", "iat": 1, "exp": 2**40}, "not-the-key-0123456789abcdef-0123456789"
    )
    monotonic.advance(5)
    for _ in range(50):
        with pytest.raises(AuthFailed):
            await issuer.verify(forged)
    assert reads == 2  # the issue, then one read forced by the first bad signature
    assert await issuer.verify(token) == ("u1", 0)


def startup_complete(log: Path, pid: int) -> bool:
    return f"[{pid}] [INFO] Application startup complete." in log.read_text(errors="replace")


async def test_two_workers_agree_on_the_key_after_redis_lost_it(
    identity_config: Config, tmp_path: Path, redis_client: redis.Redis
) -> None:
    # The default is a key generated once and kept in Redis (no configured one).
    cfg = identity_config.replace(jwt_secret="", login_max_failures=10)
    with run_service(cfg, tmp_path, workers=2) as svc:

        async def round_trip() -> tuple[str, list[int]]:
            # Fresh connections throughout, so the kernel spreads them over both workers.
            async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
                login = await client.post(
                    "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
                )
            assert login.status_code == 200, login.text
            token, used = login.json()["token"], []
            for _ in range(4):
                async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
                    used.append(
                        (await client.get("/api/users/me", headers=bearer(token))).status_code
                    )
            return token, used

        async def round_trips(n: int) -> list[tuple[str, list[int]]]:
            done: list[tuple[str, list[int]]] = []
            for _ in range(n // 5):  # 5 at a time: logins under way count against the limit
                done += await asyncio.gather(*(round_trip() for _ in range(5)))
            return done

        assert all(used == [200] * 4 for _, used in await round_trips(10))
        # Redis loses the key, and a worker restarts (crash, max-requests, deploy).
        redis_client.delete(JWT_SECRET_KEY)
        killed = svc.worker_pids()[0]
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            pids = svc.worker_pids()
            fresh = [p for p in pids if p != killed]
            if len(fresh) == 2 and all(startup_complete(svc.log, p) for p in fresh):
                break
            assert time.monotonic() < deadline, "no replacement worker"
            await asyncio.sleep(0.1)
        mark = len(svc.log.read_text(errors="replace"))
        results = await round_trips(20)
        assert [used for _, used in results] == [[200] * 4] * 20
        key = redis_client.get(JWT_SECRET_KEY)
        assert key, "the key was not stored again"
        for token, _ in results:
            assert jwt.decode(token, key, algorithms=["HS256"])["sub"]
        await asyncio.sleep(0.6)  # access lines are written every 0.25 s
        served = {
            json.loads(line)["pid"]
            for line in svc.log.read_text(errors="replace")[mark:].splitlines()
            if '"screenaware.access"' in line
        }
        assert set(fresh) <= served, "one worker served nothing: the test proves nothing"

"""Browser sessions: the cookie stands in for the bearer header, CSRF guards state changes."""

from __future__ import annotations

from screenaware.web.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api


async def _sign_in(
    api: Api, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD
) -> dict[str, str]:
    result = await api.client.simulate_post(
        "/api/auth/session", json={"email": email, "password": password}
    )
    assert result.status_code == 200, result.text
    cookies = {c.name: c.value for c in result.cookies.values()}
    assert cookies[CSRF_COOKIE] == result.json["csrfToken"]
    return cookies


async def test_session_sets_httponly_strict_cookies(api: Api) -> None:
    result = await api.client.simulate_post(
        "/api/auth/session", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert result.status_code == 200, result.text
    session = result.cookies[SESSION_COOKIE]
    csrf = result.cookies[CSRF_COOKIE]
    assert session.http_only and not csrf.http_only
    assert session.same_site == csrf.same_site == "Strict"
    # Plain HTTP here: a Secure cookie would never come back.
    assert not session.secure
    assert session.path == "/"
    assert session.max_age == 3600
    assert len(csrf.value) >= 32 and csrf.value not in session.value


async def test_session_is_secure_over_https(api: Api) -> None:
    result = await api.client.simulate_post(
        "/api/auth/session",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        protocol="https",
    )
    assert result.status_code == 200, result.text
    assert result.cookies[SESSION_COOKIE].secure and result.cookies[CSRF_COOKIE].secure


async def test_cookie_authenticates_reads_without_csrf(api: Api) -> None:
    cookies = await _sign_in(api)
    me = await api.client.simulate_get("/api/users/me", cookies=cookies)
    assert me.status_code == 200, me.text
    assert me.json["email"] == ADMIN_EMAIL
    # Without the cookie the same request is anonymous.
    assert (await api.client.simulate_get("/api/users/me")).status_code == 401


async def test_state_change_by_cookie_needs_the_csrf_header(api: Api) -> None:
    cookies = await _sign_in(api)
    body = {"name": "Website"}
    missing = await api.client.simulate_post("/api/projects", json=body, cookies=cookies)
    assert missing.status_code == 403
    assert CSRF_HEADER in missing.json["message"]
    wrong = await api.client.simulate_post(
        "/api/projects", json=body, cookies=cookies, headers={CSRF_HEADER: "x" * 43}
    )
    assert wrong.status_code == 403
    # A header without the cookie proves nothing either.
    no_cookie = {SESSION_COOKIE: cookies[SESSION_COOKIE]}
    forged = await api.client.simulate_post(
        "/api/projects", json=body, cookies=no_cookie, headers={CSRF_HEADER: cookies[CSRF_COOKIE]}
    )
    assert forged.status_code == 403
    listed = await api.client.simulate_get("/api/projects", cookies=cookies)
    assert listed.status_code == 200 and listed.json == [], "a refused request created nothing"
    ok = await api.client.simulate_post(
        "/api/projects", json=body, cookies=cookies, headers={CSRF_HEADER: cookies[CSRF_COOKIE]}
    )
    assert ok.status_code == 201, ok.text
    assert [
        p["name"] for p in (await api.client.simulate_get("/api/projects", cookies=cookies)).json
    ] == ["Website"]


async def test_cookie_session_may_manage_keys(api: Api) -> None:
    """The cookie holds a login token, so the login-only routes accept it."""
    cookies = await _sign_in(api)
    created = await api.client.simulate_post(
        "/api/keys",
        json={"name": "laptop"},
        cookies=cookies,
        headers={CSRF_HEADER: cookies[CSRF_COOKIE]},
    )
    assert created.status_code == 201, created.text


async def test_wrong_password_and_bad_cookie_are_401(api: Api) -> None:
    wrong = await api.client.simulate_post(
        "/api/auth/session", json={"email": ADMIN_EMAIL, "password": "nope"}
    )
    assert wrong.status_code == 401
    assert wrong.json["message"] == "Wrong email or password"
    assert SESSION_COOKIE not in wrong.cookies
    bad = await api.client.simulate_get("/api/users/me", cookies={SESSION_COOKIE: "a.b.c"})
    assert bad.status_code == 401


async def test_session_login_shares_the_login_limits(api: Api) -> None:
    """Failures on either route count against the same email (limit 3 here)."""
    for _ in range(2):
        r = await api.login(ADMIN_EMAIL, "wrong")
        assert r.status_code == 401
    r = await api.client.simulate_post(
        "/api/auth/session", json={"email": ADMIN_EMAIL, "password": "wrong"}
    )
    assert r.status_code == 401
    limited = await api.client.simulate_post(
        "/api/auth/session", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1


async def test_sign_out_clears_both_cookies(api: Api) -> None:
    cookies = await _sign_in(api)
    out = await api.client.simulate_delete("/api/auth/session", cookies=cookies)
    assert out.status_code == 200 and out.json == {"ok": True}
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        assert out.cookies[name].value == ""
        assert out.cookies[name].max_age in (0, None) or out.cookies[name].expires is not None


async def test_a_signed_out_session_cookie_stops_working(api: Api) -> None:
    cookies = await _sign_in(api)
    other = await _sign_in(api)
    assert (await api.client.simulate_get("/api/users/me", cookies=cookies)).status_code == 200
    await api.client.simulate_delete("/api/auth/session", cookies=cookies)
    # A copy of the old cookie (kept by whoever had it) is refused now...
    again = await api.client.simulate_get("/api/users/me", cookies=cookies)
    assert again.status_code == 401
    assert again.json["message"] == "Your session has expired; sign in again"
    # ...while the same user's other session goes on.
    assert (await api.client.simulate_get("/api/users/me", cookies=other)).status_code == 200


async def test_bearer_header_wins_over_a_cookie(api: Api) -> None:
    """A request with the header needs no CSRF token: browsers never add it on their own."""
    user = await api.new_user("u@example.org")
    cookies = await _sign_in(api)
    r = await api.client.simulate_post(
        "/api/projects", json={"name": "Mine"}, cookies=cookies, headers=user
    )
    assert r.status_code == 201, r.text
    mine = await api.client.simulate_get("/api/projects", headers=user)
    assert [p["name"] for p in mine.json] == ["Mine"]

"""One time-zone parser for the whole service (issue 11.2): only IANA names that
``zoneinfo.available_timezones()`` lists (and ``UTC``); anything else is a 400 naming
the parameter, never a 500 from ``ZoneInfo`` opening a path."""

from __future__ import annotations

import zoneinfo
from typing import Any

import pytest

from screenaware.config import Config, ConfigError
from screenaware.storage.ids import uuid7
from screenaware.timeutil import parse_zone, zone_names
from tests.conftest import Api

# Names ZoneInfo itself fails on with OSError (IsADirectoryError, ...), ValueError,
# or ZoneInfoNotFoundError; and the empty string.
BAD_ZONES = [
    "Bad/Zone",
    "America",
    "Europe",
    "UTC\x00",
    "../../../../etc/passwd",
    "/etc/localtime",
    "",
    "posixrules",
    "Europe/Vienna ",
]


@pytest.mark.parametrize("name", BAD_ZONES)
def test_parse_zone_refuses_what_is_not_a_listed_name(name: str) -> None:
    with pytest.raises(ValueError, match="Unknown IANA time zone"):
        parse_zone(name)


def test_parse_zone_takes_every_listed_name() -> None:
    assert parse_zone("UTC").key == "UTC"
    assert zone_names() >= zoneinfo.available_timezones()
    for name in sorted(zone_names()):
        assert parse_zone(name).key == name


def test_the_names_are_read_once() -> None:
    assert zone_names() is zone_names()


@pytest.mark.parametrize("name", ["America", "/etc/localtime", "Bad/Zone"])
def test_config_uses_the_same_parser(name: str) -> None:
    with pytest.raises(ConfigError, match="SCREENAWARE_TIMEZONE"):
        Config.load(environ={"SCREENAWARE_TIMEZONE": name})
    assert Config.load(environ={"SCREENAWARE_TIMEZONE": "Europe/Vienna"}).timezone == (
        "Europe/Vienna"
    )


def _requests(zone: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, path, keyword arguments, the parameter named in the 400)."""
    stream = uuid7(1_700_000_000_000)
    return [
        ("GET", "/api/times", {"params": {"tz": zone}}, "tz"),
        ("GET", "/api/streams", {"params": {"tz": zone}}, "tz"),
        ("GET", "/api/substreams", {"params": {"tz": zone}}, "tz"),
        (
            "PUT",
            f"/api/stream/{stream}/project",
            {"params": {"tz": zone}, "json": {"projectUuid": None}},
            "tz",
        ),
        (
            "PUT",
            f"/api/streams/{stream}/project",
            {"params": {"tz": zone}, "json": {"projectUuid": None}},
            "tz",
        ),
        ("PUT", "/api/users/me", {"json": {"timezone": zone}}, "timezone"),
    ]


@pytest.mark.parametrize("zone", BAD_ZONES)
async def test_every_route_refuses_a_bad_zone_with_400(api: Api, zone: str) -> None:
    headers = await api.new_user("tz@example.org", timezone="Europe/Berlin")
    for method, path, kwargs, name in _requests(zone):
        if zone == "" and "params" in kwargs:
            # An empty query value is a value (not "absent"): still refused.
            kwargs = {k: v for k, v in kwargs.items() if k != "params"}
            kwargs["query_string"] = "tz="
        result = await api.client.simulate_request(method, path, headers=headers, **kwargs)
        assert result.status_code == 400, (method, path, zone, result.text)
        assert name in result.json["errors"], (method, path, result.json)
    # Nothing changed: the user's own zone is still Berlin.
    assert (await api.me(headers)).json["timezone"] == "Europe/Berlin"
    for method, path, body in (
        ("POST", "/api/users", {"email": "tz2@example.org", "password": "pass-word-1"}),
        ("PUT", "/api/users", {"email": "tz@example.org"}),
    ):
        result = await api.client.simulate_request(
            method, path, json={**body, "timezone": zone}, headers=api.admin
        )
        assert result.status_code == 400, (method, path, zone, result.text)
        assert "timezone" in result.json["errors"]
    assert (await api.me(headers)).json["timezone"] == "Europe/Berlin"
    listed = await api.client.simulate_get("/api/users", headers=api.admin)
    assert "tz2@example.org" not in {u["email"] for u in listed.json}


async def test_a_good_zone_is_taken_everywhere(api: Api) -> None:
    headers = await api.new_user("tz@example.org")
    for method, path, kwargs, _ in _requests("Australia/Lord_Howe"):
        result = await api.client.simulate_request(method, path, headers=headers, **kwargs)
        assert result.status_code != 400 and result.status_code < 500, (path, result.text)
    assert (await api.me(headers)).json["timezone"] == "Australia/Lord_Howe"

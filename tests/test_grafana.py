"""The Grafana dashboard in the repo: every panel's InfluxQL runs on the real InfluxDB
and shows exactly the data the test wrote through the API."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import httpx
import pytest

from screenaware.storage.localservers import CONF_DIR
from tests.conftest import SECRET_KEY, Api, FakeClock, InfluxHelper

DASHBOARD = json.loads((CONF_DIR / "grafana-dashboard.json").read_text())


@pytest.fixture
def clock() -> FakeClock:
    # Dashboards look at the last days: the data must be recent.
    return FakeClock(time.time())


def grafana(query: str, user: str) -> str:
    """What Grafana sends for a raw query over the last 7 days."""
    return (
        query.replace("$timeFilter", "time > now() - 7d")
        .replace("$__interval", "1h")
        .replace("/^$user$/", f"/^{user}$/")
    )


def run(influx_db: InfluxHelper, query: str) -> list[dict[str, Any]]:
    resp = httpx.get(
        f"{influx_db.url}/query", params={"db": influx_db.database, "q": query}, timeout=30
    ).json()["results"][0]
    assert "error" not in resp, (query, resp)
    return list(resp.get("series", []))


def totals(series: list[dict[str, Any]], tag: str | None) -> dict[str | None, float]:
    """The sum of each series' values (over all time buckets), by its ``tag``."""
    summed: dict[str | None, float] = {}
    for one in series:
        key = (one.get("tags") or {}).get(tag) if tag else None
        summed[key] = summed.get(key, 0.0) + sum(row[-1] or 0 for row in one["values"])
    return summed


async def test_every_panel_shows_what_was_written(api: Api, influx_db: InfluxHelper) -> None:
    me_headers = await api.new_user("graf@example.org")
    me = (await api.me(me_headers)).json["uuid"]
    other_headers = await api.new_user("other@example.org")
    other = (await api.me(other_headers)).json["uuid"]
    device = (
        await api.client.simulate_post(
            "/api/devices", json={"name": "d"}, headers={"Authorization": SECRET_KEY}
        )
    ).json
    for _ in range(3):
        beat = await api.client.simulate_post(
            "/api/beat", headers={"Authorization": device["token"]}
        )
        assert beat.status_code == 200
    assert (await api.client.simulate_get("/")).status_code == 200
    hour_ago = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)

    def snapshot(minutes: int, app: str, ms: int) -> dict[str, Any]:
        taken = (hour_ago + dt.timedelta(minutes=minutes)).isoformat()
        return {
            "timeTaken": taken,
            "durationMs": ms,
            "windows": [{"processName": app, "isFocused": True}],
        }

    mine = [snapshot(0, "code", 6_000), snapshot(5, "firefox", 9_000)]
    theirs = [snapshot(0, "vim", 10_000)]  # must not show in my panels
    for batch, headers in ((mine, me_headers), (theirs, other_headers)):
        resp = await api.client.simulate_post("/api/snapshots", json=batch, headers=headers)
        assert resp.status_code == 200, resp.text
    for kind, level, origin in (("t", "error", "o"), ("u", "info", "p")):
        resp = await api.client.simulate_post(
            "/api/logs",
            json={
                "type": kind,
                "level": level,
                "data": {"origin": origin, "version": "1.0.0", "message": "m"},
            },
        )
        assert resp.status_code < 300, resp.text

    my_hours = (6_000 + 9_000) / 3_600_000
    # By panel title: the tag it groups by, and the total of each series.
    expected: dict[str, tuple[str | None, dict[str | None, float]]] = {
        "Beats per device": ("device", {str(device["id"]): 3}),
        "Page views": ("page", {"index": 1}),
        "Hours per project and day": ("project", {"none": my_hours}),
        "Hours per category and day": (None, {None: my_hours}),
        "Minutes per application": (None, {None: (6_000 + 9_000) / 60_000}),
        "Snapshots per minute": (None, {None: 3}),
        "Log points per type": ("type", {"t": 1, "u": 1}),
        "Errors per origin": ("origin", {"o": 1}),
    }
    panels = {p["title"]: [t["query"] for t in p["targets"]] for p in DASHBOARD["panels"]}
    assert set(panels) == set(expected)
    for title, (tag, want) in expected.items():
        (query,) = panels[title]
        got = totals(run(influx_db, grafana(query, me)), tag)
        assert got == pytest.approx(want), (title, got)
    # One application a series: mine, and not theirs.
    (apps,) = panels["Minutes per application"]
    per_app = sorted(totals(run(influx_db, grafana(apps, me)), "application").values())
    assert per_app == pytest.approx([6_000 / 60_000, 9_000 / 60_000])
    # The $user variable lists every user with activity.
    (variable,) = [v for v in DASHBOARD["templating"]["list"] if v["type"] == "query"]
    (users,) = run(influx_db, variable["query"])
    assert {value for _, value in users["values"]} == {me, other}

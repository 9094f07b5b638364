"""The Grafana dashboard in the repo: every panel's InfluxQL runs on the real InfluxDB."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

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


async def test_every_panel_query_runs_and_finds_data(api: Api, influx_db: InfluxHelper) -> None:
    headers = await api.new_user("graf@example.org")
    me = (await api.me(headers)).json["uuid"]
    device = (
        await api.client.simulate_post(
            "/api/devices", json={"name": "d"}, headers={"Authorization": SECRET_KEY}
        )
    ).json["token"]
    await api.client.simulate_post("/api/beat", headers={"Authorization": device})
    await api.client.simulate_get("/")
    taken = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    await api.client.simulate_post(
        "/api/snapshots",
        json={"timeTaken": taken, "windows": [{"processName": "code", "isFocused": True}]},
        headers=headers,
    )
    await api.client.simulate_post(
        "/api/logs",
        json={
            "type": "t",
            "level": "error",
            "data": {"origin": "o", "version": "1.0.0", "message": "boom"},
        },
    )
    queries = [target["query"] for p in DASHBOARD["panels"] for target in p["targets"]]
    assert len(queries) == len(DASHBOARD["panels"]) >= 8
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"])
    for query in queries:
        resp = httpx.get(
            f"{influx_db.url}/query",
            params={"db": influx_db.database, "q": grafana(query, me)},
            timeout=30,
        ).json()["results"][0]
        assert "error" not in resp, (query, resp)
        assert resp.get("series"), f"no data for {query}"
    assert Path(CONF_DIR / "grafana-dashboard.json").stat().st_size > 1000

"""Outages logged as transitions: the log itself, and the app's health check and 503s
against dead and revived real servers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from falcon import testing

from screenaware.app import create_app
from screenaware.config import Config
from screenaware.errors import StorageUnavailable
from screenaware.storage.localservers import free_port, start_redis
from screenaware.storage.outages import OutageLog
from tests.conftest import FakeClock, dead_url

OUTAGES = "screenaware.outages"


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == OUTAGES]


def test_an_outage_logs_down_still_down_with_counts_and_up_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, OUTAGES)
    clock = FakeClock(100.0)
    log = OutageLog(10, clock=clock)
    log.success("influxdb")  # up and staying up: nothing to say
    for _ in range(500):
        log.failure("influxdb", StorageUnavailable("InfluxDB unreachable: refused"))
        clock.advance(0.0625)  # 500 failures over 31.25 s, 160 per 10 s
    log.failure("redis", ConnectionError("Error 111 connecting to x:1, secret-in-message"))
    clock.advance(0.75)
    log.success("influxdb")
    log.success("influxdb")
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    last = "last: StorageUnavailable: InfluxDB unreachable: refused"
    assert outage_lines(caplog) == [
        "influxdb down: StorageUnavailable: InfluxDB unreachable: refused",
        f"influxdb still down after 10 s: 160 failures in the last 10 s, 161 in all; {last}",
        f"influxdb still down after 20 s: 160 failures in the last 10 s, 321 in all; {last}",
        f"influxdb still down after 30 s: 160 failures in the last 10 s, 481 in all; {last}",
        # A client library's message may hold a URL with a password: its class only.
        "redis down: ConnectionError",
        "influxdb up again after 32.0 s down; 500 failures in that time",
    ]
    assert log.is_down("redis") and not log.is_down("influxdb")


def test_a_flapping_backend_logs_at_most_a_few_lines_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, OUTAGES)
    clock = FakeClock(0.0)
    log = OutageLog(10, clock=clock)
    for _ in range(96):  # one failure, then a success, 8 times a second for 12 s
        log.failure("influxdb", "WriteQueueFull: too many points queued")
        log.success("influxdb")
        clock.advance(0.125)
    lines = outage_lines(caplog)
    assert lines[:2] == [
        "influxdb down: WriteQueueFull: too many points queued",
        "influxdb up again after 0.0 s down; 1 failures in that time",
    ]
    # The flaps after the first are only counted, and told with the next outage line.
    assert lines[2:] == [
        "influxdb down: WriteQueueFull: too many points queued "
        "(and 79 failures in brief outages before)",
        "influxdb up again after 0.0 s down; 1 failures in that time",
    ]
    # One that then stays down is announced within the interval.
    caplog.clear()
    clock.advance(0.5)
    log.failure("influxdb", "StorageUnavailable")
    log.success("influxdb")
    log.failure("influxdb", "StorageUnavailable")
    clock.advance(10)
    log.failure("influxdb", "StorageUnavailable")
    assert outage_lines(caplog) == [
        "influxdb down again for 10 s: 2 failures; last: StorageUnavailable "
        "(and 16 failures in brief outages before)"
    ]


async def test_the_health_check_logs_which_backend_failed_once_per_transition(
    config: Config, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO)
    redis_port = free_port()
    server = start_redis(tmp_path / "redis", redis_port)
    broken = config.replace(
        influx_url=f"http://u:pw-7c1e@127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
    )
    try:
        async with testing.ASGIConductor(create_app(broken)) as client:
            # InfluxDB was down from the start: said once, at startup, without the password.
            assert outage_lines(caplog) == [
                "influxdb down: StorageUnavailable: InfluxDB unreachable: "
                f"cannot connect to http://127.0.0.1:{broken.influx_url.rsplit(':', 1)[1]}: "
                "ConnectionRefusedError"
            ]
            assert (await client.simulate_get("/.well-known/health")).json["redis"] == "ok"
            server.proc.kill()
            server.proc.wait()
            caplog.clear()
            for _ in range(20):
                result = await client.simulate_get("/.well-known/health")
                assert result.status_code == 503
                assert result.json == {
                    "status": "unavailable",
                    "influxdb": "unavailable",
                    "redis": "unavailable",
                }
            # Only the health check met the dead Redis: it says which and why, once.
            assert outage_lines(caplog) == ["redis down: ConnectionError"]
            server = start_redis(tmp_path / "redis", redis_port)
            caplog.clear()
            for _ in range(3):
                result = await client.simulate_get("/.well-known/health")
                assert result.json["redis"] == "ok"
            up = outage_lines(caplog)
            assert len(up) == 1 and up[0].startswith("redis up again after "), up
            assert "21 failures" in up[0] or "20 failures" in up[0], up
    finally:
        server.stop()
    assert not any("pw-7c1e" in r.getMessage() for r in caplog.records)


async def test_503s_of_a_dead_database_are_counted_not_logged_one_by_one(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dead = config.replace(influx_url=dead_url("http"))
    async with testing.ASGIConductor(create_app(dead, clock=FakeClock())) as client:
        device = await client.simulate_post(
            "/api/devices", json={"name": "d"}, headers={"Authorization": config.secret_key}
        )
        assert device.status_code == 200, device.text
        caplog.clear()
        for _ in range(50):
            result = await client.simulate_post(
                "/api/beat", headers={"Authorization": device.json["token"]}
            )
            assert result.status_code == 503
        # InfluxDB was said to be down at startup; the 50 failures are only counted.
        # The two coalescers on the path (beat counters, InfluxDB writes) log their
        # first failed call, with its traceback, once.
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.name for r in warnings] == ["screenaware.storage.batching"] * 2, [
            r.getMessage() for r in warnings
        ]
        assert all(isinstance(r.exc_info[1], StorageUnavailable) for r in warnings if r.exc_info)


async def test_page_views_during_an_outage_render_and_are_only_counted(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dead = config.replace(influx_url=dead_url("http"))
    async with testing.ASGIConductor(create_app(dead, clock=FakeClock())) as client:
        caplog.clear()
        for _ in range(30):
            assert (await client.simulate_get("/")).status_code == 200
        # Not a line per uncounted visit: the writer's first failed call, once.
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and warnings[0].startswith("influx-group-commit"), warnings

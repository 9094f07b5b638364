"""Faults with real processes: dead and slow InfluxDB, a Redis crash, a killed worker.

Each test gets its own influxd and redis-server (they are killed here), and the
real gunicorn in front of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from falcon import testing

from screenaware.app import create_app
from screenaware.config import Config
from screenaware.storage.localservers import Server, free_port, start_influxd, start_redis
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, SECRET_KEY, FakeClock, InfluxHelper
from tests.service import run_service

pytestmark = pytest.mark.e2e


def client_connections(pid: int, port: int) -> int:
    """Established TCP connections to ``port`` held by process ``pid``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


@dataclass
class Stack:
    base: Path
    influx_port: int
    redis_port: int
    influxd: Server
    redis: Server
    config: Config

    def kill_influxd(self) -> None:
        self.influxd.proc.kill()
        self.influxd.proc.wait()

    def start_influxd(self) -> None:
        self.influxd = start_influxd(self.base / "influxdb", self.influx_port)

    def kill_redis(self) -> None:
        self.redis.proc.kill()
        self.redis.proc.wait()

    def start_redis(self) -> None:
        self.redis = start_redis(self.base / "redis", self.redis_port)

    def count(self, measurement: str) -> int:
        resp = httpx.get(
            f"http://127.0.0.1:{self.influx_port}/query",
            params={"db": self.config.influx_db, "q": f'SELECT count(*) FROM "{measurement}"'},
        ).json()["results"][0]
        return max(resp["series"][0]["values"][0][1:]) if "series" in resp else 0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    influx_port, redis_port = free_port(), free_port()
    s = Stack(
        tmp_path,
        influx_port,
        redis_port,
        start_influxd(tmp_path / "influxdb", influx_port),
        start_redis(tmp_path / "redis", redis_port),
        Config.load(
            environ={},
            influx_url=f"http://127.0.0.1:{influx_port}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            secret_key=SECRET_KEY,
            admin_email=ADMIN_EMAIL,
            admin_password=ADMIN_PASSWORD,
            data_dir=str(tmp_path / "var"),
            influx_timeout=2,
            retry_after=3,
        ),
    )
    yield s
    for server in (s.influxd, s.redis):
        if server.proc.poll() is None:
            server.stop()


def setup_clients(url: str) -> tuple[str, dict[str, str]]:
    device = httpx.post(
        f"{url}/api/devices", json={"name": "load"}, headers={"Authorization": SECRET_KEY}
    ).json()["token"]
    token = httpx.post(
        f"{url}/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    ).json()["token"]
    return device, {"Authorization": f"Bearer {token}"}


@dataclass
class Tally:
    beats: int = 0
    snapshots: int = 0
    unavailable: int = 0
    retry_after: bool = True
    other: int = 0
    broken: int = 0  # connections cut (a killed worker): never acknowledged


async def load(url: str, device: str, auth: dict[str, str], stop: asyncio.Event,
               tally: Tally, start: dt.datetime, fresh: bool = False) -> None:  # fmt: skip
    counter = 0
    # fresh: a new connection per request, so requests spread over every worker.
    limits = httpx.Limits(max_keepalive_connections=0 if fresh else 20)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
        while not stop.is_set():
            counter += 1
            try:
                if counter % 2:
                    resp = await client.post("/api/beat", headers={"Authorization": device})
                    kind = "beats"
                else:
                    end = start + dt.timedelta(milliseconds=counter * 7 + id(stop) % 5)
                    body = {"timeTaken": end.isoformat(), "durationMs": 5,
                            "windows": [{"processName": "code", "isFocused": True}]}  # fmt: skip
                    resp = await client.post("/api/snapshots", json=body, headers=auth)
                    kind = "snapshots"
            except httpx.HTTPError:
                tally.broken += 1
                await asyncio.sleep(0.05)
                continue
            if resp.status_code == 200:
                setattr(tally, kind, getattr(tally, kind) + 1)
            elif resp.status_code == 503:
                tally.unavailable += 1
                tally.retry_after &= resp.headers.get("retry-after") == "3"
                assert resp.json()["message"]
                await asyncio.sleep(0.05)
            else:
                tally.other += 1


async def run_load(
    url: str, clients: int, phases: list[tuple[float, object]], fresh: bool = False
) -> list[Tally]:
    """Run ``clients`` loops through phases; each phase's action runs while its load
    is already going (mid-request), 0.3 s in."""
    device, auth = setup_clients(url)
    stop = asyncio.Event()
    tallies = []
    start = dt.datetime(2023, 11, 14, tzinfo=dt.UTC)
    per_phase: list[Tally] = []
    for i, (seconds, action) in enumerate(phases):
        tally = Tally()
        stop = asyncio.Event()
        base = start + dt.timedelta(hours=i)  # every phase its own snapshot times
        tasks = [
            asyncio.create_task(
                load(url, device, auth, stop, tally, base + dt.timedelta(minutes=c), fresh)
            )
            for c in range(clients)
        ]
        await asyncio.sleep(0.3)
        if action is not None:
            await asyncio.to_thread(action)  # type: ignore[arg-type]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        per_phase.append(tally)
    tallies.extend(per_phase)
    return tallies


async def test_dead_influxdb_gives_503_then_recovers_and_loses_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    with run_service(stack.config, tmp_path, workers=2) as svc:
        before, down, after = await run_load(
            svc.url, 8, [(1.5, None), (2.0, stack.kill_influxd), (2.5, stack.start_influxd)]
        )
    assert before.beats > 0 and before.snapshots > 0 and before.unavailable == 0
    assert down.unavailable > 0 and down.retry_after, down
    assert after.beats > 0 and after.snapshots > 0, after  # recovered by itself
    assert after.unavailable < down.unavailable
    assert before.other == down.other == after.other == 0
    acknowledged_beats = before.beats + down.beats + after.beats
    acknowledged_snapshots = before.snapshots + down.snapshots + after.snapshots
    # Every acknowledged write is in InfluxDB (the beats of registration included none).
    assert stack.count("beat") >= acknowledged_beats
    assert stack.count("activity") >= acknowledged_snapshots


async def test_redis_crash_keeps_entities_and_the_service_recovers(
    stack: Stack, tmp_path: Path
) -> None:
    with run_service(stack.config, tmp_path, workers=2) as svc:
        device, auth = setup_clients(svc.url)
        project = httpx.post(f"{svc.url}/api/projects", json={"name": "kept"}, headers=auth)
        assert project.status_code == 201
        for _ in range(5):
            assert (
                httpx.post(f"{svc.url}/api/beat", headers={"Authorization": device}).status_code
                == 200
            )
        stats = httpx.get(f"{svc.url}/api/stats").json()
        stack.kill_redis()
        assert httpx.get(f"{svc.url}/api/stats").status_code == 503
        stack.start_redis()
        # No restart of the service: it reconnects by itself.
        assert httpx.get(f"{svc.url}/api/projects", headers=auth).json()[0]["name"] == "kept"
        assert (
            httpx.post(f"{svc.url}/api/beat", headers={"Authorization": device}).status_code == 200
        )
        after = httpx.get(f"{svc.url}/api/stats").json()
        assert after["total_beats"] == stats["total_beats"] + 1
        # Even with the counters gone, rebuild-stats recomputes them from InfluxDB.
        client = socket.create_connection(("127.0.0.1", stack.redis_port))
        client.sendall(b"DEL {hb}:meta\r\n")
        client.recv(64)
        client.close()
        env = {**os.environ, **stack.config.as_environ()}
        subprocess.run(
            [str(Path(sys.executable).with_name("screenaware")), "rebuild-stats", "--quiet"],
            env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        rebuilt = httpx.get(f"{svc.url}/api/stats").json()
        assert rebuilt["total_beats"] == after["total_beats"]
        assert rebuilt["devices"][0]["num_beats"] == after["devices"][0]["num_beats"]


async def test_a_killed_worker_loses_no_acknowledged_write(stack: Stack, tmp_path: Path) -> None:
    # Writes take 0.3 s behind a slow link to InfluxDB, so every worker always has
    # requests in flight: the kill lands mid-request.
    with SlowProxy(stack.influx_port, delay=0.3) as proxy:
        config = stack.config.replace(influx_url=f"http://127.0.0.1:{proxy.port}")
        with run_service(config, tmp_path, workers=2) as svc:
            killed: list[int] = []

            def kill() -> None:
                # An async worker may hold every connection while the other idles:
                # kill the one holding the most client connections.
                port = int(svc.url.rsplit(":", 1)[1])
                victim = max(svc.worker_pids(), key=lambda pid: client_connections(pid, port))
                assert client_connections(victim, port) > 0
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

            before, during = await run_load(svc.url, 16, [(1.0, None), (2.5, kill)], fresh=True)
            survivors = svc.worker_pids()
    assert during.beats > 0 and during.snapshots > 0  # the other worker kept serving
    assert during.broken > 0  # requests of the killed worker were cut mid-flight
    assert killed[0] not in survivors
    assert stack.count("beat") >= before.beats + during.beats
    assert stack.count("activity") >= before.snapshots + during.snapshots


class SlowProxy:
    """A TCP proxy on loopback that delays everything the client sends."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.port = free_port()
        self._target = target_port
        self._delay = delay
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    delay: float) -> None:  # fmt: skip
        try:
            while data := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer, self._delay), self._pipe(up_reader, writer, 0)
        )

    def __enter__(self) -> SlowProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        ).result()
        return self

    async def _shut(self) -> None:
        # Every connection's task ends here: a loop stopped with them pending leaves
        # coroutines that are destroyed later, failing whichever test runs then.
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


async def test_slow_influxdb_keeps_batching_and_bounds_the_queue(
    stack: Stack, tmp_path: Path
) -> None:
    with SlowProxy(stack.influx_port, delay=0.3) as proxy:
        config = stack.config.replace(
            influx_url=f"http://127.0.0.1:{proxy.port}", write_queue_max=20
        )
        with run_service(config, tmp_path, workers=1) as svc:
            device, _ = setup_clients(svc.url)
            durations: list[float] = []
            codes: list[int] = []

            async def one(client: httpx.AsyncClient) -> None:
                started = time.monotonic()
                resp = await client.post("/api/beat", headers={"Authorization": device})
                durations.append(time.monotonic() - started)
                codes.append(resp.status_code)
                if resp.status_code == 503:
                    assert resp.headers["retry-after"] == "3"
                    assert "waiting" in resp.json()["message"]

            async with httpx.AsyncClient(
                base_url=svc.url, timeout=30, limits=httpx.Limits(max_connections=200)
            ) as client:
                await asyncio.gather(*(one(client) for _ in range(150)))
            svc.proc.send_signal(signal.SIGTERM)
            svc.proc.wait(30)
            log = svc.log.read_text()
    assert codes.count(200) > 0
    assert codes.count(503) > 0, "the bounded queue never refused"
    assert set(codes) <= {200, 503}
    # Bounded: nothing waits much longer than a few slow writes plus the time-out.
    assert max(durations) < 3 * config.influx_timeout + 5
    found = re.search(r"hb-beats: (\d+) items in (\d+) calls", log)
    assert found, log[-2000:]
    items, calls = map(int, found.groups())
    assert items / calls > 2, (items, calls)  # still batching behind the slow database
    stats = httpx.get(f"http://127.0.0.1:{stack.influx_port}/ping")
    assert stats.status_code == 204
    assert stack.count("beat") >= codes.count(200)


def warnings_in(log: Path) -> list[str]:
    """The messages of the WARNING lines of a service log (JSON lines)."""
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("level") == "WARNING":
                found.append(record["message"])
    return found


def failures_in(ups: list[str]) -> int:
    """The failures the "up again" lines counted, summed."""
    total = 0
    for line in ups:
        found = re.search(r"; (\d+) failures in that time", line)
        assert found, line
        total += int(found[1])
    return total


async def test_an_influxdb_outage_logs_its_transitions_not_every_request(
    stack: Stack, tmp_path: Path
) -> None:
    config = stack.config.replace(outage_log_interval=1)
    with run_service(config, tmp_path, workers=2) as svc:
        device, _ = setup_clients(svc.url)
        # A connection per request, so that both workers get some.
        client = httpx.Client(
            base_url=svc.url,
            headers={"Authorization": device},
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        stack.kill_influxd()
        down_at = time.monotonic()
        unavailable = 0
        # At least 300 failed requests and 3.5 s (for "still down" lines).
        until = time.monotonic() + 3.5
        while unavailable < 300 or time.monotonic() < until:
            assert client.post("/api/beat").status_code == 503
            unavailable += 1
        stack.start_influxd()
        deadline = time.monotonic() + 30
        while True:
            status = client.post("/api/beat").status_code
            # Until both workers have written again, one may still fail.
            unavailable += 1 if status == 503 else 0
            messages = warnings_in(svc.log)
            downs = [m for m in messages if m.startswith("influxdb down")]
            ups = [m for m in messages if m.startswith("influxdb up again")]
            if status == 200 and downs and len(ups) == len(downs):
                break
            assert time.monotonic() < deadline, messages
        client.close()
    seconds = time.monotonic() - down_at
    # A handful of lines, not one per failed request: per worker the outage (down,
    # still down about every second, up again) and each coalescer's first failure
    # and recovery.
    assert len(messages) * 3 < unavailable, messages
    still = [m for m in messages if m.startswith("influxdb still down")]
    assert 1 <= len(still) <= 2 * (seconds + 1), messages
    assert len(messages) - len(still) <= 2 * 6, messages
    assert 1 <= len(downs) <= 2
    for line in still:
        assert re.search(r": \d+ failures in the last \d+ s, \d+ in all; last: StorageUnav", line)
    # Every 503 was counted once, in the worker that answered it; a few other failures
    # of the workers' own (a write still in flight when influxd died) may count too.
    counted = failures_in(ups)
    assert unavailable <= counted <= unavailable + 4, (unavailable, ups)


async def test_a_redis_outage_logs_its_transitions_not_every_request(
    stack: Stack, tmp_path: Path
) -> None:
    config = stack.config.replace(outage_log_interval=1)
    with run_service(config, tmp_path, workers=2) as svc:
        client = httpx.Client(base_url=svc.url, limits=httpx.Limits(max_keepalive_connections=0))
        stack.kill_redis()
        down_at = time.monotonic()
        codes: list[int] = []
        # At least 200 failed requests and 2.5 s (for "still down" lines), however
        # slow the machine.
        until = time.monotonic() + 2.5

        async def fail() -> None:
            # A failed Redis command takes its retries (~0.2 s): 20 at a time.
            async with httpx.AsyncClient(base_url=svc.url, timeout=30) as requests:
                while len(codes) < 200 or time.monotonic() < until:
                    codes.append((await requests.get("/api/stats")).status_code)

        await asyncio.gather(*(fail() for _ in range(20)))
        assert set(codes) == {503}
        unavailable = len(codes)
        stack.start_redis()
        deadline = time.monotonic() + 30
        while True:
            status = client.get("/api/stats").status_code
            messages = warnings_in(svc.log)
            downs = [m for m in messages if m.startswith("redis down")]
            ups = [m for m in messages if m.startswith("redis up again")]
            if status == 200 and downs and len(ups) == len(downs):
                break
            assert time.monotonic() < deadline, messages
        client.close()
    seconds = time.monotonic() - down_at
    assert unavailable >= 200
    assert len(messages) * 3 < unavailable, messages
    still = [m for m in messages if m.startswith("redis still down")]
    assert 1 <= len(still) <= 2 * (seconds + 1), messages
    # Per worker down and up (and a worker still starting then: its startup hooks).
    assert len(messages) - len(still) <= 2 * 4, messages
    assert all(
        m.startswith(("redis down: ConnectionError", "redis down: TimeoutError")) for m in downs
    )
    # Each 503 counted once (and the lease's retries, if the slot lapsed meanwhile).
    counted = failures_in(ups)
    assert counted >= unavailable, ups


async def test_beats_of_devices_just_answered_share_one_round_when_they_come_back(
    config: Config, redis_client: redis.Redis, influx_db: InfluxHelper
) -> None:
    def redis_calls() -> int:
        # Commands the client sent (those inside scripts count as their own).
        stats = redis_client.info("commandstats")
        return sum(
            int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
            for name in ("evalsha", "eval", "mget")
        )

    calls = {}
    for regroup_ms in (0, 100):
        # InfluxDB behind a slow link: a write takes 0.1 s, so a beat is answered
        # only after it, and a round's three steps are easy to count.
        influx_port = int(config.influx_url.rsplit(":", 1)[1])
        with SlowProxy(influx_port, delay=0.1) as proxy:
            slow = config.replace(
                influx_url=f"http://127.0.0.1:{proxy.port}", beat_regroup_ms=regroup_ms
            )
            async with testing.ASGIConductor(create_app(slow, clock=FakeClock())) as client:
                auths = []
                for name in "abcde":
                    device = await client.simulate_post(
                        "/api/devices", json={"name": name}, headers={"Authorization": SECRET_KEY}
                    )
                    auths.append({"Authorization": device.json["token"]})
                # Five devices' beats in one round; once answered, they send again,
                # 10 ms apart (each device's own pace).
                first = [
                    asyncio.ensure_future(client.simulate_post("/api/beat", headers=auth))
                    for auth in auths
                ]
                await asyncio.sleep(0.05)
                assert not any(f.done() for f in first), "answered before InfluxDB has them"
                assert [r.status_code for r in await asyncio.gather(*first)] == [200] * 5
                before = redis_calls()

                async def again(i: int, auth: dict[str, str]) -> int:
                    await asyncio.sleep(0.01 * i)
                    return (await client.simulate_post("/api/beat", headers=auth)).status_code

                assert (
                    await asyncio.gather(*(again(i, a) for i, a in enumerate(auths))) == [200] * 5
                )
                calls[regroup_ms] = redis_calls() - before
                stats = (await client.simulate_get("/api/stats")).json
        assert stats["total_beats"] == 10 * len(calls)
        assert [d["num_beats"] for d in stats["devices"][-5:]] == [2] * 5
    # Waiting for them: one round (a look-up, a write, a count: two Redis calls) for
    # the five. Without it, the first back goes alone and the others queue behind
    # its write: two rounds.
    assert calls == {0: 4, 100: 2}
    assert influx_db.count("beat") == 20


# method, path, headers, JSON body
Request = tuple[str, str, dict[str, str], Any]


@contextlib.contextmanager
def stopped(server: Server) -> Iterator[None]:
    """``server`` SIGSTOPped for the block (it keeps its connections open and answers
    nothing, as a server stuck in a long command or behind a link that drops packets
    would); SIGCONT at the end."""
    server.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)


def stopped_answers_503(url: str, server: Server, requests: list[Request], within: float) -> None:
    """With ``server`` :func:`stopped`, send each (method, path, headers, JSON body):
    each must answer 503 with a message and Retry-After in less than ``within``
    seconds."""
    with stopped(server):
        for method, path, headers, body in requests:
            started = time.monotonic()
            resp = httpx.request(method, f"{url}{path}", headers=headers, json=body, timeout=60)
            took = time.monotonic() - started
            assert resp.status_code == 503, (path, resp.status_code, resp.text)
            assert resp.json()["message"] and resp.headers["retry-after"], path
            assert took < within, (path, took)


def beats_come_back(url: str, beat: dict[str, str], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while httpx.post(f"{url}/api/beat", headers=beat).status_code != 200:
        assert time.monotonic() < deadline, "beats did not come back"
        time.sleep(0.2)


@pytest.mark.parametrize("hung", ["redis", "influxdb"])
async def test_a_hung_database_answers_503_within_one_time_out_and_nothing_is_lost(
    hung: str, stack: Stack, tmp_path: Path
) -> None:
    config = stack.config.replace(redis_timeout=2.0, influx_timeout=2.0)
    with run_service(config, tmp_path, workers=1) as svc:
        device, auth = setup_clients(svc.url)
        beat = {"Authorization": device}
        assert httpx.post(f"{svc.url}/api/beat", headers=beat).status_code == 200
        before = httpx.get(f"{svc.url}/api/stats").json()["total_beats"]
        snapshot = [{"windows": [{"processName": "code.exe", "isFocused": True}]}]
        by_database: dict[str, list[Request]] = {
            "redis": [("GET", "/api/stats", {}, None), ("GET", "/api/projects", auth, None)],
            "influxdb": [
                ("POST", "/api/snapshots", auth, snapshot),
                ("GET", "/api/times", auth, None),
            ],
        }
        requests = by_database[hung]
        server = stack.redis if hung == "redis" else stack.influxd
        # One time-out, not one per retry of a Redis command (four before).
        stopped_answers_503(
            svc.url, server, [("POST", "/api/beat", beat, None), *requests], 2 * 2.0 + 1
        )
        beats_come_back(svc.url, beat)
        after = httpx.get(f"{svc.url}/api/stats").json()["total_beats"]
    # The beat that got 503 is not counted; every counted one is stored.
    assert after == before + 1
    assert stack.count("beat") >= after


async def test_behind_a_hung_redis_a_request_waiting_for_a_connection_waits_one_time_out(
    stack: Stack, tmp_path: Path
) -> None:
    # One pooled connection and six requests at once: each request holding the
    # connection times out after 1 s, and the ones still waiting for it answer only
    # when their wait ends (with the former fixed 5-s wait, after 5.1 s). Bounded by
    # the command time-out, each answers within two.
    timeout = 1.0
    config = stack.config.replace(redis_timeout=timeout, redis_max_connections=1)
    with run_service(config, tmp_path, workers=1) as svc:
        assert httpx.get(f"{svc.url}/api/stats").status_code == 200

        async def stats() -> tuple[int, float]:
            started = time.monotonic()
            async with httpx.AsyncClient(timeout=60) as client:
                resp = await client.get(f"{svc.url}/api/stats")
            return resp.status_code, time.monotonic() - started

        with stopped(stack.redis):
            answers = await asyncio.gather(*(stats() for _ in range(6)))
        assert httpx.get(f"{svc.url}/api/stats").status_code == 200
    assert [status for status, _ in answers] == [503] * 6
    assert max(took for _, took in answers) < 2 * timeout + 1.0, answers


async def test_a_command_that_timed_out_is_not_sent_again_so_nothing_counts_twice(
    stack: Stack, tmp_path: Path
) -> None:
    # A script keeps Redis busy for 1.6 s: the page view's HINCRBY, sent meanwhile,
    # times out after 1 s on the client, yet Redis runs it once the script ends. A
    # retry would connect while Redis is still busy, get its handshake answered once
    # the script ends, and send the HINCRBY again: counted twice, one point stored.
    config = stack.config.replace(redis_timeout=1.0)
    busy = (
        "local t = redis.call('TIME') local stop = t[1] * 1000000 + t[2] + ARGV[1] "
        "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop return 1"
    )
    with run_service(config, tmp_path, workers=1) as svc:
        assert httpx.get(f"{svc.url}/").status_code == 200
        before = httpx.get(f"{svc.url}/api/stats").json()["num_visits"]
        stored = stack.count("visit")
        admin = redis.Redis(port=stack.redis_port, socket_timeout=10)
        script = threading.Thread(target=admin.eval, args=(busy, 0, 1_600_000))
        script.start()
        time.sleep(0.1)  # the script runs
        httpx.get(f"{svc.url}/", timeout=30)  # stored in InfluxDB, then counted
        script.join()
        admin.close()
        time.sleep(1)
        after = httpx.get(f"{svc.url}/api/stats").json()["num_visits"]
    assert stack.count("visit") - stored == 1
    # Once: by the command that timed out, which Redis ran late.
    assert after - before == 1

"""Benchmarks, run by hand: ``scripts/bench WHAT``, WHAT one of heartbeat, connections,
snapshots, times, streams, logs, transport, import, webapp.

Each starts its own influxd and redis-server on free ports in a temp dir, serves
the app with gunicorn (uvicorn workers) and drives it on 127.0.0.1 only, for a
bounded time. Prints a table; never part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import functools
import itertools
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from screenaware.config import Config  # noqa: E402
from screenaware.storage.localservers import (  # noqa: E402
    free_port,
    gunicorn_argv,
    start_influxd,
    start_redis,
    worker_pids,
)
from screenaware.web.headers import WORKER_PID_HEADER  # noqa: E402

T = TypeVar("T")

ADMIN = ("bench@example.org", "bench-password")


def start_gunicorn(
    app: str, env: dict[str, str], workers: int, port: int, log: Path
) -> subprocess.Popen[bytes]:
    argv = gunicorn_argv(app, workers=workers, bind=f"127.0.0.1:{port}")
    proc = subprocess.Popen(
        [*argv, "--chdir", str(ROOT / "scripts"), "--log-level", "warning"],
        # ROOT first; what the caller's PYTHONPATH adds (a work tree's sensor/) after.
        env={
            **env,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            time.sleep(1.0)  # let every worker finish booting
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not start, see {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass
class Stack:
    """A running service with its own databases."""

    url: str
    config: Config
    env: dict[str, str]
    tmp: Path
    influx_url: str
    redis_url: str
    service: subprocess.Popen[bytes]
    database_pids: dict[str, int]

    def influx_count(self, measurement: str) -> int:
        resp = httpx.get(
            f"{self.influx_url}/query",
            # measurement is one of our own constants, never input
            params={"db": self.config.influx_db, "q": f'SELECT count(*) FROM "{measurement}"'},  # noqa: S608
            timeout=300,  # a year of points on a busy machine
        ).json()["results"][0]
        if "series" not in resp:
            return 0
        return max(int(v) for v in resp["series"][0]["values"][0][1:])

    def stop_service(self, coalescer: str = "influx-group-commit") -> list[tuple[int, int]]:
        """Stop gunicorn; returns (items, calls) of each worker's named coalescer."""
        stop(self.service)
        return coalescer_counts(self.tmp / "service.log", coalescer)

    def processes(self, service: subprocess.Popen[bytes]) -> dict[str, list[int]]:
        """The pids of ``service``'s workers and of the databases, by group."""
        return {
            "workers": worker_pids(service.pid),
            **{name: [pid] for name, pid in self.database_pids.items()},
        }


def coalescer_counts(log: Path, coalescer: str) -> list[tuple[int, int]]:
    """(items, calls) of the named coalescer, as each worker of a stopped service logged."""
    return [
        (int(a), int(b))
        for a, b in re.findall(rf"{coalescer}: (\d+) items in (\d+) calls", log.read_text())
    ]


@contextlib.contextmanager
def stack(workers: int, **settings: Any) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="screenaware-bench-") as tmp_name:
        tmp = Path(tmp_name)
        influx_port, redis_port = free_port(), free_port()
        influxd = start_influxd(tmp / "influxdb", influx_port)
        redis_server = start_redis(tmp / "redis", redis_port)
        try:
            config = Config.load(
                environ={},
                influx_url=f"http://127.0.0.1:{influx_port}",
                redis_url=f"redis://127.0.0.1:{redis_port}/0",
                secret_key="bench-secret",  # noqa: S106 - a throwaway local instance
                admin_email=ADMIN[0],
                admin_password=ADMIN[1],
                workers=workers,
                data_dir=str(tmp / "var"),
                **settings,
            )
            env = {**os.environ, **config.as_environ()}
            port = free_port()
            service = start_gunicorn(
                "screenaware.asgi:app", env, workers, port, tmp / "service.log"
            )
            s = Stack(
                f"http://127.0.0.1:{port}",
                config,
                env,
                tmp,
                config.influx_url,
                config.redis_url,
                service,
                {"influxd": influxd.proc.pid, "redis-server": redis_server.proc.pid},
            )
            try:
                yield s
            finally:
                if service.poll() is None:
                    stop(service)
        finally:
            redis_server.stop()
            influxd.stop()


def stack_for(
    args: argparse.Namespace, **settings: Any
) -> contextlib.AbstractContextManager[Stack]:
    """:func:`stack` with the command line's workers and ``--racing``."""
    return stack(args.workers, balance_connections=not args.racing, **settings)


def wrk(
    url: str, headers: dict[str, str], connections: int, seconds: int, script: str, tmp: Path
) -> dict[str, Any]:
    lua = tmp / "bench.lua"
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lua.write_text("\n".join([*lines, script]))
    before = os.times()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout

    def latency(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]

    after = os.times()
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50": latency("50"),
        "p99": latency("99"),
        "requests": total,
        "non2xx": int(errors[1]) if errors else 0,
        "wrk_cpu": after.children_user
        + after.children_system
        - before.children_user
        - before.children_system,
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time (user + system) this process has used so far."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def cpu_used(processes: dict[str, list[int]], run: Callable[[], T]) -> tuple[T, dict[str, float]]:
    """Run ``run``; also returns the CPU seconds each process group used meanwhile,
    and this process's own as ``client``."""
    before = {name: sum(map(cpu_seconds, pids)) for name, pids in processes.items()}
    client = own_cpu_seconds()
    result = run()
    used = {name: sum(map(cpu_seconds, pids)) - before[name] for name, pids in processes.items()}
    used["client"] = own_cpu_seconds() - client
    return result, used


def measured(
    processes: dict[str, list[int]], run: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run ``run`` (a wrk call); also returns CPU µs per request of each process group."""
    result, used = cpu_used(processes, run)
    per_request = {
        name: seconds / result["requests"] * 1e6
        for name, seconds in used.items()
        if name != "client"  # waits for wrk, whose own CPU is counted instead
    }
    per_request["wrk"] = result["wrk_cpu"] / result["requests"] * 1e6
    return result, per_request


def table(rows: list[tuple[str, dict[str, Any], str]]) -> None:
    print("| target | req/s | items/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r, items in rows:
        print(
            f"| {name} | {r['rps']:,.0f} | {items} | {r['p50']:.2f} | {r['p99']:.2f} "
            f"| {int(r['non2xx'])} |"
        )


def bench_heartbeat(args: argparse.Namespace) -> None:
    """Durable beats, the same without access log and metrics, and a trivial
    responder, by turns for ``--rounds`` rounds (all three services run throughout),
    so that each ratio compares runs seconds apart on a shared, noisy machine."""
    beat = 'wrk.method = "POST"\n'
    names = ("durable beats (InfluxDB + Redis)", "same, access log and request metrics off",
             "same, regroup off (SCREENAWARE_BEAT_REGROUP_MS=0)",
             "trivial Falcon responder")  # fmt: skip
    trivial_name = names[-1]
    rounds: list[dict[str, dict[str, Any]]] = []
    cpu: dict[str, dict[str, float]] = {name: {} for name in names}
    with stack_for(args) as s:
        token = httpx.post(
            f"{s.url}/api/devices",
            json={"name": "bench"},
            headers={"Authorization": "bench-secret"},
        ).json()["token"]
        auth = {"Authorization": token}
        lean_port, apart_port, trivial_port = free_port(), free_port(), free_port()
        lean_env = {**s.env, "SCREENAWARE_ACCESS_LOG": "false", "SCREENAWARE_METRICS": "false"}
        lean = start_gunicorn(
            "screenaware.asgi:app", lean_env, args.workers, lean_port, s.tmp / "lean.log"
        )
        apart_env = {**s.env, "SCREENAWARE_BEAT_REGROUP_MS": "0"}
        apart = start_gunicorn(
            "screenaware.asgi:app", apart_env, args.workers, apart_port, s.tmp / "apart.log"
        )
        trivial = start_gunicorn(
            "bench_trivial:app", s.env, args.workers, trivial_port, s.tmp / "t.log"
        )
        targets: tuple[tuple[str, subprocess.Popen[bytes], str, dict[str, str]], ...] = (
            (names[0], s.service, f"{s.url}/api/beat", auth),
            (names[1], lean, f"http://127.0.0.1:{lean_port}/api/beat", auth),
            (names[2], apart, f"http://127.0.0.1:{apart_port}/api/beat", auth),
            (names[3], trivial, f"http://127.0.0.1:{trivial_port}/api/beat", {}),
        )
        try:
            counted_before = httpx.get(f"{s.url}/api/stats").json()["total_beats"]
            answered = 0
            for _, _, url, headers in targets:
                warm = wrk(url, headers, args.connections, 2, beat, s.tmp)
                answered += warm["requests"] - warm["non2xx"] if headers else 0
            for _ in range(args.rounds):
                this: dict[str, dict[str, Any]] = {}
                for name, service, url, headers in targets:
                    this[name], used = measured(
                        s.processes(service),
                        functools.partial(
                            wrk, url, headers, args.connections, args.seconds, beat, s.tmp
                        ),
                    )
                    if headers:
                        answered += this[name]["requests"] - this[name]["non2xx"]
                    for n, micros in used.items():
                        cpu[name][n] = cpu[name].get(n, 0.0) + micros / args.rounds
                rounds.append(this)
            time.sleep(2)
            counted = httpx.get(f"{s.url}/api/stats").json()["total_beats"] - counted_before
            stored = s.influx_count("beat") - counted_before
        finally:
            stop(lean)
            stop(apart)
            stop(trivial)
        batches = s.stop_service("hb-beats") + coalescer_counts(s.tmp / "lean.log", "hb-beats")
        apart_batches = coalescer_counts(s.tmp / "apart.log", "hb-beats")

    print(
        f"\nPOST /api/beat, {args.connections} connections, {args.seconds} s per row, "
        f"{args.rounds} rounds by turns, {args.workers} workers, wrk -t2, "
        f"all on this machine ({os.cpu_count()} cores)\n"
    )
    print("| round | target | req/s | p50 ms | p99 ms | non-2xx | ratio to trivial |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    ratios: dict[str, list[float]] = {name: [] for name in names[:-1]}
    for number, this in enumerate(rounds, 1):
        for name in names:
            r = this[name]
            ratio = r["rps"] / this[trivial_name]["rps"]
            if name in ratios:
                ratios[name].append(ratio)
            print(
                f"| {number} | {name} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} "
                f"| {r['non2xx']} | {ratio:.0%} |"
            )
    print(
        f"\nratio beats / trivial, median of {args.rounds} rounds: "
        f"{statistics.median(ratios[names[0]]):.0%} "
        f"(lean: {statistics.median(ratios[names[1]]):.0%}, "
        f"regroup off: {statistics.median(ratios[names[2]]):.0%})"
    )
    for label, counts in (("durable and lean", batches), ("regroup off", apart_batches)):
        points, writes = (sum(b[i] for b in counts) for i in (0, 1))
        print(
            f"batching, {label}: {points} beats in {writes} rounds of look-up, InfluxDB "
            f"write and counter update ({points / max(writes, 1):.1f} beats per round)"
        )
    print(
        f"beats answered by wrk: {answered}, stored in InfluxDB: {stored}, "
        f"counted in Redis: {counted} (each wrk run ends with up to {args.connections} beats "
        "in flight: stored, not counted by wrk)"
    )
    columns = ["workers", *s.database_pids, "wrk"]
    print("\nCPU time per request, µs, mean of the rounds (all processes share the cores):\n")
    print("| target | " + " | ".join(columns) + " | total |")
    print("|---|" + "---:|" * (len(columns) + 1))
    for name, used in cpu.items():
        cells = " | ".join(f"{used.get(n, 0.0):.0f}" for n in columns)
        print(f"| {name} | {cells} | {sum(used.values()):.0f} |")


def bench_connections(args: argparse.Namespace) -> None:
    """The trivial responder under two masters, connections spread by the gate and
    racing, by turns: keep-alive connections and a new connection per request."""
    with tempfile.TemporaryDirectory(prefix="screenaware-bench-") as tmp_name:
        tmp = Path(tmp_name)
        masters = {}
        for name, balanced in (("gate", "true"), ("racing", "false")):
            port = free_port()
            env = {**os.environ, "SCREENAWARE_BALANCE_CONNECTIONS": balanced}
            log = tmp / f"{name}.log"
            masters[name] = (
                start_gunicorn("bench_trivial:app", env, args.workers, port, log),
                port,
            )
        rows = []
        try:
            for _, port in masters.values():  # warm-up, not timed
                wrk(f"http://127.0.0.1:{port}/api/beat", {}, args.connections, 2,
                    'wrk.method = "POST"\n', tmp)  # fmt: skip
            for kind, headers in (("keep-alive", {}), ("new connection per request",
                                                      {"Connection": "close"})):  # fmt: skip
                for turn in range(args.rounds):
                    for name, (proc, port) in masters.items():
                        r, used = measured(
                            {"workers": worker_pids(proc.pid)},
                            functools.partial(
                                wrk, f"http://127.0.0.1:{port}/api/beat", headers,
                                args.connections, args.seconds, 'wrk.method = "POST"\n', tmp,
                            ),
                        )  # fmt: skip
                        rows.append((kind, turn + 1, name, r, used["workers"]))
        finally:
            for proc, _ in masters.values():
                stop(proc)
    print(
        f"\nTrivial responder, {args.connections} connections, {args.seconds} s per row, "
        f"{args.workers} workers, wrk -t2, by turns ({os.cpu_count()} cores)\n"
    )
    print("| connections | round | accept | req/s | p99 ms | worker CPU µs per request |")
    print("|---|---:|---|---:|---:|---:|")
    for kind, turn, name, r, worker_us in rows:
        print(f"| {kind} | {turn} | {name} | {r['rps']:,.0f} | {r['p99']:.2f} | {worker_us:.0f} |")


def login(url: str) -> dict[str, str]:
    token = httpx.post(
        f"{url}/api/auth/local", json={"email": ADMIN[0], "password": ADMIN[1]}
    ).json()["token"]
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


# A snapshot of 5 windows, as a Lua string builder: every snapshot gets its own
# millisecond (thread id + counter), so none replaces another in InfluxDB. Each wrk
# thread is one device; they alternate every 10 ms. With DURATION = 10 they never
# overlap; with 15 each snapshot overlaps the other device's by 5 ms at each end, so
# half of the time is covered twice and the one-timeline rule trims every snapshot.
SNAPSHOT_LUA = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
local function snapshot()
  counter = counter + 1
  local ms = (counter * 2 + id) * 10
  local secs = BASE + math.floor(ms / 1000)
  local stamp = os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string.format(".%03dZ", ms % 1000)
  return '{"timeTaken":"' .. stamp .. '","durationMs":' .. DURATION .. ',"windows":[' ..
    '{"processName":"code.exe","title":"influxdb tuning - main.py - Visual Studio Code",' ..
    '"isFocused":true,"screenPercentage":0.5,"visiblePercentage":1.0,' ..
    '"tags":{"influxdb":3,"python":1},' ..
    '"documents":[{"path":"C:\\\\work\\\\screenaware\\\\main.py","title":"main.py"}]},' ..
    '{"processName":"chrome.exe","title":"InfluxQL reference - Google Chrome",' ..
    '"screenPercentage":0.5,"visiblePercentage":0.6,' ..
    '"documents":[{"path":"https://docs.influxdata.com/influxdb/v1/query_language/",' ..
    '"title":"InfluxQL reference"}]},' ..
    '{"processName":"slack.exe","title":"Slack - general","screenPercentage":0.3,' ..
    '"visiblePercentage":0.1},' ..
    '{"processName":"outlook.exe","title":"Inbox - ann@example.org - Outlook",' ..
    '"screenPercentage":0.4,"visiblePercentage":0.0},' ..
    '{"processName":"explorer.exe","title":"Downloads","screenPercentage":0.2,' ..
    '"visiblePercentage":0.05}]}'
end
wrk.method = "POST"
request = function()
  local parts = {}
  for i = 1, BATCH do parts[i] = snapshot() end
  local body = BATCH == 1 and parts[1] or ("[" .. table.concat(parts, ",") .. "]")
  return wrk.format(nil, nil, nil, body)
end
"""


def bench_snapshots(args: argparse.Namespace) -> None:
    results = []
    # The answering worker's pid on every answer: the ingest rows show how the
    # client's connections spread over the workers.
    with stack_for(args, worker_pid_header=True) as s:
        headers = login(s.url)
        httpx.post(
            f"{s.url}/api/projects",
            json={"name": "ScreenAware", "keywords": ["influxdb"], "localPaths": ["C:\\work"]},
            headers=headers,
        )
        runs = ((100, 8, 10, ""), (1, 32, 10, ""), (100, 8, 15, ", 2 devices overlapping half"))
        for run, (batch, connections, duration, label) in enumerate(runs if args.seconds else ()):
            # Each run (and its warm-up) gets its own past day, so no snapshot of
            # one lands on the time of another.
            base = int(time.time()) - (20 - 3 * run) * 86400
            script = f"BATCH = {batch}\nBASE = {base}\nDURATION = {duration}\n" + SNAPSHOT_LUA
            url = f"{s.url}/api/snapshots"
            warm = script.replace(f"BASE = {base}", f"BASE = {base + 86400}")
            wrk(url, headers, connections, 2, warm, s.tmp)
            before = s.influx_count("activity")
            r = wrk(url, headers, connections, args.seconds, script, s.tmp)
            time.sleep(2)
            stored = s.influx_count("activity") - before
            name = f"arrays of {batch}, {connections} connections{label}"
            results.append((name, r, batch, stored))
        peer = ingest_beside_aw_server(s, headers, args.days) if args.days else []
        batches = s.stop_service()
    if peer:
        print(
            f"\nBatch ingest beside aw-server, {args.days} days x 8 h of 10 s slots, "
            "arrays of 500, the same events\n"
        )
        print(
            "| target | items | seconds | items/s | CPU µs per item: server | influxd "
            "| redis-server | client | requests per worker |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"
        )
        for name, items, took, used, served in peer:
            server = used.get("workers", used.get("aw-server", 0.0))
            spread = " / ".join(str(n) for n in sorted(served.values(), reverse=True))
            print(
                f"| {name} | {items:,} | {took:.2f} | {items / took:,.0f} | {server:.0f} "
                f"| {used.get('influxd', 0):.0f} | {used.get('redis-server', 0):.0f} "
                f"| {used['client']:.0f} | {spread or '-'} |"
            )
    if not results:
        return
    print(
        f"\nPOST /api/snapshots (5 windows each), {args.seconds} s per row, "
        f"{args.workers} workers, wrk -t2, all on this machine ({os.cpu_count()} cores)\n"
    )
    table([(name, r, f"{r['rps'] * batch:,.0f}") for name, r, batch, _ in results])
    print()
    for name, r, batch, stored in results:
        print(
            f"{name}: {int(r['requests']) * batch} snapshots answered, {stored} activities stored"
        )
    points, writes = (sum(b[i] for b in batches) for i in (0, 1))
    print(f"group commit: {points} requests in {writes} InfluxDB writes")


DAYS, PER_DAY = 30, 8 * 360  # 8 hours of 10-second snapshots a day

# One ingest row: its name, items, seconds, CPU µs per item by process, requests per worker.
IngestRow = tuple[str, int, float, dict[str, float], collections.Counter[str]]


def ingest_beside_aw_server(s: Stack, headers: dict[str, str], days: int) -> list[IngestRow]:
    """Issue 18's row: the same window events as ActivityWatch events (aw-server's
    own ``POST /api/0/buckets/ID/events``) and as snapshots, arrays of 500, with one
    request in flight and (ours) four. Each on days no other row used.

    Each row also counts the requests each worker answered: a client's keep-alive
    connections opened at once mostly land on one worker (the first one awake
    accepts every connection waiting), and then four in flight run on one core."""
    apps = ["code", "chrome", "slack", "outlook", "winword", "vlc"]

    def slots(first: dt.datetime) -> Iterator[tuple[dt.datetime, str]]:
        for day in range(days):
            for i in range(PER_DAY):
                yield first + dt.timedelta(days=day, seconds=10 * i), apps[(i // 30) % len(apps)]

    def chunks(items: list[Any]) -> list[list[Any]]:
        return [items[i : i + 500] for i in range(0, len(items), 500)]

    def stamp(moment: dt.datetime) -> str:
        return moment.isoformat().replace("+00:00", "Z")

    async def post_all(
        base: str,
        path: str,
        bodies: list[list[Any]],
        in_flight: int,
        auth: dict[str, str],
        served: collections.Counter[str],
    ) -> float:
        queue = list(reversed(bodies))
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=120) as client:

            async def worker() -> None:
                while queue:
                    answer = await client.post(path, json=queue.pop())
                    answer.raise_for_status()
                    if WORKER_PID_HEADER in answer.headers:
                        served[answer.headers[WORKER_PID_HEADER]] += 1

            await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - started

    def timed(
        processes: dict[str, list[int]], run: Callable[[], float], items: int
    ) -> tuple[float, dict[str, float]]:
        """Seconds ``run`` took, and CPU µs per item of each process and of this client."""
        took, used = cpu_used(processes, run)
        return took, {name: seconds / items * 1e6 for name, seconds in used.items()}

    ours = s.processes(s.service)
    rows: list[IngestRow] = []
    # The days before today, inside the coverage horizon: as a sensor catching up.
    first = dt.datetime.now(dt.UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    first -= dt.timedelta(days=days)
    # First a warm-up, not timed, for both servers alike: every 60th event, two in
    # flight, so that each worker has served a batch and InfluxDB's shards of these
    # days exist (the first of the timed rows would otherwise pay for both).
    for label, in_flight, every in (("warm-up", 2, 60), ("1", 1, 1), ("4", 4, 1)):
        # A user of its own per row: each starts from an empty timeline.
        email, password = f"ingest-{label}@example.org", "bench-password-1"
        httpx.post(
            f"{s.url}/api/users", json={"email": email, "password": password}, headers=headers
        ).raise_for_status()
        token = httpx.post(
            f"{s.url}/api/auth/local", json={"email": email, "password": password}
        ).json()["token"]
        snapshots = [
            {"timeTaken": stamp(t + dt.timedelta(seconds=10)), "durationMs": 10000,
             "windows": [{"processName": f"{app}.exe", "title": f"{app} work", "isFocused": True}]}
            for t, app in itertools.islice(slots(first), 0, None, every)
        ]  # fmt: skip
        auth = {"Authorization": f"Bearer {token}"}
        bodies = chunks(snapshots)
        served: collections.Counter[str] = collections.Counter()
        took, used = timed(
            ours,
            functools.partial(
                asyncio.run, post_all(s.url, "/api/snapshots", bodies, in_flight, auth, served)
            ),
            len(snapshots),
        )
        if label != "warm-up":
            rows.append((f"ScreenAware, {in_flight} in flight", len(snapshots), took, used, served))
    with aw_server(s.tmp) as (aw, aw_pid):
        for bucket, every in (("bench-warm-up", 60), ("bench-window", 1)):
            httpx.post(
                f"{aw}/api/0/buckets/{bucket}",
                json={"client": "bench", "type": "currentwindow", "hostname": "bench"},
            ).raise_for_status()
            events = [
                {"timestamp": stamp(t), "duration": 10.0,
                 "data": {"app": f"{app}.exe", "title": f"{app} work"}}
                for t, app in itertools.islice(slots(first), 0, None, every)
            ]  # fmt: skip
            served = collections.Counter()  # aw-server has one process
            took, used = timed(
                {"aw-server": [aw_pid]},
                functools.partial(
                    asyncio.run,
                    post_all(aw, f"/api/0/buckets/{bucket}/events", chunks(events), 1, {}, served),
                ),
                len(events),
            )
        rows.insert(0, ("aw-server 0.12, 1 in flight", len(events), took, used, served))
    return rows


def load_month(
    s: Stack, headers: dict[str, str], shift_s: int = 0, days: int = DAYS
) -> tuple[dt.datetime, float]:
    """The times/streams data set: ``days`` x 8 h of 10 s snapshots, through the API.

    ``shift_s`` moves every snapshot later: a second device whose snapshots overlap
    the first one's. Returns the first day (08:00 UTC) and the seconds the load took.
    """
    per_day = PER_DAY
    apps = ["code", "chrome", "slack", "outlook", "winword", "vlc"]
    first_day = dt.datetime.now(dt.UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    first_day -= dt.timedelta(days=days)

    def batches() -> Iterator[list[dict[str, Any]]]:
        batch: list[dict[str, Any]] = []
        for day in range(days):
            for i in range(per_day):
                end = first_day + dt.timedelta(days=day, seconds=10 * (i + 1) + shift_s)
                app = apps[(i // 30) % len(apps)]
                batch.append(
                    {
                        "timeTaken": end.isoformat().replace("+00:00", "Z"),
                        "windows": [
                            {
                                "processName": f"{app}.exe",
                                "title": f"{app} work",
                                "isFocused": True,
                            }
                        ],
                    }
                )
                if len(batch) == 1000:
                    yield batch
                    batch = []
        if batch:
            yield batch

    async def load() -> float:
        started = time.perf_counter()
        queue = list(batches())
        async with httpx.AsyncClient(base_url=s.url, headers=headers, timeout=60) as client:

            async def worker() -> None:
                while queue:
                    resp = await client.post("/api/snapshots", json=queue.pop())
                    resp.raise_for_status()

            await asyncio.gather(*(worker() for _ in range(4)))
        return time.perf_counter() - started

    return first_day, asyncio.run(load())


# Cached answers are a few ms: more samples than cold ones for a steady median.
CACHED_RUNS = 30


def bench_times(args: argparse.Namespace) -> None:
    ranges = sorted({int(d) for d in args.days.split(",")})
    days, per_day = ranges[-1], PER_DAY
    with stack_for(args) as s:
        headers = login(s.url)
        keyword_projects(s.url, headers)
        first_day, elapsed = load_month(s, headers, days=days)
        total = days * per_day
        stored = s.influx_count("activity")
        client = redis.Redis.from_url(s.redis_url)
        # One keep-alive connection, as a dashboard has: time the server, not connecting.
        http = httpx.Client(base_url=s.url, headers=headers, timeout=120)
        http.get("/api/times", params={"tz": "UTC"}).raise_for_status()
        end = (first_day + dt.timedelta(days=days)).isoformat().replace("+00:00", "Z")

        def params(last_days: int, group: str, resolution: str) -> dict[str, str]:
            start = first_day.replace(hour=0) + dt.timedelta(days=days - last_days)
            return {"groupBy": group, "resolution": resolution, "tz": "UTC",
                    "start": start.isoformat().replace("+00:00", "Z"), "end": end}  # fmt: skip

        def timed(query: dict[str, str], expected: int) -> float:
            started = time.perf_counter()
            resp = http.get("/api/times", params=query)
            took = (time.perf_counter() - started) * 1000  # the answer, not our parsing of it
            resp.raise_for_status()
            assert resp.json()["sum"] == expected, resp.json()["sum"]
            return took

        def floor_sample() -> float:
            # The least an authenticated request takes here (token check, user read,
            # one small Redis read): what a cached answer cannot go below.
            started = time.perf_counter()
            http.get("/api/applications").raise_for_status()
            return (time.perf_counter() - started) * 1000

        def cold_and_cached(query: dict[str, str], expected: int) -> tuple[float, float, float]:
            cold = []
            for _ in range(5):
                for key in client.scan_iter("{u:*}:tcache:*"):
                    client.delete(key)
                cold.append(timed(query, expected))
            # Cached answers and the floor by turns: the same moments of a noisy machine.
            cached, floor = [], []
            for _ in range(CACHED_RUNS):
                cached.append(timed(query, expected))
                floor.append(floor_sample())
            return statistics.median(cold), statistics.median(cached), statistics.median(floor)

        def timed_rows() -> list[tuple[int, str, float, float, float]]:
            rows = []
            for last in ranges:
                for group, resolution in (("applicationUuid", "day"), ("projectUuid", "month")):
                    cold, cached, floor = cold_and_cached(
                        params(last, group, resolution), last * per_day * 10000
                    )
                    rows.append((last, f"by {group[:-4]}, by {resolution}", cold, cached, floor))
            return rows

        # The first answer over the whole range after the load: every day is new to
        # the rollup (read raw, then rolled up).
        first = timed(params(days, "applicationUuid", "day"), total * 10000)
        rows = timed_rows()
        raw_rows: list[tuple[int, str, float, float, float]] = []
        if args.raw_too:
            # The same data, the same machine, the rollup off: every answer sums the
            # raw ledger (the code before the rollup, with today's answer cache).
            stop(s.service)
            port = int(s.url.rsplit(":", 1)[1])
            s.service = start_gunicorn(
                "screenaware.asgi:app",
                {**s.env, "SCREENAWARE_TIMES_ROLLUP": "false"},
                args.workers,
                port,
                s.tmp / "service-raw.log",
            )
            http.close()
            http = httpx.Client(base_url=s.url, headers=headers, timeout=120)
            raw_rows = timed_rows()
        overlap: tuple[float, float] | None = None
        if days <= 31:
            # A second device, 5 s behind: each of its snapshots takes half of one of
            # the first device's (the one-timeline rule), and the union grows 5 s a day.
            _, elapsed_b = load_month(s, headers, shift_s=5, days=days)
            query = params(days, "applicationUuid", "day")
            overlap = (total / elapsed_b, cold_and_cached(query, total * 10000 + days * 5000)[0])
        stored_b = s.influx_count("activity") - stored
        s.stop_service()
    print(f"\n/times over {days} days x 8 h of 10 s snapshots ({total:,} snapshots, one user)\n")
    print(
        f"ingest through the API (arrays of 1000, 4 clients): {total / elapsed:,.0f} snapshots/s\n"
    )
    print(f"first /times over all {days} days after the load (rolls them up): {first:.1f} ms\n")
    floor_note = (
        f"floor: an authenticated GET /api/applications, p50 of {CACHED_RUNS} taken by turns "
        "with the cached ones (the least any authenticated answer takes at that moment)"
    )
    if raw_rows:
        print(f"| range | grouping | cold p50 of 5, ms | cached p50 of {CACHED_RUNS}, ms "
              "| floor, ms | raw: cold | raw: cached |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|")
        for (last, name, cold, cached, floor), (_, _, raw_cold, raw_cached, _) in zip(
            rows, raw_rows, strict=True
        ):
            print(f"| last {last} days | {name} | {cold:.1f} | {cached:.1f} | {floor:.1f} "
                  f"| {raw_cold:.1f} | {raw_cached:.1f} |")  # fmt: skip
    else:
        print(f"| range | grouping | cold p50 of 5, ms | cached p50 of {CACHED_RUNS}, ms "
              "| floor, ms |")  # fmt: skip
        print("|---|---|---:|---:|---:|")
        for last, name, cold, cached, floor in rows:
            print(f"| last {last} days | {name} | {cold:.1f} | {cached:.1f} | {floor:.1f} |")
    print(f"\n{floor_note}")
    if overlap is not None:
        rate, cold = overlap
        print(f"\na second device overlapping half of each snapshot: ingest {rate:,.0f} "
              f"snapshots/s, then /times by application by day cold {cold:.1f} ms")  # fmt: skip
    print(f"\nactivities stored: {stored:,}, then {stored_b:,} more (second device + trims)")


def keyword_projects(url: str, headers: dict[str, str]) -> None:
    """Projects named and keyed by the benchmark's applications (several real streams)."""
    for name in ("code", "chrome", "slack"):
        httpx.post(
            f"{url}/api/projects", json={"name": name, "keywords": [name]}, headers=headers
        ).raise_for_status()


def bench_streams(args: argparse.Namespace) -> None:
    with stack_for(args, streams_rollup=args.rollup) as s:
        headers = login(s.url)
        # Projects by keyword, so the month has several projects and real streams.
        keyword_projects(s.url, headers)
        first_day, _ = load_month(s, headers, days=args.days)
        client = redis.Redis.from_url(s.redis_url)
        http = httpx.Client(base_url=s.url, headers=headers, timeout=60)
        http.get("/api/streams", params={"tz": "UTC"}).raise_for_status()
        last = first_day + dt.timedelta(days=args.days - 1)
        month = min(args.days, 31)
        ranges = {
            f"{month} days": (
                last.replace(hour=0) - dt.timedelta(days=month - 1),
                last.replace(hour=23, minute=59, second=59),
            ),
            "one day": (last.replace(hour=0), last.replace(hour=23, minute=59, second=59)),
        }
        rows = []
        first_ms = 0.0
        for name, (start, end) in ranges.items():
            params = {
                "start": start.isoformat().replace("+00:00", "Z"),
                "end": end.isoformat().replace("+00:00", "Z"),
                "tz": "UTC",
            }

            def timed(params: dict[str, str] = params) -> tuple[float, int]:
                started = time.perf_counter()
                resp = http.get("/api/streams", params=params)
                resp.raise_for_status()
                return (time.perf_counter() - started) * 1000, len(resp.json())

            if not first_ms:
                # The first query after the load: every day is read raw (and, with
                # the rollup, rolled up on the way).
                first_ms = timed()[0]
            cold = []
            for _ in range(5):
                # Cold: no cached answer (a user's keys are {u:<uuid>}:sess:...).
                for key in client.scan_iter("*:sess:*"):
                    client.delete(key)
                cold.append(timed()[0])
            cached = [timed() for _ in range(5)]
            rows.append((name, statistics.median(cold), statistics.median(c for c, _ in cached),
                         cached[0][1]))  # fmt: skip
        s.stop_service()
    rollup = "runs rollup" if args.rollup else "raw days (SCREENAWARE_STREAMS_ROLLUP=false)"
    print(f"\nGET /api/streams on {args.days} days x 8 h of 10 s snapshots (one user, {rollup})\n")
    print("| range | streams | cold p50 ms | cached p50 ms |")
    print("|---|---:|---:|---:|")
    for name, cold_ms, cached_ms, count in rows:
        print(f"| {name} | {count} | {cold_ms:.1f} | {cached_ms:.1f} |")
    print(f"\nfirst {month}-day query after the load: {first_ms:.1f} ms")


LOG_LUA = r"""
wrk.method = "POST"
local point = '{"type":"sensor_scheduler_snapshotSend","level":"info","data":' ..
  '{"origin":"sensor-win","originId":"3f2a","version":"0.4.17","message":"ok",' ..
  '"details":"snapshot sent in 120 ms"}}'
local parts = {}
for i = 1, 100 do parts[i] = point end
wrk.body = "[" .. table.concat(parts, ",") .. "]"
"""


def bench_logs(args: argparse.Namespace) -> None:
    with stack_for(args) as s:
        headers = login(s.url)
        url = f"{s.url}/api/logs"
        wrk(url, headers, 8, 2, LOG_LUA, s.tmp)  # warm-up
        before = s.influx_count("log")
        ingest = wrk(url, headers, 8, args.seconds, LOG_LUA, s.tmp)
        time.sleep(2)
        stored = s.influx_count("log") - before

        # A million points over two days of one type, written straight to InfluxDB
        # (the API's ingest rate is measured above).
        end = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start = end - dt.timedelta(days=2)
        step_ns = int((end - start).total_seconds() * 1e9) // 1_000_000
        first_ns = int(start.timestamp() * 1e9)
        with httpx.Client(base_url=s.influx_url, timeout=120) as influx:
            for chunk in range(0, 1_000_000, 50_000):
                lines = "\n".join(
                    f'log,type=bench_grouped,level=info,origin=sensor-win uuid="u{i}",'
                    f'message="ok",version="0.4.17",deleted=false {first_ns + i * step_ns}'
                    for i in range(chunk, chunk + 50_000)
                )
                influx.post(
                    "/write", params={"db": s.config.influx_db, "precision": "ns"}, content=lines
                ).raise_for_status()
        params = {
            "structure": "grouped",
            "start": start.isoformat().replace("+00:00", "Z"),
            "end": end.isoformat().replace("+00:00", "Z"),
        }
        http = httpx.Client(base_url=s.url, headers=headers, timeout=60)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            resp = http.get("/api/logs/bench_grouped", params=params)
            timings.append((time.perf_counter() - started) * 1000)
            resp.raise_for_status()
        buckets = resp.json()
        s.stop_service()
    print(
        f"\nPOST /api/logs in arrays of 100, 8 connections, {args.seconds} s, "
        f"{args.workers} workers, wrk -t2 ({os.cpu_count()} cores)\n"
    )
    table([("log points, arrays of 100", ingest, f"{ingest['rps'] * 100:,.0f}")])
    print(f"\npoints answered: {int(ingest['requests']) * 100}, stored: {stored}")
    print(
        f"GET /api/logs/:type?structure=grouped over 2 days, 1,000,000 points: "
        f"p50 of 5 = {statistics.median(timings):.0f} ms "
        f"({len(buckets)} buckets, {sum(b['count'] for b in buckets):,} counted)"
    )


# One activity-like point; 5,000 of them (about 1.1 MB) are one /write.
def _activity_lines(count: int, first_ns: int, measurement: str = "activity") -> str:
    apps = ["code", "chrome", "slack", "outlook", "winword", "vlc"]
    return "\n".join(
        f"{measurement},user=u1,device=d{i % 3},app={apps[i % 6]}.exe "
        f'title="{apps[i % 6]} - document {i % 97} - a window title of usual length",'
        f'doc="C:\\\\work\\\\project\\\\file{i % 89}.py",focused=true,visible=0.75,'
        f"screen=0.5,duration=10000i {first_ns + i * 10_000_000_000}"
        for i in range(count)
    )


def bench_transport(args: argparse.Namespace) -> None:
    """CPU time per call of the InfluxDB transport: http11.HTTPClient against aiohttp."""
    import aiohttp
    import uvloop

    with tempfile.TemporaryDirectory(prefix="screenaware-bench-") as tmp_name:
        port = free_port()
        influxd = start_influxd(Path(tmp_name) / "influxdb", port)
        try:
            # uvloop, as in the service's uvicorn workers.
            rows = uvloop.run(_transport_rounds(f"http://127.0.0.1:{port}", args, aiohttp))
        finally:
            influxd.stop()
    print(
        f"\nInfluxDB transport, CPU time of the client process per call (time.process_time), "
        f"{args.rounds} alternating rounds of {args.writes} writes ({args.writes * 5} of 7 "
        f"points) and {args.queries} queries per client, uvloop, influxd on 127.0.0.1 "
        f"({os.cpu_count()} cores, shared)\n"
    )
    print("| call | client | min µs | median µs | median / http11 |")
    print("|---|---|---:|---:|---:|")
    for call, per_client in rows.items():
        base = statistics.median(per_client["http11"])
        for name, samples in per_client.items():
            print(
                f"| {call} | {name} | {min(samples):,.0f} | {statistics.median(samples):,.0f} "
                f"| {statistics.median(samples) / base:.2f} |"
            )


async def _transport_rounds(
    url: str, args: argparse.Namespace, aiohttp: Any
) -> dict[str, dict[str, list[float]]]:
    import gc

    import yarl

    from screenaware.storage.http11 import HTTPClient

    db = "bench"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    write_target = f"/write?db={db}&precision=ns"
    query_target = "/query?" + urllib.parse.urlencode(  # noqa: S608 - a constant
        {"db": db, "q": "SELECT * FROM big", "epoch": "ns"}
    )
    own = HTTPClient(url, timeout=120, connect_timeout=3)
    # aiohttp as the service would configure it: one pooled session, keep-alive,
    # its C parser (aiohttp._http_parser), URLs parsed once.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=120),
        # The same request as http11's: without Accept-Encoding influxd answers the
        # plain chunked JSON (with it, gzip: less to read, far more CPU in influxd).
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
        auto_decompress=False,
    )
    write_url = yarl.URL(url + write_target, encoded=True)
    query_url = yarl.URL(url + query_target, encoded=True)

    async def own_call(method: str, target: str, body: bytes) -> tuple[int, int]:
        resp = await own.request(method, target, body, form if target == "/query" else None)
        return resp.status, len(resp.body)

    async def aiohttp_call(method: str, target: str, body: bytes) -> tuple[int, int]:
        target_url = write_url if target.startswith("/write") else query_url
        async with session.request(method, target_url, data=body or None) as resp:
            data = await resp.read()
            return resp.status, len(data)

    clients = {"http11": own_call, "aiohttp": aiohttp_call}
    try:
        await own.request("POST", "/query", f"q=CREATE DATABASE {db}".encode(), form)
        # The query answer: SELECT * over enough points for about 30 MB of JSON.
        first_ns = 1_700_000_000_000_000_000
        for start in range(0, args.query_points, 5000):
            lines = _activity_lines(5000, first_ns + start * 10_000_000_000, "big")
            assert (await own.request("POST", write_target, lines.encode())).status == 204
        write_body = _activity_lines(5000, first_ns - 10**15).encode()
        small_body = _activity_lines(7, first_ns - 2 * 10**15).encode()
        calls = {
            # The heartbeat's usual batch: the per-request overhead alone.
            "POST /write, 7 points": ("POST", write_target, small_body, args.writes * 5, (204, 0)),
            f"POST /write, 5,000 points ({len(write_body) / 1e6:.1f} MB)": (
                "POST",
                write_target,
                write_body,
                args.writes,
                (204, 0),
            ),
            "GET /query, chunked answer": ("GET", query_target, b"", args.queries, None),
        }
        rows: dict[str, dict[str, list[float]]] = {}
        for call, (method, target, body, count, expected) in calls.items():
            seen = {await c(method, target, body) for c in clients.values() for _ in range(2)}
            assert len(seen) == 1, seen  # both clients get the same answer
            status, size = seen.pop()
            assert expected in (None, (status, size)), (status, size)
            assert status in (200, 204), status
            if target == query_target:
                call = f"GET /query, chunked answer ({size / 1e6:.1f} MB)"
            rows[call] = {name: [] for name in clients}
            for round_ in range(args.rounds):
                # Alternate who goes first, so neither always meets a warmer machine.
                order = list(clients) if round_ % 2 == 0 else list(reversed(clients))
                for name in order:
                    call_fn = clients[name]
                    await call_fn(method, target, body)  # warm the connection
                    gc.collect()
                    started = time.process_time()
                    for _ in range(count):
                        await call_fn(method, target, body)
                    used = time.process_time() - started
                    rows[call][name].append(used / count * 1e6)
        return rows
    finally:
        await own.close()
        await session.close()


def activitywatch_month(first: dt.datetime) -> dict[str, Any]:
    """A 30-day aw-server export: 8 h a day, a window event every 30 s, afk
    breaks, and a browser tab for the browser's events."""
    host = "benchhost"
    windows, afk, web = [], [], []
    apps = [("code", "main.py - Code"), ("Google-chrome", "Docs - Google Chrome"),
            ("slack", "Slack"), ("Google-chrome", "Issue - Google Chrome")]  # fmt: skip
    for day in range(DAYS):
        start = first + dt.timedelta(days=day)
        for i in range(8 * 120):
            app, title = apps[(i // 7) % len(apps)]
            at = start + dt.timedelta(seconds=30 * i)
            windows.append({"timestamp": at.isoformat(), "duration": 30.0,
                            "data": {"app": app, "title": title}})  # fmt: skip
            if app == "Google-chrome":
                web.append({"timestamp": at.isoformat(), "duration": 30.0,
                            "data": {"url": f"https://example.org/{i % 50}", "title": title,
                                     "audible": False, "incognito": False}})  # fmt: skip
        for hour in range(8):  # 50 minutes at the desk, 10 away, every hour
            at = start + dt.timedelta(hours=hour)
            afk.append({"timestamp": at.isoformat(), "duration": 3000.0,
                        "data": {"status": "not-afk"}})  # fmt: skip
            afk.append({"timestamp": (at + dt.timedelta(minutes=50)).isoformat(),
                        "duration": 600.0, "data": {"status": "afk"}})  # fmt: skip

    def bucket(bid: str, kind: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": bid, "created": first.isoformat(), "name": None, "type": kind,
                "client": "bench", "hostname": host, "data": {}, "events": events}  # fmt: skip

    return {"buckets": {
        f"aw-watcher-window_{host}": bucket(f"aw-watcher-window_{host}", "currentwindow", windows),
        f"aw-watcher-afk_{host}": bucket(f"aw-watcher-afk_{host}", "afkstatus", afk),
        "aw-watcher-web-chrome": bucket("aw-watcher-web-chrome", "web.tab.current", web),
    }}  # fmt: skip


@contextlib.contextmanager
def aw_server(tmp: Path) -> Iterator[tuple[str, int]]:
    """A running aw-server from its own virtualenv: its URL and pid."""
    port = free_port()
    home = tmp / "aw-home"
    env = {**os.environ, "HOME": str(home)}
    for name in ("data", "config", "cache"):
        env[f"XDG_{name.upper()}_HOME"] = str(home / name)
    binary = ROOT / ".venv-activitywatch" / "bin" / "aw-server"
    with (tmp / "aw-server.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(binary), "--testing", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/api/0/info", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        stop(proc)


def bench_import(args: argparse.Namespace) -> None:
    import orjson

    first = dt.datetime.now(dt.UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    first -= dt.timedelta(days=DAYS + 1)
    export = orjson.dumps(activitywatch_month(first))
    events = sum(len(b["events"]) for b in orjson.loads(export)["buckets"].values())
    rows = []
    with stack_for(args) as s:
        headers = login(s.url)
        started = time.perf_counter()
        resp = httpx.post(
            f"{s.url}/api/import/activitywatch", content=export, headers=headers, timeout=900
        )
        took = time.perf_counter() - started
        resp.raise_for_status()
        rows.append(("ScreenAware POST /api/import/activitywatch", took,
                     f"{resp.json()['snapshots']:,} snapshots"))  # fmt: skip
        with aw_server(s.tmp) as (aw, _):
            started = time.perf_counter()
            resp = httpx.post(
                f"{aw}/api/0/import",
                content=export,
                headers={"Content-Type": "application/json"},
                timeout=900,
            )
            took = time.perf_counter() - started
            resp.raise_for_status()
            rows.append(("aw-server 0.12 POST /api/0/import", took, "its own buckets"))
    print(f"\nImport of one 30-day ActivityWatch export: {events:,} events, "
          f"{len(export) / 1e6:.1f} MB, {args.workers} workers, one request each, "
          f"all on this machine ({os.cpu_count()} cores)\n")  # fmt: skip
    print(f"| {'':44} | seconds | events/s | stored |")
    print(f"|{'-' * 46}|---------|----------|--------|")
    for name, took, stored in rows:
        print(f"| {name:44} | {took:7.1f} | {events / took:8,.0f} | {stored} |")


def bench_webapp(args: argparse.Namespace) -> None:
    """The day view of a full day (8 h of 10 s snapshots) in headless Chromium."""
    from tests.browser import launch_chromium

    with stack_for(args) as s:
        headers = login(s.url)
        keyword_projects(s.url, headers)
        apps = ["code", "chrome", "slack", "outlook", "winword", "vlc"]
        day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(
            hour=8, minute=0, second=0, microsecond=0
        )
        snapshots = [
            {
                "timeTaken": (day + dt.timedelta(seconds=10 * (i + 1))).isoformat(),
                "windows": [
                    {"processName": f"{app}.exe", "title": f"{app} work", "isFocused": True}
                ],
            }
            for i in range(PER_DAY)
            for app in [apps[(i // 30) % len(apps)]]
        ]
        for start in range(0, len(snapshots), 1000):
            httpx.post(
                f"{s.url}/api/snapshots", json=snapshots[start : start + 1000], headers=headers,
                timeout=60,
            ).raise_for_status()  # fmt: skip
        client = redis.Redis.from_url(s.redis_url)

        async def measure() -> tuple[list[float], list[float], int]:
            async with launch_chromium() as browser:
                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                page = await context.new_page()
                await page.goto(f"{s.url}/app/")
                await page.get_by_label("Email").fill(ADMIN[0])
                await page.get_by_label("Password").fill(ADMIN[1])
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_selector("#view[data-ready=true]")
                url = f"{s.url}/app/#/day/{day.date().isoformat()}"
                cold: list[float] = []
                cached: list[float] = []
                for runs in (cold, cached):
                    for _ in range(5):
                        if runs is cold:
                            for key in client.scan_iter("*:sess:*"):
                                client.delete(key)
                        await page.goto("about:blank")
                        started = time.perf_counter()
                        await page.goto(url)
                        await page.wait_for_selector("#view[data-ready=true]")
                        runs.append((time.perf_counter() - started) * 1000)
                streams = await page.locator(".timeline button").count()
                await context.close()
                return cold, cached, streams

        cold, cached, streams = asyncio.run(measure())
        s.stop_service()
    print(f"\nDay view of {PER_DAY} snapshots (8 h of 10 s), navigation to interactive\n")
    print("| data | timeline items | p50 ms | max ms |")
    print("|---|---:|---:|---:|")
    for name, runs in (("streams cold", cold), ("streams cached", cached)):
        print(f"| {name} | {streams} | {statistics.median(runs):.0f} | {max(runs):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--workers", type=int, default=int(os.environ.get("SCREENAWARE_WORKERS", "2"))
    )
    parser.add_argument(
        "--racing",
        action="store_true",
        help="workers race for connections (SCREENAWARE_BALANCE_CONNECTIONS=false)",
    )
    sub = parser.add_subparsers(dest="what", required=True)
    hb = sub.add_parser("heartbeat", help="POST /api/beat against a trivial responder")
    hb.add_argument("--seconds", type=int, default=10)
    hb.add_argument("--connections", type=int, default=32)
    hb.add_argument("--rounds", type=int, default=3, help="turns of the three targets")
    hb.set_defaults(func=bench_heartbeat)
    conns = sub.add_parser("connections", help="the gate against racing workers, trivial app")
    conns.add_argument("--seconds", type=int, default=4)
    conns.add_argument("--connections", type=int, default=32)
    conns.add_argument("--rounds", type=int, default=3)
    conns.set_defaults(func=bench_connections)
    snaps = sub.add_parser("snapshots", help="POST /api/snapshots, arrays of 100 and single")
    snaps.add_argument("--seconds", type=int, default=10, help="per wrk row (0: leave out)")
    snaps.add_argument(
        "--days", type=int, default=30, help="batch ingest beside aw-server (0: leave out)"
    )
    snaps.set_defaults(func=bench_snapshots)
    tm = sub.add_parser("times", help="load days of data, then time GET /api/times cold and cached")
    tm.add_argument(
        "--days", default="1,30", help="the ranges timed, in days back; the largest is loaded"
    )
    tm.add_argument(
        "--raw-too",
        action="store_true",
        help="then time the same with the rollup off (SCREENAWARE_TIMES_ROLLUP=false)",
    )
    tm.set_defaults(func=bench_times)
    sm = sub.add_parser("streams", help="load days of data, then time GET /api/streams")
    sm.add_argument("--days", type=int, default=30, help="days of data loaded")
    sm.add_argument(
        "--rollup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read plain streams through the activity_runs rollup (--no-rollup: raw days)",
    )
    sm.set_defaults(func=bench_streams)
    lg = sub.add_parser("logs", help="POST /api/logs in arrays of 100; grouped query on 1M")
    lg.add_argument("--seconds", type=int, default=10)
    lg.set_defaults(func=bench_logs)
    tr = sub.add_parser(
        "transport", help="InfluxDB transport: CPU per /write and per large /query, two clients"
    )
    tr.add_argument("--rounds", type=int, default=8)
    tr.add_argument("--writes", type=int, default=40, help="writes per client per round")
    tr.add_argument("--queries", type=int, default=3, help="queries per client per round")
    tr.add_argument("--query-points", type=int, default=200_000, help="points the query returns")
    tr.set_defaults(func=bench_transport)
    im = sub.add_parser("import", help="a 30-day ActivityWatch export: ours and aw-server's")
    im.set_defaults(func=bench_import)
    wa = sub.add_parser("webapp", help="one day of snapshots: the day view in headless Chromium")
    wa.set_defaults(func=bench_webapp)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()

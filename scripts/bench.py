"""Benchmarks, run by hand: ``scripts/bench heartbeat``.

Starts its own influxd and redis-server on free ports in a temp dir, serves the
app with gunicorn (uvicorn workers) and drives it with wrk on 127.0.0.1 only,
for a bounded time. Prints a table; never part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from screenaware.config import Config  # noqa: E402
from screenaware.localservers import (  # noqa: E402
    free_port,
    gunicorn_argv,
    start_influxd,
    start_redis,
)


def start_gunicorn(
    app: str, env: dict[str, str], workers: int, port: int, log: Path
) -> subprocess.Popen[bytes]:
    argv = gunicorn_argv(app, workers=workers, bind=f"127.0.0.1:{port}")
    proc = subprocess.Popen(
        [*argv, "--chdir", str(ROOT / "scripts"), "--log-level", "warning"],
        env={**env, "PYTHONPATH": str(ROOT)},
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


def wrk(url: str, token: str, connections: int, seconds: int, tmp: Path) -> dict[str, float]:
    script = tmp / "beat.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.headers["Authorization"] = "{token}"\n')
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout

    def latency(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]

    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50": latency("50"),
        "p99": latency("99"),
        "requests": total,
        "non2xx": int(errors[1]) if errors else 0,
        "socket_errors": socket_errors[1] if socket_errors else "none",
    }


def bench_heartbeat(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="screenaware-bench-") as tmp_name:
        tmp = Path(tmp_name)
        influx_port, redis_port = free_port(), free_port()
        influxd = start_influxd(tmp / "influxdb", influx_port)
        redis = start_redis(tmp / "redis", redis_port)
        try:
            config = Config.load(
                environ={},
                influx_url=f"http://127.0.0.1:{influx_port}",
                redis_url=f"redis://127.0.0.1:{redis_port}/0",
                secret_key="bench-secret",  # noqa: S106 - a throwaway local instance
                workers=args.workers,
                data_dir=str(tmp / "var"),
            )
            env = {**os.environ, **config.as_environ()}
            port = free_port()
            service = start_gunicorn(
                "screenaware.asgi:app", env, args.workers, port, tmp / "service.log"
            )
            try:
                base = f"http://127.0.0.1:{port}"
                token = httpx.post(
                    f"{base}/api/devices",
                    json={"name": "bench"},
                    headers={"Authorization": "bench-secret"},
                ).json()["token"]
                wrk(f"{base}/api/beat", token, args.connections, 2, tmp)  # warm-up
                warm = httpx.get(f"{base}/api/stats").json()["total_beats"]
                beats = wrk(f"{base}/api/beat", token, args.connections, args.seconds, tmp)
                time.sleep(0.5)
                stored = (
                    int(
                        httpx.get(
                            f"http://127.0.0.1:{influx_port}/query",
                            params={"db": config.influx_db, "q": "SELECT count(n) FROM beat"},
                        ).json()["results"][0]["series"][0]["values"][0][1]
                    )
                    - warm
                )
                counted = httpx.get(f"{base}/api/stats").json()["total_beats"] - warm
            finally:
                stop(service)
            batches = [
                tuple(map(int, m))
                for m in re.findall(
                    r"influx-group-commit: (\d+) items in (\d+) calls",
                    (tmp / "service.log").read_text(),
                )
            ]
            port = free_port()
            trivial = start_gunicorn(
                "bench_trivial:app", env, args.workers, port, tmp / "trivial.log"
            )
            try:
                wrk(f"http://127.0.0.1:{port}/api/beat", "x", args.connections, 2, tmp)
                base_line = wrk(
                    f"http://127.0.0.1:{port}/api/beat", "x", args.connections, args.seconds, tmp
                )
            finally:
                stop(trivial)
        finally:
            redis.stop()
            influxd.stop()

    print(
        f"\nPOST /api/beat, {args.connections} connections, {args.seconds} s, "
        f"{args.workers} workers, wrk -t2, all on this machine ({os.cpu_count()} cores)\n"
    )
    print("| target | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|")
    for name, r in (
        ("durable beats (InfluxDB + Redis)", beats),
        ("trivial Falcon responder", base_line),
    ):
        print(
            f"| {name} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {int(r['non2xx'])} |"
        )
    print(f"\nratio beats / trivial: {beats['rps'] / base_line['rps']:.0%}")
    points, writes = (sum(b[i] for b in batches) for i in (0, 1))
    print(
        f"group commit: {points} requests in {writes} InfluxDB writes "
        f"({points / max(writes, 1):.1f} requests per write)"
    )
    print(
        f"beats answered by wrk: {int(beats['requests'])}, stored in InfluxDB: {stored}, "
        f"counted in Redis: {counted}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    hb = sub.add_parser("heartbeat", help="POST /api/beat against a trivial responder")
    hb.add_argument("--seconds", type=int, default=10)
    hb.add_argument("--connections", type=int, default=32)
    hb.add_argument("--workers", type=int, default=int(os.environ.get("SCREENAWARE_WORKERS", "2")))
    hb.set_defaults(func=bench_heartbeat)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()

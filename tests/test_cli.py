"""The ``screenaware`` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import redis
from falcon import testing

from screenaware.app import create_app
from screenaware.config import Config
from screenaware.storage.localservers import free_port, influx_answers, redis_answers
from tests.conftest import SECRET_KEY, FakeClock, InfluxHelper, Servers

BIN = str(Path(sys.executable).with_name("screenaware"))


def run(config: Config, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SCREENAWARE_INFLUX_URL": config.influx_url,
        "SCREENAWARE_INFLUX_DB": config.influx_db,
        "SCREENAWARE_REDIS_URL": config.redis_url,
        "SCREENAWARE_DATA_DIR": config.data_dir,
        "SCREENAWARE_SECRET_KEY": SECRET_KEY,
    }
    result = subprocess.run(
        [BIN, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_gen_key_prints_fresh_url_safe_keys(config: Config) -> None:
    first = run(config, "gen-key").stdout.strip()
    second = run(config, "gen-key").stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", first)
    assert first != second


async def test_add_device_registers_a_working_device(config: Config, clock: FakeClock) -> None:
    device = json.loads(run(config, "add-device", "Workstation").stdout)
    assert device["id"] == 0 and device["name"] == "Workstation"
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        result = await client.simulate_post("/api/beat", headers={"Authorization": device["token"]})
        assert result.status_code == 200
        assert (await client.simulate_get("/api/stats")).json["devices"][0]["num_beats"] == 1


def test_add_device_rejects_blank_names(config: Config) -> None:
    result = run(config, "add-device", "  ", check=False)
    assert result.returncode == 2
    assert "name" in result.stderr


def test_invalid_config_is_a_clear_error(config: Config) -> None:
    env = {**os.environ, "SCREENAWARE_WORKERS": "zero"}
    result = subprocess.run(
        [BIN, "check-config"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "SCREENAWARE_WORKERS: expected int" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_hides_secrets(config: Config) -> None:
    out = run(config, "check-config").stdout
    assert SECRET_KEY not in out and "secret_key='***'" in out


async def test_rebuild_stats_recovers_every_counter_after_redis_loss(
    config: Config, clock: FakeClock, redis_client: redis.Redis, influx_db: InfluxHelper
) -> None:
    # A history spread over three days, so the rebuild works through several windows.
    import time

    clock.now = time.time() - 3 * 86400
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        tokens = []
        for name in ("Laptop", "Phone"):
            result = await client.simulate_post(
                "/api/devices", json={"name": name}, headers={"Authorization": SECRET_KEY}
            )
            tokens.append(result.json["token"])
        for step, (device, advance) in enumerate(
            [(0, 10), (1, 5), (0, 86400 + 7), (0, 1), (1, 40000), (1, 3), (0, 2)]
        ):
            clock.advance(advance)
            await client.simulate_post("/api/beat", headers={"Authorization": tokens[device]})
            if step % 3 == 0:
                await client.simulate_get("/")
        before = (await client.simulate_get("/api/stats")).json

    # Counters lost (the device entities survive via AOF in real life; here even they go).
    redis_client.flushall()
    out = run(config, "rebuild-stats")
    assert json.loads(out.stdout)["total_beats"] == 7
    assert "days" in out.stderr  # the progress bar

    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        after = (await client.simulate_get("/api/stats")).json
    assert after["total_beats"] == before["total_beats"] == 7
    assert after["last_seen"] == before["last_seen"]
    assert after["longest_absence"] == before["longest_absence"] == 86400 + 7
    assert after["num_visits"] == before["num_visits"] == 3
    # The set-up moment itself was in Redis only; the earliest beat stands in for it
    # (the first beat came 10 s after the server was set up).
    assert after["uptime"] == before["uptime"] - 10
    assert [(d["id"], d["num_beats"], d["last_beat"]) for d in after["devices"]] == [
        (d["id"], d["num_beats"], d["last_beat"]) for d in before["devices"]
    ]
    # Names were lost with Redis; the devices come back under their ids.
    assert [d["name"] for d in after["devices"]] == ["device 0", "device 1"]
    # The next registered device does not reuse an id.
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        result = await client.simulate_post(
            "/api/devices", json={"name": "New"}, headers={"Authorization": SECRET_KEY}
        )
        assert result.json["id"] == 2


def test_services_start_status_stop(tmp_path: Path, servers: Servers) -> None:
    influx_port, redis_port = free_port(), free_port()
    config = Config.load(
        environ={},
        influx_url=f"http://127.0.0.1:{influx_port}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        data_dir=str(tmp_path / "var"),
    )
    assert run(config, "services", "status", check=False).returncode == 1
    try:
        out = run(config, "services", "start").stdout
        assert "influxd: started" in out and "redis-server: started" in out
        assert influx_answers(config.influx_url)
        assert redis_answers("127.0.0.1", redis_port)
        assert (tmp_path / "var" / "influxdb" / "influxdb.conf").exists()
        assert "appendonly yes" in (tmp_path / "var" / "redis" / "redis.conf").read_text()
        assert run(config, "services", "status").returncode == 0
        # Already answering: left alone.
        assert "already answering" in run(config, "services", "start").stdout
    finally:
        run(config, "services", "stop", check=False)
    assert not influx_answers(config.influx_url)
    assert not redis_answers("127.0.0.1", redis_port)
    # Servers it did not start (the test session's own) are never stopped.
    other = Config.load(
        environ={},
        influx_url=servers.influx_url,
        redis_url=servers.redis_url,
        data_dir=str(tmp_path / "other"),
    )
    assert "left alone" in run(other, "services", "stop").stdout
    assert influx_answers(servers.influx_url)


async def test_create_user_reads_the_password_and_makes_an_admin(
    config: Config, clock: FakeClock
) -> None:
    def create(*args: str, password: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **config.as_environ()}
        return subprocess.run(
            [BIN, "create-user", *args],
            input=password + "\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    made = create("boss@example.org", "--admin", password="boss-password")
    assert made.returncode == 0, made.stderr
    user = json.loads(made.stdout)
    assert user["role"] == {"bitMask": 4, "title": "admin"}
    assert "password" not in made.stdout and "boss-password" not in made.stdout
    assert create("BOSS@example.org", password="another-one").returncode == 1
    assert create("short@example.org", password="1234").returncode == 2
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        login = await client.simulate_post(
            "/api/auth/local", json={"email": "boss@example.org", "password": "boss-password"}
        )
        assert login.status_code == 200
        users = await client.simulate_get(
            "/api/users", headers={"Authorization": f"Bearer {login.json['token']}"}
        )
        assert [u["email"] for u in users.json] == ["boss@example.org"]


async def test_migrate_redis_keys_moves_the_one_tag_scheme_to_per_user_tags(
    config: Config, clock: FakeClock, redis_client: redis.Redis
) -> None:
    from screenaware.identity.credentials import hash_password
    from screenaware.identity.keys import digest

    # What the one-tag scheme wrote for a user with a project and an API key.
    uuid, project = "5b9e3c1e-0d7a-4a57-9a3e-6f2b8d1c4e10", "p-1"
    secret = "0c2d6a8e-7f41-4b3a-9e5d-2a1b3c4d5e6f"
    redis_client.hset(
        f"{{sa}}:user:{uuid}",
        mapping={"uuid": uuid, "email": "old@example.org", "role": "user", "version": 0,
                 "password": await hash_password("old-password-1"), "created": 1},
    )  # fmt: skip
    redis_client.set("{sa}:email:old@example.org", uuid)
    redis_client.zadd("{sa}:users", {uuid: 1})
    redis_client.hset(
        f"{{sa}}:projects:{uuid}", project, json.dumps({"uuid": project, "name": "P"})
    )
    redis_client.hset(f"{{sa}}:apikeys:{uuid}", "k1", digest(secret))
    redis_client.hset(
        f"{{sa}}:apikey:{digest(secret)}",
        mapping={"uuid": "k1", "user": uuid, "name": "k", "createdAt": 1, "lastUsedAt": 0},
    )
    redis_client.hset(f"{{sa}}:integ:{uuid}:redmine", "connected", "0")
    redis_client.set(f"{{sa}}:tcache:{uuid}:abc", "{}")
    redis_client.set("{sa}:rl:login:addr:10.0.0.1", 1)
    out = run(config, "migrate-redis-keys")
    done = json.loads(out.stdout)
    # Kept: the indexes, the limit counter and the CLI's own clock slot lease.
    assert (done["renamed"], done["dropped"], done["conflicts"]) == (4, 1, 0)
    assert done["kept"] >= 4
    assert redis_client.hget(f"{{u:{uuid}}}:integ:redmine", "connected") == "0"
    assert not redis_client.keys(f"{{sa}}:*{uuid}*")
    # The service finds the user, its project and its key under the new names.
    async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
        login = await client.simulate_post(
            "/api/auth/local", json={"email": "old@example.org", "password": "old-password-1"}
        )
        assert login.status_code == 200, login.text
        listed = await client.simulate_get(
            "/api/projects", headers={"Authorization": f"Bearer {secret}"}
        )
        assert [p["name"] for p in listed.json] == ["P"], listed.text
    # Once is enough: a second run renames nothing.
    again = json.loads(run(config, "migrate-redis-keys").stdout)
    assert again["renamed"] == again["dropped"] == 0
    # A key already in the new scheme is never overwritten.
    redis_client.hset(f"{{sa}}:projects:{uuid}", "stale", "{}")
    clash = run(config, "migrate-redis-keys", check=False)
    assert clash.returncode == 1 and json.loads(clash.stdout)["conflicts"] == 1
    assert redis_client.hkeys(f"{{u:{uuid}}}:projects") == [project]


def test_migrate_redis_keys_refuses_a_cluster(config: Config) -> None:
    clustered = config.replace(redis_url="redis+cluster://127.0.0.1:7000")
    refused = run(clustered, "migrate-redis-keys", check=False)
    assert refused.returncode == 2 and "redis-cli --cluster import" in refused.stderr

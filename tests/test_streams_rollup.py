"""The ``activity_runs`` rollup behind plain /streams: exactly the raw answers."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import uuid as uuidlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from falcon import testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screenaware.activity import BUCKET_MS
from screenaware.activity.store import DAY_MS, generations_key
from screenaware.app import create_app
from screenaware.config import Config
from screenaware.storage.influx import InfluxClient
from screenaware.storage.lineprotocol import encode
from screenaware.storage.rollupmarks import RollupMarks
from screenaware.streams import rollup as streams_rollup
from screenaware.streams.rollup import (
    MEASUREMENT,
    RunsRollup,
    decode_runs,
    encode_runs,
    lock_key,
    rolled_key,
)
from screenaware.streams.sessionise import Run, _runs, bucket_runs, merge_runs
from screenaware.timeutil import iso, to_ms
from tests.conftest import Api, FakeClock, InfluxHelper

UTC = dt.UTC
# Three UTC days of data before NOW's day; New York leaves DST on the second
# (2026-11-01 06:00 UTC: a 25-hour local day).
NOW = dt.datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
DAY0 = dt.datetime(2026, 10, 31, tzinfo=UTC)
DAY0_MS = to_ms(DAY0)
ZONES = ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York"]
PROJECTS = {
    "influx": "11111111-1111-4111-8111-111111111111",
    "other": "22222222-2222-4222-8222-222222222222",
}
# (join gap, interruption, idle gap) in seconds: the default and two others.
THRESHOLDS = [(60, 120, 300), (30, 20, 100), (10, 20, 30)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW.timestamp())


@pytest.fixture
async def apps(identity_config: Config, clock: FakeClock) -> AsyncIterator[dict[Any, Api]]:
    """An app per thresholds, with the rollup (True) and without it (False), all on
    the same databases."""
    async with contextlib.AsyncExitStack() as stack:
        out = {}
        for thresholds, rollup in itertools.product(THRESHOLDS, (True, False)):
            join, interruption, idle = thresholds
            config = identity_config.replace(
                streams_rollup=rollup,
                substream_join_gap=join,
                stream_interruption=interruption,
                stream_idle_gap=idle,
            )
            client = await stack.enter_async_context(
                testing.ASGIConductor(create_app(config, clock=clock))
            )
            out[thresholds, rollup] = Api(client, {})
        yield out


def iso_ms(ms: int) -> str:
    return iso(dt.datetime.fromtimestamp(ms / 1000, tz=UTC))


def snapshot(end_ms: int, duration: int, process: str, title: str) -> dict[str, Any]:
    window = {"processName": process, "title": title, "isFocused": True}
    return {"timeTaken": iso_ms(end_ms), "durationMs": duration, "windows": [window]}


async def post(api: Api, headers: dict[str, str], body: object) -> None:
    result = await api.client.simulate_post("/api/snapshots", json=body, headers=headers)
    assert result.status_code == 200, result.text


async def get(api: Api, headers: dict[str, str], path: str, **params: Any) -> Any:
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
    result = await api.client.simulate_get(path, params=query, headers=headers)
    assert result.status_code == 200, result.text
    return result.json


async def new_user(api: Api) -> tuple[dict[str, str], str]:
    headers = await api.new_user(f"{uuidlib.uuid4().hex}@example.org")
    for name, keywords in (("influx", ["influxdb"]), ("other", ["chat"])):
        body = {"uuid": PROJECTS[name], "name": name, "keywords": keywords}
        result = await api.client.simulate_post("/api/projects", json=body, headers=headers)
        assert result.status_code == 201, result.text
    return headers, str((await api.me(headers)).json["uuid"])


def clear_cache(redis_client: redis.Redis) -> None:
    for key in redis_client.scan_iter("{u:*}:sess:*"):
        redis_client.delete(key)


async def compare(
    apps: dict[Any, Api],
    redis_client: redis.Redis,
    headers: dict[str, str],
    params: dict[str, Any],
    thresholds: tuple[int, int, int] = THRESHOLDS[0],
) -> Any:
    """/streams through the rollup equals /streams from the raw days."""
    clear_cache(redis_client)
    rolled = await get(apps[thresholds, True], headers, "/api/streams", **params)
    clear_cache(redis_client)
    raw = await get(apps[thresholds, False], headers, "/api/streams", **params)
    clear_cache(redis_client)
    assert rolled == raw, (params, thresholds)
    return rolled


def runs_points(influx_db: InfluxHelper, user: str) -> int:
    rows = influx_db.query(
        f'SELECT count("runs") FROM "{MEASUREMENT}" WHERE "user" = $user', {"user": user}
    )
    return int(rows[0]["count"]) if rows else 0


# --- merging bucket runs (pure) -----------------------------------------------

activity = st.lists(
    st.tuples(
        st.integers(0, 40_000),  # start
        st.integers(1, 9_000),  # duration
        st.sampled_from([None, "A", "B"]),
    ),
    max_size=60,
)


@settings(max_examples=1000, deadline=None)
@given(activity, st.integers(0, 6_000), st.sampled_from([1, 700, 1_000, 5_000, 60_000]))
def test_merged_bucket_runs_are_the_runs_of_the_whole(
    acts: list[tuple[int, int, str | None]], idle_gap: int, bucket_ms: int
) -> None:
    # make_streams' order: start, end, project.
    acts.sort(key=lambda a: (a[0], a[0] + a[1], a[2] or ""))
    starts = [a[0] for a in acts]
    durations = [a[1] for a in acts]
    ends = [a[0] + a[1] for a in acts]
    projects = [a[2] for a in acts]
    whole = _runs(starts, ends, durations, projects, idle_gap)
    buckets = bucket_runs(starts, ends, durations, projects, idle_gap, bucket_ms)
    assert all(run.start // bucket_ms * bucket_ms == b for b, rs in buckets.items() for run in rs)
    ordered = [buckets[b] for b in sorted(buckets)]
    assert merge_runs(ordered, idle_gap) == whole
    # Associative: merging merged stretches gives the same, and a stretch survives
    # its encoding (the fields the rollup stores).
    cut = len(ordered) // 2
    halves = [merge_runs(ordered[:cut], idle_gap), merge_runs(ordered[cut:], idle_gap)]
    assert merge_runs(halves, idle_gap) == whole
    stored = [decode_runs(encode_runs(rs)) for rs in ordered]
    assert [r[:1] + r[3:] for r in merge_runs(stored, idle_gap)] == [r[:1] + r[3:] for r in whole]


# --- the property: rollup answers are raw answers ------------------------------

MINUTES = [0, 1, 2, 5, 14, 15, 16, 29, 30, 240, 241, 299, 300, 330, 345, 346, 600, 601, 603,
           610, 1079, 1439]  # fmt: skip
snapshots = st.lists(
    st.tuples(
        st.integers(0, 2),  # device
        st.integers(0, 2),  # day
        # minute of the day: near UTC and zone midnights, quarter hours, +05:30/+05:45,
        # New York's midnight (04:00/05:00 UTC), runs of minutes for real streams
        st.sampled_from(MINUTES),
        st.integers(0, 119).map(lambda n: n * 500),  # ms into the minute
        st.sampled_from([1, 2500, 7777, 10000]),  # duration
        st.sampled_from([1, 1, 6, 30]),  # snapshots in a row
        st.sampled_from([10_000, 35_000, 60_000]),  # apart by
        st.sampled_from([("code", "influxdb tuning"), ("slack", "chat"), ("vim", "notes")]),
    ),
    min_size=1,
    max_size=16,
)


def ranges() -> st.SearchStrategy[dict[str, Any]]:
    moments = st.one_of(
        st.integers(-8, 3 * 96 + 8).map(lambda q: DAY0_MS + q * BUCKET_MS),  # on a bucket
        st.integers(-3_600_000, 3 * DAY_MS + 3_600_000).map(lambda ms: DAY0_MS + ms),
    )
    return st.fixed_dictionaries(
        {
            "bounds": st.tuples(moments, moments).map(sorted),
            "tz": st.sampled_from(ZONES),
            "projectUuid": st.sampled_from([None, "none", *PROJECTS.values()]),
            "minDuration": st.sampled_from([None, 60_000, 300_000]),
            "showGaps": st.booleans(),
            "sort": st.sampled_from([None, "time DESC"]),
            "offset": st.sampled_from([None, 1, 3]),
            "limit": st.sampled_from([None, 1, 4]),
            "groupByDay": st.booleans(),
        }
    )


def query(spec: dict[str, Any]) -> dict[str, Any]:
    lo, hi = spec.pop("bounds")
    params = {"start": iso_ms(lo), "end": iso_ms(hi)}
    params.update({k: v for k, v in spec.items() if v is not None and v is not False})
    return params


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(snapshots, st.data())
async def test_rollup_answers_equal_the_raw_answers(
    api: Api,
    apps: dict[Any, Api],
    redis_client: redis.Redis,
    influx_db: InfluxHelper,
    spec: list[tuple[int, int, int, int, int, int, int, tuple[str, str]]],
    data: st.DataObject,
) -> None:
    headers, user = await new_user(api)
    snaps = [
        snapshot(
            DAY0_MS + day * DAY_MS + minute * 60_000 + ms + k * apart + duration,
            duration,
            process,
            f"{title} on device {device}",
        )
        for device, day, minute, ms, duration, count, apart, (process, title) in spec
        for k in range(count)
    ]
    order = [snaps[i] for i in data.draw(st.permutations(range(len(snaps))), label="order")]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(snaps))), label="phases") | {len(snaps)})
    for lo, hi in itertools.pairwise([0, *cuts]):
        # Late and overlapping snapshots land on days already rolled up.
        await post(api, headers, order[lo:hi])
        if data.draw(st.booleans(), label="correct a stream"):
            day = data.draw(st.integers(0, 2), label="day corrected")
            begin = DAY0_MS + day * DAY_MS
            streams = await get(
                api, headers, "/api/streams",
                start=iso_ms(begin), end=iso_ms(begin + DAY_MS - 1), tz="UTC",
            )  # fmt: skip
            if streams:
                stream = data.draw(st.sampled_from(streams), label="stream")
                target = data.draw(st.sampled_from([*PROJECTS.values(), None]), label="to")
                result = await api.client.simulate_put(
                    f"/api/stream/{stream['uuid']}/project",
                    json={"projectUuid": target},
                    headers=headers,
                )
                assert result.status_code == 200, result.text
        for _ in range(data.draw(st.integers(1, 2), label="queries")):
            thresholds = data.draw(st.sampled_from(THRESHOLDS), label="thresholds")
            await compare(apps, redis_client, headers, query(data.draw(ranges())), thresholds)
    # Once every day was read through the rollup, the answers come from it.
    whole = {"start": iso_ms(DAY0_MS), "end": iso_ms(DAY0_MS + 3 * DAY_MS - 1), "tz": "UTC"}
    await compare(apps, redis_client, headers, whole)
    rolled = redis_client.hgetall(rolled_key(user))
    counters = redis_client.hgetall(generations_key(user))
    days = [str(DAY0_MS // DAY_MS + d) for d in range(3)]
    assert [rolled[d] for d in days] == [f"{counters.get(d, '0')!s}/300000" for d in days]
    assert runs_points(influx_db, user) > 0
    assert redis_client.get(lock_key(user)) is None
    for _ in range(3):
        thresholds = data.draw(st.sampled_from(THRESHOLDS), label="thresholds")
        await compare(apps, redis_client, headers, query(data.draw(ranges())), thresholds)


# --- what the rollup is read for, and when it is not ---------------------------

DAY1 = {"start": iso_ms(DAY0_MS), "end": iso_ms(DAY0_MS + DAY_MS - 1), "tz": "UTC"}


def minutes(start_ms: int, count: int, process: str, title: str) -> list[dict[str, Any]]:
    return [snapshot(start_ms + (i + 1) * 10_000, 10_000, process, title) for i in range(count)]


async def test_clean_days_are_read_from_the_rollup_and_a_write_makes_them_raw_again(
    api: Api, apps: dict[Any, Api], redis_client: redis.Redis, influx_db: InfluxHelper
) -> None:
    headers, user = await new_user(api)
    ten = DAY0_MS + 10 * 3_600_000
    await post(api, headers, minutes(ten, 30, "code", "influxdb"))
    first = await compare(apps, redis_client, headers, DAY1)
    assert [(s["time"], s["durationMs"]) for s in first] == [(iso_ms(ten), 300_000)]
    day = str(DAY0_MS // DAY_MS)
    assert redis_client.hget(rolled_key(user), day) == "1/300000"
    # Proof that a clean day is read from the rollup: a run written into it alone.
    fifteen = DAY0_MS + 15 * 3_600_000
    run = Run(PROJECTS["other"], 0, 0, fifteen, fifteen + 60_000, fifteen + 60_000, 60_000)
    line = encode(MEASUREMENT, {"user": user}, {"runs": encode_runs([run])}, fifteen * 1_000_000)
    httpx.post(
        f"{influx_db.url}/write", params={"db": influx_db.database}, content=line
    ).raise_for_status()
    clear_cache(redis_client)
    rolled = await get(apps[THRESHOLDS[0], True], headers, "/api/streams", **DAY1)
    assert [(s["time"], s["projectUuid"]) for s in rolled] == [
        (iso_ms(ten), PROJECTS["influx"]),
        (iso_ms(fifteen), PROJECTS["other"]),
    ]
    # Other thresholds (another idle gap): the marks do not hold, read raw.
    clear_cache(redis_client)
    assert len(await get(apps[THRESHOLDS[1], True], headers, "/api/streams", **DAY1)) == 1
    # A snapshot of that day makes it dirty: raw again, and rolled up anew (the
    # foreign run stays: it is of a bucket the ledger has nothing in).
    await post(api, headers, minutes(ten + 300_000, 6, "code", "influxdb"))
    clear_cache(redis_client)
    again = await get(apps[THRESHOLDS[0], True], headers, "/api/streams", **DAY1)
    assert [(s["time"], s["durationMs"]) for s in again] == [(iso_ms(ten), 360_000)]
    clear_cache(redis_client)
    assert len(await get(apps[THRESHOLDS[0], True], headers, "/api/streams", **DAY1)) == 2


async def test_today_is_read_raw_and_not_rolled_up(
    api: Api, apps: dict[Any, Api], redis_client: redis.Redis, influx_db: InfluxHelper
) -> None:
    headers, user = await new_user(api)
    today = to_ms(NOW) - 3_600_000
    await post(api, headers, minutes(today, 12, "code", "influxdb"))
    streams = await compare(apps, redis_client, headers, {"tz": "UTC"})
    assert [s["durationMs"] for s in streams] == [120_000]
    assert redis_client.hgetall(rolled_key(user)) == {}
    assert runs_points(influx_db, user) == 0


async def test_a_rollup_taken_by_another_worker_is_left_alone(
    api: Api, apps: dict[Any, Api], redis_client: redis.Redis, influx_db: InfluxHelper
) -> None:
    headers, user = await new_user(api)
    await post(api, headers, minutes(DAY0_MS + 3_600_000, 6, "code", "influxdb"))
    redis_client.set(lock_key(user), "someone-else", px=60_000)
    assert len(await compare(apps, redis_client, headers, DAY1)) == 1
    assert redis_client.hgetall(rolled_key(user)) == {}
    assert redis_client.get(lock_key(user)) == "someone-else"
    assert runs_points(influx_db, user) == 0


async def test_a_rollup_influxdb_refuses_leaves_the_days_raw(
    api: Api, apps: dict[Any, Api], redis_client: redis.Redis, influx_db: InfluxHelper
) -> None:
    headers, user = await new_user(api)
    await post(api, headers, minutes(DAY0_MS + 3_600_000, 6, "code", "influxdb"))
    # An integer "runs" in the rollup's shard: InfluxDB refuses the string ones.
    httpx.post(
        f"{influx_db.url}/write",
        params={"db": influx_db.database},
        content=f"{MEASUREMENT},user=nobody runs=1i {(DAY0_MS + 60_000) * 1_000_000}",
    ).raise_for_status()
    assert len(await compare(apps, redis_client, headers, DAY1)) == 1
    assert redis_client.hgetall(rolled_key(user)) == {}
    assert redis_client.get(lock_key(user)) is None


async def test_a_lock_too_close_to_expiring_writes_nothing(
    api: Api, redis_client: redis.Redis, influx_db: InfluxHelper, identity_config: Config,
    clock: FakeClock,
) -> None:  # fmt: skip
    headers, user = await new_user(api)
    await post(api, headers, minutes(DAY0_MS + 3_600_000, 6, "code", "influxdb"))
    client = aioredis.Redis.from_url(identity_config.redis_url, decode_responses=True)
    influx = InfluxClient(identity_config)
    await influx.open()
    try:
        marks = RollupMarks(lambda: client, rolled_key, lock_key, generations_key)
        runs = RunsRollup(influx, marks, clock, 300_000, lock_ttl_ms=1_000, lease_ms=5_000)
        span = (DAY0_MS, DAY0_MS + DAY_MS)
        found = await runs.day_runs(user, [span], {DAY0_MS // DAY_MS: "1"})
        assert found is not None and [r.duration for r in found[0]] == [60_000]
        # The lock was taken (and is left to expire), nothing marked or written.
        assert redis_client.get(lock_key(user)) is not None
        # A day off the quarter hour (Monrovia before 1972) is not the rollup's.
        assert await runs.day_runs(user, [(DAY0_MS + 2_670_000, DAY0_MS + DAY_MS)], {}) is None
    finally:
        await influx.close()
        await client.aclose()
    assert redis_client.hgetall(rolled_key(user)) == {}
    assert runs_points(influx_db, user) == 0


async def test_a_bucket_too_big_for_a_field_stays_raw(
    api: Api,
    apps: dict[Any, Api],
    redis_client: redis.Redis,
    influx_db: InfluxHelper,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers, user = await new_user(api)
    await post(api, headers, minutes(DAY0_MS + 3_600_000, 6, "code", "influxdb"))
    monkeypatch.setattr(streams_rollup, "MAX_FIELD_BYTES", 20)
    assert len(await compare(apps, redis_client, headers, DAY1)) == 1
    assert redis_client.hgetall(rolled_key(user)) == {}
    assert runs_points(influx_db, user) == 0


async def test_the_rollup_marks_take_turns(
    redis_client: redis.Redis, identity_config: Config
) -> None:
    client = aioredis.Redis.from_url(identity_config.redis_url, decode_responses=True)
    marks = RollupMarks(lambda: client, rolled_key, lock_key, generations_key)
    try:
        assert await marks.marks("u", []) == []
        assert await marks.take("u", "t1", 10_000)
        assert not await marks.take("u", "t2", 10_000)
        assert await marks.commit("u", "t1", {5: "3/300000"})
        assert await marks.marks("u", [5, 6]) == ["3/300000", None]
        assert await marks.take("u", "t3", 10_000)
        assert not await marks.lease("u", "t1", 1_000, [5])
        assert await marks.lease("u", "t3", 1_000, [5])
        assert await marks.marks("u", [5]) == [None]
        await marks.release("u", "t3")
        assert redis_client.get(lock_key("u")) is None
        # Rows read at a counter that has moved since are stale: nothing is unmarked,
        # the lock goes. The same rows at the current counters are written.
        assert await marks.take("u", "t4", 10_000)
        assert await marks.commit("u", "t4", {6: "0/300000"})
        redis_client.hset(generations_key("u"), "6", "2")
        assert await marks.take("u", "t5", 10_000)
        assert not await marks.lease("u", "t5", 1_000, [6], {6: "0"})
        assert await marks.marks("u", [6]) == ["0/300000"]
        assert redis_client.get(lock_key("u")) is None
        assert await marks.take("u", "t6", 10_000)
        assert await marks.lease("u", "t6", 1_000, [6], {6: "2", 7: "0"})
        assert await marks.marks("u", [6]) == [None]
    finally:
        await client.aclose()

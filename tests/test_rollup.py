"""The ``activity_15m`` rollup behind /times: exactly the raw sums, whatever writes."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import itertools
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from falcon import testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screenaware.activity.rollup import BUCKET_MS, DIRTY_DAYS_PER_QUERY, MAX_CLEAN_STRETCHES, layout
from screenaware.activity.store import (
    DAY_MS,
    ActivityStore,
    daily_field,
    daily_key,
    generations_key,
    rolled_key,
    rollup_lock_key,
)
from screenaware.activity.times import POLICY_RETRY_S, TimesService, _iso
from screenaware.app import create_app
from screenaware.config import Config
from screenaware.storage.influx import InfluxClient
from screenaware.storage.localservers import free_port, start_influxd
from screenaware.timeutil import iso, to_ms
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, FakeClock, InfluxHelper, bearer

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
# Three UTC days of data before NOW's day.
DAY0 = dt.datetime(2026, 11, 27, tzinfo=UTC)
DAY0_MS = to_ms(DAY0)
# Or three days around New York's change from summer time (its 1 November is 25 h).
DST_DAY0_MS = to_ms(dt.datetime(2026, 10, 31, tzinfo=UTC))
ZONES = ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York", "Australia/Lord_Howe"]
PROJECTS = {
    "influx": "11111111-1111-4111-8111-111111111111",
    "other": "22222222-2222-4222-8222-222222222222",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW.timestamp())


@pytest.fixture
async def raw_api(identity_config: Config, clock: FakeClock) -> AsyncIterator[Api]:
    """The same service with the rollup off: every answer sums the raw ledger."""
    app = create_app(identity_config.replace(times_rollup=False), clock=clock)
    async with testing.ASGIConductor(app) as client:
        yield Api(client, {})


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


async def new_user(api: Api) -> dict[str, str]:
    headers = await api.new_user(f"{uuidlib.uuid4().hex}@example.org")
    for name, keywords in (("influx", ["influxdb"]), ("other", [])):
        body = {"uuid": PROJECTS[name], "name": name, "keywords": keywords}
        result = await api.client.simulate_post("/api/projects", json=body, headers=headers)
        assert result.status_code == 201, result.text
    return headers


def clear_cache(redis_client: redis.Redis) -> None:
    for key in redis_client.scan_iter("{u:*}:tcache:*"):
        redis_client.delete(key)


async def compare(
    api: Api,
    raw_api: Api,
    redis_client: redis.Redis,
    headers: dict[str, str],
    params: dict[str, Any],
    cached: bool = False,
) -> dict[str, Any]:
    """/times through the rollup equals /times from the raw ledger, to the ms."""
    if not cached:
        clear_cache(redis_client)
    rolled = await get(api, headers, "/api/times", **params)
    clear_cache(redis_client)
    raw = await get(raw_api, headers, "/api/times", **params)
    clear_cache(redis_client)
    assert rolled == raw, params
    return dict(rolled)


def raw_total(influx_db: InfluxHelper, user: str, lo: int, hi: int) -> int:
    rows = influx_db.query(
        'SELECT sum("duration_ms") FROM "activity" WHERE "user" = $user '
        "AND time >= $start AND time < $end",
        {"user": user, "start": lo * 1_000_000, "end": hi * 1_000_000},
    )
    return int(rows[0]["sum"]) if rows else 0


def rollup_points(
    influx_db: InfluxHelper, user: str, measurement: str = "activity_15m", rp: str = "autogen"
) -> int:
    rows = influx_db.query(
        f'SELECT count("duration_ms") FROM "{rp}"."{measurement}" WHERE "user" = $user',
        {"user": user},
    )
    return int(rows[0]["count"]) if rows else 0


# --- the layout (pure) -------------------------------------------------------


def test_layout_splits_edges_clean_and_dirty_days() -> None:
    start = 3 * DAY_MS + 1_234  # inside a bucket: an edge up to the next one
    end = 7 * DAY_MS + 20 * 60_000 - 1  # the last bucket is whole
    clean = [True, False, True, True, True]  # days 3..7
    plan = layout(start, end, [], 3, clean)
    assert plan is not None
    assert plan.edges == [(start, 3 * DAY_MS + BUCKET_MS), (7 * DAY_MS + BUCKET_MS, end + 1)]
    assert plan.core == (3 * DAY_MS + BUCKET_MS, 7 * DAY_MS + BUCKET_MS)
    assert plan.clean == [
        (3 * DAY_MS + BUCKET_MS, 4 * DAY_MS),
        (5 * DAY_MS, 7 * DAY_MS + BUCKET_MS),
    ]
    assert plan.dirty == [(4 * DAY_MS, 5 * DAY_MS)]
    assert plan.dirty_days == [4]


def test_layout_falls_back_to_raw_off_the_quarter_hour() -> None:
    # A bucket boundary inside the range that is not on a 15-minute boundary.
    assert layout(0, DAY_MS - 1, [0, 44 * 60_000 + 30_000, DAY_MS], 0, [True]) is None
    # No whole bucket at all.
    assert layout(1, BUCKET_MS + 5, [], 0, [True]) is None
    # Boundaries outside the whole buckets (in an edge) do not matter.
    assert layout(1, 2 * BUCKET_MS, [1], 0, [True]) is not None


def test_layout_bounds_the_statements() -> None:
    days = 100
    clean = [day % 2 == 0 for day in range(days)]
    plan = layout(0, days * DAY_MS - 1, [], 0, clean)
    assert plan is not None
    assert len(plan.clean) == MAX_CLEAN_STRETCHES
    # Short clean stretches between dirty days are read raw instead.
    assert len(plan.dirty_days) == days - MAX_CLEAN_STRETCHES
    assert all(hi - lo <= DIRTY_DAYS_PER_QUERY * DAY_MS for lo, hi in plan.dirty)
    covered = sorted([*plan.clean, *plan.dirty])
    assert covered[0][0] == 0 and covered[-1][1] == days * DAY_MS
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))


def test_fifteen_minutes_fit_every_zone_in_use() -> None:
    # Local midnights of the zones the property test uses fall on bucket boundaries.
    for name in ZONES:
        zone = ZoneInfo(name)
        for day in range(0, 365, 7):
            local = dt.datetime(2026, 1, 1, tzinfo=zone) + dt.timedelta(days=day)
            assert to_ms(local) % BUCKET_MS == 0, name


# --- the property: rollup answers are raw answers ----------------------------

snapshots = st.lists(
    st.tuples(
        st.integers(0, 2),  # device
        st.integers(0, 2),  # day
        # minute of the day: near UTC and zone midnights, quarter hours, +05:30/+05:45
        st.sampled_from([0, 1, 14, 15, 16, 29, 30, 44, 45, 330, 345, 359, 600, 1079, 1439]),
        st.integers(0, 119).map(lambda n: n * 500),  # ms into the minute
        st.sampled_from([1, 2500, 7777, 10000]),  # duration
        st.sampled_from([("code", "influxdb tuning"), ("slack", "chat"), ("vim", "notes")]),
    ),
    min_size=1,
    max_size=14,
)


def local_midnights(base_ms: int) -> list[int]:
    """The local midnights of every zone tested around the three days from base_ms."""
    first = dt.datetime.fromtimestamp(base_ms / 1000, tz=UTC).date()
    return sorted(
        {
            to_ms(dt.datetime.combine(first + dt.timedelta(days=d), dt.time(), ZoneInfo(name)))
            for name in ZONES
            for d in range(-1, 5)
        }
    )


def ranges(base_ms: int = DAY0_MS) -> st.SearchStrategy[dict[str, Any]]:
    moments = st.one_of(
        st.integers(-2, 3 * 96 + 2).map(lambda q: base_ms + q * BUCKET_MS),  # on a bucket
        st.integers(-3_600_000, 3 * DAY_MS + 3_600_000).map(lambda ms: base_ms + ms),
        # whole local days (the daily rollup), and a millisecond off them
        st.tuples(st.sampled_from(local_midnights(base_ms)), st.sampled_from([-1, 0, 0, 1])).map(
            sum
        ),
    )
    return st.fixed_dictionaries(
        {
            "bounds": st.tuples(moments, moments).map(sorted),
            "tz": st.sampled_from(ZONES),
            "groupBy": st.sampled_from([None, "projectUuid", "categoryUuid", "applicationUuid"]),
            "resolution": st.sampled_from([None, "hour", "day", "week", "month"]),
            "nestTimeBucketsInsideGroups": st.booleans(),
        }
    )


def query(spec: dict[str, Any]) -> dict[str, Any]:
    lo, hi = spec["bounds"]
    params = {"start": iso_ms(lo), "end": iso_ms(hi), "tz": spec["tz"]}
    for name in ("groupBy", "resolution"):
        if spec[name]:
            params[name] = spec[name]
    if spec["nestTimeBucketsInsideGroups"]:
        params["nestTimeBucketsInsideGroups"] = True
    return params


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(snapshots, st.data())
async def test_rollup_answers_equal_the_raw_sums(
    api: Api,
    raw_api: Api,
    redis_client: redis.Redis,
    influx_db: InfluxHelper,
    spec: list[tuple[int, int, int, int, int, tuple[str, str]]],
    data: st.DataObject,
) -> None:
    headers = await new_user(api)
    user = str((await api.me(headers)).json["uuid"])
    base = data.draw(st.sampled_from([DAY0_MS, DST_DAY0_MS]), label="first day")
    snaps = [
        snapshot(
            base + day * DAY_MS + minute * 60_000 + ms + duration,
            duration,
            process,
            f"{title} on device {device}",
        )
        for device, day, minute, ms, duration, (process, title) in spec
    ]
    order = [snaps[i] for i in data.draw(st.permutations(range(len(snaps))), label="order")]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(snaps))), label="phases") | {len(snaps)})
    for lo, hi in itertools.pairwise([0, *cuts]):
        # Late and overlapping snapshots land on days already rolled up.
        await post(api, headers, order[lo:hi])
        if data.draw(st.booleans(), label="correct a stream"):
            day = data.draw(st.integers(0, 2), label="day corrected")
            begin = base + day * DAY_MS
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
            await compare(api, raw_api, redis_client, headers, query(data.draw(ranges(base))))
    # Once every day was read through the rollup, the answers come from it.
    whole = {"start": iso_ms(base), "end": iso_ms(base + 3 * DAY_MS - 1), "tz": "UTC"}
    answer = await compare(api, raw_api, redis_client, headers, whole)
    assert answer["sum"] == raw_total(influx_db, user, base, base + 3 * DAY_MS)
    rolled = redis_client.hgetall(rolled_key(user))
    counters = redis_client.hgetall(generations_key(user))
    days = [str(base // DAY_MS + d) for d in range(3)]
    assert [rolled[d] for d in days] == [counters.get(d, "0") for d in days]
    assert rollup_points(influx_db, user) > 0
    # By day in a zone: its whole local days are rolled up too, stamped with the
    # counters of the UTC days they touch.
    zone = data.draw(st.sampled_from(ZONES), label="daily zone")
    by_day = {**whole, "tz": zone, "resolution": "day", "groupBy": "applicationUuid"}
    answer = await compare(api, raw_api, redis_client, headers, by_day)
    assert answer["sum"] == raw_total(influx_db, user, base, base + 3 * DAY_MS)
    midnights = [
        m for m in local_midnights(base) if base <= m and m <= base + 3 * DAY_MS
        and to_ms(dt.datetime.fromtimestamp(m / 1000, UTC).astimezone(ZoneInfo(zone))
                  .replace(hour=0, minute=0)) == m
    ]  # fmt: skip
    stamps = redis_client.hgetall(daily_key(user))
    for lo, hi in itertools.pairwise(midnights):
        touched = range(lo // DAY_MS, (hi - 1) // DAY_MS + 1)
        expected = ",".join(str(counters.get(str(d), "0")) for d in touched)
        assert stamps[daily_field(zone, lo)] == expected
    # ... and activity_1d holds exactly the raw sum of those whole local days.
    whole_days = raw_total(influx_db, user, midnights[0], midnights[-1]) if midnights else 0
    if whole_days:
        rows = influx_db.query(
            'SELECT sum("duration_ms") FROM "rollups"."activity_1d" '
            'WHERE "user" = $user AND "zone" = $zone AND time >= $start AND time < $end',
            {
                "user": user,
                "zone": zone,
                "start": midnights[0] * 10**6,
                "end": midnights[-1] * 10**6,
            },
        )
        assert int(rows[0]["sum"]) == whole_days
    for _ in range(3):
        await compare(api, raw_api, redis_client, headers, query(data.draw(ranges(base))))


# --- what the rollup is read for, and when it is not -------------------------


DAY1 = {"start": iso_ms(DAY0_MS), "end": iso_ms(DAY0_MS + DAY_MS - 1), "tz": "UTC"}


async def test_clean_days_are_read_from_the_rollup_and_a_write_makes_them_raw_again(
    api: Api, raw_api: Api, redis_client: redis.Redis, influx_db: InfluxHelper
) -> None:
    headers = await new_user(api)
    user = str((await api.me(headers)).json["uuid"])
    await post(api, headers, [snapshot(DAY0_MS + 3_600_000, 10_000, "code", "x")])
    assert (await compare(api, raw_api, redis_client, headers, DAY1))["sum"] == 10_000
    # Proof that a clean day is read from the rollup: a point written into it alone.
    httpx.post(
        f"{influx_db.url}/write",
        params={"db": influx_db.database},
        content=f"activity_15m,user={user},project=x,category=x,application=x "
        f"duration_ms=5i {(DAY0_MS + 7_200_000) * 1_000_000}",
    )
    clear_cache(redis_client)
    assert (await get(api, headers, "/api/times", **DAY1))["sum"] == 10_005
    # A snapshot of that day makes it dirty: raw again, and rolled up anew (the
    # foreign point stays: it is of a bucket the ledger has nothing in).
    await post(api, headers, [snapshot(DAY0_MS + 3_610_000, 10_000, "code", "x")])
    assert (await get(api, headers, "/api/times", **DAY1))["sum"] == 20_000
    clear_cache(redis_client)
    assert (await get(api, headers, "/api/times", **DAY1))["sum"] == 20_005


async def test_clean_local_days_are_read_from_the_daily_rollup_and_a_write_makes_them_raw(
    api: Api, raw_api: Api, redis_client: redis.Redis, influx_db: InfluxHelper
) -> None:
    headers = await new_user(api)
    user = str((await api.me(headers)).json["uuid"])
    zone = "Asia/Kathmandu"  # +05:45: its days touch two UTC days each
    first = to_ms(dt.datetime(2026, 11, 27, tzinfo=ZoneInfo(zone)))
    await post(
        api,
        headers,
        [snapshot(first + d * DAY_MS + 3_600_000, 10_000, "code", "x") for d in range(2)],
    )
    days = {"start": iso_ms(first), "end": iso_ms(first + 2 * DAY_MS - 1), "tz": zone,
            "resolution": "day", "groupBy": "applicationUuid"}  # fmt: skip
    assert (await compare(api, raw_api, redis_client, headers, days))["sum"] == 20_000
    counters = redis_client.hgetall(generations_key(user))
    stamps = redis_client.hgetall(daily_key(user))
    for d in range(2):
        lo = first + d * DAY_MS
        expected = ",".join(
            str(counters.get(str(u), "0")) for u in (lo // DAY_MS, lo // DAY_MS + 1)
        )
        assert stamps[daily_field(zone, lo)] == expected
    # Proof that a clean local day is read from activity_1d: a point written there alone
    # (the 15-minute rollup and the ledger do not have it).
    app = str(next(iter(redis_client.hkeys(f"{{u:{user}}}:apps"))))
    httpx.post(
        f"{influx_db.url}/write",
        params={"db": influx_db.database, "rp": "rollups"},
        content=f"activity_1d,user={user},zone={zone},application={app},project=x,category=x "
        f"duration_ms=5i {(first + DAY_MS) * 1_000_000}",
    ).raise_for_status()
    clear_cache(redis_client)
    answer = await get(api, headers, "/api/times", **days)
    assert answer["sum"] == 20_005
    assert [b["sum"] for b in answer["grouped"].values()] == [10_000, 10_005]
    # In another zone the same instants are other local days: not read from it.
    other = {**days, "tz": "Asia/Kolkata"}
    assert (await compare(api, raw_api, redis_client, headers, other))["sum"] == 20_000
    # A snapshot of the second day (in its second UTC day) makes that local day dirty:
    # summed from the 15-minute buckets again (without the foreign point), then rolled
    # up anew; the first day stays clean.
    await post(api, headers, [snapshot(first + DAY_MS + 20 * 3_600_000, 1_000, "code", "x")])
    clear_cache(redis_client)
    answer = await get(api, headers, "/api/times", **days)
    assert [b["sum"] for b in answer["grouped"].values()] == [10_000, 11_000]
    assert (
        redis_client.hget(daily_key(user), daily_field(zone, first))
        == stamps[daily_field(zone, first)]
    )
    assert (
        redis_client.hget(daily_key(user), daily_field(zone, first + DAY_MS))
        != stamps[daily_field(zone, first + DAY_MS)]
    )
    # Clean again, read from activity_1d (the foreign point, of a tag set the ledger
    # does not have, was not overwritten).
    clear_cache(redis_client)
    answer = await get(api, headers, "/api/times", **days)
    assert [b["sum"] for b in answer["grouped"].values()] == [10_000, 11_005]
    # The stamps go with the user.
    deleted = await api.client.simulate_delete(f"/api/users/{user}", headers=api.admin)
    assert deleted.status_code == 200, deleted.text
    assert not redis_client.exists(daily_key(user), rolled_key(user))


async def test_a_cached_answer_is_sent_gzip_compressed_or_plain(
    api: Api, redis_client: redis.Redis
) -> None:
    headers = await new_user(api)
    await post(api, headers, [snapshot(DAY0_MS + 3_600_000, 10_000, "code", "x")])
    params = {**DAY1, "resolution": "hour", "groupBy": "applicationUuid"}
    plain = await api.client.simulate_get("/api/times", params=params, headers=headers)
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"
    assert plain.json["sum"] == 10_000
    for accept, compressed in (
        ("gzip", True), ("deflate, gzip;q=0.5", True), ("*", True), ("br;q=1.0, *;q=0.1", True),
        ("identity", False), ("gzip;q=0", False), ("*;q=0", False), ("deflate", False),
        ("gzip;q=0, *", False), ("GZIP", True), ("", False),
    ):  # fmt: skip
        for _ in range(2):  # computed, then cached
            result = await api.client.simulate_get(
                "/api/times", params=params, headers={**headers, "Accept-Encoding": accept}
            )
            assert result.status_code == 200
            assert result.headers["vary"] == "Accept-Encoding"
            assert (result.headers.get("content-encoding") == "gzip") is compressed, accept
            body = gzip.decompress(result.content) if compressed else result.content
            assert body == plain.content, accept
        clear_cache(redis_client)
    # CSV is never compressed.
    csv = await api.client.simulate_get(
        "/api/times", params=params,
        headers={**headers, "Accept-Encoding": "gzip", "Accept": "text/csv"},
    )  # fmt: skip
    assert csv.status_code == 200 and "content-encoding" not in csv.headers
    assert csv.text.splitlines()[0].startswith("start,end,")


async def test_cached_ranges_are_invalidated_exactly_with_the_rollup(
    api: Api, raw_api: Api, redis_client: redis.Redis
) -> None:
    headers = await new_user(api)
    await post(
        api,
        headers,
        [snapshot(DAY0_MS + d * DAY_MS + 3_600_000, 10_000, "code", "x") for d in range(3)],
    )
    days = [
        {"start": iso_ms(DAY0_MS + d * DAY_MS), "end": iso_ms(DAY0_MS + (d + 1) * DAY_MS - 1),
         "tz": "UTC", "groupBy": "applicationUuid", "resolution": "hour"}
        for d in range(3)
    ]  # fmt: skip
    for params in days:
        await get(api, headers, "/api/times", **params)
    answers = [await get(api, headers, "/api/times", **params) for params in days]
    entries = set(redis_client.scan_iter("{u:*}:tcache:*"))
    assert len(entries) == 3
    for entry in entries:  # an entry stored again gets its expiry back
        assert redis_client.persist(entry)
    # A late snapshot of a second device overlapping day 1's by 4 s (the same
    # application: a new one would be a new group, listed in every range).
    await post(api, headers, snapshot(DAY0_MS + DAY_MS + 3_606_000, 10_000, "code", "y"))
    again = [await get(api, headers, "/api/times", **params) for params in days]
    # Days 0 and 2 came from their cache entries; only day 1 was computed anew.
    assert again[0] == answers[0] and again[2] == answers[2]
    assert set(redis_client.scan_iter("{u:*}:tcache:*")) == entries
    assert sorted(redis_client.ttl(entry) > 0 for entry in entries) == [False, False, True]
    assert again[1]["sum"] == 16_000
    for params, answer in zip(days, again, strict=True):
        assert await compare(api, raw_api, redis_client, headers, params) == answer


async def test_concurrent_writes_and_rollups_lose_nothing(
    api: Api, raw_api: Api, redis_client: redis.Redis, identity_config: Config, clock: FakeClock
) -> None:
    """Snapshots land while other workers roll their day up: a write acknowledged
    after a rollup read the day's counter leaves the day dirty."""
    headers = await new_user(api)
    other = create_app(identity_config, clock=clock)
    async with testing.ASGIConductor(other) as client:
        second = Api(client, {})

        async def writes() -> None:
            for i in range(30):
                await post(api, headers, snapshot(DAY0_MS + 3_600_000 + i * 7_000, 10_000,
                                                  "code", f"t{i % 3}"))  # fmt: skip

        async def reads(worker: Api) -> None:
            for _ in range(15):
                clear_cache(redis_client)
                await get(worker, headers, "/api/times", **DAY1, groupBy="applicationUuid")

        await asyncio.gather(writes(), reads(api), reads(second))
    answer = await compare(api, raw_api, redis_client, headers, {**DAY1, "resolution": "hour"})
    assert answer["sum"] == 29 * 7_000 + 10_000


async def times_service(
    config: Config, clock: FakeClock, lock_ttl_ms: int, lease_ms: int
) -> tuple[TimesService, InfluxClient, Any]:
    import redis.asyncio as aioredis

    influx = InfluxClient(config)
    await influx.open()
    client = aioredis.Redis.from_url(config.redis_url, decode_responses=True)
    store = ActivityStore(lambda: client)
    service = TimesService(influx, store, clock, lock_ttl_ms=lock_ttl_ms, lease_ms=lease_ms)
    return service, influx, client


async def test_a_rollup_taken_by_another_worker_is_left_alone(
    api: Api, redis_client: redis.Redis, identity_config: Config, clock: FakeClock
) -> None:
    headers = await new_user(api)
    user = str((await api.me(headers)).json["uuid"])
    await post(api, headers, [snapshot(DAY0_MS + 3_600_000, 10_000, "code", "x")])
    redis_client.set(rollup_lock_key(user), "someone-else", px=60_000)
    assert (await get(api, headers, "/api/times", **DAY1))["sum"] == 10_000
    assert redis_client.hgetall(rolled_key(user)) == {}
    assert redis_client.get(rollup_lock_key(user)) == "someone-else"
    # A lock that would expire before a write could finish: nothing is written.
    redis_client.delete(rollup_lock_key(user))
    clear_cache(redis_client)
    service, influx, client = await times_service(
        identity_config, clock, lock_ttl_ms=1_000, lease_ms=5_000
    )
    try:
        day = {"start": DAY0, "end": DAY0 + dt.timedelta(days=1, milliseconds=-1)}
        assert (await service.times(user, day, "UTC"))["sum"] == 10_000
        # The lock was taken (and is left to expire), nothing marked.
        assert redis_client.get(rollup_lock_key(user)) is not None
    finally:
        await influx.close()
        await client.aclose()
    assert redis_client.hgetall(rolled_key(user)) == {}


async def test_a_rollup_influxdb_refuses_leaves_the_days_raw(
    api: Api, raw_api: Api, redis_client: redis.Redis, influx_db: InfluxHelper
) -> None:
    headers = await new_user(api)
    user = str((await api.me(headers)).json["uuid"])
    await post(api, headers, [snapshot(DAY0_MS + 3_600_000, 10_000, "code", "x")])
    # A float duration in the rollup's shard: InfluxDB refuses the integer ones.
    httpx.post(
        f"{influx_db.url}/write",
        params={"db": influx_db.database},
        content=f"activity_15m,user=nobody duration_ms=1.5 {(DAY0_MS + 60_000) * 1_000_000}",
    ).raise_for_status()
    assert (await compare(api, raw_api, redis_client, headers, DAY1))["sum"] == 10_000
    assert redis_client.hgetall(rolled_key(user)) == {}
    assert redis_client.get(rollup_lock_key(user)) is None


async def test_the_rollup_lock_unmarks_the_days_it_writes(redis_client: redis.Redis) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url(redis_client), decode_responses=True)
    store = ActivityStore(lambda: client)
    try:
        assert await store.take_rollup("u", "t1", 10_000)
        assert not await store.take_rollup("u", "t2", 10_000)
        assert await store.commit_rollup("u", "t1", {5: "3", 6: "0"})
        assert redis_client.hgetall(rolled_key("u")) == {"5": "3", "6": "0"}
        assert redis_client.get(rollup_lock_key("u")) is None
        assert await store.take_rollup("u", "t3", 10_000)
        assert not await store.rollup_lease("u", "t1", 1_000, [5])
        assert redis_client.hgetall(rolled_key("u")) == {"5": "3", "6": "0"}
        # Days about to be written are dirty until the commit.
        assert await store.rollup_lease("u", "t3", 1_000, [5])
        assert redis_client.hgetall(rolled_key("u")) == {"6": "0"}
        assert not await store.rollup_lease("u", "t3", 60_000)
        assert not await store.commit_rollup("u", "t1", {5: "4"})
        assert await store.commit_rollup("u", "t3", {5: "4"})
        assert redis_client.hgetall(rolled_key("u")) == {"5": "4", "6": "0"}
        # The daily rollup's local days: the same protocol, in their own hash.
        assert await store.take_rollup("u", "t4", 10_000)
        assert await store.commit_rollup("u", "t4", {7: "1"}, {"UTC:0": "1", "UTC:1": "2,3"})
        assert redis_client.hgetall(rolled_key("u")) == {"5": "4", "6": "0", "7": "1"}
        assert redis_client.hgetall(daily_key("u")) == {"UTC:0": "1", "UTC:1": "2,3"}
        assert await store.take_rollup("u", "t5", 10_000)
        assert await store.rollup_lease("u", "t5", 1_000, [7], ["UTC:1"])
        assert redis_client.hgetall(rolled_key("u")) == {"5": "4", "6": "0"}
        assert redis_client.hgetall(daily_key("u")) == {"UTC:0": "1"}
        assert await store.rollup_lease("u", "t5", 1_000, [], ["UTC:0"])
        assert redis_client.hgetall(daily_key("u")) == {}
        assert await store.commit_rollup("u", "t5", {}, {"UTC:0": "9"})
        assert redis_client.hgetall(daily_key("u")) == {"UTC:0": "9"}
        assert redis_client.get(rollup_lock_key("u")) is None
        # Sums read at a counter that has moved since are stale (a newer rollup may be
        # in place): nothing is unmarked, nothing may be written, the lock goes.
        redis_client.hset(generations_key("u"), "5", "5")
        assert await store.take_rollup("u", "t6", 10_000)
        assert not await store.rollup_lease("u", "t6", 1_000, [5], ["UTC:0"], {5: "4"})
        assert redis_client.hgetall(rolled_key("u"))["5"] == "4"
        assert redis_client.hgetall(daily_key("u")) == {"UTC:0": "9"}
        assert redis_client.get(rollup_lock_key("u")) is None
        assert await store.take_rollup("u", "t7", 10_000)
        assert await store.rollup_lease("u", "t7", 1_000, [5], [], {5: "5", 8: "0"})
        assert "5" not in redis_client.hgetall(rolled_key("u"))
    finally:
        await client.aclose()


def redis_url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


@given(
    st.datetimes(
        min_value=dt.datetime(1, 1, 2), timezones=st.sampled_from([UTC, *map(ZoneInfo, ZONES)])
    )
)
def test_answers_format_times_as_iso_does(moment: dt.datetime) -> None:
    assert _iso(moment) == iso(moment)


async def test_without_leave_to_create_the_daily_policy_the_15_minute_rollup_still_serves(
    identity_config: Config,
    clock: FakeClock,
    redis_client: redis.Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A user that may read and write the database but not manage it (as InfluxDB
    # 2.x/3.x tokens through the v1 API): no `rollups` policy, no daily rollup, yet
    # every answer is exact and the 15-minute rollup is written and read.
    port = free_port()
    server = start_influxd(tmp_path / "influxdb", port, auth=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for statement, auth in (
            ("CREATE USER admin WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES", None),
            ("CREATE DATABASE limited", ("admin", "admin-pw")),
            ("CREATE USER writer WITH PASSWORD 'writer-pw'", ("admin", "admin-pw")),
            ('GRANT ALL ON "limited" TO "writer"', ("admin", "admin-pw")),
        ):
            done = httpx.post(f"{base}/query", data={"q": statement}, auth=auth)
            assert done.status_code == 200 and "error" not in done.text, done.text
        config = identity_config.replace(
            influx_url=base, influx_db="limited", influx_username="writer",
            influx_password="writer-pw",
        )  # fmt: skip
        async with testing.ASGIConductor(create_app(config, clock=clock)) as client:
            login = await client.simulate_post(
                "/api/auth/local", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            api = Api(client, bearer(login.json["token"]))
            headers = await new_user(api)
            user = str((await api.me(headers)).json["uuid"])
            await post(api, headers, [snapshot(DAY0_MS + 3_600_000 * h, 10_000, "code", "x")
                                      for h in range(1, 4)])  # fmt: skip
            days = {**DAY1, "resolution": "day", "groupBy": "applicationUuid"}
            for _ in range(2):  # rolled up on the way, then read from the rollup
                clear_cache(redis_client)
                assert (await get(api, headers, "/api/times", **days))["sum"] == 30_000
            assert redis_client.hgetall(rolled_key(user))  # the 15-minute rollup's marks
            assert redis_client.hgetall(daily_key(user)) == {}
            # Refused once, asked again only after a while.
            refused = "no 'rollups' retention policy"
            assert caplog.text.count(refused) == 1
            clock.advance(POLICY_RETRY_S + 1)
            clear_cache(redis_client)
            assert (await get(api, headers, "/api/times", **days))["sum"] == 30_000
            assert caplog.text.count(refused) == 2
        policies = httpx.post(
            f"{base}/query", data={"q": "SHOW RETENTION POLICIES ON limited"},
            auth=("admin", "admin-pw"),
        ).json()["results"][0]["series"][0]["values"]  # fmt: skip
        assert [p[0] for p in policies] == ["autogen"]
    finally:
        server.stop()


async def test_empty_local_days_rolled_up_first_are_read_back(
    api: Api, redis_client: redis.Redis
) -> None:
    # A new user's first day view, before anyone rolled up a day with time in it: the
    # empty days are stamped clean, so the daily rollup's policy must exist for the
    # next answer that reads them.
    headers = await new_user(api)
    user = str((await api.me(headers)).json["uuid"])
    days = {"start": iso_ms(DAY0_MS), "end": iso_ms(DAY0_MS + 3 * DAY_MS - 1), "tz": "UTC",
            "resolution": "day"}  # fmt: skip
    assert (await get(api, headers, "/api/times", **days))["sum"] == 0
    assert redis_client.hgetall(daily_key(user))
    clear_cache(redis_client)
    answer = await get(api, headers, "/api/times", **days, groupBy="applicationUuid")
    assert answer["sum"] == 0

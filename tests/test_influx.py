"""The InfluxDB boundary and the group-commit writer, against the real influxd."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screenaware.config import Config
from screenaware.errors import QueryFailed, StorageUnavailable, WriteQueueFull, WriteRejected
from screenaware.storage.influx import GroupCommitWriter, InfluxClient, Point, UniqueClock
from tests.conftest import InfluxHelper, dead_url


@pytest.fixture
async def influx(config: Config) -> AsyncIterator[InfluxClient]:
    client = InfluxClient(config)
    await client.open()
    await client.ensure_database()
    yield client
    await client.close()


@pytest.fixture
async def writer(influx: InfluxClient) -> AsyncIterator[GroupCommitWriter]:
    w = GroupCommitWriter(influx, max_batch_lines=1000, max_pending_lines=10_000)
    yield w
    await w.stop()


async def test_concurrent_writes_share_batches_and_all_land(
    writer: GroupCommitWriter, influx_db: InfluxHelper
) -> None:
    stamp = UniqueClock(slot=0)

    async def one(i: int) -> None:
        await writer.write([Point("m").tag("k", str(i % 7)).field("i", i).time(stamp())])

    await asyncio.gather(*(one(i) for i in range(500)))
    assert influx_db.count("m") == 500
    # 500 concurrent requests, far fewer /write calls: group commit happened.
    assert writer.batches_written < 100
    values = sorted(int(str(r["i"])) for r in influx_db.query("SELECT i FROM m"))
    assert values == list(range(500))


async def test_a_batch_respects_the_line_limit(
    influx: InfluxClient, influx_db: InfluxHelper
) -> None:
    writer = GroupCommitWriter(influx, max_batch_lines=10, max_pending_lines=10_000)
    stamp = UniqueClock(slot=0)
    try:
        await asyncio.gather(
            *(writer.write([Point("m").field("i", i).time(stamp())]) for i in range(95))
        )
    finally:
        await writer.stop()
    assert influx_db.count("m") == 95
    assert writer.batches_written >= 10


async def test_rejected_points_fail_only_their_own_request(
    writer: GroupCommitWriter, influx_db: InfluxHelper
) -> None:
    stamp = UniqueClock(slot=0)
    await writer.write([Point("m").field("v", 1).time(stamp())])  # v is an integer field now
    good = [writer.write([Point("m").field("v", i).time(stamp())]) for i in range(5)]
    bad = writer.write([Point("m").field("v", "a string").time(stamp())])
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert results[:5] == [None] * 5
    assert isinstance(results[5], WriteRejected)
    assert influx_db.count("m") == 6


async def test_dead_server_fails_every_waiting_request(config: Config) -> None:
    client = InfluxClient(config.replace(influx_url=dead_url("http")))
    await client.open()
    writer = GroupCommitWriter(client)
    try:
        results = await asyncio.gather(
            *(writer.write([Point("m").field("v", i)]) for i in range(10)), return_exceptions=True
        )
    finally:
        await writer.stop()
        await client.close()
    assert all(isinstance(r, StorageUnavailable) for r in results)


async def test_a_full_queue_refuses_instead_of_piling_up(influx: InfluxClient) -> None:
    writer = GroupCommitWriter(influx, max_batch_lines=5, max_pending_lines=5)
    stamp = UniqueClock(slot=0)
    try:
        results = await asyncio.gather(
            *(writer.write([Point("m").field("v", i).time(stamp())]) for i in range(50)),
            return_exceptions=True,
        )
    finally:
        await writer.stop()
    refused = [r for r in results if isinstance(r, WriteQueueFull)]
    assert refused, "the bounded queue never refused"
    assert all(r is None or isinstance(r, WriteQueueFull) for r in results)


async def test_missing_database_is_created_on_write(
    influx: InfluxClient, influx_db: InfluxHelper
) -> None:
    influx_db.drop()
    await influx.write_lines(b"m v=1i 1")
    assert influx_db.count("m") == 1


async def test_bind_parameters_carry_hostile_strings_as_data(
    writer: GroupCommitWriter, influx: InfluxClient
) -> None:
    await writer.write([Point("m").tag("device", "0").field("v", 1)])
    hostile = "0' OR 1=1; DROP DATABASE x; --"
    assert await influx.query("SELECT v FROM m WHERE device = $d", {"d": hostile}) == []
    rows = await influx.query("SELECT v FROM m WHERE device = $d", {"d": "0"})
    assert len(rows) == 1 and rows[0].rows()[0]["v"] == 1


def test_unique_clock_never_repeats_or_goes_back() -> None:
    ticks = iter([10_000, 10_400, 10_999, 5_000, 20_000])
    clock = UniqueClock(lambda: next(ticks), slot=7)
    assert [clock() for _ in range(5)] == [10_007, 11_007, 12_007, 13_007, 20_007]


def test_unique_clocks_of_two_processes_never_collide() -> None:
    # Two workers reading the very same wall clock still stamp different times.
    a, b = (
        UniqueClock(lambda: 1_700_000_000_000_000_000, 0),
        UniqueClock(lambda: 1_700_000_000_000_000_000, 1),
    )
    stamps_a = {a() for _ in range(1000)}
    stamps_b = {b() for _ in range(1000)}
    assert len(stamps_a) == len(stamps_b) == 1000
    assert not stamps_a & stamps_b


# Lone surrogates cannot be encoded as UTF-8 at all.
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)

# Text as sensors send it: window titles with quotes, commas, spaces, backslashes,
# newlines, emoji and other scripts. NUL is excluded: InfluxDB strings cannot hold it.
titles = st.text(
    alphabet=st.characters(exclude_categories=SURROGATES, exclude_characters="\x00"),
    max_size=200,
) | st.sampled_from(
    ['"quoted"', "a,b c=d", "back\\slash\\", "line\nbreak\r\n", "😀 🚀 émoji", "\\"]
)


# Tag values are identifiers (uuids, ids, names). Line protocol cannot carry a tag
# value that ends in a backslash or holds a tab, CR or LF; free text goes in fields.
tag_values = st.text(
    alphabet=st.characters(exclude_categories=SURROGATES, exclude_characters="\x00\t\r\n"),
    min_size=1,
    max_size=50,
).filter(lambda t: not t.endswith("\\")) | st.sampled_from(["a,b c=d", '"q"', "ü😀", "a\\b"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(title=titles, tag=tag_values)
async def test_strings_round_trip_exactly(
    writer: GroupCommitWriter, influx: InfluxClient, title: str, tag: str
) -> None:
    marker = json.dumps([title, tag])
    point = Point("window").tag("user", tag).field("title", title).field("marker", marker)
    await writer.write([point.time(UniqueClock(slot=0)())])
    series = await influx.query('SELECT title, "user" FROM window WHERE marker = $m', {"m": marker})
    assert len(series) == 1
    row = series[0].rows()[0]
    assert row["title"] == title
    assert row["user"] == tag
    # A MessagePack answer carries the same values.
    query = 'SELECT title, "user" FROM window WHERE marker = $m'
    assert await influx.query(query, {"m": marker}, binary=True) == series


async def test_binary_answers_equal_json_answers_and_fail_alike(
    writer: GroupCommitWriter, influx: InfluxClient, config: Config
) -> None:
    points = [
        Point("mix").tag("t", tag).field("i", i).field("f", i / 3).field("s", f'x{i}"')
        for i, tag in enumerate(["a", "b", "a"])
    ]
    points.append(Point("mix").tag("t", "c").field("b", True))  # other columns null
    await writer.write([p.time(UniqueClock(slot=0)()) for p in points])
    for query in ("SELECT * FROM mix", "SELECT sum(i) FROM mix GROUP BY t", "SELECT * FROM nix"):
        assert await influx.query(query, binary=True) == await influx.query(query)
    with pytest.raises(QueryFailed, match="error parsing query"):
        await influx.query("SELECT nonsense FROM", binary=True)  # a 400
    other = InfluxClient(dataclasses.replace(config, influx_db="nowhere"))
    await other.open()
    with pytest.raises(QueryFailed, match="database not found"):
        await other.query("SELECT * FROM mix", binary=True)  # an error inside a 200
    await other.close()


async def test_each_process_leases_its_own_clock_slot(config: Config) -> None:
    from screenaware.storage.backends import Backends

    first, second = Backends(config), Backends(config)
    await first.open()
    await second.open()
    try:
        assert first.point_clock.slot != second.point_clock.slot
    finally:
        await first.close()
        await second.close()

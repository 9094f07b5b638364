"""Hypothesis tests of the parsers that take untrusted text: timestamps, SemVer,
log messages. (URLs and paths: test_attribution; line protocol: test_influx.)"""

from __future__ import annotations

import datetime as dt
import re

from hypothesis import example, given
from hypothesis import strategies as st
from marshmallow import ValidationError

from schemas.activity import SnapshotSchema, TimesQuerySchema
from schemas.logs import SEMVER
from screenaware.activity.snapshots import snapshot_start_ms
from screenaware.logs.service import parse_message
from screenaware.timeutil import from_ms, iso, to_ms

moments = st.datetimes(
    min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2199, 12, 30),
    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
                               dt.timezone(dt.timedelta(hours=-8))]),
)  # fmt: skip


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@given(moments, st.integers(min_value=1, max_value=10000))
# Found by this test: through a float, 00:00:00.001 of this day came out a ms early.
@example(dt.datetime(2004, 2, 1, 0, 0, 0, 1001, tzinfo=dt.UTC), 1)
def test_any_iso_time_gives_the_same_millisecond(moment: dt.datetime, duration: int) -> None:
    text = moment.isoformat(timespec="milliseconds")
    loaded = SnapshotSchema().load({"timeTaken": text, "durationMs": duration})
    start, source = snapshot_start_ms(loaded, now_ms=0)
    assert source == "timeTaken"
    # The text keeps whole milliseconds; count them exactly, in integers.
    assert start == (moment - EPOCH) // dt.timedelta(milliseconds=1) - duration


@given(st.integers(min_value=0, max_value=7_258_118_400_000))
def test_milliseconds_round_trip_exactly(ms: int) -> None:
    moment = from_ms(ms)
    assert moment.tzinfo is not None
    assert to_ms(moment) == ms
    assert to_ms(dt.datetime.fromisoformat(iso(moment).replace("Z", "+00:00"))) == ms
    assert to_ms(moment.astimezone(dt.timezone(dt.timedelta(hours=-8)))) == ms


@given(st.text(max_size=60))
def test_arbitrary_text_as_a_time_is_accepted_or_refused_never_crashes(text: str) -> None:
    try:
        loaded = TimesQuerySchema().load({"start": text})
    except ValidationError as exc:
        assert "start" in exc.messages
    else:
        assert loaded["start"].tzinfo is not None


numbers = st.integers(min_value=0, max_value=10**6).map(str)
identifiers = st.from_regex(r"[0-9A-Za-z-]{1,8}", fullmatch=True).filter(
    lambda s: not (s.isdigit() and len(s) > 1 and s.startswith("0"))
)


@given(numbers, numbers, numbers, st.lists(identifiers, max_size=3),
       st.lists(st.from_regex(r"[0-9A-Za-z-]{1,8}", fullmatch=True), max_size=3))  # fmt: skip
def test_every_semver_is_accepted(
    major: str, minor: str, patch: str, pre: list[str], build: list[str]
) -> None:
    version = f"{major}.{minor}.{patch}"
    if pre:
        version += "-" + ".".join(pre)
    if build:
        version += "+" + ".".join(build)
    assert re.match(SEMVER, version), version


@given(st.text(max_size=40))
def test_semver_never_accepts_text_without_three_numbers(text: str) -> None:
    if re.match(SEMVER, text):
        core = re.split(r"[-+]", text, maxsplit=1)[0].split(".")
        assert len(core) == 3 and all(part.isdigit() for part in core)


@given(st.text(max_size=40))
def test_message_parsing_is_total(text: str) -> None:
    numeric, flag = parse_message(text)
    if numeric is not None:
        assert float(text.strip()) == numeric
    if flag is not None:
        assert text.strip().lower() == str(flag).lower()

"""Our line-protocol encoder is byte for byte influxdb_client's Point."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from screenaware.activity.attribution import Attribution
from screenaware.activity.snapshots import LineWriter, activity_line, window_lines
from screenaware.activity.timeline import Record
from screenaware.storage.influx import Point
from screenaware.storage.lineprotocol import FieldValue, encode

# Every character class the escaping distinguishes, and then any text at all.
SPECIAL = st.sampled_from([",", "=", " ", "\n", "\t", "\r", '"', "\\", "#", "é", "😀", "\x00"])
# Text as the service can receive it: valid UTF-8. Lone surrogates never arrive (the
# API's JSON parser refuses them with 400, and an import's parser never yields one), and
# neither encoder can write them to InfluxDB.
unicode = st.characters(codec="utf-8")
texts = st.one_of(
    st.lists(st.one_of(SPECIAL, unicode), max_size=12).map("".join),
    st.text(unicode, max_size=30),
)
values: st.SearchStrategy[FieldValue | None] = st.one_of(
    texts,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)


def library(
    measurement: str,
    tags: dict[str, str | None],
    fields: dict[str, FieldValue | None],
    time_ns: int,
) -> str:
    point = Point(measurement)
    for key, tag in tags.items():
        point = point.tag(key, tag)
    for key, value in fields.items():
        point = point.field(key, value)
    line: str = point.time(time_ns).to_line_protocol()
    return line


@settings(max_examples=1000, deadline=None)
@given(
    texts.filter(lambda m: not m.startswith("#")),  # the library warns on those
    st.dictionaries(texts, st.one_of(texts, st.none()), max_size=5),
    st.dictionaries(texts, values, max_size=6),
    st.integers(min_value=0, max_value=2**63 - 1),
)
def test_encode_is_the_library_byte_for_byte(
    measurement: str,
    tags: dict[str, str | None],
    fields: dict[str, FieldValue | None],
    time_ns: int,
) -> None:
    assert encode(measurement, tags, fields, time_ns) == library(measurement, tags, fields, time_ns)


def test_a_point_of_the_ingest_path() -> None:
    tags: dict[str, str | None] = {"user": "u 1", "idx": "0", "focused": "true"}
    fields: dict[str, FieldValue | None] = {
        "title": 'a "quoted" C:\\path, with = and spaces',
        "screen": 0.5,
        "visible": 1.0,
        "duration_ms": 10000,
        "ok": True,
    }
    line = encode("window", tags, fields, 1_764_576_000_000_000_000)
    assert line == library("window", tags, fields, 1_764_576_000_000_000_000)
    assert line.startswith("window,focused=true,idx=0,user=u\\ 1 duration_ms=10000i,ok=true,")
    assert encode("window", tags, {"x": None, "y": float("nan")}, 1) == ""


# The snapshot path's own encoders, against the library: what window_lines and
# activity_line wrote when they went through Point (the fields they carry).
def library_window_lines(user: str, key: str, time_ns: int, snapshot: dict[str, Any]) -> list[str]:
    duration = int(snapshot["durationMs"])
    return [
        library(
            "window",
            {"user": user, "idx": str(idx), "focused": "true" if w.get("isFocused") else "false"},
            {
                "snapshot": key,
                "process": w.get("processName") or "",
                "title": w.get("title") or "",
                "screen": float(w.get("screenPercentage") or 0.0),
                "visible": float(w.get("visiblePercentage") or 0.0),
                "documents": orjson.dumps(w.get("documents") or []).decode(),
                "tags": orjson.dumps(w.get("tags") or {}).decode(),
                "duration_ms": duration,
            },
            time_ns,
        )
        for idx, w in enumerate(snapshot["windows"])
    ]


def library_activity_line(user: str, record: Record, a: Attribution) -> str:
    return library(
        "activity",
        {
            "user": user,
            "project": record.project,
            "category": record.category,
            "application": record.application,
        },
        {
            "duration_ms": record.effective,
            "span_ms": record.end - record.start,
            "document": a.base_document or "",
            "title": a.title,
            "process": a.process,
            "reason": a.reason or "",
            "snapshot": record.key,
        },
        record.time_ns,
    )


shares = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 1))
snapshot_windows = st.fixed_dictionaries(
    {},
    optional={
        "title": st.one_of(st.none(), texts),
        "isFocused": st.booleans(),
        "processName": st.one_of(st.none(), texts),
        "screenPercentage": shares,
        "visiblePercentage": shares,
        "tags": st.dictionaries(texts, st.floats(-1e9, 1e9), max_size=3),
        "documents": st.lists(
            st.fixed_dictionaries({"path": texts}, optional={"title": st.one_of(st.none(), texts)}),
            max_size=3,
        ),
    },
)
times_ns = st.integers(min_value=0, max_value=2**63 - 1)


@settings(max_examples=1000, deadline=None)
@given(
    texts,
    texts,
    times_ns,
    st.integers(1, 10000),
    st.lists(snapshot_windows, max_size=4),
)
def test_window_lines_are_the_library_byte_for_byte(
    user: str, key: str, time_ns: int, duration: int, windows: list[dict[str, Any]]
) -> None:
    snapshot = {"durationMs": duration, "windows": windows}
    assert window_lines(user, key, time_ns, snapshot) == library_window_lines(
        user, key, time_ns, snapshot
    )


@settings(max_examples=1000, deadline=None)
@given(
    texts,
    st.builds(
        Record,
        start=st.integers(0, 2**43),
        end=st.integers(0, 2**44),
        key=texts,
        offset=st.integers(-1, 999_999),
        effective=st.integers(-(2**40), 2**40),
        project=texts,
        category=texts,
        application=texts,
    ),
    st.builds(
        Attribution,
        application=st.none(),
        application_uuid=st.none(),
        base_document=st.one_of(st.none(), texts),
        category_uuid=st.none(),
        project_uuid=st.none(),
        reason=st.one_of(st.none(), texts),
        title=texts,
        process=texts,
    ),
)
def test_activity_line_is_the_library_byte_for_byte(
    user: str, record: Record, a: Attribution
) -> None:
    assert activity_line(user, record, a) == library_activity_line(user, record, a)


attributions = st.builds(
    Attribution,
    application=st.none(),
    application_uuid=st.none(),
    base_document=st.one_of(st.none(), texts),
    category_uuid=st.none(),
    project_uuid=st.none(),
    reason=st.one_of(st.none(), texts),
    title=texts,
    process=texts,
)


@settings(max_examples=300, deadline=None)
@given(
    texts,
    st.lists(snapshot_windows, min_size=1, max_size=3),
    st.lists(attributions, min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 9), st.integers(1, 10000), texts, times_ns), max_size=12),
)
def test_a_batchs_line_writer_renders_repeats_as_the_library_does(
    user: str,
    pool: list[dict[str, Any]],
    told: list[Attribution],
    snapshots: list[tuple[int, int, str, int]],
) -> None:
    # One writer for the batch: windows and attributions repeat, and what it
    # rendered once must still be each point's own line.
    writer = LineWriter(user)
    for pick, duration, key, time_ns in snapshots:
        snapshot = {"durationMs": duration, "windows": pool[: pick % len(pool) + 1]}
        got = writer.window_lines(key, time_ns, snapshot)
        assert got == library_window_lines(user, key, time_ns, snapshot)
        a = told[pick % len(told)]
        start = time_ns // 1_000_000
        for project in ("none", key):
            record = Record(start, start + duration, key, 0, duration - pick, 0, project)
            assert writer.activity_line(record, a) == library_activity_line(user, record, a)

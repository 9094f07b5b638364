"""Our line-protocol encoder is byte for byte influxdb_client's Point."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from screenaware.storage.influx import Point
from screenaware.storage.lineprotocol import FieldValue, encode

# Every character class the escaping distinguishes, and then any text at all.
SPECIAL = st.sampled_from([",", "=", " ", "\n", "\t", "\r", '"', "\\", "#", "é", "😀", "\x00"])
texts = st.one_of(
    st.lists(st.one_of(SPECIAL, st.characters()), max_size=12).map("".join),
    st.text(max_size=30),
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

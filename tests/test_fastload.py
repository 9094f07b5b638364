"""The body loaders' fast path is marshmallow's answer whenever it gives one."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import marshmallow
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.activity import SnapshotSchema
from schemas.common import MOMENT_PATTERN
from schemas.logs import LogPointInSchema
from screenaware.app import create_app
from screenaware.config import Config
from screenaware.web.fastload import MISS, compile_loader
from screenaware.web.validation import DOC_ATTRIBUTE


def body_schemas(config: Config) -> list[marshmallow.Schema]:
    """Every schema a route loads its body with."""
    app = create_app(config)
    found: dict[int, marshmallow.Schema] = {}
    for node in app._router._roots:
        stack = [node]
        while stack:
            current = stack.pop()
            stack.extend(current.children)
            for responder in (current.method_map or {}).values():
                schema = getattr(responder, DOC_ATTRIBUTE, {}).get("body")
                if schema is not None:
                    found[id(schema)] = schema
    return list(found.values())


def marshmallow_load(schema: marshmallow.Schema, data: Any) -> Any:
    try:
        return schema.load(data)
    except marshmallow.ValidationError:
        return MISS


def assert_same(schema: marshmallow.Schema, data: Any) -> Any:
    fast = compile_loader(schema)
    assert fast is not None
    got = fast(data)
    if got is not MISS:
        assert got == marshmallow_load(schema, data), data
    return got


# JSON as a request body can be: anything, biased to the shapes the schemas read.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "2026-11-30T10:00:10.000Z", "2026-11-30T10:00:10Z", "x" * 600]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = [
    "time", "timeTaken", "durationMs", "windows", "title", "isFocused", "processName",
    "screenPercentage", "visiblePercentage", "tags", "documents", "path", "name", "email",
    "password", "level", "message", "keywords", "extra",
]  # fmt: skip


def objects(depth: int = 2) -> st.SearchStrategy[Any]:
    value = json_values if depth == 0 else st.one_of(json_values, objects(depth - 1))
    if depth:
        value = st.one_of(value, st.lists(objects(depth - 1), max_size=3))
    return st.dictionaries(st.sampled_from(KEYS), value, max_size=8)


windows = st.fixed_dictionaries(
    {},
    optional={
        "title": st.one_of(st.none(), st.text(max_size=30)),
        "isFocused": st.booleans(),
        "processName": st.one_of(st.none(), st.text(max_size=20)),
        "screenPercentage": st.one_of(st.none(), st.floats(0, 1), st.integers(0, 1)),
        "visiblePercentage": st.floats(0, 1),
        "tags": st.dictionaries(st.text(min_size=1, max_size=8), st.floats(-1e9, 1e9), max_size=3),
        "documents": st.lists(
            st.fixed_dictionaries(
                {"path": st.text(max_size=30)},
                optional={"title": st.one_of(st.none(), st.text(max_size=10))},
            ),
            max_size=3,
        ),
        "unknownKey": json_values,
    },
)
valid_snapshots = st.fixed_dictionaries(
    {},
    optional={
        "timeTaken": st.sampled_from(["2026-11-30T10:00:10.000Z", "2026-11-30T10:00:10+01:00"]),
        "durationMs": st.one_of(st.integers(1, 10000), st.just(5000.0)),
        "windows": st.lists(windows, max_size=4),
        "created": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(valid_snapshots)
def test_valid_snapshots_take_the_fast_path_with_marshmallows_result(data: Any) -> None:
    assert assert_same(SnapshotSchema(), data) is not MISS


@settings(max_examples=300, deadline=None)
@given(st.one_of(valid_snapshots, objects(), json_values))
def test_any_body_is_marshmallows_answer_or_left_to_it(data: Any) -> None:
    assert_same(SnapshotSchema(), data)


def test_every_compiled_body_schema_agrees_with_marshmallow(config: Config) -> None:
    schemas = [s for s in body_schemas(config) if compile_loader(s) is not None]
    assert len(schemas) >= 3  # the fast path is used, not compiled away

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(schemas), st.one_of(objects(1), json_values))
    def agrees(schema: marshmallow.Schema, data: Any) -> None:
        assert_same(schema, data)

    agrees()


def test_what_the_fast_path_leaves_to_marshmallow() -> None:
    fast = compile_loader(SnapshotSchema())
    assert fast is not None
    ok = {"timeTaken": "2026-11-30T10:00:10.000Z", "windows": [{"title": "a"}]}
    assert fast(ok) == SnapshotSchema().load(ok)
    assert fast(ok)["durationMs"] == 10000 and fast(ok)["windows"][0]["isFocused"] is False
    for bad in (
        [ok],
        {**ok, "durationMs": 0},
        {**ok, "durationMs": True},
        {**ok, "durationMs": 1.5},
        {**ok, "timeTaken": "yesterday"},
        {**ok, "windows": [{"screenPercentage": 2}]},
        {**ok, "windows": [{"screenPercentage": 10**400}]},
        {**ok, "windows": [{"tags": {"": 1}}]},
        {**ok, "windows": [{"documents": [{"title": "no path"}]}]},
        {**ok, "windows": None},
    ):
        assert fast(bad) is MISS
    # A schema with hooks or a partial load is not compiled at all.

    class Hooked(marshmallow.Schema):
        name = marshmallow.fields.String()

        @marshmallow.post_load
        def upper(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
            return {k: v.upper() for k, v in data.items()}

    assert compile_loader(Hooked()) is None
    assert compile_loader(SnapshotSchema(partial=True)) is None


log_points = st.fixed_dictionaries(
    {
        "type": st.from_regex(r"\A[A-Za-z0-9_]{1,20}\Z"),
        "level": st.sampled_from(["info", "warn", "error", "debug", "loud"]),
        "data": st.fixed_dictionaries(
            {
                "origin": st.sampled_from(["sensor", "app\\", "web app", "a\tb"]),
                "version": st.sampled_from(["1.0.0", "2.1.3-beta.1", "1.0"]),
                "message": st.text(max_size=20),
            },
            optional={
                "time": st.one_of(st.integers(-1, 2**45), st.floats(0, 1e12)),
                "originId": st.text(max_size=10),
                "userUuid": st.sampled_from(
                    [
                        "d8abeaa0-466e-4228-8e93-404cb8cd984b",
                        "{d8abeaa0-466e-4228-8e93-404cb8cd984b}",
                    ]
                ),
                "messageNumeric": st.one_of(st.floats(), st.integers()),
                "messageBool": st.one_of(st.booleans(), st.just(1)),
                "details": st.one_of(st.none(), st.text(max_size=10)),
            },
        ),
        "extra": json_values,
    }
)


@settings(max_examples=300, deadline=None)
@given(log_points)
def test_log_points_take_the_fast_path_when_marshmallow_takes_them(data: Any) -> None:
    got = assert_same(LogPointInSchema(), data)
    if marshmallow_load(LogPointInSchema(), data) is not MISS:
        assert got is not MISS


moments = st.one_of(
    st.from_regex(MOMENT_PATTERN, fullmatch=True),
    st.datetimes(
        min_value=dt.datetime(1960, 1, 1),
        max_value=dt.datetime(2210, 1, 1),
        timezones=st.one_of(st.none(), st.timezones()),
    ).map(lambda moment: moment.isoformat()),
    st.text(max_size=30),
)


@settings(max_examples=1000, deadline=None)
@given(moments, st.sampled_from(["timeTaken", "time"]))
def test_moments_take_the_fast_path_with_marshmallows_result(text: str, name: str) -> None:
    got = assert_same(SnapshotSchema(), {name: text})
    if re.fullmatch(MOMENT_PATTERN, text):
        assert got is not MISS and got[name].tzinfo is not None

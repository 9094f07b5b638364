"""Sessionisation and learning as plain functions, with hypothesis properties."""

from __future__ import annotations

import itertools
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from screenaware.activity.learning import Association, features, suggest, teach, title_words
from screenaware.storage.ids import stable_id, uuid7_ms
from screenaware.streams.sessionise import (
    Activity,
    Stream,
    Thresholds,
    gap_streams,
    make_streams,
    resolve,
    resolve_values,
    stream_summaries,
    summarize,
)
from tests.streams_reference import reference_make_streams, reference_resolve_values

S = 1000
T = Thresholds()


def act(second: int, project: str | None = "A", app: str = "code", doc: str | None = None,
        duration: int = 10) -> Activity:  # fmt: skip
    return Activity(second * S, duration * S, project, application=app, document=doc)


def run(start: int, end: int, **kw: object) -> list[Activity]:
    return [act(t, **kw) for t in range(start, end, 10)]  # type: ignore[arg-type]


def spans(streams: list[Stream]) -> list[tuple[str | None, int, int]]:
    return [(s.project, s.start // S, s.end // S) for s in streams]


def test_short_interruption_stays_inside_the_stream() -> None:
    acts = run(0, 300) + run(300, 360, project="B", app="mail") + run(360, 600)
    streams = make_streams("u", acts)
    assert spans(streams) == [("A", 0, 600)]
    assert [(s.application, s.duration) for s in streams[0].substreams] == [
        ("code", 300_000), ("mail", 60_000), ("code", 240_000),
    ]  # fmt: skip


def test_interruption_of_several_projects_is_absorbed_as_a_whole() -> None:
    acts = run(0, 300) + run(300, 330, project="B") + run(330, 360, project=None) + run(360, 600)
    assert spans(make_streams("u", acts)) == [("A", 0, 600)]


def test_long_interruption_splits() -> None:
    acts = run(0, 300) + run(300, 420, project="B") + run(420, 600)
    assert spans(make_streams("u", acts)) == [("A", 0, 300), ("B", 300, 420), ("A", 420, 600)]


def test_idle_gap_splits_even_the_same_project() -> None:
    acts = run(0, 100) + run(410, 500)  # 310 s idle
    assert spans(make_streams("u", acts)) == [("A", 0, 100), ("A", 410, 500)]
    acts = run(0, 100) + run(390, 500)  # 290 s idle: one stream
    assert spans(make_streams("u", acts)) == [("A", 0, 500)]


def test_no_project_resume_after_short_break_at_the_end() -> None:
    acts = run(0, 300) + run(300, 330, project="B")
    assert spans(make_streams("u", acts)) == [("A", 0, 300), ("B", 300, 330)]


def test_stream_project_is_the_one_with_most_time() -> None:
    acts = run(0, 20) + run(20, 130, project="B") + run(130, 150)
    (stream,) = make_streams("u", acts)
    assert stream.project == "B"


def test_substreams_join_small_gaps_only() -> None:
    acts = run(0, 50) + run(100, 150) + run(220, 250)  # gaps 50 s and 70 s
    (stream,) = make_streams("u", acts)
    assert [(s.start // S, s.duration // S) for s in stream.substreams] == [(0, 100), (220, 30)]


def test_gap_streams_fill_holes() -> None:
    streams = [summarize(s) for s in make_streams("u", run(0, 100) + run(500, 600))]
    gaps = gap_streams("u", streams)
    assert [(g["time"] // S, g["durationMs"] // S, g["isGap"]) for g in gaps] == [(100, 400, True)]


def test_ids_are_stable_and_time_ordered() -> None:
    a, b = stable_id("u", "stream", 1000), stable_id("u", "stream", 2000)
    assert a == stable_id("u", "stream", 1000)
    assert a != stable_id("v", "stream", 1000) and a != stable_id("u", "gap", 1000)
    assert a < b and uuid7_ms(a) == 1000


def test_resolve_applies_the_latest_correction() -> None:
    t = 5_000_000_000
    rows = [
        {"time": t, "duration_ms": 10000, "project": "A", "rev": None, "reason": "kw"},
        {"time": t, "duration_ms": -10000, "project": "A", "rev": "r1"},
        {"time": t, "duration_ms": 10000, "project": "B", "rev": "r1"},
        {"time": t, "duration_ms": -10000, "project": "B", "rev": "r2"},
        {"time": t, "duration_ms": 10000, "project": "none", "rev": "r2"},
        {"time": t + 10**10, "duration_ms": 10000, "project": "A", "rev": None, "reason": "kw"},
    ]
    first, second = resolve(rows)
    assert (first.project, first.reason, first.duration) == (None, "corrected by user", 10000)
    assert (second.project, second.reason) == ("A", "kw")


# --- properties ------------------------------------------------------------

snapshots = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=700),  # gap before, s
        st.integers(min_value=1, max_value=10),  # duration, s
        st.sampled_from(["A", "B", None]),
        st.sampled_from(["code", "mail"]),
        st.sampled_from(["x.py", "github.com", None]),
    ),
    max_size=80,
)


def build(spec: list[tuple[int, int, str | None, str, str | None]]) -> list[Activity]:
    out, t = [], 0
    for gap, duration, project, app, doc in spec:
        t += gap
        out.append(Activity(t * S, duration * S, project, application=app, document=doc))
        t += duration
    return out


@settings(max_examples=300, deadline=None)
@given(snapshots, st.randoms(use_true_random=False))
def test_sessionisation_properties(
    spec: list[tuple[int, int, str | None, str, str | None]], rnd: random.Random
) -> None:
    acts = build(spec)
    streams = make_streams("u", acts, T)
    subs = [sub for s in streams for sub in s.substreams]
    # Substreams are sorted, never overlap and hold exactly the activity time.
    assert all(a.end <= b.start for a, b in itertools.pairwise(subs))
    assert sum(s.duration for s in subs) == sum(a.duration for a in acts)
    assert sum(len(s.activities) for s in streams) == len(acts)
    # Every substream lies inside exactly one stream.
    for sub in subs:
        owners = [s for s in streams if s.start <= sub.start and sub.end <= s.end]
        assert len(owners) == 1
    # Streams and gap streams tile [first, last] without overlap.
    summaries = [summarize(s) for s in streams]
    tiles = sorted(summaries + gap_streams("u", summaries), key=lambda s: s["time"])
    if acts:
        assert tiles[0]["time"] == acts[0].start
        assert tiles[-1]["time"] + tiles[-1]["durationMs"] == max(a.end for a in acts)
    for a, b in itertools.pairwise(tiles):
        assert a["time"] + a["durationMs"] == b["time"]
    # Snapshots arriving in any order give the same result.
    shuffled = acts[:]
    rnd.shuffle(shuffled)
    assert [summarize(s) for s in make_streams("u", shuffled, T)] == summaries


# --- the column-wise fast path equals the old path ---------------------------

COLUMNS = ["time", "duration_ms", "project", "rev"]
thresholds = st.builds(
    Thresholds,
    join_gap=st.sampled_from([0, 60_000]),
    interruption=st.sampled_from([1, 20_000, 120_000]),
    idle_gap=st.sampled_from([0, 15_000, 300_000]),
)
instants = st.lists(
    st.tuples(
        # After the previous instant: the same ns, the same ms, or later.
        st.sampled_from([0, 1, 999_999, 10**6, 10**9, 10**10, 60 * 10**9, 400 * 10**9]),
        st.sampled_from([10_000, 1, 0, -10_000, None, 250_000]),
        st.sampled_from(["A", "B", "none", "", None]),
        # No rev: an original; numbers: corrections; t<k>r/t<k>: overlap trims.
        st.sampled_from([None, None, None, "", "000000000001", "000000000002", "t1r", "t1"]),
    ),
    max_size=60,
)


def answer(spec: list[tuple[int, int | None, str | None, str | None]]) -> list[list[Any]]:
    """InfluxDB's values: time-ordered, entries of one instant in any order."""
    values, t = [], 10**15
    for step, duration, project, rev in spec:
        t += step
        values.append([t, duration, project, rev])
    return values


def old_summaries(values: list[list[Any]], thresholds: Thresholds) -> list[dict[str, Any]]:
    activity = reference_resolve_values(COLUMNS, values)
    streams = reference_make_streams("u", activity, thresholds, with_substreams=False)
    return [summarize(s, expanded=False) for s in streams]


@settings(max_examples=1000, deadline=None)
@given(instants, thresholds)
def test_stream_summaries_equal_the_old_path(
    spec: list[tuple[int, int | None, str | None, str | None]], limits: Thresholds
) -> None:
    values = answer(spec)
    assert stream_summaries("u", COLUMNS, values, limits) == old_summaries(values, limits)
    # The same with only original entries, one an instant (the common case).
    clean = [[t, d, p, None] for t, d, p, _ in values if d]
    clean = [row for row, before in zip(clean, [None, *clean], strict=False)
             if before is None or row[0] > before[0]]  # fmt: skip
    assert stream_summaries("u", COLUMNS, clean, limits) == old_summaries(clean, limits)


@settings(max_examples=500, deadline=None)
@given(instants, thresholds)
def test_make_streams_equals_the_old_path(
    spec: list[tuple[int, int | None, str | None, str | None]], limits: Thresholds
) -> None:
    columns = [*COLUMNS, "application", "document", "title"]
    values = [[*row, "code" if row[0] % 3 else "mail", None, "t"] for row in answer(spec)]
    activity = resolve_values(columns, values)
    assert activity == reference_resolve_values(columns, values)
    new, old = make_streams("u", activity, limits), reference_make_streams("u", activity, limits)
    assert [(s.uuid, s.start, s.end, s.project, s.activities) for s in new] == [
        (s.uuid, s.start, s.end, s.project, s.activities) for s in old
    ]
    assert [summarize(s) for s in new] == [summarize(s) for s in old]


def test_stream_summaries_of_a_day_with_a_correction_and_a_tie() -> None:
    t = 10**15
    values = [
        [t, 10_000, "A", None],
        [t + 10**10, 10_000, "A", None],
        [t + 10**10, -10_000, "A", "000000000001"],
        [t + 10**10, 10_000, "B", "000000000001"],
        [t + 10**10 + 1, 10_000, "A", None],  # the same ms as the previous snapshot
        [t + 2 * 10**10, 0, "A", None],  # all of its time went to a later snapshot
    ]
    summaries = stream_summaries("u", COLUMNS, values, T)
    assert summaries == old_summaries(values, T)
    # Sorted as make_streams sorts: the two snapshots of one ms by end, then project.
    assert [(s["time"], s["durationMs"], s["projectUuid"]) for s in summaries] == [
        (10**9, 20_000, "A"),
        (10**9 + 10_000, 10_000, "B"),
    ]
    assert stream_summaries("u", COLUMNS, [], T) == []


# --- learning --------------------------------------------------------------


def test_title_words_skip_noise() -> None:
    assert title_words("Tuning InfluxDB - Google Chrome", "chrome") == ["tuning", "influxdb"]
    assert title_words("a an 1234 x", None) == []


def test_teach_converges_to_the_latest_choice() -> None:
    keys = ["doc:github.com"]
    learned = teach({}, keys, "P")
    learned = teach(learned, keys, "P")
    assert learned["doc:github.com"] == Association("P", 2)
    learned = teach(learned, keys, "Q")
    assert learned["doc:github.com"] == Association("Q", 1)
    learned = teach(learned, keys, "P")
    assert learned["doc:github.com"] == Association("P", 1)


def test_suggest_needs_enough_evidence_and_a_clear_winner() -> None:
    projects: dict[str, dict[str, Any]] = {"P": {}, "Q": {}}
    learned = {"doc:github.com": Association("P", 1), "app:chrome": Association("Q", 1),
               "word:tuning": Association("Q", 2), "doc:gone.org": Association("X", 5)}  # fmt: skip
    keys = features(["github.com"], ["chrome"], ["tuning"])
    assert suggest(learned, keys, projects, 3) is None  # a tie: P 3, Q 1 + 2
    learned["app:chrome"] = Association("P", 1)
    assert suggest(learned, keys, projects, 3) == ("P", "learned from 1 correction: 'github.com'")
    assert suggest(learned, features([], ["chrome"], []), projects, 3) is None  # too weak
    assert suggest(learned, features(["gone.org"], [], []), projects, 1) is None  # deleted

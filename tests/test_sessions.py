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
    summarize,
)

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

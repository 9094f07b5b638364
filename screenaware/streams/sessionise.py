"""Sessionisation: activity -> substreams and streams. Plain functions, no I/O.

* A **substream** is consecutive activity with the same application and base
  document; gaps up to ``join_gap`` are joined. Its ``durationMs`` is the activity
  time in it.
* A **stream** is consecutive activity of one project. A stretch of other projects
  shorter than ``interruption`` between two stretches of the same project stays
  inside the stream; an idle gap longer than ``idle_gap`` always ends it. Its
  ``durationMs`` is its span, idle gaps up to ``idle_gap`` and absorbed
  interruptions included; its project is the one with the most time in it.
* **Gap streams** fill the holes between streams. Streams and gap streams tile the
  time from the first stream's start to the last one's end.

Every id is stable and time-ordered: the first 48 bits are the start in Unix ms,
the rest a hash of the user, the kind and the start.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from screenaware.storage.ids import stable_id

CORRECTED = "corrected by user"


class Activity(NamedTuple):
    """One snapshot's activity, with corrections applied (a tuple: a month of them
    is built per cold query, and tuples are the cheapest to build)."""

    start: int  # Unix ms
    duration: int  # ms
    project: str | None
    category: str | None = None
    application: str | None = None
    document: str | None = None
    title: str = ""
    reason: str | None = None
    process: str = ""
    offset: int = 0  # ns after the start ms: where its ledger entries are

    @property
    def end(self) -> int:
        return self.start + self.duration


@dataclass(frozen=True)
class Thresholds:
    """Sessionisation thresholds, in ms."""

    join_gap: int = 60_000
    interruption: int = 120_000
    idle_gap: int = 300_000


@dataclass
class Substream:
    uuid: str
    start: int
    end: int
    duration: int
    project: str | None
    category: str | None
    application: str | None
    document: str | None
    reason: str | None
    titles: dict[str, int] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "time": self.start,
            "durationMs": self.duration,
            "projectUuid": self.project,
            "categoryUuid": self.category,
            "applicationUuid": self.application,
            "baseDocumentPath": self.document,
            "projectRelationReason": self.reason,
        }


@dataclass
class Stream:
    uuid: str
    start: int
    end: int
    project: str | None
    activities: list[Activity]
    substreams: list[Substream]

    @property
    def duration(self) -> int:
        return self.end - self.start


def make_substreams(user: str, activities: Sequence[Activity], join_gap: int) -> list[Substream]:
    """Split time-ordered activity into substreams."""
    out: list[Substream] = []
    group: list[Activity] = []

    def close() -> None:
        projects: dict[str | None, int] = {}
        categories: dict[str | None, int] = {}
        titles: dict[str, int] = {}
        end = 0
        for a in group:
            projects[a.project] = projects.get(a.project, 0) + a.duration
            categories[a.category] = categories.get(a.category, 0) + a.duration
            if a.title:
                titles[a.title] = titles.get(a.title, 0) + a.duration
            end = max(end, a.start + a.duration)
        # Most time wins; ties go to the one seen first (dicts keep that order).
        project = max(projects, key=projects.__getitem__)
        first = group[0]
        out.append(
            Substream(
                uuid=stable_id(user, "substream", first.start),
                start=first.start,
                end=end,
                duration=sum(projects.values()),
                project=project,
                category=max(categories, key=categories.__getitem__),
                application=first.application,
                document=first.document,
                reason=next(a.reason for a in group if a.project == project),
                titles=dict(Counter(titles).most_common(5)),
            )
        )

    last: Activity | None = None
    for act in activities:
        if (
            last is None
            or act.application != last.application
            or act.document != last.document
            or act.start - (last.start + last.duration) > join_gap
        ):
            if group:
                close()
            group = []
        group.append(act)
        last = act
    if group:
        close()
    return out


class _Run(NamedTuple):
    """A maximal run of one project without an idle gap inside: activities
    ``[first, stop)`` of the ordered activity."""

    project: str | None
    first: int
    stop: int
    start: int  # of its first activity
    last_end: int  # end of its last activity
    max_end: int  # latest end of its activities
    duration: int  # activity time


Run = _Run  # what the runs rollup stores


def _runs(
    starts: Sequence[int],
    ends: Sequence[int],
    durations: Sequence[int],
    projects: Sequence[str | None],
    idle_gap: int,
) -> list[_Run]:
    """The runs of ordered activity, given as columns."""
    n = len(starts)
    if not n:
        return []
    # A run ends where the project changes or an idle gap follows (one comprehension
    # over the columns: a month is ~90k activities).
    cuts = [
        k
        for k, before, after, end, start in zip(
            range(1, n), projects, projects[1:], ends, starts[1:], strict=False
        )
        if before != after or start - end > idle_gap
    ]
    return [
        _Run(projects[a], a, b, starts[a], ends[b - 1], max(ends[a:b]), sum(durations[a:b]))
        for a, b in itertools.pairwise([0, *cuts, n])
    ]


def _groups(runs: Sequence[_Run], thresholds: Thresholds) -> list[tuple[int, int]]:
    """The streams as ranges ``[i, j)`` of runs.

    A stream starts with a run and takes the following runs of its project, and
    runs of other projects when its project resumes less than ``interruption``
    after its end so far, with no idle gap on the way; an idle gap ends it.
    """
    groups: list[tuple[int, int]] = []
    i, n = 0, len(runs)
    idle_gap, interruption = thresholds.idle_gap, thresholds.interruption
    while i < n:
        project = runs[i].project
        end = runs[i].last_end  # the end of the stream's last activity so far
        j = i + 1
        while j < n:
            if runs[j].start - end > idle_gap:
                break
            # Another project (runs are maximal: the stream's own would have joined
            # the run before): absorbed if the stream's project resumes soon enough,
            # with no idle gap on the way.
            k, last_end = j, end
            resumed = None
            while k < n and runs[k].start - last_end <= idle_gap:
                if runs[k].project == project:
                    resumed = k
                    break
                last_end = runs[k].last_end
                k += 1
            if resumed is not None and runs[resumed].start - end < interruption:
                end = runs[resumed].last_end
                j = resumed + 1
                continue
            break
        groups.append((i, j))
        i = j
    return groups


def _most_time(runs: Sequence[_Run]) -> str | None:
    totals: dict[str | None, int] = {}
    for run in runs:
        totals[run.project] = totals.get(run.project, 0) + run.duration
    # Most time wins; ties go to the project seen first (dicts keep that order).
    return max(totals, key=totals.__getitem__)


def make_streams(
    user: str,
    activities: Iterable[Activity],
    thresholds: Thresholds = Thresholds(),
    *,
    with_substreams: bool = True,
) -> list[Stream]:
    """Sessionise activity (any order) into streams with their substreams.

    Streams depend only on times and projects; ``with_substreams=False`` skips the
    substreams for callers that need the streams alone (:func:`stream_summaries`
    gives their summaries straight from an InfluxDB answer).
    """
    ordered = sorted(activities, key=lambda a: (a.start, a.end, a.project or ""))
    starts = [a.start for a in ordered]
    durations = [a.duration for a in ordered]
    ends = [a.start + a.duration for a in ordered]
    runs = _runs(starts, ends, durations, [a.project for a in ordered], thresholds.idle_gap)
    streams = []
    for i, j in _groups(runs, thresholds):
        group = ordered[runs[i].first : runs[j - 1].stop]
        start = runs[i].start
        streams.append(
            Stream(
                uuid=stable_id(user, "stream", start),
                start=start,
                end=max(run.max_end for run in runs[i:j]),
                project=_most_time(runs[i:j]),
                activities=group,
                substreams=make_substreams(user, group, thresholds.join_gap)
                if with_substreams
                else [],
            )
        )
    return streams


def stream_summaries(
    user: str,
    columns: Sequence[str],
    values: Sequence[Sequence[Any]],
    thresholds: Thresholds = Thresholds(),
) -> list[dict[str, Any]]:
    """The streams of an InfluxDB answer (``time``, ``duration_ms``, ``project``,
    ``rev``, time-ordered), as ``summarize(stream, expanded=False)`` gives them.

    The same as sessionising :func:`resolve_values`' activity with
    :func:`make_streams`, without building an object per snapshot: a cold month
    of /streams is ~90k rows.
    """
    starts, ends, durations, projects = ordered_columns(columns, values)
    runs = _runs(starts, ends, durations, projects, thresholds.idle_gap)
    return summaries_of_runs(user, runs, thresholds)


def ordered_columns(
    columns: Sequence[str], values: Sequence[Sequence[Any]]
) -> tuple[list[int], list[int], list[int], list[str | None]]:
    """Starts, ends (ms), durations and projects of an InfluxDB answer's activity
    (see :func:`stream_summaries`), corrections applied, in :func:`make_streams`'
    order."""
    starts, durations, projects = _resolved_columns(columns, values)
    ends = list(map(operator.add, starts, durations))
    if not all(map(operator.lt, starts, starts[1:])):
        # Two snapshots in one millisecond: the order make_streams sorts into.
        order = sorted(range(len(starts)), key=lambda k: (starts[k], ends[k], projects[k] or ""))
        starts, durations = [starts[k] for k in order], [durations[k] for k in order]
        ends, projects = [ends[k] for k in order], [projects[k] for k in order]
    return starts, ends, durations, projects


def summaries_of_runs(
    user: str, runs: Sequence[_Run], thresholds: Thresholds
) -> list[dict[str, Any]]:
    """The stream summaries of a day's runs (see :func:`stream_summaries`)."""
    out = []
    for i, j in _groups(runs, thresholds):
        start = runs[i].start
        out.append(
            {
                "uuid": stable_id(user, "stream", start),
                "time": start,
                "durationMs": max(run.max_end for run in runs[i:j]) - start,
                "projectUuid": _most_time(runs[i:j]),
            }
        )
    return out


def bucket_runs(
    starts: Sequence[int],
    ends: Sequence[int],
    durations: Sequence[int],
    projects: Sequence[str | None],
    idle_gap: int,
    bucket_ms: int,
) -> dict[int, list[_Run]]:
    """The runs of ordered activity cut at every ``bucket_ms`` boundary, by the
    start (Unix ms) of the bucket their activity starts in.

    :func:`merge_runs` of the buckets of a stretch in order gives the runs of the
    stretch's activity: a stretch of whole buckets is sessionised from these.
    """
    out: dict[int, list[_Run]] = {}
    n, a = len(starts), 0
    while a < n:
        bucket = starts[a] - starts[a] % bucket_ms
        b = bisect.bisect_left(starts, bucket + bucket_ms, a)
        out[bucket] = [
            run._replace(first=run.first + a, stop=run.stop + a)
            for run in _runs(starts[a:b], ends[a:b], durations[a:b], projects[a:b], idle_gap)
        ]
        a = b
    return out


def merge_runs(parts: Iterable[Sequence[_Run]], idle_gap: int) -> list[_Run]:
    """Runs of consecutive stretches of activity (each a list of runs, in order)
    as the runs of the whole: a run that goes on across a cut (the same project, no
    idle gap after its last activity) is joined to the one before."""
    out: list[_Run] = []
    for part in parts:
        for run in part:
            if out:
                last = out[-1]
                if last.project == run.project and run.start - last.last_end <= idle_gap:
                    out[-1] = _Run(
                        last.project,
                        last.first,
                        run.stop,
                        last.start,
                        run.last_end,
                        max(last.max_end, run.max_end),
                        last.duration + run.duration,
                    )
                    continue
            out.append(run)
    return out


def _resolved_columns(
    columns: Sequence[str], values: Sequence[Sequence[Any]]
) -> tuple[list[int], list[int], list[str | None]]:
    """Starts (ms), durations and projects of the activity :func:`resolve_values`
    gives, in its order."""
    if not values:
        return [], [], []
    ix = {name: index for index, name in enumerate(columns)}
    by_column = list(zip(*values, strict=True))
    times, durations = by_column[ix["time"]], by_column[ix["duration_ms"]]
    projects, revs = by_column[ix["project"]], by_column[ix["rev"]]
    if (
        not any(revs)  # no ledger entry: every instant holds one original entry
        and set(map(type, times)) == {int}
        and set(map(type, durations)) == {int}
        and min(durations) > 0
        and all(map(operator.lt, times, times[1:]))  # one entry per instant
    ):
        # The common case, column by column.
        names = {p: None if p in (None, "", "none") else p for p in set(projects)}
        return (
            [t // 1_000_000 for t in times],
            list(durations),
            list(map(names.__getitem__, projects)),
        )
    t, dur, proj, rev = ix["time"], ix["duration_ms"], ix["project"], ix["rev"]
    starts: list[int] = []
    kept: list[int] = []
    owners: list[str | None] = []
    n, i = len(values), 0
    while i < n:
        base = values[i]
        time_ns = base[t]
        j = i + 1
        if (j < n and values[j][t] == time_ns) or base[rev]:
            while j < n and values[j][t] == time_ns:
                j += 1
            group = values[i:j]
            i = j
            if all(row[rev] for row in group):
                continue  # no original entry at this instant
            duration, project = _balance(group, proj, dur)
        else:
            i = j
            duration, project = int(base[dur] or 0), base[proj]
        if duration <= 0:
            continue
        starts.append(int(time_ns) // 1_000_000)
        kept.append(duration)
        owners.append(None if project in (None, "", "none") else project)
    return starts, kept, owners


def _balance(group: Sequence[Sequence[Any]], proj: int, dur: int) -> tuple[int, Any]:
    """The time an instant's entries leave its snapshot and the project that owns it
    (the one with the largest positive balance)."""
    balance: dict[Any, int] = {}
    for row in group:
        balance[row[proj]] = balance.get(row[proj], 0) + int(row[dur] or 0)
    return sum(balance.values()), max(balance, key=balance.__getitem__)


def gap_streams(user: str, streams: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The gap streams between consecutive (time-ordered) streams."""
    gaps = []
    for before, after in itertools.pairwise(streams):
        end = before["time"] + before["durationMs"]
        if after["time"] > end:
            gaps.append(
                {
                    "uuid": stable_id(user, "gap", end),
                    "time": end,
                    "durationMs": after["time"] - end,
                    "isGap": True,
                }
            )
    return gaps


def summarize(stream: Stream, expanded: bool = True) -> dict[str, Any]:
    """A stream as cached: the public fields, plus what ``expanded`` adds."""
    if not expanded:
        return {
            "uuid": stream.uuid,
            "time": stream.start,
            "durationMs": stream.duration,
            "projectUuid": stream.project,
        }
    apps: Counter[str] = Counter()
    docs: Counter[str] = Counter()
    titles: Counter[str] = Counter()
    for sub in stream.substreams:
        if sub.application:
            apps[sub.application] += sub.duration
        if sub.document:
            docs[sub.document] += sub.duration
        for title, duration in sub.titles.items():
            titles[title] += duration
    return {
        "uuid": stream.uuid,
        "time": stream.start,
        "durationMs": stream.duration,
        "projectUuid": stream.project,
        "applications": [{"applicationUuid": a, "durationMs": d} for a, d in apps.most_common()],
        "baseDocuments": [{"baseDocumentPath": p, "durationMs": d} for p, d in docs.most_common()],
        "titles": [{"title": t, "durationMs": d} for t, d in titles.most_common(20)],
    }


def resolve(rows: Iterable[Mapping[str, Any]]) -> list[Activity]:
    """Activity from raw ``activity`` rows (dicts), corrections applied.

    See :func:`resolve_values`; this form is for rows already turned into dicts.
    """
    columns = list(ROW_COLUMNS)
    values = [[row.get(c) for c in columns] for row in rows]
    values.sort(key=lambda v: int(v[0] or 0))
    return resolve_values(columns, values)


ROW_COLUMNS = (
    "time", "duration_ms", "document", "title", "reason", "process",
    "project", "category", "application", "rev",
)  # fmt: skip


def resolve_values(columns: Sequence[str], values: Sequence[Sequence[Any]]) -> list[Activity]:
    """Activity from an InfluxDB answer's time-ordered values, ledger applied.

    At one instant there is a snapshot's original entry (no ``rev``) and maybe
    reversing and new entries: corrections (a numeric ``rev``) and time taken by a
    later overlapping snapshot (``rev`` ``t<k>r``/``t<k>``). The sum of all entries
    is what the snapshot owns now (as ``/times`` sums it), and the project with a
    positive balance is its project now. Rows come sorted by time, so one pass
    suffices (a month is ~100k rows).
    """
    ix = {name: index for index, name in enumerate(columns)}
    t, dur, rev, proj = ix["time"], ix["duration_ms"], ix["rev"], ix["project"]
    cat, app, doc = ix.get("category"), ix.get("application"), ix.get("document")
    title_i, reason_i, process_i = ix.get("title"), ix.get("reason"), ix.get("process")

    out: list[Activity] = []
    n, i = len(values), 0
    while i < n:
        base = values[i]
        time_ns = base[t]
        j = i + 1
        project = base[proj]
        duration = int(base[dur] or 0)
        corrected = False
        if (j < n and values[j][t] == time_ns) or base[rev]:
            # Several entries at this instant: an original and its ledger.
            while j < n and values[j][t] == time_ns:
                j += 1
            group = values[i:j]
            i = j
            originals = [row for row in group if not row[rev]]
            if not originals:
                continue
            base = originals[0]
            duration, project = _balance(group, proj, dur)
            # A correction's new entry (numeric rev; overlap trims are t<k>).
            corrected = any(
                row[rev] and not str(row[rev]).startswith("t") and int(row[dur] or 0) > 0
                for row in group
            )
        else:
            i = j
        if duration <= 0:
            continue  # all of its time belongs to later snapshots
        reason = (base[reason_i] or None) if reason_i is not None else None
        time_ns = int(time_ns)
        out.append(
            Activity(
                time_ns // 1_000_000,
                duration,
                None if project in (None, "", "none") else project,
                _tag(base[cat]) if cat is not None else None,
                _tag(base[app]) if app is not None else None,
                (base[doc] or None) if doc is not None else None,
                (base[title_i] or "") if title_i is not None else "",
                CORRECTED if corrected else reason,
                (base[process_i] or "") if process_i is not None else "",
                time_ns % 1_000_000,
            )
        )
    return out


def _tag(value: Any) -> str | None:
    return None if value in (None, "", "none") else str(value)

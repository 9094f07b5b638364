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

import itertools
from collections import Counter, defaultdict
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


def _most_time(pairs: Iterable[tuple[str | None, int]]) -> str | None:
    totals: dict[str | None, int] = defaultdict(int)
    for key, duration in pairs:
        totals[key] += duration
    if not totals:
        return None
    # Most time wins; ties go to the key seen first.
    return max(totals, key=lambda k: totals[k])


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


def _runs(activities: Sequence[Activity], idle_gap: int) -> list[list[Activity]]:
    """Maximal runs of one project without an idle gap inside."""
    runs: list[list[Activity]] = []
    for act in activities:
        last = runs[-1][-1] if runs else None
        if last is not None and act.project == last.project and act.start - last.end <= idle_gap:
            runs[-1].append(act)
        else:
            runs.append([act])
    return runs


def make_streams(
    user: str,
    activities: Iterable[Activity],
    thresholds: Thresholds = Thresholds(),
    *,
    with_substreams: bool = True,
) -> list[Stream]:
    """Sessionise activity (any order) into streams with their substreams.

    Streams depend only on times and projects; ``with_substreams=False`` skips the
    substreams for callers that need the streams alone.
    """
    ordered = sorted(activities, key=lambda a: (a.start, a.end, a.project or ""))
    runs = _runs(ordered, thresholds.idle_gap)
    groups: list[list[Activity]] = []
    i = 0
    while i < len(runs):
        current = list(runs[i])
        project = runs[i][0].project
        j = i + 1
        while j < len(runs):
            if runs[j][0].start - current[-1].end > thresholds.idle_gap:
                break
            if runs[j][0].project == project:
                current.extend(runs[j])
                j += 1
                continue
            # Another project: absorbed if the same project resumes soon enough,
            # with no idle gap on the way.
            k, last_end = j, current[-1].end
            resumed = None
            while k < len(runs) and runs[k][0].start - last_end <= thresholds.idle_gap:
                if runs[k][0].project == project:
                    resumed = k
                    break
                last_end = runs[k][-1].end
                k += 1
            if resumed is not None and runs[resumed][0].start - current[-1].end < (
                thresholds.interruption
            ):
                for run in runs[j : resumed + 1]:
                    current.extend(run)
                j = resumed + 1
                continue
            break
        groups.append(current)
        i = j
    streams = []
    for group in groups:
        start = group[0].start
        streams.append(
            Stream(
                uuid=stable_id(user, "stream", start),
                start=start,
                end=max(a.end for a in group),
                project=_most_time((a.project, a.duration) for a in group),
                activities=group,
                substreams=make_substreams(user, group, thresholds.join_gap)
                if with_substreams
                else [],
            )
        )
    return streams


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
            balance: dict[Any, int] = {}
            for row in group:
                balance[row[proj]] = balance.get(row[proj], 0) + int(row[dur] or 0)
            duration = sum(balance.values())
            project = max(balance, key=balance.__getitem__)
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

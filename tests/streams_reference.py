"""The sessionisation of streams as it was before the column-wise fast path
(commit 56921d9), kept verbatim as the reference the property tests compare the
fast path with."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from screenaware.storage.ids import stable_id
from screenaware.streams.sessionise import (
    CORRECTED,
    Activity,
    Stream,
    Thresholds,
    make_substreams,
)


def _tag(value: Any) -> str | None:
    return None if value in (None, "", "none") else str(value)


def _most_time(pairs: Iterable[tuple[str | None, int]]) -> str | None:
    totals: dict[str | None, int] = defaultdict(int)
    for key, duration in pairs:
        totals[key] += duration
    if not totals:
        return None
    # Most time wins; ties go to the key seen first.
    return max(totals, key=lambda k: totals[k])


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


def reference_make_streams(
    user: str,
    activities: Iterable[Activity],
    thresholds: Thresholds,
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


def reference_resolve_values(
    columns: Sequence[str], values: Sequence[Sequence[Any]]
) -> list[Activity]:
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

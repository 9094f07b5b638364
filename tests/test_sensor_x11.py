"""The sensor's X11 window source under a real X server (Xvfb) and window manager (openbox).

Windows are real xterms placed by xdotool; expected shares are computed here from the
geometry the X server reports, with plain arithmetic (not the sensor's geometry code).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from screenaware_sensor.config import Settings
from screenaware_sensor.queue import SnapshotQueue
from screenaware_sensor.runner import Sensor
from screenaware_sensor.snapshot import Window
from screenaware_sensor.x11 import X11Source
from tests.xdesktop import Desktop, Geometry, x_desktop


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    with x_desktop(tmp_path / "x", 1000, 800) as d:
        yield d


@pytest.fixture
def wide_desktop(tmp_path: Path) -> Iterator[Desktop]:
    with x_desktop(tmp_path / "x", 1600, 600) as d:
        yield d


def source(desktop: Desktop, **kwargs: str) -> X11Source:
    return X11Source(desktop.display, **kwargs)


def overlap(a: Geometry, b: Geometry) -> int:
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    return max(0, w) * max(0, h)


def by_title(windows: list[Window]) -> dict[str, Window]:
    return {w.title: w for w in windows}


def test_windows_focus_stacking_and_shares(desktop: Desktop) -> None:
    a = desktop.xterm("Alpha window")
    b = desktop.xterm("Beta window")
    c = desktop.xterm("Gamma window")
    ga = desktop.place(a, 0, 0, 500, 400)
    gb = desktop.place(b, 250, 200, 500, 400)
    gc = desktop.place(c, 800, 500, 400, 200)  # partly off the right edge
    desktop.activate(a)
    desktop.activate(c)
    desktop.activate(b)  # stacking, bottom to top: A, C, B; B focused

    windows = source(desktop).windows()
    assert [w.title for w in windows] == ["Alpha window", "Gamma window", "Beta window"]
    seen = by_title(windows)
    screen = 1000 * 800
    assert gc.x + gc.w > 1000, "the window manager kept C on screen; the test needs it off"
    on_screen_c = overlap(gc, Geometry(0, 0, 1000, 800))
    area = {k: g.w * g.h for k, g in (("a", ga), ("b", gb), ("c", gc))}
    assert [w.is_focused for w in windows] == [False, False, True]
    assert {w.process_name for w in windows} == {"xterm"}
    assert seen["Alpha window"].screen_percentage == pytest.approx(area["a"] / screen, abs=1e-4)
    assert seen["Alpha window"].visible_percentage == pytest.approx(
        (area["a"] - overlap(ga, gb)) / area["a"], abs=1e-4
    )
    assert 0.5 < seen["Alpha window"].visible_percentage < 0.9
    assert seen["Beta window"].screen_percentage == pytest.approx(area["b"] / screen, abs=1e-4)
    assert seen["Beta window"].visible_percentage == 1.0
    assert seen["Gamma window"].screen_percentage == pytest.approx(on_screen_c / screen, abs=1e-4)
    assert seen["Gamma window"].visible_percentage == pytest.approx(
        on_screen_c / area["c"], abs=1e-4
    )
    assert seen["Gamma window"].visible_percentage < 0.9

    # Focus moves with the person: now A is focused, on top, and fully visible.
    desktop.activate(a)
    seen = by_title(source(desktop).windows())
    assert seen["Alpha window"].is_focused and not seen["Beta window"].is_focused
    assert seen["Alpha window"].visible_percentage == 1.0
    assert seen["Beta window"].visible_percentage == pytest.approx(
        (area["b"] - overlap(ga, gb)) / area["b"], abs=1e-4
    )


def test_minimised_and_other_desktop_windows_are_skipped(desktop: Desktop) -> None:
    base = desktop.xterm("Base window")
    hidden = desktop.xterm("Minimised window")
    away = desktop.xterm("Other desktop window")
    for wid in (base, hidden, away):  # the two later ones exactly cover the first
        desktop.place(wid, 100, 100, 400, 300)
    desktop.xdotool("windowminimize", "--sync", str(hidden))
    desktop.xdotool("set_desktop_for_window", str(away), "1")
    desktop.settle()
    windows = source(desktop).windows()
    assert [w.title for w in windows] == ["Base window"]
    # Windows that are not shown do not cover it either.
    assert windows[0].visible_percentage == 1.0
    # Back from minimised, it is there again and covers the base window.
    desktop.activate(hidden)
    seen = by_title(source(desktop).windows())
    assert set(seen) == {"Base window", "Minimised window"}
    assert seen["Base window"].visible_percentage == 0.0


def test_screen_and_visible_share_per_monitor(wide_desktop: Desktop) -> None:
    d = wide_desktop
    # Two monitors on a 1600x600 screen: 800x600 at the left, 800x400 at the right top.
    d.run("xrandr", "--setmonitor", "LEFT", "800/200x600/150+0+0", "screen")
    d.run("xrandr", "--setmonitor", "RIGHT", "800/200x400/100+800+0", "none")
    assert "RIGHT" in d.run("xrandr", "--listmonitors")
    left, right = Geometry(0, 0, 800, 600), Geometry(800, 0, 800, 400)
    span = d.xterm("Spanning window")
    low = d.xterm("Low window")
    gs = d.place(span, 500, 100, 400, 300)  # mostly on LEFT
    gl = d.place(low, 1000, 300, 300, 200)  # on RIGHT, its lower part below RIGHT's bottom
    seen = by_title(source(d).windows())
    assert source(d).monitors() == [
        type(source(d).monitors()[0])(0, 0, 800, 600),
        type(source(d).monitors()[0])(800, 0, 800, 400),
    ]
    assert overlap(gs, left) > overlap(gs, right) > 0
    assert seen["Spanning window"].screen_percentage == pytest.approx(
        overlap(gs, left) / (800 * 600), abs=1e-4
    )
    assert seen["Spanning window"].visible_percentage == pytest.approx(1.0)
    assert seen["Low window"].screen_percentage == pytest.approx(
        overlap(gl, right) / (800 * 400), abs=1e-4
    )
    assert seen["Low window"].visible_percentage == pytest.approx(
        overlap(gl, right) / (gl.w * gl.h), abs=1e-4
    )
    assert 0.3 < seen["Low window"].visible_percentage < 0.7


def test_documents_from_open_files_and_working_directory(desktop: Desktop, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("notes")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = elsewhere / "report.md"
    report.write_text("# report")
    desktop.xterm("notes.txt (~/work) - editor", cwd=work)
    desktop.xterm("report.md - viewer", open_file=report)
    desktop.xterm("missing.txt - editor", cwd=work)
    desktop.xterm("plain window", cwd=work)
    seen = by_title(source(desktop).windows())
    assert seen["notes.txt (~/work) - editor"].documents == (str(work / "notes.txt"),)
    assert seen["report.md - viewer"].documents == (str(report),)
    assert seen["missing.txt - editor"].documents == ()
    assert seen["plain window"].documents == ()


def test_process_name_falls_back_to_the_window_class(desktop: Desktop) -> None:
    desktop.xterm("Remote window")
    # A client of another machine: its _NET_WM_PID means nothing here.
    (window,) = source(desktop, hostname="another-machine").windows()
    assert window.process_name == "XTerm"
    (window,) = source(desktop).windows()
    assert window.process_name == "xterm"


def settings(tmp_path: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "server": "http://127.0.0.1:9",
        "key": "k",
        "queue": tmp_path / "queue.sqlite3",
        "interval": 10.0,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def queued(tmp_path: Path) -> list[dict[str, object]]:
    queue = SnapshotQueue(tmp_path / "queue.sqlite3", 100)
    try:
        return [json.loads(q.body) for q in queue.peek(100, 10**9)]
    finally:
        queue.close()


def test_idle_means_away(desktop: Desktop, tmp_path: Path) -> None:
    desktop.xterm("Busy window")
    clock = [1_800_000_000.0]
    sensor = Sensor(settings(tmp_path, idle=1.0), lambda: source(desktop), lambda: clock[0])
    queue = SnapshotQueue(tmp_path / "queue.sqlite3", 100)
    try:
        desktop.xdotool("mousemove", "10", "10")
        assert sensor.take(queue)
        time.sleep(1.3)  # no input for longer than --idle
        clock[0] += 10
        assert sensor.take(queue)
        desktop.xdotool("mousemove", "20", "20")
        clock[0] += 10
        assert sensor.take(queue)
    finally:
        queue.close()
    snaps = queued(tmp_path)
    assert [[w["title"] for w in s["windows"]] for s in snaps] == [  # type: ignore[attr-defined]
        ["Busy window"],
        [],
        ["Busy window"],
    ]
    assert [s["durationMs"] for s in snaps] == [10000, 10000, 10000]
    assert snaps[0]["timeTaken"] == "2027-01-15T08:00:00.000Z"


def test_privacy_filters_before_anything_is_queued(desktop: Desktop, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "plan.txt").write_text("secret")
    (work / "open.txt").write_text("open")
    desktop.xterm("plan.txt - Salary negotiation", cwd=work)
    desktop.xterm("open.txt - editor", cwd=work)
    clock = [1_800_000_000.0]
    sensor = Sensor(
        settings(tmp_path, exclude_title=(re.compile("(?i)salary"),)),
        lambda: source(desktop),
        lambda: clock[0],
    )
    queue = SnapshotQueue(tmp_path / "queue.sqlite3", 100)
    try:
        desktop.xdotool("mousemove", "10", "10")
        assert sensor.take(queue)
        clock[0] += 10
        sensor.privacy = type(sensor.privacy)(exclude_app=("xterm",))
        assert sensor.take(queue)
    finally:
        queue.close()
    first, second = queued(tmp_path)
    windows = {w["processName"] + ":" + w["title"]: w for w in first["windows"]}  # type: ignore[attr-defined]
    assert set(windows) == {"xterm:", "xterm:open.txt - editor"}
    assert windows["xterm:"]["documents"] == [] and windows["xterm:"]["tags"] == {}
    assert windows["xterm:open.txt - editor"]["documents"] == [{"path": str(work / "open.txt")}]
    assert windows["xterm:open.txt - editor"]["tags"] == {"open.txt": 1, "editor": 1}
    # --exclude-app: every window of that process, whatever its title.
    assert [(w["title"], w["documents"], w["tags"]) for w in second["windows"]] == [  # type: ignore[attr-defined]
        ("", [], {}),
        ("", [], {}),
    ]
    assert "Salary" not in json.dumps([first, second])


def test_geometry_counts_mirrored_monitors_once_and_stacked_covers_exactly() -> None:
    from screenaware_sensor.geometry import Rect, screen_share, visible_share

    mirrored = [Rect(0, 0, 100, 100), Rect(0, 0, 100, 100), Rect(100, 0, 50, 100)]
    window = Rect(50, 0, 100, 100)  # half on the mirrored pair, half on the small one
    assert visible_share(window, [], mirrored) == 1.0
    assert screen_share(window, mirrored) == 1.0  # all of the 50x100 monitor
    covers = [Rect(50, 0, 10, 100), Rect(55, 0, 10, 100), Rect(140, 90, 100, 100)]
    assert visible_share(window, covers, mirrored) == (10000 - 1500 - 100) / 10000

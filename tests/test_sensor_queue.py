"""The sensor's local queue (SQLite), back-off, snapshot JSON and geometry, without a server."""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from screenaware_sensor.geometry import Rect, visible_share
from screenaware_sensor.queue import SnapshotQueue
from screenaware_sensor.snapshot import Privacy, Window, build_snapshot, iso_ms, title_tags
from screenaware_sensor.upload import Backoff, retry_after

T0 = 1_800_000_000_000


def snap(i: int) -> dict[str, object]:
    return build_snapshot([], T0 + i * 10_000, 10_000, Privacy())


def test_queue_is_fifo_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "q" / "queue.sqlite3"
    queue = SnapshotQueue(path, 100)
    for i in range(5):
        queue.put(snap(i), T0 + i * 10_000)
    queue.close()
    queue = SnapshotQueue(path, 100)
    batch = queue.peek(3, 10**6)
    assert [json.loads(q.body)["timeTaken"] for q in batch] == [
        iso_ms(T0), iso_ms(T0 + 10_000), iso_ms(T0 + 20_000)
    ]  # fmt: skip
    queue.delete(batch[:2])
    assert len(queue) == 3
    assert queue.last_taken_ms() == T0 + 40_000
    assert [q.taken_ms for q in queue.peek(10, 10**6)] == [T0 + 20_000, T0 + 30_000, T0 + 40_000]
    queue.close()


def _open_together(path: Path, threads: int) -> list[BaseException]:
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def open_queue() -> None:
        barrier.wait()
        try:
            queue = SnapshotQueue(path, 10)
            queue.put(snap(0), T0)
            queue.close()
        except Exception as exc:  # reported by the caller's assertion
            errors.append(exc)

    started = [threading.Thread(target=open_queue) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    return errors


def test_threads_opening_a_new_queue_together_all_succeed(tmp_path: Path) -> None:
    # The sensor's snapshot, upload and beat threads open the first queue at once; SQLite
    # refused one of them now and then ("database is locked", CI on 0eb6491).
    for trial in range(200):
        path = tmp_path / str(trial) / "queue.sqlite3"
        assert _open_together(path, 4) == [], f"trial {trial}"
        queue = SnapshotQueue(path, 10)
        assert len(queue) == 4
        queue.close()


def test_queue_is_bounded_dropping_the_oldest_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = SnapshotQueue(tmp_path / "queue.sqlite3", 4)
    with caplog.at_level(logging.WARNING, "screenaware_sensor.queue"):
        for i in range(6):
            queue.put(snap(i), T0 + i * 10_000)
    assert len(queue) == 4
    assert [q.taken_ms for q in queue.peek(10, 10**6)] == [T0 + i * 10_000 for i in range(2, 6)]
    dropped = [r.getMessage() for r in caplog.records]
    assert dropped == [
        f"queue full (4 snapshots): dropped the 1 oldest, taken {iso_ms(T0)} to {iso_ms(T0)}",
        f"queue full (4 snapshots): dropped the 1 oldest, taken {iso_ms(T0 + 10_000)} to "
        f"{iso_ms(T0 + 10_000)}",
    ]
    queue.close()


def test_peek_keeps_batches_under_the_byte_limit(tmp_path: Path) -> None:
    queue = SnapshotQueue(tmp_path / "queue.sqlite3", 100)
    for i in range(10):
        queue.put(snap(i), T0 + i)
    size = len(queue.peek(1, 10**6)[0].body) + 1
    assert len(queue.peek(10, 2 + 3 * size)) == 3
    assert len(queue.peek(10, 1)) == 1  # one snapshot always goes, however big
    assert len(queue.peek(4, 10**6)) == 4
    queue.close()


def test_rejected_snapshots_leave_the_queue_but_are_kept(tmp_path: Path) -> None:
    queue = SnapshotQueue(tmp_path / "queue.sqlite3", 100)
    queue.put(snap(0), T0)
    queue.put(snap(1), T0 + 1)
    queue.reject(queue.peek(1, 10**6), "400 durationMs: too long")
    assert (len(queue), queue.rejected_count()) == (1, 1)
    queue.close()


def test_backoff_grows_with_jitter_up_to_the_cap_and_honours_the_server() -> None:
    low, high = Backoff(cap=8, rng=lambda: 0.0), Backoff(cap=8, rng=lambda: 0.999999)
    assert [low.failure() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert [round(high.failure(), 3) for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    assert low.failure(server_asked=30) == 30  # Retry-After wins over a shorter delay
    low.success()
    assert low.failure() == 0.5


def test_retry_after_header() -> None:
    now = time.time()
    assert retry_after({"retry-after": "7"}) == 7
    assert retry_after({"retry-after": "999999"}) == 3600
    when = email.utils.formatdate(now + 20, usegmt=True)
    assert retry_after({"retry-after": when}, now=now) == pytest.approx(20, abs=1)
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_snapshot_json_and_privacy() -> None:
    windows = [
        Window(
            "Budget.ods - LibreOffice", "soffice.bin", False, 0.5, 0.25, ("/home/a/Budget.ods",)
        ),
        Window("main.py - screenaware - Code", "code", True, 0.5, 1.0, ("/src/main.py",)),
        Window("Vault", "KeePassXC.exe", False, 0.1, 0.0),
    ]
    privacy = Privacy((), ("keepassxc",))
    body = build_snapshot(windows, T0, 8_800, privacy)
    assert body["timeTaken"] == iso_ms(T0) and body["durationMs"] == 8_800
    out = body["windows"]
    assert [w["title"] for w in out] == [
        "main.py - screenaware - Code",
        "Budget.ods - LibreOffice",
        "",
    ]
    assert out[0] == {
        "title": "main.py - screenaware - Code",
        "processName": "code",
        "isFocused": True,
        "screenPercentage": 0.5,
        "visiblePercentage": 1.0,
        "documents": [{"path": "/src/main.py"}],
        "tags": {"main.py": 1, "screenaware": 1, "code": 1},
    }
    assert out[2]["processName"] == "KeePassXC.exe" and out[2]["tags"] == {}
    assert build_snapshot(None, T0, 10_000, privacy)["windows"] == []  # away
    assert title_tags("Re: Re: budget 2026 — Budget review") == {"re": 2, "budget": 2, "review": 1}


def test_put_many_is_one_bounded_transaction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = SnapshotQueue(tmp_path / "queue.sqlite3", 3)
    with caplog.at_level(logging.WARNING, "screenaware_sensor.queue"):
        queue.put_many([(snap(i), T0 + i * 10_000) for i in range(5)], {"cursor": "42"})
    assert [q.taken_ms for q in queue.peek(10, 10**6)] == [T0 + 20_000, T0 + 30_000, T0 + 40_000]
    assert (queue.meta("cursor"), queue.meta("other")) == ("42", None)
    assert [r.getMessage() for r in caplog.records] == [
        f"queue full (3 snapshots): dropped the 2 oldest, taken {iso_ms(T0)} to "
        f"{iso_ms(T0 + 10_000)}"
    ]
    queue.close()


small = st.builds(
    Rect, st.integers(-5, 20), st.integers(-5, 20), st.integers(0, 15), st.integers(0, 15)
)


@given(window=small, above=st.lists(small, max_size=6), monitors=st.lists(small, max_size=3))
def test_visible_share_equals_a_pixel_count(
    window: Rect, above: list[Rect], monitors: list[Rect]
) -> None:
    def inside(r: Rect, x: int, y: int) -> bool:
        return r.x <= x < r.x + r.w and r.y <= y < r.y + r.h

    pixels = [(x, y) for x in range(window.x, window.x + window.w)
              for y in range(window.y, window.y + window.h)]  # fmt: skip
    seen = [
        p for p in pixels
        if any(inside(m, *p) for m in monitors) and not any(inside(a, *p) for a in above)
    ]  # fmt: skip
    expected = len(seen) / len(pixels) if pixels else 0.0
    assert visible_share(window, above, monitors) == pytest.approx(expected)

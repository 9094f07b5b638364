"""The test tooling itself: coverage counts gunicorn's workers; the floor only goes up."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import time
from pathlib import Path

import coverage
import httpx
import pytest

from heartbeat.resources import BeatResource
from screenaware.config import Config
from screenaware.web.headers import WORKER_PID_HEADER
from tests.conftest import SECRET_KEY
from tests.service import run_service

ROOT = Path(__file__).resolve().parent.parent


def beat_responder_lines() -> set[int]:
    """The lines of the body of ``POST /api/beat``'s responder."""
    source, first = inspect.getsourcelines(BeatResource.on_post)
    return set(range(first + 1, first + len(source)))


@pytest.mark.e2e
@pytest.mark.parametrize("hook", [True, False], ids=["with-hook", "without-hook"])
def test_coverage_counts_code_run_only_in_gunicorn_workers(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: bool
) -> None:
    # What scripts/test sets up, but measuring into a folder of this test's own.
    for name in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START", "GUNICORN_CMD_ARGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COVERAGE_PROCESS_START", str(ROOT / "setup.cfg"))
    monkeypatch.setenv("COVERAGE_FILE", str(tmp_path / "cov" / "data"))
    (tmp_path / "cov").mkdir()
    if hook:
        monkeypatch.setenv("GUNICORN_CMD_ARGS", f"--config {ROOT / 'tests/gunicorn_coverage.py'}")
    with run_service(config.replace(worker_pid_header=True), tmp_path, workers=2) as service:
        workers = set(service.worker_pids())
        device = httpx.post(
            service.url + "/api/devices", json={"name": "d"}, headers={"Authorization": SECRET_KEY}
        ).json()["token"]
        # Fresh connections until both workers answered: a worker still starting when
        # the service stops (slow under coverage) has not installed the hook yet.
        answered: set[int] = set()
        deadline = time.monotonic() + 60
        while answered != workers and time.monotonic() < deadline:
            beat = httpx.post(service.url + "/api/beat", headers={"Authorization": device})
            assert beat.status_code == 200
            answered.add(int(beat.headers[WORKER_PID_HEADER]))
        assert answered == workers
    files = {
        int(re.search(r"\.pid(\d+)\.", f.name).group(1)): f  # type: ignore[union-attr]
        for f in (tmp_path / "cov").iterdir()
    }
    assert service.proc.pid in files, "gunicorn's master was not measured"
    beat_lines: set[int] = set()
    for pid in workers & files.keys():
        data = coverage.CoverageData(basename=str(files[pid]))
        data.read()
        source = inspect.getsourcefile(BeatResource)
        beat_lines |= set(data.lines(str(source)) or ())
    if hook:
        assert workers <= files.keys(), "a worker wrote no coverage data"
        assert beat_lines & beat_responder_lines(), "the beat responder's lines were not counted"
    else:
        # uvicorn's workers die of SIGTERM before atexit: this is why the hook exists.
        assert not beat_lines & beat_responder_lines()


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_coverage_floor_cannot_go_down(tmp_path: Path) -> None:
    def floor_check(value: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "setup.cfg").write_text(f"[coverage:report]\nfail_under = {value}\n")
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts/coverage_floor.py")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )

    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.org")
    git(tmp_path, "config", "user.name", "t")
    assert floor_check("80.5").returncode == 0
    git(tmp_path, "add", "setup.cfg")
    git(tmp_path, "commit", "-qm", "floor 80.5")
    lower = floor_check("80.4")
    assert lower.returncode == 1
    assert "below 80.5" in lower.stderr
    assert floor_check("81").returncode == 0
    git(tmp_path, "commit", "-qam", "floor 81")
    assert floor_check("80.5").returncode == 1  # below the newest, though not the oldest
    assert floor_check("81").returncode == 0

"""A watchdog for tests that hang: what each thread and each asyncio task waits on.

pytest-timeout (setup.cfg ``timeout``) fails a test that takes too long, with the
threads' stacks; a test hung in asyncio shows there only the event loop's
``select``. This plugin prints, well before that, every thread's stack and every
task's coroutine stack of the loops that run, and ends the session with exit code 3
if the test has not ended long after pytest-timeout should have failed it (a
teardown hung after the timeout fired, which pytest-timeout does not time again).
CI then fails with the cause printed instead of running out of its time.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import sys
import threading
from collections.abc import Iterator

import pytest

# Seconds after a test starts (setup included): print what waits, then end the run.
DUMP_AFTER = float(os.environ.get("SCREENAWARE_TEST_DUMP_AFTER", "120"))
EXIT_AFTER = float(os.environ.get("SCREENAWARE_TEST_EXIT_AFTER", "600"))


def _running_loops() -> list[asyncio.AbstractEventLoop]:
    # The hung loop belongs to the main thread, which cannot be asked: find it
    # among the objects alive (slow, but only ever done once, for a hung test).
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running()
    ]


def dump(nodeid: str, after: float) -> None:
    """Print the threads' stacks and the running loops' tasks to standard error."""
    out = sys.__stderr__
    if out is None:
        return
    print(f"\n+++ watchdog: {nodeid} still runs after {after:.0f} s +++", file=out, flush=True)
    faulthandler.dump_traceback(file=out, all_threads=True)
    for loop in _running_loops():
        try:
            tasks = list(asyncio.all_tasks(loop))
        except RuntimeError:  # the set changed while it was copied: once more
            tasks = list(asyncio.all_tasks(loop))
        print(f"--- {len(tasks)} asyncio tasks of {loop!r}", file=out, flush=True)
        for task in tasks:
            task.print_stack(limit=30, file=out)
    out.flush()


class _Timer:
    def __init__(self, nodeid: str, config: pytest.Config) -> None:
        self._nodeid = nodeid
        self._config = config
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="test-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        if self._done.wait(DUMP_AFTER):
            return
        dump(self._nodeid, DUMP_AFTER)
        if self._done.wait(EXIT_AFTER - DUMP_AFTER):
            return
        # Captured output is lost with the process: show it (the first dump too).
        capture = self._config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=True)
            out, err = capture.read_global_capture()
            print(out + err, file=sys.__stderr__, flush=True)
        dump(self._nodeid, EXIT_AFTER)
        print("+++ watchdog: ending the test run +++", file=sys.__stderr__, flush=True)
        os._exit(3)

    def cancel(self) -> None:
        self._done.set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    timer = _Timer(item.nodeid, item.config)
    try:
        yield
    finally:
        timer.cancel()

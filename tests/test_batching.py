"""The coalescer under the group-commit writer and the beat path (plain asyncio, no I/O)."""

from __future__ import annotations

import asyncio
import gc
import logging
import traceback

import pytest

from screenaware.storage.batching import Coalescer, QueueFull, cancel_task


class Recorder:
    """A batch runner that records its batches and can be held at a gate."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = fail

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail:
            missing: dict[str, int] = {}
            try:
                missing["socket"]
            except KeyError as exc:
                raise ConnectionError("backend down") from exc
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_items_submitted_while_a_call_runs_share_the_next_call() -> None:
    run = Recorder()
    run.gate.clear()
    co: Coalescer[int, int] = Coalescer(run, name="t")
    first = asyncio.ensure_future(co.submit(1))
    await asyncio.sleep(0.01)  # the first call is now in flight, held at the gate
    rest = [asyncio.ensure_future(co.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0.01)
    run.gate.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50, 60]
    assert run.batches == [[1], [2, 3, 4, 5, 6]]
    await co.stop()


async def test_each_item_gets_its_own_outcome_and_a_failed_call_fails_its_batch() -> None:
    co: Coalescer[int, int] = Coalescer(Recorder(), name="t")
    results = await asyncio.gather(co.submit(1), co.submit(-1), return_exceptions=True)
    assert results[0] == 10
    assert isinstance(results[1], ValueError)
    down: Coalescer[int, int] = Coalescer(Recorder(fail=True), name="t")
    failed = await asyncio.gather(*(down.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(f, ConnectionError) for f in failed)
    await co.stop()
    await down.stop()


async def test_a_failed_call_hands_its_own_exception_to_every_waiter_and_logs_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "screenaware.storage.batching")
    down: Coalescer[int, int] = Coalescer(Recorder(fail=True), name="t")
    failed = await asyncio.gather(*(down.submit(i) for i in range(3)), return_exceptions=True)
    # The very exception the runner raised: its cause and where it came from kept.
    assert failed[0] is failed[1] is failed[2]
    first = failed[0]
    assert isinstance(first, BaseException)
    assert isinstance(first.__cause__, KeyError)
    frames = [f.name for f in traceback.extract_tb(first.__traceback__)]
    assert "__call__" in frames  # the runner's own frame
    # Raised by three waiters, yet the traceback did not grow with each of them.
    depths = []
    for _ in range(3):
        with pytest.raises(ConnectionError) as raised:
            await down.submit(0)
        depths.append(len(traceback.extract_tb(raised.value.__traceback__)))
    assert len(set(depths)) == 1
    # Logged once, as a warning with that exception, although six calls failed.
    failures = [r for r in caplog.records if r.name == "screenaware.storage.batching"]
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING
    assert failures[0].exc_info is not None and failures[0].exc_info[1] is failed[0]
    await down.stop()


async def test_failures_are_logged_again_after_a_success_or_another_kind_of_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "screenaware.storage.batching")
    run = Recorder(fail=True)
    co: Coalescer[int, int] = Coalescer(run, name="t")
    for _ in range(20):
        with pytest.raises(ConnectionError):
            await co.submit(1)
    run.fail = False
    assert await co.submit(2) == 20
    assert await co.submit(3) == 30
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "failed" in messages[0]
    assert messages[1] == "t: calls succeed again after 20 failed"
    run.fail = True
    with pytest.raises(ConnectionError):
        await co.submit(4)
    assert len(caplog.records) == 3 and caplog.records[2].exc_info is not None
    await co.stop()


async def test_a_cancelled_submitter_leaves_the_batch_to_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for fail in (False, True):
        run = Recorder(fail=fail)
        run.gate.clear()
        co: Coalescer[int, int] = Coalescer(run, name="t")
        waiters = [asyncio.ensure_future(co.submit(i)) for i in range(1, 4)]
        await asyncio.sleep(0.01)
        waiters[1].cancel()  # its client went away while the batch runs
        run.gate.set()
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert isinstance(outcomes[1], asyncio.CancelledError)
        if fail:
            assert all(isinstance(o, ConnectionError) for o in (outcomes[0], outcomes[2]))
        else:
            assert (outcomes[0], outcomes[2]) == (10, 30)
        assert run.batches == [[1, 2, 3]]
        await co.stop()
    gc.collect()
    await asyncio.sleep(0)
    # Nothing was left unretrieved for asyncio to complain about.
    assert "never retrieved" not in caplog.text


async def test_the_queue_is_bounded_but_an_empty_one_takes_any_item() -> None:
    run = Recorder()
    run.gate.clear()
    co: Coalescer[list[int], int] = Coalescer(
        lambda batch: run([len(b) for b in batch]), name="t", max_pending=5, weight=len
    )
    heavy = asyncio.ensure_future(co.submit(list(range(8))))  # alone: taken though > 5
    await asyncio.sleep(0.01)
    queued = [asyncio.ensure_future(co.submit([1, 2])) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await co.submit([1, 2])  # 4 queued + 2 > 5
    run.gate.set()
    assert await heavy == 80
    assert await asyncio.gather(*queued) == [20, 20]
    await co.stop()


async def test_stop_runs_what_is_queued() -> None:
    run = Recorder()
    co: Coalescer[int, int] = Coalescer(run, name="t")
    waiters = [asyncio.ensure_future(co.submit(i)) for i in range(5)]
    await asyncio.sleep(0)  # queued; the background call has not taken them yet
    await co.stop()
    assert [await w for w in waiters] == [0, 10, 20, 30, 40]
    assert sorted(i for batch in run.batches for i in batch) == [0, 1, 2, 3, 4]


async def test_stop_waits_for_the_call_in_flight_instead_of_cancelling_it() -> None:
    run = Recorder()
    run.gate.clear()
    co: Coalescer[int, int] = Coalescer(run, name="t")
    in_flight = [asyncio.ensure_future(co.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)  # the call for 1 and 2 is held at the gate
    queued = asyncio.ensure_future(co.submit(3))
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(co.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()  # still waiting for the held call
    run.gate.set()
    await asyncio.wait_for(stopping, 5)
    assert await asyncio.wait_for(asyncio.gather(*in_flight, queued), 5) == [10, 20, 30]
    assert run.batches == [[1, 2], [3]]
    # A straggler after stop still gets an answer rather than hanging.
    assert await co.submit(4) == 40
    await co.stop()


class Timed:
    """A batch runner that takes ``seconds`` per call (an InfluxDB write)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.batches: list[list[int]] = []

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(self.seconds)
        return list(items)


async def closed_loop(co: Coalescer[int, int], clients: int, rounds: int) -> None:
    """Clients that each send again once answered, after a think time of their own
    (client i: i x 2 ms), as wrk's connections or devices catching up do."""

    async def client(i: int) -> None:
        for _ in range(rounds):
            await co.submit(i)
            await asyncio.sleep(0.002 * i)

    await asyncio.gather(*(client(i) for i in range(clients)))


async def test_regroup_keeps_answered_clients_in_one_call_instead_of_alternating() -> None:
    # Without it (the same clients, regroup=0), the first client back starts the
    # next call alone, the others queue behind it: the calls alternate between
    # parts of the clients. With it, every call after the first holds all eight.
    sizes, took = {}, {}
    loop = asyncio.get_running_loop()
    for regroup in (0.0, 0.5):
        run = Timed(0.02)
        co: Coalescer[int, int] = Coalescer(run, name="t", regroup=regroup)
        started = loop.time()
        await asyncio.wait_for(closed_loop(co, clients=8, rounds=6), 20)
        took[regroup] = loop.time() - started
        await co.stop()
        sizes[regroup] = [len(b) for b in run.batches]
        assert sum(sizes[regroup]) == 8 * 6
    assert sizes[0.5] == [8] * 6
    assert max(sizes[0.0][1:]) < 8, sizes[0.0]
    # The eighth client's return ends each wait: five waits to the end of regroup
    # would take 2.5 s.
    assert took[0.5] < 1.5, took


async def test_regroup_waits_no_longer_than_it_says_when_fewer_come_back() -> None:
    run = Timed(0.0)
    co: Coalescer[int, int] = Coalescer(run, name="t", regroup=0.2)
    assert await asyncio.gather(*(co.submit(i) for i in range(3))) == [0, 1, 2]
    # Two of the three come back: their call waits for the third until 200 ms after
    # the answer, then goes with the two; the next expects two, and two came.
    loop = asyncio.get_running_loop()
    answered = loop.time()
    assert list(await asyncio.gather(co.submit(0), co.submit(1))) == [0, 1]
    assert 0.15 <= loop.time() - answered < 1.0
    again = loop.time()
    assert list(await asyncio.gather(co.submit(0), co.submit(1))) == [0, 1]
    assert loop.time() - again < 0.1, "two were expected and two came: no wait"
    assert [len(b) for b in run.batches] == [3, 2, 2]
    await co.stop()


async def test_regroup_backs_off_when_the_answered_do_not_come_back() -> None:
    # Devices that beat at their own pace never come back within regroup: a wait
    # that ran out skips the next waits (1, 2, 4 … calls) instead of holding every call.
    co: Coalescer[int, int] = Coalescer(Timed(0.0), name="t", regroup=0.2)
    loop = asyncio.get_running_loop()

    async def lone() -> float:
        started = loop.time()
        assert await co.submit(9) == 9
        return loop.time() - started

    assert list(await asyncio.gather(*(co.submit(i) for i in range(3)))) == [0, 1, 2]
    assert await lone() >= 0.15  # three were answered, one came: the wait runs out
    assert list(await asyncio.gather(*(co.submit(i) for i in range(3)))) == [0, 1, 2]
    assert await lone() < 0.1  # the wait after one that ran out is skipped
    assert list(await asyncio.gather(*(co.submit(i) for i in range(3)))) == [0, 1, 2]
    assert await lone() >= 0.15  # then tried again
    await co.stop()


async def test_regroup_does_not_wait_for_submitters_that_went_away() -> None:
    run = Recorder()
    run.gate.clear()
    co: Coalescer[int, int] = Coalescer(run, name="t", regroup=10.0)
    waits = [asyncio.ensure_future(co.submit(i)) for i in range(4)]
    while not run.batches:
        await asyncio.sleep(0)
    for w in waits[1:]:
        w.cancel()  # their clients went away while the call ran
    run.gate.set()
    assert await waits[0] == 0
    # One was answered; one comes back: nothing to wait for (ten seconds otherwise).
    assert await asyncio.wait_for(co.submit(5), 1) == 50
    await co.stop()


async def test_regroup_never_holds_an_item_after_a_quiet_spell_or_a_failed_call() -> None:
    run = Recorder()
    # Ten seconds: a call that waited for it would time the test out.
    co: Coalescer[int, int] = Coalescer(run, name="t", regroup=10.0)
    assert await asyncio.gather(*(co.submit(i) for i in (1, 2, 3))) == [10, 20, 30]
    run.fail = True
    failed = await asyncio.wait_for(
        asyncio.gather(*(co.submit(i) for i in (1, 2, 3)), return_exceptions=True), 1
    )
    assert all(isinstance(f, ConnectionError) for f in failed)
    run.fail = False
    # The failed call expects nobody back: a lone item goes at once.
    assert await asyncio.wait_for(co.submit(5), 1) == 50
    quiet: Coalescer[int, int] = Coalescer(Recorder(), name="q", regroup=0.2)
    assert list(await asyncio.gather(quiet.submit(1), quiet.submit(2))) == [10, 20]
    await asyncio.sleep(0.25)  # longer than regroup since the answer: nobody expected
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await quiet.submit(3) == 30
    assert loop.time() - started < 0.1
    await quiet.stop()
    # stop() ends a wait at once and runs what is queued.
    assert await asyncio.gather(*(co.submit(i) for i in (6, 7))) == [60, 70]
    alone = asyncio.ensure_future(co.submit(8))
    await asyncio.sleep(0.01)
    assert not alone.done(), "waiting for the second client of the last call"
    await asyncio.wait_for(co.stop(), 1)
    assert await alone == 80


async def test_cancel_task_cancels_again_a_task_that_took_the_first_for_an_error() -> None:
    taken: list[str] = []

    async def loop_that_survives_errors() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                # What a timeout meeting a cancellation can look like on Python 3.11:
                # the loop logs it as one more failure and goes on.
                if not taken:
                    taken.append("once")
                    continue
                raise

    task = asyncio.create_task(loop_that_survives_errors())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_task(task, every=0.05), timeout=5)
    assert task.cancelled() and taken == ["once"]


async def test_cancel_task_raises_what_the_task_failed_with() -> None:
    async def fails() -> None:
        raise KeyError("broken")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(KeyError, match="broken"):
        await cancel_task(task)
    await cancel_task(None)

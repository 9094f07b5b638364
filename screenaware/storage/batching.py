"""Group commit as a reusable mechanism: coalesce concurrent calls into one.

While one call to the backend is in flight, new submissions queue; when it
returns, everything queued goes out in the next call. A lone request is never
delayed by a timer, and under load one round trip serves many requests. The
InfluxDB writer, the timeline rounds and the beats all use it; the beats also
``regroup``: a call waits briefly for the submitters the last one just answered.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

LOG = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# One outcome per item: its result, or the exception that item must raise.
BatchRunner = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class QueueFull(Exception):
    """More work is waiting than the coalescer accepts."""


@dataclass
class _Pending(Generic[T, R]):
    item: T
    weight: int
    future: asyncio.Future[R]


class Coalescer(Generic[T, R]):
    """Runs ``run`` on the items submitted while its previous call was in flight.

    Args:
        run: takes a batch, returns one outcome per item (a result or an
            exception instance). If it raises, every item of the batch gets
            that same exception object, traceback and cause intact. The first
            failure of a run of failed calls is logged as a WARNING with its
            traceback, further ones only counted until a call succeeds again (an
            outage would otherwise log once per batch), and a failure of another
            exception class is logged again.
        name: for logs and the task name.
        max_batch: weight per call at most (a heavier single item still goes alone).
        max_pending: weight that may wait; past it :meth:`submit` raises
            ``full_error()`` at once instead of queueing without bound (an
            empty queue takes any item, however heavy).
        weight: the weight of an item (default 1).
        full_error: builds the exception for a full queue.
        linger_yields: event-loop turns to wait before taking a batch, so that
            requests already runnable join it.
        regroup: seconds after a call answered its items during which the next
            call waits until as many items are queued as that call answered (plus
            those queued when it did): clients that send again as soon as they are
            answered then share one call instead of splitting into two that
            alternate (each one's request misses the call that starts the moment
            the previous one ends). 0: off. Past it the call goes with what is
            queued, and an item arriving later than that after the last answer is
            never held. A wait that ran out (the answered did not all come back:
            clients that send at their own pace) skips the waits of the next 1, 2,
            4 … 64 calls, until one is met again.
    """

    def __init__(
        self,
        run: BatchRunner[T, R],
        *,
        name: str,
        max_batch: int = 1000,
        max_pending: int = 100_000,
        weight: Callable[[T], int] = lambda item: 1,
        full_error: Callable[[], Exception] = lambda: QueueFull("queue full"),
        linger_yields: int = 2,
        regroup: float = 0.0,
    ) -> None:
        self._run_batch = run
        self.name = name
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._weight = weight
        self._full_error = full_error
        self._linger_yields = linger_yields
        self._regroup = regroup
        # After a call answered: how many items the next call waits for, until when
        # (loop time), and the future that a submission completing that count sets.
        self._expected = 0
        self._expected_until = 0.0
        self._enough: asyncio.Future[None] | None = None
        # Waits to skip after one ran out, and how many the next that runs out skips.
        self._skip = 0
        self._backoff = 1
        self._queue: collections.deque[_Pending[T, R]] = collections.deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.calls = 0
        self.items = 0
        self._failing: type[BaseException] | None = None
        self._failed_calls = 0

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its outcome."""
        weight = self._weight(item)
        if self._queued and self._queued + weight > self._max_pending:
            raise self._full_error()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, weight, future))
        self._queued += weight
        if self._enough is not None and self._met():
            _wake(self._enough)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=self.name)
        self._wakeup.set()
        # A submitter cancelled while its batch runs (client gone) cancels only its
        # own future: the batch still runs for the others, and _settle skips it.
        return await future

    async def stop(self) -> None:
        """Finish the call in flight and what is queued, then stop the background task.

        The task is never cancelled mid-call: that would leave a batch half done
        (e.g. beats stored in InfluxDB but not counted) and its waiters unanswered.
        """
        self._stopping = True
        self._wakeup.set()
        if self._enough is not None:
            _wake(self._enough)
        if self._task is not None:
            await asyncio.wait([self._task])  # its own end, whatever it was, is not ours
            self._task = None
        if self.calls:
            LOG.info("%s: %d items in %d calls", self.name, self.items, self.calls)

    def _failed(self, exc: Exception, size: int) -> None:
        self._failed_calls += 1
        if type(exc) is self._failing:
            return
        self._failing = type(exc)
        LOG.warning(
            "%s: a call with %d items failed (further failures of this kind are counted "
            "until one succeeds)",
            self.name,
            size,
            exc_info=exc,
        )

    def _take(self) -> list[_Pending[T, R]]:
        batch: list[_Pending[T, R]] = []
        weight = 0
        while self._queue and (not batch or weight + self._queue[0].weight <= self._max_batch):
            pending = self._queue.popleft()
            batch.append(pending)
            weight += pending.weight
        self._queued -= weight
        return batch

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            for _ in range(self._linger_yields):
                await asyncio.sleep(0)
            while self._queue:
                if self._regroup:
                    await self._await_answered()
                await self._run(self._take())
            if self._stopping:
                return

    def _met(self) -> bool:
        # A full call's weight queued is as many as the next call can take.
        return len(self._queue) >= self._expected or self._queued >= self._max_batch

    async def _await_answered(self) -> None:
        """Wait (see ``regroup``) for the submitters the last call answered."""
        loop = asyncio.get_running_loop()
        remaining = self._expected_until - loop.time()
        if remaining <= 0 or self._met() or self._stopping:
            return
        if self._skip:
            self._skip -= 1
            return
        self._enough = enough = loop.create_future()
        timer = loop.call_later(remaining, _wake, enough)
        try:
            await enough
        finally:
            timer.cancel()
            self._enough = None
        if self._met() or self._stopping:
            self._backoff = 1
        else:
            self._skip, self._backoff = self._backoff, min(self._backoff * 2, 64)

    async def _run(self, batch: list[_Pending[T, R]]) -> None:
        try:
            outcomes = await self._run_batch([p.item for p in batch])
        except Exception as exc:
            self._expected_until = 0.0  # answered with an error: nobody to wait for
            self._failed(exc, len(batch))
            # The same object for every waiter: asyncio re-raises it with the
            # traceback it had when set, so each waiter sees where it came from.
            for pending in batch:
                _settle(pending.future, exc)
            return
        if self._failing is not None:
            LOG.warning("%s: calls succeed again after %d failed", self.name, self._failed_calls)
            self._failing = None
            self._failed_calls = 0
        self.calls += 1
        self.items += len(batch)
        for pending, outcome in zip(batch, outcomes, strict=True):
            _settle(pending.future, outcome)
        if self._regroup:
            # Those whose submitter went away (client gone) do not come back.
            answered = sum(1 for p in batch if not p.future.cancelled())
            self._expected = answered + len(self._queue)
            self._expected_until = asyncio.get_running_loop().time() + self._regroup


async def cancel_task(task: asyncio.Task[None] | None, every: float = 1.0) -> None:
    """Cancel a background task and wait until it has ended.

    While it runs on, it is cancelled again every ``every`` seconds. A loop that
    outlives its own errors can take a cancellation for one of them: on Python 3.11,
    a cancellation that meets the deadline of an ``asyncio.timeout`` inside the task
    (redis-py's, the InfluxDB client's) can come out as ``TimeoutError`` (CPython
    gh-102815, fixed in 3.12; gh-134471 is still open for an already-cancelled task).
    A single cancel would then leave the caller, a worker's shutdown, waiting for ever.

    Raises:
        Exception: the one the task ended with, if it failed before it was cancelled.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=every)
    if not task.cancelled():
        task.result()


def _settle(future: asyncio.Future[R], outcome: R | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

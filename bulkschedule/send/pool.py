"""The scheduling of a run: a queue of rows, the workers that take them, retries that wait for a
not-before time, the lockout gate, the heartbeat, and the stop.

What a worker does with a row is not decided here: the pool hands each row to the ``process``
coroutine it is given (the runner's `Sender.process`) and settles through the `Ledger` only what
``process`` could not: a row the run stopped before sending, a cancelled worker, a bug.

A lockout stops every worker: the gate is closed for ``max(Retry-After, lock_seconds)`` and both
the workers (before claiming) and the client (before every HTTP call) wait on it. A stop cancels
at once every worker whose request has provably not left, and gives the others ``stop_grace``.
A journal that can no longer be written (the disk is full, …) halts the run the same way, and the
run then raises that `StateError` once every row is settled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

from bulkschedule.core.errors import ApiError, StateError
from bulkschedule.core.request import Request
from bulkschedule.send.events import Listener, LockEvent, RetryEvent, WaitEvent
from bulkschedule.send.interfaces import Gate, RunConfig
from bulkschedule.send.ledger import Ledger
from bulkschedule.send.limiter import Clock
from bulkschedule.send.messages import STOP_REQUESTED
from bulkschedule.send.state import Halt, Item, Phase, Withheld

log = logging.getLogger(__name__)

Process = Callable[[Item], Awaitable[None]]


class Pool:
    """Workers over a queue of `Item`s, until every row is settled or the run halts."""

    def __init__(
        self,
        requests: Sequence[Request],
        *,
        ledger: Ledger,
        halt: Halt,
        gate: Gate,
        clock: Clock,
        config: RunConfig,
        rng: random.Random,
        emit: Listener,
    ) -> None:
        # Each row's `Item` is made when a worker first takes it and dropped once it is settled:
        # a run holds the progress of the rows in work, not of every row until the end.
        self._fresh: Iterator[Request] = iter(requests)
        self.live: set[Item] = set()  # taken and not yet known to be settled
        self.ledger = ledger
        self.halt = halt
        self.gate = gate
        self.clock = clock
        self.config = config
        self.rng = rng
        self.emit = emit
        self.ready: asyncio.Queue[Item] = asyncio.Queue()
        self.delayed: dict[Item, asyncio.Task[None]] = {}
        self.current: dict[int, Item | None] = {}  # worker id -> the row it works on
        self._last_wait_until: float | None = None

    # -- the run ----------------------------------------------------------------------------------

    async def run(self, process: Process) -> None:
        """Work until every row is settled, or the run halts (stop signal or fatal answer).

        If the journal failed, every row is still settled (and reported), then the journal's
        `StateError` is raised: the caller must not take the outcomes for a finished run.
        """
        self.ledger.beat()
        heartbeat = asyncio.create_task(self._heartbeat())
        workers = {
            asyncio.create_task(self._worker(i, process)): i
            for i in range(max(1, self.config.workers))
        }
        watchers = [
            asyncio.create_task(self.ledger.all_done.wait()),
            asyncio.create_task(self.halt.halted.wait()),
        ]
        if self.halt.stop is not None:
            watchers.append(asyncio.create_task(self.halt.stop.wait()))
        try:
            await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
            if not self.ledger.all_done.is_set():
                self.halt(STOP_REQUESTED)  # no-op if a fatal answer halted it already
                await self._wind_down(workers)
        finally:
            tasks = [heartbeat, *watchers, *workers, *self.delayed.values()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # safety net: one Outcome for every request, always (workers are gone): rows never
            # taken, and rows taken and not settled (on the queue, or waiting to be)
            for item in [*self.live, *map(Item, self._fresh)]:
                if not item.done:
                    self.ledger.stopped_before_sending(item)
        if self.ledger.failure is not None:
            raise self.ledger.failure

    def _take(self, req: Request) -> Item:
        item = Item(req)
        self.live.add(item)
        return item

    async def _next(self) -> Item:
        """The next row to work on: rows not yet taken first, in order, then rows put back (as
        one queue of every row would give them)."""
        req = next(self._fresh, None)
        if req is not None:
            return self._take(req)
        return await self.ready.get()

    async def _worker(self, wid: int, process: Process) -> None:
        while not self.halt.stopping():
            item = await self._next()
            self.current[wid] = item
            item.phase = Phase.IDLE
            try:
                # Claim only once the gate is open, so a long lockout does not leave rows marked
                # in flight (a crash then would force a needless listing).
                await self.gate.wait(self.on_wait)
                if self.halt.stopping():
                    self.ledger.stopped_before_sending(item)
                    return
                await process(item)
            except Withheld:  # stopping: this row's request was not sent
                self.ledger.stopped_before_sending(item)
            except asyncio.CancelledError:
                self.ledger.abandon(item)
                raise
            except (StateError, sqlite3.Error) as exc:  # the journal, or the pace in its file
                self.ledger.lost_journal(item, exc)
            except Exception as exc:  # a bug or an unclassified failure: never lose the row
                log.exception("%s: unexpected error", item.req.where)
                self.ledger.unexpected(item, exc)
            finally:
                self.current[wid] = None
                if item.done:
                    self.live.discard(item)

    async def _wind_down(self, workers: Mapping[asyncio.Task[None], int]) -> None:
        """Stop taking rows; give calls in flight ``stop_grace`` seconds; settle everything else.

        Only a worker whose request may have left waits for the grace. The others are cancelled
        at once: idle, waiting on the gate before claiming, waiting inside the tracked pace (their
        request never left: released, ``pending``), or waiting to list after a lost reply or
        for a listing backoff (no listing is started after a stop: ``unknown``, the next run
        lists).
        """
        while not self.ready.empty():
            self.ledger.stopped_before_sending(self.ready.get_nowait())
        for req in self._fresh:  # never taken: settled at once, nothing to keep
            self.ledger.stopped_before_sending(Item(req))
        for item, task in list(self.delayed.items()):
            task.cancel()
            self.ledger.stopped_before_sending(item)  # a row waiting to be listed again: unknown
        self.delayed.clear()
        busy: list[asyncio.Task[None]] = []  # in worker order, so a stop settles rows in order
        for task, wid in workers.items():
            current = self.current.get(wid)
            # an update is never claimed (it may be sent twice), but its request is on the wire
            # all the same
            sending = current is not None and current.may_be_sending and (
                current.claimed or current.req.session_id is not None)
            if sending:
                busy.append(task)
            else:
                task.cancel()
        if busy:
            await self._grace(busy)
        await asyncio.gather(*workers, return_exceptions=True)

    async def _grace(self, busy: list[asyncio.Task[None]]) -> None:
        """Let ``busy`` finish within ``stop_grace``; cancel the rest (their rows: unknown)."""
        grace = asyncio.create_task(self.clock.sleep(self.config.stop_grace))
        pending = set(busy)
        while pending and not grace.done():
            _, still = await asyncio.wait({*pending, grace}, return_when=asyncio.FIRST_COMPLETED)
            pending = {t for t in still if t is not grace}
        grace.cancel()
        for task in busy:
            if task in pending:
                task.cancel()  # its row becomes unknown (the journal says so)

    async def _heartbeat(self) -> None:
        while True:
            await self.clock.sleep(self.config.heartbeat_every)
            self.ledger.beat()

    # -- putting a row back -----------------------------------------------------------------------

    def requeue(self, item: Item, delay: float) -> None:
        """Put ``item`` back on the queue after ``delay`` seconds (settled at once if halted)."""
        if self.halt.reason is not None:
            self.ledger.stopped_before_sending(item)
        elif delay <= 0:
            self.ready.put_nowait(item)
        else:
            self.delayed[item] = asyncio.create_task(self._put_later(item, delay))

    async def _put_later(self, item: Item, delay: float) -> None:
        await self.clock.sleep(delay)
        self.delayed.pop(item, None)
        self.ready.put_nowait(item)

    def retry(self, item: Item, delay: float, reason: str) -> None:
        """Try ``item`` again in ``delay`` seconds, telling the caller when and why."""
        if self.halt.reason is None:
            self.emit(RetryEvent(item.req.row, self.clock.time() + delay, reason))
        self.requeue(item, delay)

    def backoff(self, failures: int, exc: ApiError) -> float:
        """The delay before the next try after ``failures`` failed ones: exponential, capped,
        with "equal jitter" (half fixed, half random) so retries from several workers do not
        land together; never shorter than the answer's Retry-After."""
        cap = min(self.config.backoff_max, self.config.backoff_base * 2.0 ** (failures - 1))
        delay = cap / 2 + self.rng.random() * cap / 2
        if exc.retry_after:
            delay = max(delay, exc.retry_after)
        return delay

    # -- the lockout gate -------------------------------------------------------------------------

    def close_gate(self, exc: ApiError) -> float:
        """Lock every worker out for ``max(Retry-After, lock_seconds)``; return when it reopens."""
        before = self.gate.until()
        reopen = self.gate.close(
            max(exc.retry_after or 0.0, self.config.lock_seconds), reason=exc.message
        )
        if before is None or reopen > before:
            self.emit(LockEvent(reopen, exc.message))
        return reopen

    def on_wait(self, remaining: float) -> None:
        """The workers wait for the gate: tell the caller once per reopening time (every worker
        waits, and the gate re-reports; half a second apart is the same reopening)."""
        until = self.clock.time() + remaining
        if self._last_wait_until is None or abs(until - self._last_wait_until) > 0.5:
            self._last_wait_until = until
            self.emit(WaitEvent(remaining))

"""A discrete-event clock for asyncio tests: a 5-minute lockout runs in milliseconds.

``FakeClock.sleep`` parks the caller until the driver advances time to its wake-up; ``run`` drives a
coroutine to completion, advancing time to the next sleeper whenever every task is idle. Nothing
ever waits for real time, so assertions about pacing are exact.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: A task that never blocks (a busy loop) fails the test instead of hanging it.
_MAX_TURNS = 100_000
_FALLBACK_TURNS = 200


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (for synchronous code under test)."""
        self.now += seconds

    async def _settle(self) -> None:
        """Return once every other task is blocked (on the fake clock, an event, a queue, I/O).

        Each ``sleep(0)`` lets every callback already scheduled run once. When this task is
        resumed with nothing else scheduled behind it, no task can make progress without an
        outside event: that is the moment to advance fake time. asyncio has no public "idle"
        query, so this reads the loop's ready queue (CPython's ``BaseEventLoop._ready``); on a
        loop without one it falls back to a generous fixed number of turns.
        """
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        if ready is None:  # pragma: no cover - not CPython's event loop
            for _ in range(_FALLBACK_TURNS):
                await asyncio.sleep(0)
            return
        for _ in range(_MAX_TURNS):
            await asyncio.sleep(0)
            if not ready:
                return
        raise RuntimeError(f"tasks kept running for {_MAX_TURNS} turns without blocking")

    async def run(self, aw: Awaitable[T], *, max_time: float = 10**7) -> T:
        """Run ``aw``, jumping time to the next sleeper whenever all tasks are idle."""
        task = asyncio.ensure_future(aw)
        limit = self.now + max_time
        while True:
            await self._settle()
            if task.done():
                return task.result()
            # drop sleepers whose waiter was cancelled
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                # nothing sleeping on the fake clock: let real I/O (threads, sockets) make progress
                await asyncio.sleep(0.001)
                continue
            wake, _, fut = heapq.heappop(self._sleepers)
            if wake > limit:
                task.cancel()
                raise TimeoutError(f"fake time passed {max_time}s without finishing")
            self.now = max(self.now, wake)
            fut.set_result(None)


class FakeGate:
    """The lockout gate on the fake clock (the real LockGate is tested with the limiter)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._until: float | None = None

    def close(self, seconds: float, reason: str = "") -> float:
        self._until = max(self._until or 0.0, self.clock.time() + seconds)
        return self._until

    def until(self) -> float | None:
        if self._until is not None and self._until > self.clock.time():
            return self._until
        return None

    async def wait(self, on_wait: Callable[[float], None] | None = None) -> float:
        waited = 0.0
        while (until := self.until()) is not None:
            remaining = until - self.clock.time()
            if on_wait is not None:
                on_wait(remaining)
            await self.clock.sleep(remaining)
            waited += remaining
        return waited

"""The pacing guarantee, proved on a fake clock: exact times, thousands of calls, no real waiting.

Every assertion about pacing is made on the *recorded* start times with ``max_in_any_window``,
the same comparison the limiter promises, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import pathlib
import random
import sqlite3
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import pytest
from fakeclock import FakeClock  # tests/ is on sys.path (no __init__.py): works with plain pytest

from bulkschedule.send.limiter import (
    LockGate,
    SystemClock,
    WindowLimiter,
    make_pace,
    max_in_any_window,
)

# Start times near 1.8e9 s carry float steps of 2.4e-7 s, so a *difference* of two of them is only
# that exact; window membership needs no tolerance (limiter and max_in_any_window compare alike).
EPS = 1e-6


class LateClock(FakeClock):
    """A fake clock whose sleeps wake late by a random amount, like a busy event loop."""

    def __init__(self, max_late: float, seed: int = 7) -> None:
        super().__init__()
        self.max_late = max_late
        self._rng = random.Random(seed)

    async def sleep(self, seconds: float) -> None:
        await super().sleep(max(seconds, 0.0) + self._rng.uniform(0.0, self.max_late))


async def drive(
    clock: FakeClock,
    limiters: list[WindowLimiter],
    total: int,
    workers: int,
    duration: Callable[[], float],
) -> list[float]:
    """``workers`` workers per limiter take ``total`` slots in all; a call lasts ``duration()``."""
    times: list[float] = []
    left = total

    async def worker(limiter: WindowLimiter) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            times.append(await limiter.acquire())
            await clock.sleep(duration())  # the call itself, longer than the spacing

    await asyncio.gather(*(worker(lim) for lim in limiters for _ in range(workers)))
    return times


def throughput_ratio(times: list[float], max_calls: int, period: float) -> float:
    """Sustained calls per second over the whole run, as a fraction of max_calls / period."""
    ordered = sorted(times)
    rate = (len(ordered) - 1) / (ordered[-1] - ordered[0])
    return rate / (max_calls / period)


# ------------------------------------------------------------------------------------------------
# the pure helper


def test_max_in_any_window_is_half_open() -> None:
    assert max_in_any_window([], 1.0) == 0
    assert max_in_any_window([0.0, 1.0, 2.0], 2.0) == 2  # [0, 2) holds 0 and 1, not 2
    assert max_in_any_window([2.0, 0.0, 1.0], 2.0 + 1e-6) == 3  # unsorted input
    assert max_in_any_window([5.0, 5.0, 5.0, 9.0], 1.0) == 3


# ------------------------------------------------------------------------------------------------
# the guarantee and the throughput, over thousands of calls


@pytest.mark.parametrize(
    ("max_calls", "period", "total"),
    [(30, 60.0, 3000), (10, 2.0, 3000)],
)
async def test_guarantee_and_throughput_with_slow_calls(
    max_calls: int, period: float, total: int
) -> None:
    clock = FakeClock()
    limiter = WindowLimiter(max_calls, period, clock=clock)
    spacing = period / max_calls
    rng = random.Random(1)
    # every call takes 1.5x to 5x the average spacing, so workers overlap
    times = await clock.run(
        drive(clock, [limiter], total, 8, lambda: rng.uniform(1.5, 5) * spacing)
    )

    assert len(times) == total
    assert max_in_any_window(times, limiter.window) <= max_calls
    assert max_in_any_window(times, period) <= max_calls
    ratio = throughput_ratio(times, max_calls, period)
    assert 0.95 <= ratio <= 1.0, ratio


def test_window_and_gap_derive_from_margin_and_smoothing() -> None:
    limiter = WindowLimiter(30, 60, clock=FakeClock())
    assert limiter.window == pytest.approx(61.8)
    assert limiter.min_gap == pytest.approx(0.5 * 61.8 / 30)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_calls": 0, "period": 60},
        {"max_calls": 30, "period": 0},
        {"max_calls": 30, "period": 60, "margin": -0.1},
        {"max_calls": 30, "period": 60, "smoothing": 1.5},
    ],
)
def test_rejects_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WindowLimiter(clock=FakeClock(), **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# smoothing: no burst


async def test_smoothing_keeps_a_minimum_gap_and_the_first_minute_holds_n() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(30, 60, clock=clock)
    start = clock.time()
    times = await clock.run(drive(clock, [limiter], 200, 8, lambda: 0.0))

    gaps = [b - a for a, b in itertools.pairwise(sorted(times))]
    assert min(gaps) >= limiter.min_gap - EPS
    first_minute = [t for t in times if t < start + 60]
    assert len(first_minute) == 30  # AsyncLimiter(30, 60) would let 59 through here


async def test_without_smoothing_a_burst_is_allowed_but_the_window_still_holds() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(30, 60, clock=clock, smoothing=0)
    times = await clock.run(drive(clock, [limiter], 90, 40, lambda: 0.0))

    assert times[:30] == [times[0]] * 30  # one instant
    assert max_in_any_window(times, limiter.window) == 30
    assert times[0] + limiter.window <= min(times[30:])


async def test_recent_counts_the_current_window() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(5, 10, clock=clock, margin=0)
    assert limiter.recent() == 0
    await clock.run(drive(clock, [limiter], 5, 1, lambda: 0.0))
    assert limiter.recent() == 5
    clock.advance(10)
    assert limiter.recent() == 0


# ------------------------------------------------------------------------------------------------
# late wake-ups


@pytest.mark.parametrize(
    ("max_calls", "period", "max_late", "min_ratio"),
    [
        (30, 60.0, 0.05, 0.95),  # a loaded event loop: up to 50 ms late on 2 s spacing
        (10, 2.0, 0.06, 0.0),  # up to 30% of the spacing late: only the guarantee is asserted
    ],
)
async def test_late_wakeups_never_break_the_guarantee(
    max_calls: int, period: float, max_late: float, min_ratio: float
) -> None:
    clock = LateClock(max_late)
    limiter = WindowLimiter(max_calls, period, clock=clock)
    rng = random.Random(2)
    spacing = period / max_calls
    times = await clock.run(drive(clock, [limiter], 2000, 8, lambda: rng.uniform(1.5, 5) * spacing))

    assert max_in_any_window(times, limiter.window) <= max_calls
    ordered = sorted(times)
    assert min(b - a for a, b in itertools.pairwise(ordered)) >= limiter.min_gap - EPS
    assert throughput_ratio(times, max_calls, period) >= min_ratio


# ------------------------------------------------------------------------------------------------
# one budget across instances (processes) sharing the state file


async def test_two_instances_on_one_file_share_one_budget(tmp_state: pathlib.Path) -> None:
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    a = WindowLimiter(30, 60, clock=clock, shared=db, scope="https://people.zoho.com")
    b = WindowLimiter(30, 60, clock=clock, shared=db, scope="https://people.zoho.com")
    rng = random.Random(3)
    times = await clock.run(drive(clock, [a, b], 600, 4, lambda: rng.uniform(3, 10)))

    ordered = sorted(times)
    assert max_in_any_window(ordered, a.window) <= 30
    assert ordered[0] + a.window <= ordered[30]  # the 31st call of both runs waited a window
    assert throughput_ratio(times, 30, 60) >= 0.95


async def test_a_run_started_right_after_another_counts_its_calls(tmp_state: pathlib.Path) -> None:
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    first = WindowLimiter(30, 60, clock=clock, shared=db, scope="api")
    earlier = await clock.run(drive(clock, [first], 30, 1, lambda: 0.0))
    first.detach()

    second = WindowLimiter(30, 60, clock=clock, shared=db, scope="api")
    assert second.recent() == 30
    started = await clock.run(second.acquire())
    assert earlier[0] + second.window <= started
    assert max_in_any_window([*earlier, started], second.window) <= 30


async def test_different_scopes_do_not_share_a_budget(tmp_state: pathlib.Path) -> None:
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    real = WindowLimiter(30, 60, clock=clock, shared=db, scope="https://people.zoho.eu")
    sandbox = WindowLimiter(30, 60, clock=clock, shared=db, scope="http://127.0.0.1:8765")
    await clock.run(drive(clock, [real], 30, 1, lambda: 0.0))
    assert real.recent() == 30
    assert sandbox.recent() == 0

    before = clock.time()
    await clock.run(sandbox.acquire())
    assert clock.time() == before  # no wait for the other scope's full window


async def test_shared_log_is_pruned(tmp_state: pathlib.Path) -> None:
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    limiter = WindowLimiter(10, 2, clock=clock, shared=db, scope="api")
    await clock.run(drive(clock, [limiter], 200, 4, lambda: 0.3))
    with sqlite3.connect(db) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM pace_calls").fetchone()
    assert rows <= 3 * 10  # two windows of at most 10, plus the call just recorded


def _process_calls(db: str, calls: int, barrier: Barrier, out: Queue[list[float]]) -> None:
    """One "run": its own limiter on the shared file, real clock, calls as fast as allowed."""
    limiter = WindowLimiter(10, 0.5, clock=SystemClock(), shared=pathlib.Path(db), scope="mp")
    barrier.wait()

    async def go() -> list[float]:
        return [await limiter.acquire() for _ in range(calls)]

    out.put(asyncio.run(go()))


@pytest.mark.slow
def test_two_real_processes_share_one_budget(tmp_state: pathlib.Path) -> None:
    db = tmp_state / "journal.sqlite3"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    out: Queue[list[float]] = ctx.Queue()
    procs = [ctx.Process(target=_process_calls, args=(str(db), 15, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    times = [t for _ in procs for t in out.get(timeout=20)]
    for p in procs:
        p.join(timeout=20)
        assert p.exitcode == 0

    # acquire() returns exactly what it recorded; the log still holds the last two windows of it
    with sqlite3.connect(db) as conn:
        logged = [t for (t,) in conn.execute("SELECT t FROM pace_calls WHERE scope = 'mp'")]
    assert len(times) == 30
    assert set(logged) <= set(times)
    assert len(logged) >= 10
    assert max_in_any_window(times, 0.5 * 1.03) <= 10


# ------------------------------------------------------------------------------------------------
# the lockout gate


async def test_gate_waits_the_whole_lock_in_fake_time() -> None:
    clock = FakeClock()
    gate = LockGate(clock=clock)
    assert gate.until() is None
    start = clock.time()
    assert gate.close(300, "HTTP 429") == start + 300
    assert gate.until() == start + 300
    assert gate.reason() == "HTTP 429"

    seen: list[float] = []
    real_start = time.perf_counter()
    waited = await clock.run(gate.wait(seen.append))
    assert time.perf_counter() - real_start < 2.0  # five fake minutes, no real ones
    assert waited == 300
    assert clock.time() == start + 300
    assert seen == [300]
    assert gate.until() is None
    assert gate.reason() == ""
    assert await clock.run(gate.wait()) == 0.0


def test_gate_only_closes_further() -> None:
    clock = FakeClock()
    gate = LockGate(clock=clock)
    end = gate.close(300, "first")
    assert gate.close(10, "second") == end
    assert gate.reason() == "first"
    clock.advance(100)
    assert gate.close(300, "third") == end + 100
    clock.advance(300.001)
    assert gate.until() is None


async def test_gate_extended_while_waiting() -> None:
    clock = FakeClock()
    gate = LockGate(clock=clock)
    start = clock.time()
    gate.close(300)
    seen: list[float] = []

    async def extend_later() -> None:
        await clock.sleep(100)
        gate.close(400, "extended by a call made during the lock")

    async def scenario() -> float:
        waited, _ = await asyncio.gather(gate.wait(seen.append), extend_later())
        return waited

    assert await clock.run(scenario()) == 500
    assert clock.time() == start + 500
    assert seen == [300, 200]


async def test_gate_shared_across_instances(tmp_state: pathlib.Path) -> None:
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    a = LockGate(clock=clock, shared=db, scope="api")
    b = LockGate(clock=clock, shared=db, scope="api")
    other = LockGate(clock=clock, shared=db, scope="sandbox")
    start = clock.time()
    a.close(300, "7209")
    assert b.until() == start + 300
    assert b.reason() == "7209"
    assert other.until() is None
    assert b.close(5) == start + 300  # the shared end is kept

    # a run started during the lock (a new instance) waits for it too
    late = LockGate(clock=clock, shared=db, scope="api")
    assert await clock.run(late.wait()) == 300
    assert a.until() is None


# ------------------------------------------------------------------------------------------------
# pace = gate, then limiter


async def test_pace_waits_for_the_gate_then_the_limiter() -> None:
    clock = FakeClock()
    gate = LockGate(clock=clock)
    limiter = WindowLimiter(30, 60, clock=clock)
    pace = make_pace(gate, limiter)
    start = clock.time()
    gate.close(300, "429")

    times = await clock.run(asyncio.gather(*(pace() for _ in range(40))))
    assert min(times) == start + 300
    assert max_in_any_window(times, limiter.window) <= 30
    assert start + 300 + limiter.window <= sorted(times)[30]


async def test_pace_abandons_a_slot_taken_while_the_gate_closed() -> None:
    clock = FakeClock()
    gate = LockGate(clock=clock)
    limiter = WindowLimiter(30, 60, clock=clock)
    start = clock.time()
    earlier = await clock.run(drive(clock, [limiter], 30, 1, lambda: 0.0))
    waits: list[float] = []
    pace = make_pace(gate, limiter, on_wait=waits.append)
    lock_ends: list[float] = []

    async def lockout_soon() -> None:
        await clock.sleep(10)
        lock_ends.append(gate.close(300, "lockout reported by another worker"))

    async def scenario() -> float:
        # pace() waits for a slot (the window is full), the lock starts meanwhile
        started, _ = await asyncio.gather(pace(), lockout_soon())
        return started

    started = await clock.run(scenario())
    assert start + limiter.window < lock_ends[0]  # the slot came free during the lock...
    assert started == lock_ends[0]  # ...but was not used: a fresh one was taken at the lock's end
    assert waits == [pytest.approx(300 - (start + limiter.window - (lock_ends[0] - 300)))]
    assert limiter.recent() == 1  # the abandoned slot aged out during the 300 s lock
    assert max_in_any_window([*earlier, started], limiter.window) <= 30

"""The pacing guarantee, proved on a fake clock: exact times, thousands of calls, no real waiting.

The limiter promises that a server counting each call at *any* moment between its start and its
reply never sees more than N calls in one window. Every assertion about that is made with
``max_reachable_in_any_window`` over the slots' (start, reply) spans: the worst the server could
see over every choice of arrival moments, so nothing depends on one lucky draw or on the machine.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import pathlib
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import pytest
from fakeclock import FakeClock  # tests/ is on sys.path (no __init__.py): works with plain pytest

from bulkschedule.send.limiter import (
    DEFAULT_HOLD,
    LockGate,
    Slot,
    SystemClock,
    WindowLimiter,
    make_pace,
    max_in_any_window,
    max_reachable_in_any_window,
)

# Start times near 1.8e9 s carry float steps of 2.4e-7 s, so a *difference* of two of them is only
# that exact; window membership needs no tolerance (limiter and the checkers compare alike).
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
    limiters: Sequence[WindowLimiter],
    total: int,
    workers: int,
    latency: Callable[[], float],
    *,
    finish: Callable[[], bool] = lambda: True,
) -> list[Slot]:
    """``workers`` workers per limiter take ``total`` slots in all; each call waits ``latency()``
    for its reply and then marks its slot done, unless ``finish()`` says it never does (a call
    cancelled mid-request, or a process that died)."""
    slots: list[Slot] = []
    left = total

    async def worker(limiter: WindowLimiter) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            slot = await limiter.acquire()
            slots.append(slot)
            await clock.sleep(latency())
            if finish():
                slot.done()

    await asyncio.gather(*(worker(lim) for lim in limiters for _ in range(workers)))
    return slots


def starts(slots: Sequence[Slot]) -> list[float]:
    return [s.start for s in slots]


def spans(slots: Sequence[Slot]) -> list[tuple[float, float]]:
    """Where the server may count each call: from its start to the earlier of its reply and its
    deadline (a slot never marked done counts until the deadline)."""
    return [(s.start, s.deadline if s.replied is None else min(s.replied, s.deadline))
            for s in slots]


def throughput_ratio(times: list[float], max_calls: int, period: float) -> float:
    """Sustained calls per second over the whole run, as a fraction of max_calls / period."""
    ordered = sorted(times)
    rate = (len(ordered) - 1) / (ordered[-1] - ordered[0])
    return rate / (max_calls / period)


def ideal_ratio(limiter: WindowLimiter, mean_latency: float) -> float:
    """The sustained rate the module docstring promises, N / (W + mean latency), over N / P."""
    return limiter.period / (limiter.window + mean_latency)


# ------------------------------------------------------------------------------------------------
# the pure helpers


def test_max_in_any_window_is_half_open() -> None:
    assert max_in_any_window([], 1.0) == 0
    assert max_in_any_window([0.0, 1.0, 2.0], 2.0) == 2  # [0, 2) holds 0 and 1, not 2
    assert max_in_any_window([2.0, 0.0, 1.0], 2.0 + 1e-6) == 3  # unsorted input
    assert max_in_any_window([5.0, 5.0, 5.0, 9.0], 1.0) == 3


def test_max_reachable_in_any_window_takes_the_worst_arrivals() -> None:
    assert max_reachable_in_any_window([], 1.0) == 0
    # instantaneous calls: the same as max_in_any_window
    assert max_reachable_in_any_window([(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)], 2.0) == 2
    # a call in [0, 1.5] can arrive at 1.5, in one window with a call at 3.4: 2, not 1
    assert max_in_any_window([0.0, 3.4], 2.0) == 1
    assert max_reachable_in_any_window([(0.0, 1.5), (3.4, 3.4)], 2.0) == 2
    # ... but not with one at 3.5 (half-open: [1.5, 3.5) does not hold 3.5)
    assert max_reachable_in_any_window([(0.0, 1.5), (3.5, 3.5)], 2.0) == 1
    # long calls all overlap one window, wherever they started
    assert max_reachable_in_any_window([(0.0, 10.0), (5.0, 9.5), (9.0, 30.0)], 1.0) == 3
    assert max_reachable_in_any_window([(0.0, 10.0), (5.0, 6.0), (9.0, 30.0)], 1.0) == 2
    # an end before the start (a clock stepped back) counts as the start
    assert max_reachable_in_any_window([(4.0, 3.0), (5.9, 5.9)], 2.0) == 2


@pytest.mark.parametrize("seed", range(5))
def test_max_reachable_agrees_with_brute_force(seed: int) -> None:
    """Against a direct search: a window can always be slid to start at some call's end (or a
    start, if no end lies before it), so trying those edges finds the worst one."""
    rng = random.Random(seed)
    window = rng.uniform(0.5, 3.0)
    calls = []
    for _ in range(40):
        s = rng.uniform(0, 20)
        calls.append((s, s + rng.choice([0.0, rng.uniform(0, 2), rng.uniform(0, 8)])))
    edges = [e for _, e in calls] + [s for s, _ in calls]
    brute = max(sum(1 for s, e in calls if s < x + window and e >= x) for x in edges)
    assert max_reachable_in_any_window(calls, window) == brute


# ------------------------------------------------------------------------------------------------
# the guarantee at any latency


@pytest.mark.parametrize("seed", range(40))
async def test_no_window_of_arrivals_can_hold_more_than_n(seed: int) -> None:
    """Property: random limits, margins, smoothing, worker counts and latencies from none to
    longer than the window; some calls never marked done (cancelled, or their process died);
    sometimes a loaded event loop. For *every* choice of arrival moments between start and reply
    (or deadline), no window of the period holds more than N; a server drawing them at random
    agrees."""
    rng = random.Random(seed)
    max_calls = rng.randint(1, 12)
    period = rng.choice([1.0, 2.0, 4.0, 60.0])
    margin = rng.choice([0.0, 0.0, 0.03, 0.1])
    smoothing = rng.choice([0.0, 0.5, 1.0])
    hold = rng.uniform(0.5, 3.0) * period
    low = rng.uniform(0.0, 0.3) * period
    high = min(hold, low + rng.choice([0.05, 0.15, 0.5, 1.5]) * period)
    lost = rng.choice([0.0, 0.0, 0.05])
    clock = LateClock(rng.uniform(0, 0.05) * period, seed) if seed % 4 == 0 else FakeClock()
    limiter = WindowLimiter(max_calls, period, clock=clock, margin=margin, smoothing=smoothing,
                            hold=hold)
    slots = await clock.run(drive(clock, [limiter], 150, rng.randint(1, 3 * max_calls),
                                  lambda: rng.uniform(low, high),
                                  finish=lambda: rng.random() >= lost))

    assert len(slots) == 150
    calls = spans(slots)
    assert max_reachable_in_any_window(calls, period) <= max_calls
    assert max_reachable_in_any_window(calls, limiter.window) <= max_calls
    server = [rng.uniform(s, e) for s, e in calls]  # one server's actual arrival moments
    assert max_in_any_window(server, period) <= max_calls


async def test_counting_a_call_at_its_start_alone_breaks_the_limit() -> None:
    """The failure this limiter fixes, seen by the same checker: the old log kept each call as
    its start alone (here: the slot is marked done at once, before the call), and the issue's
    stand-in (10 per 4 s, 0-600 ms before the server counts) gets more than 10 in one window."""
    clock = FakeClock()
    limiter = WindowLimiter(10, 4.0, clock=clock)
    rng = random.Random(15)
    real: list[tuple[float, float]] = []

    async def worker() -> None:
        for _ in range(20):
            slot = await limiter.acquire()
            slot.done()  # the log sees a call of no duration
            latency = rng.uniform(0.0, 0.6)
            await clock.sleep(latency)
            real.append((slot.start, slot.start + latency))

    await clock.run(asyncio.gather(*(worker() for _ in range(8))))
    assert max_reachable_in_any_window(real, 4.0) > 10


@pytest.mark.parametrize(
    ("max_calls", "period", "low", "high"),
    [(30, 60.0, 0.05, 0.6), (10, 2.0, 0.0, 0.3), (10, 4.0, 0.0, 0.6)],
)
async def test_guarantee_and_throughput_with_latency(
    max_calls: int, period: float, low: float, high: float
) -> None:
    """The cost is the mean latency, not its spread: the sustained rate is N / (W + mean)."""
    clock = FakeClock()
    limiter = WindowLimiter(max_calls, period, clock=clock)
    rng = random.Random(1)
    slots = await clock.run(drive(clock, [limiter], 3000, 8, lambda: rng.uniform(low, high)))

    assert len(slots) == 3000
    assert max_reachable_in_any_window(spans(slots), limiter.window) <= max_calls
    assert max_in_any_window(starts(slots), limiter.window) <= max_calls
    ratio = throughput_ratio(starts(slots), max_calls, period)
    ideal = ideal_ratio(limiter, (low + high) / 2)
    assert ideal * 0.98 <= ratio <= ideal * 1.02, (ratio, ideal)


async def test_the_limiter_waits_no_longer_than_the_rule_requires() -> None:
    """Exactness: with margin 0 the next call starts the instant the earliest reply is one period
    old, not later; any earlier, the server could count it in one window with all three."""
    clock = FakeClock()
    limiter = WindowLimiter(3, 10.0, clock=clock, margin=0, smoothing=0)
    t0 = clock.time()

    async def reply(slot: Slot, after: float) -> None:
        await clock.sleep(after)
        slot.done()

    async def scenario() -> Slot:
        a, b, c = [await limiter.acquire() for _ in range(3)]
        fourth, *_ = await asyncio.gather(
            limiter.acquire(), reply(a, 1.0), reply(b, 2.0), reply(c, 5.0)
        )
        return fourth

    fourth = await clock.run(scenario())
    assert fourth.start == t0 + 1.0 + 10.0
    earlier = [(t0, t0 + 1.0), (t0, t0 + 2.0), (t0, t0 + 5.0), (t0 + 10.99, t0 + 10.99)]
    assert max_reachable_in_any_window(earlier, 10.0) == 4


async def test_a_call_in_flight_counts_until_its_reply() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(1, 10.0, clock=clock, margin=0)
    t0 = clock.time()
    first = await clock.run(limiter.acquire())
    assert limiter.in_flight() == 1

    async def reply_later() -> None:
        await clock.sleep(25.0)  # a slow reply, far longer than the window
        first.done()

    async def scenario() -> Slot:
        second, _ = await asyncio.gather(limiter.acquire(), reply_later())
        return second

    second = await clock.run(scenario())
    assert first.replied == t0 + 25.0
    assert second.start == t0 + 25.0 + 10.0
    assert limiter.in_flight() == 1  # the second


async def test_a_slot_never_marked_done_counts_until_its_deadline() -> None:
    """A call cancelled mid-request (or a dead process) blocks its place for ``hold``, not for
    ever."""
    clock = FakeClock()
    limiter = WindowLimiter(1, 10.0, clock=clock, margin=0, hold=45.0)
    t0 = clock.time()
    first = await clock.run(limiter.acquire())
    assert first.deadline == t0 + 45.0
    second = await clock.run(limiter.acquire())
    assert second.start == t0 + 45.0 + 10.0


def test_window_and_gap_derive_from_margin_and_smoothing() -> None:
    limiter = WindowLimiter(30, 60, clock=FakeClock())
    assert limiter.window == pytest.approx(61.8)
    assert limiter.min_gap == pytest.approx(0.5 * 61.8 / 30)
    assert limiter.hold == DEFAULT_HOLD


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_calls": 0, "period": 60},
        {"max_calls": 30, "period": 0},
        {"max_calls": 30, "period": 60, "margin": -0.1},
        {"max_calls": 30, "period": 60, "smoothing": 1.5},
        {"max_calls": 30, "period": 60, "hold": 0},
    ],
)
def test_rejects_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WindowLimiter(clock=FakeClock(), **kwargs)  # type: ignore[arg-type]


async def test_done_is_idempotent_and_repr_shows_live_state() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(5, 10, clock=clock, scope="api")
    slot = await clock.run(limiter.acquire())
    assert "in flight" in repr(slot)
    assert "counting 1/5" in repr(limiter) and "in flight here 1" in repr(limiter)
    clock.advance(0.25)
    slot.done()
    replied = slot.replied
    clock.advance(1)
    slot.done()
    assert slot.replied == replied == slot.start + 0.25
    assert "replied +0.250s" in repr(slot)
    assert "counting 1/5" in repr(limiter) and "in flight here 0" in repr(limiter)
    assert "granted 1" in repr(limiter) and "scope='api'" in repr(limiter)


# ------------------------------------------------------------------------------------------------
# smoothing: no burst


async def test_smoothing_keeps_a_minimum_gap_and_the_first_minute_holds_n() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(30, 60, clock=clock)
    start = clock.time()
    times = starts(await clock.run(drive(clock, [limiter], 200, 8, lambda: 0.0)))

    gaps = [b - a for a, b in itertools.pairwise(sorted(times))]
    assert min(gaps) >= limiter.min_gap - EPS
    first_minute = [t for t in times if t < start + 60]
    assert len(first_minute) == 30  # AsyncLimiter(30, 60) would let 59 through here


async def test_without_smoothing_a_burst_is_allowed_but_the_window_still_holds() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(30, 60, clock=clock, smoothing=0)
    times = starts(await clock.run(drive(clock, [limiter], 90, 40, lambda: 0.0)))

    assert times[:30] == [times[0]] * 30  # one instant
    assert max_in_any_window(times, limiter.window) == 30
    assert times[0] + limiter.window <= min(times[30:])


async def test_recent_counts_the_current_window_and_calls_in_flight() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(5, 10, clock=clock, margin=0)
    assert limiter.recent() == 0
    await clock.run(drive(clock, [limiter], 5, 1, lambda: 0.0))
    assert limiter.recent() == 5
    clock.advance(10)
    assert limiter.recent() == 0
    slot = await clock.run(limiter.acquire())
    clock.advance(100)
    assert limiter.recent() == 1  # still in flight (hold: 120 s)
    slot.done()
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
    slots = await clock.run(drive(clock, [limiter], 2000, 8, lambda: rng.uniform(0.0, 0.01)))

    assert max_reachable_in_any_window(spans(slots), limiter.window) <= max_calls
    ordered = sorted(starts(slots))
    assert min(b - a for a, b in itertools.pairwise(ordered)) >= limiter.min_gap - EPS
    assert throughput_ratio(ordered, max_calls, period) >= min_ratio


# ------------------------------------------------------------------------------------------------
# one budget across instances (processes) sharing the state file


async def test_two_instances_on_one_file_share_one_budget(tmp_state: pathlib.Path) -> None:
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    a = WindowLimiter(30, 60, clock=clock, shared=db, scope="https://people.zoho.com")
    b = WindowLimiter(30, 60, clock=clock, shared=db, scope="https://people.zoho.com")
    rng = random.Random(3)
    slots = await clock.run(drive(clock, [a, b], 600, 4, lambda: rng.uniform(0.1, 3.0)))

    ordered = sorted(starts(slots))
    assert max_reachable_in_any_window(spans(slots), a.window) <= 30
    assert ordered[0] + a.window <= ordered[30]  # the 31st call of both runs waited a window
    assert throughput_ratio(ordered, 30, 60) >= 0.98 * ideal_ratio(a, 1.55)


@pytest.mark.parametrize("seed", range(4))
async def test_shared_log_holds_the_guarantee_at_any_latency(
    tmp_state: pathlib.Path, seed: int
) -> None:
    """The property test's claim through the SQLite log: three instances (processes), latency
    up to half the window, some calls never marked done."""
    rng = random.Random(100 + seed)
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    limiters = [WindowLimiter(5, 2.0, clock=clock, shared=db, scope="api", hold=3.0)
                for _ in range(3)]
    slots = await clock.run(drive(clock, limiters, 120, 2, lambda: rng.uniform(0.0, 1.0),
                                  finish=lambda: rng.random() > 0.05))
    assert max_reachable_in_any_window(spans(slots), 2.0) <= 5


@pytest.mark.parametrize("seed", range(3))
async def test_the_shared_log_decides_exactly_as_the_memory_log(
    tmp_state: pathlib.Path, seed: int
) -> None:
    """The SQLite log tallies the window inside the database (and prunes only now and then);
    the in-memory log in Python. Driven the same way on two fake clocks (same latencies, same
    calls never marked done), both grant every slot at the same instant: the same rule."""
    def run(shared: pathlib.Path | None) -> list[tuple[float, float | None]]:
        rng = random.Random(300 + seed)
        clock = FakeClock()
        limiter = WindowLimiter(4, 1.0, clock=clock, shared=shared, scope="api", hold=2.5)
        slots = asyncio.run(clock.run(drive(clock, [limiter], 150, 3,
                                            lambda: rng.choice([0.0, 0.1, rng.uniform(0, 0.9)]),
                                            finish=lambda: rng.random() > 0.1)))
        return [(s.start, s.replied) for s in slots]

    in_memory = await asyncio.to_thread(run, None)
    shared = await asyncio.to_thread(run, tmp_state / "journal.sqlite3")
    assert shared == in_memory
    assert max_reachable_in_any_window(
        [(s, s + 2.5 if r is None else r) for s, r in shared], 1.0) <= 4


async def test_a_run_started_right_after_another_counts_its_calls(tmp_state: pathlib.Path) -> None:
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    first = WindowLimiter(30, 60, clock=clock, shared=db, scope="api")
    earlier = await clock.run(drive(clock, [first], 30, 1, lambda: 0.0))
    first.detach()

    second = WindowLimiter(30, 60, clock=clock, shared=db, scope="api")
    assert second.recent() == 30
    started = (await clock.run(second.acquire())).start
    assert earlier[0].start + second.window <= started
    assert max_in_any_window([*starts(earlier), started], second.window) <= 30


async def test_a_call_in_flight_in_another_process_counts_until_its_reply(
    tmp_state: pathlib.Path,
) -> None:
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    a = WindowLimiter(1, 10, clock=clock, shared=db, scope="api", margin=0)
    b = WindowLimiter(1, 10, clock=clock, shared=db, scope="api", margin=0)
    t0 = clock.time()
    slot = await clock.run(a.acquire())

    async def reply_later() -> None:
        await clock.sleep(30)
        slot.done()

    async def scenario() -> Slot:
        other, _ = await asyncio.gather(b.acquire(), reply_later())
        return other

    other = await clock.run(scenario())
    assert other.start == t0 + 30 + 10
    assert "counting 1/1" in repr(b)


async def test_a_process_that_died_mid_call_blocks_its_place_until_the_hold(
    tmp_state: pathlib.Path,
) -> None:
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    dead = WindowLimiter(1, 10, clock=clock, shared=db, scope="api", margin=0, hold=70)
    t0 = clock.time()
    slot = await clock.run(dead.acquire())
    dead.detach()  # the process is gone; its reply is never recorded
    slot.done()  # (a late done on a closed log neither raises nor records)
    assert "closed" in repr(dead)

    survivor = WindowLimiter(1, 10, clock=clock, shared=db, scope="api", margin=0, hold=5)
    assert survivor.recent() == 1
    started = (await clock.run(survivor.acquire())).start
    assert started == t0 + 70 + 10  # the dead call's own hold, not the survivor's


async def test_a_log_written_by_an_older_version_is_upgraded_and_counted(
    tmp_state: pathlib.Path,
) -> None:
    """An existing ``pace_calls`` table without reply times gets its columns; its rows count as
    starts, as the version that wrote them counted them."""
    clock = FakeClock()
    db = tmp_state / "journal.sqlite3"
    t0 = clock.time()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE pace_calls (scope TEXT NOT NULL, t REAL NOT NULL)")
        conn.executemany("INSERT INTO pace_calls VALUES ('api', ?)", [(t0 - 5,), (t0 - 1,)])
    limiter = WindowLimiter(2, 10, clock=clock, shared=db, scope="api", margin=0, smoothing=0)
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(pace_calls)")}
    assert {"replied", "deadline"} <= columns
    assert limiter.recent() == 2
    started = (await clock.run(limiter.acquire())).start
    assert started == t0 - 5 + 10


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
        times = []
        for _ in range(calls):
            slot = await limiter.acquire()
            slot.done()
            times.append(slot.start)
        return times

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
        replied = conn.execute(
            "SELECT count(*) FROM pace_calls WHERE scope = 'mp' AND replied IS NULL"
        ).fetchone()[0]
    assert len(times) == 30
    assert set(logged) <= set(times)
    assert len(logged) >= 10
    assert replied == 0  # every done() reached the shared log
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

    times = starts(await clock.run(asyncio.gather(*(pace() for _ in range(40)))))
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

    async def scenario() -> Slot:
        # pace() waits for a slot (the window is full), the lock starts meanwhile
        started, _ = await asyncio.gather(pace(), lockout_soon())
        return started

    slot = await clock.run(scenario())
    assert start + limiter.window < lock_ends[0]  # the slot came free during the lock...
    assert slot.start == lock_ends[0]  # ...but was not used: a fresh one was taken at the end
    assert waits == [pytest.approx(300 - (start + limiter.window - (lock_ends[0] - 300)))]
    assert limiter.recent() == 1  # the abandoned slot (done at once) aged out during the lock
    assert limiter.in_flight() == 1  # only the slot pace() returned is open
    assert max_in_any_window([*starts(earlier), slot.start], limiter.window) <= 30

"""Pacing: a sliding-window limiter with an exact guarantee, and the lockout gate.

Zoho People allows 30 calls a minute per endpoint family and locks the account out for 5 minutes
when that is exceeded, so a single extra call costs far more than any amount of caution. This
module therefore trades about 3% of throughput for a guarantee that holds exactly, also across
processes that share one state folder:

* :class:`WindowLimiter` records the start of every call in a sliding log and admits a call only
  when the log proves the window limit still holds.
* :class:`LockGate` is the pause every worker obeys once the server has locked us out.
* :func:`make_pace` combines both into the one coroutine the HTTP client awaits before each request.

We do not build on ``aiolimiter``: ``AsyncLimiter(30, 60)`` is a leaky bucket that admits 59 calls
in its first minute, and even ``AsyncLimiter(1, 2)`` cannot share a budget with another process or
take an injected clock.
"""

from __future__ import annotations

import asyncio
import heapq
import pathlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from typing import Protocol

__all__ = [
    "Clock",
    "LockGate",
    "SystemClock",
    "WindowLimiter",
    "make_pace",
    "max_in_any_window",
]


class Clock(Protocol):
    """Wall-clock seconds (shared across processes) and a sleep that tests can fake."""

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.time()`` because other processes must read the same timeline."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def max_in_any_window(times: Iterable[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open interval ``[a, a + window)``.

    A sliding two-pointer over the sorted times, O(n log n). It uses the same comparison as
    :class:`WindowLimiter` (``s + window > t`` means ``s`` and ``t`` share a window), so a test
    that measures the limiter's output with it checks exactly the property the limiter promises.
    """
    ordered: Sequence[float] = sorted(times)
    best = 0
    left = 0
    for right, t in enumerate(ordered):
        while ordered[left] + window <= t:
            left += 1
        best = max(best, right - left + 1)
    return best


# --------------------------------------------------------------------------------------------------
# shared state (SQLite in the state folder)


def _connect(path: pathlib.Path, ddl: Sequence[str]) -> sqlite3.Connection:
    """Open ``path`` for short, serialised transactions and create our tables if missing.

    ``isolation_level=None`` leaves transaction control to us, so a check-and-record is one explicit
    ``BEGIN IMMEDIATE`` (a write lock taken *before* reading): two processes can then never both
    read the same log and both decide they may call. The busy timeout makes a second process wait
    for the lock instead of failing; our transactions hold it for well under a millisecond.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    # WAL lets other modules read the journal while we write. It is persistent and optional: if
    # another connection holds the file right now, stay in the default mode, which is just as
    # correct with BEGIN IMMEDIATE.
    with suppress(sqlite3.OperationalError):
        conn.execute("PRAGMA journal_mode=WAL")
    # Per connection: our commits skip the fsync (safe in WAL; a power cut can only lose the last
    # pace entries, which a lockout costs far less than blocking the event loop on every call).
    conn.execute("PRAGMA synchronous=NORMAL")
    with _immediate(conn):
        for statement in ddl:
            conn.execute(statement)
    return conn


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken up front so that what we read stays true until we commit."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_CALLS_DDL = (
    "CREATE TABLE IF NOT EXISTS pace_calls (scope TEXT NOT NULL, t REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS pace_calls_scope_t ON pace_calls (scope, t)",
)
_LOCK_DDL = (
    "CREATE TABLE IF NOT EXISTS pace_lock "
    "(scope TEXT PRIMARY KEY, until REAL NOT NULL, reason TEXT NOT NULL DEFAULT '')",
)

# Decides from the log entries whether a call may start now: None = yes, else when to look again.
_Decide = Callable[[list[float]], float | None]


class _MemoryCallLog:
    """The call log of a limiter that shares its budget with nobody."""

    def __init__(self) -> None:
        self._times: list[float] = []

    def attempt(self, now: float, horizon: float, decide: _Decide) -> float | None:
        self._times = [t for t in self._times if t >= horizon]
        wait = decide(self._times)
        if wait is None:
            self._times.append(now)
        return wait

    def since(self, horizon: float) -> list[float]:
        return [t for t in self._times if t >= horizon]

    def detach(self) -> None:
        pass


class _SqliteCallLog:
    """The call log in the state folder, so every process using the same API shares one budget."""

    def __init__(self, path: pathlib.Path, scope: str) -> None:
        self._conn = _connect(path, _CALLS_DDL)
        self._scope = scope

    def attempt(self, now: float, horizon: float, decide: _Decide) -> float | None:
        with _immediate(self._conn) as conn:
            rows = conn.execute(
                "SELECT t FROM pace_calls WHERE scope = ? AND t >= ?", (self._scope, horizon)
            ).fetchall()
            wait = decide([r[0] for r in rows])
            if wait is None:
                conn.execute("INSERT INTO pace_calls (scope, t) VALUES (?, ?)", (self._scope, now))
            conn.execute("DELETE FROM pace_calls WHERE scope = ? AND t < ?", (self._scope, horizon))
        return wait

    def since(self, horizon: float) -> list[float]:
        rows = self._conn.execute(
            "SELECT t FROM pace_calls WHERE scope = ? AND t >= ?", (self._scope, horizon)
        ).fetchall()
        return [r[0] for r in rows]

    def detach(self) -> None:
        self._conn.close()


# --------------------------------------------------------------------------------------------------
# the limiter


class WindowLimiter:
    """At most ``max_calls`` call starts in any window, across workers and processes, with a margin.

    **Guarantee.** The recorded start times never have more than ``max_calls`` in any half-open
    interval of length ``window = period * (1 + margin)``; hence at most ``max_calls`` in any window
    of ``period`` seconds even if each call's arrival at the server is delayed by up to
    ``period * margin`` more than another's. (If every arrival lags its start by between ``D`` and
    ``D + period * margin``, the starts of the arrivals inside any server window ``[x, x + period)``
    all lie in ``[x - D - period * margin, x + period - D)``, an interval of length ``window``.)
    The check-and-record happens atomically (an ``asyncio.Lock`` in-process; an SQLite
    ``BEGIN IMMEDIATE`` transaction across processes) using the time at the moment of recording,
    never a pre-computed slot, so event-loop sleep overshoot can never make two recorded starts
    closer than allowed: a late wake-up only makes a call later, never the log denser.

    **No burst.** With ``smoothing > 0`` consecutive starts are also at least
    ``smoothing * window / max_calls`` apart. The default, half the average spacing, avoids firing
    30 calls in one instant, yet leaves slack for the log to catch up after a late wake-up, so sleep
    overshoot does not accumulate and sustained throughput stays at ``max_calls / window`` (97% of
    ``max_calls / period`` with the default margin). Full smoothing (1.0) would make every late
    wake-up permanent lost time. 0 disables smoothing (the window limit still holds).

    **Sharing.** With ``shared`` (an SQLite file in the state folder) the log lives in table
    ``pace_calls``, keyed by ``scope`` (use the API base URL, so sandbox and real runs keep separate
    budgets). Every limiter on the same file and scope, in this process or another, draws from one
    budget, and a run started right after another counts the other's recent calls. Entries older
    than two windows are pruned. All processes must read the same wall clock (one machine: SQLite on
    a network file system is not supported).
    """

    def __init__(
        self,
        max_calls: int,
        period: float,
        *,
        margin: float = 0.03,
        clock: Clock | None = None,
        shared: pathlib.Path | None = None,
        scope: str = "default",
        smoothing: float = 0.5,
    ) -> None:
        if max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        if period <= 0:
            raise ValueError("period must be positive")
        if margin < 0:
            raise ValueError("margin must not be negative")
        if not 0 <= smoothing <= 1:
            raise ValueError("smoothing must be between 0 and 1")
        self.max_calls = max_calls
        self.period = period
        self.margin = margin
        self.smoothing = smoothing
        self.window: float = period * (1 + margin)
        self.min_gap: float = smoothing * self.window / max_calls
        self.clock: Clock = clock or SystemClock()
        self.scope = scope
        self._log: _MemoryCallLog | _SqliteCallLog = (
            _SqliteCallLog(shared, scope) if shared is not None else _MemoryCallLog()
        )
        self._lock = asyncio.Lock()

    def _decide(self, now: float, entries: list[float]) -> float | None:
        """None if a call may start at ``now``, else the earliest time at which it might.

        ``s + window > now`` (not ``s > now - window``) is the exact test :func:`max_in_any_window`
        uses. Entries later than ``now`` (a wall clock stepped back, another process slightly
        ahead) count too: over-counting can only make us slower, never break the guarantee.
        """
        earliest = now
        if entries and self.min_gap > 0:
            latest = max(entries)
            if now < latest + self.min_gap:
                earliest = latest + self.min_gap
        in_window = [s for s in entries if s + self.window > now]
        if len(in_window) >= self.max_calls:
            nth = heapq.nlargest(self.max_calls, in_window)[-1]
            earliest = max(earliest, nth + self.window)
        return None if earliest <= now else earliest

    def _horizon(self, now: float) -> float:
        """Entries older than this can matter to no decision (min_gap <= window)."""
        return now - 2 * self.window

    async def acquire(self) -> float:
        """Wait for a slot; record and return the call's start time (read at recording).

        Waiters sleep until the earliest time the log allows, then re-check: another worker or
        process may have taken that slot, or the sleep may have woken late. Any number of workers
        may wait at once; each re-check is atomic, so all of them respect the guarantee.
        """
        while True:
            # The section below contains no await, so it is already atomic on the event loop; the
            # lock states that intent and keeps it true if the store ever becomes asynchronous.
            async with self._lock:
                now = self.clock.time()
                until = self._log.attempt(now, self._horizon(now), partial(self._decide, now))
            if until is None:
                return now
            await self.clock.sleep(until - now)

    def recent(self) -> int:
        """Calls started in the current window (all processes sharing the log), for progress."""
        now = self.clock.time()
        return sum(1 for s in self._log.since(self._horizon(now)) if s + self.window > now)

    def detach(self) -> None:
        """Close the shared-state connection (no-op in memory). The limiter is unusable after."""
        self._log.detach()


# --------------------------------------------------------------------------------------------------
# the lockout gate


class LockGate:
    """The pause every worker obeys after a lockout, remembered in the state folder.

    A lockout is account-wide on the server, so it must stop every worker, and a run started while
    it lasts must wait too (its first call would otherwise be refused and might extend the lock).
    With ``shared`` the lock end lives in table ``pace_lock``, keyed by ``scope`` like the
    limiter's.
    A gate only ever closes further: ``close`` keeps the later of the existing and the new end,
    because a second lockout report must never shorten a lock the server still enforces.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        shared: pathlib.Path | None = None,
        scope: str = "default",
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.scope = scope
        self._conn = _connect(shared, _LOCK_DDL) if shared is not None else None
        self._until: float | None = None
        self._reason = ""

    def close(self, seconds: float, reason: str = "") -> float:
        """Lock until ``max(existing end, now + seconds)``; return the resulting end."""
        end = self.clock.time() + seconds
        if self._conn is None:
            if self._until is None or end > self._until:
                self._until, self._reason = end, reason
            return self._until
        with _immediate(self._conn) as conn:
            conn.execute(
                "INSERT INTO pace_lock (scope, until, reason) VALUES (?, ?, ?) "
                "ON CONFLICT (scope) DO UPDATE SET "
                "reason = CASE WHEN excluded.until > until THEN excluded.reason ELSE reason END, "
                "until = max(until, excluded.until)",
                (self.scope, end, reason),
            )
            row = conn.execute(
                "SELECT until FROM pace_lock WHERE scope = ?", (self.scope,)
            ).fetchone()
        return float(row[0])

    def _read(self) -> tuple[float, str] | None:
        if self._conn is None:
            return None if self._until is None else (self._until, self._reason)
        row = self._conn.execute(
            "SELECT until, reason FROM pace_lock WHERE scope = ?", (self.scope,)
        ).fetchone()
        return None if row is None else (float(row[0]), str(row[1]))

    def until(self) -> float | None:
        """The lock end if still in the future, else None (reads shared state every time)."""
        state = self._read()
        if state is None or state[0] <= self.clock.time():
            return None
        return state[0]

    def reason(self) -> str:
        """Why the gate is closed ("" when open), for the progress display."""
        state = self._read()
        return state[1] if state is not None and state[0] > self.clock.time() else ""

    async def wait(self, on_wait: Callable[[float], None] | None = None) -> float:
        """Return once the gate is open; return the seconds waited (0.0 if it was open).

        Sleeps until the known end and then re-checks, because another worker or process may have
        extended the lock meanwhile; ``on_wait(remaining_seconds)`` is called at each start.
        """
        start = self.clock.time()
        while (end := self.until()) is not None:
            remaining = end - self.clock.time()
            if on_wait is not None:
                on_wait(remaining)
            await self.clock.sleep(remaining)
        return max(0.0, self.clock.time() - start)

    def detach(self) -> None:
        """Close the shared-state connection (no-op in memory)."""
        if self._conn is not None:
            self._conn.close()


def make_pace(
    gate: LockGate,
    limiter: WindowLimiter,
    *,
    on_wait: Callable[[float], None] | None = None,
) -> Callable[[], Awaitable[float]]:
    """The coroutine the HTTP client awaits before every API request; returns the call's start.

    Order: wait for the gate, then take a limiter slot. If the gate closed while we waited for the
    slot, that slot is abandoned and we start over, because its recorded time is then stale: a call
    sent at the end of the lock under a slot recorded before it would be invisible to the log at
    its real time, and the workers released together would burst past the limit. The abandoned
    entry stays in the log (it cannot be told apart from a real call in another process, and
    over-counting only ever makes us slower); after a lock longer than the window it has aged out.
    """

    async def pace() -> float:
        while True:
            await gate.wait(on_wait)
            start = await limiter.acquire()
            if gate.until() is None:
                return start

    return pace

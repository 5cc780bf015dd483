"""Pacing: a limiter that holds the server's window whatever the latency, and the lockout gate.

Zoho People allows 30 calls a minute and locks the account out for 5 minutes when that is exceeded,
so one extra call costs far more than any amount of caution. The server counts a call when it
*arrives*: some time after we let it go, before its reply reaches us, by a delay that varies. We
cannot see that moment, so the limiter keeps each call as the interval in which it can have been
counted, ``[start, end]``: from when the limiter let it go until its reply arrived
(:meth:`Slot.done`), and admits a new call only when no choice of arrival moments within those
intervals can put more than ``max_calls`` arrivals in one window.

* :class:`WindowLimiter` keeps that log (in memory, or shared by every process through the state
  folder's SQLite file) and hands out :class:`Slot` objects.
* :class:`LockGate` is the pause every worker obeys once the server has locked us out.
* :func:`make_pace` combines both into the one coroutine the HTTP client awaits before each
  request; the slot it returns is told when the reply came.

The guarantee
-------------
Let ``P = period``, ``N = max_calls``, ``W = P * (1 + margin)`` (the *window*). A call's ``end`` is
the earlier of ``start + hold`` and the moment :meth:`Slot.done` was called (if it ever is).

    If the server counts every call at some moment between its ``start`` and its ``end``, then for
    every such choice of moments, every interval of ``P`` seconds (half-open either way) holds at
    most ``N`` counted calls, provided the clock readings err by less than ``P * margin`` in all.

**The rule.** A call may start at ``now`` only if fewer than ``N`` logged calls have
``end > now - W``, where a call still in flight counts as ending ``min(now, start + hold)``. The
check and the record are one atomic step (an ``asyncio.Lock``; across processes one SQLite
``BEGIN IMMEDIATE`` transaction) at the time read at that step, so a late wake-up only makes a call
later, never the log denser.

**Proof.** Suppose a server window ``I`` of ``P`` seconds held ``N + 1`` arrivals, and let ``k`` be
the one of those calls admitted last, at ``t = start_k``. Two points of ``I`` are less than ``P``
apart, so each of the other ``N`` arrivals ``a_j > a_k - P >= t - P >= t - W``. Each ``j`` was in
the log when ``k`` was admitted. If its reply had come by then, it counted as ending at the
reply, which is at least ``a_j``, so ``> t - W``; if not, it counted as ending
``min(t, start_j + hold)``, and both ``t`` and ``start_j + hold >= a_j`` exceed ``t - W``. So
``N`` calls counted against ``k``: it was not admitted. Contradiction. (No ordering of starts is
used: clocks of different processes may disagree; see the margin.)

**Exact.** With ``margin = 0`` the rule refuses only what can break the limit: if ``N`` calls have
``end > now - P``, the server may count each one at a moment in ``(now - P, now]`` (a finished one
at its end, one in flight just now) and the new call at ``now``: ``N + 1`` in one window. No
client that sees only sending and reply times can admit more.

**Cost.** Each call occupies a place from its start until ``W`` after its end, so the sustained
rate is ``N / (W + mean latency)``: the limiter pays the *mean* latency, never the spread. At 30
per 60 s with 3% margin and 0.3 s mean latency that is 0.966 of the limit.

**Margin.** ``margin`` no longer has to cover latency; it covers clock error alone, the sum of:
the wall clocks of the processes that share the log disagreeing (one machine: the same clock, so
only a step of it, e.g. by NTP, between one process reading a reply time and another reading its
start); the wall clock being stepped between a call's start and a later decision; and the server's
window being longer than ``period`` by its own clock's measure (a server clock running fast, or a
window boundary rounded up). The default, 3%, is 1.8 s on Zoho's minute: far more than any of those
on a machine that keeps time.

**Outside the guarantee.** A reply that never came (a read timeout, a dropped connection, any
other failure) ends the call when the client gives up on it: the server is assumed to count a
request before that (a server that dropped the connection had read it; the read timeout is 30 s).
A call that is cancelled mid-request (a stop, Ctrl-C) is not marked done: the request may still be
on its way, so it counts until ``start + hold``. ``hold`` must be at least the longest a call can
take before the client has a reply or has given up (`bulkschedule.send.api` passes the token,
connect and read timeouts added up); it also bounds the entry a process that died mid-call leaves
in the shared log, which then stops counting ``W`` after ``start + hold``.

**No burst.** With ``smoothing > 0`` consecutive starts are also at least
``smoothing * W / N`` apart: the default, half the average spacing, stops ``N`` calls leaving in
one instant. It costs a little throughput when latency varies (two places coming free closer
together than the gap delay the second call, and with it the end of its next wait): about 0.7% at
30 per 60 s with 0.05-0.6 s latency, 1% with a spread of 15% of the window (0.4% with smoothing
0.25). 0 disables it; the guarantee does not depend on it.

We do not build on ``aiolimiter``: ``AsyncLimiter(30, 60)`` is a leaky bucket that admits 59 calls
in its first minute, counts calls when they start, cannot share a budget with another process and
cannot take an injected clock.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import logging
import pathlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Protocol

__all__ = [
    "DEFAULT_HOLD",
    "Clock",
    "LockGate",
    "Slot",
    "SystemClock",
    "WindowLimiter",
    "make_pace",
    "max_in_any_window",
    "max_reachable_in_any_window",
]

log = logging.getLogger(__name__)

#: How long a call not marked done counts as in flight, unless the limiter is told otherwise: above
#: the HTTP client's defaults added up (token 30 s + connect 10 s + read 30 s).
DEFAULT_HOLD = 120.0


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

    A sliding two-pointer over the sorted times, O(n log n): what a server that counts each call at
    a known moment sees at worst.
    """
    ordered: Sequence[float] = sorted(times)
    best = 0
    left = 0
    for right, t in enumerate(ordered):
        while ordered[left] + window <= t:
            left += 1
        best = max(best, right - left + 1)
    return best


def max_reachable_in_any_window(spans: Iterable[tuple[float, float]], window: float) -> int:
    """The most calls a server could count in one half-open interval of ``window`` seconds, over
    *every* choice of counting moments, each call ``(start, end)`` counted somewhere in
    ``[start, end]``.

    A window ``[x, x + window)`` can hold call ``i`` iff ``start_i < x + window`` and
    ``end_i >= x``, i.e. iff ``x`` lies in ``(start_i - window, end_i]``; the answer is the
    deepest overlap of those intervals, reached at some ``x = end_j``. O(n log n). This is the
    quantity the limiter's guarantee bounds, so tests and benchmarks measure exactly that.
    """
    pairs = [(s, max(s, e)) for s, e in spans]
    starts = sorted(s for s, _ in pairs)
    ends = sorted(e for _, e in pairs)
    best = 0
    for x in ends:
        # calls with start < x + window, minus those already over (end < x)
        best = max(best, bisect.bisect_left(starts, x + window) - bisect.bisect_left(ends, x))
    return best


# --------------------------------------------------------------------------------------------------
# shared state (SQLite in the state folder)


def _connect(
    path: pathlib.Path,
    ddl: Sequence[str],
    migrate: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """Open ``path`` for short, serialised transactions and create our tables if missing.

    ``isolation_level=None`` leaves transaction control to us, so a check-and-record is one explicit
    ``BEGIN IMMEDIATE`` (a write lock taken *before* reading): two processes can then never both
    read the same log and both decide they may call. The busy timeout makes a second process wait
    for the lock instead of failing; our transactions hold it for well under a millisecond.
    ``migrate`` brings a table an older version created up to date, in the same transaction.
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
        if migrate is not None:
            migrate(conn)
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


# One row per call: ``t`` its start; ``replied`` when its reply came (NULL while in flight);
# ``deadline`` the latest it can count as in flight (start + the recording limiter's hold). Rows an
# older version wrote have neither and count as a start alone, as that version counted them.
_CALLS_DDL = (
    "CREATE TABLE IF NOT EXISTS pace_calls "
    "(scope TEXT NOT NULL, t REAL NOT NULL, replied REAL, deadline REAL)",
    "CREATE INDEX IF NOT EXISTS pace_calls_scope_t ON pace_calls (scope, t)",
)
_CALLS_COLUMNS = ("replied", "deadline")


def _add_span_columns(conn: sqlite3.Connection) -> None:
    """Give a ``pace_calls`` table from before reply times were kept its two new columns."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(pace_calls)")}
    for column in _CALLS_COLUMNS:
        if column not in have:
            conn.execute(f"ALTER TABLE pace_calls ADD COLUMN {column} REAL")


_LOCK_DDL = (
    "CREATE TABLE IF NOT EXISTS pace_lock "
    "(scope TEXT PRIMARY KEY, until REAL NOT NULL, reason TEXT NOT NULL DEFAULT '')",
)

# A logged call as a decision sees it at ``now``: (start, end), where a call in flight ends
# ``min(now, deadline)``. For a finished call ``end + window`` is when it stops counting; for one
# in flight it is the earliest that can happen.
_Span = tuple[float, float]


@dataclass(frozen=True, slots=True)
class _Tally:
    """All a decision at ``now`` needs of the log, whatever its size: the latest start
    (``latest``), and when at least ``max_calls`` calls count, the end at which enough of them
    have stopped counting to leave ``max_calls - 1`` (``nth``: the ``counting - max_calls + 1``-th
    smallest end of those that count).

    Both logs compute it for the same rule (`_Rule`); the SQLite one inside the database, so a
    decision costs two indexed lookups and one pass in C over the window, not a Python list of
    every logged call (at a high rate the log holds thousands).
    """

    latest: float | None
    nth: float | None


@dataclass(frozen=True, slots=True)
class _Rule:
    """What a decision counts: a call counts at ``now`` while ``end + window > now``, and the
    ``max_calls``-th counting call holds the next one back."""

    window: float
    max_calls: int

    def tally(self, now: float, spans: Iterable[_Span]) -> _Tally:
        """The tally of ``spans`` (the in-memory log's way; the SQLite log's agrees)."""
        spans = list(spans)
        latest = max((start for start, _ in spans), default=None)
        ends = [end for _, end in spans if end + self.window > now]
        if len(ends) < self.max_calls:
            return _Tally(latest, None)
        return _Tally(latest, heapq.nsmallest(len(ends) - self.max_calls + 1, ends)[-1])

    def counting(self, now: float, spans: Iterable[_Span]) -> int:
        """How many of ``spans`` count at ``now``."""
        return sum(1 for _, end in spans if end + self.window > now)


# Decides from the tally whether a call may start now: None = yes, else when to look again.
_Decide = Callable[[_Tally], float | None]


@dataclass(slots=True)
class _Entry:
    start: float
    deadline: float
    replied: float | None = None

    def span(self, now: float) -> _Span:
        end = self.replied if self.replied is not None else min(now, self.deadline)
        return self.start, max(self.start, end)

    def bound(self) -> float:
        """No decision after ``bound() + 2 * window`` can count this entry."""
        return max(self.start, self.deadline if self.replied is None else self.replied)


class _MemoryCallLog:
    """The call log of a limiter that shares its budget with nobody."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._keys = itertools.count(1)

    def attempt(
        self, now: float, horizon: float, rule: _Rule, decide: _Decide, deadline: float
    ) -> tuple[int | None, float]:
        """Prune, decide, and if allowed record a call: ``(key, now)``, else ``(None, when to
        look again)``."""
        self._entries = {k: e for k, e in self._entries.items() if e.bound() >= horizon}
        wait = decide(rule.tally(now, (e.span(now) for e in self._entries.values())))
        if wait is not None:
            return None, wait
        key = next(self._keys)
        self._entries[key] = _Entry(now, deadline)
        return key, now

    def finish(self, key: int, start: float, at: float) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.replied is None:
            entry.replied = at

    def counting(self, now: float, horizon: float, rule: _Rule) -> int:
        return rule.counting(now, (e.span(now) for e in self._entries.values()
                                   if e.bound() >= horizon))

    def detach(self) -> None:
        pass


# the end of a row as seen at ?now (rows of older versions end at their start), and its bound
_SQL_END = "max(t, coalesce(replied, min(?, coalesce(deadline, t))))"
_SQL_BOUND = "max(t, coalesce(replied, deadline, t))"


class _SqliteCallLog:
    """The call log in the state folder, so every process using the same API shares one budget.

    A decision reads the log inside SQLite (`_tally`): the latest start and the number of rows
    from the index; only if the log holds ``max_calls`` rows, a count of the calls that count;
    and only when ``max_calls`` of them do, the one end that matters. Pruning (a pass over the
    log) runs at most every half window per process: rows that stopped counting are skipped by
    every query anyway, so a late prune changes no decision; it only bounds the file.
    """

    def __init__(self, path: pathlib.Path, scope: str) -> None:
        self._conn = _connect(path, _CALLS_DDL, _add_span_columns)
        self._scope = scope
        self._pruned: float | None = None  # when this process last pruned (its clock)

    def attempt(
        self, now: float, horizon: float, rule: _Rule, decide: _Decide, deadline: float
    ) -> tuple[int | None, float]:
        with _immediate(self._conn) as conn:
            if self._pruned is None or not self._pruned <= now < self._pruned + rule.window / 2:
                conn.execute(
                    f"DELETE FROM pace_calls WHERE scope = ? AND {_SQL_BOUND} < ?",
                    (self._scope, horizon),
                )
                self._pruned = now  # (rolled back with the rest, it is only a late prune)
            wait = decide(self._tally(conn, now, rule))
            if wait is not None:
                return None, wait
            cur = conn.execute(
                "INSERT INTO pace_calls (scope, t, deadline) VALUES (?, ?, ?)",
                (self._scope, now, deadline),
            )
            assert cur.lastrowid is not None  # an INSERT always sets it
            return cur.lastrowid, now

    def _tally(self, conn: sqlite3.Connection, now: float, rule: _Rule) -> _Tally:
        """`_Rule.tally` of the whole scope, computed by SQLite with the same float arithmetic.

        ``latest`` is the latest start of any row, pruned or not: a row the in-memory log would
        have pruned started before ``now - 2 * window``, so it cannot hold the next call back by
        the gap (at most one window) either way. A row stops counting before it is pruned
        (``end <= bound``), so counting needs no horizon.
        """
        # two queries: SQLite answers max(t) from the index's end, count(*) by walking it
        (latest,) = conn.execute(
            "SELECT max(t) FROM pace_calls WHERE scope = ?", (self._scope,)
        ).fetchone()
        (logged,) = conn.execute(
            "SELECT count(*) FROM pace_calls WHERE scope = ?", (self._scope,)
        ).fetchone()
        if logged < rule.max_calls:  # from the index alone: fewer rows than places
            return _Tally(latest, None)
        counting = self._count(conn, now, rule.window)
        if counting < rule.max_calls:
            return _Tally(latest, None)
        (nth,) = conn.execute(
            f"SELECT e FROM (SELECT {_SQL_END} AS e FROM pace_calls WHERE scope = ?) "
            "WHERE e + ? > ? ORDER BY e LIMIT 1 OFFSET ?",
            (now, self._scope, rule.window, now, counting - rule.max_calls),
        ).fetchone()
        return _Tally(latest, float(nth))

    def _count(self, conn: sqlite3.Connection, now: float, window: float) -> int:
        (counting,) = conn.execute(
            f"SELECT count(*) FROM pace_calls WHERE scope = ? AND {_SQL_END} + ? > ?",
            (self._scope, now, window, now),
        ).fetchone()
        return int(counting)

    def finish(self, key: int, start: float, at: float) -> None:
        # The start as well as the rowid: a row pruned after its deadline may have its rowid
        # reused, and another call's reply time must never be set early.
        with _immediate(self._conn) as conn:
            conn.execute(
                "UPDATE pace_calls SET replied = ? "
                "WHERE rowid = ? AND scope = ? AND t = ? AND replied IS NULL",
                (at, key, self._scope, start),
            )

    def counting(self, now: float, horizon: float, rule: _Rule) -> int:
        return self._count(self._conn, now, rule.window)

    def detach(self) -> None:
        self._conn.close()


# --------------------------------------------------------------------------------------------------
# the limiter


class Slot:
    """One call the limiter let go: ``start``, and once told, ``replied``.

    Call :meth:`done` when the call's reply arrived, or when the client gave up on it (timeout,
    dropped connection): from then on the call counts until ``replied + window``. A slot never
    marked done counts as in flight until ``deadline`` (``start + hold``), which is what a call
    cancelled mid-request, or a process that dies, leaves behind.
    """

    __slots__ = ("_key", "_limiter", "deadline", "replied", "start")

    def __init__(self, limiter: WindowLimiter, key: int, start: float, deadline: float) -> None:
        self._limiter = limiter
        self._key = key
        self.start = start
        self.deadline = deadline
        self.replied: float | None = None

    def done(self) -> None:
        """Record the reply time (now). Idempotent, and never raises: if the log cannot be
        written, the call keeps counting as in flight until its deadline (only slower)."""
        if self.replied is not None:
            return
        self.replied = self._limiter.clock.time()
        self._limiter._finish(self)

    def __repr__(self) -> str:
        end = "in flight" if self.replied is None else f"replied +{self.replied - self.start:.3f}s"
        return f"<Slot start={self.start:.3f} {end}>"


class WindowLimiter:
    """At most ``max_calls`` arrivals in any window of ``period`` seconds, whatever the latency,
    across workers and processes: see the module docstring for the guarantee, its proof and the
    margin. Take a slot with :meth:`acquire` and call its :meth:`Slot.done` when the reply came.

    **Sharing.** With ``shared`` (an SQLite file in the state folder) the log lives in table
    ``pace_calls``, keyed by ``scope`` (use the API base URL, so sandbox and real runs keep
    separate budgets). Every limiter on the same file and scope, in this process or another,
    draws from one budget, and a run started right after another counts the other's recent
    calls, including those still in flight. Entries are pruned two windows after they stop
    counting. All processes must read the same wall clock (one machine: SQLite on a network file
    system is not supported).
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
        hold: float = DEFAULT_HOLD,
    ) -> None:
        if max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        if period <= 0:
            raise ValueError("period must be positive")
        if margin < 0:
            raise ValueError("margin must not be negative")
        if not 0 <= smoothing <= 1:
            raise ValueError("smoothing must be between 0 and 1")
        if hold <= 0:
            raise ValueError("hold must be positive")
        self.max_calls = max_calls
        self.period = period
        self.margin = margin
        self.smoothing = smoothing
        self.hold = hold
        self.window: float = period * (1 + margin)
        self.min_gap: float = smoothing * self.window / max_calls
        self.clock: Clock = clock or SystemClock()
        self.scope = scope
        self._log: _MemoryCallLog | _SqliteCallLog = (
            _SqliteCallLog(shared, scope) if shared is not None else _MemoryCallLog()
        )
        self._shared = shared is not None
        self._rule = _Rule(self.window, max_calls)
        self._lock = asyncio.Lock()
        self._open: set[int] = set()  # keys of this limiter's slots not yet done
        self._granted = 0
        self._detached = False

    def _decide(self, now: float, tally: _Tally) -> float | None:
        """None if a call may start at ``now``, else the earliest time at which it might.

        ``end + window > now`` is the rule of the module docstring (`_Rule`; the log tallies it).
        Spans later than ``now`` (a wall clock stepped back, another process slightly ahead) count
        too: over-counting can only make us slower, never break the guarantee. For a call in
        flight ``end + window`` is a lower bound on when it stops counting, so the returned time
        is never too late; at worst the caller looks again.
        """
        earliest = now
        if tally.latest is not None and self.min_gap > 0 and now < tally.latest + self.min_gap:
            earliest = tally.latest + self.min_gap
        if tally.nth is not None:
            earliest = max(earliest, tally.nth + self.window)
        return None if earliest <= now else earliest

    def _horizon(self, now: float) -> float:
        """Entries that stopped counting before this can matter to no decision (min_gap <=
        window): pruned."""
        return now - 2 * self.window

    async def acquire(self) -> Slot:
        """Wait for room; record the call (in flight) and return its slot.

        Waiters sleep until the earliest time the log allows, then look again: another worker or
        process may have taken the room, a call in flight may not have finished, or the sleep
        may have woken late. Any number of workers may wait at once; each check-and-record is
        atomic, so all of them respect the guarantee.
        """
        while True:
            # The section below contains no await, so it is already atomic on the event loop; the
            # lock states that intent and keeps it true if the store ever becomes asynchronous.
            async with self._lock:
                now = self.clock.time()
                key, until = self._log.attempt(
                    now, self._horizon(now), self._rule, partial(self._decide, now),
                    now + self.hold,
                )
            if key is not None:
                self._open.add(key)
                self._granted += 1
                return Slot(self, key, now, now + self.hold)
            await self.clock.sleep(until - now)

    def _finish(self, slot: Slot) -> None:
        """Record ``slot``'s reply time (called by `Slot.done`)."""
        self._open.discard(slot._key)
        if self._detached or slot.replied is None:
            return  # the log is closed: the entry counts until its deadline (only slower)
        try:
            self._log.finish(slot._key, slot.start, slot.replied)
        except sqlite3.Error as exc:
            log.warning(
                "could not record a reply time in the pace log (%s); the call counts "
                "as in flight until %.0f s after it started",
                exc,
                self.hold,
            )

    def recent(self) -> int:
        """Calls that count now (started or answered in the last window, or in flight; all
        processes sharing the log), for progress."""
        now = self.clock.time()
        return self._log.counting(now, self._horizon(now), self._rule)

    def in_flight(self) -> int:
        """This limiter's slots not yet marked done."""
        return len(self._open)

    def detach(self) -> None:
        """Close the shared-state connection (no-op in memory). The limiter is unusable after;
        a slot marked done later is simply not recorded (it counts until its deadline)."""
        self._detached = True
        self._log.detach()

    def __repr__(self) -> str:
        counting = "closed"
        if not self._detached:
            try:
                counting = f"{self.recent()}/{self.max_calls}"
            except sqlite3.Error:
                counting = "?"
        where = "shared" if self._shared else "memory"
        return (
            f"<WindowLimiter {self.max_calls} per {self.period:g}s scope={self.scope!r} "
            f"({where}, window={self.window:g}s, hold={self.hold:g}s): counting {counting}, "
            f"in flight here {len(self._open)}, granted {self._granted}>"
        )


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
) -> Callable[[], Awaitable[Slot]]:
    """The coroutine the HTTP client awaits before every API request; returns the call's slot,
    which the client marks done when the reply came.

    Order: wait for the gate, then take a limiter slot. If the gate closed while we waited for the
    slot, that slot is abandoned and we start over, because its recorded time is then stale: a call
    sent at the end of the lock under a slot recorded before it would be invisible to the log at
    its real time, and the workers released together would burst past the limit. The abandoned
    slot is marked done at once (nothing was sent; it still counts for one window, which only
    ever makes us slower, and after a lock longer than the window it has aged out).
    """

    async def pace() -> Slot:
        while True:
            await gate.wait(on_wait)
            slot = await limiter.acquire()
            if gate.until() is None:
                return slot
            slot.done()

    return pace

"""The worker pool: journal claim → (gate + limiter, inside the client) → create → journal.

Why it is shaped like this:

* The API has no idempotency key, so a duplicate can only be prevented *before* a call. Every row is
  claimed in the journal first (`Journal.claim`); the claim, not this process's memory, decides
  whether a row may be sent, so two runs on one state folder never send the same row twice.
* A lost reply (`OutcomeUnknown`) or a row left in flight by a dead run is never re-sent blindly:
  the module's sessions are listed first (`Client.find_session`). A listing that fails with a 5xx
  or never reaches Zoho is tried again with the create backoff (the row waits on the queue, still
  held in flight in the journal, so no other run takes it), at most ``list_attempts`` times; only
  then is the row reported ``unknown`` and marked so in the journal, and the next run lists before
  sending it.
* A lockout stops every worker: the gate is closed for ``max(Retry-After, lock_seconds)`` and both
  the workers (before claiming) and the client (before every HTTP call) wait on it. Calls made
  during a lock may extend it, so nobody probes.
* Every request gets exactly one `Outcome`, whatever happens (stop signal, fatal answer, a bug):
  the report is the operator's only way to know what to do next.
* A stop tells apart a row whose request may have left from one that provably has not. The
  client's pace is wrapped by `track_pace`, which tells the runner (through a ContextVar set around
  each client call) when a worker enters the pace and when the pace lets its request go. A row
  still inside the pace (waiting out a lockout or for a limiter slot) is released at once and
  reported ``pending``; only a row whose request may be on the wire gets ``stop_grace`` and, if
  still unanswered, becomes ``unknown``. After a stop, the tracked pace lets no request leave.

The runner depends on the client and the gate only through the small Protocols below, so it is
tested with a fake client on a fake clock (a 5-minute lockout takes milliseconds).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, TypeVar

from bulkschedule.core.problems import Outcome, Status
from bulkschedule.core.request import Request
from bulkschedule.send.journal import CREATED, INFLIGHT, UNKNOWN, Claim, ClaimKind, Journal
from bulkschedule.send.limiter import Clock
from bulkschedule.zoho.client import (
    ApiError,
    AuthExpired,
    Fatal,
    Locked,
    NotSent,
    OutcomeUnknown,
    Rejected,
    ServerError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

UNKNOWN_NEXT_RUN = "the next run will check (by listing the module's sessions) before sending it"


class Client(Protocol):
    """What the runner needs from the LMS client (see bulkschedule.zoho.client)."""

    async def create_session(self, req: Request) -> str:
        """POST the session; return its sessionId. Raises the `ApiError` subclasses. Awaits the
        shared pace (gate + limiter) before every HTTP call and refreshes auth once itself."""
        ...

    async def find_session(self, req: Request) -> str | None:
        """List the module's sessions (paced) and return the sessionId matching ``req``."""
        ...


class Gate(Protocol):
    """The lockout gate shared by every worker (and, through the journal, every process)."""

    def close(self, seconds: float, reason: str = "") -> float:
        """Lock until ``max(existing, now + seconds)``; return the time it reopens."""
        ...

    def until(self) -> float | None:
        """When the gate reopens, or None if it is open."""
        ...

    async def wait(self, on_wait: Callable[[float], None] | None = None) -> float:
        """Return once the gate is open (seconds waited); ``on_wait(remaining)`` when it waits."""
        ...


@dataclass
class RunConfig:
    workers: int = 4
    lock_seconds: float = 300.0  # Zoho's documented lock period
    max_attempts: int = 5  # create calls per row, not counting lockout refusals
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    stop_grace: float = 30.0  # how long in-flight calls may finish after a stop
    busy_wait: float = 600.0  # how long to wait for another live run that holds a row
    busy_poll: float = 5.0  # how often to re-check such a row
    heartbeat_every: float = 5.0  # keep well below Journal.stale_after (90 s by default)
    reconcile_delay: float = 5.0  # after a lost reply, let the server finish before listing
    # listing calls per reconciliation: the first plus retries (same backoff as creates) after a
    # 5xx or a listing that never reached Zoho; then the row is ``unknown`` for the next run
    list_attempts: int = 5


# -- events (for progress bars and log lines) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class LockEvent:
    """Zoho locked us out; every worker pauses until ``until`` (epoch seconds)."""

    until: float
    reason: str


@dataclass(frozen=True, slots=True)
class WaitEvent:
    """Workers are waiting for the gate to reopen."""

    remaining: float


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A row will be tried again at ``at`` (epoch seconds)."""

    row: int
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class StopEvent:
    """The run stopped taking rows (stop signal or a fatal answer)."""

    reason: str


Event = OutcomeEvent | LockEvent | WaitEvent | RetryEvent | StopEvent


# -- the pool --------------------------------------------------------------------------------------


class _Handled:
    """Sentinel: the reconciliation already settled or re-queued the row."""


_HANDLED = _Handled()


class _Phase(enum.Enum):
    """Where a row's worker is with respect to the client (what a stop may do with it)."""

    IDLE = "idle"  # not inside a client call
    CALLING = "calling"  # inside a client call whose pace is not tracked: may be sending
    PACING = "pacing"  # inside the tracked pace: this call's request has not left
    SENDING = "sending"  # the pace let the request go: it may be on the wire


class _Withheld(Exception):
    """The run is stopping: the request was not sent (raised before or inside the pace)."""


@dataclass(frozen=True, slots=True)
class _InCall:
    run: _Run
    item: _Item

    def pacing(self) -> None:
        self.item.phase = _Phase.PACING
        if self.run._stopping():
            raise _Withheld

    def sending(self) -> None:
        if self.run._stopping():  # the slot is wasted; over-counting only makes us slower
            raise _Withheld
        self.item.phase = _Phase.SENDING
        self.item.left = True


# The row a worker is calling the client for. Each worker is its own task, and the client awaits
# the pace inside the caller's task, so the pace finds the row here.
_IN_CALL: ContextVar[_InCall | None] = ContextVar("bulkschedule_runner_in_call", default=None)


def track_pace(pace: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """Wrap the client's pace (``make_pace(gate, limiter)``) so a stop knows which rows were sent.

    Inside a runner's client call the wrapper marks the row *pacing* on entry and *sending* once
    ``pace`` returns, i.e. just before the HTTP request goes out. A stop then releases the rows
    still pacing at once (they are ``pending``), and gives only the sending ones the grace. Once
    the run is stopping, the wrapper lets no request leave: it raises instead of pacing or right
    after pacing, and the runner records the row as not sent. Outside a runner (e.g. ``auth
    check``) it is a plain pass-through. Without it the runner treats a row inside any client call
    as possibly sent (safe, but a stop then waits for rows that are only waiting on the lock).
    """

    async def tracked() -> T:
        in_call = _IN_CALL.get()
        if in_call is None:
            return await pace()
        in_call.pacing()
        result = await pace()
        in_call.sending()
        return result

    return tracked


@dataclass(eq=False)
class _Item:
    """A row's progress within this run (the journal holds what must survive the process)."""

    req: Request
    attempts: int = 0  # create calls made in this run
    journalled: int = 0  # of those, already added to the journal's attempt count
    lock_refusals: int = 0
    failures: int = 0  # 5xx / not-sent answers so far (drives backoff)
    list_failures: int = 0  # failed listings in the current reconciliation (drives its backoff)
    stale_note: str = ""  # who left it unconfirmed, when it was claimed as stale
    lock_until: float | None = None  # when the gate reopened after this row's last lockout
    busy_since: float | None = None
    claimed: bool = False  # the journal holds it in flight for this run right now (also while
    # it waits on the queue to be listed again)
    unresolved: bool = False  # may exist in Zoho and not yet checked by listing
    sent_unknown: bool = False  # one of this run's creates may have landed
    last_error: str = ""
    done: bool = False
    phase: _Phase = _Phase.IDLE
    left: bool = False  # a request of the current client call passed the pace

    @property
    def may_be_sending(self) -> bool:
        """Whether a request of the current client call may be on the wire right now."""
        return self.phase in (_Phase.CALLING, _Phase.SENDING)

    @property
    def tries(self) -> int:
        return self.attempts - self.lock_refusals

    def new_attempts(self) -> int:
        """Attempts not yet added to the journal (each journal write adds its share once)."""
        n = self.attempts - self.journalled
        self.journalled = self.attempts
        return n


class _Run:
    def __init__(
        self,
        requests: Sequence[Request],
        *,
        client: Client,
        journal: Journal,
        gate: Gate,
        api_base: str,
        run_id: int,
        config: RunConfig,
        clock: Clock,
        stop: asyncio.Event | None,
        on_event: Callable[[Event], None] | None,
        rng: random.Random,
    ) -> None:
        self.requests = requests
        self.client = client
        self.journal = journal
        self.gate = gate
        self.api_base = api_base
        self.run_id = run_id
        self.config = config
        self.clock = clock
        self.stop = stop
        self.on_event = on_event
        self.rng = rng
        self.items = [_Item(r) for r in requests]
        self.ready: asyncio.Queue[_Item] = asyncio.Queue()
        self.delayed: dict[_Item, asyncio.Task[None]] = {}
        self.outcomes: dict[int, Outcome] = {}
        self.remaining = len(self.items)
        self.all_done = asyncio.Event()
        self.halted = asyncio.Event()
        self.halt_reason: str | None = None
        self.fatal: str | None = None  # Zoho's answer when a Fatal/AuthExpired stopped the run
        self.current: dict[int, _Item | None] = {}
        self._last_wait_until: float | None = None

    # -- orchestration ----------------------------------------------------------------------------

    async def execute(self) -> dict[int, Outcome]:
        if not self.items:
            return {}
        for item in self.items:
            self.ready.put_nowait(item)
        self._beat()
        heartbeat = asyncio.create_task(self._heartbeat())
        workers = {
            asyncio.create_task(self._worker(i)): i for i in range(max(1, self.config.workers))
        }
        watchers = [
            asyncio.create_task(self.all_done.wait()),
            asyncio.create_task(self.halted.wait()),
        ]
        if self.stop is not None:
            watchers.append(asyncio.create_task(self.stop.wait()))
        try:
            await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
            if not self.all_done.is_set():
                self._halt("stop requested")  # no-op if a fatal answer halted it already
                await self._wind_down(workers)
        finally:
            tasks = [heartbeat, *watchers, *workers, *self.delayed.values()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for item in self.items:  # safety net: one Outcome for every request, always
                if not item.done:  # on the queue, not in a call (workers are gone)
                    self._stopped_before_sending(item)
        return {r.row: self.outcomes[r.row] for r in self.requests}

    async def _wind_down(self, workers: Mapping[asyncio.Task[None], int]) -> None:
        """Stop taking rows; give calls in flight ``stop_grace`` seconds; settle everything else.

        Only a worker whose request may have left waits for the grace. The others are cancelled
        at once: idle, waiting on the gate before claiming, waiting inside the tracked pace (their
        request never left: released, ``pending``), or waiting to list after a lost reply or
        for a listing backoff (no listing is started after a stop: ``unknown``, the next run
        lists).
        """
        while not self.ready.empty():
            item = self.ready.get_nowait()
            self._stopped_before_sending(item)
        for item, task in list(self.delayed.items()):
            task.cancel()
            self._stopped_before_sending(item)  # a row waiting to be listed again: unknown
        self.delayed.clear()
        busy: set[asyncio.Task[None]] = set()
        for task, wid in workers.items():
            item = self.current.get(wid)
            if item is not None and item.claimed and item.may_be_sending:
                busy.add(task)
            else:
                task.cancel()
        if busy:
            grace = asyncio.create_task(self.clock.sleep(self.config.stop_grace))
            pending = busy
            while pending and not grace.done():
                _, still = await asyncio.wait(
                    {*pending, grace}, return_when=asyncio.FIRST_COMPLETED
                )
                pending = {t for t in still if t is not grace}
            grace.cancel()
            for task in pending:
                task.cancel()  # their rows become unknown (the journal says so)
        await asyncio.gather(*workers, return_exceptions=True)

    def _stopping(self) -> bool:
        """Whether to stop taking rows. Reads the stop event directly: the watcher task that
        reacts to it may not have run yet (e.g. a stop set before the run began)."""
        if self.halt_reason is None and self.stop is not None and self.stop.is_set():
            self._halt("stop requested")
        return self.halt_reason is not None

    def _halt(self, reason: str, *, fatal: str | None = None) -> None:
        if self.halt_reason is not None:
            return
        self.halt_reason = reason
        self.fatal = fatal
        self.halted.set()
        self._emit(StopEvent(reason))

    def _halt_outcome(self, item: _Item) -> Outcome:
        """What a row the run stopped before (or while) sending becomes."""
        if item.unresolved:
            return self._outcome(
                item,
                Status.UNKNOWN,
                f"May have been created (an earlier request got no reply); {UNKNOWN_NEXT_RUN}.",
            )
        last = f" (last answer for this row: {item.last_error})" if item.last_error else ""
        if self.fatal is not None:
            return self._outcome(
                item,
                Status.FAILED,
                f"Not sent: the run stopped because Zoho answered: {self.fatal}{last}",
            )
        return self._outcome(
            item, Status.PENDING, f"Not sent: the run was stopped before this row was sent{last}."
        )

    async def _heartbeat(self) -> None:
        while True:
            await self.clock.sleep(self.config.heartbeat_every)
            self._beat()

    def _beat(self) -> None:
        try:
            self.journal.heartbeat(self.run_id)
        except sqlite3.Error:  # a busy journal must not kill the run; the next beat will do
            log.warning("could not record the heartbeat of run %s", self.run_id, exc_info=True)

    # -- one worker -------------------------------------------------------------------------------

    async def _worker(self, wid: int) -> None:
        while not self._stopping():
            item = await self.ready.get()
            self.current[wid] = item
            item.phase = _Phase.IDLE
            try:
                # Claim only once the gate is open, so a long lockout does not leave rows marked
                # in flight (a crash then would force a needless listing).
                await self.gate.wait(self._on_wait)
                if self._stopping():
                    self._stopped_before_sending(item)
                    return
                await self._process(item)
            except _Withheld:  # stopping: this row's request was not sent
                self._stopped_before_sending(item)
            except asyncio.CancelledError:
                self._abandon(item)
                raise
            except Exception as exc:  # a bug or an unclassified failure: never lose the row
                log.exception("row %s: unexpected error", item.req.row)
                self._unexpected(item, exc)
            finally:
                self.current[wid] = None

    async def _process(self, item: _Item) -> None:
        req = item.req
        if item.claimed:
            # Back from a listing backoff: the row stayed in flight for this run (a claim would
            # now say BUSY). Make sure nobody took it over meanwhile, then list again.
            if self._hold_lost(item):
                return
        else:
            claim = self.journal.claim(self.api_base, req, self.run_id)
            if claim.kind is ClaimKind.CREATED:
                self._finish_existing(item, claim)
                return
            if claim.kind is ClaimKind.BUSY:
                self._busy(item, claim)
                return
            item.claimed = True
            item.busy_since = None
            if claim.kind is ClaimKind.STALE:
                item.unresolved = True
                item.stale_note = item.stale_note or claim.message
        while True:
            if item.unresolved:
                found = await self._reconcile(item)
                if isinstance(found, _Handled):
                    return
                if isinstance(found, str):
                    self._finish_found(item, found, item.stale_note)
                    return
                item.unresolved = False  # listing shows it is not there
                if item.sent_unknown and item.tries >= self.config.max_attempts:
                    message = (
                        f"No reply to {item.tries} attempts (last: {item.last_error}); listing "
                        "shows it was not created."
                    )
                    self.journal.record_failed(
                        self.api_base, req, self.run_id, message, attempts=item.new_attempts()
                    )
                    self._finish(item, self._outcome(item, Status.FAILED, message))
                    return
            if await self._send(item):  # refused (_Withheld) if the run is stopping
                return
            if self._stopping():
                raise _Withheld  # no listing after a stop: unknown, the next run lists
            # a lost reply: wait a little, then list before anything is re-sent
            await self.clock.sleep(self.config.reconcile_delay)

    async def _call(self, item: _Item, call: Callable[[Request], Awaitable[T]]) -> T:
        """One client call for ``item``, with the row known to `track_pace` while it lasts.

        Raises `_Withheld` without calling if the run is stopping. The phase is left as it was
        when the call is cancelled or fails unexpectedly, so the handler knows whether a request
        may have left; an `ApiError` is an answer (or a known non-send), so the call is over.
        """
        item.left = False
        if self._stopping():
            raise _Withheld
        item.phase = _Phase.CALLING
        token = _IN_CALL.set(_InCall(self, item))
        try:
            result = await call(item.req)
        except ApiError:
            item.phase = _Phase.IDLE
            raise
        finally:
            _IN_CALL.reset(token)
        item.phase = _Phase.IDLE
        return result

    async def _send(self, item: _Item) -> bool:
        """One create call. Returns False only when the reply was lost (reconcile, then retry)."""
        req = item.req
        item.attempts += 1
        try:
            session_id = await self._call(item, self.client.create_session)
        except (_Withheld, asyncio.CancelledError):
            if not item.left and not item.may_be_sending:
                item.attempts -= 1  # it never left (not yet journalled: no write since +1)
            raise
        except Locked as exc:
            self._locked(item, exc)
        except OutcomeUnknown as exc:
            item.sent_unknown = True
            item.unresolved = True
            item.last_error = exc.message
            # keep holding it while we reconcile: another run must see it busy, not stale
            self.journal.note(
                self.api_base,
                req,
                self.run_id,
                f"no reply: {exc.message}",
                attempts=item.new_attempts(),
            )
            return False
        except ServerError as exc:
            self._retry_or_fail(item, exc, "Zoho answered with a server error")
        except NotSent as exc:
            self._retry_or_fail(item, exc, "Could not reach Zoho")
        except Rejected as exc:
            self._fail(item, exc.message)
        except (Fatal, AuthExpired) as exc:
            self._fail(item, exc.message)
            self._halt(f"Zoho answered: {exc.message}", fatal=exc.message)
        except ApiError as exc:  # an ApiError without a class: we cannot know if it was created
            self._unknown(item, f"Unclassified answer: {exc.message}")
        else:
            stored = self.journal.record_created(
                self.api_base, req, self.run_id, session_id, attempts=item.new_attempts()
            )
            message = (
                ""
                if stored == session_id
                else f"Possible duplicate: this identity was already created as {stored}."
            )
            self._finish(item, self._outcome(item, Status.CREATED, message, session_id))
        return True

    # -- answers ----------------------------------------------------------------------------------

    def _locked(self, item: _Item, exc: Locked) -> None:
        item.lock_refusals += 1
        item.last_error = exc.message
        reopen = self._close_gate(exc)
        if item.lock_until is not None and self.clock.time() >= item.lock_until:
            # It already waited out a full lock and was refused again at once: this is not a
            # passing lockout (e.g. a permanent 422 "Maximum limit exceeded"); do not loop.
            self._fail(item, f"Refused again after waiting out a full lock period: {exc.message}")
            return
        item.lock_until = reopen
        self.journal.release(
            self.api_base,
            item.req,
            self.run_id,
            attempts=item.new_attempts(),
            message=f"locked out: {exc.message}",
        )
        item.claimed = False
        self._requeue(item, 0.0)  # workers wait on the gate before claiming it again

    def _close_gate(self, exc: ApiError) -> float:
        before = self.gate.until()
        reopen = self.gate.close(
            max(exc.retry_after or 0.0, self.config.lock_seconds), reason=exc.message
        )
        if before is None or reopen > before:
            self._emit(LockEvent(reopen, exc.message))
        return reopen

    def _retry_or_fail(self, item: _Item, exc: ApiError, what: str) -> None:
        item.failures += 1
        item.last_error = exc.message
        if item.tries >= self.config.max_attempts:
            self._fail(item, f"{what} {item.tries} times; last: {exc.message}")
            return
        self.journal.release(
            self.api_base, item.req, self.run_id, attempts=item.new_attempts(), message=exc.message
        )
        item.claimed = False
        delay = self._backoff(item.failures)
        if exc.retry_after:
            delay = max(delay, exc.retry_after)
        if self.halt_reason is None:
            self._emit(RetryEvent(item.req.row, self.clock.time() + delay, exc.message))
        self._requeue(item, delay)

    def _backoff(self, failures: int) -> float:
        """Exponential, capped, with "equal jitter" (half fixed, half random) so retries from
        several workers do not land together."""
        cap = min(self.config.backoff_max, self.config.backoff_base * 2 ** (failures - 1))
        return cap / 2 + self.rng.random() * cap / 2

    async def _reconcile(self, item: _Item) -> str | _Handled | None:
        """List before re-sending. Returns the sessionId, None (not there), or _HANDLED."""
        try:
            found = await self._call(item, self.client.find_session)
        except Locked as exc:
            item.last_error = exc.message
            reopen = self._close_gate(exc)
            if item.lock_until is not None and self.clock.time() >= item.lock_until:
                self._unknown(
                    item,
                    "May have been created; listing the module's sessions was refused again "
                    f"after a full lock period ({exc.message}); {UNKNOWN_NEXT_RUN}.",
                )
                return _HANDLED
            item.lock_until = reopen
            self.journal.record_unknown(
                self.api_base,
                item.req,
                self.run_id,
                f"not yet checked: {exc.message}",
                attempts=item.new_attempts(),
            )
            item.claimed = False
            self._requeue(item, 0.0)  # the next claim says STALE: it is listed again
            return _HANDLED
        except (Fatal, AuthExpired) as exc:
            self._unknown(
                item,
                f"May have been created; could not check ({exc.message}); {UNKNOWN_NEXT_RUN}.",
            )
            self._halt(f"Zoho answered: {exc.message}", fatal=exc.message)
            return _HANDLED
        except (ServerError, NotSent) as exc:  # passing trouble: list again after a backoff
            self._list_again_later(item, exc)
            return _HANDLED
        except ApiError as exc:  # e.g. a 4xx on the listing: trying again would not help
            self._unknown(
                item,
                "May have been created; listing the module's sessions to check failed "
                f"({exc.message}); {UNKNOWN_NEXT_RUN}.",
            )
            return _HANDLED
        item.list_failures = 0  # the listing answered: a later reconciliation starts afresh
        return found

    def _list_again_later(self, item: _Item, exc: ApiError) -> None:
        """A listing failed with a 5xx or never reached Zoho: put the row back on the queue with
        the create backoff, still held in flight in the journal (no other run may take it, and
        nothing is sent before a listing succeeds), or, after ``list_attempts`` listings, report
        it ``unknown`` for the next run."""
        item.list_failures += 1
        item.last_error = exc.message
        if item.list_failures >= self.config.list_attempts:
            self._unknown(
                item,
                "May have been created; listing the module's sessions to check failed "
                f"{item.list_failures} times (last: {exc.message}); {UNKNOWN_NEXT_RUN}.",
            )
            return
        delay = self._backoff(item.list_failures)
        if exc.retry_after:
            delay = max(delay, exc.retry_after)
        held = self.journal.note(
            self.api_base,
            item.req,
            self.run_id,
            f"not yet checked: listing failed ({exc.message}); listing again in {delay:.1f} s",
            attempts=item.new_attempts(),
        )
        if not held and self._hold_lost(item):
            return
        if self.halt_reason is None:
            self._emit(
                RetryEvent(
                    item.req.row,
                    self.clock.time() + delay,
                    f"listing to check failed: {exc.message}",
                )
            )
        self._requeue(item, delay)  # item.claimed stays True: _process lists without claiming

    def _hold_lost(self, item: _Item) -> bool:
        """Whether a row held in flight across a listing backoff is no longer this run's in the
        journal (another run judged this one dead and took it over, or an operator forgot it).
        If so the row is settled from what the journal says, without a call, and True returned.
        """
        entry = self.journal.lookup(self.api_base, item.req)
        if entry is not None and entry.status == INFLIGHT and entry.run_id == self.run_id:
            return False
        item.claimed = False
        if entry is not None and entry.status == CREATED and entry.session_id:
            self._finish_existing(
                item,
                Claim(
                    ClaimKind.CREATED,
                    session_id=entry.session_id,
                    changed=entry.fingerprint != item.req.fingerprint,
                ),
            )
            return True
        state = "nothing (forgotten)" if entry is None else entry.status
        if entry is not None and entry.run_id is not None and entry.run_id != self.run_id:
            state += f" for run #{entry.run_id}"
        self._finish(
            item,
            self._outcome(
                item,
                Status.UNKNOWN,
                "May have been created; while this run waited to list the module's sessions "
                f"again, the journal stopped holding it for this run (it now says: {state}); "
                "not sent again. Run again later: the next run decides from the journal.",
            ),
        )
        return True

    # -- settling a row -------------------------------------------------------------------------

    def _finish_existing(self, item: _Item, claim: Claim) -> None:
        if claim.changed:
            self._finish(
                item,
                self._outcome(
                    item,
                    Status.CHANGED,
                    f"Already created as session {claim.session_id} with different details; "
                    "not sent again. Edit that session in Zoho, or give this row a new key.",
                    claim.session_id,
                ),
            )
        else:
            self._finish(
                item,
                self._outcome(
                    item,
                    Status.EXISTS,
                    f"Already created (session {claim.session_id}); not sent again.",
                    claim.session_id,
                ),
            )

    def _finish_found(self, item: _Item, session_id: str, stale_note: str) -> None:
        stored = self.journal.record_created(
            self.api_base,
            item.req,
            self.run_id,
            session_id,
            attempts=item.new_attempts(),
            message="found by listing",
        )
        if item.sent_unknown:  # this run's own request did land
            status, message = Status.CREATED, "Created (the reply was lost; found by listing)."
        else:
            status, message = (
                Status.EXISTS,
                f"Already created (found by listing; {stale_note}); not sent again.",
            )
        self._finish(item, self._outcome(item, status, message, stored))

    def _busy(self, item: _Item, claim: Claim) -> None:
        now = self.clock.time()
        if item.busy_since is None:
            item.busy_since = now
        if now - item.busy_since >= self.config.busy_wait:
            self._finish(
                item,
                self._outcome(
                    item,
                    Status.UNKNOWN,
                    f"Not sent by this run: {claim.message} for over "
                    f"{self.config.busy_wait:.0f} s. That run may still create it; check its "
                    "results, or run again later (the journal will know).",
                ),
            )
            return
        self._requeue(item, self.config.busy_poll)

    def _fail(self, item: _Item, message: str) -> None:
        self.journal.record_failed(
            self.api_base, item.req, self.run_id, message, attempts=item.new_attempts()
        )
        self._finish(item, self._outcome(item, Status.FAILED, message))

    def _unknown(self, item: _Item, message: str) -> None:
        self.journal.record_unknown(
            self.api_base, item.req, self.run_id, message, attempts=item.new_attempts()
        )
        self._finish(item, self._outcome(item, Status.UNKNOWN, message))

    def _provably_unsent(self, item: _Item) -> bool:
        """Whether nothing this run sent for ``item`` can have created it (a claimed row whose
        worker is inside the tracked pace, with no earlier lost reply)."""
        return not item.unresolved and item.phase is _Phase.PACING

    def _release_unsent(self, item: _Item, outcome: Outcome) -> None:
        """Give a claimed row that was provably not sent back to the journal, then settle it."""
        if item.claimed:
            self.journal.release(
                self.api_base,
                item.req,
                self.run_id,
                attempts=item.new_attempts(),
                message=outcome.message,
            )
            item.claimed = False
        self._finish(item, outcome)

    def _stopped_before_sending(self, item: _Item) -> None:
        """The run stopped before this row's next request left (`_Withheld`)."""
        if item.done:
            return
        if item.claimed and item.unresolved:  # an earlier request may have created it
            self._unknown(item, self._halt_outcome(item).message)
        else:
            self._release_unsent(item, self._halt_outcome(item))

    def _abandon(self, item: _Item) -> None:
        """The worker was cancelled (a stop, the stop grace ran out, or the caller cancelled the
        run, e.g. a hard stop)."""
        if item.done:
            return
        if not item.claimed or self._provably_unsent(item):
            self._release_unsent(item, self._halt_outcome(item))
        elif item.unresolved:  # an earlier request got no reply (any call now is a listing)
            self._unknown(item, self._halt_outcome(item).message)
        else:
            self._unknown(
                item,
                "The run stopped while this row was being sent; it may have been created; "
                f"{UNKNOWN_NEXT_RUN}.",
            )

    def _unexpected(self, item: _Item, exc: Exception) -> None:
        if item.done:
            return
        if not item.claimed or self._provably_unsent(item):
            self._release_unsent(item, self._outcome(item, Status.FAILED, f"Not sent: {exc!r}"))
        else:
            self._unknown(
                item, f"Unexpected error ({exc!r}); it may have been created; {UNKNOWN_NEXT_RUN}."
            )

    def _requeue(self, item: _Item, delay: float) -> None:
        if self.halt_reason is not None:
            self._stopped_before_sending(item)
        elif delay <= 0:
            self.ready.put_nowait(item)
        else:
            self.delayed[item] = asyncio.create_task(self._put_later(item, delay))

    async def _put_later(self, item: _Item, delay: float) -> None:
        await self.clock.sleep(delay)
        self.delayed.pop(item, None)
        self.ready.put_nowait(item)

    def _outcome(
        self, item: _Item, status: Status, message: str = "", session_id: str | None = None
    ) -> Outcome:
        return Outcome(item.req.row, status, session_id, message, item.attempts)

    def _finish(self, item: _Item, outcome: Outcome) -> None:
        if item.done:
            return
        item.done = True
        item.claimed = False
        self.outcomes[item.req.row] = outcome
        self._emit(OutcomeEvent(outcome))
        self.remaining -= 1
        if self.remaining == 0:
            self.all_done.set()

    def _on_wait(self, remaining: float) -> None:
        until = self.clock.time() + remaining
        if self._last_wait_until is None or abs(until - self._last_wait_until) > 0.5:
            self._last_wait_until = until
            self._emit(WaitEvent(remaining))

    def _emit(self, event: Event) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a rendering bug must not leave a row half-recorded
            log.exception("on_event callback failed for %r", event)


async def send_all(
    requests: Sequence[Request],
    *,
    client: Client,
    journal: Journal,
    gate: Gate,
    api_base: str,
    run_id: int,
    config: RunConfig,
    clock: Clock,
    stop: asyncio.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
    rng: random.Random | None = None,
) -> dict[int, Outcome]:
    """Send every request; return one `Outcome` per request, keyed by spreadsheet row.

    The caller owns the run record (``journal.start_run`` before, ``journal.finish_run`` after,
    e.g. with `summarize`); this function heartbeats it while it works. ``rng`` seeds the backoff
    jitter (tests pass a seeded one).
    """
    run = _Run(
        requests,
        client=client,
        journal=journal,
        gate=gate,
        api_base=api_base,
        run_id=run_id,
        config=config,
        clock=clock,
        stop=stop,
        on_event=on_event,
        rng=rng if rng is not None else random.Random(),
    )
    return await run.execute()


def preview(requests: Sequence[Request], *, journal: Journal, api_base: str) -> dict[int, Outcome]:
    """Dry run: what a real run would do with each row, from the journal alone (no calls)."""
    out: dict[int, Outcome] = {}
    first: dict[str, Request] = {}
    for req in requests:
        earlier = first.setdefault(req.identity, req)
        if earlier is not req:
            if earlier.fingerprint == req.fingerprint:
                out[req.row] = Outcome(
                    req.row, Status.EXISTS, None, f"Same session as row {earlier.row}; sent once."
                )
            else:
                out[req.row] = Outcome(
                    req.row,
                    Status.CHANGED,
                    None,
                    f"Same identity as row {earlier.row} with different details; only row "
                    f"{earlier.row} would be sent.",
                )
            continue
        entry = journal.lookup(api_base, req)
        if entry is None:
            out[req.row] = Outcome(req.row, Status.WOULD_CREATE)
        elif entry.status == CREATED:
            if entry.fingerprint == req.fingerprint:
                out[req.row] = Outcome(
                    req.row,
                    Status.EXISTS,
                    entry.session_id,
                    f"Already created (session {entry.session_id}); would not be sent.",
                )
            else:
                out[req.row] = Outcome(
                    req.row,
                    Status.CHANGED,
                    entry.session_id,
                    f"Already created as session {entry.session_id} with different details; "
                    "would not be sent.",
                )
        elif entry.status == INFLIGHT and journal.run_alive(entry.run_id):
            out[req.row] = Outcome(
                req.row,
                Status.WOULD_CREATE,
                None,
                f"Being sent right now by run #{entry.run_id}; a new run would wait for it.",
            )
        elif entry.status in (INFLIGHT, UNKNOWN):
            out[req.row] = Outcome(
                req.row,
                Status.WOULD_CREATE,
                None,
                "An earlier run may have created it (no confirmed reply); the run would list the "
                "module's sessions first and send it only if it is not there.",
            )
        else:  # failed / released: nothing was created
            note = f" Last time: {entry.message}" if entry.message else ""
            out[req.row] = Outcome(req.row, Status.WOULD_CREATE, None, note.strip())
    return out


def summarize(outcomes: Mapping[int, Outcome]) -> dict[str, int]:
    """Counts per status (for ``Journal.finish_run`` and the summary line)."""
    return dict(Counter(str(o.status) for o in outcomes.values()))

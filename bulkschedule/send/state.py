"""What a run keeps in memory: each row's progress, whether the run is stopping, and where each
row's worker is with respect to the client (so a stop knows which requests may have left).

The journal holds what must survive the process; this module holds the rest. `track_pace` and
`call` are the two halves of the stop bookkeeping: `call` marks the row whose worker calls the
client, and the wrapped pace (inside the client, in the same task) moves that row from *pacing*
to *sending* when its request is let go.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from bulkschedule.core.errors import ApiError
from bulkschedule.core.request import Request
from bulkschedule.send.events import Listener, StopEvent
from bulkschedule.send.messages import STOP_REQUESTED
from bulkschedule.zoho.client import PaceSlot

T = TypeVar("T")


class Phase(enum.Enum):
    """Where a row's worker is with respect to the client (what a stop may do with it)."""

    IDLE = "idle"  # not inside a client call
    CLAIMING = "claiming"  # waiting for its claim's commit: nothing sent in this call
    CALLING = "calling"  # inside a client call whose pace is not tracked: may be sending
    PACING = "pacing"  # inside the tracked pace: this call's request has not left
    SENDING = "sending"  # the pace let the request go: it may be on the wire


class Withheld(Exception):
    """The run is stopping: the request was not sent (raised before or inside the pace)."""


@dataclass(eq=False)
class Item:
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
    phase: Phase = Phase.IDLE
    left: bool = False  # a request of the current client call passed the pace

    @property
    def may_be_sending(self) -> bool:
        """Whether a request of the current client call may be on the wire right now."""
        return self.phase in (Phase.CALLING, Phase.SENDING)

    @property
    def provably_unsent(self) -> bool:
        """Whether nothing this run sent can have created the row (its worker is claiming it,
        or inside the tracked pace, with no earlier lost reply)."""
        return not self.unresolved and self.phase in (Phase.CLAIMING, Phase.PACING)

    @property
    def tries(self) -> int:
        return self.attempts - self.lock_refusals

    def new_attempts(self) -> int:
        """Attempts not yet added to the journal (each journal write adds its share once)."""
        n = self.attempts - self.journalled
        self.journalled = self.attempts
        return n


class Halt:
    """Whether, and why, the run stopped taking rows (a stop signal or a fatal answer)."""

    def __init__(self, stop: asyncio.Event | None, emit: Listener) -> None:
        self.stop = stop
        self.emit = emit
        self.reason: str | None = None
        self.fatal: str | None = None  # Zoho's answer when a Fatal/AuthExpired stopped the run
        self.halted = asyncio.Event()

    def __call__(self, reason: str, *, fatal: str | None = None) -> None:
        """Stop taking rows (the first reason wins) and tell the caller once."""
        if self.reason is not None:
            return
        self.reason = reason
        self.fatal = fatal
        self.halted.set()
        self.emit(StopEvent(reason))

    def stopping(self) -> bool:
        """Whether to stop taking rows. Reads the stop event directly: the watcher task that
        reacts to it may not have run yet (e.g. a stop set before the run began)."""
        if self.reason is None and self.stop is not None and self.stop.is_set():
            self(STOP_REQUESTED)
        return self.reason is not None


@dataclass(frozen=True, slots=True)
class _InCall:
    stopping: Callable[[], bool]
    item: Item

    def pacing(self) -> None:
        self.item.phase = Phase.PACING
        if self.stopping():
            raise Withheld

    def sending(self) -> None:
        if self.stopping():  # the slot is wasted; over-counting only makes us slower
            raise Withheld
        self.item.phase = Phase.SENDING
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
    after pacing (marking the slot it got done, since nothing left), and the runner records the
    row as not sent. Outside a runner (e.g. ``auth check``) it is a plain pass-through. Without it
    the runner treats a row inside any client call as possibly sent (safe, but a stop then waits
    for rows that are only waiting on the lock).
    """

    async def tracked() -> T:
        in_call = _IN_CALL.get()
        if in_call is None:
            return await pace()
        in_call.pacing()
        result = await pace()
        try:
            in_call.sending()
        except Withheld:
            if isinstance(result, PaceSlot):
                result.done()  # nothing left: the slot counts for one window, not until its hold
            raise
        return result

    return tracked


async def call(
    item: Item, stopping: Callable[[], bool], fn: Callable[[Request], Awaitable[T]]
) -> T:
    """One client call for ``item``, with the row known to `track_pace` while it lasts.

    Raises `Withheld` without calling if the run is ``stopping()``. The phase is left as it was
    when the call is cancelled or fails unexpectedly, so the handler knows whether a request
    may have left; an `ApiError` is an answer (or a known non-send), so the call is over.
    """
    item.left = False
    if stopping():
        raise Withheld
    item.phase = Phase.CALLING
    token = _IN_CALL.set(_InCall(stopping, item))
    try:
        result = await fn(item.req)
    except ApiError:
        item.phase = Phase.IDLE
        raise
    finally:
        _IN_CALL.reset(token)
    item.phase = Phase.IDLE
    return result

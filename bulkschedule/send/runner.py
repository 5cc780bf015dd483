"""A run: journal claim → (gate + limiter, inside the client) → create → journal, for every row.

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

The run is split along its seams:

* this module: what a worker does with one row (`Sender`: claim, list if it may exist, send, act on
  the answer), and the entry points `send_all`, `preview` and `summarize`;
* `pool`: the scheduling (queue, workers, retries with a not-before time, the lockout gate, the
  heartbeat, the stop and its grace);
* `ledger`: settling a row (journal write, `Outcome`, `OutcomeEvent`), in one place;
* `messages`: every text the operator reads, as pure functions;
* `state`: each row's in-memory progress, the halt, and the pace tracking (`track_pace`);
* `events`, `interfaces`: the events a caller hears; `RunConfig` and the two Protocols.

The runner depends on the client and the gate only through the small Protocols in `interfaces`,
so it is tested with a fake client on a fake clock (a 5-minute lockout takes milliseconds).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence

from bulkschedule.core.errors import (
    ApiError,
    AuthExpired,
    Fatal,
    Locked,
    NotSent,
    OutcomeUnknown,
    Rejected,
    ServerError,
)
from bulkschedule.core.problems import Line, Outcome, Status
from bulkschedule.core.request import Request
from bulkschedule.send import messages as msg
from bulkschedule.send.events import (
    Event,
    Listener,
    LockEvent,
    OutcomeEvent,
    RetryEvent,
    StopEvent,
    WaitEvent,
    guarded,
)
from bulkschedule.send.interfaces import Client, Gate, RunConfig
from bulkschedule.send.journal import CREATED, INFLIGHT, UNKNOWN, ClaimKind, Entry, Journal
from bulkschedule.send.ledger import Ledger
from bulkschedule.send.limiter import Clock
from bulkschedule.send.pool import Pool
from bulkschedule.send.state import Halt, Item, Withheld, call, track_pace

__all__ = [
    "UNKNOWN_NEXT_RUN",
    "Client",
    "Event",
    "Gate",
    "LockEvent",
    "OutcomeEvent",
    "RetryEvent",
    "RunConfig",
    "StopEvent",
    "WaitEvent",
    "preview",
    "send_all",
    "summarize",
    "track_pace",
]

UNKNOWN_NEXT_RUN = msg.UNKNOWN_NEXT_RUN


class _Handled:
    """Sentinel: the reconciliation already settled or re-queued the row."""


_HANDLED = _Handled()


class Sender:
    """What a worker does with one row: claim it in the journal, list the module's sessions if
    it may already exist, send it, and act on the answer (settle it, or put it back)."""

    def __init__(
        self,
        *,
        client: Client,
        ledger: Ledger,
        pool: Pool,
        halt: Halt,
        config: RunConfig,
        clock: Clock,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.pool = pool
        self.halt = halt
        self.config = config
        self.clock = clock

    async def process(self, item: Item) -> None:
        """Take ``item`` as far as this worker can: settled, or back on the queue."""
        if item.req.session_id is not None:
            await self._update(item)
            return
        if not await self._claim(item):
            return
        while True:
            if item.unresolved:
                found = await self._reconcile(item)
                if isinstance(found, _Handled):
                    return
                if isinstance(found, str):
                    self.ledger.found(item, found)
                    return
                item.unresolved = False  # listing shows it is not there
                if item.sent_unknown and item.tries >= self.config.max_attempts:
                    self.ledger.failed(item, msg.no_reply_not_created(item.tries, item.last_error))
                    return
            if await self._send(item):  # refused (Withheld) if the run is stopping
                return
            if self.halt.stopping():
                raise Withheld  # no listing after a stop: unknown, the next run lists
            # a lost reply: wait a little, then list before anything is re-sent
            await self.clock.sleep(self.config.reconcile_delay)

    async def _claim(self, item: Item) -> bool:
        """Make sure the journal holds ``item`` in flight for this run; False if it was settled
        or put back instead (created already, busy in another run, taken over meanwhile).
        A NEW or STALE claim marks the item claimed (and a STALE one unresolved) itself."""
        if item.claimed:
            # Back from a listing backoff: the row stayed in flight for this run (a claim would
            # now say BUSY). Make sure nobody took it over meanwhile, then list again.
            return not self.ledger.hold_lost(item)
        claim = await self.ledger.claim(item)
        if claim.kind is ClaimKind.CREATED:
            self.ledger.existing(item, claim)
            return False
        if claim.kind is ClaimKind.BUSY:
            self._busy(item, claim.message)
            return False
        return True

    def _busy(self, item: Item, holder: str) -> None:
        """Another live run holds the row: check again later, or give up after ``busy_wait``."""
        now = self.clock.time()
        if item.busy_since is None:
            item.busy_since = now
        if now - item.busy_since >= self.config.busy_wait:
            message = msg.busy_too_long(holder, self.config.busy_wait)
            self.ledger.finish(item, self.ledger.outcome(item, Status.UNKNOWN, message))
            return
        self.pool.requeue(item, self.config.busy_poll)

    # -- creating and updating --------------------------------------------------------------------

    async def _update(self, item: Item) -> None:
        """One update call (PATCH) of the session ``item.req.session_id``. No claim: an update
        may be sent twice (it sets the same values), so the journal records what it sends
        before it goes, and a lost reply is retried like a 5xx."""
        if not await self.ledger.begin_update(item):
            return
        await self._send(item)

    async def _send(self, item: Item) -> bool:
        """One create (or update) call. Returns False only when a create's reply was lost
        (reconcile, then retry)."""
        item.attempts += 1
        updating = item.req.session_id is not None
        method = self.client.patch_session if updating else self.client.create_session
        try:
            session_id = await call(item, self.halt.stopping, method)
        except (Withheld, asyncio.CancelledError):
            if not item.left and not item.may_be_sending:
                item.attempts -= 1  # it never left (not yet journalled: no write since +1)
            raise
        except OutcomeUnknown as exc:
            if updating:  # an update may be sent again: a lost reply is retried like a 5xx
                self._retry_or_fail(item, exc, msg.SERVER_ERROR)
                return True
            item.sent_unknown = True
            item.unresolved = True
            item.last_error = exc.message
            # keep holding it while we reconcile: another run must see it busy, not stale
            self.ledger.note(item, msg.no_reply_note(exc.message))
            return False
        except ApiError as exc:
            self._refused(item, exc)
        else:
            if updating:
                self.ledger.updated(item)
            else:
                self.ledger.created(item, session_id)
        return True

    def _refused(self, item: Item, exc: ApiError) -> None:
        """Act on an answer to a create call other than a sessionId or a lost reply."""
        if isinstance(exc, Locked):
            self._locked(item, exc)
        elif isinstance(exc, ServerError):
            self._retry_or_fail(item, exc, msg.SERVER_ERROR)
        elif isinstance(exc, NotSent):
            self._retry_or_fail(item, exc, msg.NOT_REACHED)
        elif isinstance(exc, Rejected):
            self.ledger.failed(item, exc.message)
        elif isinstance(exc, Fatal | AuthExpired):
            self.ledger.failed(item, exc.message)
            self.halt(msg.zoho_answered(exc.message), fatal=exc.message)
        else:  # an ApiError without a class: we cannot know if it was created
            self.ledger.unknown(item, msg.unclassified(exc.message))

    def _locked(self, item: Item, exc: Locked) -> None:
        item.lock_refusals += 1
        item.last_error = exc.message
        reopen = self.pool.close_gate(exc)
        if self._locked_again(item):
            # It already waited out a full lock and was refused again at once: this is not a
            # passing lockout (e.g. a permanent 422 "Maximum limit exceeded"); do not loop.
            self.ledger.failed(item, msg.refused_after_full_lock(exc.message))
            return
        item.lock_until = reopen
        self.ledger.release(item, msg.locked_out_note(exc.message))
        self.pool.requeue(item, 0.0)  # workers wait on the gate before claiming it again

    def _locked_again(self, item: Item) -> bool:
        """Whether ``item`` was refused again after it waited out a whole lock period."""
        return item.lock_until is not None and self.clock.time() >= item.lock_until

    def _retry_or_fail(self, item: Item, exc: ApiError, what: str) -> None:
        item.failures += 1
        item.last_error = exc.message
        if item.tries >= self.config.max_attempts:
            self.ledger.failed(item, msg.retries_exhausted(what, item.tries, exc.message))
            return
        self.ledger.release(item, exc.message)
        self.pool.retry(item, self.pool.backoff(item.failures, exc), exc.message)

    # -- listing before re-sending ----------------------------------------------------------------

    async def _reconcile(self, item: Item) -> str | _Handled | None:
        """List before re-sending. Returns the sessionId, None (not there), or _HANDLED."""
        try:
            found = await call(item, self.halt.stopping, self.client.find_session)
        except Locked as exc:
            self._listing_locked(item, exc)
            return _HANDLED
        except (Fatal, AuthExpired) as exc:
            self.ledger.unknown(item, msg.could_not_check(exc.message))
            self.halt(msg.zoho_answered(exc.message), fatal=exc.message)
            return _HANDLED
        except (ServerError, NotSent) as exc:  # passing trouble: list again after a backoff
            self._list_again_later(item, exc)
            return _HANDLED
        except ApiError as exc:  # e.g. a 4xx on the listing: trying again would not help
            self.ledger.unknown(item, msg.listing_failed(exc.message))
            return _HANDLED
        item.list_failures = 0  # the listing answered: a later reconciliation starts afresh
        return found

    def _listing_locked(self, item: Item, exc: Locked) -> None:
        item.last_error = exc.message
        reopen = self.pool.close_gate(exc)
        if self._locked_again(item):
            self.ledger.unknown(item, msg.listing_refused_after_full_lock(exc.message))
            return
        item.lock_until = reopen
        self.ledger.unchecked(item, msg.not_yet_checked_note(exc.message))
        self.pool.requeue(item, 0.0)  # the next claim says STALE: it is listed again

    def _list_again_later(self, item: Item, exc: ApiError) -> None:
        """A listing failed with a 5xx or never reached Zoho: put the row back on the queue with
        the create backoff, still held in flight in the journal (no other run may take it, and
        nothing is sent before a listing succeeds), or, after ``list_attempts`` listings, report
        it ``unknown`` for the next run."""
        item.list_failures += 1
        item.last_error = exc.message
        if item.list_failures >= self.config.list_attempts:
            self.ledger.unknown(item, msg.listing_failed_times(item.list_failures, exc.message))
            return
        delay = self.pool.backoff(item.list_failures, exc)
        held = self.ledger.note(item, msg.listing_again_note(exc.message, delay))
        if not held and self.ledger.hold_lost(item):
            return
        # item.claimed stays True: process() lists again without claiming
        self.pool.retry(item, delay, msg.listing_retry_reason(exc.message))


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
    on_event: Listener | None = None,
    rng: random.Random | None = None,
) -> dict[Line, Outcome]:
    """Send every request; return one `Outcome` per request, keyed by its `Line` (its row, and
    its occurrence for a session of a repeating row).

    The caller owns the run record (``journal.start_run`` before, ``journal.finish_run`` after,
    e.g. with `summarize`); this function heartbeats it while it works. ``rng`` seeds the backoff
    jitter (tests pass a seeded one).
    """
    if not requests:
        return {}
    emit = guarded(on_event)
    halt = Halt(stop, emit)
    ledger = Ledger(
        len(requests), journal=journal, api_base=api_base, run_id=run_id, halt=halt, emit=emit
    )
    pool = Pool(
        requests,
        ledger=ledger,
        halt=halt,
        gate=gate,
        clock=clock,
        config=config,
        rng=rng if rng is not None else random.Random(),
        emit=emit,
    )
    sender = Sender(client=client, ledger=ledger, pool=pool, halt=halt, config=config, clock=clock)
    await pool.run(sender.process)
    return {r.line: ledger.outcomes[r.line] for r in requests}


def preview(requests: Sequence[Request], *, journal: Journal, api_base: str,
            known: Mapping[str, Entry] | None = None) -> dict[Line, Outcome]:
    """Dry run: what a real run would do with each session, from the journal alone (no calls),
    keyed by `Line`. ``known``: the journal's entries of these sessions, when the caller has
    read them already."""
    out: dict[Line, Outcome] = {}
    first: dict[str, Request] = {}
    if known is None:
        known = journal.lookup_many(api_base, requests)
    for req in requests:
        earlier = first.setdefault(req.identity, req)
        if earlier is not req:
            out[req.line] = _preview_repeat(req, earlier)
        else:
            out[req.line] = _preview_one(req, journal, known.get(req.identity))
    return out


def _preview_repeat(req: Request, earlier: Request) -> Outcome:
    """A row whose identity an earlier row of the sheet already has: only that one is sent."""
    if earlier.fingerprint == req.fingerprint:
        return req.outcome(Status.EXISTS, None, msg.preview_same_session(earlier.where))
    return req.outcome(Status.CHANGED, None, msg.preview_same_identity(earlier.where))


def _preview_one(req: Request, journal: Journal, entry: Entry | None) -> Outcome:
    if entry is None:
        return req.outcome(Status.WOULD_CREATE)
    if entry.status == CREATED:
        if entry.fingerprint == req.fingerprint:
            message = msg.preview_exists(entry.session_id)
            return req.outcome(Status.EXISTS, entry.session_id, message)
        message = msg.preview_changed(entry.session_id)
        return req.outcome(Status.CHANGED, entry.session_id, message)
    if entry.status == INFLIGHT and journal.run_alive(entry.run_id):
        message = msg.preview_busy(entry.run_id)
    elif entry.status in (INFLIGHT, UNKNOWN):
        message = msg.preview_maybe_created()
    else:  # failed / released: nothing was created
        message = msg.preview_last_time(entry.message)
    return req.outcome(Status.WOULD_CREATE, None, message)


def summarize(outcomes: Mapping[Line, Outcome]) -> dict[str, int]:
    """Counts per status (of sessions; an invalid row counts once), in `Status` order,
    statuses with none left out (for
    ``Journal.finish_run``, the summary line and ``--json``)."""
    counts = {str(s): 0 for s in Status}
    for o in outcomes.values():
        counts[str(o.status)] += 1
    return {k: v for k, v in counts.items() if v}

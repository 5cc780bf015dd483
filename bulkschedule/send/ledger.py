"""Settling a row: the one place a run writes a row's fate to the journal, gives it its `Outcome`
and tells the caller (`OutcomeEvent`).

Every request gets exactly one `Outcome`, whatever happens (an answer, a stop, a fatal answer, a
bug): `Ledger.finish` is the only way in, and it ignores a second call. The journal write comes
first, so a crash between the two leaves the journal right and only the report short. The other
journal writes about a row (giving it back for a retry, a note while it is held) are here too, so
the scheduling never touches the journal's row states itself.

If the journal cannot be written (the disk is full, the file went bad, another process held it
too long), the run stops at once (`Ledger.journal_failed`): no claim means no request, so every
row sent has its claim in the journal, and a row whose later write failed stays ``inflight`` there,
which the next run looks up in Zoho before sending. The row is still settled here, from what this
run knows, so the report is complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bulkschedule.core.errors import StateError
from bulkschedule.core.problems import Line, Outcome, Status
from bulkschedule.send import messages as msg
from bulkschedule.send.events import Listener, OutcomeEvent
from bulkschedule.send.faults import JournalBusy, state_error
from bulkschedule.send.journal import CREATED, INFLIGHT, Claim, ClaimKind, Entry, Journal
from bulkschedule.send.state import Halt, Item, Phase, Withheld

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A row settled after the journal stopped recording: what it still holds for the row.
NOT_RECORDED = ("the journal could not record this (it still holds the row in flight, so the next "
                "run looks it up in Zoho before sending it)")
#: An update confirmed after the journal stopped recording.
NOT_RECORDED_UPDATE = ("the journal could not record this (it still holds the update as not "
                       "confirmed, so the next run sends it again)")
JOURNAL_FAILED_WHILE_SENDING = (
    "The run stopped (the journal could not be written) while this row was being sent; it may "
    f"have been created; {msg.UNKNOWN_NEXT_RUN}."
)


@dataclass(frozen=True, slots=True)
class _Queued:
    """A durable write waiting for the next group commit (`Ledger._durably`)."""

    write: Callable[[], Any]
    then: Callable[[Any], None] | None
    waiter: asyncio.Future[Any]


class Ledger:
    """The rows of one run as the journal, the report and the caller see them."""

    def __init__(
        self,
        rows: int,
        *,
        journal: Journal,
        api_base: str,
        run_id: int,
        halt: Halt,
        emit: Listener,
    ) -> None:
        self.journal = journal
        self.api_base = api_base
        self.run_id = run_id
        self.halt = halt
        self.emit = emit
        self.outcomes: dict[Line, Outcome] = {}  # by session (`Request.line`)
        self.remaining = rows
        self.all_done = asyncio.Event()
        self.failure: StateError | None = None  # the journal failed: the run stopped on it
        self._queued: list[_Queued] = []  # durable writes awaiting their commit (`_durably`)

    # -- the journal, before and between calls --------------------------------------------------

    async def claim(self, item: Item) -> Claim:
        """Claim ``item`` in the journal (`Journal.claim`) before anything is sent for it. A
        claim that makes the row this run's (NEW, STALE) is written on the item at the commit,
        not when its worker resumes: a worker cancelled meanwhile (a stop) still gives back
        what the journal holds for it."""

        def claimed(claim: Claim) -> None:
            if claim.kind in (ClaimKind.NEW, ClaimKind.STALE):
                item.claimed = True
                item.busy_since = None
            if claim.kind is ClaimKind.STALE:
                item.unresolved = True
                item.stale_note = item.stale_note or claim.message

        return await self._durably(
            item, lambda: self.journal.claim(self.api_base, item.req, self.run_id), claimed
        )

    async def _durably(
        self, item: Item, write: Callable[[], T], then: Callable[[T], None] | None = None
    ) -> T:
        """A durable journal write made before ``item``'s request may leave (a claim, the
        record of an update), with every other one asked for in the same turn of the event loop
        in one transaction (`Journal.together`): one wait for the disk for them all, at 16
        workers a handful, and the event loop blocks once. ``then(result)`` runs at the commit.
        A run stopping before the commit writes nothing (`Withheld`: the row is pending); a
        journal that fails fails every write of the batch, as it would each alone."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._queued.append(_Queued(write, then, waiter))
        if len(self._queued) == 1:
            loop.call_soon(self._commit)
        item.phase = Phase.CLAIMING
        result: T = await waiter
        item.phase = Phase.IDLE
        return result

    def _commit(self) -> None:
        """Commit every write queued since the last commit (see `_durably`)."""
        batch = [q for q in self._queued if not q.waiter.cancelled()]
        self._queued = []
        if not batch:
            return
        if self.halt.stopping():
            for q in batch:
                q.waiter.set_exception(Withheld())
            return
        try:
            with self.journal.together():
                results = [q.write() for q in batch]
        except Exception as exc:  # the journal failed: each worker settles its row
            for q in batch:
                q.waiter.set_exception(exc)
            return
        for q, result in zip(batch, results, strict=True):
            if q.then is not None:
                q.then(result)
            q.waiter.set_result(result)

    def lookup(self, item: Item) -> Entry | None:
        return self.journal.lookup(self.api_base, item.req)

    def beat(self) -> None:
        """Tell other runs this one is alive. A journal busy past its timeout is let pass (the
        next beat will do); any other failure stops the run, since a run that cannot prove it is
        alive would soon have its rows in flight taken over by another."""
        try:
            self.journal.heartbeat(self.run_id)
        except JournalBusy:
            log.warning("could not record the heartbeat of run %s", self.run_id, exc_info=True)
        except StateError as exc:
            self.journal_failed(exc)

    def journal_failed(self, exc: BaseException) -> StateError:
        """The journal (or the pace kept in its file) failed: stop the run at once (no claim,
        so no request, from now on) and keep the first failure for the caller."""
        err = state_error(exc, self.journal.path, running=True)
        if self.failure is None:  # the caller reports it (once); the halt tells the listener
            self.failure = err
        self.halt(str(err))
        return err

    def _write(self, write: Callable[[], T], fallback: T) -> T:
        """A journal write about a row already claimed: on failure, the run stops and
        ``fallback`` stands in (the journal still holds the row in flight for this run)."""
        try:
            return write()
        except StateError as exc:
            self.journal_failed(exc)
            return fallback

    def release(self, item: Item, message: str) -> None:
        """Give a claimed row back (nothing created) before it is tried again."""
        attempts = item.new_attempts()
        self._write(
            lambda: self.journal.release(
                self.api_base, item.req, self.run_id, attempts=attempts, message=message
            ),
            False,
        )
        item.claimed = False

    def unchecked(self, item: Item, message: str) -> None:
        """Give back a row that may exist: whoever claims it next (maybe this run) lists first."""
        attempts = item.new_attempts()
        self._write(
            lambda: self.journal.record_unknown(
                self.api_base, item.req, self.run_id, message, attempts=attempts
            ),
            False,
        )
        item.claimed = False

    def note(self, item: Item, message: str) -> bool:
        """Keep holding the row in flight, with a note; False if the journal no longer holds it
        for this run (a note that could not be written changed nothing: still held)."""
        attempts = item.new_attempts()
        return self._write(
            lambda: self.journal.note(
                self.api_base, item.req, self.run_id, message, attempts=attempts
            ),
            True,
        )

    # -- settling ---------------------------------------------------------------------------------

    def outcome(
        self, item: Item, status: Status, message: str = "", session_id: str | None = None
    ) -> Outcome:
        return item.req.outcome(status, session_id, message, item.attempts)

    def finish(self, item: Item, outcome: Outcome) -> None:
        """Settle ``item`` once: its outcome, the caller's event, and the run's countdown."""
        if item.done:
            return
        item.done = True
        item.claimed = False
        self.outcomes[item.req.line] = outcome
        self.emit(OutcomeEvent(outcome))
        self.remaining -= 1
        if self.remaining == 0:
            self.all_done.set()

    def created(self, item: Item, session_id: str) -> None:
        attempts = item.new_attempts()
        stored = self._write(
            lambda: self.journal.record_created(
                self.api_base, item.req, self.run_id, session_id, attempts=attempts
            ),
            None,
        )
        message = NOT_RECORDED if stored is None else msg.possible_duplicate(session_id, stored)
        self.finish(item, self.outcome(item, Status.CREATED, message, session_id))

    async def begin_update(self, item: Item) -> bool:
        """Record what an update sends before it leaves; False (the run stops, the row is
        pending) if the journal cannot."""
        try:
            await self._durably(
                item, lambda: self.journal.begin_update(self.api_base, item.req, self.run_id)
            )
        except StateError as exc:
            self.journal_failed(exc)
            self.finish(item, self.halt_outcome(item))
            return False
        return True

    def updated(self, item: Item) -> None:
        """The session now holds the row's details."""
        attempts = item.new_attempts()
        recorded = self._write(
            lambda: self.journal.record_updated(
                self.api_base, item.req, self.run_id, attempts=attempts
            ),
            False,
        )
        message = msg.UPDATED if recorded else f"{msg.UPDATED}; {NOT_RECORDED_UPDATE}"
        self.finish(item, self.outcome(item, Status.UPDATED, message, item.req.session_id))

    def found(self, item: Item, session_id: str) -> None:
        """A listing found the row: created by this run's lost reply, or by an earlier run."""
        attempts = item.new_attempts()
        stored = self._write(
            lambda: self.journal.record_created(
                self.api_base,
                item.req,
                self.run_id,
                session_id,
                attempts=attempts,
                message=msg.FOUND_BY_LISTING,
            ),
            None,
        )
        if item.sent_unknown:  # this run's own request did land
            status, message = Status.CREATED, msg.found_own()
        else:
            status, message = Status.EXISTS, msg.found_existing(item.stale_note)
        if stored is None:
            message = f"{message}; {NOT_RECORDED}"
        self.finish(item, self.outcome(item, status, message, stored or session_id))

    def existing(self, item: Item, claim: Claim) -> None:
        """The journal says it was created already (nothing to write)."""
        if claim.changed:
            status, message = Status.CHANGED, msg.created_differently(claim.session_id)
        else:
            status, message = Status.EXISTS, msg.already_created(claim.session_id)
        self.finish(item, self.outcome(item, status, message, claim.session_id))

    def failed(self, item: Item, message: str) -> None:
        attempts = item.new_attempts()
        self._write(
            lambda: self.journal.record_failed(
                self.api_base, item.req, self.run_id, message, attempts=attempts
            ),
            False,
        )
        self.finish(item, self.outcome(item, Status.FAILED, message))

    def unknown(self, item: Item, message: str) -> None:
        attempts = item.new_attempts()
        self._write(
            lambda: self.journal.record_unknown(
                self.api_base, item.req, self.run_id, message, attempts=attempts
            ),
            False,
        )
        self.finish(item, self.outcome(item, Status.UNKNOWN, message))

    def hold_lost(self, item: Item) -> bool:
        """Whether a row held in flight across a listing backoff is no longer this run's in the
        journal (another run judged this one dead and took it over, or an operator forgot it).
        If so the row is settled from what the journal says, without a call, and True returned.
        """
        entry = self.lookup(item)
        if entry is not None and entry.status == INFLIGHT and entry.run_id == self.run_id:
            return False
        item.claimed = False
        if entry is not None and entry.status == CREATED and entry.session_id:
            changed = entry.fingerprint != item.req.fingerprint
            claim = Claim(ClaimKind.CREATED, session_id=entry.session_id, changed=changed)
            self.existing(item, claim)
            return True
        state = "nothing (forgotten)" if entry is None else entry.status
        if entry is not None and entry.run_id is not None and entry.run_id != self.run_id:
            state += f" for run #{entry.run_id}"
        self.finish(item, self.outcome(item, Status.UNKNOWN, msg.hold_lost(state)))
        return True

    # -- settling what a stop (or a bug) left -----------------------------------------------------

    def _update_may_have_left(self, item: Item) -> bool:
        """An update whose request may have left: settled ``unknown`` (the journal keeps it as
        not confirmed, so the next run sends it again); True if so."""
        if item.req.session_id is None or item.provably_unsent or not item.attempts:
            return False
        self.finish(item, self.outcome(item, Status.UNKNOWN, msg.update_unconfirmed(),
                                       item.req.session_id))
        return True

    def halt_outcome(self, item: Item) -> Outcome:
        """What a row the run stopped before (or while) sending becomes."""
        if item.unresolved:
            return self.outcome(item, Status.UNKNOWN, msg.halted_unresolved())
        if self.halt.fatal is not None:
            message = msg.halted_by_fatal(self.halt.fatal, item.last_error)
            return self.outcome(item, Status.FAILED, message)
        return self.outcome(item, Status.PENDING, msg.halted_before_sending(item.last_error))

    def release_unsent(self, item: Item, outcome: Outcome) -> None:
        """Give a claimed row that was provably not sent back to the journal, then settle it."""
        if item.claimed:
            self.release(item, outcome.message)
        self.finish(item, outcome)

    def stopped_before_sending(self, item: Item) -> None:
        """The run stopped before this row's next request left (`Withheld`)."""
        if item.done:
            return
        if item.claimed and item.unresolved:  # an earlier request may have created it
            self.unknown(item, self.halt_outcome(item).message)
        else:
            self.release_unsent(item, self.halt_outcome(item))

    def abandon(self, item: Item) -> None:
        """The worker was cancelled (a stop, the stop grace ran out, or the caller cancelled the
        run, e.g. a hard stop)."""
        if item.done:
            return
        if self._update_may_have_left(item):
            return
        if not item.claimed or item.provably_unsent:
            self.release_unsent(item, self.halt_outcome(item))
        elif item.unresolved:  # an earlier request got no reply (any call now is a listing)
            self.unknown(item, self.halt_outcome(item).message)
        else:
            self.unknown(item, msg.stopped_while_sending())

    def lost_journal(self, item: Item, exc: BaseException) -> None:
        """The journal (or the pace kept in its file) failed while this row was worked on: the
        run stops; the row is pending if its request provably did not leave (a failed claim
        sends nothing), else unknown (the journal still holds it in flight: looked up first)."""
        self.journal_failed(exc)
        if item.done or self._update_may_have_left(item):
            return
        if not item.claimed or item.provably_unsent:
            self.release_unsent(item, self.halt_outcome(item))
        else:
            self.unknown(item, JOURNAL_FAILED_WHILE_SENDING)

    def unexpected(self, item: Item, exc: Exception) -> None:
        """A bug or an unclassified failure: never lose the row."""
        if item.done or self._update_may_have_left(item):
            return
        if not item.claimed or item.provably_unsent:
            failed = self.outcome(item, Status.FAILED, msg.unexpected_unsent(exc))
            self.release_unsent(item, failed)
        else:
            self.unknown(item, msg.unexpected_maybe_sent(exc))

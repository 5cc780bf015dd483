"""Runs started from the upload page: one at a time, on the server, reported as they go.

A run is `job.send` in an asyncio task; its `LiveRun` follows the events through the shared
`Tally` (counts, rate, ETA, lockout, as the terminal shows them) and keeps the rows needing
attention, so any number of tabs, and a reload, see the same progress. A tab's event stream
(`progress_events`) sends those counts, at most a few times a second however fast rows settle,
never a message per row. Its id is the journal's (`job.send`'s ``on_register``), so a finished
run is found again in the journal's history after a restart. On shutdown, runs stop as after a
Ctrl-C: calls in flight finish and the results workbook is written.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulkschedule.app import job
from bulkschedule.app.logs import log_lock, log_outcome, log_summary, redact
from bulkschedule.app.progress import Tally
from bulkschedule.core.problems import Outcome, Status, changes_text
from bulkschedule.send.journal import Journal, RunInfo
from bulkschedule.send.runner import Event, LockEvent, OutcomeEvent, StopEvent
from bulkschedule.web.access import Refused

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bulkschedule.app.target import Target
    from bulkschedule.send.plan import Zoho
    from bulkschedule.sheet.schema import Validation

log = logging.getLogger("bulkschedule")

# On shutdown (SIGTERM), within the 10 s a service manager usually allows: the calls in flight
# get STOP_GRACE seconds to finish, then are abandoned (their rows become "unknown", which the
# next run settles by listing) and the run gets HARD_GRACE more to journal that and write its
# results. Every row sent is journalled before it is sent, so each step is a safe point.
STOP_GRACE = 4.0
HARD_GRACE = 2.0
MAX_KEPT = 20  # finished runs kept in memory (older ones come back from the journal)
STREAM_INTERVAL = 0.25  # seconds between two snapshots of a stream: at most 4 a second
KEEPALIVE = 5.0  # seconds between snapshots when nothing happens

STATE_TEXT = {
    "starting": "Starting: checking the credentials",
    "running": "Running",
    "stopping": "Stopping: finishing the calls in flight",
    "finished": "Finished",
    "interrupted": "Stopped before the end",
    "failed": "Failed",
}

#: Statuses a run's page does not list under "Rows needing attention" (an invalid row is shown
#: with the upload's problems).
FINE = frozenset({Status.INVALID, Status.CREATED, Status.EXISTS, Status.WOULD_CREATE,
                  Status.UPDATED})
#: The page's words for job.ADD_UPDATE, whose "--update" is the command line's.
ADD_UPDATE = ("its session in Zoho differs from the row: run again with 'also apply updates' "
              "ticked to update it")


def attention_text(outcome: Outcome) -> str:
    """A row's message on the run's page: what differs first, for a session that differs."""
    message = ADD_UPDATE if outcome.message == job.ADD_UPDATE else outcome.message or ""
    changes = changes_text(outcome.changes)
    return f"{changes} ({message})" if changes and message else changes or message


@dataclass
class LiveRun:
    """One run started from the page: what the progress stream shows, updated by runner events.

    It lives on the server so a reload (or a second tab) sees the same state; ``changed`` is
    replaced on every update so each waiting stream wakes once per change.
    """

    id: int
    upload_id: str
    name: str
    dry_run: bool
    total: int
    target: str
    results_path: Path
    limit_per_min: float | None = None
    update: bool = False  # "also apply updates": sessions whose row differs are updated
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    hard_stop: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.time)
    state: str = "starting"  # starting | running | stopping | finished | interrupted | failed
    message: str | None = None
    attention: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    tally: Tally = field(init=False)  # counts, rate, ETA, lockout: as the terminal shows them

    def __post_init__(self) -> None:
        self.tally = Tally(self.total, limit_per_min=self.limit_per_min)

    @property
    def finished(self) -> bool:
        return self.state in ("finished", "interrupted", "failed")

    def touch(self) -> None:
        old, self.changed = self.changed, asyncio.Event()
        old.set()

    def on_event(self, event: Event) -> None:
        self.tally(event)
        if isinstance(event, OutcomeEvent):
            outcome = event.outcome
            # an invalid row was never sent: it is shown with the upload's problems
            if outcome.status not in FINE:
                # a session of a repeating row: its row and date
                self.attention.append({"row": outcome.row, "status": str(outcome.status),
                                       "date": outcome.date if outcome.occurrence else None,
                                       "message": redact(attention_text(outcome))})
            log_outcome(log, outcome, sheet=self.name)
        elif isinstance(event, LockEvent):
            log_lock(log, event.until, event.reason)
        elif isinstance(event, StopEvent) and not self.stop.is_set():
            self.message = redact(event.reason)
        self.touch()

    def snapshot(self) -> dict[str, Any]:
        """Everything the progress panel shows, as JSON: counts, rate, ETA, lockout."""
        tally = self.tally
        return {
            "id": self.id,
            "state": self.state,
            "state_text": STATE_TEXT.get(self.state, self.state),
            "dry_run": self.dry_run,
            "update": self.update,
            "total": self.total,
            "done": tally.done,
            "counts": tally.sorted_counts(),
            "rate": round(tally.rate(), 1),
            "eta": None if self.finished else tally.eta(),
            "lock_left": 0.0 if self.finished else round(tally.lock_left(), 1),
            "retries": tally.retries,
            "message": self.message,
            "attention": list(self.attention),
            "results": f"/runs/{self.id}/results.xlsx"
            if self.finished and self.results_path.is_file() else None,
        }


async def progress_events(
    run: LiveRun,
    *,
    closing: Callable[[], bool] = lambda: False,
    interval: float = STREAM_INTERVAL,
    keepalive: float = KEEPALIVE,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
    """A run's event stream: ("progress", snapshot) now, then after each change but at most one
    per ``interval`` (a burst of rows is one snapshot of their counts, however fast they settle),
    or every ``keepalive`` when nothing happens; ("done", snapshot) last. Ends early when the
    server is ``closing``. ``clock`` and ``sleep`` are the stream's time (tests: a fake clock).
    """
    while True:
        changed, finished = run.changed, run.finished
        yield ("done" if finished else "progress"), run.snapshot()
        if finished or closing():  # a run that ended meanwhile gets its "done" next
            return
        sent = clock()
        await _first(changed.wait(), sleep(keepalive))
        wait = sent + interval - clock()
        if wait > 0 and not run.finished:
            await sleep(wait)  # what happens meanwhile is in the next snapshot


async def _first(*waits: Awaitable[object]) -> None:
    """Until the first of ``waits`` is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class Busy(Exception):
    """Another run is still going: one at a time."""

    def __init__(self, run: LiveRun) -> None:
        super().__init__(f"run {run.id} is still running")
        self.run = run


class Runs:
    """The runs of this server, newest last, and the journal's history of every run."""

    def __init__(self, state_dir: Path,
                 on_finished: Callable[[LiveRun], None] | None = None) -> None:
        self.state_dir = state_dir
        self.on_finished = on_finished  # e.g. count its results workbook in the quota
        self.live: OrderedDict[int, LiveRun] = OrderedDict()
        self.starting = asyncio.Lock()  # a check-then-start must not interleave
        self.closing = False

    def get(self, run_id: int) -> LiveRun | None:
        return self.live.get(run_id)

    def current(self) -> LiveRun | None:
        for run in self.live.values():
            if not run.finished:
                return run
        return None

    def busy_uploads(self) -> set[str]:
        """The uploads a run is using now: never pruned under it."""
        return {run.upload_id for run in self.live.values() if not run.finished}

    def hard_stop_all(self) -> None:
        """Abandon the calls in flight of every run (a second SIGTERM or Ctrl-C)."""
        for run in self.live.values():
            run.stop.set()
            run.hard_stop.set()
            run.touch()

    def journal_runs(self, limit: int = 50) -> list[RunInfo]:
        with Journal(self.state_dir) as journal:
            return journal.runs(limit)

    def journal_run(self, run_id: int) -> RunInfo | None:
        with Journal(self.state_dir) as journal:
            return journal.run(run_id)

    async def start(self, upload_id: str, folder: Path, meta: Mapping[str, Any],
                    validation: Validation, *, dry_run: bool, target: Target,
                    zoho: Zoho | None = None, update: bool = False,
                    note: str | None = None) -> LiveRun:
        """Start `job.send` as a task; return its run once the journal has registered it (its
        journal id is the run's id everywhere: page, event stream, history, download).
        ``zoho``: what the online stage listed (sessions Zoho already holds are never created
        again); ``update``: also update the sessions whose row differs; ``note``: a warning the
        run starts with (an org that could not be read)."""
        current = self.current()
        if current is not None:
            raise Busy(current)
        results = folder / f".results-{secrets.token_hex(8)}.xlsx"
        run = LiveRun(id=0, upload_id=upload_id, name=meta["name"], dry_run=dry_run,
                      total=validation.valid, target=target.api_base,
                      results_path=results, limit_per_min=target.send.calls_per_minute,
                      message=note, update=update)
        registered = asyncio.Event()

        def on_register(run_id: int) -> None:
            run.id = run_id
            self.live[run_id] = run
            registered.set()

        run.task = asyncio.create_task(self._execute(run, validation, target, on_register,
                                                     zoho, update))
        waiter = asyncio.ensure_future(registered.wait())
        try:
            await asyncio.wait({run.task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not registered.is_set():  # it failed before it began (e.g. an unusable API base)
            raise Refused(422, run.message or "the run could not be registered in the journal")
        while len(self.live) > MAX_KEPT:
            oldest = next(iter(self.live))
            if not self.live[oldest].finished:
                break
            self.live.pop(oldest)
        return run

    async def _execute(self, run: LiveRun, validation: Validation, target: Target,
                       on_register: Callable[[int], None],
                       zoho: Zoho | None, update: bool) -> None:
        def started(to_send: int, known: int) -> None:
            if run.state == "starting":
                run.state = "running"
            run.touch()

        if run.dry_run:
            run.state = "running"
        try:
            result = await job.send(
                validation, target.send, tokens=target.tokens, results_path=run.results_path,
                dry_run=run.dry_run, stop=run.stop, hard_stop=run.hard_stop,
                on_event=run.on_event, on_start=started, on_register=on_register,
                summary_extra={"file": run.name, "started from": "upload page"}, zoho=zoho,
                update=update)
        except job.JobError as err:
            run.state, run.message = "failed", redact(str(err))
        except OSError as err:
            run.state = "failed"
            run.message = f"cannot write the results workbook: {err.strerror or err}"
        except asyncio.CancelledError:
            run.state, run.message = "interrupted", "the server stopped during the run"
            raise
        except Exception:
            log.exception("web run %s failed", run.id)
            run.state, run.message = "failed", "internal error: see the server log"
        else:
            run.tally.counts = dict(result.counts)
            run.state = "interrupted" if run.stop.is_set() else "finished"
            if result.halted:
                run.message = redact(result.halted)
            log_summary(log, result.counts, sheet=run.name)
        finally:
            run.touch()
            if self.on_finished is not None:
                self.on_finished(run)

    async def shutdown(self) -> None:
        """Bring every run to a safe point within STOP_GRACE + HARD_GRACE (+1) seconds: stop
        taking rows, let the calls in flight finish, abandon those still out, write the results;
        then wake the streams so they end."""
        self.closing = True
        tasks = [r.task for r in self.live.values() if r.task is not None and not r.task.done()]
        for run in self.live.values():
            run.stop.set()
            run.touch()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
            if pending:
                for run in self.live.values():
                    run.hard_stop.set()
                _, pending = await asyncio.wait(pending, timeout=HARD_GRACE)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=1.0)
        for run in self.live.values():
            run.touch()

"""One sheet through the whole pipeline: read, validate, build payloads, send (or preview), report.

`run`, `inbox` and the upload page all call this, so a sheet behaves the same whichever door it
comes in by. The CLI keeps only flags, prompts, progress and exit codes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gc
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bulkschedule.app.results import write_results
from bulkschedule.core.constants import EXIT_CANNOT_START, EXIT_INCOMPLETE, EXIT_OK, PayloadStyle
from bulkschedule.core.errors import AuthError, JobError, ReadError, StateError
from bulkschedule.core.problems import (
    DONE_STATUSES,
    PLANNED_STATUSES,
    Line,
    Outcome,
    Status,
    line_of,
)
from bulkschedule.core.request import Request
from bulkschedule.org.cache import OrgCache
from bulkschedule.org.preflight import resolve_offline, with_problems
from bulkschedule.send.api import SendSettings, open_api
from bulkschedule.send.events import guarded
from bulkschedule.send.faults import state_error
from bulkschedule.send.journal import LOCK_WAIT, ClaimKind, Entry, Journal, open_journal
from bulkschedule.send.limiter import Clock, SystemClock
from bulkschedule.send.messages import already_created
from bulkschedule.send.plan import Action, Plan, Step, Zoho, make_plan
from bulkschedule.send.runner import (
    Event,
    OutcomeEvent,
    RunConfig,
    StopEvent,
    preview,
    send_all,
    summarize,
    track_pace,
)
from bulkschedule.sheet.limits import ReadLimits
from bulkschedule.sheet.parse import format_date, typed_id
from bulkschedule.sheet.payload import build_request, oversized
from bulkschedule.sheet.reader import give_back_freed_memory, read_holidays, read_table
from bulkschedule.sheet.schema import SessionRow, Validation, preload, validate
from bulkschedule.zoho.auth import TokenProvider
from bulkschedule.zoho.urls import check_base_url

__all__ = [
    "EXIT_INCOMPLETE",
    "JobError",
    "JobResult",
    "SendSettings",
    "load",
    "send",
]

T = TypeVar("T")

DEFAULT_LIMITS = ReadLimits()

#: The message of a row whose session was found in Zoho before sending (issue 11's contract).
ALREADY_IN_ZOHO = "already in Zoho"
#: A row whose session differs from it, in a run that does not update.
ADD_UPDATE = "its session in Zoho differs from the row; run with --update to update it"

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    validation: Validation
    #: one per session (a valid repeating row's each), one per invalid row: by `Line`
    outcomes: dict[Line, Outcome]
    results_path: Path | None
    summary: dict[str, Any]
    exit_code: int
    halted: str | None = None  # why the run stopped taking rows (a fatal answer), if it did
    counts: dict[str, int] = field(default_factory=dict)
    run_id: int | None = None  # the journal's id for this run (history, web pages)
    plan: Plan | None = None  # what the run decided for each row before sending


def load(
    sheet: str | Path,
    *,
    sheet_name: str | None = None,
    course: str | None = None,
    batch: str | None = None,
    module: str | None = None,
    month_first: bool = False,
    today: dt.date | None = None,
    names_from: OrgCache | None = None,
    payload_style: PayloadStyle = "query",
    limits: ReadLimits = DEFAULT_LIMITS,
    holidays: str | Path | None = None,
) -> Validation:
    """Read and validate; an unreadable file is a `JobError` (one line, exit 2).

    A row whose request could not be sent in ``payload_style`` (too long for a request line)
    is an error like any other.

    Names typed in the ID columns resolve from ``names_from`` (the org cache, whatever its age);
    without it, or where it holds nothing of that kind, the problem says to use ``--online``.

    ``holidays``: a file of dates no repeating row has a session on (``--holidays``), besides a
    workbook's own Holidays sheet; unreadable, it is a `JobError` like the sheet.
    """

    if Path(sheet).suffix.lower() not in (".csv", ".txt"):
        # calamine releases the GIL while parsing a workbook; the csv module does not, and
        # a background import would only fight it for the GIL
        preload()
    try:
        table = read_table(sheet, sheet_name, limits=limits)
    except ReadError as err:
        raise JobError(str(err)) from err
    except OSError as err:
        raise JobError(f"{sheet}: cannot read the file: {err.strerror or err}") from err
    if holidays is not None:
        try:
            table.holidays = (*table.holidays, *read_holidays(holidays, limits=limits))
        except ReadError as err:
            raise JobError(f"--holidays {err}") from err
        except OSError as err:
            raise JobError(f"--holidays {holidays}: cannot read the file: "
                           f"{err.strerror or err}") from err
    names = resolve_offline(table, names_from,
                            given={"courseId": course, "batchId": batch, "moduleId": module})
    checked = validate(names.table, course=course, batch=batch, module=module,
                       month_first=month_first, today=today)
    unsendable = oversized(checked.sessions, payload_style) if not checked.fatal else []
    give_back_freed_memory()  # validation's arrays are gone: the sessions are built
    if not (names.resolved or names.problems or unsendable):
        return checked
    return with_problems(checked, [*names.problems, *unsendable], table=table, names=names)


def check_results_path(path: Path) -> None:
    """Find out before sending, not after every session is created, that the results workbook
    could not be kept: a `JobError` saying why."""
    if path.suffix.lower() != ".xlsx":
        raise JobError(f"--results {path}: the file name must end in .xlsx")
    folder = path.parent
    if path.is_dir():
        raise JobError(f"--results {path} is a folder")
    if not folder.is_dir():
        raise JobError(f"cannot write the results workbook {path}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):  # it is saved beside, then renamed over
        raise JobError(f"cannot write the results workbook {path}: the folder {folder} is not "
                       "writable")


def requests_for(validation: Validation) -> list[Request]:

    return [build_request(s) for s in validation.sessions]


def plan_for(validation: Validation, journal: Journal, base: str, zoho: Zoho | None, *,
             requests: Sequence[Request] | None = None,
             entries: Mapping[str, Entry] | None = None) -> Plan:
    """What a run of ``validation`` will do with each row (`send.plan.make_plan`), from the
    journal and ``zoho`` (the online stage's listings, or None when they were not read); reads
    only. ``requests`` and ``entries``: the rows' requests and journal entries when the caller
    has them already."""
    if requests is None:
        requests = requests_for(validation)
    if entries is None:
        entries = journal.lookup_many(base, requests)
    named = [r.session_id for r in requests if r.session_id is not None]
    return make_plan(requests, journal=entries, sessions=journal.by_session(base, named),
                     zoho=zoho, invalid=validation.n_rows - validation.valid_rows,
                     named_elsewhere=named_on_invalid_rows(validation))


def named_on_invalid_rows(validation: Validation) -> list[str]:
    """The sessionIds typed on rows that are not valid (the sheet names them all the same)."""
    at = validation.headers.index.get("sessionId")
    if at is None:
        return []
    valid = {s.row for s in validation.sessions}
    cells = validation.table.columns()[at].tolist()
    typed = (typed_id(c) for row, c in zip(validation.table.row_numbers, cells, strict=True)
             if row not in valid)
    return [t for t in typed if t is not None]


def plan_document(result: JobResult) -> dict[str, Any]:
    """``run --dry-run --json``: ``{"file", "rows", "plan": {"create", "update", "unchanged",
    "invalid"}, "actions": [{"row", "action", "sessionId", "changes": {field: [old, new]}}]}``,
    one action per input row (a contract: scripts read it). A valid repeating row has one
    action per session, each with its ``"occurrence"`` (n from 1) after ``"row"``; ``rows``
    counts the actions."""
    steps = result.plan.by_line() if result.plan is not None else {}
    actions = []
    counts = {str(a): 0 for a in Action}
    for line, outcome in sorted(result.outcomes.items()):
        step = steps.get(line)
        action = Action.INVALID if step is None else step.action
        if outcome.status == Status.INVALID:
            action = Action.INVALID
        counts[str(action)] += 1
        where: dict[str, Any] = {"row": outcome.row}
        if outcome.occurrence is not None:
            where["occurrence"] = outcome.occurrence
        actions.append({**where, "action": str(action),
                        "sessionId": outcome.session_id if step is not None else None,
                        "changes": {k: list(v) for k, v in (outcome.changes or {}).items()}})
    return {"file": str(result.validation.table.file), "rows": len(result.outcomes),
            "plan": counts, "actions": actions}


def default_results_path(sheet: str | Path) -> Path:
    """``term.xlsx`` -> ``term.results.xlsx`` beside it."""
    p = Path(sheet)
    return p.with_name(f"{p.stem}.results.xlsx")


def repeating_sessions(validation: Validation) -> dict[int, list[SessionRow]]:
    """The sessions of each valid repeating row, by row (empty for a sheet without one); a line
    of a results workbook given back that names one session of a repeating row is that one."""
    out: dict[int, list[SessionRow]] = {}
    for s in validation.sessions:
        if s.occurrence is not None:
            out.setdefault(s.row, []).append(s)
    return out


def complete(validation: Validation, outcomes: Mapping[Line, Outcome]) -> dict[Line, Outcome]:
    """One Outcome for every session of a valid row (a repeating row's each) and every invalid
    row (one line however many sessions it would make), sessions never reached included, by
    `Line` in sheet order."""
    return dict(_completed(validation, outcomes))


def invalid_outcomes(validation: Validation) -> dict[Line, Outcome]:
    """`complete`'s outcomes of the invalid rows alone (what a run knows before it sends):
    without an outcome for every other row made only to be dropped."""
    return dict(_completed(validation, {}, invalid_only=True))


def _completed(validation: Validation, outcomes: Mapping[Line, Outcome], *,
               invalid_only: bool = False) -> Iterator[tuple[Line, Outcome]]:
    messages: dict[int, list[str]] = {}
    for p in validation.problems:
        if p.is_error and p.row is not None:
            messages.setdefault(p.row, []).append(f"{p.column}: {p.message}" if p.column
                                                  else p.message)
    sheet_errors = [p.message for p in validation.problems if p.is_error and p.row is None]
    repeating = repeating_sessions(validation)
    known = _SameLines(outcomes)
    for row in validation.table.row_numbers:
        sessions = repeating.get(row)
        if sessions is not None:
            if invalid_only:
                continue
            for s in sessions:
                line = known.key(line_of(row, s.occurrence))
                yield line, outcomes.get(line) or Outcome(
                    row, Status.PENDING, None, "not reached", occurrence=s.occurrence,
                    date=format_date(s.date))
            continue
        line = known.key(line_of(row, None))
        if line in outcomes:
            yield line, outcomes[line]
        elif row in validation.error_rows or validation.fatal:
            text = "; ".join(messages.get(row) or sheet_errors or ["invalid"])
            yield line, Outcome(row, Status.INVALID, None, text)
        elif not invalid_only:
            yield line, Outcome(row, Status.PENDING, None, "not reached")


class _SameLines:
    """The keys of ``outcomes`` themselves, for lines asked in sheet order: the report keyed by
    them shares the runner's tuples (`Request.line`) instead of an equal new one a line."""

    def __init__(self, outcomes: Mapping[Line, Outcome]) -> None:
        self.lines = sorted(outcomes)  # the mapping's own key objects
        self.at = 0

    def key(self, line: Line) -> Line:
        """``outcomes``' key equal to ``line``, else ``line`` (also when asked out of order)."""
        lines, at = self.lines, self.at
        while at < len(lines) and lines[at] < line:
            at += 1
        self.at = at
        if at < len(lines) and lines[at] == line:
            self.at = at + 1
            return lines[at]
        return line


async def _unless(event: asyncio.Event | None, work: Coroutine[Any, Any, T]) -> T | None:
    """Await ``work``; if ``event`` is set first, cancel it, wait for it to unwind, return None."""
    if event is None:
        return await work
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            # Not suppressed if we are being cancelled ourselves: that must propagate.
            await asyncio.wait({task})
    if task.cancelled():
        return None
    return task.result()


def exit_code_for(outcomes: Mapping[Line, Outcome], *, dry_run: bool) -> int:
    ok = PLANNED_STATUSES if dry_run else DONE_STATUSES
    return EXIT_OK if all(o.status in ok for o in outcomes.values()) else EXIT_INCOMPLETE


@dataclass(frozen=True)
class Hooks:
    """What a door hears from `send` (see its docstring for when each is called)."""

    on_event: Callable[[Event], None] | None = None
    on_start: Callable[[int, int], None] | None = None
    on_register: Callable[[int], None] | None = None


@dataclass(frozen=True)
class Stops:
    """How a door stops a run: ``stop`` lets the calls in flight finish (up to the runner's
    grace); ``hard_stop`` abandons them too."""

    stop: asyncio.Event | None = None
    hard_stop: asyncio.Event | None = None

    @property
    def requested(self) -> bool:
        return self.stop is not None and self.stop.is_set()


@dataclass(frozen=True)
class _Report:
    outcomes: dict[Line, Outcome]  # one per session, one per invalid row
    summary: dict[str, Any]
    counts: dict[str, int]
    results_error: str | None = None  # why the workbook was not written (journal failed too)


async def send(
    validation: Validation,
    settings: SendSettings,
    *,
    tokens: Callable[[aiohttp.ClientSession], TokenProvider],
    results_path: Path | None,
    dry_run: bool = False,
    stop: asyncio.Event | None = None,
    hard_stop: asyncio.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_register: Callable[[int], None] | None = None,
    clock: Clock | None = None,
    summary_extra: Mapping[str, object] | None = None,
    zoho: Zoho | None = None,
    update: bool = False,
    journal_wait: float = LOCK_WAIT,
) -> JobResult:
    """Send the valid rows of ``validation`` (or preview them) and write the results workbook.

    ``tokens`` builds the token provider once the HTTP session exists (the refresh flow needs
    it). ``on_register(run_id)`` is called as soon as the journal has registered the run (before
    anything is sent); ``on_start(to_send, already_known)`` once the credentials are proven.
    ``on_event`` hears one `OutcomeEvent` for every input row, whoever settled it: invalid rows
    first (they are known before anything is sent), then the runner's, then any row the runner
    did not report (a dry run's previews, rows never reached), in row order.
    ``stop`` stops taking rows and lets the calls in flight finish (up to the runner's grace);
    ``hard_stop`` (a second Ctrl-C) also abandons the calls in flight: rows whose request may
    have left become ``unknown`` (the next run settles them by listing before it sends anything);
    rows still waiting for the lock or a rate-limit slot are ``pending``.
    The workbook is written whatever happens, including a stop signal or a fatal answer.

    Before anything is sent, every row gets its action (`send.plan`): rows that are no session
    yet are created; rows that are one (by sessionId, journal or a match in ``zoho``, the
    online stage's listings) and hold the same are ``exists``, never sent; rows whose session
    differs are updated with ``update`` (``updated``; ``would-update`` in a dry run), else
    reported ``changed`` with their changes. A session found in Zoho that the journal did not
    know is recorded in it (never created again).

    The state folder and its journal: one that cannot be used (unwritable folder, unreadable
    journal, held by another process for more than ``journal_wait`` seconds, with a warning in
    the log while it waits) is a `JobError` before anything is sent. A journal that fails during
    the run (the disk is full) stops it at once; the workbook is written, then a `JobError`
    with the reason.
    """
    try:
        base = check_base_url(settings.api_base)
    except ValueError as err:
        raise JobError(str(err)) from err
    run = await _SheetRun.start(validation, settings, base, dry_run=dry_run,
                                clock=clock or SystemClock(),
                                hooks=Hooks(on_event, on_start, on_register),
                                stops=Stops(stop, hard_stop), journal_wait=journal_wait,
                                zoho=zoho, update=update)
    sent: dict[Line, Outcome] = {}
    status = "finished"
    failure: StateError | None = None
    try:
        sent = await run.sent(tokens)
    except StateError as err:  # the journal failed mid-run: every row was still settled
        status, failure, sent = "failed", err, run.over()
    except JobError:
        status = "failed"
        raise
    finally:
        report = run.report(sent, status, results_path, summary_extra,
                            journal_failed=failure is not None)
    if failure is not None:
        raise JobError(_failure_line(failure, results_path, report)) from failure
    return run.result(sent, report, results_path)


def _failure_line(failure: StateError, results_path: Path | None, report: _Report) -> str:
    """The journal's reason, and where the rows' outcomes went."""
    line = str(failure).rstrip(".")
    if results_path is None:
        return line
    if report.results_error is not None:
        return (f"{line}; the results workbook {results_path} could not be written either: "
                f"{report.results_error}")
    return f"{line}; results: {results_path}"


class _SheetRun:
    """One call of `send`: its journal record, the caller's hooks, and what the runner said.

    In three steps: `sent` (register, then preview or open the API and send), `report` (every
    row's outcome, the summary, the workbook, the journal's record closed) and `result`.
    """

    def __init__(self, validation: Validation, settings: SendSettings, base: str, *,
                 journal: Journal, dry_run: bool, clock: Clock, hooks: Hooks,
                 stops: Stops, zoho: Zoho | None, update: bool) -> None:
        self.validation = validation
        self.settings = settings
        self.base = base
        self.dry_run = dry_run
        self.clock = clock
        self.hooks = hooks
        self.stops = stops
        self.requests = requests_for(validation)
        self.zoho = zoho
        self.update = update
        self.plan: Plan | None = None
        self.started = time.time()
        self.journal = journal
        self.run_id = self.journal.start_run(str(validation.table.file), base,
                                             total=len(self.requests), dry_run=dry_run)
        self.emit = guarded(hooks.on_event)
        # the runner's OutcomeEvents as they come (what a hard stop keeps: the runner's final
        # word); a list, not a map by line: that was a dict and a tuple a row more at the peak
        self.heard: list[Outcome] = []
        self._seen: dict[Line, Outcome] | None = None  # `seen`, once the runner is over
        # sessions whose OutcomeEvent on_event has had: those in ``seen`` (the runner's), and
        # these (told by the run itself). Not one set of every line: that grew with the rows.
        self.told: set[Line] = set()
        self.halted: list[str] = []  # why the runner stopped taking rows (a fatal answer)

    @classmethod
    async def start(cls, validation: Validation, settings: SendSettings, base: str, *,
                    dry_run: bool, clock: Clock, hooks: Hooks, stops: Stops,
                    journal_wait: float, zoho: Zoho | None, update: bool) -> _SheetRun:
        """Open the journal (waiting for another run's write, with a warning) and register the
        run: a `JobError` naming the state folder or the journal if either cannot be used."""
        try:
            journal = await open_journal(settings.state_dir, wait=journal_wait,
                                         on_wait=log.warning)
        except StateError as err:
            raise JobError(str(err)) from err
        try:
            return cls(validation, settings, base, journal=journal, dry_run=dry_run, clock=clock,
                       hooks=hooks, stops=stops, zoho=zoho, update=update)
        except BaseException as exc:
            journal.close()
            if isinstance(exc, StateError):  # registering the run failed: nothing was sent
                cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
                raise JobError(str(state_error(cause, journal.path))) from exc
            raise

    # -- what the caller hears --------------------------------------------------------------------

    def tell(self, event: Event) -> None:
        if isinstance(event, OutcomeEvent):
            self.told.add(event.outcome.line)
        self.emit(event)

    def tell_unreported(self, outcomes: Mapping[Line, Outcome]) -> None:
        for line in sorted(outcomes):
            if line not in self.seen and line not in self.told:
                self.tell(OutcomeEvent(outcomes[line]))

    def watch(self, event: Event) -> None:
        """The runner's events: kept (for a hard stop and the summary), then passed on."""
        if isinstance(event, OutcomeEvent):
            self.heard.append(event.outcome)  # and so reported
        elif isinstance(event, StopEvent) and not self.stops.requested:
            self.halted.append(event.reason)
        self.emit(event)

    @property
    def seen(self) -> Mapping[Line, Outcome]:
        """What the runner told, by line (the last word for a line wins)."""
        if self._seen is not None:
            return self._seen
        return {o.line: o for o in self.heard}  # (nothing yet, before the runner)

    def over(self, done: dict[Line, Outcome] | None = None) -> dict[Line, Outcome]:
        """The runner is over: what it returned (``done``), else what it told (a hard stop, a
        journal that failed, an exception), kept from now on as `seen`."""
        if self._seen is None:
            self._seen = done if done is not None else {o.line: o for o in self.heard}
            self.heard = []
        return self._seen

    # -- sending ----------------------------------------------------------------------------------

    async def sent(self, tokens: Callable[[aiohttp.ClientSession], TokenProvider]
                   ) -> dict[Line, Outcome]:
        """Register the run, report the invalid rows, then preview or send the valid ones."""
        if self.hooks.on_register is not None:
            self.hooks.on_register(self.run_id)
        self.tell_unreported(invalid_outcomes(self.validation))
        try:
            return await self._preview_or_send(tokens)
        except sqlite3.Error as err:  # the pace and the lock gate keep their tables in its file
            raise state_error(err, self.journal.path, running=not self.dry_run) from err

    async def _preview_or_send(self, tokens: Callable[[aiohttp.ClientSession], TokenProvider]
                               ) -> dict[Line, Outcome]:
        entries = self.journal.lookup_many(self.base, self.requests)
        self.plan = self._make_plan(entries)
        adopted = self._settle_planned(self.plan.steps)
        requests = [self._to_send(s) for s in self.plan.steps if s.req.line not in adopted]
        if self.dry_run:
            return {**preview(requests, journal=self.journal, api_base=self.base, known=entries),
                    **adopted}
        del entries  # what the journal knew of every row: the plan has it now
        if not requests:
            return adopted
        async with open_api(self.base, self.settings, shared=self.journal.path, tokens=tokens,
                            clock=self.clock, wrap_pace=track_pace) as api:
            try:
                await api.tokens.token()  # prove the credentials before any row is claimed
            except AuthError as err:
                raise JobError(f"cannot get an access token: {err}") from err
            if self.hooks.on_start is not None:
                self.hooks.on_start(len(self.requests), 0)
            sending = send_all(requests, client=api.client, journal=self.journal,
                               gate=api.gate, api_base=self.base, run_id=self.run_id,
                               config=self._run_config(), clock=self.clock,
                               stop=self.stops.stop, on_event=self.watch)
            done = await _unless(self.stops.hard_stop, sending)
        # The runner's workers, tasks and queue hold every row's progress in reference cycles:
        # collected now, before the report is built beside them, not whenever the collector
        # next gets round to its oldest generation (measured: ~230 bytes a row at the peak).
        gc.collect()
        # Cut short, the runner still settled every row (OutcomeEvents) on its way out: rows
        # whose request may have left are unknown; rows still waiting for the lock or a
        # rate-limit slot, and rows never reached, are pending.
        # Finished, the runner returned what it told (the same outcomes, every row's): keep that
        # map, not a second of every line, for the report.
        sent = self.over(done)
        for step in self.plan.steps:  # an update's outcome carries what it changed
            if step.action is Action.UPDATE and step.req.line in sent:
                sent[step.req.line].changes = step.changes
        return {**sent, **adopted} if adopted else sent

    def _make_plan(self, entries: Mapping[str, Entry]) -> Plan:
        """Every valid row's action, from the journal's ``entries`` of the rows and what the
        online stage listed."""
        return plan_for(self.validation, self.journal, self.base, self.zoho,
                        requests=self.requests, entries=entries)

    def _settle_planned(self, steps: Sequence[Step]) -> dict[Line, Outcome]:
        """The rows that need no call: unchanged (``exists``), differing without ``update``
        (``changed``) or in a dry run (``would-update``), and a second row for one session
        (``invalid``). A session found in Zoho that the journal did not know is recorded."""
        out: dict[Line, Outcome] = {}
        for step in steps:
            if step.action is Action.CREATE or (step.action is Action.UPDATE and self.update
                                                and not self.dry_run):
                continue
            outcome = self._planned(step)
            if outcome is None:
                continue
            out[step.req.line] = outcome
            self.tell(OutcomeEvent(outcome))
        return out

    def _planned(self, step: Step) -> Outcome | None:
        req, sid = step.req, step.session_id
        if step.action is Action.INVALID:
            return req.outcome(Status.INVALID, None, step.note)
        found = self.zoho is not None and req.line in self.zoho.matched and \
            self.zoho.matched[req.line].id == sid
        if found and not self.dry_run and not self._recorded(req, step):
            return None  # in flight in a live run: the runner settles it
        if step.action is Action.UNCHANGED:
            message = ALREADY_IN_ZOHO if found else step.note or already_created(sid)
            return req.outcome(Status.EXISTS, sid, message)
        status = Status.WOULD_UPDATE if self.dry_run else Status.CHANGED
        message = step.note or ("" if self.dry_run else ADD_UPDATE)
        return req.outcome(status, sid, message, changes=step.changes)

    def _recorded(self, req: Request, step: Step) -> bool:
        """Record a session found in Zoho as this row's, unless the journal has it already;
        False if the row is in flight in a live run (the runner settles it)."""
        claim = self.journal.claim(self.base, req, self.run_id)
        if claim.kind == ClaimKind.BUSY:
            return False
        if claim.kind != ClaimKind.CREATED:
            assert step.session_id is not None
            self.journal.record_created(self.base, req, self.run_id, step.session_id,
                                        message=ALREADY_IN_ZOHO,
                                        as_sent=step.action is Action.UNCHANGED)
        return True

    def _to_send(self, step: Step) -> Request:
        """What the runner gets for a row no outcome settled: its create, its update, or (a
        session found in Zoho that a live run is creating right now) its create, for the
        runner's claim to wait on that run and settle it."""
        if step.action is Action.CREATE or (step.action is Action.UPDATE and self.update):
            return step.req
        return dataclasses.replace(step.req, session_id=None)

    def _run_config(self) -> RunConfig:
        return RunConfig(workers=self.settings.workers, lock_seconds=self.settings.lock,
                         reconcile_delay=min(5.0, self.settings.period / 10))

    # -- reporting --------------------------------------------------------------------------------

    def report(self, sent: Mapping[Line, Outcome], status: str, results_path: Path | None,
               summary_extra: Mapping[str, object] | None, *,
               journal_failed: bool = False) -> _Report:
        """Every input row's outcome (told to the caller if not yet), the summary, the results
        workbook, and the journal's record of the run closed.

        After the journal failed (``journal_failed``) nothing here may hide that failure: the
        workbook is still attempted (it may be on another disk) and closing the run record,
        which will likely fail too, is only logged.
        """
        self.over()
        outcomes = complete(self.validation, sent)
        self.tell_unreported(outcomes)
        counts = summarize(outcomes)
        summary = self._summary(outcomes, counts, summary_extra)
        if self.stops.requested:
            status = "interrupted"
        results_error: str | None = None
        try:
            if results_path is not None:
                try:
                    write_results(results_path, self.validation, outcomes, summary,
                                  only_in_zoho=self.plan.only_in_zoho if self.plan else ())
                except OSError as err:
                    if not journal_failed:
                        raise
                    results_error = err.strerror or str(err)
            self._close_run(sent, status, results_path, journal_failed=journal_failed)
        finally:
            self.journal.close()
        return _Report(outcomes, summary, counts, results_error)

    def _close_run(self, sent: Mapping[Line, Outcome], status: str, results_path: Path | None,
                   *, journal_failed: bool) -> None:
        try:
            self.journal.finish_run(self.run_id, summarize(sent), str(results_path or ""),
                                    status=status)
        except StateError as err:
            if not journal_failed:
                raise JobError(str(err)) from err
            # the failure itself is reported once, by the caller; a run left open is judged dead
            log.info("run %s is left open in the journal: %s", self.run_id, err)

    def _summary(self, outcomes: Mapping[Line, Outcome], counts: Mapping[str, int],
                 extra: Mapping[str, object] | None) -> dict[str, Any]:
        """The workbook's Summary sheet (and ``--json``'s ``summary``)."""
        finished = time.time()
        created = counts.get(str(Status.CREATED), 0)
        summary: dict[str, Any] = {
            "file": str(self.validation.table.file),
            "sheet": self.validation.table.sheet or "",
            "api base": self.base,
            "dry run": "yes" if self.dry_run else "no",
            "started": dt.datetime.fromtimestamp(self.started).isoformat(timespec="seconds"),
            "finished": dt.datetime.fromtimestamp(finished).isoformat(timespec="seconds"),
            "seconds": round(finished - self.started, 1),
            "rows": self.validation.n_rows,
            **({"sessions": self.validation.valid} if self.validation.expansions else {}),
            "rate limit": f"{self.settings.rate_calls} calls / {self.settings.period:g} s",
            "created per minute": round(created * 60 / max(finished - self.started, 1e-9), 1)
            if created else 0,
            **(extra or {}),
        }
        if self.zoho is not None and self.plan is not None:
            summary["only in Zoho"] = len(self.plan.only_in_zoho)
        if self.halted:
            summary["stopped because"] = self.halted[0]
        return summary

    def result(self, sent: Mapping[Line, Outcome], report: _Report,
               results_path: Path | None) -> JobResult:
        code = exit_code_for(report.outcomes, dry_run=self.dry_run)
        if self.halted and not any(o.status in DONE_STATUSES for o in sent.values()):
            code = EXIT_CANNOT_START  # e.g. the credentials or scope were refused on the first call
        return JobResult(self.validation, report.outcomes, results_path, report.summary, code,
                         self.halted[0] if self.halted else None, report.counts, self.run_id,
                         self.plan)

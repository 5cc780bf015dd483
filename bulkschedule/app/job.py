"""One sheet through the whole pipeline: read, validate, build payloads, send (or preview), report.

`run`, `inbox` and the upload page all call this, so a sheet behaves the same whichever door it
comes in by. The CLI keeps only flags, prompts, progress and exit codes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bulkschedule.app.results import write_results
from bulkschedule.core.constants import EXIT_CANNOT_START, EXIT_INCOMPLETE, EXIT_OK
from bulkschedule.core.errors import AuthError, JobError, ReadError
from bulkschedule.core.problems import DONE_STATUSES, Outcome, Status
from bulkschedule.core.request import Request
from bulkschedule.send.api import SendSettings, open_api
from bulkschedule.send.journal import Journal
from bulkschedule.send.limiter import Clock, SystemClock
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
from bulkschedule.sheet.payload import build_request
from bulkschedule.sheet.reader import read_table
from bulkschedule.sheet.schema import Validation, preload, validate
from bulkschedule.zoho.auth import TokenProvider
from bulkschedule.zoho.urls import check_base_url

__all__ = ["JobError", "JobResult", "SendSettings", "load", "send"]

T = TypeVar("T")

log = logging.getLogger("bulkschedule")



@dataclass
class JobResult:
    validation: Validation
    outcomes: dict[int, Outcome]  # one per input row
    results_path: Path | None
    summary: dict[str, Any]
    exit_code: int
    halted: str | None = None  # why the run stopped taking rows (a fatal answer), if it did
    counts: dict[str, int] = field(default_factory=dict)
    run_id: int | None = None  # the journal's id for this run (history, web pages)


def load(
    sheet: str | Path,
    *,
    sheet_name: str | None = None,
    course: str | None = None,
    batch: str | None = None,
    module: str | None = None,
    month_first: bool = False,
    today: dt.date | None = None,
) -> Validation:
    """Read and validate; an unreadable file is a `JobError` (one line, exit 2)."""

    if Path(sheet).suffix.lower() not in (".csv", ".txt"):
        # calamine releases the GIL while parsing a workbook; the csv module does not, and
        # a background import would only fight it for the GIL
        preload()
    try:
        table = read_table(sheet, sheet_name)
    except ReadError as err:
        raise JobError(str(err)) from None
    except OSError as err:
        raise JobError(f"{sheet}: cannot read the file: {err.strerror or err}") from None
    return validate(table, course=course, batch=batch, module=module,
                    month_first=month_first, today=today)


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


def default_results_path(sheet: str | Path) -> Path:
    """``term.xlsx`` -> ``term.results.xlsx`` beside it."""
    p = Path(sheet)
    return p.with_name(f"{p.stem}.results.xlsx")


def complete(validation: Validation, outcomes: Mapping[int, Outcome]) -> dict[int, Outcome]:
    """One Outcome for every input row: invalid rows and rows never reached included."""
    messages: dict[int, list[str]] = {}
    for p in validation.problems:
        if p.is_error and p.row is not None:
            messages.setdefault(p.row, []).append(f"{p.column}: {p.message}" if p.column
                                                  else p.message)
    sheet_errors = [p.message for p in validation.problems if p.is_error and p.row is None]
    out: dict[int, Outcome] = {}
    for row in validation.table.row_numbers:
        if row in outcomes:
            out[row] = outcomes[row]
        elif row in validation.error_rows or validation.fatal:
            text = "; ".join(messages.get(row) or sheet_errors or ["invalid"])
            out[row] = Outcome(row, Status.INVALID, None, text)
        else:
            out[row] = Outcome(row, Status.PENDING, None, "not reached")
    return out


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


def eta_seconds(total: int, done: int, elapsed: float, *, lock_left: float = 0.0,
                limit_per_min: float | None = None) -> int | None:
    """Seconds until the last row is settled, or None before there is a rate to go by.

    The first window's calls go out quickly, so the rate seen so far would promise more than the
    limiter can keep: the sustained limit caps it, and a running lockout adds its wait.
    """
    if not 0 < done < total or elapsed <= 0:
        return None
    per_min = done * 60 / elapsed
    if limit_per_min:
        per_min = min(per_min, limit_per_min)
    return int((total - done) * 60 / per_min + max(0.0, lock_left))


def count(outcomes: Mapping[int, Outcome]) -> dict[str, int]:
    counts = {str(s): 0 for s in Status}
    for o in outcomes.values():
        counts[str(o.status)] += 1
    return {k: v for k, v in counts.items() if v}


def exit_code_for(outcomes: Mapping[int, Outcome], *, dry_run: bool) -> int:
    ok = {Status.WOULD_CREATE, Status.EXISTS} if dry_run else DONE_STATUSES
    return EXIT_OK if all(o.status in ok for o in outcomes.values()) else EXIT_INCOMPLETE


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
) -> JobResult:
    """Send the valid rows of ``validation`` (or preview them) and write the results workbook.

    ``tokens`` builds the token provider once the HTTP session exists (the refresh flow needs
    it). ``on_register(run_id)`` is called as soon as the journal has registered the run (before
    the first ``await``); ``on_start(to_send, already_known)`` once the credentials are proven.
    ``on_event`` hears one `OutcomeEvent` for every input row, whoever settled it: invalid rows
    first (they are known before anything is sent), then the runner's, then any row the runner
    did not report (a dry run's previews, rows never reached), in row order.
    ``stop`` stops taking rows and lets the calls in flight finish (up to the runner's grace);
    ``hard_stop`` (a second Ctrl-C) also abandons the calls in flight: rows whose request may
    have left become ``unknown`` (the next run settles them by listing before it sends anything);
    rows still waiting for the lock or a rate-limit slot are ``pending``.
    The workbook is written whatever happens, including a stop signal or a fatal answer.
    """
    clock = clock or SystemClock()
    try:
        base = check_base_url(settings.api_base)
    except ValueError as err:
        raise JobError(str(err)) from None
    requests = requests_for(validation)
    started = time.time()
    journal = Journal(settings.state_dir)
    run_id = journal.start_run(str(validation.table.file), base, total=len(requests),
                               dry_run=dry_run)
    halted: list[str] = []
    sent: dict[int, Outcome] = {}
    reported: set[int] = set()  # rows whose OutcomeEvent on_event has had

    def tell(event: Event) -> None:
        if isinstance(event, OutcomeEvent):
            reported.add(event.outcome.row)
        if on_event is None:
            return
        try:
            on_event(event)
        except Exception:  # a rendering bug must not lose a row's outcome (as in the runner)
            log.exception("on_event callback failed for %r", event)

    def settle_unreported(outcomes: Mapping[int, Outcome]) -> None:
        for row in sorted(outcomes):
            if row not in reported:
                tell(OutcomeEvent(outcomes[row]))

    status = "finished"
    try:
        if on_register is not None:
            on_register(run_id)
        settle_unreported({r: o for r, o in complete(validation, {}).items()
                           if o.status == Status.INVALID})
        if dry_run:
            sent = preview(requests, journal=journal, api_base=base)
        elif requests:
            seen: dict[int, Outcome] = {}  # what a hard stop keeps: the runner's final word

            def watch(event: Event) -> None:
                if isinstance(event, OutcomeEvent):
                    seen[event.outcome.row] = event.outcome
                if isinstance(event, StopEvent) and not (stop is not None and stop.is_set()):
                    halted.append(event.reason)
                tell(event)

            async with open_api(base, settings, shared=journal.path, tokens=tokens, clock=clock,
                                wrap_pace=track_pace) as api:
                try:
                    await api.tokens.token()  # prove the credentials before any row is claimed
                except AuthError as err:
                    raise JobError(f"cannot get an access token: {err}") from err
                if on_start is not None:
                    on_start(len(requests), 0)
                config = RunConfig(workers=settings.workers, lock_seconds=settings.lock,
                                   reconcile_delay=min(5.0, settings.period / 10))
                sending = send_all(requests, client=api.client, journal=journal, gate=api.gate,
                                   api_base=base, run_id=run_id, config=config,
                                   clock=clock, stop=stop, on_event=watch)
                done = await _unless(hard_stop, sending)
                # Cut short, the runner still settled every row (OutcomeEvents) on its way
                # out: rows whose request may have left are unknown; rows still waiting for
                # the lock or a rate-limit slot, and rows never reached, are pending.
                sent = seen if done is None else done
    except JobError:
        status = "failed"
        raise
    finally:
        outcomes = complete(validation, sent)
        settle_unreported(outcomes)
        counts = count(outcomes)
        finished = time.time()
        created = counts.get(str(Status.CREATED), 0)
        summary: dict[str, Any] = {
            "file": str(validation.table.file),
            "sheet": validation.table.sheet or "",
            "api base": base,
            "dry run": "yes" if dry_run else "no",
            "started": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
            "finished": dt.datetime.fromtimestamp(finished).isoformat(timespec="seconds"),
            "seconds": round(finished - started, 1),
            "rows": len(outcomes),
            "rate limit": f"{settings.rate_calls} calls / {settings.period:g} s",
            "created per minute": round(created * 60 / max(finished - started, 1e-9), 1)
            if created else 0,
            **(summary_extra or {}),
        }
        if halted:
            summary["stopped because"] = halted[0]
        if stop is not None and stop.is_set():
            status = "interrupted"
        if results_path is not None:
            write_results(results_path, validation, outcomes, summary)
        journal.finish_run(run_id, summarize(sent) if sent else {}, str(results_path or ""),
                           status=status)
        journal.close()

    code = exit_code_for(outcomes, dry_run=dry_run)
    if halted and not any(o.status in DONE_STATUSES for o in sent.values()):
        code = EXIT_CANNOT_START  # e.g. the credentials or scope were refused on the first call
    return JobResult(validation, outcomes, results_path, summary, code,
                     halted[0] if halted else None, counts, run_id)

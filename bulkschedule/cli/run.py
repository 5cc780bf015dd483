"""``bulkschedule run``: create a sheet's sessions in Zoho (or the sandbox), at the API's pace."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import TextIO

import click

from bulkschedule.app import job
from bulkschedule.app.config import Settings
from bulkschedule.app.logs import log_summary
from bulkschedule.app.online import Online, check_online
from bulkschedule.app.online import Reading as OnlineReading
from bulkschedule.app.target import Target, open_target
from bulkschedule.cli.common import (
    Reading,
    fail,
    leave,
    sandbox_conflicts,
    sheet_options,
    start_logging,
    today_option,
)
from bulkschedule.cli.console import (
    Progress,
    counts_line,
    echo_expansions,
    echo_problems,
    preview_lines,
    sandbox_stats_line,
    summary_line,
)
from bulkschedule.cli.options import Number, setting_options
from bulkschedule.cli.signals import Signals
from bulkschedule.cli.validate import org_cache, read_and_validate
from bulkschedule.core.constants import Exit
from bulkschedule.core.errors import JobError
from bulkschedule.sheet.schema import Validation

SPEED = Number(1, 1000)


@click.command("run")
@click.argument("sheet", type=click.Path(dir_okay=False))
@click.option("--results", metavar="OUT.xlsx",
              help="Where to write the results workbook (default: <sheet>.results.xlsx).")
@click.option("--dry-run", is_flag=True, help="Validate and show what would be sent; send nothing.")
@click.option("--update", is_flag=True,
              help="Also update the sessions whose row differs from them (PATCH); without it "
                   "such rows are only reported 'changed'.")
@click.option("--json", "as_json", is_flag=True,
              help="With --dry-run: print the plan as JSON (every row's action and changes).")
@setting_options("send")
@sheet_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation before sending.")
@click.option("--sandbox", is_flag=True,
              help="Run against a built-in local sandbox (no Zoho account needed).")
@click.option("--speed", type=SPEED, default=1.0, metavar="K",
              help="With --sandbox: run the window and the lock K times faster.")
@click.option("--offline", is_flag=True,
              help="Skip the checks against the org and the look for sessions Zoho already "
                   "holds (the journal alone then guards against duplicates).")
@today_option
def run(settings: Settings, sheet: str, results: str | None, dry_run: bool, update: bool,
        as_json: bool, reading: Reading, yes: bool, sandbox: bool, speed: float, offline: bool,
        today: dt.date | None) -> None:
    """Create a Zoho LMS session for every valid row of SHEET, at the API's pace.

    Valid rows are sent (a repeating row as one session per date); invalid rows are reported,
    never sent. A session is never created twice: re-running the same sheet sends only what is
    not yet created. A row that is a session already (its sessionId, as in a results workbook
    given back, or the journal's record) and differs from it is updated with --update. Writes a
    results workbook with every session's status, sessionId and changes.

    Exit code 0 when every row is created, exists or is updated (a dry run: would be), 1 when
    some rows are invalid, changed, failed or not confirmed, 2 when nothing could start, 130/143
    when stopped by SIGINT/SIGTERM.
    """
    if as_json and not dry_run:
        raise click.UsageError("--json goes with --dry-run (it prints the plan)")
    sandbox_conflicts(settings, sandbox=sandbox, speed=speed)
    stdout = sys.stdout
    # with --json, stdout carries the JSON alone: every line for people goes to stderr
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        code = _run(settings, sheet, results, reading, today=today, json_to=stdout if as_json
                    else None, dry_run=dry_run, update=update, sandbox=sandbox, speed=speed,
                    yes=yes, offline=offline)
    leave(code)


def _run(settings: Settings, sheet: str, results: str | None, reading: Reading, *,
         today: dt.date | None, json_to: TextIO | None, dry_run: bool, update: bool,
         sandbox: bool, speed: float, yes: bool, offline: bool) -> int:
    logger = start_logging(settings)
    validation = read_and_validate(sheet, reading, today=today, names_from=org_cache(settings),
                                   payload_style=settings.payload_style,
                                   limits=settings.read_limits)
    results_path = Path(results) if results else job.default_results_path(sheet)
    job.check_results_path(results_path)
    online = not offline and not validation.fatal and (
        validation.valid > 0 or any(p.code.startswith("name.") for p in validation.problems))
    if not online:
        _show(validation, results_path)
    return asyncio.run(_send(settings, validation, results_path, logger, dry_run=dry_run,
                             update=update, sandbox=sandbox, speed=speed, yes=yes,
                             online=reading if online else None, json_to=json_to))


def _show(validation: Validation, results_path: Path) -> None:
    for note in validation.table.notes:
        click.echo(f"note: {note}")
    echo_problems(validation.problems,
                  where=f"every one is on the Problems sheet of {results_path}; "
                        f"bulkschedule validate --json (or --report OUT.xlsx) lists them too")
    if validation.expansions:
        echo_expansions(validation.expansions)
    click.echo(summary_line(validation))


async def _check_org(validation: Validation, target: Target, reading: Reading,
                     settings: Settings, *, dry_run: bool) -> Online:
    """The online stage before anything is sent. A dry run without credentials goes on offline
    with a warning; a real run cannot start without them anyway (exit 2)."""
    try:
        found = await check_online(
            validation.table, validation, target.send, tokens=target.tokens,
            reading=OnlineReading(reading.course, reading.batch, reading.module,
                                  reading.month_first),
            max_age=settings.max_age)
    except JobError as err:
        if not dry_run:
            raise
        click.echo(f"warning: the org was not read ({err}); only the offline checks ran",
                   err=True)
        return Online(validation)
    if found.warning:
        click.echo(f"warning: {found.warning}", err=True)
    click.echo(found.line())
    return found


async def _send(settings: Settings, validation: Validation, results_path: Path,
                logger: logging.Logger, *, dry_run: bool, update: bool, sandbox: bool,
                speed: float, yes: bool, online: Reading | None, json_to: TextIO | None) -> int:
    """Open the target, ask (at a terminal), send with live progress, and report: the exit
    code."""
    signals = Signals("\nstopping: finishing the calls in flight, then writing the results "
                      "(press Ctrl-C again to stop harder)",
                      "\nstopping now: the calls in flight are abandoned (their rows become "
                      "'unknown'; the next run checks them before sending)")
    n = validation.valid
    # a rehearsal keeps its journal apart unless --state names one
    state_dir = settings.state_dir if settings.given("state_dir") else None
    async with open_target(settings, sandbox=sandbox, speed=speed, state_dir=state_dir,
                           need_credentials=not dry_run and n > 0) as target:
        send = target.send
        if target.sandbox is not None:
            click.echo(f"sandbox: a local stand-in for Zoho at {send.api_base}, enforcing "
                       f"{send.rate_calls} calls / {send.rate_period:g} s and a "
                       f"{send.lock_seconds:g} s lockout"
                       + (f", all {send.speed:g}x faster" if send.speed != 1 else ""))
        zoho = None
        if online is not None:
            found = await _check_org(validation, target, online, settings, dry_run=dry_run)
            validation, zoho = found.validation, found.zoho
            _show(validation, results_path)
            n = validation.valid - len(found.held)
        elif not dry_run and not yes and n and sys.stdin.isatty():
            minutes = n / send.rate_calls * send.rate_period / 60
            if not click.confirm(f"Create up to {n} sessions at {send.api_base} (at "
                                 f"{send.rate_calls} calls / {send.rate_period:g} s: about "
                                 f"{minutes:.0f} min)?", default=False):
                click.echo("nothing sent")
                return Exit.INCOMPLETE

        progress = Progress(n, tty=sys.stderr.isatty() and not dry_run, logger=logger,
                            limit_per_min=send.calls_per_minute)
        ticker = asyncio.create_task(progress.tick()) if progress.tty else None
        try:
            result = await job.send(validation, send, tokens=target.tokens,
                                    results_path=results_path, dry_run=dry_run,
                                    stop=signals.stop, hard_stop=signals.hard_stop,
                                    on_event=progress, zoho=zoho, update=update)
        except OSError as err:
            fail(f"cannot write the results workbook {results_path}: {err.strerror or err}")
        finally:
            if ticker is not None:
                ticker.cancel()
            progress.close()
        if dry_run:
            for line in preview_lines(result):
                click.echo(line)
            if json_to is not None:
                json_to.write(json.dumps(job.plan_document(result), ensure_ascii=False) + "\n")
        if target.sandbox is not None:
            click.echo(sandbox_stats_line(target.sandbox.stats(), send.period))

    log_summary(logger, result.counts)
    click.echo(f"{validation.table.file}: {counts_line(result.counts)}")
    if result.halted:
        click.echo(f"stopped early: {result.halted}", err=True)
    click.echo(f"results: {results_path}")
    return signals.exit_code(result.exit_code)

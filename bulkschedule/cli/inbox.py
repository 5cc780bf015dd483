"""``bulkschedule inbox``: send every sheet dropped in DIR/incoming/ (for cron or systemd)."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from bulkschedule.app.config import Settings
from bulkschedule.app.inbox import NOT_STARTED, InboxPaths, InstanceLock, SheetResult, watch_inbox
from bulkschedule.app.isolate import ReadLimits
from bulkschedule.app.target import Target, api
from bulkschedule.cli.common import fail, leave, start_logging
from bulkschedule.cli.console import Progress, sheet_line
from bulkschedule.cli.errors import say_error
from bulkschedule.cli.options import setting_options
from bulkschedule.cli.signals import Signals
from bulkschedule.core.constants import Exit
from bulkschedule.core.errors import InboxBusy


@click.command("inbox")
@click.argument("inbox_dir", metavar="[DIR]", required=False, type=click.Path(file_okay=False))
@setting_options("send", "inbox", "read")
def inbox(settings: Settings) -> None:
    """Send every ready sheet in DIR/incoming/ (.xlsx or .csv), oldest first.

    Each sheet is validated and its valid rows sent; the results go to DIR/results/ and the
    sheet then moves to DIR/done/. With --all-or-nothing (or `all-or-nothing: yes` on the
    workbook's Instructions sheet) a sheet with errors is moved to DIR/rejected/ with its report
    instead, and nothing of it is sent. A row whose session differs from it (a results
    workbook edited and dropped in again) is updated only with --update (or `update: yes` on
    the Instructions sheet); otherwise it is reported 'changed'. Office lock files and files
    changed in the last 30 seconds are left for the next run. One inbox run at a time per
    state folder: a second one says so and exits 0.

    DIR defaults to `dir` in the [inbox] section of the config file.

    Exit code 0 when every sheet is fully done (or none was ready), 1 when a row failed or a
    sheet was rejected, 2 when it could not start (configuration, credentials, network),
    130/143 when stopped by SIGINT/SIGTERM in the middle of a sheet.
    """
    if settings.inbox.dir is None:
        fail("no inbox folder: give DIR, or set dir in the [inbox] section of the config file")
    paths = InboxPaths(settings.inbox.dir)
    try:
        paths.ensure()
    except OSError as err:
        fail(f"cannot use the inbox folder {paths.root}: {err.strerror or err}")

    lock = InstanceLock(settings.state_dir)
    try:
        acquired = lock.acquire()
    except OSError as err:
        fail(f"cannot take the inbox lock {lock.path}: {err.strerror or err}")
    if not acquired:
        raise InboxBusy(lock.path, lock.holder_pid())  # exit 0: nothing to do
    try:
        target = api(settings)  # the secrets are registered before anything logs
        logger = start_logging(settings)
        code = asyncio.run(_passes(settings, paths, target, logger))
    finally:
        lock.release()
    leave(code)


async def _passes(settings: Settings, paths: InboxPaths, target: Target,
                  logger: logging.Logger) -> int:
    """The passes (`inbox.watch_inbox`), rendered: a progress line per sheet, a line when a
    sheet is settled, and the exit code (a stop cutting a sheet short: 130/143)."""
    signals = Signals("stopping: finishing the calls in flight and writing the results")
    tty = sys.stderr.isatty()
    current: list[Progress] = []

    def progress_for(sheet: str, n: int) -> Progress:
        current[:] = [Progress(n, tty=tty, logger=logger, sheet=sheet,
                               limit_per_min=target.send.calls_per_minute)]
        return current[0]

    def on_sheet(result: SheetResult) -> None:
        for progress in current:
            progress.close()
        current.clear()
        if result.status == NOT_STARTED:
            say_error(f"{result.name}: {result.message}")
        click.echo(sheet_line(result, paths.root))

    watch = settings.inbox.watch
    result = await watch_inbox(
        paths, target.send, tokens=target.tokens, watch=watch, stop=signals.stop,
        all_or_nothing=settings.inbox.all_or_nothing, update=settings.inbox.update,
        stable_seconds=settings.inbox.stable_seconds, holidays=settings.inbox.holidays,
        on_event_factory=progress_for,
        on_sheet=on_sheet, logger=logger,
        read_limits=ReadLimits(memory_mb=settings.read_memory_mb,
                               cpu_seconds=settings.read_cpu_seconds))
    if result.stopped:
        return signals.exit_code(Exit.SIGTERM)
    if watch is None and not result.sheets:
        click.echo(f"{paths.incoming}: no sheet ready; nothing to do")
    return result.exit_code

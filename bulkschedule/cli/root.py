"""The ``bulkschedule`` command line. Thin: parse flags, call the library, render the result.

Exit codes (the same for every command, so scripts and CI can rely on them):

* **0** - done. For ``validate``: no row has an error (warnings are allowed).
* **1** - the sheet has errors: some row has an error, or a required column is missing.
* **2** - the command could not do its job: a file cannot be read or written, or the command line
  is wrong (unknown option, an ID that is not digits, an existing output without ``--force``).
  One line on stderr, ``bulkschedule: error: <message>``, never a traceback. With ``--json``,
  stdout still carries exactly one JSON object, with an ``"error"`` field.

Heavy libraries (pandas, pandera, openpyxl, aiohttp) are imported inside the commands, so
``bulkschedule --help`` answers at once. The work is the library's: `job` (one sheet through the
pipeline), `target` (credentials, settings, the sandbox), `inbox` (the unattended passes), `auth`
(set-up and check); what a command prints is `console`. New commands should reuse `fail`,
`read_and_validate` and `echo_problems` rather than invent their own error and report formats.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from bulkschedule import __version__
from bulkschedule.cli.console import (
    Progress,
    counts_line,
    format_problems,
    plural,
    preview_lines,
    sandbox_stats_line,
    sheet_line,
    summary_line,
)
from bulkschedule.core.constants import (
    DATA_CENTRE_NAMES,
    EXIT_CANNOT_START,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    LOCK_STYLES,
    PAYLOAD_STYLES,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import logging

    from bulkschedule.app.config import Settings
    from bulkschedule.core.problems import Problem
    from bulkschedule.sheet.schema import Validation

__all__ = ["fail", "format_problems", "main", "read_and_validate", "summary_line"]

EXIT_INVALID = EXIT_INCOMPLETE
EXIT_FAILURE = EXIT_CANNOT_START

DEFAULT_TEMPLATE = "sessions-template.xlsx"


# ------------------------------------------------------------------------------------- helpers


def fail(
    message: str, code: int = EXIT_FAILURE, *, json_out: dict[str, Any] | None = None
) -> NoReturn:
    """Stop the command: one line on stderr, no traceback, exit ``code``.

    ``json_out`` is for ``--json`` modes: it is printed on stdout (with ``error`` set to the
    message) so that a script reading stdout always gets one JSON object.
    """
    if json_out is not None:
        click.echo(json.dumps({**json_out, "error": message}))
    click.echo(f"bulkschedule: error: {message}", err=True)
    raise click.exceptions.Exit(code)


def _digits(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Path IDs from the command line must be exact digits: anything else is a usage error."""
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise click.BadParameter(f"{value!r} is not an ID: IDs are digits only, such as "
                                 "478346000019479103")
    return text


def id_options(f: Any) -> Any:
    """``--course/--batch/--module``: path IDs given once instead of as sheet columns."""
    for name, what in (("module", "module"), ("batch", "batch"), ("course", "course")):
        f = click.option(f"--{name}", metavar="ID", callback=_digits,
                         help=f"The {what} ID for every row (instead of a {name}Id column).")(f)
    return f


def read_and_validate(sheet: str, *, json_mode: bool = False, **options: Any) -> Validation:
    """Read and validate a sheet (``options`` as for `job.load`: sheet_name, course, batch,
    module, month_first, today), or stop with exit code 2 when the file cannot be read."""
    from bulkschedule.app.job import JobError, load

    try:
        return load(sheet, **options)
    except JobError as err:
        fail(str(err), json_out={"file": sheet} if json_mode else None)


def echo_problems(problems: Sequence[Problem], width: int | None = None) -> None:
    for line in format_problems(problems, width):
        click.echo(line.rstrip())


def _check_output(path: str, *, suffixes: Iterable[str], force: bool, option: str) -> Path:
    """A usable output path: a known suffix, and not an existing file unless ``force``."""
    out = Path(path)
    allowed = tuple(suffixes)
    if out.suffix.lower() not in allowed:
        raise click.BadParameter(f"{path!r}: the file name must end in {' or '.join(allowed)}",
                                 param_hint=option)
    if out.is_dir():
        raise click.BadParameter(f"{path!r} is a folder", param_hint=option)
    if out.exists() and not force:
        fail(f"{path} already exists; use --force to overwrite it")
    return out


# ------------------------------------------------------------------------------------ commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bulkschedule")
def main() -> None:
    """Load a term of training sessions from a spreadsheet into Zoho People LMS.

    Start with `bulkschedule template` for a sheet to fill in, then check it with
    `bulkschedule validate SHEET`.
    """


@main.command(short_help="Check a sheet without sending anything.")
@click.argument("sheet", type=click.Path(dir_okay=False))
@click.option("--sheet", "sheet_name", metavar="NAME",
              help="The worksheet to read (default: the first).")
@id_options
@click.option("--month-first", is_flag=True,
              help="Read text dates such as 01-04-2027 as month first (default: day first).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object on stdout instead of the table.")
@click.option("--report", metavar="OUT.xlsx",
              help="Also write a copy of the sheet with every problem marked.")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), hidden=True,
              help="Pretend today is this date (for tests and reproducible reports).")
def validate(
    sheet: str,
    sheet_name: str | None,
    course: str | None,
    batch: str | None,
    module: str | None,
    month_first: bool,
    as_json: bool,
    report: str | None,
    today: dt.datetime | None,
) -> None:
    """Check SHEET (.xlsx, .xls, .ods or .csv) without sending anything.

    Exit code 0 when no row has an error (warnings are allowed), 1 when some row has an error or
    a required column is missing, 2 when the file cannot be read.
    """
    if report is not None:
        out = _check_output(report, suffixes=(".xlsx",), force=True, option="--report")
        try:
            same = out.resolve() == Path(sheet).resolve()
        except OSError:
            same = False
        if same:
            raise click.BadParameter("the report must not overwrite the sheet being checked",
                                     param_hint="--report")

    validation = read_and_validate(
        sheet, sheet_name=sheet_name, course=course, batch=batch, module=module,
        month_first=month_first, today=today.date() if today else None, json_mode=as_json,
    )

    if report is not None:
        from bulkschedule.app.results import write_report

        try:
            write_report(report, validation)
        except OSError as err:
            fail(f"cannot write the report {report}: {err.strerror or err}",
                 json_out=validation.to_json() if as_json else None)

    if as_json:
        click.echo(json.dumps(validation.to_json()))
    else:
        for note in validation.table.notes:
            click.echo(f"note: {note}")
        echo_problems(validation.problems)
        if validation.problems:
            click.echo()
        click.echo(summary_line(validation))
        if report is not None:
            click.echo(f"report written to {report}")
    has_errors = validation.fatal or validation.errors > 0
    raise click.exceptions.Exit(EXIT_INVALID if has_errors else EXIT_OK)


@main.command(short_help="Write an empty sheet to fill in.")
@click.argument("out", default=DEFAULT_TEMPLATE, metavar="[OUT.xlsx|OUT.csv]")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def template(out: str, force: bool) -> None:
    """Write an empty sheet to fill in (default: sessions-template.xlsx here).

    The .xlsx template has the columns formatted (IDs as Text, dates, times), a drop-down for
    type, a comment on each header and an Instructions sheet. A .csv name writes the header row.
    """
    path = _check_output(out, suffixes=(".xlsx", ".csv"), force=force, option="OUT")
    from bulkschedule.app.results import write_template, write_template_csv

    try:
        if path.suffix.lower() == ".csv":
            write_template_csv(path)
        else:
            write_template(path)
    except OSError as err:
        fail(f"cannot write {out}: {err.strerror or err}")
    click.echo(f"wrote {out}")


# ------------------------------------------------------------------------------------ sending



def _rate_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from bulkschedule.app.config import parse_rate

    try:
        parse_rate(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    return value


def sending_options(f: Any) -> Any:
    """The flags shared by every command that sends (`run`, `inbox`): one spelling everywhere."""
    options = [
        click.option("--api-base", metavar="URL",
                     help="The People API base URL (instead of --dc), e.g. a proxy or sandbox."),
        click.option("--dc", type=click.Choice(DATA_CENTRE_NAMES), default=None,
                     help="Zoho data centre (default: us)."),
        click.option("--rate", metavar="N/SECONDS", callback=_rate_option,
                     help="At most N calls in any SECONDS (default: 30/60, Zoho's limit)."),
        click.option("--lock-seconds", type=click.FloatRange(min=0), default=None, metavar="S",
                     help="How long a lockout lasts (default: 300)."),
        click.option("--workers", type=click.IntRange(min=1, max=64), default=None, metavar="N",
                     help="Calls in flight at once (default: 4)."),
        click.option("--state", metavar="DIR", type=click.Path(file_okay=False),
                     help="State folder: journal, token cache (default: ~/.local/state/"
                          "bulkschedule or $BULKSCHEDULE_STATE)."),
        click.option("--payload-style", type=click.Choice(PAYLOAD_STYLES),
                     default=None, help="How sessionData is sent (default: query)."),
        click.option("--config", "config_path", metavar="PATH",
                     help="Config file (default: $BULKSCHEDULE_CONFIG or "
                          "~/.config/bulkschedule/config.toml)."),
        click.option("--log-file", metavar="PATH", help="Also log to this (rotating) file."),
        click.option("--log-format", type=click.Choice(("text", "json")), default=None,
                     help="Log line format (default: text)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(params: dict[str, Any]) -> Settings:
    """Resolve flag > environment > config file > default, or exit 2 with the reason."""
    from bulkschedule.app.config import ConfigError, load_settings

    try:
        return load_settings(params, os.environ, params.get("config_path"))
    except ConfigError as err:
        fail(str(err))


def _sandbox_flags(params: dict[str, Any]) -> None:
    """``--sandbox`` and ``--speed`` (run, serve): only the sandbox can be sped up."""
    if params["sandbox"] and (params["api_base"] or params["dc"]):
        fail("--sandbox runs against the built-in sandbox; drop --api-base/--dc")
    if params["speed"] != 1.0 and not params["sandbox"]:
        fail("--speed only applies with --sandbox (the real API's limits cannot be sped up)")


def _start_logging(settings: Settings) -> logging.Logger:
    """The log (stderr when it is not a terminal, plus --log-file). Call it after the secrets
    are loaded, so they are registered for redaction before anything could log them."""
    import logging

    from bulkschedule.app.logs import setup_logging

    try:
        setup_logging(settings.log_file, settings.log_format)
    except (OSError, ValueError) as err:
        fail(f"cannot open the log file: {err}")
    return logging.getLogger("bulkschedule")


class _Signals:
    """SIGINT/SIGTERM in the running loop: the first sets ``stop`` (calls in flight finish, the
    results are written) and says so; with ``harder``, a second also sets ``hard_stop``."""

    def __init__(self, first: str, harder: str | None = None) -> None:
        import asyncio
        import contextlib

        self.first, self.harder = first, harder
        self.stop, self.hard_stop = asyncio.Event(), asyncio.Event()
        self.seen: list[int] = []
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.on_signal, signum)

    def on_signal(self, signum: int) -> None:
        if not self.seen:
            click.echo(self.first, err=True)
            self.stop.set()
        elif self.harder and not self.hard_stop.is_set():
            click.echo(self.harder, err=True)
            self.hard_stop.set()
        self.seen.append(signum)

    def exit_code(self, default: int) -> int:
        """130/143 after a signal (the first one decides), else ``default``."""
        if not self.seen:
            return default
        return EXIT_SIGINT if self.seen[0] == signal.SIGINT else EXIT_SIGTERM


@main.command(short_help="Create the sheet's sessions in Zoho (or the sandbox).")
@click.argument("sheet", type=click.Path(dir_okay=False))
@click.option("--results", metavar="OUT.xlsx",
              help="Where to write the results workbook (default: <sheet>.results.xlsx).")
@click.option("--dry-run", is_flag=True, help="Validate and show what would be sent; send nothing.")
@sending_options
@click.option("--sheet", "sheet_name", metavar="NAME", help="The worksheet to read.")
@id_options
@click.option("--month-first", is_flag=True, help="Read text dates as month first.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation before sending.")
@click.option("--sandbox", is_flag=True,
              help="Run against a built-in local sandbox (no Zoho account needed).")
@click.option("--speed", type=click.FloatRange(min=1, max=1000), default=1.0, metavar="K",
              help="With --sandbox: run the window and the lock K times faster.")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), hidden=True)
def run(**params: Any) -> None:
    """Create a Zoho LMS session for every valid row of SHEET, at the API's pace.

    Valid rows are sent; invalid rows are reported, never sent. A session is never created twice:
    re-running the same sheet sends only what is not yet created. Writes a results workbook with
    every row's status and sessionId.

    Exit code 0 when every row is created (now or earlier), 1 when some rows are invalid, failed
    or not confirmed, 2 when nothing could start, 130/143 when stopped by SIGINT/SIGTERM.
    """
    import asyncio

    from bulkschedule.app import job

    _sandbox_flags(params)
    settings = _settings(params)
    logger = _start_logging(settings)
    today = params["today"].date() if params["today"] else None
    validation = read_and_validate(
        params["sheet"], sheet_name=params["sheet_name"], course=params["course"],
        batch=params["batch"], module=params["module"], month_first=params["month_first"],
        today=today)
    results_path = Path(params["results"]) if params["results"] else \
        job.default_results_path(params["sheet"])
    try:
        job.check_results_path(results_path)
    except job.JobError as err:
        fail(str(err))
    for note in validation.table.notes:
        click.echo(f"note: {note}")
    echo_problems(validation.problems)
    click.echo(summary_line(validation))
    raise click.exceptions.Exit(asyncio.run(_run(params, settings, validation, results_path,
                                                 logger)))


async def _run(params: dict[str, Any], settings: Settings, validation: Validation,
               results_path: Path, logger: logging.Logger) -> int:
    import asyncio

    from bulkschedule.app import job
    from bulkschedule.app.logs import log_summary
    from bulkschedule.app.target import open_target

    dry_run, sandbox = bool(params["dry_run"]), bool(params["sandbox"])
    signals = _Signals("\nstopping: finishing the calls in flight, then writing the results "
                       "(press Ctrl-C again to stop harder)",
                       "\nstopping now: the calls in flight are abandoned (their rows become "
                       "'unknown'; the next run checks them before sending)")
    n = validation.valid
    try:
        async with open_target(settings, sandbox=sandbox, speed=float(params["speed"]),
                               state_dir=Path(params["state"]) if params["state"] else None,
                               need_credentials=not dry_run and n > 0) as target:
            send = target.send
            if target.sandbox is not None:
                click.echo(f"sandbox: a local stand-in for Zoho at {send.api_base}, enforcing "
                           f"{send.rate_calls} calls / {send.rate_period:g} s and a "
                           f"{send.lock_seconds:g} s lockout"
                           + (f", all {send.speed:g}x faster" if send.speed != 1 else ""))
            elif not dry_run and not params["yes"] and n and sys.stdin.isatty():
                minutes = n / send.rate_calls * send.rate_period / 60
                if not click.confirm(f"Create up to {n} sessions at {send.api_base} (at "
                                     f"{send.rate_calls} calls / {send.rate_period:g} s: about "
                                     f"{minutes:.0f} min)?", default=False):
                    click.echo("nothing sent")
                    return job.EXIT_INCOMPLETE

            progress = Progress(n, tty=sys.stderr.isatty() and not dry_run, logger=logger,
                                limit_per_min=send.calls_per_minute)
            ticker = asyncio.create_task(progress.tick()) if progress.tty else None
            try:
                result = await job.send(validation, send, tokens=target.tokens,
                                        results_path=results_path, dry_run=dry_run,
                                        stop=signals.stop, hard_stop=signals.hard_stop,
                                        on_event=progress)
            except OSError as err:
                fail(f"cannot write the results workbook {results_path}: {err.strerror or err}")
            finally:
                if ticker is not None:
                    ticker.cancel()
                progress.close()
            if dry_run:
                for line in preview_lines(result):
                    click.echo(line)
            if target.sandbox is not None:
                click.echo(sandbox_stats_line(target.sandbox.stats(), send.period))
    except job.JobError as err:
        fail(str(err))

    log_summary(logger, result.counts)
    click.echo(f"{validation.table.file}: {counts_line(result.counts)}")
    if result.halted:
        click.echo(f"stopped early: {result.halted}", err=True)
    click.echo(f"results: {results_path}")
    return signals.exit_code(result.exit_code)


@main.command(short_help="Run the local stand-in for the Zoho LMS API.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port (0: any free port; the URL is printed).")
@click.option("--rate", default="30/60", show_default=True, metavar="N/SECONDS",
              help="Threshold: N calls in any sliding window of SECONDS.")
@click.option("--lock-seconds", type=click.FloatRange(min=0), default=300.0, show_default=True,
              metavar="S", help="Lock period after the threshold is exceeded.")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              metavar="P", help="Share of creates answered 500 (nothing created).")
@click.option("--lose-reply-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              metavar="P", help="Share of creates stored, then the connection dropped unanswered.")
@click.option("--latency", default="0-0", show_default=True, metavar="MIN-MAX",
              help="Seconds of delay before each reply, uniform between MIN and MAX.")
@click.option("--start-locked", type=click.FloatRange(min=0), default=0.0, metavar="S",
              help="Start with a lock already running for S seconds.")
@click.option("--lock-style", type=click.Choice(LOCK_STYLES), default="429",
              show_default=True, help="How a refused call looks (the shapes seen from Zoho).")
@click.option("--token", default="sandbox-token", show_default=True, metavar="TOKEN",
              help="The static access token the sandbox accepts.")
@click.option("--token-ttl", type=click.FloatRange(min=1), default=3600.0, show_default=True,
              metavar="S", help="Lifetime of tokens minted at /oauth/v2/token.")
@click.option("--seed", type=int, default=None, metavar="N",
              help="Make the injected faults reproducible.")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Catalogue JSON: courses, batches (with dates), modules, trainers, rooms.")
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="Keep sessions in this SQLite file instead of memory.")
@click.option("--speed", type=click.FloatRange(min=1, max=1000), default=1.0, metavar="K",
              help="Run the window and the lock K times faster.")
def sandbox(**params: Any) -> None:
    """Serve a local stand-in for the Zoho People LMS API: the real limits, no account needed.

    Point a run at it with `bulkschedule run SHEET --api-base http://127.0.0.1:8765` and
    ZOHO_ACCESS_TOKEN=sandbox-token. Counters: GET /__sandbox/stats.
    """
    import asyncio

    from bulkschedule.sandbox.server import config_from_options, serve

    host, port = params.pop("host"), params.pop("port")
    try:
        config = config_from_options(**params)
    except ValueError as err:
        fail(str(err))

    def ready(sb: Any) -> None:
        click.echo(f"sandbox listening on {sb.url} (token: {sb.token}); Ctrl-C to stop",
                   err=True)

    try:
        asyncio.run(serve(config, host, port, on_ready=ready))
    except KeyboardInterrupt:
        pass
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}")



# ------------------------------------------------------------------------------------ inbox


@main.command(short_help="Send every sheet dropped in DIR/incoming/ (for cron or systemd).")
@click.argument("inbox_dir", metavar="[DIR]", required=False,
                type=click.Path(file_okay=False))
@click.option("--once", is_flag=True, default=None,
              help="Process what is ready, then exit (the default; for cron and timers).")
@click.option("--watch", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Keep running, looking for new sheets every SECONDS (for a service).")
@click.option("--all-or-nothing", is_flag=True, default=None,
              help="A sheet with any error is rejected whole: nothing of it is sent.")
@click.option("--stable-seconds", type=click.FloatRange(min=0), default=None, metavar="S",
              help="Skip files changed in the last S seconds, still being copied (default: 30).")
@sending_options
def inbox(**params: Any) -> None:
    """Send every ready sheet in DIR/incoming/ (.xlsx or .csv), oldest first.

    Each sheet is validated and its valid rows sent; the results go to DIR/results/ and the
    sheet then moves to DIR/done/. With --all-or-nothing (or `all-or-nothing: yes` on the
    workbook's Instructions sheet) a sheet with errors is moved to DIR/rejected/ with its report
    instead, and nothing of it is sent. Office lock files and files changed in the last 30
    seconds are left for the next run. One inbox run at a time per state folder: a second one
    says so and exits 0.

    DIR defaults to `dir` in the [inbox] section of the config file.

    Exit code 0 when every sheet is fully done (or none was ready), 1 when a row failed or a
    sheet was rejected, 2 when it could not start (configuration, credentials, network),
    130/143 when stopped by SIGINT/SIGTERM in the middle of a sheet.
    """
    import asyncio

    from bulkschedule.app.inbox import InboxBusy, InboxPaths, InstanceLock
    from bulkschedule.app.job import JobError
    from bulkschedule.app.target import api

    if params["once"] and params["watch"] is not None:
        raise click.UsageError("--once and --watch exclude each other")
    if params["once"]:
        params["watch"] = 0  # beats a `watch` set in the config file
    settings = _settings(params)
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
        click.echo(str(InboxBusy(lock.path, lock.holder_pid())))
        raise click.exceptions.Exit(EXIT_OK)
    try:
        try:
            target = api(settings)  # the secrets are registered before anything logs
        except JobError as err:
            fail(str(err))
        logger = _start_logging(settings)
        code = asyncio.run(_inbox(settings, paths, target, logger))
    finally:
        lock.release()
    raise click.exceptions.Exit(code)


async def _inbox(settings: Settings, paths: Any, target: Any, logger: logging.Logger) -> int:
    """The passes (`inbox.watch_inbox`), rendered: a progress line per sheet, a line when a
    sheet is settled, and the exit code (a stop cutting a sheet short: 130/143)."""
    from bulkschedule.app.inbox import NOT_STARTED, SheetResult, watch_inbox

    signals = _Signals("stopping: finishing the calls in flight and writing the results")
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
            click.echo(f"bulkschedule: error: {result.name}: {result.message}", err=True)
        click.echo(sheet_line(result, paths.root))

    watch = settings.inbox.watch
    result = await watch_inbox(
        paths, target.send, tokens=target.tokens, watch=watch, stop=signals.stop,
        all_or_nothing=settings.inbox.all_or_nothing,
        stable_seconds=settings.inbox.stable_seconds, on_event_factory=progress_for,
        on_sheet=on_sheet, logger=logger)
    if result.stopped:
        return signals.exit_code(EXIT_SIGTERM)
    if watch is None and not result.sheets:
        click.echo(f"{paths.incoming}: no sheet ready; nothing to do")
    return result.exit_code


# ------------------------------------------------------------------------------------- auth


def _ask(label: str, *, hide: bool) -> str:
    """A value typed at a terminal (hidden for secrets), or one line of stdin for scripts.

    Secrets are never taken as options: a command line is visible to every user in `ps`.
    """
    if sys.stdin.isatty():
        value = click.prompt(label, hide_input=hide, err=True)
    else:
        value = sys.stdin.readline()
        if not value:
            fail(f"no {label.lower()} given: type it at a terminal, or pipe one line per value "
                 "(client ID, client secret, grant code) on stdin")
    value = value.strip()
    if not value:
        fail(f"the {label.lower()} is empty")
    return value


@main.command(short_help="Set up the Self Client credentials, or check them (--check).")
@click.option("--check", is_flag=True,
              help="Get an access token and make one harmless read; create nothing.")
@click.option("--force", is_flag=True, help="Replace an existing secrets file.")
@click.option("--ids-from", metavar="SHEET", type=click.Path(dir_okay=False),
              help="With --check: read the module named in this sheet's first valid row "
                   "(instead of the trainers).")
@id_options
@sending_options
def auth(**params: Any) -> None:
    """Exchange a Self Client grant code for a refresh token and write the secrets file.

    Asks for the client ID, the client secret and the grant code (generated in the Zoho API
    console with scope ZOHOPEOPLE.training.ALL; it works once, for a few minutes). They may also
    come from ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and ZOHO_GRANT_CODE, or one per line on stdin.
    The file is written with mode 0600 to `secrets_file` (see `bulkschedule config show`).

    With --check: get an access token (reusing the cached one if it is still fresh) and make one
    harmless read at the usual pace: the first page of the trainers, or, given a module
    (--course/--batch/--module, or --ids-from SHEET), that module's sessions. This proves the
    credentials, the data centre and the scope. Nothing is created.

    Exit code 0 on success, 2 when the credentials or the exchange failed.
    """
    settings = _settings(params)
    ids = [params["course"], params["batch"], params["module"]]
    if not params["check"]:
        if any(ids) or params["ids_from"]:
            raise click.UsageError("--course/--batch/--module and --ids-from go with --check")
        _auth_setup(settings, force=params["force"])
        return
    if any(ids) and not all(ids):
        raise click.UsageError("--check needs all three of --course, --batch and --module")
    module: tuple[str, str, str] | None = (ids[0], ids[1], ids[2]) if all(ids) else None
    if params["ids_from"]:
        if module is not None:
            raise click.UsageError("give either --ids-from or --course/--batch/--module")
        first = read_and_validate(params["ids_from"]).sessions
        if not first:
            fail(f"{params['ids_from']}: no valid row to take the course, batch and module IDs "
                 "from")
        module = (first[0].course_id, first[0].batch_id, first[0].module_id)
    _auth_check(settings, module)


def _auth_setup(settings: Settings, *, force: bool) -> None:
    """Walk through the Self Client exchange; the grant code is spent only once nothing else
    can stop the secrets file from being written."""
    import asyncio

    from bulkschedule.app.credentials import accounts_server, set_up
    from bulkschedule.app.job import JobError

    path = settings.secrets_file
    assert path is not None  # resolved to the default when not configured
    if path.is_dir():
        fail(f"{path}: the secrets file path is a folder")
    if path.exists() and not force and not (sys.stdin.isatty() and click.confirm(
            f"{path} exists; replace it?", default=False, err=True)):
        fail(f"{path} already exists; use --force to replace it")
    try:
        accounts, keep_accounts = accounts_server(settings, os.environ)
    except JobError as err:
        fail(str(err))
    if sys.stdin.isatty():
        click.echo(f"Zoho API console for the {settings.dc} data centre -> Self Client: copy "
                   "the client ID and secret, then Generate Code with scope "
                   "ZOHOPEOPLE.training.ALL.", err=True)
    answers = [os.environ.get(name, "").strip() or _ask(label, hide=hide) for name, label, hide
               in (("ZOHO_CLIENT_ID", "Client ID", False),
                   ("ZOHO_CLIENT_SECRET", "Client secret", True),
                   ("ZOHO_GRANT_CODE", "Grant code", True))]
    try:
        done = asyncio.run(set_up(path, accounts, *answers, keep_accounts=keep_accounts,
                                  env=os.environ))
    except JobError as err:
        fail(str(err))
    click.echo(f"wrote {done.written} (mode 0600): client ID, client secret and refresh token")
    if done.shadowing:
        click.echo(f"note: {', '.join(done.shadowing)} set in the environment take(s) precedence "
                   "over the secrets file; unset them for runs to use the file")
    click.echo("next: bulkschedule auth --check")


def _auth_check(settings: Settings, module: tuple[str, str, str] | None) -> NoReturn:
    import asyncio

    from bulkschedule.app.credentials import check
    from bulkschedule.app.job import JobError
    from bulkschedule.app.target import api

    try:
        target = api(settings)
    except JobError as err:
        fail(str(err))
    _start_logging(settings)  # a token minted here is logged (masked) like a run's

    def waiting(seconds: float) -> None:
        click.echo(f"waiting {seconds:.0f} s for a rate-limit lockout to end", err=True)

    try:
        found = asyncio.run(check(target, module, on_wait=waiting))
    except JobError as err:
        fail(str(err))
    if not found.refreshing:
        click.echo("credentials: using ZOHO_ACCESS_TOKEN as given")
    else:
        how = "minted a new access token" if found.minted else \
            "reused the cached access token (still fresh)"
        click.echo(f"credentials: OK, {how}")
    if found.error:
        fail(found.error)
    if module is not None:
        assert found.sessions is not None
        click.echo(f"read: OK, module {module[2]} of batch {module[1]} lists "
                   f"{plural(found.sessions, 'session')} at {found.api_base}; nothing was "
                   "created")
    else:
        assert found.trainers is not None
        click.echo(f"read: OK, {plural(found.trainers, 'trainer')} listed (first page) at "
                   f"{found.api_base}; nothing was created")
    raise click.exceptions.Exit(EXIT_OK)


# ----------------------------------------------------------------------------------- forget


@main.command(short_help="Let rows be sent again after their sessions were deleted in Zoho.")
@click.argument("sheet", type=click.Path(dir_okay=False))
@click.option("--row", "rows", type=click.IntRange(min=2), multiple=True, required=True,
              metavar="N", help="Spreadsheet row to forget (repeat for several rows).")
@click.option("--sheet", "sheet_name", metavar="NAME", help="The worksheet to read.")
@id_options
@click.option("--month-first", is_flag=True, help="Read text dates as month first.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@sending_options
def forget(**params: Any) -> None:
    """Remove what the journal remembers about rows of SHEET, so the next run sends them again.

    For a `changed` row whose old session you deleted in Zoho, or an `unknown` row you checked by
    hand was never created. The journal is what stops duplicates: forget only rows whose session
    does not exist in Zoho. Exit code 0 when every named row was forgotten, 1 when some row was
    not in the journal or is not a valid row.
    """
    from bulkschedule.app.job import requests_for
    from bulkschedule.send.journal import Journal, normalise_base

    settings = _settings(params)
    validation = read_and_validate(params["sheet"], sheet_name=params["sheet_name"],
                                   course=params["course"], batch=params["batch"],
                                   module=params["module"], month_first=params["month_first"])
    by_row = {r.row: r for r in requests_for(validation)}
    base = normalise_base(settings.people_base)
    missing = [n for n in params["rows"] if n not in by_row]
    for n in missing:
        click.echo(f"row {n}: not a valid session row of {params['sheet']}; nothing to forget")
    wanted = [by_row[n] for n in params["rows"] if n in by_row]
    if not wanted:
        raise click.exceptions.Exit(EXIT_INVALID)
    journal = Journal(settings.state_dir)
    try:
        known = [(req, journal.lookup(base, req)) for req in wanted]
        for req, entry in known:
            if entry is None:
                click.echo(f"row {req.row}: the journal has nothing for it at {base}")
            else:
                sid = f" (session {entry.session_id})" if entry.session_id else ""
                click.echo(f"row {req.row}: journal says {entry.status}{sid}")
        todo = [req for req, entry in known if entry is not None]
        if todo and not params["yes"] and not click.confirm(
                f"Forget {plural(len(todo), 'row')}? The next run sends them again; do this only "
                "if their sessions do not exist in Zoho", default=False):
            click.echo("nothing forgotten")
            raise click.exceptions.Exit(EXIT_INVALID)
        forgotten = sum(journal.forget(base, req.identity) for req in todo)
    finally:
        journal.close()
    click.echo(f"forgot {plural(forgotten, 'row')}")
    ok = not missing and forgotten == len(wanted)
    raise click.exceptions.Exit(EXIT_OK if ok else EXIT_INVALID)


# ------------------------------------------------------------------------------ config show


@main.group("config", short_help="Show the effective configuration.")
def config_group() -> None:
    """Inspect the configuration: flag > environment > config file > built-in default."""


@config_group.command("show")
@sending_options
def config_show(**params: Any) -> None:
    """Print every setting, its value and where it came from; credentials are masked.

    Give the same flags as a `run` or `inbox` command line to see what that command would use.
    Exit code 2 when the configuration or the secrets file is unusable (the message says why).
    """
    from bulkschedule.app.config import show
    from bulkschedule.app.job import JobError
    from bulkschedule.app.target import credentials

    settings = _settings(params)
    try:
        secrets = credentials(settings, required=False)
    except JobError as err:
        fail(str(err))
    rows = show(settings, secrets)
    name_w = max(len(r[0]) for r in rows)
    value_w = min(60, max(len(r[1]) for r in rows))
    for name, value, source in rows:
        click.echo(f"{name:<{name_w}}  {value:<{value_w}}  {source}".rstrip())


# ------------------------------------------------------------------------------------ serve


@main.command("serve", short_help="Serve the upload page (a web front for `run`).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs a password.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--sandbox", is_flag=True,
              help="Send runs to a built-in local sandbox (no Zoho account needed).")
@click.option("--speed", type=click.FloatRange(min=1, max=1000), default=1.0, metavar="K",
              help="With --sandbox: run the window and the lock K times faster.")
@click.option("--password-env", metavar="NAME", default="BULKSCHEDULE_WEB_PASSWORD",
              show_default=True, help="Environment variable holding the page's password.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.01, max=1024), default=20.0,
              show_default=True, help="Largest sheet accepted, in MB.")
@sending_options
def serve_command(**params: Any) -> None:
    """Serve the upload page: check a sheet, dry-run it, create its sessions, watch the progress
    and download the results, from a browser. Runs use the same journal and rate limit as `run`
    (one budget shared with CLI runs on the same state folder).

    Bound to 127.0.0.1 by default. Another --host needs a password (at least 8 characters) in
    $BULKSCHEDULE_WEB_PASSWORD or the variable named by --password-env.
    """
    import asyncio

    from bulkschedule.web import server as web

    _sandbox_flags(params)
    settings = _settings(params)
    _start_logging(settings)
    password = os.environ.get(params["password_env"]) or None
    try:
        web.check_access(params["host"], password)
        asyncio.run(web.serve(
            settings, host=params["host"], port=params["port"], sandbox=params["sandbox"],
            speed=params["speed"], password=password,
            state_dir=Path(params["state"]) if params["state"] else None,
            max_upload=int(params["max_upload_mb"] * 1024 * 1024),
            on_ready=lambda url: click.echo(f"serving {url} ; Ctrl-C to stop", err=True)))
    except web.WebError as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot listen on {params['host']}:{params['port']}: {err.strerror or err}")


if __name__ == "__main__":  # pragma: no cover
    main()

"""The ``bulkschedule`` command line. Thin: parse flags, call the library, render the result.

Exit codes (the same for every command, so scripts and CI can rely on them):

* **0** - done. For ``validate``: no row has an error (warnings are allowed).
* **1** - the sheet has errors: some row has an error, or a required column is missing.
* **2** - the command could not do its job: a file cannot be read or written, or the command line
  is wrong (unknown option, an ID that is not digits, an existing output without ``--force``).
  One line on stderr, ``bulkschedule: error: <message>``, never a traceback. With ``--json``,
  stdout still carries exactly one JSON object, with an ``"error"`` field.

Heavy libraries (pandas, pandera, openpyxl, aiohttp) are imported inside the commands, so
``bulkschedule --help`` answers at once. New commands should reuse `fail`, `read_and_validate`,
`echo_problems` and `summary_line` rather than invent their own error and report formats.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from bulkschedule import __version__

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bulkschedule.problems import Problem
    from bulkschedule.schema import Validation

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_FAILURE = 2

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


def read_and_validate(
    sheet: str,
    *,
    sheet_name: str | None = None,
    course: str | None = None,
    batch: str | None = None,
    module: str | None = None,
    month_first: bool = False,
    today: dt.date | None = None,
    json_mode: bool = False,
) -> Validation:
    """Read and validate a sheet, or stop with exit code 2 when the file cannot be read."""
    from bulkschedule.reader import ReadError, read_table
    from bulkschedule.schema import preload, validate

    preload()
    try:
        table = read_table(sheet, sheet_name)
    except ReadError as err:
        fail(str(err), json_out={"file": sheet} if json_mode else None)
    except OSError as err:  # the reader should wrap these; never show a traceback regardless
        reason = err.strerror or str(err)
        fail(f"{sheet}: cannot read the file: {reason}",
             json_out={"file": sheet} if json_mode else None)
    return validate(table, course=course, batch=batch, module=module,
                    month_first=month_first, today=today)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary_line(validation: Validation) -> str:
    """``sessions.xlsx: 40 rows, 38 valid, 3 errors, 1 warning``."""
    line = (
        f"{validation.table.file}: {_plural(validation.n_rows, 'row')}, "
        f"{len(validation.sessions)} valid, {_plural(validation.errors, 'error')}, "
        f"{_plural(validation.warnings, 'warning')}"
    )
    if validation.fatal:
        line += " - fix the sheet-level errors first"
    return line


def _clip(text: str, width: int) -> str:
    """One line of at most ``width`` characters; longer text ends in ``...``."""
    text = " ".join(text.split())  # newlines and tabs in a cell would break the table
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def terminal_width() -> int:
    """The width to lay tables out for: the terminal's, kept between 80 and 120."""
    return max(80, min(120, shutil.get_terminal_size((100, 24)).columns))


def format_problems(problems: Sequence[Problem], width: int | None = None) -> list[str]:
    """The problems as a fixed-width table; long values are cut, long messages wrap.

    ``row`` is ``-`` for a problem about the whole sheet.
    """
    width = width or terminal_width()
    if not problems:
        return []
    col_w = min(16, max([len("column"), *(len(p.column or "") for p in problems)]))
    val_w = min(24, max([len("value"), *(len(p.value or "") for p in problems)]))
    row_w = max([3, *(len(str(p.row)) for p in problems if p.row is not None)])
    sev_w = 7
    # On a narrow terminal, give the message at least 30 columns by cutting values and columns.
    over = row_w + col_w + val_w + sev_w + 8 + 30 - width
    if over > 0:
        cut = min(over, val_w - len("value"))
        val_w -= cut
        col_w -= min(over - cut, col_w - len("column"))
    lead = row_w + col_w + val_w + sev_w + 8  # four two-space gaps
    msg_w = max(30, width - lead)
    out = [
        f"{'row':>{row_w}}  {'column':<{col_w}}  {'value':<{val_w}}  {'severity':<{sev_w}}  "
        "message",
        f"{'-' * row_w}  {'-' * col_w}  {'-' * val_w}  {'-' * sev_w}  {'-' * min(msg_w, 40)}",
    ]
    for p in problems:
        row = "-" if p.row is None else str(p.row)
        message = textwrap.wrap(" ".join(p.message.split()), msg_w) or [""]
        out.append(
            f"{row:>{row_w}}  {_clip(p.column or '', col_w):<{col_w}}  "
            f"{_clip(p.value or '', val_w):<{val_w}}  {p.severity:<{sev_w}}  {message[0]}"
        )
        out.extend(" " * lead + more for more in message[1:])
    return out


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
        from bulkschedule.results import write_report

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
    from bulkschedule.results import write_template, write_template_csv

    try:
        if path.suffix.lower() == ".csv":
            write_template_csv(path)
        else:
            write_template(path)
    except OSError as err:
        fail(f"cannot write {out}: {err.strerror or err}")
    click.echo(f"wrote {out}")


# ------------------------------------------------------------------------------------ sending

EXIT_SIGINT = 130
EXIT_SIGTERM = 143
DATA_CENTRE_NAMES = ("us", "eu", "in", "au", "jp", "cn", "ca", "sa", "uk")


def _rate_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from bulkschedule.config import parse_rate

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
        click.option("--lock-seconds", type=click.FloatRange(min=0), default=None,
                     help="How long a lockout lasts (default: 300)."),
        click.option("--workers", type=click.IntRange(min=1, max=64), default=None,
                     help="Calls in flight at once (default: 4)."),
        click.option("--state", metavar="DIR", type=click.Path(file_okay=False),
                     help="State folder: journal, token cache (default: ~/.local/state/"
                          "bulkschedule or $BULKSCHEDULE_STATE)."),
        click.option("--payload-style", type=click.Choice(("query", "form", "json")),
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


def _settings(params: dict[str, Any]) -> Any:
    """Resolve flag > environment > config file > default, or exit 2 with the reason."""
    import os

    from bulkschedule.config import ConfigError, load_settings

    try:
        return load_settings(params, os.environ, params.get("config_path"))
    except ConfigError as err:
        fail(str(err))


class Progress:
    """Renders runner events: a live status line on a terminal, plain log lines otherwise."""

    def __init__(self, total: int, *, tty: bool, logger: Any, sheet: str | None = None) -> None:
        import time

        self.total = total
        self.tty = tty
        self.logger = logger
        self.sheet = sheet
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self.lock_until: float | None = None
        self._last = 0.0

    def __call__(self, event: Any) -> None:
        from bulkschedule.logs import log_lock, log_outcome
        from bulkschedule.runner import LockEvent, OutcomeEvent, WaitEvent

        if isinstance(event, OutcomeEvent):
            status = str(event.outcome.status)
            self.counts[status] = self.counts.get(status, 0) + 1
            log_outcome(self.logger, event.outcome, sheet=self.sheet)
        elif isinstance(event, LockEvent):
            self.lock_until = event.until
            log_lock(self.logger, event.until, event.reason)
        elif isinstance(event, WaitEvent):
            import time

            self.lock_until = time.time() + event.remaining
        if self.tty:
            self.draw()

    def line(self) -> str:
        import time

        done = sum(self.counts.values())
        width = 24
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.monotonic() - self.started
        rate = done * 60 / elapsed if elapsed > 0 else 0.0
        parts = [f"[{bar}] {done}/{self.total}"]
        parts += [f"{k} {v}" for k, v in sorted(self.counts.items())]
        parts.append(f"{rate:.1f}/min")
        if 0 < done < self.total and rate > 0:
            eta = int((self.total - done) * 60 / rate)
            parts.append(f"ETA {eta // 60}:{eta % 60:02d}")
        if self.lock_until is not None:
            left = int(self.lock_until - time.time())
            if left > 0:
                parts.append(f"LOCKED OUT: resuming in {left // 60}:{left % 60:02d}")
        return "  ".join(parts)

    def draw(self) -> None:
        click.echo("\r\x1b[2K" + self.line()[: terminal_width() - 1], nl=False, err=True)

    async def tick(self) -> None:
        """Redraw every second so the lockout countdown and ETA move while nothing finishes."""
        import asyncio

        while True:
            await asyncio.sleep(1)
            self.draw()

    def close(self) -> None:
        if self.tty:
            self.draw()
            click.echo(err=True)


def _counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no rows"


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
@click.option("--speed", type=click.FloatRange(min=1, max=1000), default=1.0,
              help="With --sandbox: run the window and the lock K times faster.")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), hidden=True)
@click.pass_context
def run(ctx: click.Context, **params: Any) -> None:
    """Create a Zoho LMS session for every valid row of SHEET, at the API's pace.

    Valid rows are sent; invalid rows are reported, never sent. A session is never created twice:
    re-running the same sheet sends only what is not yet created. Writes a results workbook with
    every row's status and sessionId.

    Exit code 0 when every row is created (now or earlier), 1 when some rows are invalid, failed
    or not confirmed, 2 when nothing could start, 130/143 when stopped by SIGINT/SIGTERM.
    """
    import asyncio

    code = asyncio.run(_run(params))
    raise click.exceptions.Exit(code)


async def _run(params: dict[str, Any]) -> int:
    import asyncio
    import contextlib
    import os
    import signal
    import sys
    import tempfile

    from bulkschedule import job
    from bulkschedule.logs import log_summary, register_secret, setup_logging

    sandbox_mode = bool(params["sandbox"])
    if sandbox_mode and (params["api_base"] or params["dc"]):
        fail("--sandbox runs against the built-in sandbox; drop --api-base/--dc")
    if params["speed"] != 1.0 and not sandbox_mode:
        fail("--speed only applies with --sandbox (the real API's limits cannot be sped up)")
    settings = _settings(params)
    try:
        setup_logging(settings.log_file, settings.log_format)
    except (OSError, ValueError) as err:
        fail(f"cannot open the log file: {err}")
    import logging

    logger = logging.getLogger("bulkschedule")

    today = params["today"].date() if params["today"] else None
    try:
        validation = job.load(params["sheet"], sheet_name=params["sheet_name"],
                              course=params["course"], batch=params["batch"],
                              module=params["module"], month_first=params["month_first"],
                              today=today)
    except job.JobError as err:
        fail(str(err))
    results_path = Path(params["results"]) if params["results"] else \
        job.default_results_path(params["sheet"])
    if results_path.suffix.lower() != ".xlsx":
        fail(f"--results {results_path}: the file name must end in .xlsx")
    # Find out now, not after every session has been created, that the workbook cannot be kept.
    folder = results_path.parent
    if results_path.is_dir():
        fail(f"--results {results_path} is a folder")
    if not folder.is_dir():
        fail(f"cannot write the results workbook {results_path}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):  # it is saved beside, then renamed over
        fail(f"cannot write the results workbook {results_path}: the folder {folder} is not "
             "writable")

    for note in validation.table.notes:
        click.echo(f"note: {note}")
    echo_problems(validation.problems)
    click.echo(summary_line(validation))

    calls, period = settings.rate_pair
    speed = float(params["speed"])
    tty = sys.stderr.isatty()
    stop = asyncio.Event()
    hard_stop = asyncio.Event()
    stopped_by: list[int] = []

    def on_signal(signum: int) -> None:
        if not stopped_by:
            click.echo("\nstopping: finishing the calls in flight, then writing the results "
                       "(press Ctrl-C again to stop harder)", err=True)
            stop.set()
        elif not hard_stop.is_set():
            click.echo("\nstopping now: the calls in flight are abandoned (their rows become "
                       "'unknown'; the next run checks them before sending)", err=True)
            hard_stop.set()
        stopped_by.append(signum)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)

    async with contextlib.AsyncExitStack() as stack:
        if sandbox_mode:
            from bulkschedule.auth import StaticToken
            from bulkschedule.sandbox import Sandbox, SandboxConfig

            sb = await stack.enter_async_context(Sandbox(SandboxConfig(
                rate_calls=calls, rate_seconds=period, lock_seconds=settings.lock_seconds,
                speed=speed)))
            api_base = sb.url
            state_dir = Path(params["state"]) if params["state"] else \
                Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bulkschedule-")))
            token = sb.token

            def tokens(session: Any) -> Any:
                return StaticToken(token)

            click.echo(f"sandbox: a local stand-in for Zoho at {api_base}, enforcing "
                       f"{calls} calls / {period:g} s and a {settings.lock_seconds:g} s lockout"
                       + (f", all {speed:g}x faster" if speed != 1 else ""))
        else:
            from bulkschedule.config import ConfigError, credential_problem, load_secrets

            api_base = settings.people_base
            state_dir = settings.state_dir
            try:
                secrets = load_secrets(settings, os.environ)
            except ConfigError as err:
                fail(str(err))
            for value in secrets.values():
                register_secret(value)
            problem = credential_problem(secrets)
            if problem and not params["dry_run"] and validation.sessions:
                fail(problem)

            def tokens(session: Any) -> Any:
                from bulkschedule.auth import AuthError, from_env

                try:
                    return from_env(dict(secrets), dc=settings.dc,
                                    accounts_url=secrets.get("ZOHO_ACCOUNTS_URL"),
                                    cache_dir=state_dir, session=session)
                except AuthError as err:
                    raise job.JobError(str(err)) from None

        send = job.SendSettings(
            api_base=api_base, state_dir=state_dir, rate_calls=calls, rate_period=period,
            lock_seconds=settings.lock_seconds, workers=settings.workers,
            payload_style=settings.payload_style, speed=speed)

        n = len(validation.sessions)
        if (not params["dry_run"] and not sandbox_mode and not params["yes"] and n
                and sys.stdin.isatty()):
            minutes = n / calls * period / 60
            if not click.confirm(f"Create up to {n} sessions at {api_base} (at {calls} calls / "
                                 f"{period:g} s: about {minutes:.0f} min)?", default=False):
                click.echo("nothing sent")
                return job.EXIT_INCOMPLETE

        progress = Progress(n, tty=tty and not params["dry_run"], logger=logger)
        ticker = asyncio.create_task(progress.tick()) if progress.tty else None
        try:
            result = await job.send(validation, send, tokens=tokens, results_path=results_path,
                                    dry_run=params["dry_run"], stop=stop, hard_stop=hard_stop,
                                    on_event=progress)
        except job.JobError as err:
            fail(str(err))
        except OSError as err:
            fail(f"cannot write the results workbook {results_path}: {err.strerror or err}")
        finally:
            if ticker is not None:
                ticker.cancel()
            progress.close()

        if params["dry_run"]:
            _show_preview(validation, result)
        if sandbox_mode:
            stats = sb.stats()
            click.echo(f"sandbox: {stats['calls']} calls, {stats['created']} sessions created, "
                       f"{stats['refused']} refused, {stats['duplicates']} duplicates, "
                       f"at most {stats['max_calls_in_window']} calls in any "
                       f"{period / speed:g} s window")

    log_summary(logger, result.counts)
    click.echo(f"{validation.table.file}: {_counts_line(result.counts)}")
    if result.halted:
        click.echo(f"stopped early: {result.halted}", err=True)
    click.echo(f"results: {results_path}")
    if stopped_by:
        return EXIT_SIGINT if stopped_by[0] == signal.SIGINT else EXIT_SIGTERM
    return result.exit_code


def _show_preview(validation: Any, result: Any) -> None:
    """Dry run: what would be sent, first few payloads in full."""
    from bulkschedule import job
    from bulkschedule.problems import Status

    requests = {r.row: r for r in job.requests_for(validation)}
    shown = 0
    for row, outcome in sorted(result.outcomes.items()):
        if outcome.status == Status.WOULD_CREATE and row in requests and shown < 3:
            req = requests[row]
            click.echo(f"row {row}: POST {req.path}")
            click.echo(f"  sessionData={json.dumps(req.session_data)}")
            shown += 1
        elif outcome.status in (Status.EXISTS, Status.CHANGED):
            click.echo(f"row {row}: {outcome.status}: {outcome.message}")
    would = sum(1 for o in result.outcomes.values() if o.status == Status.WOULD_CREATE)
    click.echo(f"dry run: {would} sessions would be created; nothing was sent")


@main.command(short_help="Run the local stand-in for the Zoho LMS API.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--rate", default="30/60", show_default=True, metavar="N/SECONDS")
@click.option("--lock-seconds", type=click.FloatRange(min=0), default=300.0, show_default=True)
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--lose-reply-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--latency", default="0-0", show_default=True, metavar="MIN-MAX")
@click.option("--start-locked", type=click.FloatRange(min=0), default=0.0, metavar="S")
@click.option("--lock-style", type=click.Choice(("429", "422", "7209")), default="429",
              show_default=True)
@click.option("--token", default="sandbox-token", show_default=True)
@click.option("--token-ttl", type=click.FloatRange(min=1), default=3600.0, show_default=True)
@click.option("--seed", type=int, default=None)
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Catalogue JSON: courses, batches (with dates), modules, trainers, rooms.")
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="Keep sessions in this SQLite file instead of memory.")
@click.option("--speed", type=click.FloatRange(min=1, max=1000), default=1.0,
              help="Run the window and the lock K times faster.")
def sandbox(**params: Any) -> None:
    """Serve a local stand-in for the Zoho People LMS API: the real limits, no account needed.

    Point a run at it with `bulkschedule run SHEET --api-base http://127.0.0.1:8765` and
    ZOHO_ACCESS_TOKEN=sandbox-token. Counters: GET /__sandbox/stats.
    """
    import asyncio

    from bulkschedule.sandbox import (
        SandboxConfig,
        load_catalogue,
        parse_latency,
        parse_rate,
        serve,
    )

    try:
        calls, seconds = parse_rate(params["rate"])
        latency = parse_latency(params["latency"])
        catalogue = load_catalogue(params["data"]) if params["data"] else None
        config = SandboxConfig(
            rate_calls=calls, rate_seconds=seconds, lock_seconds=params["lock_seconds"],
            fail_rate=params["fail_rate"], lose_reply_rate=params["lose_reply_rate"],
            latency=latency, start_locked=params["start_locked"],
            lock_style=params["lock_style"], token=params["token"],
            token_ttl=params["token_ttl"], seed=params["seed"], catalogue=catalogue,
            db=params["db"], speed=params["speed"])
    except ValueError as err:
        fail(str(err))

    def ready(sb: Any) -> None:
        click.echo(f"sandbox listening on {sb.url} (token: {sb.token}); Ctrl-C to stop",
                   err=True)

    try:
        asyncio.run(serve(config, params["host"], params["port"], on_ready=ready))
    except KeyboardInterrupt:
        pass
    except OSError as err:
        fail(f"cannot listen on {params['host']}:{params['port']}: {err.strerror or err}")



# ------------------------------------------------------------------ inbox, auth, config show
# The unattended workflow. `_credentials` and `_token_factory` repeat the credential code of
# `_run` on purpose, so `run` can be changed independently; merge them once `run` settles.


def _credentials(settings: Any, *, required: bool) -> Any:
    """The secrets (environment or secrets file), registered for log redaction before anything
    could log them; with ``required``, exit 2 when they cannot authenticate."""
    import os

    from bulkschedule.config import ConfigError, credential_problem, load_secrets
    from bulkschedule.logs import register_secret

    try:
        secrets = load_secrets(settings, os.environ)
    except ConfigError as err:
        fail(str(err))
    for value in secrets.values():
        register_secret(value)
    if required and (problem := credential_problem(secrets)):
        fail(problem)
    return secrets


def _token_factory(settings: Any, secrets: Any) -> Any:
    """``tokens(session)`` for `job.send`: the refresh flow (cached in the state folder) or the
    static token; a half-configured environment becomes a JobError (exit 2), not a traceback."""

    def tokens(session: Any) -> Any:
        from bulkschedule import job
        from bulkschedule.auth import AuthError, from_env

        try:
            return from_env(dict(secrets), dc=settings.dc,
                            accounts_url=secrets.get("ZOHO_ACCOUNTS_URL"),
                            cache_dir=settings.state_dir, session=session)
        except AuthError as err:
            raise job.JobError(str(err)) from None

    return tokens


def _start_logging(settings: Any) -> Any:
    import logging

    from bulkschedule.logs import setup_logging

    try:
        setup_logging(settings.log_file, settings.log_format)
    except (OSError, ValueError) as err:
        fail(f"cannot open the log file: {err}")
    return logging.getLogger("bulkschedule")


def _shown(path: Path | None, root: Path) -> str:
    """A path relative to the inbox root when it is inside it: shorter cron mail."""
    if path is None:
        return ""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _sheet_line(result: Any, root: Path) -> str:
    """One line per sheet for the console and the cron mail."""
    from bulkschedule import inbox as ib

    counts = _counts_line(result.counts) if result.counts else "no rows sent"
    if result.status == ib.DONE:
        line = f"{result.name}: {counts} -> {_shown(result.moved_to, root)}"
        if result.results_path:
            line += f" (results: {_shown(result.results_path, root)})"
    elif result.status in (ib.REJECTED, ib.UNREADABLE):
        line = f"{result.name}: {result.status}: {result.message} -> " \
               f"{_shown(result.moved_to, root) or 'left in incoming/'}"
        if result.report_path:
            line += f" (see {_shown(result.report_path, root)})"
    else:
        line = f"{result.name}: {result.status}, left in incoming/: {result.message}"
        if result.counts:
            line += f" ({counts})"
    return line


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

    from bulkschedule.inbox import InboxBusy, InboxPaths, InstanceLock

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
        secrets = _credentials(settings, required=True)  # registered before anything logs
        logger = _start_logging(settings)
        code = asyncio.run(_inbox(settings, paths, secrets, logger))
    finally:
        lock.release()
    raise click.exceptions.Exit(code)


async def _inbox(settings: Any, paths: Any, secrets: Any, logger: Any) -> int:
    """One pass, or with ``watch`` a pass every ``watch`` seconds until a signal."""
    import asyncio
    import contextlib
    import signal
    import sys

    from bulkschedule import job
    from bulkschedule.inbox import EXIT_CANNOT_START, NOT_STARTED, SheetResult, process_inbox

    stop = asyncio.Event()
    stopped_by: list[int] = []

    def on_signal(signum: int) -> None:
        if not stopped_by:
            click.echo("stopping: finishing the calls in flight and writing the results",
                       err=True)
        stopped_by.append(signum)
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)

    calls, period = settings.rate_pair
    send = job.SendSettings(
        api_base=settings.people_base, state_dir=settings.state_dir, rate_calls=calls,
        rate_period=period, lock_seconds=settings.lock_seconds, workers=settings.workers,
        payload_style=settings.payload_style)
    tokens = _token_factory(settings, secrets)
    tty = sys.stderr.isatty()
    current: list[Progress] = []

    def progress_for(sheet: str, n: int) -> Progress:
        current[:] = [Progress(n, tty=tty, logger=logger, sheet=sheet)]
        return current[0]

    def on_sheet(result: SheetResult) -> None:
        for progress in current:
            progress.close()
        current.clear()
        if result.status == NOT_STARTED:
            click.echo(f"bulkschedule: error: {result.name}: {result.message}", err=True)
        click.echo(_sheet_line(result, paths.root))

    watch = settings.inbox.watch
    while True:
        result = await process_inbox(
            paths, send, tokens=tokens, all_or_nothing=settings.inbox.all_or_nothing,
            stable_seconds=settings.inbox.stable_seconds, stop=stop,
            on_event_factory=progress_for, on_sheet=on_sheet, logger=logger)
        if result.stopped:
            return EXIT_SIGINT if stopped_by[:1] == [signal.SIGINT] else EXIT_SIGTERM
        if watch is None:
            if not result.sheets:
                click.echo(f"{paths.incoming}: no sheet ready; nothing to do")
            return result.exit_code
        if result.exit_code == EXIT_CANNOT_START:
            return EXIT_CANNOT_START  # credentials or disk: let the service manager restart/alert
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=watch)
        if stop.is_set():
            return EXIT_OK  # stopped between passes: nothing was cut short


# ------------------------------------------------------------------------------------- auth


def _ask(label: str, *, hide: bool) -> str:
    """A value typed at a terminal (hidden for secrets), or one line of stdin for scripts.

    Secrets are never taken as options: a command line is visible to every user in `ps`.
    """
    import sys

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
              help="With --check: read the module named in this sheet's first valid row.")
@id_options
@sending_options
def auth(**params: Any) -> None:
    """Exchange a Self Client grant code for a refresh token and write the secrets file.

    Asks for the client ID, the client secret and the grant code (generated in the Zoho API
    console with scope ZOHOPEOPLE.training.ALL; it works once, for a few minutes). They may also
    come from ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and ZOHO_GRANT_CODE, or one per line on stdin.
    The file is written with mode 0600 to `secrets_file` (see `bulkschedule config show`).

    With --check: get an access token (reusing the cached one if it is still fresh) and list the
    sessions of one module (--course/--batch/--module, or --ids-from SHEET) at the usual pace,
    proving the credentials, the data centre and the scope. Nothing is created.

    Exit code 0 on success, 2 when the credentials or the exchange failed.
    """
    import asyncio

    settings = _settings(params)
    ids = [params["course"], params["batch"], params["module"]]
    if not params["check"]:
        if any(ids) or params["ids_from"]:
            raise click.UsageError("--course/--batch/--module and --ids-from go with --check")
        _auth_setup(settings, force=params["force"])
        return
    if any(ids) and not all(ids):
        raise click.UsageError("--check needs all three of --course, --batch and --module")
    target: tuple[str, str, str] | None = (ids[0], ids[1], ids[2]) if all(ids) else None
    if params["ids_from"]:
        if target is not None:
            raise click.UsageError("give either --ids-from or --course/--batch/--module")
        target = _ids_from(params["ids_from"])
    secrets = _credentials(settings, required=True)
    _start_logging(settings)  # a token minted here is logged (masked) like a run's
    raise click.exceptions.Exit(asyncio.run(_auth_check(settings, secrets, target)))


def _ids_from(sheet: str) -> tuple[str, str, str]:
    from bulkschedule import job

    try:
        validation = job.load(sheet)
    except job.JobError as err:
        fail(str(err))
    if not validation.sessions:
        fail(f"{sheet}: no valid row to take the course, batch and module IDs from")
    first = validation.sessions[0]
    return first.course_id, first.batch_id, first.module_id


def _auth_setup(settings: Any, *, force: bool) -> None:
    """Walk through the Self Client exchange; the grant code is spent only once nothing else
    can stop the secrets file from being written."""
    import asyncio
    import os
    import sys

    from bulkschedule.config import CREDENTIAL_NAMES, write_secrets
    from bulkschedule.logs import register_secret

    target: Path = settings.secrets_file
    if target.is_dir():
        fail(f"{target}: the secrets file path is a folder")
    if target.exists() and not force and not (sys.stdin.isatty() and click.confirm(
            f"{target} exists; replace it?", default=False, err=True)):
        fail(f"{target} already exists; use --force to replace it")
    from bulkschedule.client import check_base_url

    accounts_env = os.environ.get("ZOHO_ACCOUNTS_URL", "").strip()
    try:
        accounts = check_base_url(accounts_env or settings.accounts_base)
    except ValueError as err:
        fail(f"ZOHO_ACCOUNTS_URL: {err}")
    if sys.stdin.isatty():
        click.echo(f"Zoho API console for the {settings.dc} data centre -> Self Client: copy "
                   "the client ID and secret, then Generate Code with scope "
                   "ZOHOPEOPLE.training.ALL.", err=True)
    client_id = os.environ.get("ZOHO_CLIENT_ID", "").strip() or _ask("Client ID", hide=False)
    register_secret(client_id)
    client_secret = os.environ.get("ZOHO_CLIENT_SECRET", "").strip() or \
        _ask("Client secret", hide=True)
    register_secret(client_secret)
    code = os.environ.get("ZOHO_GRANT_CODE", "").strip() or _ask("Grant code", hide=True)
    register_secret(code)

    async def exchange() -> dict[str, Any]:
        import aiohttp

        from bulkschedule.auth import exchange_grant_code

        async with aiohttp.ClientSession() as session:
            return await exchange_grant_code(accounts, client_id, client_secret, code,
                                             session=session)

    from bulkschedule.auth import AuthError

    try:
        reply = asyncio.run(exchange())
    except AuthError as err:
        fail(str(err))
    for key in ("refresh_token", "access_token"):
        register_secret(str(reply.get(key) or ""))
    values = {"ZOHO_CLIENT_ID": client_id, "ZOHO_CLIENT_SECRET": client_secret,
              "ZOHO_REFRESH_TOKEN": str(reply["refresh_token"])}
    if accounts_env:
        values["ZOHO_ACCOUNTS_URL"] = accounts
    try:
        written = write_secrets(target, values)
    except OSError as err:
        fail(f"cannot write the secrets file {target}: {err.strerror or err}; the grant code "
             "is now used up, so generate a new one once this is fixed")
    click.echo(f"wrote {written} (mode 0600): client ID, client secret and refresh token")
    shadowing = [n for n in CREDENTIAL_NAMES if os.environ.get(n, "").strip()]
    if shadowing:
        click.echo(f"note: {', '.join(shadowing)} set in the environment take(s) precedence over "
                   "the secrets file; unset them for runs to use the file")
    click.echo("next: bulkschedule auth --check --ids-from SHEET")


async def _auth_check(settings: Any, secrets: Any, target: tuple[str, str, str] | None) -> int:
    """Token first (minted or reused), then one module listing paced through the shared
    limiter and lock gate, exactly like a run's calls, since Zoho counts reads too."""
    import aiohttp

    from bulkschedule.auth import AuthError, RefreshingToken, from_env
    from bulkschedule.client import ApiError, LmsClient, Locked, check_base_url
    from bulkschedule.journal import Journal, normalise_base
    from bulkschedule.limiter import LockGate, WindowLimiter, make_pace
    from bulkschedule.logs import register_secret

    try:
        base = check_base_url(settings.people_base)
    except ValueError as err:
        fail(str(err))
    async with aiohttp.ClientSession() as session:
        try:
            provider = from_env(dict(secrets), dc=settings.dc,
                                accounts_url=secrets.get("ZOHO_ACCOUNTS_URL"),
                                cache_dir=settings.state_dir, session=session)
            token = await provider.token()
        except AuthError as err:
            fail(f"cannot get an access token: {err}")
        register_secret(token)
        refreshing = isinstance(provider, RefreshingToken)
        if refreshing:
            how = ("minted a new access token" if provider.mints
                   else "reused the cached access token (still fresh)")
            click.echo(f"credentials: OK, {how}")
        else:
            click.echo("credentials: using ZOHO_ACCESS_TOKEN as given")
        if target is None:
            if not refreshing:
                fail("a static ZOHO_ACCESS_TOKEN can only be checked by a read: give "
                     "--course/--batch/--module or --ids-from SHEET")
            click.echo("scope: not checked (no module given); add --ids-from SHEET or "
                       "--course/--batch/--module to make one harmless read")
            return EXIT_OK

        course, batch, module = target
        calls, period = settings.rate_pair
        journal = Journal(settings.state_dir)
        shared = journal.path
        journal.close()
        scope = normalise_base(base)
        limiter = WindowLimiter(calls, period, shared=shared, scope=scope)
        gate = LockGate(shared=shared, scope=scope)

        def waiting(seconds: float) -> None:
            click.echo(f"waiting {seconds:.0f} s for a rate-limit lockout to end", err=True)

        client = LmsClient(base, provider, session=session,
                           payload_style=settings.payload_style,
                           pace=make_pace(gate, limiter, on_wait=waiting))
        try:
            items = await client.list_module_sessions(course, batch, module)
        except Locked as err:
            gate.close(max(err.retry_after or 0.0, settings.lock_seconds), reason=err.message)
            fail(f"{err.message}; the credentials were accepted, try the check again later")
        except ApiError as err:
            fail(err.message)
        finally:
            limiter.detach()
            gate.detach()
    click.echo(f"read: OK, module {module} of batch {batch} lists {_plural(len(items), 'session')}"
               f" at {base}; nothing was created")
    return EXIT_OK


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
    from bulkschedule.config import show

    settings = _settings(params)
    secrets = _credentials(settings, required=False)
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
@click.option("--speed", type=click.FloatRange(min=1, max=1000), default=1.0,
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
    import os

    from bulkschedule import web

    if params["sandbox"] and (params["api_base"] or params["dc"]):
        fail("--sandbox runs against the built-in sandbox; drop --api-base/--dc")
    if params["speed"] != 1.0 and not params["sandbox"]:
        fail("--speed only applies with --sandbox (the real API's limits cannot be sped up)")
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

"""What the command line prints: problem tables, summary lines, live progress, inbox lines.

Pure text formatting over the library's records (`Problem`, `Outcome`, `SheetResult`), so every
command reports the same thing the same way. `echo_problems` writes the table to stdout and
`Progress` its line to stderr. Only command modules import this one (they are loaded when their
command runs), so its imports of the pipeline do not slow `bulkschedule --help`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from bulkschedule.app import inbox as ib
from bulkschedule.app.inbox import SheetResult
from bulkschedule.app.job import JobResult
from bulkschedule.app.logs import log_lock, log_outcome
from bulkschedule.app.progress import Tally
from bulkschedule.core.problems import Problem, Status, changes_text, line_of
from bulkschedule.send.plan import ACTION_WORDS
from bulkschedule.send.runner import Event, LockEvent, OutcomeEvent
from bulkschedule.sheet.parse import format_date
from bulkschedule.sheet.payload import build_request
from bulkschedule.sheet.schema import Expansion, Validation


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary_line(validation: Validation) -> str:
    """``sessions.xlsx: 40 rows, 38 valid, 3 errors, 1 warning``; with repeating rows
    ``term.xlsx: 6 rows, 5 of them repeating: 53 sessions, 53 valid, 0 errors, 0 warnings``
    (``valid`` counts sessions)."""
    rows = plural(validation.n_rows, "row")
    if validation.expansions:
        made = validation.n_rows + sum(e.sessions - 1 for e in validation.expansions)
        rows += (f", {len(validation.expansions)} of them repeating: "
                 f"{plural(made, 'session')}")
    line = (
        f"{validation.table.file}: {rows}, "
        f"{validation.valid} valid, {plural(validation.errors, 'error')}, "
        f"{plural(validation.warnings, 'warning')}"
    )
    if validation.fatal:
        line += " - fix the sheet-level errors first"
    return line


def counts_line(counts: Mapping[str, int]) -> str:
    """``38 created, 2 invalid``."""
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no rows"


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


#: How many problems a command's table shows: at 100,000 rows the full table can run to thousands
#: of lines that nobody reads on a terminal or in cron mail; the rest are counted, and the line
#: under the table says where the full list is.
PROBLEMS_SHOWN = 50


def more_problems_line(problems: Sequence[Problem], shown: int, where: str) -> str | None:
    """``... and 950 more problems (1,000 in all): <where>``, or None when all were shown."""
    more = len(problems) - shown
    if more <= 0:
        return None
    return (f"... and {more:,} more {'problem' if more == 1 else 'problems'} "
            f"({len(problems):,} in all): {where}")


def echo_problems(problems: Sequence[Problem], width: int | None = None, *,
                  shown: int = PROBLEMS_SHOWN, where: str = "--json lists every one") -> None:
    """The problem table on stdout: the first ``shown`` problems (in sheet order), then how many
    more there are and ``where`` the full list is."""
    for line in format_problems(problems[:shown], width):
        click.echo(line.rstrip())
    more = more_problems_line(problems, shown, where)
    if more is not None:
        click.echo(more)


#: How many repeating rows `echo_expansions` lists; the rest are counted (--json lists all).
EXPANSIONS_SHOWN = 20


def format_expansions(expansions: Sequence[Expansion], *,
                      shown: int = EXPANSIONS_SHOWN) -> list[str]:
    """What each repeating row makes: a table of row, sessions, first and last date, the first
    ``shown`` rows, then how many more there are."""
    if not expansions:
        return []
    row_w = max(3, *(len(str(e.row)) for e in expansions[:shown]))
    out = [f"{'row':>{row_w}}  sessions  first       last",
           f"{'-' * row_w}  --------  ----------  ----------"]
    out += [f"{e.row:>{row_w}}  {e.sessions:>8}  {format_date(e.first)}  {format_date(e.last)}"
            for e in expansions[:shown]]
    more = len(expansions) - shown
    if more > 0:
        out.append(f"... and {more:,} more repeating row{'s' * (more > 1)}: --json lists "
                   "every one")
    return out


def echo_expansions(expansions: Sequence[Expansion], *, shown: int = EXPANSIONS_SHOWN) -> None:
    """The repeating rows on stdout: how many sessions each makes, the first and last date."""
    total = sum(e.sessions for e in expansions)
    click.echo(f"{plural(len(expansions), 'repeating row')} making {plural(total, 'session')}:")
    for line in format_expansions(expansions, shown=shown):
        click.echo(line)


#: How many rows the journal already settled (created, or created with other details) or that
#: would be updated a dry run names one by one: a second dry run of a sheet already sent would
#: otherwise print a line for every row. The rest are counted, and the line under them says
#: where every one is.
PREVIEW_SHOWN = 20


def preview_lines(result: JobResult, shown: int = 3, *, listed: int = PREVIEW_SHOWN
                  ) -> list[str]:
    """A dry run: what would be sent, the first ``shown`` payloads in full, the first
    ``listed`` rows already created or to update (then how many more, and where they all are),
    and the plan's counts."""
    sessions = {line_of(s.row, s.occurrence): s for s in result.validation.sessions}
    out: list[str] = []
    settled = 0
    for line, outcome in sorted(result.outcomes.items()):
        if outcome.status == Status.WOULD_CREATE and line in sessions and shown > 0:
            req = build_request(sessions[line])  # only the few shown: 100,000 cost a second
            out += [f"{outcome.where}: POST {req.path}",
                    f"  sessionData={json.dumps(dict(req.session_data))}"]
            shown -= 1
        elif outcome.status in (Status.EXISTS, Status.CHANGED, Status.WOULD_UPDATE):
            settled += 1
            if settled > listed:
                continue
            if outcome.status == Status.WOULD_UPDATE:
                out.append(f"{outcome.where}: would update session {outcome.session_id}: "
                           f"{changes_text(outcome.changes) or outcome.message}")
            else:
                out.append(f"{outcome.where}: {outcome.status}: {outcome.message}")
    if settled > listed:
        where = (f"the status column of {result.results_path}" if result.results_path
                 else "the results workbook")
        out.append(f"... and {settled - listed:,} more {'row' if settled - listed == 1 else 'rows'}"
                   f" already created or to update ({settled:,} in all): {where}")
    if result.plan is not None:
        counts = result.plan.counts()
        out.append("plan: " + ", ".join(f"{counts[a]} {words}"
                                        for a, words in ACTION_WORDS.items()))
    would = sum(1 for o in result.outcomes.values() if o.status == Status.WOULD_CREATE)
    out.append(f"dry run: {would} sessions would be created; nothing was sent")
    return out




def _shown(path: Path | None, root: Path) -> str:
    """A path relative to the inbox root when it is inside it: shorter cron mail."""
    if path is None:
        return ""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def sheet_line(result: SheetResult, root: Path) -> str:
    """One line per inbox sheet for the console and the cron mail."""
    counts = counts_line(result.counts) if result.counts else "no rows sent"
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


class Progress:
    """Renders `job.send` events: a live status line on a terminal, and one log line per row
    outcome and per lockout (the log decides whether those reach the screen).

    ``total`` is the rows to send: invalid rows are logged and counted, but not progress.
    """

    #: A terminal line redrawn more often than this is flicker, and at 100,000 rows it is most
    #: of a dry run's time: at most five redraws a second.
    REDRAW_EVERY = 0.2

    def __init__(self, total: int, *, tty: bool, logger: logging.Logger,
                 sheet: str | None = None, limit_per_min: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        #: counts, rate and ETA (capped by ``limit_per_min``, the limiter's sustained rate: early
        #: calls fill the first window quickly, so the rate seen so far would over-promise)
        self.tally = Tally(total, limit_per_min=limit_per_min)
        self.tty = tty
        self.logger = logger
        self.sheet = sheet
        self._clock = clock
        self._drawn_at: float | None = None

    def __call__(self, event: Event) -> None:
        self.tally(event)
        if isinstance(event, OutcomeEvent):
            log_outcome(self.logger, event.outcome, sheet=self.sheet)
        elif isinstance(event, LockEvent):
            log_lock(self.logger, event.until, event.reason)
        if self.tty:
            now = self._clock()
            if (self._drawn_at is None or now - self._drawn_at >= self.REDRAW_EVERY
                    or isinstance(event, LockEvent)):
                self._drawn_at = now
                self.draw()

    @property
    def done(self) -> int:
        return self.tally.done

    def line(self) -> str:
        tally, width = self.tally, 24
        done = tally.done
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        parts = [f"[{bar}] {done}/{self.total}"]
        parts += [f"{k} {v}" for k, v in tally.sorted_counts().items()]
        parts.append(f"{tally.rate():.1f}/min")
        eta = tally.eta()
        if eta is not None:
            parts.append(f"ETA {eta // 60}:{eta % 60:02d}")
        left = int(tally.lock_left())
        if left > 0:
            parts.append(f"LOCKED OUT: resuming in {left // 60}:{left % 60:02d}")
        return "  ".join(parts)

    def draw(self) -> None:
        click.echo("\r\x1b[2K" + self.line()[: terminal_width() - 1], nl=False, err=True)

    async def tick(self) -> None:
        """Redraw every second so the lockout countdown and ETA move while nothing finishes."""
        while True:
            await asyncio.sleep(1)
            self.draw()

    def close(self) -> None:
        if self.tty:
            self.draw()
            click.echo(err=True)


def sandbox_stats_line(stats: Mapping[str, Any], window: float) -> str:
    """The sandbox's own count of what happened, after a rehearsal."""
    return (f"sandbox: {stats['calls']} calls, {stats['created']} sessions created, "
            f"{stats['refused']} refused, {stats['duplicates']} duplicates, "
            f"at most {stats['max_calls_in_window']} calls in any {window:g} s window")

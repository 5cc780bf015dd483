"""What every command shares: stopping with one line, the exit, IDs and output paths, logging.

Light (click, the standard library and the stdlib-only parts of the tool), though only command
modules import it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from bulkschedule.app.config import Settings
from bulkschedule.app.logs import LOGGER_NAME, setup_logging
from bulkschedule.cli.errors import say_error
from bulkschedule.core.constants import Exit

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")

def fail(message: str, code: int = Exit.CANNOT_START, *,
         json_out: dict[str, Any] | None = None) -> NoReturn:
    """Stop the command: one line on stderr, no traceback, exit ``code``.

    ``json_out`` is for ``--json`` modes: it is printed on stdout (with ``error`` set to the
    message) so that a script reading stdout always gets one JSON object.
    """
    if json_out is not None:
        click.echo(json.dumps({**json_out, "error": message}))
    say_error(message)
    raise click.exceptions.Exit(int(code))


def leave(code: int) -> NoReturn:
    """End the command with ``code`` (an `Exit`), after its output is written."""
    raise click.exceptions.Exit(int(code))


def _digits(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Path IDs from the command line must be exact digits: anything else is a usage error."""
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise click.BadParameter(f"{value!r} is not an ID: IDs are digits only, such as "
                                 "478346000019479103")
    return text


def id_options(f: F) -> F:
    """``--course/--batch/--module``: path IDs given once instead of as sheet columns."""
    for name in ("module", "batch", "course"):
        f = click.option(f"--{name}", metavar="ID", callback=_digits,
                         help=f"The {name} ID for every row (instead of a {name}Id column).")(f)
    return f


@dataclass(frozen=True, slots=True)
class Reading:
    """How to read a sheet (`job.load`'s options), as the sheet options give them."""

    sheet_name: str | None = None
    course: str | None = None
    batch: str | None = None
    module: str | None = None
    month_first: bool = False
    holidays: str | None = None  #: a file of dates no repeating row has a session on


def apply(f: Any, options: Sequence[Callable[[Any], Any]]) -> Any:
    """``f`` decorated with ``options``, the first listed first in the help."""
    for option in reversed(options):
        f = option(f)
    return f


def sheet_options(f: Callable[..., R]) -> Callable[..., R]:
    """``--sheet``, the path IDs, ``--month-first`` and ``--holidays``, handed to the command as
    one `Reading` named ``reading``."""

    @functools.wraps(f)  # also carries the options already stacked on ``f`` (click keeps them)
    def command(*, sheet_name: str | None, course: str | None, batch: str | None,
                module: str | None, month_first: bool, holidays: str | None,
                **params: Any) -> R:
        return f(reading=Reading(sheet_name, course, batch, module, month_first, holidays),
                 **params)

    return apply(command, [  # type: ignore[no-any-return]  # click's decorators are untyped
        click.option("--sheet", "sheet_name", metavar="NAME",
                     help="The worksheet to read (default: the first)."),
        id_options,
        click.option("--month-first", is_flag=True,
                     help="Read text dates such as 01-04-2027 as month first (default: day "
                          "first)."),
        click.option("--holidays", metavar="FILE.csv", type=click.Path(dir_okay=False),
                     help="Dates no repeating row has a session on: a file with a date or a "
                          "range (06-04-2027..10-04-2027) per line, and an optional name "
                          "(besides a workbook's own Holidays sheet)."),
    ])


def _as_date(ctx: click.Context, param: click.Parameter, value: dt.datetime | None
             ) -> dt.date | None:
    return value.date() if value is not None else None


def today_option(f: F) -> F:
    """``--today`` (hidden): pretend today is this date, for tests and reproducible reports."""
    return click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), hidden=True,
                        callback=_as_date,
                        help="Pretend today is this date (for tests and reproducible reports)."
                        )(f)


def check_output(path: str, *, suffixes: Iterable[str], force: bool, option: str) -> Path:
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


def sandbox_conflicts(settings: Settings, *, sandbox: bool, speed: float) -> None:
    """``--sandbox`` and ``--speed`` (run, serve): only the sandbox can be sped up, and it
    cannot be combined with another target on the command line."""
    if sandbox and (settings.given("api_base") or settings.given("dc")):
        fail("--sandbox runs against the built-in sandbox; drop --api-base/--dc")
    if speed != 1.0 and not sandbox:
        fail("--speed only applies with --sandbox (the real API's limits cannot be sped up)")


def start_logging(settings: Settings) -> logging.Logger:
    """The log (stderr when it is not a terminal, plus --log-file). Call it after the secrets
    are loaded, so they are registered for redaction before anything could log them."""
    try:
        setup_logging(settings.log_file, settings.log_format)
    except (OSError, ValueError) as err:
        fail(f"cannot open the log file: {err}")
    return logging.getLogger(LOGGER_NAME)

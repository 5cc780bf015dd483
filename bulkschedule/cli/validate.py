"""``bulkschedule validate``: check a sheet without sending anything.

`read_and_validate` is also how `run`, `forget` and `auth --check --ids-from` read their sheet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import click

from bulkschedule.app.config import Settings
from bulkschedule.app.job import DEFAULT_LIMITS, load
from bulkschedule.app.online import Online, check_online
from bulkschedule.app.online import Reading as OnlineReading
from bulkschedule.app.results import write_report
from bulkschedule.app.target import api
from bulkschedule.cli.common import Reading, check_output, fail, leave, sheet_options, today_option
from bulkschedule.cli.console import echo_expansions, echo_problems, summary_line
from bulkschedule.cli.options import setting_options
from bulkschedule.core.constants import Exit, PayloadStyle
from bulkschedule.core.errors import JobError
from bulkschedule.org.cache import OrgCache
from bulkschedule.send.journal import normalise_base
from bulkschedule.sheet.limits import ReadLimits
from bulkschedule.sheet.schema import Validation

AS_GIVEN = Reading()  # the first worksheet, IDs from the sheet, day-first dates


def read_and_validate(sheet: str, reading: Reading = AS_GIVEN, *, today: dt.date | None = None,
                      json_mode: bool = False, names_from: OrgCache | None = None,
                      payload_style: PayloadStyle = "query",
                      limits: ReadLimits = DEFAULT_LIMITS) -> Validation:
    """Read and validate a sheet, or stop with exit code 2 when the file cannot be read (with
    ``json_mode``, after printing the one JSON object a script expects). Names in ID columns
    resolve from ``names_from``, the org cache."""
    try:
        return load(sheet, sheet_name=reading.sheet_name, course=reading.course,
                    batch=reading.batch, module=reading.module, month_first=reading.month_first,
                    today=today, names_from=names_from, payload_style=payload_style,
                    limits=limits, holidays=reading.holidays)
    except JobError as err:
        fail(str(err), json_out={"file": sheet} if json_mode else None)


def org_cache(settings: Settings) -> OrgCache | None:
    """The org cache of the configured API, if one was ever written (names resolve from it)."""
    return OrgCache.existing(settings.state_dir, normalise_base(settings.people_base))


def online_stage(settings: Settings, validation: Validation, reading: Reading, *,
                 strict: bool, json_mode: bool = False) -> Online:
    """``--online``: resolve names, check against the org and find what Zoho holds; stop with
    exit 2 and one line when it cannot (no credentials, no connection, an unreadable org)."""
    try:
        target = api(settings)
        return asyncio.run(check_online(
            validation.table, validation, target.send, tokens=target.tokens,
            reading=OnlineReading(reading.course, reading.batch, reading.module,
                                  reading.month_first),
            max_age=settings.max_age, strict=strict))
    except JobError as err:
        fail(str(err), json_out={"file": str(validation.table.file)} if json_mode else None)


@click.command("validate")
@click.argument("sheet", type=click.Path(dir_okay=False))
@sheet_options
@click.option("--online", is_flag=True,
              help="Also check against the org in Zoho: names resolved, courses, batches "
                   "(their dates), modules, trainers, rooms, and sessions Zoho already holds.")
@setting_options("send")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object on stdout instead of the table.")
@click.option("--report", metavar="OUT.xlsx",
              help="Also write a copy of the sheet with every problem marked.")
@today_option
def validate(settings: Settings, sheet: str, reading: Reading, online: bool, as_json: bool,
             report: str | None, today: dt.date | None) -> None:
    """Check SHEET (.xlsx, .xls, .ods or .csv) without sending anything.

    With --online, also against the org in Zoho (the API flags say which, as for `run`).
    Exit code 0 when no row has an error (warnings are allowed), 1 when some row has an error or
    a required column is missing, 2 when the file cannot be read (or, with --online, the org).
    """
    if report is not None:
        out = check_output(report, suffixes=(".xlsx",), force=True, option="--report")
        try:
            same = out.resolve() == Path(sheet).resolve()
        except OSError:
            same = False
        if same:
            raise click.BadParameter("the report must not overwrite the sheet being checked",
                                     param_hint="--report")

    validation = read_and_validate(sheet, reading, today=today, json_mode=as_json,
                                   names_from=org_cache(settings),
                                   payload_style=settings.payload_style,
                                   limits=settings.read_limits)
    if online:
        checked = online_stage(settings, validation, reading, strict=True, json_mode=as_json)
        validation = checked.validation
        click.echo(checked.line(), err=as_json)

    if report is not None:
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
        where = (f"every one is marked in {report} and listed by --json" if report is not None
                 else "--json lists every one; --report OUT.xlsx marks each in a copy of the "
                      "sheet")
        echo_problems(validation.problems, where=where)
        if validation.problems:
            click.echo()
        if validation.expansions:
            echo_expansions(validation.expansions)
            click.echo()
        click.echo(summary_line(validation))
        if report is not None:
            click.echo(f"report written to {report}")
    has_errors = validation.fatal or validation.errors > 0
    leave(Exit.INCOMPLETE if has_errors else Exit.OK)

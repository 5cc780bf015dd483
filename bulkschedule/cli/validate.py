"""``bulkschedule validate``: check a sheet without sending anything.

`read_and_validate` is also how `run`, `forget` and `auth --check --ids-from` read their sheet.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from bulkschedule.app.job import load
from bulkschedule.app.results import write_report
from bulkschedule.cli.common import Reading, check_output, fail, leave, sheet_options, today_option
from bulkschedule.cli.console import echo_problems, summary_line
from bulkschedule.core.constants import Exit
from bulkschedule.core.errors import JobError
from bulkschedule.sheet.schema import Validation

AS_GIVEN = Reading()  # the first worksheet, IDs from the sheet, day-first dates


def read_and_validate(sheet: str, reading: Reading = AS_GIVEN, *, today: dt.date | None = None,
                      json_mode: bool = False) -> Validation:
    """Read and validate a sheet, or stop with exit code 2 when the file cannot be read (with
    ``json_mode``, after printing the one JSON object a script expects)."""
    try:
        return load(sheet, sheet_name=reading.sheet_name, course=reading.course,
                    batch=reading.batch, module=reading.module, month_first=reading.month_first,
                    today=today)
    except JobError as err:
        fail(str(err), json_out={"file": sheet} if json_mode else None)


@click.command("validate")
@click.argument("sheet", type=click.Path(dir_okay=False))
@sheet_options
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object on stdout instead of the table.")
@click.option("--report", metavar="OUT.xlsx",
              help="Also write a copy of the sheet with every problem marked.")
@today_option
def validate(sheet: str, reading: Reading, as_json: bool, report: str | None,
             today: dt.date | None) -> None:
    """Check SHEET (.xlsx, .xls, .ods or .csv) without sending anything.

    Exit code 0 when no row has an error (warnings are allowed), 1 when some row has an error or
    a required column is missing, 2 when the file cannot be read.
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

    validation = read_and_validate(sheet, reading, today=today, json_mode=as_json)

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
        click.echo(summary_line(validation))
        if report is not None:
            click.echo(f"report written to {report}")
    has_errors = validation.fatal or validation.errors > 0
    leave(Exit.INCOMPLETE if has_errors else Exit.OK)

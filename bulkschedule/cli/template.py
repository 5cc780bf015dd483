"""``bulkschedule template``: write an empty sheet to fill in."""

from __future__ import annotations

import click

from bulkschedule.app.results import write_template, write_template_csv
from bulkschedule.cli.common import check_output, fail

DEFAULT_TEMPLATE = "sessions-template.xlsx"


@click.command("template")
@click.argument("out", default=DEFAULT_TEMPLATE, metavar="[OUT.xlsx|OUT.csv]")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def template(out: str, force: bool) -> None:
    """Write an empty sheet to fill in (default: sessions-template.xlsx here).

    The .xlsx template has the columns formatted (IDs as Text, dates, times), a drop-down for
    type, a comment on each header and an Instructions sheet. A .csv name writes the header row.
    """
    path = check_output(out, suffixes=(".xlsx", ".csv"), force=force, option="OUT")
    try:
        if path.suffix.lower() == ".csv":
            write_template_csv(path)
        else:
            write_template(path)
    except OSError as err:
        fail(f"cannot write {out}: {err.strerror or err}")
    click.echo(f"wrote {out}")

"""``bulkschedule template``: write an empty sheet to fill in."""

from __future__ import annotations

import asyncio

import click

from bulkschedule.app.config import Settings
from bulkschedule.app.online import org_lists as online_lists
from bulkschedule.app.org_template import write_org_template
from bulkschedule.app.results import write_template, write_template_csv
from bulkschedule.app.target import api
from bulkschedule.cli.common import check_output, fail
from bulkschedule.cli.options import setting_options
from bulkschedule.core.errors import JobError

DEFAULT_TEMPLATE = "sessions-template.xlsx"


@click.command("template")
@click.argument("out", default=DEFAULT_TEMPLATE, metavar="[OUT.xlsx|OUT.csv]")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--online", is_flag=True,
              help="Add drop-downs of the org's courses, batches, modules, active trainers and "
                   "rooms (read from Zoho through the cache; the API flags say which org).")
@setting_options("send")
def template(settings: Settings, out: str, force: bool, online: bool) -> None:
    """Write an empty sheet to fill in (default: sessions-template.xlsx here).

    The .xlsx template has the columns formatted (IDs as Text, dates, times), a drop-down for
    type, a comment on each header and an Instructions sheet. A .csv name writes the header row.
    With --online the ID columns get drop-downs of the org (kept on a hidden Lists sheet);
    exit code 2 when the org cannot be read.
    """
    path = check_output(out, suffixes=(".xlsx", ".csv"), force=force, option="OUT")
    if online and path.suffix.lower() == ".csv":
        fail("--online needs an .xlsx template: a CSV file has no drop-downs")
    try:
        if path.suffix.lower() == ".csv":
            write_template_csv(path)
        elif online:
            target = api(settings)
            read = asyncio.run(online_lists(target.send, target.tokens, settings.max_age))
            write_org_template(path, read.lists)
            click.echo(read.line(), err=True)
        else:
            write_template(path)
    except JobError as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write {out}: {err.strerror or err}")
    click.echo(f"wrote {out}")

"""``bulkschedule forget``: let rows be sent again after their sessions were deleted in Zoho."""

from __future__ import annotations

import click

from bulkschedule.app.config import Settings
from bulkschedule.app.job import requests_for
from bulkschedule.cli.common import Reading, leave, sheet_options
from bulkschedule.cli.console import plural
from bulkschedule.cli.options import setting_options
from bulkschedule.cli.validate import read_and_validate
from bulkschedule.core.constants import Exit
from bulkschedule.core.request import Request
from bulkschedule.send.journal import Journal, normalise_base


@click.command("forget")
@click.argument("sheet", type=click.Path(dir_okay=False))
@click.option("--row", "rows", type=click.IntRange(min=2), multiple=True, required=True,
              metavar="N", help="Spreadsheet row to forget (repeat for several rows).")
@sheet_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@setting_options("send")
def forget(settings: Settings, sheet: str, rows: tuple[int, ...], reading: Reading,
           yes: bool) -> None:
    """Remove what the journal remembers about rows of SHEET, so the next run sends them again.

    A repeating row is forgotten with all its sessions.

    For a `changed` row whose old session you deleted in Zoho, or an `unknown` row you checked by
    hand was never created. The journal is what stops duplicates: forget only rows whose session
    does not exist in Zoho. Exit code 0 when every named row was forgotten, 1 when some row was
    not in the journal or is not a valid row.
    """
    validation = read_and_validate(sheet, reading)
    by_row: dict[int, list[Request]] = {}
    for req in requests_for(validation):  # a repeating row: each of its sessions
        by_row.setdefault(req.row, []).append(req)
    base = normalise_base(settings.people_base)
    missing = [n for n in rows if n not in by_row]
    for n in missing:
        click.echo(f"row {n}: not a valid session row of {sheet}; nothing to forget")
    wanted = [req for n in rows for req in by_row.get(n, ())]
    what = "row" if all(req.occurrence is None for req in wanted) else "session"
    if not wanted:
        leave(Exit.INCOMPLETE)
    journal = Journal(settings.state_dir)
    try:
        known = [(req, journal.lookup(base, req)) for req in wanted]
        for req, entry in known:
            if entry is None:
                click.echo(f"{req.where}: the journal has nothing for it at {base}")
            else:
                sid = f" (session {entry.session_id})" if entry.session_id else ""
                click.echo(f"{req.where}: journal says {entry.status}{sid}")
        todo = [req for req, entry in known if entry is not None]
        if todo and not yes and not click.confirm(
                f"Forget {plural(len(todo), what)}? The next run sends them again; do this only "
                "if their sessions do not exist in Zoho", default=False):
            click.echo("nothing forgotten")
            leave(Exit.INCOMPLETE)
        forgotten = sum(journal.forget(base, req.identity) for req in todo)
    finally:
        journal.close()
    click.echo(f"forgot {plural(forgotten, what)}")
    ok = not missing and forgotten == len(wanted)
    leave(Exit.OK if ok else Exit.INCOMPLETE)

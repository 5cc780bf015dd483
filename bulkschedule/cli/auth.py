"""``bulkschedule auth``: set up the Self Client credentials, or check them (``--check``)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import NoReturn

import click

from bulkschedule.app.config import Settings, check_credential
from bulkschedule.app.credentials import accounts_server, check, set_up
from bulkschedule.app.target import api
from bulkschedule.cli.common import fail, id_options, leave, start_logging
from bulkschedule.cli.console import plural
from bulkschedule.cli.options import setting_options
from bulkschedule.cli.validate import read_and_validate
from bulkschedule.core.constants import Exit

Module = tuple[str, str, str]

#: What the set-up asks for: (environment variable, label, hidden when typed).
QUESTIONS: tuple[tuple[str, str, bool], ...] = (
    ("ZOHO_CLIENT_ID", "Client ID", False),
    ("ZOHO_CLIENT_SECRET", "Client secret", True),
    ("ZOHO_GRANT_CODE", "Grant code", True),
)


@click.command("auth")
@click.option("--check", "check_only", is_flag=True,
              help="Get an access token and make one harmless read; create nothing.")
@click.option("--force", is_flag=True, help="Replace an existing secrets file.")
@click.option("--ids-from", metavar="SHEET", type=click.Path(dir_okay=False),
              help="With --check: read the module named in this sheet's first valid row "
                   "(instead of the trainers).")
@id_options
@setting_options("send")
def auth(settings: Settings, check_only: bool, force: bool, ids_from: str | None,
         course: str | None, batch: str | None, module: str | None) -> None:
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
    ids = [course, batch, module]
    if not check_only:
        if any(ids) or ids_from:
            raise click.UsageError("--course/--batch/--module and --ids-from go with --check")
        _set_up(settings, force=force)
        return
    if any(ids) and not all(ids):
        raise click.UsageError("--check needs all three of --course, --batch and --module")
    chosen: Module | None = (course, batch, module) if course and batch and module else None
    if ids_from:
        if chosen is not None:
            raise click.UsageError("give either --ids-from or --course/--batch/--module")
        first = read_and_validate(ids_from).sessions  # only its IDs are read
        if not first:
            fail(f"{ids_from}: no valid row to take the course, batch and module IDs from")
        chosen = (first[0].course_id, first[0].batch_id, first[0].module_id)
    _check(settings, chosen)


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


def _answer(name: str, label: str, hide: bool) -> str:
    """One set-up value: the environment variable ``name`` if set, else asked."""
    given = os.environ.get(name, "").strip()
    return check_credential(name, given) if given else _ask(label, hide=hide)


def _set_up(settings: Settings, *, force: bool) -> None:
    """Walk through the Self Client exchange; the grant code is spent only once nothing else
    can stop the secrets file from being written."""
    path = settings.secrets_file
    assert path is not None  # resolved to the default when not configured
    if path.is_dir():
        fail(f"{path}: the secrets file path is a folder")
    if path.exists() and not force and not (sys.stdin.isatty() and click.confirm(
            f"{path} exists; replace it?", default=False, err=True)):
        fail(f"{path} already exists; use --force to replace it")
    accounts, keep_accounts = accounts_server(settings, os.environ)
    if sys.stdin.isatty():
        click.echo(f"Zoho API console for the {settings.dc} data centre -> Self Client: copy "
                   "the client ID and secret, then Generate Code with scope "
                   "ZOHOPEOPLE.training.ALL.", err=True)
    answers = [_answer(name, label, hide) for name, label, hide in QUESTIONS]
    done = asyncio.run(set_up(path, accounts, *answers, keep_accounts=keep_accounts,
                              env=os.environ))
    click.echo(f"wrote {done.written} (mode 0600): client ID, client secret and refresh token")
    if done.shadowing:
        click.echo(f"note: {', '.join(done.shadowing)} set in the environment take(s) precedence "
                   "over the secrets file; unset them for runs to use the file")
    click.echo("next: bulkschedule auth --check")


def _check(settings: Settings, module: Module | None) -> NoReturn:
    target = api(settings)
    start_logging(settings)  # a token minted here is logged (masked) like a run's

    def waiting(seconds: float) -> None:
        click.echo(f"waiting {seconds:.0f} s for a rate-limit lockout to end", err=True)

    found = asyncio.run(check(target, module, on_wait=waiting))
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
    leave(Exit.OK)

"""The ``bulkschedule`` command group: which commands exist, loading each only when it runs.

Exit codes (the same for every command, so scripts and CI can rely on them; `core.constants.Exit`):

* **0** - done. For ``validate``: no row has an error (warnings are allowed).
* **1** - the sheet has errors: some row has an error, or a required column is missing.
* **2** - the command could not do its job: a file cannot be read or written, or the command line
  is wrong (unknown option, an ID that is not digits, an existing output without ``--force``).
  One line on stderr, ``bulkschedule: error: <message>``, never a traceback. With ``--json``,
  stdout still carries exactly one JSON object, with an ``"error"`` field.

Each command is a module of this package (``cli/run.py`` for ``run``), imported when that command
is invoked: the commands import pandas, aiohttp and openpyxl, and ``bulkschedule --help`` lists
them from `COMMANDS` without importing any. Errors the library raises on purpose
(`BulkscheduleError`) are turned into the one line and their exit code here, in one place.
A new command is a module with a ``click.Command`` and a line in `COMMANDS`; it should reuse
`common.fail`, `validate.read_and_validate`, `options.setting_options` and `console` rather than
invent its own error and report formats.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

from bulkschedule import __version__
from bulkschedule.cli.errors import say_error
from bulkschedule.core.constants import Exit
from bulkschedule.core.errors import BulkscheduleError

__all__ = ["COMMANDS", "LazyGroup", "main"]


@dataclass(frozen=True, slots=True)
class Entry:
    """A command: where it lives (``module:attribute``) and its line in ``--help``."""

    target: str
    short_help: str


#: Every command, by name. The short help lives here (not in the module) so the list can be
#: shown without importing the command.
COMMANDS: Mapping[str, Entry] = {
    "validate": Entry("bulkschedule.cli.validate:validate",
                      "Check a sheet without sending anything."),
    "template": Entry("bulkschedule.cli.template:template", "Write an empty sheet to fill in."),
    "run": Entry("bulkschedule.cli.run:run",
                 "Create the sheet's sessions in Zoho (or the sandbox)."),
    "sandbox": Entry("bulkschedule.cli.sandbox:sandbox",
                     "Run the local stand-in for the Zoho LMS API."),
    "inbox": Entry("bulkschedule.cli.inbox:inbox",
                   "Send every sheet dropped in DIR/incoming/ (for cron or systemd)."),
    "auth": Entry("bulkschedule.cli.auth:auth",
                  "Set up the Self Client credentials, or check them (--check)."),
    "forget": Entry("bulkschedule.cli.forget:forget",
                    "Let rows be sent again after their sessions were deleted in Zoho."),
    "config": Entry("bulkschedule.cli.config:config_group", "Show the effective configuration."),
    "org": Entry("bulkschedule.cli.org:org_group",
                 "Find IDs in the org, and refresh or show what is cached of it."),
    "serve": Entry("bulkschedule.cli.serve:serve",
                   "Serve the upload page (a web front for `run`)."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (click's documented lazy-loading
    pattern), and which turns a `BulkscheduleError` from any of them into one line and its
    exit code."""

    def __init__(self, *args: Any, lazy: Mapping[str, Entry], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        entry = self.lazy[cmd_name]
        module_name, _, attribute = entry.target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command) or command.name != cmd_name:
            raise RuntimeError(f"{entry.target} is not the {cmd_name!r} command")  # a bug here
        command.short_help = entry.short_help
        self.add_command(command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, from `COMMANDS` alone: ``--help`` imports no command."""
        rows = [(name, self.lazy[name].short_help if name in self.lazy
                 else (self.commands[name].get_short_help_str() if name in self.commands else ""))
                for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BulkscheduleError as err:
            if err.exit_code == Exit.OK:  # not a failure (another inbox run is busy): say so
                click.echo(str(err))
            else:
                say_error(str(err))
            raise click.exceptions.Exit(int(err.exit_code)) from None


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bulkschedule")
def main() -> None:
    """Load a term of training sessions from a spreadsheet into Zoho People LMS.

    Start with `bulkschedule template` for a sheet to fill in, then check it with
    `bulkschedule validate SHEET`.
    """

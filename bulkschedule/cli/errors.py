"""The one line every failure prints. Its own module (click only) so the root, which prints it
for any `BulkscheduleError`, imports nothing else of the tool for ``--help``."""

from __future__ import annotations

import click

PREFIX = "bulkschedule: error: "


def say_error(message: str) -> None:
    """``bulkschedule: error: <message>`` on stderr; a newline inside becomes a space."""
    click.echo(PREFIX + " ".join(str(message).splitlines()), err=True)

"""``bulkschedule config show``: every setting, its value and where it came from."""

from __future__ import annotations

import click

from bulkschedule.app.config import Settings, show
from bulkschedule.app.target import credentials
from bulkschedule.cli.options import setting_options


@click.group("config")
def config_group() -> None:
    """Inspect the configuration: flag > environment > config file > built-in default."""


@config_group.command("show")
@setting_options("send", "inbox", "serve", "read")
def config_show(settings: Settings) -> None:
    """Print every setting, its value and where it came from; credentials are masked.

    Give the same flags as a `run` or `inbox` command line to see what that command would use.
    Exit code 2 when the configuration or the secrets file is unusable (the message says why).
    """
    rows = show(settings, credentials(settings, required=False))
    name_w = max(len(r[0]) for r in rows)
    value_w = min(60, max(len(r[1]) for r in rows))
    for name, value, source in rows:
        click.echo(f"{name:<{name_w}}  {value:<{value_w}}  {source}".rstrip())

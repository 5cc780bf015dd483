"""``bulkschedule serve``: the upload page, a web front for `run`."""

from __future__ import annotations

import asyncio
import os

import click

from bulkschedule.app.config import Settings
from bulkschedule.app.isolate import ReadLimits
from bulkschedule.cli.common import fail, sandbox_conflicts, start_logging
from bulkschedule.cli.options import Number, setting_options
from bulkschedule.web import server as web

MEGABYTE = 1024 * 1024
DAY = 86400.0


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs a password.")
@click.option("--port", type=Number(0, 65535, integer=True), default=8080, show_default=True)
@click.option("--sandbox", is_flag=True,
              help="Send runs to a built-in local sandbox (no Zoho account needed).")
@click.option("--speed", type=Number(1, 1000), default=1.0, metavar="K",
              help="With --sandbox: run the window and the lock K times faster.")
@click.option("--password-env", metavar="NAME", default="BULKSCHEDULE_WEB_PASSWORD",
              show_default=True, help="Environment variable holding the page's password.")
@click.option("--max-upload-mb", type=Number(0.01, 1024), default=20.0,
              show_default=True, help="Largest sheet accepted, in MB.")
@setting_options("send", "serve", "read")
def serve(settings: Settings, host: str, port: int, sandbox: bool, speed: float,
          password_env: str, max_upload_mb: float) -> None:
    """Serve the upload page: check a sheet, dry-run it, create its sessions, watch the progress
    and download the results, from a browser. Runs use the same journal and rate limit as `run`
    (one budget shared with CLI runs on the same state folder).

    Bound to 127.0.0.1 by default. Another --host needs a password (at least 8 characters) in
    $BULKSCHEDULE_WEB_PASSWORD or the variable named by --password-env. Its limits (checks at
    once, the uploads quota and retention, each sheet's memory and CPU caps): docs/security.md.
    """
    sandbox_conflicts(settings, sandbox=sandbox, speed=speed)
    start_logging(settings)
    password = os.environ.get(password_env) or None
    try:
        web.check_access(host, password)
        asyncio.run(web.serve(
            settings, host=host, port=port, sandbox=sandbox, speed=speed, password=password,
            state_dir=settings.state_dir if settings.given("state_dir") else None,
            max_upload=int(max_upload_mb * MEGABYTE), max_checks=settings.web_checks,
            uploads_quota=settings.uploads_quota_mb * MEGABYTE,
            retention=None if settings.upload_retention_days is None
            else settings.upload_retention_days * DAY,
            read_limits=ReadLimits(memory_mb=settings.read_memory_mb,
                                   cpu_seconds=settings.read_cpu_seconds),
            on_ready=lambda url: click.echo(f"serving {url} ; Ctrl-C to stop", err=True)))
    except web.WebError as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}")

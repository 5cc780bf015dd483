"""``bulkschedule sandbox``: the local stand-in for the Zoho LMS API, as a server."""

from __future__ import annotations

import asyncio
import contextlib

import click

from bulkschedule.cli.common import fail
from bulkschedule.cli.options import Number
from bulkschedule.core.constants import (
    DEFAULT_LOCK_SECONDS,
    DEFAULT_RATE,
    FIELD_STYLES,
    LATENCY_AT,
    LOCK_STYLES,
)
from bulkschedule.sandbox.server import Sandbox, config_from_options
from bulkschedule.sandbox.server import serve as serve_sandbox

#: The longest period any option may name: a day (1e308 seconds is a typo, not a test).
DAY = 86_400
SHARE = Number(0, 1)


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=Number(0, 65535, integer=True), default=8765, show_default=True,
              help="Port (0: any free port; the URL is printed).")
@click.option("--rate", default=DEFAULT_RATE, show_default=True, metavar="N/SECONDS",
              help="Threshold: N calls in any sliding window of SECONDS.")
@click.option("--lock-seconds", type=Number(0, DAY), default=DEFAULT_LOCK_SECONDS,
              show_default=True, metavar="S", help="Lock period after the threshold is exceeded.")
@click.option("--fail-rate", type=SHARE, default=0.0, show_default=True,
              metavar="P", help="Share of creates answered 500 (nothing created).")
@click.option("--lose-reply-rate", type=SHARE, default=0.0, show_default=True,
              metavar="P", help="Share of creates stored, then the connection dropped unanswered.")
@click.option("--latency", default="0-0", show_default=True, metavar="MIN-MAX",
              help="Seconds of delay before each reply, uniform between MIN and MAX.")
@click.option("--latency-at", type=click.Choice(LATENCY_AT), default="arrival", show_default=True,
              help="Where the --latency delay falls: before the call is counted (arrival: a "
                   "slow network or busy server, what trips a lockout) or before its reply.")
@click.option("--field-style", type=click.Choice(FIELD_STYLES), default="default",
              show_default=True,
              help="Field names of the org listings (Zoho publishes none; see docs/sandbox.md).")
@click.option("--start-locked", type=Number(0, DAY), default=0.0, metavar="S",
              help="Start with a lock already running for S seconds.")
@click.option("--lock-style", type=click.Choice(LOCK_STYLES), default="429",
              show_default=True, help="How a refused call looks (the shapes seen from Zoho).")
@click.option("--token", default="sandbox-token", show_default=True, metavar="TOKEN",
              help="The static access token the sandbox accepts.")
@click.option("--token-ttl", type=Number(1, DAY), default=3600.0, show_default=True,
              metavar="S", help="Lifetime of tokens minted at /oauth/v2/token.")
@click.option("--seed", type=int, default=None, metavar="N",
              help="Make the injected faults reproducible.")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Catalogue JSON: courses, batches (with dates), modules, trainers, rooms "
                   "(default: the built-in org that sample_data/ uses).")
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="Keep sessions in this SQLite file instead of memory.")
@click.option("--speed", type=Number(1, 1000), default=1.0, metavar="K",
              help="Run the window and the lock K times faster.")
def sandbox(host: str, port: int, rate: str, lock_seconds: float, fail_rate: float,
            lose_reply_rate: float, latency: str, latency_at: str, field_style: str,
            start_locked: float, lock_style: str, token: str, token_ttl: float,
            seed: int | None, data: str | None, db: str | None, speed: float) -> None:
    """Serve a local stand-in for the Zoho People LMS API: the real limits, no account needed.

    Point a run at it with `bulkschedule run SHEET --api-base http://127.0.0.1:8765` and
    ZOHO_ACCESS_TOKEN=sandbox-token. Counters: GET /__sandbox/stats.
    """
    try:
        config = config_from_options(
            rate=rate, latency=latency, data=data, lock_seconds=lock_seconds,
            fail_rate=fail_rate, lose_reply_rate=lose_reply_rate, start_locked=start_locked,
            lock_style=lock_style, token=token, token_ttl=token_ttl, seed=seed, db=db,
            speed=speed, latency_at=latency_at, field_style=field_style)
    except ValueError as err:
        fail(str(err))

    def ready(sb: Sandbox) -> None:
        click.echo(f"sandbox listening on {sb.url} (token: {sb.token}); Ctrl-C to stop",
                   err=True)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_sandbox(config, host, port, on_ready=ready))
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}")

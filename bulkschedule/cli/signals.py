"""SIGINT and SIGTERM for the commands that send (`run`, `inbox`): stop at a safe point."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from bulkschedule.core.constants import Exit


class Signals:
    """SIGINT/SIGTERM in the running loop: the first sets ``stop`` (calls in flight finish, the
    results are written) and says so; with ``harder``, a second also sets ``hard_stop``.

    Create it inside the loop (in the command's coroutine)."""

    def __init__(self, first: str, harder: str | None = None) -> None:
        self.first, self.harder = first, harder
        self.stop, self.hard_stop = asyncio.Event(), asyncio.Event()
        self.seen: list[int] = []
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.on_signal, signum)

    def on_signal(self, signum: int) -> None:
        if not self.seen:
            click.echo(self.first, err=True)
            self.stop.set()
        elif self.harder and not self.hard_stop.is_set():
            click.echo(self.harder, err=True)
            self.hard_stop.set()
        self.seen.append(signum)

    def exit_code(self, default: int) -> int:
        """130/143 after a signal (the first one decides), else ``default``."""
        if not self.seen:
            return default
        return Exit.SIGINT if self.seen[0] == signal.SIGINT else Exit.SIGTERM

"""Opening the API: one place that wires the shared limiter, the lock gate and the client.

Every caller that talks to Zoho (a run, ``auth --check``, the org reads) goes through `open_api`, so
every call, read or write, takes the same lock gate and the same window shared through the state
folder's SQLite file, and nothing is wired twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bulkschedule.core.constants import PayloadStyle
from bulkschedule.send.journal import normalise_base
from bulkschedule.send.limiter import Clock, LockGate, SystemClock, WindowLimiter, make_pace
from bulkschedule.zoho.auth import TOKEN_TIMEOUT, TokenProvider
from bulkschedule.zoho.client import LmsClient

#: The client's connect timeout (getting a connection: nothing is sent before it ends).
CONNECT_TIMEOUT = 10.0


@dataclass
class SendSettings:
    """How to talk to the API. ``speed`` divides the window and the lock (sandbox rehearsals)."""

    api_base: str
    state_dir: Path
    rate_calls: int = 30
    rate_period: float = 60.0
    lock_seconds: float = 300.0
    workers: int = 4
    payload_style: PayloadStyle = "query"
    speed: float = 1.0
    timeout: float = 30.0

    @property
    def period(self) -> float:
        return self.rate_period / self.speed

    @property
    def calls_per_minute(self) -> float:
        """The sustained rate the limiter allows (progress ETAs never promise more)."""
        return self.rate_calls * 60 / self.period

    @property
    def lock(self) -> float:
        return self.lock_seconds / self.speed

    @property
    def hold(self) -> float:
        """The longest a paced call can last before the client has its reply or gives up: a
        token fetch, a connection, then one wait for the reply. The limiter counts a call
        nobody marked done (cancelled mid-request, or its process died) as in flight this long.
        """
        return (TOKEN_TIMEOUT.total or 0.0) + CONNECT_TIMEOUT + self.timeout


@dataclass
class Api:
    """An open connection to one API base: the client and the shared pacing it calls through."""

    client: LmsClient
    tokens: TokenProvider
    limiter: WindowLimiter
    gate: LockGate
    session: aiohttp.ClientSession


Pace = Callable[[], Awaitable[object]]  # make_pace's (returns a Slot), or a wrapper of it


@contextlib.asynccontextmanager
async def open_api(
    base: str,
    settings: SendSettings,
    *,
    shared: Path,
    tokens: Callable[[aiohttp.ClientSession], TokenProvider],
    clock: Clock | None = None,
    on_wait: Callable[[float], None] | None = None,
    wrap_pace: Callable[[Pace], Pace] | None = None,
) -> AsyncIterator[Api]:
    """An HTTP session, a token provider, and a client whose every call waits on the lock gate
    and the limiter shared through ``shared`` (the journal's file) for ``base``.

    ``base`` must already be checked (`zoho.urls.check_base_url`). ``wrap_pace`` lets the runner
    see when a call's slot was granted (so a stop knows which requests may have left); it must
    return what the pace returned, the `Slot` the client marks done when the reply came.
    """
    clock = clock or SystemClock()
    scope = normalise_base(base)
    limiter = WindowLimiter(settings.rate_calls, settings.period, clock=clock, shared=shared,
                            scope=scope, hold=settings.hold)
    gate = LockGate(clock=clock, shared=shared, scope=scope)
    try:
        async with aiohttp.ClientSession() as session:
            provider = tokens(session)
            pace: Pace = make_pace(gate, limiter, on_wait=on_wait)
            if wrap_pace is not None:
                pace = wrap_pace(pace)
            client = LmsClient(base, provider, session=session,
                               payload_style=settings.payload_style, pace=pace,
                               timeout=settings.timeout, connect_timeout=CONNECT_TIMEOUT)
            yield Api(client, provider, limiter, gate, session)
    finally:
        limiter.detach()
        gate.detach()

"""What a run is given: its settings, and the two small Protocols it depends on instead of the
real client and lock gate (so it is tested with fakes on a fake clock)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bulkschedule.core.request import Request


@dataclass
class RunConfig:
    workers: int = 4
    lock_seconds: float = 300.0  # Zoho's documented lock period
    max_attempts: int = 5  # create calls per row, not counting lockout refusals
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    stop_grace: float = 30.0  # how long in-flight calls may finish after a stop
    busy_wait: float = 600.0  # how long to wait for another live run that holds a row
    busy_poll: float = 5.0  # how often to re-check such a row
    heartbeat_every: float = 5.0  # keep well below Journal.stale_after (90 s by default)
    reconcile_delay: float = 5.0  # after a lost reply, let the server finish before listing
    # listing calls per reconciliation: the first plus retries (same backoff as creates) after a
    # 5xx or a listing that never reached Zoho; then the row is ``unknown`` for the next run
    list_attempts: int = 5


class Client(Protocol):
    """What the runner needs from the LMS client (see bulkschedule.zoho.client)."""

    async def create_session(self, req: Request) -> str:
        """POST the session; return its sessionId. Raises the `ApiError` subclasses. Awaits the
        shared pace (gate + limiter) before every HTTP call and refreshes auth once itself."""
        ...

    async def patch_session(self, req: Request) -> str:
        """PATCH session ``req.session_id`` with the whole ``req.session_data`` (paced like a
        create); return its sessionId. A lost reply is a ServerError (an update may be sent
        again), a deleted session a Rejected."""
        ...

    async def find_session(self, req: Request) -> str | None:
        """List the module's sessions (paced) and return the sessionId matching ``req``."""
        ...


class Gate(Protocol):
    """The lockout gate shared by every worker (and, through the journal, every process)."""

    def close(self, seconds: float, reason: str = "") -> float:
        """Lock until ``max(existing, now + seconds)``; return the time it reopens."""
        ...

    def until(self) -> float | None:
        """When the gate reopens, or None if it is open."""
        ...

    async def wait(self, on_wait: Callable[[float], None] | None = None) -> float:
        """Return once the gate is open (seconds waited); ``on_wait(remaining)`` when it waits."""
        ...

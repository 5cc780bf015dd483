"""What a run tells its caller while it works (progress bars, log lines, the upload page).

The events are plain data; `guarded` wraps the caller's listener so that a bug in rendering can
never leave a row half-recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bulkschedule.core.problems import Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class LockEvent:
    """Zoho locked us out; every worker pauses until ``until`` (epoch seconds)."""

    until: float
    reason: str


@dataclass(frozen=True, slots=True)
class WaitEvent:
    """Workers are waiting for the gate to reopen."""

    remaining: float


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A row will be tried again at ``at`` (epoch seconds)."""

    row: int
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class StopEvent:
    """The run stopped taking rows (stop signal or a fatal answer)."""

    reason: str


Event = OutcomeEvent | LockEvent | WaitEvent | RetryEvent | StopEvent
Listener = Callable[[Event], None]


def guarded(on_event: Listener | None) -> Listener:
    """``on_event`` made safe to call from the middle of settling a row: an exception it raises is
    logged, not propagated (a rendering bug must not leave a row half-recorded)."""

    def emit(event: Event) -> None:
        if on_event is None:
            return
        try:
            on_event(event)
        except Exception:
            log.exception("on_event callback failed for %r", event)

    return emit

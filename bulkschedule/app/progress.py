"""One tally of a run's events, shared by the terminal's status line and the upload page.

Both show the same numbers (rows done out of the rows to send, counts per status, retries, the
lockout's countdown, the rate and an ETA); they differ only in how they draw them. A `Tally` hears
the runner's events (as ``job.send``'s ``on_event``) and answers those questions for any moment of
its clock, so the numbers are tested once, on a fake clock.
"""

from __future__ import annotations

from bulkschedule.core.problems import Status
from bulkschedule.send.events import (
    Event,
    LockEvent,
    OutcomeEvent,
    RetryEvent,
    StopEvent,
    WaitEvent,
)
from bulkschedule.send.limiter import Clock, SystemClock

__all__ = ["Tally", "eta_seconds"]


def eta_seconds(
    total: int,
    done: int,
    elapsed: float,
    *,
    lock_left: float = 0.0,
    limit_per_min: float | None = None,
) -> int | None:
    """Seconds until the last row is settled, or None before there is a rate to go by.

    The first window's calls go out quickly, so the rate seen so far would promise more than the
    limiter can keep: the sustained limit caps it, and a running lockout adds its wait.
    """
    if not 0 < done < total or elapsed <= 0:
        return None
    per_min = done * 60 / elapsed
    if limit_per_min:
        per_min = min(per_min, limit_per_min)
    return int((total - done) * 60 / per_min + max(0.0, lock_left))


class Tally:
    """Counts and timing of one run, from its events.

    ``total`` is the rows to send: an invalid row is counted under its status but is not
    progress (it was never going to be sent). ``limit_per_min`` is the limiter's sustained rate
    (`SendSettings.calls_per_minute`), which caps the ETA. ``clock`` must be the run's clock: a
    `LockEvent` says when the lock ends on that clock's timeline.
    """

    def __init__(
        self, total: int, *, limit_per_min: float | None = None, clock: Clock | None = None
    ) -> None:
        self.total = total
        self.limit_per_min = limit_per_min
        self.clock: Clock = clock or SystemClock()
        self.started = self.clock.time()
        self.counts: dict[str, int] = {}  # rows per status (every row reported, invalid too)
        self.done = 0  # rows settled of the ``total`` to send
        self.retries = 0  # RetryEvents: a row put back to be tried again later
        self.lock_until: float | None = None  # when the latest lockout ends (clock time)
        self.stopped: str | None = None  # why the run stopped taking rows (first StopEvent)

    def __call__(self, event: Event) -> None:
        """Count ``event`` (so a tally can itself be a run's ``on_event``)."""
        if isinstance(event, OutcomeEvent):
            status = event.outcome.status
            self.counts[str(status)] = self.counts.get(str(status), 0) + 1
            self.done += status != Status.INVALID
        elif isinstance(event, LockEvent):
            self.lock_until = event.until
        elif isinstance(event, WaitEvent):
            self.lock_until = self.clock.time() + event.remaining
        elif isinstance(event, RetryEvent):
            self.retries += 1
        elif isinstance(event, StopEvent) and self.stopped is None:
            self.stopped = event.reason

    add = __call__

    def elapsed(self) -> float:
        """Seconds since the tally began (the run's start)."""
        return max(0.0, self.clock.time() - self.started)

    def rate(self) -> float:
        """Rows settled per minute so far (0 before any time has passed)."""
        elapsed = self.elapsed()
        return self.done * 60 / elapsed if elapsed > 0 else 0.0

    def lock_left(self) -> float:
        """Seconds until the current lockout ends; 0 when none is running."""
        if self.lock_until is None:
            return 0.0
        return max(0.0, self.lock_until - self.clock.time())

    def locked(self) -> bool:
        """Whether a lockout is running now."""
        return self.lock_left() > 0

    def eta(self) -> int | None:
        """Seconds until the last row is settled (see `eta_seconds`), or None before there is a
        rate to go by or once every row is done."""
        return eta_seconds(
            self.total,
            self.done,
            self.elapsed(),
            lock_left=self.lock_left(),
            limit_per_min=self.limit_per_min,
        )

    def sorted_counts(self) -> dict[str, int]:
        """The counts by status name (a stable order for display and JSON)."""
        return dict(sorted(self.counts.items()))

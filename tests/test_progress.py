"""`Tally`: the one count of a run's events behind the terminal's status line and the upload page.

Everything runs on the fake clock: time moves only when a test moves it (or, for the run at the
end, when every task is idle), so every rate, countdown and ETA is exact.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fakeclock import FakeClock, FakeGate

from bulkschedule.app.progress import Tally, eta_seconds
from bulkschedule.core.errors import Locked, ServerError
from bulkschedule.core.problems import Outcome, Status
from bulkschedule.core.request import Request
from bulkschedule.send.journal import Journal
from bulkschedule.send.runner import (
    Event,
    LockEvent,
    OutcomeEvent,
    RetryEvent,
    RunConfig,
    StopEvent,
    WaitEvent,
    send_all,
    track_pace,
)

BASE = "https://people.zoho.com"


def outcome(row: int, status: Status) -> OutcomeEvent:
    return OutcomeEvent(Outcome(row, status))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- counting --------------------------------------------------------------------------------------


def test_counts_every_row_but_only_rows_to_send_are_progress(clock: FakeClock) -> None:
    tally = Tally(3, clock=clock)
    for event in [
        outcome(2, Status.INVALID),  # reported first by job.send, never sent
        outcome(3, Status.CREATED),
        outcome(4, Status.INVALID),
        outcome(5, Status.FAILED),
    ]:
        tally(event)
    assert tally.counts == {"invalid": 2, "created": 1, "failed": 1}
    assert tally.done == 2
    assert tally.total == 3


def test_sorted_counts_are_in_name_order(clock: FakeClock) -> None:
    tally = Tally(3, clock=clock)
    for row, status in [(2, Status.UNKNOWN), (3, Status.CREATED), (4, Status.EXISTS)]:
        tally.add(outcome(row, status))
    assert list(tally.sorted_counts()) == ["created", "exists", "unknown"]


def test_retries_and_the_first_stop_reason(clock: FakeClock) -> None:
    tally = Tally(2, clock=clock)
    tally(RetryEvent(2, clock.time() + 4, "503"))
    tally(RetryEvent(2, clock.time() + 9, "503"))
    assert tally.retries == 2
    assert tally.stopped is None
    tally(StopEvent("Zoho answered: scope refused"))
    tally(StopEvent("stop requested"))
    assert tally.stopped == "Zoho answered: scope refused"


# -- the lockout -----------------------------------------------------------------------------------


def test_a_lockout_counts_down_on_the_clock_and_ends(clock: FakeClock) -> None:
    tally = Tally(10, clock=clock)
    assert (tally.lock_left(), tally.locked()) == (0.0, False)
    tally(LockEvent(clock.time() + 300, "429"))
    assert (tally.lock_left(), tally.locked()) == (300.0, True)
    clock.advance(120)
    assert tally.lock_left() == 180.0
    clock.advance(200)  # past the end: never negative
    assert (tally.lock_left(), tally.locked()) == (0.0, False)


def test_a_wait_event_sets_the_countdown_from_now(clock: FakeClock) -> None:
    """Another process's lockout is seen only as a wait: it ends ``remaining`` from now."""
    tally = Tally(10, clock=clock)
    clock.advance(30)
    tally(WaitEvent(90.0))
    assert tally.lock_until == clock.time() + 90
    clock.advance(60)
    assert tally.lock_left() == 30.0


def test_a_longer_lock_replaces_the_countdown(clock: FakeClock) -> None:
    tally = Tally(10, clock=clock)
    tally(LockEvent(clock.time() + 300, "429"))
    tally(LockEvent(clock.time() + 600, "Retry-After 600"))
    assert tally.lock_left() == 600.0


# -- rate and ETA ----------------------------------------------------------------------------------


def test_rate_is_rows_done_per_minute_since_the_start(clock: FakeClock) -> None:
    tally = Tally(10, clock=clock)
    assert tally.rate() == 0.0  # no time has passed: no rate, not a division by zero
    for row in range(2, 5):
        tally(outcome(row, Status.CREATED))
    assert tally.rate() == 0.0
    clock.advance(30)
    assert tally.elapsed() == 30.0
    assert tally.rate() == 6.0


def test_eta_waits_for_a_rate_and_ends_when_all_are_done(clock: FakeClock) -> None:
    tally = Tally(2, clock=clock, limit_per_min=30.0)
    assert tally.eta() is None  # nothing done yet
    clock.advance(10)
    assert tally.eta() is None
    tally(outcome(2, Status.CREATED))
    assert tally.eta() == 10  # one row in 10 s, one to go: 6/min is below the limit
    tally(outcome(3, Status.CREATED))
    assert tally.eta() is None  # finished


def test_eta_is_capped_by_the_limiters_sustained_rate(clock: FakeClock) -> None:
    """The first window's calls go out in a burst; the ETA must not promise that pace."""
    capped = Tally(60, clock=clock, limit_per_min=30.0)
    naive = Tally(60, clock=clock)
    for row in range(30):
        capped(outcome(row, Status.CREATED))
        naive(outcome(row, Status.CREATED))
    clock.advance(2)
    assert naive.eta() == 2
    assert capped.eta() == 60  # 30 left at 30/min


def test_eta_adds_the_running_lockout(clock: FakeClock) -> None:
    tally = Tally(60, clock=clock, limit_per_min=30.0)
    for row in range(30):
        tally(outcome(row, Status.CREATED))
    clock.advance(2)
    tally(LockEvent(clock.time() + 10, "429"))
    assert tally.eta() == 70  # 30 left at 30/min, after the 10 s lock
    clock.advance(4)
    assert tally.eta() == 66
    clock.advance(6)  # the lock is over; still faster than the limit: 30 left at 30/min
    assert tally.eta() == 60


def test_eta_seconds_matches_the_tally() -> None:
    assert eta_seconds(60, 30, 2.0, limit_per_min=30.0) == 60
    assert eta_seconds(60, 30, 2.0, lock_left=-5.0) == 2  # an ended lock adds nothing
    assert eta_seconds(10, 5, 0.0) is None


def test_eta_is_capped_by_the_limiter_and_counts_a_running_lockout() -> None:
    # 30 rows in the first 2 s is a burst the limiter cannot keep up: 30 left at 30/min is 60 s
    assert eta_seconds(60, 30, 2.0, limit_per_min=30.0) == 60
    # without a limit the naive rate would promise 2 s
    assert eta_seconds(60, 30, 2.0) == 2
    # a lockout with 100 s left adds its wait
    assert eta_seconds(60, 30, 2.0, lock_left=100.0, limit_per_min=30.0) == 160
    # slower than the limit: the observed rate stands
    assert eta_seconds(10, 5, 60.0, limit_per_min=30.0) == 60
    # nothing done yet, or all done: no ETA
    assert eta_seconds(10, 0, 5.0) is None
    assert eta_seconds(10, 10, 5.0) is None


# -- fed by a real run -----------------------------------------------------------------------------


class Client:
    """Creates each session after a second; the first create of row 3 is locked out, the first
    of row 4 gets a 503."""

    def __init__(self, clock: FakeClock, gate: FakeGate) -> None:
        self.clock = clock
        self.pace = track_pace(gate.wait)
        self.refuse: dict[int, Exception] = {
            3: Locked("429 Too Many Requests"),
            4: ServerError("503 Service Unavailable"),
        }

    async def create_session(self, req: Request) -> str:
        await self.pace()
        await self.clock.sleep(1.0)
        if (exc := self.refuse.pop(req.row, None)) is not None:
            raise exc
        return f"55500000000000000{req.row}"

    async def find_session(self, req: Request) -> str | None:
        return None


def request(row: int) -> Request:
    name = f"Session {row}"
    return Request(
        row=row,
        course_id="100000000000000001",
        batch_id="200000000000000002",
        module_id="300000000000000003",
        session_data={"name": name, "date": "01-09-2025", "startTime": "09:00 AM"},
        identity=f"300000000000000003/{name}/01-09-2025/09:00 AM",
        fingerprint="fp",
    )


async def test_a_tally_fed_by_the_runner_sees_the_lockout_retry_and_every_row(
    clock: FakeClock, tmp_path: Path
) -> None:
    tally = Tally(4, clock=clock, limit_per_min=30.0)
    seen: list[tuple[Event, float, int | None]] = []

    def on_event(event: Event) -> None:
        tally(event)
        seen.append((event, tally.lock_left(), tally.eta()))

    gate = FakeGate(clock)
    with Journal(tmp_path / "state", clock=clock.time) as journal:
        out = await clock.run(
            send_all(
                [request(r) for r in range(2, 6)],
                client=Client(clock, gate),
                journal=journal,
                gate=gate,
                api_base=BASE,
                run_id=journal.start_run("term.xlsx", BASE),
                config=RunConfig(workers=4, lock_seconds=300.0),
                clock=clock,
                on_event=on_event,
                rng=random.Random(7),
            )
        )

    assert {o.status for o in out.values()} == {Status.CREATED}
    assert tally.counts == {"created": 4} and tally.done == tally.total == 4
    assert tally.retries == 1  # the 503
    assert tally.stopped is None
    assert tally.eta() is None and tally.lock_left() == 0.0
    locks = [(left, eta) for e, left, eta in seen if isinstance(e, LockEvent)]
    # row 2 was created in 1 s when row 3 was locked out: 3 rows to go at the 30/min limit (not
    # the 60/min seen so far) is 6 s, after the whole 300 s lock
    assert locks == [(300.0, 306)]
    assert clock.time() - tally.started >= 300  # and so did the run

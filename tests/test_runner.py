"""The worker pool against a fake Zoho on a fake clock: no HTTP, no real sleeps.

The fake client behaves like the real paced client in the one way that matters here: it awaits its
pace before every call. By default that pace is the lock gate, wrapped by `track_pace` exactly as
job.py wraps ``make_pace(gate, limiter)``; `use_real_pace` swaps in the real LockGate and
WindowLimiter (on the fake clock). Scripts per identity say what each successive call answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import random
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fakeclock import FakeClock, FakeGate

from bulkschedule.core.problems import Line, Outcome, Status
from bulkschedule.core.request import Request
from bulkschedule.send.journal import CREATED, FAILED, INFLIGHT, RELEASED, UNKNOWN, Journal
from bulkschedule.send.limiter import LockGate, WindowLimiter, make_pace
from bulkschedule.send.runner import (
    Event,
    LockEvent,
    OutcomeEvent,
    RetryEvent,
    RunConfig,
    StopEvent,
    WaitEvent,
    preview,
    send_all,
    summarize,
    track_pace,
)
from bulkschedule.send.state import Item
from bulkschedule.zoho.client import (
    AuthExpired,
    Fatal,
    Locked,
    NotSent,
    OutcomeUnknown,
    Rejected,
    ServerError,
)

BASE = "https://people.zoho.com"
MAX_FAKE = 100_000.0  # fake seconds: a runaway retry loop fails fast instead of hanging
LOST = "lost"  # script step: the POST lands, but its reply is lost (timeout after writing)


def make_req(row: int, *, fp: str = "fp") -> Request:
    name = f"Session {row}"
    return Request(
        row=row,
        course_id="100000000000000001",
        batch_id="200000000000000002",
        module_id="300000000000000003",
        session_data={"name": name, "date": "01-09-2025", "startTime": "09:00 AM"},
        identity=f"300000000000000003/{name}/01-09-2025/09:00 AM",
        fingerprint=fp,
    )


def rows(n: int, start: int = 2) -> list[Request]:
    return [make_req(r) for r in range(start, start + n)]


@dataclass
class Call:
    at: float
    kind: str  # "create" | "find"
    identity: str
    row: int


@dataclass
class FakeZoho:
    clock: FakeClock
    gate: FakeGate | LockGate
    latency: float = 1.0
    latency_for: dict[str, float] = field(default_factory=dict)  # per identity
    pace: Callable[[], Awaitable[object]] | None = None  # default: the gate, tracked
    sessions: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    calls: list[Call] = field(default_factory=list)
    create_script: dict[str, list[object]] = field(default_factory=dict)
    find_script: dict[str, list[object]] = field(default_factory=dict)
    refused_at: list[float] = field(default_factory=list)  # when a Locked reply arrived
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(555_000_000_000_000_001))

    def __post_init__(self) -> None:
        if self.pace is None:
            self.pace = track_pace(self.gate.wait)

    async def _paced(self) -> None:
        assert self.pace is not None
        await self.pace()  # the real client awaits the shared pace before every call

    def creates(self, identity: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.kind == "create" and (identity is None or c.identity == identity)
        ]

    def finds(self, identity: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.kind == "find" and (identity is None or c.identity == identity)
        ]

    def add_session(self, req: Request) -> str:
        sid = str(next(self._ids))
        self.sessions[req.identity].append(sid)
        return sid

    @staticmethod
    def _step(script: dict[str, list[object]], identity: str) -> object:
        steps = script.get(identity)
        return steps.pop(0) if steps else None

    async def create_session(self, req: Request) -> str:
        await self._paced()
        self.calls.append(Call(self.clock.time(), "create", req.identity, req.row))
        await self.clock.sleep(self.latency_for.get(req.identity, self.latency))
        step = self._step(self.create_script, req.identity)
        if step == LOST:
            self.add_session(req)
            raise OutcomeUnknown("read timeout after the request was sent")
        if isinstance(step, Locked):
            self.refused_at.append(self.clock.time())
        if isinstance(step, BaseException):
            raise step
        return self.add_session(req)

    async def find_session(self, req: Request) -> str | None:
        await self._paced()
        self.calls.append(Call(self.clock.time(), "find", req.identity, req.row))
        await self.clock.sleep(self.latency_for.get(req.identity, self.latency))
        step = self._step(self.find_script, req.identity)
        if isinstance(step, BaseException):
            raise step
        found = self.sessions.get(req.identity)
        return found[0] if found else None


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.t0 = self.clock.time()
        self.gate: FakeGate | LockGate = FakeGate(self.clock)
        self.zoho = FakeZoho(self.clock, self.gate)
        self.state = tmp_path / "state"
        self.journal = Journal(self.state, clock=self.clock.time)
        self.events: list[Event] = []

    def start(self) -> int:
        return self.journal.start_run("term.xlsx", BASE)

    def sending(
        self,
        reqs: Sequence[Request],
        config: RunConfig | None = None,
        *,
        journal: Journal | None = None,
        run_id: int | None = None,
        stop: asyncio.Event | None = None,
        events: list[Event] | None = None,
    ):  # -> coroutine of dict[Line, Outcome]
        j = journal or self.journal
        sink = self.events if events is None else events
        return send_all(
            reqs,
            client=self.zoho,
            journal=j,
            gate=self.gate,
            api_base=BASE,
            run_id=run_id if run_id is not None else j.start_run("term.xlsx", BASE),
            config=config or RunConfig(),
            clock=self.clock,
            stop=stop,
            on_event=sink.append,
            rng=random.Random(7),
        )

    async def send(
        self, reqs: Sequence[Request], config: RunConfig | None = None, **kw: object
    ) -> dict[Line, Outcome]:
        out = await self.clock.run(self.sending(reqs, config, **kw), max_time=MAX_FAKE)  # type: ignore[arg-type]
        assert_one_outcome_each(reqs, out)
        return out

    def status(self, req: Request) -> str | None:
        entry = self.journal.lookup(BASE, req)
        return None if entry is None else entry.status


def assert_one_outcome_each(reqs: Sequence[Request], out: dict[Line, Outcome]) -> None:
    assert sorted(out) == sorted(r.line for r in reqs)
    assert all(out[r].line == r for r in out)


def statuses(out: dict[Line, Outcome]) -> Counter[str]:
    return Counter(str(o.status) for o in out.values())


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.journal.close()


def dead_pid() -> int:
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


# -- the ordinary cases ----------------------------------------------------------------------------


async def test_happy_path(env: Env) -> None:
    reqs = rows(10)
    out = await env.send(reqs, RunConfig(workers=4))
    assert statuses(out) == {"created": 10}
    assert len({o.session_id for o in out.values()}) == 10
    assert all(o.attempts == 1 for o in out.values())
    for r in reqs:
        assert len(env.zoho.creates(r.identity)) == 1
        entry = env.journal.lookup(BASE, r)
        assert entry is not None and entry.status == CREATED
        assert entry.session_id == out[r.line].session_id
    assert sum(isinstance(e, OutcomeEvent) for e in env.events) == 10
    # four workers in parallel: 10 rows at 1 s each take 3 rounds
    assert env.clock.time() - env.t0 == pytest.approx(3.0, abs=1e-6)
    assert summarize(out) == {"created": 10}


async def test_a_run_holds_the_progress_of_the_rows_in_work_not_of_every_row(env: Env) -> None:
    """Memory that grows with the sheet is the results alone (issue 14): a row's `Item` is made
    when a worker takes it and let go once it is settled."""
    alive: list[int] = []

    class Counting(list[Event]):
        def append(self, event: Event) -> None:
            super().append(event)
            if isinstance(event, OutcomeEvent) and event.outcome.row % 10 == 0:
                gc.collect()
                alive.append(sum(isinstance(o, Item) for o in gc.get_objects()))

    reqs = rows(60)
    out = await env.clock.run(env.sending(reqs, RunConfig(workers=4), events=Counting()),
                              max_time=MAX_FAKE)
    assert statuses(out) == {"created": 60}
    assert len(alive) == 6 and max(alive) <= 4 + 1  # the workers' rows (one just settling)


def test_summarize_counts_per_status_in_status_order_without_zeros() -> None:
    """One count for the journal's record, the summary line and ``--json`` (job.count is gone)."""
    out = {
        2: Outcome(2, Status.PENDING),
        3: Outcome(3, Status.CREATED),
        4: Outcome(4, Status.FAILED),
        5: Outcome(5, Status.CREATED),
    }
    counts = summarize(out)
    assert counts == {"created": 2, "failed": 1, "pending": 1}
    assert list(counts) == ["created", "failed", "pending"]  # Status order, not row order
    assert summarize({}) == {}


async def test_rerun_creates_nothing(env: Env) -> None:
    reqs = rows(6)
    first = await env.send(reqs)
    n = len(env.zoho.calls)
    second = await env.send(reqs)
    assert len(env.zoho.calls) == n
    assert statuses(second) == {"exists": 6}
    assert all(second[r].session_id == first[r].session_id for r in first)
    assert all(o.attempts == 0 for o in second.values())


async def test_changed_row_is_not_sent_and_names_the_existing_session(env: Env) -> None:
    reqs = rows(3)
    first = await env.send(reqs)
    edited = [reqs[0], make_req(reqs[1].row, fp="edited"), reqs[2]]
    out = await env.send(edited)
    assert len(env.zoho.creates()) == 3
    changed = out[reqs[1].line]
    assert changed.status is Status.CHANGED
    assert changed.session_id == first[reqs[1].line].session_id
    assert changed.session_id in changed.message
    assert statuses(out) == {"exists": 2, "changed": 1}


async def test_rejected_row_fails_with_the_servers_message(env: Env) -> None:
    reqs = rows(3)
    env.zoho.create_script[reqs[1].identity] = [
        Rejected("BATCH_DATE_AND_SESSION_DATE_MISMATCH", status=400)
    ]
    out = await env.send(reqs)
    bad = out[reqs[1].line]
    assert (bad.status, bad.message, bad.attempts) == (
        Status.FAILED,
        "BATCH_DATE_AND_SESSION_DATE_MISMATCH",
        1,
    )
    assert env.status(reqs[1]) == FAILED
    assert statuses(out) == {"created": 2, "failed": 1}


# -- lockout ---------------------------------------------------------------------------------------


async def test_lockout_pauses_every_worker_for_exactly_the_lock(env: Env) -> None:
    reqs = rows(12)
    env.zoho.create_script[reqs[2].identity] = [Locked("Maximum limit exceeded", status=422)]
    out = await env.send(reqs, RunConfig(workers=4))

    assert statuses(out) == {"created": 12}
    assert out[reqs[2].line].attempts == 2
    assert all(len(env.zoho.creates(r.identity)) == (2 if r is reqs[2] else 1) for r in reqs)
    [t_lock] = env.zoho.refused_at
    during = [c for c in env.zoho.calls if t_lock < c.at < t_lock + 300]
    assert during == []
    after = [c.at for c in env.zoho.calls if c.at > t_lock]
    assert min(after) - t_lock == pytest.approx(300, abs=1e-6)  # not a second longer either
    locks = [e for e in env.events if isinstance(e, LockEvent)]
    assert [(e.until - t_lock, e.reason) for e in locks] == [(300, "Maximum limit exceeded")]
    assert any(isinstance(e, WaitEvent) for e in env.events)


async def test_retry_after_longer_than_the_lock_is_honoured(env: Env) -> None:
    reqs = rows(4)
    env.zoho.create_script[reqs[0].identity] = [Locked("429 Too Many Requests", retry_after=600)]
    out = await env.send(reqs, RunConfig(workers=1, lock_seconds=300))
    assert statuses(out) == {"created": 4}
    [t_lock] = env.zoho.refused_at
    after = [c.at for c in env.zoho.calls if c.at > t_lock]
    assert min(after) - t_lock == pytest.approx(600, abs=1e-6)


async def test_row_refused_again_after_a_full_lock_fails(env: Env) -> None:
    reqs = rows(3)
    env.zoho.create_script[reqs[1].identity] = [
        Locked("Maximum limit exceeded", status=422),
        Locked("Maximum limit exceeded", status=422),
        Locked("Maximum limit exceeded", status=422),
    ]
    out = await env.send(reqs, RunConfig(workers=2))
    bad = out[reqs[1].line]
    assert bad.status is Status.FAILED
    assert "Maximum limit exceeded" in bad.message and "full lock" in bad.message
    assert len(env.zoho.creates(reqs[1].identity)) == 2  # once, then once after the lock: no loop
    assert env.zoho.refused_at[1] - env.zoho.refused_at[0] >= 300
    assert env.status(reqs[1]) == FAILED
    assert statuses(out) == {"created": 2, "failed": 1}


async def test_row_waiting_out_a_lock_is_released_not_left_in_flight(env: Env) -> None:
    reqs = rows(1)
    env.zoho.create_script[reqs[0].identity] = [Locked("blocked")]
    stop = asyncio.Event()

    async def stop_during_lock() -> None:
        await env.clock.sleep(100)
        assert env.status(reqs[0]) == RELEASED  # a crash now would not force a reconciliation
        stop.set()

    async def both() -> dict[Line, Outcome]:
        out, _ = await asyncio.gather(env.sending(reqs, stop=stop), stop_during_lock())
        return out

    out = await env.clock.run(both(), max_time=MAX_FAKE)
    assert out[reqs[0].line].status is Status.PENDING
    assert env.status(reqs[0]) == RELEASED
    assert len(env.zoho.creates()) == 1


# -- server errors and connection failures --------------------------------------------------------


async def test_server_error_retried_with_backoff_then_created(env: Env) -> None:
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [ServerError("500 oops"), ServerError("502 oops")]
    out = await env.send([req], RunConfig(backoff_base=10.0))
    assert out[req.line].status is Status.CREATED and out[req.line].attempts == 3
    c1, c2, c3 = (c.at for c in env.zoho.creates())
    latency = env.zoho.latency
    # equal jitter: the n-th retry waits between half and all of base * 2**(n-1)
    assert 5.0 <= c2 - (c1 + latency) <= 10.0
    assert 10.0 <= c3 - (c2 + latency) <= 20.0
    retries = [e for e in env.events if isinstance(e, RetryEvent)]
    assert [e.reason for e in retries] == ["500 oops", "502 oops"]
    assert [e.at - env.t0 for e in retries] == pytest.approx([c2 - env.t0, c3 - env.t0], abs=1e-6)


async def test_backoff_is_capped(env: Env) -> None:
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [ServerError("503")] * 4
    await env.send([req], RunConfig(backoff_base=10.0, backoff_max=12.0))
    times = [c.at for c in env.zoho.creates()]
    gaps = [b - (a + env.zoho.latency) for a, b in itertools.pairwise(times)]
    assert all(g <= 12.0 for g in gaps) and len(gaps) == 4


async def test_server_errors_exhaust_attempts_then_fail(env: Env) -> None:
    reqs = rows(2)
    env.zoho.create_script[reqs[0].identity] = [ServerError(f"500 try {i}") for i in range(9)]
    out = await env.send(reqs, RunConfig(max_attempts=4))
    bad = out[reqs[0].line]
    assert bad.status is Status.FAILED and bad.attempts == 4
    assert "500 try 3" in bad.message
    assert len(env.zoho.creates(reqs[0].identity)) == 4
    assert env.status(reqs[0]) == FAILED
    assert out[reqs[1].line].status is Status.CREATED


async def test_not_sent_is_retried_then_bounded(env: Env) -> None:
    ok, bad = rows(2)
    env.zoho.create_script[ok.identity] = [NotSent("connection refused")]
    env.zoho.create_script[bad.identity] = [NotSent("DNS failure")] * 9
    out = await env.send([ok, bad], RunConfig(max_attempts=3))
    assert out[ok.line].status is Status.CREATED and out[ok.line].attempts == 2
    assert out[bad.line].status is Status.FAILED and "DNS failure" in out[bad.line].message
    assert len(env.zoho.creates(bad.identity)) == 3


# -- lost replies ----------------------------------------------------------------------------------


async def test_lost_reply_found_by_listing_is_created_without_a_second_post(env: Env) -> None:
    reqs = rows(3)
    env.zoho.create_script[reqs[0].identity] = [LOST]
    out = await env.send(reqs, RunConfig(reconcile_delay=5.0))
    got = out[reqs[0].line]
    assert got.status is Status.CREATED
    assert got.session_id == env.zoho.sessions[reqs[0].identity][0]
    assert len(env.zoho.creates(reqs[0].identity)) == 1
    [find] = env.zoho.finds(reqs[0].identity)
    [create] = env.zoho.creates(reqs[0].identity)
    assert find.at >= create.at + env.zoho.latency + 5.0
    assert len(env.zoho.sessions[reqs[0].identity]) == 1
    assert env.status(reqs[0]) == CREATED


async def test_lost_reply_not_found_is_sent_once_more(env: Env) -> None:
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [OutcomeUnknown("connection reset")]  # did not land
    out = await env.send([req])
    assert out[req.line].status is Status.CREATED and out[req.line].attempts == 2
    assert [c.kind for c in env.zoho.calls] == ["create", "find", "create"]
    assert len(env.zoho.sessions[req.identity]) == 1


async def test_repeated_lost_replies_are_bounded(env: Env) -> None:
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [OutcomeUnknown("timeout")] * 9
    out = await env.send([req], RunConfig(max_attempts=3))
    assert out[req.line].status is Status.FAILED and out[req.line].attempts == 3
    assert "not created" in out[req.line].message
    assert [c.kind for c in env.zoho.calls] == ["create", "find"] * 3
    assert env.status(req) == FAILED


async def test_lockout_on_the_listing_lists_again_after_the_lock(env: Env) -> None:
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [LOST]
    env.zoho.find_script[req.identity] = [Locked("7209 threshold")]
    out = await env.send([req])
    assert out[req.line].status is Status.CREATED
    assert [c.kind for c in env.zoho.calls] == ["create", "find", "find"]
    f1, f2 = env.zoho.finds()
    assert f2.at - f1.at >= 300


# -- a listing that fails -------------------------------------------------------------------------
#
# A reconciliation listing that gets a 5xx or never reaches Zoho is tried again with the create
# backoff, at most `list_attempts` times; meanwhile the row waits on the queue, still in flight for
# this run in the journal. Nothing is sent before a listing has answered "not there".

LIST_ERRORS = [
    pytest.param(lambda i: ServerError(f"503 on list {i}"), id="5xx"),
    pytest.param(lambda i: NotSent(f"connection refused {i}"), id="not-sent"),
]


def listing_gaps(env: Env, identity: str) -> list[float]:
    """Idle time between one listing's answer and the next listing."""
    finds = [c.at for c in env.zoho.finds(identity)]
    return [b - (a + env.zoho.latency) for a, b in itertools.pairwise(finds)]


@pytest.mark.parametrize("error", LIST_ERRORS)
async def test_listing_failing_twice_then_finding_it_is_created_without_a_second_post(
    env: Env, error: Callable[[int], Exception]
) -> None:
    reqs = rows(2)
    lost = reqs[0]
    env.zoho.create_script[lost.identity] = [LOST]
    env.zoho.find_script[lost.identity] = [error(1), error(2)]
    held: list[tuple[str | None, int | None, str]] = []

    async def probe() -> None:  # during the first backoff (listing answers at +7, again >= +12)
        await env.clock.sleep(9)
        entry = env.journal.lookup(BASE, lost)
        assert entry is not None
        held.append((entry.status, entry.run_id, entry.message))

    async def both() -> dict[Line, Outcome]:
        out, _ = await asyncio.gather(
            env.sending(reqs, RunConfig(backoff_base=10.0, reconcile_delay=5.0)), probe()
        )
        return out

    out = await env.clock.run(both(), max_time=MAX_FAKE)
    got = out[lost.line]
    assert got.status is Status.CREATED and got.attempts == 1
    assert got.session_id == env.zoho.sessions[lost.identity][0]
    assert len(env.zoho.creates(lost.identity)) == 1  # never re-sent
    assert len(env.zoho.sessions[lost.identity]) == 1
    assert [c.kind for c in env.zoho.calls if c.identity == lost.identity] == [
        "create",
        "find",
        "find",
        "find",
    ]
    # the same equal-jitter backoff as creates: between half and all of base * 2**(n-1)
    g1, g2 = listing_gaps(env, lost.identity)
    assert 5.0 <= g1 <= 10.0 and 10.0 <= g2 <= 20.0
    retries = [e for e in env.events if isinstance(e, RetryEvent) and e.row == lost.row]
    assert [e.at for e in retries] == pytest.approx(
        [c.at for c in env.zoho.finds(lost.identity)[1:]], abs=1e-6
    )
    assert all("listing" in e.reason for e in retries)
    # while it waited it stayed in flight for this run, with a note saying why
    [(status, run_id, message)] = held
    assert status == INFLIGHT and "listing failed" in message and str(error(1)) in message
    assert run_id == env.journal.runs(1)[0].id
    assert env.status(lost) == CREATED
    assert out[reqs[1].line].status is Status.CREATED


@pytest.mark.parametrize("error", LIST_ERRORS)
async def test_listing_failing_twice_then_not_finding_it_sends_once_more(
    env: Env, error: Callable[[int], Exception]
) -> None:
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [OutcomeUnknown("connection reset")]  # did not land
    env.zoho.find_script[req.identity] = [error(1), error(2)]
    out = await env.send([req], RunConfig(backoff_base=10.0))
    assert out[req.line].status is Status.CREATED and out[req.line].attempts == 2
    assert [c.kind for c in env.zoho.calls] == ["create", "find", "find", "find", "create"]
    g1, g2 = listing_gaps(env, req.identity)
    assert 5.0 <= g1 <= 10.0 and 10.0 <= g2 <= 20.0
    assert len(env.zoho.sessions[req.identity]) == 1
    assert env.status(req) == CREATED


@pytest.mark.parametrize("error", LIST_ERRORS)
async def test_listing_that_keeps_failing_is_unknown_after_the_bound_for_the_next_run(
    env: Env, error: Callable[[int], Exception]
) -> None:
    reqs = rows(2)
    lost = reqs[0]
    env.zoho.create_script[lost.identity] = [LOST]
    env.zoho.find_script[lost.identity] = [error(i) for i in range(1, 10)]
    out = await env.send(reqs, RunConfig(list_attempts=3, backoff_base=10.0))
    got = out[lost.line]
    assert got.status is Status.UNKNOWN
    assert "may have been created" in got.message.lower() and "next run" in got.message
    assert "3 times" in got.message and " 3)" in got.message  # the last failure is named
    assert len(env.zoho.finds(lost.identity)) == 3  # list_attempts listings, then it gives up
    g1, g2 = listing_gaps(env, lost.identity)
    assert 5.0 <= g1 <= 10.0 and 10.0 <= g2 <= 20.0
    assert len(env.zoho.creates(lost.identity)) == 1  # never re-sent blindly
    assert env.status(lost) == UNKNOWN  # the journal keeps it for the next run
    assert out[reqs[1].line].status is Status.CREATED

    # the next run, with a working listing, finds it and does not send it again
    env.zoho.find_script.clear()
    again = await env.send(reqs)
    assert again[lost.line].status is Status.EXISTS
    assert again[lost.line].session_id == env.zoho.sessions[lost.identity][0]
    assert len(env.zoho.creates(lost.identity)) == 1
    assert len(env.zoho.finds(lost.identity)) == 4
    assert env.status(lost) == CREATED


async def test_row_of_a_dead_run_is_listed_again_after_a_failed_listing(env: Env) -> None:
    landed, gone = rows(2)
    crashed = env.journal.start_run("term.xlsx", BASE, pid=dead_pid())
    env.journal.claim(BASE, landed, crashed)
    env.journal.claim(BASE, gone, crashed)
    sid = env.zoho.add_session(landed)  # its POST had landed before the crash
    env.zoho.find_script[landed.identity] = [ServerError("500 on list")]
    env.zoho.find_script[gone.identity] = [NotSent("DNS failure")]
    out = await env.send([landed, gone])
    assert out[landed.line].status is Status.EXISTS and out[landed.line].session_id == sid
    assert f"run #{crashed}" in out[landed.line].message
    assert [c.kind for c in env.zoho.calls if c.identity == landed.identity] == ["find", "find"]
    assert [c.kind for c in env.zoho.calls if c.identity == gone.identity] == [
        "find",
        "find",
        "create",
    ]
    assert out[gone.line].status is Status.CREATED and out[gone.line].attempts == 1


async def test_stop_during_a_listing_backoff_is_unknown_at_once(env: Env) -> None:
    reqs = rows(2)
    lost = reqs[0]
    env.zoho.create_script[lost.identity] = [LOST]  # reply lost at +1, listing +6, fails at +7
    env.zoho.find_script[lost.identity] = [ServerError("503 on list")]
    config = RunConfig(backoff_base=100.0, reconcile_delay=5.0)  # lists again at +57 or later
    out = await run_with_stop(env, reqs, config, stop_at=20)
    assert env.clock.time() - env.t0 == pytest.approx(20.0, abs=1e-6)  # no wait for the backoff
    got = out[lost.line]
    assert got.status is Status.UNKNOWN and "next run" in got.message
    assert env.status(lost) == UNKNOWN  # not left in flight: the operator's list shows it
    assert len(env.zoho.finds(lost.identity)) == 1  # no listing after the stop
    assert out[reqs[1].line].status is Status.CREATED

    again = await env.send(reqs)
    assert again[lost.line].status is Status.EXISTS
    assert len(env.zoho.creates(lost.identity)) == 1


async def test_hard_stop_during_a_listing_backoff_leaves_the_row_unknown(env: Env) -> None:
    """The caller cancels the run (job.send's hard stop) while the row waits to be listed again:
    the journal must say unknown, not leave the row in flight for a finished run."""
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [LOST]
    env.zoho.find_script[req.identity] = [ServerError("503 on list")]  # answered at +7

    async def scenario() -> dict[Line, Outcome]:
        config = RunConfig(backoff_base=100.0, reconcile_delay=5.0)
        sending = asyncio.ensure_future(env.sending([req], config))
        await env.clock.sleep(20)
        sending.cancel()
        await asyncio.wait({sending})
        return {e.outcome.line: e.outcome for e in env.events if isinstance(e, OutcomeEvent)}

    out = await env.clock.run(scenario(), max_time=MAX_FAKE)
    assert_one_outcome_each([req], out)
    assert out[req.line].status is Status.UNKNOWN
    assert env.status(req) == UNKNOWN
    assert len(env.zoho.finds()) == 1 and len(env.zoho.creates()) == 1


async def test_fatal_answer_to_a_repeated_listing_stops_the_run(env: Env) -> None:
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [LOST]
    env.zoho.find_script[req.identity] = [
        ServerError("500 on list"),
        Fatal("7218 invalid OAuth scope", status=403),
    ]
    out = await env.send([req])
    got = out[req.line]
    assert got.status is Status.UNKNOWN and "7218" in got.message
    assert env.status(req) == UNKNOWN
    assert [c.kind for c in env.zoho.calls] == ["create", "find", "find"]
    assert [e.reason for e in env.events if isinstance(e, StopEvent)] == [
        "Zoho answered: 7218 invalid OAuth scope"
    ]


async def test_lockout_on_a_repeated_listing_still_waits_out_the_lock(env: Env) -> None:
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [LOST]
    env.zoho.find_script[req.identity] = [ServerError("500 on list"), Locked("7209 threshold")]
    out = await env.send([req])
    assert out[req.line].status is Status.CREATED and out[req.line].attempts == 1
    assert [c.kind for c in env.zoho.calls] == ["create", "find", "find", "find"]
    _, f2, f3 = env.zoho.finds()
    assert f3.at - (f2.at + env.zoho.latency) == pytest.approx(300, abs=1e-6)


async def test_another_run_waits_while_a_listing_backs_off(env: Env) -> None:
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [OutcomeUnknown("read timeout")]  # did not land
    env.zoho.find_script[req.identity] = [ServerError("503 on list")]  # at +6, answered +7
    j2 = Journal(env.state, clock=env.clock.time)

    async def second_run_during_the_backoff() -> dict[Line, Outcome]:
        await env.clock.sleep(10)  # run A lists again at +57 or later
        return await env.sending([req], RunConfig(busy_poll=5.0), journal=j2)

    async def both() -> tuple[dict[Line, Outcome], dict[Line, Outcome]]:
        a, b = await asyncio.gather(
            env.sending([req], RunConfig(reconcile_delay=5.0, backoff_base=100.0)),
            second_run_during_the_backoff(),
        )
        return a, b

    out_a, out_b = await env.clock.run(both(), max_time=MAX_FAKE)
    j2.close()
    assert out_a[req.line].status is Status.CREATED and out_a[req.line].attempts == 2
    assert out_b[req.line].status is Status.EXISTS  # it saw the row busy, never listed or sent
    assert out_b[req.line].session_id == out_a[req.line].session_id
    assert [c.kind for c in env.zoho.calls] == ["create", "find", "find", "create"]
    assert len(env.zoho.sessions[req.identity]) == 1


async def test_row_taken_over_during_a_listing_backoff_is_not_listed_or_sent(env: Env) -> None:
    """A run frozen past the heartbeat bound is judged dead; if another run took the row over
    meanwhile, the first one settles it from the journal instead of listing and sending."""
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [LOST]
    env.zoho.find_script[req.identity] = [ServerError("503 on list")]  # at +6, answered +7
    j2 = Journal(env.state, clock=env.clock.time, stale_after=10.0)
    other = j2.start_run("term.xlsx", BASE)

    async def other_run_takes_it_over() -> None:
        await env.clock.sleep(30)  # our last heartbeat was at +0 (heartbeat_every is huge)
        assert j2.claim(BASE, req, other).kind.value == "stale"
        j2.record_created(BASE, req, other, "999000000000000001", attempts=0)

    async def both() -> dict[Line, Outcome]:
        config = RunConfig(reconcile_delay=5.0, backoff_base=100.0, heartbeat_every=10_000.0)
        out, _ = await asyncio.gather(env.sending([req], config), other_run_takes_it_over())
        return out

    out = await env.clock.run(both(), max_time=MAX_FAKE)
    j2.close()
    got = out[req.line]
    assert got.status is Status.EXISTS and got.session_id == "999000000000000001"
    assert [c.kind for c in env.zoho.calls] == ["create", "find"]  # nothing after the backoff
    entry = env.journal.lookup(BASE, req)
    assert entry is not None and entry.run_id == other and entry.status == CREATED


# -- stopping --------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [Fatal, AuthExpired])
async def test_fatal_answer_stops_the_run(env: Env, error: type[Fatal] | type[AuthExpired]) -> None:
    reqs = rows(10)
    env.zoho.create_script[reqs[2].identity] = [error("7218 invalid OAuth scope", status=403)]
    out = await env.send(reqs, RunConfig(workers=2))
    fatal_row = out[reqs[2].line]
    assert fatal_row.status is Status.FAILED and fatal_row.message == "7218 invalid OAuth scope"
    [t_fatal] = [c.at + env.zoho.latency for c in env.zoho.creates(reqs[2].identity)]
    assert not [c for c in env.zoho.calls if c.at > t_fatal]  # no call after the answer
    called = {c.row for c in env.zoho.creates()}
    for r in reqs:
        o = out[r.line]
        if r.row not in called:
            assert o.status is Status.FAILED
            assert o.message == (
                "Not sent: the run stopped because Zoho answered: 7218 invalid OAuth scope"
            )
            assert env.status(r) is None  # never claimed
        elif r is not reqs[2]:
            assert o.status is Status.CREATED  # in flight: finished and journalled
    assert len(called) < 10
    assert any(isinstance(e, StopEvent) for e in env.events)


async def test_stop_lets_calls_in_flight_finish_and_leaves_the_rest_pending(env: Env) -> None:
    env.zoho.latency = 10.0
    reqs = rows(8)
    stop = asyncio.Event()

    async def stopper() -> None:
        await env.clock.sleep(15)
        stop.set()

    async def both() -> dict[Line, Outcome]:
        out, _ = await asyncio.gather(
            env.sending(reqs, RunConfig(workers=2, stop_grace=30), stop=stop), stopper()
        )
        return out

    out = await env.clock.run(both(), max_time=MAX_FAKE)
    assert_one_outcome_each(reqs, out)
    # rows 2, 3 done at +10; rows 4, 5 were in flight at +15 and finished at +20
    assert [out[r.line].status for r in reqs[:4]] == [Status.CREATED] * 4
    assert all(out[r.line].status is Status.PENDING for r in reqs[4:])
    assert all("stopped" in out[r.line].message for r in reqs[4:])
    assert not [c for c in env.zoho.calls if c.at > env.t0 + 15]
    assert all(env.status(r) is None for r in reqs[4:])
    assert env.clock.time() - env.t0 == pytest.approx(20.0, abs=1e-6)


async def test_stop_grace_expiry_leaves_in_flight_rows_unknown_then_reconciled(env: Env) -> None:
    env.zoho.latency = 100.0
    reqs = rows(4)
    stop = asyncio.Event()

    async def stopper() -> None:
        await env.clock.sleep(5)
        stop.set()

    async def both() -> dict[Line, Outcome]:
        out, _ = await asyncio.gather(
            env.sending(reqs, RunConfig(workers=2, stop_grace=30), stop=stop), stopper()
        )
        return out

    out = await env.clock.run(both(), max_time=MAX_FAKE)
    assert_one_outcome_each(reqs, out)
    assert env.clock.time() - env.t0 == pytest.approx(
        35.0, abs=1e-6
    )  # stop + grace, not the full 100 s
    assert [out[r.line].status for r in reqs] == [Status.UNKNOWN] * 2 + [Status.PENDING] * 2
    assert [env.status(r) for r in reqs] == [UNKNOWN, UNKNOWN, None, None]

    env.zoho.latency = 1.0
    again = await env.send(reqs)
    assert statuses(again) == {"created": 4}
    for r in reqs[:2]:  # listed before being sent again
        kinds = [c.kind for c in env.zoho.calls if c.identity == r.identity]
        assert kinds == ["create", "find", "create"]


async def test_stop_already_set_sends_nothing(env: Env) -> None:
    reqs = rows(3)
    stop = asyncio.Event()
    stop.set()
    out = await env.send(reqs, stop=stop)
    assert statuses(out) == {"pending": 3}
    assert env.zoho.calls == []


# -- claims share one commit -----------------------------------------------------------------------
#
# Every row is claimed durably before its request may leave. Claims asked for in the same turn of
# the event loop share one transaction (one wait for the disk). These tests watch the journal's
# transactions from the outside: which claims each commit held, and when each create went out.


class Commits:
    """Records, in one timeline, each claim made, each group commit's end, and each create."""

    def __init__(self, env: Env) -> None:
        self.log: list[tuple[str, str]] = []
        self.batches: list[list[str]] = []
        journal, zoho = env.journal, env.zoho
        claim, together, create = journal.claim, journal.together, zoho.create_session

        def spy_claim(api_base: str, req: Request, run_id: int):  # type: ignore[no-untyped-def]
            self.log.append(("claim", req.identity))
            if self.batches:
                self.batches[-1].append(req.identity)
            return claim(api_base, req, run_id)

        @contextlib.contextmanager
        def spy_together() -> Iterator[None]:
            self.batches.append([])
            with together():
                yield
            self.log.append(("commit", ""))

        async def spy_create(req: Request) -> str:
            self.log.append(("create", req.identity))
            return await create(req)

        journal.claim = spy_claim  # type: ignore[method-assign]
        journal.together = spy_together  # type: ignore[method-assign]
        zoho.create_session = spy_create  # type: ignore[method-assign]

    def committed_before_sent(self, identity: str) -> bool:
        claimed = self.log.index(("claim", identity))
        committed = self.log.index(("commit", ""), claimed)
        return committed < self.log.index(("create", identity))


async def test_claims_asked_together_share_one_commit_made_before_their_requests(
        env: Env) -> None:
    commits = Commits(env)
    reqs = rows(12)
    out = await env.send(reqs, RunConfig(workers=4))
    assert statuses(out) == {"created": 12}
    # the four workers start together: their four claims share the first transaction (later
    # ones follow the fake clock, which wakes one reply at a time: a commit each)
    assert commits.batches[0] == [r.identity for r in reqs[:4]]
    assert sorted(itertools.chain(*commits.batches)) == sorted(r.identity for r in reqs)
    assert all(commits.committed_before_sent(r.identity) for r in reqs)
    assert all(env.status(r) == CREATED for r in reqs)


async def test_a_stop_before_the_group_commit_claims_nothing(env: Env) -> None:
    """The stop comes after two workers asked for their claims and before the commit: nothing is
    written for them (no claim to give back), nothing is sent, and every row is pending."""
    stop = asyncio.Event()
    wait, passed = env.gate.wait, 0

    async def gate_then_stop(on_wait: Callable[[float], None] | None = None) -> float:
        nonlocal passed
        passed += 1
        if passed == 3:  # workers 1 and 2 are waiting for their claims' commit
            stop.set()
        return await wait(on_wait)

    env.gate.wait = gate_then_stop  # type: ignore[method-assign]
    reqs = rows(4)
    out = await env.send(reqs, RunConfig(workers=4), stop=stop)
    assert statuses(out) == {"pending": 4}
    assert env.zoho.calls == []
    assert [env.status(r) for r in reqs] == [None] * 4


# -- stopping while rows wait in the pace ----------------------------------------------------------
#
# A worker claims its row, then the client awaits the pace: the lock gate, then a limiter slot. With
# the real pace (30 calls / 60 s, so starts at least 1.03 s apart) workers 2-4 wait for slots; when
# a lockout closes the gate meanwhile, make_pace sends them back to wait out the lock, claimed but
# provably unsent. A stop must release those rows at once (pending), not give them the grace.


def use_real_pace(env: Env, *, tracked: bool = True) -> None:
    """Pace the fake client as job.py paces the real one: LockGate + WindowLimiter (in memory, on
    the fake clock), wrapped by `track_pace` unless ``tracked`` is False."""
    gate = LockGate(clock=env.clock)
    limiter = WindowLimiter(30, 60.0, clock=env.clock)
    pace = make_pace(gate, limiter)
    env.gate = gate
    env.zoho.gate = gate
    env.zoho.pace = track_pace(pace) if tracked else pace


async def run_with_stop(
    env: Env, reqs: Sequence[Request], config: RunConfig, *, stop_at: float
) -> dict[Line, Outcome]:
    stop = asyncio.Event()

    async def stopper() -> None:
        await env.clock.sleep(stop_at)
        stop.set()

    async def both() -> dict[Line, Outcome]:
        out, _ = await asyncio.gather(env.sending(reqs, config, stop=stop), stopper())
        return out

    out = await env.clock.run(both(), max_time=MAX_FAKE)
    assert_one_outcome_each(reqs, out)
    return out


def lock_while_three_rows_wait_for_slots(env: Env, n: int = 8) -> list[Request]:
    """Row 0 is sent at +0 and locked out at +1 (gate closed until +301); rows 1-3 were claimed
    and waiting for limiter slots, and now wait out the lock inside the pace."""
    reqs = rows(n)
    env.zoho.create_script[reqs[0].identity] = [Locked("Maximum limit exceeded", status=422)]
    return reqs


async def test_stop_during_a_lockout_releases_rows_waiting_in_the_pace_at_once(env: Env) -> None:
    use_real_pace(env)
    reqs = lock_while_three_rows_wait_for_slots(env)
    out = await run_with_stop(env, reqs, RunConfig(workers=4, stop_grace=30), stop_at=60)

    # the stop took effect at once: neither the lock (+301) nor the grace (+90) was waited for
    assert env.clock.time() - env.t0 == pytest.approx(60.0, abs=1e-6)
    assert statuses(out) == {"pending": 8}
    assert [c.row for c in env.zoho.calls] == [reqs[0].row]  # nothing else left
    for r in reqs[1:4]:  # claimed, then waited in the pace: given back, no attempt counted
        assert env.status(r) == RELEASED
        assert out[r.line].attempts == 0
        assert "stopped before this row was sent" in out[r.line].message
    assert env.status(reqs[0]) == RELEASED  # released when the lockout came back
    assert all(env.status(r) is None for r in reqs[4:])  # never claimed

    # the next run sends them without a reconciliation listing, once the lock is over
    again = await env.send(reqs)
    assert statuses(again) == {"created": 8}
    assert env.zoho.finds() == []
    assert Counter(c.identity for c in env.zoho.creates()) == Counter(
        {r.identity: (2 if r is reqs[0] else 1) for r in reqs}
    )
    assert min(c.at for c in env.zoho.calls[1:]) - env.t0 >= 301


async def test_without_track_pace_rows_inside_the_client_are_treated_as_sent(env: Env) -> None:
    """The safe fallback when the pace is not wrapped: the runner cannot tell a row waiting in the
    pace from one on the wire, so it gives it the grace and reports it unknown."""
    use_real_pace(env, tracked=False)
    reqs = lock_while_three_rows_wait_for_slots(env)
    out = await run_with_stop(env, reqs, RunConfig(workers=4, stop_grace=30), stop_at=60)
    assert env.clock.time() - env.t0 == pytest.approx(90.0, abs=1e-6)
    assert [out[r.line].status for r in reqs[1:4]] == [Status.UNKNOWN] * 3
    assert [env.status(r) for r in reqs[1:4]] == [UNKNOWN] * 3
    assert len(env.zoho.calls) == 1


def one_in_flight_two_waiting(env: Env, in_flight_latency: float) -> list[Request]:
    """Row 0 is sent at +0 and answers after ``in_flight_latency``; row 1 is sent at +1.03 and
    locked out at +2.03; rows 2 and 3 got limiter slots at +2.06 and +3.09, found the gate closed,
    and wait out the lock inside the pace."""
    reqs = rows(4)
    env.zoho.latency_for[reqs[0].identity] = in_flight_latency
    env.zoho.create_script[reqs[1].identity] = [Locked("Maximum limit exceeded", status=422)]
    return reqs


@pytest.mark.parametrize(
    ("latency", "status", "journal_status", "ends_at"),
    [(20.0, Status.CREATED, CREATED, 20.0), (100.0, Status.UNKNOWN, UNKNOWN, 40.0)],
)
async def test_stop_gives_the_grace_only_to_a_request_on_the_wire(
    env: Env, latency: float, status: Status, journal_status: str, ends_at: float
) -> None:
    use_real_pace(env)
    reqs = one_in_flight_two_waiting(env, latency)
    settled_early: list[int] = []

    async def probe() -> None:  # during the grace: the rows that were waiting are already settled
        await env.clock.sleep(11)
        settled_early.extend(e.outcome.row for e in env.events if isinstance(e, OutcomeEvent))
        assert [env.status(r) for r in reqs[2:]] == [RELEASED, RELEASED]

    async def run() -> dict[Line, Outcome]:
        out, _ = await asyncio.gather(
            run_with_stop(env, reqs, RunConfig(workers=4, stop_grace=30), stop_at=10), probe()
        )
        return out

    out = await run()
    assert env.clock.time() - env.t0 == pytest.approx(ends_at, abs=1e-6)
    assert out[reqs[0].line].status is status  # the grace applied to the one on the wire
    assert env.status(reqs[0]) == journal_status
    assert sorted(settled_early) == sorted(r.row for r in reqs[1:])
    assert [out[r.line].status for r in reqs[1:]] == [Status.PENDING] * 3
    assert [env.status(r) for r in reqs[1:]] == [RELEASED] * 3
    assert [c.row for c in env.zoho.calls] == [reqs[0].row, reqs[1].row]


@pytest.mark.parametrize("soft_stop_first", [False, True])
async def test_hard_stop_abandons_only_the_request_on_the_wire(
    env: Env, soft_stop_first: bool
) -> None:
    """job.send's hard stop cancels the run and keeps the outcomes the runner emitted on its way
    out; this does the same."""
    use_real_pace(env)
    reqs = one_in_flight_two_waiting(env, 100.0)
    stop = asyncio.Event()

    async def scenario() -> dict[Line, Outcome]:
        sending = asyncio.ensure_future(env.sending(reqs, RunConfig(stop_grace=30), stop=stop))
        await env.clock.sleep(10)
        if soft_stop_first:
            stop.set()
            await env.clock.sleep(2)
        sending.cancel()
        await asyncio.wait({sending})
        return {e.outcome.line: e.outcome for e in env.events if isinstance(e, OutcomeEvent)}

    out = await env.clock.run(scenario(), max_time=MAX_FAKE)
    assert_one_outcome_each(reqs, out)
    assert env.clock.time() - env.t0 == pytest.approx(12.0 if soft_stop_first else 10.0, abs=1e-6)
    assert out[reqs[0].line].status is Status.UNKNOWN
    assert env.status(reqs[0]) == UNKNOWN
    assert [out[r.line].status for r in reqs[1:]] == [Status.PENDING] * 3
    assert [env.status(r) for r in reqs[1:]] == [RELEASED] * 3
    assert all(out[r.line].attempts == 0 for r in reqs[2:])


async def test_listing_waiting_on_the_lock_at_a_stop_is_unknown_at_once(env: Env) -> None:
    use_real_pace(env)
    lost, locked = rows(2)
    env.zoho.create_script[lost.identity] = [LOST]  # landed; reply lost at +1, listing due at +6
    env.zoho.create_script[locked.identity] = [Locked("7209 threshold")]  # gate closed at +2.03
    out = await run_with_stop(
        env, [lost, locked], RunConfig(workers=2, reconcile_delay=5.0), stop_at=60
    )
    assert env.clock.time() - env.t0 == pytest.approx(60.0, abs=1e-6)
    assert out[lost.line].status is Status.UNKNOWN  # it may exist: never released
    assert env.status(lost) == UNKNOWN
    assert out[locked.line].status is Status.PENDING
    assert env.zoho.finds() == []

    again = await env.send([lost, locked])  # lists first, finds it, does not send it again
    assert again[lost.line].status is Status.EXISTS
    assert len(env.zoho.creates(lost.identity)) == 1
    assert len(env.zoho.finds(lost.identity)) == 1


async def test_no_listing_starts_after_a_stop(env: Env) -> None:
    [req] = rows(1)
    env.zoho.create_script[req.identity] = [LOST]  # reply lost at +1; listing due at +31
    out = await run_with_stop(env, [req], RunConfig(reconcile_delay=30.0), stop_at=10)
    assert env.clock.time() - env.t0 == pytest.approx(10.0, abs=1e-6)  # no wait for the listing
    assert out[req.line].status is Status.UNKNOWN and "next run" in out[req.line].message
    assert env.status(req) == UNKNOWN
    assert env.zoho.finds() == []


async def test_fatal_answer_releases_rows_waiting_in_the_pace(env: Env) -> None:
    use_real_pace(env)
    reqs = rows(4)
    env.zoho.create_script[reqs[1].identity] = [Fatal("7218 invalid OAuth scope", status=403)]
    out = await env.send(reqs, RunConfig(workers=4))
    t_fatal = env.zoho.creates(reqs[1].identity)[0].at + env.zoho.latency
    assert env.clock.time() == pytest.approx(t_fatal, abs=1e-6)  # nobody waited for a slot
    assert out[reqs[0].line].status is Status.CREATED
    assert out[reqs[1].line].status is Status.FAILED
    for r in reqs[2:]:  # claimed, waiting for a limiter slot: not sent, given back
        assert out[r.line].status is Status.FAILED
        assert out[r.line].message.startswith("Not sent: the run stopped because Zoho answered")
        assert out[r.line].attempts == 0
        assert env.status(r) == RELEASED
    assert [c.row for c in env.zoho.calls] == [reqs[0].row, reqs[1].row]


async def test_a_pace_refused_after_a_stop_sends_nothing(env: Env) -> None:
    """A worker whose slot comes free just as the stop arrives does not send (the wrapper checks
    after the pace returns), even before the runner got round to cancelling it."""
    [req] = rows(1)
    stop = asyncio.Event()

    async def pace_that_stops_the_run() -> None:
        stop.set()  # the stop lands while this worker is in the pace

    env.zoho.pace = track_pace(pace_that_stops_the_run)
    out = await env.send([req], stop=stop)
    assert out[req.line].status is Status.PENDING and out[req.line].attempts == 0
    assert env.status(req) == RELEASED
    assert env.zoho.calls == []


async def test_track_pace_outside_a_run_is_a_pass_through() -> None:
    seen: list[str] = []

    async def pace() -> float:
        seen.append("paced")
        return 42.0

    assert await track_pace(pace)() == 42.0
    assert seen == ["paced"]


# -- other runs ------------------------------------------------------------------------------------


async def test_row_left_in_flight_by_a_crashed_run_is_reconciled_before_resending(
    env: Env,
) -> None:
    landed, lost, fresh = rows(3)
    crashed = env.journal.start_run("term.xlsx", BASE, pid=dead_pid())
    env.journal.claim(BASE, landed, crashed)
    env.journal.claim(BASE, lost, crashed)
    sid = env.zoho.add_session(landed)  # its POST had landed before the crash
    out = await env.send([landed, lost, fresh])

    assert out[landed.line].status is Status.EXISTS and out[landed.line].session_id == sid
    assert env.zoho.creates(landed.identity) == []
    assert [c.kind for c in env.zoho.calls if c.identity == lost.identity] == ["find", "create"]
    assert out[lost.line].status is Status.CREATED
    assert env.zoho.finds(fresh.identity) == []  # an ordinary new row is not listed
    assert {env.status(r) for r in (landed, lost, fresh)} == {CREATED}


async def test_row_busy_in_another_live_run_becomes_exists(env: Env) -> None:
    held, mine = rows(2)
    other = env.journal.start_run("term.xlsx", BASE)
    env.journal.claim(BASE, held, other)

    async def other_run_finishes() -> None:
        await env.clock.sleep(20)
        env.journal.record_created(BASE, held, other, "999000000000000001", attempts=1)

    async def both() -> dict[Line, Outcome]:
        out, _ = await asyncio.gather(
            env.sending([held, mine], RunConfig(busy_poll=5.0)), other_run_finishes()
        )
        return out

    out = await env.clock.run(both(), max_time=MAX_FAKE)
    assert out[held.line].status is Status.EXISTS
    assert out[held.line].session_id == "999000000000000001"
    assert env.zoho.calls == [c for c in env.zoho.calls if c.identity == mine.identity]
    assert out[mine.line].status is Status.CREATED


async def test_row_busy_for_too_long_is_unknown_and_not_sent(env: Env) -> None:
    [held] = rows(1)
    other = env.journal.start_run("term.xlsx", BASE)
    env.journal.claim(BASE, held, other)

    async def keep_other_alive() -> None:
        while True:
            await env.clock.sleep(5)
            env.journal.heartbeat(other)

    async def ours() -> dict[Line, Outcome]:
        beat = asyncio.create_task(keep_other_alive())
        try:
            return await env.sending([held], RunConfig(busy_wait=60.0, busy_poll=5.0))
        finally:
            beat.cancel()

    out = await env.clock.run(ours(), max_time=MAX_FAKE)
    got = out[held.line]
    assert got.status is Status.UNKNOWN and f"run #{other}" in got.message
    assert env.zoho.calls == []
    assert 60 <= env.clock.time() - env.t0 <= 66
    entry = env.journal.lookup(BASE, held)
    assert entry is not None and entry.run_id == other  # still the other run's


async def test_two_concurrent_runs_create_each_identity_exactly_once(env: Env) -> None:
    reqs = rows(12)
    # the second run's sheet lists the same sessions in another order
    other_order = list(reversed(reqs))
    j2 = Journal(env.state, clock=env.clock.time)  # a second "process" on the same state folder
    events_a: list[Event] = []
    events_b: list[Event] = []

    async def both() -> tuple[dict[Line, Outcome], dict[Line, Outcome]]:
        a, b = await asyncio.gather(
            env.sending(reqs, RunConfig(workers=3), events=events_a),
            env.sending(other_order, RunConfig(workers=3), journal=j2, events=events_b),
        )
        return a, b

    out_a, out_b = await env.clock.run(both(), max_time=MAX_FAKE)
    j2.close()
    assert_one_outcome_each(reqs, out_a)
    assert_one_outcome_each(reqs, out_b)
    creates = Counter(c.identity for c in env.zoho.creates())
    assert creates == Counter(r.identity for r in reqs)  # exactly once each
    for r in reqs:
        pair = {out_a[r.line].status, out_b[r.line].status}
        assert pair == {Status.CREATED, Status.EXISTS}
        assert out_a[r.line].session_id == out_b[r.line].session_id
    assert statuses(out_a)["created"] > 0 and statuses(out_b)["created"] > 0


async def test_another_run_waits_while_a_lost_reply_is_being_reconciled(env: Env) -> None:
    [req] = rows(1)
    # the first POST does not land, but its reply is lost: only listing can tell
    env.zoho.create_script[req.identity] = [OutcomeUnknown("read timeout")]
    j2 = Journal(env.state, clock=env.clock.time)

    async def late_second_run() -> dict[Line, Outcome]:
        await env.clock.sleep(2)  # run A got no reply at +1 and lists at +6
        return await env.sending([req], RunConfig(busy_poll=1.0), journal=j2)

    async def both() -> tuple[dict[Line, Outcome], dict[Line, Outcome]]:
        a, b = await asyncio.gather(
            env.sending([req], RunConfig(reconcile_delay=5.0)), late_second_run()
        )
        return a, b

    out_a, out_b = await env.clock.run(both(), max_time=MAX_FAKE)
    j2.close()
    assert out_a[req.line].status is Status.CREATED and out_a[req.line].attempts == 2
    assert out_b[req.line].status is Status.EXISTS
    assert len(env.zoho.sessions[req.identity]) == 1
    assert [(c.kind, c.at - env.t0) for c in env.zoho.calls] == [
        ("create", 0.0),
        ("find", 6.0),
        ("create", 7.0),
    ]


# -- robustness ------------------------------------------------------------------------------------


async def test_unexpected_client_error_never_loses_the_row(env: Env) -> None:
    reqs = rows(2)
    env.zoho.create_script[reqs[0].identity] = [ValueError("bug")]
    out = await env.send(reqs)
    assert out[reqs[0].line].status is Status.UNKNOWN
    assert env.status(reqs[0]) == UNKNOWN
    assert out[reqs[1].line].status is Status.CREATED


async def test_a_failing_progress_callback_does_not_break_the_run(env: Env) -> None:
    reqs = rows(3)

    def explode(_: Event) -> None:
        raise RuntimeError("render bug")

    out = await env.clock.run(
        send_all(
            reqs,
            client=env.zoho,
            journal=env.journal,
            gate=env.gate,
            api_base=BASE,
            run_id=env.start(),
            config=RunConfig(),
            clock=env.clock,
            on_event=explode,
        )
    )
    assert statuses(out) == {"created": 3}


async def test_heartbeat_keeps_the_run_alive_during_a_long_lock(env: Env) -> None:
    reqs = rows(2)
    env.zoho.create_script[reqs[0].identity] = [Locked("blocked")]
    run_id = env.start()
    seen: list[bool] = []

    async def probe() -> None:
        await env.clock.sleep(200)  # mid-lock, well past Journal.stale_after without beats
        seen.append(env.journal.run_alive(run_id))

    async def both() -> None:
        await asyncio.gather(env.sending(reqs, run_id=run_id), probe())

    await env.clock.run(both(), max_time=MAX_FAKE)
    assert seen == [True]


async def test_empty_input(env: Env) -> None:
    assert await env.send([]) == {}


# -- dry run ---------------------------------------------------------------------------------------


async def test_preview_reports_without_calling(env: Env) -> None:
    done, edited, unsure, new = rows(4)
    first = await env.send([done, edited])
    run = env.start()
    env.journal.claim(BASE, unsure, run)
    env.journal.record_unknown(BASE, unsure, run, "no reply")
    n = len(env.zoho.calls)
    reqs = [done, make_req(edited.row, fp="edited"), unsure, new]
    out = preview(reqs, journal=env.journal, api_base=BASE)
    assert len(env.zoho.calls) == n
    assert out[done.line].status is Status.EXISTS
    assert out[done.line].session_id == first[done.line].session_id
    assert out[edited.line].status is Status.CHANGED
    assert out[unsure.line].status is Status.WOULD_CREATE and "list" in out[unsure.line].message
    assert out[new.line].status is Status.WOULD_CREATE


def test_preview_flags_a_repeated_identity() -> None:
    a = make_req(2)
    same = Request(3, a.course_id, a.batch_id, a.module_id, a.session_data, a.identity, "fp")
    other = Request(4, a.course_id, a.batch_id, a.module_id, a.session_data, a.identity, "x")

    class NoJournal:
        def lookup(self, api_base: str, req: Request) -> None:
            return None

        def lookup_many(self, api_base: str, reqs: list[Request]) -> dict[str, object]:
            return {}

    out = preview([a, same, other], journal=NoJournal(), api_base=BASE)  # type: ignore[arg-type]
    assert [out[(r, 0)].status for r in (2, 3, 4)] == [
        Status.WOULD_CREATE,
        Status.EXISTS,
        Status.CHANGED,
    ]

"""Updates through the runner (issue 12): a row naming its session is PATCHed, never claimed or
created, with the limiter, lock gate, retries and stop handling that creates have. A fake client
on a fake clock (like tests/test_runner.py's, with ``patch_session``): no HTTP, no real sleeps."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fakeclock import FakeClock, FakeGate

from bulkschedule.core.errors import Locked, Rejected, ServerError
from bulkschedule.core.problems import Line, Outcome, Status
from bulkschedule.core.request import Request
from bulkschedule.send.journal import CREATED, Journal
from bulkschedule.send.limiter import LockGate, WindowLimiter, make_pace, max_in_any_window
from bulkschedule.send.runner import (
    Event,
    LockEvent,
    RetryEvent,
    RunConfig,
    send_all,
    track_pace,
)
from bulkschedule.zoho.client import PaceSlot

BASE = "https://people.zoho.com"
MAX_FAKE = 100_000.0
M = "300000000000000003"


def data(row: int, start: str = "09:00 AM") -> dict[str, str]:
    return {"name": f"Session {row}", "date": "01-09-2025", "startTime": start}


def make_req(row: int, *, start: str = "09:00 AM", session_id: str | None = None) -> Request:
    return Request(row=row, course_id="100000000000000001", batch_id="200000000000000002",
                   module_id=M, session_data=data(row, start),
                   identity=f"{M}/Session {row}/01-09-2025", fingerprint=f"fp-{row}-{start}",
                   session_id=session_id)


def sid(row: int) -> str:
    return f"5550000000000{row:05d}"


@dataclass
class Call:
    at: float
    kind: str  # create | patch | find
    row: int


@dataclass
class FakeZoho:
    """Creates, lists and patches sessions; each call awaits the pace first, as the real client
    does. Scripts per row say what successive calls answer (an exception, or the default)."""

    clock: FakeClock
    pace: Callable[[], Awaitable[object]]
    latency: float = 1.0
    latency_for: dict[int, float] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    held: dict[str, dict[str, str]] = field(default_factory=dict)  # sessionId -> its data
    patch_script: dict[int, list[BaseException]] = field(default_factory=dict)
    create_script: dict[int, list[BaseException]] = field(default_factory=dict)
    refused_at: list[float] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def kinds(self, kind: str) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    async def _exchange(self, kind: str, req: Request,
                        script: dict[int, list[BaseException]]) -> None:
        slot = await self.pace()
        self.calls.append(Call(self.clock.time(), kind, req.row))
        try:
            await self.clock.sleep(self.latency_for.get(req.row, self.latency))
        finally:
            if isinstance(slot, PaceSlot):
                slot.done()
        steps = script.get(req.row)
        if steps:
            step = steps.pop(0)
            if isinstance(step, Locked):
                self.refused_at.append(self.clock.time())
            raise step

    async def create_session(self, req: Request) -> str:
        await self._exchange("create", req, self.create_script)
        new = f"7770000000000{next(self._ids):05d}"
        self.held[new] = dict(req.session_data)
        return new

    async def patch_session(self, req: Request) -> str:
        assert req.session_id is not None
        await self._exchange("patch", req, self.patch_script)
        self.held[req.session_id] = dict(req.session_data)
        return req.session_id

    async def find_session(self, req: Request) -> str | None:
        await self._exchange("find", req, {})
        return None


class Env:
    def __init__(self, tmp_path: Path, *, real_pace: bool = False) -> None:
        self.clock = FakeClock()
        self.t0 = self.clock.time()
        self.gate: FakeGate | LockGate
        if real_pace:  # as job.py paces the real client: LockGate + WindowLimiter, tracked
            self.gate = LockGate(clock=self.clock)
            self.limiter = WindowLimiter(30, 60.0, clock=self.clock)
            pace = track_pace(make_pace(self.gate, self.limiter))
        else:
            self.gate = FakeGate(self.clock)
            pace = track_pace(self.gate.wait)
        self.zoho = FakeZoho(self.clock, pace)
        self.journal = Journal(tmp_path / "state", clock=self.clock.time)
        self.events: list[Event] = []
        self.claimed: list[int] = []
        claim = self.journal.claim

        def spy(api_base: str, req: Request, run_id: int):  # type: ignore[no-untyped-def]
            self.claimed.append(req.row)
            return claim(api_base, req, run_id)

        self.journal.claim = spy  # type: ignore[method-assign]

    def created_before(self, req: Request) -> str:
        """The journal knows ``req``'s session (an earlier run created it)."""
        run = self.journal.start_run("term.xlsx", BASE)
        self.journal.claim(BASE, req, run)
        session = sid(req.row)
        self.journal.record_created(BASE, req, run, session, attempts=1)
        self.journal.finish_run(run, {"created": 1})
        self.zoho.held[session] = dict(req.session_data)
        self.claimed.clear()
        return session

    def edited(self, row: int, start: str = "10:00 AM") -> Request:
        """Row ``row`` created before, now with another start time and its sessionId."""
        session = self.created_before(make_req(row))
        return make_req(row, start=start, session_id=session)

    def sending(self, reqs: Sequence[Request], config: RunConfig | None = None, *,
                stop: asyncio.Event | None = None) -> Awaitable[dict[Line, Outcome]]:
        return send_all(reqs, client=self.zoho, journal=self.journal, gate=self.gate,
                        api_base=BASE, run_id=self.journal.start_run("term.results.xlsx", BASE),
                        config=config or RunConfig(), clock=self.clock, stop=stop,
                        on_event=self.events.append, rng=random.Random(7))

    async def send(self, reqs: Sequence[Request], config: RunConfig | None = None,
                   ) -> dict[Line, Outcome]:
        out = await self.clock.run(self.sending(reqs, config), max_time=MAX_FAKE)
        assert sorted(out) == sorted(r.line for r in reqs)
        return out

    async def send_with_stop(self, reqs: Sequence[Request], config: RunConfig, *,
                             stop_at: float) -> dict[Line, Outcome]:
        stop = asyncio.Event()

        async def stopper() -> None:
            await self.clock.sleep(stop_at)
            stop.set()

        async def both() -> dict[Line, Outcome]:
            out, _ = await asyncio.gather(self.sending(reqs, config, stop=stop), stopper())
            return out

        out = await self.clock.run(both(), max_time=MAX_FAKE)
        assert sorted(out) == sorted(r.line for r in reqs)
        return out


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.journal.close()


@pytest.fixture
def paced(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, real_pace=True)
    yield e
    e.journal.close()


# ---------------------------------------------------------------------------------------------


async def test_an_update_is_patched_never_claimed_or_created(env: Env) -> None:
    upd = env.edited(2)
    out = await env.send([upd])
    o = out[upd.line]
    assert (o.status, o.session_id, o.attempts, o.message) == (Status.UPDATED, upd.session_id, 1,
                                                               "updated")
    assert [c.kind for c in env.zoho.calls] == ["patch"]
    assert env.claimed == []
    assert upd.session_id is not None and env.zoho.held[upd.session_id] == upd.session_data
    e = env.journal.lookup(BASE, upd)
    assert e is not None and (e.status, e.session_id, e.sent, e.pending) == (
        CREATED, upd.session_id, upd.session_data, None)


async def test_a_lost_patch_reply_is_sent_again_and_ends_updated(env: Env) -> None:
    upd = env.edited(2)
    env.zoho.patch_script[upd.row] = [ServerError("lost contact with people.zoho.com while "
                                                  "waiting for the reply to the update")]
    out = await env.send([upd], RunConfig(backoff_base=10.0))
    o = out[upd.line]
    assert (o.status, o.session_id, o.attempts) == (Status.UPDATED, upd.session_id, 2)
    first, second = env.zoho.kinds("patch")
    assert 5.0 <= second.at - (first.at + env.zoho.latency) <= 10.0  # the create backoff
    assert env.zoho.kinds("create") == env.zoho.kinds("find") == []
    assert [type(e) for e in env.events if isinstance(e, RetryEvent)] == [RetryEvent]
    e = env.journal.lookup(BASE, upd)
    assert e is not None and e.pending is None and e.sent == upd.session_data


async def test_patches_that_keep_failing_are_bounded(env: Env) -> None:
    upd = env.edited(2)
    env.zoho.patch_script[upd.row] = [ServerError("503")] * 10
    out = await env.send([upd], RunConfig(max_attempts=3, backoff_base=1.0))
    o = out[upd.line]
    assert o.status is Status.FAILED and o.attempts == 3 and "503" in o.message
    assert len(env.zoho.kinds("patch")) == 3
    # not confirmed: the journal still holds it pending, for the next run to send again
    e = env.journal.lookup(BASE, upd)
    assert e is not None and e.status == CREATED and e.pending == upd.session_data


async def test_a_session_deleted_in_zoho_fails_the_row_with_the_message(env: Env) -> None:
    upd = env.edited(2)
    gone = (f"Zoho has no session {upd.session_id} any more (HTTP 404): it was deleted in Zoho; "
            "to create it again, clear the row's sessionId cell, run `bulkschedule forget SHEET "
            "--row N` for the row and run the sheet again")
    env.zoho.patch_script[upd.row] = [Rejected(gone, status=404)]
    out = await env.send([upd])
    o = out[upd.line]
    assert (o.status, o.message, o.attempts) == (Status.FAILED, gone, 1)
    assert len(env.zoho.kinds("patch")) == 1 and env.zoho.kinds("create") == []
    # the journal's record of the session is not turned into a failed create
    e = env.journal.lookup(BASE, upd)
    assert e is not None and (e.status, e.session_id) == (CREATED, upd.session_id)


async def test_a_lockout_on_a_patch_closes_the_gate_for_everyone(env: Env) -> None:
    upd = env.edited(2)
    creates = [make_req(r) for r in range(3, 9)]
    env.zoho.patch_script[upd.row] = [Locked("Maximum limit exceeded", status=422)]
    out = await env.send([upd, *creates], RunConfig(workers=2))
    assert out[upd.line].status is Status.UPDATED and out[upd.line].attempts == 2
    assert all(out[r.line].status is Status.CREATED for r in creates)
    [t_lock] = env.zoho.refused_at
    assert [c for c in env.zoho.calls if t_lock < c.at < t_lock + 300] == []
    later = [c for c in env.zoho.calls if c.at >= t_lock]
    assert min(c.at for c in later) - t_lock == pytest.approx(300, abs=1e-6)
    assert [c.kind for c in env.zoho.calls].count("patch") == 2
    assert [e.reason for e in env.events if isinstance(e, LockEvent)] == ["Maximum limit exceeded"]


async def test_a_stop_while_an_update_may_be_on_the_wire_is_unknown_and_left_pending(
        env: Env) -> None:
    upd = env.edited(2)
    env.zoho.latency = 100.0
    out = await env.send_with_stop([upd], RunConfig(stop_grace=30), stop_at=5)
    assert env.clock.time() - env.t0 == pytest.approx(35.0, abs=1e-6)  # the stop + its grace
    o = out[upd.line]
    assert (o.status, o.session_id, o.attempts) == (Status.UNKNOWN, upd.session_id, 1)
    assert "sends it again" in o.message
    e = env.journal.lookup(BASE, upd)
    assert e is not None and e.pending == upd.session_data  # the next run sends it again
    assert e.sent == make_req(2).session_data  # what was confirmed before


async def test_a_stop_gives_an_update_on_the_wire_the_grace_as_it_gives_a_create(
        env: Env) -> None:
    """An answer that comes within the stop grace settles the row, update or create alike."""
    upd = env.edited(2)
    new = make_req(3)
    env.zoho.latency = 20.0
    out = await env.send_with_stop([upd, new], RunConfig(workers=2, stop_grace=30), stop_at=5)
    assert out[new.line].status is Status.CREATED
    assert out[upd.line].status is Status.UPDATED
    assert env.clock.time() - env.t0 == pytest.approx(20.0, abs=1e-6)
    e = env.journal.lookup(BASE, upd)
    assert e is not None and e.pending is None and e.sent == upd.session_data


async def test_a_stop_before_an_update_left_leaves_it_pending(paced: Env) -> None:
    """A lockout closes the gate while the update waits inside the pace: a stop releases it at
    once, never sent."""
    env = paced
    first = make_req(2)
    env.zoho.create_script[first.row] = [Locked("Maximum limit exceeded", status=422)]
    upd = env.edited(3)
    out = await env.send_with_stop([first, upd], RunConfig(workers=2, stop_grace=30), stop_at=60)
    o = out[upd.line]
    assert (o.status, o.attempts) == (Status.PENDING, 0)
    assert env.zoho.kinds("patch") == []
    assert env.clock.time() - env.t0 == pytest.approx(60.0, abs=1e-6)  # no grace was waited


async def test_creates_and_updates_share_the_limiter_and_the_gate(paced: Env) -> None:
    env = paced
    updates = [env.edited(r) for r in range(2, 22)]
    creates = [make_req(r) for r in range(22, 42)]
    mixed = [x for pair in zip(updates, creates, strict=True) for x in pair]
    env.zoho.create_script[creates[5].row] = [Locked("Maximum limit exceeded", status=422)]
    out = await env.send(mixed, RunConfig(workers=4))
    assert Counter(str(o.status) for o in out.values()) == {"updated": 20, "created": 20}
    kinds = Counter(c.kind for c in env.zoho.calls)
    assert kinds == {"patch": 20, "create": 21}
    # one budget: never more than 30 calls of either kind in any 60 s
    assert max_in_any_window([c.at for c in env.zoho.calls], 60.0) <= 30
    assert max_in_any_window([c.at for c in env.zoho.calls], 60.0) > max_in_any_window(
        [c.at for c in env.zoho.kinds("patch")], 60.0)
    # one gate: no patch while a create's lockout lasts
    [t_lock] = env.zoho.refused_at
    assert [c for c in env.zoho.calls if t_lock < c.at < t_lock + 300] == []
    assert any(c.kind == "patch" for c in env.zoho.calls if c.at >= t_lock + 300)
    assert env.claimed and set(env.claimed) <= {r.row for r in creates}

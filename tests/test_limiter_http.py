"""The limiter over real HTTP: the client tells each slot when its reply came, and the whole
sending pipeline holds a sandbox's window when the delay falls before the call is counted.

The fake-clock tests in test_limiter.py prove the guarantee for any arrival moments; these check
that the real client feeds it the right moments (a reply read, a request failed, a request
cancelled) and that, end to end over loopback, the sandbox never locks us out.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from zoho_fakes import FakeTokens, recording_server  # tests/ is on sys.path, as for fakeclock

from bulkschedule.app import job
from bulkschedule.core.errors import NotSent, OutcomeUnknown
from bulkschedule.core.problems import Status
from bulkschedule.core.request import Request
from bulkschedule.sandbox.server import Sandbox, SandboxConfig
from bulkschedule.send.api import CONNECT_TIMEOUT, SendSettings, open_api
from bulkschedule.send.runner import OutcomeEvent
from bulkschedule.send.state import Item, Phase, Withheld, call, track_pace
from bulkschedule.zoho.auth import TOKEN_TIMEOUT, StaticToken
from bulkschedule.zoho.client import LmsClient

COURSE, BATCH = "478346000019479103", "478346000019479115"
MODULES = [str(478346000019479119 + 12 * i) for i in range(4)]


class RecordingSlot:
    """What the real pace returns, reduced to what the client must do with it."""

    def __init__(self) -> None:
        self.done_at: list[float] = []

    def done(self) -> None:
        self.done_at.append(time.monotonic())


def slot_pace(slots: list[RecordingSlot]) -> Callable[[], Awaitable[RecordingSlot]]:
    async def pace() -> RecordingSlot:
        slots.append(RecordingSlot())
        return slots[-1]

    return pace


def make_req(row: int = 2) -> Request:
    data = {"name": f"Session {row}", "date": "01-03-2027", "startTime": "09:00",
            "endTime": "10:00", "type": "1", "trainerErecno": "478346000008251001"}
    return Request(row, COURSE, BATCH, MODULES[0], data, f"key:{row}", f"fp{row}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ------------------------------------------------------------------------------------------------
# the client marks each slot


async def test_the_slot_is_marked_done_once_the_reply_has_been_read() -> None:
    answered: list[float] = []

    async def reply(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.05)  # the server's own time: the call counts until the reply
        answered.append(time.monotonic())
        return web.json_response({"code": 200, "message": "success",
                                  "session": {"sessionId": "1", "sessionName": "Session 2"}})

    slots: list[RecordingSlot] = []
    async with recording_server() as (rec, base), aiohttp.ClientSession() as http:
        rec.reply = reply
        client = LmsClient(base, FakeTokens(), session=http, pace=slot_pace(slots))
        await client.create_session(make_req())
    [slot] = slots
    assert len(slot.done_at) == 1
    assert slot.done_at[0] >= answered[0]


async def test_a_request_that_failed_marks_its_slot_done() -> None:
    """Nothing sent (a refused connection), or the server dropped it: no reply will come."""
    slots: list[RecordingSlot] = []

    async def drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async with aiohttp.ClientSession() as http:
        refused = LmsClient(f"http://127.0.0.1:{free_port()}", FakeTokens(), session=http,
                            pace=slot_pace(slots))
        with pytest.raises(NotSent):
            await refused.create_session(make_req())
        async with recording_server() as (rec, base):
            rec.reply = drop
            dropped = LmsClient(base, FakeTokens(), session=http, pace=slot_pace(slots))
            with pytest.raises(OutcomeUnknown):
                await dropped.create_session(make_req())
    assert [len(s.done_at) for s in slots] == [1, 1]


async def test_a_cancelled_request_leaves_its_slot_open() -> None:
    """A stop that cancels a request in flight: it may still reach the server, so the slot stays
    open and the limiter counts it until its hold."""
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def slow(_: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.json_response({})

    slots: list[RecordingSlot] = []
    async with recording_server() as (rec, base), aiohttp.ClientSession() as http:
        rec.reply = slow
        client = LmsClient(base, FakeTokens(), session=http, pace=slot_pace(slots))
        task = asyncio.create_task(client.create_session(make_req()))
        await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
    assert [s.done_at for s in slots] == [[]]


async def test_a_slot_withheld_by_a_stop_is_marked_done() -> None:
    """track_pace raises Withheld when the run stopped while the worker was pacing: nothing
    left, so the slot it got must not count until its hold."""
    slots: list[RecordingSlot] = []
    answers = iter([False, False, True])  # call() checks, pacing() checks, sending() checks
    tracked = track_pace(slot_pace(slots))

    async def fn(_: Request) -> None:
        await tracked()

    item = Item(make_req())
    with pytest.raises(Withheld):
        await call(item, lambda: next(answers), fn)
    assert item.phase is Phase.PACING
    assert [len(s.done_at) for s in slots] == [1]


# ------------------------------------------------------------------------------------------------
# open_api wires the limiter


async def test_open_api_bounds_a_call_in_flight_by_the_clients_timeouts(tmp_path: Path) -> None:
    settings = SendSettings(api_base="http://127.0.0.1:9", state_dir=tmp_path, timeout=12.0)
    async with open_api(settings.api_base, settings, shared=tmp_path / "journal.sqlite3",
                        tokens=lambda _s: StaticToken("t")) as api:
        assert api.limiter.hold == (TOKEN_TIMEOUT.total or 0) + CONNECT_TIMEOUT + 12.0
        assert api.limiter.hold == settings.hold


def write_sheet(path: Path, n: int) -> None:
    """``n`` valid sessions over four modules, one trainer slot each (no overlaps)."""
    first = dt.date(2027, 3, 1)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
                    "startTime", "endTime"])
        for i in range(n):
            day = first + dt.timedelta(days=i // 8)
            hour = 8 + i % 8
            w.writerow([COURSE, BATCH, MODULES[i % 4], f"Paced session {i:03d}",
                        str(478346000008251001 + 16 * (i % 8)), "Classroom",
                        day.strftime("%d-%m-%Y"), f"{hour:02d}:00", f"{hour:02d}:45"])


@pytest.mark.parametrize("seed", [1, 2])
async def test_no_lockout_when_the_delay_falls_before_the_call_is_counted(
    tmp_path: Path, seed: int
) -> None:
    """The issue's stand-in, made short: 5 calls per 0.5 s, and each call counted after a delay
    drawn from 0-150 ms (30% of the window, ten times the margin), so a limiter counting from the
    send would let the server see 6 in a window. The real pipeline (job.send: journal, runner,
    track_pace, open_api, the HTTP client) over loopback: no lockout, never more than 5."""
    sheet = tmp_path / "paced.csv"
    rows = 30
    write_sheet(sheet, rows)
    validation = job.load(sheet, today=dt.date(2026, 6, 1))
    assert not validation.errors
    created = 0

    def on_event(event: object) -> None:
        nonlocal created
        if isinstance(event, OutcomeEvent) and event.outcome.status == Status.CREATED:
            created += 1

    config = SandboxConfig(rate_calls=5, rate_seconds=0.5, lock_seconds=5, latency=(0.0, 0.15),
                           latency_at="arrival", seed=seed)
    async with Sandbox(config) as sb:
        settings = job.SendSettings(api_base=sb.url, state_dir=tmp_path / "state", rate_calls=5,
                                    rate_period=0.5, lock_seconds=5, workers=4)
        await job.send(validation, settings, tokens=lambda _s: StaticToken(sb.token),
                       results_path=None, on_event=on_event)
        stats = sb.stats()
    assert created == rows
    assert stats["lockouts"] == 0 and stats["refused"] == 0
    assert stats["max_calls_in_window"] <= 5
    assert stats["calls"] <= rows + 2  # every create once (plus a read or two at most)

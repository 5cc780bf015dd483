"""The state folder and its journal when they fail: a journal that cannot be read, one held by
another process's write transaction, a state folder that cannot be written, a disk that fills up
while the run journals.

Each is one line naming the file or the folder, exit 2 (a `JobError` for the library), nothing
(more) sent, and the journal never rewritten. Disk full is simulated two ways: deterministically,
by a connection class whose writes fail after N (a sweep over every N, on the fake clock), and for
real, on a small tmpfs when the tests may mount one (root). Ordering is signalled with events,
never with sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import functools
import logging
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fakeclock import FakeClock

from bulkschedule.app import job
from bulkschedule.core.errors import JobError, StateError
from bulkschedule.core.problems import Outcome, Status
from bulkschedule.core.request import Request
from bulkschedule.sandbox.server import Sandbox, SandboxConfig, default_catalogue
from bulkschedule.send.faults import check_journal_file
from bulkschedule.send.journal import (
    CREATED,
    INFLIGHT,
    JOURNAL_FILE,
    WAITING,
    Journal,
    open_journal,
)
from bulkschedule.send.runner import Event, OutcomeEvent, RunConfig, send_all, track_pace
from bulkschedule.zoho.auth import StaticToken

BASE = "https://people.zoho.com"
TODAY = dt.date(2026, 6, 1)
COURSE, BATCH, MODULE = "478346000019479103", "478346000019479115", "478346000019479119"
TRAINER = "478346000008251001"
RUN_TIMEOUT = 90.0  # a hung child fails its test instead of hanging the suite
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


# -- helpers ---------------------------------------------------------------------------------------


def write_sheet(path: Path, n: int) -> Path:
    """A clean CSV of ``n`` sessions, one a day, in a module of the sandbox's default org (so an
    online check before sending finds nothing wrong)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
                    "startTime", "endTime"])
        for i in range(n):
            day = dt.date(2027, 1, 4) + dt.timedelta(days=i)  # within the batch's dates
            w.writerow([COURSE, BATCH, MODULE, f"State session {i + 1:02d}", TRAINER, "Classroom",
                        day.strftime("%d-%m-%Y"), "10:00 AM", "11:00 AM"])
    return path


def sandbox(**options: Any) -> Sandbox:
    return Sandbox(SandboxConfig(catalogue=default_catalogue(), **options))


def settings(url: str, state: Path) -> job.SendSettings:
    return job.SendSettings(api_base=url, state_dir=state, rate_calls=30, rate_period=60.0,
                            lock_seconds=300.0, speed=60.0)


async def send_sheet(sb: Sandbox, sheet: Path, state: Path, results: Path | None,
                     **options: Any) -> job.JobResult:
    validation = job.load(sheet, today=TODAY)
    return await job.send(validation, settings(sb.url, state),
                          tokens=lambda s: StaticToken(sb.token), results_path=results,
                          **options)


def req(i: int) -> Request:
    name = f"Journal row {i}"
    return Request(row=i + 2, course_id=COURSE, batch_id=BATCH, module_id=MODULE,
                   session_data={"name": name, "date": "01-03-2027", "startTime": "10:00 AM"},
                   identity=f"{MODULE}/{name}/01-03-2027/10:00 AM", fingerprint="fp")


def full_journal(path: Path, rows: int = 300) -> None:
    """A real journal of ``rows`` created rows (many pages), closed so the log is folded in."""
    with Journal(path.parent) as j:
        run = j.start_run("term.csv", BASE)
        for i in range(rows):
            j.claim(BASE, req(i), run)
            j.record_created(BASE, req(i), run, str(10_000 + i))
        j.finish_run(run, {"created": rows})
    assert not Path(f"{path}-wal").exists()


def snapshot(path: Path) -> object:
    """What must not change: a file's bytes, a folder's listing, a link's target."""
    if path.is_symlink():
        return ("link", os.readlink(path))
    if path.is_dir():
        return ("dir", sorted(p.name for p in path.iterdir()))
    return ("file", path.read_bytes())


def journal_rows(state: Path) -> dict[str, tuple[str, str | None]]:
    """identity -> (status, sessionId), read without writing (the run's journal may be full)."""
    uri = f"file:{state / JOURNAL_FILE}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return {identity: (status, sid) for identity, status, sid
                in db.execute("SELECT identity, status, session_id FROM rows")}


def one_line(text: str) -> str:
    assert "\n" not in text and "Traceback" not in text, text
    return text


# -- damaged journals (made at test time) ----------------------------------------------------------


def random_bytes(path: Path) -> str:
    path.write_bytes(random.Random(15).randbytes(8192))
    return "it is not an SQLite database"


def cut_in_half(path: Path) -> str:
    full_journal(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 1000])  # not even on a page boundary
    return "it is cut short"


def cut_at_a_page(path: Path) -> str:
    full_journal(path)
    path.write_bytes(path.read_bytes()[: 4 * 4096])
    return "it is cut short"


def damaged_inside(path: Path) -> str:
    """Header and schema intact, a page in the middle overwritten: only reading every page shows
    it (the run must not claim rows from it, nor let SQLite write to it)."""
    full_journal(path)
    data = bytearray(path.read_bytes())
    pages = len(data) // 4096
    assert pages > 6
    at = (pages // 2) * 4096
    data[at: at + 4096] = random.Random(4).randbytes(4096)
    path.write_bytes(bytes(data))
    return "it is damaged"


def a_folder(path: Path) -> str:
    path.mkdir()
    (path / "something").write_text("x")
    return "it is a folder, not a file"


def a_link_loop(path: Path) -> str:
    path.symlink_to(path.name)  # fails as root too (ELOOP), unlike a permission
    return "it cannot be read: too many levels of symbolic links"


def unreadable(path: Path) -> str:
    full_journal(path)
    path.chmod(0)
    return "permission denied"


DAMAGES: list[Callable[[Path], str]] = [random_bytes, cut_in_half, cut_at_a_page, damaged_inside,
                                        a_folder, a_link_loop, unreadable]


# == 1. a journal that cannot be read ==============================================================


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__)
async def test_an_unreadable_journal_stops_the_run_before_anything_is_sent(
        tmp_path: Path, damage: Callable[[Path], str]) -> None:
    if damage is unreadable and ROOT:
        pytest.skip("root reads any file; the other cases fail as root too")
    state = tmp_path / "state"
    state.mkdir()
    path = state / JOURNAL_FILE
    what = damage(path)
    before = snapshot(path)
    siblings = sorted(p.name for p in state.iterdir())
    sheet = write_sheet(tmp_path / "term.csv", 3)
    async with sandbox(speed=60.0) as sb:
        for dry_run in (False, True):
            with pytest.raises(JobError) as caught:
                await send_sheet(sb, sheet, state, tmp_path / "r.xlsx", dry_run=dry_run)
            line = one_line(str(caught.value))
            assert f"cannot read the journal {path}: {what}" in line
            assert "nothing was sent" in line and "Move it aside" in line
        assert sb.stats()["calls"] == 0
    assert snapshot(path) == before  # never repaired, replaced or deleted
    assert sorted(p.name for p in state.iterdir()) == siblings  # no -wal/-shm left beside it
    assert not (tmp_path / "r.xlsx").exists()


def test_a_journal_cut_short_beside_its_log_is_left_to_sqlite(tmp_path: Path) -> None:
    """A checkpoint cut short by a crash leaves the file shorter than its header says while the
    write-ahead log still holds the pages: the length alone is no proof of damage then, so the
    quick check leaves it to SQLite (which reads the log, and every page with ``verify``)."""
    path = tmp_path / "s" / JOURNAL_FILE
    cut_at_a_page(path)
    with pytest.raises(StateError, match="it is cut short"):
        check_journal_file(path)
    Path(f"{path}-wal").write_bytes(b"\0" * 32)
    check_journal_file(path)  # no verdict from the length


@pytest.mark.slow
async def test_the_cli_says_one_line_and_exits_2(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "term.csv", 3)
    cases = []
    for damage in (random_bytes, cut_in_half, a_folder):
        state = tmp_path / damage.__name__
        state.mkdir()
        what = damage(state / JOURNAL_FILE)
        cases.append((state, what, snapshot(state / JOURNAL_FILE)))
    async with sandbox(rate_calls=10, rate_seconds=1, lock_seconds=1) as sb:
        done = await asyncio.gather(*(
            cli("run", str(sheet), "--api-base", sb.url, "--state", str(state), "--yes",
                "--today", TODAY.isoformat(), "--results", str(tmp_path / f"{state.name}.xlsx"),
                env=cli_env(tmp_path / "home"))
            for state, _, _ in cases))
        assert sb.stats()["calls"] == 0
    for (state, what, before), (code, _, err) in zip(cases, done, strict=True):
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"bulkschedule: error: cannot read the journal "
                                   f"{state / JOURNAL_FILE}: {what}")
        assert snapshot(state / JOURNAL_FILE) == before


# == 2. a journal held by another process's write transaction ======================================


class Holder:
    """A second connection, in its own thread as another process would be, holding the journal's
    write lock (``BEGIN IMMEDIATE``) from ``__enter__`` until `release` or the end of the block."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = threading.Event()
        self.release = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE runs SET host = host")  # a real write, as a claim would be
            self.held.set()
            self.release.wait()
            db.execute("COMMIT")
        finally:
            db.close()

    def __enter__(self) -> Holder:
        self._thread.start()
        assert self.held.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._thread.join(10)


class Heard(logging.Handler):
    """The job's log records; ``on`` is called with each message as it is logged."""

    def __init__(self, on: Callable[[str], None] = lambda message: None) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.on = on

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.on(record.getMessage())


@contextlib.contextmanager
def hearing(handler: Heard) -> Iterator[Heard]:
    logger = logging.getLogger(job.__name__)  # directly: "bulkschedule" may not propagate
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def waits(messages: Sequence[str]) -> list[str]:
    return [m for m in messages if m.startswith(WAITING)]


@pytest.mark.slow
async def test_a_held_journal_is_waited_for_with_a_message_then_given_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Journal(state).close()
    runs_before = journal_run_count(state)
    sheet = write_sheet(tmp_path / "term.csv", 2)
    async with sandbox(speed=60.0) as sb:
        with Holder(state / JOURNAL_FILE), hearing(Heard()) as heard, \
                pytest.raises(JobError) as caught:
            await send_sheet(sb, sheet, state, tmp_path / "r.xlsx", journal_wait=0.5)
        assert sb.stats()["calls"] == 0
    line = one_line(str(caught.value))
    assert line.startswith(f"the journal {state / JOURNAL_FILE} is still held by another run "
                           "after 0.5 s; nothing was sent")
    assert len(waits(heard.messages)) == 1  # said once, not once per try
    assert str(state / JOURNAL_FILE) in waits(heard.messages)[0]
    assert journal_run_count(state) == runs_before  # nothing written while it waited


@pytest.mark.slow
async def test_a_held_journal_is_waited_for_then_the_run_goes_on(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Journal(state).close()
    sheet = write_sheet(tmp_path / "term.csv", 3)
    async with sandbox(speed=60.0) as sb:
        with Holder(state / JOURNAL_FILE) as holder:
            # the other run finishes its transaction as soon as this one says it waits
            heard = Heard(lambda m: holder.release.set() if m.startswith(WAITING) else None)
            with hearing(heard):
                result = await send_sheet(sb, sheet, state, tmp_path / "r.xlsx",
                                          journal_wait=60.0)
        assert sb.stats()["created"] == 3
    assert result.exit_code == 0
    assert {o.status for o in result.outcomes.values()} == {Status.CREATED}
    assert len(waits(heard.messages)) == 1


async def test_the_wait_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """While it waits, other tasks (the upload page, a Ctrl-C handler) keep running."""
    state = tmp_path / "state"
    Journal(state).close()
    told = asyncio.Event()
    ran = asyncio.Event()

    async def other_task() -> None:  # many turns of the loop while the journal is held
        await told.wait()
        for _ in range(100):
            await asyncio.sleep(0)
        ran.set()

    with Holder(state / JOURNAL_FILE) as holder:
        other = asyncio.create_task(other_task())
        opening = asyncio.create_task(open_journal(state, wait=60.0, on_wait=lambda m: told.set()))
        await ran.wait()
        assert not opening.done()  # still waiting for the lock, and the loop was free meanwhile
        holder.release.set()
        journal = await opening
        await other
    journal.start_run("a.csv", BASE)  # and it writes once open
    journal.close()


def journal_run_count(state: Path) -> int:
    uri = f"file:{state / JOURNAL_FILE}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])


@pytest.mark.slow
async def test_the_cli_waits_with_one_line_then_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Journal(state).close()
    sheet = write_sheet(tmp_path / "term.csv", 2)
    async with sandbox(rate_calls=10, rate_seconds=1, lock_seconds=1) as sb:
        with Holder(state / JOURNAL_FILE) as holder:
            proc = await start("run", str(sheet), "--api-base", sb.url, "--state", str(state),
                               "--yes", "--today", TODAY.isoformat(), "--rate", "10/1",
                               "--results", str(tmp_path / "r.xlsx"),
                               env=cli_env(tmp_path / "home"))
            assert proc.stderr is not None
            first: list[str] = []
            while not any(WAITING in line for line in first):
                line = await asyncio.wait_for(proc.stderr.readline(), RUN_TIMEOUT)
                assert line, f"the CLI ended without waiting: {first}"
                first.append(line.decode())
            holder.release.set()
        code, _, err = await finish(proc)
        assert sb.stats()["created"] == 2
    assert code == 0, err
    assert sum(WAITING in line for line in first + err.splitlines()) == 1


# == 3. a state folder that cannot be written ======================================================


@pytest.mark.slow
async def test_a_state_folder_under_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    state = tmp_path / "a-file" / "state"
    sheet = write_sheet(tmp_path / "term.csv", 2)
    async with sandbox(rate_calls=10, rate_seconds=1, lock_seconds=1) as sb:
        code, _, err = await cli("run", str(sheet), "--api-base", sb.url, "--state", str(state),
                                 "--yes", "--today", TODAY.isoformat(),
                                 "--results", str(tmp_path / "r.xlsx"),
                                 env=cli_env(tmp_path / "home"))
        assert sb.stats()["calls"] == 0
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bulkschedule: error: cannot write the state folder {state}: "
                               "not a directory; nothing was sent")
    assert "results workbook" not in err


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``where`` (root only; skipped where it cannot be mounted)."""
    if not ROOT or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


@contextlib.contextmanager
def read_only(tmp_path: Path, *, with_journal: bool) -> Iterator[Path]:
    """A state folder that cannot be written, even by root: a read-only tmpfs (as root), else a
    folder without write permission."""
    if ROOT:
        with tmpfs(tmp_path / "mnt", "1m") as mnt:
            state = mnt / "state"
            state.mkdir()
            if with_journal:
                Journal(state).close()
            remount(mnt, "ro")
            yield state
        return
    state = tmp_path / "state"
    state.mkdir()
    if with_journal:
        Journal(state).close()
    state.chmod(0o555)
    try:
        yield state
    finally:
        state.chmod(0o755)


@pytest.mark.slow
@pytest.mark.parametrize("with_journal", [False, True], ids=["empty", "with-journal"])
async def test_a_read_only_state_folder_is_named(tmp_path: Path, with_journal: bool) -> None:
    sheet = write_sheet(tmp_path / "term.csv", 2)
    async with sandbox(speed=60.0) as sb:
        with read_only(tmp_path, with_journal=with_journal) as state:
            before = snapshot(state / JOURNAL_FILE) if with_journal else None
            with pytest.raises(JobError) as caught:
                await send_sheet(sb, sheet, state, tmp_path / "r.xlsx")
            if with_journal:
                assert snapshot(state / JOURNAL_FILE) == before
        assert sb.stats()["calls"] == 0
    line = one_line(str(caught.value))
    why = "read-only file system" if ROOT else "permission denied"
    assert line.startswith(f"cannot write the state folder {state}: {why}; nothing was sent")


# == 4. the disk fills up while the run journals ===================================================


class DiskFull:
    """A disk with room for ``room`` more data writes (INSERT, UPDATE, DELETE) by the journal's
    connections; every later one fails as SQLite does on a full disk: at the statement, or
    (``at_commit``) when the transaction commits. ``full`` says whether it has failed yet."""

    def __init__(self, room: int, *, at_commit: bool = False) -> None:
        self.room = room
        self.at_commit = at_commit
        self.writes = 0
        self.full = False

    def connection(self) -> type[sqlite3.Connection]:
        disk = self

        class Connection(sqlite3.Connection):
            doomed = False  # a write of this transaction did not fit: its COMMIT fails

            def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
                verb = sql.lstrip().split(None, 1)[0].upper()
                if verb in ("INSERT", "UPDATE", "DELETE"):
                    if disk.writes >= disk.room:
                        disk.full = True
                        if not disk.at_commit:
                            raise sqlite3.OperationalError("database or disk is full")
                        self.doomed = True
                    disk.writes += 1
                elif verb == "COMMIT" and self.doomed:
                    self.doomed = False
                    raise sqlite3.OperationalError("database or disk is full")
                return super().execute(sql, parameters)

        return Connection


class Checking:
    """A fake Zoho that checks, the moment each create request would leave (after its pace), that
    the disk has not failed yet and the journal already holds the row in flight for this run."""

    def __init__(self, clock: FakeClock, disk: DiskFull, state: Path) -> None:
        self.clock = clock
        self.disk = disk
        self.state = state
        self.run_id = 0
        self.pace = track_pace(self._no_wait)
        self.sessions: dict[str, list[str]] = {}
        self.sent_after_full: list[str] = []
        self.sent_unjournalled: list[str] = []
        self._next = 900_000_000_000_000_001

    @staticmethod
    async def _no_wait() -> None:
        await asyncio.sleep(0)

    async def create_session(self, r: Request) -> str:
        await self.pace()
        if self.disk.full:
            self.sent_after_full.append(r.identity)
        status = journal_rows(self.state).get(r.identity, ("absent", None))[0]
        if status != INFLIGHT:
            self.sent_unjournalled.append(r.identity)
        await self.clock.sleep(1.0)
        sid = str(self._next)
        self._next += 1
        self.sessions.setdefault(r.identity, []).append(sid)
        return sid

    async def find_session(self, r: Request) -> str | None:
        await self.pace()
        await self.clock.sleep(1.0)
        found = self.sessions.get(r.identity)
        return found[0] if found else None


class NoGate:
    def close(self, seconds: float, reason: str = "") -> float:
        return 0.0

    def until(self) -> float | None:
        return None

    async def wait(self, on_wait: Callable[[float], None] | None = None) -> float:
        return 0.0


async def a_run(clock: FakeClock, zoho: Checking, journal: Journal, reqs: Sequence[Request],
                events: list[Event]) -> dict[int, Outcome]:
    run_id = journal.start_run("term.csv", BASE)
    return await clock.run(send_all(
        reqs, client=zoho, journal=journal, gate=NoGate(), api_base=BASE, run_id=run_id,
        config=RunConfig(workers=3), clock=clock, on_event=events.append,
        rng=random.Random(7)), max_time=10_000)


def outcomes_of(events: Sequence[Event]) -> dict[int, Outcome]:
    out = [e.outcome for e in events if isinstance(e, OutcomeEvent)]
    rows = [o.row for o in out]
    assert len(rows) == len(set(rows)), "a row settled twice"
    return {o.row: o for o in out}


@pytest.mark.parametrize("at_commit", [False, True], ids=["at-statement", "at-commit"])
async def test_disk_full_at_every_write_stops_at_once_and_loses_no_sent_row(
        tmp_path: Path, at_commit: bool) -> None:
    """For every N, a disk that fills after N journal writes: the run raises the journal's
    `StateError`; no request leaves after the failure, and none leaves before its row is in
    flight in the journal; every session created is in the journal (created, or in flight, so the
    next run looks it up); every row is settled once; and a next run on a healthy disk completes
    the sheet without a duplicate."""
    reqs = [req(i) for i in range(6)]
    # a healthy run, to know how many writes a whole run makes
    clock, disk = FakeClock(), DiskFull(10**9)
    with Journal(tmp_path / "healthy", clock=clock.time, factory=disk.connection()) as journal:
        zoho = Checking(clock, disk, tmp_path / "healthy")
        await a_run(clock, zoho, journal, reqs, [])
    total = disk.writes
    assert total > len(reqs) * 2

    failed_runs = 0
    for room in range(1, total + 1):  # room 0 would fail start_run itself, before any row
        state = tmp_path / f"room-{room}"
        clock, disk = FakeClock(), DiskFull(room, at_commit=at_commit)
        events: list[Event] = []
        zoho = Checking(clock, disk, state)
        with Journal(state, clock=clock.time, factory=disk.connection()) as journal:
            try:
                await a_run(clock, zoho, journal, reqs, events)
            except StateError as err:
                failed_runs += 1
                assert disk.full
                assert "the disk is full" in str(err) and str(state / JOURNAL_FILE) in str(err)
            else:
                assert not disk.full, room
        assert zoho.sent_after_full == [], room
        assert zoho.sent_unjournalled == [], room
        first = outcomes_of(events)
        assert sorted(first) == sorted(r.row for r in reqs), room
        held = journal_rows(state)
        for r in reqs:
            sids = zoho.sessions.get(r.identity, [])
            assert len(sids) <= 1, room
            if sids:  # sent: the journal knows it may exist, and the report has its id
                assert held[r.identity][0] in (CREATED, INFLIGHT), (room, held[r.identity])
                assert first[r.row].status == Status.CREATED, (room, first[r.row])
                assert first[r.row].session_id == sids[0]
            else:
                assert first[r.row].status == Status.PENDING, (room, first[r.row])

        # the next run, the disk fixed (and the failed run long dead): the sheet completes
        clock.advance(1_000)
        with Journal(state, clock=clock.time) as journal:
            zoho.disk = DiskFull(10**9)
            await a_run(clock, zoho, journal, reqs, events := [])
        second = outcomes_of(events)
        assert {o.status for o in second.values()} <= {Status.CREATED, Status.EXISTS}, room
        assert all(len(zoho.sessions[r.identity]) == 1 for r in reqs), room  # no duplicate
    assert failed_runs == total - 1  # every room short of a whole run failed it


@pytest.mark.slow
async def test_disk_full_in_a_job_exits_2_with_the_reason_and_writes_the_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = DiskFull(6)  # the run's record and heartbeat, then a few rows
    monkeypatch.setattr(job, "open_journal",
                        functools.partial(open_journal, factory=disk.connection()))
    state = tmp_path / "state"
    sheet = write_sheet(tmp_path / "term.csv", 8)
    results = tmp_path / "r.xlsx"
    async with sandbox(speed=60.0) as sb:
        with pytest.raises(JobError) as caught:
            await send_sheet(sb, sheet, state, results)
        made = {s["sessionName"]: s["sessionId"] for s in sb.sessions()}
    assert disk.full and 0 < len(made) < 8
    line = one_line(str(caught.value))
    assert line.startswith(f"cannot write the journal {state / JOURNAL_FILE}: the disk is full; "
                           "the run stopped at once")
    assert line.endswith(f"results: {results}")
    by_row = results_statuses(results)
    validation = job.load(sheet, today=TODAY)
    held = journal_rows(state)
    for r in job.requests_for(validation):
        name = r.session_data["name"]
        status, sid = by_row[r.row]
        if name in made:
            assert (status, sid) == ("created", made[name])
            assert held[r.identity][0] in (CREATED, INFLIGHT)
        else:
            assert status == "pending"
    assert Counter(s for s, _ in by_row.values())["pending"] == 8 - len(made)


def results_statuses(path: Path) -> dict[int, tuple[str, str | None]]:
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = wb["Results"].iter_rows(values_only=True)
        col = {name: i for i, name in enumerate(next(rows))}
        return {int(str(v[col["row"]])): (str(v[col["status"]]),
                                          None if v[col["sessionId"]] is None
                                          else str(v[col["sessionId"]])) for v in rows}
    finally:
        wb.close()


@pytest.mark.slow
async def test_a_real_full_disk_stops_the_cli_and_the_next_run_finishes_without_duplicates(
        tmp_path: Path) -> None:
    """On a 256 KB tmpfs the journal's log fills the disk a few rows in: exit 2 with the reason;
    every session the sandbox holds is in the journal; with room again, the same command
    finishes the sheet and creates nothing twice."""
    n = 40
    sheet = write_sheet(tmp_path / "term.csv", n)
    with tmpfs(tmp_path / "mnt", "256k") as mnt:
        state = mnt / "state"
        args = ["run", str(sheet), "--state", str(state), "--yes", "--today", TODAY.isoformat(),
                "--rate", "100/1", "--lock-seconds", "1", "--results", str(tmp_path / "r.xlsx")]
        async with sandbox(rate_calls=100, rate_seconds=1, lock_seconds=1) as sb:
            code, _, err = await cli(*args, "--api-base", sb.url, env=cli_env(tmp_path / "home"))
            made = {s["sessionName"] for s in sb.sessions()}
            assert code == 2, err
            last = err.strip().splitlines()[-1]
            assert last.startswith(f"bulkschedule: error: cannot write the journal "
                                   f"{state / JOURNAL_FILE}: the disk is full"), err
            assert "Traceback" not in err
            assert 0 < len(made) < n
            held = journal_rows(state)
            names = {r.identity: r.session_data["name"]
                     for r in job.requests_for(job.load(sheet, today=TODAY))}
            journalled = {names[i] for i, (status, _) in held.items()
                          if status in (CREATED, INFLIGHT)}
            assert made <= journalled  # every session sent is in the journal

            remount(mnt, "size=8m")
            code, _, err = await cli(*args, "--api-base", sb.url, env=cli_env(tmp_path / "home"))
            assert code == 0, err
            assert sb.stats()["duplicates"] == 0
            assert len(sb.sessions()) == n == len({s["sessionName"] for s in sb.sessions()})


# -- the CLI as a child process ------------------------------------------------------------------


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "BULKSCHEDULE_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_STATE_HOME=str(home / ".state"), PYTHONUNBUFFERED="1",
               ZOHO_ACCESS_TOKEN="sandbox-token")
    return env


async def start(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkschedule", *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"the CLI did not finish within {RUN_TIMEOUT:g} s\n{err.decode()}")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    return await finish(await start(*args, env=env))

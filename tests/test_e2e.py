"""End to end: ``bulkschedule run`` as a real subprocess against the sandbox over loopback HTTP.

The sandbox runs inside the test's event loop (so the test can read its counters and stored
sessions directly); the CLI runs as a child process, so exit codes and signals are the real ones.
Every assertion is on a count (the sandbox's stats), an outcome (the results workbook) or an exit
code, never on elapsed time. Windows are short (``--rate 10/1 --lock-seconds 1``) so each case
takes a few seconds; a hung child fails its test after ``RUN_TIMEOUT`` instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import os
import random
import shutil
import signal
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openpyxl
import pytest

from bulkschedule.sandbox.server import Sandbox, SandboxConfig

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"
TOKEN = "sandbox-token"
TODAY = "2026-06-01"  # --today: the sheets' 2027 dates stay in the future whatever the real date
RUN_TIMEOUT = 90.0  # generous: a loaded machine is slow, a hung run is what this catches
COURSE, BATCH = "478346000019479103", "478346000019479115"
MODULES = ("478346000019479119", "478346000019479131")
TRAINER = "478346000008251001"
DONE = {"created", "exists"}


# ------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Finished:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class ResultRow:
    row: int
    name: str | None
    status: str
    session_id: str | None
    message: str | None
    attempts: int | None


def write_sheet(path: Path, n: int) -> list[str]:
    """A clean CSV of ``n`` sessions over two modules, one a day (no trainer overlaps)."""
    names = [f"E2E session {i + 1:02d}" for i in range(n)]
    first = dt.date(2027, 3, 1)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
                    "startTime", "endTime"])
        for i, name in enumerate(names):
            day = first + dt.timedelta(days=i)
            w.writerow([COURSE, BATCH, MODULES[i % 2], name, TRAINER, "Classroom",
                        day.strftime("%d-%m-%Y"), "10:00 AM", "11:00 AM"])
    return names


def cli_env(home: Path, token: str | None = TOKEN) -> dict[str, str]:
    """The child's environment: no credentials or settings leaking in from the developer's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "BULKSCHEDULE_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_STATE_HOME=str(home / ".state"), PYTHONUNBUFFERED="1")
    if token is not None:
        env["ZOHO_ACCESS_TOKEN"] = token
    return env


async def start(*args: str, env: dict[str, str], cwd: Path | None = None
                ) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkschedule", *args, env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)


async def finish(proc: asyncio.subprocess.Process) -> Finished:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"the CLI did not finish within {RUN_TIMEOUT:g} s\nstdout:\n{out.decode()}"
                    f"\nstderr:\n{err.decode()}")
    assert proc.returncode is not None
    return Finished(proc.returncode, out.decode(), err.decode())


async def cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> Finished:
    return await finish(await start(*args, env=env, cwd=cwd))


def run_args(sheet: Path, url: str, state: Path, results: Path, *extra: str,
             rate: str = "10/1", lock: str = "1") -> list[str]:
    """A run of the sender alone (``--offline``: these sandboxes hold no org, and the cases
    count every call); tests/test_org_e2e.py covers the run's online stage."""
    return ["run", str(sheet), "--api-base", url, "--state", str(state), "--results",
            str(results), "--rate", rate, "--lock-seconds", lock, "--yes", "--today", TODAY,
            "--offline", *extra]


def read_results(path: Path) -> dict[int, ResultRow]:
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = wb["Results"].iter_rows(values_only=True)
        col = {name: i for i, name in enumerate(next(rows))}
        out: dict[int, ResultRow] = {}
        for values in rows:
            row = int(values[col["row"]])
            out[row] = ResultRow(
                row, values[col["name"]], str(values[col["status"]]),
                None if values[col["sessionId"]] is None else str(values[col["sessionId"]]),
                values[col["message"]], values[col["attempts"]])
        return out
    finally:
        wb.close()


def workbook_text(path: Path) -> str:
    """Every cell of every sheet, for "does this secret appear anywhere" checks."""
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return "\n".join(str(v) for ws in wb.worksheets for r in ws.iter_rows(values_only=True)
                         for v in r if v is not None)
    finally:
        wb.close()


def stored(sb: Sandbox) -> dict[str, str]:
    """sessionName -> sessionId of every session the sandbox holds (names are unique here)."""
    return {s["sessionName"]: s["sessionId"] for s in sb.sessions()}


def assert_all_done(results: dict[int, ResultRow], sb: Sandbox, names: Sequence[str],
                    statuses: Iterable[str] = ("created",)) -> None:
    """Every row done with the sessionId the sandbox stored for that very session, once."""
    allowed = set(statuses)
    held = stored(sb)
    assert [r.name for r in results.values()] == list(names)
    assert {r.status for r in results.values()} <= allowed, results
    assert len(sb.sessions()) == len(names) == len(held)
    for r in results.values():
        assert r.name is not None
        assert r.session_id == held[r.name], r
    assert len({r.session_id for r in results.values()}) == len(names)


def seed_with(rate: float, calls: int, hits: int) -> int:
    """A seed whose first ``calls`` draws hit ``rate`` exactly ``hits`` times.

    The sandbox draws one ``random()`` per counted API call for an injected fault (and none for
    latency when latency is 0), in arrival order. Picking the seed this way makes the number of
    faults, and so whether every row can succeed within the runner's attempts, deterministic
    whichever row each fault lands on, which depends on scheduling.
    """
    for seed in range(100_000):
        rng = random.Random(seed)
        if sum(rng.random() < rate for _ in range(calls)) == hits:
            return seed
    raise AssertionError("no such seed")  # pragma: no cover


async def sandbox_lock(sb: Sandbox, seconds: float) -> None:
    async with aiohttp.ClientSession() as http, \
            http.post(f"{sb.url}/__sandbox/lock", params={"seconds": str(seconds)}) as resp:
        assert resp.status == 200


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


# --------------------------------------------------------------------------------------- cases


async def test_happy_path_creates_every_row_within_the_window(
        tmp_path: Path, home: Path, state: Path) -> None:
    sheet = tmp_path / "term.csv"
    names = write_sheet(sheet, 14)
    results = tmp_path / "term.results.xlsx"
    async with Sandbox(SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1)) as sb:
        done = await cli(*run_args(sheet, sb.url, state, results), env=cli_env(home))
        stats = sb.stats()
        assert done.code == 0, done
        assert_all_done(read_results(results), sb, names)
        assert stats["creates"] == stats["calls"] == 14
        assert stats["max_calls_in_window"] <= 10
        assert stats["refused"] == 0 and stats["lockouts"] == 0 and stats["duplicates"] == 0
        assert "14 created" in done.out


async def test_dry_run_then_run_then_rerun_and_dry_run(
        tmp_path: Path, home: Path, state: Path) -> None:
    """Cases 2 and 8: a dry run sends nothing; a re-run creates nothing; a later dry run knows."""
    sheet = tmp_path / "term.csv"
    names = write_sheet(sheet, 12)
    env = cli_env(home)
    preview, first, second = (tmp_path / f"{n}.xlsx" for n in ("preview", "first", "second"))
    async with Sandbox(SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1)) as sb:
        dry = await cli(*run_args(sheet, sb.url, state, preview, "--dry-run"), env=env)
        assert dry.code == 0, dry
        assert sb.stats()["calls"] == 0
        assert {r.status for r in read_results(preview).values()} == {"would-create"}
        assert "12 sessions would be created" in dry.out

        done = await cli(*run_args(sheet, sb.url, state, first), env=env)
        assert done.code == 0, done
        before = read_results(first)
        assert_all_done(before, sb, names)
        calls = sb.stats()["calls"]

        again = await cli(*run_args(sheet, sb.url, state, second), env=env)
        assert again.code == 0, again
        after = read_results(second)
        assert {r.status for r in after.values()} == {"exists"}
        assert {r.row: r.session_id for r in after.values()} == \
            {r.row: r.session_id for r in before.values()}
        assert sb.stats()["calls"] == calls  # not even a listing: the journal knew
        assert sb.stats()["creates"] == 12

        dry2 = await cli(*run_args(sheet, sb.url, state, preview, "--dry-run"), env=env)
        assert dry2.code == 0, dry2
        shown = read_results(preview)
        assert {r.status for r in shown.values()} == {"exists"}
        assert [r.session_id for r in shown.values()] == [r.session_id for r in before.values()]
        assert sb.stats()["calls"] == calls


@pytest.mark.parametrize("style", ["429", "422", "7209"])
async def test_a_lockout_mid_run_is_waited_out(
        tmp_path: Path, home: Path, state: Path, style: str) -> None:
    """The sandbox allows 3 calls per 2 s while the client paces 10/1: the 4th call trips a 1 s
    lock (in each refusal shape). The client must stop calling, wait it out, and finish; the 3
    rows left then fit in the fresh window, so exactly one lockout happens."""
    sheet = tmp_path / "term.csv"
    names = write_sheet(sheet, 6)
    results = tmp_path / "out.xlsx"
    config = SandboxConfig(rate_calls=3, rate_seconds=2, lock_seconds=1, lock_style=style)
    async with Sandbox(config) as sb:
        done = await cli(*run_args(sheet, sb.url, state, results, "--workers", "4"),
                         env=cli_env(home))
        stats = sb.stats()
        assert done.code == 0, done
        assert_all_done(read_results(results), sb, names)
        assert stats["lockouts"] == 1
        assert stats["duplicates"] == 0
        # Only calls already in flight when the refusal arrived may land during the lock.
        assert stats["calls_during_lock"] <= 4
        assert stats["refused"] == 1 + stats["calls_during_lock"]


async def test_a_lock_already_running_is_waited_out(
        tmp_path: Path, home: Path, state: Path) -> None:
    """The account is locked when the run starts; 422 carries no Retry-After, so the client can
    only rely on --lock-seconds (2 s, which covers the 2 s lock started before its first call)."""
    sheet = tmp_path / "term.csv"
    names = write_sheet(sheet, 5)
    results = tmp_path / "out.xlsx"
    config = SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1, lock_style="422")
    async with Sandbox(config) as sb:
        proc = await start(*run_args(sheet, sb.url, state, results, lock="2"),
                           env=cli_env(home))
        assert proc.stdout is not None
        # The summary line is printed after validation, just before sending: lock then.
        first = await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)
        assert b"5 valid" in first, first
        await sandbox_lock(sb, 2)
        done = await finish(proc)
        stats = sb.stats()
        assert done.code == 0, done
        assert_all_done(read_results(results), sb, names)
        assert stats["refused"] >= 1  # the lock was met...
        assert stats["calls_during_lock"] <= 4  # ...and only the calls in flight then hit it
        assert stats["duplicates"] == 0


async def test_lost_replies_are_reconciled_without_duplicates(
        tmp_path: Path, home: Path, state: Path) -> None:
    sheet = tmp_path / "term.csv"
    names = write_sheet(sheet, 12)
    results = tmp_path / "out.xlsx"
    # Exactly 4 of the 12 creates lose their reply (the sessions are created all the same).
    config = SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1,
                           lose_reply_rate=0.3, seed=seed_with(0.3, 12, 4))
    async with Sandbox(config) as sb:
        done = await cli(*run_args(sheet, sb.url, state, results), env=cli_env(home))
        stats = sb.stats()
        assert done.code == 0, done
        rows = read_results(results)
        assert_all_done(rows, sb, names)
        assert stats["replies_lost"] == 4
        assert stats["duplicates"] == 0
        assert stats["creates"] == 12  # nothing was re-sent: each lost one was found by listing
        assert stats["reads"] >= 1
        assert sum("found by listing" in (r.message or "") for r in rows.values()) == 4
        assert stats["max_calls_in_window"] <= 10 and stats["refused"] == 0


async def test_server_errors_are_retried(tmp_path: Path, home: Path, state: Path) -> None:
    sheet = tmp_path / "term.csv"
    names = write_sheet(sheet, 12)
    results = tmp_path / "out.xlsx"
    # 3 of the first 15 calls fail: 15 calls then create all 12, however the failures fall.
    config = SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1, fail_rate=0.3,
                           seed=seed_with(0.3, 15, 3))
    async with Sandbox(config) as sb:
        done = await cli(*run_args(sheet, sb.url, state, results), env=cli_env(home))
        stats = sb.stats()
        assert done.code == 0, done
        rows = read_results(results)
        assert_all_done(rows, sb, names)
        assert stats["failures_injected"] == 3
        assert stats["creates"] == 15
        assert sum(r.attempts or 0 for r in rows.values()) == 15
        assert any((r.attempts or 0) > 1 for r in rows.values())
        assert stats["duplicates"] == 0


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
async def test_stopped_mid_run_then_rerun_completes(
        tmp_path: Path, home: Path, state: Path, signum: int, code: int) -> None:
    sheet = tmp_path / "term.csv"
    names = write_sheet(sheet, 20)
    first, second = tmp_path / "first.xlsx", tmp_path / "second.xlsx"
    env = cli_env(home)
    config = SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1, latency=(0.02, 0.1))
    async with Sandbox(config) as sb:
        proc = await start(*run_args(sheet, sb.url, state, first, rate="5/1"), env=env)
        while sb.stats()["created"] < 3 and proc.returncode is None:
            await asyncio.sleep(0.02)  # polling for progress, not a timing assertion
        proc.send_signal(signum)
        stopped = await finish(proc)
        assert stopped.code == code, stopped
        assert "stopping" in stopped.err
        rows = read_results(first)
        statuses = [r.status for r in rows.values()]
        assert set(statuses) <= {"created", "pending", "unknown"}, statuses
        created = {r.name: r.session_id for r in rows.values() if r.status == "created"}
        assert len(created) >= 3
        assert statuses.count("pending") + statuses.count("unknown") >= 1
        held = stored(sb)
        assert all(held[name] == sid for name, sid in created.items())
        assert len(held) <= len(created) + statuses.count("unknown")

        if signum == signal.SIGINT:
            return  # the same stop; the re-run after a stop is covered by SIGTERM and below
        done = await cli(*run_args(sheet, sb.url, state, second), env=env)
        stats = sb.stats()
        assert done.code == 0, done
        again = read_results(second)
        assert_all_done(again, sb, names, statuses=DONE)
        assert {r.name for r in again.values() if r.status == "exists"} >= set(created)
        assert stats["duplicates"] == 0 and stats["sessions"] == 20


async def test_a_second_ctrl_c_abandons_the_calls_in_flight(
        tmp_path: Path, home: Path, state: Path) -> None:
    """The server holds every request until released. The first SIGINT stops taking rows; the
    second abandons the held calls: those rows are ``unknown`` (they may exist), the rest
    ``pending``. Released, the server creates what it had received, and a re-run finds those by
    listing instead of sending them again."""
    sheet = tmp_path / "term.csv"
    names = write_sheet(sheet, 6)
    first, second = tmp_path / "first.xlsx", tmp_path / "second.xlsx"
    env = cli_env(home)
    release = asyncio.Event()
    held = {"in": 0, "out": 0}

    async def hold(_: float) -> None:  # the sandbox's latency: until the test releases it
        held["in"] += 1
        try:
            await release.wait()
        finally:
            held["out"] += 1

    config = SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1, latency=(1, 1),
                           sleep=hold)
    async with Sandbox(config) as sb:
        try:
            proc = await start(*run_args(sheet, sb.url, state, first), env=env)
            assert proc.stderr is not None
            while held["in"] < 2 and proc.returncode is None:
                await asyncio.sleep(0.02)  # polling for progress, not a timing assertion
            proc.send_signal(signal.SIGINT)
            while not (line := await asyncio.wait_for(proc.stderr.readline(), RUN_TIMEOUT)
                       ).startswith(b"stopping"):
                assert line, "the CLI closed stderr without saying it was stopping"
            proc.send_signal(signal.SIGINT)
            stopped = await finish(proc)
        finally:
            sent = held["in"]
            release.set()  # else the sandbox's shutdown waits for the held requests
        assert stopped.code == 130, stopped
        rows = read_results(first)
        statuses = [r.status for r in rows.values()]
        assert set(statuses) <= {"unknown", "pending"}, statuses
        # Every row that reached the server is unknown; so may be a claimed row still on its
        # way to the socket (it cannot tell): never more than the 4 workers.
        assert sent <= statuses.count("unknown") <= 4
        assert sent >= 2 and statuses.count("pending") >= 2
        assert all("may have been created" in (r.message or "")
                   for r in rows.values() if r.status == "unknown")

        while held["out"] < held["in"]:
            await asyncio.sleep(0.02)
        done = await cli(*run_args(sheet, sb.url, state, second), env=env)
        stats = sb.stats()
        assert done.code == 0, done
        assert_all_done(read_results(second), sb, names, statuses=DONE)
        assert stats["duplicates"] == 0


async def test_two_concurrent_runs_share_one_budget(
        tmp_path: Path, home: Path, state: Path) -> None:
    sheet = tmp_path / "term.csv"
    names = write_sheet(sheet, 15)
    outs = [tmp_path / "a.xlsx", tmp_path / "b.xlsx"]
    env = cli_env(home)
    async with Sandbox(SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1)) as sb:
        procs = [await start(*run_args(sheet, sb.url, state, out), env=env) for out in outs]
        finished = await asyncio.gather(*(finish(p) for p in procs))
        stats = sb.stats()
        assert [f.code for f in finished] == [0, 0], finished
        a, b = (read_results(out) for out in outs)
        held = stored(sb)
        assert len(held) == stats["created"] == 15
        for row in a:
            pair = sorted([a[row].status, b[row].status])
            assert pair in (["created", "exists"], ["exists", "created"]), (a[row], b[row])
            assert a[row].session_id == b[row].session_id == held[str(a[row].name)]
        assert [r.name for r in a.values()] == names
        assert stats["max_calls_in_window"] <= 10
        assert stats["refused"] == 0 and stats["duplicates"] == 0


async def test_invalid_rows_are_reported_and_valid_rows_sent(
        tmp_path: Path, home: Path, state: Path) -> None:
    sheet = tmp_path / "with_errors.csv"
    shutil.copy(SAMPLES / "sessions_with_errors.csv", sheet)
    results = tmp_path / "out.xlsx"
    async with Sandbox(SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1)) as sb:
        done = await cli(*run_args(sheet, sb.url, state, results), env=cli_env(home))
        assert done.code == 1, done
        rows = read_results(results)
        with sheet.open(newline="", encoding="utf-8") as f:
            n_input = sum(1 for _ in csv.reader(f)) - 1
        assert sorted(rows) == list(range(2, n_input + 2))  # every input row, once
        invalid = [r for r in rows.values() if r.status == "invalid"]
        created = [r for r in rows.values() if r.status == "created"]
        assert len(invalid) + len(created) == len(rows)
        assert len(invalid) == 15 and len(created) == 6
        assert all(r.message and r.session_id is None for r in invalid)
        assert "trainerErecno" in (rows[5].message or "")
        held = set(stored(sb).values())
        assert {r.session_id for r in created} == held
        assert sb.stats()["creates"] == 6 and sb.stats()["rejected"] == 0


async def test_cannot_start_exits_2_with_one_line(tmp_path: Path, home: Path,
                                                  state: Path) -> None:
    sheet = tmp_path / "term.csv"
    write_sheet(sheet, 3)
    results = tmp_path / "out.xlsx"
    bad_xlsx = tmp_path / "broken.xlsx"
    bad_xlsx.write_bytes(b"this is not a zip file")
    base = ["--state", str(state), "--yes", "--today", TODAY]
    sb = await Sandbox(SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1)).start()
    cases: list[tuple[list[str], dict[str, str]]] = [
        # the results workbook could not be kept: found out before sending, not after
        (["run", str(sheet), "--api-base", sb.url, "--results",
          str(tmp_path / "no-such-folder" / "out.xlsx"), *base], cli_env(home)),
        # no credentials at all (not --sandbox)
        (["run", str(sheet), "--results", str(results), *base], cli_env(home, token=None)),
        # unreadable sheets
        (["run", str(tmp_path / "missing.xlsx"), *base], cli_env(home)),
        (["run", str(bad_xlsx), *base], cli_env(home)),
        # the token would cross the network in clear text
        (["run", str(sheet), "--results", str(results), "--api-base",
          "http://people.example.com", *base], cli_env(home)),
    ]
    try:
        finished = await asyncio.gather(*(cli(*args, env=env) for args, env in cases))
        assert sb.stats()["calls"] == 0
    finally:
        await sb.stop()
    for (args, _), done in zip(cases, finished, strict=True):
        assert done.code == 2, (args, done)
        lines = done.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bulkschedule: error: "), (args, done)
        assert "Traceback" not in done.out + done.err


async def test_a_rejected_token_exits_2_and_creates_nothing(
        tmp_path: Path, home: Path, state: Path) -> None:
    sheet = tmp_path / "term.csv"
    write_sheet(sheet, 6)
    results = tmp_path / "out.xlsx"
    wrong = "wrong-e2e-token-4d1c9a"
    async with Sandbox(SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1)) as sb:
        done = await cli(*run_args(sheet, sb.url, state, results), env=cli_env(home, wrong))
        stats = sb.stats()
        assert done.code == 2, done
        assert stats["created"] == 0 and stats["unauthorized"] >= 1
        assert "Traceback" not in done.out + done.err
        assert wrong not in done.out + done.err + workbook_text(results)
        rows = read_results(results)
        assert {r.status for r in rows.values()} <= {"failed", "pending"}


async def test_readme_first_command_sped_up_and_no_secret_leaks(
        tmp_path: Path, home: Path) -> None:
    """`bulkschedule run sample_data/sessions.xlsx --sandbox`, 20x faster, as a user runs it."""
    sheet = tmp_path / "sessions.xlsx"
    shutil.copy(SAMPLES / "sessions.xlsx", sheet)
    done = await cli("run", "sessions.xlsx", "--sandbox", "--speed", "20", "--today", TODAY,
                     env=cli_env(home, token=None), cwd=tmp_path)
    assert done.code == 0, done
    rows = read_results(tmp_path / "sessions.results.xlsx")
    assert len(rows) == 40
    assert {r.status for r in rows.values()} == {"created"}
    assert len({r.session_id for r in rows.values()}) == 40
    assert "40 created" in done.out
    assert ", 0 refused, 0 duplicates" in done.out


async def test_the_token_never_appears_in_output_logs_or_results(
        tmp_path: Path, home: Path, state: Path) -> None:
    secret = "e2e-SECRET-token-8b7f3e21"
    sheet = tmp_path / "term.csv"
    names = write_sheet(sheet, 4)
    results = tmp_path / "out.xlsx"
    log = tmp_path / "run.log"
    config = SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1, token=secret,
                           lose_reply_rate=0.5, seed=seed_with(0.5, 4, 2))
    async with Sandbox(config) as sb:
        done = await cli(*run_args(sheet, sb.url, state, results, "--log-file", str(log)),
                         env=cli_env(home, secret))
        assert done.code == 0, done
        assert_all_done(read_results(results), sb, names)
    everything = done.out + done.err + log.read_text(encoding="utf-8") + workbook_text(results)
    assert "created" in everything
    assert secret not in everything

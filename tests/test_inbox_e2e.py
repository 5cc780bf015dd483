"""`bulkschedule inbox` end to end: the real CLI in a subprocess against the sandbox over loopback.

Each test starts its own sandbox with a short window (10 calls a second, 1-second lock) so a few
dozen rows take seconds, and gives the CLI a private HOME, config folder and state folder so
nothing of the developer's own setup leaks in. Waiting for a subprocess to reach a point (a lock
held, some sessions created, a sheet settled) waits on an event: set by the in-process sandbox as
it answers (`Created`), or by the line the CLI prints. Nothing sleeps, and no assertion depends on
timing; which files are "old enough" is set with their timestamps, not by waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from test_isolate import bomb_xlsx  # tests/ is on sys.path (no __init__.py)

from bulkschedule.app.inbox import InstanceLock
from bulkschedule.sandbox.server import Sandbox, SandboxConfig

pytestmark = pytest.mark.slow

RATE = ("--rate", "10/1", "--lock-seconds", "1")
HEADER = "courseId,batchId,moduleId,name,trainerErecno,type,date,startTime,endTime\n"
IDS = "478346000019479103,478346000019479115,478346000019479119"
TRAINER = "478346000008251001"


def sheet_csv(prefix: str, n: int, *, bad: frozenset[int] = frozenset()) -> str:
    """``n`` sessions on consecutive days (no double booking); rows in ``bad`` get an invalid
    trainer ID, which is a validation error."""
    lines = []
    for i in range(n):
        day = (dt.date(2027, 3, 1) + dt.timedelta(days=i)).strftime("%d-%m-%Y")
        trainer = "47834600000825100A" if i in bad else TRAINER
        lines.append(f"{IDS},{prefix} {i},{trainer},Classroom,{day},10:00 AM,11:00 AM")
    return HEADER + "\n".join(lines) + "\n"


def sheet_xlsx(path: Path, prefix: str, n: int, *, instructions: list[list[str]] | None = None,
               bad: frozenset[int] = frozenset()) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Sessions"
    for line in sheet_csv(prefix, n, bad=bad).splitlines():
        ws.append(line.split(","))
    if instructions is not None:
        extra = wb.create_sheet("Instructions")
        for row in instructions:
            extra.append(row)
    wb.save(path)


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """The subprocess environment: a private HOME, no ZOHO_*/BULKSCHEDULE_* from outside."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ZOHO_", "BULKSCHEDULE_", "XDG_"))}
    env["HOME"] = str(tmp_path / "home")
    env["ZOHO_ACCESS_TOKEN"] = "sandbox-token"
    return env


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    root = tmp_path / "inbox"
    (root / "incoming").mkdir(parents=True)
    return root


async def start_cli(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkschedule", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finish(proc: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_inbox(root: Path, sb: Sandbox, state: Path, env: dict[str, str],
                    *extra: str) -> tuple[int, str, str]:
    proc = await start_cli(["inbox", str(root), "--api-base", sb.url, "--state", str(state),
                            *RATE, *extra], env)
    return await finish(proc)


class Created:
    """Wakes a test once the sandbox has created ``n`` sessions: an event set from the sandbox's
    own response hook (aiohttp's ``on_response_prepare``), so nothing polls. Attach it before the
    sandbox starts (the app's signals freeze then)."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self._waiting: list[tuple[int, asyncio.Event]] = []
        sb.app.on_response_prepare.append(self._answered)

    async def _answered(self, request: web.Request, response: web.StreamResponse) -> None:
        created = self.sb.stats()["created"]
        for n, event in self._waiting:
            if created >= n:
                event.set()

    async def at_least(self, n: int, timeout: float = 30.0) -> None:
        """Return once ``n`` sessions exist (the timeout only keeps a broken run from hanging)."""
        event = asyncio.Event()
        self._waiting.append((n, event))
        if self.sb.stats()["created"] >= n:
            event.set()
        await asyncio.wait_for(event.wait(), timeout)


async def line_containing(proc: asyncio.subprocess.Process, text: str, seen: list[str],
                          timeout: float = 30.0) -> None:
    """Read the CLI's stdout (into ``seen``) until a line contains ``text``."""
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()
        assert line, f"stdout ended before a line with {text!r}: {seen}"
        seen.append(line)
        if text in line:
            return


def age(path: Path, seconds: float) -> None:
    """Make a file look ``seconds`` old (negative: changed in the future, as on a share whose
    clock is ahead, which the stability check treats as "just changed")."""
    when = time.time() - seconds
    os.utime(path, (when, when))


def sandbox(**kw: object) -> Sandbox:
    return Sandbox(SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1, **kw))


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text


async def test_mixed_sheets_one_pass(inbox: Path, tmp_path: Path, home: dict[str, str]) -> None:
    """Valid, with errors, unreadable, Office lock file and a half-written sheet in one pass."""
    incoming = inbox / "incoming"
    sheet_xlsx(incoming / "good.xlsx", "Good", 4)
    (incoming / "errors.csv").write_text(sheet_csv("Err", 4, bad=frozenset({1})))
    (incoming / "junk.xlsx").write_bytes(b"not a workbook")
    (incoming / "~$other.xlsx").write_bytes(b"owner file")  # Excel's lock file: never a sheet
    for name, seconds in (("good.xlsx", 300), ("errors.csv", 200), ("junk.xlsx", 100)):
        age(incoming / name, seconds)  # the order they were dropped in: oldest first
    # This one is still "being written": its timestamp is within the window of the run's now
    # (ahead of it, which no wait can make stale while the test runs).
    (incoming / "partial.csv").write_text(sheet_csv("Partial", 2)[:90])
    age(incoming / "partial.csv", -3600)
    async with sandbox() as sb:
        code, out, err = await run_inbox(inbox, sb, tmp_path / "state", home,
                                         "--stable-seconds", "0")
        stats = sb.stats()
    no_traceback(out, err)
    assert code == 1, (out, err)  # a row was invalid and a sheet was unreadable
    assert names(incoming) == {"partial.csv", "~$other.xlsx"}
    assert names(inbox / "done") == {"good.xlsx", "errors.csv"}
    assert names(inbox / "rejected") == {"junk.xlsx", "junk.error.txt"}
    assert "not a valid Excel workbook" in (inbox / "rejected" / "junk.error.txt").read_text()
    assert stats["created"] == 4 + 3 and stats["duplicates"] == 0
    assert {"good.results.xlsx", "good.summary.json", "errors.results.xlsx",
            "errors.summary.json", "junk.summary.json"} == names(inbox / "results")

    good = json.loads((inbox / "results" / "good.summary.json").read_text())
    assert good["file"] == "good.xlsx" and good["status"] == "done"
    assert good["exit_code"] == 0 and good["rows"] == 4 and good["counts"] == {"created": 4}
    assert good["problems"] == {"errors": 0, "warnings": 0}
    assert good["results"] == str(inbox / "results" / "good.results.xlsx")
    assert good["moved_to"] == str(inbox / "done" / "good.xlsx")
    # local ISO 8601 with the offset (their values are checked on an injected clock in
    # test_inbox.py, not on this machine's clock)
    assert all(dt.datetime.fromisoformat(good[k]).tzinfo is not None
               for k in ("started", "finished"))
    errors = json.loads((inbox / "results" / "errors.summary.json").read_text())
    assert errors["exit_code"] == 1 and errors["counts"] == {"created": 3, "invalid": 1}
    assert errors["problems"]["errors"] >= 1
    text = json.dumps([good, errors])
    assert "sandbox-token" not in text and "sandbox-token" not in out + err

    # Oldest first: good.xlsx was dropped before errors.csv, so it was sent first.
    assert out.index("good.xlsx:") < out.index("errors.csv:") < out.index("junk.xlsx:")
    assert "partial.csv" not in out


async def test_results_workbook_lists_every_row(inbox: Path, tmp_path: Path,
                                                home: dict[str, str]) -> None:
    from openpyxl import load_workbook

    (inbox / "incoming" / "term.csv").write_text(sheet_csv("Term", 3, bad=frozenset({2})))
    async with sandbox() as sb:
        code, out, err = await run_inbox(inbox, sb, tmp_path / "state", home,
                                         "--stable-seconds", "0")
        ids = {s["sessionId"] for s in sb.sessions()}
    assert code == 1, (out, err)
    wb = load_workbook(inbox / "results" / "term.results.xlsx", read_only=True)
    cells = {str(c) for ws in wb.worksheets for row in ws.iter_rows(values_only=True)
             for c in row if c is not None}
    assert ids <= cells  # every created sessionId is in the workbook
    assert "invalid" in cells and "created" in cells


async def test_all_or_nothing_rejects_with_report(inbox: Path, tmp_path: Path,
                                                  home: dict[str, str]) -> None:
    incoming = inbox / "incoming"
    (incoming / "errors.csv").write_text(sheet_csv("Err", 4, bad=frozenset({1})))
    # The workbook itself asks for all-or-nothing on its Instructions sheet: no flag needed.
    sheet_xlsx(incoming / "strict.xlsx", "Strict", 3, bad=frozenset({0}),
               instructions=[["all-or-nothing", "yes"]])
    async with sandbox() as sb:
        state = tmp_path / "state"
        code, out, err = await run_inbox(inbox, sb, state, home, "--stable-seconds", "0")
        assert code == 1, (out, err)
        # strict.xlsx was rejected on its own say-so; errors.csv went through without the flag
        assert names(inbox / "rejected") == {"strict.xlsx", "strict.report.xlsx",
                                             "strict.report.json"}
        assert sb.stats()["created"] == 3

        (incoming / "errors2.csv").write_text(sheet_csv("Err2", 4, bad=frozenset({3})))
        code, out, err = await run_inbox(inbox, sb, state, home, "--stable-seconds", "0",
                                         "--all-or-nothing")
        assert code == 1, (out, err)
        assert sb.stats()["created"] == 3  # nothing of errors2.csv was sent
    no_traceback(out, err)
    assert {"errors2.csv", "errors2.report.xlsx", "errors2.report.json"} <= names(
        inbox / "rejected")
    report = json.loads((inbox / "rejected" / "errors2.report.json").read_text())
    assert report["errors"] >= 1 and any(p["row"] == 5 for p in report["problems"])
    summary = json.loads((inbox / "results" / "errors2.summary.json").read_text())
    assert summary["status"] == "rejected" and summary["all_or_nothing"] is True
    assert summary["counts"] == {"invalid": 1, "not sent": 3}
    assert "errors2.csv: rejected" in out


async def test_second_instance_exits_0_while_first_runs(inbox: Path, tmp_path: Path,
                                                        home: dict[str, str]) -> None:
    (inbox / "incoming" / "big.csv").write_text(sheet_csv("Big", 25))
    state = tmp_path / "state"
    sb = sandbox()
    created = Created(sb)
    async with sb:
        first = await start_cli(["inbox", str(inbox), "--api-base", sb.url, "--state",
                                 str(state), *RATE, "--stable-seconds", "0"], home)
        await created.at_least(1)  # the first holds the lock now
        code2, out2, err2 = await run_inbox(inbox, sb, state, home, "--stable-seconds", "0")
        created_when_second_ended = sb.stats()["created"]
        code1, out1, err1 = await finish(first)
        stats = sb.stats()
    assert code2 == 0, (out2, err2)
    assert out2.strip().splitlines() == [
        f"another bulkschedule inbox run is in progress (pid {first.pid}); nothing to do"]
    assert created_when_second_ended < 25  # it really overlapped the first run
    assert code1 == 0, (out1, err1)
    assert stats["created"] == 25 and stats["duplicates"] == 0
    assert names(inbox / "done") == {"big.csv"}


async def test_lock_held_by_another_process_object(inbox: Path, tmp_path: Path,
                                                   home: dict[str, str]) -> None:
    """The flock is per state folder: held here, the CLI touches nothing and exits 0."""
    (inbox / "incoming" / "a.csv").write_text(sheet_csv("A", 2))
    state = tmp_path / "state"
    lock = InstanceLock(state)
    assert lock.acquire()
    try:
        async with sandbox() as sb:
            code, out, _ = await run_inbox(inbox, sb, state, home, "--stable-seconds", "0")
            assert sb.stats()["calls"] == 0
    finally:
        lock.release()
    assert code == 0 and "another bulkschedule inbox run is in progress" in out
    assert names(inbox / "incoming") == {"a.csv"}


async def test_rerun_after_kill_9_creates_everything_once(inbox: Path, tmp_path: Path,
                                                          home: dict[str, str]) -> None:
    (inbox / "incoming" / "term.csv").write_text(sheet_csv("Term", 30))
    state = tmp_path / "state"
    # Latency keeps calls in flight, so the kill lands with requests outstanding.
    sb = sandbox(latency=(0.02, 0.08), seed=7)
    created = Created(sb)
    async with sb:
        proc = await start_cli(["inbox", str(inbox), "--api-base", sb.url, "--state",
                                str(state), *RATE, "--stable-seconds", "0"], home)
        await created.at_least(8)
        proc.send_signal(signal.SIGKILL)
        await finish(proc)
        assert proc.returncode == -signal.SIGKILL
        at_kill = sb.stats()["created"]
        assert at_kill < 30
        # Killed mid-sheet: the sheet stays in incoming/ for the next run.
        assert names(inbox / "incoming") == {"term.csv"}
        assert names(inbox / "done") == set()

        code, out, err = await run_inbox(inbox, sb, state, home, "--stable-seconds", "0")
        stats = sb.stats()
        sessions = sb.sessions()
    assert code == 0, (out, err)
    assert stats["duplicates"] == 0
    assert sorted(s["sessionName"] for s in sessions) == sorted(f"Term {i}" for i in range(30))
    assert names(inbox / "done") == {"term.csv"}
    summary = json.loads((inbox / "results" / "term.summary.json").read_text())
    assert summary["counts"].get("created", 0) + summary["counts"].get("exists", 0) == 30
    assert summary["counts"].get("exists", 0) >= at_kill - 1  # the journal remembered them


async def test_name_clash_in_done_and_results_gets_a_timestamp(
        inbox: Path, tmp_path: Path, home: dict[str, str]) -> None:
    (inbox / "done").mkdir()
    (inbox / "results").mkdir()
    (inbox / "done" / "term.csv").write_text("last week's sheet\n")
    (inbox / "results" / "term.summary.json").write_text("{}\n")
    (inbox / "incoming" / "term.csv").write_text(sheet_csv("Again", 2))
    log = tmp_path / "logs" / "inbox.log"
    async with sandbox() as sb:
        code, out, err = await run_inbox(inbox, sb, tmp_path / "state", home,
                                         "--stable-seconds", "0", "--log-file", str(log),
                                         "--log-format", "json")
    assert code == 0, (out, err)
    # The log: one JSON object per row outcome plus the sheet's summary; no token.
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(e["row"] for e in events if e.get("event") == "row") == [2, 3]
    assert all(e["sheet"] == "term.csv" for e in events if e.get("event") in ("row", "summary"))
    assert [e["counts"] for e in events if e.get("event") == "summary"] == [{"created": 2}]
    assert "sandbox-token" not in log.read_text()
    assert (inbox / "done" / "term.csv").read_text() == "last week's sheet\n"  # untouched
    assert (inbox / "results" / "term.summary.json").read_text() == "{}\n"
    done = names(inbox / "done") - {"term.csv"}
    assert len(done) == 1
    (moved,) = done
    stamp = moved.removeprefix("term.").removesuffix(".csv")
    dt.datetime.strptime(stamp, "%Y%m%d-%H%M%S")  # term.20261127-013000.csv
    assert {f"term.{stamp}.results.xlsx", f"term.{stamp}.summary.json"} <= names(
        inbox / "results")
    summary = json.loads((inbox / "results" / f"term.{stamp}.summary.json").read_text())
    assert summary["moved_to"] == str(inbox / "done" / moved)


async def test_no_credentials_exit_2_and_nothing_moves(inbox: Path, tmp_path: Path,
                                                       home: dict[str, str]) -> None:
    (inbox / "incoming" / "a.csv").write_text(sheet_csv("A", 2))
    del home["ZOHO_ACCESS_TOKEN"]
    async with sandbox() as sb:
        code, out, err = await run_inbox(inbox, sb, tmp_path / "state", home,
                                         "--stable-seconds", "0")
        assert sb.stats()["calls"] == 0
    no_traceback(out, err)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("bulkschedule: error: no credentials")
    assert names(inbox / "incoming") == {"a.csv"}


async def test_rejected_token_exit_2_sheet_stays_for_next_night(
        inbox: Path, tmp_path: Path, home: dict[str, str]) -> None:
    (inbox / "incoming" / "a.csv").write_text(sheet_csv("A", 3))
    (inbox / "incoming" / "b.csv").write_text(sheet_csv("B", 3))
    home["ZOHO_ACCESS_TOKEN"] = "not-the-sandbox-token"
    async with sandbox() as sb:
        code, out, err = await run_inbox(inbox, sb, tmp_path / "state", home,
                                         "--stable-seconds", "0")
        assert sb.stats()["created"] == 0
    no_traceback(out, err)
    assert code == 2, (out, err)
    assert names(inbox / "incoming") == {"a.csv", "b.csv"}  # both wait for fixed credentials
    assert names(inbox / "done") == set()
    assert "left in incoming/" in out and "not-the-sandbox-token" not in out + err


async def test_nothing_ready_exit_0(inbox: Path, tmp_path: Path, home: dict[str, str]) -> None:
    (inbox / "incoming" / "fresh.csv").write_text(sheet_csv("Fresh", 2))
    async with sandbox() as sb:
        code, out, err = await run_inbox(inbox, sb, tmp_path / "state", home)  # default 30 s
    assert code == 0, (out, err)
    assert "no sheet ready" in out
    assert names(inbox / "incoming") == {"fresh.csv"}


async def test_bad_usage_exit_2(inbox: Path, home: dict[str, str]) -> None:
    proc = await start_cli(["inbox", str(inbox), "--once", "--watch", "5"], home)
    code, out, err = await finish(proc)
    assert code == 2 and "--once and --watch" in err
    proc = await start_cli(["inbox"], home)  # no DIR and no [inbox] dir in a config
    code, out, err = await finish(proc)
    no_traceback(out, err)
    assert code == 2 and "no inbox folder" in err


async def test_watch_mode_picks_up_a_late_sheet_and_stops_cleanly(
        inbox: Path, tmp_path: Path, home: dict[str, str]) -> None:
    state = tmp_path / "state"
    async with sandbox() as sb:
        proc = await start_cli(["inbox", str(inbox), "--api-base", sb.url, "--state", str(state),
                                *RATE, "--stable-seconds", "0", "--watch", "0.2"], home)
        # Dropped the safe way (temporary name, then rename): with --stable-seconds 0 a plain
        # write could be picked up half written.
        (inbox / "incoming" / ".late.csv").write_text(sheet_csv("Late", 2))
        (inbox / "incoming" / ".late.csv").rename(inbox / "incoming" / "late.csv")
        seen: list[str] = []
        await line_containing(proc, "late.csv:", seen)  # printed once the sheet is settled
        assert (inbox / "done" / "late.csv").exists()
        proc.send_signal(signal.SIGTERM)
        code, out, err = await finish(proc)
        assert sb.stats()["created"] == 2
    assert code == 0, (out, err)  # stopped between passes: nothing was cut short
    assert "late.csv: 2 created" in "".join(seen)


async def test_sigterm_mid_sheet_leaves_it_for_the_next_run(inbox: Path, tmp_path: Path,
                                                            home: dict[str, str]) -> None:
    (inbox / "incoming" / "term.csv").write_text(sheet_csv("Term", 30))
    state = tmp_path / "state"
    sb = sandbox()
    created = Created(sb)
    async with sb:
        proc = await start_cli(["inbox", str(inbox), "--api-base", sb.url, "--state",
                                str(state), *RATE, "--stable-seconds", "0"], home)
        await created.at_least(5)
        proc.send_signal(signal.SIGTERM)
        code, out, err = await finish(proc)
        assert code == 143, (out, err)
        assert sb.stats()["created"] < 30
        assert names(inbox / "incoming") == {"term.csv"}
        summary = json.loads((inbox / "results" / "term.summary.json").read_text())
        assert summary["status"] == "incomplete" and summary["counts"]["pending"] > 0
        assert (inbox / "results" / "term.results.xlsx").exists()

        code, out, err = await run_inbox(inbox, sb, state, home, "--stable-seconds", "0")
        stats = sb.stats()
    assert code == 0, (out, err)
    assert stats["created"] == 30 and stats["duplicates"] == 0
    assert names(inbox / "done") == {"term.csv"}
    # The second run's results never overwrite the first's: they get the run's timestamp.
    assert len([n for n in names(inbox / "results") if n.endswith(".summary.json")]) == 2


async def test_a_sheet_that_aborts_the_reader_costs_only_itself(inbox: Path, tmp_path: Path,
                                                                home: dict[str, str]) -> None:
    """Issue 15: a 2 KB workbook makes the native reader ask for 512 GB and abort the process.
    Read in a capped child, it is rejected with its reason and the good sheet behind it is sent.
    Its one sheet is named Instructions, so the all-or-nothing check, which parses the workbook
    too, meets it first."""
    incoming = inbox / "incoming"
    bomb_xlsx(incoming / "bomb.xlsx", sheet="Instructions")
    (incoming / "good.csv").write_text(sheet_csv("Good", 3))
    age(incoming / "bomb.xlsx", 200)
    age(incoming / "good.csv", 100)
    async with sandbox() as sb:
        code, out, err = await run_inbox(inbox, sb, tmp_path / "state", home,
                                         "--stable-seconds", "0")
        stats = sb.stats()
    no_traceback(out, err)
    assert "memory allocation" not in err and "backtrace" not in err  # the child's, kept apart
    assert code == 1, (out, err)  # a sheet was unreadable; the other was fully sent
    assert stats["created"] == 3
    assert names(inbox / "rejected") == {"bomb.xlsx", "bomb.error.txt"}
    assert names(inbox / "done") == {"good.csv"} and names(incoming) == set()
    reason = (inbox / "rejected" / "bomb.error.txt").read_text()
    assert reason.startswith(str(incoming / "bomb.xlsx") + ": ") and reason.count("\n") == 1
    summary = json.loads((inbox / "results" / "bomb.summary.json").read_text())
    assert summary["status"] == "unreadable" and summary["message"] == reason.strip()
    assert out.index("bomb.xlsx: unreadable") < out.index("good.csv: 3 created")

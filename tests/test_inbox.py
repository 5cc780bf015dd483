"""Inbox plumbing: which files are ready, never overwriting, one instance at a time; and one pass
in process against the sandbox, with each sheet read in a capped child."""

from __future__ import annotations

import configparser
import datetime as dt
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_isolate import parent_only  # tests/ is on sys.path (no __init__.py)

from bulkschedule.app.inbox import (
    DONE,
    NOT_STARTED,
    UNREADABLE,
    InboxBusy,
    InboxPaths,
    InstanceLock,
    Instructions,
    SheetRead,
    instructions_say_all_or_nothing,
    move_unique,
    pending_sheets,
    process_inbox,
    read_instructions,
    read_sheet,
    report_paths,
    results_paths,
)
from bulkschedule.sandbox.server import Sandbox, SandboxConfig
from bulkschedule.send.api import SendSettings
from bulkschedule.zoho.auth import StaticToken


@pytest.fixture
def inbox(tmp_path: Path) -> InboxPaths:
    return InboxPaths(tmp_path / "inbox").ensure()


def drop(folder: Path, name: str, mtime: float | None, data: bytes = b"x") -> Path:
    path = folder / name
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


# ctime cannot be set, and is "now" for every file written by the test; judging "now" from the
# real clock plus an offset keeps ctime old enough (or, deliberately, not).
LATER = 3600.0


def test_ensure_creates_the_four_folders(tmp_path: Path) -> None:
    paths = InboxPaths(str(tmp_path / "root")).ensure()
    names = sorted(p.name for p in paths.root.iterdir())
    assert names == ["done", "incoming", "rejected", "results"]
    paths.ensure()  # idempotent


def test_oldest_first_by_mtime_then_name(inbox: InboxPaths) -> None:
    now = time.time() + LATER
    drop(inbox.incoming, "b.xlsx", now - 500)
    drop(inbox.incoming, "a.csv", now - 500)
    drop(inbox.incoming, "old.XLSX", now - 9000)
    drop(inbox.incoming, "mid.CSV", now - 1000)
    names = [p.name for p in pending_sheets(inbox, now)]
    assert names == ["old.XLSX", "mid.CSV", "a.csv", "b.xlsx"]


def test_lock_temp_hidden_and_other_files_ignored(inbox: InboxPaths) -> None:
    now = time.time() + LATER
    for name in [
        "~$term.xlsx",
        ".~lock.other.xlsx#",
        ".hidden.xlsx",
        "upload.xlsx.tmp",
        "upload.tmp",
        "part.csv.part",
        "notes.txt",
        "old.xls",
        "term.xlsx.bak",
    ]:
        drop(inbox.incoming, name, now - 1000)
    (inbox.incoming / "folder.xlsx").mkdir()
    keep = drop(inbox.incoming, "keep.xlsx", now - 1000)
    assert pending_sheets(inbox, now) == [keep]


def test_workbook_open_in_excel_or_libreoffice_is_skipped(inbox: InboxPaths) -> None:
    now = time.time() + LATER
    drop(inbox.incoming, "term.xlsx", now - 1000)
    drop(inbox.incoming, "~$term.xlsx", now - 1000)  # Excel owner file
    drop(inbox.incoming, "calc.xlsx", now - 1000)
    drop(inbox.incoming, ".~lock.calc.xlsx#", now - 1000)  # LibreOffice lock file
    free = drop(inbox.incoming, "free.xlsx", now - 1000)
    assert pending_sheets(inbox, now) == [free]


def test_just_modified_skipped_stable_picked(inbox: InboxPaths) -> None:
    now = time.time() + LATER
    fresh = drop(inbox.incoming, "fresh.xlsx", now - 10)
    edge = drop(inbox.incoming, "edge.xlsx", now - 29.5)
    stable = drop(inbox.incoming, "stable.xlsx", now - 31)
    assert pending_sheets(inbox, now) == [stable]
    # the same files a minute later are all stable
    assert set(pending_sheets(inbox, now + 60)) == {fresh, edge, stable}
    # the window is a parameter
    assert set(pending_sheets(inbox, now, stable_seconds=5)) == {fresh, edge, stable}


def test_copy_that_keeps_an_old_mtime_is_skipped_while_ctime_is_fresh(inbox: InboxPaths) -> None:
    """cp -p / Explorer copies carry the source's old mtime onto a file still being written."""
    real_now = time.time()
    growing = drop(inbox.incoming, "copy.xlsx", real_now - 86400)  # mtime a day old
    assert pending_sheets(inbox, real_now + 5) == []  # ctime says it changed 5 s ago
    # it keeps growing (append) and the copy tool sets the old mtime back again
    with growing.open("ab") as fh:
        fh.write(b"more")
    os.utime(growing, (real_now - 86400, real_now - 86400))
    assert pending_sheets(inbox, time.time() + 20) == []
    assert pending_sheets(inbox, time.time() + 31) == [growing]


def test_future_timestamp_counts_as_just_changed(inbox: InboxPaths) -> None:
    now = time.time() + LATER
    drop(inbox.incoming, "skew.xlsx", now + 120)  # a file server clock two minutes ahead
    assert pending_sheets(inbox, now) == []
    assert len(pending_sheets(inbox, now + 200)) == 1


def test_missing_incoming_folder_means_nothing_pending(tmp_path: Path) -> None:
    assert pending_sheets(InboxPaths(tmp_path / "none"), time.time()) == []


# ---------------------------------------------------------------------------- moving


def _stamp(now: float) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now))


def test_move_unique_plain_then_timestamp_then_counter(inbox: InboxPaths) -> None:
    now = 1_800_000_000.0
    first = move_unique(drop(inbox.incoming, "term.xlsx", None, b"1"), inbox.done, now)
    assert first == inbox.done / "term.xlsx"
    second = move_unique(drop(inbox.incoming, "term.xlsx", None, b"2"), inbox.done, now)
    assert second.name == f"term.{_stamp(now)}.xlsx"
    third = move_unique(drop(inbox.incoming, "term.xlsx", None, b"3"), inbox.done, now)
    assert third.name == f"term.{_stamp(now)}-2.xlsx"
    assert [p.read_bytes() for p in (first, second, third)] == [b"1", b"2", b"3"]  # none lost
    assert list(inbox.incoming.iterdir()) == []


def test_move_unique_keeps_mtime_and_creates_dest(tmp_path: Path) -> None:
    src = drop(tmp_path, "a.csv", 1_700_000_000)
    moved = move_unique(src, tmp_path / "new" / "dir", time.time())
    assert moved.read_bytes() == b"x" and moved.stat().st_mtime == 1_700_000_000
    assert not src.exists()


def test_move_unique_across_filesystems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """link() fails with EXDEV across filesystems; the copy path must still never overwrite."""
    import errno

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "term.xlsx").write_bytes(b"old")
    moved = move_unique(drop(tmp_path, "term.xlsx", 1_700_000_000, b"new"), dest, 1_800_000_000)
    assert moved.name == f"term.{_stamp(1_800_000_000)}.xlsx"
    assert moved.read_bytes() == b"new" and (dest / "term.xlsx").read_bytes() == b"old"
    assert moved.stat().st_mtime == 1_700_000_000
    assert not (tmp_path / "term.xlsx").exists()


def test_results_paths_and_report_paths(inbox: InboxPaths) -> None:
    sheet = inbox.incoming / "spring term.xlsx"
    xlsx, js = results_paths(inbox, sheet)
    assert xlsx == inbox.results / "spring term.results.xlsx"
    assert js == inbox.results / "spring term.summary.json"
    now = 1_800_000_000.0
    assert results_paths(inbox, sheet, now=now) == (xlsx, js)  # free: plain names
    js.write_text("{}")
    x2, j2 = results_paths(inbox, sheet, now=now)
    assert x2.name == f"spring term.{_stamp(now)}.results.xlsx"
    assert j2.name == f"spring term.{_stamp(now)}.summary.json"
    moved = inbox.rejected / f"t.{_stamp(now)}.csv"
    assert [p.name for p in report_paths(moved)] == [
        f"t.{_stamp(now)}.report.xlsx",
        f"t.{_stamp(now)}.report.json",
    ]


# ---------------------------------------------------------------------------- one pass


def sessions_csv(prefix: str, n: int) -> bytes:
    """``n`` valid sessions on consecutive days."""
    ids = "478346000019479103,478346000019479115,478346000019479119"
    lines = ["courseId,batchId,moduleId,name,trainerErecno,type,date,startTime,endTime"]
    for i in range(n):
        day = (dt.date(2027, 3, 1) + dt.timedelta(days=i)).strftime("%d-%m-%Y")
        lines.append(f"{ids},{prefix} {i},478346000008251001,Classroom,{day},10:00 AM,11:00 AM")
    return ("\n".join(lines) + "\n").encode()


def abort_on_crash(sheet: Path) -> SheetRead:
    """The inbox's own reader, except that a sheet named crash* aborts the reading process, as
    a bug in a native reader does (runs in the child: module level, so it can be imported)."""
    if sheet.name.startswith("crash"):
        os.abort()
    return read_sheet(sheet)


async def test_a_sheet_whose_read_aborts_is_rejected_and_the_pass_goes_on(
        inbox: InboxPaths, tmp_path: Path) -> None:
    now = time.time() + LATER
    drop(inbox.incoming, "crash.csv", now - 600, sessions_csv("Crash", 2))  # oldest: first
    drop(inbox.incoming, "good.csv", now - 300, sessions_csv("Good", 3))
    ticks = itertools.count(1_800_000_000)
    async with Sandbox(SandboxConfig(speed=60.0)) as sb:
        settings = SendSettings(api_base=sb.url, state_dir=tmp_path / "state", speed=60.0)
        result = await process_inbox(inbox, settings, tokens=lambda s: StaticToken(sb.token),
                                     now=now, clock=lambda: float(next(ticks)),
                                     reader=abort_on_crash)
        stats = sb.stats()

    assert [(s.name, s.status) for s in result.sheets] == [("crash.csv", UNREADABLE),
                                                           ("good.csv", DONE)]
    assert result.exit_code == 1 and not result.stopped
    assert stats["created"] == 3 and stats["duplicates"] == 0
    assert sorted(p.name for p in inbox.rejected.iterdir()) == ["crash.csv", "crash.error.txt"]
    assert [p.name for p in inbox.done.iterdir()] == ["good.csv"]
    assert list(inbox.incoming.iterdir()) == []
    why = f"{inbox.incoming / 'crash.csv'}: the sheet could not be read safely: " \
          "the reader crashed (SIGABRT)"
    assert (inbox.rejected / "crash.error.txt").read_text() == why + "\n"
    crash = json.loads((inbox.results / "crash.summary.json").read_text())
    assert crash["status"] == "unreadable" and crash["exit_code"] == 1
    assert crash["message"] == why and crash["report"] == str(inbox.rejected / "crash.error.txt")
    assert crash["moved_to"] == str(inbox.rejected / "crash.csv")
    # the pass's clock, injected: each sheet starts and finishes on its own tick
    assert [(s.started, s.finished) for s in result.sheets] == [
        (1_800_000_000.0, 1_800_000_001.0), (1_800_000_002.0, 1_800_000_003.0)]
    good = json.loads((inbox.results / "good.summary.json").read_text())
    assert good["counts"] == {"created": 3} and good["exit_code"] == 0


async def test_no_reading_process_leaves_the_sheets_and_ends_the_pass(
        inbox: InboxPaths, tmp_path: Path) -> None:
    """When no child can be started, that is the machine's trouble, not the sheet's: nothing is
    moved, exit 2 (as for credentials or the network), and the later sheets are not tried."""
    now = time.time() + LATER
    drop(inbox.incoming, "a.csv", now - 600, sessions_csv("A", 1))
    drop(inbox.incoming, "b.csv", now - 300, sessions_csv("B", 1))
    settings = SendSettings(api_base="http://127.0.0.1:9", state_dir=tmp_path / "state")
    result = await process_inbox(inbox, settings, tokens=lambda s: StaticToken("unused"),
                                 now=now, reader=parent_only("inbox_reader"))
    assert [(s.name, s.status, s.exit_code) for s in result.sheets] == [("a.csv", NOT_STARTED, 2)]
    assert result.exit_code == 2
    assert result.sheets[0].message.endswith("the process did not start (exit code 1)")
    assert sorted(p.name for p in inbox.incoming.iterdir()) == ["a.csv", "b.csv"]
    assert list(inbox.rejected.iterdir()) == [] and list(inbox.results.iterdir()) == []


# ---------------------------------------------------------------------------- updates

OTHER_TRAINER = "478346000008251017"  # in the sandbox's default org


def _edited_results(results: Path, dest: Path, *, row: int, instructions: list[list[object]]
                    | None = None, **cells: str) -> Path:
    """A results workbook with ``cells`` changed on sheet row ``row`` (and an Instructions
    sheet holding ``instructions``), saved as ``dest``: the admin's edit of a loaded term."""
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.load_workbook(results)
    ws = wb["Results"]
    header = [c.value for c in ws[1]]
    for column, value in cells.items():
        ws.cell(row=row, column=header.index(column) + 1, value=value)
    if instructions is not None:
        if "Instructions" in wb.sheetnames:
            del wb["Instructions"]
        sheet = wb.create_sheet("Instructions")
        for line in instructions:
            sheet.append(line)
    wb.save(dest)
    return dest


async def test_an_edited_results_workbook_is_updated_only_when_config_or_instructions_say_so(
        inbox: InboxPaths, tmp_path: Path) -> None:
    """A term loaded by the inbox, its results workbook edited (another trainer on one row) and
    dropped in again: without the switch the row is ``changed`` and nothing is patched (the
    summary says how to apply it); with ``update`` (config) or ``update: yes`` on the sheet's
    Instructions exactly that session is patched, and nothing is created again."""
    now = time.time() + LATER
    ticks = itertools.count(1_800_000_000)
    async with Sandbox(SandboxConfig(speed=60.0)) as sb:
        settings = SendSettings(api_base=sb.url, state_dir=tmp_path / "state", speed=60.0)

        async def one_pass(name: str, sheet: Path, **options: bool) -> dict[str, object]:
            shutil.copy(sheet, inbox.incoming / name)
            os.utime(inbox.incoming / name, (now - 600, now - 600))
            result = await process_inbox(inbox, settings, tokens=lambda s: StaticToken(sb.token),
                                         now=now, clock=lambda: float(next(ticks)), **options)
            assert [s.name for s in result.sheets] == [name]
            summary: dict[str, object] = json.loads(
                (inbox.results / f"{Path(name).stem}.summary.json").read_text())
            return summary

        first = tmp_path / "term.csv"
        first.write_bytes(sessions_csv("Term", 3))
        assert (await one_pass("term.csv", first))["counts"] == {"created": 3}
        edited = _edited_results(inbox.results / "term.results.xlsx", tmp_path / "edit.xlsx",
                                 row=3, trainerErecno=OTHER_TRAINER)

        plain = await one_pass("plain.xlsx", edited)
        assert plain["counts"] == {"changed": 1, "exists": 2} and plain["update"] is False
        assert plain["exit_code"] == 1 and "were not updated" not in str(plain["message"])
        assert "1 row differs from its session and was not updated: the inbox updates " \
               "sessions only with --update" in str(plain["message"])
        assert sb.stats()["updates"] == 0

        by_config = await one_pass("config.xlsx", edited, update=True)
        assert by_config["counts"] == {"updated": 1, "exists": 2} and by_config["update"] is True
        assert by_config["exit_code"] == 0 and sb.stats()["updates"] == 1

        back = _edited_results(inbox.results / "term.results.xlsx", tmp_path / "back.xlsx",
                               row=3, trainerErecno="478346000008251001",
                               instructions=[["Fill one row per session"], ["update: yes"]])
        by_sheet = await one_pass("asks.xlsx", back)
        assert by_sheet["counts"] == {"updated": 1, "exists": 2} and by_sheet["update"] is True
        stats = sb.stats()
        trainers = {s["sessionName"]: s["trainerErecno"] for s in sb.sessions()}
    assert stats["updates"] == 2 and stats["creates"] == 3 and stats["created"] == 3
    assert trainers == {f"Term {i}": "478346000008251001" for i in range(3)}


# ---------------------------------------------------------------------------- instance lock

HOLDER = textwrap.dedent(
    """
    import sys
    from bulkschedule.app.inbox import InstanceLock
    lock = InstanceLock(sys.argv[1])
    print("held" if lock.acquire() else "refused", flush=True)
    sys.stdin.read()  # hold until the parent closes stdin (or kills us)
    """
)


def _holder(state: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_refused_while_another_process_holds_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = _holder(state)
    try:
        lock = InstanceLock(state)
        assert lock.acquire() is False
        assert lock.holder_pid() == proc.pid
        with pytest.raises(InboxBusy, match=f"in progress \\(pid {proc.pid}\\)"), lock:
            pass
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    with InstanceLock(state) as lock:  # granted once the holder exited normally
        assert lock.held


def test_lock_released_when_holder_is_killed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = _holder(state)
    proc.kill()  # no cleanup code runs: the kernel must drop the flock
    proc.wait(timeout=10)
    lock = InstanceLock(state)
    assert lock.acquire() is True
    lock.release()


def test_lock_held_by_this_process_blocks_a_second_object_and_releases(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    assert first.acquire() and first.acquire()  # re-entrant on the same object
    second = InstanceLock(tmp_path)
    assert second.acquire() is False
    first.release()
    assert second.acquire() is True
    second.release()
    assert (tmp_path / "inbox.lock").exists()


# ---------------------------------------------------------------------------- instructions


def _workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    openpyxl = pytest.importorskip("openpyxl")  # test-only writer; the module reads via calamine
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([["Fill one row per session"], ["all-or-nothing: yes"]], True),
        ([["All or nothing", None, "Yes"]], True),
        ([["ALL_OR_NOTHING=true"]], True),
        ([["all-or-nothing: no"]], False),
        ([["all-or-nothing"]], False),
        ([["Fill one row per session"]], False),
    ],
)
def test_instructions_all_or_nothing(tmp_path: Path, rows: list[list[object]], expected: bool):
    wb = _workbook(tmp_path / "t.xlsx", {"Sessions": [["Name"]], "Instructions": rows})
    assert instructions_say_all_or_nothing(wb) is expected


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([["update: yes"]], Instructions(update=True)),
        ([["Apply updates", None, "Yes"]], Instructions(update=True)),
        ([["UPDATES=true"], ["all-or-nothing: yes"]], Instructions(True, True)),
        ([["apply_updates: on"]], Instructions(update=True)),
        ([["update: no"], ["all or nothing = yes"]], Instructions(all_or_nothing=True)),
        ([["Update the trainer column", "yes"]], Instructions()),
        ([["updated: yes"]], Instructions()),
        ([["update"]], Instructions()),
    ],
)
def test_instructions_update(tmp_path: Path, rows: list[list[object]],
                             expected: Instructions) -> None:
    wb = _workbook(tmp_path / "t.xlsx", {"Sessions": [["Name"]], "Instructions": rows})
    assert read_instructions(wb) == expected


def test_instructions_only_in_the_instructions_sheet(tmp_path: Path) -> None:
    wb = _workbook(tmp_path / "t.xlsx", {"Sessions": [["all-or-nothing: yes"]]})
    assert instructions_say_all_or_nothing(wb) is False
    csv = tmp_path / "t.csv"
    csv.write_text("all-or-nothing: yes\n")
    assert instructions_say_all_or_nothing(csv) is False
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a zip")
    assert instructions_say_all_or_nothing(broken) is False
    assert read_instructions(broken) == Instructions()
    assert read_instructions(_workbook(tmp_path / "u.xlsx", {"Sessions": [["update: yes"]]})) \
        == Instructions()


# ---------------------------------------------------------------------------- docs/examples

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
INSTALLED = "/opt/bulkschedule/venv/bin/bulkschedule"
#: Flags the examples may use on `bulkschedule inbox` (the CLI contract for that command).
INBOX_FLAGS = {"--once", "--log-file", "--log-format", "--config", "--all-or-nothing", "--watch"}

_CRON_FIELDS = (  # (name, low, high, names)
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


def _cron_value(text: str, low: int, names: list[str] | tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + (1 if low == 1 else 0)
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number")
    return int(text)


def cron_field_ok(field: str, low: int, high: int, names: tuple[str, ...] | list[str]) -> bool:
    """Vixie-cron field syntax: comma list of `*`, `N`, `N-M`, each with an optional `/STEP`."""
    try:
        for item in field.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) < 1):
                return False
            if base == "*":
                continue
            lo_text, dash, hi_text = base.partition("-")
            lo = _cron_value(lo_text, low, names)
            hi = _cron_value(hi_text, low, names) if dash else lo
            if not (low <= lo <= hi <= high) or (step and not dash):
                return False
    except ValueError:
        return False
    return True


def parse_crontab(text: str) -> list[tuple[list[str], str]]:
    """(five time fields, command) per job line; raises ValueError on any malformed line."""
    jobs = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):  # NAME=value environment line
            continue
        parts = line.split(None, 5)
        if len(parts) < 6:
            raise ValueError(f"line {number}: needs 5 time fields and a command")
        fields, command = parts[:5], parts[5]
        for value, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
            if not cron_field_ok(value, low, high, names):
                raise ValueError(f"line {number}: bad {name} field {value!r}")
        if re.search(r"(?<!\\)%", command):
            raise ValueError(f"line {number}: unescaped % (cron turns it into a newline)")
        jobs.append((fields, command))
    return jobs


def _check_inbox_command(command: str) -> list[str]:
    argv = shlex.split(command)
    assert argv[0] == INSTALLED and argv[1] == "inbox" and argv[2].startswith("/")
    flags = [a for a in argv[3:] if a.startswith("--")]
    assert set(flags) <= INBOX_FLAGS, set(flags) - INBOX_FLAGS
    return argv


def test_cron_validator_rejects_bad_lines() -> None:
    """The validator itself must be able to fail, or the example test proves nothing."""
    for bad in [
        "30 1 * * /bin/true",  # four fields
        "60 1 * * * /bin/true",  # minute out of range
        "30 24 * * * /bin/true",  # hour out of range
        "30 1 0 * * /bin/true",  # day of month starts at 1
        "30 1 * 13 * /bin/true",
        "30 1 * * 8 /bin/true",
        "*/0 1 * * * /bin/true",
        "5-1 1 * * * /bin/true",
        "30 1 * * * date +%Y",
        "x 1 * * * /bin/true",
    ]:
        with pytest.raises(ValueError):
            parse_crontab(bad)
    ok = parse_crontab("MAILTO=x\n*/15 19-23,0-6 1-31/2 jan-dec mon-fri date +\\%Y\n")
    assert ok == [(["*/15", "19-23,0-6", "1-31/2", "jan-dec", "mon-fri"], "date +\\%Y")]


def test_crontab_example_parses() -> None:
    jobs = parse_crontab((EXAMPLES / "crontab").read_text(encoding="utf-8"))
    assert len(jobs) == 1
    fields, command = jobs[0]
    assert fields == ["30", "1", "*", "*", "*"]
    argv = _check_inbox_command(command)
    assert "--once" in argv
    text = (EXAMPLES / "crontab").read_text(encoding="utf-8")
    assert "ZOHO_" not in text  # credentials never go in a crontab


def _unit(name: str) -> configparser.ConfigParser:
    # strict: a duplicated key would be a mistake here (the examples use one Environment= line)
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are cased
    parser.read_string((EXAMPLES / name).read_text(encoding="utf-8"), source=name)
    return parser


def test_systemd_units_parse_into_expected_sections() -> None:
    service = _unit("bulkschedule-inbox.service")
    assert service.sections() == ["Unit", "Service"]
    assert service["Service"]["Type"] == "oneshot"
    _check_inbox_command(service["Service"]["ExecStart"])
    env = dict(item.split("=", 1) for item in service["Service"]["Environment"].split())
    assert env["BULKSCHEDULE_CONFIG"].startswith("/")
    assert env["BULKSCHEDULE_STATE"] == "/var/lib/" + service["Service"]["StateDirectory"]
    assert "ZOHO_" not in (EXAMPLES / "bulkschedule-inbox.service").read_text(encoding="utf-8")

    timer = _unit("bulkschedule-inbox.timer")
    assert timer.sections() == ["Unit", "Timer", "Install"]
    assert timer["Timer"]["Unit"] == "bulkschedule-inbox.service"
    assert timer["Timer"]["OnCalendar"] == "*-*-* 01:30:00"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    for unit in (service, timer):  # % is a specifier in unit files
        assert all("%" not in v for s in unit.sections() for v in unit[s].values())


def test_systemd_units_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here; the configparser test still ran")
    # The only change: ExecStart must name an executable that exists on this machine.
    here = Path(sys.executable).with_name("bulkschedule")
    if not here.exists():
        pytest.skip(f"{here} missing (package not installed as a script); cannot verify ExecStart")
    for name in ("bulkschedule-inbox.service", "bulkschedule-inbox.timer"):
        text = (EXAMPLES / name).read_text(encoding="utf-8").replace(INSTALLED, str(here))
        (tmp_path / name).write_text(text, encoding="utf-8")
    units = [str(tmp_path / n) for n in ("bulkschedule-inbox.service", "bulkschedule-inbox.timer")]
    result = subprocess.run(
        [tool, "verify", "--man=no", *units], capture_output=True, text=True, timeout=60
    )
    # verify only warns (exit 0) on unknown keys, so any output at all counts as a failure
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    cal = subprocess.run(
        [tool, "calendar", "*-*-* 01:30:00"], capture_output=True, text=True, timeout=60
    )
    assert cal.returncode == 0, cal.stderr

"""Reading in a capped child: every way a child can end becomes one line, and the caller lives on.

The children here are real processes under real caps: one that allocates too much, one that spins,
one that aborts, one that waits forever, one that raises. The functions they run are defined at
module level so the forkserver's children can import them by name. Nothing waits on a timer; the
only wall-clock waits are the children's own caps (a second of CPU, half a second of waiting).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
import types
import zipfile
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from bulkschedule.app import job
from bulkschedule.app.isolate import (
    ChildGroup,
    IsolationError,
    IsolationUnavailable,
    ReadLimits,
    _Unpickler,
    load_isolated,
    load_sheet,
    run_isolated,
    warm,
)
from bulkschedule.core.errors import JobError
from bulkschedule.sheet.columns import SPEC
from bulkschedule.sheet.schema import Validation

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
TODAY = dt.date(2026, 1, 5)
GiB = 1 << 30


# ---------------------------------------------------------------- what the children run


def allocate_in_steps(total: int, step: int = 64 << 20) -> int:
    """Keep allocating (and holding) ``step`` bytes until ``total``: the cap must stop it."""
    held = [bytes(step) for _ in range(total // step)]  # calloc: counted, never touched
    return len(held)


def spin() -> None:
    while True:
        pass


def abort() -> None:
    os.abort()


def native_out_of_memory() -> None:
    """What the Rust reader does when an allocation fails: say so on stderr, then abort."""
    os.write(2, b"memory allocation of 549755813888 bytes failed\n")
    os.abort()


def wait_forever() -> None:
    threading.Event().wait()


def announce_then_wait(conn: Connection) -> None:
    conn.send(os.getpid())
    threading.Event().wait()


def raise_value_error() -> None:
    raise ValueError("boom\nsecond line")


def refuse() -> None:
    raise JobError("term.xlsx: not a valid Excel workbook")


def exit_quietly() -> None:
    os._exit(3)


def survive_sigint() -> str:
    os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C at a terminal reaches the process group
    return "still here"


def return_a_path() -> Path:
    return Path("/etc/passwd")


def bomb_xlsx(path: Path, sheet: str = "Sessions", last: str = "XFD1048576") -> Path:
    """A 2 KB workbook whose one sheet claims cells up to ``last``: the native reader asks for
    512 GB for it and aborts (issue 15)."""
    ns = 'xmlns="http://schemas.openxmlformats.org/'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    parts = {
        "[Content_Types].xml":
            f'<Types {ns}package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
            'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.'
            'worksheet+xml"/></Types>',
        "_rels/.rels":
            f'<Relationships {ns}package/2006/relationships"><Relationship Id="rId1" '
            f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml":
            f'<workbook {ns}spreadsheetml/2006/main" xmlns:r="{rel}"><sheets>'
            f'<sheet name="{sheet}" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels":
            f'<Relationships {ns}package/2006/relationships"><Relationship Id="rId1" '
            f'Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml":
            f'<worksheet {ns}spreadsheetml/2006/main"><dimension ref="A1:{last}"/><sheetData>'
            '<row r="1"><c r="A1" t="inlineStr"><is><t>name</t></is></c></row>'
            f'<row r="{last.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}"><c r="{last}" t="inlineStr">'
            '<is><t>x</t></is></c></row></sheetData></worksheet>',
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in parts.items():
            z.writestr(name, text)
    return path


# ---------------------------------------------------------------- a normal sheet


@pytest.mark.parametrize("name", ["sessions.xlsx", "sessions_with_errors.csv"])
async def test_same_validation_as_in_process(name: str) -> None:
    here = job.load(SAMPLES / name, today=TODAY)
    there = await load_isolated(SAMPLES / name, today=TODAY)
    assert there == here
    assert (there.valid, there.errors, there.warnings) == (here.valid, here.errors, here.warnings)
    assert there.sessions == here.sessions and there.problems == here.problems


async def test_every_kind_of_cell_comes_back(tmp_path: Path) -> None:
    """Dates, times, numbers, booleans and blanks cross the allowlisted unpickler intact."""
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["name", "date", "startTime", "endTime", "courseId", "type", "lockUntil"])
    ws.append(["A", dt.date(2027, 3, 1), dt.time(10, 0), "11:00 AM", 478346000019479103,
               True, dt.datetime(2027, 2, 1, 8, 30)])
    ws.append(["B", None, 0.5, 1.25, "x", False, None])
    wb.save(tmp_path / "cells.xlsx")
    assert await load_isolated(tmp_path / "cells.xlsx", today=TODAY) == job.load(
        tmp_path / "cells.xlsx", today=TODAY)


async def test_the_readers_own_refusal_keeps_its_message(tmp_path: Path) -> None:
    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(b"not a workbook")
    with pytest.raises(JobError) as here:
        job.load(junk)
    with pytest.raises(JobError) as there:
        await load_isolated(junk)
    assert not isinstance(there.value, IsolationError)
    assert str(there.value) == str(here.value)
    with pytest.raises(JobError) as err:
        await run_isolated(refuse)
    assert not isinstance(err.value, IsolationError)
    assert str(err.value) == "term.xlsx: not a valid Excel workbook"


# ---------------------------------------------------------------- every way a child can end


async def test_memory_cap_stops_a_child_that_allocates_too_much() -> None:
    with pytest.raises(IsolationError) as err:
        await run_isolated(allocate_in_steps, 4 * GiB, what="big.xlsx")
    assert err.value.reason == "memory"
    assert str(err.value) == ("big.xlsx: the sheet could not be read safely: "
                              "it needed more than 1 GB of memory")
    # the cap is the parameter: a smaller one, and what fitted in 1 GB no longer does
    assert await run_isolated(allocate_in_steps, 256 << 20) == 4
    with pytest.raises(IsolationError, match="more than 512 MB of memory"):
        await run_isolated(allocate_in_steps, 640 << 20, limits=ReadLimits(memory_mb=512))


async def test_native_reader_running_out_of_memory_is_a_memory_error() -> None:
    with pytest.raises(IsolationError) as err:
        await run_isolated(native_out_of_memory)
    assert err.value.reason == "memory"
    assert "more than 1 GB of memory (the reader aborted: SIGABRT)" in str(err.value)


async def test_real_bomb_workbook_never_reaches_the_caller(tmp_path: Path) -> None:
    """The 2 KB workbook that aborts the native reader: refused in one line, caller alive.
    (Once the reader checks the sheet's extent first, it is a plain refusal instead.)"""
    bomb = bomb_xlsx(tmp_path / "bomb.xlsx")
    assert bomb.stat().st_size < 2048
    with pytest.raises(JobError) as err:
        await load_isolated(bomb)
    assert str(err.value).startswith(f"{bomb}: ") and "\n" not in str(err.value)
    if isinstance(err.value, IsolationError):
        assert err.value.reason == "memory"


async def test_cpu_cap_stops_a_child_that_spins() -> None:
    with pytest.raises(IsolationError) as err:
        await run_isolated(spin, limits=ReadLimits(cpu_seconds=1), what="loop.csv")
    assert err.value.reason == "cpu"
    assert str(err.value) == ("loop.csv: the sheet could not be read safely: "
                              "it needed more than 1 s of CPU time")


async def test_abort_is_a_crash_not_the_callers_death() -> None:
    with pytest.raises(IsolationError) as err:
        await run_isolated(abort, what="a.xlsx")
    assert err.value.reason == "crash"
    assert str(err.value) == "a.xlsx: the sheet could not be read safely: the reader crashed " \
                             "(SIGABRT)"


async def test_unexpected_exception_is_one_line() -> None:
    with pytest.raises(IsolationError) as err:
        await run_isolated(raise_value_error)
    assert err.value.reason == "failed"
    assert str(err.value).endswith("the reader failed: ValueError: boom second line")


async def test_exit_without_an_answer() -> None:
    with pytest.raises(IsolationError, match=r"without an answer \(exit code 3\)") as err:
        await run_isolated(exit_quietly)
    assert err.value.reason == "crash"


async def test_wall_clock_cap_stops_a_child_that_waits() -> None:
    with pytest.raises(IsolationError) as err:
        await run_isolated(wait_forever, limits=ReadLimits(wall_seconds=0.5))
    assert err.value.reason == "time"
    assert str(err.value).endswith("it took longer than 0.5 s")


async def test_child_ignores_ctrl_c_the_caller_decides() -> None:
    assert await run_isolated(survive_sigint) == "still here"


async def test_cancelling_the_caller_kills_the_child() -> None:
    receive, send = multiprocessing.get_context("forkserver").Pipe(duplex=False)
    task = asyncio.ensure_future(run_isolated(announce_then_wait, send,
                                              limits=ReadLimits(wall_seconds=600)))
    pid = await asyncio.to_thread(receive.recv)  # the child is running, and blocked for good
    exited = os.pidfd_open(pid)
    try:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the cancellation went on only once the child was gone (killed and reaped)
        ready, _, _ = select.select([exited], [], [], 0)
        assert ready, "the child outlived its cancelled caller"
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        os.close(exited)


async def test_a_group_kills_every_child_it_holds() -> None:
    """What a server that stops does with the reads it started: each caller gets one line."""
    group = ChildGroup()
    receive, send = multiprocessing.get_context("forkserver").Pipe(duplex=False)
    tasks = [asyncio.ensure_future(run_isolated(announce_then_wait, send, group=group,
                                                what=f"{n}.csv")) for n in ("a", "b")]
    pids = [await asyncio.to_thread(receive.recv) for _ in tasks]
    assert len(group) == 2
    group.kill_all()
    for task, name in zip(tasks, ("a", "b"), strict=True):
        with pytest.raises(IsolationError) as err:
            await task
        assert str(err.value) == f"{name}.csv: the sheet could not be read safely: it was " \
                                 "cancelled"
        assert err.value.reason == "failed" and err.value.why == "it was cancelled"
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert len(group) == 0


def spec_is_the_same(validation: Validation) -> bool:
    return validation.spec is SPEC


async def test_a_validation_goes_both_ways_with_its_spec_by_name() -> None:
    """The column spec (read-only mappings, a generated class) cannot be pickled; it travels
    as a name the other side resolves to its own copy, in the arguments and in the answer."""
    here = job.load(SAMPLES / "sessions_with_errors.csv", today=TODAY)
    assert await run_isolated(spec_is_the_same, here) is True
    there = await load_isolated(SAMPLES / "sessions_with_errors.csv", today=TODAY)
    assert there.spec is SPEC


async def test_warm_starts_the_forkserver_and_never_fails() -> None:
    await warm()
    assert await run_isolated(survive_sigint) == "still here"


# ---------------------------------------------------------------- no child at all


def parent_only(name: str) -> types.FunctionType:
    """A function the child cannot import (its module exists only in this process): the child
    dies before it runs any of our code, as when the machine cannot give it what it needs."""
    module = types.ModuleType(name)
    exec("def read(*args):\n    return False, 'unreachable'\n", module.__dict__)
    sys.modules[name] = module
    return module.read  # type: ignore[no-any-return]


async def test_a_child_that_never_starts_is_not_the_files_fault() -> None:
    with pytest.raises(IsolationUnavailable, match=r"^x.csv: cannot read the sheet in a "
                       r"separate process: the process did not start \(exit code 1\)$"):
        await run_isolated(parent_only("only_in_the_parent"), what="x.csv")
    with pytest.raises(IsolationUnavailable, match="cannot read the sheet in a separate process"):
        await run_isolated(lambda: 1)  # cannot even be sent to a child
    assert not issubclass(IsolationUnavailable, IsolationError)


# ---------------------------------------------------------------- the answer's allowlist


async def test_an_answer_with_other_classes_is_refused() -> None:
    with pytest.raises(IsolationError, match=r"its answer was refused .*pathlib") as err:
        await run_isolated(return_a_path)
    assert err.value.reason == "failed"


def test_unpickler_refuses_code() -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="is not allowed"):
        _Unpickler(io.BytesIO(pickle.dumps(("ok", Evil())))).load()


def test_unpickler_refuses_persistent_ids() -> None:
    """Nothing travels by a persistent id: a child that sends one is refused, not resolved."""
    class Named(pickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            return "os.environ" if obj == "x" else None

    buffer = io.BytesIO()
    Named(buffer).dump(("ok", "x"))
    with pytest.raises(pickle.UnpicklingError, match="persistent"):
        _Unpickler(io.BytesIO(buffer.getvalue())).load()


def test_limits() -> None:
    assert ReadLimits().memory_text == "1 GB" and ReadLimits().cpu_seconds == 60
    assert ReadLimits().wall == 180.0 and ReadLimits(wall_seconds=5).wall == 5
    assert ReadLimits(memory_mb=1536).memory_text == "1.5 GB"
    assert ReadLimits(memory_mb=300).memory_text == "300 MB"
    for bad in ({"memory_mb": 0}, {"cpu_seconds": 0}, {"wall_seconds": 0}):
        with pytest.raises(ValueError):
            ReadLimits(**bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the caps as settings


def test_the_read_caps_reach_the_inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--read-memory-mb`` and ``BULKSCHEDULE_READ_CPU_SECONDS`` become the inbox's
    `ReadLimits` (the upload page's: tests/test_web_load.py)."""
    from click.testing import CliRunner

    from bulkschedule.app.inbox import InboxResult
    from bulkschedule.cli import inbox as inbox_command
    from bulkschedule.cli.root import main

    seen: list[ReadLimits] = []

    async def fake_watch(*args: object, read_limits: ReadLimits, **kwargs: object
                         ) -> InboxResult:
        seen.append(read_limits)
        return InboxResult()

    monkeypatch.setattr(inbox_command, "watch_inbox", fake_watch)
    env = {k: None for k in os.environ if k.startswith(("BULKSCHEDULE_", "ZOHO_", "XDG_"))}
    env |= {"HOME": str(tmp_path / "home"), "ZOHO_ACCESS_TOKEN": "test-token",
            "BULKSCHEDULE_READ_CPU_SECONDS": "7"}
    result = CliRunner().invoke(main, ["inbox", str(tmp_path / "inbox"), "--read-memory-mb",
                                       "512", "--state", str(tmp_path / "state")], env=env)
    assert result.exit_code == 0, result.output
    assert seen == [ReadLimits(memory_mb=512, cpu_seconds=7)]


async def test_repeating_rows_and_holidays_cross_the_boundary() -> None:
    """Expansions and the Holidays lines are among the classes a Validation is made of."""
    options = {"today": TODAY}
    here = job.load(SAMPLES / "recurring.xlsx", **options)
    there = await run_isolated(load_sheet, SAMPLES / "recurring.xlsx", options)
    assert there.expansions == here.expansions and there.expansions
    assert there.table.holidays == here.table.holidays and there.table.holidays
    assert there.sessions == here.sessions
    assert {s.occurrence for s in there.sessions} > {1, 2}

"""Filesystem plumbing for ``bulkschedule inbox DIR``: which sheets are ready, where they go after.

Layout under DIR::

    incoming/   admins drop *.xlsx / *.csv here
    done/       sheets that were processed (sent, possibly with some rows failed)
    rejected/   sheets refused whole (all-or-nothing with validation errors), with their report
    results/    <name>.results.xlsx and <name>.summary.json for every processed sheet

The sending itself is the normal run pipeline (`bulkschedule.app.job`), so a sheet behaves the same
whether it comes in by ``run`` or by the inbox. What is here is everything that must hold for an
unattended job to be safe: never pick up a file that is still being written or is open in Excel,
never overwrite anything, never run twice at once, and never move a sheet out of ``incoming/``
before its results are on disk (`process_inbox`, one pass; `watch_inbox`, the passes of a
``--watch`` service). The CLI only renders what they report.

Importing this module loads the sending stack (`bulkschedule.app.job`); the CLI imports it only
for the ``inbox`` command. python_calamine is imported lazily, only to read an Instructions sheet.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import fcntl
import functools
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from bulkschedule.app import job
from bulkschedule.app.isolate import IsolationUnavailable, ReadLimits, load_sheet, run_isolated
from bulkschedule.app.logs import log_summary
from bulkschedule.app.results import write_report
from bulkschedule.core.constants import EXIT_CANNOT_START, EXIT_INCOMPLETE, EXIT_OK
from bulkschedule.core.errors import InboxBusy as InboxBusy  # the CLI and tests import it here
from bulkschedule.core.errors import JobError, ReadError
from bulkschedule.core.problems import Status
from bulkschedule.send.api import SendSettings
from bulkschedule.send.runner import Event
from bulkschedule.sheet.reader import read_holidays
from bulkschedule.sheet.schema import Validation
from bulkschedule.zoho.auth import TokenProvider

SHEET_SUFFIXES = frozenset({".xlsx", ".csv"})
LOCK_NAME = "inbox.lock"


@dataclass(frozen=True, slots=True)
class InboxPaths:
    """The four folders of an inbox root."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # accept str too

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def ensure(self) -> InboxPaths:
        """Create the four folders (and the root) if missing; returns self for chaining."""
        for folder in (self.incoming, self.done, self.rejected, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        return self


# --------------------------------------------------------------------------------------------
# which files are ready


def _is_ignored_name(name: str) -> bool:
    """Office owner files, LibreOffice lock files, hidden and temporary files.

    Excel and LibreOffice save by writing a temporary file and renaming it; copy tools (rsync,
    WinSCP, browsers) write under a hidden or ``.tmp``/``.part`` name and rename at the end. Only
    the final name is ever a candidate.
    """
    low = name.lower()
    return name.startswith(("~$", ".", "~")) or low.endswith(
        (".tmp", ".part", ".partial", ".crdownload", "#")
    )


def _open_elsewhere(path: Path, siblings: set[str]) -> bool:
    """True if Excel or LibreOffice has this workbook open (its owner/lock file is beside it).

    Excel's owner file is ``~$`` + the name; Word-style owner files replace the first two
    characters of long names instead, so both spellings are checked. LibreOffice writes
    ``.~lock.<name>#``. A workbook that is open may be saved again at any moment.
    """
    name = path.name
    return bool({f"~${name}", f"~${name[2:]}", f".~lock.{name}#"} & siblings)


def pending_sheets(paths: InboxPaths, now: float, stable_seconds: float = 30) -> list[Path]:
    """The sheets in ``incoming/`` that are ready, oldest first (mtime, then name).

    A sheet is ready when its name ends in .xlsx or .csv (any case), it is a regular file, it is
    not a lock/hidden/temp file, it is not open in Excel/LibreOffice, and neither its content nor
    its metadata changed in the last ``stable_seconds`` before ``now``.

    "Changed" is judged on max(mtime, ctime). mtime alone is not enough: ``cp -p``, rsync and
    Windows Explorer copies carry the *source's* old mtime onto a file that is still growing,
    but every write (and the final rename into incoming/) bumps ctime, which no program can set
    back. So a file whose size or mtime changed within the window is always skipped, in a single
    scan, with no state to keep between cron runs and no extra delay. A timestamp in the future
    (clock skew on a network share) also counts as "just changed", until the clock catches up.

    What this cannot see is a writer that stalls for longer than the window in mid-file; the
    documented remedy is to copy under a temporary name (``.name`` or ``name.tmp``) and rename into
    incoming/, which is atomic and which every copy tool above already does.
    """
    folder = paths.incoming
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    siblings = {e.name for e in entries}
    ready: list[tuple[float, str, Path]] = []
    for entry in entries:
        name = entry.name
        if _is_ignored_name(name) or Path(name).suffix.lower() not in SHEET_SUFFIXES:
            continue
        try:
            if not entry.is_file():
                continue
            st = entry.stat()
        except FileNotFoundError:  # moved away between listing and stat
            continue
        path = Path(entry.path)
        if _open_elsewhere(path, siblings):
            continue
        last_change = max(st.st_mtime, st.st_ctime)
        if now - last_change < stable_seconds:
            continue
        ready.append((st.st_mtime, name, path))
    ready.sort(key=lambda t: (t[0], t[1]))
    return [p for _, _, p in ready]


# --------------------------------------------------------------------------------------------
# moving without ever overwriting


def _stamp(now: float) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now))


def _candidates(name: str, now: float) -> list[str]:
    """``term.xlsx``, then ``term.20261127-030000.xlsx``, then ``...-2.xlsx``, ``-3`` ..."""
    p = Path(name)
    stem, suffix = p.stem, p.suffix
    stamped = f"{stem}.{_stamp(now)}"
    return [name, f"{stamped}{suffix}"] + [f"{stamped}-{n}{suffix}" for n in range(2, 1000)]


#: link() failures that mean "hard links are not possible here", not "something is wrong".
_NO_LINK_ERRNOS = frozenset(
    {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}
)


def _place(src: Path, dest: Path) -> bool:
    """Move ``src`` to ``dest`` only if ``dest`` does not exist; False if it does.

    ``os.rename`` would silently replace an existing file, and "check, then rename" races, so the
    destination is claimed atomically: a hard link (same filesystem) or an O_EXCL create (across
    filesystems, or where hard links are not supported) fails if the name is taken.
    """
    try:
        os.link(src, dest)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        os.close(fd)
        try:
            shutil.copy2(src, dest)  # what shutil.move does across filesystems
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
    src.unlink()
    return True


def move_unique(src: str | Path, dest_dir: str | Path, now: float) -> Path:
    """Move ``src`` into ``dest_dir`` under its own name, or a timestamped one if that is taken.

    ``now`` (epoch seconds, shown in local time) makes the name predictable in tests and equal to
    the run's start in production, so all files of one run share one stamp.
    """
    src, dest_dir = Path(src), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    for name in _candidates(src.name, now):
        dest = dest_dir / name
        if _place(src, dest):
            return dest
    raise FileExistsError(f"{dest_dir}: no free name for {src.name}")  # 1000 clashes in 1 s


def results_paths(
    paths: InboxPaths, sheet: str | Path, *, now: float | None = None
) -> tuple[Path, Path]:
    """``results/<stem>.results.xlsx`` and ``results/<stem>.summary.json`` for a sheet.

    With ``now``, if either name is already taken (the same sheet name delivered again another
    night) both get the same timestamp, so yesterday's results are never overwritten and the pair
    still matches. Without ``now`` the plain names are returned.
    """
    stem = Path(sheet).stem
    pair = (paths.results / f"{stem}.results.xlsx", paths.results / f"{stem}.summary.json")
    if now is None or not any(p.exists() for p in pair):
        return pair
    stamped = f"{stem}.{_stamp(now)}"
    for n in range(1, 1000):
        tag = stamped if n == 1 else f"{stamped}-{n}"
        pair = (paths.results / f"{tag}.results.xlsx", paths.results / f"{tag}.summary.json")
        if not any(p.exists() for p in pair):
            return pair
    raise FileExistsError(f"{paths.results}: no free name for {stem}")


def report_paths(moved_sheet: Path) -> tuple[Path, Path]:
    """Where the validation report of a rejected sheet goes: beside it in ``rejected/``,
    ``<stem>.report.xlsx`` (annotated sheet) and ``<stem>.report.json``. Call after
    `move_unique`, so a timestamped sheet name gives a matching report name."""
    stem = moved_sheet.stem
    return (
        moved_sheet.with_name(f"{stem}.report.xlsx"),
        moved_sheet.with_name(f"{stem}.report.json"),
    )


# --------------------------------------------------------------------------------------------
# one instance at a time


class InstanceLock:
    """A non-blocking exclusive ``flock`` on ``<state>/inbox.lock``.

    flock rather than a pid file: the kernel drops the lock when the process dies, however it
    dies (kill -9, OOM, power loss), so there is no stale lock to clean up by hand. The file
    itself stays; its content (the holder's pid) is only for the "already running" message.
    Keep the state folder on a local filesystem: flock over NFS/SMB is emulated or absent.

    Use ``acquire()`` -> bool, or ``with InstanceLock(state):`` which raises `InboxBusy`.
    """

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if free; False at once if another process (or object) holds it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}:
                return False
            raise
        self._fd = fd
        with contextlib.suppress(OSError):  # the pid is a courtesy; the lock is what counts
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def holder_pid(self) -> int | None:
        """The pid written by the current holder, if readable (for the message only)."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def __enter__(self) -> InstanceLock:
        if not self.acquire():
            raise InboxBusy(self.path, self.holder_pid())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


# --------------------------------------------------------------------------------------------
# the sheet's own Instructions

_AON_RE = re.compile(r"^\s*all[\s_-]*or[\s_-]*nothing\s*[:=]?\s*(.*?)\s*$", re.IGNORECASE)
_UPDATE_RE = re.compile(r"^\s*(?:apply[\s_-]*)?updates?\s*[:=]?\s*(.*?)\s*$", re.IGNORECASE)
_YES = frozenset({"yes", "y", "true", "on", "1", "x"})


@dataclass(frozen=True, slots=True)
class Instructions:
    """What a workbook's Instructions sheet asks of the inbox. Each is an opt-in: a sheet can
    ask for more care (all-or-nothing) or for its updates to be applied, never turn off what
    the inbox's configuration turns on."""

    all_or_nothing: bool = False
    update: bool = False


def read_instructions(workbook_path: str | Path) -> Instructions:
    """The options the workbook's "Instructions" sheet opts in to.

    The admin who prepares a term can decide, without access to the crontab, that a
    half-loaded term is worse than none (``all-or-nothing: yes``) or that the sessions whose
    row they changed are to be updated (``update: yes``; also ``apply updates: yes``).
    Recognised, in a sheet named Instructions (any case): one cell reading ``option: yes``
    (also ``=``, ``true``, ``on``; spaces or ``_`` instead of ``-``), or a cell naming the
    option with ``yes`` in the next non-empty cell to its right. CSV files, a workbook without
    that sheet, or one that cannot be read ask for nothing (the reader reports unreadable files
    properly; these are only opt-ins).
    """
    path = Path(workbook_path)
    if path.suffix.lower() not in {".xlsx", ".xlsm", ".xls", ".ods"}:
        return Instructions()
    try:
        from python_calamine import CalamineWorkbook

        workbook = CalamineWorkbook.from_path(str(path))
    except Exception:  # any unreadable workbook simply has no opt-in
        return Instructions()
    try:
        name = next((n for n in workbook.sheet_names if n.strip().lower() == "instructions"), None)
        if name is None:
            return Instructions()
        rows = workbook.get_sheet_by_name(name).to_python(skip_empty_area=False)
    except Exception:
        return Instructions()
    finally:
        with contextlib.suppress(Exception):
            workbook.close()
    return Instructions(all_or_nothing=_says_yes(rows, _AON_RE), update=_says_yes(rows, _UPDATE_RE))


def _says_yes(rows: list[list[Any]], option: re.Pattern[str]) -> bool:
    """Whether a cell sets ``option`` to yes, in the cell or in the next non-empty one."""
    for row in rows:
        cells = [str(c).strip() for c in row if c is not None and str(c).strip()]
        for i, cell in enumerate(cells):
            m = option.match(cell)
            if not m:
                continue
            answer = m.group(1) or (cells[i + 1] if i + 1 < len(cells) else "")
            if answer.strip().lower() in _YES:
                return True
    return False


def instructions_say_all_or_nothing(workbook_path: str | Path) -> bool:
    """True if the workbook's "Instructions" sheet opts in to all-or-nothing
    (`read_instructions`)."""
    return read_instructions(workbook_path).all_or_nothing


# --------------------------------------------------------------------------------------------
# one pass over the inbox

#: What became of a sheet (the ``status`` of its summary.json).
DONE = "done"  # sent (some rows may have failed); results written; moved to done/
REJECTED = "rejected"  # all-or-nothing and the sheet has errors; nothing sent; in rejected/
UNREADABLE = "unreadable"  # not a readable sheet; nothing sent; in rejected/ with .error.txt
INCOMPLETE = "incomplete"  # stopped before every row was tried; results written; left in incoming/
NOT_STARTED = "not started"  # credentials, network or disk stopped it; left in incoming/
#: How a sheet's changed rows get updated: the inbox's doors to `job.send`'s ``update``.
NOT_UPDATED = ("the inbox updates sessions only with --update, [inbox] update = true, or "
               "'update: yes' on the sheet's Instructions")



@dataclass(slots=True)
class SheetResult:
    """What one pass did with one sheet; rendered by the CLI and written as summary.json."""

    name: str  # the file name as it was in incoming/
    status: str  # one of DONE, REJECTED, UNREADABLE, INCOMPLETE, NOT_STARTED
    exit_code: int
    message: str = ""  # one line: the reason for anything but DONE
    moved_to: Path | None = None
    results_path: Path | None = None
    summary_path: Path | None = None
    report_path: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    errors: int = 0
    warnings: int = 0
    all_or_nothing: bool = False
    update: bool = False  # sessions whose row differs were updated (config or Instructions)
    started: float = 0.0
    finished: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary.json contract: no secrets, paths as text, times in local ISO 8601."""

        def when(t: float) -> str:
            return dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")

        return {
            "file": self.name,
            "status": self.status,
            "exit_code": self.exit_code,
            "message": self.message,
            "rows": self.rows,
            "counts": dict(self.counts),
            "problems": {"errors": self.errors, "warnings": self.warnings},
            "all_or_nothing": self.all_or_nothing,
            "update": self.update,
            "started": when(self.started),
            "finished": when(self.finished),
            "results": str(self.results_path) if self.results_path else None,
            "report": str(self.report_path) if self.report_path else None,
            "moved_to": str(self.moved_to) if self.moved_to else None,
        }


@dataclass(slots=True)
class InboxResult:
    """One pass: a result per sheet tried, and whether a stop signal cut the pass short."""

    sheets: list[SheetResult] = field(default_factory=list)
    stopped: bool = False

    @property
    def exit_code(self) -> int:
        """0 every sheet fully done (or none ready), 1 a row failed or a sheet was rejected,
        2 a sheet could not start (credentials, network, disk): the worst sheet decides."""
        return max((s.exit_code for s in self.sheets), default=EXIT_OK)


def _write_new_text(path: Path, text: str) -> None:
    """Create ``path`` with ``text``; never replace an existing file (``x`` mode fails on it)."""
    with path.open("x", encoding="utf-8") as fh:
        fh.write(text)


def _write_summary(result: SheetResult) -> None:
    if result.summary_path is None:
        return
    _write_new_text(result.summary_path, json.dumps(result.to_json(), indent=2) + "\n")


#: What the reading child returns for a sheet: what its Instructions ask for (all-or-nothing,
#: update: plain booleans, since the parent unpickles nothing but what a `Validation` is made
#: of), and its validation or the reader's one-line refusal.
SheetRead = tuple[tuple[bool, bool], Validation | str]
SheetReader = Callable[[Path], SheetRead]


def read_sheet(sheet: Path, holidays: Path | None = None) -> SheetRead:
    """What the capped child does with an inbox sheet (`isolate.run_isolated`): both the
    Instructions check and the validation parse the file, so both happen there. ``holidays``:
    the inbox's file of dates no repeating row has a session on (``[inbox] holidays``)."""
    asks = read_instructions(sheet)
    flags = (asks.all_or_nothing, asks.update)
    try:
        return flags, load_sheet(sheet, {"holidays": holidays} if holidays else None)
    except JobError as err:
        return flags, str(err)


@dataclass(slots=True)
class InboxPass:
    """What every sheet of one pass shares: where files go, how to send, and the pass's clock."""

    paths: InboxPaths
    send_settings: SendSettings
    tokens: Callable[[aiohttp.ClientSession], TokenProvider]
    start: float  # the pass's "now": every timestamp added to a clashing name uses it
    log: logging.Logger
    clock: Callable[[], float] = time.time
    all_or_nothing: bool = False
    update: bool = False
    stop: asyncio.Event | None = None
    on_event_factory: Callable[[str, int], Callable[[Event], None]] | None = None
    on_sheet: Callable[[SheetResult], None] | None = None
    read_limits: ReadLimits = field(default_factory=ReadLimits)
    reader: SheetReader = read_sheet  # run in the capped child (tests give their own)
    holidays: Path | None = None  # the inbox's holidays file, checked before each sheet

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()


async def process_inbox(
    paths: InboxPaths,
    send_settings: SendSettings,
    *,
    tokens: Callable[[aiohttp.ClientSession], TokenProvider],
    all_or_nothing: bool = False,
    update: bool = False,
    stable_seconds: float = 30.0,
    now: float | None = None,
    stop: asyncio.Event | None = None,
    on_event_factory: Callable[[str, int], Callable[[Event], None]] | None = None,
    on_sheet: Callable[[SheetResult], None] | None = None,
    logger: logging.Logger | None = None,
    clock: Callable[[], float] = time.time,
    read_limits: ReadLimits | None = None,
    reader: SheetReader = read_sheet,
    holidays: Path | None = None,
) -> InboxResult:
    """Process every ready sheet in ``incoming/`` once, oldest first. Call with the instance lock
    held (`InstanceLock`): two passes over the same folder would race for the same files.

    Per sheet (`process_sheet`): validate; with errors and all-or-nothing (``all_or_nothing`` or
    the workbook's Instructions), send nothing and move it to ``rejected/`` with
    ``<name>.report.xlsx`` and ``.report.json``; otherwise send the valid rows, write
    ``results/<name>.results.xlsx`` and ``<name>.summary.json``, and only then move the sheet to
    ``done/`` (so a crash at any point leaves it in ``incoming/`` and the next pass resumes it;
    the journal makes the resend duplicate-free). A sheet that cannot be read goes to
    ``rejected/`` with ``<name>.error.txt``, since no later pass could do better. So does one
    whose reading had to be stopped: each sheet is read in a child process capped by
    ``read_limits`` (memory, CPU time; see `bulkschedule.app.isolate`), so a hostile or broken
    file, even one that aborts the native reader, costs its own sheet and never the pass.

    A sheet stays in ``incoming/`` when it was not finished: a stop signal (status INCOMPLETE,
    results written for what was done), or a failure that is not the sheet's fault, such as
    credentials refused or the network down (NOT_STARTED). After NOT_STARTED the pass ends:
    every later sheet would fail the same way, and each attempt could spend one of Zoho's ten
    token mints per ten minutes. A stop signal also ends the pass after the current sheet.

    ``now`` (epoch seconds, default the clock) is the pass's start: the stability check and
    every timestamp added to a clashing name use it, so one pass's files share one stamp.
    Rows whose session differs from them (a results workbook edited and dropped in again) are
    updated only with ``update`` or when the workbook's Instructions ask for it (``update:
    yes``); otherwise they are reported ``changed`` and nothing of them is sent.
    ``on_event_factory(sheet_name, rows_to_send)`` gives the runner-event callback for a sheet
    (progress, log lines); ``on_sheet`` hears about each sheet when it is settled.
    ``holidays``: a file of dates no repeating row of any sheet has a session on (besides a
    workbook's own Holidays sheet); one that cannot be read leaves the sheet in ``incoming/``
    (not started: the pass ends), since it is the inbox's set-up and not the sheet at fault.
    """
    if holidays is not None and reader is read_sheet:  # a reader of one's own reads its own
        reader = functools.partial(read_sheet, holidays=holidays)
    run = InboxPass(paths, send_settings, tokens, start=clock() if now is None else now,
                    log=logger or logging.getLogger("bulkschedule"), clock=clock,
                    all_or_nothing=all_or_nothing, update=update, stop=stop,
                    on_event_factory=on_event_factory, on_sheet=on_sheet,
                    read_limits=read_limits or ReadLimits(), reader=reader,
                    holidays=holidays)
    paths.ensure()
    outcome = InboxResult()
    for sheet in pending_sheets(paths, run.start, stable_seconds):
        if run.stopping:
            outcome.stopped = True
            break
        result = await process_sheet(sheet, run)
        # credentials, network or disk: every later sheet would fail the same way
        ends_pass = result.exit_code == EXIT_CANNOT_START
        _settle(result, run, outcome.sheets)
        outcome.stopped = result.status == INCOMPLETE and run.stopping
        if ends_pass or outcome.stopped:
            break
    return outcome


async def process_sheet(sheet: Path, run: InboxPass) -> SheetResult:
    """Take one ready sheet through (the caller has checked it is stable) and say what became of
    it: rejected/ (unreadable, or all-or-nothing with errors), done/ (sent), or left in
    incoming/ (not started, incomplete). The result is not settled yet (see `_settle`)."""
    started = run.clock()
    if run.holidays is not None:
        try:
            read_holidays(run.holidays)  # the admin's own small file: read here
        except (ReadError, OSError) as err:
            result = SheetResult(sheet.name, DONE, EXIT_OK, all_or_nothing=run.all_or_nothing,
                                 started=started)
            why = err.strerror if isinstance(err, OSError) and err.strerror else err
            return _not_started(result, f"the inbox's holidays file: {why}", run)
    try:
        flags, read = await run_isolated(run.reader, sheet, limits=run.read_limits,
                                         what=str(sheet))
        asks = Instructions(*flags)
    except IsolationUnavailable as err:  # the machine's trouble, not the sheet's
        result = SheetResult(sheet.name, DONE, EXIT_OK, all_or_nothing=run.all_or_nothing,
                             update=run.update, started=started)
        return _not_started(result, str(err), run)
    except JobError as err:  # the child was stopped by a cap, or crashed (`IsolationError`)
        asks, read = Instructions(), str(err)
    aon = run.all_or_nothing or asks.all_or_nothing
    result = SheetResult(sheet.name, DONE, EXIT_OK, all_or_nothing=aon,
                         update=run.update or asks.update, started=started)
    if isinstance(read, str):
        return _unreadable(result, sheet, read, run)
    validation = read
    result.rows = validation.n_rows
    result.errors, result.warnings = validation.errors, validation.warnings
    if aon and (validation.fatal or validation.errors > 0):
        return _rejected(result, sheet, validation, run)
    return await _send(result, sheet, validation, run)


def _settle(result: SheetResult, run: InboxPass, settled: list[SheetResult]) -> None:
    """The sheet's last word: its end time, its summary.json (a summary that cannot be written
    makes it exit 2), the log's summary line and the caller's ``on_sheet``."""
    result.finished = run.clock()
    if result.summary_path is not None:
        try:
            _write_summary(result)
        except OSError as err:
            run.log.error("[%s] cannot write %s: %s", result.name, result.summary_path,
                          err.strerror or err)
            result.summary_path = None
            result.exit_code = max(result.exit_code, EXIT_CANNOT_START)
    settled.append(result)
    log_summary(run.log, result.counts, sheet=result.name)
    if run.on_sheet is not None:
        run.on_sheet(result)


def _unreadable(result: SheetResult, sheet: Path, reason: str, run: InboxPass) -> SheetResult:
    """Not a readable sheet: no later pass can do better, so it leaves incoming/ for rejected/
    with ``<name>.error.txt`` saying why. If it cannot be moved it stays (not started)."""
    result.status, result.exit_code, result.message = UNREADABLE, EXIT_INCOMPLETE, reason
    try:
        _, result.summary_path = results_paths(run.paths, sheet, now=run.start)
        result.moved_to = move_unique(sheet, run.paths.rejected, run.start)
        why = result.moved_to.with_name(f"{result.moved_to.stem}.error.txt")
        _write_new_text(why, reason + "\n")
        result.report_path = why
    except OSError as err:
        result.status, result.exit_code = NOT_STARTED, EXIT_CANNOT_START
        result.message = f"{reason}; and cannot move it to {run.paths.rejected}: " \
                         f"{err.strerror or err}"
    run.log.error("[%s] %s", sheet.name, result.message)
    return result


def _rejected(result: SheetResult, sheet: Path, validation: Validation,
              run: InboxPass) -> SheetResult:
    """All-or-nothing with errors: nothing sent; to rejected/ with its validation report."""
    result.status, result.exit_code = REJECTED, EXIT_INCOMPLETE
    result.message = (f"{validation.errors} errors and all-or-nothing applies: nothing "
                      "sent; fix the sheet (see its report) and drop it in again")
    counts = {"invalid": len(validation.error_rows) or validation.n_rows,
              "not sent": validation.valid}
    result.counts = {k: v for k, v in counts.items() if v}
    try:
        _, result.summary_path = results_paths(run.paths, sheet, now=run.start)
        result.moved_to = move_unique(sheet, run.paths.rejected, run.start)
        report_xlsx, report_json = report_paths(result.moved_to)
        write_report(report_xlsx, validation)
        _write_new_text(report_json, json.dumps(validation.to_json(), indent=2) + "\n")
        result.report_path = report_xlsx
    except OSError as err:
        result.exit_code = EXIT_CANNOT_START
        result.message = f"cannot file the rejected sheet: {err.strerror or err}"
        run.log.error("[%s] %s", sheet.name, result.message)
        return result
    run.log.warning("[%s] rejected: %s", sheet.name, result.message)
    return result


async def _send(result: SheetResult, sheet: Path, validation: Validation,
                run: InboxPass) -> SheetResult:
    """Send the valid rows and write the results workbook; then file the sheet by the outcome."""
    try:
        results_xlsx, summary_json = results_paths(run.paths, sheet, now=run.start)
    except OSError as err:
        result.status, result.exit_code = NOT_STARTED, EXIT_CANNOT_START
        result.message = f"cannot name the results files: {err}"
        return result
    result.results_path, result.summary_path = results_xlsx, summary_json
    on_event = (run.on_event_factory(sheet.name, validation.valid)
                if run.on_event_factory is not None else None)
    try:
        sent = await job.send(validation, run.send_settings, tokens=run.tokens,
                              results_path=results_xlsx, stop=run.stop, on_event=on_event,
                              update=result.update)
    except JobError as err:
        return _not_started(result, str(err), run)
    except OSError as err:
        return _not_started(result, f"cannot write the results workbook {results_xlsx}: "
                                    f"{err.strerror or err}", run)
    result.counts = dict(sent.counts)
    result.exit_code = sent.exit_code
    if sent.exit_code == EXIT_CANNOT_START:
        # Zoho refused the very first calls (token, scope, permission) and nothing was
        # created: not the sheet's fault, so it waits in incoming/ for fixed credentials.
        return _not_started(result, sent.halted or "nothing could be sent", run)
    unfinished = any(o.status == Status.PENDING for o in sent.outcomes.values())
    if unfinished or run.stopping:
        return _incomplete(result, sent, run)
    return _done(result, sheet, sent, run)


def _not_started(result: SheetResult, message: str, run: InboxPass) -> SheetResult:
    """Credentials, network or disk stopped it, not the sheet: it waits in incoming/."""
    result.status, result.exit_code, result.message = NOT_STARTED, EXIT_CANNOT_START, message
    # job.send writes the workbook even when it fails; keep the path only if it exists.
    if result.results_path is not None and not result.results_path.exists():
        result.results_path = None
    run.log.error("[%s] not processed, left in incoming/: %s", result.name, result.message)
    return result


def _incomplete(result: SheetResult, sent: job.JobResult, run: InboxPass) -> SheetResult:
    """A stop (or a fatal answer) came mid-sheet: results written, the rest for the next pass."""
    result.status = INCOMPLETE
    result.exit_code = max(sent.exit_code, EXIT_INCOMPLETE)
    result.message = sent.halted or "stopped before every row was tried; left in " \
                                    "incoming/ for the next run"
    run.log.warning("[%s] incomplete, left in incoming/: %s", result.name, result.message)
    return result


def _done(result: SheetResult, sheet: Path, sent: job.JobResult, run: InboxPass) -> SheetResult:
    """Every row tried, results on disk: only now does the sheet move to done/."""
    try:
        result.moved_to = move_unique(sheet, run.paths.done, run.start)
    except OSError as err:
        result.exit_code = EXIT_CANNOT_START
        result.message = f"sent, but cannot move it to {run.paths.done}: {err.strerror or err}"
        run.log.error("[%s] %s", sheet.name, result.message)
        return result
    if sent.exit_code != EXIT_OK:
        result.message = "some rows were not created; see the results workbook"
        differ = sum(o.status == Status.CHANGED for o in sent.outcomes.values())
        if differ:
            result.message += (f" ({differ} {'row differs' if differ == 1 else 'rows differ'} "
                               f"from {'its session' if differ == 1 else 'their sessions'} and "
                               f"{'was' if differ == 1 else 'were'} not updated: {NOT_UPDATED})")
    return result


async def watch_inbox(
    paths: InboxPaths,
    send_settings: SendSettings,
    *,
    tokens: Callable[[aiohttp.ClientSession], TokenProvider],
    watch: float | None = None,
    stop: asyncio.Event,
    **pass_options: Any,
) -> InboxResult:
    """One pass (``watch`` None), or a pass every ``watch`` seconds until ``stop``.

    Returns the pass that ended it: one that a stop cut short (``stopped``), or with ``watch`` one
    where a sheet could not start (exit code 2: credentials, network or disk, for the service
    manager to restart or alert on). Stopped between passes, nothing was cut short: the result is
    an empty pass (exit code 0). ``pass_options`` go to `process_inbox` as they are.
    """
    while True:
        result = await process_inbox(paths, send_settings, tokens=tokens, stop=stop,
                                     **pass_options)
        if result.stopped or watch is None or result.exit_code == EXIT_CANNOT_START:
            return result
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=watch)
        if stop.is_set():
            return InboxResult()

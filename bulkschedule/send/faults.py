"""What a failing state folder or journal means, said in one line: what is wrong, with which file,
and what the operator does about it.

The journal is the only protection against creating a session twice, so it is never repaired,
replaced or deleted here: a file that cannot be one is refused *before* SQLite touches it (SQLite
would otherwise create the ``-wal`` and ``-shm`` files beside it, or write to a file it takes for a
new database), and any error SQLite raises later becomes a `StateError` that stops the run. Pure
functions and read-only checks; nothing here writes.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from bulkschedule.core.errors import StateError

__all__ = ["JournalBusy", "check_folder", "check_journal_file", "state_error"]

#: What to do with a journal that cannot be read. Moving it aside keeps the evidence. A new journal
#: does not know what the old one recorded; `bulkschedule run` finds it in Zoho anyway, because it
#: lists the sessions of every module it sends to before sending (issue 11's online stage, which
#: ``--offline``, the inbox and the upload page skip: docs/duplicate-protection.md).
RECOVER = (
    "Move it aside (keep it), then send the sheet with `bulkschedule run`: the next run lists "
    "what Zoho already holds before sending, so nothing earlier runs created is sent again "
    "(not with --offline, the inbox or the upload page, which do not list first)"
)
#: What to do after the journal failed in the middle of a run.
RERUN = (
    "Run the same sheet again once that is fixed: rows already created are skipped, and rows "
    "left in flight are looked up in Zoho before anything is sent again"
)

_MAGIC = b"SQLite format 3\x00"
_HEADER = 100  # bytes of the database header

# SQLite's primary result codes (the low byte of ``sqlite_errorcode``) that `_kind` tells apart.
_BUSY, _LOCKED, _CORRUPT, _FULL, _NOTADB = 5, 6, 11, 13, 26


class JournalBusy(StateError):
    """Another process holds the journal's write lock (its transaction outlasted the wait)."""


def check_folder(folder: Path) -> None:
    """Make sure the state folder exists and can be written; a `StateError` naming it if not.

    Checked before the journal is opened so the operator reads about the folder, not about a file
    SQLite failed to create in it (``os.access`` also sees a read-only file system).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise _folder_error(folder, "it is a file, not a folder") from None
    except OSError as err:
        raise _folder_error(folder, _reason(err)) from err
    if not os.access(folder, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only_fs(folder) else "permission denied"
        raise _folder_error(folder, why)


def check_journal_file(path: Path) -> None:
    """Refuse, untouched, a journal that cannot be one: a folder in its place, a file that
    cannot be read, one that is not an SQLite database, or one cut short.

    A missing or empty file is fine (SQLite starts a new journal). The length is checked against
    the page count in the header only when no write-ahead log is beside it: a checkpoint cut short
    by a crash leaves the file shorter than its header says while the log still holds the pages.
    """
    try:
        with path.open("rb") as f:
            header = f.read(_HEADER)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise damaged(path, "it is a folder, not a file") from None
    except OSError as err:
        raise damaged(path, f"it cannot be read: {_reason(err)}") from err
    if not header:
        return
    if len(header) < _HEADER or not header.startswith(_MAGIC):
        raise damaged(path, "it is not an SQLite database (damaged, or another file in its place)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    size_valid = header[24:28] == header[92:96]  # SQLite's own test for the in-header size
    if size_valid and pages and size < pages * page_size and not _has_log(path):
        raise damaged(path, f"it is cut short ({size} bytes of {pages * page_size})")


def damaged(path: Path, what: str) -> StateError:
    """A journal that cannot be read: nothing was sent, and how to recover."""
    return StateError(f"cannot read the journal {path}: {_one_line(what)}; nothing was sent. "
                      f"{RECOVER}", path=path)


def state_error(exc: BaseException, path: Path, *, running: bool = False) -> StateError:
    """``exc`` (an error SQLite or the file system raised about the journal at ``path``) as one
    line for the operator. ``running``: it happened in the middle of a run (which then stops)."""
    if isinstance(exc, StateError):
        return exc
    kind = _kind(exc)
    folder = path.parent
    if kind == "busy":
        return JournalBusy(
            f"the journal {path} is locked by another process (a write transaction held longer "
            f"than the wait); {_stopped(running)} Run again once that process has finished; a "
            "process stuck in a write transaction (an open `sqlite3` shell?) must be stopped",
            path=path)
    if kind == "full":
        return StateError(f"cannot write the journal {path}: the disk is full; "
                          f"{_stopped(running)} Free some space. {RERUN}", path=path)
    if kind == "damaged":
        if not running:
            return damaged(path, f"it is damaged ({_detail(exc)})")
        return StateError(f"the journal {path} is damaged ({_detail(exc)}); {_stopped(running)} "
                          f"{RECOVER}", path=path)
    if not os.access(folder, os.W_OK | os.X_OK):
        return _folder_error(folder, _detail(exc), running=running)
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return StateError(f"cannot write the journal {path}: permission denied; "
                          f"{_stopped(running)} Give the user running bulkschedule read and "
                          f"write access to it. {RERUN}", path=path)
    advice = RERUN if running else f"Check the file and its disk; if it is damaged: {RECOVER}"
    return StateError(f"cannot use the journal {path}: {_detail(exc)}; {_stopped(running)} "
                      f"{advice}", path=path)


# -- helpers -------------------------------------------------------------------------------------


def _kind(exc: BaseException) -> str:
    """``busy``, ``full``, ``damaged`` or ``other``: by SQLite's code when it gave one, else by
    its message (an error raised by hand, as the tests inject, carries no code)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc).lower()
    if primary in (_BUSY, _LOCKED) or (primary is None and "locked" in text):
        return "busy"
    if (primary == _FULL or (primary is None and "disk is full" in text)
            or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))):
        return "full"
    if primary in (_CORRUPT, _NOTADB) or (primary is None and (
            "malformed" in text or "not a database" in text)):
        return "damaged"
    return "other"


def _stopped(running: bool) -> str:
    return ("the run stopped at once (every row sent is in the journal; rows not sent are "
            "pending)." if running else "nothing was sent.")


def _folder_error(folder: Path, why: str, *, running: bool = False) -> StateError:
    return StateError(
        f"cannot write the state folder {folder}: {why}; {_stopped(running)} Make it writable for "
        "the user running bulkschedule, or choose another one with --state or BULKSCHEDULE_STATE "
        "(the journal must stay with the folder: moving it elsewhere forgets what was created)",
        path=folder)


def _reason(err: OSError) -> str:
    """``permission denied``: the system's words without the errno and the path."""
    return err.strerror.lower() if err.strerror else str(err)


def _detail(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return _reason(exc)
    return _one_line(str(exc)) or type(exc).__name__


def _one_line(text: str) -> str:
    """SQLite's reports span lines (``*** in database main ***`` then a line per problem)."""
    return " ".join(text.replace("*** in database main ***", "").split())


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False


def _has_log(path: Path) -> bool:
    """Whether a non-empty write-ahead log (or rollback journal) lies beside ``path``."""
    for suffix in ("-wal", "-journal"):
        try:
            if os.stat(f"{path}{suffix}").st_size > 0:
                return True
        except OSError:
            continue
    return False


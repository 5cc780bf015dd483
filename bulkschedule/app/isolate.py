"""Read and validate a sheet in a child process, so that no file can take the caller down.

Why: a 2 KB workbook that declares a sheet of 16,384 x 1,048,576 cells makes the native reader ask
for 512 GB and abort the process (SIGABRT: nothing Python can catch), and a 1 MB workbook of
shared strings takes 24 GB. Where files come from others (the inbox, the upload page) each one is
read in a child with a cap on its address space (``RLIMIT_AS``) and its CPU time
(``RLIMIT_CPU``); whatever stops the child becomes a one-line `IsolationError` in the caller
("term.xlsx: the sheet could not be read safely: it needed more than 1 GB of memory").

How: multiprocessing's ``forkserver``. A server process imports pandas, pandera and the reader once,
on first use (about 0.6 s); each read is then a fork of that server (measured: about 35 ms on top
of the read itself, against 0.7 s for ``spawn`` or 0.8 s for a ``python -m`` subprocess, which
import pandas for every sheet). The children are forks of that clean server, never of the caller,
so they inherit none of its threads, sockets, locks or event loop; and they ignore SIGINT and
SIGTERM (Ctrl-C and ``systemctl stop`` reach the whole process group): stopping is the caller's
decision, and a read is bounded by its caps anyway. As with any multiprocessing start method but
``fork``, a script that calls this must guard its top level with ``if __name__ == "__main__":``
(the console script and ``python -m bulkschedule`` do).

The answer comes back pickled, and is unpickled with an allowlist of the classes a `Validation`
is made of (`_Unpickler`): a child whose reader a file managed to subvert can still hand back
only data, never code for the caller to run. The column spec, which both sides already hold,
travels as a reference to `sheet.columns.SPEC` (`Spec.__reduce__`), not as its contents.

Every door that reads someone else's file uses this one module (the inbox, the upload page): the
forkserver and its preload list are process-wide, so there is one of each. A `ChildGroup` lets a
server kill every read it started when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import os
import pickle
import resource
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal, TypeVar

from bulkschedule.app import job
from bulkschedule.core.errors import JobError, ReadError
from bulkschedule.sheet.schema import Validation

__all__ = ["ChildGroup", "IsolationError", "IsolationUnavailable", "ReadLimits", "load_isolated",
           "load_sheet", "run_isolated", "warm"]

T = TypeVar("T")

#: Why a read was given up: a cap (memory, CPU time, wall-clock time), a crash of the reader
#: (killed by a signal, or gone without an answer), or an exception it did not expect.
Reason = Literal["memory", "cpu", "time", "crash", "failed"]

#: What the forkserver imports once, so each child starts with them loaded. ``__main__`` too (the
#: multiprocessing default): a child prepares itself by importing the caller's main script unless
#: the server already has, which would cost every read the import of the CLI.
PRELOAD = ("__main__", "bulkschedule.app.job", "bulkschedule.app.isolate", "pandera.pandas",
           "python_calamine")

#: What a native reader prints when an allocation fails before it aborts (Rust; C++).
_OUT_OF_MEMORY_MARKS = ("memory allocation of", "std::bad_alloc")
_STDERR_TAIL = 8192  # bytes of the child's stderr looked at, from the end
_FILE_SIZE_CAP = 64 << 20  # the child writes nothing but its stderr: a flood of warnings stops here
_CPU_GRACE = 5  # seconds between SIGXCPU (soft limit) and SIGKILL (hard limit)
_EXIT_GRACE = 5.0  # seconds a child that answered (or closed its end) gets to exit
_STARTING = threading.Lock()  # multiprocessing's start is not thread-safe, and reads run in threads


class IsolationError(JobError):
    """The child reading a sheet was stopped by a cap, crashed, or failed unexpectedly.

    A `JobError`, so callers that already handle an unreadable sheet handle this too; ``str()`` is
    one line naming the file and the reason, ``reason`` the kind (for tests and the web page),
    ``why`` the reason in words without the file ("it needed more than 1 GB of memory").
    """

    def __init__(self, message: str, reason: Reason, why: str = "") -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.why = why or message


class IsolationUnavailable(JobError):
    """No child could be started to read in (cannot fork, or the child died before running any of
    our code): the machine's trouble, not the sheet's, so the inbox leaves the sheet where it is."""


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """The caps on one read. ``wall_seconds`` (default: three times ``cpu_seconds``) catches a
    child that waits without computing, which the CPU cap cannot see."""

    memory_mb: int = 1024
    cpu_seconds: int = 60
    wall_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.memory_mb < 1 or self.cpu_seconds < 1:
            raise ValueError("memory_mb and cpu_seconds must be at least 1")
        if self.wall_seconds is not None and self.wall_seconds <= 0:
            raise ValueError("wall_seconds must be positive")

    @property
    def wall(self) -> float:
        return self.wall_seconds if self.wall_seconds is not None else 3.0 * self.cpu_seconds

    @property
    def memory_text(self) -> str:
        """``1 GB``, ``1.5 GB``, ``512 MB``: the cap as the messages show it."""
        if self.memory_mb < 1024:
            return f"{self.memory_mb} MB"
        return f"{self.memory_mb / 1024:g} GB"


# --------------------------------------------------------------------------------------------
# the sheet, read in a child


async def load_isolated(
    sheet: str | Path,
    *,
    limits: ReadLimits | None = None,
    sheet_name: str | None = None,
    course: str | None = None,
    batch: str | None = None,
    module: str | None = None,
    month_first: bool = False,
    today: dt.date | None = None,
) -> Validation:
    """`job.load` in a capped child: the same `Validation`, or a `JobError` (the reader's own
    one-line refusal, or an `IsolationError` when the child was stopped or failed)."""
    options = {"sheet_name": sheet_name, "course": course, "batch": batch, "module": module,
               "month_first": month_first, "today": today}
    validation: Validation = await run_isolated(load_sheet, sheet, options, limits=limits,
                                                what=str(sheet))
    return validation


def load_sheet(sheet: str | Path, options: dict[str, Any] | None = None) -> Validation:
    """In the child: `job.load`, with the valid rows built there, under the caps (not lazily
    later in the caller), which also leaves nothing but plain data to send back."""
    validation = job.load(sheet, **(options or {}))
    validation.sessions  # noqa: B018 - builds the lazily parsed rows now
    return validation


# --------------------------------------------------------------------------------------------
# any function, in a child


async def run_isolated(
    func: Callable[..., T],
    *args: Any,
    limits: ReadLimits | None = None,
    what: str = "the sheet",
    group: ChildGroup | None = None,
) -> T:
    """``func(*args)`` in a capped child; its result, or the `JobError` it raised (as a
    `JobError` with the same message), or an `IsolationError` saying why there is no result.

    ``func`` and its result must pickle, and the result may contain only the classes a
    `Validation` is made of. ``what`` starts every message (the file name). Cancelling the
    caller kills the child, and the cancellation goes on only once the child is gone (so a
    server's client that went away leaves no process behind). ``group`` lets its owner kill
    the child too (`ChildGroup.kill_all`: a server that stops).
    """
    child = _Child(func, args, limits or ReadLimits(), what)
    if group is not None:
        group.live.add(child)
    running = asyncio.ensure_future(asyncio.to_thread(child.run))
    try:
        answer = await asyncio.shield(running)
    except asyncio.CancelledError:
        child.kill()
        await asyncio.wait({running})  # killed: the thread reaps it at once
        if not running.cancelled():
            running.exception()  # it is the cancellation that is reported, not this
        raise
    finally:
        if group is not None:
            group.live.discard(child)
    result: T = answer
    return result


class ChildGroup:
    """The children a caller has running, so that all can be killed at once (a server that
    stops: each of their callers gets an `IsolationError`, reason "failed")."""

    def __init__(self) -> None:
        self.live: set[_Child] = set()

    def __len__(self) -> int:
        return len(self.live)

    def kill_all(self) -> None:
        for child in list(self.live):
            child.kill()


async def warm() -> None:
    """Start the forkserver now (its imports take about a second), so that the first read
    does not wait for them. Never fails: a forkserver that cannot start is the first read's
    `IsolationUnavailable`."""
    with contextlib.suppress(JobError):
        await run_isolated(_ready, what="warm-up")


def _ready() -> bool:
    return True


class _Child:
    """One child process, and how another thread stops it."""

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], limits: ReadLimits,
                 what: str) -> None:
        self.func, self.args, self.limits, self.what = func, args, limits, what
        self._lock = threading.Lock()
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._reaped = False  # once joined, its pid may belong to another process: no kill
        self._killed: Reason | Literal["cancelled"] | None = None

    def kill(self, why: Reason | Literal["cancelled"] = "cancelled") -> None:
        with self._lock:
            self._killed = self._killed or why
            if self._proc is not None and not self._reaped:
                self._proc.kill()

    def run(self) -> Any:
        """Start the child, wait for its answer (blocking: call in a worker thread), decode it."""
        ctx = _context()
        receive, send = ctx.Pipe(duplex=False)
        fd, stderr_path = tempfile.mkstemp(prefix="bulkschedule-read-", suffix=".stderr")
        os.close(fd)
        try:
            proc = self._start(ctx, send, stderr_path)
            deadline = time.monotonic() + self.limits.wall
            started = self._next(receive, deadline) is not None  # the child's hello
            data = self._next(receive, deadline) if started else None
            # it has answered or gone: its exit status follows (from the forkserver) at once
            proc.join(max(_EXIT_GRACE, deadline - time.monotonic()))
            if proc.exitcode is None:  # answered, but does not exit
                self.kill("time")
                proc.join()
            with self._lock:
                self._reaped = True
            if data is not None:
                return self._decode(data)
            if not started and self._killed is None:  # never reached our code: not the file
                raise IsolationUnavailable(
                    f"{self.what}: cannot read the sheet in a separate process: the process "
                    f"did not start (exit code {proc.exitcode})")
            raise self._why_no_answer(proc.exitcode, _tail(stderr_path))
        finally:
            receive.close()
            Path(stderr_path).unlink(missing_ok=True)

    def _start(self, ctx: multiprocessing.context.ForkServerContext, send: Connection,
               stderr_path: str) -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(target=_child_main, name="bulkschedule-read", daemon=True,
                           args=(send, self.func, self.args, self.limits, stderr_path))
        try:
            with _STARTING:  # the first one also starts the forkserver: not under self._lock
                proc.start()
        except Exception as err:  # cannot fork, cannot pickle the call, no forkserver
            raise IsolationUnavailable(
                f"{self.what}: cannot read the sheet in a separate process: "
                f"{_one_line(err)}") from err
        finally:
            send.close()
        with self._lock:
            self._proc = proc
            cancelled = self._killed is not None
        if cancelled:  # cancelled while it was starting
            proc.kill()
        return proc

    def _next(self, receive: Connection, deadline: float) -> bytes | None:
        """The child's next message, or None if it died (or hit the wall-clock cap) first."""
        if not receive.poll(max(0.0, deadline - time.monotonic())):  # data, or the child's end
            self.kill("time")
            return None
        try:
            return receive.recv_bytes()
        except (EOFError, OSError):
            return None

    def _decode(self, data: bytes) -> Any:
        try:
            kind, value = _Unpickler(io.BytesIO(data)).load()
        except Exception as err:  # an answer that is not what a child of ours sends
            raise self._error("failed", f"its answer was refused ({_one_line(err)})") from None
        if kind == _OK:
            return value
        if kind == _REFUSED:
            raise JobError(str(value))
        if kind == _MEMORY:
            raise self._error("memory", f"it needed more than {self.limits.memory_text} of memory")
        raise self._error("failed", f"the reader failed: {value}")

    def _why_no_answer(self, exitcode: int | None, stderr: str) -> IsolationError:
        if self._killed == "time":
            return self._error("time", f"it took longer than {self.limits.wall:g} s")
        if self._killed == "cancelled":
            return self._error("failed", "it was cancelled")
        if exitcode is not None and exitcode < 0:
            sig = _signal_name(-exitcode)
            if -exitcode == signal.SIGXCPU:
                return self._error(
                    "cpu", f"it needed more than {self.limits.cpu_seconds} s of CPU time")
            if any(mark in stderr for mark in _OUT_OF_MEMORY_MARKS):
                return self._error(
                    "memory", f"it needed more than {self.limits.memory_text} of memory "
                    f"(the reader aborted: {sig})")
            return self._error("crash", f"the reader crashed ({sig})")
        return self._error("crash", f"the reader stopped without an answer (exit code {exitcode})")

    def _error(self, reason: Reason, why: str) -> IsolationError:
        return IsolationError(f"{self.what}: the sheet could not be read safely: {why}", reason,
                              why)


def _context() -> multiprocessing.context.ForkServerContext:
    """The forkserver context, preloaded (the server itself starts on the first read)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def _tail(path: str) -> str:
    """The end of what the child wrote to stderr (a native reader's last words)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - _STDERR_TAIL))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# inside the child

_OK, _REFUSED, _MEMORY, _FAILED = "ok", "refused", "memory", "failed"


def _child_main(send: Connection, func: Callable[..., Any], args: tuple[Any, ...],
                limits: ReadLimits, stderr_path: str) -> None:
    """The child's whole life: say hello, confine itself, run ``func``, send one answer, exit."""
    send.send_bytes(b"")  # it got this far: from now on, whatever happens is the file's doing
    _confine(limits, stderr_path)
    try:
        data = _answer(func, args)
    except MemoryError:  # pickling the answer needed more than is left
        data = pickle.dumps((_MEMORY, ""))
    send.send_bytes(data)
    send.close()


def _answer(func: Callable[..., Any], args: tuple[Any, ...]) -> bytes:
    try:
        payload: tuple[str, Any] = (_OK, func(*args))
    except (JobError, ReadError) as err:  # the reader's own refusal: its message as it is
        payload = (_REFUSED, str(err))
    except MemoryError:
        payload = (_MEMORY, "")
    except BaseException as err:  # a reader bug becomes a message, not a traceback
        payload = (_FAILED, _one_line(err))
    try:
        return _dumps(payload)
    except MemoryError:
        raise
    except Exception as err:  # an answer that cannot be pickled: a bug, said in one line
        return _dumps((_FAILED, f"its answer could not be sent back ({_one_line(err)})"))


def _dumps(payload: tuple[str, Any]) -> bytes:
    buffer = io.BytesIO()
    pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(payload)
    return buffer.getvalue()


def _confine(limits: ReadLimits, stderr_path: str) -> None:
    """Ignore stop signals (the caller decides), keep stderr for the caller, set the caps."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd = os.open(stderr_path, os.O_WRONLY | os.O_TRUNC)
    os.dup2(fd, 2)
    os.close(fd)
    _lower(resource.RLIMIT_CORE, 0, 0)  # an abort leaves no core file behind
    _lower(resource.RLIMIT_FSIZE, _FILE_SIZE_CAP, _FILE_SIZE_CAP)
    _lower(resource.RLIMIT_AS, limits.memory_mb << 20, limits.memory_mb << 20)
    _lower(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + _CPU_GRACE)


def _lower(kind: int, soft: int, hard: int) -> None:
    """Set a limit, never above one the system (``ulimit``) already imposes."""
    old_soft, old_hard = resource.getrlimit(kind)
    if old_hard != resource.RLIM_INFINITY:
        hard = min(hard, old_hard)
    soft = min(soft, hard) if old_soft == resource.RLIM_INFINITY else min(soft, hard, old_soft)
    resource.setrlimit(kind, (soft, hard))


# --------------------------------------------------------------------------------------------
# the answer, taken back

class _Unpickler(pickle.Unpickler):
    """Only the classes a `Validation` is made of: a pickle is a program, and this one was
    written by a process that has just read a file from someone else."""

    ALLOWED = frozenset({
        ("bulkschedule.sheet.schema", "Validation"),
        ("bulkschedule.sheet.schema", "SessionRow"),
        ("bulkschedule.sheet.schema", "Expansion"),
        ("bulkschedule.sheet.reader", "RawTable"),
        ("bulkschedule.sheet.reader", "HolidayLine"),
        ("bulkschedule.sheet.reader", "Cells"),
        ("bulkschedule.sheet.columns", "HeaderMap"),
        ("bulkschedule.sheet.columns", "SPEC"),
        ("bulkschedule.core.problems", "Problem"),
        ("datetime", "date"),
        ("datetime", "time"),
        ("datetime", "datetime"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        *((f"numpy.{core}.multiarray", "_reconstruct") for core in ("core", "_core")),
        *((f"numpy.{core}.multiarray", "scalar") for core in ("core", "_core")),
        *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)


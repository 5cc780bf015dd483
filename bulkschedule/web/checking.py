"""Checking uploads under load: a few at a time, each in a child process that can be killed.

Why a child process: reading a sheet is native code (a workbook reader) and pandas, neither of
which can be interrupted from Python. In a thread, a check goes on after its client has gone,
competes with the event loop for the GIL (the page stops answering), and a reader that aborts
takes the server down with it. In a child it is killed when the client disconnects or the server
stops, it runs under a memory and CPU-time cap, and a crash is one refused upload.

Children come from a fork server that has already imported the reader and pandas, so each
check starts in milliseconds instead of re-importing them (about a second).

`Gate` bounds the work: at most ``slots`` checks run at once, at most ``queue`` more uploads
wait (receiving or queued), and anything beyond is refused at once (503) instead of piling up.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from bulkschedule.web.access import Refused

if sys.platform != "win32":
    import resource

# Backstops, not budgets: a 60,000-row sheet (10 MB) takes about 15 s of CPU and 300 MB to
# check and annotate. A check that exceeds them is refused; the server carries on.
CHILD_MEMORY = 4 * 1024**3  # address space of one check, in bytes (then MemoryError)
CHILD_CPU = 300  # CPU seconds of one check (then SIGXCPU)
#: Imported once by the fork server, so that every check starts with them loaded.
PRELOAD = ["bulkschedule.web.uploads", "pandera.pandas", "python_calamine", "openpyxl"]


class Full(Exception):
    """Every check slot and queue place is taken: answer 503 and let the client retry."""


class ChildFailed(Exception):
    """The child ended without a result: killed, crashed, over its caps, or an error.

    ``reason`` is for the page (no path, no internals); ``detail`` is for the log.
    """

    def __init__(self, exitcode: int | None, reason: str = "", detail: str = "") -> None:
        self.exitcode = exitcode
        if not reason:
            if exitcode == -signal.SIGXCPU:
                reason = "it takes longer than a check may (the CPU-time limit)"
            elif exitcode is not None and exitcode < 0:
                reason = (f"the reader stopped unexpectedly "
                          f"({signal.Signals(-exitcode).name})")
            else:
                reason = "the check ended unexpectedly"
        self.reason = reason
        self.detail = detail or reason
        super().__init__(self.detail)


class Gate:
    """At most ``slots`` checks at once and ``queue`` more admitted; the rest are refused.

    `admit` counts a request from its first byte (an upload being received holds a queue place,
    so a burst of large uploads is refused before it fills the disk); `slot` is a check itself.
    """

    def __init__(self, slots: int, queue: int) -> None:
        if slots < 1 or queue < 0:
            raise ValueError("a gate needs at least one slot and a queue of zero or more")
        self.slots = slots
        self.queue = queue
        self.admitted = 0
        self.running = 0
        self._semaphore = asyncio.Semaphore(slots)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        if self.admitted >= self.slots + self.queue:
            raise Full(f"{self.admitted} checks already running or waiting")
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._semaphore:
            self.running += 1
            try:
                yield
            finally:
                self.running -= 1


_Context = ForkServerContext | SpawnContext
_context: list[_Context] = []


def context() -> _Context:
    """The fork server (or, where there is none, spawn), with the reader preloaded."""
    if not _context:
        if "forkserver" in multiprocessing.get_all_start_methods():
            forkserver = multiprocessing.get_context("forkserver")
            forkserver.set_forkserver_preload(PRELOAD)
            _context.append(forkserver)
        else:  # pragma: no cover - Windows
            _context.append(multiprocessing.get_context("spawn"))
    return _context[0]


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...], memory: int,
           cpu: int) -> None:
    """In the child: cap it, run ``fn``, send back one small answer."""
    if sys.platform != "win32":
        with contextlib.suppress(ValueError, OSError):  # a lower hard limit already applies
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    try:
        answer: tuple[Any, ...] = ("ok", fn(*args))
    except Refused as refused:
        answer = ("refused", refused.status, refused.message)
    except MemoryError:
        answer = ("failed", "it needs more memory than a check may use", "MemoryError")
    except BaseException as err:  # reported to the parent, which logs it
        answer = ("failed", "an internal error (see the server log)",
                  f"{type(err).__name__}: {err}")
    conn.send(answer)
    conn.close()


class Children:
    """The checks running in child processes, so that a shutdown can kill them all."""

    def __init__(self, *, memory: int = CHILD_MEMORY, cpu: int = CHILD_CPU) -> None:
        self.memory = memory
        self.cpu = cpu
        self.live: set[BaseProcess] = set()
        self._starting = threading.Lock()  # multiprocessing's start is not thread-safe

    async def run(self, fn: Callable[..., Any], *args: Any,
                  on_start: Callable[[BaseProcess], None] | None = None) -> Any:
        """``fn(*args)`` in a child; its (small, picklable) result.

        `Refused` raised in the child is raised here; a child that dies or fails raises
        `ChildFailed`. If the caller is cancelled (its client went away, the server stops), the
        child is killed at once.
        """
        ctx = context()
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(sender, fn, args, self.memory, self.cpu),
                           daemon=True, name="bulkschedule-check")
        try:
            await self._start(proc)
            sender.close()  # the child has its own end: EOF here once it is gone
            self.live.add(proc)
            if on_start is not None:
                on_start(proc)
            try:
                await _ended(proc.sentinel)
            except BaseException:
                proc.kill()
                raise
            finally:
                proc.join(5.0)
                self.live.discard(proc)
            answer = _answer(receiver)
            exitcode = proc.exitcode
        finally:
            receiver.close()
            sender.close()
        if answer is None:
            raise ChildFailed(exitcode)
        if answer[0] == "refused":
            raise Refused(answer[1], answer[2])
        if answer[0] == "failed":
            raise ChildFailed(exitcode, answer[1], answer[2])
        return answer[1]

    async def _start(self, proc: BaseProcess) -> None:
        """Start ``proc`` in a thread: the first start waits for the fork server to import the
        reader and pandas (seconds), which must not stall the event loop. A start cannot be
        interrupted, so a cancelled one is waited for and its child killed."""
        started = asyncio.ensure_future(asyncio.to_thread(self._start_now, proc))
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            await asyncio.wait({started})
            if not started.cancelled() and started.exception() is None:
                proc.kill()
                proc.join(5.0)
            raise

    def _start_now(self, proc: BaseProcess) -> None:
        with self._starting:
            proc.start()

    async def warm(self) -> None:
        """Start the fork server now, so the first upload does not wait for its imports."""
        with contextlib.suppress(Exception):
            await self.run(_ready)

    def kill_all(self) -> None:
        for proc in list(self.live):
            with contextlib.suppress(ValueError, OSError):
                proc.kill()


def _ready() -> bool:
    return True


def _answer(receiver: Connection) -> tuple[Any, ...] | None:
    """The child's answer, or None if it died before sending a whole one."""
    try:
        if receiver.poll():
            answer: tuple[Any, ...] = receiver.recv()
            return answer
    except (EOFError, OSError):
        pass
    return None


async def _ended(fd: int) -> None:
    """Until a process's sentinel is readable (it has exited): no thread, no polling."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await done
    finally:
        loop.remove_reader(fd)

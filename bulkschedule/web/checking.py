"""Checking uploads under load: a few at a time (`Gate`), each read in a capped child process.

Why a child process: reading a sheet is native code (a workbook reader) and pandas, neither of
which can be interrupted from Python. In a thread, a check goes on after its client has gone,
competes with the event loop for the GIL (the page stops answering), and a reader that aborts
takes the server down with it. In a child it is killed when the client disconnects or the server
stops, it runs under a memory and CPU-time cap, and a crash is one refused upload.

The children are `bulkschedule.app.isolate`'s, as for the inbox: one fork server for the whole
process (its preload list is process-wide), the same caps (`ReadLimits`, the ``read_memory_mb``
and ``read_cpu_seconds`` settings), the same one-line reasons. This module holds what is the
page's own: the `Gate`, and the two steps a check runs in children, `read_upload` (the content
sniff and `job.load`) and `write_annotated` (the annotated sheet). Between them, in the server
process, the online stage may add the org's problems (it needs the network and the journal);
after them, the small `summary` the page shows: see `uploads.Uploads`. The steps import nothing
the fork server has not already loaded, so a child starts in milliseconds.

`Gate` bounds the work: at most ``slots`` checks run at once, at most ``queue`` more uploads
wait (receiving or queued), and anything beyond is refused at once (503) instead of piling up.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import datetime as dt
import json
import zipfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

from bulkschedule.app import job
from bulkschedule.app.results import write_report
from bulkschedule.org.cache import OrgCache
from bulkschedule.sheet.schema import Validation

#: The files of an upload folder: the summary the page shows, the annotated sheet, the file as
#: it arrives, and last the meta file (an upload without it does not exist).
META = ".meta.json"
CHECKED = ".validation.json"
REPORT = ".report.xlsx"
PARTIAL = ".upload.part"

#: Problems kept in the summary (and shown in the page's table); the annotated sheet has them all.
SHOWN_PROBLEMS = 200
#: How many repeating rows the upload's page lists (the rest are counted).
SHOWN_EXPANSIONS = 50

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class Full(Exception):
    """Every check slot and queue place is taken: answer 503 and let the client retry."""


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


# --------------------------------------------------------------------------------------------
# in the child


def sniff_problem(path: Path, ext: str) -> str | None:
    """None if the content matches the extension, else why not (one line, for the page).

    The extension alone proves nothing: a renamed executable or a PDF must not reach the reader.
    An ``.xlsx`` must be a zip holding ``[Content_Types].xml``; a ``.csv`` must be text (UTF-8,
    UTF-16 with a BOM or Windows-1252, as the CLI's reader accepts), without binary bytes.
    """
    with path.open("rb") as fh:
        head = fh.read(65536)
    if not head:
        return "the file is empty"
    if ext == ".xlsx":
        if not head.startswith(_ZIP_MAGIC):
            return "this is not an Excel workbook (.xlsx); save the sheet as .xlsx or .csv"
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return "this .xlsx file is damaged (not a readable workbook)"
        if "[Content_Types].xml" not in names:
            return "this is a zip archive, not an Excel workbook"
        return None
    if head.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
        return "this is a workbook saved with a .csv name: upload it as .xlsx, or save as CSV"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            codecs.getincrementaldecoder("utf-16")().decode(head, final=False)
        except UnicodeDecodeError:
            return "this .csv file is not readable text"
        return None
    if b"\0" in head:
        return "this is not a text CSV file (it contains binary data)"
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        try:
            text = head.decode("cp1252")
        except UnicodeDecodeError:
            return "this .csv file is not readable text (unknown encoding)"
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\r\n\f")
    if controls > max(2, len(text) // 100):
        return "this is not a text CSV file (it contains binary data)"
    return None


def read_upload(folder: Path, meta: Mapping[str, Any], today: dt.date | None,
                names: tuple[Path, str] | None) -> Validation | str:
    """In the child: a file just received is sniffed (a mismatch is returned as its one-line
    reason) and takes its name; then the sheet is read and validated as ``run`` would
    (`load_upload`). A sheet the reader refuses raises its `JobError`."""
    partial = folder / PARTIAL
    if partial.exists():
        problem = sniff_problem(partial, Path(meta["file"]).suffix.lower())
        if problem:
            return problem
        partial.rename(folder / meta["file"])
    return load_upload(folder, meta, today, names)


def load_upload(folder: Path, meta: Mapping[str, Any], today: dt.date | None,
                names: tuple[Path, str] | None) -> Validation:
    """`job.load` with the form's options; names in ID columns resolve from the org cache at
    ``names`` (state folder, API base) when there is one, as ``validate`` does offline. The
    valid rows are built here, under the caps."""
    options = meta.get("options", {})
    cache = OrgCache.existing(*names) if names is not None else None
    try:
        validation = job.load(str(folder / meta["file"]), course=options.get("course"),
                              batch=options.get("batch"), module=options.get("module"),
                              month_first=bool(options.get("month_first")), today=today,
                              names_from=cache)
    finally:
        if cache is not None:
            cache.close()
    validation.sessions  # noqa: B018 - builds the lazily parsed rows now
    return validation


def write_annotated(folder: Path, validation: Validation) -> bool:
    """In the child: the annotated sheet (every problem marked in its cell, and the Problems
    sheet): the one step after reading whose cost grows with the sheet and its problems."""
    write_report(folder / REPORT, validation)
    return True


def finish_upload(folder: Path, meta: Mapping[str, Any], checked: Mapping[str, Any]) -> None:
    """The summary the page shows, and last the meta file that makes the upload exist."""
    write_json(folder / CHECKED, checked)
    write_json(folder / META, meta)


def summary(validation: Validation, meta: Mapping[str, Any], folder: Path,
            org: Mapping[str, Any]) -> dict[str, Any]:
    """What the upload's page shows: counts, the first `SHOWN_PROBLEMS` problems with their
    total (a 100,000-row sheet's page stays small; the annotated sheet has them all), the first
    `SHOWN_EXPANSIONS` repeating rows (how many sessions each makes, first and last date) with
    how many there are, notes without the server's paths, and what the online stage said
    (``org``)."""
    sheet = str(folder / meta["file"])
    problems = validation.problems
    expansions = validation.expansions
    return {
        "file": meta["name"],
        "rows": validation.n_rows,
        "sessions": validation.n_rows + sum(e.sessions - 1 for e in expansions),
        "expansions": [e.to_dict() for e in expansions[:SHOWN_EXPANSIONS]],
        "expansion_total": len(expansions),
        "valid": validation.valid,
        "errors": validation.errors,
        "warnings": validation.warnings,
        "fatal": validation.fatal,
        "problems": [p.to_dict() for p in problems[:SHOWN_PROBLEMS]],
        "problem_total": len(problems),
        "notes": [n.replace(sheet, meta["name"]) for n in validation.table.notes],
        **org,
    }


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh)
    tmp.replace(path)

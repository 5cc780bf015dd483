"""Uploaded sheets: stored under ``<state>/uploads/<random id>/``, checked, validated once.

The client's file name is never used as a path: it is reduced to a harmless leaf (`safe_name`)
inside a folder this app chose, and only ``.xlsx``/``.csv`` files whose content matches their
extension are kept (`sniff_problem`). Each upload folder holds the sheet, its annotated report,
its validation summary and, last, ``.meta.json``: an upload without it does not exist. Results
workbooks of runs are written beside the sheet, and a download is served only if it is one of
those (`Uploads.owned_results`).

Under load (`Uploads.receive`): a gate admits a few uploads at once and refuses the rest (503),
the body must arrive within a deadline (408), the folder stays under a quota (507), checks run
in killable, capped child processes (`checking`, `bulkschedule.app.isolate`), and uploads unused
for the retention period are pruned (`Uploads.prune`: at start, hourly, and when an upload
arrives after an hour or more).

A check (`Uploads.check`) reads the sheet in a child, then, when the page can read the org, adds
the org's problems in this process (the online stage needs the network and the journal), then
writes the annotated sheet and the summary in a child again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import secrets
import shutil
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from bulkschedule.app.isolate import (
    ChildGroup,
    IsolationError,
    IsolationUnavailable,
    ReadLimits,
    run_isolated,
)
from bulkschedule.core.errors import JobError
from bulkschedule.web.access import CSRF_FIELD, CSRF_HEADER, Refused
from bulkschedule.web.checking import (
    CHECKED,
    META,
    PARTIAL,
    REPORT,
    Full,
    Gate,
    finish_upload,
    load_upload,
    read_json,
    read_upload,
    sniff_problem,
    summary,
    write_annotated,
    write_json,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bulkschedule.sheet.schema import Validation

__all__ = ["CHECKED", "META", "PARTIAL", "REPORT", "Uploads", "read_json", "safe_name",
           "sniff_problem"]

T = TypeVar("T")

log = logging.getLogger("bulkschedule")

ACCEPTED = (".xlsx", ".csv")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the small fields around the file
#: Validations kept in memory for the runs to come: at most this many uploads, and rows in all
#: (a 100,000-row sheet's validation takes about 100 MB), always at least the latest upload.
KEPT_UPLOADS = 4
KEPT_ROWS = 200_000

DEFAULT_QUOTA = 1024**3  # bytes under <state>/uploads
DEFAULT_RETENTION = 14 * 86400.0  # seconds an upload is kept after its last use
DEFAULT_BODY_TIMEOUT = 120.0  # seconds for a whole upload to arrive (20 MB at 1.4 Mbit/s)
PRUNE_EVERY = 3600.0  # seconds between two prunings (also at start and when full)
RETRY_AFTER = 20  # seconds a refused client is told to wait
STOPPING = "The server is stopping: try again in a minute."

_ID_RE = re.compile(r"[0-9a-f]{16}")
_RESULTS_RE = re.compile(r"\.results-[0-9a-f]{16}\.xlsx")
_DIGITS_RE = re.compile(r"\d{1,19}")


def safe_name(client_name: str) -> str:
    """The client's file name reduced to a harmless leaf: ``../../x.csv`` -> ``x.csv``.

    Only the last path component (either slash) survives, reduced to letters, digits, ``._ -``,
    without leading dots (never hidden, never ``..``), at most 80 characters before the
    extension. It is a display name and the leaf inside a folder this app chose; never a path.
    """
    leaf = re.split(r"[\\/]", unquote(client_name))[-1]
    leaf = "".join(c for c in unicodedata.normalize("NFKD", leaf) if not unicodedata.combining(c))
    stem, dot, ext = leaf.rpartition(".")
    if not dot:
        stem, ext = leaf, ""
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", stem).strip(" ._-")[:80].rstrip(" .") or "sheet"
    ext = re.sub(r"[^a-z0-9]+", "", ext.lower())[:10]
    return f"{stem}.{ext}" if ext else stem


def extension(client_name: str) -> str:
    """The extension the stored file will have (lower case, with its dot), or ""."""
    _, dot, ext = safe_name(client_name).rpartition(".")
    return f".{ext}" if dot else ""


def _digits_field(value: str, label: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not _DIGITS_RE.fullmatch(value):
        raise Refused(400, f"{label} must be digits only (got {value[:40]!r})")
    return value


async def _small_field(part: BodyPartReader, limit: int = 256) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(1024):
        data += chunk
        if len(data) > limit:
            raise Refused(400, f"the form field {part.name or '?'} is too long")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, f"the form field {part.name or '?'} is not text") from None


def megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def tree_bytes(path: Path) -> int:
    """The size of every file under ``path`` (0 if it is gone): what it takes of the quota."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


#: A whole check of a received upload: read, the org, write (`Uploads.check`; tests replace it).
Check = Callable[[Path, dict[str, Any]], Awaitable[dict[str, int]]]
#: The online stage of a check: the offline validation and the form's options in; the validation
#: with the org's problems, and what the page says about the org (`web.online`), out.
OrgStage = Callable[["Validation", Mapping[str, Any]],
                    Awaitable[tuple["Validation", dict[str, Any]]]]
#: Where names resolve from offline: the org cache's (state folder, API base), if any.
NamesFrom = Callable[[], tuple[Path, str] | None]


class Uploads:
    """The uploads folder under its limits: a gate on checks, a quota, a retention period.

    ``used`` is the folder's size as this server knows it: measured at start, then kept up to
    date as bytes arrive, checks write their files, runs write results and pruning removes
    folders. ``check`` runs one check (`check_upload`; tests replace it); its children run under
    ``limits`` and belong to ``children``, killed when the server stops. ``org`` is the online
    stage (None: offline only), ``names_from`` where names resolve from offline.
    """

    def __init__(self, root: Path, *, gate: Gate, today: dt.date | None = None,
                 quota: int = DEFAULT_QUOTA, retention: float | None = DEFAULT_RETENTION,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT,
                 clock: Callable[[], float] = time.time, limits: ReadLimits | None = None,
                 org: OrgStage | None = None, names_from: NamesFrom | None = None) -> None:
        if quota < 1 or body_timeout <= 0 or (retention is not None and retention <= 0):
            raise ValueError("the uploads quota, retention and body timeout must be positive")
        self.root = root
        self.gate = gate
        self.today = today
        self.quota = quota
        self.retention = retention
        self.body_timeout = body_timeout
        self.clock = clock
        self.limits = limits or ReadLimits()
        self.org = org
        self.names_from: NamesFrom = names_from or (lambda: None)
        self.children = ChildGroup()
        self.check: Check = self.check_upload
        self.checked: OrderedDict[str, Validation] = OrderedDict()
        self.used = 0
        self.receiving: set[str] = set()  # ids received or checked now (no meta file yet)
        self.last_prune: float | None = None
        self.closing = False

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.used = await asyncio.to_thread(tree_bytes, self.root)

    async def shutdown(self) -> None:
        """Refuse new uploads and kill the checks running: their clients get a 503."""
        self.closing = True
        self.children.kill_all()

    def upload_dir(self, upload_id: str) -> Path | None:
        if not _ID_RE.fullmatch(upload_id):
            return None
        folder = self.root / upload_id
        return folder if (folder / META).is_file() else None

    def meta(self, folder: Path) -> dict[str, Any]:
        data: dict[str, Any] = read_json(folder / META)
        return data

    def touch(self, folder: Path) -> None:
        """A run uses the upload: its retention period starts again (blocking)."""
        try:
            meta = self.meta(folder)
            meta["used"] = self.clock()
            write_json(folder / META, meta)
        except (OSError, ValueError) as err:  # the run goes on; only the retention is older
            log.warning("web: cannot note the use of %s: %s", folder.name, err)

    def account(self, path: Path) -> None:
        """A file written into an upload folder (a run's results) counts against the quota."""
        with contextlib.suppress(OSError):
            self.used += path.stat().st_size

    def remember(self, upload_id: str, validation: Validation) -> None:
        """Keep an upload's (offline) validation for its run: the latest few, within
        `KEPT_ROWS` rows in all."""
        self.checked[upload_id] = validation
        self.checked.move_to_end(upload_id)
        while len(self.checked) > 1 and (
                len(self.checked) > KEPT_UPLOADS
                or sum(v.n_rows for v in self.checked.values()) > KEPT_ROWS):
            self.checked.popitem(last=False)

    async def validation_for(self, upload_id: str, folder: Path) -> Validation:
        """The upload's offline validation for a run: from memory, or read again (in a child,
        under the gate). A sheet that can no longer be read is `Refused`."""
        cached = self.checked.get(upload_id)
        if cached is not None:
            return cached
        try:
            with self.gate.admit():
                async with self.gate.slot():
                    meta = await asyncio.to_thread(self.meta, folder)
                    try:
                        validation = await self.isolated(load_upload, folder, meta, self.today,
                                                         self.names_from(), name=meta["name"])
                    except JobError as err:
                        raise self.refusal(err, folder, meta) from None
        except Full:
            raise busy() from None
        self.remember(upload_id, validation)
        return validation

    # ------------------------------------------------------------------------------ checking

    async def isolated(self, func: Callable[..., T], *args: Any, name: str) -> T:
        """``func(*args)`` in a child of `app.isolate`, under the page's caps, killed with the
        server; ``name`` (the sheet's display name) starts its messages."""
        return await run_isolated(func, *args, limits=self.limits, what=name,
                                  group=self.children)

    async def check_upload(self, folder: Path, meta: dict[str, Any]) -> dict[str, int]:
        """The check of a received upload: content sniff and validation (a child), the org's
        problems (here, when the page can read the org), the annotated sheet (a child), then
        the summary and last the meta file that makes the upload exist. An annotated sheet
        that cannot be written within the caps costs only the download: the page says why.
        Returns the counts for the log (the page reads the files)."""
        name = meta["name"]
        read = await self.isolated(read_upload, folder, meta, self.today, self.names_from(),
                                   name=name)
        if isinstance(read, str):
            raise Refused(415, f"{name}: {read}.")
        validation, org = read, dict[str, Any]()
        if self.org is not None:
            validation, org = await self.org(read, meta.get("options", {}))
        try:
            await self.isolated(write_annotated, folder, validation, name=name)
        except IsolationError as err:
            if self.closing:
                raise
            log.warning("web: upload %s (%s): no annotated sheet: %s", folder.name, name, err)
            await asyncio.to_thread((folder / REPORT).unlink, missing_ok=True)
            org["report_error"] = (err.why if err.reason != "failed"
                                   else "an internal error (see the server log)")
        checked = summary(validation, meta, folder, org)
        await asyncio.to_thread(finish_upload, folder, meta, checked)
        self.remember(folder.name, read)
        return {"rows": validation.n_rows, "valid": validation.valid,
                "errors": checked["errors"]}

    def refusal(self, err: JobError, folder: Path, meta: Mapping[str, Any]) -> Refused:
        """What the page says when a check failed: the reader's own refusal (without the
        server's folders), a cap or a crash (in words; an internal failure only in the log),
        or no child at all (503: the machine's trouble, not the sheet's)."""
        name = meta["name"]
        retry = {"Retry-After": str(RETRY_AFTER)}
        if isinstance(err, IsolationUnavailable):
            log.error("web: cannot check %s (%s): %s", folder.name, name, err)
            return Refused(503, "The server cannot check sheets right now (see its log): try "
                                f"again in {RETRY_AFTER} seconds.", headers=retry)
        if isinstance(err, IsolationError):
            if self.closing:
                return Refused(503, STOPPING, headers=retry)
            log.warning("web: the check of upload %s (%s) failed: %s", folder.name, name, err)
            why = err.why if err.reason != "failed" else "an internal error (see the server log)"
            return Refused(422, f"{name}: this sheet could not be checked: {why}.")
        return Refused(422, str(err).replace(str(folder / meta["file"]), name))

    def owned_results(self, text: str | None) -> Path | None:
        """The results workbook a journal run names, if and only if this app wrote it."""
        if not text:
            return None
        try:
            path = Path(text).resolve(strict=True)
            root = self.root.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not path.is_relative_to(root) or not path.is_file():
            return None
        rel = path.relative_to(root).parts
        if len(rel) != 2 or not _ID_RE.fullmatch(rel[0]) or not _RESULTS_RE.fullmatch(rel[1]):
            return None
        return path

    # -------------------------------------------------------------------------------- pruning

    def prune_due(self) -> bool:
        if self.retention is None:
            return False
        return (self.last_prune is None or self.used >= self.quota
                or self.clock() - self.last_prune >= PRUNE_EVERY)

    async def prune(self, busy: Collection[str] = ()) -> list[str]:
        """Remove uploads unused for the retention period, except those in ``busy`` (a run is
        using them) or being received; and any folder a crash left without its meta file."""
        now = self.clock()
        self.last_prune = now
        keep = set(busy) | self.receiving
        removed, freed = await asyncio.to_thread(self._prune, now, keep)
        self.used = max(0, self.used - freed)
        for upload_id in removed:
            self.checked.pop(upload_id, None)
        if removed:
            log.info("web: removed %d upload(s) unused for the retention period (%s freed)",
                     len(removed), megabytes(freed))
        return removed

    def _prune(self, now: float, keep: set[str]) -> tuple[list[str], int]:
        removed: list[str] = []
        freed = 0
        for folder in sorted(self.root.iterdir()):
            if folder.name in keep or not _ID_RE.fullmatch(folder.name) or not folder.is_dir():
                continue
            try:
                meta = read_json(folder / META)
                last = max(float(meta.get("uploaded", 0)), float(meta.get("used", 0)))
            except (OSError, ValueError, TypeError, AttributeError):
                last = None  # unfinished: what a crash or a kill left behind
            if last is not None and (self.retention is None or now - last < self.retention):
                continue
            freed += tree_bytes(folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
        return removed, freed

    # ------------------------------------------------------------------------------ receiving

    async def receive(self, request: web.Request, *, max_upload: int, too_large: str,
                      token_ok: Callable[[str | None], bool],
                      busy_uploads: Callable[[], Collection[str]] = frozenset) -> str:
        """Stream a multipart upload into a new folder, check it in a child process; its id.

        Refused at once (503, ``Retry-After``) when every check slot and queue place is taken.
        The CSRF token (a header, or a form field before the file) is judged by ``token_ok``
        before a byte of the file is written; the body must arrive within ``body_timeout``
        (408) and fit in the quota (507). A client that goes away cancels the check (the
        child is killed) and leaves nothing behind."""
        if self.closing:
            raise Refused(503, STOPPING, headers={"Retry-After": str(RETRY_AFTER)})
        if not request.content_type.startswith("multipart/form-data"):
            raise Refused(400, "Send the file with the upload form.")
        try:
            with self.gate.admit():
                if self.prune_due():
                    await self.prune(busy_uploads())
                return await self._receive(request, max_upload=max_upload, too_large=too_large,
                                           token_ok=token_ok)
        except Full:
            raise busy() from None

    async def _receive(self, request: web.Request, *, max_upload: int, too_large: str,
                       token_ok: Callable[[str | None], bool]) -> str:
        upload_id = secrets.token_hex(8)
        folder = self.root / upload_id
        self.receiving.add(upload_id)
        counted = [0]  # bytes of this upload already in ``used``
        try:
            try:
                async with asyncio.timeout(self.body_timeout):
                    client_name, fields, size = await self._read_form(
                        request, folder, max_upload=max_upload, too_large=too_large,
                        token_ok=token_ok, counted=counted)
            except TimeoutError:
                raise Refused(408, f"The upload took longer than {self.body_timeout:g} seconds "
                                   "and was cut off: check the connection and try again."
                              ) from None
            options = {
                "course": _digits_field(fields.get("course", ""), "Course ID"),
                "batch": _digits_field(fields.get("batch", ""), "Batch ID"),
                "module": _digits_field(fields.get("module", ""), "Module ID"),
                "month_first": fields.get("month_first") in ("1", "on", "true"),
            }
            name = safe_name(client_name)
            meta = {"name": name, "file": name, "size": size, "options": options,
                    "uploaded": self.clock()}
            try:
                async with self.gate.slot():
                    counts = await self.check(folder, meta)
            except JobError as err:
                raise self.refusal(err, folder, meta) from None
        except BaseException:
            self._discard(folder, counted[0])
            raise
        finally:
            self.receiving.discard(upload_id)
        self.used += tree_bytes(folder) - counted[0]
        log.info("web: upload %s (%s, %d bytes): %d rows, %d valid, %d errors", upload_id, name,
                 size, counts["rows"], counts["valid"], counts["errors"])
        return upload_id

    def _discard(self, folder: Path, counted: int) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        self.used = max(0, self.used - counted)

    def _count(self, n: int, counted: list[int]) -> None:
        """``n`` more bytes of an upload: refused (507) if they would overfill the quota."""
        if self.used + n > self.quota:
            raise Refused(507, f"There is no room left for uploads (the quota is "
                               f"{megabytes(self.quota)}). Uploads are removed when unused for "
                               "the retention period; ask the operator to raise the quota or "
                               "to remove old uploads.")
        self.used += n
        counted[0] += n

    async def _read_form(self, request: web.Request, folder: Path, *, max_upload: int,
                         too_large: str, token_ok: Callable[[str | None], bool],
                         counted: list[int]) -> tuple[str, dict[str, str], int]:
        """The form's small fields, and its file written to ``folder``: (name, fields, size)."""
        trusted = token_ok(request.headers.get(CSRF_HEADER))
        fields: dict[str, str] = {}
        client_name: str | None = None
        size = 0
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise Refused(400, "Send one file with the upload form.")
                if part.filename is None:
                    value = await _small_field(part)
                    fields[part.name or ""] = value
                    if part.name == CSRF_FIELD:
                        trusted = trusted or token_ok(value)
                    continue
                if part.name != "file" or client_name is not None:
                    raise Refused(400, "Send one file at a time.")
                if not trusted:
                    raise Refused(403, "The form has expired or did not come from this site: "
                                       "reload the page and try again.")
                if not part.filename:
                    raise Refused(400, "Choose a .xlsx or .csv file first.")
                client_name = part.filename
                ext = extension(client_name)
                if ext not in ACCEPTED:
                    shown = f"'{ext}'" if ext else "without an extension"
                    raise Refused(415, f"{safe_name(client_name)}: a file {shown} cannot be "
                                       "checked; only .xlsx and .csv sheets are accepted.")
                folder.mkdir(parents=True, exist_ok=False)
                with (folder / PARTIAL).open("wb") as fh:
                    while chunk := await part.read_chunk(256 * 1024):
                        size += len(chunk)
                        if size > max_upload:
                            raise Refused(413, too_large)
                        self._count(len(chunk), counted)
                        fh.write(chunk)
        except (ValueError, AssertionError, UnicodeDecodeError) as err:
            raise Refused(400, f"The upload could not be read ({err}); try again.") from None
        if client_name is None:
            raise Refused(400, "Choose a .xlsx or .csv file first.")
        return client_name, fields, size


def busy() -> Refused:
    return Refused(503, "The server is busy checking other sheets: try again in "
                        f"{RETRY_AFTER} seconds.", headers={"Retry-After": str(RETRY_AFTER)})

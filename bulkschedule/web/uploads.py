"""Uploaded sheets: stored under ``<state>/uploads/<random id>/``, checked, validated once.

The client's file name is never used as a path: it is reduced to a harmless leaf (`safe_name`)
inside a folder this app chose, and only ``.xlsx``/``.csv`` files whose content matches their
extension are kept (`sniff_problem`). Each upload folder holds the sheet, its annotated report,
its validation summary and, last, ``.meta.json``: an upload without it does not exist. Results
workbooks of runs are written beside the sheet, and a download is served only if it is one of
those (`Uploads.owned_results`).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import re
import secrets
import shutil
import time
import unicodedata
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from bulkschedule.app import job
from bulkschedule.app.results import write_report
from bulkschedule.web.access import CSRF_FIELD, CSRF_HEADER, Refused

if TYPE_CHECKING:  # pragma: no cover - typing only
    import datetime as dt

    from bulkschedule.sheet.schema import Validation

log = logging.getLogger("bulkschedule")

ACCEPTED = (".xlsx", ".csv")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the small fields around the file
META = ".meta.json"
CHECKED = ".validation.json"
REPORT = ".report.xlsx"
PARTIAL = ".upload.part"

_ID_RE = re.compile(r"[0-9a-f]{16}")
_RESULTS_RE = re.compile(r"\.results-[0-9a-f]{16}\.xlsx")
_DIGITS_RE = re.compile(r"\d{1,19}")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


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


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh)
    tmp.replace(path)


def megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


class Uploads:
    """The uploads folder, and the last few validations kept in memory (a run re-uses them)."""

    def __init__(self, root: Path, *, today: dt.date | None = None) -> None:
        self.root = root
        self.today = today
        self.checked: OrderedDict[str, Validation] = OrderedDict()

    def upload_dir(self, upload_id: str) -> Path | None:
        if not _ID_RE.fullmatch(upload_id):
            return None
        folder = self.root / upload_id
        return folder if (folder / META).is_file() else None

    def meta(self, folder: Path) -> dict[str, Any]:
        data: dict[str, Any] = read_json(folder / META)
        return data

    def load(self, folder: Path, meta: Mapping[str, Any]) -> Validation:
        """Read and validate an upload exactly as ``bulkschedule run`` would (blocking)."""
        options = meta.get("options", {})
        sheet = folder / meta["file"]
        try:
            return job.load(str(sheet), course=options.get("course"),
                            batch=options.get("batch"), module=options.get("module"),
                            month_first=bool(options.get("month_first")), today=self.today)
        except job.JobError as err:
            raise Refused(422, str(err).replace(str(sheet), meta["name"])) from None

    def remember(self, upload_id: str, validation: Validation) -> None:
        self.checked[upload_id] = validation
        self.checked.move_to_end(upload_id)
        while len(self.checked) > 4:
            self.checked.popitem(last=False)

    async def validation_for(self, upload_id: str, folder: Path) -> Validation:
        cached = self.checked.get(upload_id)
        if cached is not None:
            return cached
        meta = await asyncio.to_thread(self.meta, folder)
        validation = await asyncio.to_thread(self.load, folder, meta)
        self.remember(upload_id, validation)
        return validation

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

    async def receive(self, request: web.Request, *, max_upload: int, too_large: str,
                      token_ok: Callable[[str | None], bool]) -> str:
        """Stream a multipart upload into a new folder, check and validate it; its id.

        The CSRF token (a header, or a form field before the file) is judged by ``token_ok``
        before a byte of the file is written."""
        if not request.content_type.startswith("multipart/form-data"):
            raise Refused(400, "Send the file with the upload form.")
        trusted = token_ok(request.headers.get(CSRF_HEADER))
        fields: dict[str, str] = {}
        upload_id = secrets.token_hex(8)
        folder = self.root / upload_id
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
                        fh.write(chunk)
        except Refused:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        except (ValueError, AssertionError, UnicodeDecodeError) as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise Refused(400, f"The upload could not be read ({err}); try again.") from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if client_name is None:
            raise Refused(400, "Choose a .xlsx or .csv file first.")
        try:
            options = {
                "course": _digits_field(fields.get("course", ""), "Course ID"),
                "batch": _digits_field(fields.get("batch", ""), "Batch ID"),
                "module": _digits_field(fields.get("module", ""), "Module ID"),
                "month_first": fields.get("month_first") in ("1", "on", "true"),
            }
            name = safe_name(client_name)
            meta = {"name": name, "file": name, "size": size, "options": options,
                    "uploaded": time.time()}
            validation = await asyncio.to_thread(self._store, folder, meta)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.remember(upload_id, validation)
        log.info("web: upload %s (%s, %d bytes): %d rows, %d valid, %d errors", upload_id, name,
                 size, validation.n_rows, validation.valid, validation.errors)
        return upload_id

    def _store(self, folder: Path, meta: dict[str, Any]) -> Validation:
        """Blocking part of an upload: content check, validation, annotated sheet, summary."""
        problem = sniff_problem(folder / PARTIAL, extension(meta["file"]))
        if problem:
            raise Refused(415, f"{meta['name']}: {problem}.")
        (folder / PARTIAL).rename(folder / meta["file"])
        validation = self.load(folder, meta)
        write_report(folder / REPORT, validation)
        sheet = str(folder / meta["file"])
        summary = validation.to_json()
        summary["file"] = meta["name"]
        summary["fatal"] = validation.fatal
        summary["notes"] = [n.replace(sheet, meta["name"]) for n in validation.table.notes]
        _write_json(folder / CHECKED, summary)
        _write_json(folder / META, meta)  # last: an upload without it does not exist
        return validation

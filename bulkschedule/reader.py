"""Read a sheet file into a `RawTable`: cells exactly as stored, with spreadsheet row numbers.

The only stage that touches input files. Nothing here parses dates or IDs; it only refuses to
lose information (IDs stay text, typed cells keep their type).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A cell as read: text from CSV and text cells; float/int/bool for numeric workbook cells;
#: date/datetime/time/timedelta for date- or time-formatted cells; None for an empty cell.
Cell = str | float | int | bool | dt.date | dt.datetime | dt.time | dt.timedelta | None


class ReadError(Exception):
    """The file cannot be read. ``str(err)`` is one clear line naming the file (exit code 2)."""


@dataclass(slots=True)
class RawTable:
    file: str  # the path as the user gave it
    sheet: str | None  # sheet name for workbooks, None for CSV
    headers: list[str]  # header row as typed (empty string for a blank header cell)
    rows: list[list[Cell]]  # data rows, each padded/truncated to len(headers); blank rows dropped
    row_numbers: list[int]  # spreadsheet row number of each entry in rows (header is row 1)
    notes: list[str] = field(default_factory=list)  # e.g. "read as Windows-1252", "delimiter ';'"
    #: Spreadsheet column number (A = 1) of ``headers[0]``: calamine trims empty leading columns,
    #: and an annotated copy of the sheet must put its marks back in the right column.
    first_column: int = 1
    #: Spreadsheet row number of the header row (1 unless blank rows precede it).
    header_row: int = 1


_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Which container each workbook extension must be; anything else is sniffed or refused.
_WORKBOOK_MAGIC = {
    ".xlsx": _ZIP_MAGIC,
    ".xlsm": _ZIP_MAGIC,
    ".xlsb": _ZIP_MAGIC,
    ".ods": _ZIP_MAGIC,
    ".xls": _OLE_MAGIC,
}
_TEXT_EXTENSIONS = frozenset({".csv", ".txt"})
_DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "';'", "\t": "tab"}
# Excel wraps an encrypted .xlsx in an OLE container holding this stream.
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")
_NOT_A_WORKBOOK = "not a valid Excel workbook (is it corrupt, or another format renamed?)"
_SAMPLE_CHARS = 65536  # enough text to sniff the delimiter from the first records
_SAMPLE_RECORDS = 20


def read_table(path: str | Path, sheet: str | None = None) -> RawTable:
    """Read the sheet (workbook) or the records (CSV) of ``path``.

    Raises `ReadError` with a one-line message for anything that is not a readable table, so the
    CLI can print it without a traceback.
    """
    name = str(path)
    p = Path(path)
    if p.is_dir():
        raise ReadError(f"{name}: is a directory, not a file")
    ext = p.suffix.lower()
    if ext not in _WORKBOOK_MAGIC and ext not in _TEXT_EXTENSIONS:
        if not p.exists():
            raise ReadError(f"{name}: file not found")
        shown = f"'{p.suffix}'" if p.suffix else "without an extension"
        raise ReadError(f"{name}: unsupported file type {shown}: save the sheet as .xlsx or .csv")
    head = _read_head(p, name)
    notes: list[str] = []
    if ext in _TEXT_EXTENSIONS:
        if head.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
            notes.append(f"read as a workbook: the {ext} file is really a spreadsheet workbook")
            return _read_workbook(p, name, sheet, notes, sniff=True)
        if sheet is not None:
            notes.append(f"sheet '{sheet}' ignored: a {ext} file has no sheets")
        return _read_csv(p, name, notes)
    expected = _WORKBOOK_MAGIC[ext]
    if head.startswith(expected):
        return _read_workbook(p, name, sheet, notes, sniff=False)
    if head.startswith(_OLE_MAGIC):
        # An OLE file named .xlsx is either an encrypted workbook or an old .xls renamed.
        if _is_encrypted_ooxml(p, name):
            raise ReadError(_password_message(name))
        notes.append(f"read as an .xls workbook despite the {ext} name")
        return _read_workbook(p, name, sheet, notes, sniff=True)
    if head.startswith(_ZIP_MAGIC):
        notes.append(f"read as an .xlsx/.ods workbook despite the {ext} name")
        return _read_workbook(p, name, sheet, notes, sniff=True)
    raise ReadError(f"{name}: {_NOT_A_WORKBOOK}")


# -- file access ---------------------------------------------------------------------------------


def _read_head(p: Path, name: str) -> bytes:
    """First bytes of the file; every file-system failure becomes a ReadError here, once."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except FileNotFoundError:
        raise ReadError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise ReadError(f"{name}: is a directory, not a file") from None
    except PermissionError:
        raise ReadError(f"{name}: permission denied (is it open in another program?)") from None
    except OSError as e:
        raise ReadError(f"{name}: cannot open: {_one_line(e.strerror or e)}") from None
    if p.is_dir():  # some platforms open directories without complaint
        raise ReadError(f"{name}: is a directory, not a file")
    if not head:
        raise ReadError(f"{name}: the file is empty")
    return head


def _read_bytes(p: Path, name: str) -> bytes:
    try:
        with open(p, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise ReadError(f"{name}: cannot read: {_one_line(e.strerror or e)}") from None


def _one_line(e: object) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _password_message(name: str) -> str:
    return (
        f"{name}: the workbook is password-protected: open it in Excel, remove the password "
        "(File > Info > Protect Workbook) and save it again"
    )


def _is_encrypted_ooxml(p: Path, name: str) -> bool:
    return _ENCRYPTED_STREAM in _read_bytes(p, name)


# -- workbooks -----------------------------------------------------------------------------------


def _read_workbook(
    p: Path, name: str, sheet: str | None, notes: list[str], *, sniff: bool
) -> RawTable:
    """Load one sheet through python-calamine, turning any failure of it into a ReadError."""
    import python_calamine as pc  # deferred: a CSV run never pays for it

    try:
        if sniff:  # from_path trusts the extension; from_filelike looks at the content
            with open(p, "rb") as fh:
                wb = pc.CalamineWorkbook.from_filelike(fh)
        else:
            wb = pc.CalamineWorkbook.from_path(os.fspath(p))
        try:
            names: list[str] = list(wb.sheet_names)
            chosen = _choose_sheet(wb, sheet, name)
            ws = wb.get_sheet_by_name(chosen)
            grid: list[list[Any]] = ws.to_python()
            start = ws.start  # (row, col), 0-based, of grid[0][0]; None for an empty sheet
        finally:
            wb.close()
    except ReadError:
        raise
    except pc.PasswordError:
        raise ReadError(_password_message(name)) from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except OSError as e:
        raise ReadError(f"{name}: cannot read: {_one_line(e.strerror or e)}") from None
    except BaseException as e:  # calamine can also raise pyo3's PanicException (BaseException)
        detail = _one_line(e)
        if "password" in detail.lower() or "encrypt" in detail.lower():
            raise ReadError(_password_message(name)) from None
        raise ReadError(f"{name}: {_NOT_A_WORKBOOK} ({detail})") from None
    first_row, first_col = start if start else (0, 0)
    try:
        table = _table_from_grid(name, chosen, grid, first_row + 1, notes)
    except ReadError as e:
        if len(names) < 2:
            raise
        listed = ", ".join(f"'{n}'" for n in names)
        raise ReadError(f"{e}; the sheets are: {listed}") from None
    table.first_column = first_col + 1
    return table


def _choose_sheet(wb: Any, wanted: str | None, name: str) -> str:
    """The sheet named by the user, else "Sessions", else the first visible worksheet."""
    names: list[str] = list(wb.sheet_names)
    if not names:
        raise ReadError(f"{name}: the workbook has no sheets")
    if wanted is not None:
        found = _match_sheet(names, wanted)
        if found is None:
            listed = ", ".join(f"'{n}'" for n in names)
            raise ReadError(f"{name}: no sheet named '{wanted}'; the sheets are: {listed}")
        return found
    found = _match_sheet(names, "Sessions")
    if found is not None:
        return found
    import python_calamine as pc

    for meta in getattr(wb, "sheets_metadata", None) or []:
        # Skip chart sheets and hidden helper sheets (lookup lists) that come first in the tabs.
        if meta.typ == pc.SheetTypeEnum.WorkSheet and meta.visible == pc.SheetVisibleEnum.Visible:
            return str(meta.name)
    return names[0]


def _match_sheet(names: Sequence[str], wanted: str) -> str | None:
    """Exact name first, then ignoring case, then also ignoring surrounding spaces."""
    if wanted in names:
        return wanted
    for norm in (str.casefold, lambda s: s.strip().casefold()):
        key = norm(wanted)
        for n in names:
            if norm(n) == key:
                return n
    return None


def _table_from_grid(
    name: str, sheet: str, grid: list[list[Any]], grid_row: int, notes: list[str]
) -> RawTable:
    """Turn calamine's rectangle (empty cells as "") into rows; ``grid_row`` numbers grid[0]."""
    header_at = next((i for i, r in enumerate(grid) if not _is_blank(r)), None)
    if header_at is None:
        raise ReadError(f"{name}: sheet '{sheet}' is empty: no header row found")
    rows: list[list[Cell]] = []
    numbers: list[int] = []
    for i in range(header_at + 1, len(grid)):
        r = grid[i]
        first = r[0]
        # Most rows have something in their first cell; only the others get the full blank test.
        if first.__class__ is str and (not first or first.isspace()) and _is_blank(r):
            continue
        rows.append([None if v == "" else v for v in r])
        numbers.append(grid_row + i)
    headers = _fit_width(grid[header_at], rows)
    return RawTable(name, sheet, headers, rows, numbers, notes, header_row=grid_row + header_at)


def _is_blank_cell(v: Any) -> bool:
    return v is None or (isinstance(v, str) and (not v or v.isspace()))


def _is_blank(row: Sequence[Any]) -> bool:
    return all(map(_is_blank_cell, row))


def _header_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _fit_width(header: Sequence[Any], rows: list[list[Cell]]) -> list[str]:
    """Headers as text; rows padded/truncated to them, widening them rather than dropping data."""
    width = len(header)
    while width and _is_blank_cell(header[width - 1]):
        width -= 1
    longest = max(map(len, rows), default=0)
    if longest > width:
        for r in rows:
            for j in range(len(r) - 1, width - 1, -1):
                if not _is_blank_cell(r[j]):
                    width = j + 1
                    break
    headers = [_header_text(v) for v in header[:width]]
    headers.extend([""] * (width - len(headers)))
    for i, r in enumerate(rows):
        n = len(r)
        if n != width:
            rows[i] = r[:width] if n > width else r + [None] * (width - n)
    return headers


# -- CSV -----------------------------------------------------------------------------------------


def _read_csv(p: Path, name: str, notes: list[str]) -> RawTable:
    text = _decode(_read_bytes(p, name), name, notes)
    delimiter = _sniff_delimiter(text)
    if delimiter != ",":
        notes.append(f"delimiter {_DELIMITER_NAMES[delimiter]}")
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as e:
        raise ReadError(f"{name}: not a readable CSV file: {_one_line(e)}") from None
    last = records[-1][-1] if records and records[-1] else ""
    if ("\n" in last or "\r" in last) and _unclosed_quote(text, delimiter):
        raise ReadError(
            f"{name}: row {len(records)} has a quoted cell that is never closed (a stray '\"')"
        )
    header_at = next((i for i, r in enumerate(records) if r and not _is_blank(r)), None)
    if header_at is None:
        raise ReadError(f"{name}: no header row found (the file is blank)")
    rows: list[list[Cell]] = []
    numbers: list[int] = []
    # Record i (0-based) is the row Excel shows as i + 1: a quoted line break stays in its cell.
    for i in range(header_at + 1, len(records)):
        r = records[i]
        if not r:
            continue
        first = r[0]
        if (not first or first.isspace()) and _is_blank(r):
            continue
        rows.append([v or None for v in r])
        numbers.append(i + 1)
    headers = _fit_width(records[header_at], rows)
    return RawTable(name, None, headers, rows, numbers, notes, header_row=header_at + 1)


def _decode(raw: bytes, name: str, notes: list[str]) -> str:
    """UTF-8 (BOM or not), else Windows-1252 as Excel writes "CSV" on Western Windows."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel "Unicode Text"
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError:
            raise ReadError(f"{name}: does not look like a text CSV file") from None
        notes.append("read as UTF-16")
        return text
    if b"\0" in raw:
        raise ReadError(f"{name}: does not look like a text CSV file (it contains binary data)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        raise ReadError(
            f"{name}: the text is neither UTF-8 nor Windows-1252: save it as 'CSV UTF-8'"
        ) from None
    notes.append("read as Windows-1252")
    return text


def _sniff_delimiter(text: str) -> str:
    """Comma, semicolon (European Excel) or tab: whichever splits the header into most cells.

    Ties (e.g. a header with one comma and one semicolon) go to the delimiter that gives the
    first records the same number of cells as the header; a one-column file stays comma.
    """
    sample = text[:_SAMPLE_CHARS]
    best, best_score = ",", (1, -1)
    for d in _DELIMITERS:
        if d not in sample:
            continue
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=d)
        try:
            recs = [r for _, r in zip(range(_SAMPLE_RECORDS), reader, strict=False)]
            recs = [r for r in recs if not _is_blank(r)]
        except csv.Error:
            continue
        if not recs:
            continue
        width = len(recs[0])
        score = (width, sum(len(r) == width for r in recs))
        if width > 1 and score > best_score:
            best, best_score = d, score
    return best


def _unclosed_quote(text: str, delimiter: str) -> bool:
    """Whether the text ends inside a quoted cell, which csv silently swallows to end of file."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for _ in reader:
            pass
    except csv.Error as e:
        return "unexpected end of data" in str(e)
    return False

"""Workbooks for people: the results workbook, the annotated validation report, and the template.

Every workbook here is a rendering of the records the other stages produce (`Problem`, `Outcome`)
over the `RawTable` the admin gave us, so what the admin sees lines up with the sheet they typed:
same columns, same values, same row numbers.

Three rules hold for every cell this module writes, because an admin will open these files in
Excel and may pass them on:

* **Text stays text.** A string that begins with ``=``, ``+``, ``-`` or ``@`` (a session named
  ``=HYPERLINK(...)`` or ``-- cancelled --``) is written as a string cell with Excel's quote prefix,
  never as a formula: a results file must not run code or show ``#NAME?``. IDs are text too, so
  18-digit IDs never turn into rounded numbers.
* **Typed cells keep their type.** A date the admin typed as a date stays a date (shown
  ``dd-mm-yyyy``), a time stays a time, so the copy can be edited and fed back in.
* **Writes are atomic.** We write a temporary file next to the target and ``os.replace`` it, so an
  interrupted run never leaves a half-written workbook where the previous good one was.

Which columns there are, in what order, with what formats and notes, comes from the column spec
(`bulkschedule.sheet.columns`): the validation's spec for the results workbook and the report, the
``spec`` argument (today's by default) for the template.

The results workbook and the report are streamed with XlsxWriter (constant-memory mode: at
100,000 rows they are most of a dry run's time, see docs/benchmarks.md); the template, 1,000 rows
with a drop-down and per-cell formats, is built with openpyxl, which is also what `set_cell`
writes into. Both are imported lazily, inside the functions that use them (each such import is
marked "lazy"): the CLI must answer ``--help`` without loading them.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import itertools
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast
from xml.sax.saxutils import escape as xml_escape

from bulkschedule.core.files import atomic_write
from bulkschedule.core.problems import Line, Outcome, Problem, Status, changes_text
from bulkschedule.sheet.columns import OCCURRENCE, RESULT_COLUMNS, SPEC, Column, Spec
from bulkschedule.sheet.parse import format_date, format_time, typed_id
from bulkschedule.sheet.recurrence import MAX_OCCURRENCES
from bulkschedule.sheet.schema import SessionRow, Validation
from bulkschedule.sheet.xml_scan import column_letters
from bulkschedule.zoho.records import ListedSession

if TYPE_CHECKING:  # pragma: no cover - typing only
    from openpyxl import Workbook
    from openpyxl.cell.cell import Cell as XlCell
    from openpyxl.styles import PatternFill
    from openpyxl.worksheet.worksheet import Worksheet
    from xlsxwriter.format import Format
    from xlsxwriter.workbook import Workbook as XlsxBook
    from xlsxwriter.worksheet import Worksheet as XlsxSheet

    from bulkschedule.sheet.reader import Cell, Cells, RawTable

__all__ = [
    "RESULT_COLUMNS",
    "STATUS_COLOURS",
    "template_workbook",
    "write_report",
    "write_results",
    "write_template",
    "write_template_csv",
]

#: Columns the results sheet adds after the input columns. A contract: scripts read these names.

#: Columns of the Problems sheet (both workbooks); the annotated report adds ``code``.
PROBLEM_COLUMNS: tuple[str, ...] = ("row", "column", "value", "severity", "message")

#: Fill colour (RGB hex) of the status cell, by status: green done, blue dry run, amber look at it,
#: red act on it, grey not reached.
STATUS_COLOURS: dict[str, str] = {
    Status.CREATED: "C6EFCE",
    Status.EXISTS: "C6EFCE",
    Status.WOULD_CREATE: "BDD7EE",
    Status.UPDATED: "C6EFCE",
    Status.WOULD_UPDATE: "BDD7EE",
    Status.CHANGED: "FFEB9C",
    Status.UNKNOWN: "FFEB9C",
    Status.FAILED: "FFC7CE",
    Status.INVALID: "FFC7CE",
    Status.PENDING: "D9D9D9",
}

ERROR_FILL = "FFC7CE"
WARNING_FILL = "FFEB9C"
HEADER_FILL = "DDEBF7"  # header of the generated sheets
REQUIRED_FILL = "F8CBAD"  # header of a required column in the template

DATE_FORMAT = "dd-mm-yyyy"
DATETIME_FORMAT = "dd-mm-yyyy hh:mm"
TIME_FORMAT = "hh:mm AM/PM"
TEXT_FORMAT = "@"

#: How many rows of the template carry the column formats and the type drop-down.
TEMPLATE_ROWS = 1000
TYPE_CHOICES = ("Classroom", "E-learning")

#: A fixed creation time for generated workbooks, so the shipped template is reproducible.
_FIXED_CREATED = dt.datetime(2026, 1, 1)

_FORMULA_START = ("=", "+", "-", "@")
# Characters XML 1.0 cannot carry: openpyxl raises on them, XlsxWriter would store them as Excel's
# _x0001_ escapes. We drop them, as we always did, from a sheet with a stray control character.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# cell helpers


def set_cell(cell: XlCell, value: object, *, text_format: bool = False) -> None:
    """Write ``value`` so that it reads back as the same kind of thing.

    Strings are always string cells (``data_type == "s"``), even when they look like a formula
    (``=``), an error code (``#N/A``) or start with ``+``/``-``/``@``; those also get Excel's quote
    prefix so editing the cell in Excel keeps it text. Dates, datetimes and times get a readable
    number format. Anything else that is not a plain scalar is written as its ``str``.
    """
    if value is None:
        cell.value = None
    elif isinstance(value, str):
        text = _ILLEGAL.sub("", value)
        cell.value = text
        cell.data_type = "s"  # undo openpyxl's formula / error-code guess
        if text.startswith(_FORMULA_START):
            cell.quotePrefix = True
        if text_format:
            cell.number_format = TEXT_FORMAT
    elif isinstance(value, bool | int | float):
        cell.value = value
    elif isinstance(value, dt.datetime):
        cell.value = value
        cell.number_format = DATETIME_FORMAT
    elif isinstance(value, dt.date):
        cell.value = value
        cell.number_format = DATE_FORMAT
    elif isinstance(value, dt.time):
        cell.value = value
        cell.number_format = TIME_FORMAT
    elif isinstance(value, dt.timedelta):
        cell.value = value  # openpyxl gives it an [hh]:mm:ss format
    else:
        set_cell(cell, str(value), text_format=text_format)


def _display_width(value: object) -> int:
    """Roughly how many characters ``value`` takes on screen, for column widths."""
    if isinstance(value, str) and value.isprintable():  # no line break in it either
        return len(value)
    if value is None:
        return 0
    if isinstance(value, dt.datetime):
        return 16
    if isinstance(value, dt.date):
        return 10
    if isinstance(value, dt.time):
        return 8
    text = str(value)
    return max((len(line) for line in text.splitlines()), default=0)


def _cell(ws: Worksheet, row: int, column: int) -> XlCell:
    """``ws.cell``, typed as the plain cell it always is here: nothing we write is merged."""
    return cast("XlCell", ws.cell(row=row, column=column))


def _fill(rgb: str) -> PatternFill:
    from openpyxl.styles import PatternFill  # lazy: heavy

    return PatternFill(fill_type="solid", start_color=rgb, end_color=rgb)


def _style_header(ws: Worksheet, n_columns: int) -> None:
    from openpyxl.styles import Font  # lazy: heavy

    bold = Font(bold=True)
    for col in range(1, n_columns + 1):
        cell = ws.cell(row=1, column=col)
        cell.font = bold
        cell.fill = _fill(HEADER_FILL)
    ws.freeze_panes = "A2"


def _autofit(ws: Worksheet, widths: Mapping[int, int], *, cap: int = 50) -> None:
    """Set each column wide enough for its longest value, between 6 and ``cap`` characters."""
    from openpyxl.utils import get_column_letter  # lazy: heavy

    for col, width in widths.items():
        ws.column_dimensions[get_column_letter(col)].width = max(6, min(cap, width + 2))


def _write_table(
    ws: Worksheet,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    caps: Mapping[str, int] | None = None,
) -> None:
    """A plain table: header row (bold, frozen, filtered) then rows, with fitted widths."""
    from openpyxl.utils import get_column_letter  # lazy: heavy

    widths: dict[int, int] = {}
    for c, name in enumerate(header, start=1):
        set_cell(_cell(ws, 1, c), name)
        widths[c] = len(name)
    n_rows = 0
    for n_rows, values in enumerate(rows, start=1):
        for c, value in enumerate(values, start=1):
            set_cell(_cell(ws, n_rows + 1, c), value)
            widths[c] = max(widths.get(c, 0), _display_width(value))
    _style_header(ws, len(header))
    ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{n_rows + 1}"
    _autofit(ws, widths)
    for c, name in enumerate(header, start=1):
        if caps and name in caps:
            letter = get_column_letter(c)
            ws.column_dimensions[letter].width = min(ws.column_dimensions[letter].width, caps[name])


def _save_atomic(wb: Workbook, path: str | os.PathLike[str]) -> None:
    """Save an openpyxl workbook (the template) with `core.files.atomic_write`."""
    atomic_write(path, wb.save)


def _new_workbook(title: str) -> tuple[Workbook, Worksheet]:
    """A workbook whose one sheet is called ``title``, and that sheet."""
    from openpyxl import Workbook  # lazy: heavy
    from openpyxl.worksheet.worksheet import Worksheet  # lazy: heavy

    wb = Workbook()
    wb.properties.creator = "bulkschedule"
    wb.properties.created = _FIXED_CREATED
    ws = wb.active
    if not isinstance(ws, Worksheet):  # a new Workbook always starts with one worksheet
        raise TypeError(f"unexpected first sheet {ws!r}")
    ws.title = title
    return wb, ws


# --------------------------------------------------------------------------------------------
# which input columns, under which names


def _input_columns(validation: Validation, columns: Sequence[Sequence[object]] | None = None,
                   *, leave_out: Container[str] = ()) -> list[tuple[int, str]]:
    """(index in the raw row, output header) for every input column worth copying.

    Canonical columns first in spec order, then unknown headers as typed, then second copies of a
    column, then blank-header columns that hold data. An admin's header that would collide with
    one of our own result columns gets " (input)" appended so that scripts reading the
    ``status`` column always read ours. ``leave_out``: canonical columns the caller writes
    itself.
    """
    table = validation.table
    hm = validation.headers
    out: list[tuple[int, str]] = [
        (hm.index[name], name) for name in validation.spec.names
        if name in hm.index and name not in leave_out
    ]
    out += [(i, header) for i, header, _ in hm.unknown]
    out += [(i, header) for i, header, _ in hm.duplicate]
    used = {i for i, _ in out}
    for i, header in enumerate(table.headers):
        if i in used or (header or "").strip():
            continue
        cells = columns[i] if columns is not None else table.columns()[i].tolist()
        if any(value not in (None, "") for value in cells):
            out.append((i, f"(column {column_letters(i + 1)})"))
    reserved = {"row", OCCURRENCE, *RESULT_COLUMNS}
    seen: set[str] = set()
    named: list[tuple[int, str]] = []
    for i, header in out:
        name = header
        if name in reserved or name in seen:
            name = f"{header} (input)"
        while name in reserved or name in seen:
            name += "'"
        seen.add(name)
        named.append((i, name))
    return named


def _is_id_column(header: str, spec: Spec) -> bool:
    col = spec.by_name.get(header)
    return col is not None and col.kind == "id"


# --------------------------------------------------------------------------------------------
# streamed workbooks: the results workbook and the report, written row by row with XlsxWriter


#: Every streamed workbook: rows go to a scratch file as they are written (constant memory), and
#: no text is ever taken for a formula, a link or a number (we write text with ``write_string``
#: anyway; these keep XlsxWriter's generic calls from guessing too).
_XLSX_OPTIONS: Mapping[str, object] = {
    "constant_memory": True,
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
}

#: XlsxWriter stores a column's width as its pixels over 7 (the width of a Calibri 11 digit):
#: 7 pixels a character store the width exactly, as openpyxl did, with no padding added.
_PIXELS_PER_CHARACTER = 7

#: First characters of text that takes the careful path: a formula's (``= + - @``: the quote
#: prefix) and ``<`` (XlsxWriter copies text shaped ``<r>...</r>`` into the XML unescaped, as its
#: own rich text).
_CAREFUL_START = frozenset("=+-@<")

#: The number format of a typed cell, by exact type (subclasses take `_Sheet.cell`'s checks).
_TYPE_FORMATS: Mapping[type, str] = {
    dt.datetime: DATETIME_FORMAT,
    dt.date: DATE_FORMAT,
    dt.time: TIME_FORMAT,
}
#: openpyxl's format for a duration, which `set_cell` gave it.
DURATION_FORMAT = "[hh]:mm:ss"

#: A style: (number format, fill, bold, quote prefix).
_StyleKey = tuple[str | None, str | None, bool, bool]


class _Book:
    """A streamed workbook (XlsxWriter, constant memory): its sheets, and one Format per style.

    Status colours, Text for IDs, the header's bold on its fill: each combination is one Format,
    made the first time a cell needs it (`STATUS_COLOURS` takes a new status by one entry).
    """

    def __init__(self, wb: XlsxBook) -> None:
        self.wb = wb
        self._formats: dict[_StyleKey, Format | None] = {(None, None, False, False): None}

    def format(self, number_format: str | None = None, fill: str | None = None,
               bold: bool = False, quote: bool = False) -> Format | None:
        """The Format of a style; None for the default one."""
        key = (number_format, fill, bold, quote)
        if key in self._formats:
            return self._formats[key]
        props: dict[str, object] = {}
        if number_format is not None:
            props["num_format"] = number_format
        if fill is not None:
            props.update(pattern=1, fg_color=f"#{fill}")
        if bold:
            props["bold"] = True
        if quote:
            props["quote_prefix"] = True
        made = self._formats[key] = self.wb.add_format(props)
        return made

    def sheet(self, title: str) -> _Sheet:
        """A new sheet; a title already taken (Excel compares them ignoring case) gets a number,
        as openpyxl numbered it (``Names`` beside a sheet called ``Names`` is ``Names1``)."""
        taken = {ws.get_name().lower() for ws in self.wb.worksheets()}
        name, n = title, 0
        while name.lower() in taken:
            n += 1
            name = f"{title}{n}"
        return _Sheet(self, self.wb.add_worksheet(name))


class _Sheet:
    """One streamed sheet, written by `set_cell`'s rules (the module's three rules).

    Rows and columns are 1-based here, as in the sheet the admin typed (XlsxWriter's are
    0-based). Rows must be written in order: XlsxWriter writes a row out when the next begins.
    """

    def __init__(self, book: _Book, ws: XlsxSheet) -> None:
        self.book = book
        self.ws = ws
        self._text = book.format(TEXT_FORMAT)
        self._typed = {kind: book.format(fmt) for kind, fmt in _TYPE_FORMATS.items()}
        #: ``write_string``, ``write_number`` and ``write_datetime`` without the decorator that
        #: first tries each row number as an "A1" reference: XlsxWriter keeps these undecorated
        #: versions beside them (same arguments), and they write 100,000 rows a sixth faster.
        self._fast = tuple(getattr(ws, f"_{name}", getattr(ws, name))
                           for name in ("write_string", "write_number", "write_datetime"))

    def prepare(self, widths: Mapping[int, int], *, caps: Mapping[int, int] | None = None,
                cap: int = 50) -> None:
        """The frozen header and the column widths (`_autofit`, then ``caps``)."""
        self.ws.freeze_panes(1, 0)
        for col, width in widths.items():
            fitted = max(6, min(cap, width + 2))
            if caps and col in caps:
                fitted = min(fitted, caps[col])
            self.width(col, fitted)

    def width(self, column: int, characters: int) -> None:
        self.ws.set_column_pixels(column - 1, column - 1, characters * _PIXELS_PER_CHARACTER)

    def filter(self, last_row: int, last_column: int) -> None:
        """An autofilter over the header and the rows up to ``last_row``."""
        self.ws.autofilter(0, 0, max(1, last_row) - 1, max(1, last_column) - 1)

    def cover(self, last_row: int, last_column: int) -> None:
        """Size the sheet (its ``dimension``, what a read-only reader sizes it by) to at least
        ``last_row`` × ``last_column``, as openpyxl's sheet declared it, even when its last row or
        column holds nothing. (XlsxWriter sizes a sheet by its cells, through this method.)"""
        self.ws._check_dimensions(max(1, last_row) - 1, max(1, last_column) - 1)

    def header(self, names: Sequence[object]) -> None:
        """Row 1: bold on the header fill, as `_style_header` makes it."""
        for c, name in enumerate(names, start=1):
            self.cell(1, c, name, fill=HEADER_FILL, bold=True)

    def cell(self, row: int, column: int, value: object, *, text_format: bool = False,
             fill: str | None = None, bold: bool = False, comment: str | None = None,
             comment_height: int = 74) -> None:
        """Write ``value`` so that it reads back as the same kind of thing (`set_cell`'s rules:
        text stays text, with the quote prefix where it starts like a formula and Text for an
        ID; typed cells keep their type with a readable format; anything else as its ``str``),
        with a fill, bold, and a comment ``comment_height`` pixels high."""
        r, c, book, ws = row - 1, column - 1, self.book, self.ws
        if isinstance(value, str):
            text = _ILLEGAL.sub("", value)
            if text.startswith("<r>") and text.endswith("</r>"):
                # XlsxWriter would copy it into the XML as it is: hand it over as one run of
                # rich text, escaped, which every reader reads as the text itself
                text = f'<r><t xml:space="preserve">{xml_escape(text)}</t></r>'
            fmt = book.format(TEXT_FORMAT if text_format else None, fill, bold,
                              text.startswith(_FORMULA_START))
            if text:
                ws.write_string(r, c, text, fmt)
            elif fmt is not None:
                ws.write_blank(r, c, None, fmt)
        elif value is None:
            fmt = book.format(None, fill, bold)
            if fmt is not None:
                ws.write_blank(r, c, None, fmt)
        elif isinstance(value, bool):
            ws.write_boolean(r, c, value, book.format(None, fill, bold))
        elif isinstance(value, int | float):
            if not math.isfinite(value):  # no cell holds these: say what it was
                self.cell(row, column, str(value), text_format=text_format, fill=fill, bold=bold)
            else:
                ws.write_number(r, c, value, book.format(None, fill, bold))
        elif isinstance(value, dt.datetime | dt.date | dt.time | dt.timedelta):
            fmt_name = next(f for kind, f in (*_TYPE_FORMATS.items(),
                                              (dt.timedelta, DURATION_FORMAT))
                            if isinstance(value, kind))
            ws.write_datetime(r, c, value, book.format(fmt_name, fill, bold))
        else:
            self.cell(row, column, str(value), text_format=text_format, fill=fill, bold=bold)
        if comment is not None:
            ws.write_comment(r, c, comment[:32767], {"author": "bulkschedule", "width": 300,
                                                     "height": comment_height})

    def line(self, row: int, values: Iterable[object], text_columns: Container[int] = (), *,
             start: int = 1) -> None:
        """`cell` for each of ``values`` (columns from ``start``; Text in ``text_columns``),
        with the common cases (plain text, an integer, a date or time, nothing) written here
        without a call of ours: a row of 18 cells 100,000 times is where a streamed workbook's
        time goes."""
        r = row - 1
        write_string, write_number, write_datetime = self._fast
        text, typed = self._text, self._typed
        for c, value in enumerate(values, start):
            kind = value.__class__
            if kind is str:
                string = cast(str, value)
                if string and string[0] not in _CAREFUL_START and string.isprintable():
                    write_string(r, c - 1, string, text if c in text_columns else None)
                    continue
            elif value is None:
                continue
            elif kind is int:
                write_number(r, c - 1, value)
                continue
            elif kind in typed:
                write_datetime(r, c - 1, value, typed[kind])
                continue
            self.cell(row, c, value, text_format=c in text_columns)


def _write_streamed(path: str | os.PathLike[str], sheets: Callable[[_Book], None]) -> None:
    """Write a workbook with XlsxWriter in constant-memory mode: ``sheets`` adds its sheets and
    rows, then it is saved atomically (`core.files.atomic_write`).

    XlsxWriter keeps each sheet's rows in a scratch file until it assembles the workbook, and
    each part of the workbook in another while zipping: all of them go in a folder of our own,
    removed on the way out whatever happens. A failed save raises the `OSError` behind it, as
    openpyxl did (XlsxWriter wraps it in its own error).
    """
    import xlsxwriter  # lazy: the CLI answers --help without it
    from xlsxwriter.exceptions import FileCreateError  # lazy: as above

    def write(tmp: str) -> None:
        with tempfile.TemporaryDirectory(prefix="bulkschedule-xlsx-") as scratch:
            wb = xlsxwriter.Workbook(tmp, {**_XLSX_OPTIONS, "tmpdir": scratch})
            try:
                wb.set_properties({"author": "bulkschedule", "created": _FIXED_CREATED})
                sheets(_Book(wb))
                try:
                    wb.close()
                except FileCreateError as err:
                    cause = err.args[0] if err.args else None
                    raise (cause if isinstance(cause, OSError) else OSError(str(err))) from None
            except BaseException:
                _close_scratch(wb)
                raise

    atomic_write(path, write)


def _close_scratch(wb: XlsxBook) -> None:
    """Close the scratch files of a workbook that will not be saved (their folder goes next)."""
    for ws in wb.worksheets():
        fh = getattr(ws, "row_data_fh", None)
        if fh is not None and not fh.closed:
            with contextlib.suppress(OSError):
                fh.close()


def _column_width(values: Iterable[object]) -> int:
    """The widest of ``values`` (`_display_width`), each distinct value measured once."""
    try:
        distinct: Iterable[object] = set(values)
    except TypeError:  # an unhashable value: measure them all
        distinct = list(values)
    return max(map(_display_width, distinct), default=0)


def _stream_table(ws: _Sheet, header: Sequence[str], rows: Sequence[Sequence[object]], *,
                  caps: Mapping[str, int] | None = None, autofilter: bool = True) -> None:
    """`_write_table` for a streamed sheet: header row (bold, frozen, filtered unless not
    ``autofilter``) then rows, with fitted widths."""
    widths = {c: len(name) for c, name in enumerate(header, start=1)}
    for c, column in enumerate(zip(*rows, strict=False), start=1):
        widths[c] = max(widths.get(c, 0), _column_width(column))
    limits = {c: caps[name] for c, name in enumerate(header, start=1) if caps and name in caps}
    ws.prepare(widths, caps=limits)
    ws.header(header)
    for r, values in enumerate(rows, start=2):
        ws.line(r, values)
    ws.cover(len(rows) + 1, len(header))
    if autofilter:
        ws.filter(len(rows) + 1, len(header))


# --------------------------------------------------------------------------------------------
# results workbook


def _row_status(
    row: int,
    validation: Validation,
    outcomes: Mapping[int, Outcome],
    errors: Mapping[int, list[str]],
) -> tuple[str, str | None, str | None, int | None, str | None]:
    """(status, sessionId, message or None, attempts, changes or None) for one spreadsheet
    row: `RESULT_COLUMNS`."""
    outcome = outcomes.get(row)
    if outcome is not None:
        return (_status_text(outcome.status), outcome.session_id, outcome.message or None,
                outcome.attempts, changes_text(outcome.changes) or None)
    if row in errors:
        return str(Status.INVALID), None, "; ".join(errors[row]) or None, None, None
    if validation.fatal:  # a missing column: the row is fine but the sheet cannot be sent
        sheet = [_problem_text(p) for p in validation.problems if p.row is None and p.is_error]
        return (str(Status.INVALID), None, "; ".join(sheet) or "the sheet cannot be sent", None,
                None)
    if row in validation.error_rows:
        return str(Status.INVALID), None, "has errors (see the Problems sheet)", None, None
    return str(Status.PENDING), None, None, None, None


#: Each status as the text its cell holds: ``str()`` of a `Status` makes a new string each time,
#: and the Results sheet's status column was one string a line kept until the workbook was done.
_STATUS_TEXT: Mapping[str, str] = {status: status.value for status in Status}


def _status_text(status: str) -> str:
    return _STATUS_TEXT.get(status) or str(status)


def _problem_text(p: Problem) -> str:
    """A message that names its column, unless it already starts with it."""
    if p.column and not p.message.startswith(p.column):
        return f"{p.column}: {p.message}"
    return p.message


def _column_lists(table: RawTable) -> list[list[Cell]]:
    """The table's cells column by column, empty cells None: read from the columns the reader
    keeps, so the table's row lists are never built (at 100,000 rows they outlive the write)."""
    return [cells.tolist() for cells in table.columns()]


def _lines(columns: Sequence[Sequence[object]], n: int) -> Iterable[Sequence[object]]:
    """The ``n`` rows of ``columns``, one tuple at a time."""
    return zip(*columns, strict=True) if columns else itertools.repeat((), n)


class _SessionLines:
    """The lines of the Results sheet a valid repeating row gets: one per session, the input
    cells as typed but ``date`` (and a moved ``lockUntil``) the session's, and ``name`` and
    ``description`` with their placeholders filled in."""

    def __init__(self, validation: Validation, outcomes: Iterable[Outcome],
                 inputs: Sequence[tuple[int, str]]) -> None:
        self.by_row: dict[int, list[Outcome]] = {}
        for o in outcomes:
            if o.occurrence is not None:
                self.by_row.setdefault(o.row, []).append(o)
        for found in self.by_row.values():
            found.sort(key=lambda o: o.occurrence or 0)
        self.sessions: dict[tuple[int, int | None], SessionRow] = {
            (s.row, s.occurrence): s for s in validation.sessions
            if s.occurrence is not None} if self.by_row else {}
        at = {raw: k for k, (raw, _) in enumerate(inputs)}
        index = validation.headers.index
        #: (position in a line of inputs, the SessionRow's field, only where typed with "{")
        self.changed = [(at[index[name]], attr, name in ("name", "description"))
                        for name, attr in (("date", "date"), ("lockUntil", "lock_until"),
                                           ("name", "name"), ("description", "description"))
                        if name in index and index[name] in at]

    def lines(self, row: int, typed: Sequence[object]
              ) -> list[tuple[int | None, Outcome | None, Sequence[object]]]:
        """(occurrence, outcome, input cells) for each line of ``row``: one with no outcome
        for a row that is not a valid repeating row's."""
        outcomes = self.by_row.get(row)
        if outcomes is None:
            return [(None, None, typed)]
        out: list[tuple[int | None, Outcome | None, Sequence[object]]] = []
        for o in outcomes:
            session = self.sessions.get((row, o.occurrence))
            cells = list(typed)
            if session is not None:
                for k, attr, placeholders in self.changed:
                    cell = cells[k]
                    if not placeholders or (isinstance(cell, str) and "{" in cell):
                        cells[k] = getattr(session, attr)
            out.append((o.occurrence, o, cells))
        return out


def write_results(
    path: str | os.PathLike[str],
    validation: Validation,
    outcomes: Mapping[Line, Outcome],
    summary: Mapping[str, object],
    *,
    only_in_zoho: Sequence[ListedSession] = (),
) -> None:
    """Write the results workbook: ``Results``, ``Summary`` and ``Problems`` sheets, and
    ``Only in Zoho`` when ``only_in_zoho`` lists sessions no row is.

    ``Results`` has one line per input row, in input order, and one per session of a valid
    repeating row: ``row``, ``occurrence`` (a repeating row's session number, else blank), the
    input columns as typed (but ``sessionId``; a session's line has its own ``date``, moved
    ``lockUntil`` and filled-in ``name`` and ``description``), then `RESULT_COLUMNS`:
    ``status``, ``sessionId`` (the row's session, or the one its cell named), ``message``,
    ``attempts``, ``changes``. A row without an Outcome is ``invalid`` (with its error
    messages) when validation found errors in it, else ``pending``. ``Summary`` lists
    ``summary`` in order, followed by the line counts by status as written.

    Streamed (XlsxWriter's constant-memory mode): memory stays flat however long the sheet, and
    each column's width is measured over its distinct values before the first row is written.
    """
    table = validation.table
    cells = table.columns()
    n = len(table.row_numbers)
    inputs = _input_columns(validation, leave_out={"sessionId"})
    header = ["row", OCCURRENCE, *(name for _, name in inputs), *RESULT_COLUMNS]
    errors: dict[int, list[str]] = {}
    for p in validation.problems:
        if p.row is not None and p.is_error:
            errors.setdefault(p.row, []).append(_problem_text(p))
    plain = {o.row: o for o in outcomes.values() if o.occurrence is None}
    repeating = _SessionLines(validation, outcomes.values(), inputs)
    at = validation.headers.index.get("sessionId")

    def results() -> Iterator[tuple[str, str | None, str | None, int | None, str | None]]:
        """Each line's `RESULT_COLUMNS`, in order: made twice (widths and counts, then the
        rows), never kept, since a list of them was the largest thing a run kept to the end."""
        typed_ids = _cells(cells[at]) if at is not None else itertools.repeat(None, n)
        for r, typed in zip(table.row_numbers, typed_ids, strict=True):
            sessions = repeating.by_row.get(r)
            if sessions is None:
                status, session_id, message, attempts, changes = _row_status(r, validation,
                                                                             plain, errors)
                yield status, session_id or typed_id(typed), message, attempts, changes
                continue
            for o in sessions:
                yield (_status_text(o.status), o.session_id or typed_id(typed),
                       o.message or None, o.attempts, changes_text(o.changes) or None)

    status_col = 3 + len(inputs)
    text_columns = {c for c, name in enumerate(header, start=1)
                    if _is_id_column(name, validation.spec) or name == "sessionId"}
    widths = {c: len(h) for c, h in enumerate(header, start=1)}
    if n:  # the widest of whole numbers is the largest or the most negative
        widths[1] = max(widths[1], _column_width((min(table.row_numbers),
                                                  max(table.row_numbers))))
    for c, (i, _) in enumerate(inputs, start=3):
        widths[c] = max(widths[c], _column_width(cells[i].each_value()))
    for k, attr, _ in repeating.changed:  # what a session's line holds instead
        widths[3 + k] = max(widths[3 + k], _column_width(
            getattr(s, attr) for s in repeating.sessions.values()))
    counts: Counter[str] = Counter()
    lines = 0
    for part in _parts(results()):
        lines += len(part)
        columns = list(zip(*part, strict=True))
        counts.update(columns[0])
        for c, column in enumerate(columns, start=status_col):
            widths[c] = max(widths[c], _column_width(column))
    message_col = status_col + 2

    def sheets(book: _Book) -> None:
        ws = book.sheet("Results")
        ws.prepare(widths)
        ws.width(message_col, max(12, min(80, widths[message_col] + 2)))
        ws.header(header)
        typed_lines = _cell_rows([cells[i] for i, _ in inputs], n)
        fills = {status: book.format(None, colour) for status, colour in STATUS_COLOURS.items()}
        status_at, write_string = status_col - 1, ws._fast[0]
        out = results()
        r = 1
        for row_number, typed in zip(table.row_numbers, typed_lines, strict=True):
            for occurrence, _, line in repeating.lines(row_number, typed):
                r += 1
                status, *rest = next(out)
                ws.line(r, (row_number, occurrence, *line), text_columns)
                if status in fills:  # one of ours: plain text, coloured
                    write_string(r - 1, status_at, status, fills[status])
                else:
                    ws.cell(r, status_col, status)
                ws.line(r, rest, text_columns, start=status_col + 1)
        ws.cover(lines + 1, len(header))
        ws.filter(lines + 1, len(header))

        _write_summary(book.sheet("Summary"), summary, counts,
                       sessions=bool(repeating.by_row))
        _write_problems(book.sheet("Problems"), validation.problems)
        _write_names(book, validation)
        _write_only_in_zoho(book, only_in_zoho)

    _write_streamed(path, sheets)


#: How many rows a streamed workbook takes from the table's columns (or its result lines) at a
#: time: lists of that many, not of every row.
_PART = 4096


def _parts(items: Iterable[T]) -> Iterator[list[T]]:
    """``items`` in lists of `_PART`."""
    it = iter(items)
    while part := list(itertools.islice(it, _PART)):
        yield part


def _cells(column: Cells) -> Iterator[Cell]:
    """Every cell of ``column`` (an empty one None), a part at a time."""
    return itertools.chain.from_iterable(column.lists(_PART))


def _cell_rows(columns: Sequence[Cells], n: int) -> Iterable[Sequence[object]]:
    """The ``n`` rows of ``columns``, one tuple at a time, a part of each column at a time."""
    return zip(*map(_cells, columns), strict=True) if columns else itertools.repeat((), n)


def _summary_lines(summary: Mapping[str, object], prefix: str = "") -> Iterable[list[object]]:
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _summary_lines(value, prefix=f"{name}.")
        elif isinstance(value, list | tuple | set | frozenset):
            yield [name, ", ".join(str(v) for v in value)]
        elif value is None or isinstance(value, str | bool | int | float | dt.date | dt.time):
            yield [name, value]
        else:
            yield [name, str(value)]


def _write_summary(ws: _Sheet, summary: Mapping[str, object], counts: Counter[str], *,
                   sessions: bool = False) -> None:
    """``summary``, then the Results sheet's lines by status (with repeating rows: a line per
    session, and one per invalid row)."""
    lines = list(_summary_lines(summary))
    lines.append([None, None])
    lines.append(["sessions by status (an invalid row once)" if sessions else "rows by status",
                  None])
    for status in Status:
        lines.append([str(status), counts.get(str(status), 0)])
    # a key/value list; a filter only gets in the way
    _stream_table(ws, ["item", "value"], lines, caps={"value": 80}, autofilter=False)


#: The columns of the ``Names`` sheet: where a name was typed in an ID column, and its ID.
NAMES_COLUMNS: tuple[str, ...] = ("row", "column", "typed", "id")
#: Columns of the ``Only in Zoho`` sheet: sessions Zoho holds in the modules a sheet touches
#: that no row is (a contract: the admin reviews them; nothing is deleted).
ONLY_IN_ZOHO_COLUMNS: tuple[str, ...] = ("name", "date", "startTime", "endTime",
                                         "trainerErecno", "roomId", "moduleId", "sessionId")


def _write_only_in_zoho(book: _Book, sessions: Sequence[ListedSession]) -> None:
    """The ``Only in Zoho`` sheet, when Zoho holds sessions in the sheet's modules that no row
    is: `ONLY_IN_ZOHO_COLUMNS`, by date and time."""
    if not sessions:
        return
    rows = [[s.name, format_date(s.date), format_time(s.start),
             format_time(s.end) if s.end is not None else None, s.trainer_erecno, s.room_id,
             s.module_id, s.id]
            for s in sorted(sessions, key=lambda s: (s.date, s.start, s.name, s.id))]
    _stream_table(book.sheet("Only in Zoho"), list(ONLY_IN_ZOHO_COLUMNS), rows,
                  caps={"name": 60})


def _write_names(book: _Book, validation: Validation) -> None:
    """The ``Names`` sheet, when the sheet named things instead of typing IDs: each cell's name
    as typed beside the ID it resolved to (the Results sheet keeps the cells as typed)."""
    if not validation.resolved:
        return
    rows = [[row, column, typed, ident]
            for (row, column), (typed, ident) in sorted(validation.resolved.items())]
    _stream_table(book.sheet("Names"), list(NAMES_COLUMNS), rows, caps={"typed": 60})


def _write_problems(ws: _Sheet, problems: Iterable[Problem], *, codes: bool = False) -> None:
    """The Problems sheet: `PROBLEM_COLUMNS`, then each problem's ``code`` when ``codes``."""
    header = [*PROBLEM_COLUMNS, "code"] if codes else list(PROBLEM_COLUMNS)
    rows = [[p.row, p.column, p.value, p.severity, p.message, p.code][: len(header)]
            for p in problems]
    _stream_table(ws, header, rows, caps={"value": 40, "message": 100})


# --------------------------------------------------------------------------------------------
# annotated validation report


def _locate_column(validation: Validation, column: str | None) -> int | None:
    """The raw-table index of a problem's column (canonical name or header as typed), or None."""
    if column is None:
        return None
    hm = validation.headers
    if column in hm.index:
        return hm.index[column]
    for i, header, _ in [*hm.unknown, *((i, h, n) for i, h, n in hm.duplicate)]:
        if header == column:
            return i
    for i, header in enumerate(validation.table.headers):
        if header == column:
            return i
    return None


def _notes(validation: Validation) -> dict[tuple[int, int], list[Problem]]:
    """The problems to mark, by (spreadsheet row, 1-based column); row 1 is the header."""
    notes: dict[tuple[int, int], list[Problem]] = {}
    known_rows = set(validation.table.row_numbers)
    for p in validation.problems:
        index = _locate_column(validation, p.column)
        if p.row is None:
            if index is not None:  # e.g. an unknown header: mark the header cell
                notes.setdefault((1, index + 1), []).append(p)
            continue
        if p.row not in known_rows:
            continue
        notes.setdefault((p.row, (index if index is not None else 0) + 1), []).append(p)
    return notes


def _note(found: Sequence[Problem]) -> tuple[str, str, int]:
    """A marked cell's fill (an error anywhere in it wins over a warning), its comment, and the
    comment's height in pixels (300 wide)."""
    is_error = any(p.is_error for p in found)
    text = "\n".join(f"{p.severity}: {_problem_text(p)}" for p in found)
    height = min(400, 40 + 30 * len(found) + len(text) // 2)
    return (ERROR_FILL if is_error else WARNING_FILL), text, height


def write_report(path: str | os.PathLike[str], validation: Validation) -> None:
    """Write a copy of the sheet with every problem marked where it is.

    Rows keep their spreadsheet row numbers (blank rows stay blank) so "row 14" in the console
    is row 14 here too. A problem cell gets a red fill for an error, yellow for a warning, and
    its messages as a comment. Problems about the whole sheet, or about a column the sheet does
    not have, can only be listed: the ``Problems`` sheet lists every problem.

    Streamed like `write_results`.
    """
    table = validation.table
    hm = validation.headers
    spec = validation.spec
    id_columns = {hm.index[n] for n in spec.names if n in hm.index and _is_id_column(n, spec)}
    notes = _notes(validation)
    columns = _column_lists(table)
    width = max([len(table.headers), *(c for _, c in notes)])
    widths = {c: len(h or "") for c, h in enumerate(table.headers, start=1)}
    for c, column in enumerate(columns, start=1):
        widths[c] = max(widths.get(c, 0), _column_width(column))
    last_row = max([1, *table.row_numbers, *(r for r, _ in notes)])

    def sheets(book: _Book) -> None:
        ws = book.sheet(_safe_sheet_title(table.sheet or "Sheet"))
        ws.prepare(widths)
        _report_header(ws, table.headers, notes)
        marked_rows = {r for r, _ in notes}
        text_columns = {i + 1 for i in id_columns}
        written = 1
        for row_number, values in _in_sheet_order(table.row_numbers,
                                                  _lines(columns, len(table.row_numbers))):
            if row_number <= written:  # the header's row: nowhere to put it
                continue
            # a blank row of the sheet stays blank: rows are written at their own numbers
            if row_number in marked_rows:
                for c, value in enumerate(_pad(values, width), start=1):
                    _report_cell(ws, row_number, c, value, notes,
                                 text_format=c in text_columns)
            else:
                ws.line(row_number, values, text_columns)
            written = row_number
        ws.cover(last_row, max(1, width))

        _write_problems(book.sheet("Problems"), validation.problems, codes=True)
        _write_names(book, validation)

    _write_streamed(path, sheets)


def _safe_sheet_title(name: str) -> str:
    """Excel sheet titles: at most 31 characters (UTF-16 units, as Excel counts them), none of
    ``[]:*?/\\``, neither starting nor ending with ``'``, not "Problems"."""
    title = re.sub(r"[\[\]:*?/\\]", "_", name).strip("'")
    while len(title.encode("utf-16-le")) > 62:
        title = title[:-1]
    title = title.strip("'") or "Sheet"
    return "Sheet" if title.lower() == "problems" else title


def _in_sheet_order(numbers: Sequence[int], lines: Iterable[Sequence[object]]
                    ) -> Iterable[tuple[int, Sequence[object]]]:
    """(row number, line) in sheet order, as the reader gives them; a table built otherwise is
    sorted, a repeated row number keeping its last line."""
    pairs = zip(numbers, lines, strict=True)
    if all(a < b for a, b in itertools.pairwise(numbers)):
        return pairs
    return dict(sorted(pairs, key=lambda pair: pair[0])).items()


def _pad(values: Sequence[object], width: int) -> Sequence[object]:
    """``values`` with Nones added up to ``width``."""
    return values if len(values) >= width else [*values, *([None] * (width - len(values)))]


def _report_header(ws: _Sheet, headers: Sequence[str],
                   notes: Mapping[tuple[int, int], Sequence[Problem]]) -> None:
    """The header row as typed, bold on the header fill (a marked header cell keeps that fill
    and gets its comment)."""
    for c, name in enumerate(headers or [None], start=1):
        found = notes.get((1, c))
        if found:
            _, text, height = _note(found)
            ws.cell(1, c, name, fill=HEADER_FILL, bold=True, comment=text, comment_height=height)
        else:
            ws.cell(1, c, name, fill=HEADER_FILL, bold=True)


def _report_cell(ws: _Sheet, row: int, column: int, value: object,
                 notes: Mapping[tuple[int, int], Sequence[Problem]], *,
                 text_format: bool = False) -> None:
    """One cell of the report: the value as read, marked if a problem is about it."""
    found = notes.get((row, column))
    if found:
        fill, text, height = _note(found)
        ws.cell(row, column, value, text_format=text_format, fill=fill, comment=text,
                comment_height=height)
    else:
        ws.cell(row, column, value, text_format=text_format)


# --------------------------------------------------------------------------------------------
# template


def _instructions_rows(spec: Spec) -> list[list[object]]:
    """One line per column: name, required or optional, what it is, an example."""
    return [[c.name, "required" if c.required else "optional", c.description, c.example]
            for c in spec.columns]


def _rules(spec: Spec) -> tuple[str, ...]:
    """The numbered rules under the column list on the Instructions sheet."""
    path = [spec.by_name[name] for name in spec.path_columns]
    path_names = ", ".join(c.name for c in path[:-1]) + f" and {path[-1].name}"
    options = ", ".join(c.option or "" for c in path)
    return (
        "One session per row. Row 1 holds the column names; headers match ignoring case, spaces, "
        "underscores and hyphens (\"Course ID\" is courseId).",
        "IDs are 18 digits. Keep ID columns formatted as Text: Excel keeps only 15 digits of a "
        "number, so an ID typed into a General cell is silently changed (4.78346E+17).",
        f"{path_names} may be left out of the sheet and given once on the command "
        f"line ({options}).",
        "Dates are day first (04-01-2027 is 4 January 2027); real date cells, 2027-01-04 and "
        "4-Jan-2027 also work. Use --month-first for month-first text dates.",
        "Times: time cells, or text such as 10:00 AM or 14:30. The end time must be after the "
        "start.",
        "type is Classroom or E-learning (or 0 / 1).",
        "lockUntil, when given, must be on or before the session date.",
        "A date in the past is a warning. The same session twice, a trainer or room booked twice "
        "at the same time, and a key used twice are reported.",
        "A row can repeat (see Repeating rows below): repeat gives the rule, until the last date "
        "or count how many sessions, and the row's date is the first session. A repeating row "
        f"makes at most {MAX_OCCURRENCES} sessions, each checked like a row of its own.",
        "skip lists dates without a session (dates or ranges such as 06-04-2027..10-04-2027, "
        "separated by ; or ,). The dates on the Holidays sheet are skipped by every repeating "
        "row (for a CSV sheet, give them with --holidays holidays.csv).",
        "In a repeating row, name and description may use {n} (the session's number from 1), "
        "{count} (how many there are) and {date} (dd-mm-yyyy): Spanish A1 – lesson {n} of "
        "{count}.",
        "Check the sheet first: bulkschedule validate sessions.xlsx (add --report checked.xlsx "
        "for a copy with every problem marked).",
    )


#: Examples of repeating rows on the Instructions sheet: (repeat, until, count, skip, date, what
#: the row makes). tests/test_repeating.py checks each against the expansion.
REPEAT_EXAMPLES: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("Tue, Thu", "15-04-2027", "", "06-04-2027..10-04-2027", "12-01-2027",
     "Every Tuesday and Thursday from 12 January to 15 April 2027, not in the Easter week: "
     "26 sessions"),
    ("weekly", "", "10", "", "04-01-2027",
     "10 sessions, one each Monday from 4 January 2027 (a skipped date does not use one up)"),
    ("weekdays", "12-02-2027", "", "08-02-2027", "01-02-2027",
     "Monday to Friday for two weeks, except 8 February: 9 sessions"),
    ("every 2 weeks on Mon, Wed", "", "6", "", "04-01-2027",
     "Monday and Wednesday every other week: 6 sessions, 4 January to 3 February 2027"),
    ("daily", "", "5", "", "04-01-2027", "Five days in a row from 4 January 2027: 5 sessions"),
    ("every 3 weeks", "31-03-2027", "", "", "06-01-2027",
     "Every third Wednesday from 6 January to 31 March 2027: 5 sessions"),
)
#: Forms the ``repeat`` column reads, for the Instructions sheet.
REPEAT_FORMS = ("daily; weekdays (Monday to Friday); weekly; every N weeks (N from 1 to 52); "
                "a list of days such as Tue, Thu or Monday Wednesday (weekly on those days); "
                "every 2 weeks on Mon, Wed. Case and extra spaces do not matter; days in English, "
                "three letters or whole.")


#: The number format of a template column, by kind (text and type columns stay General).
_KIND_FORMATS: Mapping[str, str] = {"id": TEXT_FORMAT, "date": DATE_FORMAT, "time": TIME_FORMAT}
#: The width of a template column, by kind.
_KIND_WIDTHS: Mapping[str, int] = {"id": 21, "date": 12, "time": 11, "type": 12}


def _template_format(col: Column) -> str | None:
    if col.name == "key" or col.kind in ("rule", "dates"):
        return TEXT_FORMAT  # keys like 0012 keep their zeros; a skip date stays as typed
    return _KIND_FORMATS.get(col.kind)


def _template_width(col: Column) -> int:
    return 36 if col.name == "name" else _KIND_WIDTHS.get(col.kind, 24)


def template_workbook(spec: Spec = SPEC) -> Workbook:
    """The template as an openpyxl Workbook (also the base of the shipped sample sheet).

    Built only from the column spec, with a fixed creation date, so the same code always
    produces the same workbook content.
    """
    from openpyxl.comments import Comment  # lazy: heavy
    from openpyxl.styles import Font  # lazy: heavy
    from openpyxl.utils import get_column_letter  # lazy: heavy
    from openpyxl.worksheet.datavalidation import DataValidation  # lazy: heavy

    wb, ws = _new_workbook("Sessions")
    bold = Font(bold=True)
    last = TEMPLATE_ROWS + 1
    for c, col in enumerate(spec.columns, start=1):
        cell = _cell(ws, 1, c)
        set_cell(cell, col.name)
        cell.font = bold
        cell.fill = _fill(REQUIRED_FILL if col.required else HEADER_FILL)
        need = "Required." if col.required else "Optional."
        comment = Comment(f"{need} {col.description}\nExample: {col.example}", "bulkschedule")
        comment.width = 320
        comment.height = 140
        cell.comment = comment
        fmt = _template_format(col)
        letter = get_column_letter(c)
        if fmt:
            for r in range(2, last + 1):
                ws.cell(row=r, column=c).number_format = fmt
        ws.column_dimensions[letter].width = _template_width(col)
        if col.kind == "type":
            dv = DataValidation(type="list", formula1='"' + ",".join(TYPE_CHOICES) + '"',
                                allow_blank=True, showErrorMessage=True, showInputMessage=True)
            dv.errorTitle = "Session type"
            dv.error = "Choose Classroom or E-learning."
            dv.promptTitle = "Session type"
            dv.prompt = "Classroom or E-learning"
            dv.add(f"{letter}2:{letter}{last}")
            ws.add_data_validation(dv)
    ws.freeze_panes = "A2"

    info = wb.create_sheet("Instructions")
    _write_table(info, ["column", "required", "description", "example"],
                 _instructions_rows(spec), caps={"description": 90})
    info.auto_filter.ref = None
    for r in range(2, len(spec.columns) + 2):
        info.cell(row=r, column=4).number_format = TEXT_FORMAT
    start = len(spec.columns) + 3
    set_cell(_cell(info, start, 1), "Rules")
    info.cell(row=start, column=1).font = bold
    rules = _rules(spec)
    for i, rule in enumerate(rules, start=1):
        set_cell(_cell(info, start + i, 1), i)
        set_cell(_cell(info, start + i, 3), rule)
    if "repeat" in spec.by_name:
        _repeat_examples(info, start + len(rules) + 2)
    _holidays_sheet(wb)
    return wb


def _repeat_examples(info: Worksheet, start: int) -> None:
    """The Instructions sheet's "Repeating rows" section: the forms, then example rows."""
    from openpyxl.styles import Font  # lazy: heavy

    bold = Font(bold=True)
    set_cell(_cell(info, start, 1), "Repeating rows")
    info.cell(row=start, column=1).font = bold
    set_cell(_cell(info, start + 1, 1), "repeat forms")
    set_cell(_cell(info, start + 1, 3), REPEAT_FORMS)
    # in the sheet's four columns: repeat, the end, what the row makes, skip
    header = ("repeat", "until or count", "date: what the row makes", "skip")
    for c, name in enumerate(header, start=1):
        set_cell(_cell(info, start + 2, c), name)
        info.cell(row=start + 2, column=c).font = bold
    for r, (repeat, until, count, skip, date, makes) in enumerate(REPEAT_EXAMPLES,
                                                                  start=start + 3):
        end = f"until {until}" if until else f"count {count}"
        for c, value in enumerate((repeat, end, f"{date}: {makes}", skip), start=1):
            set_cell(_cell(info, r, c), value or None, text_format=True)


#: The Holidays sheet of the template: how many rows are formatted for dates.
HOLIDAY_ROWS = 100


def _holidays_sheet(wb: Workbook) -> None:
    """The template's Holidays sheet: a date (or range) and a name per line, skipped by every
    repeating row of the Sessions sheet."""
    from openpyxl.comments import Comment  # lazy: heavy
    from openpyxl.styles import Font  # lazy: heavy

    ws = wb.create_sheet("Holidays")
    notes = ("A date, or a range such as 06-04-2027..10-04-2027. No repeating row of the "
             "Sessions sheet has a session on these dates.",
             "Optional: what the day is (for you; it is not sent).")
    for c, (name, note) in enumerate(zip(("date", "name"), notes, strict=True), start=1):
        cell = _cell(ws, 1, c)
        set_cell(cell, name)
        cell.font = Font(bold=True)
        cell.fill = _fill(HEADER_FILL)
        comment = Comment(note, "bulkschedule")
        comment.width, comment.height = 320, 100
        cell.comment = comment
    for r in range(2, HOLIDAY_ROWS + 2):
        ws.cell(row=r, column=1).number_format = DATE_FORMAT
    ws.column_dimensions["A"].width = 26
    ws.column_dimensions["B"].width = 30
    ws.freeze_panes = "A2"


def write_template(path: str | os.PathLike[str], spec: Spec = SPEC) -> None:
    """Write the sheet admins fill in (see `template_workbook`)."""
    _save_atomic(template_workbook(spec), path)


def template_csv(spec: Spec = SPEC) -> str:
    """The CSV template: one header row of canonical names, CRLF-terminated (RFC 4180)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(spec.names)
    return buf.getvalue()


def write_template_csv(path: str | os.PathLike[str], spec: Spec = SPEC) -> None:
    """Write the CSV template atomically, as UTF-8 without a byte-order mark."""
    data = template_csv(spec).encode("utf-8")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))

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

openpyxl is imported lazily, inside the functions that use it (each such import is marked "lazy:
heavy"): the CLI must answer ``--help`` without loading it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import io
import itertools
import os
import re
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from bulkschedule.core.files import atomic_write
from bulkschedule.core.problems import Outcome, Problem, Status
from bulkschedule.sheet.columns import SPEC, Column, Spec
from bulkschedule.sheet.recurrence import MAX_OCCURRENCES
from bulkschedule.sheet.schema import Validation

if TYPE_CHECKING:  # pragma: no cover - typing only
    from openpyxl import Workbook
    from openpyxl.cell import _CellSetValue as CellValue
    from openpyxl.cell.cell import Cell as XlCell
    from openpyxl.comments import Comment
    from openpyxl.styles import PatternFill
    from openpyxl.workbook.child import _WorkbookChild
    from openpyxl.worksheet.dimensions import ColumnDimension, DimensionHolder
    from openpyxl.worksheet.filters import AutoFilter
    from openpyxl.worksheet.worksheet import Worksheet

    from bulkschedule.sheet.reader import Cell, RawTable

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
RESULT_COLUMNS: tuple[str, ...] = ("status", "sessionId", "message", "attempts")

#: Columns of the Problems sheet (both workbooks); the annotated report adds ``code``.
PROBLEM_COLUMNS: tuple[str, ...] = ("row", "column", "value", "severity", "message")

#: Fill colour (RGB hex) of the status cell, by status: green done, blue dry run, amber look at it,
#: red act on it, grey not reached.
STATUS_COLOURS: dict[str, str] = {
    Status.CREATED: "C6EFCE",
    Status.EXISTS: "C6EFCE",
    Status.WOULD_CREATE: "BDD7EE",
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
# Characters XML 1.0 cannot carry; openpyxl raises on them. We drop them rather than crash on a
# sheet that contained a stray control character.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


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
    """Save a workbook with `core.files.atomic_write`.

    A streamed sheet that was never saved is closed on the way out, so that its open stream is
    not left to the garbage collector (which would finish it after its file is gone).
    """
    try:
        atomic_write(path, wb.save)
    except BaseException:
        if wb.write_only:
            for ws in wb.worksheets:
                if not getattr(ws, "closed", True):
                    with contextlib.suppress(Exception):
                        ws.close()
        raise


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


def _input_columns(validation: Validation, columns: Sequence[Sequence[object]] | None = None
                   ) -> list[tuple[int, str]]:
    """(index in the raw row, output header) for every input column worth copying.

    Canonical columns first in spec order, then unknown headers as typed, then second copies of a
    column, then blank-header columns that hold data. An admin's header that would collide with
    one of our own result columns gets " (input)" appended so that scripts reading the
    ``status`` column always read ours.
    """
    from openpyxl.utils import get_column_letter  # lazy: heavy

    table = validation.table
    hm = validation.headers
    out: list[tuple[int, str]] = [
        (hm.index[name], name) for name in validation.spec.names if name in hm.index
    ]
    out += [(i, header) for i, header, _ in hm.unknown]
    out += [(i, header) for i, header, _ in hm.duplicate]
    used = {i for i, _ in out}
    for i, header in enumerate(table.headers):
        if i in used or (header or "").strip():
            continue
        cells = columns[i] if columns is not None else table.columns()[i].tolist()
        if any(value not in (None, "") for value in cells):
            out.append((i, f"(column {get_column_letter(i + 1)})"))
    reserved = {"row", *RESULT_COLUMNS}
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
# streaming sheets: the results workbook and the report, written row by row


#: First characters of text that openpyxl would store as a formula (``=``) or an error (``#N/A``),
#: or that Excel would read as a formula when the cell is edited (``+ - @``).
_CAREFUL_START = frozenset("=+-@#")

#: The number format of a typed cell, by exact type (subclasses take `set_cell`'s slow path).
_TYPE_FORMATS: dict[type, str] = {
    dt.datetime: DATETIME_FORMAT,
    dt.date: DATE_FORMAT,
    dt.time: TIME_FORMAT,
}
_PLAIN_TYPES = frozenset({int, float, bool, type(None)})
_NOTHING_KEPT: dict[object, XlCell] = {}


class _Stream(Protocol):
    """What we use of openpyxl's write-only sheet (its stubs leave out what ``_setup`` adds)."""

    freeze_panes: str | None
    column_dimensions: DimensionHolder[str, ColumnDimension]
    auto_filter: AutoFilter
    #: openpyxl's writer sizes a sheet (``<dimension>``) by this, when the sheet has it.
    calculate_dimension: Callable[[], str]

    def append(self, iterable: Iterable[object]) -> None: ...


@functools.cache
def _kept_cell_type() -> type[XlCell]:
    """openpyxl's cell, with a constant ``repr``: ``append`` formats the repr of every cell
    object it is given (into an error it then catches, on its way to seeing it is a cell), and
    that formatting was a tenth of the time spent on a kept cell."""
    from openpyxl.cell.cell import Cell  # lazy: heavy

    class KeptCell(Cell):
        __slots__ = ()

        def __repr__(self) -> str:
            return "<kept cell>"

    return KeptCell


class _Cells:
    """Turns values into what a write-only sheet's ``append`` takes, by `set_cell`'s rules.

    A value that needs no style goes in as it is: openpyxl writes it through one cell of its own.
    A value that needs one (a date format, Text for an ID, a fill, a bold header) goes in a styled
    cell kept per column, style and value, and used again whenever that value comes back: a
    write-only sheet writes each row before ``append`` returns, so a cell is free again for the
    next row (a column has one cell in a row, so keeping cells per column is enough). An ID column
    holds few distinct values, so most of its cells are neither made nor filled again. Past
    `KEEP_VALUES` values, the oldest value's cell takes the new value. Text that looks like a
    formula or an error code or holds characters XML cannot carry, and a cell with a comment, are
    rare and get a cell of their own.
    """

    #: Distinct values kept per column and style.
    KEEP_VALUES = 512

    def __init__(self, ws: _Stream) -> None:
        self.ws = cast("_WorkbookChild", ws)  # what a cell's parent is typed as
        self._kept: dict[tuple[int, str | None, str | None, bool], dict[object, XlCell]] = {}
        self._fills: dict[str, PatternFill] = {}

    def __call__(self, column: int, value: object, *, text_format: bool = False,
                 fill: str | None = None, bold: bool = False) -> object:
        """``value`` for ``column`` (1-based), plain or in a styled cell."""
        kind = value.__class__
        if kind is str:
            text = cast(str, value)
            if text and (text[0] in _CAREFUL_START
                         or (not text.isprintable() and _ILLEGAL.search(text))):
                return self.own(text, text_format=text_format, fill=fill, bold=bold)
            fmt = TEXT_FORMAT if text_format else None
        elif kind in _PLAIN_TYPES:
            fmt = None
        elif kind in _TYPE_FORMATS:
            fmt = _TYPE_FORMATS[kind]
        else:
            return self.own(value, text_format=text_format, fill=fill, bold=bold)
        if fmt is None and fill is None and not bold:
            return value
        kept = self._kept.get((column, fmt, fill, bold))
        if kept is None:
            kept = self._kept[column, fmt, fill, bold] = {}
        cell = kept.get(value)
        if cell is None:
            if len(kept) < self.KEEP_VALUES:
                cell = self._styled(fmt, fill, bold)
            else:  # this column's cell of its oldest kept value: in no row waiting to be written
                cell = kept.pop(next(iter(kept)))
            cell.value = cast("CellValue", value)
            kept[value] = cell
        return cell

    def own(self, value: object, *, text_format: bool = False, fill: str | None = None,
            bold: bool = False, comment: Comment | None = None) -> XlCell:
        """A cell of its own for ``value``, written by `set_cell` itself."""
        from openpyxl.cell import WriteOnlyCell  # lazy: heavy

        cell = WriteOnlyCell(self.ws)
        set_cell(cell, value, text_format=text_format)
        self._style(cell, fill, bold)
        if comment is not None:
            cell.comment = comment
        return cell

    def _styled(self, fmt: str | None, fill: str | None, bold: bool) -> XlCell:
        cell = _kept_cell_type()(self.ws, row=1, column=1)
        if fmt is not None:
            cell.number_format = fmt
        self._style(cell, fill, bold)
        return cell

    def _style(self, cell: XlCell, fill: str | None, bold: bool) -> None:
        if fill is not None:
            if fill not in self._fills:
                self._fills[fill] = _fill(fill)
            cell.fill = self._fills[fill]
        if bold:
            from openpyxl.styles import Font  # lazy: heavy

            cell.font = Font(bold=True)

    def header(self, names: Sequence[object]) -> list[object]:
        """The header row: bold on the header fill, as `_style_header` makes it."""
        return [self(c, name, fill=HEADER_FILL, bold=True) for c, name in enumerate(names, 1)]

    def line(self, values: Iterable[object], text_columns: Container[int] = (), *,
             start: int = 1) -> list[object]:
        """`__call__` for each of ``values`` (columns from ``start``; Text in ``text_columns``),
        with the common cases (a number, plain text outside an ID column) decided here, without
        a call: a row of 18 cells 100,000 times is where a streamed workbook's time goes."""
        out: list[object] = []
        kept = self._kept
        for c, value in enumerate(values, start):
            kind = value.__class__
            if kind is str:
                text = cast(str, value)
                if c in text_columns:
                    # only plain text is kept: a kept cell needs no further check
                    cell = kept.get((c, TEXT_FORMAT, None, False), _NOTHING_KEPT).get(text)
                    value = cell if cell is not None else self(c, text, text_format=True)
                elif not text or text[0] in _CAREFUL_START or not text.isprintable():
                    value = self(c, text)
            elif kind not in _PLAIN_TYPES:
                value = self(c, value, text_format=c in text_columns)
            out.append(value)
        return out


def _column_width(values: Iterable[object]) -> int:
    """The widest of ``values`` (`_display_width`), each distinct value measured once."""
    try:
        distinct: Iterable[object] = set(values)
    except TypeError:  # an unhashable value: measure them all
        distinct = list(values)
    return max(map(_display_width, distinct), default=0)


def _new_stream(title: str) -> tuple[Workbook, _Stream]:
    """A write-only workbook whose first sheet is called ``title``, and that sheet."""
    from openpyxl import Workbook  # lazy: heavy

    wb = Workbook(write_only=True)
    wb.properties.creator = "bulkschedule"
    wb.properties.created = _FIXED_CREATED
    return wb, cast("_Stream", wb.create_sheet(title))


def _prepare_sheet(ws: _Stream, widths: Mapping[int, int], *, last_row: int,
                   last_column: int, caps: Mapping[int, int] | None = None,
                   cap: int = 50) -> None:
    """What a streamed sheet needs before its first row: the frozen header, the column widths
    (`_autofit`, then ``caps``) and its size (the ``dimension`` a read-only reader sizes it by).
    """
    from openpyxl.utils import get_column_letter  # lazy: heavy

    ws.freeze_panes = "A2"
    for col, width in widths.items():
        fitted = max(6, min(cap, width + 2))
        if caps and col in caps:
            fitted = min(fitted, caps[col])
        ws.column_dimensions[get_column_letter(col)].width = fitted
    ref = f"A1:{get_column_letter(max(1, last_column))}{max(1, last_row)}"
    # A write-only sheet has no size of its own; openpyxl writes one if the sheet can say it.
    ws.calculate_dimension = lambda: ref


def _stream_table(ws: _Stream, header: Sequence[str],
                  rows: Sequence[Sequence[object]], *, caps: Mapping[str, int] | None = None,
                  autofilter: bool = True) -> None:
    """`_write_table` for a write-only sheet: header row (bold, frozen, filtered unless not
    ``autofilter``) then rows, with fitted widths."""
    from openpyxl.utils import get_column_letter  # lazy: heavy

    widths = {c: len(name) for c, name in enumerate(header, start=1)}
    for c, column in enumerate(zip(*rows, strict=False), start=1):
        widths[c] = max(widths.get(c, 0), _column_width(column))
    limits = {c: caps[name] for c, name in enumerate(header, start=1) if caps and name in caps}
    _prepare_sheet(ws, widths, last_row=len(rows) + 1, last_column=len(header), caps=limits)
    cells = _Cells(ws)
    ws.append(cells.header(header))
    for values in rows:
        ws.append(cells.line(values))
    if autofilter:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{len(rows) + 1}"


# --------------------------------------------------------------------------------------------
# results workbook


def _row_status(
    row: int,
    validation: Validation,
    outcomes: Mapping[int, Outcome],
    errors: Mapping[int, list[str]],
) -> tuple[str, str | None, str | None, int | None]:
    """(status, sessionId, message or None, attempts) for one spreadsheet row."""
    outcome = outcomes.get(row)
    if outcome is not None:
        return (str(outcome.status), outcome.session_id, outcome.message or None,
                outcome.attempts)
    if row in errors:
        return str(Status.INVALID), None, "; ".join(errors[row]) or None, None
    if validation.fatal:  # a missing column: the row is fine but the sheet cannot be sent
        sheet = [_problem_text(p) for p in validation.problems if p.row is None and p.is_error]
        return str(Status.INVALID), None, "; ".join(sheet) or "the sheet cannot be sent", None
    if row in validation.error_rows:
        return str(Status.INVALID), None, "has errors (see the Problems sheet)", None
    return str(Status.PENDING), None, None, None


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


def write_results(
    path: str | os.PathLike[str],
    validation: Validation,
    outcomes: Mapping[int, Outcome],
    summary: Mapping[str, object],
) -> None:
    """Write the results workbook: ``Results``, ``Summary`` and ``Problems`` sheets.

    ``Results`` has one line per input row, in input order: ``row``, the input columns as typed,
    then ``status``, ``sessionId``, ``message``, ``attempts``. A row without an Outcome is
    ``invalid`` (with its error messages) when validation found errors in it, else ``pending``.
    ``Summary`` lists ``summary`` in order, followed by the row counts by status as written.

    Streamed (openpyxl's write-only mode): memory stays flat however long the sheet, and each
    column's width is measured over its distinct values before the first row is written.
    """
    from openpyxl.utils import get_column_letter  # lazy: heavy

    wb, ws = _new_stream("Results")
    table = validation.table
    columns = _column_lists(table)
    inputs = _input_columns(validation, columns)
    header = ["row", *(name for _, name in inputs), *RESULT_COLUMNS]
    errors: dict[int, list[str]] = {}
    for p in validation.problems:
        if p.row is not None and p.is_error:
            errors.setdefault(p.row, []).append(_problem_text(p))
    results = [_row_status(r, validation, outcomes, errors) for r in table.row_numbers]
    counts: Counter[str] = Counter(status for status, *_ in results)

    status_col = 2 + len(inputs)
    text_columns = {c for c, name in enumerate(header, start=1)
                    if _is_id_column(name, validation.spec) or name == "sessionId"}
    widths = {c: len(h) for c, h in enumerate(header, start=1)}
    widths[1] = max(widths[1], _column_width(table.row_numbers))
    for c, (i, _) in enumerate(inputs, start=2):
        widths[c] = max(widths[c], _column_width(columns[i]))
    for c, column in enumerate(zip(*results, strict=True), start=status_col):
        widths[c] = max(widths[c], _column_width(column))
    message_col = status_col + 2
    _prepare_sheet(ws, widths, last_row=len(results) + 1, last_column=len(header))
    ws.column_dimensions[get_column_letter(message_col)].width = max(
        12, min(80, widths[message_col] + 2))

    cells = _Cells(ws)
    ws.append(cells.header(header))
    lines = _lines([columns[i] for i, _ in inputs], len(results))
    for row_number, line, (status, session_id, message, attempts) in zip(
            table.row_numbers, lines, results, strict=True):
        out = cells.line(line, text_columns, start=2)
        out.insert(0, row_number)
        out.append(cells(status_col, status, fill=STATUS_COLOURS.get(status)))
        out.append(cells(status_col + 1, session_id, text_format=True))
        out.append(cells(message_col, message))
        out.append(attempts)
        ws.append(out)
    ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{max(1, len(results) + 1)}"

    _write_summary(cast("_Stream", wb.create_sheet("Summary")), summary, counts)
    _write_problems(cast("_Stream", wb.create_sheet("Problems")),
                    validation.problems)
    _write_names(wb, validation)
    _save_atomic(wb, path)


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


def _write_summary(ws: _Stream, summary: Mapping[str, object],
                   counts: Counter[str]) -> None:
    lines = list(_summary_lines(summary))
    lines.append([None, None])
    lines.append(["rows by status", None])
    for status in Status:
        lines.append([str(status), counts.get(str(status), 0)])
    # a key/value list; a filter only gets in the way
    _stream_table(ws, ["item", "value"], lines, caps={"value": 80}, autofilter=False)


#: The columns of the ``Names`` sheet: where a name was typed in an ID column, and its ID.
NAMES_COLUMNS: tuple[str, ...] = ("row", "column", "typed", "id")


def _write_names(wb: Workbook, validation: Validation) -> None:
    """The ``Names`` sheet, when the sheet named things instead of typing IDs: each cell's name
    as typed beside the ID it resolved to (the Results sheet keeps the cells as typed)."""
    if not validation.resolved:
        return
    rows = [[row, column, typed, ident]
            for (row, column), (typed, ident) in sorted(validation.resolved.items())]
    _stream_table(cast("_Stream", wb.create_sheet("Names")), list(NAMES_COLUMNS), rows,
                  caps={"typed": 60})


def _write_problems(ws: _Stream, problems: Iterable[Problem], *,
                    codes: bool = False) -> None:
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


def _note(found: Sequence[Problem]) -> tuple[str, Comment]:
    """A marked cell's fill (an error anywhere in it wins over a warning) and comment."""
    from openpyxl.comments import Comment  # lazy: heavy

    is_error = any(p.is_error for p in found)
    text = "\n".join(f"{p.severity}: {_problem_text(p)}" for p in found)
    comment = Comment(text, "bulkschedule")
    comment.width = 300
    comment.height = min(400, 40 + 30 * len(found) + len(text) // 2)
    return (ERROR_FILL if is_error else WARNING_FILL), comment


def write_report(path: str | os.PathLike[str], validation: Validation) -> None:
    """Write a copy of the sheet with every problem marked where it is.

    Rows keep their spreadsheet row numbers (blank rows stay blank) so "row 14" in the console
    is row 14 here too. A problem cell gets a red fill for an error, yellow for a warning, and
    its messages as a comment. Problems about the whole sheet, or about a column the sheet does
    not have, can only be listed: the ``Problems`` sheet lists every problem.

    Streamed like `write_results`.
    """
    table = validation.table
    wb, ws = _new_stream(_safe_sheet_title(table.sheet or "Sheet"))
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
    _prepare_sheet(ws, widths, last_row=last_row, last_column=max(1, width))

    cells = _Cells(ws)
    ws.append(_report_header(cells, table.headers, notes))
    marked_rows = {r for r, _ in notes}
    text_columns = {i + 1 for i in id_columns}
    written = 1
    for row_number, values in _in_sheet_order(table.row_numbers,
                                              _lines(columns, len(table.row_numbers))):
        if row_number <= written:  # the header's row: nowhere to put it
            continue
        for _ in range(written + 1, row_number):
            ws.append([])  # a blank row of the sheet stays blank
        line = _pad(values, width)
        if row_number in marked_rows:
            ws.append([_report_cell(cells, row_number, c, value, notes,
                                    text_format=c - 1 in id_columns and isinstance(value, str))
                       for c, value in enumerate(line, start=1)])
        else:
            ws.append(cells.line(line, text_columns))
        written = row_number

    _write_problems(cast("_Stream", wb.create_sheet("Problems")),
                    validation.problems, codes=True)
    _write_names(wb, validation)
    _save_atomic(wb, path)


def _safe_sheet_title(name: str) -> str:
    """Excel sheet titles: at most 31 characters, none of ``[]:*?/\\``, not "Problems"."""
    title = re.sub(r"[\[\]:*?/\\]", "_", name).strip("'")[:31] or "Sheet"
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


def _report_header(cells: _Cells, headers: Sequence[str],
                   notes: Mapping[tuple[int, int], Sequence[Problem]]) -> list[object]:
    """The header row as typed, bold on the header fill (a marked header cell keeps that fill
    and gets its comment)."""
    out: list[object] = []
    for c, name in enumerate(headers or [None], start=1):
        found = notes.get((1, c))
        if found:
            out.append(cells.own(name, fill=HEADER_FILL, bold=True, comment=_note(found)[1]))
        else:
            out.append(cells(c, name, fill=HEADER_FILL, bold=True))
    return out


def _report_cell(cells: _Cells, row: int, column: int, value: object,
                 notes: Mapping[tuple[int, int], Sequence[Problem]], *,
                 text_format: bool = False) -> object:
    """One cell of the report: the value as read, marked if a problem is about it."""
    found = notes.get((row, column))
    if found:
        fill, comment = _note(found)
        return cells.own(value, text_format=text_format, fill=fill, comment=comment)
    return cells(column, value, text_format=text_format)


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

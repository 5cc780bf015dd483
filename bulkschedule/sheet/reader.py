"""Read a sheet file into a `RawTable`: cells exactly as stored, with spreadsheet row numbers.

The only stage that touches input files. Nothing here parses dates or IDs; it only refuses to
lose information (IDs stay text, typed cells keep their type).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import ctypes
import datetime as dt
import functools
import gc
import io
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from bulkschedule.core.errors import ReadError
from bulkschedule.sheet import zip_guard
from bulkschedule.sheet.columns import BY_NAME, canonical
from bulkschedule.sheet.limits import MB, ReadLimits, exceeded

if TYPE_CHECKING:
    import numpy as np

#: A cell as read: text from CSV and text cells; float/int/bool for numeric workbook cells;
#: date/datetime/time/timedelta for date- or time-formatted cells; None for an empty cell.
Cell = str | float | int | bool | dt.date | dt.datetime | dt.time | dt.timedelta | None


class ByValue:
    """Equality and repr over ``__match_args__``, for classes that compute a field on first use
    (so they cannot be dataclasses with slots): a lazy field compares by its value."""

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()
    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in zip(self.__match_args__, self._fields(),
                                                          strict=True))
        return f"{self.__class__.__name__}({values})"


class HolidayLine(NamedTuple):
    """One line of a Holidays sheet or a ``--holidays`` file: dates no repeating row has a
    session on (a date or a range, or several), with an optional name."""

    source: str  #: where the line is, as messages name it: "Holidays sheet" or the file
    row: int  #: its row number there (the first row is 1)
    cell: Cell  #: the date, dates or range, as read
    name: Cell = None


#: The sheet of a workbook that lists the holidays (matched ignoring case and spaces).
HOLIDAYS_SHEET = "Holidays"


class RawTable(ByValue):
    """One sheet as read. ``rows`` is built on first use: validation reads `columns` instead.

    Fields: ``file`` (the path as the user gave it); ``sheet`` (sheet name for workbooks, None for
    CSV); ``headers`` (header row as typed, "" for a blank header cell); ``rows`` (data rows, each
    padded/truncated to len(headers), blank rows dropped, empty cells None); ``row_numbers``
    (spreadsheet row number of each entry in rows; the header is row 1); ``notes`` (e.g. "read as
    Windows-1252", "delimiter ';'"); ``first_column`` (spreadsheet column number, A = 1, of
    ``headers[0]``: calamine trims empty leading columns, and an annotated copy of the sheet must
    put its marks back in the right column); ``header_row`` (spreadsheet row number of the header
    row: 1 unless blank rows precede it); ``holidays`` (the lines of the workbook's Holidays sheet
    and of a ``--holidays`` file, blank lines left out).
    """

    __slots__ = ("_columns", "_rows", "file", "first_column", "header_row", "headers", "holidays",
                 "notes", "row_numbers", "sheet")
    __match_args__ = ("file", "sheet", "headers", "rows", "row_numbers", "notes", "first_column",
                      "header_row", "holidays")

    def __init__(
        self,
        file: str,
        sheet: str | None,
        headers: list[str],
        rows: list[list[Cell]],
        row_numbers: list[int],
        notes: list[str] | None = None,
        first_column: int = 1,
        header_row: int = 1,
    ) -> None:
        self.file = file
        self.sheet = sheet
        self.headers = headers
        self._rows: list[list[Cell]] | None = rows
        self._columns: list[Cells] | None = None
        self.row_numbers = row_numbers
        self.notes = [] if notes is None else notes
        self.first_column = first_column
        self.header_row = header_row
        self.holidays: tuple[HolidayLine, ...] = ()

    @classmethod
    def from_columns(
        cls, file: str, sheet: str | None, headers: list[str], columns: list[Cells],
        row_numbers: list[int], notes: list[str], *, header_row: int = 1,
    ) -> RawTable:
        """A table kept column by column (one `Cells` per header) until someone asks for rows."""
        table = cls(file, sheet, headers, None, row_numbers, notes,  # type: ignore[arg-type]  # rows come later, from the columns
                    header_row=header_row)
        table._columns = columns
        return table

    @property
    def rows(self) -> list[list[Cell]]:
        if self._rows is None:
            columns, self._columns = self._columns or [], None
            lists = [c.tolist() for c in columns]
            self._rows = (list(map(list, zip(*lists, strict=True))) if lists
                          else [[] for _ in self.row_numbers])
        return self._rows

    @rows.setter
    def rows(self, rows: list[list[Cell]]) -> None:
        self._rows, self._columns = rows, None

    def columns(self) -> list[Cells]:
        """The cells column by column, one `Cells` per header, without building rows."""
        if self._rows is None:
            return list(self._columns or [])
        width = len(self.headers)
        rows = self._rows
        if not rows:
            return [Cells(()) for _ in range(width)]
        if any(len(r) < width for r in rows):  # the reader pads; a hand-built table may not
            rows = [r if len(r) >= width else [*r, *([None] * (width - len(r)))] for r in rows]
        return [Cells(c) for c, _ in zip(zip(*rows, strict=False), range(width), strict=False)]



class Cells:
    """One column of a table: ``uniques[codes[i]]`` when ``codes`` is set (each distinct cell
    stored once, code -1 for a missing cell), else ``values[i]``. An empty cell may be "" here;
    `RawTable.rows` and indexing show it as None."""

    __slots__ = ("codes", "uniques", "values")

    def __init__(self, values: Sequence[Cell] | np.ndarray[Any, Any] | None = None, *,
                 codes: Any = None, uniques: list[Cell] | None = None) -> None:
        # an object array stands in for a sequence of cells (length, indexing, iteration)
        self.values: Sequence[Cell] | None = values  # type: ignore[assignment]  # see above
        self.codes = codes  # numpy integer array, or None
        self.uniques = uniques

    def __len__(self) -> int:
        return len(self.codes if self.values is None else self.values)

    def __getitem__(self, i: int) -> Cell:
        if self.values is None:
            k = self.codes[i]
            v = None if k < 0 else self.uniques[k]  # type: ignore[index]  # set with codes
        else:
            v = self.values[i]
        return None if v.__class__ is str and not v else v

    def take(self, index: Any) -> Cells:
        """The cells at ``index`` (a slice or an array of positions)."""
        if self.values is None:
            return Cells(codes=self.codes[index], uniques=self.uniques)
        if isinstance(index, slice) or hasattr(self.values, "dtype"):
            return Cells(self.values[index])
        return Cells(list(map(self.values.__getitem__, index.tolist())))

    def blank_at(self, index: Any) -> Any:
        """Per position in ``index``: is the cell empty or only spaces (numpy bool array)."""
        import numpy as np

        if self.values is None:
            u = self.uniques or []
            blank = np.fromiter(map(_is_blank_cell, u), bool, len(u))
            return np.append(blank, True)[self.codes[index]]
        values = map(self.values.__getitem__, index.tolist())
        return np.fromiter(map(_is_blank_cell, values), bool, len(index))

    def tolist(self) -> list[Cell]:
        """Every cell, an empty one as None."""
        if self.values is None:
            return self._uniques_array()[self.codes].tolist()  # type: ignore[no-any-return]  # numpy's tolist is untyped
        return [None if v.__class__ is str and not v else v for v in self.values]

    def lists(self, size: int) -> Iterator[list[Cell]]:
        """`tolist` ``size`` cells at a time: a writer going through the rows holds one part
        of a column, not a list of every cell of it."""
        if self.values is None:
            u = self._uniques_array()
            for start in range(0, len(self.codes), size):
                yield u[self.codes[start:start + size]].tolist()
            return
        for start in range(0, len(self.values), size):
            yield [None if v.__class__ is str and not v else v
                   for v in self.values[start:start + size]]

    def each_value(self) -> Sequence[Cell]:
        """Every value of the column, each at least once (a coded column's once; an empty cell
        may be None or ""): what a column's width is measured over, without a list of every
        cell."""
        if self.values is None:
            import numpy as np

            u = self.uniques or []
            return [None if k < 0 else u[k] for k in np.unique(self.codes).tolist()]
        return self.values

    def _uniques_array(self) -> Any:
        """The distinct cells as an object array (an empty one None), then None for code -1."""
        import numpy as np

        u = [None if v.__class__ is str and not v else v for v in self.uniques or []]
        u.append(None)  # code -1
        return np.fromiter(u, object, len(u))


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


def give_back_freed_memory() -> None:
    """Hand the C heap's free pages back to the system, where the C library can (glibc's
    ``malloc_trim``; elsewhere nothing happens).

    Validation's numpy and pandas arrays live in the C heap; once they are freed the heap keeps
    their pages, and Python's own objects, allocated in arenas of their own, never reuse them:
    a run's requests and outcomes then grow the process beside that empty heap (measured on a
    real run of 20,000 rows: 9 MB of free heap after validation, 3.5 MB off the run's peak).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        return cast("Callable[[int], int]", ctypes.CDLL(None).malloc_trim)
    except (AttributeError, OSError, TypeError):  # not glibc (Windows takes no None)
        return None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a sheet's cells.

    Reading and validating build hundreds of thousands of acyclic objects; each allocation burst
    would trigger collections walking every live cell (measured: a third of calamine's read, and
    double the time of building session rows). Import modules *before* pausing: their objects
    would otherwise pile up in the youngest generation for one long collection afterwards. Any
    cycles made meanwhile are collected later, as usual, once the collector is back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_table(path: str | Path, sheet: str | None = None, *,
               limits: ReadLimits = ReadLimits()) -> RawTable:  # noqa: B008  # frozen, shared
    """Read the sheet (workbook) or the records (CSV) of ``path``.

    Raises `ReadError` with a one-line message for anything that is not a readable table, so the
    CLI can print it without a traceback; also for a file over ``limits``, checked before and
    while reading (a zipped workbook is inspected before calamine is called at all).
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
            return _read_workbook(p, name, sheet, notes, head, limits, sniff=True)
        if sheet is not None:
            notes.append(f"sheet '{sheet}' ignored: a {ext} file has no sheets")
        return _read_csv(p, name, notes, limits)
    expected = _WORKBOOK_MAGIC[ext]
    if head.startswith(expected):
        return _read_workbook(p, name, sheet, notes, head, limits, sniff=False)
    if head.startswith(_OLE_MAGIC):
        # An OLE file named .xlsx is either an encrypted workbook or an old .xls renamed.
        if _is_encrypted_ooxml(p, name):
            raise ReadError(_password_message(name))
        notes.append(f"read as an .xls workbook despite the {ext} name")
        return _read_workbook(p, name, sheet, notes, head, limits, sniff=True)
    if head.startswith(_ZIP_MAGIC):
        notes.append(f"read as an .xlsx/.ods workbook despite the {ext} name")
        return _read_workbook(p, name, sheet, notes, head, limits, sniff=True)
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
    p: Path, name: str, sheet: str | None, notes: list[str], head: bytes, limits: ReadLimits,
    *, sniff: bool,
) -> RawTable:
    """Load one sheet through python-calamine, turning any failure of it into a ReadError.

    A zipped workbook is inspected first (`zip_guard`): every part inflated and counted, the
    chosen sheet's grid checked before calamine reads it. An .xls (OLE) file cannot be looked
    into here: its size is bounded, its grid and cells are checked once read.
    """
    import numpy  # noqa: F401  # before the pause below (see gc_paused)
    import python_calamine as pc  # deferred: a CSV run never pays for it

    guard = zip_guard.inspect(p, name, limits) if head.startswith(_ZIP_MAGIC) else None
    if guard is None:
        _check_file_size(p, name, limits)
    try:
        if sniff:  # from_path trusts the extension; from_filelike looks at the content
            with open(p, "rb") as fh:
                wb = pc.CalamineWorkbook.from_filelike(fh)
        else:
            wb = pc.CalamineWorkbook.from_path(os.fspath(p))
        try:
            names: list[str] = list(wb.sheet_names)
            chosen = _choose_sheet(wb, sheet, name)
            if guard is not None:
                guard.check_sheet(chosen)
            ws = wb.get_sheet_by_name(chosen)
            with gc_paused():  # 100,000 row lists, turned into columns and dropped meanwhile
                columns, n = _grid_columns(ws.to_python())
            start = ws.start  # (row, col), 0-based, of grid[0][0]; None for an empty sheet
            holidays = _holiday_sheet(wb, names, chosen, guard, name, limits)
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
    where = f"the sheet '{chosen}'"
    if guard is None:  # nothing vouched for the cells before reading: count them now
        _check_cells(columns, name, where, limits)
    try:
        table = _table_from_columns(name, chosen, columns, n, first_row + 1, notes,
                                    f"{name}: sheet '{chosen}' is empty: no header row found")
    except ReadError as e:
        if len(names) < 2:
            raise
        listed = ", ".join(f"'{n}'" for n in names)
        raise ReadError(f"{e}; the sheets are: {listed}") from None
    table.first_column = first_col + 1
    table.holidays = holidays
    _check_size(table, name, where, limits)
    return table


def _holiday_sheet(wb: Any, names: Sequence[str], chosen: str,
                   guard: zip_guard.WorkbookGuard | None, name: str,
                   limits: ReadLimits) -> tuple[HolidayLine, ...]:
    """The lines of the workbook's Holidays sheet, if it has one besides the sheet being read,
    within the same limits as the sessions sheet."""
    found = _match_sheet(names, HOLIDAYS_SHEET)
    if found is None or found == chosen:
        return ()
    where = f"the sheet '{found}'"
    if guard is not None:
        guard.check_sheet(found)
    ws = wb.get_sheet_by_name(found)
    grid = ws.to_python()
    if len(grid) > limits.max_rows + 1:
        raise exceeded(name, f"{where} has {len(grid):,} rows", "max_rows", limits)
    first_row = (ws.start or (0, 0))[0] + 1
    lines = _holiday_lines(grid, first_row, f"{found} sheet")
    if guard is None:  # nothing counted the cells before reading
        longest = max((len(v) for line in lines for v in (line.cell, line.name)
                       if v.__class__ is str), default=0)
        if longest > limits.max_cell_chars:
            raise exceeded(name, f"a cell of {where} has {longest:,} characters",
                           "max_cell_chars", limits)
    return lines


def _holiday_lines(grid: Sequence[Sequence[Any]], first_row: int,
                   source: str) -> tuple[HolidayLine, ...]:
    """The first two cells of every row that is not blank there (row i is ``first_row + i``)."""
    lines = []
    for i, r in enumerate(grid):
        line = _holiday_line(source, first_row + i, r)
        if line is not None:
            lines.append(line)
    return tuple(lines)


def _holiday_line(source: str, row: int, cells: Sequence[Any]) -> HolidayLine | None:
    cell, label = (None if len(cells) <= j or _is_blank_cell(cells[j]) else cells[j]
                   for j in (0, 1))
    if cell is None and label is None:
        return None
    return HolidayLine(source, row, cell, label)


def read_holidays(path: str | Path, *,
                  limits: ReadLimits = ReadLimits()) -> tuple[HolidayLine, ...]:  # noqa: B008  # frozen, shared
    """The lines of a holidays file (``--holidays``): a CSV (or a workbook's first sheet) whose
    first column holds dates or ranges and second an optional name; a header line is allowed
    (it is the first line, and validation leaves out a first line without digits). The same
    checks and limits as a sessions sheet; `ReadError` when it cannot be read."""
    table = read_table(path, limits=limits)
    source = Path(path).name
    found = [_holiday_line(source, table.header_row, table.headers)]
    found += [_holiday_line(source, number, row)
              for number, row in zip(table.row_numbers, table.rows, strict=True)]
    return tuple(line for line in found if line is not None)


def _check_file_size(p: Path, name: str, limits: ReadLimits) -> None:
    """An .xls workbook is read whole by calamine: its size is the one bound known beforehand."""
    try:
        size = p.stat().st_size
    except OSError as e:
        raise ReadError(f"{name}: cannot read: {_one_line(e.strerror or e)}") from None
    if size > limits.max_part_bytes:
        raise exceeded(name, f"the workbook is {size / MB:,.0f} MB", "max_part_bytes", limits)


def _check_size(table: RawTable, name: str, where: str, limits: ReadLimits) -> None:
    """Rows of data and columns of the table as read, against the limits."""
    if len(table.row_numbers) > limits.max_rows:
        raise exceeded(name, f"{where} has {len(table.row_numbers):,} rows of data", "max_rows",
                       limits)
    if len(table.headers) > limits.max_columns:
        raise exceeded(name, f"{where} has {len(table.headers):,} columns", "max_columns",
                       limits)


def _check_cells(columns: list[Cells], name: str, where: str, limits: ReadLimits) -> None:
    """The longest text cell of each column, for readers nothing checked beforehand."""
    for j, c in enumerate(columns):
        values: Any = c.uniques if c.values is None else c.values
        longest = max((len(v) for v in values if v.__class__ is str), default=0)
        if longest > limits.max_cell_chars:
            raise exceeded(name, f"a cell of {where} in column {j + 1} has {longest:,} "
                           "characters", "max_cell_chars", limits)


def _choose_sheet(wb: Any, wanted: str | None, name: str) -> str:
    """The sheet named by the user, else "Sessions", else the first visible worksheet (not the
    Holidays sheet)."""
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
        if meta.typ == pc.SheetTypeEnum.WorkSheet and meta.visible == pc.SheetVisibleEnum.Visible \
                and _match_sheet([str(meta.name)], HOLIDAYS_SHEET) is None:
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


def _grid_columns(grid: list[list[Any]]) -> tuple[list[Cells], int]:
    """calamine's rectangle (empty cells as "") as columns, and its number of rows.

    One pass in C; then object arrays, which the garbage collector never walks (it would walk
    tuples of 100,000 cells), and the row lists are dropped at once.
    """
    import numpy as np

    n = len(grid)
    width = max(map(len, grid), default=0)
    if min(map(len, grid), default=0) != width:  # calamine gives a rectangle; never trust it
        grid = [r if len(r) == width else [*r, *([""] * (width - len(r)))] for r in grid]
    columns = [Cells(np.fromiter(c, dtype=object, count=n)) for c in zip(*grid, strict=True)]
    grid.clear()
    return columns, n


def _table_from_columns(
    name: str, sheet: str | None, columns: list[Cells], n: int, first_row: int,
    notes: list[str], empty: str,
) -> RawTable:
    """Find the header (the first non-blank row), drop blank rows, fit the width to the header
    (widening it rather than dropping data). Row i of the columns is spreadsheet row first_row + i.
    """
    import numpy as np

    blank = np.arange(n)  # positions of rows blank so far; each column narrows it down
    for c in columns:
        if not len(blank):
            break
        blank = blank[c.blank_at(blank)]
    keep = np.ones(n, dtype=bool)
    keep[blank] = False
    keep = np.flatnonzero(keep)
    if not len(keep):
        raise ReadError(empty)
    header_at, keep = int(keep[0]), keep[1:]
    header = [c[header_at] for c in columns]
    width = len(header)
    while width and _is_blank_cell(header[width - 1]):
        width -= 1
    for j in range(len(columns) - 1, width - 1, -1):
        if len(keep) and not columns[j].blank_at(keep).all():
            width = j + 1
            break
    if not len(keep):
        index: Any = slice(0, 0)
    elif int(keep[-1]) - int(keep[0]) + 1 == len(keep):  # no blank rows among the data: a view
        index = slice(int(keep[0]), int(keep[-1]) + 1)
    else:
        index = keep
    fitted = [c.take(index) for c in columns[:width]]
    headers = [_header_text(v) for v in header[:width]]
    return RawTable.from_columns(name, sheet, headers, fitted, (keep + first_row).tolist(), notes,
                                 header_row=first_row + header_at)


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


def _read_csv(p: Path, name: str, notes: list[str], limits: ReadLimits) -> RawTable:
    _check_csv_stream(p, name, limits)
    raw = _read_bytes(p, name)
    text, utf8 = _decode(raw, name, notes)
    delimiter = _sniff_delimiter(text)
    if delimiter != ",":
        notes.append(f"delimiter {_DELIMITER_NAMES[delimiter]}")
    data = (raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw) if utf8 \
        else text.encode("utf-8")
    del raw
    import pandas  # noqa: F401  # before the pause (see gc_paused)

    with gc_paused():
        columns = _csv_columns(data, text, delimiter, name, limits)
    if columns is not None:
        _check_csv_cells(columns, name, limits)
        table = _table_from_columns(name, None, columns, len(columns[0]), 1, notes,
                                    f"{name}: no header row found (the file is blank)")
    else:
        table = _read_csv_records(text, delimiter, name, notes, limits)
    _check_size(table, name, "the file", limits)
    return table


def _check_csv_stream(p: Path, name: str, limits: ReadLimits) -> None:
    """Before the whole file is loaded: count its line breaks and look for very long lines, in
    chunks, at the cost of two ``count`` passes.

    Records are at most the lines (a quoted line break only merges them), and the lines at most
    twice the larger of the LF and CR counts (mixed endings). Within the limit, and with no line
    as long as a cell may be, reading is safe and the exact limits are checked on what was
    read. Otherwise the records are counted one by one (`_check_csv_records`), stopping at the
    first limit passed: a 2,000,000-row file is refused after its first 100,000 rows.
    """
    window = max(limits.max_cell_chars // 2, 1)
    lf = cr = 0
    try:
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                lf += chunk.count(b"\n")
                cr += chunk.count(b"\r")
                long_line = any(chunk.find(b"\n", i, i + window) == -1
                                and chunk.find(b"\r", i, i + window) == -1
                                for i in range(0, len(chunk) - window + 1, window))
                if long_line or max(lf, cr) > limits.max_rows + 1:
                    break
            else:
                return
    except OSError as e:
        raise ReadError(f"{name}: cannot read: {_one_line(e.strerror or e)}") from None
    _check_csv_records(p, name, limits)


def _check_csv_records(p: Path, name: str, limits: ReadLimits) -> None:
    """Count records, cells and characters with the csv module, streaming, and refuse at the
    first limit passed. Lengths are counted in bytes (as Latin-1) and decoded only for a cell
    that looks too long; UTF-16 files are decoded as such."""
    with open(p, "rb") as fh:
        head = fh.read(_SAMPLE_CHARS)
        utf16 = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        if not utf16 and b"\0" in head:
            raise ReadError(f"{name}: does not look like a text CSV file (it contains binary "
                            "data)")
        delimiter = _sniff_delimiter(head.decode("utf-16" if utf16 else "utf-8", "replace"))
        fh.seek(0)
        stream = io.TextIOWrapper(fh, encoding="utf-16" if utf16 else "latin-1",
                                  errors="replace", newline="")
        rows, header_seen, row = 0, False, 0
        try:
            for row, record in enumerate(csv.reader(stream, delimiter=delimiter), 1):
                if not record or _is_blank(record):
                    continue
                if len(record) > limits.max_columns:
                    raise exceeded(name, f"row {row} has {len(record):,} cells", "max_columns",
                                   limits)
                longest = max(record, key=len)
                if len(longest) > limits.max_cell_chars:
                    chars = len(longest) if utf16 else _latin1_chars(longest)
                    if chars > limits.max_cell_chars:
                        raise exceeded(name, f"row {row} has a cell of {chars:,} characters",
                                       "max_cell_chars", limits)
                if header_seen:
                    rows += 1
                    if rows > limits.max_rows:
                        raise exceeded(name, f"the file has more than {limits.max_rows:,} rows "
                                       f"of data (row {row} is one too many)", "max_rows", limits)
                header_seen = True
        except csv.Error as e:
            if "NUL" in str(e):
                raise ReadError(f"{name}: does not look like a text CSV file (it contains "
                                "binary data)") from None
            if "field larger" in str(e) and limits.max_cell_chars < csv.field_size_limit():
                raise exceeded(name, f"row {row + 1} has a cell of more than "
                               f"{csv.field_size_limit():,} characters", "max_cell_chars",
                               limits) from None
            # anything else: the full read reports it, with its usual message


def _latin1_chars(cell: str) -> int:
    """Characters of a cell read as Latin-1: UTF-8 if its bytes are, else one per byte."""
    raw = cell.encode("latin-1", "replace")
    try:
        return len(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return len(raw)


def _check_csv_cells(columns: list[Cells], name: str, limits: ReadLimits) -> None:
    """Every CSV cell is text: the longest of each column, in C (``map(len, ...)``); its row is
    looked up only to name it. Row i of the columns is the file's row i + 1."""
    import numpy as np

    for c in columns:
        strings: Any = c.uniques if c.values is None else c.values
        longest = max(map(len, strings), default=0)
        if longest > limits.max_cell_chars:
            at = next(i for i, v in enumerate(strings) if len(v) == longest)
            if c.values is None:  # ``at`` is the distinct value's code: find its first row
                at = int(np.flatnonzero(c.codes == at)[0])
            raise exceeded(name, f"row {at + 1} has a cell of {longest:,} characters",
                           "max_cell_chars", limits)


def _csv_columns(data: bytes, text: str, delimiter: str, name: str = "",
                 limits: ReadLimits | None = None) -> list[Cells] | None:
    """The records column by column through pandas' C parser (pandas is imported for validation
    anyway), or None where it would not read exactly what the csv module reads: a record longer
    than the first, an unclosed quote, a leading blank line, a cell over csv's size limit.

    A column of repeating cells (IDs, dates, times, types; or an unknown column whose first records
    repeat) is read as a categorical: each distinct cell becomes one string, the rows just codes.
    Free text is read as strings (a categorical of 100,000 distinct names costs a slow sort).
    """
    import pandas as pd

    try:
        sample = list(csv.reader(io.StringIO(text[:_SAMPLE_CHARS], newline=""),
                                 delimiter=delimiter))
    except csv.Error:
        return None
    header = next((r for r in sample if r), [])
    widest = max(map(len, sample), default=0)
    if limits is not None and widest > limits.max_columns:  # pandas would give every row as
        raise exceeded(name, f"a row has {widest:,} cells", "max_columns", limits)  # many
    seen = [r for r in sample[1:-1] if r]  # not the header, nor a record the sample cuts
    kinds: dict[int, Any] = {}  # every column gets a dtype: none is inferred (IDs stay text)
    for j in range(max(map(len, sample), default=0)):
        known = canonical(header[j]) if j < len(header) else None
        if known is not None:  # a known column: IDs, dates, times repeat; free text does not
            repeats = BY_NAME[known].kind != "text"
        else:
            cells = [r[j] for r in seen if len(r) > j]
            repeats = len(set(cells)) * 2 <= len(cells)
        kinds[j] = "category" if repeats else object
    try:
        frame = pd.read_csv(
            io.BytesIO(data), sep=delimiter, header=None, dtype=kinds, engine="c",
            na_filter=False, keep_default_na=False, skip_blank_lines=False, quotechar='"',
            doublequote=True, escapechar=None, comment=None, skipinitialspace=False,
            encoding="utf-8", low_memory=False,
        )
    except Exception:  # ParserError, EmptyDataError...: the csv module decides
        return None
    columns: list[Cells] = []
    for j in range(frame.shape[1]):
        col = frame.iloc[:, j]
        if isinstance(col.dtype, pd.CategoricalDtype):
            # pandas' own codes, as small as the number of distinct cells allows (int8 for
            # up to 127): the table is kept until a run's results are written, and intp codes
            # were 8 bytes a cell of every coded column (validation widens them as it parses)
            column = Cells(codes=col.cat.codes.to_numpy(), uniques=col.cat.categories.tolist())
        elif j in kinds:
            column = Cells(col.to_numpy(dtype=object))
        else:  # pandas saw more columns than the sample: it may have inferred numbers
            return None
        columns.append(column)
    if len(data) > csv.field_size_limit():
        for c in columns:
            strings: Any = c.uniques if c.values is None else c.values  # every CSV cell: str
            if max(map(len, strings), default=0) > csv.field_size_limit():
                return None  # the csv module refuses it, with its own message
    return columns or None


def _read_csv_records(text: str, delimiter: str, name: str, notes: list[str],
                      limits: ReadLimits | None = None) -> RawTable:
    """The csv module's reading: ragged records, unclosed quotes, leading blank lines."""
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as e:
        raise ReadError(f"{name}: not a readable CSV file: {_one_line(e)}") from None
    if limits is not None:  # before _fit_width pads every row to the widest
        _check_records(records, name, limits)
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


def _check_records(records: list[list[str]], name: str, limits: ReadLimits) -> None:
    for row, record in enumerate(records, 1):
        if len(record) > limits.max_columns:
            raise exceeded(name, f"row {row} has {len(record):,} cells", "max_columns", limits)
        longest = max(map(len, record), default=0)
        if longest > limits.max_cell_chars:
            raise exceeded(name, f"row {row} has a cell of {longest:,} characters",
                           "max_cell_chars", limits)


def _decode(raw: bytes, name: str, notes: list[str]) -> tuple[str, bool]:
    """UTF-8 (BOM or not), else Windows-1252 as Excel writes "CSV" on Western Windows; and
    whether ``raw`` is UTF-8."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel "Unicode Text"
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError:
            raise ReadError(f"{name}: does not look like a text CSV file") from None
        notes.append("read as UTF-16")
        return text, False
    if b"\0" in raw:
        raise ReadError(f"{name}: does not look like a text CSV file (it contains binary data)")
    try:
        return raw.decode("utf-8-sig"), True
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
    return text, False


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

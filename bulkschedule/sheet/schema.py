"""Validate a `RawTable`: a pandera schema over normalised columns plus cross-row checks.

Order of work: headers, then every cell through `parse` (a failure is an error on that cell), then a
pandera schema over the normalised columns (per-row rules), then cross-row checks (duplicates and
double bookings). Every problem carries its code (`bulkschedule.core.problems.CODES`).

numpy, pandas and pandera are imported lazily, inside the functions that use them: importing this
module, and so ``bulkschedule --help``, stays instant, and `preload` can import them in the
background while the sheet is read. Each such import is marked "lazy: heavy".
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import gc
import itertools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from bulkschedule.core.problems import Problem, error, sort_key, warning
from bulkschedule.sheet import parse, recurrence
from bulkschedule.sheet.columns import (
    OCCURRENCE,
    SPEC,
    HeaderMap,
    Kind,
    Spec,
    map_headers,
    normalise,
)
from bulkschedule.sheet.reader import ByValue, Cells, HolidayLine, RawTable, gc_paused
from bulkschedule.sheet.recurrence import RecurrenceError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    class SessionRow(NamedTuple):
        """The type checker's view of `SPEC.row_type <columns.Spec>`, the runtime class.

        A named tuple built from the column spec (`columns.derive`): cheap to build (validation
        makes one per valid row) and as immutable as a frozen dataclass. This view may lag the
        spec (a new column needs no entry here to reach the payload, which reads the spec), but
        never contradict it: tests/test_columns.py checks every field below against the spec.
        """

        row: int
        course_id: str
        batch_id: str
        module_id: str
        name: str
        trainer_erecno: str
        type: str
        date: dt.date
        start: dt.time
        end: dt.time
        description: str | None = None
        room_id: str | None = None
        lock_until: dt.date | None = None
        grade_category_id: str | None = None
        key: str | None = None
        session_id: str | None = None
        repeat: str | None = None
        until: dt.date | None = None
        repeat_count: int | None = None
        skip: tuple[dt.date, ...] | None = None
        occurrence: int | None = None
else:
    SessionRow = SPEC.row_type


class Expansion(NamedTuple):
    """A repeating row: how many sessions it makes, and the first and last of their dates."""

    row: int
    sessions: int
    first: dt.date
    last: dt.date

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form (dates as dd-mm-yyyy)."""
        return {"row": self.row, "sessions": self.sessions,
                "first": parse.format_date(self.first), "last": parse.format_date(self.last)}


class Validation(ByValue):
    """Everything validation learnt about one sheet.

    ``sessions``: the sessions of the rows with no error, in input order, parsed (built on first
    use: ``valid`` counts them without building them); a repeating row gives one per date, each
    with the row's number and its ``occurrence``; ``problems``: sorted with problems.sort_key;
    ``fatal``: a required column is missing, nothing can be sent; ``error_rows``: spreadsheet rows
    with at least one error; ``spec``: the column spec the sheet was checked against;
    ``resolved``: the cells where a name was typed in an ID column, (row, column) -> (name as
    typed, its ID); ``expansions``: every repeating row whose dates could be worked out, in row
    order (`Expansion`).
    """

    __slots__ = ("_build", "_sessions", "_valid", "error_rows", "expansions", "fatal", "headers",
                 "problems", "resolved", "spec", "table")
    __match_args__ = ("table", "headers", "sessions", "problems", "fatal", "error_rows",
                      "expansions")

    def __init__(
        self,
        table: RawTable,
        headers: HeaderMap,
        sessions: list[SessionRow],
        problems: list[Problem],
        fatal: bool = False,
        error_rows: set[int] | None = None,
        spec: Spec = SPEC,
        expansions: Sequence[Expansion] = (),
    ) -> None:
        self.table = table
        self.headers = headers
        self._sessions: list[SessionRow] | None = sessions
        self._build: Callable[[], list[SessionRow]] | None = None
        self._valid = len(sessions)
        self.problems = problems
        self.fatal = fatal
        self.error_rows: set[int] = set() if error_rows is None else error_rows
        self.spec = spec
        self.resolved: dict[tuple[int, str], tuple[str, str]] = {}
        self.expansions: list[Expansion] = list(expansions)

    @property
    def sessions(self) -> list[SessionRow]:
        if self._sessions is None:
            with gc_paused():
                self._sessions = self._build() if self._build else []
            self._build = None
        return self._sessions

    @sessions.setter
    def sessions(self, sessions: list[SessionRow]) -> None:
        self._sessions, self._build, self._valid = sessions, None, len(sessions)

    @property
    def valid(self) -> int:
        """How many sessions are valid (one per valid row that does not repeat, one per date of
        a valid repeating row): ``len(sessions)``, without building them."""
        return self._valid if self._sessions is None else len(self._sessions)

    @property
    def valid_rows(self) -> int:
        """How many rows of the sheet are valid."""
        if self.fatal:
            return 0
        return self.n_rows - len(self.error_rows)

    @property
    def n_rows(self) -> int:
        return len(self.table.row_numbers)

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.is_error)

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if not p.is_error)

    def to_json(self) -> dict[str, Any]:
        """The ``validate --json`` contract."""
        return {
            "file": self.table.file,
            "rows": self.n_rows,
            "valid": self.valid,
            "errors": self.errors,
            "warnings": self.warnings,
            "problems": [p.to_dict() for p in self.problems],
            "expansions": [e.to_dict() for e in self.expansions],
        }


#: Days from 0001-01-01 (ordinal 1) to 1970-01-01: turns date ordinals into datetime64 values.
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
#: Names of at most this many other rows are spelt out in an overlap message.
_NAME_AT_MOST = 3


def preload() -> threading.Thread:
    """Import pandas and pandera in the background while the caller reads the sheet.

    The import costs about as much as reading a 100,000-row CSV; python-calamine releases the GIL
    while it parses a workbook, so the two overlap (measured: 2.2 s -> 1.9 s on a 100k-row xlsx).
    Join the thread (or just call `validate`, which imports them anyway) before validating.
    """
    thread = threading.Thread(target=_import_pandera, name="preload-pandera", daemon=True)
    thread.start()
    return thread


def validate(
    table: RawTable,
    *,
    course: str | None = None,
    batch: str | None = None,
    module: str | None = None,
    month_first: bool = False,
    today: dt.date | None = None,
    spec: Spec = SPEC,
) -> Validation:
    """Check every row of a sheet and parse the valid ones; never raises for bad cell values.

    ``course``, ``batch`` and ``module`` fill the path columns (``spec.path_columns``, in that
    order) where the sheet leaves them blank or out.
    """
    _import_pandera()  # before the pause (see reader.gc_paused)
    with gc_paused():
        return _validate(table, (course, batch, module), month_first, today, spec)


_frozen: list[bool] = []


def _import_pandera() -> None:
    """Import pandera (with pandas and numpy), then, once per process, `gc.freeze` what is loaded.

    Frozen objects are never walked by the cyclic garbage collector again. The modules live until
    exit anyway, but every full collection would walk their hundreds of thousands of objects: the
    interpreter's collections at exit alone cost 0.3 s after importing pandera (measured: a
    process that only imports pandera.pandas takes 0.87 s, 0.55 s with the freeze). Freezing once
    after the imports is the use the gc module documents; any garbage cycle that exists at that
    moment is kept, once.
    """
    import pandera.pandas  # noqa: F401  # lazy: heavy

    if not _frozen:
        _frozen.append(True)
        gc.freeze()


def _validate(
    table: RawTable,
    path_ids: tuple[str | None, ...],
    month_first: bool,
    today: dt.date | None,
    spec: Spec,
) -> Validation:
    import numpy as np  # lazy: heavy

    today = today or dt.date.today()
    problems: list[Problem] = []
    headers = map_headers(table.headers, spec)
    _header_problems(headers, problems)
    given = dict(zip(spec.path_columns, path_ids, strict=True))
    args = _path_arguments(given, problems, spec)
    fatal = any(p.is_error for p in problems)  # a bad --course/--batch/--module
    for name in spec.required:
        if name not in headers.index and given.get(name) is None:
            option = spec.by_name[name].option
            hint = f" or give the ID once with {option}" if option else ""
            message = f"The required column '{name}' is missing: add a column headed '{name}'"
            problems.append(error(None, name, None, message + hint, code="column.missing"))
            fatal = True

    columns = table.columns()  # column by column: no rows are built
    n = len(table.row_numbers)
    row_numbers = np.asarray(table.row_numbers, dtype=np.int64)
    cols: dict[str, _Parsed] = {}
    for name, index in headers.index.items():
        cells = columns[index]
        parsed = _parse_column(cells, spec.by_name[name].kind, month_first)
        for pos, message, code in parsed.errors:
            problems.append(error(int(row_numbers[pos]), name, parse.display(cells[pos]),
                                  message, code=code))
        cols[name] = parsed
    for name, value in args.items():
        if name in cols:
            cols[name].fill_blanks(value)
        else:
            cols[name] = _Parsed.constant(value, n)

    row_pos: dict[int, int] = {}

    def cell(row: int, name: str) -> str:
        """The cell behind a (row, column) failure, as the admin typed it."""
        if not row_pos:  # built on first use: most sheets have few such failures
            row_pos.update((int(r), i) for i, r in enumerate(row_numbers))
        pos = row_pos[row]
        if name in headers.index and not parse.is_blank(found := columns[headers.index[name]][pos]):
            return parse.display(found)
        return args.get(name, "")

    # a results workbook given back: its lines of a repeating row's sessions are one each
    named = _given_occurrences(table, columns, cols.get("repeat"))
    # a repeating row becomes one entry per date here, before the cross-row checks
    expanded = _expand(cols, row_numbers, table.holidays, month_first, cell, problems, named)
    frame = _frame(cols, row_numbers, spec)
    bad_cells = {
        (int(row_numbers[pos]), name) for name, c in cols.items() for pos, _, _ in c.errors
    }
    problems.extend(_schema_problems(frame, today, bad_cells, cell, spec))
    problems.extend(_cross_row_problems(frame, cols, expanded, key=_session_keys(cols, named)))

    problems.sort(key=sort_key)
    if fatal:
        error_rows = {int(r) for r in row_numbers}
    else:
        error_rows = {p.row for p in problems if p.is_error and p.row is not None}
    validation = Validation(table, headers, [], problems, fatal, error_rows, spec,
                            expanded.summary if expanded is not None else ())
    if not fatal:  # the valid rows become SessionRows only when someone asks for them
        if expanded is None:
            ints = all(r.__class__ is int for r in table.row_numbers)  # (as read: always)
            build = functools.partial(_sessions, cols, row_numbers, named, spec,
                                      numbers=table.row_numbers if ints else None)
            entries = row_numbers
        else:
            build = functools.partial(_sessions, expanded.columns(cols), expanded.rows,
                                      expanded.occurrence, spec)
            entries = expanded.rows
        ok, validation._valid = _valid_rows(entries, error_rows)
        validation._sessions = None
        validation._build = functools.partial(build, ok)
    return validation


def _header_problems(headers: HeaderMap, problems: list[Problem]) -> None:
    for _, typed, suggestion in headers.unknown:
        hint = f" Did you mean '{suggestion}'?" if suggestion else ""
        problems.append(warning(None, typed, None, f"Unknown column '{typed}' is ignored.{hint}",
                                code="header.unknown"))
    for _, typed, name in headers.duplicate:
        problems.append(
            warning(None, typed, None,
                    f"Column '{typed}' is a second '{name}' column and is ignored: only the first "
                    "is read. Delete or rename one of them.", code="header.duplicate")
        )


def _path_arguments(
    given: dict[str, str | None], problems: list[Problem], spec: Spec
) -> dict[str, str]:
    """The --course/--batch/--module values that parse; a bad one is a file-level error."""
    args: dict[str, str] = {}
    for name, value in given.items():
        if value is None or parse.is_blank(value):
            continue
        try:
            args[name] = parse.parse_id(value)
        except parse.ParseError as exc:
            problems.append(error(None, name, value, f"{spec.by_name[name].option}: {exc.message}",
                                  code="option.not_an_id"))
    return args


# ------------------------------------------------------------------------------- per-cell parsing


class _Parsed:
    """One column parsed: the value per row (None when blank or unparseable), plus the failures."""

    __slots__ = ("blank", "codes", "distinct", "errors", "kind", "results", "values")

    def __init__(
        self,
        kind: Kind,
        codes: np.ndarray,
        results: np.ndarray,
        blank: np.ndarray,
        errors: list[tuple[int, str, str]],
        *,
        distinct: bool = True,
    ) -> None:
        self.kind = kind
        self.codes = codes  # per row: index into results (-1, the last slot, for an empty cell)
        self.results = results  # per distinct cell: the parsed value, or None
        self.values: np.ndarray = results[codes]  # per row: the parsed value or None (objects)
        self.blank = blank  # per row: the cell was empty
        self.errors = errors  # (position, message, problem code) for cells that failed to parse
        self.distinct = distinct  # False: one result per row (free text, never factorized)

    def per_row(self, convert: Callable[[Any], float]) -> np.ndarray:
        """A float per row, converting each distinct value once."""
        import numpy as np  # lazy: heavy

        per_distinct = np.array([convert(v) for v in self.results], dtype=np.float64)
        out: np.ndarray = per_distinct[self.codes]
        return out

    @classmethod
    def constant(cls, value: str, n: int) -> _Parsed:
        import numpy as np  # lazy: heavy

        results = np.array([value, value], dtype=object)
        return cls("id", np.zeros(n, dtype=np.int64), results, np.zeros(n, dtype=bool), [])

    def take(self, src: np.ndarray) -> _Parsed:
        """The column at positions ``src`` (a repeating row's value for each of its sessions)."""
        return _Parsed(self.kind, self.codes[src], self.results, self.blank[src], [],
                       distinct=self.distinct)

    @classmethod
    def per_entry(cls, kind: Kind, values: np.ndarray) -> _Parsed:
        """A column of one parsed value (or None) per entry, each its own result."""
        import numpy as np  # lazy: heavy

        results = np.append(values, np.array([None], dtype=object))
        blank = np.equal(values, np.array(None, dtype=object))
        return cls(kind, np.arange(len(values)), results, blank, [], distinct=False)

    def fill_blanks(self, value: str) -> None:
        """A path-ID argument fills the blank cells; a non-blank cell wins."""
        import numpy as np  # lazy: heavy

        self.values[self.blank] = value
        self.results = np.concatenate([self.results[:-1], [value, None]])
        self.codes = np.where(self.blank, len(self.results) - 2, self.codes)

    def keys(self, pos: np.ndarray) -> np.ndarray:
        """Per row at ``pos``: a code shared by the rows with an equal parsed value; -1 for none."""
        import numpy as np  # lazy: heavy
        import pandas as pd  # lazy: heavy

        if not self.distinct:
            found: np.ndarray = pd.factorize(self.values[pos])[0]
            return found
        seen: dict[Any, int] = {}
        canon = np.fromiter((-1 if v is None else seen.setdefault(v, len(seen))
                             for v in self.results), dtype=np.intp, count=len(self.results))
        shared: np.ndarray = canon[self.codes[pos]]
        return shared


def _recurrence_parser(read: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A `recurrence` reader whose `RecurrenceError` becomes the `ParseError` of a cell."""

    def parser(cell: Any) -> Any:
        try:
            return read(cell)
        except RecurrenceError as exc:
            raise parse.ParseError(exc.message, code=exc.code) from None

    return parser


def _rule_text(cell: Any) -> str:
    """A ``repeat`` cell as the rule it states, written one way ("Tue, Thu")."""
    return recurrence.parse_rule(str(cell)).describe()


_PARSERS: dict[Kind, Callable[[Any], Any]] = {
    "id": parse.parse_id,
    "type": parse.parse_type,
    "text": parse.parse_text,
    "time": parse.parse_time,
    "rule": _recurrence_parser(_rule_text),
    "count": _recurrence_parser(recurrence.parse_count),
}


def _parse_column(cells: Cells, kind: Kind, month_first: bool) -> _Parsed:
    """Parse each distinct cell once, then spread the results over the rows.

    A term repeats the same dates, times and IDs thousands of times, so this does a few hundred
    parses instead of 100,000. The reader hands most CSV columns over already factorized.
    """
    import numpy as np  # lazy: heavy

    parser: Callable[[Any], Any]
    if kind == "date":
        def parser(c: Any) -> Any:
            return parse.parse_date(c, month_first=month_first)
    elif kind == "dates":
        parser = _recurrence_parser(_skip_reader(month_first))
    else:
        parser = _PARSERS[kind]
    if cells.values is not None and kind == "text":
        # free text (names) rarely repeats and cannot fail: strip each cell directly
        return _text_column(cells.values)
    if cells.values is None:  # a table keeps its codes small; arithmetic here needs intp
        codes, uniques = np.asarray(cells.codes, dtype=np.intp), cells.uniques or []
    else:
        codes, uniques = _factorize(cells.values)
        if any(_hash_collides(u) for u in uniques):
            # factorize treats True, 1 and 1.0 as one value; they parse differently
            codes, uniques = _factorize_by_type(cells.values)
    results = np.empty(len(uniques) + 1, dtype=object)  # the extra last slot is code -1: blank
    blank_u = np.zeros(len(uniques) + 1, dtype=bool)
    blank_u[-1] = True
    failed: dict[int, tuple[str, str]] = {}
    for k, u in enumerate(uniques):
        if parse.is_blank(u):
            blank_u[k] = True
            continue
        try:
            results[k] = parser(u)
        except parse.ParseError as exc:
            failed[k] = (exc.message, exc.code)
    if kind == "text":  # parse_text makes a blank-after-stripping cell None
        blank_u |= np.equal(results, np.array(None, dtype=object))
    errors: list[tuple[int, str, str]] = []
    if failed:
        where = np.flatnonzero(np.isin(codes, np.fromiter(failed, dtype=np.int64)))
        errors = [(int(p), *failed[int(codes[p])]) for p in where]
    return _Parsed(kind, codes, results, blank_u[codes], errors)


def _text_column(values: Sequence[Any]) -> _Parsed:
    import numpy as np  # lazy: heavy

    n = len(values)
    try:  # in C; a cell that is not text (None, a number) raises TypeError
        stripped = np.fromiter(map(str.strip, values), dtype=object, count=n)
        blank = stripped == ""
        stripped[blank] = None
    except TypeError:
        stripped = np.fromiter(((c.strip() or None) if c.__class__ is str else parse.parse_text(c)
                                for c in values), dtype=object, count=n)
        blank = np.equal(stripped, np.array(None, dtype=object))
    # the last slot is code -1 of the other kinds
    results = np.append(stripped, np.array(None, dtype=object))
    return _Parsed("text", np.arange(n), results, blank, [], distinct=False)


def _factorize(cells: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Codes and distinct values in one pass of a dict, in C (no Python per-cell work): each
    cell's code is first the position of its first occurrence, then renumbered densely."""
    import numpy as np  # lazy: heavy

    n = len(cells)
    first: dict[Any, int] = {}
    at = np.fromiter(map(first.setdefault, cells, range(n)), dtype=np.intp, count=n)
    dense = np.empty(n, dtype=np.intp)
    dense[np.fromiter(first.values(), dtype=np.intp, count=len(first))] = np.arange(len(first))
    return dense[at], list(first)


def _hash_collides(u: object) -> bool:
    return isinstance(u, bool | int | float) and u in (0, 1)


def _factorize_by_type(cells: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    import numpy as np  # lazy: heavy

    seen: dict[tuple[type, Any], int] = {}
    uniques: list[Any] = []
    codes = np.empty(len(cells), dtype=np.int64)
    for i, c in enumerate(cells):
        if c is None:
            codes[i] = -1
            continue
        key = (c.__class__, c)
        k = seen.get(key)
        if k is None:
            k = seen[key] = len(uniques)
            uniques.append(c)
        codes[i] = k
    return codes, uniques


# ------------------------------------------------------------------------------ the pandera schema


def _frame(cols: dict[str, _Parsed], row_numbers: np.ndarray, spec: Spec) -> pd.DataFrame:
    """The normalised columns, indexed by spreadsheet row: IDs/type/text as str, dates as
    datetime64, times as minutes after midnight (float, NaN when missing)."""
    import numpy as np  # lazy: heavy
    import pandas as pd  # lazy: heavy

    data: dict[str, Any] = {}
    for name in (n for n in spec.names if n in cols and n not in _RECURRENCE):
        col = cols[name]
        if col.kind == "date":
            days = col.per_row(_ordinal) - _EPOCH_ORDINAL
            out = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[s]")
            ok = ~np.isnan(days)
            out[ok] = days[ok].astype(np.int64).astype("datetime64[D]")
            data[name] = out
        elif col.kind == "time":
            data[name] = col.per_row(_minutes)
        else:
            data[name] = pd.array(col.values, dtype="str")
    return pd.DataFrame(data, index=pd.Index(row_numbers, name="row"))


def _ordinal(d: dt.date | None) -> float:
    return float("nan") if d is None else d.toordinal()


def _minutes(t: dt.time | None) -> float:
    return float("nan") if t is None else t.hour * 60 + t.minute


_TYPE_CODES = frozenset({"0", "1"})


def _is_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _per_distinct(test: Callable[[str], bool]) -> Callable[[pd.Series], pd.Series | bool]:
    """A vectorised check that runs ``test`` once per distinct value: IDs repeat so much that
    this is many times faster than a regex over every row (pandas.Series.str.match)."""

    def check(series: pd.Series) -> pd.Series | bool:
        failing = [v for v in set(series.to_numpy()) if isinstance(v, str) and not test(v)]
        return ~series.isin(failing) if failing else True  # nulls are left to nullable=

    return check


def _schemas(today: dt.date, spec: Spec) -> tuple[Any, Any]:
    """(errors schema, warnings schema). Every column is optional here: a missing required column
    is reported once, from the headers, not once per row."""
    import pandas as pd  # lazy: heavy
    import pandera.pandas as pa  # lazy: heavy

    columns: dict[str, Any] = {}
    for c in spec.columns:
        if c.name in _RECURRENCE:  # read by `_expand`, not by the schema
            continue
        checks: list[Any] = []
        if c.kind == "id":
            checks.append(pa.Check(_per_distinct(_is_digits), name="digits_only"))
        elif c.kind == "type":
            checks.append(pa.Check(_per_distinct(_TYPE_CODES.__contains__), name="type_code"))
        dtype = {"date": "datetime64[s]", "time": float}.get(c.kind, str)
        columns[c.name] = pa.Column(dtype, checks, nullable=not c.required, required=False)

    def end_after_start(df: pd.DataFrame) -> pd.Series:
        if "startTime" not in df or "endTime" not in df:
            return pd.Series(True, index=df.index)
        start, end = df["startTime"], df["endTime"]
        return start.isna() | end.isna() | (end > start)

    errors = pa.DataFrameSchema(
        columns,
        checks=[pa.Check(end_after_start, name="end_after_start", ignore_na=False)],
    )

    def lock_on_or_before_date(df: pd.DataFrame) -> pd.Series:
        if "lockUntil" not in df or "date" not in df:
            return pd.Series(True, index=df.index)
        lock, date = df["lockUntil"], df["date"]
        return lock.isna() | date.isna() | (lock <= date)

    cutoff = pd.Timestamp(today)
    warnings = pa.DataFrameSchema(
        {"date": pa.Column(checks=pa.Check(lambda s: s >= cutoff, name="not_in_past"),
                           nullable=True, required=False)},
        checks=[pa.Check(lock_on_or_before_date, name="lock_on_or_before_date", ignore_na=False)],
    )
    return errors, warnings


def _schema_problems(
    frame: pd.DataFrame,
    today: dt.date,
    bad_cells: set[tuple[int, str]],
    cell: Callable[[int, str], str],
    spec: Spec,
) -> list[Problem]:
    """Run both schemas lazily and turn their failure cases into Problems."""
    import pandera.pandas as pa  # lazy: heavy

    found: list[Problem] = []
    makers: tuple[_Make, _Make] = (error, warning)
    for schema, make in zip(_schemas(today, spec), makers, strict=True):
        try:
            schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            found.extend(_failure_problems(exc.failure_cases, make, bad_cells, cell,
                                           _Normalised(frame, spec), today))
    return found


class _Make(Protocol):
    """`problems.error` or `problems.warning`."""

    def __call__(self, row: int | None, column: str | None, value: object, message: str, *,
                 code: str) -> Problem: ...


def _failure_problems(
    cases: pd.DataFrame,
    make: _Make,
    bad_cells: set[tuple[int, str]],
    cell: Callable[[int, str], str],
    shown: _Normalised,
    today: dt.date,
) -> list[Problem]:
    # a failing wide check reports once per column of the row: keep one line per (row, check)
    wide = cases["schema_context"] == "DataFrameSchema"
    cases = cases[~wide | ~cases.duplicated(["index", "check"])]
    found: list[Problem] = []
    for context, column, check, index in zip(
        cases["schema_context"], cases["column"], cases["check"], cases["index"], strict=True
    ):
        if index is None or index != index:  # not about one row (dtype, column presence)
            found.append(make(None, str(column), None,
                              f"Internal check '{check}' failed for column '{column}'",
                              code="check.internal"))
            continue
        row = int(index)
        if context == "DataFrameSchema":
            column = {"end_after_start": "endTime", "lock_on_or_before_date": "lockUntil"}.get(
                str(check), column)
        if (row, column) in bad_cells:
            continue  # already reported by its parser
        message, code = _message(str(check), column, functools.partial(shown, row),
                                 shown.hint(column), today)
        found.append(make(row, column, cell(row, column), message, code=code))
    return found


class _Normalised:
    """A normalised value of the frame as messages show it (dd-mm-yyyy, hh:mm AM)."""

    def __init__(self, frame: pd.DataFrame, spec: Spec) -> None:
        self.frame = frame
        self.spec = spec

    def __call__(self, row: int, column: str) -> str:
        value: Any = self.frame.at[row, column]  # a Timestamp, minutes as a float, or a str
        kind = self.spec.by_name[column].kind
        if kind == "date":
            return parse.format_date(value.date())
        if kind == "time":
            return parse.format_time(dt.time(int(value) // 60, int(value) % 60))
        return str(value)

    def hint(self, column: str) -> str:
        """What to type into a blank required cell of ``column``."""
        found = self.spec.by_name.get(column)
        return found.hint if found else "fill it in"


def _message(
    check: str, column: str, shown: Callable[[str], str], hint: str, today: dt.date
) -> tuple[str, str]:
    """(message, problem code) for a failed pandera check on one row."""
    if check == "not_nullable":
        return f"{column} is required: {hint}", "cell.required"
    if check == "end_after_start":
        return (f"The end time {shown('endTime')} is not after the start time "
                f"{shown('startTime')}: a session must end after it starts",
                "time.end_before_start")
    if check == "lock_on_or_before_date":
        return (f"lockUntil {shown('lockUntil')} is after the session date "
                f"{shown('date')}: it should be on or before the session date", "lock.after_date")
    if check == "not_in_past":
        return (f"The date {shown('date')} is in the past (today is "
                f"{parse.format_date(today)}): check it is the date you mean", "date.in_past")
    if check.startswith("digits_only"):
        return "IDs are digits only, such as 478346000019479103", "id.not_digits"
    if check.startswith("type_code"):
        return "Type must be Classroom or E-learning (0 or 1)", "type.unknown"
    return f"Failed the check '{check}'", "check.internal"


# -------------------------------------------------------------------------------- repeating rows

#: The columns of a repeating row (sheet/recurrence.py): never in the pandera frame.
_RECURRENCE = frozenset({"repeat", "until", "count", "skip"})
#: Where a `RecurrenceError` of `recurrence.expand` is reported, by code.
_EXPAND_COLUMN = {"repeat.no_end": "repeat", "until.before_date": "until",
                  "count.out_of_range": "count", "repeat.first_date_off_rule": "date",
                  "repeat.too_many": "until", "repeat.no_sessions": "repeat"}


def _skip_reader(month_first: bool) -> Callable[[Any], tuple[dt.date, ...]]:
    def read_date(text: str) -> dt.date:
        return parse.parse_date(text, month_first=month_first)

    def read(cell: Any) -> tuple[dt.date, ...]:
        return recurrence.skip_cell(cell, read_date)

    return read


def _holidays(
    lines: Sequence[HolidayLine], month_first: bool
) -> tuple[frozenset[dt.date], list[tuple[HolidayLine, str]]]:
    """The dates the Holidays lines name, and the lines that cannot be read with why. The first
    line of a sheet or file is a header when it is text without a digit ("date", "Holiday")."""
    read = _skip_reader(month_first)
    days: set[dt.date] = set()
    bad: list[tuple[HolidayLine, str]] = []
    seen: set[str] = set()
    for line in lines:
        first = line.source not in seen
        seen.add(line.source)
        if line.cell is None:
            bad.append((line, f"the date is blank (the name is {parse.display(line.name)!r}): "
                              "put the date or range in the first column"))
            continue
        try:
            days.update(read(line.cell))
        except RecurrenceError as exc:
            if first and isinstance(line.cell, str) and not any(c.isdigit() for c in line.cell):
                continue  # a header line
            bad.append((line, exc.message))
    return frozenset(days), bad


class _Expanded:
    """The sheet with each repeating row expanded: one entry per session, in sheet order (a
    repeating row's sessions where the row is), for the cross-row checks and the sessions.

    ``src``: per entry, the position of its row; ``rows``: its spreadsheet row; ``occurrence``:
    its number within its row (1, 2, ...; None for a row that does not repeat); ``dates``: the
    dates of each expanded row, by position; ``summary``: one `Expansion` per expanded row.
    """

    def __init__(self, row_numbers: np.ndarray, own: np.ndarray,
                 dates: dict[int, list[dt.date]], given: np.ndarray | None = None) -> None:
        import numpy as np  # lazy: heavy

        n = len(row_numbers)
        self.own = own  # each row's own date (a dt.date, or None)
        self.dates = dates
        counts = np.ones(n, dtype=np.int64)
        for pos, days in dates.items():
            counts[pos] = len(days)
        self.src: np.ndarray = np.repeat(np.arange(n), counts)
        self.first: np.ndarray = np.cumsum(counts) - counts  # each row's first entry
        self.rows: np.ndarray = row_numbers[self.src]
        self.occurrence: np.ndarray = np.full(len(self.src), None, dtype=object)
        for pos, days in dates.items():
            at = int(self.first[pos])
            self.occurrence[at:at + len(days)] = list(range(1, len(days) + 1))
        if given is not None:  # one session of a repeating row, as a results workbook names it
            for at in np.flatnonzero(np.not_equal(given, np.array(None, dtype=object))).tolist():
                self.occurrence[int(self.first[at])] = given[at]
        self.summary = [Expansion(int(row_numbers[pos]), len(days), days[0], days[-1])
                        for pos, days in sorted(dates.items())]
        self._columns: dict[str, _Parsed] | None = None

    def _per_entry(self, values: np.ndarray,
                   change: Callable[[Any, int, int, dt.date, dt.date], Any],
                   when: Callable[[Any], bool] | None = None) -> np.ndarray:
        """``values`` (per row) spread over the entries, each expanded row's entries given
        ``change(value, n, count, day, first day)`` (only where ``when(value)``, if given)."""
        out: np.ndarray = values[self.src]
        for pos, days in self.dates.items():
            value = values[pos]
            if value is None or (when is not None and not when(value)):
                continue
            at = int(self.first[pos])
            out[at:at + len(days)] = [change(value, k, len(days), day, days[0])
                                      for k, day in enumerate(days, start=1)]
        return out

    def columns(self, cols: dict[str, _Parsed]) -> dict[str, _Parsed]:
        """The parsed columns per entry: ``date`` the session's, ``lockUntil`` moved with it,
        the placeholders of ``name`` and ``description`` filled in; the rest as their row's."""
        if self._columns is not None:
            return self._columns
        out: dict[str, _Parsed] = {}
        for name, col in cols.items():
            if name == "date":
                out[name] = _Parsed.per_entry(col.kind, self._days())
            elif name == "lockUntil":
                out[name] = _Parsed.per_entry(col.kind, self._lock_until(col.values))
            elif name in ("name", "description"):
                out[name] = _Parsed.per_entry(col.kind, self._per_entry(
                    col.values, _fill, lambda text: "{" in text))
            else:
                out[name] = col.take(self.src)
        self._columns = out
        return out

    def _days(self) -> np.ndarray:
        """The date of each entry: a session's own, or its row's."""
        out: np.ndarray = self.own[self.src]
        for pos, days in self.dates.items():
            at = int(self.first[pos])
            out[at:at + len(days)] = days
        return out

    def _lock_until(self, locks: np.ndarray) -> np.ndarray:
        """lockUntil moved by as many days as each session is after the row's own date."""
        out: np.ndarray = locks[self.src]
        for pos, days in self.dates.items():
            lock = locks[pos]
            if lock is None:
                continue
            at = int(self.first[pos])
            out[at:at + len(days)] = [lock + (day - self.own[pos]) for day in days]
        return out

    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The columns the cross-row checks read from the frame, per entry."""
        import numpy as np  # lazy: heavy
        import pandas as pd  # lazy: heavy

        data: dict[str, Any] = {name: frame[name].to_numpy()[self.src]
                                for name in ("date", "startTime", "endTime") if name in frame}
        if "date" in data:
            moved = np.zeros(len(self.src), dtype=np.int64)
            for pos, days in self.dates.items():
                at = int(self.first[pos])
                moved[at:at + len(days)] = [(day - self.own[pos]).days for day in days]
            data["date"] = data["date"] + moved.astype("timedelta64[D]")
        return pd.DataFrame(data, index=pd.Index(self.rows, name="row"))


def _fill(text: Any, n: int, count: int, day: dt.date, first: dt.date) -> Any:
    return recurrence.fill(text, n=n, count=count, day=day)


def _expand(
    cols: dict[str, _Parsed],
    row_numbers: np.ndarray,
    holidays: Sequence[HolidayLine],
    month_first: bool,
    cell: Callable[[int, str], str],
    problems: list[Problem],
    given: np.ndarray | None = None,
) -> _Expanded | None:
    """The dates of every repeating row (a problem on its cell where they cannot be worked
    out), or None when no row repeats: the sheet is then checked exactly as before. ``given``:
    per row, the occurrence a results workbook's line of a repeating row's session names
    (`_given_occurrences`): such a line is that one session, not expanded again."""
    import numpy as np  # lazy: heavy

    n = len(row_numbers)
    rules = cols.get("repeat")
    typed = np.zeros(n, dtype=bool) if rules is None else ~rules.blank
    repeating = typed if given is None else typed & np.equal(given, np.array(None, dtype=object))
    for name in ("until", "count", "skip"):  # filled in on a row that does not repeat
        col = cols.get(name)
        if col is None:
            continue
        for pos in np.flatnonzero(~col.blank & ~typed & np.not_equal(
                col.values, np.array(None, dtype=object))).tolist():
            row = int(row_numbers[pos])
            problems.append(warning(
                row, name, cell(row, name),
                f"{name} is ignored: this row does not repeat (its repeat cell is blank). Fill "
                f"in repeat to make one session per date, or clear {name}",
                code="repeat.missing"))
    days_off, unreadable = _holidays(holidays, month_first)
    any_repeats = bool(repeating.any())
    make = error if any_repeats else warning
    for line, message in unreadable:
        problems.append(make(None, "Holidays", parse.display(line.cell),
                             f"{line.source}, row {line.row}: {message}"
                             + ("" if any_repeats else " (ignored: no row repeats)"),
                             code="skip.unreadable"))
    if not any_repeats or "date" not in cols:
        return None
    assert rules is not None
    if unreadable:
        line = unreadable[0][0]
        for pos in np.flatnonzero(repeating).tolist():
            row = int(row_numbers[pos])
            problems.append(error(
                row, "repeat", cell(row, "repeat"),
                f"The dates of this row's sessions cannot be worked out: {line.source} row "
                f"{line.row} cannot be read (see that problem); fix it first",
                code="skip.unreadable"))

    def value(name: str, pos: int) -> Any:
        return cols[name].values[pos] if name in cols else None

    def failed(name: str, pos: int) -> bool:  # its cell has an error of its own already
        return name in cols and value(name, pos) is None and not cols[name].blank[pos]

    found: dict[int, list[dt.date]] = {}
    known: dict[tuple[Any, ...], list[dt.date] | RecurrenceError] = {}
    for pos in np.flatnonzero(repeating).tolist():
        rule, first = value("repeat", pos), value("date", pos)
        if rule is None or first is None or any(failed(c, pos) for c in ("until", "count",
                                                                         "skip")):
            continue  # reported on its cell already
        key = (rule, first, value("until", pos), value("count", pos), value("skip", pos))
        if key not in known:
            known[key] = _dates(*key, days_off)
        days = known[key]
        if isinstance(days, RecurrenceError):
            column = _EXPAND_COLUMN.get(days.code, "repeat")
            if days.code == "repeat.no_end" and value("until", pos) is not None:
                column = "count"  # both given
            row = int(row_numbers[pos])
            problems.append(error(row, column, cell(row, column), days.message, code=days.code))
            continue
        found[pos] = days
    return _Expanded(row_numbers, cols["date"].values, found, given) if found else None


def _given_occurrences(table: RawTable, columns: Sequence[Cells], rules: _Parsed | None
                       ) -> np.ndarray | None:
    """Per row, the session number a results workbook given back as input names in its
    ``occurrence`` column (a whole number from 1, on a row whose ``repeat`` is filled in), else
    None; None for a sheet without such a column or number. Such a line is one session of its
    repeating row (its date, filled-in name and identity as written), not expanded again: the
    results workbook of a repeating sheet, edited and run again, is each session once."""
    import numpy as np  # lazy: heavy

    at = next((i for i, h in enumerate(table.headers)
               if h is not None and normalise(str(h)) == OCCURRENCE), None)
    if at is None or rules is None:
        return None
    out: np.ndarray = np.full(len(table.row_numbers), None, dtype=object)
    cells: Sequence[object] = columns[at].tolist()
    for pos, value in enumerate(cells):
        if rules.blank[pos]:
            continue
        n = _whole(value)
        if n is not None:
            out[pos] = n
    return out if np.not_equal(out, np.array(None, dtype=object)).any() else None


def _whole(value: object) -> int | None:
    """A cell's whole number from 1 (an int, an integral float, digits as text), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and value >= 1 else None


def _session_keys(cols: dict[str, _Parsed], given: np.ndarray | None) -> _Parsed | None:
    """The key column as the duplicate-key check reads it when lines of a results workbook
    are sessions of one repeating row (`_given_occurrences`): those lines share the row's key,
    and each is told apart by its date, as its identity is (``key@dd-mm-yyyy``). None: the
    typed column."""
    import numpy as np  # lazy: heavy

    key, day = cols.get("key"), cols.get("date")
    if given is None or key is None or day is None:
        return None
    values: np.ndarray = key.values.copy()
    for pos in np.flatnonzero(np.not_equal(given, np.array(None, dtype=object))).tolist():
        if values[pos] and day.values[pos] is not None:
            values[pos] = f"{values[pos]}@{parse.format_date(day.values[pos])}"
    return _Parsed.per_entry(key.kind, values)


def _dates(rule: str, first: dt.date, until: dt.date | None, count: int | None,
           skip: tuple[dt.date, ...] | None, days_off: frozenset[dt.date]
           ) -> list[dt.date] | RecurrenceError:
    """The dates of one repeating row, or why there are none."""
    try:
        days = recurrence.expand(first, recurrence.parse_rule(rule), until=until, count=count,
                                 skip=days_off.union(skip or ()))
    except RecurrenceError as exc:
        if exc.code == "repeat.no_end":
            return RecurrenceError(exc.code, exc.message + " (until: 31-03-2027, or count: 10)")
        return exc
    if not days:
        return RecurrenceError("repeat.no_sessions",
                               f"this row makes no session: every date {rule} gives from "
                               f"{parse.format_date(first)} to {parse.format_date(until or first)}"
                               " is skipped (skip or the Holidays)")
    return days


# ------------------------------------------------------------------------------- cross-row checks


def _cross_row_problems(
    frame: pd.DataFrame, cols: dict[str, _Parsed], expanded: _Expanded | None = None, *,
    key: _Parsed | None = None,
) -> list[Problem]:
    """Duplicates and double bookings, on codes of the parsed values: no cell is hashed twice.

    With repeating rows (``expanded``), the sessions are checked one by one (a problem in one is
    reported on its row and names its date); each row's key stays the row's. ``key``: the key
    column as the duplicate check reads it, when it is not the typed one (`_session_keys`).
    """
    keys = _Keys(frame, cols if key is None else {**cols, "key": key})
    each = keys if expanded is None else _Keys(expanded.frame(frame), expanded.columns(cols),
                                               expanded.occurrence)
    found = _Found()
    # a repeated session is not also a double booking: the first copy stays valid
    repeated = _duplicates(
        each, ["moduleId", "date", "startTime", "name"], "name",
        lambda first: (f"Same session as row {first}{_ON} (same module, name, date and start "
                       "time): delete one of them"),
        "row.duplicate", found,
    )
    _duplicates(
        keys, ["key"], "key",
        lambda first: f"The key is also used in row {first}: each row's key must be unique",
        "key.duplicate", found,
    )
    _duplicates(
        keys, ["sessionId"], "sessionId",
        lambda first: (f"Row {first} already names this session (the same sessionId): one row "
                       "per session"),
        "sessionid.duplicate", found,
    )
    _double_bookings(each, repeated, "trainerErecno", "Trainer", "trainer.double_booked", found)
    _double_bookings(each, repeated, "roomId", "Room", "room.double_booked", found)
    return found.problems()


#: Where a message names the session's date (" on 13-01-2027"), when it concerns a session of a
#: repeating row; removed from the messages of other rows.
_ON = "\x00"
#: Dates of one problem spelt out before "and N more dates".
_DATES_AT_MOST = 3


class _Found:
    """Cross-row errors as they are found. The same problem on several sessions of a repeating
    row (the same other row, each week) becomes one, naming their dates."""

    def __init__(self) -> None:
        self.found: list[Problem] = []
        self.dated: dict[tuple[int, str, object, str, str], list[dt.date]] = {}

    def add(self, row: int, column: str, value: object, message: str, code: str,
            day: dt.date | None = None) -> None:
        if day is None:
            self.found.append(error(row, column, value, message.replace(_ON, ""), code=code))
        else:
            self.dated.setdefault((row, column, value, message, code), []).append(day)

    def problems(self) -> list[Problem]:
        out = self.found
        for (row, column, value, message, code), days in self.dated.items():
            out.append(error(row, column, value,
                             message.replace(_ON, " on " + _dates_text(days)), code=code))
        return out


def _dates_text(days: list[dt.date]) -> str:
    """``13-01-2027, 20-01-2027 and 27-01-2027``, or the first few ``and 7 more dates``."""
    shown = [parse.format_date(d) for d in sorted(set(days))]
    if len(shown) > _DATES_AT_MOST:
        more = len(shown) - _DATES_AT_MOST
        return ", ".join(shown[:_DATES_AT_MOST]) + f" and {more} more date{'s' * (more > 1)}"
    return _join(shown)


class _Keys:
    """Integer keys of the normalised columns for the cross-row checks; ``occurrence`` is given
    when the entries are sessions of repeating rows too."""

    def __init__(self, frame: pd.DataFrame, cols: dict[str, _Parsed],
                 occurrence: np.ndarray | None = None) -> None:
        self.frame = frame
        self.cols = cols
        self.rows = frame.index.to_numpy()
        self.occurrence = occurrence

    def __contains__(self, name: str) -> bool:
        return name in self.cols

    def codes(self, name: str, pos: np.ndarray) -> np.ndarray:
        """Per row at ``pos``: equal values share a code; -1 for a missing value."""
        import pandas as pd  # lazy: heavy

        if self.cols[name].kind in ("date", "time"):  # numbers already (datetime64, minutes)
            found: np.ndarray = pd.factorize(self.frame[name].to_numpy()[pos])[0]
            return found
        return self.cols[name].keys(pos)

    def values(self, name: str) -> np.ndarray:
        return self.cols[name].values

    def day(self, *entries: int) -> dt.date | None:
        """The date of entry ``entries[0]`` when any of ``entries`` is a session of a repeating
        row (its message names that date), else None."""
        if self.occurrence is None or all(self.occurrence[i] is None for i in entries):
            return None
        found: dt.date = self.cols["date"].values[entries[0]]
        return found


def _duplicates(
    keys: _Keys, names: list[str], column: str, message: Callable[[int], str], code: str,
    found: _Found,
) -> np.ndarray:
    """An error on every later entry equal to an earlier one on ``names`` (entries with a key
    missing are left out), naming the first such row; the positions of those later entries.

    Column by column, only the rows still equal to another row on the columns so far are kept, so
    free text (the last key) is hashed only for the few rows that may repeat.
    """
    import numpy as np  # lazy: heavy
    import pandas as pd  # lazy: heavy

    none = np.zeros(0, dtype=np.intp)
    if any(k not in keys for k in names):
        return none
    pos = np.arange(len(keys.rows))
    key = np.zeros(len(pos), dtype=np.int64)
    for name in names:
        codes = keys.codes(name, pos)
        have = codes >= 0
        pos, key, codes = pos[have], key[have], codes[have]
        key = pd.factorize(key * (int(codes.max(initial=0)) + 1) + codes)[0]
        repeats = np.bincount(key)[key] > 1
        pos, key = pos[repeats], key[repeats]
        if not len(pos):
            return none
    first = np.empty(int(key.max()) + 1, dtype=pos.dtype)
    first[key[::-1]] = pos[::-1]  # the earliest position of each key wins
    firsts = first[key]
    later = firsts != pos
    rows, shown = keys.rows, keys.values(column)
    for i, f in zip(pos[later].tolist(), firsts[later].tolist(), strict=True):
        found.add(int(rows[i]), column, shown[i], message(int(rows[f])), code, keys.day(i, f))
    found_at: np.ndarray = pos[later]
    return found_at


def _double_bookings(
    keys: _Keys, repeated: np.ndarray, column: str, what: str, code: str, found: _Found
) -> None:
    """Entries booking the same trainer (or room) on the same date at overlapping times; the
    entries at ``repeated`` (later copies of a session) are left out.

    Sorted sweeps keep this O(n log n): counting overlaps is two binary searches per row over the
    (group, time) keys; only groups that have an overlap are walked to name the other rows.
    """
    import numpy as np  # lazy: heavy
    import pandas as pd  # lazy: heavy

    if any(k not in keys for k in (column, "date", "startTime", "endTime")):
        return
    frame = keys.frame
    pos = np.arange(len(keys.rows))
    if len(repeated):
        keep = np.ones(len(pos), dtype=bool)
        keep[repeated] = False
        pos = pos[keep]
    who_all = keys.codes(column, pos)
    dates = frame["date"].to_numpy()[pos]
    starts = frame["startTime"].to_numpy()[pos]
    ends = frame["endTime"].to_numpy()[pos]
    ok = (who_all >= 0) & ~np.isnat(dates) & ~np.isnan(starts) & ~np.isnan(ends)
    ok[ok] = ends[ok] > starts[ok]  # ending before it starts: already an error
    if ok.sum() < 2:
        return
    pos = pos[ok]
    who = pd.factorize(who_all[ok])[0].astype(np.int64)
    day = dates[ok].astype("datetime64[D]").astype(np.int64)
    group = pd.factorize(who * 4_000_000 + (day - day.min()))[0].astype(np.int64)
    start = starts[ok].astype(np.int64)
    end = ends[ok].astype(np.int64)
    span = 2048  # > minutes in a day: keeps (group, minute) keys of different groups apart
    start_key = group * span + start
    end_key = group * span + end
    overlaps = (np.searchsorted(np.sort(start_key), end_key, "left")
                - np.searchsorted(np.sort(end_key), start_key, "right") - 1)
    if not overlaps.any():
        return

    rows = keys.rows[pos]
    ids = keys.values(column)[pos]
    partners = _overlap_partners(group, start, end, overlaps)
    for i, others in partners.items():
        shown = sorted(others, key=lambda j: rows[j])[:_NAME_AT_MOST]
        parts = [f"{_span(start[j], end[j])} in row {rows[j]}" for j in shown]
        text = _join(parts)
        more = int(overlaps[i]) - len(shown)
        if more > 0:
            text += f", and {more} more row{'s' if more > 1 else ''}"
        found.add(int(rows[i]), column, ids[i], f"{what} {ids[i]} is also booked {text}{_ON}",
                  code, keys.day(int(pos[i]), *(int(pos[j]) for j in shown)))


def _overlap_partners(
    group: np.ndarray, start: np.ndarray, end: np.ndarray, overlaps: np.ndarray
) -> dict[int, list[int]]:
    """For each overlapping row, a few of the rows it overlaps (at least min(3, count) of them).

    Walks each group with an overlap in start order, keeping the earlier rows still running
    sorted by end: all of them overlap the current row, as do the following rows that start
    before it ends.
    """
    import numpy as np  # lazy: heavy

    conflicted = np.isin(group, np.unique(group[overlaps > 0]))
    idx = np.flatnonzero(conflicted)
    order = idx[np.lexsort((start[idx], group[idx]))]
    partners: dict[int, list[int]] = {}
    g_list, s_list, e_list = group[order].tolist(), start[order].tolist(), end[order].tolist()
    order_list = order.tolist()
    n = len(order_list)
    running_ends: list[int] = []
    running_ids: list[int] = []
    for k in range(n):
        if k == 0 or g_list[k] != g_list[k - 1]:
            running_ends.clear()
            running_ids.clear()
        i, s, e = order_list[k], s_list[k], e_list[k]
        cut = bisect.bisect_right(running_ends, s)  # finished by the time this row starts
        del running_ends[:cut]
        del running_ids[:cut]
        found = running_ids[-_NAME_AT_MOST:]
        nxt = k + 1
        while nxt < n and len(found) < 2 * _NAME_AT_MOST and g_list[nxt] == g_list[k] \
                and s_list[nxt] < e:
            found.append(order_list[nxt])
            nxt += 1
        if found:
            partners[i] = found
        at = bisect.bisect_right(running_ends, e)
        running_ends.insert(at, e)
        running_ids.insert(at, i)
    return partners


def _span(start: int, end: int) -> str:
    return (f"{parse.format_time(dt.time(start // 60, start % 60))}–"
            f"{parse.format_time(dt.time(end // 60, end % 60))}")


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# -------------------------------------------------------------------------------- the valid rows


def _valid_rows(row_numbers: np.ndarray, error_rows: set[int]) -> tuple[Any, int]:
    """The positions of the rows without an error (a slice when there are none), and how many."""
    import numpy as np  # lazy: heavy

    if not error_rows:
        return slice(None), len(row_numbers)
    ok = ~np.isin(row_numbers, np.fromiter(error_rows, dtype=np.int64, count=len(error_rows)))
    return ok, int(ok.sum())


def _sessions(
    cols: dict[str, _Parsed], row_numbers: np.ndarray, occurrence: np.ndarray | None, spec: Spec,
    ok: Any, *, numbers: Sequence[int] | None = None,
) -> list[SessionRow]:
    """The valid sessions as ``spec.row_type`` tuples: the row number, then every column in spec
    order (None where the sheet has no such column), then the occurrence (None for a row that
    does not repeat). ``cols``, ``row_numbers`` and ``occurrence`` have one entry per session
    (a repeating row's dates expanded); ``ok`` picks the valid ones. ``numbers``: the table's
    own row numbers when there is one session a row, so the sessions share its ints (a new int
    a row was 32 bytes a row kept as long as the sessions)."""
    n = len(row_numbers[ok])
    nones: list[Any] = [None] * n  # one list for every column the sheet does not have

    def values(name: str) -> list[Any]:
        if name not in cols:
            return nones
        found: list[Any] = cols[name].values[ok].tolist()
        return found

    occurrences: list[Any] = nones if occurrence is None else occurrence[ok].tolist()
    if numbers is None:
        rows: list[int] = row_numbers[ok].tolist()
    elif isinstance(ok, slice):
        rows = list(numbers[ok])
    else:
        rows = list(itertools.compress(numbers, ok.tolist()))
    columns = (rows, *(values(name) for name in spec.names), occurrences)
    # row_type._make without a Python call per row
    make = functools.partial(tuple.__new__, spec.row_type)
    return cast("list[SessionRow]", list(map(make, zip(*columns, strict=True))))

"""The column spec: the single source the schema, payload, template, docs and reports read.

`COLUMNS` lists every column once. Everything else about columns is derived from it by `derive`:
the `SessionRow` fields, which columns feed the API's ``sessionData`` and which its URL path, the
header lookup, the required list. `SPEC` is today's; the functions that take a ``spec`` default to
it, so a test can run the whole pipeline over a spec with one more column.

Headers match ignoring case, spaces, underscores and hyphens, so "Course ID", "course_id" and
"COURSEID" are all ``courseId``. A header that matches nothing is a warning with the closest name.
"""

from __future__ import annotations

import collections
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

#: How a column's cells are read: "rule" is a repeat rule (`recurrence.parse_rule`), "count" a
#: whole number of sessions, "dates" a list of dates and ranges (`recurrence.parse_skip`).
Kind = Literal["id", "text", "type", "date", "time", "rule", "count", "dates"]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the sessions sheet."""

    name: str
    kind: Kind
    required: bool
    description: str
    example: str
    aliases: tuple[str, ...] = ()
    #: The ``sessionData`` field this column feeds, or None for path IDs and ``key``.
    api_field: str | None = None
    #: For a path ID (part of the API's URL): the option that may give it once for every row.
    option: str | None = None
    #: What to type into the cell when a required one is blank.
    hint: str = "fill it in"
    #: The `SessionRow` field: the name in snake_case unless given.
    attr: str = ""

    def __post_init__(self) -> None:
        if not self.attr:
            object.__setattr__(self, "attr", _snake(self.name))


def _snake(name: str) -> str:
    """``trainerErecno`` -> ``trainer_erecno``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


COLUMNS: tuple[Column, ...] = (
    Column("courseId", "id", True,
           "The course's 18-digit ID (from the course's URL in Zoho People). "
           "May be left out of the sheet and given once with --course.",
           "478346000019479103", ("course",), option="--course",
           hint="enter the course ID, or give it once with --course"),
    Column("batchId", "id", True,
           "The batch's 18-digit ID within the course. May be given once with --batch.",
           "478346000019479115", ("batch",), option="--batch",
           hint="enter the batch ID, or give it once with --batch"),
    Column("moduleId", "id", True,
           "The module's 18-digit ID within the batch. May be given once with --module.",
           "478346000019479119", ("module",), option="--module",
           hint="enter the module ID, or give it once with --module"),
    Column("name", "text", True, "The session's name, as learners will see it.",
           "Induction: health and safety", ("sessionname", "session", "title"), "name",
           hint="enter the session's name"),
    Column("trainerErecno", "id", True, "The trainer's employee record number (erecno), 18 digits.",
           "478346000008251001", ("trainer", "trainerid"), "trainerErecno",
           hint="enter the trainer's erecno (18 digits)"),
    Column("type", "type", True, "Classroom or E-learning (or 0 / 1).", "Classroom",
           ("sessiontype",), "type", hint="enter Classroom or E-learning"),
    Column("date", "date", True,
           "The session date. A real date cell, or text such as 04-01-2027 "
           "(day first), 2027-01-04 or 4-Jan-2027.",
           "04-01-2027", ("sessiondate", "startdate"), "date",
           hint="enter the session date as dd-mm-yyyy"),
    Column("startTime", "time", True, "Start time: a time cell, or text such as 10:00 AM or 14:30.",
           "10:00 AM", ("start", "from"), "startTime",
           hint="enter the start time, such as 10:00 AM", attr="start"),
    Column("endTime", "time", True, "End time, after the start time.", "11:00 AM", ("end", "to"),
           "endTime", hint="enter the end time, such as 11:00 AM", attr="end"),
    Column("description", "text", False, "Optional description shown with the session.",
           "Bring your badge", ("details", "notes"), "description"),
    Column("roomId", "id", False, "Optional room ID (18 digits) for classroom sessions.",
           "478346000010125093", ("room",), "roomId"),
    Column("lockUntil", "date", False, "Optional date until which attendance stays editable; on or "
           "before the session date.", "03-01-2027", ("lock",), "lockUntil"),
    Column("gradeCategoryId", "id", False, "Optional grade category ID (18 digits).",
           "478346000019553021", ("gradecategory",), "gradeCategoryId"),
    Column("key", "text", False, "Optional: your own unique ID for the row. When given, it is what "
           "makes a row the same row across re-runs, so you may rename or move the session.",
           "T1-W1-IND", ("rowkey", "uniqueid", "ref"), None),
    Column("sessionId", "id", False, "Optional: the Zoho session this row is (every results "
           "workbook has it). Given, the row updates that session instead of creating one; "
           "leave it blank for a new session.",
           "478346000020113001", (), None),
    # a repeating row (sheet/recurrence.py): expanded into one session per date before the
    # cross-row checks; none of these is sent to the API
    Column("repeat", "rule", False, "Optional: repeat the session. Blank for one session; "
           "daily, weekdays, weekly, every N weeks, days such as Tue, Thu, or every 2 weeks on "
           "Mon, Wed. The row's date is the first session; give until or count too.",
           "Tue, Thu", ("repeats", "recurrence", "recurring"), None),
    Column("until", "date", False, "With repeat: the last possible date of a session "
           "(inclusive). Give until or count, not both.", "31-03-2027",
           ("repeatuntil", "lastdate"), None),
    Column("count", "count", False, "With repeat: how many sessions (1 to 370), instead of "
           "until.", "10", ("repeatcount", "occurrences"), None,
           attr="repeat_count"),  # a named tuple's field "count" would hide tuple.count
    Column("skip", "dates", False, "With repeat: dates without a session, separated by ; or , "
           "(a date, or a range such as 06-04-2027..10-04-2027). The Holidays sheet is skipped "
           "too.", "06-04-2027..10-04-2027; 03-05-2027", ("skipdates", "except", "exceptions"),
           None),
)

#: Columns a results workbook adds after the input columns. A contract: scripts read these names.
#: ``sessionId`` is also an input column: a results workbook given back as input names its sessions.
RESULT_COLUMNS: tuple[str, ...] = ("status", "sessionId", "message", "attempts", "changes")
#: The results workbook's column after ``row``: which session of a repeating row a line is. Read
#: back as input it is not a column of the sheet, but it tells validation that the line is that
#: one session (`schema`), not a rule to expand again.
OCCURRENCE = "occurrence"
#: Headers a results workbook carries that are not input (the rest of `RESULT_COLUMNS`, its
#: ``row`` and `OCCURRENCE`): read back as input they are ignored quietly, not reported as
#: unknown columns.
OUTPUT_HEADERS: frozenset[str] = frozenset(
    {"row", OCCURRENCE, *(name.lower() for name in RESULT_COLUMNS if name != "sessionId")})

_STRIP = re.compile(r"[\s_\-]+")


def normalise(header: str) -> str:
    """The matching form of a header: lower case without spaces, underscores or hyphens."""
    return _STRIP.sub("", str(header)).lower()


@dataclass(frozen=True, eq=False)
class Spec:
    """A column spec and every table derived from it (`derive` builds one; `SPEC` is today's).

    ``row_type`` is the `SessionRow` named tuple: ``row`` (the spreadsheet row), then one field per
    column, in spec order, named by `Column.attr`, then the `DERIVED` fields (``occurrence``); the
    fields after the last required column default to None. ``path_columns`` are the IDs in the
    API's URL, in URL order (course, batch, module); ``api_columns`` feed ``sessionData``, in the
    order it is sent.
    """

    columns: tuple[Column, ...]
    by_name: Mapping[str, Column]
    names: tuple[str, ...]
    required: tuple[str, ...]
    path_columns: tuple[str, ...]
    api_columns: tuple[Column, ...]
    row_type: type[tuple[Any, ...]]
    #: normalised header or alias -> canonical name
    lookup: Mapping[str, str] = field(repr=False)

    def position(self, name: str) -> int:
        """Where a column's value sits in a `row_type` tuple (``row`` is at 0)."""
        return 1 + self.names.index(name)

    def __reduce__(self) -> str | tuple[Any, ...]:
        """Today's spec pickles as a reference to `SPEC` (a `Validation` crosses a process
        boundary when a sheet is read in a capped child, and its rows must stay instances of
        the one `SessionRow`); another spec is derived again from its columns."""
        if self is SPEC:
            return "SPEC"
        return (derive, (self.columns,))


#: Fields of `SessionRow` after the columns that no column gives: ``occurrence``, the session's
#: number within its repeating row (from 1), None for a row that does not repeat.
DERIVED: tuple[str, ...] = ("occurrence",)

#: collections.namedtuple as a plain function: mypy special-cases direct calls, which must name
#: their fields literally, and these come from the spec.
_namedtuple: Callable[..., type[tuple[Any, ...]]] = collections.namedtuple


def derive(columns: Sequence[Column]) -> Spec:
    """Every table the other modules read, built from a column spec."""
    cols = tuple(columns)
    names = tuple(c.name for c in cols)
    if len(set(names)) != len(names) or len({c.attr for c in cols}) != len(cols):
        raise ValueError("column names and attrs must be unique")
    lookup: dict[str, str] = {}
    for c in cols:
        lookup[normalise(c.name)] = c.name
    for c in cols:
        for a in c.aliases:
            lookup.setdefault(normalise(a), c.name)
    last_required = max((i for i, c in enumerate(cols) if c.required), default=-1)
    if any(c.attr in DERIVED for c in cols):
        raise ValueError(f"no column may be named like a derived field ({', '.join(DERIVED)})")
    row_type = _namedtuple(
        "SessionRow", ["row", *(c.attr for c in cols), *DERIVED],
        defaults=[None] * (len(cols) - 1 - last_required + len(DERIVED)),
        module="bulkschedule.sheet.schema",
    )
    row_type.__doc__ = ("A valid session, parsed: exact-string IDs, real dates and times, type as "
                        '"0"/"1"; blank optional cells are None. A repeating row gives one per '
                        "date, with its row number and its occurrence (1, 2, ...).")
    return Spec(
        columns=cols,
        by_name=MappingProxyType({c.name: c for c in cols}),
        names=names,
        required=tuple(c.name for c in cols if c.required),
        path_columns=tuple(c.name for c in cols if c.option),
        api_columns=tuple(c for c in cols if c.api_field),
        row_type=row_type,
        lookup=MappingProxyType(lookup),
    )


SPEC: Spec = derive(COLUMNS)
# Today's tables under their own names, for callers that never swap the spec.
BY_NAME: Mapping[str, Column] = SPEC.by_name
NAMES: tuple[str, ...] = SPEC.names
#: Path IDs that --course/--batch/--module may supply instead of a column.
PATH_COLUMNS: tuple[str, ...] = SPEC.path_columns
REQUIRED: tuple[str, ...] = SPEC.required


def canonical(header: str, spec: Spec = SPEC) -> str | None:
    """The canonical column name a header means, or None."""
    return spec.lookup.get(normalise(header))


def suggest(header: str, spec: Spec = SPEC) -> str | None:
    """The closest canonical name to an unknown header ("trainerErecn" -> "trainerErecno")."""
    target = normalise(header)
    if not target:
        return None
    found = difflib.get_close_matches(target, list(spec.lookup), n=1, cutoff=0.6)
    return spec.lookup[found[0]] if found else None


@dataclass(slots=True)
class HeaderMap:
    """Where each canonical column sits in the sheet, and what did not match."""

    #: canonical name -> index of the sheet column
    index: dict[str, int] = field(default_factory=dict)
    #: (index, header as typed, suggestion or None) for headers that match no column
    unknown: list[tuple[int, str, str | None]] = field(default_factory=list)
    #: (index, header as typed, canonical name) for a second header meaning the same column
    duplicate: list[tuple[int, str, str]] = field(default_factory=list)


def map_headers(headers: Sequence[str | None], spec: Spec = SPEC) -> HeaderMap:
    """Match each header of a sheet to a column of ``spec``."""
    hm = HeaderMap()
    for i, h in enumerate(headers):
        text = "" if h is None else str(h).strip()
        if not text:
            continue
        name = canonical(text, spec)
        if name is None and normalise(text) in OUTPUT_HEADERS:
            continue  # a results workbook's own column, given back as input
        if name is None:
            hm.unknown.append((i, text, suggest(text, spec)))
        elif name in hm.index:
            hm.duplicate.append((i, text, name))
        else:
            hm.index[name] = i
    return hm

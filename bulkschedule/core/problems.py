"""The one record type every stage reports in.

Validation finds `Problem`s, sending produces `Outcome`s; every report (console table, ``--json``,
annotated sheet, results workbook, web page) is a rendering of these lists, so the stages never
invent report formats of their own.

Every problem carries a stable ``code`` from `CODES` (``date.impossible``): scripts, tests and the
upload page match on it, never on the message, which is prose for people and may be reworded.
docs/validation-rules.md lists every code; tests/test_problem_codes.py keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"


#: Every problem code, with what it means. A code is ``area.what``, lower case; once released it
#: never changes meaning (add a new one instead).
CODES: dict[str, str] = {
    # the file's columns
    "column.missing": "A required column is missing, so no row of the sheet can be sent.",
    "header.unknown": "A header matches no column; the column is ignored.",
    "header.duplicate": "A second header means the same column; only the first is read.",
    "option.not_an_id": "The value of --course, --batch or --module is not an ID.",
    # any cell
    "cell.required": "A required cell is blank.",
    # IDs
    "id.not_digits": "An ID holds something other than digits.",
    "id.not_whole": "An ID cell holds a negative or fractional number.",
    "id.rounded_by_excel": "An ID was stored as a number too large to be exact: Excel has "
                           "already changed its last digits.",
    "id.scientific": "An ID was written in scientific notation (4.78346E+17): its last digits "
                     "are lost.",
    "id.cell_type": "An ID cell holds a date, a time or another value that is not text or a "
                    "number.",
    # session type
    "type.unknown": "The session type is not Classroom or E-learning (0 or 1).",
    # dates
    "date.impossible": "The date does not exist (31-02-2027).",
    "date.bad_month": "The month is not 1 to 12 in the order the date is read.",
    "date.bad_month_name": "A word in the date is not a month name.",
    "date.year_digits": "The year does not have 4 digits (04-01-27).",
    "date.plain_number": "A plain number where a date belongs.",
    "date.is_time": "A time or duration where a date belongs.",
    "date.unreadable": "The cell cannot be read as a date.",
    "date.in_past": "The session date is before today.",
    "lock.after_date": "lockUntil is after the session date.",
    # times
    "time.mixed_clock": "A time mixes the 24-hour and 12-hour clocks (13:00 PM).",
    "time.hour_zero": "Hour 0 with AM or PM (0:30 AM).",
    "time.bad_hour": "The hour does not exist (25:00).",
    "time.bad_minutes": "The minutes are not 00 to 59.",
    "time.bad_seconds": "The seconds are not 00 to 59.",
    "time.bare_hour": "An hour without minutes or AM/PM (10).",
    "time.midnight_end": "The time rounds to midnight at the end of the day (24:00).",
    "time.duration": "A duration of a day or more, or a negative one, where a time belongs.",
    "time.plain_number": "A number of 1 or more where a time belongs.",
    "time.is_date": "A date where a time belongs.",
    "time.unreadable": "The cell cannot be read as a time.",
    "time.end_before_start": "The end time is not after the start time.",
    # across rows
    "row.duplicate": "The same session (module, name, date and start time) as an earlier row.",
    "key.duplicate": "The same key as an earlier row.",
    "sessionid.duplicate": "The same sessionId as an earlier row: two rows cannot both be one "
                           "Zoho session.",
    "trainer.double_booked": "The trainer is booked for overlapping times on the same date.",
    "room.double_booked": "The room is booked for overlapping times on the same date.",
    # names instead of IDs (bulkschedule.org)
    "name.ambiguous": "A name in an ID column names more than one course, batch, module, "
                      "trainer or room; the message lists them with their IDs.",
    "name.unknown": "A name in an ID column names nothing in the org; up to three close names "
                    "are offered.",
    "name.needs_online": "A name in an ID column cannot be resolved offline: nothing of that "
                         "kind is cached (run with --online or `org refresh`).",
    # against the org (validate --online, run)
    "org.course_unknown": "The course does not exist in the org.",
    "org.batch_not_in_course": "The batch is not a batch of that course.",
    "org.module_not_in_batch": "The module is not a module of that batch.",
    "org.date_outside_batch": "The date lies outside the batch's start and end dates (Zoho "
                              "would refuse it: BATCH_DATE_AND_SESSION_DATE_MISMATCH).",
    "org.trainer_unknown": "The trainer is not an active LMS trainer.",
    "org.room_unknown": "The room does not exist in the org.",
    "org.trainer_busy": "The trainer already teaches a session Zoho holds at an overlapping "
                        "time.",
    "org.room_busy": "The room is already booked by a session Zoho holds at an overlapping time.",
    "org.course_unpublished": "The course is not published (a warning, once per course).",
    # recurring rows (repeat, until, count, skip)
    "repeat.unreadable": "The repeat rule cannot be read; the message lists the forms.",
    "repeat.no_end": "A repeating row needs exactly one of until and count.",
    "repeat.first_date_off_rule": "The row's date (the first session) is not on a day the "
                                  "rule names.",
    "repeat.too_many": "The row would make more than 370 sessions.",
    "until.before_date": "until is before the row's date.",
    "count.out_of_range": "count is not a whole number from 1 to 370.",
    "skip.unreadable": "A skip date or range (or a Holidays line) cannot be read.",
    "repeat.no_sessions": "Every date the repeating row's rule gives is skipped: it makes no "
                          "session.",
    "repeat.missing": "until, count or skip is filled in on a row whose repeat is blank: it is "
                      "ignored (a warning).",
    # what can be sent
    "row.request_too_large": "The row's request would be longer than servers accept in the "
                             "configured payload style (a very long name or description).",
    # should not happen
    "check.internal": "A check of the validator itself failed (please report it).",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with the input, located where the admin will look for it.

    ``row`` is the spreadsheet row the admin sees (header is row 1, first data row is 2) or
    ``None`` for a file-level problem; ``column`` is the canonical column name (or the header as
    typed when it is unknown); ``value`` is the offending cell as text; ``code`` says which kind
    of problem it is (a key of `CODES`).
    """

    row: int | None
    column: str | None
    value: str | None
    severity: Severity
    message: str
    code: str

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form. Built by hand: `dataclasses.asdict` deep-copies every field, which
        was most of the time ``validate --json`` spent on a sheet with 100,000 problems."""
        return {"row": self.row, "column": self.column, "value": self.value,
                "severity": self.severity, "message": self.message, "code": self.code}


def error(row: int | None, column: str | None, value: object, message: str, *,
          code: str) -> Problem:
    return Problem(row, column, _text(value), ERROR, message, code)


def warning(row: int | None, column: str | None, value: object, message: str, *,
            code: str) -> Problem:
    return Problem(row, column, _text(value), WARNING, message, code)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def sort_key(p: Problem) -> tuple[int, int, str]:
    """File-level problems first, then by row, errors before warnings."""
    return (-1 if p.row is None else p.row, 0 if p.is_error else 1, p.column or "")


class Status(StrEnum):
    """What happened to a row. The values are a contract (results workbook, JSON, exit codes)."""

    CREATED = "created"  # created by this run
    EXISTS = "exists"  # created earlier (journal or reconciliation), not sent again
    CHANGED = "changed"  # identity created earlier with different details; not sent
    INVALID = "invalid"  # validation errors; never sent
    FAILED = "failed"  # the server refused it, or retries ran out
    UNKNOWN = "unknown"  # may have been created; could not be confirmed either way
    PENDING = "pending"  # not reached (run interrupted or stopped)
    WOULD_CREATE = "would-create"  # dry run: valid and would be sent
    UPDATED = "updated"  # its session differed from the row and was updated (run --update)
    WOULD_UPDATE = "would-update"  # dry run: its session differs from the row


#: Statuses that count as done for the exit code: the session exists in Zoho as the row says.
DONE_STATUSES = frozenset({Status.CREATED, Status.EXISTS, Status.UPDATED})
#: The same for a dry run: what the run would leave done.
PLANNED_STATUSES = frozenset({Status.WOULD_CREATE, Status.WOULD_UPDATE, Status.EXISTS})

#: What differs between a row and its session: field -> (what Zoho holds, what the row says).
Changes = Mapping[str, tuple[str, str]]


def changes_text(changes: Changes | None) -> str:
    """``startTime: 10:00 AM → 11:00 AM; roomId: (none) → 478346000010125093``."""
    return "; ".join(f"{name}: {old or '(none)'} → {new or '(none)'}"
                     for name, (old, new) in (changes or {}).items())


#: Which session of a sheet a line of a run is: (spreadsheet row, occurrence), the occurrence
#: 0 for a row that does not repeat. Every outcome, plan step and report of a run is keyed by
#: it: the sessions of one repeating row share their row.
Line = tuple[int, int]


def line_of(row: int, occurrence: int | None) -> Line:
    """The `Line` of a row's session (``occurrence`` None for a row that does not repeat)."""
    return (row, occurrence or 0)


def where(row: int, date: str | None = None) -> str:
    """How the operator is told which session a line is: ``row 5``, or for a session of a
    repeating row ``row 5 (12-01-2027)``."""
    return f"row {row}" if date is None else f"row {row} ({date})"


@dataclass(slots=True)
class Outcome:
    """The fate of one session after a run (or a dry run): of an input row, or of one session
    of a repeating row (``occurrence``, its number from 1, and ``date``, its date as
    dd-mm-yyyy; both None for a row that does not repeat). ``changes``: for a session that
    differs from its row (``changed``, ``updated``, ``would-update``), what differs."""

    row: int
    status: Status
    session_id: str | None = None
    message: str = ""
    attempts: int = 0
    changes: Changes | None = None
    occurrence: int | None = None
    date: str | None = None

    @property
    def line(self) -> Line:
        return line_of(self.row, self.occurrence)

    @property
    def where(self) -> str:
        """``row 5``, or ``row 5 (12-01-2027)`` for a session of a repeating row."""
        return where(self.row, self.date if self.occurrence is not None else None)

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "occurrence": self.occurrence, "date": self.date,
                "status": str(self.status), "session_id": self.session_id,
                "message": self.message, "attempts": self.attempts,
                "changes": None if self.changes is None
                else {k: list(v) for k, v in self.changes.items()}}

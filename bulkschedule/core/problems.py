"""The one record type every stage reports in.

Validation finds `Problem`s, sending produces `Outcome`s; every report (console table, ``--json``,
annotated sheet, results workbook, web page) is a rendering of these lists, so the stages never
invent report formats of their own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with the input, located where the admin will look for it.

    ``row`` is the spreadsheet row the admin sees (header is row 1, first data row is 2) or
    ``None`` for a file-level problem; ``column`` is the canonical column name (or the header as
    typed when it is unknown); ``value`` is the offending cell as text.
    """

    row: int | None
    column: str | None
    value: str | None
    severity: Severity
    message: str

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def error(row: int | None, column: str | None, value: object, message: str) -> Problem:
    return Problem(row, column, _text(value), ERROR, message)


def warning(row: int | None, column: str | None, value: object, message: str) -> Problem:
    return Problem(row, column, _text(value), WARNING, message)


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


#: Statuses that count as done for the exit code: the session exists in Zoho.
DONE_STATUSES = frozenset({Status.CREATED, Status.EXISTS})


@dataclass(slots=True)
class Outcome:
    """The fate of one input row after a run (or a dry run)."""

    row: int
    status: Status
    session_id: str | None = None
    message: str = ""
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = str(self.status)
        return d

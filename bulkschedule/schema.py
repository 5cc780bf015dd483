"""Validate a `RawTable`: a pandera schema over normalised columns plus cross-row checks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bulkschedule.columns import HeaderMap
from bulkschedule.problems import Problem
from bulkschedule.reader import RawTable


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A valid row, parsed: exact-string IDs, real dates and times, type as "0"/"1"."""

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


@dataclass(slots=True)
class Validation:
    """Everything validation learnt about one sheet."""

    table: RawTable
    headers: HeaderMap
    sessions: list[SessionRow]  # rows with no error, in input order
    problems: list[Problem]  # sorted with problems.sort_key
    fatal: bool = False  # a required column is missing: nothing can be sent
    error_rows: set[int] = field(default_factory=set)  # spreadsheet rows with at least one error

    @property
    def n_rows(self) -> int:
        return len(self.table.rows)

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
            "valid": len(self.sessions),
            "errors": self.errors,
            "warnings": self.warnings,
            "problems": [p.to_dict() for p in self.problems],
        }


def validate(
    table: RawTable,
    *,
    course: str | None = None,
    batch: str | None = None,
    module: str | None = None,
    month_first: bool = False,
    today: dt.date | None = None,
) -> Validation:
    raise NotImplementedError

"""The online checks: each valid row against what the org holds. Pure.

Every check here stands for a failure that would otherwise cost a call from the 30-a-minute budget
and fail the row after the run has started (`BATCH_DATE_AND_SESSION_DATE_MISMATCH`, an unknown
trainer or room), or for a session Zoho already holds that the journal does not know.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bulkschedule.core.problems import Line, Problem, error, line_of, warning
from bulkschedule.org.resolve import normalise_name
from bulkschedule.sheet.parse import format_time
from bulkschedule.zoho.records import Batch, Course, ListedSession, Module, Room, Trainer

PUBLISHED = frozenset({"published", "publish", "1"})


class Row(Protocol):
    """What the checks read of a valid row (`bulkschedule.sheet.schema.SessionRow` has it)."""

    @property
    def row(self) -> int: ...
    @property
    def occurrence(self) -> int | None: ...  # n of a repeating row's session; None: a row
    @property
    def course_id(self) -> str: ...
    @property
    def batch_id(self) -> str: ...
    @property
    def module_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def trainer_erecno(self) -> str: ...
    @property
    def room_id(self) -> str | None: ...
    @property
    def date(self) -> dt.date: ...
    @property
    def start(self) -> dt.time: ...
    @property
    def end(self) -> dt.time: ...


@dataclass
class OrgView:
    """What was read of the org; a list that could not be read is None and its check is skipped."""

    courses: dict[str, Course] | None = None
    batches: dict[str, dict[str, Batch]] = field(default_factory=dict)  #: course → id → batch
    modules: dict[str, dict[str, Module]] = field(default_factory=dict)  #: batch → id → module
    trainers: dict[str, Trainer] | None = None
    rooms: dict[str, Room] | None = None
    sessions: dict[str, list[ListedSession]] = field(default_factory=dict)  #: module → listed


@dataclass(frozen=True, slots=True)
class Found:
    """A row (or one session of a repeating row) that matches a session Zoho already holds
    (module, name, date and start time)."""

    line: Line
    session: ListedSession


def _minutes(t: dt.time | None) -> int | None:
    return None if t is None else t.hour * 60 + t.minute


def matches(row: Row, session: ListedSession) -> bool:
    """The duplicate rule the sheet itself uses: same module, name, date and start time."""
    return (
        (session.module_id is None or session.module_id == row.module_id)
        and session.date == row.date
        and _minutes(session.start) == _minutes(row.start)
        and normalise_name(session.name) == normalise_name(row.name)
    )


def _held(row: Row, org: OrgView) -> Found | None:
    """The session Zoho already holds for ``row``, if any."""
    for session in org.sessions.get(row.module_id, ()):
        if matches(row, session):
            return Found(line_of(row.row, row.occurrence), session)
    return None


def existing(rows: Iterable[Row], org: OrgView) -> dict[Line, Found]:
    """The sheet's sessions Zoho already holds, by `Line` (row, and occurrence or 0)."""
    out: dict[Line, Found] = {}
    for row in rows:
        found = _held(row, org)
        if found is not None:
            out[found.line] = found
    return out


def check(rows: Sequence[Row], org: OrgView, *, sheet_sessions: Collection[str] = ()
          ) -> list[Problem]:
    """Every online problem of ``rows``, in row order: structure, dates, people and places,
    bookings against what Zoho holds, unpublished courses (a warning, once per course).

    ``sheet_sessions``: sessions the sheet's rows are (they may move): their bookings are the
    rows', which the sheet's own double-booking check already compares. The sessions of a
    repeating row are checked one by one (each against the session Zoho holds for it); a
    problem they share (an unknown trainer) is reported once for the row."""
    problems: list[Problem] = []
    warned: set[str] = set()
    busy = _bookings(org, skip=sheet_sessions)
    seen: set[Problem] = set()
    for row in rows:
        for problem in (*_structure(row, org), *_people_and_places(row, org),
                        *_double_booked(row, busy, _held(row, org))):
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
        course = (org.courses or {}).get(row.course_id)
        if course is not None and course.id not in warned and course.state is not None \
                and course.state.lower() not in PUBLISHED:
            warned.add(course.id)
            problems.append(warning(
                row.row, "courseId", row.course_id,
                f'course "{course.name}" is {course.state}, not published: learners will not '
                "see its sessions until it is", code="org.course_unpublished"))
    return problems


def _structure(row: Row, org: OrgView) -> list[Problem]:
    if org.courses is None:
        return []
    course = org.courses.get(row.course_id)
    if course is None:
        return [error(row.row, "courseId", row.course_id,
                      f"there is no course {row.course_id} in this org", code="org.course_unknown")]
    batches = org.batches.get(row.course_id)
    if batches is None:
        return []
    batch = batches.get(row.batch_id)
    if batch is None:
        return [error(row.row, "batchId", row.batch_id,
                      f'batch {row.batch_id} is not a batch of course "{course.name}"',
                      code="org.batch_not_in_course")]
    out: list[Problem] = []
    modules = org.modules.get(row.batch_id)
    if modules is not None and row.module_id not in modules:
        out.append(error(row.row, "moduleId", row.module_id,
                         f'module {row.module_id} is not a module of batch "{batch.name}" of '
                         f'course "{course.name}"', code="org.module_not_in_batch"))
    if batch.start and batch.end and not batch.start <= row.date <= batch.end:
        out.append(error(row.row, "date", f"{row.date:%d-%m-%Y}",
                         f'{row.date:%d-%m-%Y} is outside batch "{batch.name}", which runs from '
                         f"{batch.start:%d-%m-%Y} to {batch.end:%d-%m-%Y}",
                         code="org.date_outside_batch"))
    return out


def _people_and_places(row: Row, org: OrgView) -> list[Problem]:
    out: list[Problem] = []
    if org.trainers is not None and row.trainer_erecno not in org.trainers:
        out.append(error(row.row, "trainerErecno", row.trainer_erecno,
                         f"{row.trainer_erecno} is not an active LMS trainer in this org (add the "
                         "employee as a trainer in Zoho People first)", code="org.trainer_unknown"))
    if org.rooms is not None and row.room_id and row.room_id not in org.rooms:
        out.append(error(row.row, "roomId", row.room_id,
                         f"there is no room {row.room_id} in this org", code="org.room_unknown"))
    return out


Bookings = Mapping[tuple[str, str, dt.date], list[ListedSession]]


def _bookings(org: OrgView, *, skip: Collection[str] = ()
              ) -> dict[tuple[str, str, dt.date], list[ListedSession]]:
    """Held sessions by (what, who, date): what is "trainer" or "room"; ``skip``'s left out."""
    out: dict[tuple[str, str, dt.date], list[ListedSession]] = defaultdict(list)
    for listed in org.sessions.values():
        for s in listed:
            if s.id in skip:
                continue
            if s.trainer_erecno:
                out["trainer", s.trainer_erecno, s.date].append(s)
            if s.room_id:
                out["room", s.room_id, s.date].append(s)
    return out


def _double_booked(row: Row, busy: Bookings, itself: Found | None) -> list[Problem]:
    out: list[Problem] = []
    start, end = _minutes(row.start), _minutes(row.end)
    assert start is not None and end is not None
    for what, column, who, code in (
        ("trainer", "trainerErecno", row.trainer_erecno, "org.trainer_busy"),
        ("room", "roomId", row.room_id, "org.room_busy"),
    ):
        if not who:
            continue
        clashes = [
            s for s in busy.get((what, who, row.date), ())
            if (itself is None or s.id != itself.session.id)
            and s.end is not None
            and (_minutes(s.start) or 0) < end and start < (_minutes(s.end) or 0)
        ]
        if clashes:
            s = clashes[0]
            more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
            assert s.end is not None
            out.append(error(
                row.row, column, who,
                f'{what.capitalize()} {who} already teaches "{s.name}" {format_time(s.start)}–'
                f"{format_time(s.end)} on {row.date:%d-%m-%Y} in Zoho (session {s.id}){more}"
                if what == "trainer" else
                f'Room {who} is already booked for "{s.name}" {format_time(s.start)}–'
                f"{format_time(s.end)} on {row.date:%d-%m-%Y} in Zoho (session {s.id}){more}",
                code=code))
    return out

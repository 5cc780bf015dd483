"""Turn a `SessionRow` into the exact request the Create Session API expects. Pure.

Driven by the column spec: every column with an ``api_field`` goes into ``sessionData``, in spec
order, written by its kind's formatter; the path columns make the URL.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from bulkschedule.core.problems import Problem, error
from bulkschedule.core.request import MAX_REQUEST_LINE, Request, identity_fields, too_large
from bulkschedule.sheet.columns import SPEC, Kind, Spec
from bulkschedule.sheet.parse import format_date, format_time
from bulkschedule.sheet.schema import SessionRow

#: `format_date` and `format_time`, each distinct value formatted once: a sheet has a few hundred
#: dates and times at most, and every request of a run stays in memory until its results are
#: written, so each holding its own copies of the same strings grew a run by ~180 bytes a row.
#: Bounded, so a long-lived process (the upload page) does not keep every date it ever saw.
_date_text = functools.lru_cache(maxsize=4096)(format_date)


@functools.lru_cache(maxsize=4096)
def _clock_text(hour: int, minute: int) -> str:
    return format_time(dt.time(hour, minute))


def _time_text(t: dt.time) -> str:
    """`format_time`, by hour and minute (all it shows: two times that compare equal across
    time zones may not show the same)."""
    return _clock_text(t.hour, t.minute)


#: How ``sessionData`` writes a value, by column kind; the other kinds are already the exact
#: strings the API takes (IDs, text, type as "0"/"1").
FORMATTERS: Mapping[Kind, Callable[[Any], str]] = {"date": _date_text, "time": _time_text}

#: (sessionData field, position in the row, formatter or None to send the value as it is)
_Field = tuple[str, int, Callable[[Any], str] | None]


class _Plan(NamedTuple):
    """How a spec's rows become requests; worked out once per spec."""

    fields: tuple[_Field, ...]  # sessionData's, in spec order
    by_field: Mapping[str, tuple[int, Callable[[Any], str] | None]]  # the same, by field
    path_ids: Callable[[tuple[Any, ...]], Any]  # a row's path IDs


@functools.cache
def _plan(spec: Spec) -> _Plan:
    fields = tuple((c.api_field, spec.position(c.name), FORMATTERS.get(c.kind))
                   for c in spec.api_columns if c.api_field)
    return _Plan(fields, {field: (at, fmt) for field, at, fmt in fields},
                 operator.itemgetter(*(spec.position(name) for name in spec.path_columns)))


class SessionData(Mapping[str, str]):
    """A row's ``sessionData``, read from its `SessionRow` when asked: the same mapping as the
    dict `build_request` makes to fingerprint it (its fields in spec order, blank ones left out,
    dates and times formatted), without keeping that dict. A run keeps every row's request and
    every validated row until its results are written: a dict a row beside the row it was made
    from was ~270 bytes a row. Whoever needs a dict (to encode it, to record it) makes one with
    ``dict()``, as the client and the journal do."""

    __slots__ = ("_cells", "_plan")

    def __init__(self, row: SessionRow, spec: Spec = SPEC) -> None:
        self._cells: tuple[Any, ...] = row  # by position, as the spec lays the row out
        self._plan = _plan(spec)

    def __getitem__(self, field: str) -> str:
        found = self._plan.by_field.get(field)
        if found is not None:
            at, fmt = found
            value = self._cells[at]
            if value:  # not None nor "": a date or time is never false
                return value if fmt is None else fmt(value)
        raise KeyError(field)

    def __iter__(self) -> Iterator[str]:
        cells = self._cells
        return (field for field, at, _ in self._plan.fields if cells[at])

    def __len__(self) -> int:
        cells = self._cells
        return sum(1 for _, at, _ in self._plan.fields if cells[at])

    def __repr__(self) -> str:
        return repr(dict(self))


def build_request(row: SessionRow, spec: Spec = SPEC) -> Request:
    """The request for one valid row; blank optional fields are left out, as the API expects.
    Its ``session_data`` is a `SessionData` of ``row``."""
    plan = _plan(spec)
    cells: tuple[Any, ...] = row  # by position, as the spec lays the row out
    data: dict[str, str] = {}
    for field, at, fmt in plan.fields:
        value = cells[at]
        if value:  # not None nor "": a date or time is never false
            data[field] = value if fmt is None else fmt(value)
    course_id, batch_id, module_id = plan.path_ids(cells)
    return Request(
        row=row.row,
        course_id=course_id,
        batch_id=batch_id,
        module_id=module_id,
        session_data=SessionData(row, spec),
        identity=identity(row),
        fingerprint=fingerprint(course_id, batch_id, module_id, data, spec),
        session_id=getattr(row, "session_id", None),
        occurrence=row.occurrence,
    )


def identity(row: SessionRow) -> str:
    """What makes a row "the same session" across re-runs.

    The admin's own ``key`` when given (so a session may be renamed or moved); otherwise the module,
    name, date and start time, which is also how the duplicate check defines the same session.
    Each session of a repeating row is a session of its own: the row's key and the session's date
    (``key:T1-SP@12-01-2027``), or its module, name (placeholders filled in), date and start, so
    that extending ``until`` later adds only the new dates.
    """
    if row.key:
        if row.occurrence is not None:
            return f"key:{row.key}@{_date_text(row.date)}"
        return f"key:{row.key}"
    return f"session:{row.module_id}|{row.name}|{_date_text(row.date)}|{_time_text(row.start)}"


def fingerprint(
    course_id: str,
    batch_id: str,
    module_id: str,
    session_data: Mapping[str, str],
    spec: Spec = SPEC,
) -> str:
    """sha256 of everything sent, in a canonical form: a re-run row with the same identity but a
    different fingerprint was changed in the sheet after its session was created."""
    course, batch, module = spec.path_columns
    document = {course: course_id, batch: batch_id, module: module_id,
                "sessionData": session_data if isinstance(session_data, dict)
                else dict(session_data)}
    canonical = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


__all__ = ["FORMATTERS", "Request", "SessionData", "build_request", "fingerprint", "identity",
           "identity_fields"]


#: Room a request needs besides its text fields (path, IDs, dates, times, JSON punctuation),
#: generously: rows whose text is short enough are not encoded just to measure them.
_FIXED_BYTES = 600
#: The most bytes one character of a text field can take in a query string (``\\uXXXX`` in the
#: JSON, then each of those six characters percent-encoded at worst).
_BYTES_PER_CHAR = 18


def oversized(rows: Iterable[SessionRow], style: str, spec: Spec = SPEC) -> list[Problem]:
    """An error for every row whose request could not be sent in ``style``: a 100,000-character
    name passes every cell check but no server takes an 8 KB request line."""
    problems = []
    text_columns = [c for c in spec.api_columns if c.kind == "text"]
    reported: set[int] = set()  # a repeating row's sessions: once for the row
    for row in rows:
        if row.row in reported:
            continue
        texts = [(c.name, getattr(row, c.attr) or "") for c in text_columns]
        if sum(len(t) for _, t in texts) * _BYTES_PER_CHAR + _FIXED_BYTES <= MAX_REQUEST_LINE:
            continue
        why = too_large(build_request(row, spec), style)
        if why is not None:
            column, longest = max(texts, key=lambda item: len(item[1]))
            reported.add(row.row)
            problems.append(error(row.row, column, f"{longest[:40]}… ({len(longest):,} "
                                  "characters)", f"This row cannot be sent: {why}",
                                  code="row.request_too_large"))
    return problems

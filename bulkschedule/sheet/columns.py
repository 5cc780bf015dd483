"""The column spec: the single source the schema, template, docs and reports read.

Headers match ignoring case, spaces, underscores and hyphens, so "Course ID", "course_id" and
"COURSEID" are all ``courseId``. A header that matches nothing is a warning with the closest name.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["id", "text", "type", "date", "time"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    required: bool
    description: str
    example: str
    aliases: tuple[str, ...] = ()
    #: The ``sessionData`` field this column feeds, or None for path IDs and ``key``.
    api_field: str | None = None


COLUMNS: tuple[Column, ...] = (
    Column("courseId", "id", True,
           "The course's 18-digit ID (from the course's URL in Zoho People). "
           "May be left out of the sheet and given once with --course.",
           "478346000019479103", ("course",)),
    Column("batchId", "id", True,
           "The batch's 18-digit ID within the course. May be given once with --batch.",
           "478346000019479115", ("batch",)),
    Column("moduleId", "id", True,
           "The module's 18-digit ID within the batch. May be given once with --module.",
           "478346000019479119", ("module",)),
    Column("name", "text", True, "The session's name, as learners will see it.",
           "Induction: health and safety", ("sessionname", "session", "title"), "name"),
    Column("trainerErecno", "id", True, "The trainer's employee record number (erecno), 18 digits.",
           "478346000008251001", ("trainer", "trainerid"), "trainerErecno"),
    Column("type", "type", True, "Classroom or E-learning (or 0 / 1).", "Classroom",
           ("sessiontype",), "type"),
    Column("date", "date", True,
           "The session date. A real date cell, or text such as 04-01-2027 "
           "(day first), 2027-01-04 or 4-Jan-2027.",
           "04-01-2027", ("sessiondate", "startdate"), "date"),
    Column("startTime", "time", True, "Start time: a time cell, or text such as 10:00 AM or 14:30.",
           "10:00 AM", ("start", "from"), "startTime"),
    Column("endTime", "time", True, "End time, after the start time.", "11:00 AM", ("end", "to"),
           "endTime"),
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
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
#: Path IDs that --course/--batch/--module may supply instead of a column.
PATH_COLUMNS: tuple[str, ...] = ("courseId", "batchId", "moduleId")
REQUIRED: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.required)

_STRIP = re.compile(r"[\s_\-]+")


def normalise(header: str) -> str:
    """The matching form of a header: lower case without spaces, underscores or hyphens."""
    return _STRIP.sub("", str(header)).lower()


_LOOKUP: dict[str, str] = {}
for _c in COLUMNS:
    _LOOKUP[normalise(_c.name)] = _c.name
    for _a in _c.aliases:
        _LOOKUP.setdefault(normalise(_a), _c.name)


def canonical(header: str) -> str | None:
    """The canonical column name a header means, or None."""
    return _LOOKUP.get(normalise(header))


def suggest(header: str) -> str | None:
    """The closest canonical name to an unknown header ("trainerErecn" -> "trainerErecno")."""
    target = normalise(header)
    if not target:
        return None
    found = difflib.get_close_matches(target, list(_LOOKUP), n=1, cutoff=0.6)
    return _LOOKUP[found[0]] if found else None


@dataclass(slots=True)
class HeaderMap:
    """Where each canonical column sits in the sheet, and what did not match."""

    #: canonical name -> index of the sheet column
    index: dict[str, int] = field(default_factory=dict)
    #: (index, header as typed, suggestion or None) for headers that match no column
    unknown: list[tuple[int, str, str | None]] = field(default_factory=list)
    #: (index, header as typed, canonical name) for a second header meaning the same column
    duplicate: list[tuple[int, str, str]] = field(default_factory=list)


def map_headers(headers: list[str]) -> HeaderMap:
    hm = HeaderMap()
    for i, h in enumerate(headers):
        text = "" if h is None else str(h).strip()
        if not text:
            continue
        name = canonical(text)
        if name is None:
            hm.unknown.append((i, text, suggest(text)))
        elif name in hm.index:
            hm.duplicate.append((i, text, name))
        else:
            hm.index[name] = i
    return hm

"""Typed records of the organisation Zoho holds, read from listing items of any known shape.

The item fields of the LMS listings are not published, so each reader tries every plausible key
(listed once, below) and refuses a shape it cannot read with :class:`UnreadableReply`, naming the
endpoint, what is missing and the fields it saw, rather than guessing: a silently empty name or
date would turn into wrong "unknown name" or "outside the batch" verdicts later. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any, TypeVar

from bulkschedule.zoho.classify import UnreadableReply
from bulkschedule.zoho.matching import (
    SESSION_DATE_KEYS,
    SESSION_END_KEYS,
    SESSION_ID_KEYS,
    SESSION_NAME_KEYS,
    SESSION_START_KEYS,
    as_text,
    clean_name,
    first,
    first_key,
    minutes,
    one_date,
    split_datetime,
)

# --------------------------------------------------------------------------------------------
# where each field may sit (most likely first)

COURSE_ID_KEYS = ("courseId", "id")
BATCH_ID_KEYS = ("batchId", "id")
MODULE_ID_KEYS = ("moduleId", "id")
ROOM_ID_KEYS = ("roomId", "id")
ERECNO_KEYS = ("erecno", "trainerErecno", "employeeErecno", "erecNo", "id")
COURSE_NAME_KEYS = ("courseName", "name", "displayName", "title")
BATCH_NAME_KEYS = ("batchName", "name", "displayName")
MODULE_NAME_KEYS = ("moduleName", "name", "displayName")
ROOM_NAME_KEYS = ("roomName", "name", "displayName")
TRAINER_NAME_KEYS = ("trainerName", "employeeName", "name", "displayName", "fullName")
#: (first, last) name pairs, used when no whole-name field is there
TRAINER_NAME_PARTS = (("FirstName", "LastName"), ("firstName", "lastName"))
EMAIL_KEYS = ("email", "emailId", "EmailID", "emailID", "Email")
COURSE_STATE_KEYS = ("state", "courseState", "publishStatus", "status")
BATCH_STATUS_KEYS = ("publishStatus", "status", "batchStatus", "state")
#: display strings first: they are calendar dates, while epoch milliseconds need a time zone
BATCH_START_KEYS = ("startDateAsDisplayString", "startDate", "batchStartDate", "fromDate")
BATCH_END_KEYS = ("endDateAsDisplayString", "endDate", "batchEndDate", "toDate")
ROOM_LOCATION_KEYS = ("location", "locationName")
SESSION_TRAINER_KEYS = ("trainerErecno", "trainerId", "erecno", "trainer")
SESSION_ROOM_KEYS = ("roomId", "room")
SESSION_MODULE_KEYS = ("moduleId", "module")
SESSION_TYPE_KEYS = ("type", "sessionType")
SESSION_DESCRIPTION_KEYS = ("description", "sessionDescription")


# --------------------------------------------------------------------------------------------
# the records


@dataclass(frozen=True, slots=True)
class Course:
    id: str
    name: str
    state: str | None  # drafted / published / disabled, as Zoho spells it


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    course_id: str
    name: str
    start: date | None
    end: date | None
    status: str | None


@dataclass(frozen=True, slots=True)
class Module:
    id: str
    batch_id: str
    name: str
    course_id: str


@dataclass(frozen=True, slots=True)
class Trainer:
    erecno: str
    name: str  # "" when Zoho lists only an email
    email: str | None


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    name: str
    location: str | None


@dataclass(frozen=True, slots=True)
class ListedSession:
    """A session Zoho already holds. ``raw`` is the item as listed (not compared or hashed)."""

    id: str
    name: str
    date: date
    start: time
    end: time | None
    trainer_erecno: str | None
    room_id: str | None
    module_id: str | None  # from the item; the caller knows it for a module listing
    type: str | None
    description: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def as_session_data(self) -> dict[str, str]:
        """The fields Zoho holds, in the create call's ``sessionData`` names and formats
        (dd-MM-yyyy, zero-padded hh:mm AM, as sheet.parse writes them), to compare with a row."""
        out = {
            "name": self.name,
            "date": self.date.strftime("%d-%m-%Y"),
            "startTime": _clock(self.start),
        }
        optional = {
            "endTime": _clock(self.end) if self.end is not None else None,
            "trainerErecno": self.trainer_erecno,
            "roomId": self.room_id,
            "type": self.type,
            "description": self.description,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


def _clock(t: time) -> str:
    hour12 = t.hour % 12 or 12
    return f"{hour12:02d}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"


# --------------------------------------------------------------------------------------------
# reading items

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Source:
    """Which listing the items came from, for messages: "the room listing (GET /api/v1/rooms)"."""

    what: str
    endpoint: str


class _Missing(Exception):
    """One item lacks a field; turned into UnreadableReply with the item's keys."""

    def __init__(
        self, field_name: str, keys: Sequence[str], value: Any = None, kind: str = "date"
    ) -> None:
        super().__init__(field_name)
        self.field_name, self.keys, self.value, self.kind = field_name, keys, value, kind


def _required(item: Mapping[str, Any], field_name: str, keys: Sequence[str]) -> str:
    value = as_text(first(item, *keys))
    if value is None:
        raise _Missing(field_name, keys)
    return value


def _name(item: Mapping[str, Any], field_name: str, keys: Sequence[str]) -> str:
    value = clean_name(first(item, *keys))
    if value is None:
        raise _Missing(field_name, keys)
    return value


def _date(item: Mapping[str, Any], field_name: str, keys: Sequence[str]) -> date | None:
    """A date, None when no key holds one; a value it cannot read as a date is refused."""
    raw = first(item, *keys)
    if raw is None:
        return None
    found = one_date(raw)
    if found is None:
        raise _Missing(field_name, (first_key(item, *keys) or keys[0],), raw)
    return found


def _nested_id(item: Mapping[str, Any], keys: Sequence[str], inner: Sequence[str]) -> str | None:
    """An ID given flat (``roomId``) or as an object (``"room": {"roomId": .., "name": ..}``)."""
    value = first(item, *keys)
    if isinstance(value, dict):
        value = first(value, *inner, "id")
    return as_text(value)


def _read_all(
    items: Sequence[Mapping[str, Any]], read: Callable[[Mapping[str, Any]], R], source: Source
) -> list[R]:
    out = []
    for item in items:
        try:
            out.append(read(item))
        except _Missing as missing:
            raise _unreadable(source, item, missing) from None  # _Missing is only our signal
    return out


def _unreadable(source: Source, item: Mapping[str, Any], missing: _Missing) -> UnreadableReply:
    seen = tuple(sorted(item)[:16])
    if missing.value is None:
        problem = f"an item has no {missing.field_name} (looked for {', '.join(missing.keys)})"
    else:
        shown = str(missing.value)[:40]
        problem = (
            f"an item's {missing.field_name} {shown!r} ({missing.keys[0]}) is not a "
            f"{missing.kind}"
        )
    return UnreadableReply(
        f"cannot read {source.what}: {problem}; fields seen: {', '.join(seen) or 'none'}",
        endpoint=source.endpoint,
        seen=seen,
    )


def read_courses(items: Sequence[Mapping[str, Any]], source: Source) -> list[Course]:
    def read(item: Mapping[str, Any]) -> Course:
        return Course(
            id=_required(item, "course ID", COURSE_ID_KEYS),
            name=_name(item, "name", COURSE_NAME_KEYS),
            state=as_text(first(item, *COURSE_STATE_KEYS)),
        )

    return _read_all(items, read, source)


def read_batches(
    items: Sequence[Mapping[str, Any]], source: Source, *, course_id: str
) -> list[Batch]:
    """Batches with their dates. A listing where no batch has any date is refused: the
    "date within the batch" check must not quietly disappear because the field moved."""

    def read(item: Mapping[str, Any]) -> Batch:
        return Batch(
            id=_required(item, "batch ID", BATCH_ID_KEYS),
            course_id=course_id,
            name=_name(item, "name", BATCH_NAME_KEYS),
            start=_date(item, "start date", BATCH_START_KEYS),
            end=_date(item, "end date", BATCH_END_KEYS),
            status=as_text(first(item, *BATCH_STATUS_KEYS)),
        )

    out = _read_all(items, read, source)
    if out and all(b.start is None and b.end is None for b in out):
        keys = BATCH_START_KEYS + BATCH_END_KEYS
        raise _unreadable(source, items[0], _Missing("start or end date", keys))
    return out


def read_modules(
    items: Sequence[Mapping[str, Any]], source: Source, *, course_id: str, batch_id: str
) -> list[Module]:
    def read(item: Mapping[str, Any]) -> Module:
        return Module(
            id=_required(item, "module ID", MODULE_ID_KEYS),
            batch_id=batch_id,
            name=_name(item, "name", MODULE_NAME_KEYS),
            course_id=course_id,
        )

    return _read_all(items, read, source)


def trainer_name(item: Mapping[str, Any]) -> str | None:
    """A trainer's whole name, or first and last name joined."""
    whole = clean_name(first(item, *TRAINER_NAME_KEYS))
    if whole is not None:
        return whole
    for first_part, last_part in TRAINER_NAME_PARTS:
        parts = [clean_name(item.get(first_part)), clean_name(item.get(last_part))]
        joined = " ".join(p for p in parts if p)
        if joined:
            return joined
    return None


def read_trainers(items: Sequence[Mapping[str, Any]], source: Source) -> list[Trainer]:
    """Trainers need an erecno and a name or an email (what an admin can type instead)."""

    def read(item: Mapping[str, Any]) -> Trainer:
        erecno = _required(item, "erecno", ERECNO_KEYS)
        name = trainer_name(item)
        email = as_text(first(item, *EMAIL_KEYS))
        if name is None and email is None:
            parts = tuple(k for pair in TRAINER_NAME_PARTS for k in pair)
            raise _Missing("name or email", TRAINER_NAME_KEYS + parts + EMAIL_KEYS)
        return Trainer(erecno=erecno, name=name or "", email=email)

    return _read_all(items, read, source)


def _location(item: Mapping[str, Any]) -> str | None:
    value = first(item, *ROOM_LOCATION_KEYS)
    if isinstance(value, dict):  # {"locationId": .., "name": ..}
        value = first(value, "name", "locationName", "displayName")
    return clean_name(value) if isinstance(value, str) else as_text(value)


def read_rooms(items: Sequence[Mapping[str, Any]], source: Source) -> list[Room]:
    def read(item: Mapping[str, Any]) -> Room:
        return Room(
            id=_required(item, "room ID", ROOM_ID_KEYS),
            name=_name(item, "name", ROOM_NAME_KEYS),
            location=_location(item),
        )

    return _read_all(items, read, source)


def read_sessions(items: Sequence[Mapping[str, Any]], source: Source) -> list[ListedSession]:
    """Sessions with the fields that identify them (name, date, start time) and those an update
    compares; a session missing an identifying field is refused, never skipped (skipping it
    would let a run create it again)."""

    def read(item: Mapping[str, Any]) -> ListedSession:
        raw_date, time_part = split_datetime(first(item, *SESSION_DATE_KEYS))
        on = one_date(raw_date)
        if on is None:
            key = first_key(item, *SESSION_DATE_KEYS)
            raise _Missing("date", (key,) if key else SESSION_DATE_KEYS, raw_date)
        raw_start = first(item, *SESSION_START_KEYS) or time_part
        start = minutes(raw_start)
        if start is None:
            key = first_key(item, *SESSION_START_KEYS) or first_key(item, *SESSION_DATE_KEYS)
            keys = (key,) if raw_start is not None and key else SESSION_START_KEYS
            raise _Missing("start time", keys, raw_start, kind="time")
        end = minutes(first(item, *SESSION_END_KEYS))
        return ListedSession(
            id=_required(item, "session ID", SESSION_ID_KEYS),
            name=_name(item, "name", SESSION_NAME_KEYS),
            date=on,
            start=time(start // 60, start % 60),
            end=None if end is None else time(end // 60, end % 60),
            trainer_erecno=_nested_id(item, SESSION_TRAINER_KEYS, ERECNO_KEYS),
            room_id=_nested_id(item, SESSION_ROOM_KEYS, ROOM_ID_KEYS),
            module_id=_nested_id(item, SESSION_MODULE_KEYS, MODULE_ID_KEYS),
            type=as_text(first(item, *SESSION_TYPE_KEYS)),
            description=as_text(first(item, *SESSION_DESCRIPTION_KEYS)),
            raw=dict(item),
        )

    return _read_all(items, read, source)


__all__ = [
    "Batch",
    "Course",
    "ListedSession",
    "Module",
    "Room",
    "Source",
    "Trainer",
    "read_batches",
    "read_courses",
    "read_modules",
    "read_rooms",
    "read_sessions",
    "read_trainers",
    "trainer_name",
]

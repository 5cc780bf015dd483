"""The rules a session must pass, written from Zoho's API page, and the session record it becomes.

It deliberately does not import our client, payload or schema modules: the sandbox plays the
server, so its validation is written independently from the docs and a client bug is not mirrored.
Rules are applied in a fixed order and the first failure is reported, like the real API. Formats
are strict (``dd-MM-yyyy``, ``hh:mm AM``): a client that sends them exactly is safe.
"""

from __future__ import annotations

import re
from typing import Any, Final

from bulkschedule.sandbox.catalogue import ID_RE, Batch, Catalogue, parse_ddmmyyyy

__all__ = [
    "KNOWN_FIELDS",
    "REQUIRED",
    "Invalid",
    "check_fields",
    "check_path",
    "fields_of",
    "session_record",
]

_TIME_RE: Final = re.compile(r"^(0[1-9]|1[0-2]):([0-5]\d) (AM|PM)$")
REQUIRED: Final = ("name", "trainerErecno", "type", "date", "startTime", "endTime")
KNOWN_FIELDS: Final = (*REQUIRED, "description", "roomId", "lockUntil", "gradeCategoryId")
_SESSION_TYPES: Final = {"0": "Classroom", "1": "E-learning"}


class Invalid(Exception):
    """A request the API would refuse with a 4xx; rendered in the LMS error shape."""

    def __init__(self, code: str | int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def not_found(what: str) -> Invalid:
    return Invalid(404, f"Not found: {what}", 404)


def check_path(catalogue: Catalogue | None, course: str, batch: str | None,
               module: str | None) -> Batch | None:
    """Path ids must be numeric; with a catalogue they must also exist and belong together (else
    404). Returns the batch when the catalogue holds it."""
    for label, value in (("courseId", course), ("batchId", batch), ("moduleId", module)):
        if value is not None and not ID_RE.match(value):
            raise Invalid("INVALID_INPUT", f"Invalid value for {label}: {value!r}")
    if catalogue is None:
        return None
    c = catalogue.courses.get(course)
    if c is None:
        raise not_found(f"no course {course}")
    if batch is None:
        return None
    b = c.batches.get(batch)
    if b is None:
        raise not_found(f"no batch {batch} in course {course}")
    if module is not None and module not in b.modules:
        raise not_found(f"no module {module} in batch {batch}")
    return b


def _text(data: dict[str, Any], key: str) -> str | None:
    """A field as text; JSON numbers are accepted for ids and type, other types are not."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Invalid("INVALID_INPUT", f"Invalid value for {key}: {value!r}")
    return str(value).strip()


def _minutes(value: str) -> int:
    match = _TIME_RE.match(value)
    assert match is not None
    hour, minute, half = int(match[1]), int(match[2]), match[3]
    return (hour % 12 + (12 if half == "PM" else 0)) * 60 + minute


def check_fields(data: dict[str, Any], catalogue: Catalogue | None,
                 batch: Batch | None) -> dict[str, str]:
    """Check every documented rule and return the fields as text, or raise `Invalid`."""
    fields: dict[str, str] = {}
    for key in KNOWN_FIELDS:
        value = _text(data, key)
        if value:
            fields[key] = value
    for key in REQUIRED:
        if key not in fields:
            raise Invalid("INPUT_PARAMETER_MISSING", f"Input parameter missing: {key}")
    for key in ("trainerErecno", "roomId", "gradeCategoryId"):
        if key in fields and not ID_RE.match(fields[key]):
            raise Invalid("INVALID_INPUT", f"Invalid value for {key}: {fields[key]!r}")
    if fields["type"] not in _SESSION_TYPES:
        raise Invalid(
            "INVALID_INPUT",
            f"Invalid value for type: {fields['type']!r} (0 Classroom, 1 E-learning)",
        )
    for key in ("date", "lockUntil"):
        if key in fields and parse_ddmmyyyy(fields[key]) is None:
            raise Invalid(
                "INVALID_INPUT", f"Invalid value for {key}: {fields[key]!r} (dd-MM-yyyy)"
            )
    for key in ("startTime", "endTime"):
        if not _TIME_RE.match(fields[key]):
            raise Invalid("INVALID_INPUT", f"Invalid value for {key}: {fields[key]!r} (hh:mm AM)")
    if _minutes(fields["endTime"]) <= _minutes(fields["startTime"]):
        raise Invalid(
            "INVALID_INPUT",
            f"endTime {fields['endTime']} must be after startTime {fields['startTime']}",
        )
    if catalogue is not None:
        trainer = catalogue.trainers.get(fields["trainerErecno"])
        if trainer is None:
            raise Invalid("INVALID_INPUT", f"No trainer with erecno {fields['trainerErecno']}")
        if not trainer.active:
            raise Invalid("INVALID_INPUT",
                          f"Trainer {fields['trainerErecno']} is not an active employee")
        if "roomId" in fields and fields["roomId"] not in catalogue.rooms:
            raise Invalid("INVALID_INPUT", f"No room with id {fields['roomId']}")
    if batch is not None:
        day = parse_ddmmyyyy(fields["date"])
        assert day is not None
        if not batch.start <= day <= batch.end:
            raise Invalid(
                "BATCH_DATE_AND_SESSION_DATE_MISMATCH",
                f"Session date {fields['date']} is outside the batch dates "
                f"{batch.start:%d-%m-%Y} to {batch.end:%d-%m-%Y}",
            )
    return fields


def session_record(session_id: str, module: str, fields: dict[str, str],
                   catalogue: Catalogue | None) -> dict[str, Any]:
    """The session in the create reply's shape (the API page's example, field for field)."""
    trainer = catalogue.trainers.get(fields["trainerErecno"]) if catalogue else None
    room = catalogue.rooms.get(fields.get("roomId", "")) if catalogue else None
    return {
        "sessionId": session_id,
        "sessionName": fields["name"],
        "sessionStartDate": fields["date"],
        "sessionStartTime": fields["startTime"],
        "sessionEndTime": fields["endTime"],
        "description": fields.get("description", ""),
        "trainerErecno": fields["trainerErecno"],
        "sessionTrainer": trainer.name if trainer else "",
        "moduleId": module,
        "roomId": fields.get("roomId", ""),
        "sessionRoom": room.name if room else "",
        "lockUntil": fields.get("lockUntil", ""),
        "isLocked": "lockUntil" in fields,
        "sessionType": _SESSION_TYPES[fields["type"]],
        "gradeCategoryId": fields.get("gradeCategoryId", ""),
        "gradeCategoryName": "",
        "resources": [],
        "totalLearnersCount": 0,
        "presentLeanersCount": 0,  # sic: the API's own spelling
        "isSessionCompleted": False,
        "canUserEdit": True,
        "canUserDelete": True,
    }


def fields_of(record: dict[str, Any]) -> dict[str, str]:
    """The ``sessionData`` fields a stored record was made from (blank optional ones left out):
    what a partial update or a direct edit starts from."""
    types = {name: code for code, name in _SESSION_TYPES.items()}
    fields = {
        "name": record["sessionName"], "trainerErecno": record["trainerErecno"],
        "type": types[record["sessionType"]], "date": record["sessionStartDate"],
        "startTime": record["sessionStartTime"], "endTime": record["sessionEndTime"],
        "description": record.get("description", ""), "roomId": record.get("roomId", ""),
        "lockUntil": record.get("lockUntil", ""),
        "gradeCategoryId": record.get("gradeCategoryId", ""),
    }
    return {k: str(v) for k, v in fields.items() if v}

"""Turn a `SessionRow` into the exact request the Create Session API expects. Pure."""

from __future__ import annotations

import hashlib
import json

from bulkschedule.core.request import Request, identity_fields
from bulkschedule.sheet.parse import format_date, format_time
from bulkschedule.sheet.schema import SessionRow


def build_request(row: SessionRow) -> Request:
    """The request for one valid row; blank optional fields are left out, as the API expects."""
    data: dict[str, str] = {
        "name": row.name,
        "trainerErecno": row.trainer_erecno,
        "type": row.type,
        "date": format_date(row.date),
        "startTime": format_time(row.start),
        "endTime": format_time(row.end),
    }
    optional = (
        ("description", row.description),
        ("roomId", row.room_id),
        ("lockUntil", format_date(row.lock_until) if row.lock_until else None),
        ("gradeCategoryId", row.grade_category_id),
    )
    for field, value in optional:
        if value:
            data[field] = value
    return Request(
        row=row.row,
        course_id=row.course_id,
        batch_id=row.batch_id,
        module_id=row.module_id,
        session_data=data,
        identity=identity(row),
        fingerprint=fingerprint(row.course_id, row.batch_id, row.module_id, data),
    )


def identity(row: SessionRow) -> str:
    """What makes a row "the same session" across re-runs.

    The admin's own ``key`` when given (so a session may be renamed or moved); otherwise the module,
    name, date and start time, which is also how the duplicate check defines the same session.
    """
    if row.key:
        return f"key:{row.key}"
    return f"session:{row.module_id}|{row.name}|{format_date(row.date)}|{format_time(row.start)}"


def fingerprint(course_id: str, batch_id: str, module_id: str, session_data: dict[str, str]) -> str:
    """sha256 of everything sent, in a canonical form: a re-run row with the same identity but a
    different fingerprint was changed in the sheet after its session was created."""
    canonical = json.dumps(
        {
            "courseId": course_id,
            "batchId": batch_id,
            "moduleId": module_id,
            "sessionData": session_data,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


__all__ = ["Request", "build_request", "fingerprint", "identity", "identity_fields"]

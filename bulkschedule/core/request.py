"""The request for one session, as every layer below the sheet sees it.

It lives in the core so the client and the journal can speak of requests without loading the
sheet reader and validator (pandas, pandera) that build them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    row: int  # spreadsheet row
    course_id: str
    batch_id: str
    module_id: str
    session_data: dict[str, str]  # exactly the sessionData JSON object, all values strings
    identity: str  # key:<key> or module/name/date/start; the journal prefixes the API base
    fingerprint: str  # stable hash of path IDs + session_data: detects "changed" on re-run

    @property
    def path(self) -> str:
        return (
            f"/api/v1/courses/{self.course_id}/batches/{self.batch_id}"
            f"/modules/{self.module_id}/sessions"
        )


def identity_fields(request: Request) -> dict[str, str]:
    """The fields that make up a request's identity, to match a session listed by the API
    (``sessionName``, ``sessionStartDate``, ``sessionStartTime``) during reconciliation."""
    data = request.session_data
    return {
        "moduleId": request.module_id,
        "name": data["name"],
        "date": data["date"],
        "startTime": data["startTime"],
    }

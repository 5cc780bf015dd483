"""Turn a `SessionRow` into the exact request the Create Session API expects. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from bulkschedule.schema import SessionRow


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


def build_request(row: SessionRow) -> Request:
    raise NotImplementedError

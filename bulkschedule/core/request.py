"""The request for one session, as every layer below the sheet sees it.

It lives in the core so the client and the journal can speak of requests without loading the
sheet reader and validator (pandas, pandera) that build them.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from bulkschedule.core.problems import Changes, Line, Outcome, Status, line_of, where


@dataclass(frozen=True, slots=True)
class Request:
    row: int  # spreadsheet row
    course_id: str
    batch_id: str
    module_id: str
    #: exactly the sessionData JSON object, all values strings (``dict()`` of it to encode it)
    session_data: Mapping[str, str]
    identity: str  # key:<key> or module/name/date/start; the journal prefixes the API base
    fingerprint: str  # stable hash of path IDs + session_data: detects "changed" on re-run
    #: the session this request updates (PATCH), or None to create one (POST)
    session_id: str | None = None
    occurrence: int | None = None  # n of a repeating row's session (from 1); None: not repeating
    #: Which session of the sheet this is (its row, and its occurrence or 0). Made once: every
    #: map of a run (the runner's outcomes, what it returns, the report) is keyed by it, and
    #: each made its own equal tuple, ~56 bytes a row a map, until the results were written.
    line: Line = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "line", line_of(self.row, self.occurrence))

    @property
    def date(self) -> str | None:
        """The session's date as sent (dd-mm-yyyy) when it is one of a repeating row's."""
        return None if self.occurrence is None else self.session_data.get("date")

    @property
    def where(self) -> str:
        """``row 5``, or ``row 5 (12-01-2027)`` for a session of a repeating row."""
        return where(self.row, self.date)

    def outcome(self, status: Status, session_id: str | None = None, message: str = "",
                attempts: int = 0, changes: Changes | None = None) -> Outcome:
        """This session's `Outcome` (its row, occurrence and date filled in)."""
        return Outcome(self.row, status, session_id, message, attempts, changes,
                       self.occurrence, self.date)

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


#: The longest request line common servers accept (Apache's LimitRequestLine, aiohttp's and the
#: sandbox's max_line_size; nginx's default buffers are 8 KB): a ``query``-style request longer
#: than this is refused before Zoho reads it.
MAX_REQUEST_LINE = 8190
#: The largest body a server is assumed to take (aiohttp's default client_max_size).
MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Encoded:
    """``sessionData`` as it travels: a query suffix, or a body with its content type."""

    suffix: str
    body: bytes | None
    content_type: str | None


def encode(session_data: Mapping[str, str], style: str) -> Encoded:
    """Compact ASCII JSON (non-ASCII as ``\\uXXXX``, which survives any server charset handling),
    carried in the query string, a form body or a JSON body."""
    compact = json.dumps(dict(session_data), separators=(",", ":"), ensure_ascii=True)
    if style == "query":
        return Encoded(f"?sessionData={urllib.parse.quote(compact, safe='')}", None, None)
    if style == "form":
        body = urllib.parse.urlencode({"sessionData": compact}).encode("ascii")
        return Encoded("", body, "application/x-www-form-urlencoded")
    return Encoded("", compact.encode("ascii"), "application/json")


def too_large(request: Request, style: str) -> str | None:
    """Why ``request`` cannot be sent in ``style``, or None: the request line (``POST path?query
    HTTP/1.1``, or PATCH with the sessionId for an update) over `MAX_REQUEST_LINE`, or the body
    over `MAX_BODY`."""
    encoded = encode(request.session_data, style)
    target = f"PATCH {request.path}/{request.session_id}" if request.session_id \
        else f"POST {request.path}"
    line = len(f"{target}{encoded.suffix} HTTP/1.1")
    if line > MAX_REQUEST_LINE:
        return (f"its request line would be {line:,} bytes, over the {MAX_REQUEST_LINE:,} "
                "servers accept: shorten the name or description, or send with "
                "--payload-style form (the fields travel in the body)")
    if encoded.body is not None and len(encoded.body) > MAX_BODY:
        return (f"its request body would be {len(encoded.body):,} bytes, over {MAX_BODY:,}: "
                "shorten the name or description")
    return None

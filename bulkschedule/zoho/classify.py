"""Classifying Zoho's replies: every reply becomes a value or exactly one ApiError subclass.

Pure apart from reading the clock for an HTTP-date Retry-After (inject ``now`` to test); no
aiohttp. Zoho's documentation leaves the error shapes open (see docs/api-behaviour.md), so every
body is read defensively:

- the LMS v1 envelope: a top-level ``code`` (``"200"`` as text or ``200`` as a number),
  ``message``, the entity under its own key (``session``, ``rooms``, ...), ``hasMoreRecords`` on
  some listings, and UPPER_SNAKE error codes (``INVALID_INPUT``,
  ``BATCH_DATE_AND_SESSION_DATE_MISMATCH``);
- the older People envelope ``{"response": {"errors": {"code": 7209, ...}, "status": 1}}``, with
  numeric 7xxx codes, sometimes inside an HTTP 200;
- bodies that are not JSON at all (proxy or HTML error pages).

The runner decides what to do by exception type (see design.md, "Classification of a
response"); the table below is the one place that maps replies to those types.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from bulkschedule.core.errors import (
    ApiError,
    AuthExpired,
    Fatal,
    Locked,
    OutcomeUnknown,
    Rejected,
    ServerError,
)
from bulkschedule.core.text import snippet
from bulkschedule.zoho.matching import as_text

_LOCK_CODES = frozenset({"7209"})
_LOCK_TEXT = ("threshold", "limit exceeded", "too many requests", "blocked")
_AUTH_CODES = frozenset({"INVALID_OAUTHTOKEN", "7202", "7213"})
_SCOPE_CODES = frozenset({"7218"})
_SUCCESS_CODES = frozenset({"200", "201", "0", "SUCCESS"})
#: A listing of an empty module may come back as an "error" saying there is nothing to list.
_NO_RECORDS = re.compile(
    r"\bno\s+(matching\s+)?(records?|data|sessions?|trainers?|courses?|batch(es)?|modules?|rooms?)"
    r"\b(\s+(found|available))?",
    re.I,
)


class UnreadableReply(ApiError):
    """A read answered in a shape this client cannot read (no list where one was expected, or
    items without the fields it needs). Retrying will not help; the message names the endpoint
    and the fields it saw, so the shape can be reported and supported."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        seen: tuple[str, ...] = (),
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.endpoint = endpoint
        self.seen = seen


# --------------------------------------------------------------------------------------------
# reading a body in any envelope


@dataclass(frozen=True, slots=True)
class Reply:
    """What could be read out of a reply, whatever its envelope."""

    doc: Any  # parsed JSON, or None
    is_json: bool
    has_error: bool
    code: str | None
    message: str | None
    session_id: str | None
    snippet: str  # readable excerpt when the body is not JSON


def _first_error(errors: Any) -> tuple[str | None, str | None]:
    """(code, message) from an ``errors`` value: a dict, or a list of dicts/strings."""
    if isinstance(errors, list):
        codes = [c for c in (_first_error(e)[0] for e in errors) if c]
        messages = [m for m in (_first_error(e)[1] for e in errors) if m]
        return (codes[0] if codes else None, "; ".join(messages) or None)
    if isinstance(errors, dict):
        return as_text(errors.get("code")), as_text(errors.get("message"))
    return None, as_text(errors)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_reply(body: str) -> Reply:
    """Read a reply in any envelope without trusting its HTTP status (errors come inside 200s)."""
    try:
        doc = json.loads(body) if body.strip() else None
    except ValueError:
        return Reply(None, False, False, None, None, None, snippet(body))
    if doc is None:
        return Reply(None, False, False, None, None, None, "")
    if not isinstance(doc, dict):
        return Reply(doc, True, False, None, None, None, "")

    has_error = False
    code = as_text(doc.get("code"))
    message = as_text(doc.get("message"))
    response = _mapping(doc.get("response"))

    err_code, err_message = None, None
    for errors in (response.get("errors"), doc.get("errors")):
        if errors:
            has_error = True
            err_code, err_message = _first_error(errors)
            break
    if not has_error and doc.get("error"):
        has_error = True
        err_code, err_message = _first_error(doc["error"])
        if err_code is None and err_message and re.fullmatch(r"[A-Z0-9_]+", err_message):
            err_code = err_message  # {"error": "INVALID_INPUT"}
        if err_message is None or err_message == err_code:
            err_message = as_text(doc.get("error_description")) or message
    if as_text(response.get("status")) in ("1", "error", "failure") or as_text(
        doc.get("status")
    ) in ("error", "failure"):
        has_error = True
    for c in (code, as_text(response.get("code"))):
        if c is not None and c.upper() not in _SUCCESS_CODES:
            has_error = True
    code = err_code or code or as_text(response.get("code"))
    message = err_message or message or as_text(response.get("message"))

    session = doc.get("session")
    if isinstance(session, list) and session and isinstance(session[0], dict):
        session = session[0]
    session_id = as_text(session.get("sessionId")) if isinstance(session, dict) else None
    return Reply(doc, True, has_error, code, message, session_id, "")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getter = getattr(headers, "getone", None)
    if getter is not None:  # a case-insensitive multidict
        found = getter(name, None)
        return found if isinstance(found, str) else None
    lname = name.lower()
    for key, value in headers.items():
        if key.lower() == lname:
            return value
    return None


def retry_after(headers: Mapping[str, str], now: float | None) -> float | None:
    """Retry-After as seconds to wait: either delta-seconds or an HTTP date (RFC 9110)."""
    value = _header(headers, "Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def describe(info: Reply, status: int) -> str:
    """Render "CODE: message (HTTP n)" without repeating a code that is the whole message."""
    parts = []
    if info.code and info.code not in _SUCCESS_CODES:
        parts.append(info.code)
    msg = info.message if info.is_json else info.snippet
    if msg and msg != info.code:
        parts.append(msg)
    text = ": ".join(parts) or "no details in the reply"
    return f"{text} (HTTP {status})"


# --------------------------------------------------------------------------------------------
# errors


def _is_locked(status: int, info: Reply) -> bool:
    if status == 429 or (info.code is not None and info.code in _LOCK_CODES):
        return True
    text = (info.message if info.is_json else info.snippet) or ""
    low = text.lower()
    if status == 422 and ("limit" in low or not text):
        return True  # the documented 422 is "Maximum limit exceeded"
    return any(marker in low for marker in _LOCK_TEXT)


def _locked(status: int, headers: Mapping[str, str], info: Reply, now: float | None) -> NoReturn:
    wait_s = retry_after(headers, now)
    wait = f"; Retry-After {wait_s:g} s" if wait_s is not None else ""
    raise Locked(
        f"Zoho's API limit is in force ({describe(info, status)}{wait}); pausing all requests",
        status=status,
        code=info.code,
        retry_after=wait_s,
    )


def raise_for_error(
    status: int,
    headers: Mapping[str, str],
    info: Reply,
    *,
    what: str,
    creating: bool,
    now: float | None,
) -> None:
    """Raise the right ApiError for a reply that is not a plain success. Returns only for a 2xx
    reply that reports no error (the caller decides what a 2xx without the expected data means).

    ``creating`` is true only for a call that is not safe to repeat (a create): a gateway error
    or an unexpected status then means "may have happened" (OutcomeUnknown), not "retry".
    """
    ok = 200 <= status < 300
    if ok and not info.has_error:
        # A 2xx can still be a lock page (e.g. an HTML "too many requests" from a proxy).
        if not info.is_json and info.snippet and _is_locked(status, info):
            _locked(status, headers, info, now)
        return
    detail = describe(info, status)
    code = info.code
    if _is_locked(status, info):
        _locked(status, headers, info, now)
    if code in _SCOPE_CODES:
        raise Fatal(
            f"the access token lacks the required scope ({detail}); create the Self Client "
            "grant with scope ZOHOPEOPLE.training.ALL (creating and listing sessions)",
            status=status,
            code=code,
        )
    if status == 401 or (code is not None and code.upper() in _AUTH_CODES):
        raise AuthExpired(f"Zoho rejected the access token ({detail})", status=status, code=code)
    if status == 403:
        raise Fatal(
            f"Zoho says this user may not do this ({detail}); check that the user behind the "
            "token is an LMS administrator for this course and the scope is "
            "ZOHOPEOPLE.training.ALL",
            status=status,
            code=code,
        )
    if 300 <= status < 400:
        where = _header(headers, "Location") or "another address"
        raise Fatal(
            f"Zoho redirected {what} to {where} (HTTP {status}); check the base URL / data "
            "centre (--dc)",
            status=status,
            code=code,
        )
    if status >= 500:
        if creating and status in (502, 504):
            # A gateway error means a proxy gave up waiting for or talking to Zoho's server,
            # which may well have created the session: reconcile before any resend.
            raise OutcomeUnknown(
                f"a gateway in front of Zoho failed while creating {what} ({detail}); it may "
                "have been created, checking before any resend",
                status=status,
                code=code,
            )
        raise ServerError(f"Zoho had a server error on {what} ({detail})", status=status, code=code)
    if status == 414:
        raise Rejected(
            f"Zoho refused {what}: the request URL is too long ({detail}); use "
            "--payload-style form or json, or shorten the description",
            status=status,
            code=code,
        )
    if 400 <= status < 500 or (ok and info.has_error):
        raise Rejected(f"Zoho refused {what}: {detail}", status=status, code=code)
    # 1xx or another status nobody expects: do not guess.
    if creating:
        raise OutcomeUnknown(f"unexpected reply to {what} ({detail})", status=status, code=code)
    raise ServerError(f"unexpected reply to {what} ({detail})", status=status, code=code)


# --------------------------------------------------------------------------------------------
# create and update


def classify_create(
    status: int, headers: Mapping[str, str], body: str, *, now: float | None = None
) -> str:
    """The sessionId of a Create Session reply, or the ApiError subclass it deserves.

    A 2xx that reports success but carries no sessionId raises OutcomeUnknown: the server said
    it worked, so the session probably exists, and recording the row as failed would invite a
    duplicate on the next run; reconciliation by listing settles it.
    """
    info = parse_reply(body)
    if 200 <= status < 300 and info.session_id:
        # A sessionId means the session exists, whatever else the reply says: recording it is
        # what prevents a duplicate on the next run.
        return info.session_id
    raise_for_error(status, headers, info, what="the session", creating=True, now=now)
    if info.is_json:
        detail = f"no sessionId in the reply ({describe(info, status)})"
    else:
        detail = f"the reply was not JSON: {info.snippet or 'empty body'} (HTTP {status})"
    raise OutcomeUnknown(
        f"Zoho answered without confirming the session: {detail}; checking before any resend",
        status=status,
        code=info.code,
    )


def classify_update(
    status: int,
    headers: Mapping[str, str],
    body: str,
    *,
    session_id: str,
    now: float | None = None,
) -> str:
    """The sessionId of an Update Session reply (the one patched), or the ApiError it deserves.

    Classified like a create, except that an update sets the same values however often it is
    sent, so nothing here is OutcomeUnknown: a gateway error or an unconfirmed reply is a
    ServerError (send it again). A 404 means the session is gone from Zoho.
    """
    info = parse_reply(body)
    what = f"the update of session {session_id}"
    if status == 404 and not _is_locked(status, info):
        raise Rejected(
            f"Zoho has no session {session_id} any more ({describe(info, status)}): it was "
            "deleted in Zoho; to create it again, clear the row's sessionId cell, run "
            "`bulkschedule forget SHEET --row N` for the row and run the sheet again",
            status=status,
            code=info.code,
        )
    raise_for_error(status, headers, info, what=what, creating=False, now=now)
    if info.is_json or not info.snippet:  # a JSON success, or an empty 2xx (204)
        return info.session_id or session_id
    raise ServerError(
        f"Zoho answered {what} without confirming it: the reply was not JSON: {info.snippet} "
        f"(HTTP {status}); sending it again is safe",
        status=status,
        code=info.code,
    )


# --------------------------------------------------------------------------------------------
# listings


@dataclass(frozen=True, slots=True)
class Listing:
    """What one kind of LMS listing is called and where its items may sit in a reply."""

    what: str  # for messages: "the session listing"
    many: str  # the key its list is expected under ("sessions"), also the noun in messages
    one: str  # the singular key, used when it holds a list ("session": [...])
    id_key: str  # what the key of a People-wrapped record (``{"<id>": [{...}]}``) becomes
    unreadable: str  # what a reply without a list means for the caller
    #: raised for a 2xx reply holding records under no key we know: ServerError where the
    #: runner retries (reconciliation), UnreadableReply where retrying cannot help (org reads)
    strict: bool = False


SESSIONS = Listing(
    "the session listing", "sessions", "session", "sessionId",
    "cannot check which sessions exist",
)
TRAINERS = Listing(
    "the trainer listing", "trainers", "trainer", "erecno",
    "cannot tell whether the read worked",
)
_ORG = "cannot read the organisation"
COURSES = Listing("the course listing", "courses", "course", "courseId", _ORG, strict=True)
BATCHES = Listing("the batch listing", "batches", "batch", "batchId", _ORG, strict=True)
MODULES = Listing("the module listing", "modules", "module", "moduleId", _ORG, strict=True)
ROOMS = Listing("the room listing", "rooms", "room", "roomId", _ORG, strict=True)
ACTIVE_TRAINERS = Listing(
    "the trainer listing", "trainers", "trainer", "erecno", _ORG, strict=True
)
SESSION_RECORDS = Listing(
    "the session listing", "sessions", "session", "sessionId",
    "cannot check which sessions exist", strict=True,
)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing: its raw items and ``hasMoreRecords`` (None when not said)."""

    items: list[dict[str, Any]]
    has_more: bool | None


def classify_page(
    status: int,
    headers: Mapping[str, str],
    body: str,
    *,
    listing: Listing = SESSIONS,
    what: str | None = None,
    endpoint: str = "",
    now: float | None = None,
) -> Page:
    """A page of a listing, or the ApiError it deserves. ``what`` overrides ``listing.what`` in
    messages (to name the endpoint); an empty listing may come back as a "no records" error."""
    what = what or listing.what
    info = parse_reply(body)
    if 200 <= status < 300 and info.is_json and not info.has_error:
        items = list_items(info.doc, listing)
        if items is not None:
            return Page(items, has_more(info.doc))
        if not _holds_records(info.doc):
            return Page([], False)  # a success reply with no list at all: an empty listing
    if info.has_error or status == 404 or status == 204:
        text = f"{info.message or ''} {info.snippet}"
        if status == 204 or _NO_RECORDS.search(text):
            return Page([], False)
    raise_for_error(status, headers, info, what=what, creating=False, now=now)
    message = (
        f"Zoho answered {what} without a list of {listing.many} "
        f"({describe(info, status)}); {listing.unreadable}"
    )
    if listing.strict:
        seen = tuple(sorted(info.doc)[:12]) if isinstance(info.doc, dict) else ()
        fields = f"; fields seen: {', '.join(seen)}" if seen else ""
        raise UnreadableReply(
            message + fields, endpoint=endpoint, seen=seen, status=status, code=info.code
        )
    raise ServerError(message, status=status, code=info.code)


def list_items(doc: Any, listing: Listing = SESSIONS) -> list[dict[str, Any]] | None:
    """The list of items under any of the keys seen in Zoho list replies, or a bare list."""
    candidates: list[Any] = [doc]
    if isinstance(doc, dict):
        response = _mapping(doc.get("response"))
        candidates = [
            doc.get(listing.many),
            doc.get(listing.one) if isinstance(doc.get(listing.one), list) else None,
            doc.get("data"),
            doc.get("result"),
            doc.get("records"),
            response.get("result"),
            response.get(listing.many),
            response.get("data"),
        ]
    for found in candidates:
        if isinstance(found, dict):  # e.g. {"data": {"sessions": [...]}}
            inner = list_items(found, listing)
            if inner is not None:
                return inner
        if isinstance(found, list):
            return [_unwrap(item, listing.id_key) for item in found if isinstance(item, dict)]
    return None


def _holds_records(doc: Any) -> bool:
    """Whether a list of objects sits anywhere in the reply (under a key we do not know)."""
    if isinstance(doc, list):
        return any(isinstance(i, dict) for i in doc) or any(_holds_records(i) for i in doc)
    if isinstance(doc, dict):
        return any(_holds_records(v) for v in doc.values())
    return False


def _unwrap(item: dict[str, Any], id_key: str) -> dict[str, Any]:
    """Zoho People form lists wrap each record as ``{"<recordId>": [{...}]}``: unwrap that."""
    if len(item) == 1:
        ((key, value),) = item.items()
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
            return {id_key: key, **value[0]}
    return item


def has_more(doc: Any) -> bool | None:
    """``hasMoreRecords`` of a listing (top level or under ``response``), None when absent."""
    if not isinstance(doc, dict):
        return None
    for holder in (doc, doc.get("response")):
        if isinstance(holder, dict) and "hasMoreRecords" in holder:
            value = holder["hasMoreRecords"]
            if isinstance(value, str):
                return value.strip().lower() in ("true", "1", "yes")
            return bool(value)
    return None


__all__ = [
    "ACTIVE_TRAINERS",
    "BATCHES",
    "COURSES",
    "MODULES",
    "ROOMS",
    "SESSIONS",
    "SESSION_RECORDS",
    "TRAINERS",
    "Listing",
    "Page",
    "Reply",
    "UnreadableReply",
    "classify_create",
    "classify_page",
    "classify_update",
    "describe",
    "list_items",
    "parse_reply",
    "raise_for_error",
    "retry_after",
]

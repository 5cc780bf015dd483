"""The Zoho People LMS HTTP client: one small exception hierarchy that maps to retry policy.

Every response is classified exactly once, here; the runner decides what to do by exception type.

Zoho's documentation leaves the error shapes open (see docs/api-behaviour.md), so the classifier
reads every body defensively: ``code`` as number or text, the current envelope
(``{"code", "message", "session"}``) and the older one (``{"response": {"errors": ..}}``), errors
inside an HTTP 200, and bodies that are not JSON at all (proxy or HTML error pages).
"""

from __future__ import annotations

import contextlib
import email.utils
import html
import json
import logging
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, NoReturn

import aiohttp
from yarl import URL

from bulkschedule.core.constants import DATA_CENTRES, PayloadStyle
from bulkschedule.core.errors import (
    ApiError,
    AuthError,
    AuthExpired,
    Fatal,
    Locked,
    NotSent,
    OutcomeUnknown,
    Rejected,
    ServerError,
)
from bulkschedule.core.request import Request
from bulkschedule.core.text import snippet
from bulkschedule.zoho.auth import TokenProvider
from bulkschedule.zoho.urls import check_base_url

log = logging.getLogger(__name__)


#: Sessions per page of the module listing (Zoho's page size for LMS lists).
PAGE_SIZE = 25
#: A listing that never says "no more" (or ignores startIndex) must not loop forever:
#: 400 pages is 10,000 sessions in one module, far beyond any real module.
MAX_PAGES = 400

_LOCK_CODES = frozenset({"7209"})
_LOCK_TEXT = ("threshold", "limit exceeded", "too many requests", "blocked")
_AUTH_CODES = frozenset({"INVALID_OAUTHTOKEN", "7202", "7213"})
_SCOPE_CODES = frozenset({"7218"})
_SUCCESS_CODES = frozenset({"200", "201", "0", "SUCCESS"})
#: A listing of an empty module may come back as an "error" saying there is nothing to list.
_NO_RECORDS = re.compile(
    r"\bno\s+(matching\s+)?(records?|data|sessions?|trainers?)\b(\s+(found|available))?", re.I
)


@dataclass(frozen=True, slots=True)
class _Listing:
    """What one kind of LMS listing is called and where its items may sit in a reply."""

    what: str  # for messages: "the session listing"
    many: str  # the key its list is expected under ("sessions"), also the noun in messages
    one: str  # the singular key, used when it holds a list ("session": [...])
    id_key: str  # what the key of a People-wrapped record (``{"<id>": [{...}]}``) becomes
    unreadable: str  # what a reply without a list means for the caller


_SESSIONS = _Listing(
    "the session listing", "sessions", "session", "sessionId",
    "cannot check which sessions exist",
)
_TRAINERS = _Listing(
    "the trainer listing", "trainers", "trainer", "erecno",
    "cannot tell whether the read worked",
)


# --------------------------------------------------------------------------------------------
# base URL


# --------------------------------------------------------------------------------------------
# response classification (pure)


@dataclass(frozen=True, slots=True)
class _Body:
    """What could be read out of a reply, whatever its envelope."""

    doc: Any  # parsed JSON, or None
    is_json: bool
    has_error: bool
    code: str | None
    message: str | None
    session_id: str | None
    snippet: str  # readable excerpt when the body is not JSON


def _text(value: Any) -> str | None:
    """A code or message as text: 7209, 7209.0 and "7209" all read "7209"."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    out = str(value).strip()
    return out or None


def _first_error(errors: Any) -> tuple[str | None, str | None]:
    """(code, message) from an ``errors`` value: a dict, or a list of dicts/strings."""
    if isinstance(errors, list):
        codes = [c for c in (_first_error(e)[0] for e in errors) if c]
        messages = [m for m in (_first_error(e)[1] for e in errors) if m]
        return (codes[0] if codes else None, "; ".join(messages) or None)
    if isinstance(errors, dict):
        return _text(errors.get("code")), _text(errors.get("message"))
    return None, _text(errors)


def _parse(body: str) -> _Body:
    """Read a reply in any envelope without trusting its HTTP status (errors come inside 200s)."""
    try:
        doc = json.loads(body) if body.strip() else None
    except ValueError:
        return _Body(None, False, False, None, None, None, snippet(body))
    if doc is None:
        return _Body(None, False, False, None, None, None, "")
    if not isinstance(doc, dict):
        return _Body(doc, True, False, None, None, None, "")

    has_error = False
    code = _text(doc.get("code"))
    message = _text(doc.get("message"))
    response = doc.get("response") if isinstance(doc.get("response"), dict) else {}

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
            err_message = _text(doc.get("error_description")) or message
    if _text(response.get("status")) in ("1", "error", "failure") or _text(doc.get("status")) in (
        "error",
        "failure",
    ):
        has_error = True
    for c in (code, _text(response.get("code"))):
        if c is not None and c.upper() not in _SUCCESS_CODES:
            has_error = True
    code = err_code or code or _text(response.get("code"))
    message = err_message or message or _text(response.get("message"))

    session = doc.get("session")
    if isinstance(session, list) and session and isinstance(session[0], dict):
        session = session[0]
    session_id = _text(session.get("sessionId")) if isinstance(session, dict) else None
    return _Body(doc, True, has_error, code, message, session_id, "")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getter = getattr(headers, "getone", None)
    if getter is not None:  # a case-insensitive multidict
        return getter(name, None)
    lname = name.lower()
    for key, value in headers.items():
        if key.lower() == lname:
            return value
    return None


def _retry_after(headers: Mapping[str, str], now: float | None) -> float | None:
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


def _describe(info: _Body, status: int) -> str:
    """Render "CODE: message (HTTP n)" without repeating a code that is the whole message."""
    parts = []
    if info.code and info.code not in _SUCCESS_CODES:
        parts.append(info.code)
    msg = info.message if info.is_json else info.snippet
    if msg and msg != info.code:
        parts.append(msg)
    text = ": ".join(parts) or "no details in the reply"
    return f"{text} (HTTP {status})"


def _is_locked(status: int, info: _Body) -> bool:
    if status == 429 or (info.code is not None and info.code in _LOCK_CODES):
        return True
    text = (info.message if info.is_json else info.snippet) or ""
    low = text.lower()
    if status == 422 and ("limit" in low or not text):
        return True  # the documented 422 is "Maximum limit exceeded"
    return any(marker in low for marker in _LOCK_TEXT)


def _raise_for_error(
    status: int,
    headers: Mapping[str, str],
    info: _Body,
    *,
    what: str,
    creating: bool,
    now: float | None,
) -> None:
    """Raise the right ApiError for a reply that is not a plain success. Returns only for a 2xx
    reply that reports no error (the caller decides what a 2xx without the expected data means).
    """
    ok = 200 <= status < 300
    if ok and not info.has_error:
        # A 2xx can still be a lock page (e.g. an HTML "too many requests" from a proxy).
        if not info.is_json and info.snippet and _is_locked(status, info):
            _locked(status, headers, info, now)
        return
    detail = _describe(info, status)
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


def _locked(status: int, headers: Mapping[str, str], info: _Body, now: float | None) -> NoReturn:
    retry_after = _retry_after(headers, now)
    wait = f"; Retry-After {retry_after:g} s" if retry_after is not None else ""
    raise Locked(
        f"Zoho's API limit is in force ({_describe(info, status)}{wait}); pausing all requests",
        status=status,
        code=info.code,
        retry_after=retry_after,
    )


def classify_create(
    status: int, headers: Mapping[str, str], body: str, *, now: float | None = None
) -> str:
    """The sessionId of a Create Session reply, or the ApiError subclass it deserves.

    Pure apart from reading the clock for an HTTP-date Retry-After (inject ``now`` to test).
    A 2xx that reports success but carries no sessionId raises OutcomeUnknown: the server said
    it worked, so the session probably exists, and recording the row as failed would invite a
    duplicate on the next run; reconciliation by listing settles it.
    """
    info = _parse(body)
    if 200 <= status < 300 and info.session_id:
        # A sessionId means the session exists, whatever else the reply says: recording it is
        # what prevents a duplicate on the next run.
        return info.session_id
    _raise_for_error(status, headers, info, what="the session", creating=True, now=now)
    if info.is_json:
        detail = f"no sessionId in the reply ({_describe(info, status)})"
    else:
        detail = f"the reply was not JSON: {info.snippet or 'empty body'} (HTTP {status})"
    raise OutcomeUnknown(
        f"Zoho answered without confirming the session: {detail}; checking before any resend",
        status=status,
        code=info.code,
    )


def _classify_list(
    status: int,
    headers: Mapping[str, str],
    body: str,
    *,
    now: float | None = None,
    listing: _Listing = _SESSIONS,
) -> tuple[list[dict[str, Any]], bool | None]:
    """(items, hasMoreRecords or None) of a listing page, or the ApiError it deserves."""
    info = _parse(body)
    if 200 <= status < 300 and info.is_json and not info.has_error:
        items = _list_items(info.doc, listing)
        if items is not None:
            return items, _has_more(info.doc)
        if not _holds_records(info.doc):
            return [], False  # a success reply with no list at all: an empty listing
    if info.has_error or status == 404 or status == 204:
        text = f"{info.message or ''} {info.snippet}"
        if status == 204 or _NO_RECORDS.search(text):
            return [], False
    _raise_for_error(status, headers, info, what=listing.what, creating=False, now=now)
    raise ServerError(
        f"Zoho answered {listing.what} without a list of {listing.many} "
        f"({_describe(info, status)}); {listing.unreadable}",
        status=status,
        code=info.code,
    )


def _classify_trainers(
    status: int, headers: Mapping[str, str], body: str, *, now: float | None = None
) -> tuple[list[dict[str, Any]], bool | None]:
    return _classify_list(status, headers, body, now=now, listing=_TRAINERS)


def _list_items(doc: Any, listing: _Listing = _SESSIONS) -> list[dict[str, Any]] | None:
    """The list of items under any of the keys seen in Zoho list replies, or a bare list."""
    candidates: list[Any] = [doc]
    if isinstance(doc, dict):
        response = doc.get("response") if isinstance(doc.get("response"), dict) else {}
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
            inner = _list_items(found, listing)
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


def _unwrap(item: dict[str, Any], id_key: str = "sessionId") -> dict[str, Any]:
    """Zoho People form lists wrap each record as ``{"<recordId>": [{...}]}``: unwrap that."""
    if len(item) == 1:
        ((key, value),) = item.items()
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
            return {id_key: key, **value[0]}
    return item


def _has_more(doc: Any) -> bool | None:
    if not isinstance(doc, dict):
        return None
    for holder in (doc, doc.get("response")):
        if isinstance(holder, dict) and "hasMoreRecords" in holder:
            value = holder["hasMoreRecords"]
            if isinstance(value, str):
                return value.strip().lower() in ("true", "1", "yes")
            return bool(value)
    return None


# --------------------------------------------------------------------------------------------
# matching listed sessions (reconciliation)

_MONTHS = {
    m: i
    for i, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for m in names
}
_TIME_RE = re.compile(r"^\s*(\d{1,2})(?:[:.](\d{2}))?(?::(\d{2}))?\s*([ap])\.?\s*m?\.?\s*$", re.I)
_TIME24_RE = re.compile(r"^\s*(\d{1,2})[:.](\d{2})(?::(\d{2})(?:\.\d+)?)?\s*$")


def _dates(text: Any) -> set[date]:
    """Every date a listed date string can mean.

    Zoho's LMS uses dd-MM-yyyy; ISO yyyy-MM-dd and month names (30-Dec-2021, Dec 30, 2021) are
    unambiguous. A slash form with both parts <= 12 (01/02/2022) could be either order, depending
    on the organisation's date format, so both readings are returned; name and start time must
    match too, so the extra reading costs little.
    """
    if not isinstance(text, str) or not text.strip():
        return set()
    s = text.strip()
    out: set[date] = set()

    def add(y: int, m: int, d: int) -> None:
        with contextlib.suppress(ValueError):
            out.add(date(y, m, d))

    m = re.match(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:$|[T ])", s)
    if m:
        add(int(m[1]), int(m[2]), int(m[3]))
        return out
    m = re.match(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{4})(?:$|[T ])", s)
    if m:
        a, b, y = int(m[1]), int(m[3]), int(m[4])
        add(y, b, a)  # dd-MM-yyyy, Zoho's format
        if m[2] == "/":
            add(y, a, b)  # MM/dd/yyyy in organisations that use it
        return out
    m = re.match(r"^(\d{1,2})[-/ ]([A-Za-z]{3,9})[-/ ,]+(\d{4})", s)
    if m and m[2].lower() in _MONTHS:
        add(int(m[3]), _MONTHS[m[2].lower()], int(m[1]))
        return out
    m = re.match(r"^([A-Za-z]{3,9})[-/ ](\d{1,2}),?[-/ ](\d{4})", s)
    if m and m[1].lower() in _MONTHS:
        add(int(m[3]), _MONTHS[m[1].lower()], int(m[2]))
    return out


def _minutes(text: Any) -> int | None:
    """Minutes after midnight of "10:00 AM", "10:00am", "10 am", "10:00", "22:00:00"."""
    if not isinstance(text, str):
        return None
    s = text.strip()
    m = _TIME_RE.match(s)
    if m:
        hour, minute = int(m[1]), int(m[2] or 0)
        if not 1 <= hour <= 12 or minute > 59:
            return None
        hour = hour % 12 + (12 if m[4].lower() == "p" else 0)
        return hour * 60 + minute
    m = _TIME24_RE.match(s)
    if m:
        hour, minute = int(m[1]), int(m[2])
        if hour > 23 or minute > 59:
            return None
        return hour * 60 + minute
    return None


def _split_datetime(text: Any) -> tuple[Any, Any]:
    """Split "30-12-2021 10:00 AM" or "2021-12-30T10:00:00" into (date part, time part)."""
    if not isinstance(text, str):
        return text, None
    m = re.match(r"^\s*(\S+?)(?:[T ]+(\d{1,2}[:.]\d{2}.*))?\s*$", text)
    if m and m[2]:
        return m[1], re.sub(r"([+-]\d{2}:?\d{2}|Z)$", "", m[2]).strip()
    return text, None


def _name(text: Any) -> str | None:
    """Names compare after HTML-unescaping (Zoho escapes text in some replies) and collapsing
    whitespace; case is kept (see docs/api-behaviour.md)."""
    if not isinstance(text, str):
        return None
    return " ".join(html.unescape(text).split()) or None


def _first(item: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = item.get(key)
        if value not in (None, ""):
            return value
    return None


def session_matches(item: Mapping[str, Any], req: Request) -> bool:
    """Whether a listed session is the one `req` would create: same name, date and start time."""
    want_name = _name(req.session_data.get("name"))
    want_dates = _dates(req.session_data.get("date"))
    want_start = _minutes(req.session_data.get("startTime"))
    if want_name is None or not want_dates or want_start is None:
        return False
    if _name(_first(item, "sessionName", "name")) != want_name:
        return False
    raw_date, time_part = _split_datetime(
        _first(item, "sessionStartDate", "date", "startDate", "sessionDate")
    )
    if not (_dates(raw_date) & want_dates):
        return False
    start = _first(item, "sessionStartTime", "startTime") or time_part
    return _minutes(start) == want_start


def _readable(item: Mapping[str, Any]) -> bool:
    raw_date, time_part = _split_datetime(
        _first(item, "sessionStartDate", "date", "startDate", "sessionDate")
    )
    return (
        _name(_first(item, "sessionName", "name")) is not None
        and bool(_dates(raw_date))
        and _minutes(_first(item, "sessionStartTime", "startTime") or time_part) is not None
    )


def _session_id(item: Mapping[str, Any]) -> str | None:
    return _text(_first(item, "sessionId", "id", "session_id"))


# --------------------------------------------------------------------------------------------
# the client


class LmsClient:
    """Creates and lists sessions, lists trainers; every failure surfaces as one ApiError
    subclass.

    ``pace`` is awaited before every API request (the shared lock gate and rate limiter); the
    token endpoint is not paced. An auth failure is answered by one token refresh and one retry.
    """

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        session: aiohttp.ClientSession,
        payload_style: PayloadStyle = "query",
        pace: Callable[[], Awaitable[object]] | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if payload_style not in ("query", "form", "json"):
            raise ValueError(f"payload_style must be query, form or json, not {payload_style!r}")
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self._base = check_base_url(base_url)
        self._tokens = tokens
        self._session = session
        self._style: PayloadStyle = payload_style
        self._pace = pace
        # No total: a slow but progressing reply is fine. connect bounds getting a connection
        # (nothing sent yet: NotSent); sock_read bounds each wait for reply bytes (the request
        # was written: OutcomeUnknown).
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=timeout
        )

    def __repr__(self) -> str:
        return f"LmsClient({self._base!r}, payload_style={self._style!r})"

    @property
    def base_url(self) -> str:
        return self._base

    # -- public API -----------------------------------------------------------------------

    async def create_session(self, req: Request) -> str:
        """POST the session; return its sessionId or raise an ApiError subclass."""
        compact = json.dumps(req.session_data, separators=(",", ":"), ensure_ascii=True)
        url = f"{self._base}{req.path}"
        data: bytes | None = None
        headers: dict[str, str] = {}
        if self._style == "query":
            url = f"{url}?sessionData={urllib.parse.quote(compact, safe='')}"
        elif self._style == "form":
            data = urllib.parse.urlencode({"sessionData": compact}).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = compact.encode("ascii")
            headers["Content-Type"] = "application/json"
        return await self._call(
            "POST",
            url,
            data,
            headers,
            what="the session",
            creating=True,
            classify=classify_create,
        )

    async def list_module_sessions(
        self, course_id: str, batch_id: str, module_id: str
    ) -> list[dict[str, Any]]:
        """Every session listed for a module (raw items, field names as Zoho sends them)."""
        out: list[dict[str, Any]] = []
        async for page in self._pages(course_id, batch_id, module_id):
            out.extend(page)
        return out

    async def list_trainers(self) -> list[dict[str, Any]]:
        """The first page of the organisation's trainers (raw items, as Zoho sends them).

        One paced call and no more, whatever ``hasMoreRecords`` says: this is the ID-free
        harmless read of ``auth --check``, which needs to prove the credentials and scope, not
        to enumerate every trainer. Classified like the session listing (lock, one refresh on
        an auth failure, scope, ...); an empty organisation is an empty list.
        """
        items, _ = await self._call(
            "GET",
            f"{self._base}/api/v1/trainers?startIndex=0",
            None,
            {},
            what=_TRAINERS.what,
            creating=False,
            classify=_classify_trainers,
        )
        return list(items)

    async def find_session(self, req: Request) -> str | None:
        """The sessionId of a listed session matching `req` by name, date and start time.

        Used after OutcomeUnknown. Stops at the first match to spend as few calls as possible;
        a listing failure raises (never OutcomeUnknown: a read changes nothing).
        """
        understood = 0
        first_keys: list[str] | None = None
        async for page in self._pages(req.course_id, req.batch_id, req.module_id):
            for item in page:
                if session_matches(item, req):
                    sid = _session_id(item)
                    if sid:
                        return sid
                if _readable(item):
                    understood += 1
                elif first_keys is None:
                    first_keys = sorted(item)[:12]
        if first_keys is not None and understood == 0:
            # Concluding "not there" from items we cannot read would invite a duplicate.
            raise ServerError(
                "cannot read the session listing: its items have no recognisable name, date "
                f"and start time fields (keys: {', '.join(first_keys)}); not resending"
            )
        return None

    # -- internals ------------------------------------------------------------------------

    async def _pages(
        self, course_id: str, batch_id: str, module_id: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        path = f"/api/v1/courses/{course_id}/batches/{batch_id}/modules/{module_id}/sessions"
        start = 0
        previous: list[str | None] | None = None
        for _ in range(MAX_PAGES):
            items, has_more = await self._call(
                "GET",
                f"{self._base}{path}?startIndex={start}",
                None,
                {},
                what=_SESSIONS.what,
                creating=False,
                classify=_classify_list,
            )
            ids = [_session_id(i) for i in items]
            if items and ids == previous:
                log.warning("the session listing repeated a page; startIndex seems ignored")
                return
            previous = ids
            yield items
            if not items or has_more is False:
                return
            if has_more is None and len(items) < PAGE_SIZE:
                return
            start += len(items)
        log.warning("stopped listing sessions of module %s after %d pages", module_id, MAX_PAGES)

    async def _call(
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        *,
        what: str,
        creating: bool,
        classify: Callable[..., Any],
    ) -> Any:
        """Pace, send, classify; on an auth failure refresh the token once and try again."""
        stale: str | None = None
        for attempt in (1, 2):
            if self._pace is not None:
                await self._pace()
            token = await self._token(stale)
            status, resp_headers, body = await self._send(
                method,
                url,
                data,
                {**headers, "Authorization": f"Zoho-oauthtoken {token}"},
                what=what,
                creating=creating,
            )
            body = body.replace(token, "[redacted]")  # a server that echoes the header
            try:
                return classify(status, resp_headers, body)
            except AuthExpired as exc:
                if attempt == 2:
                    raise AuthExpired(
                        f"{exc.message}, even after a token refresh; check the credentials "
                        "(ZOHO_REFRESH_TOKEN / ZOHO_ACCESS_TOKEN) and the data centre",
                        status=exc.status,
                        code=exc.code,
                    ) from None
                log.info("access token rejected (%s); refreshing once", exc.code or exc.status)
                stale = token
        raise AssertionError("unreachable")  # pragma: no cover

    async def _token(self, stale: str | None) -> str:
        """A token from the provider; AuthError becomes AuthExpired (or NotSent when the token
        endpoint was merely unreachable) so callers only ever handle ApiError."""
        try:
            if stale is None:
                return await self._tokens.token()
            return await self._tokens.refresh(stale)
        except AuthError as exc:
            if exc.transient:
                raise NotSent(exc.message) from None
            raise AuthExpired(exc.message) from None

    async def _send(
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        *,
        what: str,
        creating: bool,
    ) -> tuple[int, Mapping[str, str], str]:
        """One HTTP exchange. Connection failures are split by whether the request left.

        Redirects are not followed: aiohttp would turn a redirected POST into a GET, and a
        redirect from the API means a wrong base URL anyway.
        """
        host = URL(url, encoded=True).host
        try:
            async with self._session.request(
                method,
                URL(url, encoded=True),
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                status, resp_headers, charset = resp.status, resp.headers, resp.charset
        except aiohttp.ClientConnectorCertificateError as exc:
            raise Fatal(
                f"the TLS certificate of {host} could not be verified ({_reason(exc)}); "
                "check the base URL and the system's CA certificates"
            ) from None
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            # Raised while obtaining a connection (DNS, TCP connect, TLS handshake, or waiting
            # for a pooled connection): no byte of the request was written.
            raise NotSent(
                f"could not connect to {host} ({_reason(exc)}); {what} was not sent"
            ) from None
        except aiohttp.InvalidURL as exc:
            raise Fatal(f"invalid request URL for {what} ({_reason(exc)})") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Read timeout, server disconnect, truncated body, reset: the request was (or may
            # have been) written, so the server may have acted on it.
            if creating:
                raise OutcomeUnknown(
                    f"lost contact with {host} after sending {what} ({_reason(exc)}); it may "
                    "have been created, checking before any resend"
                ) from None
            raise ServerError(
                f"lost contact with {host} while reading {what} ({_reason(exc)})"
            ) from None
        try:
            text = raw.decode(charset or "utf-8", errors="replace")
        except LookupError:
            text = raw.decode("utf-8", errors="replace")
        log.debug("%s %s -> HTTP %d", method, URL(url, encoded=True).path, status)
        return status, resp_headers, text


def _reason(exc: BaseException) -> str:
    """Exception class plus a short reason, for messages an admin can act on."""
    name = type(exc).__name__
    detail = ""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        detail = os_error.strerror
    elif isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        detail = "timed out"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        detail = "the server closed the connection without replying"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        detail = "the reply was cut off"
    elif isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror
    return f"{name}: {detail}" if detail else name


__all__ = [
    "DATA_CENTRES",
    "ApiError",
    "AuthExpired",
    "Fatal",
    "LmsClient",
    "Locked",
    "NotSent",
    "OutcomeUnknown",
    "Rejected",
    "ServerError",
    "check_base_url",
    "classify_create",
    "session_matches",
]

"""The Zoho People LMS HTTP client: creates, updates and reads, each through the shared pace.

Every reply is classified exactly once, in :mod:`bulkschedule.zoho.classify`; listed items are
read in :mod:`bulkschedule.zoho.matching` and :mod:`bulkschedule.zoho.records`. This module only
does the HTTP: building requests, pagination, one token refresh on an auth failure, and telling
apart the connection failures where the request never left (NotSent) from those where it may
have arrived (OutcomeUnknown for a create).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar, runtime_checkable

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
from bulkschedule.core.request import Request, encode
from bulkschedule.zoho.auth import TokenProvider
from bulkschedule.zoho.classify import (
    ACTIVE_TRAINERS,
    BATCHES,
    COURSES,
    MODULES,
    ROOMS,
    SESSION_RECORDS,
    SESSIONS,
    TRAINERS,
    Listing,
    Page,
    UnreadableReply,
    classify_create,
    classify_page,
    classify_update,
)
from bulkschedule.zoho.matching import readable, session_id, session_matches
from bulkschedule.zoho.records import (
    Batch,
    Course,
    ListedSession,
    Module,
    Room,
    Source,
    Trainer,
    read_batches,
    read_courses,
    read_modules,
    read_rooms,
    read_sessions,
    read_trainers,
)
from bulkschedule.zoho.urls import check_base_url

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Records per page of an LMS listing (Zoho's documented page size).
PAGE_SIZE = 25
#: A listing that never says "no more" (or ignores startIndex) must not loop forever:
#: 400 pages is 10,000 records in one listing, far beyond any real module or org.
MAX_PAGES = 400

#: What aiohttp refuses in a header value (RFC 9110 5.5): checked before anything is sent.
_HEADER_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Classifier = Callable[[int, Mapping[str, str], str], T]


@runtime_checkable
class PaceSlot(Protocol):
    """What a pace may return (`send.limiter.Slot`): told when the call's reply came, because the
    server may count the call at any moment until then. A pace returning anything else (None, a
    start time) is simply awaited."""

    def done(self) -> None: ...


def _finished(slot: object) -> None:
    if isinstance(slot, PaceSlot):
        slot.done()


def _segment(value: str) -> str:
    """One path segment: an ID is digits, but nothing a sheet or a reply holds may add a '/'."""
    return urllib.parse.quote(str(value), safe="")


def _sessions_path(course_id: str, batch_id: str, module_id: str | None = None) -> str:
    path = f"/api/v1/courses/{_segment(course_id)}/batches/{_segment(batch_id)}"
    if module_id is not None:
        path += f"/modules/{_segment(module_id)}"
    return path + "/sessions"


class LmsClient:
    """Creates, updates and lists sessions and reads the org; every failure surfaces as one
    ApiError subclass.

    ``pace`` is awaited before every API request, reads included (the shared lock gate and rate
    limiter: reads count against the same threshold); the token endpoint is not paced. If it
    returns a `PaceSlot`, the slot is marked done once the reply has been read or the request
    failed. An auth failure is answered by one token refresh and one retry.
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

    # -- writes ---------------------------------------------------------------------------

    async def create_session(self, req: Request) -> str:
        """POST the session; return its sessionId or raise an ApiError subclass."""
        suffix, data, headers = self._encode(req.session_data)
        return await self._call(
            "POST",
            f"{self._base}{req.path}{suffix}",
            data,
            headers,
            what="the session",
            creating=True,
            classify=classify_create,
        )

    async def update_session(
        self,
        course_id: str,
        batch_id: str,
        module_id: str,
        session_id: str,
        session_data: Mapping[str, str],
    ) -> str:
        """PATCH a session with the whole ``session_data`` (whether Zoho takes partial fields
        is not published), in the configured payload style; return its sessionId.

        Classified like a create, but an update may be sent again (it sets the same values), so
        a lost reply is a ServerError, never OutcomeUnknown. A 404 is a Rejected saying the
        session was deleted in Zoho.
        """
        suffix, data, headers = self._encode(session_data)
        path = f"{_sessions_path(course_id, batch_id, module_id)}/{_segment(session_id)}"

        def classify(status: int, resp_headers: Mapping[str, str], body: str) -> str:
            return classify_update(status, resp_headers, body, session_id=session_id)

        return await self._call(
            "PATCH",
            f"{self._base}{path}{suffix}",
            data,
            headers,
            what=f"the update of session {session_id}",
            creating=False,
            classify=classify,
        )

    async def patch_session(self, req: Request) -> str:
        """`update_session` for a request that names its session (``req.session_id``)."""
        if req.session_id is None:
            raise ValueError("patch_session needs a request with a session_id")
        return await self.update_session(req.course_id, req.batch_id, req.module_id,
                                         req.session_id, req.session_data)

    def _encode(self, session_data: Mapping[str, str]) -> tuple[str, bytes | None, dict[str, str]]:
        """(query suffix, body, headers) carrying ``sessionData`` in the configured style."""
        encoded = encode(session_data, self._style)
        headers = {"Content-Type": encoded.content_type} if encoded.content_type else {}
        return encoded.suffix, encoded.body, headers

    # -- session reads used by sending --------------------------------------------------------

    async def list_module_sessions(
        self, course_id: str, batch_id: str, module_id: str
    ) -> list[dict[str, Any]]:
        """Every session listed for a module (raw items, field names as Zoho sends them)."""
        out: list[dict[str, Any]] = []
        async for page in self._pages(_sessions_path(course_id, batch_id, module_id), SESSIONS):
            out.extend(page)
        return out

    async def list_trainers(self) -> list[dict[str, Any]]:
        """The first page of the organisation's trainers (raw items, as Zoho sends them).

        One paced call and no more, whatever ``hasMoreRecords`` says: this is the ID-free
        harmless read of ``auth --check``, which needs to prove the credentials and scope, not
        to enumerate every trainer (that is :meth:`list_active_trainers`). Classified like the
        session listing (lock, one refresh on an auth failure, scope, ...); an empty
        organisation is an empty list.
        """

        def classify(status: int, headers: Mapping[str, str], body: str) -> Page:
            return classify_page(status, headers, body, listing=TRAINERS)

        page = await self._call(
            "GET",
            f"{self._base}/api/v1/trainers?startIndex=0",
            None,
            {},
            what=TRAINERS.what,
            creating=False,
            classify=classify,
        )
        return list(page.items)

    async def find_session(self, req: Request) -> str | None:
        """The sessionId of a listed session matching `req` by name, date and start time.

        Used after OutcomeUnknown. Stops at the first match to spend as few calls as possible;
        a listing failure raises (never OutcomeUnknown: a read changes nothing).
        """
        understood = 0
        first_keys: list[str] | None = None
        path = _sessions_path(req.course_id, req.batch_id, req.module_id)
        async for page in self._pages(path, SESSIONS):
            for item in page:
                if session_matches(item, req):
                    sid = session_id(item)
                    if sid:
                        return sid
                if readable(item):
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

    # -- org reads (every page paced; an unreadable shape is UnreadableReply) ----------------

    async def list_courses(
        self, *, search: str | None = None, state: str | None = None
    ) -> list[Course]:
        """Every course (``state``: drafted, published or disabled, as Zoho filters them)."""
        query = [(k, v) for k, v in (("search", search), ("state", state)) if v]
        items, source = await self._read("/api/v1/courses", COURSES, query)
        return read_courses(items, source)

    async def list_batches(self, course_id: str) -> list[Batch]:
        """The batches of a course, with their start and end dates."""
        path = f"/api/v1/courses/{_segment(course_id)}/batches"
        items, source = await self._read(path, BATCHES)
        return read_batches(items, source, course_id=course_id)

    async def list_modules(self, course_id: str, batch_id: str) -> list[Module]:
        """The modules of a batch."""
        path = f"/api/v1/courses/{_segment(course_id)}/batches/{_segment(batch_id)}/modules"
        items, source = await self._read(path, MODULES)
        return read_modules(items, source, course_id=course_id, batch_id=batch_id)

    async def list_active_trainers(self) -> list[Trainer]:
        """Every active LMS trainer (all pages), with name and email where Zoho gives them."""
        items, source = await self._read(
            "/api/v1/trainers", ACTIVE_TRAINERS, [("employeeStatus", "active")]
        )
        return read_trainers(items, source)

    async def list_rooms(self) -> list[Room]:
        """Every room, with its location's name."""
        items, source = await self._read("/api/v1/rooms", ROOMS)
        return read_rooms(items, source)

    async def list_sessions(
        self, course_id: str, batch_id: str, module_id: str | None = None
    ) -> list[ListedSession]:
        """The sessions Zoho holds in a module, or (``module_id`` None) in every module of a
        batch: one listing, the cheapest way to see what exists. For a module listing, items
        that do not say their module get ``module_id``."""
        path = _sessions_path(course_id, batch_id, module_id)
        items, source = await self._read(path, SESSION_RECORDS)
        sessions = read_sessions(items, source)
        if module_id is None:
            return sessions
        return [s if s.module_id else replace(s, module_id=module_id) for s in sessions]

    # -- internals ------------------------------------------------------------------------

    async def _read(
        self, path: str, listing: Listing, query: Sequence[tuple[str, str]] = ()
    ) -> tuple[list[dict[str, Any]], Source]:
        """Every item of a listing, and where it came from (for the record readers' messages)."""
        source = Source(f"{listing.what} (GET {path})", path)
        out: list[dict[str, Any]] = []
        async for page in self._pages(path, listing, query, what=source.what):
            out.extend(page)
        return out, source

    async def _pages(
        self,
        path: str,
        listing: Listing,
        query: Sequence[tuple[str, str]] = (),
        *,
        what: str | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The pages of a listing: ``startIndex`` moves by the items received; stops on
        ``hasMoreRecords`` false, on a short page when that flag is absent, on a page repeated
        (startIndex ignored), or after MAX_PAGES."""
        what = what or listing.what

        def classify(status: int, headers: Mapping[str, str], body: str) -> Page:
            return classify_page(
                status, headers, body, listing=listing, what=what, endpoint=path
            )

        start = 0
        previous: list[dict[str, Any]] | None = None
        for _ in range(MAX_PAGES):
            params = urllib.parse.urlencode([("startIndex", str(start)), *query])
            page = await self._call(
                "GET",
                f"{self._base}{path}?{params}",
                None,
                {},
                what=what,
                creating=False,
                classify=classify,
            )
            if page.items and page.items == previous:
                log.warning("%s repeated a page; startIndex seems ignored", what)
                return
            previous = page.items
            yield page.items
            if not page.items or page.has_more is False:
                return
            if page.has_more is None and len(page.items) < PAGE_SIZE:
                return
            start += len(page.items)
        log.warning("stopped reading %s after %d pages", what, MAX_PAGES)

    async def _call(
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        *,
        what: str,
        creating: bool,
        classify: Classifier[T],
    ) -> T:
        """Pace, send, classify; on an auth failure refresh the token once and try again."""
        stale: str | None = None
        for attempt in (1, 2):
            slot = await self._pace() if self._pace is not None else None
            try:
                token = await self._token(stale)
                if _HEADER_FORBIDDEN.search(token):
                    # aiohttp would refuse the header before sending; every request would fail
                    # alike, so this stops the run (Fatal) instead of retrying row after row.
                    raise Fatal(
                        "the access token contains a control character (a line break?), which "
                        f"an HTTP header cannot carry; {what} was not sent; check "
                        "ZOHO_ACCESS_TOKEN"
                    )
                status, resp_headers, body = await self._send(
                    method,
                    url,
                    data,
                    {**headers, "Authorization": f"Zoho-oauthtoken {token}"},
                    what=what,
                    creating=creating,
                )
            except Exception:
                _finished(slot)  # not sent, or the client gave up waiting: no reply will come
                raise
            # The reply is in: the server cannot count this call any later. A cancellation
            # (BaseException) leaves the slot open, as the request may still be on its way.
            _finished(slot)
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
                    ) from exc
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
        except AuthError as exc:  # its message is safe to show (never holds a secret)
            if exc.transient:
                raise NotSent(exc.message) from exc
            raise AuthExpired(exc.message) from exc

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
        try:
            target = URL(url, encoded=True)
        except (ValueError, TypeError) as exc:
            raise NotSent(f"cannot build the request URL for {what} ({exc}); not sent") from exc
        host = target.host
        try:
            async with self._session.request(
                method,
                target,
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
            ) from exc
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            # Raised while obtaining a connection (DNS, TCP connect, TLS handshake, or waiting
            # for a pooled connection): no byte of the request was written.
            raise NotSent(
                f"could not connect to {host} ({_reason(exc)}); {what} was not sent"
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise Fatal(f"invalid request URL for {what} ({_reason(exc)})") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Read timeout, server disconnect, truncated body, reset: the request was (or may
            # have been) written, so the server may have acted on it.
            if creating:
                raise OutcomeUnknown(
                    f"lost contact with {host} after sending {what} ({_reason(exc)}); it may "
                    "have been created, checking before any resend"
                ) from exc
            raise ServerError(
                f"lost contact with {host} while waiting for the reply to {what} "
                f"({_reason(exc)})"
            ) from exc
        except (ValueError, TypeError) as exc:
            # aiohttp checks the method, URL and header values while building the request,
            # before a byte is written (its reply-side failures are ClientErrors, above), so
            # this was not sent. `from None`: such a message may quote a header value, and the
            # Authorization header holds the token.
            raise NotSent(
                f"aiohttp refused to build the request for {what} ({type(exc).__name__}); "
                "it was not sent"
            ) from None
        try:
            text = raw.decode(charset or "utf-8", errors="replace")
        except LookupError:
            text = raw.decode("utf-8", errors="replace")
        log.debug("%s %s -> HTTP %d", method, target.path, status)
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
    "MAX_PAGES",
    "PAGE_SIZE",
    "ApiError",
    "AuthExpired",
    "Batch",
    "Course",
    "Fatal",
    "ListedSession",
    "LmsClient",
    "Locked",
    "Module",
    "NotSent",
    "OutcomeUnknown",
    "PaceSlot",
    "Rejected",
    "Room",
    "ServerError",
    "Trainer",
    "UnreadableReply",
    "check_base_url",
    "classify_create",
    "classify_update",
    "session_matches",
]

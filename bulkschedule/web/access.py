"""Who may use the upload page: loopback or a password, a session cookie, CSRF and Origin checks.

The rules (see ``docs/upload-page.md``):

* bound to loopback by default; on any other address a shared password is required;
* without a password the page answers only to loopback Host names (no DNS rebinding);
* every POST carries a token tied to the session cookie and a matching Origin (or Referer);
* after a login the session id is new (a session fixed before it is worth nothing), and failed
  logins are throttled per client address.

`guard` and `add_headers` enforce them on every request; `Access` keeps the sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

PASSWORD_ENV = "BULKSCHEDULE_WEB_PASSWORD"
MIN_PASSWORD = 8
COOKIE = "bulkschedule_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL = 12 * 3600.0
MAX_SESSIONS = 1000
LOGIN_ATTEMPTS = 10  # failed logins per client address ...
LOGIN_WINDOW = 60.0  # ... in this many seconds, then 429

_SID_RE = re.compile(r"[0-9a-f]{64}")
SID: web.RequestKey[str] = web.RequestKey("bulkschedule_sid", str)
NEW_SID: web.RequestKey[str] = web.RequestKey("bulkschedule_new_sid", str)


class WebError(Exception):
    """The server cannot start as asked (e.g. a public address without a password)."""


class Refused(Exception):
    """A request that gets a page with a message and a status instead of the normal answer."""

    def __init__(self, status: int, message: str, *,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})  # e.g. Retry-After on a 503


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address to bind, or a Host header's name) is this machine only."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_access(host: str, password: str | None) -> None:
    """Refuse to serve a non-loopback address without a password (anyone on the network could
    otherwise create sessions with the admin's credentials)."""
    if password is not None and len(password) < MIN_PASSWORD:
        raise WebError(f"the web password must be at least {MIN_PASSWORD} characters")
    if not is_loopback(host) and not password:
        raise WebError(
            f"--host {host} is reachable from other machines: set a password in "
            f"${PASSWORD_ENV} (or name another variable with --password-env), or bind 127.0.0.1")


def host_name(host_header: str) -> str:
    """The name part of a Host header: ``[::1]:8080`` -> ``[::1]``, ``a:80`` -> ``a``."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def same_origin(request: web.Request) -> bool:
    """The POST came from one of our own pages: its Origin (else Referer) names our host."""
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin == "null":
            return False
        source = origin
    else:
        source = request.headers.get("Referer", "")
    if not source:
        return False
    try:
        netloc = urlsplit(source).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == request.host.lower()


def local_path(target: str | None) -> str:
    """Only same-site paths after a login: no open redirect to ``//evil`` or ``https://...``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@dataclass
class Access:
    """The page's password (None: loopback only, no login), its sessions and failed logins."""

    password: str | None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    sessions: OrderedDict[str, float] = field(default_factory=OrderedDict)
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def csrf(self, sid: str) -> str:
        return hmac.new(self.secret, f"csrf:{sid}".encode(), hashlib.sha256).hexdigest()

    def token_ok(self, request: web.Request, given: str | None) -> bool:
        sid = request.get(SID)
        if not sid or not given:
            return False
        return hmac.compare_digest(self.csrf(sid), given)

    def authenticated(self, sid: str | None) -> bool:
        if self.password is None:
            return True
        if not sid:
            return False
        expires = self.sessions.get(sid)
        if expires is None or expires < time.monotonic():
            self.sessions.pop(sid, None)
            return False
        return True

    def login(self) -> str:
        sid = secrets.token_hex(32)
        self.sessions[sid] = time.monotonic() + SESSION_TTL
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return sid

    def password_ok(self, given: str) -> bool:
        assert self.password is not None
        # Hash both sides first: compare_digest is constant-time only for equal lengths.
        a = hashlib.sha256(given.encode("utf-8", "replace")).digest()
        b = hashlib.sha256(self.password.encode("utf-8")).digest()
        return hmac.compare_digest(a, b)

    def throttled(self, who: str) -> bool:
        now = time.monotonic()
        recent = self.failures.get(who)
        if recent is None:
            return False
        while recent and recent[0] < now - LOGIN_WINDOW:
            recent.popleft()
        return len(recent) >= LOGIN_ATTEMPTS

    def failed_login(self, who: str) -> None:
        if len(self.failures) > MAX_SESSIONS:
            self.failures.clear()
        self.failures.setdefault(who, deque()).append(time.monotonic())

    def logout(self, sid: str | None) -> None:
        self.sessions.pop(sid or "", None)


ACCESS: web.AppKey[Access] = web.AppKey("bulkschedule_access", Access)


def csrf_token(request: web.Request) -> str:
    """The token this visitor's forms must carry ("" before the cookie exists)."""
    sid = request.get(SID)
    return request.app[ACCESS].csrf(sid) if sid else ""


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]
                 ) -> web.StreamResponse:
    """Host check, session cookie, login, CSRF: in that order, before any handler runs."""
    st = request.app[ACCESS]
    if st.password is None and not is_loopback(host_name(request.host)):
        # Without a password only loopback names are answered: a web page elsewhere cannot
        # point a hostname at 127.0.0.1 (DNS rebinding) and drive this one.
        raise Refused(403, "this page only answers on its loopback address "
                            "(open it as http://127.0.0.1:PORT/)")
    sid = request.cookies.get(COOKIE, "")
    if not _SID_RE.fullmatch(sid):
        sid = secrets.token_hex(32)
        request[NEW_SID] = sid
    request[SID] = sid

    path = request.path
    public = path.startswith("/static/") or path == "/login"
    if not public and not st.authenticated(sid):
        if request.method == "GET" and not path.endswith((".xlsx", "/events")):
            raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
        raise Refused(401, "log in first")

    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if not same_origin(request):
            raise Refused(403, "this form was not sent from this site (Origin/Referer check)")
        if not request.content_type.startswith("multipart/"):
            form = await request.post()
            given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
            if not st.token_ok(request, given if isinstance(given, str) else None):
                raise Refused(403, "the form has expired or did not come from this site: "
                                    "reload the page and try again")
        elif path != "/uploads":
            raise Refused(400, "this address does not take file uploads")
        # /uploads checks its token itself: it must come before the file in the stream.
    response: web.StreamResponse = await handler(request)
    return response


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on every response, and the session cookie for new visitors."""
    h = response.headers
    h.setdefault("Content-Security-Policy",
                 "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                 "base-uri 'none'; object-src 'none'")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    sid = request.get(NEW_SID)
    if sid and COOKIE not in response.cookies:
        # Headers are already built when this hook runs: add the Set-Cookie line directly.
        jar: SimpleCookie = SimpleCookie()
        jar[COOKIE] = sid
        morsel = jar[COOKIE]
        morsel["httponly"] = True
        morsel["samesite"] = "Strict"
        morsel["path"] = "/"
        if request.secure:
            morsel["secure"] = True
        response.headers.add("Set-Cookie", morsel.OutputString())



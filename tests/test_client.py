"""The LMS client: response classification, payload styles, listing/reconciliation, and what
aiohttp 3.14 really raises at the connection level (checked against real loopback servers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from aioresponses import CallbackResult, aioresponses
from zoho_fakes import (  # tests/ is on sys.path (no __init__.py), as for fakeclock
    BASE,
    NEW_TOKEN,
    OK_BODY,
    TOKEN,
    B,
    C,
    FakeTokens,
    M,
    Recorder,
    auth_headers,
    make_client,
    n_requests,
    recording_server,
)

from bulkschedule.core.request import Request
from bulkschedule.zoho import client as client_mod
from bulkschedule.zoho.auth import AuthError, StaticToken
from bulkschedule.zoho.client import (
    DATA_CENTRES,
    ApiError,
    AuthExpired,
    Fatal,
    LmsClient,
    Locked,
    NotSent,
    OutcomeUnknown,
    Rejected,
    ServerError,
    check_base_url,
    classify_create,
)

SESSIONS = f"{BASE}/api/v1/courses/{C}/batches/{B}/modules/{M}/sessions"
ANY_CREATE = re.compile(re.escape(SESSIONS) + r"(\?.*)?$")


def make_req(**data: str) -> Request:
    session_data = {
        "name": "Session API Testing",
        "trainerErecno": "478346000008251001",
        "type": "0",
        "date": "04-01-2022",
        "startTime": "10:00 AM",
        "endTime": "11:00 AM",
    }
    session_data.update(data)
    return Request(
        row=7,
        course_id=C,
        batch_id=B,
        module_id=M,
        session_data=session_data,
        identity="test",
        fingerprint="fp",
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session




# --------------------------------------------------------------------------------------------
# classify_create: pure


def test_success_returns_session_id_exactly() -> None:
    assert classify_create(200, {}, json.dumps(OK_BODY)) == "219225000000648145"


def test_success_with_code_as_string_and_numeric_id() -> None:
    body = '{"code": "200", "message": "success", "session": {"sessionId": 219225000000648145}}'
    assert classify_create(200, {}, body) == "219225000000648145"


def test_a_session_id_wins_even_with_an_odd_code() -> None:
    """The session exists; recording its id is what prevents a duplicate later."""
    body = '{"code": 7000, "session": {"sessionId": "5"}}'
    assert classify_create(200, {}, body) == "5"


def raises(
    exc_type: type[ApiError],
    status: int,
    body: str | dict,
    headers: Any = None,
    now: float | None = None,
) -> ApiError:
    text = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(exc_type) as info:
        classify_create(status, headers or {}, text, now=now)
    assert type(info.value) is exc_type
    return info.value


OLD_7209 = {
    "response": {
        "errors": {
            "code": 7209,
            "message": "API access blocked since threshold limit exceeded. "
            "Please try after some time",
        },
        "status": 1,
    }
}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, ""),
        (429, "<html><title>429 Too Many Requests</title></html>"),
        (422, {"code": 422, "message": "Maximum limit exceeded"}),
        (422, "Maximum limit exceeded"),
        (422, ""),
        (200, OLD_7209),
        (400, OLD_7209),
        (200, {"code": "7209", "message": "API access blocked"}),
        (400, {"code": 7209, "message": "whatever"}),
        (400, {"code": "API_LIMIT", "message": "Threshold reached for this API"}),
        (200, {"response": {"errors": {"code": 9999, "message": "Too many requests"}}}),
        (403, {"code": "X", "message": "Access blocked for this portal"}),
        (503, "<html><body><h1>Rate limit exceeded</h1></body></html>"),
        (200, "<html><head><title>Too Many Requests</title></head></html>"),
    ],
)
def test_lock_shapes(status: int, body: str | dict) -> None:
    exc = raises(Locked, status, body)
    assert exc.status == status
    assert "pausing all requests" in exc.message


def test_lock_retry_after_seconds_and_http_date() -> None:
    assert raises(Locked, 429, "", {"Retry-After": "120"}).retry_after == 120
    assert raises(Locked, 429, "", {"retry-after": "7"}).retry_after == 7  # any case
    assert raises(Locked, 429, "").retry_after is None
    date = "Wed, 21 Oct 2015 07:28:00 GMT"  # 1445412480
    assert raises(Locked, 429, "", {"Retry-After": date}, now=1445412480 - 90).retry_after == 90
    assert raises(Locked, 429, "", {"Retry-After": date}, now=1445412480 + 5).retry_after == 0
    assert raises(Locked, 429, "", {"Retry-After": "soon"}).retry_after is None
    exc = raises(Locked, 200, OLD_7209, {"Retry-After": "300"})
    assert exc.retry_after == 300 and exc.code == "7209"


def test_422_without_limit_wording_is_a_rejection() -> None:
    exc = raises(Rejected, 422, {"code": "INVALID_INPUT", "message": "Invalid value for type"})
    assert (
        exc.message == "Zoho refused the session: INVALID_INPUT: Invalid value for type (HTTP 422)"
    )


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, "", None),
        (401, {"code": "INVALID_OAUTHTOKEN", "message": "Invalid OAuth access token"}, None),
        (200, {"code": "INVALID_OAUTHTOKEN", "message": "Invalid OAuth access token"}, None),
        (
            200,
            {"response": {"errors": {"code": 7202, "message": "Invalid OAuth"}, "status": 1}},
            "7202",
        ),
        (400, {"response": {"errors": {"code": "7213", "message": "OAuth token expired"}}}, "7213"),
    ],
)
def test_auth_shapes(status: int, body: str | dict, code: str | None) -> None:
    exc = raises(AuthExpired, status, body)
    if code:
        assert exc.code == code


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, {"code": 403, "message": "Sorry! You are not authorized to do this operation"}),
        (200, {"response": {"errors": {"code": 7218, "message": "Invalid OAuthScope"}}}),
        (401, {"code": "7218", "message": "Invalid OAuthScope"}),  # refreshing cannot fix scope
        (301, ""),
    ],
)
def test_fatal_shapes(status: int, body: str | dict) -> None:
    raises(Fatal, status, body)


def test_scope_message_says_what_to_do() -> None:
    exc = raises(Fatal, 200, {"response": {"errors": {"code": 7218, "message": "Invalid scope"}}})
    assert "ZOHOPEOPLE.training.ALL" in exc.message and exc.code == "7218"


def test_redirect_message_names_the_target() -> None:
    exc = raises(Fatal, 302, "", {"Location": "https://accounts.zoho.eu/signin"})
    assert "https://accounts.zoho.eu/signin" in exc.message and "--dc" in exc.message


def test_rejected_message_is_useful_to_an_admin() -> None:
    body = {
        "code": "BATCH_DATE_AND_SESSION_DATE_MISMATCH",
        "message": "session date is outside the batch dates",
    }
    exc = raises(Rejected, 400, body)
    assert exc.message == (
        "Zoho refused the session: BATCH_DATE_AND_SESSION_DATE_MISMATCH: "
        "session date is outside the batch dates (HTTP 400)"
    )
    assert exc.code == "BATCH_DATE_AND_SESSION_DATE_MISMATCH" and exc.status == 400


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        ({"code": "INVALID_INPUT", "message": "Invalid input"}, "INVALID_INPUT", "Invalid input"),
        (
            {"response": {"errors": {"code": 7000, "message": "Bad date"}, "status": 1}},
            "7000",
            "Bad date",
        ),
        (
            {"response": {"errors": [{"code": 1, "message": "a"}, {"code": 2, "message": "b"}]}},
            "1",
            "a; b",
        ),
        ({"error": "INPUT_PARAMETER_MISSING"}, "INPUT_PARAMETER_MISSING", None),
        ({"code": 9001, "message": {"date": "invalid"}}, "9001", '{"date":"invalid"}'),
    ],
)
def test_errors_inside_a_200_are_rejections(body: dict, code: str, text: str | None) -> None:
    exc = raises(Rejected, 200, body)
    assert exc.code == code and exc.status == 200
    if text:
        assert text in exc.message


def test_other_4xx_including_non_json() -> None:
    assert raises(Rejected, 404, {"code": 404, "message": "Not found"}).status == 404
    exc = raises(Rejected, 400, "<html><head><title>Bad Request</title></head><body>x</body>")
    assert exc.message == "Zoho refused the session: Bad Request (HTTP 400)"
    exc = raises(Rejected, 414, "")
    assert "--payload-style form" in exc.message


def test_5xx() -> None:
    exc = raises(ServerError, 500, {"code": 500, "message": "Sorry! Server error occured"})
    assert "Sorry! Server error occured" in exc.message and exc.status == 500
    exc = raises(ServerError, 503, "<html><title>503 Service Unavailable</title><p>down</p>")
    assert "503 Service Unavailable" in exc.message


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_on_create_are_unknown(status: int) -> None:
    """The origin may have created the session behind a failing proxy: reconcile first."""
    raises(OutcomeUnknown, status, "<html><title>Gateway Timeout</title></html>")


@pytest.mark.parametrize(
    "body",
    [
        '{"code": 200, "message": "success"}',
        '{"code": "200", "message": "success", "session": {}}',
        "",
        "<html><body>Welcome</body></html>",
        "[]",
    ],
)
def test_200_without_session_id_is_unknown(body: str) -> None:
    exc = raises(OutcomeUnknown, 200, body)
    assert "checking before any resend" in exc.message


# --------------------------------------------------------------------------------------------
# check_base_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://people.zoho.com/", "https://people.zoho.com"),
        (" HTTPS://People.Zoho.EU// ", "https://people.zoho.eu"),
        ("https://example.com/people/", "https://example.com/people"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.5.6.7:1", "http://127.5.6.7:1"),
        ("http://localhost:9000", "http://localhost:9000"),
        ("http://[::1]:9000/", "http://[::1]:9000"),
    ],
)
def test_check_base_url_normalises(url: str, expected: str) -> None:
    assert check_base_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["http://people.zoho.com", "http://10.0.0.1", "http://localhost.evil.com", "http://128.0.0.1"],
)
def test_check_base_url_refuses_plain_http_off_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="refusing to send the access token over plain http"):
        check_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "people.zoho.com",
        "ftp://people.zoho.com",
        "",
        "https://u:p@people.zoho.com",
        "https://people.zoho.com/?x=1",
        "https://people.zoho.com:99999",
    ],
)
def test_check_base_url_refuses_nonsense(url: str) -> None:
    with pytest.raises(ValueError):
        check_base_url(url)


def test_data_centres_are_all_https() -> None:
    for people, accounts in DATA_CENTRES.values():
        assert check_base_url(people) == people and check_base_url(accounts) == accounts


def test_client_rejects_bad_options(http: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError):
        LmsClient("http://people.zoho.com", FakeTokens(), session=http)
    with pytest.raises(ValueError):
        LmsClient(BASE, FakeTokens(), session=http, payload_style="xml")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# create_session over aioresponses


async def test_create_sends_token_header_and_paces(http: aiohttp.ClientSession) -> None:
    c, pace = make_client(http)
    with aioresponses() as m:
        m.post(ANY_CREATE, payload=OK_BODY)
        assert await c.create_session(make_req()) == "219225000000648145"
        assert auth_headers(m) == [f"Zoho-oauthtoken {TOKEN}"]
        ((method, url),) = m.requests
        assert (
            method == "POST" and url.path == f"/api/v1/courses/{C}/batches/{B}/modules/{M}/sessions"
        )
    assert pace.calls == 1


async def test_401_then_success_after_one_refresh(http: aiohttp.ClientSession) -> None:
    tokens = FakeTokens()
    c, pace = make_client(http, tokens)
    with aioresponses() as m:
        m.post(ANY_CREATE, status=401, payload={"code": "INVALID_OAUTHTOKEN", "message": "x"})
        m.post(ANY_CREATE, payload=OK_BODY)
        assert await c.create_session(make_req()) == "219225000000648145"
        assert auth_headers(m) == [f"Zoho-oauthtoken {TOKEN}", f"Zoho-oauthtoken {NEW_TOKEN}"]
    assert tokens.refreshed == [TOKEN]
    assert pace.calls == 2  # the retry is paced too


async def test_invalid_oauthtoken_inside_200_is_refreshed(http: aiohttp.ClientSession) -> None:
    tokens = FakeTokens()
    c, _ = make_client(http, tokens)
    with aioresponses() as m:
        m.post(ANY_CREATE, payload={"code": "INVALID_OAUTHTOKEN", "message": "Invalid token"})
        m.post(ANY_CREATE, payload=OK_BODY)
        assert await c.create_session(make_req()) == "219225000000648145"
    assert tokens.refreshed == [TOKEN]


async def test_auth_failure_twice_raises_auth_expired(http: aiohttp.ClientSession) -> None:
    tokens = FakeTokens()
    c, pace = make_client(http, tokens)
    with aioresponses() as m:
        m.post(ANY_CREATE, status=401, body="", repeat=True)
        with pytest.raises(AuthExpired, match="even after a token refresh") as info:
            await c.create_session(make_req())
        assert n_requests(m) == 2
    assert tokens.refreshed == [TOKEN]
    assert pace.calls == 2
    assert TOKEN not in info.value.message and NEW_TOKEN not in info.value.message


async def test_static_token_refresh_failure_becomes_auth_expired(
    http: aiohttp.ClientSession,
) -> None:
    c, _ = make_client(http, StaticToken(TOKEN))
    with aioresponses() as m:
        m.post(ANY_CREATE, status=401, body="")
        with pytest.raises(AuthExpired, match="set a fresh ZOHO_ACCESS_TOKEN"):
            await c.create_session(make_req())
        assert n_requests(m) == 1


async def test_unreachable_token_endpoint_is_not_sent(http: aiohttp.ClientSession) -> None:
    tokens = FakeTokens(fail=AuthError("could not reach accounts", transient=True))
    c, _ = make_client(http, tokens)
    with aioresponses() as m, pytest.raises(NotSent, match="could not reach accounts"):
        await c.create_session(make_req())
    assert n_requests(m) == 0


@pytest.mark.parametrize(
    ("status", "body", "headers", "retry_after"),
    [
        (429, "", {"Retry-After": "60"}, 60),
        (422, '{"code": 422, "message": "Maximum limit exceeded"}', {}, None),
        (200, json.dumps(OLD_7209), {}, None),
        (400, '{"code": "7209", "message": "blocked"}', {}, None),
    ],
)
async def test_lock_through_client_is_not_retried(
    http: aiohttp.ClientSession, status: int, body: str, headers: dict, retry_after: float | None
) -> None:
    tokens = FakeTokens()
    c, pace = make_client(http, tokens)
    with aioresponses() as m:
        m.post(ANY_CREATE, status=status, body=body, headers=headers)
        with pytest.raises(Locked) as info:
            await c.create_session(make_req())
        assert n_requests(m) == 1
    assert info.value.retry_after == retry_after
    assert tokens.refreshed == [] and pace.calls == 1


@pytest.mark.parametrize(
    ("status", "body", "exc"),
    [
        (403, '{"code": 403, "message": "Sorry! You are not authorized"}', Fatal),
        (200, '{"response": {"errors": {"code": 7218, "message": "Invalid scope"}}}', Fatal),
        (400, '{"code": "INVALID_INPUT", "message": "Invalid input"}', Rejected),
        (500, "oops", ServerError),
        (200, "not json", OutcomeUnknown),
    ],
)
async def test_other_classes_through_client(
    http: aiohttp.ClientSession, status: int, body: str, exc: type[ApiError]
) -> None:
    tokens = FakeTokens()
    c, _ = make_client(http, tokens)
    with aioresponses() as m:
        m.post(ANY_CREATE, status=status, body=body)
        with pytest.raises(exc):
            await c.create_session(make_req())
        assert n_requests(m) == 1  # each response classified once, no hidden retries
    assert tokens.refreshed == []


async def test_token_echoed_by_the_server_is_redacted(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    c, _ = make_client(http)
    with aioresponses() as m:
        m.post(ANY_CREATE, status=400, payload={"code": "BAD", "message": f"bad header {TOKEN}"})
        with pytest.raises(Rejected) as info:
            await c.create_session(make_req())
    assert TOKEN not in info.value.message and "[redacted]" in info.value.message
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    assert TOKEN not in caplog.text and TOKEN not in repr(c)


# --------------------------------------------------------------------------------------------
# payload styles, seen by a real server (exact bytes on the wire)

SMALL = {"name": "Intro é & more", "date": "04-01-2022", "startTime": "10:00 AM"}
COMPACT = '{"name":"Intro \\u00e9 & more","date":"04-01-2022","startTime":"10:00 AM"}'
QUOTED = (
    "%7B%22name%22%3A%22Intro%20%5Cu00e9%20%26%20more%22%2C%22date%22%3A%2204-01-2022%22%2C"
    "%22startTime%22%3A%2210%3A00%20AM%22%7D"
)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    async with recording_server() as found:
        yield found


def small_req() -> Request:
    return Request(7, C, B, M, dict(SMALL), "id", "fp")


def test_compact_json_expectation_is_right() -> None:
    assert json.loads(COMPACT) == SMALL


async def test_query_style_on_the_wire(
    http: aiohttp.ClientSession, recorder: tuple[Recorder, str]
) -> None:
    rec, base = recorder
    c, _ = make_client(http, base=base)
    assert await c.create_session(small_req()) == "219225000000648145"
    (seen,) = rec.seen
    path = f"/api/v1/courses/{C}/batches/{B}/modules/{M}/sessions"
    assert seen["method"] == "POST"
    assert seen["raw_path"] == f"{path}?sessionData={QUOTED}"
    assert json.loads(seen["query"]["sessionData"]) == SMALL
    assert seen["body"] == b""
    assert seen["auth"] == f"Zoho-oauthtoken {TOKEN}"


async def test_form_style_on_the_wire(
    http: aiohttp.ClientSession, recorder: tuple[Recorder, str]
) -> None:
    rec, base = recorder
    c, _ = make_client(http, base=base, payload_style="form")
    await c.create_session(small_req())
    (seen,) = rec.seen
    assert seen["raw_path"] == f"/api/v1/courses/{C}/batches/{B}/modules/{M}/sessions"
    assert seen["content_type"] == "application/x-www-form-urlencoded"
    assert seen["body"] == ("sessionData=" + QUOTED.replace("%20", "+")).encode()
    assert json.loads(dict(parse_qsl(seen["body"].decode()))["sessionData"]) == SMALL


async def test_json_style_on_the_wire(
    http: aiohttp.ClientSession, recorder: tuple[Recorder, str]
) -> None:
    rec, base = recorder
    c, _ = make_client(http, base=base, payload_style="json")
    await c.create_session(small_req())
    (seen,) = rec.seen
    assert seen["raw_path"] == f"/api/v1/courses/{C}/batches/{B}/modules/{M}/sessions"
    assert seen["content_type"] == "application/json"
    assert seen["body"] == COMPACT.encode()


async def test_redirect_is_not_followed(
    http: aiohttp.ClientSession, recorder: tuple[Recorder, str]
) -> None:
    """aiohttp would turn a redirected POST into a GET; a redirect means a wrong base URL."""
    rec, base = recorder

    async def redirect(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/elsewhere")

    rec.reply = redirect
    c, _ = make_client(http, base=base)
    with pytest.raises(Fatal, match="redirected"):
        await c.create_session(small_req())
    assert len(rec.seen) == 1


# --------------------------------------------------------------------------------------------
# connection level, against real loopback servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def raw_server(handler: Callable[..., Awaitable[None]]) -> tuple[asyncio.Server, str]:
    """A bare TCP server for behaviour aiohttp's own test server will not produce."""

    async def tidy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tidy, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def test_connection_refused_is_not_sent(http: aiohttp.ClientSession) -> None:
    c, _ = make_client(http, base=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NotSent, match="was not sent"):
        await c.create_session(make_req())


async def test_dns_failure_is_not_sent(http: aiohttp.ClientSession) -> None:
    c, _ = make_client(http, base="https://no-such-host.invalid")
    with pytest.raises(NotSent, match=re.escape("no-such-host.invalid")):
        await c.create_session(make_req())


async def test_waiting_for_a_connection_past_connect_timeout_is_not_sent() -> None:
    """aiohttp's `connect` timeout covers waiting for a pooled connection: nothing was written."""
    release = asyncio.Event()
    holding = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        holding.set()
        await release.wait()
        writer.close()

    server, base = await raw_server(hold)
    async with server, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
        slow, _ = make_client(http, base=base, timeout=5)
        fast, _ = make_client(http, base=base, timeout=5, connect_timeout=0.2)
        first = asyncio.create_task(slow.create_session(make_req()))
        await holding.wait()  # the only pooled connection is now taken by `first`
        with pytest.raises(NotSent):
            await fast.create_session(make_req())
        release.set()
        with pytest.raises(OutcomeUnknown):
            await first


async def test_accept_then_close_without_reply_is_unknown(http: aiohttp.ClientSession) -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    server, base = await raw_server(close)
    async with server:
        c, _ = make_client(http, base=base)
        with pytest.raises(OutcomeUnknown, match="closed the connection") as info:
            await c.create_session(make_req())
    assert "ServerDisconnectedError" in info.value.message


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A server that reads the request and never answers (until the test is over)."""
    over = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await over.wait()

    server, base = await raw_server(silent)
    async with server:
        try:
            yield base
        finally:
            over.set()


async def test_slow_reply_is_unknown(http: aiohttp.ClientSession) -> None:
    """The sock_read timeout, not a total one, ends the wait: a socket timeout after sending."""
    async with silent_server() as base:
        c, _ = make_client(http, base=base, timeout=0.2)
        with pytest.raises(OutcomeUnknown, match="timed out") as info:
            await c.create_session(make_req())
    assert "SocketTimeoutError" in info.value.message


@pytest.mark.parametrize("token", [f"{TOKEN}\r\nX-Evil: 1", f"{TOKEN[:10]}\n{TOKEN[10:]}"])
async def test_a_token_with_a_line_break_is_never_sent(
    http: aiohttp.ClientSession, recorder: tuple[Recorder, str], token: str
) -> None:
    """aiohttp refuses such a header before writing a byte: the row failed and was not sent
    (never 'unknown'), and since every request would fail alike, the run stops (Fatal)."""
    rec, base = recorder
    c, _ = make_client(http, FakeTokens(token), base=base)
    with pytest.raises(Fatal, match="was not sent") as info:
        await c.create_session(small_req())
    assert rec.seen == []
    assert TOKEN[:10] not in str(info.value)


class RefusingSession:
    """An aiohttp session whose request is refused while being built, as aiohttp does for a
    forbidden header character; its message quotes the (secret) header value."""

    def request(self, *_: Any, **kw: Any) -> Any:
        raise ValueError(f"bad header value {kw['headers']['Authorization']!r}")


@pytest.mark.parametrize("create", [True, False])
async def test_a_request_refused_before_sending_is_not_sent(create: bool) -> None:
    c = LmsClient(BASE, FakeTokens(), session=RefusingSession())  # type: ignore[arg-type]
    with pytest.raises(NotSent, match="it was not sent") as info:
        if create:
            await c.create_session(make_req())
        else:
            await c.update_session(C, B, M, "1", {"name": "x"})
    assert TOKEN not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # may quote it


async def test_reply_cut_off_is_unknown(http: aiohttp.ClientSession) -> None:
    async def partial(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n{"code": 200, "sess')
        await writer.drain()
        writer.close()

    server, base = await raw_server(partial)
    async with server:
        c, _ = make_client(http, base=base)
        with pytest.raises(OutcomeUnknown, match="cut off"):
            await c.create_session(make_req())


async def test_listing_read_timeout_is_a_server_error_not_unknown(
    http: aiohttp.ClientSession,
) -> None:
    """A GET changes nothing, so 'unknown outcome' makes no sense for it."""
    async with silent_server() as base:
        c, _ = make_client(http, base=base, timeout=0.2)
        with pytest.raises(ServerError, match="timed out"):
            await c.find_session(make_req())


# --------------------------------------------------------------------------------------------
# listing and reconciliation

LIST_URL = re.compile(re.escape(SESSIONS) + r"\?startIndex=\d+$")


def item(i: int, **kw: Any) -> dict[str, Any]:
    d = {
        "sessionId": f"9{i:05d}",
        "sessionName": f"Other {i}",
        "sessionStartDate": "04-01-2022",
        "sessionStartTime": "10:00 AM",
    }
    d.update(kw)
    return d


def start_indexes(m: aioresponses) -> list[int]:
    return [int(url.query["startIndex"]) for (_, url), calls in m.requests.items() for _ in calls]


async def test_pagination_until_a_short_page(http: aiohttp.ClientSession) -> None:
    c, pace = make_client(http)
    with aioresponses() as m:
        m.get(LIST_URL, payload={"sessions": [item(i) for i in range(25)]})
        m.get(LIST_URL, payload={"sessions": [item(i) for i in range(25, 50)]})
        m.get(LIST_URL, payload={"sessions": [item(i) for i in range(50, 53)]})
        got = await c.list_module_sessions(C, B, M)
        assert sorted(start_indexes(m)) == [0, 25, 50]
    assert [g["sessionId"] for g in got] == [f"9{i:05d}" for i in range(53)]
    assert pace.calls == 3


async def test_has_more_records_false_stops_a_full_page(http: aiohttp.ClientSession) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(LIST_URL, payload={"sessions": [item(i) for i in range(25)], "hasMoreRecords": False})
        assert len(await c.list_module_sessions(C, B, M)) == 25
        assert start_indexes(m) == [0]


async def test_has_more_records_true_is_trusted_over_page_size(
    http: aiohttp.ClientSession,
) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(
            LIST_URL,
            payload={
                "response": {"result": [item(i) for i in range(10)], "hasMoreRecords": "true"}
            },
        )
        m.get(LIST_URL, payload={"response": {"result": [item(10)], "hasMoreRecords": "false"}})
        assert len(await c.list_module_sessions(C, B, M)) == 11
        assert sorted(start_indexes(m)) == [0, 10]


async def test_page_bound_stops_an_endless_listing(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "MAX_PAGES", 4)
    counter = iter(range(10_000))

    def endless(url: Any, **_: Any) -> CallbackResult:
        return CallbackResult(
            payload={"data": [item(next(counter)) for _ in range(25)], "hasMoreRecords": True}
        )

    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(LIST_URL, callback=endless, repeat=True)
        assert len(await c.list_module_sessions(C, B, M)) == 100
        assert n_requests(m) == 4


async def test_a_listing_that_ignores_start_index_stops(http: aiohttp.ClientSession) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(LIST_URL, payload={"sessions": [item(i) for i in range(25)]}, repeat=True)
        assert len(await c.list_module_sessions(C, B, M)) == 25
        assert n_requests(m) == 2


@pytest.mark.parametrize(
    "payload",
    [
        {"sessions": [item(1)]},
        {"data": [item(1)]},
        {"result": [item(1)]},
        {"response": {"result": [item(1)], "status": 0}},
        [item(1)],
        {"code": 200, "data": {"sessions": [item(1)]}},
        {
            "response": {
                "result": [{"900001": [{k: v for k, v in item(1).items() if k != "sessionId"}]}]
            }
        },
    ],
)
async def test_list_shapes(http: aiohttp.ClientSession, payload: Any) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(LIST_URL, payload=payload)
        (got,) = await c.list_module_sessions(C, B, M)
    assert got["sessionId"] == "900001" and got["sessionName"] == "Other 1"


@pytest.mark.parametrize(
    "payload",
    [
        {"response": {"errors": {"code": 7024, "message": "No records found"}, "status": 1}},
        {"code": "NO_DATA", "message": "No data available"},
        {"code": 200, "message": "success"},
        {"sessions": []},
    ],
)
async def test_empty_module_shapes(http: aiohttp.ClientSession, payload: Any) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(LIST_URL, payload=payload, repeat=True)
        assert await c.list_module_sessions(C, B, M) == []
        assert await c.find_session(make_req()) is None


async def test_listing_errors_are_classified_like_creates(http: aiohttp.ClientSession) -> None:
    tokens = FakeTokens()
    c, pace = make_client(http, tokens)
    with aioresponses() as m:
        m.get(LIST_URL, status=429, headers={"Retry-After": "30"})
        with pytest.raises(Locked) as info:
            await c.list_module_sessions(C, B, M)
        assert info.value.retry_after == 30
        m.get(LIST_URL, status=401)
        m.get(LIST_URL, payload={"sessions": [item(1)]})
        assert len(await c.list_module_sessions(C, B, M)) == 1
        m.get(LIST_URL, payload={"response": {"errors": {"code": 7218, "message": "scope"}}})
        with pytest.raises(Fatal):
            await c.list_module_sessions(C, B, M)
        m.get(LIST_URL, status=404, payload={"code": 404, "message": "Module not found"})
        with pytest.raises(Rejected, match="session listing: 404: Module not found"):
            await c.list_module_sessions(C, B, M)
        m.get(LIST_URL, status=504, body="gateway")
        with pytest.raises(ServerError):
            await c.list_module_sessions(C, B, M)
        m.get(LIST_URL, body="<html>login</html>")
        with pytest.raises(ServerError, match="without a list"):
            await c.list_module_sessions(C, B, M)
    assert tokens.refreshed == [TOKEN]
    assert pace.calls == 7


@pytest.mark.parametrize(
    "listed",
    [
        {
            "sessionName": "Session API Testing",
            "sessionStartDate": "04-01-2022",
            "sessionStartTime": "10:00 AM",
        },
        {"name": "  Session  API Testing ", "date": "2022-01-04", "startTime": "10:00am"},
        {"sessionName": "Session API Testing", "startDate": "04-Jan-2022", "startTime": "10:00"},
        {
            "sessionName": "Session API Testing",
            "sessionStartDate": "Jan 4, 2022",
            "sessionStartTime": "10 AM",
        },
        {
            "sessionName": "Session API Testing",
            "sessionStartDate": "04/01/2022",
            "sessionStartTime": "10:00:00",
        },
        {
            "sessionName": "Session API Testing",
            "sessionStartDate": "01/04/2022",
            "sessionStartTime": "10:00 a.m.",
        },  # an organisation using MM/dd/yyyy
        {"sessionName": "Session API Testing", "sessionStartDate": "2022-01-04T10:00:00+05:30"},
        {"sessionName": "Session API Testing", "sessionStartDate": "04-01-2022 10:00 AM"},
    ],
)
async def test_find_session_matching_variants(
    http: aiohttp.ClientSession, listed: dict[str, Any]
) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(LIST_URL, payload={"sessions": [item(1), {"sessionId": "42", **listed}]})
        assert await c.find_session(make_req()) == "42"


@pytest.mark.parametrize(
    "listed",
    [
        {"sessionName": "session api testing"},  # case differs: a different session
        {"sessionName": "Session API Testing 2"},
        {"sessionStartDate": "05-01-2022"},
        {"sessionStartDate": "01-04-2022"},  # dashes are always dd-MM-yyyy
        {"sessionStartTime": "10:00 PM"},
        {"sessionStartTime": "10:30 AM"},
    ],
)
async def test_find_session_non_matches(
    http: aiohttp.ClientSession, listed: dict[str, Any]
) -> None:
    base = {
        "sessionId": "42",
        "sessionName": "Session API Testing",
        "sessionStartDate": "04-01-2022",
        "sessionStartTime": "10:00 AM",
    }
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(LIST_URL, payload={"sessions": [{**base, **listed}]})
        assert await c.find_session(make_req()) is None


async def test_find_session_handles_html_escaped_names_and_12_oclock(
    http: aiohttp.ClientSession,
) -> None:
    c, _ = make_client(http)
    req = make_req(name="Q&A <live>", startTime="12:00 PM")
    with aioresponses() as m:
        m.get(
            LIST_URL,
            payload={
                "sessions": [
                    {
                        "sessionId": "1",
                        "sessionName": "Q&amp;A &lt;live&gt;",
                        "sessionStartDate": "04-01-2022",
                        "sessionStartTime": "12:00 AM",
                    },
                    {
                        "sessionId": "2",
                        "sessionName": "Q&amp;A &lt;live&gt;",
                        "sessionStartDate": "04-01-2022",
                        "sessionStartTime": "12:00",
                    },
                ]
            },
        )
        assert await c.find_session(req) == "2"


async def test_find_session_stops_at_the_first_match(http: aiohttp.ClientSession) -> None:
    c, pace = make_client(http)
    target = {
        "sessionId": "77",
        "sessionName": "Session API Testing",
        "sessionStartDate": "04-01-2022",
        "sessionStartTime": "10:00 AM",
    }
    with aioresponses() as m:
        m.get(LIST_URL, payload={"sessions": [item(i) for i in range(24)] + [target]})
        m.get(LIST_URL, payload={"sessions": [item(i) for i in range(25, 50)]})
        assert await c.find_session(make_req()) == "77"
        assert n_requests(m) == 1
    assert pace.calls == 1


async def test_find_session_searches_later_pages(http: aiohttp.ClientSession) -> None:
    c, _ = make_client(http)
    target = {
        "id": 88,
        "name": "Session API Testing",
        "date": "04-01-2022",
        "startTime": "10:00 AM",
    }
    with aioresponses() as m:
        m.get(LIST_URL, payload={"sessions": [item(i) for i in range(25)]})
        m.get(LIST_URL, payload={"sessions": [target]})
        assert await c.find_session(make_req()) == "88"


async def test_unreadable_listing_is_not_taken_as_absent(http: aiohttp.ClientSession) -> None:
    """Items without recognisable fields must not make reconciliation say 'not created'."""
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(LIST_URL, payload={"sessions": [{"sid": "1", "title": "x", "when": 123}]})
        with pytest.raises(ServerError, match="no recognisable name"):
            await c.find_session(make_req())


# --------------------------------------------------------------------------------------------
# the trainers' first page (the ID-free read of `auth --check`)

TRAINERS_URL = re.compile(re.escape(f"{BASE}/api/v1/trainers") + r"\?startIndex=\d+$")
TRAINER = {"erecno": "478346000008251001", "name": "Henry Adams"}


async def test_list_trainers_reads_one_paced_page(http: aiohttp.ClientSession) -> None:
    c, pace = make_client(http)
    page = [{"erecno": str(478346000008260000 + i), "name": f"T{i}"} for i in range(25)]
    with aioresponses() as m:
        m.get(TRAINERS_URL, payload={"code": 200, "message": "success", "trainers": page,
                                     "hasMoreRecords": True}, repeat=True)
        got = await c.list_trainers()
        assert n_requests(m) == 1  # the first page only, even though more records follow
        assert start_indexes(m) == [0]
        ((method, url),) = m.requests
        assert method == "GET" and url.path == "/api/v1/trainers"
        assert auth_headers(m) == [f"Zoho-oauthtoken {TOKEN}"]
    assert got == page
    assert pace.calls == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"code": 200, "message": "success", "trainers": [TRAINER], "hasMoreRecords": False},
        {"code": "200", "trainer": [TRAINER]},
        {"data": [TRAINER]},
        {"response": {"result": [TRAINER], "status": 0}},
        {"response": {"trainers": [TRAINER]}},
        {"data": {"trainers": [TRAINER]}},
        [TRAINER],
        {"response": {"result": [{"478346000008251001": [{"name": "Henry Adams"}]}]}},
    ],
)
async def test_list_trainers_shapes(http: aiohttp.ClientSession, payload: Any) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(TRAINERS_URL, payload=payload)
        assert await c.list_trainers() == [TRAINER]


@pytest.mark.parametrize(
    "payload",
    [
        {"code": 200, "message": "success", "trainers": [], "hasMoreRecords": False},
        {"code": 200, "message": "success"},
        {"response": {"errors": {"code": 7024, "message": "No records found"}, "status": 1}},
        {"code": "NO_DATA", "message": "No trainers found"},
    ],
)
async def test_list_trainers_empty_shapes(http: aiohttp.ClientSession, payload: Any) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(TRAINERS_URL, payload=payload)
        assert await c.list_trainers() == []


async def test_list_trainers_errors_are_classified_like_other_reads(
    http: aiohttp.ClientSession,
) -> None:
    tokens = FakeTokens()
    c, pace = make_client(http, tokens)
    with aioresponses() as m:
        m.get(TRAINERS_URL, status=429, headers={"Retry-After": "30"})
        with pytest.raises(Locked) as info:
            await c.list_trainers()
        assert info.value.retry_after == 30
        m.get(TRAINERS_URL, payload=OLD_7209)
        with pytest.raises(Locked):
            await c.list_trainers()
        m.get(TRAINERS_URL, status=401)  # one refresh, then the retry succeeds
        m.get(TRAINERS_URL, payload={"trainers": [TRAINER]})
        assert await c.list_trainers() == [TRAINER]
        m.get(TRAINERS_URL, payload={"response": {"errors": {"code": 7218, "message": "scope"}}})
        with pytest.raises(Fatal, match="lacks the required scope"):
            await c.list_trainers()
        m.get(TRAINERS_URL, status=403, payload={"code": 403, "message": "Not authorized"})
        with pytest.raises(Fatal, match="may not do this"):
            await c.list_trainers()
        m.get(TRAINERS_URL, status=404, payload={"code": 404, "message": "URL not found"})
        with pytest.raises(Rejected, match="trainer listing: 404: URL not found"):
            await c.list_trainers()
        m.get(TRAINERS_URL, status=502, body="bad gateway")
        with pytest.raises(ServerError):  # a read: never OutcomeUnknown
            await c.list_trainers()
        m.get(TRAINERS_URL, body="<html><title>Sign in</title></html>")
        with pytest.raises(ServerError, match="trainer listing without a list of trainers"):
            await c.list_trainers()
        m.get(TRAINERS_URL, payload={"code": 200, "stuff": {"people": [TRAINER]}})
        with pytest.raises(ServerError, match="without a list of trainers"):
            await c.list_trainers()  # records under a key we do not know are not "empty"
    assert tokens.refreshed == [TOKEN]
    assert pace.calls == 10


async def test_list_trainers_rejected_twice_is_auth_expired(http: aiohttp.ClientSession) -> None:
    tokens = FakeTokens()
    c, pace = make_client(http, tokens)
    with aioresponses() as m:
        m.get(TRAINERS_URL, payload={"code": "INVALID_OAUTHTOKEN", "message": "x"}, repeat=True)
        with pytest.raises(AuthExpired, match="even after a token refresh"):
            await c.list_trainers()
        assert n_requests(m) == 2
    assert tokens.refreshed == [TOKEN] and pace.calls == 2

"""The org reads (courses, batches, modules, trainers, rooms, sessions) and the Update Session
call, through the client: pagination, both reply envelopes, every field variant Zoho might use,
shapes it cannot read, pacing, and classification. HTTP is mocked with aioresponses except where
the bytes on the wire are the point."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, time
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses
from yarl import URL
from zoho_fakes import BASE, NEW_TOKEN, TOKEN, B, C, FakeTokens, M, make_client, recording_server

from bulkschedule.zoho.client import (
    AuthExpired,
    Batch,
    Course,
    Fatal,
    LmsClient,
    Locked,
    Module,
    NotSent,
    OutcomeUnknown,
    Rejected,
    Room,
    ServerError,
    Trainer,
    UnreadableReply,
)

SID = "478346000019500001"
ERECNO = "478346000008251001"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def at(path: str, query: str = "") -> re.Pattern[str]:
    """A URL of ``path`` with ``startIndex`` (aioresponses sorts the query parameters)."""
    return re.compile(re.escape(f"{BASE}{path}?{query}") + r"startIndex=\d+$")


COURSES = at("/api/v1/courses")
BATCHES = at(f"/api/v1/courses/{C}/batches")
MODULES = at(f"/api/v1/courses/{C}/batches/{B}/modules")
TRAINERS = at("/api/v1/trainers", "employeeStatus=active&")
ROOMS = at("/api/v1/rooms")
BATCH_SESSIONS = at(f"/api/v1/courses/{C}/batches/{B}/sessions")
MODULE_SESSIONS = at(f"/api/v1/courses/{C}/batches/{B}/modules/{M}/sessions")


def requested(m: aioresponses) -> list[URL]:
    return [url for (_, url), calls in m.requests.items() for _ in calls]


def start_indexes(m: aioresponses) -> list[int]:
    return sorted(int(url.query["startIndex"]) for url in requested(m))


def v1(key: str, items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The LMS v1 envelope: code as text, the entity under its own key."""
    return {"code": "200", "message": "success", key: items, **extra}


def old(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The older People envelope."""
    return {"response": {"result": items, "status": 0, "message": "Data fetched successfully"}}


def course(i: int, **kw: Any) -> dict[str, Any]:
    return {"courseId": f"47834600001{i:07d}", "courseName": f"Course {i}", **kw}


# --------------------------------------------------------------------------------------------
# pagination, pacing, envelopes


async def test_courses_are_read_page_by_page_until_a_short_page(
    http: aiohttp.ClientSession,
) -> None:
    c, pace = make_client(http)
    with aioresponses() as m:
        m.get(COURSES, payload=v1("courses", [course(i) for i in range(25)]))
        m.get(COURSES, payload=v1("courses", [course(i) for i in range(25, 50)]))
        m.get(COURSES, payload={"code": 200, "courses": [course(i) for i in range(50, 53)]})
        got = await c.list_courses()
        assert start_indexes(m) == [0, 25, 50]
    assert [x.name for x in got] == [f"Course {i}" for i in range(53)]
    assert got[0] == Course("478346000010000000", "Course 0", None)
    assert pace.calls == 3  # every page paced, like a create


async def test_has_more_records_is_trusted_both_ways(http: aiohttp.ClientSession) -> None:
    c, pace = make_client(http)
    rooms = [{"roomId": str(i), "name": f"Room {i}"} for i in range(30)]
    with aioresponses() as m:
        # a short page that says more follow, then a full page that says nothing follows
        m.get(ROOMS, payload=v1("rooms", rooms[:5], hasMoreRecords=True))
        m.get(ROOMS, payload=v1("rooms", rooms[5:30], hasMoreRecords=False))
        got = await c.list_rooms()
        assert start_indexes(m) == [0, 5]
    assert len(got) == 30 and pace.calls == 2


async def test_old_envelope_pages_with_has_more_under_response(
    http: aiohttp.ClientSession,
) -> None:
    c, _ = make_client(http)
    first = [{"batchId": str(i), "batchName": f"B{i}", "startDate": "01-09-2025"} for i in range(2)]
    with aioresponses() as m:
        m.get(BATCHES, payload={"response": {"result": first, "hasMoreRecords": "true"}})
        m.get(BATCHES, payload=old([{"batchId": "9", "name": "B9", "endDate": "20-12-2025"}]))
        got = await c.list_batches(C)
    assert [b.id for b in got] == ["0", "1", "9"]
    assert got[2] == Batch("9", C, "B9", None, date(2025, 12, 20), None)


async def test_a_listing_that_ignores_start_index_stops(http: aiohttp.ClientSession) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(COURSES, payload=v1("courses", [course(i) for i in range(25)]), repeat=True)
        assert len(await c.list_courses()) == 25
        assert len(requested(m)) == 2


async def test_trainers_ask_for_active_employees_on_every_page(
    http: aiohttp.ClientSession,
) -> None:
    c, _ = make_client(http)
    page = [{"erecno": str(i), "name": f"T{i}"} for i in range(25)]
    with aioresponses() as m:
        m.get(TRAINERS, payload=v1("trainers", page, hasMoreRecords=True))
        m.get(TRAINERS, payload=v1("trainers", [{"erecno": "99", "name": "Last"}]))
        got = await c.list_active_trainers()
        urls = requested(m)
    assert len(got) == 26
    assert [u.path for u in urls] == ["/api/v1/trainers"] * 2
    assert all(u.query["employeeStatus"] == "active" for u in urls)


async def test_courses_search_and_state_travel_in_the_query(http: aiohttp.ClientSession) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(re.compile(re.escape(f"{BASE}/api/v1/courses?") + ".*"), payload=v1("courses", []))
        assert await c.list_courses(search="Fire & safety", state="published") == []
        (url,) = requested(m)
    assert url.query["search"] == "Fire & safety" and url.query["state"] == "published"


@pytest.mark.parametrize(
    "payload",
    [
        v1("modules", [], hasMoreRecords=False),
        {"code": 200, "message": "success"},
        {"response": {"errors": {"code": 7024, "message": "No records found"}, "status": 1}},
        {"code": "NO_DATA", "message": "No modules found"},
    ],
)
async def test_empty_listings(http: aiohttp.ClientSession, payload: Any) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(MODULES, payload=payload)
        assert await c.list_modules(C, B) == []


# --------------------------------------------------------------------------------------------
# field variants


@pytest.mark.parametrize(
    "item",
    [
        {"courseId": "11", "courseName": "Safety"},
        {"id": "11", "name": "Safety"},
        {"courseId": 11, "displayName": "Safety"},
        {"id": 11.0, "title": " Safety "},
    ],
)
async def test_course_variants(http: aiohttp.ClientSession, item: dict[str, Any]) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(COURSES, payload=v1("courses", [{**item, "state": "published"}]))
        assert await c.list_courses() == [Course("11", "Safety", "published")]


@pytest.mark.parametrize(
    ("item", "start", "end"),
    [
        (  # what the batch page documents: display strings dd-MMM-yyyy
            {"batchId": "7", "batchName": "Autumn", "startDateAsDisplayString": "22-Dec-2021",
             "endDateAsDisplayString": "27-Jan-2022", "publishStatus": "published"},
            date(2021, 12, 22), date(2022, 1, 27),
        ),
        (  # as written: dd-MM-yyyy
            {"id": "7", "name": "Autumn", "startDate": "22-12-2021", "endDate": "27-01-2022"},
            date(2021, 12, 22), date(2022, 1, 27),
        ),
        (  # epoch milliseconds: midnight in Kolkata and in Los Angeles, number or text
            {"batchId": 7, "displayName": "Autumn", "startDate": 1640111400000,
             "endDate": "1643270400000"},
            date(2021, 12, 22), date(2022, 1, 27),
        ),
        (  # the display string wins over an epoch that needs a time zone
            {"batchId": "7", "batchName": "Autumn", "startDate": 1640111400000,
             "startDateAsDisplayString": "22-Dec-2021", "batchEndDate": "2022-01-27"},
            date(2021, 12, 22), date(2022, 1, 27),
        ),
    ],
)
async def test_batch_variants(
    http: aiohttp.ClientSession, item: dict[str, Any], start: date, end: date
) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(BATCHES, payload=v1("batches", [item]))
        (got,) = await c.list_batches(C)
    assert (got.id, got.course_id, got.name, got.start, got.end) == ("7", C, "Autumn", start, end)


@pytest.mark.parametrize(
    "item",
    [{"moduleId": "5", "moduleName": "Basics"}, {"id": 5, "name": "Basics"},
     {"moduleId": "5", "displayName": "Basics"}],
)
async def test_module_variants(http: aiohttp.ClientSession, item: dict[str, Any]) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(MODULES, payload={"code": 200, "modules": [item]})
        assert await c.list_modules(C, B) == [Module("5", B, "Basics", C)]


@pytest.mark.parametrize(
    ("item", "want"),
    [
        ({"erecno": ERECNO, "name": "Henry Adams", "email": "h@x.org"},
         Trainer(ERECNO, "Henry Adams", "h@x.org")),
        ({"trainerErecno": ERECNO, "trainerName": "Henry Adams", "emailId": "h@x.org"},
         Trainer(ERECNO, "Henry Adams", "h@x.org")),
        ({"employeeErecno": ERECNO, "employeeName": "Henry Adams", "EmailID": "h@x.org"},
         Trainer(ERECNO, "Henry Adams", "h@x.org")),
        ({"erecNo": ERECNO, "FirstName": "Henry", "LastName": "Adams"},
         Trainer(ERECNO, "Henry Adams", None)),
        ({"id": int(ERECNO), "displayName": "Henry  Adams"}, Trainer(ERECNO, "Henry Adams", None)),
        ({"erecno": ERECNO, "emailId": "h@x.org"}, Trainer(ERECNO, "", "h@x.org")),
    ],
)
async def test_trainer_variants(
    http: aiohttp.ClientSession, item: dict[str, Any], want: Trainer
) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(TRAINERS, payload=v1("trainers", [item]))
        assert await c.list_active_trainers() == [want]


async def test_trainers_wrapped_by_record_id_in_the_old_envelope(
    http: aiohttp.ClientSession,
) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(TRAINERS, payload=old([{ERECNO: [{"FirstName": "Henry", "LastName": "Adams"}]}]))
        assert await c.list_active_trainers() == [Trainer(ERECNO, "Henry Adams", None)]


@pytest.mark.parametrize(
    ("item", "want"),
    [
        (  # the documented shape
            {"roomId": "3", "name": "Lab", "location": {"locationId": "8", "name": "Leeds"},
             "facilities": [], "capacity": 20},
            Room("3", "Lab", "Leeds"),
        ),
        ({"id": 3, "roomName": "Lab", "locationName": "Leeds"}, Room("3", "Lab", "Leeds")),
        ({"roomId": "3", "displayName": "Lab"}, Room("3", "Lab", None)),
    ],
)
async def test_room_variants(http: aiohttp.ClientSession, item: dict[str, Any], want: Room) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(ROOMS, payload=v1("rooms", [item], hasMoreRecords=False))
        assert await c.list_rooms() == [want]


LISTED = {
    "sessionId": SID,
    "sessionName": "Intro &amp; welcome",
    "sessionStartDate": "04-01-2022",
    "sessionStartTime": "10:00 AM",
    "sessionEndTime": "11:30 AM",
    "trainerErecno": ERECNO,
    "roomId": "3",
    "moduleId": M,
    "type": "0",
}


async def test_batch_sessions_one_listing_for_every_module(http: aiohttp.ClientSession) -> None:
    c, pace = make_client(http)
    other = {"id": "2", "name": "Wrap-up", "date": "2022-01-05T14:00:00", "moduleId": "6"}
    with aioresponses() as m:
        m.get(BATCH_SESSIONS, payload=v1("sessions", [LISTED, other]))
        first, second = await c.list_sessions(C, B)
    assert pace.calls == 1
    assert (first.id, first.name, first.date, first.start, first.end) == (
        SID, "Intro & welcome", date(2022, 1, 4), time(10, 0), time(11, 30))
    assert (first.trainer_erecno, first.room_id, first.module_id, first.type) == (
        ERECNO, "3", M, "0")
    assert first.as_session_data() == {
        "name": "Intro & welcome", "date": "04-01-2022", "startTime": "10:00 AM",
        "endTime": "11:30 AM", "trainerErecno": ERECNO, "roomId": "3", "type": "0",
    }
    assert (second.module_id, second.start, second.end) == ("6", time(14, 0), None)
    assert first.raw["sessionName"] == "Intro &amp; welcome"


@pytest.mark.parametrize(
    "item",
    [
        {"sessionId": "1", "sessionName": "X", "sessionStartDate": "04-Jan-2022",
         "sessionStartTime": "2 pm"},
        {"id": 1, "name": "X", "date": "04-01-2022", "startTime": "14:00",
         "trainer": {"erecno": ERECNO}, "room": {"roomId": "3", "name": "Lab"}},
        {"session_id": "1", "name": "X", "startDate": "04-01-2022 02:00 PM"},
        {"sessionId": "1", "sessionName": "X", "sessionDate": 1641254400000,
         "startTime": "02:00 PM"},
    ],
)
async def test_module_session_variants(http: aiohttp.ClientSession, item: dict[str, Any]) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(MODULE_SESSIONS, payload={"data": [item]})
        (got,) = await c.list_sessions(C, B, M)
    assert (got.id, got.name, got.date, got.start) == ("1", "X", date(2022, 1, 4), time(14, 0))
    assert got.module_id == M  # a module listing says which module, even when items do not


# --------------------------------------------------------------------------------------------
# shapes it cannot read: a clear UnreadableReply naming the endpoint and what it saw


UNREADABLE = [
    ("courses", "/api/v1/courses", {"code": "200", "stuff": {"things": [{"a": 1}]}},
     "without a list of courses"),
    ("courses", "/api/v1/courses", v1("courses", [{"courseName": "No id"}]), "no course ID"),
    ("courses", "/api/v1/courses", v1("courses", [{"courseId": "1", "label": "x"}]), "no name"),
    ("batches", f"/api/v1/courses/{C}/batches", v1("batches", [{"batchId": "1", "name": "B"}]),
     "no start or end date"),
    ("batches", f"/api/v1/courses/{C}/batches",
     v1("batches", [{"batchId": "1", "name": "B", "startDate": "the first of May"}]),
     "'the first of May' (startDate) is not a date"),
    ("modules", f"/api/v1/courses/{C}/batches/{B}/modules", v1("modules", [{"title": "x"}]),
     "no module ID"),
    ("trainers", "/api/v1/trainers", v1("trainers", [{"erecno": "1", "dept": "x"}]),
     "no name or email"),
    ("trainers", "/api/v1/trainers", v1("trainers", [{"fullname": "x"}]), "no erecno"),
    ("rooms", "/api/v1/rooms", v1("rooms", [{"roomId": "1"}]), "no name"),
    ("sessions", f"/api/v1/courses/{C}/batches/{B}/sessions",
     v1("sessions", [{"sessionId": "1", "sessionName": "x"}]), "no date"),
    ("sessions", f"/api/v1/courses/{C}/batches/{B}/sessions",
     v1("sessions", [{"sessionId": "1", "sessionName": "x", "date": "04-01-2022",
                      "startTime": "25:00"}]),
     "'25:00' (startTime) is not a time"),
]


@pytest.mark.parametrize(("read", "endpoint", "payload", "says"), UNREADABLE)
async def test_unreadable_shapes(
    http: aiohttp.ClientSession, read: str, endpoint: str, payload: Any, says: str
) -> None:
    c, _ = make_client(http)
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "courses": c.list_courses,
        "batches": lambda: c.list_batches(C),
        "modules": lambda: c.list_modules(C, B),
        "trainers": c.list_active_trainers,
        "rooms": c.list_rooms,
        "sessions": lambda: c.list_sessions(C, B),
    }
    with aioresponses() as m:
        m.get(re.compile(re.escape(f"{BASE}{endpoint}?") + ".*"), payload=payload)
        with pytest.raises(UnreadableReply) as info:
            await calls[read]()
    err = info.value
    assert says in err.message
    assert err.endpoint == endpoint and f"(GET {endpoint})" in err.message
    assert err.seen and "fields seen: " + ", ".join(err.seen) in err.message
    assert "\n" not in err.message


async def test_a_login_page_instead_of_a_listing_is_unreadable(
    http: aiohttp.ClientSession,
) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.get(ROOMS, body="<html><title>Sign in to Zoho</title></html>")
        with pytest.raises(UnreadableReply, match=r"room listing .*Sign in to Zoho"):
            await c.list_rooms()


# --------------------------------------------------------------------------------------------
# classification of the reads, as for creates


async def test_read_errors_are_classified_and_name_the_endpoint(
    http: aiohttp.ClientSession,
) -> None:
    tokens = FakeTokens()
    c, pace = make_client(http, tokens)
    with aioresponses() as m:
        m.get(BATCHES, status=429, headers={"Retry-After": "30"})
        with pytest.raises(Locked) as locked:
            await c.list_batches(C)
        assert locked.value.retry_after == 30
        m.get(BATCHES, payload={"response": {"errors": {"code": 7209, "message": "blocked"}}})
        with pytest.raises(Locked):
            await c.list_batches(C)
        m.get(BATCHES, status=401)  # one refresh, then the retry succeeds
        m.get(BATCHES, payload=v1("batches", [{"batchId": "1", "name": "B", "endDate": 0}]))
        with pytest.raises(UnreadableReply, match=r"'0' .* is not a date"):
            await c.list_batches(C)  # 0 is no date in any format
        m.get(BATCHES, payload={"response": {"errors": {"code": 7218, "message": "scope"}}})
        with pytest.raises(Fatal, match="lacks the required scope"):
            await c.list_batches(C)
        m.get(BATCHES, status=403, payload={"code": 403, "message": "Not authorized"})
        with pytest.raises(Fatal):
            await c.list_batches(C)
        m.get(BATCHES, status=404, payload={"code": "INVALID_COURSE", "message": "not found"})
        with pytest.raises(Rejected) as missing:
            await c.list_batches(C)
        m.get(BATCHES, status=502, body="bad gateway")
        with pytest.raises(ServerError):  # a read: never OutcomeUnknown
            await c.list_batches(C)
    assert f"batch listing (GET /api/v1/courses/{C}/batches): INVALID_COURSE" in (
        missing.value.message
    )
    assert tokens.refreshed == [TOKEN]
    assert pace.calls == 8


# --------------------------------------------------------------------------------------------
# update_session (PATCH)

DATA = {"name": "Intro", "trainerErecno": ERECNO, "type": "0", "date": "04-01-2022",
        "startTime": "11:00 AM", "endTime": "12:00 PM"}
ONE = f"/api/v1/courses/{C}/batches/{B}/modules/{M}/sessions/{SID}"
PATCH_URL = re.compile(re.escape(f"{BASE}{ONE}") + r"(\?.*)?$")


async def patch(c: LmsClient) -> str:
    return await c.update_session(C, B, M, SID, DATA)


@pytest.mark.parametrize("style", ["query", "form", "json"])
async def test_update_on_the_wire(http: aiohttp.ClientSession, style: str) -> None:
    async with recording_server({"code": "200", "message": "success"}) as (rec, base):
        c, pace = make_client(http, base=base, payload_style=style)
        assert await patch(c) == SID
    (seen,) = rec.seen
    assert seen["method"] == "PATCH" and pace.calls == 1
    assert seen["auth"] == f"Zoho-oauthtoken {TOKEN}"
    if style == "query":
        assert seen["raw_path"].startswith(f"{ONE}?sessionData=")
        assert json.loads(seen["query"]["sessionData"]) == DATA and seen["body"] == b""
    elif style == "form":
        assert seen["raw_path"] == ONE
        assert seen["content_type"] == "application/x-www-form-urlencoded"
        assert json.loads(dict(parse_qsl(seen["body"].decode()))["sessionData"]) == DATA
    else:
        assert seen["raw_path"] == ONE and seen["content_type"] == "application/json"
        assert json.loads(seen["body"]) == DATA


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"code": 200, "message": "success", "session": {"sessionId": SID}}),
        (200, {"code": "200", "message": "Session updated"}),
        (200, {"response": {"result": "updated", "status": 0}}),
        (204, ""),
    ],
)
async def test_update_success_shapes(http: aiohttp.ClientSession, status: int, body: Any) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.patch(PATCH_URL, status=status, body=body if isinstance(body, str) else json.dumps(body))
        assert await patch(c) == SID


@pytest.mark.parametrize(
    ("status", "body", "exc", "says"),
    [
        (404, {"code": 404, "message": "Session not found"}, Rejected, "deleted in Zoho"),
        (404, "", Rejected, "bulkschedule forget"),
        (400, {"code": "BATCH_DATE_AND_SESSION_DATE_MISMATCH", "message": "Date outside batch"},
         Rejected, "BATCH_DATE_AND_SESSION_DATE_MISMATCH: Date outside batch"),
        (200, {"response": {"errors": {"code": 7005, "message": "Invalid trainer"}, "status": 1}},
         Rejected, "7005: Invalid trainer"),
        (429, "", Locked, "pausing"),
        (200, {"response": {"errors": {"code": 7209, "message": "threshold"}}}, Locked, "7209"),
        (422, {"code": 422, "message": "Maximum limit exceeded"}, Locked, "pausing"),
        (403, {"code": 403, "message": "no"}, Fatal, "may not do this"),
        (502, "bad gateway", ServerError, "server error"),  # safe to send again: not unknown
        (200, "<html>proxy</html>", ServerError, "sending it again is safe"),
    ],
)
async def test_update_failures(
    http: aiohttp.ClientSession, status: int, body: Any, exc: type[Exception], says: str
) -> None:
    c, pace = make_client(http)
    with aioresponses() as m:
        m.patch(PATCH_URL, status=status, body=body if isinstance(body, str) else json.dumps(body))
        with pytest.raises(exc) as info:
            await patch(c)
    assert type(info.value) is exc and says in str(info.value)
    assert pace.calls == 1


async def test_update_refreshes_the_token_once(http: aiohttp.ClientSession) -> None:
    tokens = FakeTokens()
    c, pace = make_client(http, tokens)
    with aioresponses() as m:
        m.patch(PATCH_URL, status=401, payload={"code": "INVALID_OAUTHTOKEN"})
        m.patch(PATCH_URL, payload={"code": 200, "message": "success"})
        assert await patch(c) == SID
        auths = [call.kwargs["headers"]["Authorization"] for calls in m.requests.values()
                 for call in calls]
    assert auths == [f"Zoho-oauthtoken {TOKEN}", f"Zoho-oauthtoken {NEW_TOKEN}"]
    assert pace.calls == 2
    with aioresponses() as m:
        m.patch(PATCH_URL, status=401, repeat=True)
        with pytest.raises(AuthExpired, match="even after a token refresh"):
            await patch(c)


async def test_a_lost_update_reply_may_be_sent_again(http: aiohttp.ClientSession) -> None:
    """An update sets the same values however often it lands: a lost reply is a ServerError
    (retry), never OutcomeUnknown (which would make the runner reconcile by listing)."""

    async def hang_up(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async with recording_server() as (rec, base):
        rec.reply = hang_up
        c, _ = make_client(http, base=base)
        with pytest.raises(ServerError, match="lost contact") as info:
            await patch(c)
    assert not isinstance(info.value, OutcomeUnknown) and len(rec.seen) == 1


async def test_update_path_segments_cannot_escape(http: aiohttp.ClientSession) -> None:
    c, _ = make_client(http)
    with aioresponses() as m:
        m.patch(re.compile(".*"), payload={"code": 200})
        await c.update_session(C, B, M, "../../x", DATA)
        ((_, url),) = m.requests
    assert url.raw_path.endswith("/sessions/..%2F..%2Fx")


async def test_update_not_sent_when_the_connection_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c, _ = make_client(http, base=f"http://127.0.0.1:{port}")
    with pytest.raises(NotSent):
        await patch(c)

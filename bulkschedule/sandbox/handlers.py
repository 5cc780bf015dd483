"""The sandbox's HTTP routes: the LMS API calls, Zoho accounts' token endpoint, and the
``/__sandbox/`` controls. Each handler translates HTTP to and from `SandboxState` and the rules.

Every API call, read or write, goes through `_gate`: authentication, then the threshold (counted
under ``reads``, ``creates`` or ``updates`` and in ``calls``), then an injected 5xx. The latency
middleware wraps it all, before the call is counted or after, as ``latency_at`` says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from bulkschedule.sandbox.catalogue import COURSE_STATES, ID_RE, Batch, Course
from bulkschedule.sandbox.state import Refused, SandboxState
from bulkschedule.sandbox.validation import (
    KNOWN_FIELDS,
    Invalid,
    check_fields,
    check_path,
    fields_of,
    not_found,
    session_record,
)

__all__ = ["PAGE_SIZE", "STATE", "add_routes", "latency_middleware"]

#: Every LMS listing returns at most 25 records a call.
PAGE_SIZE: Final = 25

STATE: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: A read: the state and the request in, the reply's JSON body out (or `Invalid`).
Render = Callable[[SandboxState, web.Request], dict[str, Any]]


# ------------------------------------------------------------------------------------- replies


def _error(status: int, code: str | int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _refusal(style: str, remaining: float) -> web.Response:
    """The lockout in the configured shape. Retry-After is whole seconds, rounded up, >= 1."""
    if style == "422":
        return _error(422, 422, "Maximum limit exceeded")
    if style == "7209":
        return web.json_response(
            {
                "response": {
                    "errors": {
                        "code": 7209,
                        "message": "API access blocked since threshold limit exceeded. "
                        "Please try after some time",
                    },
                    "status": 1,
                }
            }
        )
    retry = max(1, math.ceil(remaining - 1e-9))
    return web.json_response(
        {"code": 429, "message": "Too many requests"},
        status=429,
        headers={"Retry-After": str(retry)},
    )


def _session_reply(request: web.Request, state: SandboxState,
                   record: dict[str, Any]) -> web.Response:
    """The stored session's reply, or (``lose_reply_rate``) no reply at all."""
    cfg = state.config
    if cfg.lose_reply_rate > 0 and state.rng.random() < cfg.lose_reply_rate:
        state.counters["replies_lost"] += 1
        transport = request.transport
        if transport is not None:
            # abort() drops the connection without flushing: the client sees it disconnect
            # after its request was written, i.e. an outcome it cannot know without listing.
            transport.abort()
        return web.Response(status=200)  # written nowhere: the transport is gone
    return web.json_response({"code": 200, "message": "success", "session": record})


# ---------------------------------------------------------------------------- around every call


@web.middleware
async def latency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Delay API and token calls by a uniform draw from ``latency``: at ``arrival`` the call is
    counted after the delay, so jitter bunches calls at the server as a real network does; at
    ``reply`` it is counted at once and its reply waits. The draw comes first either way, so a
    seed gives the same faults in both placements. The ``/__sandbox/`` controls are never
    delayed."""
    if request.path.startswith("/__sandbox/"):
        return await handler(request)
    cfg = request.app[STATE].config
    lo, hi = cfg.latency
    if hi <= 0:
        return await handler(request)
    delay = request.app[STATE].rng.uniform(lo, hi)
    if cfg.latency_at == "arrival":
        await cfg.sleep(delay)
        return await handler(request)
    response = await handler(request)
    await cfg.sleep(delay)
    return response


async def _gate(request: web.Request, kind: str) -> SandboxState | web.Response:
    """What every API call goes through: authentication, threshold, injected 5xx.

    Unauthenticated calls are answered without touching the threshold (the API cannot attribute
    them to a user); they count as ``unauthorized`` only. Every other call counts under ``kind``
    ("reads", "creates" or "updates") and in ``calls``, whatever its outcome.
    """
    state = request.app[STATE]
    cfg = state.config
    problem = state.token_problem(request.headers.get("Authorization"))
    if problem is not None:
        state.counters["unauthorized"] += 1
        return _error(401, "INVALID_OAUTHTOKEN", problem)
    state.counters[kind] += 1
    try:
        state.admit()
    except Refused as refused:
        return _refusal(cfg.lock_style, refused.remaining)
    if cfg.fail_rate > 0 and state.rng.random() < cfg.fail_rate:
        state.counters["failures_injected"] += 1
        return _error(500, 500, "Sorry! Server error occured")
    return state


# ---------------------------------------------------------------------------------- sessions


def _decode(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise Invalid("INVALID_INPUT", "sessionData is not valid JSON") from None
    if not isinstance(value, dict):
        raise Invalid("INVALID_INPUT", "sessionData must be a JSON object")
    return value


async def _session_data(request: web.Request) -> dict[str, Any]:
    """Find sessionData where a client may have put it: query, form body or JSON body.

    The API page's URL puts it in the query string, its code samples send a JSON body (the object
    itself), and its Deluge sample sends the fields as form parameters; all are accepted.
    """
    if "sessionData" in request.query:
        return _decode(request.query["sessionData"])
    body = await request.read()
    ctype = request.content_type
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        if "sessionData" in form:
            return _decode(str(form["sessionData"]))
        fields = {k: str(v) for k, v in form.items() if k in KNOWN_FIELDS}
        if fields:
            return fields
    elif body.strip():
        value = _decode(body.decode("utf-8", errors="replace"))
        inner = value.get("sessionData", value)
        if isinstance(inner, str):
            return _decode(inner)
        if not isinstance(inner, dict):
            raise Invalid("INVALID_INPUT", "sessionData must be a JSON object")
        return inner
    raise Invalid("INPUT_PARAMETER_MISSING", "Input parameter missing: sessionData")


def _path(request: web.Request) -> tuple[str, str, str | None]:
    info = request.match_info
    return info["course"], info["batch"], info.get("module")


async def create_session(request: web.Request) -> web.StreamResponse:
    """POST .../modules/{m}/sessions: validate, store, reply (or lose the reply on purpose)."""
    gated = await _gate(request, "creates")
    if isinstance(gated, web.Response):
        return gated
    state = gated
    cat = state.config.catalogue
    try:
        course, batch_id, module = _path(request)
        batch = check_path(cat, course, batch_id, module)
        assert module is not None
        fields = check_fields(await _session_data(request), cat, batch)
    except Invalid as bad:
        state.counters["rejected"] += 1
        return _error(bad.status, bad.code, bad.message)
    if state.store.is_duplicate(module, fields["name"], fields["date"], fields["startTime"]):
        state.counters["duplicates"] += 1
    record = session_record(state.new_session_id(), module, fields, cat)
    state.store.add(course, batch_id, module, record)
    state.counters["created"] += 1
    return _session_reply(request, state, record)


async def update_session(request: web.Request) -> web.StreamResponse:
    """PATCH .../modules/{m}/sessions/{sessionId}: the same rules as create, applied to a stored
    session of that module (404 otherwise); the whole session unless ``partial_updates``."""
    gated = await _gate(request, "updates")
    if isinstance(gated, web.Response):
        return gated
    state = gated
    cat = state.config.catalogue
    try:
        course, batch_id, module = _path(request)
        batch = check_path(cat, course, batch_id, module)
        session_id = request.match_info["session"]
        if not ID_RE.match(session_id):
            raise Invalid("INVALID_INPUT", f"Invalid value for sessionId: {session_id!r}")
        stored = state.store.get(session_id)
        if stored is None or (stored.course, stored.batch, stored.module) != (
                course, batch_id, module):
            raise not_found(f"no session {session_id} in module {module}")
        data = await _session_data(request)
        if state.config.partial_updates:
            data = {**fields_of(stored.record), **data}
        fields = check_fields(data, cat, batch)
    except Invalid as bad:
        state.counters["rejected"] += 1
        return _error(bad.status, bad.code, bad.message)
    assert module is not None
    record = session_record(session_id, module, fields, cat)
    state.store.replace(record)
    state.counters["updated"] += 1
    return _session_reply(request, state, record)


# --------------------------------------------------------------------------------------- reads


def _start_index(request: web.Request) -> int:
    """The 0-based ``startIndex`` of a listing (default 0); anything else is `Invalid`."""
    text = request.query.get("startIndex", "0").strip() or "0"
    if not text.isdigit():
        raise Invalid("INVALID_INPUT", f"Invalid value for startIndex: {text!r}")
    return int(text)


def _listing(state: SandboxState, request: web.Request, key: str,
             items: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of ``items`` at ``startIndex``, in the LMS v1 envelope."""
    start = _start_index(request)
    return {"code": state.shape.code, "message": "success", key: items[start:start + PAGE_SIZE],
            "hasMoreRecords": start + PAGE_SIZE < len(items)}


def _one(state: SandboxState, key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"code": state.shape.code, "message": "success", key: item}


def _course(state: SandboxState, request: web.Request) -> Course:
    cat = state.config.catalogue
    course = request.match_info["course"]
    check_path(cat, course, None, None)
    if cat is None:
        raise not_found(f"no course {course}")
    return cat.courses[course]


def _batch(state: SandboxState, request: web.Request) -> tuple[Course, Batch]:
    course = _course(state, request)
    batch = check_path(state.config.catalogue, course.id, request.match_info["batch"], None)
    assert batch is not None
    return course, batch


def read_sessions(state: SandboxState, request: web.Request) -> dict[str, Any]:
    """GET .../sessions?startIndex=: 25 a page in creation order, with ``hasMoreRecords``."""
    course, batch, module = _path(request)
    check_path(state.config.catalogue, course, batch, module)
    start = _start_index(request)
    sessions, more = state.store.page(course, batch, module, start, PAGE_SIZE)
    return {"code": state.shape.code, "message": "success", "sessions": sessions,
            "hasMoreRecords": more}


def _folded(text: str) -> str:
    """Text as a search compares it: case and runs of spaces ignored."""
    return " ".join(text.split()).casefold()


def read_courses(state: SandboxState, request: web.Request) -> dict[str, Any]:
    """GET /api/v1/courses?startIndex=&search=&state=: ``search`` matches a part of the name,
    ignoring case; ``state`` is drafted, published or disabled."""
    wanted = request.query.get("state", "").strip()
    if wanted and wanted not in COURSE_STATES:
        raise Invalid("INVALID_INPUT", f"Invalid value for state: {wanted!r} "
                                       f"({', '.join(COURSE_STATES)})")
    search = _folded(request.query.get("search", ""))
    cat = state.config.catalogue
    courses = [c for c in (cat.courses.values() if cat else ())
               if (not wanted or c.state == wanted) and search in _folded(c.name)]
    return _listing(state, request, "courses", [state.shape.course(c) for c in courses])


def read_course(state: SandboxState, request: web.Request) -> dict[str, Any]:
    return _one(state, "course", state.shape.course(_course(state, request)))


def read_batches(state: SandboxState, request: web.Request) -> dict[str, Any]:
    course = _course(state, request)
    return _listing(state, request, "batches",
                    [state.shape.batch(course, b) for b in course.batches.values()])


def read_batch(state: SandboxState, request: web.Request) -> dict[str, Any]:
    course, batch = _batch(state, request)
    return _one(state, "batch", state.shape.batch(course, batch, one=True))


def read_modules(state: SandboxState, request: web.Request) -> dict[str, Any]:
    course, batch = _batch(state, request)
    return _listing(state, request, "modules",
                    [state.shape.module(course, batch, m) for m in batch.modules])


def read_module(state: SandboxState, request: web.Request) -> dict[str, Any]:
    course, batch = _batch(state, request)
    module = request.match_info["module"]
    check_path(state.config.catalogue, course.id, batch.id, module)
    return _one(state, "module", state.shape.module(course, batch, module))


def read_trainers(state: SandboxState, request: web.Request) -> dict[str, Any]:
    """GET /api/v1/trainers?startIndex=&employeeStatus=: the org's trainers in file order;
    ``employeeStatus`` active or inactive keeps only those (without it, all)."""
    status = request.query.get("employeeStatus", "").strip().lower()
    if status and status not in ("active", "inactive"):
        raise Invalid("INVALID_INPUT", f"Invalid value for employeeStatus: {status!r}")
    cat = state.config.catalogue
    trainers = [t for t in (cat.trainers.values() if cat else ())
                if not status or t.active == (status == "active")]
    return _listing(state, request, "trainers", [state.shape.trainer(t) for t in trainers])


def read_rooms(state: SandboxState, request: web.Request) -> dict[str, Any]:
    cat = state.config.catalogue
    rooms = list(cat.rooms.values()) if cat else []
    return _listing(state, request, "rooms", [state.shape.room(r) for r in rooms])


def read_room(state: SandboxState, request: web.Request) -> dict[str, Any]:
    room_id = request.match_info["room"]
    if not ID_RE.match(room_id):
        raise Invalid("INVALID_INPUT", f"Invalid value for roomId: {room_id!r}")
    cat = state.config.catalogue
    room = cat.rooms.get(room_id) if cat else None
    if room is None:
        raise not_found(f"no room {room_id}")
    return _one(state, "room", state.shape.room(room))


def _reader(render: Render, *, catalogue: bool = True) -> Handler:
    """A read as a handler: through the gate, counted under ``reads``, `Invalid` as a 4xx.
    With ``org_reads=False`` in the config, reads of the ``catalogue`` (all but the session
    listings) are refused 403 as for a token without the read scope."""

    async def handle(request: web.Request) -> web.StreamResponse:
        gated = await _gate(request, "reads")
        if isinstance(gated, web.Response):
            return gated
        if catalogue and not gated.config.org_reads:
            gated.counters["rejected"] += 1
            return _error(403, "7218", "Invalid OAuth scope: the token may not read this")
        try:
            body = render(gated, request)
        except Invalid as bad:
            gated.counters["rejected"] += 1
            return _error(bad.status, bad.code, bad.message)
        return web.json_response(body)

    handle.__doc__ = render.__doc__
    return handle


# -------------------------------------------------------------------------------- token, controls


async def mint_token(request: web.Request) -> web.Response:
    """POST /oauth/v2/token: Zoho accounts' token endpoint; errors come in an HTTP 200."""
    state = request.app[STATE]
    cfg = state.config
    params: dict[str, str] = dict(request.query)
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        params.update({k: str(v) for k, v in (await request.post()).items()})
    grant = params.get("grant_type", "")
    if grant not in ("refresh_token", "authorization_code"):
        return web.json_response({"error": "unsupported_grant_type"})
    if params.get("client_id") != cfg.client_id or params.get("client_secret") != cfg.client_secret:
        return web.json_response({"error": "invalid_client"})
    if grant == "refresh_token":
        if params.get("refresh_token") != cfg.refresh_token:
            return web.json_response({"error": "invalid_code"})
    elif params.get("code") != cfg.grant_code or state.grant_used:
        return web.json_response({"error": "invalid_code"})
    if not state.mint_allowed():
        state.counters["mints_refused"] += 1
        return web.json_response(
            {
                "error": "Access Denied",
                "error_description": "You have made too many requests continuously. "
                "Please try again after some time.",
            }
        )
    token, ttl = state.mint_token()
    reply: dict[str, Any] = {
        "access_token": token,
        "expires_in": int(ttl),
        "api_domain": "https://www.zohoapis.com",
        "token_type": "Bearer",
    }
    if grant == "authorization_code":
        state.grant_used = True  # grant codes are single-use
        reply["refresh_token"] = cfg.refresh_token
    return web.json_response(reply)


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats())


async def post_reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"reset": True})


async def post_lock(request: web.Request) -> web.Response:
    """Start a lock now (``?seconds=S``, default the lock period), without counting a lockout."""
    state = request.app[STATE]
    try:
        seconds = float(request.query.get("seconds", state.config.lock_seconds))
    except ValueError:
        return _error(400, "INVALID_INPUT", "seconds must be a number")
    state.lock_for(seconds)
    return web.json_response({"lock_remaining": state.lock_remaining()})


def add_routes(app: web.Application) -> None:
    """Every route of the sandbox, on ``app`` (whose ``STATE`` the handlers read)."""
    r = app.router
    course = "/api/v1/courses/{course}"
    batch = course + "/batches/{batch}"
    module = batch + "/modules/{module}"
    r.add_post(module + "/sessions", create_session)
    r.add_patch(module + "/sessions/{session}", update_session)
    r.add_get(module + "/sessions", _reader(read_sessions, catalogue=False))
    r.add_get(batch + "/sessions", _reader(read_sessions, catalogue=False))
    r.add_get("/api/v1/courses", _reader(read_courses))
    r.add_get(course, _reader(read_course))
    r.add_get(course + "/batches", _reader(read_batches))
    r.add_get(batch, _reader(read_batch))
    r.add_get(batch + "/modules", _reader(read_modules))
    r.add_get(module, _reader(read_module))
    r.add_get("/api/v1/trainers", _reader(read_trainers))
    r.add_get("/api/v1/rooms", _reader(read_rooms))
    r.add_get("/api/v1/rooms/{room}", _reader(read_room))
    r.add_post("/oauth/v2/token", mint_token)
    r.add_get("/__sandbox/stats", get_stats)
    r.add_post("/__sandbox/reset", post_reset)
    r.add_post("/__sandbox/lock", post_lock)

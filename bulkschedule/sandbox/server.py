"""A local stand-in for the Zoho People LMS Create Session API, for rehearsals and tests.

Why it exists: the real API locks an account for five minutes when a client goes one call over its
threshold, has no idempotency key, and loses replies now and then. None of that can be rehearsed
safely against a production tenant, so this server plays the API's part: it validates each field
the way the API page documents it, enforces a sliding-window threshold and a lock period (in any of
the three refusal shapes seen in the wild), mints OAuth tokens under Zoho's minting limit, and
injects server errors, lost replies and latency on demand. Its counters (``GET /__sandbox/stats``)
let tests and benchmarks assert what a client did, e.g. "never more than 30 calls in any minute".

It deliberately does not import our client, payload or schema modules: it plays the server, so its
validation is written independently from the docs. It does not import pandas either, to start fast.

Time comes from an injected ``clock`` (and latency from an injected ``sleep``) so tests can step
through a 5-minute lock without waiting.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

from bulkschedule.core.constants import LOCK_STYLES
from bulkschedule.core.numbers import parse_rate

__all__ = [
    "Batch",
    "Catalogue",
    "Course",
    "Sandbox",
    "SandboxConfig",
    "load_catalogue",
    "make_app",
    "parse_latency",
    "parse_rate",
    "serve",
]

PAGE_SIZE = 25
#: Zoho: at most 10 access tokens per refresh token in any 10 minutes.
MINT_LIMIT = 10
MINT_WINDOW = 600.0
#: First session id handed out by an empty store: 18 digits, in the style of real Zoho ids.
FIRST_SESSION_ID = 478346000050000001

_DATE_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{4})$")
_TIME_RE = re.compile(r"^(0[1-9]|1[0-2]):([0-5]\d) (AM|PM)$")
_ID_RE = re.compile(r"^\d{1,19}$")
_REQUIRED = ("name", "trainerErecno", "type", "date", "startTime", "endTime")
_KNOWN_FIELDS = (*_REQUIRED, "description", "roomId", "lockUntil", "gradeCategoryId")
_SESSION_TYPES = {"0": "Classroom", "1": "E-learning"}


# --------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Batch:
    """A batch runs between two dates; a session outside them is refused, as Zoho does."""

    id: str
    name: str
    start: date
    end: date
    modules: dict[str, str]  # module id -> name


@dataclass(frozen=True)
class Course:
    id: str
    name: str
    batches: dict[str, Batch]


@dataclass(frozen=True)
class Catalogue:
    """What exists in the simulated tenant; without one, any numeric id is accepted."""

    courses: dict[str, Course]
    trainers: dict[str, str]  # erecno -> name
    rooms: dict[str, str]  # room id -> name


@dataclass
class SandboxConfig:
    """Every knob of the sandbox. Defaults are Zoho's documented numbers.

    ``speed`` divides the window, the lock period and ``start_locked`` so a rehearsal of a
    300-second lock can take 3 seconds; token lifetimes and latency are not scaled.
    ``extend_lock_on_call``: whether a call made during a lock restarts the lock period. Zoho's
    behaviour is unknown, so the default (False) is the lenient reading and True the harsh one.
    """

    rate_calls: int = 30
    rate_seconds: float = 60.0
    lock_seconds: float = 300.0
    fail_rate: float = 0.0
    lose_reply_rate: float = 0.0
    latency: tuple[float, float] = (0.0, 0.0)
    start_locked: float = 0.0
    lock_style: str = "429"
    token: str = "sandbox-token"
    token_ttl: float = 3600.0
    seed: int | None = None
    catalogue: Catalogue | None = None
    db: str | Path | None = None
    speed: float = 1.0
    extend_lock_on_call: bool = False
    client_id: str = "sandbox-client-id"
    client_secret: str = "sandbox-client-secret"
    refresh_token: str = "sandbox-refresh-token"
    grant_code: str = "sandbox-grant-code"
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def __post_init__(self) -> None:
        """Fail at start-up with a message naming the option, not later inside a handler."""
        self.lock_style = str(self.lock_style)
        if self.lock_style not in LOCK_STYLES:
            raise ValueError(f"lock style must be one of {', '.join(LOCK_STYLES)}")
        if self.rate_calls < 1 or self.rate_seconds <= 0:
            raise ValueError("rate must allow at least 1 call in a positive number of seconds")
        for name in ("fail_rate", "lose_reply_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name.replace('_', '-')} must be between 0 and 1, got {value}")
        lo, hi = self.latency
        if lo < 0 or hi < lo:
            raise ValueError(f"latency must be MIN-MAX with 0 <= MIN <= MAX, got {lo}-{hi}")
        if self.lock_seconds < 0 or self.start_locked < 0:
            raise ValueError("lock-seconds and start-locked must not be negative")
        if self.token_ttl <= 0:
            raise ValueError("token-ttl must be positive")
        if self.speed <= 0:
            raise ValueError("speed must be positive")

    @property
    def window(self) -> float:
        """The sliding window in sandbox seconds (after ``speed``)."""
        return self.rate_seconds / self.speed

    @property
    def lock_period(self) -> float:
        """The lock period in sandbox seconds (after ``speed``)."""
        return self.lock_seconds / self.speed


def parse_latency(text: str) -> tuple[float, float]:
    """Parse ``--latency MIN-MAX`` (seconds, uniform jitter); a single number means fixed."""
    lo_text, sep, hi_text = text.strip().partition("-")
    try:
        lo = float(lo_text)
        hi = float(hi_text) if sep else lo
    except ValueError:
        raise ValueError(
            f"latency must look like MIN-MAX in seconds (e.g. 0.05-0.3), got {text!r}"
        ) from None
    if lo < 0 or hi < lo:
        raise ValueError(f"latency needs 0 <= MIN <= MAX, got {text!r}")
    return lo, hi


def _parse_ddmmyyyy(text: str) -> date | None:
    match = _DATE_RE.match(text)
    if not match:
        return None
    day, month, year = (int(g) for g in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None


def load_catalogue(path: str | Path) -> Catalogue:
    """Read a ``--data`` file: courses -> batches (dates dd-MM-yyyy) -> modules, trainers, rooms.

    Entries may be objects (``{"id": ..., "name": ...}``) or bare ids. Every problem is reported
    with its location in the file so a hand-edited catalogue is quick to fix.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read catalogue: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the catalogue must be a JSON object with 'courses'")

    def fail(where: str, why: str) -> ValueError:
        return ValueError(f"{path}: {where}: {why}")

    def entry(item: Any, where: str, id_keys: tuple[str, ...] = ("id",)) -> tuple[str, str]:
        if isinstance(item, str | int) and not isinstance(item, bool):
            ident, name = str(item), ""
        elif isinstance(item, dict):
            ident = next((str(item[k]) for k in id_keys if k in item), "")
            name = str(item.get("name", ""))
        else:
            raise fail(where, "expected an id or an object with an id")
        if not _ID_RE.match(ident):
            raise fail(where, f"id must be numeric, got {ident!r}")
        return ident, name

    def items(obj: Any, key: str, where: str) -> list[Any]:
        value = obj.get(key, [])
        if not isinstance(value, list):
            raise fail(where, f"'{key}' must be a list")
        return value

    courses: dict[str, Course] = {}
    for ci, c in enumerate(items(raw, "courses", "top level")):
        cwhere = f"courses[{ci}]"
        cid, cname = entry(c, cwhere)
        batches: dict[str, Batch] = {}
        for bi, b in enumerate(items(c, "batches", cwhere) if isinstance(c, dict) else []):
            bwhere = f"{cwhere}.batches[{bi}]"
            bid, bname = entry(b, bwhere)
            if not isinstance(b, dict):
                raise fail(bwhere, "a batch must be an object with startDate and endDate")
            dates: list[date] = []
            for keys in (("startDate", "start"), ("endDate", "end")):
                text = next((b[k] for k in keys if k in b), None)
                if text is None:
                    raise fail(bwhere, f"missing {keys[0]}")
                parsed = _parse_ddmmyyyy(str(text))
                if parsed is None:
                    raise fail(bwhere, f"{keys[0]} must be dd-MM-yyyy, got {text!r}")
                dates.append(parsed)
            if dates[1] < dates[0]:
                raise fail(bwhere, "endDate is before startDate")
            modules = dict(
                entry(m, f"{bwhere}.modules[{mi}]")
                for mi, m in enumerate(items(b, "modules", bwhere))
            )
            batches[bid] = Batch(bid, bname, dates[0], dates[1], modules)
        courses[cid] = Course(cid, cname, batches)
    trainers = dict(
        entry(t, f"trainers[{i}]", ("erecno", "trainerErecno", "id"))
        for i, t in enumerate(items(raw, "trainers", "top level"))
    )
    rooms = dict(
        entry(r, f"rooms[{i}]", ("id", "roomId"))
        for i, r in enumerate(items(raw, "rooms", "top level"))
    )
    return Catalogue(courses, trainers, rooms)


def config_from_options(*, rate: str, latency: str, data: str | None, **options: Any
                        ) -> SandboxConfig:
    """The ``bulkschedule sandbox`` options as a config: ``rate`` N/SECONDS, ``latency`` MIN-MAX,
    ``data`` a catalogue file; the rest are `SandboxConfig` fields. ValueError says what is
    wrong."""
    try:
        calls, seconds = parse_rate(rate)
    except ValueError as err:
        raise ValueError(f"--rate {err}") from err
    return SandboxConfig(rate_calls=calls, rate_seconds=seconds, latency=parse_latency(latency),
                         catalogue=load_catalogue(data) if data else None, **options)


# ---------------------------------------------------------------------------------------- store


class _Store:
    """Sessions in SQLite: ``:memory:`` by default, a file with ``db`` so state survives restarts.

    One code path for both keeps the persistent mode honest. Calls are synchronous: the sandbox
    handles one request at a time between awaits and each statement is tiny.
    """

    def __init__(self, db: str | Path | None) -> None:
        self._conn = sqlite3.connect(str(db) if db else ":memory:", check_same_thread=False)
        self._conn.execute(
            """CREATE TABLE IF NOT EXISTS sessions (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                session_id TEXT NOT NULL UNIQUE,
                course_id TEXT NOT NULL, batch_id TEXT NOT NULL, module_id TEXT NOT NULL,
                name TEXT NOT NULL, date TEXT NOT NULL, start_time TEXT NOT NULL,
                record TEXT NOT NULL)"""
        )
        self._conn.commit()

    def next_id(self) -> int:
        row = self._conn.execute("SELECT MAX(CAST(session_id AS INTEGER)) FROM sessions").fetchone()
        return max(FIRST_SESSION_ID, (row[0] or 0) + 1)

    def is_duplicate(self, module: str, name: str, day: str, start: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sessions WHERE module_id=? AND name=? AND date=? AND start_time=?",
            (module, name, day, start),
        ).fetchone()
        return row is not None

    def add(self, course: str, batch: str, module: str, record: dict[str, Any]) -> None:
        self._conn.execute(
            "INSERT INTO sessions (session_id, course_id, batch_id, module_id, name, date,"
            " start_time, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record["sessionId"],
                course,
                batch,
                module,
                record["sessionName"],
                record["sessionStartDate"],
                record["sessionStartTime"],
                json.dumps(record),
            ),
        )
        self._conn.commit()

    def page(
        self, course: str, batch: str, module: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page in creation order, and whether more records follow it."""
        sql = "SELECT record FROM sessions WHERE course_id=? AND batch_id=?"
        args: list[Any] = [course, batch]
        if module is not None:
            sql += " AND module_id=?"
            args.append(module)
        rows = self._conn.execute(
            f"{sql} ORDER BY seq LIMIT ? OFFSET ?", (*args, limit + 1, offset)
        )
        records = [json.loads(r[0]) for r in rows.fetchall()]
        return records[:limit], len(records) > limit

    def all(self) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT record FROM sessions ORDER BY seq").fetchall()
        return [json.loads(r[0]) for r in rows]

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def clear(self) -> None:
        self._conn.execute("DELETE FROM sessions")
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


# ---------------------------------------------------------------------------------------- state


class _Refused(Exception):
    """The threshold (or a running lock) refused this call; carries the seconds left."""

    def __init__(self, remaining: float) -> None:
        super().__init__(remaining)
        self.remaining = remaining


class _State:
    """All mutable sandbox state and the rules that change it; the handlers only translate HTTP."""

    COUNTERS = (
        "calls",
        "reads",
        "creates",
        "created",
        "rejected",
        "unauthorized",
        "refused",
        "lockouts",
        "calls_during_lock",
        "duplicates",
        "max_calls_in_window",
        "failures_injected",
        "replies_lost",
        "tokens_minted",
        "mints_refused",
    )

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = _Store(config.db)
        self.tokens: dict[str, float] = {}  # minted access token -> expiry (clock time)
        self.reset(initial=True)

    def reset(self, initial: bool = False) -> None:
        """Back to a fresh start: counters, window, lock, fault RNG, mint history, sessions.

        Minted tokens stay valid so a client holding one is not logged out by a test's reset.
        ``start_locked`` applies only at start-up (or with ``initial``).
        """
        cfg = self.config
        self.counters: dict[str, int] = dict.fromkeys(self.COUNTERS, 0)
        self.window: deque[float] = deque()  # accepted calls, for the threshold
        self.arrivals: deque[float] = deque()  # every counted arrival, for max_calls_in_window
        self.mints: deque[float] = deque()
        self.grant_used = False
        self.rng = random.Random(cfg.seed)
        self.token_rng = random.Random(None if cfg.seed is None else f"tokens-{cfg.seed}")
        self.lock_until = -math.inf
        if initial and cfg.start_locked > 0:
            self.lock_until = cfg.clock() + cfg.start_locked / cfg.speed
        if not initial:
            self.store.clear()
        # never hand out an id twice, even across a reset: a client's journal may still hold it
        self.next_session_id = max(getattr(self, "next_session_id", 0), self.store.next_id())

    def lock_remaining(self, now: float | None = None) -> float:
        now = self.config.clock() if now is None else now
        return max(0.0, self.lock_until - now)

    def lock_for(self, seconds: float) -> None:
        """Start a lock by hand (``POST /__sandbox/lock``), e.g. to test a client's lock gate."""
        self.lock_until = self.config.clock() + seconds / self.config.speed

    def admit(self) -> None:
        """Count one authenticated API call and apply the threshold; raise ``_Refused`` if over.

        Sliding window: a call is allowed if fewer than N calls were accepted in the half-open
        interval (now - SECONDS, now]. The call that would be the N+1st is refused and starts the
        lock; the window is then emptied, so after the lock a client starts with a fresh budget.
        """
        cfg, c = self.config, self.counters
        now = cfg.clock()
        c["calls"] += 1
        horizon = now - cfg.window
        self.arrivals.append(now)
        while self.arrivals and self.arrivals[0] <= horizon:
            self.arrivals.popleft()
        c["max_calls_in_window"] = max(c["max_calls_in_window"], len(self.arrivals))
        if now < self.lock_until:
            c["calls_during_lock"] += 1
            c["refused"] += 1
            if cfg.extend_lock_on_call:
                self.lock_until = now + cfg.lock_period
            raise _Refused(self.lock_until - now)
        while self.window and self.window[0] <= horizon:
            self.window.popleft()
        if len(self.window) >= cfg.rate_calls:
            c["refused"] += 1
            c["lockouts"] += 1
            self.window.clear()
            self.lock_until = now + cfg.lock_period
            raise _Refused(cfg.lock_period)
        self.window.append(now)

    def new_session_id(self) -> str:
        ident = self.next_session_id
        self.next_session_id += 1
        return str(ident)

    def mint_token(self) -> tuple[str, float]:
        rng = self.token_rng
        token = f"1000.{rng.getrandbits(128):032x}.{rng.getrandbits(128):032x}"
        self.tokens[token] = self.config.clock() + self.config.token_ttl
        self.counters["tokens_minted"] += 1
        return token, self.config.token_ttl

    def mint_allowed(self) -> bool:
        """Zoho's minting limit: 10 per refresh token in any 10 minutes (not speed-scaled)."""
        now = self.config.clock()
        while self.mints and self.mints[0] <= now - MINT_WINDOW:
            self.mints.popleft()
        if len(self.mints) >= MINT_LIMIT:
            return False
        self.mints.append(now)
        return True

    def token_problem(self, header: str | None) -> str | None:
        """Why an Authorization header is not accepted, or None if it is."""
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme != "Zoho-oauthtoken" or not token:
            return "Authorization header with a Zoho-oauthtoken is missing"
        if token == self.config.token:
            return None
        expiry = self.tokens.get(token)
        if expiry is None:
            return "Invalid OAuth access token"
        if self.config.clock() >= expiry:
            return "OAuth access token expired"
        return None

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters,
            "sessions": self.store.count(),
            "locked": self.lock_remaining() > 0,
            "lock_remaining": round(self.lock_remaining(), 3),
        }


STATE: web.AppKey[_State] = web.AppKey("sandbox_state", _State)


# ------------------------------------------------------------------------------------- handlers


def _error(status: int, code: str | int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


class _Invalid(Exception):
    """A request the API would refuse with a 4xx; rendered in the LMS error shape."""

    def __init__(self, code: str | int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


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


def _check_ids(request: web.Request, state: _State) -> tuple[str, str, str | None]:
    """Path ids must be numeric; with a catalogue they must also exist (else 404)."""
    info = request.match_info
    course, batch, module = info["course"], info["batch"], info.get("module")
    for label, value in (("courseId", course), ("batchId", batch), ("moduleId", module)):
        if value is not None and not _ID_RE.match(value):
            raise _Invalid("INVALID_INPUT", f"Invalid value for {label}: {value!r}")
    cat = state.config.catalogue
    if cat is not None:
        c = cat.courses.get(course)
        if c is None:
            raise _Invalid(404, f"Not found: no course {course}", 404)
        b = c.batches.get(batch)
        if b is None:
            raise _Invalid(404, f"Not found: no batch {batch} in course {course}", 404)
        if module is not None and module not in b.modules:
            raise _Invalid(404, f"Not found: no module {module} in batch {batch}", 404)
    return course, batch, module


def _decode(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise _Invalid("INVALID_INPUT", "sessionData is not valid JSON") from None
    if not isinstance(value, dict):
        raise _Invalid("INVALID_INPUT", "sessionData must be a JSON object")
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
        fields = {k: str(v) for k, v in form.items() if k in _KNOWN_FIELDS}
        if fields:
            return fields
    elif body.strip():
        value = _decode(body.decode("utf-8", errors="replace"))
        inner = value.get("sessionData", value)
        if isinstance(inner, str):
            return _decode(inner)
        if not isinstance(inner, dict):
            raise _Invalid("INVALID_INPUT", "sessionData must be a JSON object")
        return inner
    raise _Invalid("INPUT_PARAMETER_MISSING", "Input parameter missing: sessionData")


def _text(data: dict[str, Any], key: str) -> str | None:
    """A field as text; JSON numbers are accepted for ids and type, other types are not."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid("INVALID_INPUT", f"Invalid value for {key}: {value!r}")
    return str(value).strip()


def _minutes(value: str) -> int:
    match = _TIME_RE.match(value)
    assert match is not None
    hour, minute, half = int(match[1]), int(match[2]), match[3]
    return (hour % 12 + (12 if half == "PM" else 0)) * 60 + minute


def _validate(data: dict[str, Any], state: _State, batch: Batch | None) -> dict[str, str]:
    """Check every documented rule and return the fields as text, or raise ``_Invalid``.

    Rules are applied in a fixed order and the first failure is reported, like the real API.
    Formats are strict (``dd-MM-yyyy``, ``hh:mm AM``): a client that sends them exactly is safe.
    """
    fields: dict[str, str] = {}
    for key in _KNOWN_FIELDS:
        value = _text(data, key)
        if value:
            fields[key] = value
    for key in _REQUIRED:
        if key not in fields:
            raise _Invalid("INPUT_PARAMETER_MISSING", f"Input parameter missing: {key}")
    for key in ("trainerErecno", "roomId", "gradeCategoryId"):
        if key in fields and not _ID_RE.match(fields[key]):
            raise _Invalid("INVALID_INPUT", f"Invalid value for {key}: {fields[key]!r}")
    if fields["type"] not in _SESSION_TYPES:
        raise _Invalid(
            "INVALID_INPUT",
            f"Invalid value for type: {fields['type']!r} (0 Classroom, 1 E-learning)",
        )
    for key in ("date", "lockUntil"):
        if key in fields and _parse_ddmmyyyy(fields[key]) is None:
            raise _Invalid(
                "INVALID_INPUT", f"Invalid value for {key}: {fields[key]!r} (dd-MM-yyyy)"
            )
    for key in ("startTime", "endTime"):
        if not _TIME_RE.match(fields[key]):
            raise _Invalid("INVALID_INPUT", f"Invalid value for {key}: {fields[key]!r} (hh:mm AM)")
    if _minutes(fields["endTime"]) <= _minutes(fields["startTime"]):
        raise _Invalid(
            "INVALID_INPUT",
            f"endTime {fields['endTime']} must be after startTime {fields['startTime']}",
        )
    cat = state.config.catalogue
    if cat is not None:
        if fields["trainerErecno"] not in cat.trainers:
            raise _Invalid("INVALID_INPUT", f"No trainer with erecno {fields['trainerErecno']}")
        if "roomId" in fields and fields["roomId"] not in cat.rooms:
            raise _Invalid("INVALID_INPUT", f"No room with id {fields['roomId']}")
    if batch is not None:
        day = _parse_ddmmyyyy(fields["date"])
        assert day is not None
        if not batch.start <= day <= batch.end:
            raise _Invalid(
                "BATCH_DATE_AND_SESSION_DATE_MISMATCH",
                f"Session date {fields['date']} is outside the batch dates "
                f"{batch.start:%d-%m-%Y} to {batch.end:%d-%m-%Y}",
            )
    return fields


def _record(state: _State, module: str, fields: dict[str, str]) -> dict[str, Any]:
    """The session in the create reply's shape (the API page's example, field for field)."""
    cat = state.config.catalogue
    trainer = cat.trainers.get(fields["trainerErecno"], "") if cat else ""
    room = cat.rooms.get(fields.get("roomId", ""), "") if cat else ""
    return {
        "sessionId": state.new_session_id(),
        "sessionName": fields["name"],
        "sessionStartDate": fields["date"],
        "sessionStartTime": fields["startTime"],
        "sessionEndTime": fields["endTime"],
        "description": fields.get("description", ""),
        "trainerErecno": fields["trainerErecno"],
        "sessionTrainer": trainer,
        "moduleId": module,
        "roomId": fields.get("roomId", ""),
        "sessionRoom": room,
        "lockUntil": fields.get("lockUntil", ""),
        "isLocked": "lockUntil" in fields,
        "sessionType": _SESSION_TYPES[fields["type"]],
        "gradeCategoryId": fields.get("gradeCategoryId", ""),
        "gradeCategoryName": "",
        "resources": [],
        "totalLearnersCount": 0,
        "presentLeanersCount": 0,  # sic: the API's own spelling
        "isSessionCompleted": False,
        "canUserEdit": True,
        "canUserDelete": True,
    }


async def _gate(request: web.Request, kind: str) -> _State | web.Response:
    """What every API call goes through: latency, authentication, threshold, injected 5xx.

    Latency is served before the arrival is timed, so jitter can bunch calls together at the
    server exactly as it does over a real network. Unauthenticated calls are answered without
    touching the threshold (the API cannot attribute them to a user); they count as
    ``unauthorized`` only. Every other call counts under ``kind`` ("creates" or "reads") and in
    ``calls``, whatever its outcome.
    """
    state = request.app[STATE]
    cfg = state.config
    lo, hi = cfg.latency
    if hi > 0:
        await cfg.sleep(state.rng.uniform(lo, hi))
    problem = state.token_problem(request.headers.get("Authorization"))
    if problem is not None:
        state.counters["unauthorized"] += 1
        return _error(401, "INVALID_OAUTHTOKEN", problem)
    state.counters[kind] += 1
    try:
        state.admit()
    except _Refused as refused:
        return _refusal(cfg.lock_style, refused.remaining)
    if cfg.fail_rate > 0 and state.rng.random() < cfg.fail_rate:
        state.counters["failures_injected"] += 1
        return _error(500, 500, "Sorry! Server error occured")
    return state


async def create_session(request: web.Request) -> web.StreamResponse:
    """POST .../modules/{m}/sessions: validate, store, reply (or lose the reply on purpose)."""
    gated = await _gate(request, "creates")
    if isinstance(gated, web.Response):
        return gated
    state = gated
    try:
        course, batch_id, module = _check_ids(request, state)
        assert module is not None
        data = await _session_data(request)
        cat = state.config.catalogue
        batch = cat.courses[course].batches[batch_id] if cat else None
        fields = _validate(data, state, batch)
    except _Invalid as bad:
        state.counters["rejected"] += 1
        return _error(bad.status, bad.code, bad.message)
    if state.store.is_duplicate(module, fields["name"], fields["date"], fields["startTime"]):
        state.counters["duplicates"] += 1
    record = _record(state, module, fields)
    state.store.add(course, batch_id, module, record)
    state.counters["created"] += 1
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


def _start_index(request: web.Request) -> int:
    """The 0-based ``startIndex`` of a listing (default 0); anything else is ``_Invalid``."""
    text = request.query.get("startIndex", "0").strip() or "0"
    if not text.isdigit():
        raise _Invalid("INVALID_INPUT", f"Invalid value for startIndex: {text!r}")
    return int(text)


async def list_sessions(request: web.Request) -> web.Response:
    """GET .../sessions?startIndex=: 25 a page in creation order, with ``hasMoreRecords``."""
    gated = await _gate(request, "reads")
    if isinstance(gated, web.Response):
        return gated
    state = gated
    try:
        course, batch, module = _check_ids(request, state)
        start = _start_index(request)
    except _Invalid as bad:
        state.counters["rejected"] += 1
        return _error(bad.status, bad.code, bad.message)
    sessions, more = state.store.page(course, batch, module, start, PAGE_SIZE)
    return web.json_response(
        {"code": 200, "message": "success", "sessions": sessions, "hasMoreRecords": more}
    )


async def list_trainers(request: web.Request) -> web.Response:
    """GET /api/v1/trainers?startIndex=: the catalogue's trainers in file order, 25 a page.

    The reply's shape is invented (Zoho does not publish it): the LMS listing envelope with
    ``trainers`` items of ``erecno`` and ``name``. Without a catalogue the list is empty.
    """
    gated = await _gate(request, "reads")
    if isinstance(gated, web.Response):
        return gated
    state = gated
    try:
        start = _start_index(request)
    except _Invalid as bad:
        state.counters["rejected"] += 1
        return _error(bad.status, bad.code, bad.message)
    cat = state.config.catalogue
    everyone = [
        {"erecno": erecno, "name": name} for erecno, name in (cat.trainers if cat else {}).items()
    ]
    page = everyone[start : start + PAGE_SIZE]
    return web.json_response(
        {
            "code": 200,
            "message": "success",
            "trainers": page,
            "hasMoreRecords": start + PAGE_SIZE < len(everyone),
        }
    )


async def mint_token(request: web.Request) -> web.Response:
    """POST /oauth/v2/token: Zoho accounts' token endpoint; errors come in an HTTP 200."""
    state = request.app[STATE]
    cfg = state.config
    lo, hi = cfg.latency
    if hi > 0:
        await cfg.sleep(state.rng.uniform(lo, hi))
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


def make_app(config: SandboxConfig) -> web.Application:
    """The sandbox as an aiohttp application (for ``aiohttp.test_utils`` or your own runner)."""
    app = web.Application()
    state = _State(config)
    app[STATE] = state
    base = "/api/v1/courses/{course}/batches/{batch}"
    app.router.add_post(base + "/modules/{module}/sessions", create_session)
    app.router.add_get(base + "/modules/{module}/sessions", list_sessions)
    app.router.add_get(base + "/sessions", list_sessions)
    app.router.add_get("/api/v1/trainers", list_trainers)
    app.router.add_post("/oauth/v2/token", mint_token)
    app.router.add_get("/__sandbox/stats", get_stats)
    app.router.add_post("/__sandbox/reset", post_reset)
    app.router.add_post("/__sandbox/lock", post_lock)

    async def close_store(_app: web.Application) -> None:
        state.store.close()

    app.on_cleanup.append(close_store)
    return app


# ---------------------------------------------------------------------------------------- serve


class Sandbox:
    """The sandbox on a real socket: ``async with Sandbox(config) as sb: ... sb.url``.

    ``port=0`` binds a free port, which is what tests want; ``.url`` reports the bound one.
    """

    def __init__(
        self,
        config: SandboxConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_log: bool = False,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.app = make_app(config)
        self._access_log = access_log
        self._runner: web.AppRunner | None = None

    @property
    def token(self) -> str:
        """The static access token, always valid."""
        return self.config.token

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the sandbox is not running")
        host, port = self._runner.addresses[0][:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def stats(self) -> dict[str, Any]:
        """The same counters as ``GET /__sandbox/stats``, without a call."""
        return self.app[STATE].stats()

    def sessions(self) -> list[dict[str, Any]]:
        """Every stored session in creation order (no call, so no effect on the threshold)."""
        return self.app[STATE].store.all()

    def reset(self) -> None:
        self.app[STATE].reset()

    async def start(self) -> Sandbox:
        kwargs: dict[str, Any] = {} if self._access_log else {"access_log": None}
        runner = web.AppRunner(self.app, **kwargs)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(
    config: SandboxConfig,
    host: str,
    port: int,
    *,
    on_ready: Callable[[Sandbox], None] | None = None,
) -> None:
    """Run the sandbox until cancelled. ``on_ready`` gets the running sandbox (to print its URL)."""
    async with Sandbox(config, host, port, access_log=True) as sandbox:
        if on_ready is not None:
            on_ready(sandbox)
        await asyncio.Event().wait()  # until cancelled; the context manager then cleans up

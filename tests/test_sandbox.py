"""The sandbox over real loopback HTTP: an aiohttp client against the server on 127.0.0.1:0.

Time-dependent rules (window, lock, token expiry, mint limit) run on a stepped clock injected into
the sandbox, so a 5-minute lock is crossed by assignment, not by sleeping.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openpyxl
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bulkschedule.core.constants import FIELD_STYLES
from bulkschedule.sandbox.catalogue import DEFAULT_ORG
from bulkschedule.sandbox.server import (
    Sandbox,
    SandboxConfig,
    config_from_options,
    default_catalogue,
    load_catalogue,
    make_app,
    parse_latency,
    parse_rate,
    serve,
)
from bulkschedule.sandbox.shapes import STYLES
from bulkschedule.sheet import columns

COURSE = "478346000019479103"
BATCH = "478346000019479115"
MODULE = "478346000019479119"
MODULE2 = "478346000019479131"
TRAINER = "478346000008251001"
ROOM = "478346000010125093"
SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
CATALOGUE = SAMPLES / "catalogue.json"

MODULE_PATH = f"/api/v1/courses/{COURSE}/batches/{BATCH}/modules/{MODULE}/sessions"
BATCH_PATH = f"/api/v1/courses/{COURSE}/batches/{BATCH}/sessions"


class StepClock:
    """A clock that only moves when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def session_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Fire drill",
        "trainerErecno": TRAINER,
        "type": "0",
        "date": "11-01-2027",
        "startTime": "10:00 AM",
        "endTime": "11:00 AM",
        "description": "Evacuation walk-through",
        "roomId": ROOM,
        "lockUntil": "09-01-2027",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@dataclass
class Env:
    sandbox: Sandbox
    http: aiohttp.ClientSession
    clock: StepClock

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Zoho-oauthtoken {self.sandbox.token}"}

    async def create(
        self,
        path: str = MODULE_PATH,
        style: str = "query",
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
        return await self.send("POST", path, style, headers, session_data(**fields))

    async def patch(
        self,
        session_id: str,
        path: str = MODULE_PATH,
        style: str = "query",
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
        """PATCH .../sessions/{session_id} with the whole session (``session_data`` + fields)."""
        return await self.send("PATCH", f"{path}/{session_id}", style, headers,
                               session_data(**fields))

    async def send(
        self, method: str, path: str, style: str, headers: dict[str, str] | None,
        data: dict[str, Any],
    ) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
        url = self.sandbox.url + path
        kwargs: dict[str, Any] = {"headers": self.auth if headers is None else headers}
        if style == "query":
            kwargs["params"] = {"sessionData": json.dumps(data)}
        elif style == "form":
            kwargs["data"] = {"sessionData": json.dumps(data)}
        elif style == "form-fields":
            kwargs["data"] = {k: str(v) for k, v in data.items()}
        elif style == "json":
            kwargs["json"] = data
        elif style == "json-wrapped":
            kwargs["json"] = {"sessionData": data}
        else:
            raise AssertionError(style)
        async with self.http.request(method, url, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None), resp

    async def get(self, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.get(self.sandbox.url + path, headers=self.auth, params=params) as r:
            return r.status, await r.json(content_type=None)

    async def token(self, **form: str) -> dict[str, Any]:
        async with self.http.post(self.sandbox.url + "/oauth/v2/token", data=form) as resp:
            assert resp.status == 200  # Zoho accounts answers errors in an HTTP 200 too
            return await resp.json()


@asynccontextmanager
async def running(catalogue: bool = False, **options: Any) -> AsyncIterator[Env]:
    clock = options.pop("clock", None) or StepClock()
    config = SandboxConfig(
        clock=clock, catalogue=load_catalogue(CATALOGUE) if catalogue else None, **options
    )
    async with Sandbox(config) as sandbox, aiohttp.ClientSession() as http:
        yield Env(sandbox, http, clock)


# ------------------------------------------------------------------------------- parsing helpers


def test_parse_rate() -> None:
    assert parse_rate("30/60") == (30, 60.0)
    assert parse_rate(" 5/0.5 ") == (5, 0.5)
    for bad in ("30", "x/60", "30/y", "0/60", "30/0", "30/-1", "", "1e2/60", "30/1e2",
                "99999999999999999999999/1", "30/1e308", "30/100000"):
        with pytest.raises(ValueError, match=r"N/SECONDS|above 0|at most"):
            parse_rate(bad)


def test_parse_latency() -> None:
    assert parse_latency("0.05-0.3") == (0.05, 0.3)
    assert parse_latency("0.2") == (0.2, 0.2)
    for bad in ("a-b", "0.3-0.1", "-1", ""):
        with pytest.raises(ValueError, match="latency"):
            parse_latency(bad)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="lock style"):
        SandboxConfig(lock_style="418")
    with pytest.raises(ValueError, match="fail-rate"):
        SandboxConfig(fail_rate=1.5)
    with pytest.raises(ValueError, match="speed"):
        SandboxConfig(speed=0)
    assert SandboxConfig(lock_style=7209).lock_style == "7209"  # type: ignore[arg-type]


def test_load_catalogue_sample() -> None:
    cat = load_catalogue(CATALOGUE)
    batch = cat.courses[COURSE].batches[BATCH]
    assert set(batch.modules) == {MODULE, MODULE2}
    assert (batch.start.isoformat(), batch.end.isoformat()) == ("2027-01-04", "2027-03-26")
    assert set(cat.trainers) == {TRAINER, "478346000008251017", "478346000008251033"}
    assert set(cat.rooms) == {ROOM, "478346000010125107", "478346000010125115"}
    assert cat.trainers[TRAINER].email == "henry.adams@example.com"
    assert cat.rooms[ROOM].location == "Head office"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"courses": [{"id": "abc"}]}', r"courses\[0\]: id must be numeric"),
        (
            '{"courses": [{"id": "1", "batches": [{"id": "2", "endDate": "01-01-2027"}]}]}',
            "missing startDate",
        ),
        (
            '{"courses": [{"id": "1", "batches": [{"id": "2", "startDate": "2027-01-01",'
            ' "endDate": "01-01-2027"}]}]}',
            "startDate must be dd-MM-yyyy",
        ),
        ('{"trainers": [true]}', r"trainers\[0\]"),
    ],
)
def test_load_catalogue_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "cat.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_catalogue(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_catalogue(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------- creating


@pytest.mark.parametrize("style", ["query", "form", "form-fields", "json", "json-wrapped"])
async def test_each_payload_style_creates_a_session(style: str) -> None:
    async with running(catalogue=True) as env:
        status, body, _ = await env.create(style=style)
        assert status == 200, body
        assert body["code"] == 200 and body["message"] == "success"
        s = body["session"]
        assert isinstance(s["sessionId"], str) and len(s["sessionId"]) == 18
        assert s["sessionId"].isdigit()
        assert {
            "sessionName": "Fire drill",
            "sessionStartDate": "11-01-2027",
            "sessionStartTime": "10:00 AM",
            "sessionEndTime": "11:00 AM",
            "trainerErecno": TRAINER,
            "moduleId": MODULE,
            "roomId": ROOM,
            "lockUntil": "09-01-2027",
            "sessionType": "Classroom",
            "sessionTrainer": "Henry Adams",
            "sessionRoom": "Training Room A",
        }.items() <= s.items()
        assert env.sandbox.sessions() == [s]


async def test_session_ids_are_fresh_and_type_1_is_elearning() -> None:
    async with running() as env:
        ids = set()
        for i in range(5):
            status, body, _ = await env.create(name=f"S{i}", type=1, roomId=None)
            assert status == 200
            assert body["session"]["sessionType"] == "E-learning"
            assert body["session"]["roomId"] == ""
            ids.add(body["session"]["sessionId"])
        assert len(ids) == 5


async def test_without_catalogue_any_numeric_ids_are_accepted() -> None:
    async with running() as env:
        path = "/api/v1/courses/1/batches/2/modules/3/sessions"
        status, body, _ = await env.create(path, trainerErecno="999", date="01-01-1999")
        assert status == 200, body
        assert body["session"]["sessionTrainer"] == ""


@pytest.mark.parametrize(
    "missing", ["name", "trainerErecno", "type", "date", "startTime", "endTime"]
)
async def test_missing_required_field(missing: str) -> None:
    async with running() as env:
        status, body, _ = await env.create(**{missing: None})
        assert status == 400
        assert body == {
            "code": "INPUT_PARAMETER_MISSING",
            "message": f"Input parameter missing: {missing}",
        }
        assert env.sandbox.stats()["rejected"] == 1
        assert env.sandbox.sessions() == []


async def test_blank_name_counts_as_missing() -> None:
    async with running() as env:
        status, body, _ = await env.create(name="   ")
        assert (status, body["code"]) == (400, "INPUT_PARAMETER_MISSING")


async def test_no_session_data_at_all() -> None:
    async with running() as env:
        async with env.http.post(env.sandbox.url + MODULE_PATH, headers=env.auth) as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == "INPUT_PARAMETER_MISSING"
        bad = {"sessionData": "{oops"}
        async with env.http.post(
            env.sandbox.url + MODULE_PATH, headers=env.auth, params=bad
        ) as resp:
            assert resp.status == 400
            assert await resp.json() == {
                "code": "INVALID_INPUT",
                "message": "sessionData is not valid JSON",
            }


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("date", "2027-01-11", "date"),
        ("date", "31-02-2027", "date"),
        ("date", "1-1-2027", "date"),
        ("lockUntil", "09/01/2027", "lockUntil"),
        ("startTime", "10:00", "startTime"),
        ("startTime", "13:00 PM", "startTime"),
        ("endTime", "11:00 am", "endTime"),
        ("endTime", "9:00 AM", "endTime"),
        ("type", "2", "type"),
        ("type", "Classroom", "type"),
        ("type", True, "type"),
        ("trainerErecno", "T-100", "trainerErecno"),
        ("trainerErecno", 1.5, "trainerErecno"),
        ("roomId", "room 1", "roomId"),
        ("gradeCategoryId", "abc", "gradeCategoryId"),
    ],
)
async def test_invalid_field(field: str, value: Any, fragment: str) -> None:
    async with running() as env:
        status, body, _ = await env.create(style="json", **{field: value})
        assert status == 400
        assert body["code"] == "INVALID_INPUT"
        assert body["message"].startswith(f"Invalid value for {fragment}")
        assert env.sandbox.sessions() == []


@pytest.mark.parametrize(
    ("start", "end"), [("11:00 AM", "10:00 AM"), ("10:00 AM", "10:00 AM"), ("12:30 PM", "12:15 AM")]
)
async def test_end_must_be_after_start(start: str, end: str) -> None:
    async with running() as env:
        status, body, _ = await env.create(startTime=start, endTime=end)
        assert status == 400
        assert body["code"] == "INVALID_INPUT"
        assert "must be after" in body["message"]


async def test_noon_and_midnight_on_the_12_hour_clock() -> None:
    async with running() as env:
        status, _, _ = await env.create(startTime="12:00 AM", endTime="12:30 AM")
        assert status == 200
        status, _, _ = await env.create(name="b", startTime="11:30 AM", endTime="12:15 PM")
        assert status == 200


async def test_numeric_json_values_are_accepted_for_ids_and_type() -> None:
    async with running() as env:
        status, body, _ = await env.create(style="json", trainerErecno=int(TRAINER), type=0)
        assert status == 200, body
        assert body["session"]["trainerErecno"] == TRAINER


async def test_non_numeric_path_id() -> None:
    async with running() as env:
        path = "/api/v1/courses/abc/batches/2/modules/3/sessions"
        status, body, _ = await env.create(path)
        assert (status, body["code"]) == (400, "INVALID_INPUT")
        assert "courseId" in body["message"]


# ----------------------------------------------------------------------------------- catalogue


@pytest.mark.parametrize(
    ("path", "what"),
    [
        (f"/api/v1/courses/1/batches/{BATCH}/modules/{MODULE}/sessions", "course"),
        (f"/api/v1/courses/{COURSE}/batches/2/modules/{MODULE}/sessions", "batch"),
        (f"/api/v1/courses/{COURSE}/batches/{BATCH}/modules/3/sessions", "module"),
    ],
)
async def test_catalogue_unknown_path_ids_are_404(path: str, what: str) -> None:
    async with running(catalogue=True) as env:
        status, body, _ = await env.create(path)
        assert status == 404
        assert body["code"] == 404 and f"no {what}" in body["message"]
        status, body = await env.get(path)
        assert status == 404


async def test_catalogue_unknown_trainer_or_room_is_400() -> None:
    async with running(catalogue=True) as env:
        status, body, _ = await env.create(trainerErecno="478346000008251999")
        assert (status, body["code"]) == (400, "INVALID_INPUT")
        assert "trainer" in body["message"]
        status, body, _ = await env.create(roomId="478346000010125999")
        assert (status, body["code"]) == (400, "INVALID_INPUT")
        assert "room" in body["message"]


@pytest.mark.parametrize("day", ["03-01-2027", "27-03-2027", "11-01-2026"])
async def test_catalogue_date_outside_batch(day: str) -> None:
    async with running(catalogue=True) as env:
        status, body, _ = await env.create(date=day)
        assert status == 400
        assert body["code"] == "BATCH_DATE_AND_SESSION_DATE_MISMATCH"
        assert "04-01-2027 to 26-03-2027" in body["message"]


@pytest.mark.parametrize("day", ["04-01-2027", "26-03-2027"])
async def test_catalogue_batch_dates_are_inclusive(day: str) -> None:
    async with running(catalogue=True) as env:
        status, _, _ = await env.create(date=day)
        assert status == 200


# ----------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Zoho-oauthtoken wrong"}, {"Authorization": "Bearer sandbox-token"}],
)
async def test_missing_or_wrong_token_is_401(headers: dict[str, str]) -> None:
    async with running() as env:
        status, body, _ = await env.create(headers=headers)
        assert status == 401
        assert body["code"] == "INVALID_OAUTHTOKEN"
        stats = env.sandbox.stats()
        assert stats["unauthorized"] == 1
        assert stats["calls"] == 0  # unauthenticated calls never reach the threshold
        assert env.sandbox.sessions() == []


async def test_custom_static_token_never_expires() -> None:
    async with running(token="static-xyz", token_ttl=10) as env:
        env.clock.advance(10**6)
        status, _, _ = await env.create(headers={"Authorization": "Zoho-oauthtoken static-xyz"})
        assert status == 200


CREDS = {"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret"}


async def test_mint_token_and_use_it_until_it_expires() -> None:
    async with running(token_ttl=3600) as env:
        reply = await env.token(
            grant_type="refresh_token", refresh_token="sandbox-refresh-token", **CREDS
        )
        assert reply["expires_in"] == 3600
        assert reply["token_type"] == "Bearer" and "api_domain" in reply
        token = reply["access_token"]
        headers = {"Authorization": f"Zoho-oauthtoken {token}"}
        env.clock.advance(3599)
        status, _, _ = await env.create(headers=headers)
        assert status == 200
        env.clock.advance(1)
        status, body, _ = await env.create(headers=headers, name="again")
        assert status == 401
        assert body == {"code": "INVALID_OAUTHTOKEN", "message": "OAuth access token expired"}
        assert env.sandbox.stats()["tokens_minted"] == 1


async def test_eleventh_mint_in_ten_minutes_is_access_denied() -> None:
    async with running() as env:
        form = {"grant_type": "refresh_token", "refresh_token": "sandbox-refresh-token", **CREDS}
        tokens = set()
        for _ in range(10):
            tokens.add((await env.token(**form))["access_token"])
            env.clock.advance(59)  # ten mints inside 590 seconds
        assert len(tokens) == 10
        denied = await env.token(**form)
        assert denied == {
            "error": "Access Denied",
            "error_description": "You have made too many requests continuously. "
            "Please try again after some time.",
        }
        env.clock.advance(600 - 590 + 1)  # the first mint leaves the 10-minute window
        assert "access_token" in await env.token(**form)
        stats = env.sandbox.stats()
        assert (stats["tokens_minted"], stats["mints_refused"]) == (11, 1)


async def test_mint_errors_come_in_http_200() -> None:
    async with running() as env:
        wrong_refresh = await env.token(grant_type="refresh_token", refresh_token="nope", **CREDS)
        assert wrong_refresh == {"error": "invalid_code"}
        wrong_client = await env.token(
            grant_type="refresh_token",
            refresh_token="sandbox-refresh-token",
            client_id="x",
            client_secret="sandbox-client-secret",
        )
        assert wrong_client == {"error": "invalid_client"}
        assert await env.token(grant_type="password", **CREDS) == {
            "error": "unsupported_grant_type"
        }
        assert env.sandbox.stats()["tokens_minted"] == 0


async def test_authorization_code_grant_returns_refresh_token_once() -> None:
    async with running(grant_code="code-123") as env:
        assert await env.token(grant_type="authorization_code", code="bad", **CREDS) == {
            "error": "invalid_code"
        }
        reply = await env.token(grant_type="authorization_code", code="code-123", **CREDS)
        assert reply["refresh_token"] == "sandbox-refresh-token"
        status, _, _ = await env.create(
            headers={"Authorization": f"Zoho-oauthtoken {reply['access_token']}"}
        )
        assert status == 200
        # grant codes are single-use
        again = await env.token(grant_type="authorization_code", code="code-123", **CREDS)
        assert again == {"error": "invalid_code"}


async def test_mint_accepts_query_parameters() -> None:
    async with running() as env:
        params = {"grant_type": "refresh_token", "refresh_token": "sandbox-refresh-token", **CREDS}
        async with env.http.post(env.sandbox.url + "/oauth/v2/token", params=params) as resp:
            assert "access_token" in await resp.json()


# ----------------------------------------------------------------------------- threshold & lock


async def test_sliding_window_then_lock_then_recovery() -> None:
    async with running(rate_calls=3, rate_seconds=60, lock_seconds=300) as env:
        for i in range(3):
            status, _, _ = await env.create(name=f"s{i}")
            assert status == 200
            env.clock.advance(10)
        # 3 calls in (now-60, now]: the 4th is refused and starts the lock
        status, body, resp = await env.create(name="s3")
        assert (status, body["code"]) == (429, 429)
        assert resp.headers["Retry-After"] == "300"
        stats = env.sandbox.stats()
        assert (stats["lockouts"], stats["refused"], stats["locked"]) == (1, 1, True)
        assert stats["created"] == 3
        # every call during the lock is refused, reads included, and counted
        env.clock.advance(299.5)
        status, _, resp = await env.create(name="s4")
        assert status == 429 and resp.headers["Retry-After"] == "1"
        status, _ = await env.get(MODULE_PATH)
        assert status == 429
        stats = env.sandbox.stats()
        assert (stats["calls_during_lock"], stats["refused"], stats["lockouts"]) == (2, 3, 1)
        # the lock ends; a fresh budget of N calls
        env.clock.advance(0.5)
        for i in range(3):
            status, _, _ = await env.create(name=f"after{i}")
            assert status == 200
        status, _, _ = await env.create(name="over")
        assert status == 429
        assert env.sandbox.stats()["lockouts"] == 2


async def test_window_slides_rather_than_resetting_per_minute() -> None:
    async with running(rate_calls=2, rate_seconds=60) as env:
        assert (await env.create(name="a"))[0] == 200  # t=0
        env.clock.advance(59)
        assert (await env.create(name="b"))[0] == 200  # t=59
        env.clock.advance(1)
        assert (await env.create(name="c"))[0] == 200  # t=60: the call at t=0 has left
        env.clock.advance(58)
        assert (await env.create(name="d"))[0] == 429  # t=118: b (59) and c (60) still inside


async def test_reads_count_against_the_limit() -> None:
    async with running(rate_calls=2) as env:
        assert (await env.get(MODULE_PATH))[0] == 200
        assert (await env.get(BATCH_PATH))[0] == 200
        assert (await env.create())[0] == 429
        stats = env.sandbox.stats()
        assert (stats["reads"], stats["creates"], stats["calls"]) == (2, 1, 3)


async def test_extend_lock_on_call() -> None:
    async with running(rate_calls=1, lock_seconds=100, extend_lock_on_call=True) as env:
        await env.create(name="a")
        assert (await env.create(name="b"))[0] == 429  # lock until t+100
        env.clock.advance(90)
        status, _, resp = await env.create(name="c")  # restarts the lock
        assert status == 429 and resp.headers["Retry-After"] == "100"
        env.clock.advance(20)
        assert (await env.create(name="d"))[0] == 429
        env.clock.advance(100)
        assert (await env.create(name="e"))[0] == 200


async def test_without_extend_calls_during_lock_do_not_prolong_it() -> None:
    async with running(rate_calls=1, lock_seconds=100) as env:
        await env.create(name="a")
        await env.create(name="b")
        env.clock.advance(90)
        status, _, resp = await env.create(name="c")
        assert status == 429 and resp.headers["Retry-After"] == "10"
        env.clock.advance(10)
        assert (await env.create(name="d"))[0] == 200


async def test_lock_style_422() -> None:
    async with running(rate_calls=1, lock_style="422") as env:
        await env.create(name="a")
        status, body, resp = await env.create(name="b")
        assert status == 422
        assert body == {"code": 422, "message": "Maximum limit exceeded"}
        assert "Retry-After" not in resp.headers


async def test_lock_style_7209() -> None:
    async with running(rate_calls=1, lock_style="7209") as env:
        await env.create(name="a")
        status, body, _ = await env.create(name="b")
        assert status == 200
        assert body == {
            "response": {
                "errors": {
                    "code": 7209,
                    "message": "API access blocked since threshold limit exceeded. "
                    "Please try after some time",
                },
                "status": 1,
            }
        }
        assert len(env.sandbox.sessions()) == 1


async def test_lock_style_429_body_and_header() -> None:
    async with running(rate_calls=1, lock_style="429", lock_seconds=300) as env:
        await env.create(name="a")
        status, body, resp = await env.create(name="b")
        assert status == 429
        assert body == {"code": 429, "message": "Too many requests"}
        assert resp.headers["Retry-After"] == "300"
        env.clock.advance(0.25)
        _, _, resp = await env.create(name="c")
        assert resp.headers["Retry-After"] == "300"  # 299.75 rounded up


async def test_start_locked() -> None:
    async with running(start_locked=120) as env:
        status, _, resp = await env.create()
        assert status == 429 and resp.headers["Retry-After"] == "120"
        stats = env.sandbox.stats()
        assert stats["calls_during_lock"] == 1
        assert stats["lockouts"] == 0  # the client did not cause this one
        env.clock.advance(120)
        assert (await env.create())[0] == 200


async def test_manual_lock_endpoint() -> None:
    async with running() as env:
        async with env.http.post(env.sandbox.url + "/__sandbox/lock?seconds=42") as resp:
            assert (await resp.json())["lock_remaining"] == 42
        _, _, resp = await env.create()
        assert resp.headers["Retry-After"] == "42"


async def test_speed_scales_window_lock_and_retry_after() -> None:
    async with running(rate_calls=2, rate_seconds=60, lock_seconds=300, speed=10) as env:
        assert (await env.create(name="a"))[0] == 200
        env.clock.advance(6)  # a whole scaled window (60 / 10)
        assert (await env.create(name="b"))[0] == 200
        assert (await env.create(name="c"))[0] == 200
        status, _, resp = await env.create(name="d")
        assert status == 429 and resp.headers["Retry-After"] == "30"  # 300 / 10
        env.clock.advance(29.5)
        _, _, resp = await env.create(name="e")
        assert resp.headers["Retry-After"] == "1"
        env.clock.advance(0.5)
        assert (await env.create(name="f"))[0] == 200


async def test_speed_retry_after_is_at_least_one_second() -> None:
    async with running(rate_calls=1, lock_seconds=300, speed=1000) as env:
        await env.create(name="a")
        _, _, resp = await env.create(name="b")  # 0.3 s remaining
        assert resp.headers["Retry-After"] == "1"


async def test_max_calls_in_window_counts_every_arrival() -> None:
    async with running(rate_calls=30, rate_seconds=60) as env:
        for _ in range(5):
            await env.get(MODULE_PATH)
            env.clock.advance(20)  # arrivals at 0, 20, 40, 60, 80: at most 3 in any 60 s
        assert env.sandbox.stats()["max_calls_in_window"] == 3
        for _ in range(4):
            await env.get(MODULE_PATH)  # a burst at t=100: with 60 and 80 that is 6
        assert env.sandbox.stats()["max_calls_in_window"] == 6


async def test_max_calls_in_window_includes_refused_calls() -> None:
    async with running(rate_calls=2) as env:
        for i in range(5):
            await env.create(name=f"s{i}")
        stats = env.sandbox.stats()
        assert stats["max_calls_in_window"] == 5
        assert (stats["refused"], stats["created"]) == (3, 2)


# --------------------------------------------------------------------------------------- faults


async def test_fail_rate_one_gives_500_and_stores_nothing() -> None:
    async with running(fail_rate=1.0) as env:
        for _ in range(3):
            status, body, _ = await env.create()
            assert status == 500
            assert body == {"code": 500, "message": "Sorry! Server error occured"}
        assert env.sandbox.sessions() == []
        stats = env.sandbox.stats()
        assert (stats["failures_injected"], stats["created"], stats["calls"]) == (3, 0, 3)


async def test_lost_reply_drops_the_connection_but_stores_the_session() -> None:
    async with running(lose_reply_rate=1.0) as env:
        with pytest.raises(aiohttp.ClientConnectionError):
            await env.create(name="lost one")
        status, body = await env.get(MODULE_PATH)
        assert status == 200
        assert [s["sessionName"] for s in body["sessions"]] == ["lost one"]
        assert env.sandbox.stats()["replies_lost"] == 1
        assert env.sandbox.stats()["created"] == 1


async def test_latency_sleeps_a_uniform_draw_per_call() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async with running(latency=(0.2, 0.4), sleep=fake_sleep, seed=7) as env:
        for i in range(20):
            await env.create(name=f"s{i}")
    assert len(slept) == 20
    assert all(0.2 <= s <= 0.4 for s in slept)
    assert len(set(slept)) > 1  # jitter, not a constant


async def test_latency_delays_over_the_real_loop() -> None:
    """One real sleep: asyncio's own clock shows the reply came no sooner than MIN."""
    async with running(latency=(0.05, 0.05)) as env:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await env.create())[0] == 200
        assert loop.time() - started >= 0.05 - 0.005  # the loop's clock resolution


async def _fault_trace(seed: int) -> list[int]:
    async with running(fail_rate=0.3, lose_reply_rate=0.3, seed=seed) as env:
        trace = []
        for i in range(30):
            try:
                trace.append((await env.create(name=f"s{i}"))[0])
            except aiohttp.ClientConnectionError:
                trace.append(-1)
        return trace


async def test_seed_makes_faults_reproducible() -> None:
    first, second = await _fault_trace(11), await _fault_trace(11)
    assert first == second
    assert {200, 500, -1} <= set(first)
    assert await _fault_trace(12) != first


async def test_reset_replays_the_same_faults_and_clears_state() -> None:
    async with running(fail_rate=0.5, seed=3, rate_calls=1000) as env:
        first = [(await env.create(name=f"s{i}"))[0] for i in range(10)]
        async with env.http.post(env.sandbox.url + "/__sandbox/reset") as resp:
            assert resp.status == 200
        assert env.sandbox.stats()["calls"] == 0
        assert env.sandbox.sessions() == []
        again = [(await env.create(name=f"s{i}"))[0] for i in range(10)]
        assert first == again


# ------------------------------------------------------------------------------------- listing


async def test_listing_pages_of_25_with_has_more_records() -> None:
    async with running(rate_calls=1000) as env:
        for i in range(60):
            module = MODULE if i < 50 else MODULE2
            path = f"/api/v1/courses/{COURSE}/batches/{BATCH}/modules/{module}/sessions"
            assert (await env.create(path, name=f"S{i:02d}"))[0] == 200
        pages = []
        for start in (0, 25, 50):
            status, body = await env.get(BATCH_PATH, startIndex=start)
            assert status == 200 and body["code"] == "200"  # the LMS v1 envelope: text
            pages.append(body)
        assert [len(p["sessions"]) for p in pages] == [25, 25, 10]
        assert [p["hasMoreRecords"] for p in pages] == [True, True, False]
        names = [s["sessionName"] for p in pages for s in p["sessions"]]
        assert names == [f"S{i:02d}" for i in range(60)]
        # the module listing holds only its own sessions, with the create reply's field names
        status, body = await env.get(MODULE_PATH, startIndex=25)
        assert len(body["sessions"]) == 25 and body["hasMoreRecords"] is False
        item = body["sessions"][0]
        assert {
            "sessionId",
            "sessionName",
            "sessionStartDate",
            "sessionStartTime",
            "sessionEndTime",
            "trainerErecno",
            "moduleId",
        } <= item.keys()
        assert item["moduleId"] == MODULE
        status, body = await env.get(MODULE_PATH)  # startIndex defaults to 0
        assert body["sessions"][0]["sessionName"] == "S00"


async def test_listing_bad_start_index() -> None:
    async with running() as env:
        status, body = await env.get(MODULE_PATH, startIndex="-1")
        assert (status, body["code"]) == (400, "INVALID_INPUT")


async def test_listing_requires_auth() -> None:
    async with running() as env, env.http.get(env.sandbox.url + MODULE_PATH) as resp:
        assert resp.status == 401


TRAINERS_PATH = "/api/v1/trainers"


async def test_trainers_listed_from_the_catalogue_and_counted_as_reads() -> None:
    async with running(catalogue=True) as env:
        status, body = await env.get(TRAINERS_PATH, startIndex=0)
        assert status == 200
        assert (body["code"], body["message"], body["hasMoreRecords"]) == ("200", "success",
                                                                            False)
        assert body["trainers"] == [
            {"erecno": TRAINER, "name": "Henry Adams", "email": "henry.adams@example.com",
             "employeeStatus": "active"},
            {"erecno": "478346000008251017", "name": "Priya Raman",
             "email": "priya.raman@example.com", "employeeStatus": "active"},
            {"erecno": "478346000008251033", "name": "Tomás Ortega",
             "email": "tomas.ortega@example.com", "employeeStatus": "active"},
        ]
        status, body = await env.get(TRAINERS_PATH)  # startIndex defaults to 0
        assert len(body["trainers"]) == 3
        stats = env.sandbox.stats()
        assert (stats["reads"], stats["calls"], stats["creates"]) == (2, 2, 0)
        assert stats["sessions"] == 0


async def test_trainers_without_a_catalogue_is_an_empty_list() -> None:
    async with running() as env:
        status, body = await env.get(TRAINERS_PATH, startIndex=0)
        assert status == 200
        assert body == {"code": "200", "message": "success", "trainers": [],
                        "hasMoreRecords": False}
        assert env.sandbox.stats()["reads"] == 1


async def test_trainers_pages_of_25(tmp_path: Path) -> None:
    data = tmp_path / "catalogue.json"
    erecnos = [str(478346000008260000 + i) for i in range(30)]
    data.write_text(json.dumps(
        {"trainers": [{"erecno": e, "name": f"Trainer {i}"} for i, e in enumerate(erecnos)]}))
    clock = StepClock()
    config = SandboxConfig(clock=clock, catalogue=load_catalogue(data))
    async with Sandbox(config) as sandbox, aiohttp.ClientSession() as http:
        env = Env(sandbox, http, clock)
        pages = [(await env.get(TRAINERS_PATH, startIndex=start))[1] for start in (0, 25, 30)]
    assert [len(p["trainers"]) for p in pages] == [25, 5, 0]
    assert [p["hasMoreRecords"] for p in pages] == [True, False, False]
    assert [t["erecno"] for p in pages for t in p["trainers"]] == erecnos


async def test_trainers_need_auth_bad_start_index_and_the_threshold() -> None:
    async with running(catalogue=True, rate_calls=2) as env:
        async with env.http.get(env.sandbox.url + TRAINERS_PATH) as resp:
            assert resp.status == 401
            assert (await resp.json())["code"] == "INVALID_OAUTHTOKEN"
        assert env.sandbox.stats()["calls"] == 0  # unauthenticated: not counted
        status, body = await env.get(TRAINERS_PATH, startIndex="x")
        assert (status, body["code"]) == (400, "INVALID_INPUT")
        assert (await env.get(TRAINERS_PATH))[0] == 200
        status, body = await env.get(TRAINERS_PATH)  # the third call in the window
        assert status == 429
        stats = env.sandbox.stats()
        assert (stats["reads"], stats["calls"], stats["refused"]) == (3, 3, 1)
        assert stats["unauthorized"] == 1 and stats["rejected"] == 1


async def test_duplicates_are_counted_but_still_created() -> None:
    async with running() as env:
        await env.create()
        await env.create(description="other text")  # same module/name/date/start
        await env.create(startTime="11:00 AM", endTime="12:00 PM")  # different start
        other = f"/api/v1/courses/{COURSE}/batches/{BATCH}/modules/{MODULE2}/sessions"
        await env.create(other)  # different module
        stats = env.sandbox.stats()
        assert (stats["duplicates"], stats["created"]) == (1, 4)


async def test_stats_endpoint_over_http() -> None:
    async with running() as env:
        await env.create()
        async with env.http.get(env.sandbox.url + "/__sandbox/stats") as resp:
            stats = await resp.json()
        for key in (
            "calls",
            "creates",
            "created",
            "refused",
            "lockouts",
            "calls_during_lock",
            "duplicates",
            "max_calls_in_window",
            "failures_injected",
            "replies_lost",
            "tokens_minted",
        ):
            assert key in stats
        assert (stats["calls"], stats["creates"], stats["created"]) == (1, 1, 1)
        assert stats == env.sandbox.stats()


# ----------------------------------------------------------------------------- SQLite & server


async def test_sqlite_keeps_sessions_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.sqlite"
    async with running(db=db) as env:
        _, first, _ = await env.create(name="kept")
    async with running(db=db) as env:
        status, body = await env.get(MODULE_PATH)
        assert status == 200
        assert [s["sessionName"] for s in body["sessions"]] == ["kept"]
        _, second, _ = await env.create(name="new")
        assert int(second["session"]["sessionId"]) > int(first["session"]["sessionId"])
        assert env.sandbox.stats()["sessions"] == 2


async def test_make_app_works_with_any_runner() -> None:
    app = make_app(SandboxConfig())
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/__sandbox/stats")
        assert (await resp.json())["calls"] == 0


async def test_sandbox_url_and_stop() -> None:
    sandbox = Sandbox(SandboxConfig())
    with pytest.raises(RuntimeError):
        _ = sandbox.url
    await sandbox.start()
    assert sandbox.url.startswith("http://127.0.0.1:")
    assert sandbox.token == "sandbox-token"
    await sandbox.stop()
    await sandbox.stop()  # idempotent


async def test_serve_runs_until_cancelled() -> None:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(SandboxConfig(), "127.0.0.1", 0, on_ready=lambda sb: ready.set_result(sb.url))
    )
    url = await asyncio.wait_for(ready, 5)
    async with aiohttp.ClientSession() as http, http.get(url + "/__sandbox/stats") as resp:
        assert resp.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(url + "/__sandbox/stats")


# ------------------------------------------------------------------------------------ the org

COURSE2 = "478346000019480011"  # Leadership essentials
DRAFTED = "478346000019481003"  # Data protection refresher, drafted
SUMMER = "478346000019479143"  # the first course's second batch
SUMMER_MODULE = "478346000019479155"
ROOM3 = "478346000010125115"
READ_PATHS = (
    "/api/v1/courses",
    f"/api/v1/courses/{COURSE}",
    f"/api/v1/courses/{COURSE}/batches",
    f"/api/v1/courses/{COURSE}/batches/{BATCH}",
    f"/api/v1/courses/{COURSE}/batches/{BATCH}/modules",
    f"/api/v1/courses/{COURSE}/batches/{BATCH}/modules/{MODULE}",
    "/api/v1/trainers",
    "/api/v1/rooms",
    f"/api/v1/rooms/{ROOM}",
    MODULE_PATH,
    BATCH_PATH,
)


def test_the_default_org_is_the_sample_catalogue() -> None:
    """One source: sample_data/catalogue.json is DEFAULT_ORG written out (make_by_name.py)."""
    assert json.loads(CATALOGUE.read_text(encoding="utf-8")) == DEFAULT_ORG
    assert load_catalogue(CATALOGUE) == default_catalogue()
    assert default_catalogue() is not default_catalogue()


def test_every_field_style_has_a_shape() -> None:
    assert set(STYLES) == set(FIELD_STYLES)
    with pytest.raises(ValueError, match="field-style"):
        SandboxConfig(field_style="camel")
    with pytest.raises(ValueError, match="latency-at"):
        SandboxConfig(latency_at="midway")


def test_config_from_options_reads_latency_at_and_field_style(tmp_path: Path) -> None:
    config = config_from_options(rate="5/10", latency="0.1-0.2", data=str(CATALOGUE),
                                 latency_at="reply", field_style="employee", seed=3)
    assert (config.latency, config.latency_at, config.field_style) == ((0.1, 0.2), "reply",
                                                                        "employee")
    assert config.catalogue == default_catalogue() and config.seed == 3
    default = config_from_options(rate="30/60", latency="0-0", data=None)
    assert (default.latency_at, default.field_style) == ("arrival", "default")
    assert default.catalogue == default_catalogue()  # the standalone sandbox holds the org too
    with pytest.raises(ValueError, match="latency-at"):
        config_from_options(rate="30/60", latency="0", data=None, latency_at="later")


async def test_courses_listing_in_the_v1_envelope_with_state_and_search() -> None:
    async with running(catalogue=True) as env:
        status, body = await env.get("/api/v1/courses", startIndex=0)
        assert status == 200
        assert (body["code"], body["message"], body["hasMoreRecords"]) == ("200", "success",
                                                                            False)
        assert body["courses"] == [
            {"courseId": COURSE, "courseName": "New starter programme", "state": "published"},
            {"courseId": COURSE2, "courseName": "Leadership essentials", "state": "published"},
            {"courseId": DRAFTED, "courseName": "Data protection refresher", "state": "drafted"},
        ]
        _, body = await env.get("/api/v1/courses", state="published")
        assert [c["courseId"] for c in body["courses"]] == [COURSE, COURSE2]
        _, body = await env.get("/api/v1/courses", state="drafted")
        assert [c["courseId"] for c in body["courses"]] == [DRAFTED]
        _, body = await env.get("/api/v1/courses", search="  LEADERSHIP  ")
        assert [c["courseId"] for c in body["courses"]] == [COURSE2]
        status, body = await env.get("/api/v1/courses", state="archived")
        assert (status, body["code"]) == (400, "INVALID_INPUT")
        assert "state" in body["message"]
        stats = env.sandbox.stats()
        assert (stats["reads"], stats["calls"], stats["rejected"]) == (5, 5, 1)


async def test_one_course_and_its_batches_with_display_dates() -> None:
    async with running(catalogue=True) as env:
        status, body = await env.get(f"/api/v1/courses/{COURSE}")
        assert status == 200
        assert body == {"code": "200", "message": "success",
                        "course": {"courseId": COURSE, "courseName": "New starter programme",
                                   "state": "published"}}
        status, body = await env.get(f"/api/v1/courses/{COURSE}/batches")
        assert status == 200 and body["hasMoreRecords"] is False
        assert body["batches"] == [
            {"batchId": BATCH, "batchName": "Spring term 2027", "courseId": COURSE,
             "publishStatus": "published", "startDateAsDisplayString": "04-Jan-2027",
             "endDateAsDisplayString": "26-Mar-2027"},
            {"batchId": SUMMER, "batchName": "Summer term 2027", "courseId": COURSE,
             "publishStatus": "published", "startDateAsDisplayString": "12-Apr-2027",
             "endDateAsDisplayString": "02-Jul-2027"},
        ]


async def test_one_batch_as_the_api_page_shows_it() -> None:
    async with running(catalogue=True) as env:
        status, body = await env.get(f"/api/v1/courses/{COURSE}/batches/{BATCH}")
        assert status == 200
        assert (body["code"], body["message"]) == ("200", "success")
        batch = body["batch"]
        assert {"batchId": BATCH, "courseId": COURSE, "publishStatus": "published",
                "startDateAsDisplayString": "04-Jan-2027",
                "endDateAsDisplayString": "26-Mar-2027"}.items() <= batch.items()


async def test_modules_of_a_batch_and_one_module() -> None:
    async with running(catalogue=True) as env:
        status, body = await env.get(f"/api/v1/courses/{COURSE}/batches/{BATCH}/modules")
        assert status == 200 and body["code"] == "200" and body["hasMoreRecords"] is False
        assert body["modules"] == [
            {"moduleId": MODULE, "moduleName": "Foundations", "batchId": BATCH,
             "courseId": COURSE},
            {"moduleId": MODULE2, "moduleName": "Customer care", "batchId": BATCH,
             "courseId": COURSE},
        ]
        status, body = await env.get(
            f"/api/v1/courses/{COURSE}/batches/{SUMMER}/modules/{SUMMER_MODULE}")
        assert status == 200
        assert body["module"] == {"moduleId": SUMMER_MODULE, "moduleName": "Foundations",
                                  "batchId": SUMMER, "courseId": COURSE}


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("/api/v1/courses/478346000019479999", "no course"),
        ("/api/v1/courses/478346000019479999/batches", "no course"),
        (f"/api/v1/courses/{COURSE2}/batches/{BATCH}", "no batch"),  # a batch of another course
        (f"/api/v1/courses/{COURSE}/batches/1/modules", "no batch"),
        (f"/api/v1/courses/{COURSE}/batches/{SUMMER}/modules/{MODULE}", "no module"),
        ("/api/v1/rooms/478346000010125999", "no room"),
    ],
)
async def test_org_reads_of_what_does_not_exist_are_404(path: str, what: str) -> None:
    async with running(catalogue=True) as env:
        status, body = await env.get(path)
        assert status == 404
        assert body["code"] == 404 and what in body["message"]
        assert env.sandbox.stats()["rejected"] == 1


@pytest.mark.parametrize("path", ["/api/v1/courses/abc", "/api/v1/rooms/room-1",
                                  f"/api/v1/courses/{COURSE}/batches/x1"])
async def test_org_reads_with_a_non_numeric_id_are_400(path: str) -> None:
    async with running(catalogue=True) as env:
        status, body = await env.get(path)
        assert (status, body["code"]) == (400, "INVALID_INPUT")


async def test_rooms_in_the_documented_shape() -> None:
    async with running(catalogue=True) as env:
        status, body = await env.get("/api/v1/rooms")
        assert status == 200
        assert (body["code"], body["message"], body["hasMoreRecords"]) == ("200", "success",
                                                                            False)
        assert body["rooms"][0] == {
            "roomId": ROOM, "name": "Training Room A",
            "location": {"locationId": "478346000010120001", "name": "Head office"},
            "facilities": ["Projector", "Whiteboard"], "capacity": 20,
        }
        assert [r["location"]["name"] for r in body["rooms"]] == [
            "Head office", "Head office", "Riverside campus"]
        status, body = await env.get(f"/api/v1/rooms/{ROOM3}")
        assert status == 200
        assert body["room"]["name"] == "Riverside Suite" and body["code"] == "200"


def _org_with_an_inactive_trainer(tmp_path: Path) -> Path:
    data = tmp_path / "org.json"
    data.write_text(json.dumps({
        "courses": [{"id": COURSE, "batches": [{"id": BATCH, "startDate": "04-01-2027",
                                                "endDate": "26-03-2027",
                                                "modules": [MODULE]}]}],
        "trainers": [
            {"erecno": TRAINER, "name": "Henry Adams", "email": "h@example.com"},
            {"erecno": "478346000008251065", "name": "Oliver Grant", "status": "inactive"},
        ],
    }), encoding="utf-8")
    return data


async def test_trainers_filtered_by_employee_status(tmp_path: Path) -> None:
    config = SandboxConfig(catalogue=load_catalogue(_org_with_an_inactive_trainer(tmp_path)))
    async with Sandbox(config) as sandbox, aiohttp.ClientSession() as http:
        env = Env(sandbox, http, StepClock())
        _, body = await env.get(TRAINERS_PATH, employeeStatus="active")
        assert [t["erecno"] for t in body["trainers"]] == [TRAINER]
        _, body = await env.get(TRAINERS_PATH, employeeStatus="inactive")
        assert body["trainers"] == [{"erecno": "478346000008251065", "name": "Oliver Grant",
                                     "email": "", "employeeStatus": "inactive"}]
        _, body = await env.get(TRAINERS_PATH)
        assert len(body["trainers"]) == 2
        status, body = await env.get(TRAINERS_PATH, employeeStatus="retired")
        assert (status, body["code"]) == (400, "INVALID_INPUT")
        # ... and an inactive trainer cannot be named on a session
        status, body, _ = await env.create(trainerErecno="478346000008251065", roomId=None)
        assert (status, body["code"]) == (400, "INVALID_INPUT")
        assert "not an active" in body["message"]


def _big_org(tmp_path: Path) -> Path:
    """30 courses; the first has 30 batches of 30 modules; 30 rooms: enough for two pages."""
    ids = iter(range(478346000070000000, 478346000080000000))
    batches = [{"id": str(next(ids)), "name": f"B{b}", "startDate": "01-01-2027",
                "endDate": "31-12-2027",
                "modules": [{"id": str(next(ids)), "name": f"M{m}"} for m in range(30)]}
               for b in range(30)]
    courses = [{"id": str(next(ids)), "name": f"C{c}", "batches": batches if c == 0 else []}
               for c in range(30)]
    rooms = [{"id": str(next(ids)), "name": f"R{r}"} for r in range(30)]
    data = tmp_path / "big.json"
    data.write_text(json.dumps({"courses": courses, "rooms": rooms}), encoding="utf-8")
    return data


async def test_every_org_listing_pages_25_at_a_time(tmp_path: Path) -> None:
    cat = load_catalogue(_big_org(tmp_path))
    course = next(iter(cat.courses.values()))
    batch = next(iter(course.batches.values()))
    listings = {
        "/api/v1/courses": ("courses", "courseId", list(cat.courses)),
        f"/api/v1/courses/{course.id}/batches": ("batches", "batchId", list(course.batches)),
        f"/api/v1/courses/{course.id}/batches/{batch.id}/modules":
            ("modules", "moduleId", list(batch.modules)),
        "/api/v1/rooms": ("rooms", "roomId", list(cat.rooms)),
    }
    config = SandboxConfig(catalogue=cat, rate_calls=1000)
    async with Sandbox(config) as sandbox, aiohttp.ClientSession() as http:
        env = Env(sandbox, http, StepClock())
        for path, (key, id_key, expected) in listings.items():
            pages = [(await env.get(path, startIndex=start))[1] for start in (0, 25, 30)]
            assert [len(p[key]) for p in pages] == [25, 5, 0], path
            assert [p["hasMoreRecords"] for p in pages] == [True, False, False], path
            assert [item[id_key] for p in pages[:2] for item in p[key]] == expected, path
            status, body = await env.get(path, startIndex="-1")
            assert (status, body["code"]) == (400, "INVALID_INPUT"), path


async def test_without_a_catalogue_the_org_is_empty() -> None:
    async with running() as env:
        for path, key in (("/api/v1/courses", "courses"), ("/api/v1/rooms", "rooms"),
                          (TRAINERS_PATH, "trainers")):
            status, body = await env.get(path)
            assert (status, body[key], body["hasMoreRecords"]) == (200, [], False)
        status, _ = await env.get(f"/api/v1/courses/{COURSE}/batches/{BATCH}")
        assert status == 404
        status, _ = await env.get(BATCH_PATH)  # sessions under any numeric ids still list
        assert status == 200


@pytest.mark.parametrize("path", READ_PATHS)
async def test_every_read_counts_against_the_threshold_and_its_lock(path: str) -> None:
    async with running(catalogue=True, rate_calls=2, lock_seconds=300) as env:
        assert (await env.get(path))[0] == 200
        assert (await env.get(path))[0] == 200
        status, body = await env.get(path)  # the third in the window starts the lock
        assert (status, body["code"]) == (429, 429)
        env.clock.advance(299)
        assert (await env.get(path))[0] == 429  # still locked
        env.clock.advance(1)
        assert (await env.get(path))[0] == 200
        stats = env.sandbox.stats()
        assert (stats["reads"], stats["calls"], stats["lockouts"], stats["refused"]) == (5, 5, 1,
                                                                                         2)
        async with env.http.get(env.sandbox.url + path) as resp:  # no token
            assert resp.status == 401
        assert env.sandbox.stats()["calls"] == 5


@pytest.mark.parametrize("path", READ_PATHS)
async def test_every_read_can_get_an_injected_500(path: str) -> None:
    async with running(catalogue=True, fail_rate=1.0) as env:
        status, body = await env.get(path)
        assert (status, body["code"]) == (500, 500)
        assert env.sandbox.stats()["failures_injected"] == 1


def _epoch_ms(day: str) -> int:
    d = datetime.datetime.strptime(day, "%d-%m-%Y").replace(tzinfo=datetime.UTC)
    return int(d.timestamp() * 1000)


@pytest.mark.parametrize("style", FIELD_STYLES)
async def test_each_field_style_names_the_org_its_own_way(style: str) -> None:
    """Every listing in every style carries the same facts under the style's names."""
    shape = STYLES[style]
    expected_date = {"display": "04-Jan-2027", "dd-MM-yyyy": "04-01-2027",
                     "epoch": _epoch_ms("04-01-2027")}[shape.dates]
    async with running(catalogue=True, field_style=style) as env:
        _, body = await env.get("/api/v1/courses")
        assert body["code"] == shape.code
        first = body["courses"][0]
        assert (first[shape.course_id], first[shape.course_name], first[shape.course_state]) \
            == (COURSE, "New starter programme", "published")
        _, body = await env.get(f"/api/v1/courses/{COURSE}/batches")
        batch = body["batches"][0]
        assert (batch[shape.batch_id], batch[shape.batch_name]) == (BATCH, "Spring term 2027")
        assert batch[shape.batch_start] == expected_date
        _, body = await env.get(f"/api/v1/courses/{COURSE}/batches/{BATCH}")
        assert body["batch"]["startDateAsDisplayString"] == "04-Jan-2027"  # documented: always
        assert body["batch"]["endDateAsDisplayString"] == "26-Mar-2027"
        _, body = await env.get(f"/api/v1/courses/{COURSE}/batches/{BATCH}/modules")
        module = body["modules"][0]
        assert (module[shape.module_id], module[shape.module_name]) == (MODULE, "Foundations")
        _, body = await env.get(TRAINERS_PATH, employeeStatus="active")
        trainer = body["trainers"][2]
        name = " ".join(trainer[k] for k in shape.trainer_name)
        assert (trainer[shape.trainer_id], name, trainer[shape.trainer_email]) == (
            "478346000008251033", "Tomás Ortega", "tomas.ortega@example.com")
        _, body = await env.get("/api/v1/rooms")
        assert body["rooms"][0]["location"]["name"] == "Head office"  # documented: always
        _, body = await env.get(MODULE_PATH)
        assert body["code"] == shape.code


def test_the_styles_spread_the_variants_a_client_must_read() -> None:
    """Between them the styles use every name variant issue 11 lists for trainers and dates."""
    ids = {s.trainer_id for s in STYLES.values()}
    names = {k for s in STYLES.values() for k in s.trainer_name}
    emails = {s.trainer_email for s in STYLES.values()}
    assert {"erecno", "trainerErecno", "employeeErecno", "erecNo", "id"} <= ids
    assert {"name", "trainerName", "employeeName", "FirstName", "LastName",
            "displayName"} <= names
    assert {"email", "emailId", "EmailID"} <= emails
    assert {s.dates for s in STYLES.values()} == {"display", "dd-MM-yyyy", "epoch"}
    assert {type(s.code) for s in STYLES.values()} == {str, int}
    assert STYLES["default"].code == "200"


# ------------------------------------------------------------------------------------- update


async def _created(env: Env, **fields: Any) -> dict[str, Any]:
    status, body, _ = await env.create(**fields)
    assert status == 200, body
    session: dict[str, Any] = body["session"]
    return session


@pytest.mark.parametrize("style", ["query", "form", "form-fields", "json", "json-wrapped"])
async def test_each_payload_style_updates_a_session(style: str) -> None:
    async with running(catalogue=True) as env:
        first = await _created(env, name="first")
        session = await _created(env, name="second")
        status, body, _ = await env.patch(
            session["sessionId"], style=style, name="second", startTime="01:00 PM",
            endTime="02:30 PM", trainerErecno="478346000008251017", roomId="478346000010125107")
        assert status == 200, body
        assert (body["code"], body["message"]) == (200, "success")
        updated = body["session"]
        assert {"sessionId": session["sessionId"], "sessionName": "second",
                "sessionStartTime": "01:00 PM", "sessionEndTime": "02:30 PM",
                "trainerErecno": "478346000008251017", "sessionTrainer": "Priya Raman",
                "roomId": "478346000010125107", "sessionRoom": "Training Room B",
                "moduleId": MODULE}.items() <= updated.items()
        _, listing = await env.get(MODULE_PATH)
        assert listing["sessions"] == [first, updated]  # updated in place, order kept
        stats = env.sandbox.stats()
        assert (stats["updates"], stats["updated"], stats["creates"], stats["created"]) == (
            1, 1, 2, 2)
        assert (stats["calls"], stats["sessions"]) == (4, 2)


async def test_update_validates_as_create_does() -> None:
    async with running(catalogue=True) as env:
        session = await _created(env)
        sid = session["sessionId"]
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"startTime": None}, 400, "INPUT_PARAMETER_MISSING"),  # the whole session
            ({"date": "2027-01-11"}, 400, "INVALID_INPUT"),
            ({"endTime": "09:00 AM"}, 400, "INVALID_INPUT"),
            ({"date": "27-03-2027"}, 400, "BATCH_DATE_AND_SESSION_DATE_MISMATCH"),
            ({"trainerErecno": "478346000008251999"}, 400, "INVALID_INPUT"),
            ({"roomId": "478346000010125999"}, 400, "INVALID_INPUT"),
        ]
        for fields, status, code in cases:
            got, body, _ = await env.patch(sid, **fields)
            assert (got, body["code"]) == (status, code), fields
        assert env.sandbox.sessions() == [session]  # nothing changed
        stats = env.sandbox.stats()
        assert (stats["updates"], stats["updated"], stats["rejected"]) == (6, 0, 6)


async def test_partial_updates_merge_onto_the_stored_session() -> None:
    async with running(catalogue=True, partial_updates=True) as env:
        session = await _created(env)
        status, body, _ = await env.send("PATCH", f"{MODULE_PATH}/{session['sessionId']}",
                                         "json", None, {"startTime": "09:00 AM"})
        assert status == 200, body
        assert body["session"]["sessionStartTime"] == "09:00 AM"
        assert body["session"]["sessionName"] == session["sessionName"]
        assert body["session"]["roomId"] == ROOM
        status, body, _ = await env.send("PATCH", f"{MODULE_PATH}/{session['sessionId']}",
                                         "json", None, {"startTime": "12:00 PM"})
        assert (status, body["code"]) == (400, "INVALID_INPUT")  # after its end: refused


async def test_update_of_an_unknown_session_is_404() -> None:
    async with running(catalogue=True) as env:
        session = await _created(env)
        status, body, _ = await env.patch("478346000050099999")
        assert status == 404
        assert body["code"] == 404 and "no session 478346000050099999" in body["message"]
        # a session that exists, but under another module, is not found there either
        other = f"/api/v1/courses/{COURSE}/batches/{BATCH}/modules/{MODULE2}/sessions"
        status, _, _ = await env.patch(session["sessionId"], path=other)
        assert status == 404
        status, body, _ = await env.patch("abc")
        assert (status, body["code"]) == (400, "INVALID_INPUT")
        path = f"/api/v1/courses/{COURSE}/batches/{BATCH}/modules/1/sessions"
        status, body, _ = await env.patch(session["sessionId"], path=path)
        assert status == 404 and "no module" in body["message"]
        stats = env.sandbox.stats()
        assert (stats["updates"], stats["rejected"], stats["updated"]) == (4, 4, 0)


async def test_update_lost_reply_after_the_update_is_stored() -> None:
    async with running(catalogue=True, lose_reply_rate=1.0) as env:
        session = env.sandbox.add_session(COURSE, BATCH, MODULE, **session_data())
        with pytest.raises(aiohttp.ClientConnectionError):
            await env.patch(session["sessionId"], startTime="02:00 PM", endTime="03:00 PM")
        (stored,) = env.sandbox.sessions()
        assert stored["sessionId"] == session["sessionId"]
        assert stored["sessionStartTime"] == "02:00 PM"
        stats = env.sandbox.stats()
        assert (stats["replies_lost"], stats["updated"], stats["updates"]) == (1, 1, 1)
        # sending it again sets the same values: still one session, updated once more
        with pytest.raises(aiohttp.ClientConnectionError):
            await env.patch(session["sessionId"], startTime="02:00 PM", endTime="03:00 PM")
        assert env.sandbox.sessions() == [stored]


async def test_update_goes_through_the_threshold_auth_and_5xx() -> None:
    async with running(catalogue=True, rate_calls=1, lock_style="422") as env:
        session = await _created(env)
        status, body, _ = await env.patch(session["sessionId"], startTime="08:00 AM")
        assert (status, body) == (422, {"code": 422, "message": "Maximum limit exceeded"})
        stats = env.sandbox.stats()
        assert (stats["updates"], stats["refused"], stats["updated"]) == (1, 1, 0)
        status, _, _ = await env.patch(session["sessionId"], headers={})
        assert status == 401
        assert env.sandbox.stats()["unauthorized"] == 1
    async with running(catalogue=True, fail_rate=1.0) as env:
        session = env.sandbox.add_session(COURSE, BATCH, MODULE, **session_data())
        status, body, _ = await env.patch(session["sessionId"], startTime="08:00 AM")
        assert (status, body["code"]) == (500, 500)
        assert env.sandbox.sessions() == [session]


# ------------------------------------------------------------------------- edits outside the API


async def test_add_session_outside_any_sheet_makes_no_call() -> None:
    async with running(catalogue=True) as env:
        made = env.sandbox.add_session(COURSE, BATCH, MODULE2, **session_data(name="By hand"))
        assert made["sessionName"] == "By hand" and made["moduleId"] == MODULE2
        assert len(made["sessionId"]) == 18
        assert env.sandbox.stats()["calls"] == 0
        _, body = await env.get(BATCH_PATH)
        assert body["sessions"] == [made]
        created = await _created(env)
        assert int(created["sessionId"]) > int(made["sessionId"])  # ids never collide
        with pytest.raises(ValueError, match="BATCH_DATE_AND_SESSION_DATE_MISMATCH"):
            env.sandbox.add_session(COURSE, BATCH, MODULE, **session_data(date="01-04-2027"))
        with pytest.raises(ValueError, match="no module"):
            env.sandbox.add_session(COURSE, SUMMER, MODULE, **session_data())
        assert len(env.sandbox.sessions()) == 2


async def test_edit_session_as_an_admin_in_zohos_screens() -> None:
    async with running(catalogue=True) as env:
        session = await _created(env)
        calls = env.sandbox.stats()["calls"]
        edited = env.sandbox.edit_session(session["sessionId"], startTime="10:30 AM",
                                          trainerErecno="478346000008251033", roomId=None)
        assert env.sandbox.stats()["calls"] == calls  # no call, nothing counted
        assert {"sessionStartTime": "10:30 AM", "trainerErecno": "478346000008251033",
                "sessionTrainer": "Tomás Ortega", "roomId": "", "sessionRoom": "",
                "sessionName": session["sessionName"],
                "sessionId": session["sessionId"]}.items() <= edited.items()
        _, body = await env.get(MODULE_PATH)
        assert body["sessions"] == [edited]
        with pytest.raises(ValueError, match="must be after"):
            env.sandbox.edit_session(session["sessionId"], startTime="11:30 AM")
        with pytest.raises(ValueError, match="INPUT_PARAMETER_MISSING"):
            env.sandbox.edit_session(session["sessionId"], name="")
        with pytest.raises(KeyError):
            env.sandbox.edit_session("478346000050099999", name="x")
        assert env.sandbox.sessions() == [edited]


# ------------------------------------------------------------------------- the by-name sample


def _make_by_name() -> Any:
    spec = importlib.util.spec_from_file_location("make_by_name", SAMPLES / "make_by_name.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(path: Path) -> dict[str, list[tuple[str, Any, str]]]:
    wb = openpyxl.load_workbook(path)
    return {ws.title: [(c.coordinate, c.value, c.number_format) for row in ws.iter_rows()
                       for c in row if c.value is not None] for ws in wb.worksheets}


def _rows(path: Path) -> list[dict[str, Any]]:
    """The Sessions sheet as dicts under canonical column names."""
    ws = openpyxl.load_workbook(path)["Sessions"]
    values = list(ws.iter_rows(values_only=True))
    names = [columns.canonical(str(h)) or str(h) for h in values[0]]
    return [dict(zip(names, row, strict=True)) for row in values[1:]
            if any(v is not None for v in row)]  # the template is formatted far below the term


def test_by_name_sample_is_what_the_script_writes(tmp_path: Path) -> None:
    fresh = tmp_path / "by_name.xlsx"
    mbn = _make_by_name()
    mbn.write_by_name_xlsx(fresh)
    assert _cells(fresh) == _cells(SAMPLES / "sessions_by_name.xlsx"), (
        "sample_data/sessions_by_name.xlsx is stale: run python sample_data/make_by_name.py")
    assert CATALOGUE.read_text(encoding="utf-8") == mbn.catalogue_json()


def test_by_name_sample_headers_are_columns_an_admin_types() -> None:
    ws = openpyxl.load_workbook(SAMPLES / "sessions_by_name.xlsx")["Sessions"]
    headers = [str(c.value) for c in ws[1]]
    assert {"Course", "Batch", "Module", "Trainer", "Room"} <= set(headers)
    mapped = columns.map_headers(headers)
    assert not mapped.unknown and not mapped.duplicate
    assert set(mapped.index) >= set(columns.REQUIRED)


def _resolve(candidates: dict[str, str], typed: str) -> str:
    """The one id whose name (or email) matches ``typed``, ignoring case and extra spaces."""
    def fold(text: str) -> str:
        return " ".join(text.split()).casefold()

    found = [ident for ident, name in candidates.items() if fold(name) == fold(typed)]
    assert len(found) == 1, (typed, found)
    return found[0]


def test_by_name_sample_is_the_term_of_sessions_xlsx_in_names() -> None:
    """Each row's names resolve in the default org, uniquely, to the IDs of the same row of
    sessions.xlsx; every other cell is the same."""
    org = default_catalogue()
    by_id, by_name = _rows(SAMPLES / "sessions.xlsx"), _rows(SAMPLES / "sessions_by_name.xlsx")
    assert len(by_name) == len(by_id) == 40
    emails = 0
    for ids, names in zip(by_id, by_name, strict=True):
        course = _resolve({c.id: c.name for c in org.courses.values()}, names["courseId"])
        batches = org.courses[course].batches
        batch = _resolve({b.id: b.name for b in batches.values()}, names["batchId"])
        module = _resolve(batches[batch].modules, names["moduleId"])
        trainers = {t.erecno: t.email if "@" in names["trainerErecno"] else t.name
                    for t in org.trainers.values()}
        emails += "@" in names["trainerErecno"]
        trainer = _resolve(trainers, names["trainerErecno"])
        room = _resolve({r.id: r.name for r in org.rooms.values()}, names["roomId"]) \
            if names["roomId"] else None
        assert (course, batch, module, trainer, room) == (
            ids["courseId"], ids["batchId"], ids["moduleId"], ids["trainerErecno"],
            ids["roomId"])
        same = {k: v for k, v in ids.items()
                if k not in ("courseId", "batchId", "moduleId", "trainerErecno", "roomId",
                             "gradeCategoryId")}
        assert {k: names.get(k) for k in same} == same
    assert 0 < emails < 40  # trainers by email and by name, both


def _as_session_data(row: dict[str, Any]) -> dict[str, str]:
    """A sample row (typed cells) as the documented sessionData."""
    def clock(t: datetime.time) -> str:
        return f"{(t.hour % 12) or 12:02d}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"

    data = {"name": row["name"], "trainerErecno": row["trainerErecno"],
            "type": {"Classroom": "0", "E-learning": "1"}[row["type"]],
            "date": f"{row['date']:%d-%m-%Y}", "startTime": clock(row["startTime"]),
            "endTime": clock(row["endTime"]), "description": row.get("description"),
            "roomId": row.get("roomId"),
            "lockUntil": f"{row['lockUntil']:%d-%m-%Y}" if row.get("lockUntil") else None}
    return {k: v for k, v in data.items() if v}


async def test_the_default_org_takes_every_sample_session() -> None:
    """sessions.xlsx against the default org (as `run --sandbox` sends it): every row created,
    so the batch dates hold every sample date and every ID exists where the sheet puts it."""
    rows = _rows(SAMPLES / "sessions.xlsx")
    async with running(catalogue=True, rate_calls=1000) as env:
        assert env.sandbox.config.catalogue == default_catalogue()
        for row in rows:
            path = (f"/api/v1/courses/{row['courseId']}/batches/{row['batchId']}/modules/"
                    f"{row['moduleId']}/sessions")
            status, body, _ = await env.send("POST", path, "query", None, _as_session_data(row))
            assert status == 200, (row, body)
        stats = env.sandbox.stats()
        assert (stats["created"], stats["rejected"], stats["duplicates"]) == (40, 0, 0)


# ------------------------------------------------------------------------------ latency placement


class HeldSleep:
    """A ``sleep`` that holds each call until the test lets it go, and says when it is held."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.entered.set()
        await self.release.wait()


@pytest.mark.parametrize(("latency_at", "counted_while_held"), [("arrival", 0), ("reply", 1)])
async def test_latency_falls_before_or_after_the_call_is_counted(
        latency_at: str, counted_while_held: int) -> None:
    held = HeldSleep()
    async with running(latency=(0.2, 0.2), latency_at=latency_at, sleep=held) as env:
        call = asyncio.create_task(env.create())
        await asyncio.wait_for(held.entered.wait(), 5)
        stats = env.sandbox.stats()
        assert (stats["calls"], stats["created"]) == (counted_while_held, counted_while_held)
        assert not call.done()  # the reply waits either way
        held.release.set()
        status, _, _ = await asyncio.wait_for(call, 5)
        assert status == 200 and held.slept == [0.2]
        assert env.sandbox.stats()["created"] == 1


@pytest.mark.parametrize(("latency_at", "expected"), [("arrival", 200), ("reply", 429)])
async def test_latency_at_arrival_is_what_moves_a_call_across_the_lock(
        latency_at: str, expected: int) -> None:
    """Sent 1 s before a lock ends with 2 s of delay: counted at arrival it lands after the lock,
    counted at once it is refused. The delay moves the (stepped) clock as it would move time."""
    clock = StepClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    async with running(clock=clock, sleep=sleep, latency=(2.0, 2.0), latency_at=latency_at,
                       start_locked=10) as env:
        clock.advance(9)
        status, _, _ = await env.create()
        assert status == expected
        assert env.sandbox.stats()["calls_during_lock"] == (expected == 429)


async def test_the_same_seed_gives_the_same_faults_in_either_placement() -> None:
    async def trace(latency_at: str) -> tuple[list[int], list[float]]:
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        async with running(latency=(0.1, 0.5), latency_at=latency_at, sleep=sleep,
                           fail_rate=0.4, seed=5) as env:
            return [(await env.create(name=f"s{i}"))[0] for i in range(15)], slept

    arrival, reply = await trace("arrival"), await trace("reply")
    assert arrival == reply
    assert {200, 500} <= set(arrival[0])

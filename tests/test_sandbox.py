"""The sandbox over real loopback HTTP: an aiohttp client against the server on 127.0.0.1:0.

Time-dependent rules (window, lock, token expiry, mint limit) run on a stepped clock injected into
the sandbox, so a 5-minute lock is crossed by assignment, not by sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bulkschedule.sandbox.server import (
    Sandbox,
    SandboxConfig,
    load_catalogue,
    make_app,
    parse_latency,
    parse_rate,
    serve,
)

COURSE = "478346000019479103"
BATCH = "478346000019479115"
MODULE = "478346000019479119"
MODULE2 = "478346000019479131"
TRAINER = "478346000008251001"
ROOM = "478346000010125093"
CATALOGUE = Path(__file__).resolve().parent.parent / "sample_data" / "catalogue.json"

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
        data = session_data(**fields)
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
        async with self.http.post(url, **kwargs) as resp:
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

"""Token providers: the refresh flow, its cache across runs, single flight, Zoho's error-in-200
replies, and secrets kept out of every message, repr and log line."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from bulkschedule.zoho.auth import (
    CACHE_FILE_NAME,
    AuthError,
    RefreshingToken,
    StaticToken,
    TokenProvider,
    exchange_grant_code,
    from_env,
    mask,
)

ACCOUNTS = "https://accounts.zoho.com"
TOKEN_URL = f"{ACCOUNTS}/oauth/v2/token"
CLIENT_ID = "1000.CLIENTIDCLIENTIDCLIENTID12"
SECRET = "s3cr3t-client-secret-0123456789abcdef"
REFRESH = "1000.refreshrefreshrefresh.tokentokentoken42"
ACCESS = ["1000.access-one-aaaaaaaaaaaaaaaaaaa.x1", "1000.access-two-bbbbbbbbbbbbbbbbbbb.x2"]
SECRETS = (SECRET, REFRESH, *ACCESS)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def minted(n: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "access_token": ACCESS[n],
        "expires_in": 3600,
        "api_domain": "https://www.zohoapis.com",
        "token_type": "Bearer",
        **extra,
    }


def posts(m: aioresponses) -> list[dict[str, str]]:
    """The form bodies POSTed to the token endpoint."""
    out = []
    for (method, url), calls in m.requests.items():
        assert method == "POST" and str(url) == TOKEN_URL
        for call in calls:
            data = call.kwargs["data"]
            out.append(dict(data) if isinstance(data, dict) else dict(parse_qsl(data)))
    return out


def provider(
    http: aiohttp.ClientSession,
    cache: Path | None,
    clock: Clock | None = None,
    refresh: str = REFRESH,
) -> RefreshingToken:
    return RefreshingToken(
        ACCOUNTS, CLIENT_ID, SECRET, refresh, session=http, cache_path=cache, clock=clock or Clock()
    )


# --------------------------------------------------------------------------------------------
# mask, static token


def test_mask() -> None:
    assert mask("1000.8cb99dxxxxxxxx9be93.9b8xxxxxx9f") == "1000.8…9f"
    assert "8cb99d" not in mask("1000.8cb99dxxxxxxxx9be93.9b8xxxxxx9f")
    assert mask("short") == "********"
    assert mask("") == "********"


async def test_static_token() -> None:
    p = StaticToken(f"  {ACCESS[0]}\n")
    assert isinstance(p, TokenProvider)
    assert await p.token() == ACCESS[0]
    with pytest.raises(AuthError, match="set a fresh ZOHO_ACCESS_TOKEN") as info:
        await p.refresh(ACCESS[0])
    assert not info.value.transient
    assert ACCESS[0] not in repr(p) and ACCESS[0] not in str(info.value)


# --------------------------------------------------------------------------------------------
# refresh flow and cache


async def test_mint_sends_the_documented_form_and_ignores_api_domain(
    http: aiohttp.ClientSession,
) -> None:
    p = provider(http, None)
    assert isinstance(p, TokenProvider)
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted())
        assert await p.token() == ACCESS[0]
        assert posts(m) == [
            {
                "grant_type": "refresh_token",
                "client_id": CLIENT_ID,
                "client_secret": SECRET,
                "refresh_token": REFRESH,
            }
        ]
        assert await p.token() == ACCESS[0]  # in memory now
        assert len(posts(m)) == 1


async def test_cache_file_is_private_and_reused_across_runs(
    http: aiohttp.ClientSession, tmp_state: Path
) -> None:
    cache = tmp_state / CACHE_FILE_NAME
    clock = Clock()
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted(0))
        assert await provider(http, cache, clock).token() == ACCESS[0]  # run 1 mints
        clock.now += 1800
        assert await provider(http, cache, clock).token() == ACCESS[0]  # run 2 reuses
        assert len(posts(m)) == 1
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    text = cache.read_text()
    assert ACCESS[0] in text
    for secret in (SECRET, REFRESH, CLIENT_ID):  # only a hash identifies the account
        assert secret not in text
    assert [p.name for p in tmp_state.iterdir()] == [CACHE_FILE_NAME]  # no temp files left


async def test_cache_is_keyed_by_account(http: aiohttp.ClientSession, tmp_state: Path) -> None:
    cache = tmp_state / CACHE_FILE_NAME
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted(0))
        m.post(TOKEN_URL, payload=minted(1))
        assert await provider(http, cache).token() == ACCESS[0]
        other = provider(http, cache, refresh="1000.another-refresh-token-zzzzzzzz")
        assert await other.token() == ACCESS[1]
        assert await provider(http, cache).token() == ACCESS[0]  # both entries kept
        assert len(posts(m)) == 2


async def test_expiry_margin(http: aiohttp.ClientSession, tmp_state: Path) -> None:
    cache = tmp_state / CACHE_FILE_NAME
    clock = Clock()
    p = provider(http, cache, clock)
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted(0))
        m.post(TOKEN_URL, payload=minted(1))
        assert await p.token() == ACCESS[0]
        clock.now += 3600 - 300 - 1  # just inside the 5-minute margin
        assert await p.token() == ACCESS[0]
        assert await provider(http, cache, clock).token() == ACCESS[0]
        clock.now += 2  # within 5 minutes of expiry: not reused
        assert await provider(http, cache, clock).token() == ACCESS[1]
        assert len(posts(m)) == 2


async def test_short_lived_token_is_not_reminted_on_every_call(
    http: aiohttp.ClientSession,
) -> None:
    """The margin is capped at a tenth of the lifetime, so a 60 s token is still usable."""
    clock = Clock()
    p = provider(http, None, clock)
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted(0, expires_in=60))
        assert await p.token() == ACCESS[0]
        clock.now += 50
        assert await p.token() == ACCESS[0]
        assert len(posts(m)) == 1


@pytest.mark.parametrize(
    ("reply", "lifetime"),
    [
        ({"expires_in": 3600000, "expires_in_sec": 3600}, 3600),  # older replies: ms + sec
        ({"expires_in": 3600000}, 3600),
        ({}, 3600),
        ({"expires_in": "7200"}, 7200),
    ],
)
async def test_lifetime_variants(
    http: aiohttp.ClientSession, tmp_state: Path, reply: dict[str, Any], lifetime: float
) -> None:
    cache = tmp_state / CACHE_FILE_NAME
    clock = Clock()
    body = {"access_token": ACCESS[0], **reply}
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=body)
        await provider(http, cache, clock).token()
    entry = next(iter(json.loads(cache.read_text()).values()))
    assert entry["expires_at"] - entry["obtained_at"] == lifetime


async def test_damaged_cache_is_ignored_and_rewritten(
    http: aiohttp.ClientSession, tmp_state: Path
) -> None:
    cache = tmp_state / CACHE_FILE_NAME
    cache.write_text("{not json")
    cache.chmod(0o644)
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted(0))
        assert await provider(http, cache).token() == ACCESS[0]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert json.loads(cache.read_text())


async def test_unwritable_cache_is_not_fatal(
    http: aiohttp.ClientSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted(0))
        assert await provider(http, blocker / "sub" / CACHE_FILE_NAME).token() == ACCESS[0]
    assert "could not write the token cache" in caplog.text


class HeldMint:
    """A token endpoint that holds the first mint until the test releases it, so the other
    callers are provably waiting while it is in flight (no sleeps, no timing)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def callback(self, url: Any, **_: Any) -> CallbackResult:
        self.calls += 1
        self.entered.set()
        await self.release.wait()
        return CallbackResult(payload=minted(self.n))

    async def run(self, callers: list[Any]) -> list[str]:
        tasks = [asyncio.ensure_future(c) for c in callers]
        entered = asyncio.ensure_future(self.entered.wait())
        await asyncio.wait([entered, *tasks], return_when=asyncio.FIRST_COMPLETED)
        assert entered.done(), "a caller finished before the mint was even reached"
        assert not any(t.done() for t in tasks)  # all of them are in flight together
        self.release.set()
        return list(await asyncio.gather(*tasks))


async def test_single_flight_refresh(http: aiohttp.ClientSession) -> None:
    p = provider(http, None)
    mint = HeldMint(1)
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted(0))
        stale = await p.token()
        m.post(TOKEN_URL, callback=mint.callback, repeat=True)
        results = await mint.run([p.refresh(stale) for _ in range(10)])
    assert results == [ACCESS[1]] * 10
    assert mint.calls == 1


async def test_single_flight_first_token(http: aiohttp.ClientSession) -> None:
    p = provider(http, None)
    mint = HeldMint(0)
    with aioresponses() as m:
        m.post(TOKEN_URL, callback=mint.callback, repeat=True)
        assert await mint.run([p.token() for _ in range(10)]) == [ACCESS[0]] * 10
    assert mint.calls == 1


async def test_refresh_of_an_already_replaced_token_does_not_mint(
    http: aiohttp.ClientSession,
) -> None:
    p = provider(http, None)
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted(0))
        await p.token()
        assert await p.refresh("1000.some-older-token-from-before-xx") == ACCESS[0]
        assert len(posts(m)) == 1


async def test_refresh_skips_a_cached_token_that_was_just_rejected(
    http: aiohttp.ClientSession, tmp_state: Path
) -> None:
    """A fresh-looking cached token the server rejects (revoked) must not be handed back."""
    cache = tmp_state / CACHE_FILE_NAME
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted(0))
        m.post(TOKEN_URL, payload=minted(1))
        await provider(http, cache).token()
        second_run = provider(http, cache)
        assert await second_run.token() == ACCESS[0]
        assert await second_run.refresh(ACCESS[0]) == ACCESS[1]
        assert len(posts(m)) == 2
        # ...and another process that finds the new token in the cache uses it without minting
        assert await provider(http, cache).refresh(ACCESS[0]) == ACCESS[1]
        assert len(posts(m)) == 2


# --------------------------------------------------------------------------------------------
# token endpoint errors (HTTP 200 with an `error` field, and friends)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"error": "invalid_code"}, "revoked"),
        (200, {"error": "invalid_client"}, "ZOHO_CLIENT_ID and ZOHO_CLIENT_SECRET"),
        (
            200,
            {
                "error": "Access Denied",
                "error_description": "You have made too many requests "
                "continuously. Please try again after some time.",
            },
            "Wait about 10 minutes",
        ),
        (400, {"error": "Access Denied"}, "Wait about 10 minutes"),
        (429, "", "Wait about 10 minutes"),
        (200, "<html><body>Too Many Requests</body></html>", "Wait about 10 minutes"),
        (200, {"error": "invalid_redirect_uri"}, "invalid_redirect_uri; HTTP 200"),
        (200, {"access_token": ""}, "no access token in the reply"),
        (500, "<html><title>Internal Error</title></html>", "Internal Error; HTTP 500"),
    ],
)
async def test_token_endpoint_errors_are_never_retried(
    http: aiohttp.ClientSession,
    status: int,
    body: Any,
    expected: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    p = provider(http, None)
    with aioresponses() as m:
        if isinstance(body, dict):
            m.post(TOKEN_URL, status=status, payload=body, repeat=True)
        else:
            m.post(TOKEN_URL, status=status, body=body, repeat=True)
        with pytest.raises(AuthError) as info:
            await p.token()
        assert len(posts(m)) == 1
    assert expected in info.value.message
    assert not info.value.transient
    for secret in SECRETS:
        assert secret not in str(info.value) and secret not in repr(info.value)
        assert secret not in caplog.text


async def test_secrets_echoed_by_the_token_endpoint_are_scrubbed(
    http: aiohttp.ClientSession,
) -> None:
    p = provider(http, None)
    with aioresponses() as m:
        m.post(
            TOKEN_URL,
            payload={"error": "weird", "error_description": f"got {REFRESH} and {SECRET}"},
        )
        with pytest.raises(AuthError) as info:
            await p.token()
    assert REFRESH not in info.value.message and SECRET not in info.value.message
    assert "[redacted]" in info.value.message


async def test_unreachable_token_endpoint_is_transient(http: aiohttp.ClientSession) -> None:
    p = RefreshingToken(
        "https://no-such-accounts.invalid",
        CLIENT_ID,
        SECRET,
        REFRESH,
        session=http,
        cache_path=None,
    )
    with pytest.raises(AuthError, match="could not reach") as info:
        await p.token()
    assert info.value.transient


async def test_reprs_and_logs_hold_no_secrets(
    http: aiohttp.ClientSession, tmp_state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    p = provider(http, tmp_state / CACHE_FILE_NAME)
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=minted(0))
        await p.token()
    for secret in (*SECRETS, CLIENT_ID):
        assert secret not in repr(p)
        assert secret not in caplog.text
    assert mask(ACCESS[0]) in caplog.text


# --------------------------------------------------------------------------------------------
# grant code exchange


async def test_exchange_grant_code(http: aiohttp.ClientSession) -> None:
    reply = {"access_token": ACCESS[0], "refresh_token": REFRESH, "expires_in": 3600}
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=reply)
        got = await exchange_grant_code(
            ACCOUNTS + "/", CLIENT_ID, SECRET, "1000.code.x", session=http
        )
        assert posts(m) == [
            {
                "grant_type": "authorization_code",
                "client_id": CLIENT_ID,
                "client_secret": SECRET,
                "code": "1000.code.x",
            }
        ]
    assert got["refresh_token"] == REFRESH


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"error": "invalid_code"}, "already used or has expired"),
        ({"access_token": ACCESS[0]}, "no refresh token"),
    ],
)
async def test_exchange_grant_code_errors(
    http: aiohttp.ClientSession, reply: dict[str, Any], expected: str
) -> None:
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=reply)
        with pytest.raises(AuthError, match=expected) as info:
            await exchange_grant_code(ACCOUNTS, CLIENT_ID, SECRET, "1000.code.x", session=http)
    assert SECRET not in str(info.value) and "1000.code.x" not in str(info.value)


# --------------------------------------------------------------------------------------------
# from_env

TRIO = {"ZOHO_CLIENT_ID": CLIENT_ID, "ZOHO_CLIENT_SECRET": SECRET, "ZOHO_REFRESH_TOKEN": REFRESH}


async def test_from_env_static(http: aiohttp.ClientSession) -> None:
    p = from_env({"ZOHO_ACCESS_TOKEN": ACCESS[0]}, cache_dir=None, session=http)
    assert isinstance(p, StaticToken) and await p.token() == ACCESS[0]


async def test_from_env_refresh_flow_uses_the_dc_accounts_host_and_cache(
    http: aiohttp.ClientSession, tmp_state: Path
) -> None:
    p = from_env(
        {**TRIO, "ZOHO_ACCESS_TOKEN": ACCESS[1]}, dc="eu", cache_dir=tmp_state, session=http
    )
    assert isinstance(p, RefreshingToken)  # the flow that survives the hour wins
    with aioresponses() as m:
        m.post("https://accounts.zoho.eu/oauth/v2/token", payload=minted(0))
        assert await p.token() == ACCESS[0]
    assert (tmp_state / CACHE_FILE_NAME).exists()


async def test_from_env_accounts_url_precedence(http: aiohttp.ClientSession) -> None:
    env = {**TRIO, "ZOHO_ACCOUNTS_URL": "https://accounts.zohocloud.ca/"}
    p = from_env(env, dc="eu", cache_dir=None, session=http)
    with aioresponses() as m:
        m.post("https://accounts.zohocloud.ca/oauth/v2/token", payload=minted(0))
        assert await p.token() == ACCESS[0]
    p = from_env(env, accounts_url="http://127.0.0.1:9999", cache_dir=None, session=http)
    assert "127.0.0.1:9999" in repr(p)


@pytest.mark.parametrize(
    ("env", "kw", "expected"),
    [
        ({}, {}, "set ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and ZOHO_REFRESH_TOKEN"),
        ({"ZOHO_ACCESS_TOKEN": "  "}, {}, "no Zoho credentials"),
        ({"ZOHO_CLIENT_ID": CLIENT_ID}, {}, "set ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN"),
        (TRIO, {"dc": "mars"}, "unknown data centre 'mars'"),
        ({**TRIO, "ZOHO_ACCOUNTS_URL": "http://accounts.zoho.com"}, {}, "plain http"),
    ],
)
def test_from_env_errors(env: dict[str, str], kw: dict[str, Any], expected: str) -> None:
    with pytest.raises(AuthError, match=re.escape(expected)) as info:
        from_env(env, cache_dir=None, session=None, **kw)  # type: ignore[arg-type]
    for secret in SECRETS:
        assert secret not in str(info.value)


def test_from_env_partial_trio_with_an_access_token_uses_the_token() -> None:
    p = from_env(
        {"ZOHO_CLIENT_ID": CLIENT_ID, "ZOHO_ACCESS_TOKEN": ACCESS[0]}, cache_dir=None, session=None
    )  # type: ignore[arg-type]
    assert isinstance(p, StaticToken)


# --------------------------------------------------------------------------------------------
# `auth --check`: the one harmless read (end to end against the sandbox in test_cli_ops.py)

PEOPLE = "https://people.zoho.com"
TRAINERS_URL = re.compile(re.escape(f"{PEOPLE}/api/v1/trainers") + r"\?startIndex=0$")
MODULE_IDS = ("478346000019479103", "478346000019479115", "478346000019479119")


def check_target(state: Path) -> Any:
    from bulkschedule.app.job import SendSettings
    from bulkschedule.app.target import Target

    return Target(SendSettings(api_base=PEOPLE, state_dir=state, rate_calls=100, rate_period=1),
                  lambda session: StaticToken(ACCESS[0]))


async def test_check_without_a_module_reads_the_trainers_first_page(tmp_path: Path) -> None:
    from bulkschedule.app.credentials import check

    with aioresponses() as m:
        m.get(TRAINERS_URL, payload={"code": 200, "message": "success", "hasMoreRecords": True,
                                     "trainers": [{"erecno": "1", "name": "A"}] * 25})
        found = await check(check_target(tmp_path / "state"), None)
        assert sum(len(calls) for calls in m.requests.values()) == 1
    assert (found.trainers, found.sessions, found.error) == (25, None, None)
    assert not found.refreshing and found.api_base == PEOPLE


async def test_check_failures_of_the_trainers_read(tmp_path: Path) -> None:
    from bulkschedule.app.credentials import check

    target = check_target(tmp_path / "state")
    with aioresponses() as m:
        m.get(TRAINERS_URL, status=404, payload={"code": 404, "message": "URL not found"})
        found = await check(target, None)
        assert found.trainers is None and found.error is not None
        assert found.error.startswith("Zoho refused the trainer listing: 404: URL not found")
        assert found.error.endswith("add --ids-from SHEET or --course/--batch/--module")
        m.get(TRAINERS_URL, status=403, payload={"code": 403, "message": "Not authorized"})
        found = await check(target, None)
        assert found.error is not None and "may not do this" in found.error
        assert "--ids-from" not in found.error  # a module would be refused the same way
        m.get(TRAINERS_URL, status=401, payload={"code": "INVALID_OAUTHTOKEN", "message": "x"})
        found = await check(target, None)
        assert found.error is not None and "set a fresh ZOHO_ACCESS_TOKEN" in found.error
        m.get(TRAINERS_URL, status=429, headers={"Retry-After": "7"})
        found = await check(target, None)
        assert found.error is not None and "try the check again later" in found.error
        assert sum(len(calls) for calls in m.requests.values()) == 4  # one read per check
    # (that lockout is now recorded in tmp_path/"state": runs and checks there wait it out)
    # With a module given, the module is read and the trainers are not.
    sessions = re.compile(re.escape(f"{PEOPLE}/api/v1/courses/") + r".*/sessions\?startIndex=0$")
    with aioresponses() as m:
        m.get(sessions, payload={"sessions": [], "hasMoreRecords": False})
        found = await check(check_target(tmp_path / "other-state"), MODULE_IDS)
        ((_, url),) = m.requests
        assert url.path.endswith(f"/modules/{MODULE_IDS[2]}/sessions")
    assert (found.sessions, found.trainers, found.error) == (0, None, None)


@pytest.mark.parametrize(
    "env",
    [
        {"ZOHO_ACCESS_TOKEN": "1000.abc\r\ndef"},
        {"ZOHO_CLIENT_ID": CLIENT_ID, "ZOHO_CLIENT_SECRET": SECRET,
         "ZOHO_REFRESH_TOKEN": "1000.refresh\nrefresh"},
    ],
)
async def test_a_credential_with_a_line_break_is_refused_at_start_up(
    http: aiohttp.ClientSession, env: dict[str, str]
) -> None:
    """Found before any request, naming the variable and never the value (issue 15, §4)."""
    with pytest.raises(AuthError, match="contains a line break") as info:
        from_env(env, cache_dir=None, session=http)
    assert "1000." not in str(info.value)
    name = "ZOHO_ACCESS_TOKEN" if "ZOHO_ACCESS_TOKEN" in env else "ZOHO_REFRESH_TOKEN"
    assert name in str(info.value)


async def test_a_trailing_line_break_is_only_trimmed() -> None:
    token = "1000.abcdefghijklmnopqrstuvwxyz"
    assert await StaticToken(f" {token}\r\n").token() == token

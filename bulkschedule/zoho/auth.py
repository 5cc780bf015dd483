"""Access tokens for the Zoho People API: a static token, or the Self Client refresh flow, cached.

Why a cache: Zoho mints at most 10 access tokens per refresh token per 10 minutes, and an access
token lives an hour. A nightly job that minted one token per run (or worse, per request) would trip
that limit, so the token is kept in a private file in the state folder and reused until 5 minutes
before it expires.

Why single flight: many workers may see "token expired" at the same moment. Only one of them may
mint; the others wait for it and use the new token (`refresh(stale)` returns the current token when
it already differs from the one the caller found stale).

Secrets (access token, client secret, refresh token) never appear in exception messages, reprs or
logs; use `mask` to show one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiohttp

from bulkschedule.core.constants import DATA_CENTRES
from bulkschedule.core.errors import AuthError
from bulkschedule.core.files import atomic_write_text
from bulkschedule.core.text import mask, snippet
from bulkschedule.zoho.urls import check_base_url

log = logging.getLogger(__name__)

#: The access token is not reused in its last minutes (capped at a tenth of its lifetime), so a
#: request sent just before expiry does not arrive just after it.
EXPIRY_MARGIN = 300.0
#: Zoho documents an hour; used when a reply carries no usable lifetime.
DEFAULT_LIFETIME = 3600.0
#: The token endpoint is small and fast; a stuck mint must not hang a run.
TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=30.0)
CACHE_FILE_NAME = "token-cache.json"

_WAIT_HINT = (
    "Zoho is refusing to mint access tokens because too many were requested (at most 10 per "
    "refresh token in 10 minutes). Wait about 10 minutes, then run again; the tool caches the "
    "token so later runs will not mint a new one each time."
)


@runtime_checkable
class TokenProvider(Protocol):
    """What the LMS client needs: a current token, and a way to replace one the server rejected."""

    async def token(self) -> str: ...

    async def refresh(self, stale: str) -> str: ...


class StaticToken:
    """ZOHO_ACCESS_TOKEN used as is: fine for a quick run, but it dies within the hour."""

    def __init__(self, access_token: str) -> None:
        access_token = access_token.strip()
        if not access_token:
            raise AuthError("ZOHO_ACCESS_TOKEN is empty")
        _check_no_control("ZOHO_ACCESS_TOKEN", access_token)
        self._token = access_token

    def __repr__(self) -> str:
        return f"StaticToken({mask(self._token)})"

    async def token(self) -> str:
        return self._token

    async def refresh(self, stale: str) -> str:
        raise AuthError(
            "the access token was rejected; set a fresh ZOHO_ACCESS_TOKEN or use the refresh flow "
            "(ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and ZOHO_REFRESH_TOKEN)"
        )


class RefreshingToken:
    """Self Client refresh flow: mint access tokens from a refresh token, cached across runs."""

    def __init__(
        self,
        accounts_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        session: aiohttp.ClientSession,
        cache_path: Path | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._accounts_url = accounts_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._session = session
        self._cache_path = cache_path
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._obtained_at = 0.0
        self._expires_at = 0.0
        #: Different accounts (or data centres) sharing a state folder never see each other's
        #: token. A hash, so the cache file does not hold the refresh token itself.
        self._cache_key = hashlib.sha256(
            "\x00".join((self._accounts_url, client_id, refresh_token)).encode()
        ).hexdigest()
        #: How many tokens this provider minted (for tests and the run summary).
        self.mints = 0

    def __repr__(self) -> str:
        return (
            f"RefreshingToken(accounts_url={self._accounts_url!r}, "
            f"client_id={mask(self._client_id)!r}, cache_path={self._cache_path!s})"
        )

    async def token(self) -> str:
        """The current token: from memory, else from the cache file, else freshly minted."""
        if self._token is not None and self._fresh(self._obtained_at, self._expires_at):
            return self._token
        async with self._lock:
            if self._token is not None and self._fresh(self._obtained_at, self._expires_at):
                return self._token
            cached = self._read_cache()
            if cached is not None:
                self._token, self._obtained_at, self._expires_at = cached
                return self._token
            return await self._mint()

    async def refresh(self, stale: str) -> str:
        """Replace `stale` (rejected by the server). Concurrent callers share one mint."""
        async with self._lock:
            if self._token is not None and self._token != stale:
                return self._token  # someone else refreshed while we waited
            cached = self._read_cache()
            if cached is not None and cached[0] != stale:
                self._token, self._obtained_at, self._expires_at = cached  # another process did
                return self._token
            return await self._mint()

    def _fresh(self, obtained_at: float, expires_at: float) -> bool:
        margin = min(EXPIRY_MARGIN, max(0.0, expires_at - obtained_at) / 10)
        return self._clock() < expires_at - margin

    async def _mint(self) -> str:
        """One POST to the token endpoint. Never retried here: a loop could burn the 10-per-10-min
        allowance and lock the account out of minting."""
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": self._refresh_token,
        }
        secrets = (self._client_secret, self._refresh_token, self._client_id)
        reply = await _post_token(self._session, self._accounts_url, form, secrets, "refresh")
        token = str(reply["access_token"])  # _post_token checked it is a non-empty str
        now = self._clock()
        self._token = token
        self._obtained_at = now
        self._expires_at = now + _lifetime(reply)
        self.mints += 1
        log.info("minted a new access token (%s)", mask(token))
        self._write_cache()
        return token

    def _read_cache(self) -> tuple[str, float, float] | None:
        """A fresh cached token for this account, or None. A damaged file is ignored, not fatal."""
        if self._cache_path is None:
            return None
        try:
            data = json.loads(self._cache_path.read_text(encoding="utf-8"))
            entry = data[self._cache_key]
            token = str(entry["access_token"])
            obtained_at = float(entry["obtained_at"])
            expires_at = float(entry["expires_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not token or not self._fresh(obtained_at, expires_at):
            return None
        return token, obtained_at, expires_at

    def _write_cache(self) -> None:
        """Atomically rewrite the cache with mode 0600, dropping expired entries of any account."""
        if self._cache_path is None or self._token is None:
            return
        path = self._cache_path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        now = self._clock()
        data = {
            k: v
            for k, v in data.items()
            if isinstance(v, dict)
            and isinstance(v.get("expires_at"), int | float)
            and v["expires_at"] > now
        }
        data[self._cache_key] = {
            "access_token": self._token,
            "obtained_at": self._obtained_at,
            "expires_at": self._expires_at,
        }
        try:
            # 0600 from the moment it exists: the token is never world-readable.
            atomic_write_text(path, json.dumps(data), private=True)
        except OSError as exc:
            # Not fatal: the run works, it just mints again next time.
            log.warning("could not write the token cache %s: %s", path, exc.strerror or exc)


def _lifetime(reply: Mapping[str, Any]) -> float:
    """Seconds the token lives. Older Zoho replies gave `expires_in` in milliseconds together with
    `expires_in_sec`; prefer the latter, and read a huge `expires_in` as milliseconds."""
    for key in ("expires_in_sec", "expires_in"):
        try:
            value = float(reply[key])
        except (KeyError, TypeError, ValueError):
            continue
        if value <= 0:
            continue
        if key == "expires_in" and value > 86400:
            value /= 1000
        return value
    return DEFAULT_LIFETIME


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


async def _post_token(
    session: aiohttp.ClientSession,
    accounts_url: str,
    form: Mapping[str, str],
    secrets: tuple[str, ...],
    purpose: str,
) -> dict[str, Any]:
    """POST to ``/oauth/v2/token`` and return the reply when it holds an access token.

    Zoho reports errors with HTTP 200 and an ``error`` field, so success is decided by the body
    (an ``access_token``), never by the status. Secrets travel in the form body, never the URL.
    """
    url = f"{accounts_url.rstrip('/')}/oauth/v2/token"
    try:
        async with session.post(url, data=dict(form), timeout=TOKEN_TIMEOUT) as resp:
            status = resp.status
            raw = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AuthError(
            f"could not reach the Zoho accounts server {accounts_url} to obtain an access token "
            f"({type(exc).__name__}); check the network and ZOHO_ACCOUNTS_URL",
            transient=True,
        ) from exc  # aiohttp's text names the host, never the form body that holds the secrets
    text = _scrub(raw.decode("utf-8", errors="replace"), secrets)
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    if (
        isinstance(reply, dict)
        and isinstance(reply.get("access_token"), str)
        and reply["access_token"]
    ):
        return reply
    raise AuthError(_token_error_message(status, reply, text, accounts_url, purpose))


def _token_error_message(
    status: int, reply: object, text: str, accounts_url: str, purpose: str
) -> str:
    error = ""
    description = ""
    if isinstance(reply, dict):
        error = str(reply.get("error") or "")
        description = str(reply.get("error_description") or reply.get("message") or "")
    else:
        description = snippet(text)
    blob = f"{error} {description} {text if reply is None else ''}".lower()
    if status == 429 or "access denied" in blob or "too many requests" in blob:
        return _WAIT_HINT
    if error == "invalid_code":
        if purpose == "grant":
            return (
                "Zoho refused the grant code (invalid_code): it was already used or has expired "
                "(codes last only a few minutes). Generate a new code in the API console and "
                "run `bulkschedule auth` again"
            )
        return (
            "Zoho refused the refresh token (invalid_code): it was revoked or is not valid for "
            f"this client at {accounts_url}. Generate a new one with `bulkschedule auth` and "
            "set ZOHO_REFRESH_TOKEN"
        )
    if error == "invalid_client":
        return (
            "Zoho does not recognise the client (invalid_client): check ZOHO_CLIENT_ID and "
            f"ZOHO_CLIENT_SECRET, and that {accounts_url} is the accounts server of the data "
            "centre where the Self Client was created (ZOHO_ACCOUNTS_URL or --dc)"
        )
    detail = ": ".join(p for p in (error, description) if p) or "no access token in the reply"
    return f"Zoho did not issue an access token ({detail}; HTTP {status})"


async def exchange_grant_code(
    accounts_url: str,
    client_id: str,
    client_secret: str,
    code: str,
    *,
    session: aiohttp.ClientSession,
) -> dict[str, Any]:
    """Trade a Self Client grant code for tokens once (for ``bulkschedule auth``).

    Returns Zoho's reply: ``refresh_token``, ``access_token``, ``expires_in``, ... . A reply
    without a refresh token is an error, since the refresh token is the point of the exchange.
    """
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret,
        "code": code,
    }
    reply = await _post_token(session, accounts_url, form, (client_secret, code), "grant")
    if not reply.get("refresh_token"):
        raise AuthError(
            "Zoho returned an access token but no refresh token; generate a new grant code "
            "(Self Client, scope ZOHOPEOPLE.training.ALL) and exchange it once"
        )
    return reply


_TRIO = ("ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN")
#: Control characters (tab aside) that an HTTP header or a token can never hold: a CR or LF in a
#: credential (a pasted line break) would make every request fail before it leaves.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _check_no_control(name: str, value: str) -> None:
    """Refuse a credential holding a line break or other control character, naming only the
    variable (never the value)."""
    if _CONTROL.search(value):
        raise AuthError(
            f"{name} contains a line break or another control character; set it again as one "
            "line (nothing was sent)"
        )


def from_env(
    env: Mapping[str, str],
    *,
    dc: str = "us",
    accounts_url: str | None = None,
    cache_dir: Path | None,
    session: aiohttp.ClientSession,
) -> TokenProvider:
    """Choose the token source from the environment.

    The refresh flow wins when all three of its variables are set, because it is the one that
    survives past the hour an access token lives; otherwise ZOHO_ACCESS_TOKEN is used as is.
    A half-configured refresh flow is an error naming what is missing, not a silent fallback.
    """
    def get(name: str) -> str:
        value = (env.get(name) or "").strip()
        _check_no_control(name, value)
        return value

    present = [name for name in _TRIO if get(name)]
    if len(present) == len(_TRIO):
        url = accounts_url or get("ZOHO_ACCOUNTS_URL")
        if not url:
            if dc not in DATA_CENTRES:
                known = ", ".join(sorted(DATA_CENTRES))
                raise AuthError(f"unknown data centre {dc!r}; use one of {known}")
            url = DATA_CENTRES[dc][1]
        try:
            url = check_base_url(url)
        except ValueError as exc:
            raise AuthError(f"ZOHO_ACCOUNTS_URL: {exc}") from exc
        return RefreshingToken(
            url,
            get("ZOHO_CLIENT_ID"),
            get("ZOHO_CLIENT_SECRET"),
            get("ZOHO_REFRESH_TOKEN"),
            session=session,
            cache_path=None if cache_dir is None else cache_dir / CACHE_FILE_NAME,
        )
    if get("ZOHO_ACCESS_TOKEN"):
        return StaticToken(get("ZOHO_ACCESS_TOKEN"))
    if present:
        missing = ", ".join(name for name in _TRIO if name not in present)
        raise AuthError(f"the refresh flow is half configured: set {missing} as well")
    raise AuthError(
        "no Zoho credentials: set ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and ZOHO_REFRESH_TOKEN "
        "(recommended; see `bulkschedule auth`), or ZOHO_ACCESS_TOKEN for a single run"
    )

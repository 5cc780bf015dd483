"""``bulkschedule auth``: spend a Self Client grant code once, and check that credentials work.

The token providers themselves live in `bulkschedule.zoho.auth`, which knows nothing of settings,
journals or the limiter; this module wires them to the rest of the tool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp

from bulkschedule.app.config import CREDENTIAL_NAMES, Settings, write_secrets
from bulkschedule.app.logs import register_secret
from bulkschedule.app.target import Target
from bulkschedule.core.errors import ApiError, AuthError, JobError, Locked, Rejected
from bulkschedule.send.api import open_api
from bulkschedule.send.journal import Journal
from bulkschedule.zoho.auth import RefreshingToken, exchange_grant_code
from bulkschedule.zoho.urls import check_base_url


@dataclass(frozen=True)
class SetupResult:
    written: Path  # the secrets file (mode 0600)
    shadowing: list[str]  # credential variables set in the environment, which win over the file


def accounts_server(settings: Settings, env: Mapping[str, str]) -> tuple[str, bool]:
    """The accounts server to exchange the grant code with, and whether it came from
    ``ZOHO_ACCOUNTS_URL`` (then it is kept in the secrets file too). `JobError` if unusable."""
    given = env.get("ZOHO_ACCOUNTS_URL", "").strip()
    try:
        return check_base_url(given or settings.accounts_base), bool(given)
    except ValueError as err:
        raise JobError(f"ZOHO_ACCOUNTS_URL: {err}") from None


async def set_up(
    path: Path,
    accounts: str,
    client_id: str,
    client_secret: str,
    code: str,
    *,
    keep_accounts: bool,
    env: Mapping[str, str],
) -> SetupResult:
    """Spend the grant code once and write the secrets file (mode 0600); `JobError` on failure.

    Call it only when nothing else can stop the file from being written: a grant code works
    once, for a few minutes.
    """
    for secret in (client_id, client_secret, code):
        register_secret(secret)
    try:
        async with aiohttp.ClientSession() as session:
            reply = await exchange_grant_code(accounts, client_id, client_secret, code,
                                              session=session)
    except AuthError as err:
        raise JobError(str(err)) from None
    for key in ("refresh_token", "access_token"):
        register_secret(str(reply.get(key) or ""))
    values = {"ZOHO_CLIENT_ID": client_id, "ZOHO_CLIENT_SECRET": client_secret,
              "ZOHO_REFRESH_TOKEN": str(reply["refresh_token"])}
    if keep_accounts:
        values["ZOHO_ACCOUNTS_URL"] = accounts
    try:
        written = write_secrets(path, values)
    except OSError as err:
        raise JobError(f"cannot write the secrets file {path}: {err.strerror or err}; the grant "
                       "code is now used up, so generate a new one once this is fixed") from None
    return SetupResult(written, [n for n in CREDENTIAL_NAMES if env.get(n, "").strip()])


@dataclass(frozen=True)
class CheckResult:
    """What ``auth --check`` found: how the token was had, then the one read it made."""

    api_base: str
    refreshing: bool  # the refresh flow (else a static ZOHO_ACCESS_TOKEN)
    minted: bool  # a new token was minted (else the cached one was still fresh)
    sessions: int | None = None  # what the module listing returned (a module was given)
    trainers: int | None = None  # what the trainers' first page held (no module given)
    error: str | None = None  # why the check failed after the token was had (exit 2)


async def check(
    target: Target,
    module: tuple[str, str, str] | None,
    *,
    on_wait: Callable[[float], None] | None = None,
) -> CheckResult:
    """Get a token (minted or reused), then make one harmless read, paced through the shared
    limiter and lock gate exactly like a run's calls, since Zoho counts reads too: the sessions
    of ``module`` (course, batch, module) when one is given, else the first page of the
    trainers, which needs no IDs. Nothing is created. No token at all is a `JobError`."""
    send = target.send
    try:
        base = check_base_url(send.api_base)
    except ValueError as err:
        raise JobError(str(err)) from None
    with Journal(send.state_dir) as journal:
        shared = journal.path
    async with open_api(base, send, shared=shared, tokens=target.tokens, on_wait=on_wait) as api:
        try:
            register_secret(await api.tokens.token())
        except (AuthError, JobError) as err:
            raise JobError(f"cannot get an access token: {err}") from err
        provider = api.tokens
        minted = isinstance(provider, RefreshingToken) and provider.mints > 0
        found = CheckResult(base, isinstance(provider, RefreshingToken), minted)
        try:
            if module is not None:
                return replace(found, sessions=len(await api.client.list_module_sessions(*module)))
            return replace(found, trainers=len(await api.client.list_trainers()))
        except Locked as err:
            api.gate.close(max(err.retry_after or 0.0, send.lock), reason=err.message)
            return replace(found, error=f"{err.message}; the credentials were accepted, try "
                                        "the check again later")
        except Rejected as err:
            if module is not None:
                return replace(found, error=err.message)
            return replace(found, error=f"{err.message}; to check by reading a module's "
                                        "sessions instead, add --ids-from SHEET or "
                                        "--course/--batch/--module")
        except ApiError as err:
            return replace(found, error=err.message)

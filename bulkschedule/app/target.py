"""Where runs go: the real API with the configured credentials, or the in-process sandbox.

Every door that talks to the API (`run`, `inbox`, `auth --check`, `config show`, the upload page)
resolves its credentials, token provider and `SendSettings` here, so a fix to one is a fix to all.
Problems are `JobError` (one line, exit 2); nothing here prints or exits.

Credentials are registered with the log redactor as soon as they are read, before anything could
log them. They are read when a run is prepared, not at import or start-up, so the upload page
picks up a fixed secrets file without a restart.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bulkschedule.app.config import ConfigError, Secrets, Settings, credential_problem, load_secrets
from bulkschedule.app.logs import register_secret
from bulkschedule.core.errors import AuthError, JobError
from bulkschedule.sandbox.server import Sandbox, SandboxConfig, default_catalogue
from bulkschedule.send.api import SendSettings
from bulkschedule.zoho.auth import StaticToken, TokenProvider, from_env

TokenFactory = Callable[[aiohttp.ClientSession], TokenProvider]


@dataclass(frozen=True)
class Target:
    """What `job.send` needs to reach one API: where and how fast (``send``), how to get a token
    once the HTTP session exists (``tokens``), and the sandbox when it is the built-in one."""

    send: SendSettings
    tokens: TokenFactory
    sandbox: Sandbox | None = None

    @property
    def api_base(self) -> str:
        return self.send.api_base


def credentials(settings: Settings, env: Mapping[str, str] | None = None, *,
                required: bool) -> Secrets:
    """The secrets (environment, else the secrets file), registered for redaction at once.

    With ``required``, credentials that cannot authenticate are a `JobError` naming what is
    missing; an unusable secrets file is one whatever ``required`` says.
    """
    try:
        secrets = load_secrets(settings, os.environ if env is None else env)
    except ConfigError as err:
        raise JobError(str(err)) from None
    for value in secrets.values():
        register_secret(value)
    if required and (problem := credential_problem(secrets)):
        raise JobError(problem)
    return secrets


def token_factory(settings: Settings, secrets: Mapping[str, str], *,
                  state_dir: Path | None = None) -> TokenFactory:
    """``tokens(session)`` for `job.send`: the refresh flow (token cached in the state folder)
    or the static token. A half-configured environment is a `JobError`, not a traceback."""
    cache_dir = settings.state_dir if state_dir is None else state_dir
    found = dict(secrets)

    def tokens(session: aiohttp.ClientSession) -> TokenProvider:
        try:
            return from_env(found, dc=settings.dc, accounts_url=found.get("ZOHO_ACCOUNTS_URL"),
                            cache_dir=cache_dir, session=session)
        except AuthError as err:
            raise JobError(str(err)) from None

    return tokens


def send_settings(settings: Settings, *, api_base: str | None = None,
                  state_dir: Path | None = None, speed: float = 1.0) -> SendSettings:
    """The resolved settings as `job.send` takes them (default: the configured API and state)."""
    calls, period = settings.rate_pair
    return SendSettings(
        api_base=settings.people_base if api_base is None else api_base,
        state_dir=settings.state_dir if state_dir is None else state_dir,
        rate_calls=calls, rate_period=period, lock_seconds=settings.lock_seconds,
        workers=settings.workers, payload_style=settings.payload_style, speed=speed)


def api(settings: Settings, *, env: Mapping[str, str] | None = None,
        need_credentials: bool = True, state_dir: Path | None = None) -> Target:
    """The real API (``settings.people_base``) with the configured credentials.

    ``need_credentials=False`` is for runs that will send nothing (a dry run, a sheet without a
    valid row): missing credentials are then not an error, an unreadable secrets file still is.
    """
    secrets = credentials(settings, env, required=need_credentials)
    return Target(send_settings(settings, state_dir=state_dir),
                  token_factory(settings, secrets, state_dir=state_dir))


def sandbox_config(settings: Settings, speed: float = 1.0) -> SandboxConfig:
    """A sandbox holding the default org, enforcing the configured window and lockout, ``speed``
    times faster."""
    calls, period = settings.rate_pair
    return SandboxConfig(rate_calls=calls, rate_seconds=period,
                         lock_seconds=settings.lock_seconds, speed=speed,
                         catalogue=default_catalogue())


def to_sandbox(sb: Sandbox, settings: Settings, *, state_dir: Path) -> Target:
    """A running sandbox, with its static token and its speed."""
    token = sb.token
    return Target(send_settings(settings, api_base=sb.url, state_dir=state_dir,
                                speed=sb.config.speed),
                  lambda session: StaticToken(token), sandbox=sb)


@contextlib.asynccontextmanager
async def open_target(
    settings: Settings,
    *,
    sandbox: bool = False,
    speed: float = 1.0,
    state_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    need_credentials: bool = True,
) -> AsyncIterator[Target]:
    """The target for the length of a command: the real API, or a sandbox started here.

    A sandbox gets ``state_dir`` if given, else a temporary folder, so rehearsals never mix with
    the real journal or its rate budget. ``speed`` only applies to the sandbox (the real API's
    limits cannot be sped up; the command line refuses it without ``--sandbox``).
    """
    if not sandbox:
        yield api(settings, env=env, need_credentials=need_credentials)
        return
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bulkschedule-")))
        async with Sandbox(sandbox_config(settings, speed)) as sb:
            yield to_sandbox(sb, settings, state_dir=state_dir)

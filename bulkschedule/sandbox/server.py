"""A local stand-in for the Zoho People LMS API, for rehearsals and tests.

Why it exists: the real API locks an account for five minutes when a client goes one call over its
threshold, has no idempotency key, and loses replies now and then. None of that can be rehearsed
safely against a production tenant, so this server plays the API's part: it holds an org
(courses, batches with their dates, modules, trainers, rooms: `catalogue`) and serves its reads,
creates and updates sessions with each field validated the way the API page documents it
(`validation`), enforces a sliding-window threshold and a lock period on every call (in any of
the three refusal shapes seen in the wild), mints OAuth tokens under Zoho's minting limit, and
injects server errors, lost replies and latency on demand (`state`, `handlers`). Its counters
(``GET /__sandbox/stats``) let tests and benchmarks assert what a client did, e.g. "never more
than 30 calls in any minute".

This module is the front door: `make_app`, `Sandbox` (a running server, with direct edits for
tests) and `serve`; every name other code imports from ``bulkschedule.sandbox.server`` stays
importable here. The sandbox depends on ``bulkschedule.core`` only (import-linter checks it),
and never on pandas, to start fast.

Time comes from an injected ``clock`` (and latency from an injected ``sleep``) so tests can step
through a 5-minute lock without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bulkschedule.sandbox.catalogue import (
    Batch,
    Catalogue,
    Course,
    Room,
    Trainer,
    default_catalogue,
    load_catalogue,
)
from bulkschedule.sandbox.config import (
    SandboxConfig,
    config_from_options,
    parse_latency,
    parse_rate,
)
from bulkschedule.sandbox.handlers import PAGE_SIZE, STATE, add_routes, latency_middleware
from bulkschedule.sandbox.state import MINT_LIMIT, MINT_WINDOW, SandboxState
from bulkschedule.sandbox.store import FIRST_SESSION_ID
from bulkschedule.sandbox.validation import (
    Invalid,
    check_fields,
    check_path,
    fields_of,
    session_record,
)

__all__ = [
    "FIRST_SESSION_ID",
    "MINT_LIMIT",
    "MINT_WINDOW",
    "PAGE_SIZE",
    "STATE",
    "Batch",
    "Catalogue",
    "Course",
    "Room",
    "Sandbox",
    "SandboxConfig",
    "Trainer",
    "config_from_options",
    "default_catalogue",
    "load_catalogue",
    "make_app",
    "parse_latency",
    "parse_rate",
    "serve",
]


def make_app(config: SandboxConfig) -> web.Application:
    """The sandbox as an aiohttp application (for ``aiohttp.test_utils`` or your own runner)."""
    app = web.Application(middlewares=[latency_middleware])
    state = SandboxState(config)
    app[STATE] = state
    add_routes(app)

    async def close_store(_app: web.Application) -> None:
        state.store.close()

    app.on_cleanup.append(close_store)
    return app


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
    def _state(self) -> SandboxState:
        return self.app[STATE]

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
        return self._state.stats()

    def sessions(self) -> list[dict[str, Any]]:
        """Every stored session in creation order (no call, so no effect on the threshold)."""
        return self._state.store.all()

    def reset(self) -> None:
        self._state.reset()

    def add_session(self, course: str, batch: str, module: str, **fields: Any) -> dict[str, Any]:
        """Create a session as an admin would in Zoho's own screens, outside any sheet: the
        ``sessionData`` fields, checked by the API's rules, stored without a call (no threshold,
        no counter, no fault). ValueError ("CODE: message") when Zoho would refuse it."""
        state = self._state
        cat = self.config.catalogue
        try:
            batch_found = check_path(cat, course, batch, module)
            checked = check_fields(fields, cat, batch_found)
        except Invalid as bad:
            raise ValueError(f"{bad.code}: {bad.message}") from None
        record = session_record(state.new_session_id(), module, checked, cat)
        state.store.add(course, batch, module, record)
        return record

    def edit_session(self, session_id: str, **changes: Any) -> dict[str, Any]:
        """Change a stored session as an admin would in Zoho's own screens: ``changes`` are
        ``sessionData`` fields (None or "" clears an optional one), checked by the API's rules;
        no call is made. KeyError for an unknown session, ValueError when Zoho would refuse it."""
        state = self._state
        stored = state.store.get(session_id)
        if stored is None:
            raise KeyError(f"no session {session_id}")
        cat = self.config.catalogue
        merged: dict[str, Any] = {**fields_of(stored.record), **changes}
        try:
            checked = check_fields({k: v for k, v in merged.items() if v is not None}, cat,
                                   cat.batch(stored.course, stored.batch) if cat else None)
        except Invalid as bad:
            raise ValueError(f"{bad.code}: {bad.message}") from None
        record = session_record(session_id, stored.module, checked, cat)
        state.store.replace(record)
        return record

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

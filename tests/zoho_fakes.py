"""Shared stand-ins for the zoho layer's tests: a token provider, a pace counter, a client
factory and a loopback server that records exactly what arrived."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses

from bulkschedule.core.errors import AuthError
from bulkschedule.zoho.client import LmsClient

BASE = "https://people.zoho.com"
C, B, M = "478346000019479103", "478346000019479115", "478346000019479119"
TOKEN = "1000.aaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbb"
NEW_TOKEN = "1000.cccccccccccccccccccccccc.dddddddddddddddddddddddddd"
OK_BODY = {
    "code": 200,
    "message": "success",
    "session": {"sessionId": "219225000000648145", "sessionName": "Session One"},
}


class FakeTokens:
    """A TokenProvider that records refreshes; refresh hands out NEW_TOKEN."""

    def __init__(self, token: str = TOKEN, *, fail: AuthError | None = None) -> None:
        self.current = token
        self.refreshed: list[str] = []
        self.fail = fail

    async def token(self) -> str:
        if self.fail is not None:
            raise self.fail
        return self.current

    async def refresh(self, stale: str) -> str:
        self.refreshed.append(stale)
        if self.fail is not None:
            raise self.fail
        self.current = NEW_TOKEN
        return self.current


class Pace:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


def make_client(
    http: aiohttp.ClientSession, tokens: Any = None, base: str = BASE, **kw: Any
) -> tuple[LmsClient, Pace]:
    pace = Pace()
    c = LmsClient(base, tokens or FakeTokens(), session=http, pace=pace, **kw)
    return c, pace


def auth_headers(m: aioresponses) -> list[str]:
    return [
        call.kwargs["headers"]["Authorization"] for calls in m.requests.values() for call in calls
    ]


def n_requests(m: aioresponses) -> int:
    return sum(len(v) for v in m.requests.values())


class Recorder:
    """A loopback stand-in for Zoho that records exactly what arrived."""

    def __init__(self, body: Any = None) -> None:
        self.seen: list[dict[str, Any]] = []
        self.reply: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.body = OK_BODY if body is None else body

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "query": dict(request.query),
                "body": await request.read(),
                "content_type": request.headers.get("Content-Type"),
                "auth": request.headers.get("Authorization"),
            }
        )
        if self.reply is not None:
            return await self.reply(request)
        return web.json_response(self.body)


@contextlib.asynccontextmanager
async def recording_server(body: Any = None) -> AsyncIterator[tuple[Recorder, str]]:
    """A loopback server answering every request with ``body`` (default: a created session)."""
    rec = Recorder(body)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield rec, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()

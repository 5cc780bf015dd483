"""Shared test fixtures."""

from __future__ import annotations

import inspect

import aiohttp
import pytest


def _patch_aioresponses_for_aiohttp_314() -> None:
    """aioresponses 0.7.9 builds ClientResponse without aiohttp 3.14's ``stream_writer`` argument.

    Upstream issue pnuckowski/aioresponses#289 (fix PRs #288/#290 unreleased). Test-only shim:
    remove it once aioresponses ships the fix. We do not pin aiohttp below 3.14 (it carries a
    security fix).
    """
    if "stream_writer" not in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        return
    import aioresponses.core as core

    class _Writer:
        output_size = 0

    class _Response(aiohttp.ClientResponse):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            kwargs.setdefault("stream_writer", _Writer())
            super().__init__(*args, **kwargs)

    core.ClientResponse = _Response  # type: ignore[misc]


_patch_aioresponses_for_aiohttp_314()


@pytest.fixture
def tmp_state(tmp_path, monkeypatch):
    """A private state folder so no test touches the user's real journal."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("BULKSCHEDULE_STATE", str(state))
    return state

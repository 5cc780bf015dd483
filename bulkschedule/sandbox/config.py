"""Every knob of the sandbox, and the parsing of the ``bulkschedule sandbox`` options into them.

Standard library and ``bulkschedule.core`` only, so a command line can read the choices (and
build a config) without loading aiohttp.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkschedule.core.constants import FIELD_STYLES, LATENCY_AT, LOCK_STYLES
from bulkschedule.core.numbers import parse_rate
from bulkschedule.sandbox.catalogue import Catalogue, default_catalogue, load_catalogue

__all__ = ["SandboxConfig", "config_from_options", "parse_latency", "parse_rate"]


@dataclass
class SandboxConfig:
    """Every knob of the sandbox. Defaults are Zoho's documented numbers.

    ``speed`` divides the window, the lock period and ``start_locked`` so a rehearsal of a
    300-second lock can take 3 seconds; token lifetimes and latency are not scaled.
    ``extend_lock_on_call``: whether a call made during a lock restarts the lock period. Zoho's
    behaviour is unknown, so the default (False) is the lenient reading and True the harsh one.
    ``latency_at``: where the latency falls. "arrival" (the default): before the call is counted,
    as a slow network or a busy server delays it, which bunches arrivals and trips lockouts;
    "reply": the call is counted at once and its reply is delayed.
    ``field_style``: the field names of the org listings (Zoho publishes none; docs/sandbox.md).
    ``partial_updates``: whether a PATCH may carry only the fields it changes (merged onto the
    stored session); Zoho's behaviour is unknown, so the default (False) requires them all.
    """

    rate_calls: int = 30
    rate_seconds: float = 60.0
    lock_seconds: float = 300.0
    fail_rate: float = 0.0
    lose_reply_rate: float = 0.0
    latency: tuple[float, float] = (0.0, 0.0)
    latency_at: str = "arrival"
    start_locked: float = 0.0
    lock_style: str = "429"
    token: str = "sandbox-token"
    token_ttl: float = 3600.0
    seed: int | None = None
    catalogue: Catalogue | None = None
    field_style: str = "default"
    partial_updates: bool = False
    #: False: the org's lists (courses, batches, modules, trainers, rooms) are refused 403, as
    #: for a token without the read scopes; session listings still answer
    org_reads: bool = True
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
        if self.latency_at not in LATENCY_AT:
            raise ValueError(f"latency-at must be one of {', '.join(LATENCY_AT)}, "
                             f"got {self.latency_at!r}")
        if self.field_style not in FIELD_STYLES:
            raise ValueError(f"field-style must be one of {', '.join(FIELD_STYLES)}, "
                             f"got {self.field_style!r}")
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


def config_from_options(*, rate: str, latency: str, data: str | None,
                        latency_at: str = "arrival", field_style: str = "default",
                        **options: Any) -> SandboxConfig:
    """The ``bulkschedule sandbox`` options as a config: ``rate`` N/SECONDS, ``latency`` MIN-MAX,
    ``latency_at`` arrival|reply, ``data`` a catalogue file (default: the built-in org that
    sample_data/ uses), ``field_style`` one of `FIELD_STYLES`; the rest are `SandboxConfig`
    fields. ValueError says what is wrong."""
    try:
        calls, seconds = parse_rate(rate)
    except ValueError as err:
        raise ValueError(f"--rate {err}") from err
    return SandboxConfig(rate_calls=calls, rate_seconds=seconds, latency=parse_latency(latency),
                         latency_at=latency_at, field_style=field_style,
                         catalogue=load_catalogue(data) if data else default_catalogue(),
                         **options)

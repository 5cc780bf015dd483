"""What the sandbox remembers between calls, and the rules that change it: the threshold's sliding
window and lock, minted tokens and their minting limit, the counters tests read.

The handlers only translate HTTP to and from these rules. Time comes from the config's ``clock``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any, Final

from bulkschedule.sandbox.config import SandboxConfig
from bulkschedule.sandbox.shapes import STYLES, Shape
from bulkschedule.sandbox.store import SessionStore

__all__ = ["MINT_LIMIT", "MINT_WINDOW", "Refused", "SandboxState"]

#: Zoho: at most 10 access tokens per refresh token in any 10 minutes.
MINT_LIMIT: Final = 10
MINT_WINDOW: Final = 600.0


class Refused(Exception):
    """The threshold (or a running lock) refused this call; carries the seconds left."""

    def __init__(self, remaining: float) -> None:
        super().__init__(remaining)
        self.remaining = remaining


class SandboxState:
    """All mutable sandbox state; one per application."""

    COUNTERS: Final = (
        "calls",
        "reads",
        "creates",
        "updates",
        "created",
        "updated",
        "rejected",
        "unauthorized",
        "refused",
        "lockouts",
        "calls_during_lock",
        "duplicates",
        "max_calls_in_window",
        "failures_injected",
        "replies_lost",
        "tokens_minted",
        "mints_refused",
    )

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.shape: Shape = STYLES[config.field_style]
        self.store = SessionStore(config.db)
        self.tokens: dict[str, float] = {}  # minted access token -> expiry (clock time)
        self.reset(initial=True)

    def reset(self, initial: bool = False) -> None:
        """Back to a fresh start: counters, window, lock, fault RNG, mint history, sessions.

        Minted tokens stay valid so a client holding one is not logged out by a test's reset.
        ``start_locked`` applies only at start-up (or with ``initial``).
        """
        cfg = self.config
        self.counters: dict[str, int] = dict.fromkeys(self.COUNTERS, 0)
        self.window: deque[float] = deque()  # accepted calls, for the threshold
        self.arrivals: deque[float] = deque()  # every counted arrival, for max_calls_in_window
        self.mints: deque[float] = deque()
        self.grant_used = False
        self.rng = random.Random(cfg.seed)
        self.token_rng = random.Random(None if cfg.seed is None else f"tokens-{cfg.seed}")
        self.lock_until = -math.inf
        if initial and cfg.start_locked > 0:
            self.lock_until = cfg.clock() + cfg.start_locked / cfg.speed
        if not initial:
            self.store.clear()
        # never hand out an id twice, even across a reset: a client's journal may still hold it
        self.next_session_id = max(getattr(self, "next_session_id", 0), self.store.next_id())

    def lock_remaining(self, now: float | None = None) -> float:
        now = self.config.clock() if now is None else now
        return max(0.0, self.lock_until - now)

    def lock_for(self, seconds: float) -> None:
        """Start a lock by hand (``POST /__sandbox/lock``), e.g. to test a client's lock gate."""
        self.lock_until = self.config.clock() + seconds / self.config.speed

    def admit(self) -> None:
        """Count one authenticated API call and apply the threshold; raise `Refused` if over.

        Sliding window: a call is allowed if fewer than N calls were accepted in the half-open
        interval (now - SECONDS, now]. The call that would be the N+1st is refused and starts the
        lock; the window is then emptied, so after the lock a client starts with a fresh budget.
        """
        cfg, c = self.config, self.counters
        now = cfg.clock()
        c["calls"] += 1
        horizon = now - cfg.window
        self.arrivals.append(now)
        while self.arrivals and self.arrivals[0] <= horizon:
            self.arrivals.popleft()
        c["max_calls_in_window"] = max(c["max_calls_in_window"], len(self.arrivals))
        if now < self.lock_until:
            c["calls_during_lock"] += 1
            c["refused"] += 1
            if cfg.extend_lock_on_call:
                self.lock_until = now + cfg.lock_period
            raise Refused(self.lock_until - now)
        while self.window and self.window[0] <= horizon:
            self.window.popleft()
        if len(self.window) >= cfg.rate_calls:
            c["refused"] += 1
            c["lockouts"] += 1
            self.window.clear()
            self.lock_until = now + cfg.lock_period
            raise Refused(cfg.lock_period)
        self.window.append(now)

    def new_session_id(self) -> str:
        ident = self.next_session_id
        self.next_session_id += 1
        return str(ident)

    def mint_token(self) -> tuple[str, float]:
        rng = self.token_rng
        token = f"1000.{rng.getrandbits(128):032x}.{rng.getrandbits(128):032x}"
        self.tokens[token] = self.config.clock() + self.config.token_ttl
        self.counters["tokens_minted"] += 1
        return token, self.config.token_ttl

    def mint_allowed(self) -> bool:
        """Zoho's minting limit: 10 per refresh token in any 10 minutes (not speed-scaled)."""
        now = self.config.clock()
        while self.mints and self.mints[0] <= now - MINT_WINDOW:
            self.mints.popleft()
        if len(self.mints) >= MINT_LIMIT:
            return False
        self.mints.append(now)
        return True

    def token_problem(self, header: str | None) -> str | None:
        """Why an Authorization header is not accepted, or None if it is."""
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme != "Zoho-oauthtoken" or not token:
            return "Authorization header with a Zoho-oauthtoken is missing"
        if token == self.config.token:
            return None
        expiry = self.tokens.get(token)
        if expiry is None:
            return "Invalid OAuth access token"
        if self.config.clock() >= expiry:
            return "OAuth access token expired"
        return None

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters,
            "sessions": self.store.count(),
            "locked": self.lock_remaining() > 0,
            "lock_remaining": round(self.lock_remaining(), 3),
        }

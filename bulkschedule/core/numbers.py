"""One parser for the numbers people type into flags, the environment and config files.

Every numeric setting is bounded: a rate of 10^23 calls or a lockout of 10^308 seconds is a typo,
refused with the range, never a hang or an overflow later.
"""

from __future__ import annotations

import math
import re

#: The most calls and the longest window a rate may name (a day; far beyond any real server).
MAX_RATE_CALLS = 1_000_000
MAX_RATE_SECONDS = 86_400.0

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d*)?|\.\d+)\s*$")


def parse_rate(text: str) -> tuple[int, float]:
    """``"30/60"`` -> (30, 60.0): N calls in SECONDS. Plain decimals only (no ``1e2``), both above
    0 ("30/0" would mean infinite speed) and within `MAX_RATE_CALLS` / `MAX_RATE_SECONDS`."""
    m = _RATE_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not N/SECONDS (e.g. 30/60)")
    calls, seconds = int(m.group(1)), float(m.group(2))
    if calls < 1 or seconds <= 0:
        raise ValueError(f"{text!r}: both the number of calls and the seconds must be above 0")
    if calls > MAX_RATE_CALLS or seconds > MAX_RATE_SECONDS:
        raise ValueError(
            f"{text!r}: at most {MAX_RATE_CALLS:,} calls in at most {MAX_RATE_SECONDS:,.0f} seconds"
        )
    return calls, seconds


def parse_number(
    value: object,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> float | int:
    """A finite number (``int`` when ``integer``) within [low, high], from a number or its text."""
    if isinstance(value, bool):  # bool is an int subclass; `workers = true` is a mistake
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int | float):
        number: float | int = value
    elif isinstance(value, str):
        try:
            number = int(value.strip()) if integer else float(value.strip())
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise ValueError(f"{value!r} is not {kind}") from None
    else:
        raise ValueError(f"{value!r} is not a number")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    if integer and (isinstance(number, float) and not number.is_integer()):
        raise ValueError(f"{value!r} is not a whole number")
    number = int(number) if integer else float(number)
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{value!r} is outside {_fmt(low)}–{_fmt(high)}")
    return number


def _fmt(bound: float | None) -> str:
    if bound is None:
        return "…"
    return f"{bound:,.0f}" if float(bound).is_integer() else f"{bound:g}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hour|hours|d|day|days)?\s*$", re.I)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "hours": 3600,
                 "d": 86400, "day": 86400, "days": 86400}
#: The longest duration a setting may name: a year.
MAX_DURATION = 366 * 86400.0


def parse_duration(text: object) -> float:
    """``"12h"`` -> 43200.0: a number with an optional unit (s, m, h, d; seconds without one),
    from 0 up to a year."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(parse_number(text, low=0, high=MAX_DURATION))
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 30m, 12h or 2d")
    seconds = float(m.group(1)) * _UNIT_SECONDS[(m.group(2) or "s").lower()]
    if seconds > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than a year")
    return seconds

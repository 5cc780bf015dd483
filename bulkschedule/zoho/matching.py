"""Reading the items Zoho lists, whatever their field names, and matching a listed session.

Zoho publishes neither the item fields of its LMS listings nor their date and time formats (see
docs/api-behaviour.md), so every reader here tries each plausible key and format. Pure: no I/O.

Dates come as ``dd-MM-yyyy`` (what the API is written with), ``dd-MMM-yyyy`` (what batch pages read
back, e.g. ``22-Dec-2021``), ISO, month-name forms, or epoch milliseconds; times as ``10:00 AM``,
``10 am``, ``10:00`` or ``22:00:00``.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bulkschedule.core.request import Request

#: Keys a listed session's fields may sit under, most likely first (the create reply's names).
SESSION_ID_KEYS = ("sessionId", "id", "session_id")
SESSION_NAME_KEYS = ("sessionName", "name")
SESSION_DATE_KEYS = ("sessionStartDate", "date", "startDate", "sessionDate")
SESSION_START_KEYS = ("sessionStartTime", "startTime")
SESSION_END_KEYS = ("sessionEndTime", "endTime")

_MONTHS = {
    m: i
    for i, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for m in names
}
_TIME_RE = re.compile(r"^\s*(\d{1,2})(?:[:.](\d{2}))?(?::(\d{2}))?\s*([ap])\.?\s*m?\.?\s*$", re.I)
_TIME24_RE = re.compile(r"^\s*(\d{1,2})[:.](\d{2})(?::(\d{2})(?:\.\d+)?)?\s*$")
#: Epoch milliseconds between 1990 and 2100, as a number or a string of digits.
_EPOCH_MS = (631_152_000_000, 4_102_444_800_000)


def as_text(value: Any) -> str | None:
    """A code, ID or message as text: 7209, 7209.0 and "7209" all read "7209"."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    out = str(value).strip()
    return out or None


def first(item: Mapping[str, Any], *keys: str) -> Any:
    """The value under the first of ``keys`` that holds something (not None, not "")."""
    for key in keys:
        value = item.get(key)
        if value not in (None, ""):
            return value
    return None


def first_key(item: Mapping[str, Any], *keys: str) -> str | None:
    """Which of ``keys`` :func:`first` would read, for messages about a value it cannot parse."""
    for key in keys:
        if item.get(key) not in (None, ""):
            return key
    return None


def _epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds, when ``value`` is one (a number or a string of digits in range)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*\d{12,13}\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and _EPOCH_MS[0] <= value <= _EPOCH_MS[1]:
        return value
    return None


def dates(value: Any) -> set[date]:
    """Every date a listed date can mean.

    Zoho's LMS uses dd-MM-yyyy; ISO yyyy-MM-dd and month names (30-Dec-2021, Dec 30, 2021) are
    unambiguous. A slash form with both parts <= 12 (01/02/2022) could be either order, depending
    on the organisation's date format, so both readings are returned; name and start time must
    match too, so the extra reading costs little. Epoch milliseconds are an instant in the
    organisation's (unknown) time zone: both calendar dates it can fall on are returned.
    """
    ms = _epoch_ms(value)
    if ms is not None:
        instant = datetime.fromtimestamp(ms / 1000, UTC)
        lo, hi = (instant - timedelta(hours=12)).date(), (instant + timedelta(hours=14)).date()
        return {lo + timedelta(days=n) for n in range((hi - lo).days + 1)}
    if not isinstance(value, str) or not value.strip():
        return set()
    s = value.strip()
    out: set[date] = set()

    def add(y: int, m: int, d: int) -> None:
        with contextlib.suppress(ValueError):
            out.add(date(y, m, d))

    m = re.match(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:$|[T ])", s)
    if m:
        add(int(m[1]), int(m[2]), int(m[3]))
        return out
    m = re.match(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{4})(?:$|[T ])", s)
    if m:
        a, b, y = int(m[1]), int(m[3]), int(m[4])
        add(y, b, a)  # dd-MM-yyyy, Zoho's format
        if m[2] == "/":
            add(y, a, b)  # MM/dd/yyyy in organisations that use it
        return out
    m = re.match(r"^(\d{1,2})[-/ ]([A-Za-z]{3,9})[-/ ,]+(\d{4})", s)
    if m and m[2].lower() in _MONTHS:
        add(int(m[3]), _MONTHS[m[2].lower()], int(m[1]))
        return out
    m = re.match(r"^([A-Za-z]{3,9})[-/ ](\d{1,2}),?[-/ ](\d{4})", s)
    if m and m[1].lower() in _MONTHS:
        add(int(m[3]), _MONTHS[m[1].lower()], int(m[2]))
    return out


def one_date(value: Any) -> date | None:
    """The single calendar date a listed *date* (not an instant) stands for, or None.

    Used where one answer is needed (a batch's start and end). Text is read in Zoho's day-first
    order. Epoch milliseconds are taken as a local midnight in a time zone within 12 hours of UTC
    (the org's, unknown), so the nearest UTC midnight is that date.
    """
    ms = _epoch_ms(value)
    if ms is not None:
        instant = datetime.fromtimestamp(ms / 1000, UTC) + timedelta(hours=12)
        return instant.date()
    if isinstance(value, str):
        value, _ = split_datetime(value)
    found = dates(value)
    if not found:
        return None
    if len(found) == 1:
        return next(iter(found))
    # dd/MM/yyyy and MM/dd/yyyy both possible: Zoho's own order is day first.
    m = re.match(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})", str(value))
    if m:
        with contextlib.suppress(ValueError):
            return date(int(m[3]), int(m[2]), int(m[1]))
    return min(found)


def minutes(value: Any) -> int | None:
    """Minutes after midnight of "10:00 AM", "10:00am", "10 am", "10:00", "22:00:00"."""
    if not isinstance(value, str):
        return None
    s = value.strip()
    m = _TIME_RE.match(s)
    if m:
        hour, minute = int(m[1]), int(m[2] or 0)
        if not 1 <= hour <= 12 or minute > 59:
            return None
        hour = hour % 12 + (12 if m[4].lower() == "p" else 0)
        return hour * 60 + minute
    m = _TIME24_RE.match(s)
    if m:
        hour, minute = int(m[1]), int(m[2])
        if hour > 23 or minute > 59:
            return None
        return hour * 60 + minute
    return None


def split_datetime(value: Any) -> tuple[Any, Any]:
    """Split "30-12-2021 10:00 AM" or "2021-12-30T10:00:00" into (date part, time part)."""
    if not isinstance(value, str):
        return value, None
    m = re.match(r"^\s*(\S+?)(?:[T ]+(\d{1,2}[:.]\d{2}.*))?\s*$", value)
    if m and m[2]:
        return m[1], re.sub(r"([+-]\d{2}:?\d{2}|Z)$", "", m[2]).strip()
    return value, None


def clean_name(value: Any) -> str | None:
    """Names compare after HTML-unescaping (Zoho escapes text in some replies) and collapsing
    whitespace; case is kept (see docs/api-behaviour.md)."""
    if not isinstance(value, str):
        return None
    return " ".join(html.unescape(value).split()) or None


# --------------------------------------------------------------------------------------------
# listed sessions


def session_id(item: Mapping[str, Any]) -> str | None:
    return as_text(first(item, *SESSION_ID_KEYS))


def session_name(item: Mapping[str, Any]) -> str | None:
    return clean_name(first(item, *SESSION_NAME_KEYS))


def session_when(item: Mapping[str, Any]) -> tuple[set[date], int | None]:
    """(every date the session may be on, its start in minutes) from whichever fields hold them;
    a start time may ride on the date ("04-01-2022 10:00 AM")."""
    raw_date, time_part = split_datetime(first(item, *SESSION_DATE_KEYS))
    start = first(item, *SESSION_START_KEYS) or time_part
    return dates(raw_date), minutes(start)


def session_matches(item: Mapping[str, Any], req: Request) -> bool:
    """Whether a listed session is the one `req` would create: same name, date and start time."""
    want_name = clean_name(req.session_data.get("name"))
    want_dates = dates(req.session_data.get("date"))
    want_start = minutes(req.session_data.get("startTime"))
    if want_name is None or not want_dates or want_start is None:
        return False
    if session_name(item) != want_name:
        return False
    listed_dates, start = session_when(item)
    return bool(listed_dates & want_dates) and start == want_start


def readable(item: Mapping[str, Any]) -> bool:
    """Whether a listed session has a name, a date and a start time this module can read."""
    listed_dates, start = session_when(item)
    return session_name(item) is not None and bool(listed_dates) and start is not None


__all__ = [
    "as_text",
    "clean_name",
    "dates",
    "first",
    "first_key",
    "minutes",
    "one_date",
    "readable",
    "session_id",
    "session_matches",
    "session_name",
    "session_when",
    "split_datetime",
]

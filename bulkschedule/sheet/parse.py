"""Per-cell parsers: a cell as read (text or typed) into the exact value the API needs.

Each parser returns the value or raises `ParseError` whose message tells the admin, in plain words,
what is wrong and how to fix it. Pure and free of pandas so it stays cheap to import and test.
Text inputs are memoised: a term repeats the same few dates and times thousands of times.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import TypeVar

#: Excel and calamine hand numbers over as doubles; above this, integers are no longer exact.
MAX_EXACT = 2**53

_T = TypeVar("_T")


class ParseError(ValueError):
    """A cell cannot be used; ``message`` is shown to the admin as it is, ``code`` is the problem
    code (a key of `bulkschedule.core.problems.CODES`) the schema reports it under."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


_CACHE_LIMIT = 50_000


def _memo(fn: Callable[..., _T]) -> Callable[..., _T]:
    """Memoise a text parser, including its failures (stored as message and code, raised afresh).

    Storing the message rather than the exception avoids re-raising one instance, whose traceback
    would grow with every raise. The cache is cleared when full, so memory stays bounded.
    """
    cache: dict[object, object] = {}

    def wrapper(*args: object) -> _T:
        key = args if len(args) > 1 else args[0]
        try:
            found = cache[key]
        except KeyError:
            try:
                found = fn(*args)
            except ParseError as exc:
                found = _Failed(exc.message, exc.code)
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = found
        if isinstance(found, _Failed):
            raise ParseError(found.message, code=found.code)
        return found  # type: ignore[return-value]  # the cache holds fn's results and _Failed

    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


class _Failed:
    __slots__ = ("code", "message")

    def __init__(self, message: str, code: str) -> None:
        self.message = message
        self.code = code


def is_blank(cell: object) -> bool:
    """An empty cell, or text that is only spaces."""
    return cell is None or (isinstance(cell, str) and not cell.strip())


# ---------------------------------------------------------------------------------------------- IDs

_DIGITS = re.compile(r"\d+", re.ASCII)
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d*)?[eE][+-]?\d+")

_ID_AS_NUMBER = (
    "This ID was stored as a number and Excel has already changed its last digits: format the "
    "column as Text and re-type the ID"
)


def parse_id(cell: object) -> str:
    """An ID as its exact digits; a number only while a double still holds it exactly."""
    if isinstance(cell, str):
        return _parse_id_text(cell)
    if isinstance(cell, bool):
        raise ParseError(
            f"{display(cell)} is not an ID: IDs are digits only, such as 478346000019479103",
            code="id.not_digits",
        )
    if isinstance(cell, int | float):
        if isinstance(cell, float) and not math.isfinite(cell):
            raise ParseError(
                "This is not an ID: IDs are digits only, such as 478346000019479103",
                code="id.not_digits",
            )
        if cell < 0 or cell != int(cell):
            raise ParseError(
                f"{display(cell)} is not an ID: IDs are whole numbers of digits only, such as "
                "478346000019479103",
                code="id.not_whole",
            )
        if cell >= MAX_EXACT:
            raise ParseError(_ID_AS_NUMBER, code="id.rounded_by_excel")
        return str(int(cell))
    raise ParseError(
        f"{display(cell)} is not an ID: IDs are digits only; format the column as Text and type "
        "the ID",
        code="id.cell_type",
    )


def typed_id(cell: object) -> str | None:
    """An ID cell as text whatever it holds (its exact digits when it is an ID; None when
    blank): for copying an ID the admin typed, valid or not, where it must not be lost."""
    if cell is None or (isinstance(cell, str) and not cell.strip()):
        return None
    try:
        return parse_id(cell)
    except ParseError:
        return display(cell)


@_memo
def _parse_id_text(text: str) -> str:
    s = text.strip()
    if _DIGITS.fullmatch(s):
        return s
    if _SCIENTIFIC.fullmatch(s):
        raise ParseError(
            f"{s} is an ID written in scientific notation, so its last digits are lost: format the "
            "column as Text in the workbook, re-type the ID and export the CSV again",
            code="id.scientific",
        )
    raise ParseError(
        f"'{s}' is not an ID: IDs are digits only (no spaces, letters or punctuation), such as "
        "478346000019479103",
        code="id.not_digits",
    )


# -------------------------------------------------------------------------------------------- dates

_MONTHS: dict[str, int] = {}
for _i, _name in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"),
    start=1,
):
    _MONTHS[_name] = _i
    _MONTHS[_name[:3]] = _i
_MONTHS["sept"] = 9

_D_M_Y = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d+)")
_Y_M_D = re.compile(
    r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"  # a time part, as a datetime's text has
)
_D_MON_Y = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?[-/. ]+([a-z]+)\.?[-/., ]+(\d+)")
_MON_D_Y = re.compile(r"([a-z]+)\.?[-/. ]+(\d{1,2})(?:st|nd|rd|th)?,?[-/. ]+(\d+)")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")

_DATE_HINT = "type it as dd-mm-yyyy (04-01-2027) or format the cell as a date"


def parse_date(cell: object, *, month_first: bool = False) -> dt.date:
    """A calendar date. Numeric text is read day first (Zoho's order) unless ``month_first``."""
    if isinstance(cell, str):
        return _parse_date_text(cell, month_first)
    if isinstance(cell, dt.datetime):
        return cell.date()
    if isinstance(cell, dt.date):
        return cell
    if isinstance(cell, bool):
        raise ParseError(f"{display(cell)} is not a date: {_DATE_HINT}", code="date.unreadable")
    if isinstance(cell, int | float):
        raise ParseError(
            f"{display(cell)} is a plain number, not a date: format the cell as a date or type it "
            "as dd-mm-yyyy",
            code="date.plain_number",
        )
    if isinstance(cell, dt.time | dt.timedelta):
        raise ParseError(
            f"{display(cell)} is a time, not a date: {_DATE_HINT}", code="date.is_time"
        )
    raise ParseError(f"This is not a date: {_DATE_HINT}", code="date.unreadable")


@_memo
def _parse_date_text(text: str, month_first: bool) -> dt.date:
    s = text.strip()
    low = s.lower()
    if m := _D_M_Y.fullmatch(s):
        a, b, year = int(m[1]), int(m[3]), m[4]
        day, month = (b, a) if month_first else (a, b)
        order = "mm-dd-yyyy (as --month-first asks)" if month_first else "dd-mm-yyyy, day first"
        return _make_date(s, year, month, day, order)
    if m := _Y_M_D.fullmatch(s):
        return _make_date(s, m[1], int(m[3]), int(m[4]), "yyyy-mm-dd")
    if m := _D_MON_Y.fullmatch(low):
        return _named_month(s, m[2], int(m[1]), m[3])
    if m := _MON_D_Y.fullmatch(low):
        return _named_month(s, m[1], int(m[2]), m[3])
    if _NUMBER.fullmatch(s):
        raise ParseError(
            f"{s} is a plain number, not a date: format the cell as a date or type it as "
            "dd-mm-yyyy",
            code="date.plain_number",
        )
    raise ParseError(f"'{s}' is not a date: {_DATE_HINT}", code="date.unreadable")


def _named_month(s: str, word: str, day: int, year: str) -> dt.date:
    month = _MONTHS.get(word)
    if month is None:
        raise ParseError(
            f"'{s}': '{word}' is not a month name; {_DATE_HINT}", code="date.bad_month_name"
        )
    return _make_date(s, year, month, day, "day month year")


def _make_date(s: str, year_text: str, month: int, day: int, order: str) -> dt.date:
    if len(year_text) != 4:
        raise ParseError(
            f"'{s}': write the year with 4 digits (for example 04-01-2027, not 04-01-27)",
            code="date.year_digits",
        )
    year = int(year_text)
    if not 1 <= month <= 12:
        raise ParseError(
            f"'{s}': {month} is not a month (read as {order}); {_DATE_HINT}", code="date.bad_month"
        )
    try:
        return dt.date(year, month, day)
    except ValueError:
        last = _days_in_month(year, month)
        raise ParseError(
            f"'{s}' does not exist: {_MONTH_NAMES[month]} {year} has {last} days "
            f"(read as {order})",
            code="date.impossible",
        ) from None


_MONTH_NAMES = ("", "January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December")


def _days_in_month(year: int, month: int) -> int:
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    return (nxt - dt.timedelta(days=1)).day


# -------------------------------------------------------------------------------------------- times

_TIME_12 = re.compile(r"(\d{1,2})(?:[:.](\d{2}))?(?::(\d{2}))?\s*([ap])\.?\s*m\.?")
_TIME_24 = re.compile(r"(\d{1,2})[:.](\d{2})(?::(\d{2})(?:\.\d+)?)?")
_FRACTION = re.compile(r"0?\.(?:\d|\d{3,})")
_DATETIME_TEXT = re.compile(r"\d{4}-\d{1,2}-\d{1,2}[ T](.+)")

_TIME_HINT = "type it as 10:00 AM or 14:30, or format the cell as a time"
_MIDNIGHT_END = (
    "rounds to midnight at the end of the day, which a session cannot use: "
    "use 11:59 PM at the latest"
)


def parse_time(cell: object) -> dt.time:
    """A time of day to the minute (sessions are scheduled in whole minutes)."""
    if isinstance(cell, str):
        return _parse_time_text(cell)
    if isinstance(cell, dt.datetime):
        return _from_seconds(_seconds(cell.time()), cell)
    if isinstance(cell, dt.time):
        return _from_seconds(_seconds(cell), cell)
    if isinstance(cell, dt.timedelta):
        secs = cell.total_seconds()
        if not 0 <= secs < 86400:
            raise ParseError(
                f"{display(cell)} is a duration, not a time of day: {_TIME_HINT}",
                code="time.duration",
            )
        return _from_seconds(secs, cell)
    if isinstance(cell, bool):
        raise ParseError(f"{display(cell)} is not a time: {_TIME_HINT}", code="time.unreadable")
    if isinstance(cell, int | float):
        if math.isfinite(cell) and 0 <= cell < 1:  # a fraction of a day in a General cell
            return _from_seconds(cell * 86400, cell)
        raise ParseError(
            f"{display(cell)} is a number, not a time of day: {_TIME_HINT}",
            code="time.plain_number",
        )
    if isinstance(cell, dt.date):
        raise ParseError(
            f"{display(cell)} is a date, not a time: {_TIME_HINT}", code="time.is_date"
        )
    raise ParseError(f"This is not a time: {_TIME_HINT}", code="time.unreadable")


def _seconds(t: dt.time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def _from_seconds(secs: float, cell: object) -> dt.time:
    minutes = math.floor(secs / 60 + 0.5)  # nearest minute, half up
    if minutes >= 1440:
        raise ParseError(f"{display(cell)} {_MIDNIGHT_END}", code="time.midnight_end")
    return dt.time(minutes // 60, minutes % 60)


@_memo
def _parse_time_text(text: str) -> dt.time:
    s = text.strip()
    low = s.lower()
    if m := _DATETIME_TEXT.fullmatch(low):  # "1899-12-30 10:00:00" from some exports
        low = m[1].strip()
    if m := _TIME_12.fullmatch(low):
        hour, minute, second = int(m[1]), int(m[2] or 0), int(m[3] or 0)
        half = m[4].upper() + "M"
        if hour > 23:
            raise ParseError(f"'{s}': there is no hour {hour}; {_TIME_HINT}", code="time.bad_hour")
        if hour > 12:
            raise ParseError(
                f"'{s}' mixes the 24-hour and 12-hour clocks: write {hour - 12}:{minute:02d} PM "
                f"or {hour}:{minute:02d}",
                code="time.mixed_clock",
            )
        if hour == 0:
            raise ParseError(
                f"'{s}': the 12-hour clock has no hour 0: write 12:{minute:02d} {half} "
                f"or 00:{minute:02d}",
                code="time.hour_zero",
            )
        _check_minutes(s, minute, second)
        hour = hour % 12 + (12 if half == "PM" else 0)
        return _from_seconds(hour * 3600 + minute * 60 + second, s)
    if m := _TIME_24.fullmatch(low):
        hour, minute, second = int(m[1]), int(m[2]), int(m[3] or 0)
        if hour > 23:
            raise ParseError(
                f"'{s}': there is no hour {hour}; hours go from 0 to 23 (or 1 to 12 with AM/PM)",
                code="time.bad_hour",
            )
        _check_minutes(s, minute, second)
        return _from_seconds(hour * 3600 + minute * 60 + second, s)
    if _FRACTION.fullmatch(low):  # "0.4166667": a time exported as a fraction of a day
        return _from_seconds(float(low) * 86400, s)
    if _DIGITS.fullmatch(low):
        raise ParseError(
            f"'{s}' has no minutes or AM/PM: write it as {low}:00 AM, {low}:00 PM or {low}:00",
            code="time.bare_hour",
        )
    raise ParseError(f"'{s}' is not a time: {_TIME_HINT}", code="time.unreadable")


def _check_minutes(s: str, minute: int, second: int) -> None:
    if minute > 59:
        raise ParseError(f"'{s}': minutes go from 00 to 59; {_TIME_HINT}", code="time.bad_minutes")
    if second > 59:
        raise ParseError(f"'{s}': seconds go from 00 to 59; {_TIME_HINT}", code="time.bad_seconds")


# --------------------------------------------------------------------------------------------- type

_TYPES = {"0": "0", "1": "1", "0.0": "0", "1.0": "1", "classroom": "0", "elearning": "1"}
_TYPE_STRIP = re.compile(r"[\s_\-]+")
_TYPE_HINT = "use Classroom or E-learning (or 0 for Classroom, 1 for E-learning)"


def parse_type(cell: object) -> str:
    """The session type as the API's "0" (Classroom) or "1" (E-learning)."""
    if isinstance(cell, str):
        return _parse_type_text(cell)
    if isinstance(cell, int | float) and not isinstance(cell, bool) and cell in (0, 1):
        return str(int(cell))
    raise ParseError(f"{display(cell)} is not a session type: {_TYPE_HINT}", code="type.unknown")


@_memo
def _parse_type_text(text: str) -> str:
    found = _TYPES.get(_TYPE_STRIP.sub("", text).lower())
    if found is None:
        raise ParseError(
            f"'{text.strip()}' is not a session type: {_TYPE_HINT}", code="type.unknown"
        )
    return found


# --------------------------------------------------------------------------------------------- text


def parse_text(cell: object) -> str | None:
    """Free text, stripped; a number as it reads (no ".0"); blank is None."""
    if cell is None:
        return None
    if isinstance(cell, str):
        s = cell.strip()
        return s or None
    return display(cell) or None


# ------------------------------------------------------------------------------------------ display


def format_date(d: dt.date) -> str:
    """dd-mm-yyyy: Zoho's date format, and how the admin reads dates back."""
    return f"{d.day:02d}-{d.month:02d}-{d.year:04d}"


def format_time(t: dt.time) -> str:
    """hh:mm AM, zero-padded 12-hour clock: 09:00 AM, 12:30 PM, 12:00 AM for midnight."""
    hour12 = t.hour % 12 or 12
    return f"{hour12:02d}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"


def display(cell: object) -> str:
    """The cell as the admin would read it, for messages and reports."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, float):
        if math.isfinite(cell) and cell.is_integer():
            return str(int(cell))
        return repr(cell)
    if isinstance(cell, dt.datetime):
        if cell.time() == dt.time(0):
            return format_date(cell)
        return f"{format_date(cell)} {format_time(cell.time())}"
    if isinstance(cell, dt.date):
        return format_date(cell)
    if isinstance(cell, dt.time):
        return format_time(cell)
    if isinstance(cell, dt.timedelta):
        minutes = round(cell.total_seconds() / 60)
        sign = "-" if minutes < 0 else ""
        return f"{sign}{abs(minutes) // 60}:{abs(minutes) % 60:02d}"
    return str(cell)

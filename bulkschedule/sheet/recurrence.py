"""Recurring sessions: one row for a weekly class, expanded into dated occurrences. Pure.

A repeating row names its first session (``date``), a rule (``repeat``), an end (``until`` or
``count``) and dates without a session (``skip``, and the workbook's Holidays). The rule forms::

    daily                     every day
    weekdays                  Monday to Friday
    weekly                    every 7 days from the first date
    every N weeks             every N*7 days
    Tue, Thu                  weekly on those days
    every 2 weeks on Mon, Wed every other week (counted from the first date's week) on those days

Case and extra spaces do not matter; days are English, three letters or whole. ``count`` counts
sessions, so a skipped date does not use one up.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

#: A row may make at most this many sessions (a year of daily sessions, and a little more).
MAX_OCCURRENCES = 370

DAYS: dict[str, int] = {}
for _i, _name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                            "sunday")):
    DAYS[_name] = DAYS[_name[:3]] = _i
DAYS.update({"tues": 1, "wed": 2, "weds": 2, "thur": 3, "thurs": 3})
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

RULE_FORMS = ("daily, weekdays, weekly, every N weeks, a list of days such as Tue, Thu, "
              "or every 2 weeks on Mon, Wed")
_EVERY = re.compile(r"every\s+(\d+)\s+weeks?(?:\s+on\s+(.+))?")
_EVERY_WEEK_ON = re.compile(r"(?:every\s+week|weekly)\s+on\s+(.+)")


class RecurrenceError(ValueError):
    """A repeat rule, skip list or end that cannot be used; ``code`` is the problem code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Rule:
    """Sessions on ``days`` (0 = Monday) of every ``interval``-th week, or every day's step."""

    interval_days: int | None  #: fixed step (daily 1, weekly 7, every N weeks 7N); else None
    days: frozenset[int] = frozenset()  #: weekdays, when the rule names them
    week_interval: int = 1  #: with ``days``: every how many weeks

    def describe(self) -> str:
        if self.interval_days == 1:
            return "daily"
        if self.interval_days is not None:
            weeks = self.interval_days // 7
            return "weekly" if weeks == 1 else f"every {weeks} weeks"
        days = ", ".join(_DAY_NAMES[d] for d in sorted(self.days))
        return days if self.week_interval == 1 else f"every {self.week_interval} weeks on {days}"


def parse_rule(text: str) -> Rule:
    """The rule a ``repeat`` cell states; `RecurrenceError` (``repeat.unreadable``) otherwise."""
    s = " ".join(str(text).lower().split())
    if s == "daily" or s == "every day":
        return Rule(1)
    if s in ("weekdays", "every weekday", "weekdays (mon-fri)"):
        return Rule(None, frozenset(range(5)))
    if s in ("weekly", "every week"):
        return Rule(7)
    if m := _EVERY.fullmatch(s):
        weeks = int(m.group(1))
        if not 1 <= weeks <= 52:
            raise RecurrenceError("repeat.unreadable",
                                  f'"{text}": every N weeks needs N from 1 to 52')
        if m.group(2) is None:
            return Rule(7 * weeks)
        return Rule(None, _days(m.group(2), text), weeks)
    if m := _EVERY_WEEK_ON.fullmatch(s):
        return Rule(None, _days(m.group(1), text))
    return Rule(None, _days(s, text))


def _days(s: str, original: str) -> frozenset[int]:
    parts = [p for p in re.split(r"[\s,;/&+]+|\band\b", s) if p]
    found: set[int] = set()
    for part in parts:
        day = DAYS.get(part.rstrip("."))
        if day is None:
            raise RecurrenceError(
                "repeat.unreadable",
                f'"{original}" is not a repeat rule this tool reads; use {RULE_FORMS}',
            )
        found.add(day)
    if not found:
        raise RecurrenceError("repeat.unreadable", f"use {RULE_FORMS}")
    return frozenset(found)


def candidates(first: dt.date, rule: Rule) -> Iterator[dt.date]:
    """Every date the rule allows from ``first`` on (unbounded; the caller stops)."""
    if rule.interval_days is not None:
        step = dt.timedelta(days=rule.interval_days)
        day = first
        while True:
            yield day
            day += step
    week0 = first - dt.timedelta(days=first.weekday())
    day = first
    one = dt.timedelta(days=1)
    while True:
        weeks = (day - week0).days // 7
        if weeks % rule.week_interval == 0 and day.weekday() in rule.days:
            yield day
        day += one


def expand(
    first: dt.date,
    rule: Rule,
    *,
    until: dt.date | None = None,
    count: int | None = None,
    skip: frozenset[dt.date] = frozenset(),
    limit: int = MAX_OCCURRENCES,
) -> list[dt.date]:
    """The dates of a repeating row's sessions, in order.

    Exactly one of ``until`` (inclusive) and ``count`` bounds it. More than ``limit`` sessions, an
    ``until`` before the first date, or a first date the rule does not allow is a
    `RecurrenceError` whose message gives the accepted forms.
    """
    if (until is None) == (count is None):
        raise RecurrenceError("repeat.no_end",
                              "a repeating row needs exactly one of until (the last date) and "
                              "count (how many sessions)")
    if until is not None and until < first:
        raise RecurrenceError("until.before_date",
                              f"until ({_fmt(until)}) is before the first session's date "
                              f"({_fmt(first)})")
    if count is not None and not 1 <= count <= limit:
        raise RecurrenceError("count.out_of_range",
                              f"count must be a whole number from 1 to {limit}")
    if rule.interval_days is None and first.weekday() not in rule.days:
        raise RecurrenceError(
            "repeat.first_date_off_rule",
            f"the first session ({_fmt(first)}, a {first.strftime('%A')}) is not on "
            f"{rule.describe()}; make date the first session",
        )
    out: list[dt.date] = []
    for day in candidates(first, rule):
        if until is not None and day > until:
            break
        if day in skip:
            continue
        out.append(day)
        if count is not None and len(out) == count:
            break
        if len(out) > limit:
            raise RecurrenceError(
                "repeat.too_many",
                f"this row makes more than {limit} sessions ({rule.describe()} from "
                f"{_fmt(first)} to {_fmt(until or day)}); split it or bring until closer",
            )
    return out


def parse_skip(text: str, parse_date: Callable[[str], dt.date]) -> frozenset[dt.date]:
    """The dates a ``skip`` cell (or a Holidays line) names: dates and ranges ``a..b``, separated
    by ``;`` or ``,``. A comma inside a date ("Jan 4, 2027") is kept when splitting on it would
    not give dates."""
    days: set[dt.date] = set()
    for piece in _pieces(str(text), parse_date):
        days.update(_dates_in(piece, parse_date))
    return frozenset(days)


def _pieces(text: str, parse_date: Callable[[str], dt.date]) -> Iterable[str]:
    for chunk in (c.strip() for c in text.split(";")):
        if not chunk:
            continue
        parts = [p.strip() for p in chunk.split(",") if p.strip()]
        if len(parts) > 1 and all(_readable(p, parse_date) for p in parts):
            yield from parts
        else:
            yield chunk


def _readable(piece: str, parse_date: Callable[[str], dt.date]) -> bool:
    try:
        _dates_in(piece, parse_date)
    except RecurrenceError:
        return False
    return True


def _dates_in(piece: str, parse_date: Callable[[str], dt.date]) -> list[dt.date]:
    ends = [e.strip() for e in piece.split("..")]
    try:
        if len(ends) == 1:
            return [parse_date(ends[0])]
        if len(ends) == 2:
            start, stop = parse_date(ends[0]), parse_date(ends[1])
            if stop < start:
                raise RecurrenceError("skip.unreadable",
                                      f'"{piece}": the range ends before it starts')
            if (stop - start).days > 2 * MAX_OCCURRENCES:
                raise RecurrenceError("skip.unreadable", f'"{piece}": a range of over two years')
            return [start + dt.timedelta(days=i) for i in range((stop - start).days + 1)]
    except ValueError as err:
        if isinstance(err, RecurrenceError):
            raise
        raise RecurrenceError(
            "skip.unreadable",
            f'"{piece}" is not a date or a range: write dates as the date column accepts them '
            "(04-01-2027), ranges as 06-04-2027..10-04-2027, separated by ; or ,",
        ) from err
    raise RecurrenceError("skip.unreadable", f'"{piece}": a range is two dates joined by ..')


def parse_count(cell: object) -> int:
    """A ``count`` cell: a whole number of sessions from 1 to `MAX_OCCURRENCES`, typed as text or
    stored as a number; `RecurrenceError` (``count.out_of_range``) otherwise."""
    value: float | None = None
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        value = float(cell)
    elif isinstance(cell, str):
        try:
            value = float(cell.strip())
        except ValueError:
            value = None
    if value is None or not math.isfinite(value) or not value.is_integer() \
            or not 1 <= value <= MAX_OCCURRENCES:
        shown = cell.strip() if isinstance(cell, str) else \
            f"{cell:g}" if isinstance(cell, float) else str(cell)
        raise RecurrenceError("count.out_of_range",
                              f'"{shown}" is not a count: count is how many sessions, a whole '
                              f"number from 1 to {MAX_OCCURRENCES}")
    return int(value)


def skip_cell(cell: object, parse_date: Callable[[str], dt.date]) -> tuple[dt.date, ...]:
    """The dates a ``skip`` cell (or a Holidays line) names, in order: a date cell is one date,
    text goes through `parse_skip`."""
    if isinstance(cell, dt.datetime):
        return (cell.date(),)
    if isinstance(cell, dt.date):
        return (cell,)
    if not isinstance(cell, str):
        raise RecurrenceError(
            "skip.unreadable",
            f'"{cell}" is not a date or a range: write dates as the date column accepts them '
            "(04-01-2027), ranges as 06-04-2027..10-04-2027, separated by ; or ,",
        )
    return tuple(sorted(parse_skip(cell, parse_date)))


def fill(template: str, *, n: int, count: int, day: dt.date) -> str:
    """``name``/``description`` with ``{n}``, ``{count}`` and ``{date}`` filled in; other braces
    are left as typed (a name may contain them)."""
    out = template
    if "{n}" in out:
        out = out.replace("{n}", str(n))
    if "{count}" in out:
        out = out.replace("{count}", str(count))
    if "{date}" in out:
        out = out.replace("{date}", _fmt(day))
    return out


def _fmt(day: dt.date) -> str:
    return f"{day.day:02d}-{day.month:02d}-{day.year:04d}"

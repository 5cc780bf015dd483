"""Repeat rules, skips, limits and placeholders (sheet/recurrence.py): pure, no I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from bulkschedule.sheet.parse import parse_date
from bulkschedule.sheet.recurrence import (
    MAX_OCCURRENCES,
    RecurrenceError,
    Rule,
    expand,
    fill,
    parse_count,
    parse_rule,
    parse_skip,
    skip_cell,
)

D = dt.date


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("daily", Rule(1)),
        ("  Weekly ", Rule(7)),
        ("every 2 weeks", Rule(14)),
        ("EVERY 1 WEEK", Rule(7)),
        ("weekdays", Rule(None, frozenset(range(5)))),
        ("Tue, Thu", Rule(None, frozenset({1, 3}))),
        ("tuesday thursday", Rule(None, frozenset({1, 3}))),
        ("every 2 weeks on Mon, Wed", Rule(None, frozenset({0, 2}), 2)),
        ("weekly on Fri", Rule(None, frozenset({4}))),
    ],
)
def test_rules_read_in_every_documented_form(text: str, rule: Rule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize("text", ["fortnightly", "Tue, Thurday", "every 0 weeks", "every week on"])
def test_unreadable_rules_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(RecurrenceError) as info:
        parse_rule(text)
    assert info.value.code == "repeat.unreadable"
    assert "every N weeks" in info.value.message or "1 to 52" in info.value.message


def test_tuesday_and_thursday_until_a_date_skipping_easter_week() -> None:
    easter = parse_skip("06-04-2027..10-04-2027", parse_date)
    days = expand(D(2027, 1, 12), parse_rule("Tue, Thu"), until=D(2027, 3, 31), skip=easter)
    assert days[0] == D(2027, 1, 12) and days[-1] == D(2027, 3, 30)
    assert all(d.weekday() in (1, 3) for d in days)
    assert len(days) == 23  # 12 Jan .. 30 Mar: 12 Tuesdays + 11 Thursdays, none in Easter week


def test_skipped_dates_inside_the_span_do_not_use_up_the_count() -> None:
    days = expand(D(2027, 1, 4), Rule(7), count=3, skip=frozenset({D(2027, 1, 11)}))
    assert days == [D(2027, 1, 4), D(2027, 1, 18), D(2027, 1, 25)]


def test_every_two_weeks_on_days_counts_weeks_from_the_first_dates_week() -> None:
    days = expand(D(2027, 1, 6), parse_rule("every 2 weeks on Mon, Wed"), count=4)
    assert days == [D(2027, 1, 6), D(2027, 1, 18), D(2027, 1, 20), D(2027, 2, 1)]


def test_weekdays_skip_the_weekend() -> None:
    days = expand(D(2027, 1, 8), parse_rule("weekdays"), until=D(2027, 1, 12))
    assert days == [D(2027, 1, 8), D(2027, 1, 11), D(2027, 1, 12)]


def test_limits_and_ends_are_errors_with_codes() -> None:
    with pytest.raises(RecurrenceError) as info:
        expand(D(2027, 1, 1), Rule(1), until=D(2028, 6, 1))
    assert info.value.code == "repeat.too_many" and str(MAX_OCCURRENCES) in info.value.message
    with pytest.raises(RecurrenceError) as info:
        expand(D(2027, 1, 10), Rule(7), until=D(2027, 1, 3))
    assert info.value.code == "until.before_date"
    with pytest.raises(RecurrenceError) as info:
        expand(D(2027, 1, 10), Rule(7))
    assert info.value.code == "repeat.no_end"
    with pytest.raises(RecurrenceError) as info:
        expand(D(2027, 1, 10), Rule(7), until=D(2027, 2, 1), count=2)
    assert info.value.code == "repeat.no_end"
    with pytest.raises(RecurrenceError) as info:
        expand(D(2027, 1, 11), parse_rule("Tue, Thu"), count=2)  # a Monday
    assert info.value.code == "repeat.first_date_off_rule" and "Monday" in info.value.message


def test_exactly_the_limit_is_allowed() -> None:
    days = expand(D(2027, 1, 1), Rule(1), count=MAX_OCCURRENCES)
    assert len(days) == MAX_OCCURRENCES


def test_skip_lists_take_dates_ranges_and_both_separators() -> None:
    got = parse_skip("01-02-2027; 03-02-2027, 05-02-2027 ; 10-02-2027..12-02-2027", parse_date)
    assert got == {D(2027, 2, 1), D(2027, 2, 3), D(2027, 2, 5), D(2027, 2, 10), D(2027, 2, 11),
                   D(2027, 2, 12)}
    assert parse_skip("Jan 4, 2027", parse_date) == {D(2027, 1, 4)}
    with pytest.raises(RecurrenceError) as info:
        parse_skip("next tuesday", parse_date)
    assert info.value.code == "skip.unreadable" and ".." in info.value.message
    with pytest.raises(RecurrenceError):
        parse_skip("10-02-2027..01-02-2027", parse_date)


def test_placeholders_fill_and_other_braces_stay() -> None:
    text = fill("Spanish A1 – lesson {n} of {count} ({date}) {room}", n=3, count=22,
                day=D(2027, 1, 19))
    assert text == "Spanish A1 – lesson 3 of 22 (19-01-2027) {room}"


@pytest.mark.parametrize(("cell", "count"), [("3", 3), (" 10 ", 10), (4.0, 4), (370, 370)])
def test_counts_read_from_text_and_number_cells(cell: object, count: int) -> None:
    assert parse_count(cell) == count


@pytest.mark.parametrize("cell", ["0", "371", "2.5", "ten", True, float("nan"), -1])
def test_a_count_is_a_whole_number_from_1_to_the_limit(cell: object) -> None:
    with pytest.raises(RecurrenceError) as info:
        parse_count(cell)
    assert info.value.code == "count.out_of_range" and str(MAX_OCCURRENCES) in info.value.message


def test_a_skip_cell_may_be_a_date_cell_or_text() -> None:
    assert skip_cell(dt.datetime(2027, 1, 4, 0, 0), parse_date) == (D(2027, 1, 4),)
    assert skip_cell(D(2027, 1, 4), parse_date) == (D(2027, 1, 4),)
    assert skip_cell("06-01-2027, 04-01-2027", parse_date) == (D(2027, 1, 4), D(2027, 1, 6))
    with pytest.raises(RecurrenceError) as info:
        skip_cell(46391.0, parse_date)
    assert info.value.code == "skip.unreadable"

"""Per-cell parsers: every accepted form, and a plain-words error for each way a cell goes wrong."""

from __future__ import annotations

import datetime as dt

import pytest

from bulkschedule.sheet.parse import (
    ParseError,
    display,
    format_date,
    format_time,
    is_blank,
    parse_date,
    parse_id,
    parse_text,
    parse_time,
    parse_type,
)

D = dt.date(2027, 1, 4)

# ---------------------------------------------------------------------------------------------- IDs


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("478346000019479103", "478346000019479103"),
        ("  478346000019479103\t", "478346000019479103"),
        ("007", "007"),  # text keeps its leading zeros
        (478346000019479.0, "478346000019479"),
        (12345, "12345"),
        (float(2**53 - 1), str(2**53 - 1)),
    ],
)
def test_id_accepted(cell: object, expected: str) -> None:
    assert parse_id(cell) == expected


def test_id_number_too_big_for_a_double_is_refused() -> None:
    with pytest.raises(ParseError, match="Excel has already changed its last digits: format the "
                       "column as Text and re-type the ID") as err:
        parse_id(478346000019479103.0)
    assert err.value.code == "id.rounded_by_excel"
    with pytest.raises(ParseError, match="already changed its last digits"):
        parse_id(float(2**53))


@pytest.mark.parametrize("cell", ["4.78346E+17", "4.78346000019479E+17", "4,78346E+17"])
def test_id_in_scientific_notation_explains_lost_digits(cell: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_id(cell)
    assert "scientific notation" in err.value.message
    assert "format the column as Text" in err.value.message
    assert err.value.code == "id.scientific"


@pytest.mark.parametrize(
    ("cell", "code"),
    [("12a", "id.not_digits"), ("4783 4600", "id.not_digits"), ("-5", "id.not_digits"),
     ("478346000019479103.0", "id.not_digits"), ("１２３", "id.not_digits"),
     (1.5, "id.not_whole"), (-3, "id.not_whole"), (True, "id.not_digits"),
     (float("nan"), "id.not_digits"), (D, "id.cell_type")],
)
def test_id_rejects_non_digits(cell: object, code: str) -> None:
    with pytest.raises(ParseError, match="not an ID") as err:
        parse_id(cell)
    assert err.value.code == code


# -------------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "cell",
    ["04-01-2027", "4-1-2027", "04/01/2027", "04.01.2027", "2027-01-04", "2027-01-04 00:00:00",
     "2027/01/04", "4-Jan-2027", "4 Jan 2027", "04-January-2027", "4 JANUARY 2027", "4-jan-2027",
     "Jan 4, 2027", " 04-01-2027 ", D, dt.datetime(2027, 1, 4, 10, 30)],
)
def test_date_accepted(cell: object) -> None:
    assert parse_date(cell) == D


def test_date_day_first_unless_month_first() -> None:
    assert parse_date("03/04/2027") == dt.date(2027, 4, 3)
    assert parse_date("03/04/2027", month_first=True) == dt.date(2027, 3, 4)
    assert parse_date("03.04.2027", month_first=True) == dt.date(2027, 3, 4)
    # unambiguous forms are not switched
    assert parse_date("2027-03-04", month_first=True) == dt.date(2027, 3, 4)
    assert parse_date("3-Apr-2027", month_first=True) == dt.date(2027, 4, 3)


@pytest.mark.parametrize(
    ("cell", "words", "code"),
    [
        ("31-02-2027", "does not exist: February 2027 has 28 days", "date.impossible"),
        ("29-02-2027", "February 2027 has 28 days", "date.impossible"),
        ("31-04-2027", "April 2027 has 30 days", "date.impossible"),
        ("04-13-2027", "13 is not a month", "date.bad_month"),
        ("04-01-27", "write the year with 4 digits", "date.year_digits"),
        ("4-Jan-27", "write the year with 4 digits", "date.year_digits"),
        ("4-Foo-2027", "'foo' is not a month name", "date.bad_month_name"),
        ("46391", "plain number, not a date: format the cell as a date or type it as dd-mm-yyyy",
         "date.plain_number"),
        (46391.0, "plain number, not a date: format the cell as a date or type it as dd-mm-yyyy",
         "date.plain_number"),
        (46391, "plain number, not a date", "date.plain_number"),
        ("next monday", "is not a date", "date.unreadable"),
        (dt.time(10), "is a time, not a date", "date.is_time"),
        (True, "is not a date", "date.unreadable"),
    ],
)
def test_date_errors(cell: object, words: str, code: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_date(cell)
    assert words in err.value.message
    assert err.value.code == code


def test_leap_day_exists_in_leap_years() -> None:
    assert parse_date("29-02-2028") == dt.date(2028, 2, 29)


def test_month_first_error_names_the_order_used() -> None:
    with pytest.raises(ParseError, match="mm-dd-yyyy"):
        parse_date("13/04/2027", month_first=True)


# -------------------------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("10:00 AM", (10, 0)), ("10:00am", (10, 0)), ("10am", (10, 0)), ("10 AM", (10, 0)),
        ("2:30 pm", (14, 30)), ("02:30 PM", (14, 30)), ("10:00 a.m.", (10, 0)),
        ("14:30", (14, 30)), ("14:30:00", (14, 30)), ("9:05", (9, 5)), ("10.30", (10, 30)),
        ("10.30 am", (10, 30)), ("00:00", (0, 0)), ("23:59", (23, 59)),
        ("12 AM", (0, 0)), ("12:00 AM", (0, 0)), ("12:30 am", (0, 30)),
        ("12 PM", (12, 0)), ("12:30 PM", (12, 30)), ("11:59 PM", (23, 59)),
        ("1899-12-30 10:00:00", (10, 0)), ("0.4166667", (10, 0)), (".5", (12, 0)),
        (dt.time(10, 0), (10, 0)),
        (dt.time(10, 0, 0, 3000), (10, 0)),  # a hand-typed fraction read through a h:mm format
        (dt.time(10, 59, 59, 900000), (11, 0)),
        (dt.time(10, 0, 29), (10, 0)),
        (dt.time(10, 0, 30), (10, 1)),
        (dt.datetime(2027, 1, 4, 14, 30), (14, 30)),
        (dt.timedelta(hours=10, minutes=15), (10, 15)),
        (0.4166667, (10, 0)),
        (0.0, (0, 0)),
        (0.5, (12, 0)),
    ],
)
def test_time_accepted(cell: object, expected: tuple[int, int]) -> None:
    assert parse_time(cell) == dt.time(*expected)


@pytest.mark.parametrize(
    ("cell", "words", "code"),
    [
        ("25:00", "there is no hour 25", "time.bad_hour"),
        ("24:00", "there is no hour 24", "time.bad_hour"),
        ("13:00 PM", "mixes the 24-hour and 12-hour clocks: write 1:00 PM or 13:00",
         "time.mixed_clock"),
        ("10:61", "minutes go from 00 to 59", "time.bad_minutes"),
        ("10:30:75", "seconds go from 00 to 59", "time.bad_seconds"),
        ("0:30 AM", "the 12-hour clock has no hour 0: write 12:30 AM or 00:30", "time.hour_zero"),
        ("10", "has no minutes or AM/PM", "time.bare_hour"),
        ("ten o'clock", "is not a time", "time.unreadable"),
        ("", "is not a time", "time.unreadable"),
        (1.5, "is a number, not a time of day", "time.plain_number"),
        (-0.1, "is a number, not a time of day", "time.plain_number"),
        (0.99999, "rounds to midnight", "time.midnight_end"),
        (dt.time(23, 59, 45), "rounds to midnight", "time.midnight_end"),
        (dt.timedelta(hours=25), "is a duration, not a time of day", "time.duration"),
        (D, "is a date, not a time", "time.is_date"),
        (False, "is not a time", "time.unreadable"),
    ],
)
def test_time_errors(cell: object, words: str, code: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_time(cell)
    assert words in err.value.message
    assert err.value.code == code


# --------------------------------------------------------------------------------------------- type


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("0", "0"), ("1", "1"), (" 1 ", "1"), ("0.0", "0"), ("1.0", "1"), (0, "0"), (1.0, "1"),
     ("Classroom", "0"), ("CLASSROOM", "0"), ("classroom", "0"), ("E-learning", "1"),
     ("Elearning", "1"), ("E learning", "1"), ("e_LEARNING", "1")],
)
def test_type_accepted(cell: object, expected: str) -> None:
    assert parse_type(cell) == expected


@pytest.mark.parametrize("cell", ["2", "Webinar", "", "class room x", 2.0, True, D])
def test_type_errors_list_the_accepted_values(cell: object) -> None:
    with pytest.raises(ParseError) as err:
        parse_type(cell)
    assert "Classroom or E-learning (or 0 for Classroom, 1 for E-learning)" in err.value.message
    assert err.value.code == "type.unknown"


# ---------------------------------------------------------------------------------- text, display


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("  Induction  ", "Induction"), ("", None), ("   ", None), (None, None), (42.0, "42"),
     (2.5, "2.5"), (7, "7"), (D, "04-01-2027")],
)
def test_text(cell: object, expected: str | None) -> None:
    assert parse_text(cell) == expected


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (None, ""), ("as typed ", "as typed "), (42.0, "42"), (2.5, "2.5"), (True, "TRUE"),
        (478346000019479103.0, "478346000019479104"),  # what the double really holds
        (D, "04-01-2027"), (dt.datetime(2027, 1, 4), "04-01-2027"),
        (dt.datetime(2027, 1, 4, 14, 5), "04-01-2027 02:05 PM"),
        (dt.time(9, 0), "09:00 AM"), (dt.time(0, 0), "12:00 AM"), (dt.time(12, 30), "12:30 PM"),
        (dt.timedelta(hours=26, minutes=5), "26:05"),
    ],
)
def test_display(cell: object, expected: str) -> None:
    assert display(cell) == expected


def test_formats_for_the_api() -> None:
    assert format_date(dt.date(2027, 3, 9)) == "09-03-2027"
    assert [format_time(dt.time(h, m)) for h, m in [(0, 0), (0, 5), (9, 0), (12, 0), (13, 45),
                                                    (23, 59)]] == [
        "12:00 AM", "12:05 AM", "09:00 AM", "12:00 PM", "01:45 PM", "11:59 PM"]


def test_is_blank() -> None:
    assert is_blank(None) and is_blank("") and is_blank("  \t")
    assert not is_blank("x") and not is_blank(0) and not is_blank(0.0)


def test_memoised_errors_are_raised_afresh_each_time() -> None:
    first = second = None
    try:
        parse_time("31:00")
    except ParseError as exc:
        first = exc
    try:
        parse_time("31:00")
    except ParseError as exc:
        second = exc
    assert first is not None and second is not None
    assert first is not second
    assert first.message == second.message


def test_memo_keeps_month_first_apart() -> None:
    assert parse_date("01/02/2027") == dt.date(2027, 2, 1)
    assert parse_date("01/02/2027", month_first=True) == dt.date(2027, 1, 2)
    assert parse_date("01/02/2027") == dt.date(2027, 2, 1)

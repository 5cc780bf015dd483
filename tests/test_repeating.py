"""Repeating rows through validation: expanded into one session per date before the cross-row
checks, holidays from the workbook or a file, placeholders, limits, problems on the source row
naming the session's date, identities per session, and what validate shows of them."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import CliRunner

from bulkschedule.app import job, results
from bulkschedule.cli import root as cli
from bulkschedule.cli.console import format_expansions, summary_line
from bulkschedule.core.errors import JobError
from bulkschedule.core.problems import Problem
from bulkschedule.org.checks import OrgView, check
from bulkschedule.sheet.limits import ReadLimits
from bulkschedule.sheet.parse import parse_date
from bulkschedule.sheet.payload import build_request
from bulkschedule.sheet.reader import HolidayLine, RawTable, ReadError, read_holidays, read_table
from bulkschedule.sheet.recurrence import MAX_OCCURRENCES, expand, parse_rule, parse_skip
from bulkschedule.sheet.schema import Expansion, Validation, validate
from bulkschedule.zoho.records import ListedSession

TODAY = dt.date(2026, 6, 1)
D = dt.date
T1 = "478346000008251001"
T2 = "478346000008251017"
M = "478346000019479119"


def row(name: str = "Spanish A1", trainer: str = T1, date: object = "12-01-2027",
        start: object = "6:00 PM", end: object = "7:00 PM", **extra: object) -> dict[str, object]:
    return {"courseId": "1", "batchId": "2", "moduleId": M, "name": name, "trainerErecno": trainer,
            "type": "Classroom", "date": date, "startTime": start, "endTime": end, **extra}


def table(rows: list[dict[str, object]], holidays: tuple[HolidayLine, ...] = ()) -> RawTable:
    headers = list(dict.fromkeys(h for r in rows for h in r))
    t = RawTable("sheet.csv", None, headers, [[r.get(h) for h in headers] for r in rows],
                 list(range(2, len(rows) + 2)))
    t.holidays = holidays
    return t


def check_rows(rows: list[dict[str, object]], **kw: Any) -> Validation:
    return validate(table(rows, kw.pop("holidays", ())), today=kw.pop("today", TODAY), **kw)


def only(v: Validation, code: str) -> Problem:
    found = [p for p in v.problems if p.code == code]
    assert len(found) == 1, v.problems
    return found[0]


def sheet_line(source: str, row_number: int, cell: object, name: object = None) -> HolidayLine:
    return HolidayLine(source, row_number, cell, name)


# ----------------------------------------------------------------------------------- expansion


def test_a_repeating_row_becomes_one_session_per_date_on_its_own_row() -> None:
    v = check_rows([row(repeat="Tue, Thu", until="31-03-2027", skip="06-04-2027..10-04-2027")])
    assert v.problems == []
    dates = expand(D(2027, 1, 12), parse_rule("Tue, Thu"), until=D(2027, 3, 31))
    assert [s.date for s in v.sessions] == dates
    assert {s.row for s in v.sessions} == {2}
    assert [s.occurrence for s in v.sessions] == list(range(1, len(dates) + 1))
    assert v.valid == len(dates) == 23
    assert v.expansions == [Expansion(2, 23, D(2027, 1, 12), D(2027, 3, 30))]
    first = v.sessions[0]
    assert (first.repeat, first.until, first.repeat_count) == ("Tue, Thu", D(2027, 3, 31), None)


def test_rows_that_do_not_repeat_keep_no_occurrence_among_repeating_ones() -> None:
    v = check_rows([row(name="Intro", date="11-01-2027"),
                    row(repeat="weekly", count="3"),
                    row(name="Close", date="01-03-2027")])
    assert v.problems == []
    assert [(s.row, s.occurrence, s.date) for s in v.sessions] == [
        (2, None, D(2027, 1, 11)), (3, 1, D(2027, 1, 12)), (3, 2, D(2027, 1, 19)),
        (3, 3, D(2027, 1, 26)), (4, None, D(2027, 3, 1))]
    assert v.valid_rows == 3 and v.valid == 5


def test_a_sheet_without_repeating_rows_has_no_expansions() -> None:
    v = check_rows([row(), row(name="Other", date="13-01-2027")])
    assert v.expansions == [] and [s.occurrence for s in v.sessions] == [None, None]
    assert v.to_json()["expansions"] == []


def test_placeholders_fill_name_and_description_per_session() -> None:
    v = check_rows([row(name="Spanish A1 – lesson {n} of {count}", repeat="weekly", count="3",
                        description="Session on {date} {room}")])
    assert [s.name for s in v.sessions] == [f"Spanish A1 – lesson {n} of 3" for n in (1, 2, 3)]
    assert [s.description for s in v.sessions] == [
        "Session on 12-01-2027 {room}", "Session on 19-01-2027 {room}",
        "Session on 26-01-2027 {room}"]


def test_placeholders_stay_as_typed_in_a_row_that_does_not_repeat() -> None:
    v = check_rows([row(name="Lesson {n}")])
    assert v.sessions[0].name == "Lesson {n}"


def test_lock_until_moves_with_each_session() -> None:
    v = check_rows([row(repeat="weekly", count="3", lockUntil="10-01-2027")])
    assert [(s.date, s.lock_until) for s in v.sessions] == [
        (D(2027, 1, 12), D(2027, 1, 10)), (D(2027, 1, 19), D(2027, 1, 17)),
        (D(2027, 1, 26), D(2027, 1, 24))]


def test_skip_takes_dates_ranges_and_a_date_cell() -> None:
    v = check_rows([row(repeat="daily", until="20-01-2027",
                        skip="13-01-2027; 15-01-2027..17-01-2027"),
                    row(name="Other", trainer=T2, repeat="daily", count="3",
                        skip=dt.datetime(2027, 1, 13))])
    assert v.problems == []
    first = [s.date.day for s in v.sessions if s.row == 2]
    assert first == [12, 14, 18, 19, 20]
    assert [s.date.day for s in v.sessions if s.row == 3] == [12, 14, 15]  # count is kept
    assert v.sessions[0].skip == (D(2027, 1, 13), D(2027, 1, 15), D(2027, 1, 16),
                                  D(2027, 1, 17))


def test_case_and_spaces_of_the_rule_do_not_matter() -> None:
    v = check_rows([row(repeat="  EVERY 2 weeks ON tue ", count=2.0)])
    assert v.problems == [] and [s.date for s in v.sessions] == [D(2027, 1, 12), D(2027, 1, 26)]
    assert v.sessions[0].repeat == "every 2 weeks on Tue"


# ------------------------------------------------------------------------------------ holidays


def test_holidays_are_skipped_by_every_repeating_row_but_not_by_single_rows() -> None:
    holidays = (sheet_line("Holidays sheet", 1, "date", "name"),
                sheet_line("Holidays sheet", 2, D(2027, 1, 19), "Founders' day"),
                sheet_line("Holidays sheet", 3, "25-01-2027..27-01-2027", "Retreat"))
    v = check_rows([row(repeat="weekly", count="3"),
                    row(name="One-off", trainer=T2, date="19-01-2027")], holidays=holidays)
    assert v.problems == []
    assert [s.date for s in v.sessions] == [D(2027, 1, 12), D(2027, 2, 2), D(2027, 2, 9),
                                            D(2027, 1, 19)]


def test_an_unreadable_holiday_line_is_an_error_there_and_stops_the_repeating_rows() -> None:
    holidays = (sheet_line("Holidays sheet", 1, "date", "name"),
                sheet_line("Holidays sheet", 4, "Easter week", None))
    v = check_rows([row(repeat="weekly", count="3"), row(name="Single", trainer=T2)],
                   holidays=holidays)
    file_level = [p for p in v.problems if p.row is None]
    assert [(p.column, p.value, p.severity, p.code) for p in file_level] == [
        ("Holidays", "Easter week", "error", "skip.unreadable")]
    assert file_level[0].message.startswith("Holidays sheet, row 4: ")
    assert ".." in file_level[0].message  # the accepted forms
    (on_row,) = [p for p in v.problems if p.row == 2]
    assert (on_row.column, on_row.code) == ("repeat", "skip.unreadable")
    assert "Holidays sheet row 4" in on_row.message
    assert {s.row for s in v.sessions} == {3}  # the single row is still valid


def test_an_unreadable_holiday_line_is_only_a_warning_when_no_row_repeats() -> None:
    holidays = (sheet_line("hol.csv", 2, "soon"),)  # a first line with no digit is a header...
    assert check_rows([row()], holidays=holidays).problems == []
    holidays = (sheet_line("hol.csv", 1, "date"), sheet_line("hol.csv", 2, "soon"))
    v = check_rows([row()], holidays=holidays)
    (p,) = v.problems
    assert (p.row, p.severity, p.code) == (None, "warning", "skip.unreadable")
    assert p.message.startswith("hol.csv, row 2: ") and "no row repeats" in p.message


def test_a_holiday_name_without_a_date_is_reported() -> None:
    holidays = (sheet_line("Holidays sheet", 2, None, "Founders' day"),)
    v = check_rows([row(repeat="weekly", count="2")], holidays=holidays)
    assert any(p.row is None and "Founders' day" in p.message for p in v.problems)


def test_the_holidays_sheet_of_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "term.xlsx"
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    holidays = wb.create_sheet("holidays ")  # the name matches ignoring case and spaces
    for r in (["date", "name"], [D(2027, 1, 19), "Founders' day"], [None, None],
              ["25-01-2027..27-01-2027", "Retreat"]):
        holidays.append(r)
    sessions = wb.create_sheet("Plan")
    values = row(repeat="weekly", count="3")
    sessions.append(list(values))
    sessions.append(list(values.values()))
    wb.save(path)
    t = read_table(path)
    assert t.sheet == "Plan"  # the Holidays sheet is never the default sheet
    assert t.holidays == (HolidayLine("holidays  sheet", 1, "date", "name"),
                          HolidayLine("holidays  sheet", 2, D(2027, 1, 19), "Founders' day"),
                          HolidayLine("holidays  sheet", 4, "25-01-2027..27-01-2027", "Retreat"))
    v = validate(t, today=TODAY)
    assert [s.date for s in v.sessions] == [D(2027, 1, 12), D(2027, 2, 2), D(2027, 2, 9)]
    # asked for by name, the Holidays sheet is read as any sheet (and lists no holidays itself)
    assert read_table(path, sheet="holidays ").holidays == ()


def test_the_holidays_sheet_keeps_the_read_limits(tmp_path: Path) -> None:
    path = tmp_path / "term.xlsx"
    wb = openpyxl.Workbook()
    wb.active.title = "Sessions"
    wb.active.append(["name"])
    wb.active.append(["x"])
    holidays = wb.create_sheet("Holidays")
    for i in range(30):
        holidays.append([f"{i + 1:02d}-01-2027"])
    wb.save(path)
    with pytest.raises(ReadError, match="Holidays") as info:
        read_table(path, limits=ReadLimits(max_rows=10))
    assert "--max-rows" in str(info.value)


def test_a_holidays_file(tmp_path: Path) -> None:
    path = tmp_path / "holidays.csv"
    path.write_text("Date,Holiday\r\n19-01-2027,Founders' day\r\n\r\n"
                    "25-01-2027..27-01-2027,Retreat\r\n", encoding="utf-8")
    lines = read_holidays(path)
    assert lines == (HolidayLine("holidays.csv", 1, "Date", "Holiday"),
                     HolidayLine("holidays.csv", 2, "19-01-2027", "Founders' day"),
                     HolidayLine("holidays.csv", 4, "25-01-2027..27-01-2027", "Retreat"))
    # and without a header line
    path.write_text("19-01-2027\n", encoding="utf-8")
    assert read_holidays(path) == (HolidayLine("holidays.csv", 1, "19-01-2027", None),)


def test_a_holidays_file_through_load(tmp_path: Path) -> None:
    sheet = tmp_path / "term.csv"
    values = row(repeat="weekly", count="3")
    sheet.write_text(",".join(values) + "\n" + ",".join(map(str, values.values())) + "\n",
                     encoding="utf-8")
    holidays = tmp_path / "holidays.csv"
    holidays.write_text("date,name\n19-01-2027,Founders' day\n", encoding="utf-8")
    v = job.load(sheet, today=TODAY, holidays=holidays)
    assert [s.date for s in v.sessions] == [D(2027, 1, 12), D(2027, 1, 26), D(2027, 2, 2)]
    with pytest.raises(JobError, match=r"^--holidays .*nope\.csv: file not found"):
        job.load(sheet, today=TODAY, holidays=tmp_path / "nope.csv")


# -------------------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("extra", "column", "code", "says"),
    [
        ({"repeat": "fortnightly", "count": "3"}, "repeat", "repeat.unreadable", "every N weeks"),
        ({"repeat": "daily", "until": "01-06-2028"}, "until", "repeat.too_many",
         str(MAX_OCCURRENCES)),
        ({"repeat": "weekly", "until": "01-01-2027"}, "until", "until.before_date",
         "12-01-2027"),
        ({"repeat": "weekly", "count": "371"}, "count", "count.out_of_range", "1 to 370"),
        ({"repeat": "weekly", "count": "2.5"}, "count", "count.out_of_range", "whole number"),
        ({"repeat": "weekly"}, "repeat", "repeat.no_end", "count: 10"),
        ({"repeat": "weekly", "until": "01-03-2027", "count": "3"}, "count", "repeat.no_end",
         "exactly one"),
        ({"repeat": "Mon, Wed", "count": "3"}, "date", "repeat.first_date_off_rule",
         "Tuesday"),
        ({"repeat": "weekly", "count": "3", "skip": "next week"}, "skip", "skip.unreadable",
         "06-04-2027..10-04-2027"),
        ({"repeat": "weekly", "until": "19-01-2027", "skip": "12-01-2027..19-01-2027"},
         "repeat", "repeat.no_sessions", "skipped"),
    ],
)
def test_a_row_that_cannot_repeat_is_an_error_on_the_cell(
    extra: dict[str, object], column: str, code: str, says: str
) -> None:
    v = check_rows([row(**extra), row(name="Other", trainer=T2)])
    p = only(v, code)
    assert (p.row, p.column, p.severity) == (2, column, "error")
    assert says in p.message
    assert p.value == ({**row(), **extra}.get(column) or "")
    assert {s.row for s in v.sessions} == {3} and v.expansions == []


def test_exactly_the_limit_is_allowed() -> None:
    v = check_rows([row(repeat="daily", count=str(MAX_OCCURRENCES))])
    assert v.problems == [] and v.valid == MAX_OCCURRENCES


def test_until_count_or_skip_on_a_row_that_does_not_repeat_is_a_warning() -> None:
    v = check_rows([row(until="01-03-2027"), row(name="Other", trainer=T2, count="4")])
    assert [(p.row, p.column, p.severity, p.code) for p in v.problems] == [
        (2, "until", "warning", "repeat.missing"), (3, "count", "warning", "repeat.missing")]
    assert [s.occurrence for s in v.sessions] == [None, None]


# ----------------------------------------------------------- each session checked as a row


def test_double_bookings_between_repeating_rows_name_the_dates_on_each_row() -> None:
    v = check_rows([row(repeat="Tue, Thu", count="6"),
                    row(name="Drop-in", date="14-01-2027", start="6:30 PM", end="7:30 PM",
                        repeat="weekly", count="5")])
    problems = [p for p in v.problems if p.code == "trainer.double_booked"]
    assert [(p.row, p.column) for p in problems] == [(2, "trainerErecno"), (3, "trainerErecno")]
    assert problems[0].message == (
        f"Trainer {T1} is also booked 06:30 PM–07:30 PM in row 3 on 14-01-2027, 21-01-2027 "
        "and 28-01-2027")
    assert problems[1].message == (
        f"Trainer {T1} is also booked 06:00 PM–07:00 PM in row 2 on 14-01-2027, 21-01-2027 "
        "and 28-01-2027")
    assert v.sessions == []


def test_many_dates_are_counted_after_the_first_three() -> None:
    v = check_rows([row(repeat="weekly", count="10"),
                    row(name="Clash", start="6:30 PM", end="7:30 PM", repeat="weekly",
                        count="8")])
    p = next(p for p in v.problems if p.row == 3)
    assert p.message.endswith("on 12-01-2027, 19-01-2027, 26-01-2027 and 5 more dates")


def test_a_single_row_double_booked_by_one_session_of_a_repeating_row() -> None:
    v = check_rows([row(repeat="weekly", until="31-03-2027"),
                    row(name="One-off", date="02-02-2027", start="5:30 PM", end="6:30 PM")])
    assert [(p.row, p.message) for p in v.problems] == [
        (2, f"Trainer {T1} is also booked 05:30 PM–06:30 PM in row 3 on 02-02-2027"),
        (3, f"Trainer {T1} is also booked 06:00 PM–07:00 PM in row 2 on 02-02-2027")]


def test_a_room_shared_by_sessions_of_different_rows() -> None:
    room = "478346000010125093"
    v = check_rows([row(roomId=room, repeat="weekly", count="2"),
                    row(trainer=T2, name="Other", roomId=room, date="19-01-2027",
                        start="6:45 PM", end="8:00 PM")])
    assert {(p.row, p.code) for p in v.problems} == {(2, "room.double_booked"),
                                                     (3, "room.double_booked")}
    assert all(p.message.endswith("on 19-01-2027") for p in v.problems)


def test_a_session_twice_names_the_date_and_is_not_also_a_double_booking() -> None:
    v = check_rows([row(repeat="weekly", count="3"),
                    row(date="19-01-2027")])
    p = only(v, "row.duplicate")
    assert (p.row, p.column) == (3, "name")
    assert p.message.startswith("Same session as row 2 on 19-01-2027 (same module")
    assert [s.row for s in v.sessions] == [2, 2, 2]


def test_sessions_of_one_row_never_clash_with_each_other() -> None:
    v = check_rows([row(repeat="daily", count="30", roomId="478346000010125093")])
    assert v.problems == [] and v.valid == 30


def test_a_key_is_the_rows_and_must_be_unique_across_rows() -> None:
    v = check_rows([row(key="SP", repeat="weekly", count="3"),
                    row(name="Other", trainer=T2, key="SP")])
    p = only(v, "key.duplicate")
    assert (p.row, p.message) == (3, "The key is also used in row 2: each row's key must be "
                                     "unique")


def test_past_dates_are_a_warning_on_the_row() -> None:
    v = check_rows([row(repeat="weekly", count="3")], today=D(2027, 1, 15))
    p = only(v, "date.in_past")
    assert (p.row, p.column, p.severity) == (2, "date", "warning")
    assert v.valid == 3


# -------------------------------------------------------------------------------- identities


def test_each_session_has_its_own_identity() -> None:
    v = check_rows([row(key="SP-A1", repeat="weekly", count="2"),
                    row(name="Lesson {n}", trainer=T2, repeat="weekly", count="2"),
                    row(name="Single", key="ONE", date="01-03-2027")])
    requests = [build_request(s) for s in v.sessions]
    assert [r.identity for r in requests] == [
        "key:SP-A1@12-01-2027", "key:SP-A1@19-01-2027",
        f"session:{M}|Lesson 1|12-01-2027|06:00 PM", f"session:{M}|Lesson 2|19-01-2027|06:00 PM",
        "key:ONE"]
    assert [r.occurrence for r in requests] == [1, 2, 1, 2, None]
    assert [r.row for r in requests] == [2, 2, 3, 3, 4]
    assert requests[2].session_data["name"] == "Lesson 1"
    assert requests[0].session_data["date"] == "12-01-2027"
    assert {"repeat", "until", "count", "skip"}.isdisjoint(requests[0].session_data)


def test_extending_until_keeps_the_earlier_identities() -> None:
    short = check_rows([row(key="SP", repeat="weekly", until="26-01-2027")])
    longer = check_rows([row(key="SP", repeat="weekly", until="09-02-2027")])
    before = {build_request(s).identity for s in short.sessions}
    after = {build_request(s).identity for s in longer.sessions}
    assert before < after
    assert after - before == {"key:SP@02-02-2027", "key:SP@09-02-2027"}


# ----------------------------------------------------------------------- the online checks


def test_org_checks_hold_each_session_to_itself_and_report_a_shared_problem_once() -> None:
    v = check_rows([row(repeat="weekly", count="3")])
    held = [ListedSession(id=f"S{d}", name="Spanish A1", module_id=M, date=D(2027, 1, d),
                          start=dt.time(18), end=dt.time(19), trainer_erecno=T1, room_id=None,
                          type="0", description=None) for d in (12, 19)]
    found = check(v.sessions, OrgView(trainers={}, sessions={M: held}))
    # the held copies of the first two sessions are not clashes for them; the unknown trainer
    # is one problem for the row, not one per session
    assert [(p.row, p.code) for p in found] == [(2, "org.trainer_unknown")]


# ------------------------------------------------------------------------- validate's output


def _csv(path: Path, rows: list[dict[str, object]]) -> Path:
    headers = list(dict.fromkeys(h for r in rows for h in r))
    lines = [",".join(headers)] + [",".join(str(r.get(h, "")) for h in headers) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_validate_json_lists_the_expansions(tmp_path: Path) -> None:
    sheet = _csv(tmp_path / "term.csv", [row(repeat="Tue; Thu".replace(";", ""), count="4"),
                                         row(name="Single", trainer=T2)])
    out = CliRunner().invoke(cli.main, ["validate", str(sheet), "--json", "--today",
                                        "2026-06-01"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["expansions"] == [{"row": 2, "sessions": 4, "first": "12-01-2027",
                                   "last": "21-01-2027"}]
    assert (data["rows"], data["valid"]) == (2, 5)


def test_validate_shows_what_each_repeating_row_makes(tmp_path: Path) -> None:
    sheet = _csv(tmp_path / "term.csv", [row(repeat="weekly", count="4"),
                                         row(name="Single", trainer=T2)])
    holidays = tmp_path / "hol.csv"
    holidays.write_text("19-01-2027\n", encoding="utf-8")
    out = CliRunner().invoke(cli.main, ["validate", str(sheet), "--holidays", str(holidays),
                                        "--today", "2026-06-01"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert "1 repeating row making 4 sessions:" in lines
    assert "  2         4  12-01-2027  09-02-2027" in lines
    assert lines[-1] == (f"{sheet}: 2 rows, 1 of them repeating: 5 sessions, 5 valid, "
                         "0 errors, 0 warnings")


def test_the_list_of_repeating_rows_is_capped() -> None:
    many = [Expansion(r, 2, D(2027, 1, 4), D(2027, 1, 11)) for r in range(2, 32)]
    lines = format_expansions(many, shown=5)
    assert len(lines) == 2 + 5 + 1
    assert lines[-1] == "... and 25 more repeating rows: --json lists every one"


def test_a_sheet_without_repeating_rows_prints_as_before() -> None:
    v = check_rows([row()])
    assert summary_line(v) == "sheet.csv: 1 row, 1 valid, 0 errors, 0 warnings"


def test_load_takes_repeating_rows_for_every_caller(tmp_path: Path) -> None:
    """Sending keys its outcomes by session (issue 13, phase 2): no caller refuses them."""
    sheet = _csv(tmp_path / "term.csv", [row(repeat="weekly", count="4")])
    v = job.load(sheet, today=TODAY)
    assert [(s.row, s.occurrence) for s in v.sessions] == [(2, 1), (2, 2), (2, 3), (2, 4)]
    # a repeating row with an error is never sent: the rest of the sheet may go
    sheet = _csv(tmp_path / "term.csv", [row(repeat="weekly"), row(name="Single", trainer=T2)])
    assert [s.row for s in job.load(sheet, today=TODAY).sessions] == [3]


# ------------------------------------------------------------------------------- the template


@pytest.mark.parametrize("example", results.REPEAT_EXAMPLES, ids=lambda e: e[0])
def test_the_templates_examples_make_what_they_say(example: tuple[str, ...]) -> None:
    repeat, until, count, skip, date, makes = example
    days = expand(parse_date(date), parse_rule(repeat),
                  until=parse_date(until) if until else None,
                  count=int(count) if count else None,
                  skip=parse_skip(skip, parse_date) if skip else frozenset())
    said = re.search(r"(\d+) sessions", makes)
    assert said is not None and int(said.group(1)) == len(days)


def test_the_template_has_a_holidays_sheet_the_reader_understands(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    wb = results.template_workbook()
    wb["Holidays"].append(["06-04-2027..10-04-2027", "Easter week"])
    ws = wb["Sessions"]
    values = {**row(repeat="weekly", until="20-04-2027"), "courseId": "1"}
    for c, name in enumerate([c.value for c in ws[1]], start=1):
        ws.cell(row=2, column=c, value=values.get(name))
    wb.save(path)
    t = read_table(path)
    assert t.sheet == "Sessions"
    v = validate(t, today=TODAY)
    assert v.problems == []
    assert D(2027, 4, 6) not in {s.date for s in v.sessions}
    assert v.expansions == [Expansion(2, 14, D(2027, 1, 12), D(2027, 4, 20))]
    info = [[c.value for c in r] for r in wb["Instructions"].iter_rows()]
    assert any(r[0] == "Repeating rows" for r in info)

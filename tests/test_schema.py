"""validate(): headers, per-cell parsing, the pandera rules and the cross-row checks."""

from __future__ import annotations

import datetime as dt
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bulkschedule.core.problems import Problem, sort_key
from bulkschedule.sheet.reader import RawTable, read_table
from bulkschedule.sheet.schema import SessionRow, Validation, validate

TODAY = dt.date(2026, 6, 1)
T1 = "478346000008251001"
T2 = "478346000008251002"
M = "478346000019479119"
HEADERS = ["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
           "startTime", "endTime"]


def row(name: str | None = "Induction", trainer: str = T1, date: object = "04-01-2027",
        start: object = "10:00 AM", end: object = "11:00 AM", **extra: object) -> dict[str, object]:
    return {"courseId": "1", "batchId": "2", "moduleId": M, "name": name, "trainerErecno": trainer,
            "type": "Classroom", "date": date, "startTime": start, "endTime": end, **extra}


def table(rows: list[dict[str, object]], headers: list[str] | None = None,
          numbers: list[int] | None = None) -> RawTable:
    headers = headers or list(dict.fromkeys(h for r in rows for h in r)) or HEADERS
    return RawTable("sheet.csv", None, headers, [[r.get(h) for h in headers] for r in rows],
                    numbers or list(range(2, len(rows) + 2)))


def check(rows: list[dict[str, object]], **kw: object) -> Validation:
    kw.setdefault("today", TODAY)
    return validate(table(rows), **kw)  # type: ignore[arg-type]


def at(v: Validation, row: int | None, column: str | None = None) -> list[Problem]:
    return [p for p in v.problems if p.row == row and (column is None or p.column == column)]


def messages(v: Validation) -> list[tuple[int | None, str | None, str, str]]:
    return [(p.row, p.column, p.severity, p.message) for p in v.problems]


def codes(v: Validation) -> list[str]:
    return [p.code for p in v.problems]


# ------------------------------------------------------------------------------------ valid rows


def test_valid_row_becomes_an_exact_session_row() -> None:
    v = check([row(description=" Bring badge ", roomId="478346000010125093",
                   lockUntil="03-01-2027", gradeCategoryId="478346000019553021", key="K1")])
    assert v.problems == []
    assert v.sessions == [SessionRow(
        row=2, course_id="1", batch_id="2", module_id=M, name="Induction", trainer_erecno=T1,
        type="0", date=dt.date(2027, 1, 4), start=dt.time(10), end=dt.time(11),
        description="Bring badge", room_id="478346000010125093", lock_until=dt.date(2027, 1, 3),
        grade_category_id="478346000019553021", key="K1")]
    assert v.error_rows == set() and not v.fatal
    assert v.to_json() == {"file": "sheet.csv", "rows": 1, "valid": 1, "errors": 0,
                           "warnings": 0, "problems": [], "expansions": []}


def test_typed_workbook_cells() -> None:
    v = check([row(trainer=478346000008251.0, date=dt.datetime(2027, 1, 4, 0, 0),
                   start=dt.time(10, 0, 0, 3000), end=0.5, type=1.0)])
    assert v.problems == []
    s = v.sessions[0]
    assert (s.trainer_erecno, s.type, s.date, s.start, s.end) == (
        "478346000008251", "1", dt.date(2027, 1, 4), dt.time(10), dt.time(12))


def test_sessions_keep_input_order_and_skip_error_rows() -> None:
    v = check([row("A"), row("B", start="nonsense"), row("C", start="1 PM", end="2 PM")])
    assert [s.name for s in v.sessions] == ["A", "C"]
    assert v.error_rows == {3}


def test_empty_table() -> None:
    v = validate(RawTable("e.csv", None, HEADERS, [], []), today=TODAY)
    assert (v.sessions, v.problems, v.fatal, v.error_rows) == ([], [], False, set())


def test_short_rows_do_not_crash() -> None:
    t = RawTable("s.csv", None, HEADERS, [["1", "2", M, "A", T1]], [2])
    v = validate(t, today=TODAY)
    assert v.error_rows == {2}
    assert {p.column for p in v.problems} == {"type", "date", "startTime", "endTime"}


# --------------------------------------------------------------------------------------- headers


def test_unknown_and_duplicate_headers_are_warnings() -> None:
    headers = [*HEADERS, "trainerErecn", "Attendees", "Name"]
    t = RawTable("h.csv", None, headers, [["1", "2", M, "A", T1, "0", "04-01-2027", "10:00",
                                          "11:00", "x", "y", "other name"]], [2])
    v = validate(t, today=TODAY)
    assert messages(v) == [
        (None, "Attendees", "warning", "Unknown column 'Attendees' is ignored."),
        (None, "Name", "warning", "Column 'Name' is a second 'name' column and is ignored: "
                                  "only the first is read. Delete or rename one of them."),
        (None, "trainerErecn", "warning",
         "Unknown column 'trainerErecn' is ignored. Did you mean 'trainerErecno'?"),
    ]
    assert codes(v) == ["header.unknown", "header.duplicate", "header.unknown"]
    assert v.sessions[0].name == "A"


def test_missing_required_column_is_fatal_but_rows_are_still_checked() -> None:
    rows = [{"name": "A", "trainerErecno": T1, "type": "0", "date": "04-01-2027",
             "startTime": "10:00"},
            {"name": "B", "trainerErecno": "x", "type": "0", "date": "04-01-2027",
             "startTime": "10:00"}]
    v = validate(table(rows), module=M, course="1", batch="2", today=TODAY)
    assert v.fatal
    assert v.sessions == []
    assert v.error_rows == {2, 3}
    assert at(v, None) == [Problem(None, "endTime", None, "error",
                                   "The required column 'endTime' is missing: add a column "
                                   "headed 'endTime'", "column.missing")]
    assert [p.column for p in at(v, 3)] == ["trainerErecno"]


def test_missing_path_column_names_the_option() -> None:
    rows = [{k: val for k, val in row().items() if k != "batchId"}]
    v = check(rows)
    assert v.fatal
    assert at(v, None)[0].message == ("The required column 'batchId' is missing: add a column "
                                      "headed 'batchId' or give the ID once with --batch")
    assert codes(v) == ["column.missing"]


def test_path_arguments_fill_blanks_and_cells_win() -> None:
    rows = [row(), row("B", trainer=T2), row("C", trainer="3")]
    rows[0]["courseId"] = None
    rows[1]["courseId"] = "  "
    rows[2]["courseId"] = "555"
    v = check(rows, course="777")
    assert v.problems == []
    assert [s.course_id for s in v.sessions] == ["777", "777", "555"]


def test_bad_path_argument_without_a_column_is_reported_once() -> None:
    rows = [{k: val for k, val in row().items() if k != "moduleId"}]
    v = check(rows, module="abc")
    assert v.fatal
    assert messages(v) == [(None, "moduleId", "error", "--module: 'abc' is not an ID: IDs are "
                            "digits only (no spaces, letters or punctuation), such as "
                            "478346000019479103")]
    assert codes(v) == ["option.not_an_id"]


def test_path_argument_without_a_column() -> None:
    rows = [{k: val for k, val in row().items() if k not in ("courseId", "moduleId")}]
    v = check(rows, course="777", module="888")
    assert v.problems == []
    assert (v.sessions[0].course_id, v.sessions[0].module_id) == ("777", "888")


def test_bad_path_argument_is_a_fatal_file_level_error() -> None:
    v = check([row()], course="4.78346E+17")
    assert v.fatal and v.sessions == []
    assert at(v, None)[0].column == "courseId"
    assert at(v, None)[0].value == "4.78346E+17"
    assert at(v, None)[0].message.startswith("--course: 4.78346E+17 is an ID written in "
                                             "scientific notation")


# ---------------------------------------------------------------------------- per-cell problems


def test_parse_failures_are_located_on_the_sheet() -> None:
    rows = [row(), row(trainer="4.78346E+17", date="31-02-2027", start="25:00", type="Webinar")]
    v = validate(table(rows, numbers=[2, 9]), today=TODAY)
    assert {(p.row, p.column, p.value, p.code) for p in v.problems} == {
        (9, "trainerErecno", "4.78346E+17", "id.scientific"),
        (9, "type", "Webinar", "type.unknown"),
        (9, "date", "31-02-2027", "date.impossible"),
        (9, "startTime", "25:00", "time.bad_hour")}
    assert all(p.is_error for p in v.problems)
    assert v.error_rows == {9}
    assert [s.row for s in v.sessions] == [2]


def test_value_is_the_cell_as_the_admin_reads_it() -> None:
    v = check([row(trainer=478346000008251001.0, date=12.0)])
    assert {p.column: p.value for p in v.problems} == {
        "trainerErecno": "478346000008251008", "date": "12"}


def test_blank_required_cell_is_required_error_once() -> None:
    v = check([row(name="  ", trainer=None, start="")])
    assert messages(v) == [
        (2, "name", "error", "name is required: enter the session's name"),
        (2, "startTime", "error", "startTime is required: enter the start time, such as 10:00 AM"),
        (2, "trainerErecno", "error",
         "trainerErecno is required: enter the trainer's erecno (18 digits)"),
    ]
    assert codes(v) == ["cell.required"] * 3


def test_a_cell_that_failed_parsing_is_not_also_reported_missing() -> None:
    v = check([row(start="later", end="10:00")])
    assert [(p.column, p.value) for p in v.problems] == [("startTime", "later")]


def test_true_and_one_are_told_apart() -> None:
    # pandas.factorize treats True == 1 == 1.0; the parsers must not
    v = check([row(type=1.0), row("B", type=True, trainer=T2), row("C", type=1, trainer="3")])
    assert [(p.row, p.column, p.value) for p in v.problems] == [(3, "type", "TRUE")]
    assert [s.type for s in v.sessions] == ["1", "1"]


def test_month_first_is_passed_to_dates() -> None:
    v = check([row(date="01/04/2027")], month_first=True)
    assert v.sessions[0].date == dt.date(2027, 1, 4)


# ------------------------------------------------------------------------------ pandera rules


@pytest.mark.parametrize(("start", "end"), [("10:00 AM", "10:00 AM"), ("2 PM", "1:00 PM")])
def test_end_must_be_after_start(start: str, end: str) -> None:
    v = check([row(start=start, end=end, description=None)])
    shown_start = "10:00 AM" if start.startswith("10") else "02:00 PM"
    shown_end = "10:00 AM" if end.startswith("10") else "01:00 PM"
    assert messages(v) == [(2, "endTime", "error",
                            f"The end time {shown_end} is not after the start time {shown_start}:"
                            " a session must end after it starts")]
    assert codes(v) == ["time.end_before_start"]
    assert v.sessions == []


def test_end_after_start_ignores_blank_optional_columns() -> None:
    # pandera's default ignore_na would skip every row with a blank optional cell
    v = check([row(start="11:00", end="10:00", description=None, roomId=None)])
    assert [p.column for p in v.problems] == ["endTime"]


def test_lock_after_session_date_is_a_warning() -> None:
    v = check([row(lockUntil="05-01-2027"), row("B", lockUntil="04-01-2027", trainer=T2)])
    assert messages(v) == [(2, "lockUntil", "warning",
                            "lockUntil 05-01-2027 is after the session date 04-01-2027: it "
                            "should be on or before the session date")]
    assert codes(v) == ["lock.after_date"]
    assert len(v.sessions) == 2


def test_past_date_is_a_warning_relative_to_today() -> None:
    v = check([row(date="31-05-2026"), row("B", date="01-06-2026")])
    assert messages(v) == [(2, "date", "warning", "The date 31-05-2026 is in the past (today is "
                                                  "01-06-2026): check it is the date you mean")]
    assert codes(v) == ["date.in_past"]
    assert len(v.sessions) == 2 and v.warnings == 1 and v.errors == 0


def test_problems_sorted_and_error_rows() -> None:
    v = check([row(date="01-01-2026", end="9:00"), row(None, trainer=T2), row("C", trainer="3")])
    assert v.problems == sorted(v.problems, key=sort_key)
    assert [(p.row, p.severity) for p in v.problems] == [
        (2, "error"), (2, "warning"), (3, "error")]
    assert v.error_rows == {2, 3}


# ----------------------------------------------------------------------------- cross-row checks


def test_exact_duplicate_session_errors_on_the_later_row_only() -> None:
    v = check([row("A"), row("B", trainer=T2), row("A", end="12:00", trainer=T2)])
    assert messages(v) == [(4, "name", "error", "Same session as row 2 (same module, name, date "
                                                "and start time): delete one of them")]
    assert codes(v) == ["row.duplicate"]
    assert [s.row for s in v.sessions] == [2, 3]


def test_same_name_other_start_is_not_a_duplicate() -> None:
    v = check([row("A"), row("A", trainer=T2, start="11:00", end="12:00")])
    assert v.problems == []


def test_duplicate_key() -> None:
    v = check([row("A", key="K"), row("B", trainer=T2, key="K"), row("C", trainer=T2,
                                                                    start="1 PM", end="2 PM")])
    assert messages(v) == [(3, "key", "error",
                            "The key is also used in row 2: each row's key must be unique")]
    assert codes(v) == ["key.duplicate"]


def test_trainer_double_booked_errors_on_both_rows() -> None:
    v = check([row("A"), row("B", start="10:30 AM", end="11:30 AM")])
    assert messages(v) == [
        (2, "trainerErecno", "error", f"Trainer {T1} is also booked 10:30 AM–11:30 AM in row 3"),
        (3, "trainerErecno", "error", f"Trainer {T1} is also booked 10:00 AM–11:00 AM in row 2"),
    ]
    assert codes(v) == ["trainer.double_booked"] * 2
    assert v.sessions == []


def test_touching_sessions_and_other_days_or_trainers_do_not_overlap() -> None:
    v = check([row("A"), row("B", start="11:00", end="12:00"),
               row("C", date="05-01-2027"), row("D", trainer=T2)])
    assert v.problems == []


def test_room_double_booked() -> None:
    room = "478346000010125093"
    v = check([row("A", roomId=room), row("B", trainer=T2, roomId=room, start="9:00",
                                          end="10:30")])
    assert messages(v) == [
        (2, "roomId", "error", f"Room {room} is also booked 09:00 AM–10:30 AM in row 3"),
        (3, "roomId", "error", f"Room {room} is also booked 10:00 AM–11:00 AM in row 2"),
    ]
    assert codes(v) == ["room.double_booked"] * 2


def test_many_overlaps_name_three_rows_then_count() -> None:
    rows = [row(f"S{i}", start="10:00", end="12:00") for i in range(6)]
    v = check(rows)
    first = at(v, 2)[0].message
    assert first == (f"Trainer {T1} is also booked 10:00 AM–12:00 PM in row 3, 10:00 AM–12:00 PM "
                     "in row 4 and 10:00 AM–12:00 PM in row 5, and 2 more rows")
    assert len(v.problems) == 6


def test_exact_duplicate_is_not_also_a_double_booking() -> None:
    v = check([row("A"), row("A")])
    assert [p.row for p in v.problems] == [3]
    assert [s.row for s in v.sessions] == [2]


def test_rows_that_failed_parsing_join_no_cross_row_check() -> None:
    v = check([row("A"), row("A", start="10:00 XM")])
    assert [(p.row, p.column) for p in v.problems] == [(3, "startTime")]


_BOOKED = re.compile(r"in row (\d+)")
_MORE = re.compile(r"and (\d+) more rows?$")


@pytest.mark.parametrize("seed", range(8))
def test_overlaps_match_brute_force(seed: int) -> None:
    rnd = random.Random(seed)
    rows = []
    for i in range(120):
        start = rnd.randrange(8 * 60, 17 * 60, 15)
        rows.append(row(f"S{i}", trainer=rnd.choice([T1, T2, "3", "4"]),
                        date=rnd.choice(["04-01-2027", "05-01-2027"]),
                        start=f"{start // 60}:{start % 60:02d}",
                        end=f"{(start + rnd.choice([15, 30, 60, 90])) // 60}:"
                            f"{(start + rnd.choice([15, 30, 60, 90])) % 60:02d}"))
    v = check(rows)
    parsed = {}
    for n, r in enumerate(rows, start=2):
        h1, m1 = map(int, str(r["startTime"]).split(":"))
        h2, m2 = map(int, str(r["endTime"]).split(":"))
        parsed[n] = (r["trainerErecno"], r["date"], h1 * 60 + m1, h2 * 60 + m2)
    expected: dict[int, set[int]] = {}
    for a, (ta, da, sa, ea) in parsed.items():
        if ea <= sa:
            continue
        for b, (tb, db, sb, eb) in parsed.items():
            if a != b and eb > sb and (ta, da) == (tb, db) and sa < eb and sb < ea:
                expected.setdefault(a, set()).add(b)
    got = {p.row: p.message for p in v.problems if p.column == "trainerErecno"}
    assert set(got) == set(expected)
    for r, message in got.items():
        named = {int(x) for x in _BOOKED.findall(message)}
        more = _MORE.search(message)
        assert named <= expected[r]
        assert len(named) == min(3, len(expected[r]))
        assert len(named) + (int(more[1]) if more else 0) == len(expected[r])


# --------------------------------------------------------------------------------- import cost


def test_importing_the_package_modules_does_not_import_pandas() -> None:
    code = ("import sys, bulkschedule.sheet.schema, bulkschedule.sheet.parse, "
            "bulkschedule.sheet.payload; print('pandas' in sys.modules, 'pandera' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_one_slot_booked_thousands_of_times() -> None:
    rows = [row(f"S{i}") for i in range(3000)]
    v = check(rows)
    assert len(v.problems) == 3000
    assert at(v, 2)[0].message.endswith("in row 5, and 2996 more rows")


_ODD_CELLS: list[object] = [
    None, "", "  ", "x", "0", "1", "12:00", "31-02-2027", "04-01-2027", "4.78346E+17", "=A1",
    0, 1, True, False, 0.5, 1.5, -1.0, float("nan"), float("inf"), 2.0**60, 478346000019479.0,
    dt.date(2027, 1, 4), dt.datetime(2027, 1, 4, 10), dt.time(10, 30), dt.time(23, 59, 59),
    dt.timedelta(hours=30), dt.timedelta(hours=-1),
]


@pytest.mark.parametrize("seed", range(5))
def test_any_cell_value_becomes_problems_never_a_traceback(seed: int) -> None:
    rnd = random.Random(seed)
    headers = [*HEADERS, "description", "roomId", "lockUntil", "gradeCategoryId", "key"]
    rows = [[rnd.choice(_ODD_CELLS) for _ in headers] for _ in range(200)]
    v = validate(RawTable("f.xlsx", "Sheet1", headers, rows, list(range(2, 202))), today=TODAY)
    assert v.error_rows | {s.row for s in v.sessions} == set(range(2, 202))
    assert not v.error_rows & {s.row for s in v.sessions}
    assert all(p.row is not None for p in v.problems)


def test_pandera_schema_itself_enforces_the_row_rules() -> None:
    # the parsers already guarantee these; the schema is the declared contract and must hold too
    import pandas as pd
    import pandera.pandas as pa

    from bulkschedule.sheet.columns import SPEC
    from bulkschedule.sheet.schema import _schemas

    errors, _ = _schemas(TODAY, SPEC)
    frame = pd.DataFrame(
        {"trainerErecno": pd.array(["1", "x1", None], dtype="str"),
         "type": pd.array(["0", "2", "1"], dtype="str"),
         "startTime": [600.0, 600.0, 600.0], "endTime": [660.0, 600.0, float("nan")]},
        index=pd.Index([2, 3, 4], name="row"))
    with pytest.raises(pa.errors.SchemaErrors) as err:
        errors.validate(frame, lazy=True)
    found = {(c, str(k), int(i)) for c, k, i in zip(
        err.value.failure_cases["column"], err.value.failure_cases["check"],
        err.value.failure_cases["index"], strict=True)}
    assert {("trainerErecno", "digits_only", 3), ("type", "type_code", 3),
            ("trainerErecno", "not_nullable", 4), ("endTime", "not_nullable", 4)} <= found
    assert {i for _, k, i in found if k == "end_after_start"} == {3}


# ------------------------------------------------------------- columns, lazy sessions, the keys


def test_duplicates_compare_parsed_values_not_spellings() -> None:
    rows = [row("A", moduleId=" " + M), row("A ", trainer=T2, start="10:00", end="12:00",
                                              date=dt.date(2027, 1, 4))]
    v = check(rows)
    assert messages(v) == [(3, "name", "error", "Same session as row 2 (same module, name, date "
                                                "and start time): delete one of them")]


def test_a_path_argument_filling_a_blank_joins_the_cross_row_checks() -> None:
    first, second = row("A"), row("A", trainer=T2, end="12:00")
    first["moduleId"] = None  # filled by --module
    v = check([first, second], module=M)
    assert [(p.row, p.column) for p in v.problems] == [(3, "name")]
    v = check([row("A", key=None), row("B", trainer=T2, key="")])
    assert v.problems == []  # blank keys are no duplicates


def test_sessions_are_built_on_first_use() -> None:
    v = check([row("A"), row("B", trainer=T2), row("C", trainer="x")])
    assert v.valid == 2 and v.to_json()["valid"] == 2
    assert v._sessions is None  # validate --json never builds them
    assert [s.name for s in v.sessions] == ["A", "B"]
    assert v.valid == 2
    same = Validation(v.table, v.headers, list(v.sessions), v.problems, v.fatal, v.error_rows)
    assert same == v and "sessions=[SessionRow(" in repr(same)
    same.sessions = []
    assert same.valid == 0 and same != v


def test_a_csv_read_column_wise_validates_like_its_rows(tmp_path: Path) -> None:
    rnd = random.Random(7)
    values = {"courseId": ["1", " 1", "x", ""], "moduleId": [M, M + " ", "4.78E+17"],
              "name": ["A", "B ", "", "C"], "trainerErecno": [T1, T2, ""],
              "type": ["Classroom", "1", "bad"], "date": ["04-01-2027", "2027-01-04", "31-02-2027"],
              "startTime": ["10:00 AM", "10:00", "25:00", ""], "endTime": ["11:00", "9:00", ""],
              "key": ["", "K1", "K2"], "Notes": ["", "n"]}
    headers = ["batchId", *values]
    lines = [",".join(headers)]
    for i in range(400):
        lines.append(",".join(["2", *(rnd.choice(v) for v in values.values())]))
        if i % 97 == 0:
            lines.append(",".join([""] * len(headers)))  # a blank row
    path = tmp_path / "s.csv"
    path.write_text("\n".join(lines) + "\n")
    read = read_table(path)
    assert read._rows is None  # read column-wise
    by_rows = RawTable(read.file, None, read.headers, list(read.rows), read.row_numbers)
    a = validate(read_table(path), today=TODAY, course="9")
    b = validate(by_rows, today=TODAY, course="9")
    assert a.problems and a.to_json() == b.to_json()
    assert a.sessions == b.sessions and a.error_rows == b.error_rows


def test_validation_freezes_the_imported_modules_once() -> None:
    import gc

    check([row()])
    frozen = gc.get_freeze_count()
    assert frozen > 0
    check([row()])
    assert gc.get_freeze_count() == frozen

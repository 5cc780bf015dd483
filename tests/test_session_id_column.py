"""The optional ``sessionId`` column (issue 12): a results workbook given back as input names its
sessions, and its own output columns are ignored quietly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bulkschedule.app.results import write_results
from bulkschedule.core.problems import Outcome, Problem, Status
from bulkschedule.sheet.columns import OUTPUT_HEADERS, RESULT_COLUMNS, map_headers
from bulkschedule.sheet.payload import build_request
from bulkschedule.sheet.reader import RawTable, read_table
from bulkschedule.sheet.schema import Validation, validate

TODAY = dt.date(2026, 6, 1)
T1 = "478346000008251001"
M = "478346000019479119"
S1 = "478346000020113001"
S2 = "478346000020113002"
INPUT = ["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
         "startTime", "endTime"]


def row(name: str = "Induction", hour: int = 10, **extra: object) -> dict[str, object]:
    """A valid row; rows of one sheet need their own ``hour`` (one trainer, no double booking)."""
    return {"courseId": "1", "batchId": "2", "moduleId": M, "name": name, "trainerErecno": T1,
            "type": "Classroom", "date": "04-01-2027", "startTime": f"{hour:02d}:00",
            "endTime": f"{hour:02d}:45", **extra}


def table(rows: list[dict[str, object]], headers: list[str]) -> RawTable:
    return RawTable("sheet.csv", None, headers, [[r.get(h) for h in headers] for r in rows],
                    list(range(2, len(rows) + 2)))


def check(rows: list[dict[str, object]], headers: list[str]) -> Validation:
    return validate(table(rows, headers), today=TODAY)


def codes(v: Validation) -> list[str]:
    return [p.code for p in v.problems]


def at(v: Validation, r: int) -> list[Problem]:
    return [p for p in v.problems if p.row == r]


# ----------------------------------------------------------------------- a results workbook back


def test_a_results_workbooks_columns_are_ignored_quietly_and_its_session_id_read() -> None:
    headers = ["row", *INPUT, "status", "sessionId", "message", "attempts", "changes"]
    rows = [
        row(row=2, status="created", sessionId=S1, message="", attempts=1, changes=""),
        row(name="Fire drill", hour=11, row=3, status="updated", sessionId=S2, message="updated",
            attempts=2, changes="startTime: 10:00 AM → 11:00 AM"),
        row(name="New one", hour=12, row=4, status="failed", sessionId=None, message="refused",
            attempts=1, changes=None),
    ]
    v = check(rows, headers)
    assert v.problems == []
    assert "header.unknown" not in codes(v)
    assert [(s.row, s.session_id) for s in v.sessions] == [(2, S1), (3, S2), (4, None)]
    assert [build_request(s).session_id for s in v.sessions] == [S1, S2, None]


def test_output_headers_match_in_any_spelling_and_are_not_input_columns() -> None:
    hm = map_headers(["Status", "MESSAGE", " attempts ", "Changes", "Row", "name"])
    assert hm.unknown == [] and hm.duplicate == []
    assert dict(hm.index) == {"name": 5}
    assert "sessionid" not in OUTPUT_HEADERS  # it is an input column
    assert {h.lower() for h in RESULT_COLUMNS} - {"sessionid"} <= OUTPUT_HEADERS


def test_an_unknown_column_is_still_reported() -> None:
    v = check([row(status="x", venue="Hall")], [*INPUT, "status", "venue"])
    assert codes(v) == ["header.unknown"]
    assert v.problems[0].column == "venue"


def test_a_written_results_workbook_reads_back_with_its_session_ids(tmp_path: Path) -> None:
    """The round trip the admin makes: run, edit the results workbook, run it again."""
    first = check([row(), row(name="Fire drill", hour=11), row(name="Refused", hour=12)], INPUT)
    assert first.problems == []
    outcomes = {2: Outcome(2, Status.CREATED, S1, "", 1),
                3: Outcome(3, Status.EXISTS, S2, "already in Zoho"),
                4: Outcome(4, Status.FAILED, None, "BATCH_DATE_AND_SESSION_DATE_MISMATCH", 1)}
    out = tmp_path / "term.results.xlsx"
    write_results(out, first, outcomes, {"file": "term.xlsx"})

    again = validate(read_table(out), today=TODAY)
    assert "header.unknown" not in codes(again), again.problems
    assert again.problems == []
    assert [(s.row, s.name, s.session_id) for s in again.sessions] == [
        (2, "Induction", S1), (3, "Fire drill", S2), (4, "Refused", None)]


def test_a_session_id_typed_by_hand_is_an_id_like_any_other() -> None:
    v = check([row(sessionId="not an id"), row(name="B", hour=11, sessionId=f" {S1} ")],
              [*INPUT, "sessionId"])
    [bad] = v.problems
    assert (bad.row, bad.column, bad.code, bad.is_error) == (2, "sessionId", "id.not_digits", True)
    assert [(s.row, s.session_id) for s in v.sessions] == [(3, S1)]


# ----------------------------------------------------------------------------- one row a session


def test_two_rows_naming_one_session_fail_the_later_row() -> None:
    v = check([row(sessionId=S1), row(name="Copy", hour=14, sessionId=S2),
               row(name="Other", hour=15, sessionId=S1)], [*INPUT, "sessionId"])
    assert at(v, 2) == [] and at(v, 3) == []
    [dup] = at(v, 4)
    assert (dup.code, dup.column, dup.is_error) == ("sessionid.duplicate", "sessionId", True)
    assert "Row 2" in dup.message and "one row per session" in dup.message
    assert v.error_rows == {4}
    assert [s.row for s in v.sessions] == [2, 3]


def test_blank_session_ids_are_not_duplicates() -> None:
    v = check([row(sessionId=None), row(name="B", hour=11, sessionId=""),
               row(name="C", hour=12, sessionId=" ")],
              [*INPUT, "sessionId"])
    assert v.problems == []
    assert [s.session_id for s in v.sessions] == [None, None, None]


def test_a_session_id_and_its_number_form_are_one_session() -> None:
    """A workbook cell may hold the ID as a number when it still fits exactly."""
    short = "478346000020"
    v = check([row(sessionId=short), row(name="B", hour=11, sessionId=float(short))],
              [*INPUT, "sessionId"])
    assert codes(v) == ["sessionid.duplicate"]


def test_results_of_a_results_workbook_keep_the_session_of_a_row_not_updated(
        tmp_path: Path) -> None:
    """The admin's loop: run the results workbook, then run *its* results workbook. A row whose
    update failed (a 5xx, a stop) must still name its session the third time, or it would be
    matched afresh and maybe created again."""
    first = check([row(sessionId=S1), row(name="B", hour=11, sessionId=S2)], [*INPUT, "sessionId"])
    assert first.problems == []
    out = tmp_path / "term.results.results.xlsx"
    write_results(out, first, {2: Outcome(2, Status.UPDATED, S1, "updated", 1),
                               3: Outcome(3, Status.FAILED, None, "503, 5 tries", 5)}, {})
    again = validate(read_table(out), today=TODAY)
    assert "header.unknown" not in codes(again)
    assert [(s.row, s.session_id) for s in again.sessions] == [(2, S1), (3, S2)]

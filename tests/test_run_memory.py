"""What a run keeps per row, kept small without changing what it says (issue 14's memory target):
the request reads its sessionData from the validated row, the plan keeps no step for
a plain create, the report's lines share the runner's keys, and the results workbook is the same
whichever number of rows it takes from the table at a time."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
from pathlib import Path

import openpyxl
import pytest

from bulkschedule.app import job, results
from bulkschedule.core.problems import Outcome, Status
from bulkschedule.send.plan import Action, Step, make_plan
from bulkschedule.sheet.payload import SessionData, build_request
from bulkschedule.sheet.reader import Cells, read_table
from bulkschedule.sheet.schema import SessionRow

TODAY = dt.date(2027, 1, 1)
HEADERS = ["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
           "startTime", "endTime", "description", "roomId", "key"]


def write_sheet(path: Path, n: int, *, bad: set[int] = frozenset(), keys: bool = False) -> Path:
    """``n`` rows; the rows at the positions in ``bad`` have a date that does not exist."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADERS)
        for i in range(n):
            day = dt.date(2027, 1, 4) + dt.timedelta(days=i // 9)
            w.writerow(["478346000019479103", "478346000019479115",
                        str(478346000019479119 + (i % 3) * 12), f"Session {i}",
                        str(478346000008251001 + (i % 5) * 16), "Classroom",
                        "31-02-2027" if i in bad else day.strftime("%d-%m-%Y"),
                        f"{8 + i % 9:02d}:00", f"{9 + i % 9:02d}:30",
                        "Bring your badge" if i % 4 == 0 else "",
                        "478346000010125093" if i % 2 else "", f"K{i}" if keys else ""])
    return path


# ------------------------------------------------------------------------------------ requests


ROW = SessionRow(row=5, course_id="1", batch_id="2", module_id="3", name="Induction",
                 trainer_erecno="478346000008251001", type="0", date=dt.date(2027, 1, 4),
                 start=dt.time(10, 0), end=dt.time(11, 30), room_id="478346000010125093")


def test_session_data_reads_the_row_as_the_dict_it_replaces() -> None:
    data = build_request(ROW).session_data
    assert isinstance(data, SessionData)
    expected = {"name": "Induction", "trainerErecno": "478346000008251001", "type": "0",
                "date": "04-01-2027", "startTime": "10:00 AM", "endTime": "11:30 AM",
                "roomId": "478346000010125093"}
    assert dict(data) == expected and data == expected and expected == data
    assert list(data) == list(expected) and len(data) == len(expected)
    assert json.dumps(dict(data)) == json.dumps(expected)  # the same order, so the same bytes
    assert "description" not in data and data.get("description") is None  # blank: left out
    with pytest.raises(KeyError):
        data["description"]
    with pytest.raises(KeyError):
        data["notAField"]


# ---------------------------------------------------------------------------------------- plan


def test_a_plans_steps_read_as_a_list_of_them(tmp_path: Path) -> None:
    validation = job.load(write_sheet(tmp_path / "s.csv", 6), today=TODAY)
    reqs = job.requests_for(validation)
    named = [reqs[0], dataclasses.replace(reqs[1], session_id="S1"), reqs[2],
             dataclasses.replace(reqs[3], session_id="S1"), *reqs[4:]]
    plan = make_plan(named, journal={}, sessions={}, zoho=None)
    steps = list(plan.steps)
    assert [s.action for s in steps] == [Action.CREATE, Action.UNCHANGED, Action.CREATE,
                                         Action.INVALID, Action.CREATE, Action.CREATE]
    assert steps[0] == Step(named[0], Action.CREATE) and steps[0].changes == {}
    assert len(plan.steps) == 6 and plan.steps == steps and plan.steps[1:4] == steps[1:4]
    assert plan.steps[-1] == steps[-1] and plan.steps[3] is steps[3]  # kept: made once
    assert "row 3" in plan.steps[3].note
    with pytest.raises(IndexError):
        plan.steps[6]
    assert plan.counts() == {"create": 4, "update": 0, "unchanged": 1, "invalid": 1}


# ----------------------------------------------------------------------------------- the table


def test_a_column_reads_the_same_a_part_at_a_time(tmp_path: Path) -> None:
    table = read_table(write_sheet(tmp_path / "s.csv", 30))
    coded = table.columns()[HEADERS.index("moduleId")]
    assert coded.codes is not None and coded.codes.dtype.itemsize == 1  # 3 distinct: int8
    for column in [*table.columns(), Cells(["a", "", None, "b", "a"])]:
        whole = column.tolist()
        assert [c for part in column.lists(4) for c in part] == whole
        assert {v or None for v in column.each_value()} == set(whole)


# --------------------------------------------------------------------------------- the report


def test_the_reports_lines_are_keyed_by_the_runners_own_lines(tmp_path: Path) -> None:
    validation = job.load(write_sheet(tmp_path / "s.csv", 8, bad={2, 5}), today=TODAY)
    sent = {r.line: r.outcome(Status.CREATED, f"S{r.row}") for r in job.requests_for(validation)}
    out = job.complete(validation, sent)
    assert list(out) == [(r, 0) for r in range(2, 10)]
    own = {id(k) for k in sent}
    assert all(id(k) in own for k in out if k in sent)
    assert job.invalid_outcomes(validation) == {
        k: o for k, o in job.complete(validation, {}).items() if o.status == Status.INVALID}
    assert sorted(job.invalid_outcomes(validation)) == [(4, 0), (7, 0)]


def cells(path: Path) -> list[list[tuple[object, str, str | None]]]:
    """Every sheet's cells: value, number format, fill; then the column widths."""
    wb = openpyxl.load_workbook(path)
    out = []
    for ws in wb.worksheets:
        out.append([(c.value, c.number_format, c.fill.fgColor.rgb if c.fill.fill_type else None)
                    for row in ws.iter_rows() for c in row])
        out.append([(k, str(d.width), None) for k, d in sorted(ws.column_dimensions.items())])
    return out


def test_the_results_workbook_is_the_same_whatever_part_it_reads_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    validation = job.load(write_sheet(tmp_path / "s.csv", 11, bad={3}, keys=True), today=TODAY)
    outcomes = job.complete(validation, {
        r.line: r.outcome(Status.CREATED if r.row % 3 else Status.FAILED,
                          f"4783460000201130{r.row:02d}" if r.row % 3 else None,
                          "" if r.row % 3 else "Zoho said no", 1)
        for r in job.requests_for(validation)})
    whole = tmp_path / "whole.xlsx"
    results.write_results(whole, validation, outcomes, {"rows": 11})
    monkeypatch.setattr(results, "_PART", 2)
    parts = tmp_path / "parts.xlsx"
    results.write_results(parts, validation, outcomes, {"rows": 11})
    assert cells(parts) == cells(whole)
    ws = openpyxl.load_workbook(parts)["Results"]
    at = {c.value: c.column for c in ws[1]}
    assert [ws.cell(r, at["status"]).value for r in range(2, 13)] == [
        "created", "failed", "created", "invalid", "failed", "created", "created", "failed",
        "created", "created", "failed"]
    assert ws.cell(4, at["sessionId"]).value == "478346000020113004"


def test_a_status_cell_holds_the_statuss_own_text() -> None:
    assert all(results._status_text(s) is s.value for s in Status)
    assert results._status_text("something else") == "something else"


def test_an_outcome_keyed_by_row_still_reads(tmp_path: Path) -> None:
    """write_results takes outcomes keyed by plain rows too (as it always did)."""
    validation = job.load(write_sheet(tmp_path / "s.csv", 3), today=TODAY)
    out = tmp_path / "r.xlsx"
    results.write_results(out, validation, {3: Outcome(3, Status.CREATED, "S3")}, {})
    ws = openpyxl.load_workbook(out)["Results"]
    at = {c.value: c.column for c in ws[1]}
    assert [ws.cell(r, at["status"]).value for r in (2, 3, 4)] == [
        "pending", "created", "pending"]

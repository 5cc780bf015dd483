"""The workbooks in `bulkschedule.app.results`, read back with openpyxl.

Validation objects are built by hand here, so these tests pin the workbook contract without
depending on how the schema words its messages.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter

from bulkschedule.app import results
from bulkschedule.core.problems import Outcome, Status, error, warning
from bulkschedule.sheet import columns
from bulkschedule.sheet.columns import map_headers
from bulkschedule.sheet.reader import RawTable
from bulkschedule.sheet.schema import Validation

ROOT = Path(__file__).resolve().parent.parent
COURSE = "478346000019479103"
TRAINER = "478346000008251001"
ROOM = "478346000010125093"

# Not in spec order on purpose: the results sheet puts canonical columns in spec order.
HEADERS = ["name", "courseId", "date", "startTime", "roomId", "Status", "descripton"]


def _validation(*, rows=None, problems=(), error_rows=None, fatal=False, headers=HEADERS):
    rows = rows if rows is not None else [
        ["=HYPERLINK(\"http://x\")", COURSE, dt.date(2027, 1, 4), dt.time(10, 0), ROOM, "x", "+44"],
        ["-- cancelled --", COURSE, dt.date(2027, 1, 5), dt.time(14, 30), None, None, "@home"],
        ["Induction", COURSE, "31-02-2027", "25:00", ROOM, None, "#N/A"],
        ["Safety", 4.78346000019479e17, dt.date(2027, 1, 6), 0.5, None, None, None],
    ]
    numbers = [2, 3, 5, 6]  # row 4 was blank in the sheet
    table = RawTable("in.xlsx", "Sessions", list(headers), rows, numbers[: len(rows)])
    problems = sorted(problems, key=lambda p: (-1 if p.row is None else p.row))
    if error_rows is None:
        error_rows = {p.row for p in problems if p.is_error and p.row is not None}
    return Validation(table, map_headers(list(headers)), [], list(problems), fatal, error_rows)


def _problems():
    return [
        warning(None, "descripton", "descripton", "unknown column; did you mean description?",
                code="header.unknown"),
        error(5, "date", "31-02-2027", "'31-02-2027' does not exist", code="date.impossible"),
        error(5, "startTime", "25:00", "'25:00' is not a time", code="time.bad_hour"),
        warning(3, "date", "05-01-2027", "the date is in the past", code="date.in_past"),
        error(6, "courseId", "4.78346000019479e+17", "=stored as a number",
              code="id.rounded_by_excel"),
    ]


def _sheet_rows(ws):
    return [list(r) for r in ws.iter_rows(values_only=True)]


def _all_cells(wb):
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if cell.value is not None:
                    yield ws.title, cell


# ------------------------------------------------------------------------------- results workbook


def test_results_columns_and_order(tmp_path):
    out = tmp_path / "results.xlsx"
    outcomes = {2: Outcome(2, Status.CREATED, "478346000099999901", "", 1)}
    results.write_results(out, _validation(problems=_problems()), outcomes, {"file": "in.xlsx"})
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Results", "Summary", "Problems"]
    ws = wb["Results"]
    header = [c.value for c in ws[1]]
    # "Status" is one of a results workbook's own columns: given back as input it is ignored
    # (issue 12), so it is not copied; "descripton" is an unknown column, copied as typed
    assert header == [
        "row", "occurrence", "courseId", "name", "date", "startTime", "roomId", "descripton",
        "status", "sessionId", "message", "attempts", "changes",
    ]
    # every input row, in input order, with its spreadsheet row number
    assert [ws.cell(row=r, column=1).value for r in range(2, 6)] == [2, 3, 5, 6]
    assert ws.max_row == 5


def test_results_statuses_messages_and_colours(tmp_path):
    out = tmp_path / "results.xlsx"
    outcomes = {2: Outcome(2, Status.CREATED, "478346000099999901", "", 1)}
    results.write_results(out, _validation(problems=_problems()), outcomes, {})
    ws = openpyxl.load_workbook(out)["Results"]
    header = [c.value for c in ws[1]]
    col = {name: header.index(name) + 1 for name in header}
    by_row = {ws.cell(row=r, column=1).value: r for r in range(2, ws.max_row + 1)}

    def get(row, name):
        return ws.cell(row=by_row[row], column=col[name])

    assert get(2, "status").value == "created"
    assert get(2, "sessionId").value == "478346000099999901"
    assert get(2, "sessionId").data_type == "s"
    assert get(2, "attempts").value == 1
    assert get(3, "status").value == "pending"  # a warning alone does not stop a row
    assert get(5, "status").value == "invalid"
    assert get(5, "message").value == (
        "date: '31-02-2027' does not exist; startTime: '25:00' is not a time"
    )
    assert get(6, "status").value == "invalid"
    fills = {r: get(r, "status").fill.start_color.rgb[-6:] for r in (2, 3, 5)}
    assert fills == {2: "C6EFCE", 3: "D9D9D9", 5: "FFC7CE"}


def test_results_keep_cell_types(tmp_path):
    out = tmp_path / "results.xlsx"
    results.write_results(out, _validation(problems=_problems()), {}, {})
    ws = openpyxl.load_workbook(out)["Results"]
    header = [c.value for c in ws[1]]
    date = ws.cell(row=2, column=header.index("date") + 1)
    assert date.is_date and date.value.date() == dt.date(2027, 1, 4)
    assert date.number_format == "dd-mm-yyyy"
    start = ws.cell(row=2, column=header.index("startTime") + 1)
    assert start.value == dt.time(10, 0) and start.is_date
    course = ws.cell(row=2, column=header.index("courseId") + 1)
    assert course.value == COURSE and course.data_type == "s" and course.number_format == "@"
    # text the admin typed in a date column stays that text
    assert ws.cell(row=4, column=header.index("date") + 1).value == "31-02-2027"
    # a number the admin typed stays a number (it is what their sheet held)
    assert ws.cell(row=5, column=header.index("courseId") + 1).value == 4.78346000019479e17
    assert ws.cell(row=5, column=header.index("startTime") + 1).value == 0.5


def test_no_formulas_anywhere(tmp_path):
    """Text starting with = + - @ (or looking like an error code) is a string cell everywhere."""
    out = tmp_path / "results.xlsx"
    summary = {"file": "=cmd|' /C calc'!A0", "note": "-1+1", "when": dt.datetime(2027, 1, 1, 9)}
    results.write_results(out, _validation(problems=_problems()), {}, summary)
    report = tmp_path / "report.xlsx"
    results.write_report(report, _validation(problems=_problems()))
    risky = 0
    for wb in (openpyxl.load_workbook(out), openpyxl.load_workbook(report)):
        for title, cell in _all_cells(wb):
            assert cell.data_type != "f", (title, cell.coordinate, cell.value)
            if isinstance(cell.value, str) and cell.value[:1] in "=+-@#":
                assert cell.data_type == "s", (title, cell.coordinate, cell.value)
                risky += 1
                if cell.value[:1] in "=+-@":
                    assert cell.quotePrefix, (title, cell.coordinate)
    # The formula-looking values really were written (not dropped): in Results, Report, Problems.
    assert risky >= 10


def test_results_fatal_sheet_marks_rows_invalid(tmp_path):
    out = tmp_path / "results.xlsx"
    problems = [error(None, "trainerErecno", None, "the required column trainerErecno is missing",
                      code="column.missing")]
    results.write_results(out, _validation(problems=problems, fatal=True), {}, {})
    ws = openpyxl.load_workbook(out)["Results"]
    header = [c.value for c in ws[1]]
    statuses = [ws.cell(row=r, column=header.index("status") + 1).value for r in range(2, 6)]
    assert statuses == ["invalid"] * 4
    msg = ws.cell(row=2, column=header.index("message") + 1).value
    assert "trainerErecno" in msg


def test_summary_in_order_with_counts(tmp_path):
    out = tmp_path / "results.xlsx"
    summary = {
        "file": "in.xlsx",
        "sheet": "Sessions",
        "api": "https://people.zoho.com",
        "started": dt.datetime(2027, 1, 1, 9, 0),
        "throughput": "29.5 calls/min",
        "counts": {"created": 1},
    }
    outcomes = {2: Outcome(2, Status.CREATED, "1", "", 1), 3: Outcome(3, Status.FAILED, None, "no")}
    results.write_results(out, _validation(problems=_problems()), outcomes, summary)
    rows = _sheet_rows(openpyxl.load_workbook(out)["Summary"])
    assert rows[0] == ["item", "value"]
    keys = [r[0] for r in rows[1:7]]
    assert keys == ["file", "sheet", "api", "started", "throughput", "counts.created"]
    assert rows[4][1] == dt.datetime(2027, 1, 1, 9, 0)
    tail = {r[0]: r[1] for r in rows[8:] if r[0]}
    assert tail["created"] == 1 and tail["failed"] == 1 and tail["invalid"] == 2
    assert tail["pending"] == 0 and "would-create" in tail


def test_problems_sheet_and_frozen_filtered_headers(tmp_path):
    out = tmp_path / "results.xlsx"
    results.write_results(out, _validation(problems=_problems()), {}, {})
    wb = openpyxl.load_workbook(out)
    rows = _sheet_rows(wb["Problems"])
    assert rows[0] == ["row", "column", "value", "severity", "message"]
    assert len(rows) == 1 + len(_problems())
    assert rows[1][:4] == [None, "descripton", "descripton", "warning"]
    for name in ("Results", "Problems"):
        assert wb[name].freeze_panes == "A2"
        assert wb[name].auto_filter.ref.startswith("A1:")
        assert wb[name].column_dimensions["B"].width >= 6


def test_empty_sheet_writes_headers_only(tmp_path):
    out = tmp_path / "results.xlsx"
    results.write_results(out, _validation(rows=[]), {}, {})
    ws = openpyxl.load_workbook(out)["Results"]
    assert ws.max_row == 1 and ws["A1"].value == "row"


def test_illegal_control_characters_do_not_crash(tmp_path):
    out = tmp_path / "results.xlsx"
    rows = [["bad\x01name", COURSE, None, None, None, None, None]]
    results.write_results(out, _validation(rows=rows), {}, {})
    ws = openpyxl.load_workbook(out)["Results"]
    assert ws.cell(row=2, column=4).value == "badname"  # after row, occurrence, courseId


def test_a_results_workbook_given_back_gets_its_own_columns_once(tmp_path):
    """A results workbook run again (issue 12): its row/status/message/attempts/changes columns
    are ours, not copied again (no "status (input)" piling up round after round); its sessionId
    is read and written back in our sessionId column, even for a row that is now invalid."""
    headers = ["row", "name", "sessionId", "status", "message", "attempts", "changes",
               "admin notes"]
    rows = [[2, "A", "478346000099999901", "created", "typed message", 1, None, "kept"]]
    out = tmp_path / "results.xlsx"
    results.write_results(out, _validation(rows=rows, headers=headers), {}, {})
    ws = openpyxl.load_workbook(out)["Results"]
    header = [c.value for c in ws[1]]
    assert header == ["row", "occurrence", "name", "admin notes", "status", "sessionId",
                      "message", "attempts", "changes"]
    line = [c.value for c in ws[2]]
    assert line[header.index("sessionId")] == "478346000099999901"
    assert line[header.index("admin notes")] == "kept"
    assert line[header.index("message")] != "typed message"


# -------------------------------------------------------------------------------- atomic writes


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    out = tmp_path / "results.xlsx"
    results.write_results(out, _validation(), {}, {"run": "first"})
    before = out.read_bytes()
    scratch = tmp_path / "scratch"  # where XlsxWriter keeps its rows and parts until it zips
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def boom(self):  # a crash half way through saving (XlsxWriter saves in close)
        Path(self.filename).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(xlsxwriter.Workbook, "close", boom)
    with pytest.raises(KeyboardInterrupt):
        results.write_results(out, _validation(), {}, {"run": "second"})
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["results.xlsx", "scratch"]
    assert os.listdir(scratch) == []


def test_new_file_gets_normal_permissions(tmp_path):
    out = tmp_path / "results.xlsx"
    results.write_results(out, _validation(), {}, {})
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------------------- annotated report


def test_report_marks_problem_cells(tmp_path):
    out = tmp_path / "report.xlsx"
    results.write_report(out, _validation(problems=_problems()))
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Sessions", "Problems"]
    ws = wb["Sessions"]
    assert [c.value for c in ws[1]] == HEADERS
    # rows keep their spreadsheet numbers: row 4 was blank in the input and stays blank
    assert ws["A2"].value.startswith("=HYPERLINK") and ws["A5"].value == "Induction"
    assert all(c.value is None for c in ws[4])
    date_cell = ws.cell(row=5, column=HEADERS.index("date") + 1)
    assert date_cell.fill.start_color.rgb.endswith(results.ERROR_FILL)
    assert "does not exist" in date_cell.comment.text
    warn_cell = ws.cell(row=3, column=HEADERS.index("date") + 1)
    assert warn_cell.fill.start_color.rgb.endswith(results.WARNING_FILL)
    assert "in the past" in warn_cell.comment.text
    header_cell = ws.cell(row=1, column=HEADERS.index("descripton") + 1)
    assert "did you mean description" in header_cell.comment.text
    # untouched cells carry no comment
    assert ws.cell(row=2, column=1).comment is None
    # values as read: a typed date stays a date, an ID stays exact text
    assert ws.cell(row=2, column=3).is_date
    assert ws.cell(row=2, column=2).value == COURSE
    assert len(_sheet_rows(wb["Problems"])) == 1 + len(_problems())


def test_report_lists_sheet_level_problems(tmp_path):
    out = tmp_path / "report.xlsx"
    problems = [error(None, "trainerErecno", None, "the required column is missing",
                      code="column.missing")]
    results.write_report(out, _validation(problems=problems, fatal=True))
    wb = openpyxl.load_workbook(out)
    assert not any(c.comment for row in wb["Sessions"].iter_rows() for c in row)
    rows = _sheet_rows(wb["Problems"])
    assert rows[0] == ["row", "column", "value", "severity", "message", "code"]
    assert rows[1] == [None, "trainerErecno", None, "error", "the required column is missing",
                       "column.missing"]


def test_report_error_wins_over_warning_in_one_cell(tmp_path):
    out = tmp_path / "report.xlsx"
    problems = [warning(2, "name", "x", "looks odd", code="check.internal"),
                error(2, "name", "x", "is wrong", code="check.internal")]
    results.write_report(out, _validation(problems=problems))
    cell = openpyxl.load_workbook(out)["Sessions"]["A2"]
    assert cell.fill.start_color.rgb.endswith(results.ERROR_FILL)
    assert "looks odd" in cell.comment.text and "is wrong" in cell.comment.text


# ------------------------------------------------------------------------------------- template


def test_template_content(tmp_path):
    out = tmp_path / "t.xlsx"
    results.write_template(out)
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Sessions", "Instructions", "Holidays"]
    ws = wb["Sessions"]
    assert [c.value for c in ws[1]] == list(columns.NAMES)
    assert ws.freeze_panes == "A2"
    for i, col in enumerate(columns.COLUMNS, start=1):
        head = ws.cell(row=1, column=i)
        assert head.font.b
        assert col.example in head.comment.text and col.description in head.comment.text
        assert head.comment.text.startswith("Required." if col.required else "Optional.")
        fill = head.fill.start_color.rgb[-6:]
        assert (fill == results.REQUIRED_FILL) == col.required
        expected = {"id": "@", "date": "dd-mm-yyyy", "time": "hh:mm AM/PM"}.get(col.kind)
        if expected:
            for r in (2, 500, 1001):
                assert ws.cell(row=r, column=i).number_format == expected, (col.name, r)
    (dv,) = ws.data_validations.dataValidation
    type_letter = openpyxl.utils.get_column_letter(columns.NAMES.index("type") + 1)
    assert dv.type == "list" and dv.formula1 == '"Classroom,E-learning"'
    assert str(dv.sqref) == f"{type_letter}2:{type_letter}1001"
    info = _sheet_rows(wb["Instructions"])
    assert info[0] == ["column", "required", "description", "example"]
    assert [r[0] for r in info[1 : 1 + len(columns.COLUMNS)]] == list(columns.NAMES)


def _workbook_fingerprint(path):
    """What matters in a workbook, without zip timestamps: values, formats, comments, rules."""
    wb = openpyxl.load_workbook(path)
    out = {}
    for ws in wb.worksheets:
        cells = [
            (c.coordinate, c.value, c.number_format, c.comment.text if c.comment else None,
             c.font.b, c.fill.start_color.rgb)
            for row in ws.iter_rows() for c in row
        ]
        rules = [(str(d.sqref), d.type, d.formula1) for d in ws.data_validations.dataValidation]
        widths = {k: v.width for k, v in ws.column_dimensions.items()}
        out[ws.title] = (cells, rules, ws.freeze_panes, widths)
    return out


def test_shipped_template_matches_the_command(tmp_path):
    fresh = tmp_path / "sessions.xlsx"
    results.write_template(fresh)
    shipped = ROOT / "templates" / "sessions.xlsx"
    assert _workbook_fingerprint(shipped) == _workbook_fingerprint(fresh), (
        "templates/sessions.xlsx is stale: run python sample_data/make_samples.py"
    )


def test_shipped_csv_template_matches_byte_for_byte(tmp_path):
    fresh = tmp_path / "sessions.csv"
    results.write_template_csv(fresh)
    assert fresh.read_bytes() == (ROOT / "templates" / "sessions.csv").read_bytes()
    assert fresh.read_bytes() == (",".join(columns.NAMES) + "\r\n").encode()


# ------------------------------------------------------------------------------------- docs


def test_docs_list_every_column_and_status():
    fmt = (ROOT / "docs" / "spreadsheet-format.md").read_text()
    for col in columns.COLUMNS:
        line = next(x for x in fmt.splitlines() if x.startswith(f"| `{col.name}` |"))
        assert col.description in line and col.example in line, col.name
        assert ("**yes**" in line) == col.required
    res = (ROOT / "docs" / "results-workbook.md").read_text()
    for status in Status:
        assert f"| `{status}` |" in res, status
    for name in results.RESULT_COLUMNS:
        assert f"| `{name}` |" in res, name

"""The streamed workbooks (XlsxWriter's constant-memory mode) at the edges the small fixtures of
test_results.py do not reach: many distinct values per column, the size a read-only reader sees,
blank and out-of-order rows in the report, text XlsxWriter would not write as it is, and a failed
save."""

from __future__ import annotations

import datetime as dt
import errno
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from xlsxwriter.exceptions import FileCreateError

from bulkschedule.app import results
from bulkschedule.core.problems import Outcome, Status, error
from bulkschedule.sheet.columns import RESULT_COLUMNS, map_headers
from bulkschedule.sheet.reader import RawTable
from bulkschedule.sheet.schema import Validation

HEADERS = ["courseId", "name", "date", "startTime", "roomId"]


def validation(rows, numbers, problems=(), headers=HEADERS) -> Validation:
    table = RawTable("in.csv", None, list(headers), rows, numbers)
    error_rows = {p.row for p in problems if p.is_error and p.row is not None}
    return Validation(table, map_headers(list(headers)), [], list(problems), False, error_rows)


def many_rows(n: int) -> list[list[object]]:
    return [[f"47834600001947{i:04d}", f"Session {i}", dt.date(2027, 1, 4) + dt.timedelta(i % 9),
             dt.time(9 + i % 5, 30), None if i % 4 else f"47834600001012{i % 7:04d}"]
            for i in range(n)]


def read(path: Path, sheet: str):
    return openpyxl.load_workbook(path)[sheet]


def test_every_row_keeps_its_value_and_style(tmp_path):
    """Many distinct values in every column, statuses alternating: every row must read back
    with its own value, type, format and fill (formats are shared between cells)."""
    rows = many_rows(40)
    v = validation(rows, list(range(2, 42)))
    outcomes = {r: Outcome(r, Status.CREATED if r % 3 else Status.FAILED,
                           f"4783460000999{r:05d}" if r % 3 else None, "", 1) for r in range(2, 42)}
    out = tmp_path / "r.xlsx"
    results.write_results(out, v, outcomes, {})
    ws = read(out, "Results")
    header = [c.value for c in ws[1]]
    col = {name: header.index(name) + 1 for name in header}
    for i, row in enumerate(rows):
        r = i + 2
        course = ws.cell(row=r, column=col["courseId"])
        assert (course.value, course.data_type, course.number_format) == (row[0], "s", "@")
        date = ws.cell(row=r, column=col["date"])
        assert date.value.date() == row[2] and date.number_format == "dd-mm-yyyy"
        start = ws.cell(row=r, column=col["startTime"])
        assert start.value == row[3] and start.number_format == "hh:mm AM/PM"
        status = ws.cell(row=r, column=col["status"])
        assert status.value == str(outcomes[r].status)
        assert status.fill.start_color.rgb[-6:] == results.STATUS_COLOURS[outcomes[r].status]
        session = ws.cell(row=r, column=col["sessionId"])
        assert session.value == outcomes[r].session_id
        assert session.value is None or session.number_format == "@"


def test_read_only_readers_see_the_whole_sheet(tmp_path):
    v = validation(many_rows(30), list(range(2, 32)))
    out = tmp_path / "r.xlsx"
    results.write_results(out, v, {}, {"file": "in.csv"})
    wb = openpyxl.load_workbook(out, read_only=True)
    try:
        ws = wb["Results"]
        assert (ws.max_row, ws.max_column) == (31, 2 + len(HEADERS) + len(RESULT_COLUMNS))
        assert len(list(ws.iter_rows(values_only=True))) == 31
    finally:
        wb.close()


def test_report_keeps_blank_rows_and_sheet_order(tmp_path):
    rows = [["478346000019479103", "C", None, None, None],
            ["478346000019479103", "A", None, None, None],
            ["478346000019479103", "B", None, None, "x"]]
    problems = [error(7, "roomId", "x", "not an ID", code="id.not_digits")]
    v = validation(rows, [9, 3, 7], problems)  # out of order, with gaps
    out = tmp_path / "report.xlsx"
    results.write_report(out, v)
    ws = read(out, "Sheet")
    names = {r: ws.cell(row=r, column=2).value for r in range(2, 10)}
    assert names == {2: None, 3: "A", 4: None, 5: None, 6: None, 7: "B", 8: None, 9: "C"}
    marked = ws.cell(row=7, column=5)
    assert marked.fill.start_color.rgb.endswith(results.ERROR_FILL)
    assert "not an ID" in marked.comment.text
    assert ws.cell(row=3, column=1).number_format == "@"


def test_a_failed_save_leaves_nothing_open(tmp_path, monkeypatch):
    """A save that fails half way closes the sheets' scratch files (nothing left for the garbage
    collector to finish after their folder is gone) and keeps the previous workbook."""
    out = tmp_path / "r.xlsx"
    v = validation(many_rows(5), list(range(2, 7)))
    results.write_results(out, v, {}, {})
    before = out.read_bytes()
    sheets = []

    def boom(self):
        sheets.extend(self.worksheets())
        raise OSError("disk full")

    monkeypatch.setattr(xlsxwriter.Workbook, "close", boom)
    with pytest.raises(OSError, match="disk full"):
        results.write_results(out, v, {}, {})
    assert len(sheets) == 3 and all(ws.row_data_fh.closed for ws in sheets)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.xlsx"]


def test_a_failed_save_raises_the_os_error_behind_it(tmp_path, monkeypatch):
    """XlsxWriter wraps a failed write in its own error; callers catch OSError (a full disk
    after a run is reported, not a crash), so the OSError is what comes out."""
    def boom(self):
        raise FileCreateError(OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(xlsxwriter.Workbook, "close", boom)
    with pytest.raises(OSError) as caught:
        results.write_report(tmp_path / "report.xlsx", validation(many_rows(3), [2, 3, 4]))
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_text_xlsxwriter_would_not_write_as_it_is(tmp_path):
    """Text shaped like XlsxWriter's own rich text (``<r>...</r>``, copied into the XML as it
    is) and text starting like a formula, in an ID column and elsewhere, read back as typed."""
    odd = ["<r>x</r>", "<r><t>&amp;</t></r>", "<r> spaced & <b> </r>", "<b>bold</b>", "-12",
           "=1+1", "@home", "+44 20"]
    rows = [[text, text, None, None, None] for text in odd]
    v = validation(rows, list(range(2, 2 + len(odd))))
    out = tmp_path / "r.xlsx"
    results.write_results(out, v, {}, {})
    ws = read(out, "Results")
    header = [c.value for c in ws[1]]
    for r, text in enumerate(odd, start=2):
        for name in ("courseId", "name"):
            cell = ws.cell(row=r, column=header.index(name) + 1)
            assert (cell.value, cell.data_type) == (text, "s"), (name, text)
            assert cell.quotePrefix == text.startswith(("=", "+", "-", "@")), (name, text)
            assert (cell.number_format == "@") == (name == "courseId"), (name, text)
    report = tmp_path / "report.xlsx"
    results.write_report(report, v)
    sheet = read(report, "Sheet")
    assert [sheet.cell(row=r, column=2).value for r in range(2, 2 + len(odd))] == odd

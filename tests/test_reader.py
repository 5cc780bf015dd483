"""read_table: every fixture is built here, in tmp_path, the way an admin's tools would write it."""

from __future__ import annotations

import datetime as dt
import os
import random
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import python_calamine
from openpyxl.styles import PatternFill

from bulkschedule.sheet import reader
from bulkschedule.sheet.limits import ReadLimits
from bulkschedule.sheet.reader import RawTable, ReadError, read_table

BIG_ID = "478346000019479103"  # above 2**53: a float would change it


# -- fixture builders ----------------------------------------------------------------------------


def write_xlsx(
    path: Path,
    sheets: dict[str, Sequence[Sequence[Any]]],
    *,
    at: str = "A1",
    hidden: Iterable[str] = (),
) -> Path:
    """Write each sheet's rows with the top-left cell at ``at`` (e.g. "C3")."""
    col0, row0 = openpyxl.utils.cell.coordinate_from_string(at)
    c0 = openpyxl.utils.cell.column_index_from_string(col0)
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                if v is not None:
                    ws.cell(row=row0 + i, column=c0 + j, value=v)
        if title in hidden:
            ws.sheet_state = "hidden"
    wb.save(path)
    return path


def write_ods(path: Path, sheets: dict[str, str]) -> Path:
    """A minimal OpenDocument spreadsheet; each value is the table's <table:table-row> XML."""
    ns = (
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
    )
    tables = "".join(
        f'<table:table table:name="{n}">{rows}</table:table>' for n, rows in sheets.items()
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} office:version="1.2">'
        f"<office:body><office:spreadsheet>{tables}</office:spreadsheet></office:body>"
        "</office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
        'manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("META-INF/manifest.xml", manifest)
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return path


def ods_text(v: str) -> str:
    return f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>'


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def read_error(path: Path | str, **kw: Any) -> str:
    """The ReadError message, checked to be one line naming the file."""
    with pytest.raises(ReadError) as info:
        read_table(path, **kw)
    msg = str(info.value)
    assert str(path) in msg
    assert "\n" not in msg
    return msg


# -- workbooks: cells ----------------------------------------------------------------------------


def test_xlsx_cells_keep_their_type_and_ids_stay_exact(tmp_path: Path) -> None:
    below = 2**53 - 1
    path = write_xlsx(
        tmp_path / "s.xlsx",
        {
            "Sheet1": [
                ["Course ID", "Date", "Start", "Starts at", "Hours", "Text ID", "Online"],
                [
                    below,
                    dt.date(2024, 3, 5),
                    dt.time(10, 30),
                    dt.datetime(2024, 3, 5, 9, 15),
                    1.5,
                    BIG_ID,
                    True,
                ],
            ]
        },
    )
    t = read_table(path)
    assert t.sheet == "Sheet1"
    assert t.headers == ["Course ID", "Date", "Start", "Starts at", "Hours", "Text ID", "Online"]
    assert t.row_numbers == [2]
    cid, date, start, starts_at, hours, text_id, online = t.rows[0]
    assert cid == below and isinstance(cid, float) and int(cid) == below
    assert date == dt.date(2024, 3, 5) and not isinstance(date, dt.datetime)
    assert start == dt.time(10, 30)
    assert starts_at == dt.datetime(2024, 3, 5, 9, 15)
    assert hours == 1.5
    assert text_id == BIG_ID
    assert online is True


def test_xlsx_text_is_not_stripped_and_empty_cells_are_none(tmp_path: Path) -> None:
    rows = [["Name", "Gap", "Note"], ["  Intro  ", None, " ok\n"]]
    path = write_xlsx(tmp_path / "s.xlsx", {"S": rows})
    assert read_table(path).rows == [["  Intro  ", None, " ok\n"]]


def test_numeric_and_blank_headers_become_text(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", {"S": [["Name", None, 2024, 1.5], ["a", "b", "c", "d"]]})
    assert read_table(path).headers == ["Name", "", "2024", "1.5"]


def test_uppercase_extension(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "S.XLSX", {"S": [["Name"], ["x"]]})
    assert read_table(path).rows == [["x"]]


def test_xlsm_extension_reads_as_workbook(tmp_path: Path) -> None:
    src = write_xlsx(tmp_path / "s.xlsx", {"S": [["Name"], ["x"]]})
    path = src.rename(tmp_path / "s.xlsm")
    assert read_table(path).rows == [["x"]]


# -- workbooks: which sheet ----------------------------------------------------------------------


def three_sheets(tmp_path: Path, names: Sequence[str]) -> Path:
    return write_xlsx(tmp_path / "s.xlsx", {n: [["Sheet"], [n]] for n in names})


def test_first_sheet_by_default(tmp_path: Path) -> None:
    t = read_table(three_sheets(tmp_path, ["Plan", "Other", "Third"]))
    assert (t.sheet, t.rows) == ("Plan", [["Plan"]])


def test_sessions_sheet_preferred_case_insensitively(tmp_path: Path) -> None:
    t = read_table(three_sheets(tmp_path, ["Instructions", "SESSIONS", "Lists"]))
    assert (t.sheet, t.rows) == ("SESSIONS", [["SESSIONS"]])


def test_hidden_first_sheet_is_skipped_by_default(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "s.xlsx",
        {"Lookup": [["Code"], ["x"]], "Plan": [["Name"], ["y"]]},
        hidden=["Lookup"],
    )
    assert read_table(path).sheet == "Plan"
    assert read_table(path, sheet="Lookup").rows == [["x"]]  # still readable when asked for


def test_sheet_argument_exact_then_case_insensitive(tmp_path: Path) -> None:
    path = three_sheets(tmp_path, ["Sessions", "Q2", "q2 "])
    assert read_table(path, sheet="q2 ").sheet == "q2 "  # exact match beats the case-folded one
    assert read_table(path, sheet="Q2").sheet == "Q2"
    assert read_table(path, sheet="SESSIONS").sheet == "Sessions"


def test_missing_sheet_lists_available_names(tmp_path: Path) -> None:
    path = three_sheets(tmp_path, ["Plan", "Other"])
    msg = read_error(path, sheet="Sessions 2024")
    assert "'Sessions 2024'" in msg
    assert "'Plan', 'Other'" in msg


def test_empty_chosen_sheet_is_an_error_that_lists_sheets(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", {"Cover": [], "Data": [["Name"], ["x"]]})
    msg = read_error(path)
    assert "'Cover' is empty" in msg
    assert "'Data'" in msg


# -- workbooks: row numbers ----------------------------------------------------------------------


def test_data_not_at_a1_keeps_true_row_and_column_numbers(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "s.xlsx", {"S": [["Name", "Date"], ["a", "b"], ["c", "d"]]}, at="C3"
    )
    t = read_table(path)
    assert t.headers == ["Name", "Date"]
    assert t.rows == [["a", "b"], ["c", "d"]]
    assert t.row_numbers == [4, 5]
    assert (t.header_row, t.first_column) == (3, 3)


def test_blank_rows_dropped_row_numbers_stay_true(tmp_path: Path) -> None:
    rows = [["Name", "N"], ["a", 1], [None, None], ["  ", "\t"], [None, 0], ["b", 2]]
    t = read_table(write_xlsx(tmp_path / "s.xlsx", {"S": rows}))
    # Row 3 is empty, row 4 whitespace (openpyxl writes it unpreserved, so calamine sees "");
    # row 5 has a zero, which is data.
    assert t.rows == [["a", 1.0], [None, 0.0], ["b", 2.0]]
    assert t.row_numbers == [2, 5, 6]


def test_title_rows_above_header_are_skipped_when_blank(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", {"S": [[" "], [None], ["Name"], ["x"]]})
    t = read_table(path)
    assert t.headers == ["Name"]
    assert (t.header_row, t.row_numbers) == (3, [4])


def test_formatted_but_empty_rows_at_the_bottom_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Name", "Date"])
    ws.append(["a", dt.date(2024, 1, 2)])
    fill = PatternFill("solid", fgColor="FFFF00")
    for r in range(3, 200):
        ws.cell(row=r, column=1).fill = fill
        ws.cell(row=r, column=2).number_format = "dd/mm/yyyy"
    ws.cell(row=150, column=1, value="   ")  # a stray space typed far below
    wb.save(path)
    t = read_table(path)
    assert t.rows == [["a", dt.date(2024, 1, 2)]]
    assert t.row_numbers == [2]


def test_header_only_workbook_gives_zero_rows(tmp_path: Path) -> None:
    t = read_table(write_xlsx(tmp_path / "s.xlsx", {"S": [["Name", "Date"]]}))
    assert (t.headers, t.rows, t.row_numbers) == (["Name", "Date"], [], [])


def test_cell_beyond_last_header_extends_headers(tmp_path: Path) -> None:
    rows = [["Name", "Date"], ["a", "b"], ["c", "d", None, "stray"]]
    t = read_table(write_xlsx(tmp_path / "s.xlsx", {"S": rows}))
    assert t.headers == ["Name", "Date", "", ""]
    assert t.rows == [["a", "b", None, None], ["c", "d", None, "stray"]]


def test_blank_header_cells_at_the_end_are_trimmed(tmp_path: Path) -> None:
    rows = [["Name", "Date", "  "], ["a", "b", None]]
    t = read_table(write_xlsx(tmp_path / "s.xlsx", {"S": rows}))
    assert t.headers == ["Name", "Date"]
    assert t.rows == [["a", "b"]]


# -- other workbook formats ----------------------------------------------------------------------


def test_ods_typed_cells_sheet_choice_and_row_numbers(tmp_path: Path) -> None:
    empty_row = "<table:table-row><table:table-cell/></table:table-row>"
    titles = "".join(ods_text(h) for h in ("Title", "Date", "Hours"))
    header = f"<table:table-row><table:table-cell/>{titles}</table:table-row>"
    data = (
        f"<table:table-row><table:table-cell/>{ods_text('Intro')}"
        '<table:table-cell office:value-type="date" office:date-value="2024-03-05"/>'
        '<table:table-cell office:value-type="float" office:value="1.5"/></table:table-row>'
    )
    path = write_ods(
        tmp_path / "s.ods",
        {
            "Other": f"<table:table-row>{ods_text('x')}</table:table-row>",
            "Sessions": empty_row + header + data,
        },
    )
    t = read_table(path)
    assert t.sheet == "Sessions"
    assert t.headers == ["Title", "Date", "Hours"]
    assert t.rows == [["Intro", dt.date(2024, 3, 5), 1.5]]
    assert (t.header_row, t.row_numbers, t.first_column) == (2, [3], 2)


def test_xlsx_saved_with_xls_name_is_read_by_content(tmp_path: Path) -> None:
    src = write_xlsx(tmp_path / "s.xlsx", {"S": [["Name"], ["x"]]})
    t = read_table(src.rename(tmp_path / "old.xls"))
    assert t.rows == [["x"]]
    assert any("despite the .xls name" in n for n in t.notes)


def test_workbook_saved_with_csv_name_is_read_as_workbook(tmp_path: Path) -> None:
    src = write_xlsx(tmp_path / "s.xlsx", {"Sessions": [["Name"], ["x"]]})
    t = read_table(src.rename(tmp_path / "s.csv"))
    assert (t.sheet, t.rows) == ("Sessions", [["x"]])
    assert t.notes


# -- CSV -----------------------------------------------------------------------------------------


def test_csv_utf8_cells_are_text_and_empty_is_none(tmp_path: Path) -> None:
    path = write_bytes(
        tmp_path / "s.csv", "Name,Date,Hours\r\nCafé ,05/03/2024,1.50\r\nx,,\r\n".encode()
    )
    t = read_table(path)
    assert t.sheet is None
    assert t.headers == ["Name", "Date", "Hours"]
    assert t.rows == [["Café ", "05/03/2024", "1.50"], ["x", None, None]]
    assert t.row_numbers == [2, 3]
    assert t.notes == []


def test_csv_utf8_bom_is_not_part_of_first_header(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "s.csv", b"\xef\xbb\xbfName,Date\nx,y\n")
    t = read_table(path)
    assert t.headers == ["Name", "Date"]
    assert t.notes == []


def test_csv_windows_1252_fallback_with_note(tmp_path: Path) -> None:
    path = write_bytes(
        tmp_path / "s.csv", "Name;Lieu\nFormation sécurité;Salle é\n".encode("cp1252")
    )
    t = read_table(path)
    assert t.rows == [["Formation sécurité", "Salle é"]]
    assert "read as Windows-1252" in t.notes


def test_csv_semicolon_delimiter(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "s.csv", b"Name;Hours;Note\nIntro;1,5;a, b\n")
    t = read_table(path)
    assert t.headers == ["Name", "Hours", "Note"]
    assert t.rows == [["Intro", "1,5", "a, b"]]
    assert "delimiter ';'" in t.notes


def test_csv_tab_delimiter_in_txt(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "s.txt", b"Name\tDate\nIntro, part 1\t2024-03-05\n")
    t = read_table(path)
    assert t.rows == [["Intro, part 1", "2024-03-05"]]
    assert "delimiter tab" in t.notes


def test_csv_delimiter_tie_broken_by_data_rows(tmp_path: Path) -> None:
    # The header splits into two cells on either delimiter; the data rows decide.
    path = write_bytes(tmp_path / "s.csv", b"Name;Date (d, m)\nIntro;5 3\nMore;6 3\n")
    assert read_table(path).rows == [["Intro", "5 3"], ["More", "6 3"]]


def test_csv_single_column(tmp_path: Path) -> None:
    t = read_table(write_bytes(tmp_path / "s.csv", b"Name\nIntro\nMore\n"))
    assert (t.headers, t.rows) == (["Name"], [["Intro"], ["More"]])


def test_csv_quoted_newline_and_delimiter_stay_in_one_cell(tmp_path: Path) -> None:
    data = b'Name,Description\r\nIntro,"line one\r\nline two, with comma"\r\nNext,"say ""hi"""\r\n'
    t = read_table(write_bytes(tmp_path / "s.csv", data))
    assert t.rows == [["Intro", "line one\r\nline two, with comma"], ["Next", 'say "hi"']]
    assert t.row_numbers == [2, 3]  # Excel shows the two-line cell as one row


def test_csv_id_column_with_blank_keeps_ids_exact(tmp_path: Path) -> None:
    data = f"Course ID,Name\n{BIG_ID},a\n,b\n478346000019479217,c\n".encode()
    t = read_table(write_bytes(tmp_path / "s.csv", data))
    assert [r[0] for r in t.rows] == [BIG_ID, None, "478346000019479217"]


def test_csv_blank_lines_dropped_row_numbers_stay_true(tmp_path: Path) -> None:
    data = b"\n,,\nName,N\na,1\n\n , \nb,2\n,,\n"
    t = read_table(write_bytes(tmp_path / "s.csv", data))
    assert t.header_row == 3
    assert t.rows == [["a", "1"], ["b", "2"]]
    assert t.row_numbers == [4, 7]


def test_csv_header_only_gives_zero_rows(tmp_path: Path) -> None:
    t = read_table(write_bytes(tmp_path / "s.csv", b"Name,Date\r\n"))
    assert (t.headers, t.rows, t.row_numbers) == (["Name", "Date"], [], [])


def test_csv_row_longer_than_header_keeps_its_data(tmp_path: Path) -> None:
    data = b"Name,Date\na,b\nc,d,,extra\ne\n"
    t = read_table(write_bytes(tmp_path / "s.csv", data))
    assert t.headers == ["Name", "Date", "", ""]
    assert t.rows == [["a", "b", None, None], ["c", "d", None, "extra"], ["e", None, None, None]]


def test_csv_excel_trailing_empty_fields_are_trimmed(tmp_path: Path) -> None:
    t = read_table(write_bytes(tmp_path / "s.csv", b"Name,Date,,\na,b,,\n"))
    assert (t.headers, t.rows) == (["Name", "Date"], [["a", "b"]])


def test_csv_utf16_unicode_text(tmp_path: Path) -> None:
    # Excel's "Unicode Text (*.txt)": UTF-16 with BOM, tab-separated.
    path = write_bytes(tmp_path / "s.txt", "Name\tLieu\r\nSécurité\tB\r\n".encode("utf-16"))
    t = read_table(path)
    assert t.rows == [["Sécurité", "B"]]
    assert "read as UTF-16" in t.notes


def test_uppercase_csv_extension(tmp_path: Path) -> None:
    assert read_table(write_bytes(tmp_path / "S.CSV", b"A\nx\n")).rows == [["x"]]


# -- errors --------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in read_error(tmp_path / "nope.xlsx")
    assert "not found" in read_error(tmp_path / "nope.csv")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.xlsx").mkdir()
    assert "directory" in read_error(tmp_path / "dir.xlsx")
    assert "directory" in read_error(tmp_path)


def test_unsupported_extension(tmp_path: Path) -> None:
    msg = read_error(write_bytes(tmp_path / "s.pdf", b"%PDF-1.4"))
    assert "unsupported file type '.pdf'" in msg
    assert ".xlsx or .csv" in msg


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_bytes(tmp_path / "s.csv", b"A\nx\n")

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(reader, "open", denied, raising=False)
    assert "permission denied" in read_error(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anything")
def test_permission_denied_on_disk(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", {"S": [["A"]]})
    path.chmod(0)
    try:
        assert "permission denied" in read_error(path)
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize("name", ["s.csv", "s.xlsx", "s.ods", "s.xls"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    assert "empty" in read_error(write_bytes(tmp_path / name, b""))


@pytest.mark.parametrize("data", [b"\r\n\r\n", b",,,\n  ,\t\n", b'"",""\n'])
def test_csv_without_header(tmp_path: Path, data: bytes) -> None:
    assert "no header row" in read_error(write_bytes(tmp_path / "s.csv", data))


def test_workbook_without_header(tmp_path: Path) -> None:
    assert "is empty" in read_error(write_xlsx(tmp_path / "s.xlsx", {"S": [[None], ["  "]]}))


@pytest.mark.parametrize(
    "data",
    [b"Name,Date\nx,y\n", b"<html><table><tr><td>x</td></tr></table></html>", b"\x00\x01garbage"],
)
def test_not_a_workbook(tmp_path: Path, data: bytes) -> None:
    msg = read_error(write_bytes(tmp_path / "s.xlsx", data))
    assert "not a valid Excel workbook (is it corrupt, or another format renamed?)" in msg


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "s.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    assert "not a valid Excel workbook" in read_error(path)


def test_truncated_workbook(tmp_path: Path) -> None:
    src = write_xlsx(tmp_path / "s.xlsx", {"S": [["Name"], ["x"]]})
    data = src.read_bytes()
    assert "not a valid Excel workbook" in read_error(write_bytes(src, data[: len(data) // 2]))


def test_encrypted_xlsx_is_reported_as_password_protected(tmp_path: Path) -> None:
    # Excel wraps an encrypted .xlsx in an OLE container with an "EncryptedPackage" stream.
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    entry = "EncryptedPackage".encode("utf-16-le") + bytes(96)
    msg = read_error(write_bytes(tmp_path / "s.xlsx", ole + entry + bytes(1024)))
    assert "password-protected" in msg


def test_ole_file_named_xlsx_that_is_not_a_workbook(tmp_path: Path) -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2048)
    assert "not a valid Excel workbook" in read_error(write_bytes(tmp_path / "s.xlsx", ole))


class _FakeWorkbook:
    """Stands in for CalamineWorkbook to make calamine raise what a real file would."""

    error: BaseException = Exception()

    @classmethod
    def from_path(cls, path: str) -> Any:
        raise cls.error


def test_calamine_password_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_bytes(tmp_path / "s.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    monkeypatch.setattr(
        _FakeWorkbook, "error", python_calamine.PasswordError("workbook is encrypted")
    )
    monkeypatch.setattr(python_calamine, "CalamineWorkbook", _FakeWorkbook)
    assert "password-protected" in read_error(path)


def test_calamine_panic_becomes_read_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Panic(BaseException):  # pyo3's PanicException derives from BaseException
        pass

    path = write_xlsx(tmp_path / "s.xlsx", {"S": [["A"]]})
    monkeypatch.setattr(_FakeWorkbook, "error", Panic("index out of bounds\nat src/xlsx.rs"))
    monkeypatch.setattr(python_calamine, "CalamineWorkbook", _FakeWorkbook)
    assert "not a valid Excel workbook" in read_error(path)


def test_keyboard_interrupt_is_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", {"S": [["A"]]})
    monkeypatch.setattr(_FakeWorkbook, "error", KeyboardInterrupt())
    monkeypatch.setattr(python_calamine, "CalamineWorkbook", _FakeWorkbook)
    with pytest.raises(KeyboardInterrupt):
        read_table(path)


def test_binary_garbage_csv(tmp_path: Path) -> None:
    msg = read_error(write_bytes(tmp_path / "s.csv", b"Name\x00\x00\x01\x02\nx\n"))
    assert "does not look like a text CSV file" in msg


def test_csv_unclosed_quote(tmp_path: Path) -> None:
    data = b'Name,Note\na,"never closed\nb,c\nd,e\n'
    assert "never closed" in read_error(write_bytes(tmp_path / "s.csv", data))


def test_csv_quoted_newline_in_last_cell_is_not_an_unclosed_quote(tmp_path: Path) -> None:
    t = read_table(write_bytes(tmp_path / "s.csv", b'Name,Note\na,"two\nlines"'))
    assert t.rows == [["a", "two\nlines"]]


def test_result_is_a_raw_table(tmp_path: Path) -> None:
    t = read_table(str(write_bytes(tmp_path / "s.csv", b"A\nx\n")))
    assert isinstance(t, RawTable)
    assert t.file == str(tmp_path / "s.csv")


# -- the column-wise reading (pandas' C parser for CSV, calamine's rectangle as columns) ---------

_TRICKY_CSV = [
    'a,b\n1,2\n',
    'a,b,c\n1,2\n\n3,4,5\n',  # a short row, a blank line
    'a,b\n1,2,3\n',  # a row longer than the first record: the csv module reads it
    '\na,b\n1,2\n',  # a leading blank line
    'a,"b"c,d\nx,y"z,w\n',  # quotes inside unquoted cells
    'a,b\r\n"x\r\ny",z\r\n',  # a quoted CRLF stays in its cell
    'a,b\rc,d\r',  # old Mac line ends
    'a,  "b" ,c\n',
    '"a""b",c\n',
    'a,b,\n1,2,\n',  # Excel's trailing empty fields
    'a,b\n,\n  ,\t\nx,\n',  # blank and whitespace-only rows
    'a,"never closed\nb,c\n',
    ',,\nName,Date\nx,y\n',  # blank cells before the header
    'Name\n"line one\nline two"\nnext\n',
]


def _both_ways(text: str) -> tuple[object, object, bool]:
    """(csv module result, column-wise result, whether the column-wise reader took the file)."""
    delimiter = reader._sniff_delimiter(text)

    def outcome(read: Any) -> object:
        try:
            t = read()
        except ReadError as e:
            return ("ReadError", str(e))
        return (t.headers, t.rows, t.row_numbers, t.header_row)

    slow = outcome(lambda: reader._read_csv_records(text, delimiter, "f.csv", []))
    columns = reader._csv_columns(text.encode("utf-8"), text, delimiter)
    if columns is None:
        return slow, slow, False
    fast = outcome(lambda: reader._table_from_columns(
        "f.csv", None, columns, len(columns[0]), 1, [],
        "f.csv: no header row found (the file is blank)"))
    return slow, fast, True


@pytest.mark.parametrize("text", _TRICKY_CSV)
def test_csv_columns_read_what_the_csv_module_reads(text: str) -> None:
    slow, fast, _ = _both_ways(text)
    assert fast == slow


@pytest.mark.parametrize("seed", range(3))
def test_csv_columns_agree_with_the_csv_module_on_random_text(seed: int) -> None:
    rnd = random.Random(seed)
    alphabet = ["a", "b", ",", '"', "\n", "\r\n", "\r", " ", ";", "\t", "é", '""']
    taken = 0
    for _ in range(400):
        body = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        text = body if rnd.random() < 0.3 else "h1,h2,h3\n" + body
        slow, fast, took = _both_ways(text)
        assert fast == slow, repr(text)
        taken += took
    assert taken > 100  # most of them went the fast way


def test_csv_large_file_is_read_column_wise_and_rows_are_built_on_demand(tmp_path: Path) -> None:
    lines = ["courseId,name,date,Notes"]
    for i in range(3000):
        lines.append(f"{BIG_ID},Session {i},{i % 7 + 1:02d}-01-2027,{'' if i % 2 else 'x'}")
        if i % 1000 == 999:
            lines.append(",,,")  # a blank row
    t = read_table(write_bytes(tmp_path / "s.csv", ("\n".join(lines) + "\n").encode()))
    columns = t.columns()
    assert columns[0].codes is not None and columns[0].uniques is not None  # IDs: categorical
    assert columns[1].values is not None  # free text: one string per row
    assert t._rows is None  # nothing built yet
    assert len(t.row_numbers) == 3000 and t.row_numbers[999:1001] == [1001, 1003]
    assert t.rows[0] == [BIG_ID, "Session 0", "01-01-2027", "x"]
    assert t.rows[1] == [BIG_ID, "Session 1", "02-01-2027", None]
    assert t.rows[-1][1] == "Session 2999"
    assert t == RawTable(t.file, None, t.headers, t.rows, t.row_numbers, t.notes)


def test_csv_cell_over_the_csv_size_limit_is_still_refused(tmp_path: Path) -> None:
    big = "x" * 200_000
    path = write_bytes(tmp_path / "s.csv", f"Name,Note\na,{big}\n".encode())
    msg = read_error(path)
    assert "row 2 has a cell of more than 131,072 characters" in msg
    assert "over the limit of 32,767 characters in one cell" in msg
    # with the cell limit raised past it, the csv module's own limit still refuses it
    msg = read_error(path, limits=ReadLimits(max_cell_chars=1_000_000))
    assert "not a readable CSV file" in msg and "field larger than field limit" in msg


def test_raw_table_by_hand_gives_columns_and_takes_new_rows() -> None:
    t = RawTable("f.csv", None, ["A", "B"], [["a", None], ["b"]], [2, 3])
    assert [list(c.values or ()) for c in t.columns()] == [["a", "b"], [None, None]]
    t.rows = [["c", "d"]]
    assert [c[0] for c in t.columns()] == ["c", "d"]
    assert "rows=[['c', 'd']]" in repr(t)
    assert RawTable("f.csv", None, ["A"], [], []) != RawTable("g.csv", None, ["A"], [], [])


def _grid_reference(grid: list[list[Any]], first_row: int) -> object:
    """What a sheet's rectangle means, written plainly: the header is the first non-blank row,
    blank rows are dropped, empty cells are None, the width is the header's or the data's."""
    blank = [all(v is None or (isinstance(v, str) and not v.strip()) for v in r) for r in grid]
    if all(blank):
        return "empty"
    h = blank.index(False)
    data = [(first_row + i, r) for i, r in enumerate(grid) if i > h and not blank[i]]

    def used(r: list[Any]) -> int:
        return max([j + 1 for j, v in enumerate(r) if not (isinstance(v, str) and not v.strip())],
                   default=0)

    width = max([used(grid[h]), *(used(r) for _, r in data)])
    headers = [reader._header_text(v) for v in grid[h][:width]]
    rows = [[None if v == "" else v for v in r[:width]] for _, r in data]
    return headers, rows, [n for n, _ in data], first_row + h


@pytest.mark.parametrize("seed", range(3))
def test_workbook_rectangle_as_columns_matches_its_plain_meaning(seed: int) -> None:
    rnd = random.Random(seed)
    cells = ["", "", " ", "\t", "a", "b", 1.0, 0.0, 2.5, True, False, dt.date(2024, 1, 2),
             dt.time(10, 0)]
    for _ in range(300):
        width, height = rnd.randint(0, 5), rnd.randint(0, 8)
        grid = [[rnd.choice(cells) for _ in range(width)] for _ in range(height)]
        expected = _grid_reference([list(r) for r in grid], 3)
        columns, n = reader._grid_columns([list(r) for r in grid])
        try:
            t = reader._table_from_columns("f", "S", columns, n, 3, [], "f: empty")
        except ReadError:
            assert expected == "empty", grid
            continue
        assert (t.headers, t.rows, t.row_numbers, t.header_row) == expected, grid


# -- what held up against hostile files (issue 15): kept, and kept tested -------------------------

_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
              for i in range(1, 10))
    + "]>"
)
_EXTERNAL = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


def _xlsx_with(path: Path, *, sheet: str, strings: str | None = None) -> Path:
    """A workbook written by openpyxl, its sheet (and shared strings) XML replaced by hand."""
    src = write_xlsx(tmp := path.with_suffix(".src.xlsx"), {"Sessions": [["Name"], ["x"]]})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if item.filename == "xl/worksheets/sheet1.xml":
                zout.writestr(item.filename, sheet)
            elif item.filename != "xl/sharedStrings.xml":
                zout.writestr(item, zin.read(item.filename))
        if strings is not None:
            zout.writestr("xl/sharedStrings.xml", strings)
    tmp.unlink()
    return path


_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


@pytest.mark.parametrize("prolog, entity", [(_LAUGHS, "&lol9;"), (_EXTERNAL, "&xxe;")])
def test_entities_in_a_sheet_are_refused_and_never_expanded(
    tmp_path: Path, prolog: str, entity: str
) -> None:
    sheet = (f'{prolog}<worksheet {_NS}><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>'
             f"Name</t></is></c></row><row r=\"2\"><c r=\"A2\" t=\"inlineStr\"><is><t>{entity}"
             "</t></is></c></row></sheetData></worksheet>")
    msg = read_error(_xlsx_with(tmp_path / "s.xlsx", sheet=sheet))
    assert "not a valid Excel workbook" in msg
    assert "lollol" not in msg and "root:" not in msg


@pytest.mark.parametrize("prolog, entity", [(_LAUGHS, "&lol9;"), (_EXTERNAL, "&xxe;")])
def test_entities_in_shared_strings_are_refused_and_never_expanded(
    tmp_path: Path, prolog: str, entity: str
) -> None:
    sheet = (f'<worksheet {_NS}><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row>'
             '<row r="2"><c r="A2" t="s"><v>1</v></c></row></sheetData></worksheet>')
    strings = f"{prolog}<sst {_NS}><si><t>Name</t></si><si><t>{entity}</t></si></sst>"
    msg = read_error(_xlsx_with(tmp_path / "s.xlsx", sheet=sheet, strings=strings))
    assert "not a valid Excel workbook" in msg
    assert "lollol" not in msg and "root:" not in msg


def test_entities_in_a_sheet_that_needs_the_exact_pass_are_refused(tmp_path: Path) -> None:
    """A cell without its reference sends the sheet to expat, which refuses any DTD."""
    sheet = (f'{_LAUGHS}<worksheet {_NS}><sheetData><row><c t="inlineStr"><is><t>&lol9;</t>'
             "</is></c></row></sheetData></worksheet>")
    msg = read_error(_xlsx_with(tmp_path / "s.xlsx", sheet=sheet))
    assert "not a valid Excel workbook" in msg and "a DTD" in msg


def test_csv_mixed_line_endings(tmp_path: Path) -> None:
    t = read_table(write_bytes(tmp_path / "s.csv", b"Name,Note\r\na,1\nb,2\rc,3\r\n"))
    assert t.rows == [["a", "1"], ["b", "2"], ["c", "3"]]
    assert t.row_numbers == [2, 3, 4]


def test_csv_nul_bytes_inside_a_long_file_are_refused_while_counting(tmp_path: Path) -> None:
    """Past the row limit the records are counted as a stream; binary data still says so."""
    data = b"Name\n" + b"x\n" * 200 + b"\x00\x01\x02\n"
    msg = read_error(write_bytes(tmp_path / "s.csv", data), limits=ReadLimits(max_rows=100))
    assert "does not look like a text CSV file" in msg

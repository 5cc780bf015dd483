"""Hostile sheets (issue 15, section 1): every file is generated here, at test time, by hand.

Each is refused with one line naming the file, the limit and the setting that raises it, before
python-calamine reads it. The worst are also run as ``python -m bulkschedule validate FILE`` in
a child process: exit code 2, one line on stderr, a few seconds, and a peak memory (the child's
own, from ``wait4``) under 300 MB.

Big members are written in 1 MB pieces straight into the zip (deflate level 1), so the tests
stay small in memory. Sizes were scaled where the outcome does not depend on them: the shared
string is 64 MB, not 1 GB (the cell limit refuses it after its first 32,767 characters, and a
part limit of 32 MB is tested on it separately); the zip bomb part is 256 MB against the 200 MB
default.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from bulkschedule.sheet import xml_scan, zip_guard
from bulkschedule.sheet.limits import SETTINGS, ReadLimits
from bulkschedule.sheet.reader import ReadError, read_table

MB = 1 << 20
SECONDS = 8.0  # a refusal's whole process, imports included: 0.5-1.5 s measured, the rest is
# room for a 2-core machine shared with other test runs
PEAK_MB = 300

# -- building workbooks by hand ------------------------------------------------------------------

NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
REL_NS = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
PKG = "http://schemas.openxmlformats.org/package/2006"
OFFICE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
SHEET_HEAD = f'<?xml version="1.0" encoding="UTF-8"?><worksheet {NS}>'


def _static_parts() -> dict[str, str]:
    return {
        "[Content_Types].xml":
            f'<?xml version="1.0"?><Types xmlns="{PKG}/content-types">'
            '<Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>',
        "_rels/.rels":
            f'<?xml version="1.0"?><Relationships xmlns="{PKG}/relationships">'
            f'<Relationship Id="rId1" Type="{OFFICE}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>",
        "xl/workbook.xml":
            f'<?xml version="1.0"?><workbook {NS} {REL_NS}><sheets>'
            '<sheet name="Sessions" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels":
            f'<?xml version="1.0"?><Relationships xmlns="{PKG}/relationships">'
            f'<Relationship Id="rId1" Type="{OFFICE}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{OFFICE}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>",
    }


Chunks = Iterable[bytes | str]


def write_xlsx(path: Path, sheet: Chunks, *, strings: Chunks | None = None,
               extra: dict[str, Chunks] | None = None) -> Path:
    """A workbook with one sheet "Sessions" whose XML is ``sheet``, written piece by piece."""
    members: dict[str, Chunks] = {"xl/worksheets/sheet1.xml": sheet}
    if strings is not None:
        members["xl/sharedStrings.xml"] = strings
    members.update(extra or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, text in _static_parts().items():
            z.writestr(name, text)
        for name, chunks in members.items():
            with z.open(name, "w", force_zip64=True) as f:
                for c in chunks:
                    f.write(c.encode() if isinstance(c, str) else c)
    return path


def sheet_of(*rows: str) -> list[str]:
    return [SHEET_HEAD, "<sheetData>", *rows, "</sheetData></worksheet>"]


def text_cell(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


HEADER_ROW = f'<row r="1">{text_cell("A1", "name")}</row>'


def repeated(head: str, block: bytes, megabytes: int, tail: str) -> Iterator[bytes | str]:
    yield head
    for _ in range(megabytes):
        yield block
    yield tail


# -- checking a refusal --------------------------------------------------------------------------


def refusal(path: Path, limit: str, **limits: int) -> str:
    """read_table's one-line error for ``path``, checked to name the file and the setting."""
    with pytest.raises(ReadError) as info:
        read_table(path, limits=ReadLimits(**limits))
    msg = str(info.value)
    setting = SETTINGS[limit]  # type: ignore[index]
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    assert f"(raise it with {setting.flag} or {setting.env})" in msg
    return msg


def run_validate(path: Path) -> tuple[int, str, float, float]:
    """``bulkschedule validate path`` in a child: exit code, stderr, seconds, and the child's
    own peak memory in MB (``wait4``; a refusal prints one line, so the pipes cannot fill)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bulkschedule", "validate", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    assert proc.stdout is not None and proc.stderr is not None
    with proc.stdout, proc.stderr:
        proc.stdout.read()
        err = proc.stderr.read().decode()
    return proc.returncode, err, seconds, usage.ru_maxrss / 1024


def assert_refused_by_cli(path: Path, limit: str) -> str:
    code, err, seconds, peak = run_validate(path)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and SETTINGS[limit].flag in lines[0]  # type: ignore[index]
    assert seconds < SECONDS, f"{seconds:.1f} s"
    assert peak < PEAK_MB, f"{peak:.0f} MB"
    return lines[0]


# -- the files ---------------------------------------------------------------------------


def test_cells_at_a1_and_xfd1048576(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "far.xlsx", sheet_of(
        HEADER_ROW, f'<row r="1048576">{text_cell("XFD1048576", "x")}</row>'))
    assert path.stat().st_size < 2500
    msg = refusal(path, "max_rows")
    assert "the sheet 'Sessions' has cells in at least 1,048,576 rows, from A1 to XFD1048576" \
        in msg
    assert "over the limit of 100,000 rows" in msg
    line = assert_refused_by_cli(path, "max_rows")
    assert "XFD1048576" in line


def test_cells_at_a1_and_z1000000(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "tall.xlsx", sheet_of(
        HEADER_ROW, f'<row r="1000000">{text_cell("Z1000000", "x")}</row>'))
    msg = refusal(path, "max_rows")
    assert "has cells in at least 1,000,000 rows, from A1 to Z1000000" in msg
    assert_refused_by_cli(path, "max_rows")


def test_a_cell_far_to_the_right(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "wide.xlsx", sheet_of(
        f'<row r="1">{text_cell("A1", "name")}{text_cell("GS1", "x")}</row>'))
    msg = refusal(path, "max_columns")
    assert "has cells in at least 201 columns, from A1 to GS1: over the limit of 200 columns" \
        in msg
    assert read_table(path, limits=ReadLimits(max_columns=201)).headers[-1] == "x"


def _shared_string(megabytes: int) -> Iterator[bytes | str]:
    return repeated(f'<?xml version="1.0"?><sst {NS}><si><t>name</t></si><si><t>', b"a" * MB,
                    megabytes, "</t></si></sst>")


def _cells_showing_string_1(n: int) -> list[str]:
    cells = (f'<row r="{i}"><c r="A{i}" t="s"><v>1</v></c></row>' for i in range(2, n + 2))
    return sheet_of('<row r="1"><c r="A1" t="s"><v>0</v></c></row>', "".join(cells))


def test_a_huge_shared_string_shown_by_2000_cells(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "sst.xlsx", _cells_showing_string_1(2000),
                      strings=_shared_string(64))
    msg = refusal(path, "max_cell_chars")
    assert "a shared string (text shown in cells) in xl/sharedStrings.xml has a longer text" \
        in msg
    assert "over the limit of 32,767 characters in one cell" in msg
    # with the cell limit out of the way, the inflated size stops it
    msg = refusal(path, "max_part_bytes", max_cell_chars=10**9, max_part_bytes=32_000_000)
    assert "the part xl/sharedStrings.xml inflates to more than 32 MB" in msg
    assert_refused_by_cli(path, "max_cell_chars")


def test_a_huge_inline_string(tmp_path: Path) -> None:
    sheet = repeated(f'{SHEET_HEAD}<sheetData>{HEADER_ROW}<row r="2"><c r="A2" t="inlineStr">'
                     "<is><t>", b"b" * MB, 64, "</t></is></c></row></sheetData></worksheet>")
    path = write_xlsx(tmp_path / "inline.xlsx", sheet)
    msg = refusal(path, "max_cell_chars")
    assert "cell A2 in xl/worksheets/sheet1.xml has a longer text" in msg
    assert_refused_by_cli(path, "max_cell_chars")


def test_a_million_rows(tmp_path: Path) -> None:
    def rows() -> Iterator[str]:
        yield f"{SHEET_HEAD}<sheetData>{HEADER_ROW}"
        for start in range(2, 1_000_002, 50_000):
            yield "".join(f'<row r="{i}"><c r="A{i}"><v>{i}</v></c></row>'
                          for i in range(start, start + 50_000))
        yield "</sheetData></worksheet>"

    path = write_xlsx(tmp_path / "million.xlsx", rows())
    msg = refusal(path, "max_rows", max_rows=1000)
    assert "has cells in at least 1,002 rows, from A1 to A1002: over the limit of 1,000 rows" \
        in msg
    line = assert_refused_by_cli(path, "max_rows")
    assert "over the limit of 100,000 rows" in line


def test_a_zip_bomb_part(tmp_path: Path) -> None:
    bomb = repeated("", bytes(MB), 256, "")
    path = write_xlsx(tmp_path / "bomb.xlsx", sheet_of(HEADER_ROW),
                      extra={"xl/media/padding.bin": bomb})
    assert path.stat().st_size < 2 * MB
    msg = refusal(path, "max_part_bytes")
    assert "the part xl/media/padding.bin inflates to more than 200 MB" in msg
    assert_refused_by_cli(path, "max_part_bytes")


def test_the_size_a_zip_declares_is_not_trusted(tmp_path: Path) -> None:
    """A member that says it inflates to 100 bytes is counted as it really inflates."""
    path = write_xlsx(tmp_path / "liar.xlsx", sheet_of(HEADER_ROW),
                      extra={"xl/media/padding.bin": repeated("", bytes(MB), 40, "")})
    data = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo("xl/media/padding.bin")
    central = _central_entry(data, "xl/media/padding.bin")
    _patch_sizes(data, central, info)
    path.write_bytes(bytes(data))
    assert zipfile.ZipFile(path).getinfo("xl/media/padding.bin").file_size == 100
    msg = refusal(path, "max_part_bytes", max_part_bytes=16_000_000)
    assert "the part xl/media/padding.bin inflates to more than 16 MB" in msg


def _central_entry(data: bytearray, name: str) -> int:
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) != -1:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46:pos + 46 + name_len] == name.encode():
            return pos
        pos += 4
    raise AssertionError(name)


def _patch_sizes(data: bytearray, central: int, info: zipfile.ZipInfo) -> None:
    """Declare 100 bytes in the central directory (and its zip64 extra field, if any)."""
    if struct.unpack_from("<I", data, central + 24)[0] != 0xFFFFFFFF:
        struct.pack_into("<I", data, central + 24, 100)
        return
    name_len, extra_len = struct.unpack_from("<HH", data, central + 28)
    extra = central + 46 + name_len
    end = extra + extra_len
    while extra < end:
        tag, size = struct.unpack_from("<HH", data, extra)
        if tag == 1:
            struct.pack_into("<Q", data, extra + 4, 100)  # the uncompressed size comes first
            return
        extra += 4 + size
    raise AssertionError(info.filename)


def test_two_million_csv_rows_are_refused_at_the_row_limit(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    with path.open("wb") as f:
        f.write(b"name,date\n")
        for _ in range(20):
            f.write(b"Session,01-02-2027\n" * 100_000)
    msg = refusal(path, "max_rows")
    assert "the file has more than 100,000 rows of data (row 100002 is one too many)" in msg
    line = assert_refused_by_cli(path, "max_rows")
    assert "rows of data" in line


def test_too_many_csv_columns(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(201)) + "\n" + "x," * 200 + "x\n")
    msg = refusal(path, "max_columns")
    assert "a row has 201 cells: over the limit of 200 columns" in msg
    assert len(read_table(path, limits=ReadLimits(max_columns=201)).headers) == 201
    # 10,000 columns (which held up before) are now a clear refusal too
    path.write_text(",".join(f"c{i}" for i in range(10_000)) + "\n")
    assert "10,000 cells" in refusal(path, "max_columns")


def test_a_long_csv_cell_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("name,notes\nx," + "y" * 40_000 + "\n")
    msg = refusal(path, "max_cell_chars")
    assert "row 2 has a cell of 40,000 characters" in msg
    # the limit counts characters, not bytes: 30,000 two-byte characters are within it
    path.write_text("name,notes\nx," + "é" * 30_000 + "\n", encoding="utf-8")
    assert read_table(path).rows[0][1] == "é" * 30_000


def test_a_long_csv_cell_on_many_short_lines_is_refused_after_reading(tmp_path: Path) -> None:
    """A quoted cell's line breaks hide its length from the line scan; the cells are checked
    again once read."""
    path = tmp_path / "lines.csv"
    path.write_text('name,notes\nx,"' + "line of text\n" * 3000 + '"\n')
    assert "row 2 has a cell of 39,000 characters" in refusal(path, "max_cell_chars")


def test_an_ods_repeating_a_cell_17_billion_times(tmp_path: Path) -> None:
    row = ('<table:table-row table:number-rows-repeated="1048576">'
           '<table:table-cell office:value-type="string" table:number-columns-repeated="16384">'
           "<text:p>x</text:p></table:table-cell></table:table-row>")
    path = _write_ods(tmp_path / "repeat.ods", row)
    assert path.stat().st_size < 2500
    msg = refusal(path, "max_columns")
    assert "a row of the sheet 'Sessions' has 16,384 cells or more" in msg
    narrow = _write_ods(tmp_path / "tall.ods", row.replace("16384", "3"))
    assert "the sheet 'Sessions' has 1,048,576 rows or more" in refusal(narrow, "max_rows")
    assert_refused_by_cli(path, "max_columns")


def test_an_ods_cell_of_a_billion_spaces(tmp_path: Path) -> None:
    row = ('<table:table-row><table:table-cell office:value-type="string">'
           '<text:p>a<text:s text:c="1000000000"/></text:p></table:table-cell></table:table-row>')
    msg = refusal(_write_ods(tmp_path / "spaces.ods", row), "max_cell_chars")
    assert "a cell of the sheet 'Sessions' has 1,000,000,001 characters or more" in msg


def _write_ods(path: Path, rows: str) -> Path:
    ns = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"')
    content = (f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns}>'
               '<office:body><office:spreadsheet><table:table table:name="Sessions">'
               f"{rows}</table:table></office:spreadsheet></office:body>"
               "</office:document-content>")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_an_xlsb_cell_at_the_far_corner(tmp_path: Path) -> None:
    def record(rtype: int, payload: bytes) -> bytes:
        return bytes([rtype]) + bytes([len(payload)]) + payload

    sheet = (record(0, struct.pack("<I", 0) + bytes(8)) + record(5, struct.pack("<IId", 0, 0, 1))
             + record(0, struct.pack("<I", 1_048_575) + bytes(8))
             + record(5, struct.pack("<IId", 16_383, 0, 1)))
    path = tmp_path / "far.xlsb"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("xl/worksheets/sheet1.bin", sheet)
    msg = refusal(path, "max_rows")
    assert "the worksheet xl/worksheets/sheet1.bin has cells in 1,048,576 rows, " \
        "from A1 to XFD1048576" in msg


# -- what the fast pass cannot vouch for goes to the exact pass ----------------------------------


@pytest.mark.parametrize("row", [
    # a cell without its reference: calamine puts it after the previous one
    '<row r="2"><c r="C2"><v>1</v></c><c><v>2</v></c></row>',
    # the reference not first, or a prefixed element (calamine reads local names)
    '<row r="2"><c t="n" r="D2"><v>2</v></c></row>',
    '<row r="2"><x:c xmlns:x="urn:x" r="D2"><x:v>2</x:v></x:c></row>',
])
def test_unusual_cells_are_replayed_exactly(tmp_path: Path, row: str) -> None:
    path = write_xlsx(tmp_path / "odd.xlsx", sheet_of(HEADER_ROW, row))
    msg = refusal(path, "max_columns", max_columns=3)
    assert "the sheet 'Sessions' has cells in 4 columns, from A1 to D2" in msg
    assert read_table(path, limits=ReadLimits(max_columns=4)).rows[0][3] == 2


def test_far_cells_without_a_value_do_not_count(tmp_path: Path) -> None:
    """calamine leaves empty cells out of its grid: a formatted cell at XFD9 is no threat."""
    path = write_xlsx(tmp_path / "styled.xlsx", sheet_of(
        HEADER_ROW, f'<row r="2">{text_cell("A2", "x")}</row>',
        '<row r="1048576"><c r="XFD1048576" s="1"/></row>'))
    t = read_table(path)
    assert (t.headers, t.rows) == (["name"], [["x"]])


def test_the_declared_range_is_checked_too(tmp_path: Path) -> None:
    sheet = [SHEET_HEAD, '<dimension ref="A1:XFD1048576"/><sheetData>', HEADER_ROW,
             "</sheetData></worksheet>"]
    msg = refusal(write_xlsx(tmp_path / "dim.xlsx", sheet), "max_rows")
    assert "the sheet 'Sessions' declares its used range as A1:XFD1048576 (1,048,576 rows)" \
        in msg


def test_title_rows_above_a_full_sheet_are_measured_exactly(tmp_path: Path) -> None:
    """The fast pass stops at a reference past the limit; the exact pass measures from the
    first cell, so a sheet starting at row 6 may end at row 1,006 with a limit of 1,000 (a
    header and 1,000 rows), not beyond: the replay stops at the first row too many."""
    rows = [f'<row r="{i}"><c r="A{i}"><v>{i}</v></c></row>' for i in range(6, 1007)]
    path = write_xlsx(tmp_path / "titled.xlsx", sheet_of(*rows))
    t = read_table(path, limits=ReadLimits(max_rows=1000))
    assert len(t.row_numbers) == 1000 and t.header_row == 6
    rows += [f'<row r="{i}"><c r="A{i}"><v>{i}</v></c></row>' for i in (1007, 1008)]
    path = write_xlsx(tmp_path / "titled.xlsx", sheet_of(*rows))
    msg = refusal(path, "max_rows", max_rows=1000)
    assert "has cells in 1,002 rows, from A6 to A1007: over the limit of 1,000 rows" in msg


def test_only_the_chosen_sheet_is_held_to_the_grid_limits(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "two.xlsx", sheet_of(HEADER_ROW, f'<row r="2">'
                      f'{text_cell("A2", "x")}</row>'),
                      extra={"xl/worksheets/sheet2.xml": sheet_of(
                          HEADER_ROW, f'<row r="1048576">{text_cell("XFD1048576", "x")}</row>')})
    assert read_table(path).rows == [["x"]]  # sheet2 is not in the workbook: never read


# -- units ---------------------------------------------------------------------------------------


def test_number_and_column_patterns_match_exactly_up_to_the_limit() -> None:
    for n in (1, 9, 10, 99, 100, 101, 199, 200, 1000, 100_001, 1_048_576):
        rx = re.compile(xml_scan._not_above(n))
        for k in {1, 2, 9, 10, n - 1, n, n + 1, n * 10, 10 ** len(str(n))} - {0}:
            assert bool(rx.fullmatch(str(k))) == (1 <= k <= n), (n, k)
        assert not rx.fullmatch("0") and not rx.fullmatch("01")
    for n in (1, 26, 27, 52, 200, 702, 703, 16_384):
        rx = re.compile(xml_scan._letters_not_above(n))
        for k in {1, 2, 25, 26, 27, 28, n - 1, n, n + 1, n * 26} - {0}:
            assert bool(rx.fullmatch(xml_scan.column_letters(k))) == (k <= n), (n, k)


def test_text_chars_counts_characters_of_text_only() -> None:
    assert xml_scan.text_chars(b'<t xml:space="preserve">caf\xc3\xa9 &amp; &#x1F600;</t>') == 8
    assert xml_scan.text_chars(b"<r><t>ab</t></r><r><rPr><b/></rPr><t>cd</t></r>") == 4


def test_the_meter_adds_up_an_element_spread_over_many_pieces() -> None:
    seen: list[tuple[int, bool]] = []

    def over(chars: int, _head: bytes, closed: bool) -> ReadError:
        seen.append((chars, closed))
        return ReadError("over")

    meter = xml_scan.TextMeter(b"</si>", xml_scan._SI_END, 100, over)
    meter.feed(b"<sst><si><t>" + b"x" * 60)
    meter.feed(b"</t></si><si><t>" + b"y" * 30)  # the first string closed at 60: fine
    with pytest.raises(ReadError):
        for _ in range(10):
            meter.feed(b"<r><t>" + b"z" * 20 + b"</t></r>")
    assert seen == [(110, False)]


def test_pieces_never_split_a_tag() -> None:
    chunks = [b"<a><b x='1'>text", b"more</b><c r", b'="A1">', b"x" * 10, b"</c></a>"]
    pieces = list(xml_scan.portions(chunks, ReadError))
    assert b"".join(pieces) == b"".join(chunks)
    assert all(p.count(b"<") == p.count(b">") for p in pieces)


def test_inflate_counts_what_it_inflates(tmp_path: Path) -> None:
    path = tmp_path / "z.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.xml", b"<a>" + b"x" * 3_000_000 + b"</a>")
    info = zipfile.ZipFile(path).getinfo("a.xml")
    with path.open("rb") as fh:
        assert sum(map(len, zip_guard.inflate(fh, info, "z", ReadLimits()))) == 3_000_007
        with pytest.raises(ReadError, match="inflates to more than 2 MB"):
            list(zip_guard.inflate(fh, info, "z", ReadLimits(max_part_bytes=2_000_000)))


def test_read_limits_must_be_positive_whole_numbers() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        ReadLimits(max_rows=0)
    with pytest.raises(ValueError, match="max_part_bytes"):
        ReadLimits(max_part_bytes=1.5)  # type: ignore[arg-type]


def test_a_hostile_sheet_beside_the_chosen_one_is_left_alone(tmp_path: Path) -> None:
    """calamine reads only the chosen sheet, so only its grid is held to the limits; choosing
    the far one is refused."""
    path = write_xlsx(tmp_path / "two.xlsx", sheet_of(HEADER_ROW, f'<row r="2">'
                      f'{text_cell("A2", "x")}</row>'),
                      extra={"xl/worksheets/sheet2.xml": sheet_of(
                          HEADER_ROW, f'<row r="1048576">{text_cell("XFD1048576", "x")}</row>')})
    book = _static_parts()["xl/workbook.xml"].replace(
        "</sheets>", '<sheet name="Far" sheetId="2" r:id="rId3"/></sheets>')
    rels = _static_parts()["xl/_rels/workbook.xml.rels"].replace(
        "</Relationships>", f'<Relationship Id="rId3" Type="{OFFICE}/worksheet" '
        'Target="/xl/worksheets/sheet2.xml"/></Relationships>')
    _replace_members(path, {"xl/workbook.xml": book, "xl/_rels/workbook.xml.rels": rels})
    assert read_table(path, "Sessions").rows == [["x"]]
    with pytest.raises(ReadError, match="the sheet 'Far' has cells in at least 1,048,576 rows"):
        read_table(path, "Far")


def _replace_members(path: Path, members: dict[str, str]) -> None:
    with zipfile.ZipFile(path) as z:
        kept = {i.filename: z.read(i) for i in z.infolist() if i.filename not in members}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in {**kept, **{k: v.encode() for k, v in members.items()}}.items():
            z.writestr(name, data)

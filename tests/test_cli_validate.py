"""The ``validate`` and ``template`` commands: output, exit codes, and never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from bulkschedule.cli import root as cli
from bulkschedule.cli.console import format_problems
from bulkschedule.core.problems import error, warning

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"
TODAY = ["--today", "2026-11-27"]

VALID_CSV = (
    "courseId,batchId,moduleId,name,trainerErecno,type,date,startTime,endTime\r\n"
    "478346000019479103,478346000019479115,478346000019479119,Fire safety,478346000008251001,"
    "Classroom,01-02-2027,10:00 AM,11:00 AM\r\n"
)


def run(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def _one_error_line(result) -> None:
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bulkschedule: error: "), result.stderr


# ------------------------------------------------------------------------------ startup


def test_importing_cli_loads_no_heavy_library():
    code = (
        "import sys, bulkschedule.cli.root\n"
        "heavy = [m for m in ('pandas', 'pandera', 'openpyxl', 'aiohttp', 'numpy') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_and_version_in_a_subprocess():
    for args in (["--help"], ["validate", "--help"], ["template", "--help"]):
        out = subprocess.run([sys.executable, "-m", "bulkschedule", *args], capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stderr
        assert "Usage:" in out.stdout
    out = subprocess.run([sys.executable, "-m", "bulkschedule", "--version"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "0.1.0" in out.stdout


# ------------------------------------------------------------------------------ validate


def test_valid_sheet_exits_0_with_summary():
    result = run("validate", str(SAMPLES / "sessions.xlsx"), *TODAY)
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("40 rows, 40 valid, 0 errors, 0 warnings")


def test_sheet_with_errors_exits_1_and_shows_the_table():
    result = run("validate", str(SAMPLES / "sessions_with_errors.csv"), *TODAY)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].split() == ["row", "column", "value", "severity", "message"]
    assert any(line.split()[:3] == ["8", "date", "31-02-2027"] for line in lines)
    assert "21 rows, 6 valid, 15 errors, 3 warnings" in lines[-1]
    assert all(len(line) <= 120 for line in lines)


def test_warnings_only_exit_0(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text(VALID_CSV.replace("01-02-2027", "20-11-2026"))
    result = run("validate", str(sheet), *TODAY)
    assert result.exit_code == 0, result.output
    assert "0 errors, 1 warning" in result.output


def test_json_is_one_object_and_nothing_else():
    result = run("validate", "--json", str(SAMPLES / "sessions_with_errors.csv"), *TODAY)
    assert result.exit_code == 1
    data = json.loads(result.stdout)  # fails if anything else is on stdout
    assert set(data) == {"file", "rows", "valid", "errors", "warnings", "problems",
                         "expansions"}
    assert (data["rows"], data["valid"], data["errors"], data["warnings"]) == (21, 6, 15, 3)
    assert set(data["problems"][0]) == {"row", "column", "value", "severity", "message", "code"}
    assert {"row": 8, "column": "date", "code": "date.impossible"}.items() <= next(
        p for p in data["problems"] if p["row"] == 8).items()


def test_missing_required_column_exits_1(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("name,type\r\nFire safety,Classroom\r\n")
    result = run("validate", str(sheet), *TODAY)
    assert result.exit_code == 1
    assert "trainerErecno" in result.output


def test_path_ids_from_options(tmp_path):
    sheet = tmp_path / "s.csv"
    header, row = VALID_CSV.splitlines()
    drop = 3  # courseId, batchId, moduleId
    sheet.write_text(",".join(header.split(",")[drop:]) + "\r\n" + ",".join(row.split(",")[drop:]))
    assert run("validate", str(sheet), *TODAY).exit_code == 1
    result = run("validate", str(sheet), "--course", "478346000019479103", "--batch",
                 "478346000019479115", "--module", "478346000019479119", *TODAY)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("option", ["--course", "--batch", "--module"])
def test_non_digit_id_option_is_a_usage_error(tmp_path, option):
    sheet = tmp_path / "s.csv"
    sheet.write_text(VALID_CSV)
    result = run("validate", str(sheet), option, "4.78346E+17")
    assert result.exit_code == 2
    assert "not an ID" in result.stderr and "Traceback" not in result.stderr


def test_missing_file_exits_2_with_one_line(tmp_path):
    result = run("validate", str(tmp_path / "nope.xlsx"))
    assert result.exit_code == 2
    _one_error_line(result)
    assert result.stdout == ""


def test_unreadable_file_with_json_still_prints_one_object(tmp_path):
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"this is not a zip file at all")
    result = run("validate", "--json", str(bad))
    assert result.exit_code == 2
    _one_error_line(result)
    data = json.loads(result.stdout)
    assert data["file"] == str(bad) and data["error"]


def test_unknown_sheet_name_exits_2():
    result = run("validate", str(SAMPLES / "sessions.xlsx"), "--sheet", "Nope")
    assert result.exit_code == 2
    _one_error_line(result)
    assert "Nope" in result.stderr


def test_report_is_written(tmp_path):
    report = tmp_path / "checked.xlsx"
    result = run("validate", str(SAMPLES / "sessions_with_errors.csv"), "--report", str(report),
                 *TODAY)
    assert result.exit_code == 1
    assert f"report written to {report}" in result.output
    ws = openpyxl.load_workbook(report).worksheets[0]
    assert ws["G8"].value == "31-02-2027" and "does not exist" in ws["G8"].comment.text


def test_report_with_json_keeps_stdout_clean(tmp_path):
    report = tmp_path / "checked.xlsx"
    result = run("validate", "--json", str(SAMPLES / "sessions.xlsx"), "--report", str(report),
                 *TODAY)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["errors"] == 0
    assert report.exists()


def test_report_to_unwritable_place_exits_2(tmp_path):
    report = tmp_path / "no" / "such" / "folder" / "checked.xlsx"
    result = run("validate", str(SAMPLES / "sessions.xlsx"), "--report", str(report), *TODAY)
    assert result.exit_code == 2
    _one_error_line(result)
    assert "cannot write the report" in result.stderr


def test_report_with_json_and_write_failure(tmp_path):
    report = tmp_path / "missing-folder" / "checked.xlsx"
    result = run("validate", "--json", str(SAMPLES / "sessions.xlsx"), "--report", str(report),
                 *TODAY)
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["rows"] == 40 and "cannot write the report" in data["error"]


def test_report_must_not_overwrite_the_input(tmp_path):
    sheet = tmp_path / "s.xlsx"
    sheet.write_bytes((SAMPLES / "sessions.xlsx").read_bytes())
    before = sheet.read_bytes()
    result = run("validate", str(sheet), "--report", str(sheet))
    assert result.exit_code == 2
    assert sheet.read_bytes() == before


def test_report_needs_xlsx_name(tmp_path):
    result = run("validate", str(SAMPLES / "sessions.xlsx"), "--report", str(tmp_path / "r.csv"))
    assert result.exit_code == 2 and ".xlsx" in result.stderr


# ------------------------------------------------------------------------------ the table


def test_problem_table_cuts_long_values_and_wraps_messages():
    problems = [
        error(None, "descripton", None, "Unknown column", code="header.unknown"),
        warning(12345, "name", "x" * 200, "word " * 60, code="date.in_past"),
        error(7, "aVeryLongUnknownColumnHeaderName", "a\nb", "short", code="header.unknown"),
    ]
    lines = format_problems(problems, width=80)
    assert all(len(line) <= 80 for line in lines), lines
    assert any("xxx..." in line for line in lines)
    assert lines[2].split()[:2] == ["-", "descripton"]
    assert "a b" in lines[-1]  # a newline inside a cell does not break the table
    assert format_problems([]) == []


# ------------------------------------------------------------------------------ template


def test_template_default_name_and_no_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("template")
    assert result.exit_code == 0, result.output
    written = tmp_path / "sessions-template.xlsx"
    assert openpyxl.load_workbook(written).sheetnames == ["Sessions", "Instructions", "Holidays"]
    again = run("template")
    assert again.exit_code == 2
    _one_error_line(again)
    assert "--force" in again.stderr
    assert run("template", "--force").exit_code == 0


def test_template_csv(tmp_path):
    out = tmp_path / "t.csv"
    result = run("template", str(out))
    assert result.exit_code == 0
    assert out.read_bytes() == (ROOT / "templates" / "sessions.csv").read_bytes()


def test_template_bad_extension_and_folder(tmp_path):
    assert run("template", str(tmp_path / "t.ods")).exit_code == 2
    result = run("template", str(tmp_path / "missing" / "t.xlsx"))
    assert result.exit_code == 2
    _one_error_line(result)

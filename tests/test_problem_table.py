"""The problem table of ``validate`` and ``run`` is capped at scale: the first problems, then how
many more there are and where the full list is (``--json``, ``--report``, the results workbook)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from bulkschedule.cli import root as cli
from bulkschedule.cli.console import PROBLEMS_SHOWN, more_problems_line
from bulkschedule.core.problems import error

TODAY = ["--today", "2026-11-27"]
HEADER = "courseId,batchId,moduleId,name,trainerErecno,type,date,startTime,endTime\r\n"
ROW = ("478346000019479103,478346000019479115,478346000019479119,Session {i},"
       "478346000008251001,Classroom,{date},{hour:02d}:00,{hour:02d}:30\r\n")
PROBLEM_LINE = re.compile(r"^\s*\d+\s+date\s+31-02-2027\s+error\b")


def sheet(tmp_path: Path, bad: int, good: int = 3) -> Path:
    """``bad`` rows with an impossible date (one error each), then ``good`` valid rows."""
    path = tmp_path / "term.csv"
    rows = [ROW.format(i=i, date="31-02-2027", hour=9) for i in range(bad)]
    rows += [ROW.format(i=bad + i, date="01-02-2027", hour=9 + i) for i in range(good)]
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def run(*args: str):
    return CliRunner().invoke(cli.main, [*args, *TODAY])


def shown_problems(output: str) -> int:
    return sum(bool(PROBLEM_LINE.match(line)) for line in output.splitlines())


def test_validate_shows_the_first_problems_and_points_to_the_rest(tmp_path):
    result = run("validate", str(sheet(tmp_path, PROBLEMS_SHOWN + 12)))
    assert result.exit_code == 1
    assert shown_problems(result.output) == PROBLEMS_SHOWN
    more = [line for line in result.output.splitlines() if line.startswith("... and")]
    assert more == [f"... and 12 more problems ({PROBLEMS_SHOWN + 12} in all): --json lists "
                    "every one; --report OUT.xlsx marks each in a copy of the sheet"]
    # the first ones in sheet order: spreadsheet rows 2 to 51
    rows = [int(line.split()[0]) for line in result.output.splitlines()
            if PROBLEM_LINE.match(line)]
    assert rows == list(range(2, 2 + PROBLEMS_SHOWN))
    assert result.output.rstrip().endswith(f"{PROBLEMS_SHOWN + 12} errors, 0 warnings")


def test_json_still_lists_every_problem(tmp_path):
    result = run("validate", str(sheet(tmp_path, PROBLEMS_SHOWN + 12)), "--json")
    assert len(json.loads(result.output)["problems"]) == PROBLEMS_SHOWN + 12


def test_with_a_report_the_line_names_it(tmp_path):
    report = tmp_path / "checked.xlsx"
    result = run("validate", str(sheet(tmp_path, PROBLEMS_SHOWN + 1)), "--report", str(report))
    assert f"... and 1 more problem ({PROBLEMS_SHOWN + 1} in all): every one is marked in " \
           f"{report} and listed by --json" in result.output
    problems = list(openpyxl.load_workbook(report)["Problems"].iter_rows(values_only=True))
    assert len(problems) == 1 + PROBLEMS_SHOWN + 1


def test_no_line_when_every_problem_is_shown(tmp_path):
    result = run("validate", str(sheet(tmp_path, PROBLEMS_SHOWN)))
    assert shown_problems(result.output) == PROBLEMS_SHOWN
    assert "more problem" not in result.output


def test_run_points_to_the_results_workbook(tmp_path):
    results = tmp_path / "out.xlsx"
    result = run("run", str(sheet(tmp_path, PROBLEMS_SHOWN + 5)), "--dry-run", "--state",
                 str(tmp_path / "state"), "--results", str(results))
    assert result.exit_code == 1, result.output
    assert shown_problems(result.output) == PROBLEMS_SHOWN
    assert f"... and 5 more problems ({PROBLEMS_SHOWN + 5} in all): every one is on the " \
           f"Problems sheet of {results}" in result.output
    problems = list(openpyxl.load_workbook(results)["Problems"].iter_rows(values_only=True))
    assert len(problems) == 1 + PROBLEMS_SHOWN + 5


def test_more_problems_line_counts_with_separators():
    problems = [error(r, "date", "x", "bad", code="date.impossible") for r in range(2, 1202)]
    assert more_problems_line(problems, 50, "see --json") == (
        "... and 1,150 more problems (1,200 in all): see --json")
    assert more_problems_line(problems, 1200, "see --json") is None

"""A dry run's preview stays short at scale: the rows the journal already settled are named up to
`PREVIEW_SHOWN`, then counted, with where every one of them is (the results workbook)."""

from __future__ import annotations

from pathlib import Path

from bulkschedule.app.job import JobResult
from bulkschedule.cli.console import PREVIEW_SHOWN, preview_lines
from bulkschedule.core.problems import Outcome, Status
from bulkschedule.sheet.columns import map_headers
from bulkschedule.sheet.reader import RawTable
from bulkschedule.sheet.schema import Validation


def result(settled: int, would: int = 0, path: Path | None = Path("term.results.xlsx")
           ) -> JobResult:
    rows = list(range(2, 2 + settled + would))
    table = RawTable("term.csv", None, ["name"], [["x"] for _ in rows], rows)
    validation = Validation(table, map_headers(["name"]), [], [])
    outcomes = {r: Outcome(r, Status.EXISTS if i % 2 else Status.CHANGED, f"s{r}", f"m{r}")
                for i, r in enumerate(rows[:settled])}
    outcomes |= {r: Outcome(r, Status.WOULD_CREATE) for r in rows[settled:]}
    return JobResult(validation, outcomes, path, {}, 0)


def test_the_first_settled_rows_then_how_many_more_and_where():
    lines = preview_lines(result(PREVIEW_SHOWN + 1234, would=2))
    named = [line for line in lines if line.startswith("row ")]
    assert len(named) == PREVIEW_SHOWN
    assert named[0] == "row 2: changed: m2" and named[1] == "row 3: exists: m3"
    assert lines[-2:] == [
        f"... and 1,234 more rows already created or to update ({PREVIEW_SHOWN + 1234:,} in "
        "all): the status column of term.results.xlsx",
        "dry run: 2 sessions would be created; nothing was sent",
    ]


def test_no_count_line_when_every_settled_row_is_named():
    lines = preview_lines(result(PREVIEW_SHOWN))
    assert sum(line.startswith("row ") for line in lines) == PREVIEW_SHOWN
    assert not any(line.startswith("...") for line in lines)


def test_one_more_row_without_a_results_path():
    lines = preview_lines(result(PREVIEW_SHOWN + 1, path=None))
    assert lines[-2] == (f"... and 1 more row already created or to update ({PREVIEW_SHOWN + 1} "
                         "in all): the results workbook")

"""`bulkschedule forget`: the operator's way to let a deleted session's row be sent again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bulkschedule.app.job import load, requests_for
from bulkschedule.cli.root import main
from bulkschedule.send.journal import Journal

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "sessions.xlsx"
BASE = "https://people.zoho.com"  # the default data centre's API base


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default data centre, whatever the machine's config or environment says."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("BULKSCHEDULE_CONFIG", "BULKSCHEDULE_API_BASE", "BULKSCHEDULE_DC"):
        monkeypatch.delenv(name, raising=False)


def _journal_with_created_rows(state: Path, sheet: Path, rows: list[int]) -> dict[int, object]:
    by_row = {r.row: r for r in requests_for(load(sheet))}
    journal = Journal(state)
    run_id = journal.start_run(str(sheet), BASE)
    for n in rows:
        journal.claim(BASE, by_row[n], run_id)
        journal.record_created(BASE, by_row[n], run_id, f"47834600005000000{n}")
    journal.close()
    return by_row  # type: ignore[return-value]


def test_forget_removes_only_the_named_rows(tmp_path: Path) -> None:
    sheet = tmp_path / "term.xlsx"
    shutil.copy(SAMPLE, sheet)
    state = tmp_path / "state"
    by_row = _journal_with_created_rows(state, sheet, [2, 3, 4])

    result = CliRunner().invoke(main, ["forget", str(sheet), "--row", "3", "--row", "4",
                                       "--state", str(state), "--yes"])
    assert result.exit_code == 0, result.output
    assert "row 3: journal says created (session 478346000050000003)" in result.output
    assert "forgot 2 rows" in result.output
    journal = Journal(state)
    try:
        assert journal.lookup(BASE, by_row[2]) is not None  # type: ignore[arg-type]
        assert journal.lookup(BASE, by_row[3]) is None  # type: ignore[arg-type]
        assert journal.lookup(BASE, by_row[4]) is None  # type: ignore[arg-type]
    finally:
        journal.close()


def test_forget_asks_first_and_a_no_keeps_the_journal(tmp_path: Path) -> None:
    sheet = tmp_path / "term.xlsx"
    shutil.copy(SAMPLE, sheet)
    state = tmp_path / "state"
    by_row = _journal_with_created_rows(state, sheet, [2])
    result = CliRunner().invoke(main, ["forget", str(sheet), "--row", "2", "--state", str(state)],
                                input="n\n")
    assert result.exit_code == 1
    assert "nothing forgotten" in result.output
    journal = Journal(state)
    try:
        assert journal.lookup(BASE, by_row[2]) is not None  # type: ignore[arg-type]
    finally:
        journal.close()


def test_forget_reports_rows_it_cannot_forget(tmp_path: Path) -> None:
    sheet = tmp_path / "term.xlsx"
    shutil.copy(SAMPLE, sheet)
    state = tmp_path / "state"
    _journal_with_created_rows(state, sheet, [2])
    result = CliRunner().invoke(main, ["forget", str(sheet), "--row", "2", "--row", "5",
                                       "--row", "500", "--state", str(state), "--yes"])
    assert result.exit_code == 1
    assert "row 500: not a valid session row" in result.output
    assert "row 5: the journal has nothing for it" in result.output
    assert "forgot 1 row" in result.output

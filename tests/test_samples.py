"""The shipped samples: the valid term validates cleanly, the errors sheet shows every problem kind,
and both are what `sample_data/make_samples.py` produces today."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

import openpyxl
import pytest

from bulkschedule.sheet import columns
from bulkschedule.sheet.reader import read_table
from bulkschedule.sheet.schema import validate

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"
TODAY = dt.date(2026, 11, 27)


def _load_make_samples():
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ms = _load_make_samples()


@pytest.fixture(scope="module")
def term():
    table = read_table(SAMPLES / "sessions.xlsx")
    return table, validate(table, today=TODAY)


def test_term_is_clean(term):
    table, v = term
    assert v.problems == [], v.problems
    assert not v.fatal
    assert table.sheet == "Sessions"
    assert 35 <= v.n_rows <= 45 and len(v.sessions) == v.n_rows


def test_term_is_realistic(term):
    _, v = term
    assert {s.course_id for s in v.sessions} == {ms.COURSE}
    assert {s.batch_id for s in v.sessions} == {ms.BATCH}
    modules = [s.module_id for s in v.sessions]
    assert set(modules) == {ms.MODULE_FOUNDATIONS, ms.MODULE_CUSTOMER}
    assert min(modules.count(m) for m in set(modules)) >= 10
    assert {s.trainer_erecno for s in v.sessions} == set(ms.TRAINERS)
    assert {s.room_id for s in v.sessions} == {*ms.ROOMS, None}
    for s in v.sessions:
        assert dt.date(2027, 1, 4) <= s.date <= dt.date(2027, 3, 26)
        assert s.date.weekday() < 5
        assert dt.time(9) <= s.start < s.end <= dt.time(17)
        assert (s.room_id is None) == (s.type == "1"), s  # E-learning has no room
        assert s.lock_until is None or s.lock_until <= s.date
    assert sum(s.key is not None for s in v.sessions) >= 3
    assert sum(s.lock_until is not None for s in v.sessions) >= 5
    assert sum(s.description is not None for s in v.sessions) >= 5
    assert {s.type for s in v.sessions} == {"0", "1"}


def test_term_cells_are_typed_as_an_admin_should_type_them(term):
    table, _ = term
    index = {h: i for i, h in enumerate(table.headers)}
    for row in table.rows:
        for name in ("courseId", "batchId", "moduleId", "trainerErecno"):
            assert isinstance(row[index[name]], str) and len(row[index[name]]) == 18
        assert type(row[index["date"]]) is dt.date
        assert isinstance(row[index["startTime"]], dt.time)
        assert row[index["type"]] in ("Classroom", "E-learning")
    ws = openpyxl.load_workbook(SAMPLES / "sessions.xlsx")["Sessions"]
    assert ws["A2"].number_format == "@" and ws["G2"].number_format == "dd-mm-yyyy"


@pytest.fixture(scope="module")
def recurring():
    table = read_table(SAMPLES / "recurring.xlsx")
    return table, validate(table, today=TODAY)


def test_recurring_term_is_clean_and_makes_what_the_script_says(recurring):
    table, v = recurring
    assert v.problems == [], v.problems
    assert table.sheet == "Sessions" and len(table.holidays) == 3  # a header and two lines
    assert {e.row: (e.sessions, e.first, e.last) for e in v.expansions} == \
        ms.RECURRING_EXPANSIONS
    singles = v.n_rows - len(v.expansions)
    assert v.valid == singles + sum(e.sessions for e in v.expansions) >= 40
    for e in v.expansions:
        got = [s for s in v.sessions if s.row == e.row]
        assert [s.occurrence for s in got] == list(range(1, e.sessions + 1))


def test_recurring_term_skips_its_holidays_and_fills_its_placeholders(recurring):
    _, v = recurring
    dates = {s.date for s in v.sessions}
    assert dt.date(2027, 5, 3) not in dates
    assert not dates & {dt.date(2027, 5, 31) + dt.timedelta(days=i) for i in range(5)}
    names = [s.name for s in v.sessions if s.row == 2]
    assert (names[0], names[-1]) == ("Foundations workshop 1 of 10",
                                     "Foundations workshop 10 of 10")
    assert all("{" not in (s.name + (s.description or "")) for s in v.sessions)
    assert all(s.lock_until == s.date - dt.timedelta(days=1) for s in v.sessions if s.row == 2)


def test_recurring_term_fits_the_sandbox_org(recurring):
    """Every ID is in the built-in sandbox's catalogue and every session inside its batch."""
    _, v = recurring
    org = json.loads((SAMPLES / "catalogue.json").read_text(encoding="utf-8"))
    batches = {b["id"]: b for c in org["courses"] for b in c["batches"]}
    trainers = {t["erecno"] for t in org["trainers"]}
    rooms = {r["id"] for r in org["rooms"]}
    for s in v.sessions:
        batch = batches[s.batch_id]
        assert s.course_id in {c["id"] for c in org["courses"] if batch in c["batches"]}
        assert s.module_id in {m["id"] for m in batch["modules"]}
        start, end = (dt.datetime.strptime(batch[k], "%d-%m-%Y").date()
                      for k in ("startDate", "endDate"))
        assert start <= s.date <= end, s
        assert s.trainer_erecno in trainers and (s.room_id is None or s.room_id in rooms)


def test_recurring_sample_is_what_the_script_writes(tmp_path):
    fresh = tmp_path / "recurring.xlsx"
    ms.write_recurring_xlsx(fresh)
    assert _content(fresh) == _content(SAMPLES / "recurring.xlsx"), (
        "sample_data/recurring.xlsx is stale: run python sample_data/make_samples.py"
    )


def _content(path):
    wb = openpyxl.load_workbook(path)
    return {
        ws.title: [(c.coordinate, c.value, c.number_format) for row in ws.iter_rows()
                   for c in row if c.value is not None]
        for ws in wb.worksheets
    }


def test_errors_sample_shows_every_problem_kind_where_expected():
    v = validate(read_table(SAMPLES / "sessions_with_errors.csv"), today=TODAY)
    found = {(p.row, p.column, p.severity) for p in v.problems}
    assert found == ms.EXPECTED_PROBLEMS
    assert not v.fatal
    assert tuple(s.row for s in v.sessions) == ms.VALID_ERROR_SAMPLE_ROWS


def test_errors_sample_is_what_the_script_writes():
    assert (SAMPLES / "sessions_with_errors.csv").read_bytes() == ms.errors_csv().encode()


def test_term_sample_is_what_the_script_writes(tmp_path):
    fresh = tmp_path / "sessions.xlsx"
    ms.write_sessions_xlsx(fresh)

    def content(path):
        wb = openpyxl.load_workbook(path)
        return {
            ws.title: [(c.coordinate, c.value, c.number_format) for row in ws.iter_rows()
                       for c in row if c.value is not None]
            for ws in wb.worksheets
        }

    assert content(fresh) == content(SAMPLES / "sessions.xlsx"), (
        "sample_data/sessions.xlsx is stale: run python sample_data/make_samples.py"
    )


@pytest.mark.parametrize("name", sorted(ms.GENERATED))
def test_generated_doc_tables_are_current(name):
    """The columns table (from the spec) and the codes table (from CODES) in the docs."""
    marker, table = ms.GENERATED[name]
    text = (ROOT / "docs" / name).read_text(encoding="utf-8")
    assert table in text
    assert ms.with_table(text, marker, table) == text, (
        f"docs/{name} is stale: run python sample_data/make_samples.py"
    )


def test_columns_table_follows_the_spec():
    spec = columns.derive((*columns.COLUMNS, columns.Column(
        "venueNote", "text", False, "A note | with a bar.", "Side entrance", (), "venueNote")))
    table = ms.columns_table(spec).splitlines()
    assert len(table) == 2 + len(spec.columns)
    assert table[-1] == "| `venueNote` | no | A note \\| with a bar. | `Side entrance` | — |"

"""The column spec is the single source: a column added to it alone reaches every output.

`columns.derive` builds every table the other modules read from a spec, and the functions that
use them take the spec (today's `SPEC` by default), so these tests add a column without touching
any other module or global.
"""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import openpyxl
import pytest

from bulkschedule.app import results
from bulkschedule.core.problems import Outcome, Status
from bulkschedule.sheet import columns
from bulkschedule.sheet.columns import COLUMNS, SPEC, Column, Spec, derive
from bulkschedule.sheet.payload import build_request
from bulkschedule.sheet.reader import read_table
from bulkschedule.sheet.schema import SessionRow, validate

ROOT = Path(__file__).resolve().parent.parent
TODAY = dt.date(2026, 6, 1)

VENUE = Column("venueNote", "text", False, "Optional note about the venue, shown to learners.",
               "Use the side entrance", ("venue",), "venueNote")


@pytest.fixture
def spec() -> Spec:
    """Today's spec plus one optional text column that feeds sessionData."""
    return derive((*COLUMNS, VENUE))


def _sheet(tmp_path: Path) -> Path:
    """A CSV with the new column under an alias-style header, filled on one row only."""
    path = tmp_path / "venue.csv"
    path.write_text(
        "courseId,batchId,moduleId,name,trainerErecno,type,date,startTime,endTime,Venue Note\r\n"
        "1,2,3,Induction,478346000008251001,Classroom,04-01-2027,10:00 AM,11:00 AM,"
        "Use the side entrance\r\n"
        "1,2,3,Fire safety,478346000008251001,Classroom,05-01-2027,10:00 AM,11:00 AM,\r\n",
        encoding="utf-8",
    )
    return path


# --------------------------------------------------------------------------- a column added alone


def test_a_new_column_reaches_the_payload(tmp_path: Path, spec: Spec) -> None:
    v = validate(read_table(_sheet(tmp_path)), today=TODAY, spec=spec)
    assert v.problems == []
    first, second = v.sessions
    assert first.venue_note == "Use the side entrance"
    assert second.venue_note is None
    data = build_request(first, spec).session_data
    assert list(data) == ["name", "trainerErecno", "type", "date", "startTime", "endTime",
                          "venueNote"]
    assert data["venueNote"] == "Use the side entrance"
    assert "venueNote" not in build_request(second, spec).session_data  # blank: left out
    # the same sheet against today's spec: an unknown column that never reaches the payload
    today = validate(read_table(_sheet(tmp_path)), today=TODAY)
    assert [p.code for p in today.problems] == ["header.unknown"]
    assert "venueNote" not in build_request(today.sessions[0]).session_data


def test_a_new_column_changes_the_fingerprint(tmp_path: Path, spec: Spec) -> None:
    first, _ = validate(read_table(_sheet(tmp_path)), today=TODAY, spec=spec).sessions
    changed = first._replace(venue_note="Use the main entrance")
    assert build_request(first, spec).fingerprint != build_request(changed, spec).fingerprint


def test_a_new_column_reaches_the_template(spec: Spec) -> None:
    wb = results.template_workbook(spec)
    header = [c.value for c in wb["Sessions"][1]]
    assert header == [*columns.NAMES, "venueNote"]
    note = wb["Sessions"].cell(row=1, column=len(header)).comment.text
    assert VENUE.description in note and VENUE.example in note
    info = [[c.value for c in r] for r in wb["Instructions"].iter_rows()]
    assert ["venueNote", "optional", VENUE.description, VENUE.example] in info
    assert results.template_csv(spec) == ",".join([*columns.NAMES, "venueNote"]) + "\r\n"
    # today's template is untouched by a derived spec
    assert "venueNote" not in [c.value for c in results.template_workbook()["Sessions"][1]]


def test_a_new_column_reaches_the_results_workbook(tmp_path: Path, spec: Spec) -> None:
    v = validate(read_table(_sheet(tmp_path)), today=TODAY, spec=spec)
    out = tmp_path / "results.xlsx"
    results.write_results(out, v, {2: Outcome(2, Status.CREATED, "S1")}, {})
    rows = [list(r) for r in openpyxl.load_workbook(out)["Results"].iter_rows(values_only=True)]
    header = rows[0]
    # an input column under its canonical name, in spec order, before the result columns
    assert header == ["row", "occurrence", "courseId", "batchId", "moduleId", "name",
                      "trainerErecno", "type", "date", "startTime", "endTime", "venueNote",
                      *results.RESULT_COLUMNS]
    assert rows[1][header.index("venueNote")] == "Use the side entrance"
    report = tmp_path / "report.xlsx"
    results.write_report(report, v)
    problems = list(openpyxl.load_workbook(report)["Problems"].iter_rows(values_only=True))
    assert problems == [("row", "column", "value", "severity", "message", "code")]


# --------------------------------------------------------------------------------- derived tables


def test_session_row_fields_follow_the_spec() -> None:
    assert SessionRow is SPEC.row_type
    assert SessionRow._fields == ("row", *(c.attr for c in COLUMNS), *columns.DERIVED)
    assert columns.DERIVED == ("occurrence",)
    assert SPEC.row_type._fields[SPEC.position("startTime")] == "start"
    # the optional columns after the last required one default to None, as do derived fields
    assert SessionRow._field_defaults == {
        **{c.attr: None for c in COLUMNS if not c.required}, "occurrence": None}
    # a derived spec gets them too, after its own columns
    assert derive((*COLUMNS, VENUE)).row_type._fields[-2:] == ("venue_note", "occurrence")


def test_no_column_may_take_a_derived_fields_name() -> None:
    with pytest.raises(ValueError, match="derived"):
        derive((*COLUMNS, Column("occurrence", "text", False, "n", "1")))


def test_the_repeat_columns_are_optional_and_never_sent() -> None:
    repeat = [columns.BY_NAME[n] for n in ("repeat", "until", "count", "skip")]
    assert [c.kind for c in repeat] == ["rule", "date", "count", "dates"]
    assert not any(c.required or c.api_field for c in repeat)
    assert columns.NAMES.index("repeat") > columns.NAMES.index("key")
    assert columns.BY_NAME["count"].attr == "repeat_count"  # a field "count" hides tuple.count
    assert columns.canonical("Repeat Until") == "until"
    assert columns.canonical("skip dates") == "skip"


def test_derived_tables_of_todays_spec() -> None:
    assert columns.PATH_COLUMNS == ("courseId", "batchId", "moduleId")
    assert [c.option for c in COLUMNS if c.option] == ["--course", "--batch", "--module"]
    assert [c.api_field for c in SPEC.api_columns] == [
        "name", "trainerErecno", "type", "date", "startTime", "endTime", "description",
        "roomId", "lockUntil", "gradeCategoryId"]
    assert columns.REQUIRED == ("courseId", "batchId", "moduleId", "name", "trainerErecno",
                                "type", "date", "startTime", "endTime")
    assert columns.canonical("Venue Note") is None
    assert columns.canonical("Venue Note", derive((*COLUMNS, VENUE))) == "venueNote"
    assert columns.canonical("venue", derive((*COLUMNS, VENUE))) == "venueNote"


def test_derive_refuses_a_column_twice() -> None:
    with pytest.raises(ValueError, match="unique"):
        derive((*COLUMNS, COLUMNS[0]))


def test_attr_defaults_to_snake_case() -> None:
    assert VENUE.attr == "venue_note"
    assert columns.BY_NAME["trainerErecno"].attr == "trainer_erecno"
    assert columns.BY_NAME["gradeCategoryId"].attr == "grade_category_id"


_KIND_TYPES = {"id": "str", "text": "str", "type": "str", "date": "dt.date", "time": "dt.time",
               "rule": "str", "count": "int", "dates": "tuple[dt.date, ...]"}
#: Fields of the runtime row that no column gives, with their annotation in the view.
_DERIVED_TYPES = {"occurrence": "int | None"}


def _typed_view() -> list[tuple[str, str, bool]]:
    """(field, annotation, has a default) of the type checker's SessionRow in schema.py."""
    tree = ast.parse((ROOT / "bulkschedule" / "sheet" / "schema.py").read_text())
    found = [node for node in ast.walk(tree)
             if isinstance(node, ast.ClassDef) and node.name == "SessionRow"]
    assert len(found) == 1
    return [(f.target.id, ast.unparse(f.annotation), f.value is not None)
            for f in found[0].body
            if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)]


def test_the_typed_view_of_session_row_never_contradicts_the_spec() -> None:
    """schema.SessionRow's annotations are for mypy only; each must match the runtime field."""
    view = _typed_view()
    assert view[0] == ("row", "int", False)
    by_attr = {c.attr: c for c in COLUMNS}
    assert set(_DERIVED_TYPES) == set(columns.DERIVED)
    for name, annotation, has_default in view[1:]:
        if name in _DERIVED_TYPES:
            assert (annotation, has_default) == (_DERIVED_TYPES[name], True), name
            continue
        assert name in by_attr, f"SessionRow.{name} is not a column of the spec"
        col = by_attr[name]
        want = _KIND_TYPES[col.kind] + ("" if col.required else " | None")
        assert annotation == want, name
        assert has_default == (name in SessionRow._field_defaults), name
    # the fields the view names sit where the runtime row puts them
    names = [name for name, _, _ in view]
    assert [SessionRow._fields.index(n) for n in names] == sorted(
        SessionRow._fields.index(n) for n in names)

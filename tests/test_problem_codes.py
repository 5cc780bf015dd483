"""Problem codes: one registry (`problems.CODES`), every code used in the package is in it, every
code is in docs/validation-rules.md, and the errors sample produces only registered codes."""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

import pytest

from bulkschedule.core.problems import CODES, Problem, error, warning
from bulkschedule.sheet import parse
from bulkschedule.sheet.reader import read_table
from bulkschedule.sheet.schema import validate

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bulkschedule"
DOC = ROOT / "docs" / "validation-rules.md"
TODAY = dt.date(2026, 11, 27)

CODE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
#: The areas codes are in ("date" of "date.impossible"): a dotted string in one of them is a code.
AREAS = {code.split(".")[0] for code in CODES}
#: Calls whose ``code=`` argument is a problem code.
MAKERS = {"error", "warning", "Problem", "ParseError"}


def _not_uses(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that name no code in use: docstrings, and the registry's keys."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
        if isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "CODES" for t in targets):
                found.update(id(k) for k in node.value.keys)
    return found


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def codes_in_source() -> dict[str, list[str]]:
    """Every problem code the package's source names -> where ("path:line").

    Two ways to name one: the ``code=`` argument of a call that makes a problem (whatever the
    string), or any other string constant (not a docstring) that is dotted lower case in an area
    codes use, such as a code kept in a table for later.
    """
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _not_uses(tree)
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) in MAKERS:
                for kw in node.keywords:
                    if kw.arg == "code" and isinstance(kw.value, ast.Constant) \
                            and isinstance(kw.value.value, str):
                        found.setdefault(kw.value.value, []).append(f"{where}:{node.lineno}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in skip and CODE.fullmatch(node.value) \
                    and node.value.split(".")[0] in AREAS:
                found.setdefault(node.value, []).append(f"{where}:{node.lineno}")
    return found


def test_codes_are_dotted_lower_case_with_a_meaning() -> None:
    for code, meaning in CODES.items():
        assert CODE.fullmatch(code), code
        assert meaning.strip() and meaning.endswith("."), code


def test_every_code_used_in_the_package_is_registered() -> None:
    used = codes_in_source()
    missing = {code: where for code, where in used.items() if code not in CODES}
    assert not missing, f"codes used but not in problems.CODES: {missing}"
    # the scan sees the codes the sheet uses, so an empty scan cannot pass for a clean one
    assert {"date.impossible", "time.mixed_clock", "column.missing", "trainer.double_booked",
            "time.end_before_start"} <= set(used)


def test_every_registered_code_is_used() -> None:
    assert set(CODES) - set(codes_in_source()) == set()


def test_the_docs_list_every_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([^`]+)` \| ", text, re.MULTILINE))
    assert set(CODES) <= listed, f"missing from {DOC.name}: {sorted(set(CODES) - listed)}"
    # and the docs name no code that does not exist
    named = {m for m in re.findall(r"`([^`\s]+)`", text)
             if CODE.fullmatch(m) and m.split(".")[0] in AREAS}
    assert named <= set(CODES), f"unknown codes in {DOC.name}: {sorted(named - set(CODES))}"


@pytest.fixture(scope="module")
def errors_sample() -> list[Problem]:
    return validate(read_table(ROOT / "sample_data" / "sessions_with_errors.csv"),
                    today=TODAY).problems


def test_every_problem_of_the_errors_sample_has_a_registered_code(
    errors_sample: list[Problem],
) -> None:
    assert errors_sample
    assert all(p.code in CODES for p in errors_sample), [p for p in errors_sample
                                                         if p.code not in CODES]


def test_the_errors_sample_codes(errors_sample: list[Problem]) -> None:
    """One code per problem kind the sample shows (see sample_data/make_samples.py)."""
    assert {(p.row, p.column, p.code) for p in errors_sample} == {
        (None, "descripton", "header.unknown"),
        (4, "name", "cell.required"),
        (5, "trainerErecno", "id.not_digits"),
        (6, "trainerErecno", "id.scientific"),
        (7, "type", "type.unknown"),
        (8, "date", "date.impossible"),
        (9, "date", "date.year_digits"),
        (10, "startTime", "time.bad_hour"),
        (11, "endTime", "time.mixed_clock"),
        (12, "endTime", "time.end_before_start"),
        (13, "lockUntil", "lock.after_date"),
        (14, "date", "date.in_past"),
        (15, "name", "row.duplicate"),
        (17, "key", "key.duplicate"),
        (18, "trainerErecno", "trainer.double_booked"),
        (19, "trainerErecno", "trainer.double_booked"),
        (20, "roomId", "room.double_booked"),
        (21, "roomId", "room.double_booked"),
    }


def test_code_is_a_new_field_of_the_json_problem() -> None:
    p = error(8, "date", "31-02-2027", "does not exist", code="date.impossible")
    assert p.to_dict() == {"row": 8, "column": "date", "value": "31-02-2027",
                           "severity": "error", "message": "does not exist",
                           "code": "date.impossible"}
    assert warning(None, "x", None, "m", code="header.unknown").code == "header.unknown"


def test_a_memoised_parse_failure_keeps_its_code() -> None:
    for _ in range(2):  # the second time comes from the cache
        with pytest.raises(parse.ParseError) as err:
            parse.parse_time("13:00 PM")
        assert err.value.code == "time.mixed_clock"

"""The structure rules that import-linter and mypy do not state by themselves.

import-linter (run by .ci/run) checks the direction of dependencies between layers; these tests
keep the two habits that would let a cycle or an unexplained type hole creep back in.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bulkschedule"
_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_local_import_of_our_own_modules() -> None:
    """An import of a bulkschedule module inside a function is how a cycle hides; the layers make
    every such import possible at module level, so none may remain."""
    found: list[str] = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith(
                    "bulkschedule"
                ):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{inner.lineno}")
    assert found == []


def test_every_type_ignore_names_its_code_and_reason() -> None:
    """``# type: ignore[code]  # why`` only: a bare ignore hides whatever error comes next."""
    bad: list[str] = []
    for path in _sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = _IGNORE.search(line)
            if m is None:
                continue
            reason = m.group("rest").strip().lstrip("#").strip()
            if not m.group("codes") or not reason:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert bad == []


def test_every_layer_is_a_package_with_a_docstring_saying_what_it_owns() -> None:
    for layer in ("core", "sheet", "zoho", "send", "app", "cli", "web", "sandbox"):
        init = PACKAGE / layer / "__init__.py"
        assert init.exists(), layer
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), layer

"""Text that cannot be sent is a validation problem: a request line over what servers accept.

The sandbox (like Apache, nginx and aiohttp) refuses request lines over 8,190 bytes, so a
100,000-character description passed every cell check and failed only at send.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bulkschedule.core.request import MAX_REQUEST_LINE, Request, encode, too_large

PATH_IDS = ("478346000019479103", "478346000019479115", "478346000019479119")


def request(**data: str) -> Request:
    base = {"name": "n", "trainerErecno": "478346000008251001", "type": "0",
            "date": "10-02-2027", "startTime": "10:00 AM", "endTime": "11:00 AM"}
    return Request(2, *PATH_IDS, {**base, **data}, "id", "fp")


def test_the_query_line_is_measured_as_it_will_travel() -> None:
    req = request(description="é" * 200)
    suffix = encode(req.session_data, "query").suffix
    assert "%5Cu00e9" in suffix  # \u00e9, percent-encoded: 8 bytes for one character
    line = len(f"POST {req.path}{suffix} HTTP/1.1")
    assert line < MAX_REQUEST_LINE and too_large(req, "query") is None


@pytest.mark.parametrize("style", ["form", "json"])
def test_a_long_row_fits_in_a_body_style_but_not_the_query(style: str) -> None:
    req = request(description="x" * 20_000)
    why = too_large(req, "query")
    assert why is not None and "--payload-style form" in why and "8,190" in why
    assert too_large(req, style) is None


def test_a_body_over_a_megabyte_is_refused_in_every_style() -> None:
    req = request(description="x" * 1_100_000)
    assert all(too_large(req, style) is not None for style in ("query", "form", "json"))


def test_validate_reports_the_row_with_a_code_and_the_style_that_carries_it(
        tmp_path: Path) -> None:
    sheet = tmp_path / "long.csv"
    with sheet.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
                    "startTime", "endTime", "description"])
        for i, text in enumerate(("fine", "x" * 20_000, "é" * 1_000), start=1):
            w.writerow([*PATH_IDS, f"Row {i}", "478346000008251001", "Classroom",
                        f"1{i}-02-2027", "10:00", "11:00", text])

    def run(*extra: str) -> dict[str, object]:
        out = subprocess.run([sys.executable, "-m", "bulkschedule", "validate", str(sheet),
                              "--json", "--today", "2026-06-01", "--state",
                              str(tmp_path / "state"), *extra],
                             capture_output=True, text=True, timeout=60)
        return {"code": out.returncode, **json.loads(out.stdout)}

    query = run()
    assert query["code"] == 1
    problems = query["problems"]
    assert isinstance(problems, list)
    assert [(p["row"], p["column"], p["code"]) for p in problems] == [
        (3, "description", "row.request_too_large"), (4, "description", "row.request_too_large")]
    assert "--payload-style form" in problems[0]["message"]
    assert "(20,000 characters)" in problems[0]["value"]
    form = run("--payload-style", "form")
    assert form["code"] == 0 and form["problems"] == []

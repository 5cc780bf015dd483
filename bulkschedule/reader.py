"""Read a sheet file into a `RawTable`: cells exactly as stored, with spreadsheet row numbers.

The only stage that touches input files. Nothing here parses dates or IDs; it only refuses to
lose information (IDs stay text, typed cells keep their type).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

#: A cell as read: text from CSV and text cells; float/int/bool for numeric workbook cells;
#: date/datetime/time/timedelta for date- or time-formatted cells; None for an empty cell.
Cell = str | float | int | bool | dt.date | dt.datetime | dt.time | dt.timedelta | None


class ReadError(Exception):
    """The file cannot be read. ``str(err)`` is one clear line naming the file (exit code 2)."""


@dataclass(slots=True)
class RawTable:
    file: str  # the path as the user gave it
    sheet: str | None  # sheet name for workbooks, None for CSV
    headers: list[str]  # header row as typed (empty string for a blank header cell)
    rows: list[list[Cell]]  # data rows, each padded/truncated to len(headers); blank rows dropped
    row_numbers: list[int]  # spreadsheet row number of each entry in rows (header is row 1)
    notes: list[str] = field(default_factory=list)  # e.g. "read as Windows-1252", "delimiter ';'"


def read_table(path: str | Path, sheet: str | None = None) -> RawTable:
    raise NotImplementedError

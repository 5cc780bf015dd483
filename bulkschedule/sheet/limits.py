"""How much of a sheet the reader accepts, and the one-line error when a file asks for more.

A spreadsheet is input from others: a 2 KB workbook can declare a cell at XFD1048576 and make a
native reader ask for 512 GB, a 1 MB one can hold a shared string that inflates to 1 GB. The
reader checks these limits before and while reading, from what it counts itself, never from
sizes the file declares. Each limit is a setting; the error names the flag and the environment
variable that raise it (one list, `SETTINGS`, so messages and documentation cannot drift).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from bulkschedule.core.errors import ReadError

LimitName = Literal["max_rows", "max_columns", "max_cell_chars", "max_part_bytes"]


@dataclass(frozen=True, slots=True)
class Setting:
    """Where a limit is set: the command-line flag and the environment variable."""

    flag: str
    env: str
    unit: str  # what the limit counts, for messages: "rows", "MB per workbook part", ...


#: The flag and variable of each limit (the lead's settings layer reads the same names).
SETTINGS: dict[LimitName, Setting] = {
    "max_rows": Setting("--max-rows", "BULKSCHEDULE_MAX_ROWS", "rows"),
    "max_columns": Setting("--max-columns", "BULKSCHEDULE_MAX_COLUMNS", "columns"),
    "max_cell_chars": Setting("--max-cell-chars", "BULKSCHEDULE_MAX_CELL_CHARS",
                              "characters in one cell"),
    "max_part_bytes": Setting("--max-part-mb", "BULKSCHEDULE_MAX_PART_MB",
                              "MB per workbook part"),
}

#: ``--max-part-mb`` counts in MB of 1,000,000 bytes (the default, 200 MB, is 200,000,000 bytes).
MB = 1_000_000


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """The most a sheet may hold. Defaults: 100,000 data rows, 200 columns, 32,767 characters
    in a cell (Excel's own limit) and 200 MB for any part of a workbook once inflated."""

    max_rows: int = 100_000
    max_columns: int = 200
    max_cell_chars: int = 32_767
    max_part_bytes: int = 200 * MB

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"ReadLimits.{f.name} must be a positive whole number, "
                                 f"not {value!r}")


def exceeded(file: str, found: str, limit: LimitName, limits: ReadLimits) -> ReadError:
    """The error for a file over ``limit``: ``found`` says what was seen, in the file's terms.

    One line: the file, what it holds, the limit, and how to raise it.
    """
    setting = SETTINGS[limit]
    value = getattr(limits, limit)
    shown = f"{value / MB:g}" if limit == "max_part_bytes" else f"{value:,}"
    return ReadError(
        f"{file}: {found}: over the limit of {shown} {setting.unit} "
        f"(raise it with {setting.flag} or {setting.env})"
    )

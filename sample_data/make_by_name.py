"""Regenerate the org samples from the sandbox's default org, deterministically.

    python sample_data/make_by_name.py

Writes:

* ``sample_data/catalogue.json`` - the sandbox's default org (``DEFAULT_ORG``, the org of
  ``run --sandbox`` and ``serve --sandbox``) as a ``--data`` file for ``bulkschedule sandbox``.
* ``sample_data/sessions_by_name.xlsx`` - the term of ``sessions.xlsx`` written as an admin who
  does not know the IDs would write it: course, batch and module names, trainers by name (one by
  email), room names, under friendly headers ("Course", "Trainer", "Room", ...).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from bulkschedule.app.results import set_cell  # noqa: E402
from bulkschedule.sandbox.catalogue import DEFAULT_ORG, default_catalogue  # noqa: E402

#: (header as an admin types it, the canonical column it maps to), in sheet order.
HEADERS: tuple[tuple[str, str], ...] = (
    ("Course", "courseId"), ("Batch", "batchId"), ("Module", "moduleId"),
    ("Session name", "name"), ("Trainer", "trainerErecno"), ("Type", "type"), ("Date", "date"),
    ("Start time", "startTime"), ("End time", "endTime"), ("Description", "description"),
    ("Room", "roomId"), ("Lock until", "lockUntil"), ("Key", "key"),
)
#: Trainers written by email rather than name (an admin may use either).
BY_EMAIL = frozenset({"478346000008251017"})
#: Columns that hold an ID in sessions.xlsx: Text cells there, so Text cells here too.
_ID_COLUMNS = frozenset({"courseId", "batchId", "moduleId", "trainerErecno", "roomId"})


def _make_samples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_samples", HERE / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def catalogue_json() -> str:
    return json.dumps(DEFAULT_ORG, indent=2, ensure_ascii=False) + "\n"


def by_name_rows() -> list[dict[str, object]]:
    """The sample term's rows with every ID replaced by what an admin would type instead."""
    org = default_catalogue()
    rows = []
    for row in _make_samples().term_sessions():
        course = org.courses[str(row["courseId"])]
        batch = course.batches[str(row["batchId"])]
        trainer = org.trainers[str(row["trainerErecno"])]
        room = org.rooms[str(row["roomId"])] if row.get("roomId") else None
        rows.append({
            **row,
            "courseId": course.name, "batchId": batch.name,
            "moduleId": batch.modules[str(row["moduleId"])],
            "trainerErecno": trainer.email if trainer.erecno in BY_EMAIL else trainer.name,
            "roomId": room.name if room else None,
        })
    return rows


def write_by_name_xlsx(path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.properties.creator = "bulkschedule"
    wb.properties.created = dt.datetime(2026, 1, 1)  # fixed: same script, same content
    ws: Any = wb.active
    ws.title = "Sessions"
    for c, (header, _) in enumerate(HEADERS, start=1):
        cell = ws.cell(row=1, column=c)
        set_cell(cell, header)
        cell.font = Font(bold=True)
    for r, row in enumerate(by_name_rows(), start=2):
        for c, (_, name) in enumerate(HEADERS, start=1):
            value = row.get(name)
            cell = ws.cell(row=r, column=c)
            set_cell(cell, value, text_format=name in _ID_COLUMNS)
            if name in ("startTime", "endTime") and value is not None:
                cell.number_format = "hh:mm AM/PM"
    ws.freeze_panes = "A2"
    wb.save(path)


def main() -> None:
    (HERE / "catalogue.json").write_text(catalogue_json(), encoding="utf-8")
    write_by_name_xlsx(HERE / "sessions_by_name.xlsx")
    for path in ("sample_data/catalogue.json", "sample_data/sessions_by_name.xlsx"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

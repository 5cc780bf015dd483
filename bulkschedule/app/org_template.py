"""``template --online``: the template with drop-downs of the org, so an admin picks instead of
typing 18-digit IDs.

The choices live on a hidden ``Lists`` sheet (a list validation may point at a range there, which
Excel and LibreOffice both honour, and a range has no 255-character limit as an inline list has).
Each choice is text the name resolver reads back: a course by name, a batch as
"Course › Batch", a module as "Course › Batch › Module", a trainer as "Name <email>", a room by
name (see `org.preflight.typed_name`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from openpyxl import Workbook
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.datavalidation import DataValidation

from bulkschedule.app.results import TEMPLATE_ROWS, set_cell, template_workbook
from bulkschedule.core.files import atomic_write
from bulkschedule.org.lists import OrgLists
from bulkschedule.sheet.columns import SPEC, Spec

LISTS_SHEET = "Lists"


def org_template(lists: OrgLists, spec: Spec = SPEC) -> Workbook:
    """The template of `template_workbook` with a list validation on each ID column that has
    choices, pointing at its column of the hidden Lists sheet."""
    wb = template_workbook(spec)
    sessions = wb["Sessions"]
    hidden = wb.create_sheet(LISTS_SHEET)
    hidden.sheet_state = "hidden"
    last = TEMPLATE_ROWS + 1
    for i, (name, choices) in enumerate(
            ((n, c) for n, c in lists.columns.items() if c and n in spec.names), start=1):
        letter = get_column_letter(i)
        set_cell(hidden.cell(row=1, column=i), name)
        for r, choice in enumerate(choices, start=2):
            set_cell(hidden.cell(row=r, column=i), choice, text_format=True)
        target = get_column_letter(spec.names.index(name) + 1)
        source = f"{quote_sheetname(LISTS_SHEET)}!${letter}$2:${letter}${len(choices) + 1}"
        dv = DataValidation(type="list", formula1=source, allow_blank=True,
                            showErrorMessage=False, showInputMessage=True)
        dv.promptTitle = name
        dv.prompt = "Pick from the org, or type an ID"
        dv.add(f"{target}2:{target}{last}")
        sessions.add_data_validation(dv)
    return wb


def write_org_template(path: str | os.PathLike[str], lists: OrgLists,
                       spec: Spec = SPEC) -> None:
    """Write the template with the org's drop-downs, atomically."""
    atomic_write(path, org_template(lists, spec).save)


def names(lists: OrgLists) -> Sequence[str]:
    """Every choice, for tests and messages."""
    return [c for column in lists.columns.values() for c in column]

"""Regenerate the shipped sample sheets and templates, deterministically.

    python sample_data/make_samples.py

Writes:

* ``sample_data/sessions.xlsx`` - a realistic term (Jan-Mar 2027) of 40 sessions over two modules,
  all valid with no warnings (when "today" is before 2027). Built on the template, so it also shows
  what a filled-in template looks like: IDs as Text cells, real date and time cells.
* ``sample_data/sessions_with_errors.csv`` - one row per kind of problem, plus valid rows; what
  `tests/test_samples.py` expects of it is listed in `EXPECTED_PROBLEMS`.
* ``sample_data/recurring.xlsx`` - a summer term (Apr-Jul 2027) built from a handful of repeating
  rows and one single session, with two holidays on its Holidays sheet; what each row makes is
  listed in `RECURRING_EXPANSIONS`.
* ``templates/sessions.xlsx`` and ``templates/sessions.csv`` - what ``bulkschedule template``
  writes.
* the generated tables in ``docs/spreadsheet-format.md`` (the columns, from the column spec) and
  ``docs/validation-rules.md`` (the problem codes, from ``problems.CODES``), between their
  ``<!-- begin: ... -->`` and ``<!-- end: ... -->`` markers.

The IDs are the ones the sandbox catalogue knows, so the samples can be sent to the sandbox as-is.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from bulkschedule.app.results import (  # noqa: E402
    set_cell,
    template_workbook,
    write_template,
    write_template_csv,
)
from bulkschedule.core.problems import CODES  # noqa: E402
from bulkschedule.sheet import columns  # noqa: E402

COURSE = "478346000019479103"
BATCH = "478346000019479115"  # runs 04-01-2027 to 26-03-2027
MODULE_FOUNDATIONS = "478346000019479119"
MODULE_CUSTOMER = "478346000019479131"
TRAINERS = ("478346000008251001", "478346000008251017", "478346000008251033")
ROOMS = ("478346000010125093", "478346000010125107")
TERM_START = dt.date(2027, 1, 4)  # a Monday

# (module, weekday 0=Mon, start, end, type, trainer, room or None, weeks, topics)
_SERIES = (
    (MODULE_FOUNDATIONS, 0, dt.time(9, 30), dt.time(11, 0), "Classroom", TRAINERS[0], ROOMS[0], 12,
     ("Induction: health and safety", "Fire safety and evacuation", "Manual handling",
      "Data protection basics", "Information security", "Equality and inclusion",
      "Safeguarding essentials", "First aid awareness", "Working with display screens",
      "Lone working", "Environmental awareness", "Foundations review")),
    (MODULE_FOUNDATIONS, 2, dt.time(14, 0), dt.time(15, 30), "E-learning", TRAINERS[1], None, 8,
     ("Company systems tour", "Expenses and travel policy", "Email and calendar etiquette",
      "Records management", "Cyber hygiene", "Accessibility in documents",
      "Ethics and conduct", "Foundations quiz")),
    (MODULE_CUSTOMER, 1, dt.time(10, 0), dt.time(12, 0), "Classroom", TRAINERS[2], ROOMS[1], 12,
     ("Customer care: first contact", "Active listening", "Handling complaints",
      "Telephone skills", "Writing clear replies", "Difficult conversations",
      "Service recovery", "Vulnerable customers", "Escalation paths",
      "Measuring satisfaction", "Case studies", "Customer care assessment")),
    (MODULE_CUSTOMER, 3, dt.time(13, 0), dt.time(14, 30), "Classroom", TRAINERS[0], ROOMS[0], 8,
     ("Product knowledge 1", "Product knowledge 2", "Billing questions", "Returns and refunds",
      "Live chat practice", "Social media enquiries", "Team handovers", "Customer care review")),
)

_DESCRIPTIONS = {
    "Induction: health and safety": "Bring your badge and wear flat shoes.",
    "Fire safety and evacuation": "Includes a walk of the evacuation route.",
    "Data protection basics": "Pre-reading: the data protection policy on the intranet.",
    "Customer care: first contact": "Meet in the training room on the 2nd floor.",
    "Handling complaints": "Role play; no preparation needed.",
    "Company systems tour": "Self-paced; about 90 minutes.",
    "Customer care assessment": "Short written assessment at the end.",
}
_KEYS = {
    "Induction: health and safety": "T1-W1-IND",
    "Fire safety and evacuation": "T1-W2-FIRE",
    "Customer care: first contact": "T1-W1-CC1",
    "Customer care assessment": "T1-W12-CCA",
}


def term_sessions() -> list[dict[str, object]]:
    """The 40 sessions of the sample term, in date order, as typed cells."""
    rows: list[dict[str, object]] = []
    for module, weekday, start, end, kind, trainer, room, weeks, topics in _SERIES:
        for week in range(weeks):
            day = TERM_START + dt.timedelta(weeks=week, days=weekday)
            name = topics[week]
            row: dict[str, object] = {
                "courseId": COURSE, "batchId": BATCH, "moduleId": module, "name": name,
                "trainerErecno": trainer, "type": kind, "date": day, "startTime": start,
                "endTime": end, "description": _DESCRIPTIONS.get(name), "roomId": room,
                "key": _KEYS.get(name),
            }
            if week % 4 == 1:  # attendance open until the day before, on some rows
                row["lockUntil"] = day - dt.timedelta(days=1)
            elif week % 4 == 3:
                row["lockUntil"] = day
            rows.append(row)
    rows.sort(key=lambda r: (r["date"], r["startTime"]))  # type: ignore[arg-type, return-value]
    return rows


def write_sessions_xlsx(path: Path) -> None:
    wb = template_workbook()
    ws = wb["Sessions"]
    kinds = {c.name: c.kind for c in columns.COLUMNS}
    for r, row in enumerate(term_sessions(), start=2):
        for c, name in enumerate(columns.NAMES, start=1):
            value = row.get(name)
            cell = ws.cell(row=r, column=c)
            set_cell(cell, value, text_format=kinds[name] == "id")
            if kinds[name] == "time" and value is not None:
                cell.number_format = "hh:mm AM/PM"
    wb.save(path)


# The recurring sample: the summer term's batch (12-04-2027 to 02-07-2027), its two modules.
SUMMER_BATCH = "478346000019479143"
SUMMER_FOUNDATIONS = "478346000019479155"
SUMMER_CUSTOMER = "478346000019479167"
RIVERSIDE = "478346000010125115"

#: The rows of sample_data/recurring.xlsx, as typed (dates and times as real cells).
RECURRING_ROWS: tuple[dict[str, object], ...] = (
    {"moduleId": SUMMER_FOUNDATIONS, "name": "Foundations workshop {n} of {count}",
     "trainerErecno": TRAINERS[0], "type": "Classroom", "date": dt.date(2027, 4, 12),
     "startTime": dt.time(9, 30), "endTime": dt.time(11, 0),
     "description": "Week {n}: bring your workbook", "roomId": ROOMS[0],
     "lockUntil": dt.date(2027, 4, 11), "key": "SUM-FND-WS", "repeat": "weekly",
     "until": dt.date(2027, 6, 28)},
    {"moduleId": SUMMER_FOUNDATIONS, "name": "Foundations check-in ({date})",
     "trainerErecno": TRAINERS[1], "type": "E-learning", "date": dt.date(2027, 4, 14),
     "startTime": dt.time(14, 0), "endTime": dt.time(14, 30), "repeat": "every 2 weeks",
     "count": 6},
    {"moduleId": SUMMER_CUSTOMER, "name": "Customer care: practice lab",
     "trainerErecno": TRAINERS[2], "type": "Classroom", "date": dt.date(2027, 4, 13),
     "startTime": dt.time(10, 0), "endTime": dt.time(12, 0), "roomId": ROOMS[1],
     "key": "SUM-CC-LAB", "repeat": "Tue, Thu", "until": dt.date(2027, 7, 1),
     "skip": "13-05-2027"},
    {"moduleId": SUMMER_CUSTOMER, "name": "Customer care: morning huddle",
     "trainerErecno": TRAINERS[1], "type": "E-learning", "date": dt.date(2027, 4, 12),
     "startTime": dt.time(8, 30), "endTime": dt.time(8, 45), "repeat": "weekdays",
     "until": dt.date(2027, 4, 23)},
    {"moduleId": SUMMER_FOUNDATIONS, "name": "Foundations review {n}",
     "trainerErecno": TRAINERS[2], "type": "Classroom", "date": dt.date(2027, 4, 16),
     "startTime": dt.time(14, 0), "endTime": dt.time(15, 0), "roomId": RIVERSIDE,
     "repeat": "every 2 weeks on Fri", "count": 5},
    {"moduleId": SUMMER_CUSTOMER, "name": "Customer care assessment",
     "trainerErecno": TRAINERS[0], "type": "Classroom", "date": dt.date(2027, 7, 2),
     "startTime": dt.time(13, 0), "endTime": dt.time(15, 0), "roomId": ROOMS[0],
     "key": "SUM-CC-ASSESS"},
)
#: The Holidays sheet of the recurring sample: (date or range, name).
RECURRING_HOLIDAYS: tuple[tuple[object, str], ...] = (
    (dt.date(2027, 5, 3), "Early May bank holiday"),
    ("31-05-2027..04-06-2027", "Half term"),
)
#: What each repeating row of the recurring sample makes: row -> (sessions, first, last).
RECURRING_EXPANSIONS: dict[int, tuple[int, dt.date, dt.date]] = {
    2: (10, dt.date(2027, 4, 12), dt.date(2027, 6, 28)),  # 12 Mondays, 2 of them holidays
    3: (6, dt.date(2027, 4, 14), dt.date(2027, 6, 23)),
    4: (21, dt.date(2027, 4, 13), dt.date(2027, 7, 1)),  # 24, less 13 May and half term's 2
    5: (10, dt.date(2027, 4, 12), dt.date(2027, 4, 23)),
    6: (5, dt.date(2027, 4, 16), dt.date(2027, 6, 11)),
}


def write_recurring_xlsx(path: Path) -> None:
    """The recurring sample, on the template (its Holidays sheet filled in)."""
    wb = template_workbook()
    ws = wb["Sessions"]
    kinds = {c.name: c.kind for c in columns.COLUMNS}
    for r, typed in enumerate(RECURRING_ROWS, start=2):
        row = {"courseId": COURSE, "batchId": SUMMER_BATCH, **typed}
        for c, name in enumerate(columns.NAMES, start=1):
            value = row.get(name)
            cell = ws.cell(row=r, column=c)
            set_cell(cell, value, text_format=kinds[name] in ("id", "rule", "dates"))
            if kinds[name] == "time" and value is not None:
                cell.number_format = "hh:mm AM/PM"
    holidays = wb["Holidays"]
    for r, (day, label) in enumerate(RECURRING_HOLIDAYS, start=2):
        set_cell(holidays.cell(row=r, column=1), day, text_format=isinstance(day, str))
        set_cell(holidays.cell(row=r, column=2), label)
    wb.save(path)


# The errors sample: header with a misspelt optional column, then one row per problem kind.
ERROR_HEADER = ("courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
                "startTime", "endTime", "descripton", "roomId", "lockUntil", "key")
T1, T2, T3 = TRAINERS
R1, R2 = ROOMS
M1 = MODULE_FOUNDATIONS
_C, _B = COURSE, BATCH

ERROR_ROWS: tuple[tuple[str, ...], ...] = (
    # row 2: valid
    (_C, _B, M1, "Fire safety refresher", T1, "Classroom", "01-02-2027", "10:00 AM", "11:00 AM",
     "Annual refresher", R1, "", ""),
    # row 3: valid, E-learning without a room
    (_C, _B, M1, "Data protection e-module", T2, "E-learning", "02-02-2027", "2:00 PM", "3:00 PM",
     "", "", "", ""),
    # row 4: a required value missing (name)
    (_C, _B, M1, "", T1, "Classroom", "03-02-2027", "10:00 AM", "11:00 AM", "", R1, "", ""),
    # row 5: an ID with a letter in it
    (_C, _B, M1, "Manual handling", "47834600000825100A", "Classroom", "04-02-2027", "10:00 AM",
     "11:00 AM", "", R1, "", ""),
    # row 6: an ID that went through Excel as a number and came out in scientific notation
    (_C, _B, M1, "Lone working", "4.78346E+17", "Classroom", "05-02-2027", "10:00 AM",
     "11:00 AM", "", R1, "", ""),
    # row 7: a type that is neither Classroom nor E-learning
    (_C, _B, M1, "Team briefing", T1, "Webinar", "08-02-2027", "10:00 AM", "11:00 AM", "", R1,
     "", ""),
    # row 8: a date that does not exist
    (_C, _B, M1, "Display screen safety", T1, "Classroom", "31-02-2027", "10:00 AM", "11:00 AM",
     "", R1, "", ""),
    # row 9: a two-digit year
    (_C, _B, M1, "First aid awareness", T1, "Classroom", "09-02-27", "10:00 AM", "11:00 AM", "",
     R1, "", ""),
    # row 10: an hour that does not exist
    (_C, _B, M1, "Stress awareness", T1, "Classroom", "10-02-2027", "25:00", "11:00 AM", "", R1,
     "", ""),
    # row 11: a 24-hour time with AM/PM
    (_C, _B, M1, "Ergonomics", T1, "Classroom", "11-02-2027", "12:00 PM", "13:00 PM", "", R1,
     "", ""),
    # row 12: ends before it starts
    (_C, _B, M1, "Equality and inclusion", T1, "Classroom", "12-02-2027", "3:00 PM", "2:00 PM",
     "", R1, "", ""),
    # row 13: lockUntil after the session date (warning)
    (_C, _B, M1, "Safeguarding essentials", T1, "Classroom", "15-02-2027", "10:00 AM",
     "11:00 AM", "", R1, "20-02-2027", ""),
    # row 14: a date in the past (warning)
    (_C, _B, M1, "Information security", T1, "Classroom", "20-11-2026", "10:00 AM", "11:00 AM",
     "", R1, "", ""),
    # row 15: the same session as row 2 (same module, name, date and start time)
    (_C, _B, M1, "Fire safety refresher", T2, "Classroom", "01-02-2027", "10:00 AM",
     "11:00 AM", "Entered twice by mistake", "", "", ""),
    # rows 16-17: the same key twice
    (_C, _B, M1, "Records management", T1, "Classroom", "16-02-2027", "10:00 AM", "11:00 AM", "",
     R1, "", "FS-01"),
    (_C, _B, M1, "Cyber hygiene", T1, "Classroom", "17-02-2027", "10:00 AM", "11:00 AM", "", R1,
     "", "FS-01"),
    # rows 18-19: one trainer booked twice at overlapping times
    (_C, _B, M1, "Coaching skills", T3, "Classroom", "18-02-2027", "10:00 AM", "12:00 PM", "",
     R1, "", ""),
    (_C, _B, M1, "Feedback skills", T3, "Classroom", "18-02-2027", "11:00 AM", "1:00 PM", "", R2,
     "", ""),
    # rows 20-21: one room booked twice at overlapping times
    (_C, _B, M1, "Minute taking", T1, "Classroom", "19-02-2027", "9:00 AM", "10:30 AM", "", R2,
     "", ""),
    (_C, _B, M1, "Presentation skills", T2, "Classroom", "19-02-2027", "10:00 AM", "11:30 AM",
     "", R2, "", ""),
    # row 22: valid, 24-hour times and an ISO date
    (_C, _B, M1, "Wellbeing at work", T2, "Classroom", "2027-02-22", "14:00", "15:30",
     "Optional session", R2, "22-02-2027", "WB-01"),
)

#: (row, column, severity) of every problem the errors sample must produce, and nothing else.
EXPECTED_PROBLEMS: frozenset[tuple[int | None, str, str]] = frozenset({
    (None, "descripton", "warning"),
    (4, "name", "error"),
    (5, "trainerErecno", "error"),
    (6, "trainerErecno", "error"),
    (7, "type", "error"),
    (8, "date", "error"),
    (9, "date", "error"),
    (10, "startTime", "error"),
    (11, "endTime", "error"),
    (12, "endTime", "error"),
    (13, "lockUntil", "warning"),
    (14, "date", "warning"),
    (15, "name", "error"),
    (17, "key", "error"),
    (18, "trainerErecno", "error"),
    (19, "trainerErecno", "error"),
    (20, "roomId", "error"),
    (21, "roomId", "error"),
})
VALID_ERROR_SAMPLE_ROWS = (2, 3, 13, 14, 16, 22)


def errors_csv() -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # as Excel's "Save as CSV" writes
    writer.writerow(ERROR_HEADER)
    writer.writerows(ERROR_ROWS)
    return buf.getvalue()


# ------------------------------------------------------------------------------ generated docs

DOCS = ROOT / "docs"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def columns_table(spec: columns.Spec = columns.SPEC) -> str:
    """The column table of docs/spreadsheet-format.md."""
    lines = ["| column | required | what it is | example | also accepted headers |",
             "|---|---|---|---|---|"]
    for c in spec.columns:
        aliases = ", ".join(f"`{a}`" for a in c.aliases) or "—"
        lines.append(f"| `{c.name}` | {'**yes**' if c.required else 'no'} | "
                     f"{_cell(c.description)} | `{c.example}` | {aliases} |")
    return "\n".join(lines)


def codes_table() -> str:
    """The problem-code table of docs/validation-rules.md."""
    lines = ["| code | meaning |", "|---|---|"]
    lines += [f"| `{code}` | {_cell(meaning)} |" for code, meaning in CODES.items()]
    return "\n".join(lines)


#: doc file -> (marker name, table) for every generated table
GENERATED: dict[str, tuple[str, str]] = {
    "spreadsheet-format.md": ("columns table", columns_table()),
    "validation-rules.md": ("codes table", codes_table()),
}


def with_table(text: str, marker: str, table: str) -> str:
    """``text`` with the lines between ``<!-- begin: marker ... -->`` and ``<!-- end: marker -->``
    replaced by ``table``."""
    pattern = re.compile(rf"(<!-- begin: {re.escape(marker)}\b[^\n]*-->\n)(?:.*?\n)??"
                         rf"(<!-- end: {re.escape(marker)} -->)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"no '{marker}' markers to fill")
    return pattern.sub(lambda m: f"{m[1]}{table}\n{m[2]}", text, count=1)


def write_docs() -> list[str]:
    written = []
    for name, (marker, table) in GENERATED.items():
        path = DOCS / name
        text = path.read_text(encoding="utf-8")
        path.write_text(with_table(text, marker, table), encoding="utf-8")
        written.append(f"docs/{name}")
    return written


def main() -> None:
    write_sessions_xlsx(HERE / "sessions.xlsx")
    write_recurring_xlsx(HERE / "recurring.xlsx")
    (HERE / "sessions_with_errors.csv").write_bytes(errors_csv().encode("utf-8"))
    templates = ROOT / "templates"
    templates.mkdir(exist_ok=True)
    write_template(templates / "sessions.xlsx")
    write_template_csv(templates / "sessions.csv")
    docs = write_docs()
    for path in ("sample_data/sessions.xlsx", "sample_data/recurring.xlsx",
                 "sample_data/sessions_with_errors.csv",
                 "templates/sessions.xlsx", "templates/sessions.csv", *docs):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""`job.send` with a dry run over a journal that recorded sessions (issue 12): every row's action,
the statuses and changes it reports, and ``plan_document`` (``run --dry-run --json``'s contract).
A dry run makes no call, so no HTTP here."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import openpyxl

from bulkschedule.app import job
from bulkschedule.core.constants import EXIT_INCOMPLETE, EXIT_OK
from bulkschedule.core.problems import Status
from bulkschedule.send.journal import Journal
from bulkschedule.send.plan import Zoho
from bulkschedule.send.runner import Event, OutcomeEvent
from bulkschedule.zoho.auth import StaticToken
from bulkschedule.zoho.records import ListedSession

TODAY = dt.date(2026, 6, 1)
BASE = "https://people.zoho.com"
M = "478346000019479119"
T1 = "478346000008251001"
T2 = "478346000008251002"
HEADERS = ["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
           "startTime", "endTime"]
S = {n: f"47834600002011300{n}" for n in range(1, 10)}


def line(name: str, start: str, end: str, trainer: str = T1, **extra: str) -> dict[str, str]:
    return {"courseId": "478346000019479103", "batchId": "478346000019479115", "moduleId": M,
            "name": name, "trainerErecno": trainer, "type": "Classroom", "date": "04-01-2027",
            "startTime": start, "endTime": end, **extra}


TERM = [
    line("Induction", "09:00 AM", "09:45 AM"),
    line("Fire safety", "10:00 AM", "10:45 AM"),
    line("First aid", "11:00 AM", "11:45 AM"),
]


def write_sheet(path: Path, rows: list[dict[str, str]]) -> Path:
    headers = list(dict.fromkeys([*HEADERS, *(h for r in rows for h in r)]))
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, headers)
        w.writeheader()
        w.writerows(rows)
    return path


def settings(state: Path) -> job.SendSettings:
    return job.SendSettings(api_base=BASE, state_dir=state)


def record_term(tmp_path: Path, state: Path) -> dict[int, str]:
    """An earlier run created the term: row -> sessionId, as the journal recorded it."""
    first = job.load(write_sheet(tmp_path / "term.csv", TERM), today=TODAY)
    assert first.problems == []
    out = {}
    with Journal(state) as journal:
        run = journal.start_run("term.csv", BASE)
        for n, req in enumerate(job.requests_for(first), start=1):
            journal.claim(BASE, req, run)
            journal.record_created(BASE, req, run, S[n], attempts=1)
            out[req.row] = S[n]
        journal.finish_run(run, {"created": len(out)})
    return out


def journal_rows(state: Path) -> list[Any]:
    with Journal(state) as journal:
        return journal.entries()


async def dry_run(sheet: Path, state: Path, *, zoho: Zoho | None = None,
                  results: Path | None = None) -> tuple[job.JobResult, list[Event]]:
    events: list[Event] = []
    result = await job.send(job.load(sheet, today=TODAY), settings(state),
                            tokens=lambda s: StaticToken("never used"), results_path=results,
                            dry_run=True, on_event=events.append, zoho=zoho)
    return result, events


async def test_a_dry_run_plans_every_row_from_the_journal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ids = record_term(tmp_path, state)
    before = journal_rows(state)
    edited = [
        TERM[0],                                                   # row 2: as created
        line("Fire safety", "10:00 AM", "11:00 AM", trainer=T2),   # row 3: longer, other trainer
        TERM[2],                                                   # row 4: as created
        line("Manual handling", "01:00 PM", "01:45 PM"),           # row 5: new
        line("Broken", "02:00 PM", "01:00 PM"),                    # row 6: invalid (ends first)
    ]
    results = tmp_path / "edited.results.xlsx"
    result, events = await dry_run(write_sheet(tmp_path / "edited.csv", edited), state,
                                   results=results)
    o = {row: x for (row, _), x in result.outcomes.items()}
    assert {r: o[r].status for r in o} == {
        2: Status.EXISTS, 3: Status.WOULD_UPDATE, 4: Status.EXISTS, 5: Status.WOULD_CREATE,
        6: Status.INVALID}
    assert (o[2].session_id, o[3].session_id, o[4].session_id) == (ids[2], ids[3], ids[4])
    assert o[5].session_id is None
    assert o[3].changes == {"endTime": ("10:45 AM", "11:00 AM"), "trainerErecno": (T1, T2)}
    assert not o[2].changes and not o[5].changes
    assert o[3].to_dict()["changes"] == {"endTime": ["10:45 AM", "11:00 AM"],
                                         "trainerErecno": [T1, T2]}
    assert result.exit_code == EXIT_INCOMPLETE  # the invalid row
    # one event per input row
    assert sorted(e.outcome.row for e in events if isinstance(e, OutcomeEvent)) == [2, 3, 4, 5, 6]
    # a dry run writes nothing about the rows
    assert journal_rows(state) == before
    statuses = [r[0] for r in openpyxl.load_workbook(results)["Results"].iter_rows(
        min_row=2, min_col=12, max_col=12, values_only=True)]  # after row, occurrence
    assert statuses == ["exists", "would-update", "exists", "would-create", "invalid"]

    doc = job.plan_document(result)
    assert doc == {
        "file": str(tmp_path / "edited.csv"),
        "rows": 5,
        "plan": {"create": 1, "update": 1, "unchanged": 2, "invalid": 1},
        "actions": [
            {"row": 2, "action": "unchanged", "sessionId": ids[2], "changes": {}},
            {"row": 3, "action": "update", "sessionId": ids[3],
             "changes": {"endTime": ["10:45 AM", "11:00 AM"], "trainerErecno": [T1, T2]}},
            {"row": 4, "action": "unchanged", "sessionId": ids[4], "changes": {}},
            {"row": 5, "action": "create", "sessionId": None, "changes": {}},
            {"row": 6, "action": "invalid", "sessionId": None, "changes": {}},
        ],
    }
    assert result.plan is not None and result.plan.counts() == doc["plan"]


async def test_a_dry_run_with_nothing_but_planned_rows_exits_ok(tmp_path: Path) -> None:
    state = tmp_path / "state"
    record_term(tmp_path, state)
    edited = [TERM[0], line("Fire safety", "10:15 AM", "10:45 AM"), TERM[2],
              line("New", "03:00 PM", "03:30 PM")]
    result, _ = await dry_run(write_sheet(tmp_path / "edited.csv", edited), state)
    # row 3 moved its start time: its identity (module, name, date, start) is new, so without a
    # key or a sessionId it is a new session
    assert [result.outcomes[(r, 0)].status for r in (2, 3, 4, 5)] == [
        Status.EXISTS, Status.WOULD_CREATE, Status.EXISTS, Status.WOULD_CREATE]
    assert result.exit_code == EXIT_OK


async def test_a_results_workbook_given_back_names_its_sessions(tmp_path: Path) -> None:
    """With a sessionId column a row may change its start time and stay its session; a second
    row naming the same session is refused by validation; a row naming a session the journal
    gave another row is refused by the plan."""
    state = tmp_path / "state"
    ids = record_term(tmp_path, state)
    edited = [
        {**TERM[0], "sessionId": ids[2]},
        {**line("Fire safety", "10:15 AM", "10:55 AM"), "sessionId": ids[3]},  # moved
        {**TERM[2], "sessionId": ""},                                            # by identity
        {**line("Copy of induction", "04:00 PM", "04:30 PM"), "sessionId": ids[2]},  # twice
    ]
    result, _ = await dry_run(write_sheet(tmp_path / "edited.results.csv", edited), state)
    o = {row: x for (row, _), x in result.outcomes.items()}
    assert [o[r].status for r in (2, 3, 4, 5)] == [
        Status.EXISTS, Status.WOULD_UPDATE, Status.EXISTS, Status.INVALID]
    assert o[3].session_id == ids[3]
    assert o[3].changes == {"startTime": ("10:00 AM", "10:15 AM"),
                            "endTime": ("10:45 AM", "10:55 AM")}
    assert "sessionid.duplicate" in {p.code for p in result.validation.problems if p.row == 5}
    doc = job.plan_document(result)
    assert doc["plan"] == {"create": 0, "update": 1, "unchanged": 2, "invalid": 1}
    assert [(a["row"], a["action"], a["sessionId"]) for a in doc["actions"]] == [
        (2, "unchanged", ids[2]), (3, "update", ids[3]), (4, "unchanged", ids[4]),
        (5, "invalid", None)]


async def test_a_session_named_by_two_rows_through_the_journal_is_invalid(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ids = record_term(tmp_path, state)
    # row 2 is session 1 by the journal; row 3 names session 1 in its sessionId cell
    edited = [TERM[0], {**line("Renamed", "05:00 PM", "05:30 PM"), "sessionId": ids[2]}]
    result, _ = await dry_run(write_sheet(tmp_path / "edited.csv", edited), state)
    bad = result.outcomes[(3, 0)]
    assert (bad.status, bad.session_id) == (Status.INVALID, None)
    assert "row 2" in bad.message and ids[2] in bad.message
    doc = job.plan_document(result)
    assert doc["plan"] == {"create": 0, "update": 0, "unchanged": 1, "invalid": 1}
    assert doc["actions"][1] == {"row": 3, "action": "invalid", "sessionId": None, "changes": {}}


def listed(sid: str, name: str, start: dt.time, end: dt.time,
           trainer: str = T1) -> ListedSession:
    return ListedSession(id=sid, name=name, date=dt.date(2027, 1, 4), start=start, end=end,
                         trainer_erecno=trainer, room_id=None, module_id=M, type="Classroom",
                         description=None)


async def test_a_dry_run_compares_with_what_zoho_lists(tmp_path: Path) -> None:
    """The online stage's listings: a row Zoho holds that the journal never saw is ``exists``
    (and not recorded in a dry run), an edit made in Zoho is seen as a change, and what no row
    is stays off the rows."""
    state = tmp_path / "state"
    ids = record_term(tmp_path, state)
    before = journal_rows(state)
    sheet = write_sheet(tmp_path / "term2.csv", [*TERM, line("Lunch talk", "12:00 PM",
                                                             "12:45 PM")])
    in_zoho = [
        listed(ids[2], "Induction", dt.time(9), dt.time(9, 45)),
        listed(ids[3], "Fire safety", dt.time(10), dt.time(10, 50)),  # edited in Zoho
        listed(ids[4], "First aid", dt.time(11), dt.time(11, 45)),
        listed(S[8], "Lunch talk", dt.time(12), dt.time(12, 45)),  # made in Zoho's screens
        listed(S[9], "Stray", dt.time(16), dt.time(17)),
    ]
    zoho = Zoho({M: in_zoho}, {(5, 0): in_zoho[3]})
    result, _ = await dry_run(sheet, state, zoho=zoho)
    o = {row: x for (row, _), x in result.outcomes.items()}
    assert [o[r].status for r in (2, 3, 4, 5)] == [
        Status.EXISTS, Status.WOULD_UPDATE, Status.EXISTS, Status.EXISTS]
    assert o[3].changes == {"endTime": ("10:50 AM", "10:45 AM")}
    assert (o[5].session_id, o[5].message) == (S[8], job.ALREADY_IN_ZOHO)
    assert journal_rows(state) == before  # the found session is recorded only by a real run
    assert result.plan is not None
    assert [s.id for s in result.plan.only_in_zoho] == [S[9]]
    assert job.plan_document(result)["plan"] == {
        "create": 0, "update": 1, "unchanged": 3, "invalid": 0}


async def test_plan_document_has_one_action_per_input_row(tmp_path: Path) -> None:
    rows = [line(f"S{n}", f"{n:02d}:00 AM", f"{n:02d}:30 AM") for n in range(1, 10)]
    rows[4]["trainerErecno"] = "not an id"
    result, _ = await dry_run(write_sheet(tmp_path / "fresh.csv", rows), tmp_path / "state")
    doc = job.plan_document(result)
    assert [a["row"] for a in doc["actions"]] == list(range(2, 11))
    assert doc["rows"] == 9 == sum(doc["plan"].values())
    assert doc["plan"] == {"create": 8, "update": 0, "unchanged": 0, "invalid": 1}
    assert {a["action"] for a in doc["actions"]} == {"create", "invalid"}
    assert all(set(a) == {"row", "action", "sessionId", "changes"} for a in doc["actions"])


async def test_a_run_without_update_reports_changed_and_records_what_zoho_holds(
        tmp_path: Path) -> None:
    """Not a dry run, but every row is a session already: nothing to send, so no HTTP. A row
    differing from its session is ``changed`` (with the hint to add --update); a session found
    in Zoho is recorded, with what was sent only when it holds the row's details."""
    state = tmp_path / "state"
    sheet = write_sheet(tmp_path / "term.csv", TERM)
    in_zoho = [listed(S[1], "Induction", dt.time(9), dt.time(9, 45)),
               listed(S[2], "Fire safety", dt.time(10), dt.time(10, 30)),  # row says 10:45
               listed(S[3], "First aid", dt.time(11), dt.time(11, 45))]
    zoho = Zoho({M: in_zoho}, {(2, 0): in_zoho[0], (3, 0): in_zoho[1], (4, 0): in_zoho[2]})
    validation = job.load(sheet, today=TODAY)
    result = await job.send(validation, settings(state), tokens=lambda s: StaticToken("unused"),
                            results_path=None, zoho=zoho)
    o = {row: x for (row, _), x in result.outcomes.items()}
    assert [o[r].status for r in (2, 3, 4)] == [Status.EXISTS, Status.CHANGED, Status.EXISTS]
    assert o[3].changes == {"endTime": ("10:30 AM", "10:45 AM")}
    assert "--update" in o[3].message and o[3].session_id == S[2]
    assert result.exit_code == EXIT_INCOMPLETE
    requests = {r.row: r for r in job.requests_for(validation)}
    with Journal(state) as journal:
        same, differs = journal.lookup(BASE, requests[2]), journal.lookup(BASE, requests[3])
    assert same is not None and (same.session_id, same.sent, same.fingerprint) == (
        S[1], requests[2].session_data, requests[2].fingerprint)
    assert differs is not None and (differs.session_id, differs.sent, differs.fingerprint) == (
        S[2], None, "")

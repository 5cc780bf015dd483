"""Sending repeating rows (issue 13, phase 2): every outcome keyed by session, not by row.

The sessions of one repeating row share their spreadsheet row, so the runner, the plan, the dry
run, the job's report, the results workbook, the log and ``forget`` all key them by `Line`
(row, occurrence). Fake Zoho on a fake clock for the runner (tests/test_runner.py's), no HTTP.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import logging
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from test_runner import BASE, MAX_FAKE, Env

from bulkschedule.app import job
from bulkschedule.app.logs import log_outcome
from bulkschedule.app.results import write_results
from bulkschedule.cli.console import preview_lines
from bulkschedule.cli.root import main
from bulkschedule.core.constants import EXIT_INCOMPLETE, EXIT_OK
from bulkschedule.core.problems import Line, Outcome, Status, line_of
from bulkschedule.core.request import Request
from bulkschedule.send.journal import CREATED, Journal
from bulkschedule.send.plan import Action, Zoho, make_plan
from bulkschedule.send.runner import Event, OutcomeEvent, RunConfig, preview, summarize
from bulkschedule.sheet.payload import build_request
from bulkschedule.sheet.schema import Expansion
from bulkschedule.web.checking import summary
from bulkschedule.zoho.auth import StaticToken
from bulkschedule.zoho.records import ListedSession

TODAY = dt.date(2026, 6, 1)
M = "478346000019479119"
T1 = "478346000008251001"
T2 = "478346000008251017"
HEADERS = ["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
           "startTime", "endTime", "key", "repeat", "until", "count", "skip"]


def line(name: str, date: str = "12-01-2027", **extra: str) -> dict[str, str]:
    return {"courseId": "478346000019479103", "batchId": "478346000019479115", "moduleId": M,
            "name": name, "trainerErecno": T1, "type": "Classroom", "date": date,
            "startTime": "06:00 PM", "endTime": "07:00 PM", **extra}


def write_sheet(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, HEADERS)
        w.writeheader()
        w.writerows(rows)
    return path


#: Row 2: four Tuesdays (lesson {n} of {count}); row 3: a single session; row 4: a repeating
#: row with an error (no until or count).
TERM = [
    line("Spanish A1 - lesson {n} of {count}", key="SP-A1", repeat="weekly", count="4"),
    line("Placement test", date="14-01-2027", key="SP-TEST"),
    line("Broken", date="13-01-2027", repeat="weekly"),
]


def sheet(tmp_path: Path, rows: list[dict[str, str]] | None = None) -> Path:
    return write_sheet(tmp_path / "term.csv", TERM if rows is None else rows)


def requests(tmp_path: Path, rows: list[dict[str, str]] | None = None) -> list[Request]:
    return job.requests_for(job.load(sheet(tmp_path, rows), today=TODAY))


def settings(state: Path) -> job.SendSettings:
    return job.SendSettings(api_base=BASE, state_dir=state)


# ------------------------------------------------------------------------------- the key


def test_a_line_is_the_row_and_the_occurrence_or_zero() -> None:
    single = Outcome(5, Status.CREATED, "S1")
    session = Outcome(5, Status.CREATED, "S2", occurrence=3, date="26-01-2027")
    assert (single.line, session.line) == ((5, 0), (5, 3)) == (line_of(5, None), line_of(5, 3))
    assert (single.where, session.where) == ("row 5", "row 5 (26-01-2027)")
    assert session.to_dict()["occurrence"] == 3 and single.to_dict()["occurrence"] is None


def test_each_session_of_a_row_is_a_request_with_its_own_line_and_identity(
        tmp_path: Path) -> None:
    reqs = requests(tmp_path)
    assert [r.line for r in reqs] == [(2, 1), (2, 2), (2, 3), (2, 4), (3, 0)]
    assert [r.identity for r in reqs[:4]] == [
        f"key:SP-A1@{d}-01-2027" for d in ("12", "19", "26")] + ["key:SP-A1@02-02-2027"]
    assert reqs[4].identity == "key:SP-TEST"
    assert [r.where for r in reqs[:2]] == ["row 2 (12-01-2027)", "row 2 (19-01-2027)"]
    assert reqs[4].where == "row 3"
    assert reqs[1].session_data["name"] == "Spanish A1 - lesson 2 of 4"


# ------------------------------------------------------------------------------- the runner


async def test_two_sessions_of_one_row_get_two_outcomes_and_two_journal_entries(
        tmp_path: Path) -> None:
    env = Env(tmp_path)
    reqs = requests(tmp_path)
    out = await env.clock.run(env.sending(reqs, RunConfig(workers=3)), max_time=MAX_FAKE)
    assert sorted(out) == [(2, 1), (2, 2), (2, 3), (2, 4), (3, 0)]
    assert summarize(out) == {"created": 5}
    assert len(env.zoho.creates()) == 5
    assert [(o.row, o.occurrence) for o in out.values()] == [(2, 1), (2, 2), (2, 3), (2, 4),
                                                             (3, None)]
    assert out[(2, 2)].date == "19-01-2027" and out[(3, 0)].date is None
    ids = {o.session_id for o in out.values()}
    assert len(ids) == 5  # each session its own
    # the journal holds each session under its own identity, with the session it became
    for req in reqs:
        entry = env.journal.lookup(BASE, req)
        assert entry is not None and entry.status == CREATED
        assert entry.session_id == out[req.line].session_id
    # the runner told the caller once per session
    told = [e.outcome.line for e in env.events if isinstance(e, OutcomeEvent)]
    assert sorted(told) == sorted(out)

    again = await env.clock.run(env.sending(reqs), max_time=MAX_FAKE)
    assert summarize(again) == {"exists": 5}
    assert len(env.zoho.creates()) == 5
    assert {line: o.session_id for line, o in again.items()} == \
        {line: o.session_id for line, o in out.items()}


async def test_a_stop_mid_run_settles_every_session_of_the_row(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.zoho.latency = 10.0
    reqs = requests(tmp_path)
    stop = asyncio.Event()

    async def stopper() -> None:
        await env.clock.sleep(15)
        stop.set()

    async def both() -> dict[Line, Outcome]:
        out, _ = await asyncio.gather(
            env.sending(reqs, RunConfig(workers=1, stop_grace=30), stop=stop), stopper())
        return out

    out = await env.clock.run(both(), max_time=MAX_FAKE)
    # the first session was done at +10, the second was on the wire at +15 (finished at +20)
    assert [out[r.line].status for r in reqs] == [Status.CREATED] * 2 + [Status.PENDING] * 3
    assert [out[r.line].occurrence for r in reqs] == [1, 2, 3, 4, None]
    assert all(env.journal.lookup(BASE, r) is None for r in reqs[2:])
    # the next run sends only the sessions the stop left
    again = await env.clock.run(env.sending(reqs), max_time=MAX_FAKE)
    assert [again[r.line].status for r in reqs] == [Status.EXISTS] * 2 + [Status.CREATED] * 3
    assert len(env.zoho.creates()) == 5


def test_a_dry_runs_preview_keys_each_session(tmp_path: Path) -> None:
    reqs = requests(tmp_path)
    with Journal(tmp_path / "state") as journal:
        run = journal.start_run("term.csv", BASE)
        journal.claim(BASE, reqs[1], run)
        journal.record_created(BASE, reqs[1], run, "478346000020113001")
        out = preview(reqs, journal=journal, api_base=BASE)
    assert sorted(out) == [r.line for r in reqs]
    assert out[(2, 2)].status is Status.EXISTS and out[(2, 2)].occurrence == 2
    assert {out[line].status for line in [(2, 1), (2, 3), (2, 4), (3, 0)]} == {
        Status.WOULD_CREATE}


# ------------------------------------------------------------------------------- the plan


def listed(sid: str, name: str, date: dt.date) -> ListedSession:
    return ListedSession(sid, name, date, dt.time(18), dt.time(19), T1, None, M, "0", None)


def test_the_plan_matches_each_session_with_what_zoho_lists_by_its_line(tmp_path: Path) -> None:
    reqs = requests(tmp_path)
    held = listed("478346000020113002", "Spanish A1 - lesson 2 of 4", dt.date(2027, 1, 19))
    plan = make_plan(reqs, journal={}, sessions={}, zoho=Zoho({M: [held]}, {(2, 2): held}))
    steps = plan.by_line()
    assert sorted(steps) == [r.line for r in reqs]
    assert steps[(2, 2)].action is Action.UNCHANGED
    assert steps[(2, 2)].session_id == held.id
    assert [steps[k].action for k in [(2, 1), (2, 3), (2, 4), (3, 0)]] == [Action.CREATE] * 4
    assert plan.counts() == {"create": 4, "update": 0, "unchanged": 1, "invalid": 0}


def test_a_session_two_sessions_claim_is_named_by_row_and_date(tmp_path: Path) -> None:
    reqs = requests(tmp_path)
    sid = "478346000020113009"
    with Journal(tmp_path / "state") as journal:
        run = journal.start_run("term.csv", BASE)
        for req in reqs[:2]:  # two sessions the journal says became the same session
            journal.claim(BASE, req, run)
            journal.record_created(BASE, req, run, sid)
        entries = journal.lookup_many(BASE, reqs)
    plan = make_plan(reqs, journal=entries, sessions={}, zoho=None)
    second = plan.by_line()[(2, 2)]
    assert second.action is Action.INVALID
    assert second.note == f"row 2 (12-01-2027) is already session {sid}: one row per session"


# ------------------------------------------------------------------------------- the job


async def dry_run(path: Path, state: Path, results: Path | None = None
                  ) -> tuple[job.JobResult, list[Event]]:
    events: list[Event] = []
    result = await job.send(job.load(path, today=TODAY), settings(state),
                            tokens=lambda s: StaticToken("unused"), results_path=results,
                            dry_run=True, on_event=events.append)
    return result, events


async def test_a_dry_run_has_an_outcome_per_session_and_one_per_invalid_row(
        tmp_path: Path) -> None:
    result, events = await dry_run(sheet(tmp_path), tmp_path / "state",
                                   results=tmp_path / "plan.xlsx")
    assert sorted(result.outcomes) == [(2, 1), (2, 2), (2, 3), (2, 4), (3, 0), (4, 0)]
    assert result.outcomes[(4, 0)].status is Status.INVALID  # one line for the broken row
    assert result.outcomes[(4, 0)].occurrence is None
    assert result.counts == {"invalid": 1, "would-create": 5}
    assert result.exit_code == EXIT_INCOMPLETE
    assert sorted(e.outcome.line for e in events if isinstance(e, OutcomeEvent)) == \
        sorted(result.outcomes)
    assert result.summary["rows"] == 3 and result.summary["sessions"] == 5
    assert result.plan is not None
    assert result.plan.counts() == {"create": 5, "update": 0, "unchanged": 0, "invalid": 1}

    doc = job.plan_document(result)
    assert doc["rows"] == 6 == sum(doc["plan"].values())
    assert doc["plan"] == {"create": 5, "update": 0, "unchanged": 0, "invalid": 1}
    # "occurrence" only on a session of a repeating row; every other field as before
    assert [list(a) for a in doc["actions"]] == [
        ["row", "occurrence", "action", "sessionId", "changes"]] * 4 + [
        ["row", "action", "sessionId", "changes"]] * 2
    assert [(a["row"], a.get("occurrence"), a["action"]) for a in doc["actions"]] == [
        (2, 1, "create"), (2, 2, "create"), (2, 3, "create"), (2, 4, "create"),
        (3, None, "create"), (4, None, "invalid")]

    lines = preview_lines(result)
    assert lines[0].startswith("row 2 (12-01-2027): POST ")
    assert lines[-2] == "plan: 5 to create, 0 to update, 0 unchanged, 1 invalid"
    assert lines[-1] == "dry run: 5 sessions would be created; nothing was sent"


async def test_a_sheet_without_repeating_rows_plans_exactly_as_before(tmp_path: Path) -> None:
    rows = [line("A", key="A"), line("B", key="B", date="13-01-2027")]
    result, _ = await dry_run(sheet(tmp_path, rows), tmp_path / "state")
    assert sorted(result.outcomes) == [(2, 0), (3, 0)]
    assert all(o.occurrence is None for o in result.outcomes.values())
    assert "sessions" not in result.summary and result.summary["rows"] == 2
    doc = job.plan_document(result)
    assert doc["rows"] == 2
    assert all(set(a) == {"row", "action", "sessionId", "changes"} for a in doc["actions"])
    assert result.exit_code == EXIT_OK


def test_complete_gives_each_session_its_line_and_never_reached_ones_pending(
        tmp_path: Path) -> None:
    validation = job.load(sheet(tmp_path), today=TODAY)
    done = Outcome(2, Status.CREATED, "S1", occurrence=1, date="12-01-2027")
    out = job.complete(validation, {(2, 1): done})
    assert list(out) == [(2, 1), (2, 2), (2, 3), (2, 4), (3, 0), (4, 0)]
    assert out[(2, 1)] is done
    assert (out[(2, 3)].status, out[(2, 3)].occurrence, out[(2, 3)].date) == (
        Status.PENDING, 3, "26-01-2027")
    assert (out[(3, 0)].status, out[(4, 0)].status) == (Status.PENDING, Status.INVALID)
    assert job.exit_code_for(out, dry_run=False) == EXIT_INCOMPLETE


# ------------------------------------------------------------------------------- reports


def test_the_results_workbook_has_a_line_per_session(tmp_path: Path) -> None:
    validation = job.load(sheet(tmp_path), today=TODAY)
    outcomes = job.complete(validation, {
        r.line: r.outcome(Status.CREATED, f"47834600002011300{n}", attempts=1)
        for n, r in enumerate(job.requests_for(validation), start=1)})
    out = tmp_path / "results.xlsx"
    write_results(out, validation, outcomes, {"rows": 3, "sessions": 5})
    wb = openpyxl.load_workbook(out)
    lines = list(wb["Results"].iter_rows(values_only=True))
    header = lines[0]
    assert header[:3] == ("row", "occurrence", "courseId")
    at = {name: i for i, name in enumerate(header)}
    got = [(v[at["row"]], v[at["occurrence"]], v[at["date"]], v[at["name"]], v[at["status"]],
            v[at["sessionId"]], v[at["repeat"]]) for v in lines[1:]]
    assert got == [
        (2, 1, dt.datetime(2027, 1, 12), "Spanish A1 - lesson 1 of 4", "created",
         "478346000020113001", "weekly"),
        (2, 2, dt.datetime(2027, 1, 19), "Spanish A1 - lesson 2 of 4", "created",
         "478346000020113002", "weekly"),
        (2, 3, dt.datetime(2027, 1, 26), "Spanish A1 - lesson 3 of 4", "created",
         "478346000020113003", "weekly"),
        (2, 4, dt.datetime(2027, 2, 2), "Spanish A1 - lesson 4 of 4", "created",
         "478346000020113004", "weekly"),
        (3, None, "14-01-2027", "Placement test", "created", "478346000020113005", None),
        (4, None, "13-01-2027", "Broken", "invalid", None, "weekly"),
    ]
    summary = {k: v for k, v in wb["Summary"].iter_rows(values_only=True)}
    assert (summary["rows"], summary["sessions"]) == (3, 5)
    assert "sessions by status (an invalid row once)" in summary
    assert (summary["created"], summary["invalid"]) == (5, 1)


def test_the_log_names_a_session_by_its_row_and_date() -> None:
    logger = logging.getLogger("test_recurring_send")
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log_outcome(logger, Outcome(2, Status.CREATED, "S2", occurrence=2, date="19-01-2027"))
        log_outcome(logger, Outcome(3, Status.CREATED, "S5"))
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["row 2 (19-01-2027): created sessionId=S2",
                                              "row 3: created sessionId=S5"]


# ------------------------------------------------------------------------------- forget


def test_forget_a_row_forgets_every_session_of_it(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("BULKSCHEDULE_CONFIG", "BULKSCHEDULE_API_BASE", "BULKSCHEDULE_DC"):
        monkeypatch.delenv(name, raising=False)
    path = sheet(tmp_path)
    state = tmp_path / "state"
    reqs = job.requests_for(job.load(path, today=TODAY))
    with Journal(state) as journal:
        run = journal.start_run(str(path), BASE)
        for n, req in enumerate(reqs[:3], start=1):  # three of row 2's four sessions
            journal.claim(BASE, req, run)
            journal.record_created(BASE, req, run, f"47834600005000000{n}")
        journal.claim(BASE, reqs[4], run)
        journal.record_created(BASE, reqs[4], run, "478346000050000009")
    out = CliRunner().invoke(main, ["forget", str(path), "--row", "2", "--yes", "--state",
                                    str(state)])
    assert out.exit_code == 1, out.output  # the fourth session was not in the journal
    assert "row 2 (12-01-2027): journal says created (session 478346000050000001)" in out.output
    assert "row 2 (02-02-2027): the journal has nothing for it" in out.output
    assert "forgot 3 sessions" in out.output
    with Journal(state) as journal:
        assert all(journal.lookup(BASE, r) is None for r in reqs[:4])
        assert journal.lookup(BASE, reqs[4]) is not None  # row 3 is left alone
    single = CliRunner().invoke(main, ["forget", str(path), "--row", "3", "--yes", "--state",
                                       str(state)])
    assert single.exit_code == 0, single.output
    assert single.output.splitlines()[-1] == "forgot 1 row"


def test_validate_json_and_the_upload_summary_show_the_expansions(tmp_path: Path) -> None:
    path = sheet(tmp_path)
    validation = job.load(path, today=TODAY)
    checked = summary(validation, {"name": "term.csv", "file": "term.csv"}, tmp_path, {})
    assert (checked["rows"], checked["sessions"], checked["valid"]) == (3, 6, 5)
    assert checked["expansions"] == [{"row": 2, "sessions": 4, "first": "12-01-2027",
                                      "last": "02-02-2027"}]
    assert checked["expansion_total"] == 1
    json.dumps(checked)  # what the upload keeps on disk


# ------------------------------------------------------------------------------- given back


def test_a_results_workbooks_session_lines_read_back_as_one_session_each(tmp_path: Path) -> None:
    """The results workbook's ``occurrence`` names which session of a repeating row a line is:
    read back, the line is that one session (same identity), never expanded again."""
    validation = job.load(sheet(tmp_path), today=TODAY)
    reqs = job.requests_for(validation)
    outcomes = job.complete(validation, {
        r.line: r.outcome(Status.CREATED, f"47834600002011300{n}", attempts=1)
        for n, r in enumerate(reqs, start=1)})
    out = tmp_path / "term.results.xlsx"
    write_results(out, validation, outcomes, {})

    back = job.load(out, today=TODAY)
    assert not back.expansions
    assert [p.code for p in back.problems if p.is_error] == [
        "repeat.no_end"]  # the broken row stays broken
    again = job.requests_for(back)
    assert [(r.row, r.occurrence) for r in again] == [(2, 1), (3, 2), (4, 3), (5, 4), (6, None)]
    assert [r.identity for r in again] == [r.identity for r in reqs]
    assert [r.session_id for r in again] == [f"47834600002011300{n}" for n in range(1, 6)]
    assert [r.session_data["name"] for r in again[:2]] == ["Spanish A1 - lesson 1 of 4",
                                                           "Spanish A1 - lesson 2 of 4"]


def test_an_occurrence_counts_only_on_a_line_that_repeats_and_keys_stay_unique_per_date(
        tmp_path: Path) -> None:
    rows = [
        {**line("A", key="K", repeat="weekly", count="4"), "occurrence": "2"},
        {**line("A", date="19-01-2027", key="K", repeat="weekly", count="4"), "occurrence": "3"},
        {**line("B", date="14-01-2027", key="S"), "occurrence": "1"},  # no repeat: a plain row
        {**line("C", date="20-01-2027", key="K", repeat="weekly", count="2"), "occurrence": "x"},
        {**line("D", key="K", repeat="weekly", count="4", startTime="08:00 PM",
                endTime="09:00 PM"), "occurrence": "5"},
    ]
    path = tmp_path / "back.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, [*HEADERS, "occurrence"])
        w.writeheader()
        w.writerows(rows)
    v = job.load(path, today=TODAY)
    # rows 2 and 3 are one session each, K on two dates: not the same key twice; row 5, whose
    # occurrence is not a number, repeats (K on its own dates); row 6 is K on row 2's date
    assert [(p.row, p.code) for p in v.problems] == [(6, "key.duplicate")]
    assert [(s.row, s.occurrence) for s in v.sessions] == [(2, 2), (3, 3), (4, None), (5, 1),
                                                           (5, 2)]
    assert [build_request(s).identity for s in v.sessions] == [
        "key:K@12-01-2027", "key:K@19-01-2027", "key:S", "key:K@20-01-2027",
        "key:K@27-01-2027"]
    assert v.expansions == [Expansion(5, 2, dt.date(2027, 1, 20), dt.date(2027, 1, 27))]

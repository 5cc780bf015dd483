"""Repeating rows end to end (issue 13, phase 2): sent to the sandbox over loopback HTTP (the CLI
as a real subprocess, the inbox in process), every session created exactly once.

Every assertion is on a sandbox counter (sessions created, duplicates), a status, a line of the
results workbook, a JSON field or an exit code.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import re
import time
from pathlib import Path

import openpyxl
import pytest
from test_e2e import TODAY, cli, cli_env
from test_inbox import LATER, drop
from test_org_e2e import BATCH, COURSE, FOUNDATIONS, HENRY, PRIYA, api_args, org
from test_web import fast_sandbox, page_factory, workbook_rows

from bulkschedule.app.inbox import DONE, NOT_STARTED, InboxPaths, process_inbox
from bulkschedule.sandbox.server import Sandbox, SandboxConfig
from bulkschedule.send.api import SendSettings
from bulkschedule.zoho.auth import StaticToken

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "recurring.xlsx"
HEADER = ["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
          "startTime", "endTime", "key", "repeat", "until", "count", "skip"]


def line(name: str, date: str, *, trainer: str = HENRY, start: str = "06:00 PM",
         end: str = "07:00 PM", **extra: str) -> dict[str, str]:
    return {"courseId": COURSE, "batchId": BATCH, "moduleId": FOUNDATIONS, "name": name,
            "trainerErecno": trainer, "type": "Classroom", "date": date, "startTime": start,
            "endTime": end, **extra}


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, HEADER)
        w.writeheader()
        w.writerows(rows)
    return path


def term(until: str) -> list[dict[str, str]]:
    """Row 2: Tuesdays and Thursdays from 12-01-2027 to ``until`` (by key); row 3: one
    session; row 4: three Wednesdays, without a key (module, name, date and start time)."""
    return [
        line("Spanish A1 - lesson {n}", "12-01-2027", key="SP-A1", repeat="Tue, Thu",
             until=until),
        line("Placement test", "15-01-2027", start="10:00 AM", end="11:00 AM", key="SP-TEST"),
        line("Review {n} of {count}", "13-01-2027", trainer=PRIYA, repeat="weekly", count="3"),
    ]


def results_lines(path: Path) -> list[dict[str, object]]:
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        lines = wb["Results"].iter_rows(values_only=True)
        header = next(lines)
        return [dict(zip(header, v, strict=True)) for v in lines]
    finally:
        wb.close()


def by_line(lines: list[dict[str, object]]) -> dict[tuple[int, int], dict[str, object]]:
    return {(int(str(x["row"])), int(str(x["occurrence"] or 0))): x for x in lines}


def day(value: object) -> str:
    assert isinstance(value, dt.datetime | dt.date), value
    return f"{value:%d-%m-%Y}"


async def test_a_repeating_sheet_is_created_once_and_extending_it_creates_only_the_new_dates(
        tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    async with Sandbox(org()) as sb:
        api = api_args(sb, tmp_path / "state")
        path = write(tmp_path / "term.csv", term(until="28-01-2027"))

        plan = await cli("run", str(path), "--dry-run", "--json", "--results",
                         str(tmp_path / "plan.xlsx"), "--today", TODAY, *api, env=env)
        assert plan.code == 0, plan.err
        doc = json.loads(plan.out)
        assert doc["plan"] == {"create": 10, "update": 0, "unchanged": 0, "invalid": 0}
        assert [(a["row"], a.get("occurrence")) for a in doc["actions"]] == [
            *((2, n) for n in range(1, 7)), (3, None), (4, 1), (4, 2), (4, 3)]
        # what validate shows of the repeating rows, on the dry run's terminal too (stderr with
        # --json: stdout is the JSON alone)
        assert "2 repeating rows making 9 sessions:" in plan.err
        assert "term.csv: 3 rows, 2 of them repeating: 10 sessions, 10 valid" in plan.err
        assert sb.stats()["created"] == 0

        first = await cli("run", str(path), "--results", str(tmp_path / "a.xlsx"), "--yes",
                          "--today", TODAY, *api, env=env)
        assert first.code == 0, first.err
        stats = sb.stats()
        assert stats["created"] == 10 and stats["duplicates"] == 0
        assert "10 created" in first.out
        lines = results_lines(tmp_path / "a.xlsx")
        assert list(lines[0])[:3] == ["row", "occurrence", "courseId"]
        got = by_line(lines)
        assert list(got) == [*((2, n) for n in range(1, 7)), (3, 0), (4, 1), (4, 2), (4, 3)]
        assert {x["status"] for x in lines} == {"created"}
        assert [day(got[(2, n)]["date"]) for n in range(1, 7)] == [
            "12-01-2027", "14-01-2027", "19-01-2027", "21-01-2027", "26-01-2027", "28-01-2027"]
        assert [got[(4, n)]["name"] for n in (1, 2, 3)] == [
            "Review 1 of 3", "Review 2 of 3", "Review 3 of 3"]
        assert got[(3, 0)]["occurrence"] is None
        ids = {k: x["sessionId"] for k, x in got.items()}
        assert len(set(ids.values())) == 10
        held = {s["sessionId"]: s for s in sb.sessions()}
        assert set(held) == set(ids.values())
        assert held[str(ids[(2, 3)])]["sessionName"] == "Spanish A1 - lesson 3"

        again = await cli("run", str(path), "--results", str(tmp_path / "b.xlsx"), "--yes",
                          "--today", TODAY, *api, env=env)
        assert again.code == 0, again.err
        assert sb.stats()["created"] == 10
        after = by_line(results_lines(tmp_path / "b.xlsx"))
        assert {x["status"] for x in after.values()} == {"exists"}
        assert {k: x["sessionId"] for k, x in after.items()} == ids

        # another state folder (another machine): the journal knows nothing, Zoho's listing
        # matches each session by its own line
        other = await cli("run", str(path), "--results", str(tmp_path / "o.xlsx"), "--yes",
                          "--today", TODAY, *api_args(sb, tmp_path / "other-state"), env=env)
        assert other.code == 0, other.err
        assert sb.stats()["created"] == 10
        found = by_line(results_lines(tmp_path / "o.xlsx"))
        assert {(x["status"], x["message"]) for x in found.values()} == {
            ("exists", "already in Zoho")}
        assert {k: x["sessionId"] for k, x in found.items()} == ids

        # two more weeks of Spanish: only the four new dates are created
        longer = write(tmp_path / "term.csv", term(until="11-02-2027"))
        extended = await cli("run", str(longer), "--results", str(tmp_path / "c.xlsx"),
                             "--yes", "--today", TODAY, *api, env=env)
        assert extended.code == 0, extended.err
        assert sb.stats()["created"] == 14 and sb.stats()["duplicates"] == 0
        now = by_line(results_lines(tmp_path / "c.xlsx"))
        new = {k for k, x in now.items() if x["status"] == "created"}
        assert new == {(2, 7), (2, 8), (2, 9), (2, 10)}
        assert [day(now[k]["date"]) for k in sorted(new)] == [
            "02-02-2027", "04-02-2027", "09-02-2027", "11-02-2027"]
        assert {k: now[k]["sessionId"] for k in ids} == ids
        assert {x["status"] for k, x in now.items() if k not in new} == {"exists"}

        # and a dry run now has nothing to do
        last = await cli("run", str(longer), "--dry-run", "--json", "--results",
                         str(tmp_path / "d.xlsx"), "--today", TODAY, *api, env=env)
        assert last.code == 0, last.err
        assert json.loads(last.out)["plan"] == {"create": 0, "update": 0, "unchanged": 14,
                                                "invalid": 0}


async def test_the_recurring_sample_runs_against_the_built_in_sandbox(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    results = tmp_path / "recurring.results.xlsx"
    done = await cli("run", str(SAMPLE), "--sandbox", "--speed", "1000", "--yes", "--results",
                     str(results), "--today", TODAY, env=env)
    assert done.code == 0, done.err
    stats = re.search(r"sandbox: (\d+) calls, (\d+) sessions created, (\d+) refused, "
                      r"(\d+) duplicates", done.out)
    assert stats is not None, done.out
    assert (int(stats.group(2)), int(stats.group(4))) == (53, 0)
    assert "5 repeating rows making 52 sessions:" in done.out
    assert "53 created" in done.out
    lines = results_lines(results)
    assert len(lines) == 53 and {x["status"] for x in lines} == {"created"}
    assert sum(1 for x in lines if x["occurrence"] is not None) == 52
    assert len({x["sessionId"] for x in lines}) == 53


def sheet_bytes(rows: list[dict[str, str]]) -> bytes:
    text = io.StringIO()
    w = csv.DictWriter(text, HEADER)
    w.writeheader()
    w.writerows(rows)
    return text.getvalue().encode()


async def test_the_inbox_sends_repeating_rows_and_skips_its_holidays(tmp_path: Path) -> None:
    inbox = InboxPaths(tmp_path / "inbox").ensure()
    holidays = tmp_path / "holidays.csv"
    holidays.write_text("date,name\n19-01-2027,Founders' day\n", encoding="utf-8")
    now = time.time() + LATER
    drop(inbox.incoming, "term.csv", now - 600, sheet_bytes(term(until="28-01-2027")))
    ticks = itertools.count(1_800_000_000)
    async with Sandbox(SandboxConfig(speed=60.0)) as sb:
        settings = SendSettings(api_base=sb.url, state_dir=tmp_path / "state", speed=60.0)
        result = await process_inbox(inbox, settings, tokens=lambda s: StaticToken(sb.token),
                                     now=now, clock=lambda: float(next(ticks)),
                                     holidays=holidays)
        stats = sb.stats()
    assert [(s.name, s.status) for s in result.sheets] == [("term.csv", DONE)]
    assert result.exit_code == 0
    # 10 sessions, less the Tuesday on the holiday
    assert stats["created"] == 9 and stats["duplicates"] == 0
    assert result.sheets[0].counts == {"created": 9}
    lines = results_lines(inbox.results / "term.results.xlsx")
    assert "19-01-2027" not in {day(x["date"]) for x in lines if x["row"] == 2}


async def test_an_inbox_holidays_file_that_cannot_be_read_leaves_the_sheet_waiting(
        tmp_path: Path) -> None:
    inbox = InboxPaths(tmp_path / "inbox").ensure()
    now = time.time() + LATER
    drop(inbox.incoming, "term.csv", now - 600, sheet_bytes(term(until="28-01-2027")))
    settings = SendSettings(api_base="http://127.0.0.1:9", state_dir=tmp_path / "state")
    result = await process_inbox(inbox, settings, tokens=lambda s: StaticToken("unused"),
                                 now=now, holidays=tmp_path / "missing.csv")
    assert [(s.name, s.status) for s in result.sheets] == [("term.csv", NOT_STARTED)]
    assert result.exit_code == 2
    assert "holidays file" in result.sheets[0].message
    assert [p.name for p in inbox.incoming.iterdir()] == ["term.csv"]


async def test_the_results_workbook_of_a_repeating_sheet_given_back_is_each_session_once(
        tmp_path: Path) -> None:
    """Issue 12's way to change a loaded term, with repeating rows: the results workbook (a line
    per session, the rule still on each) edited and run again names each session once; an edit
    of one session's line updates that session alone."""
    env = cli_env(tmp_path / "home")
    async with Sandbox(org()) as sb:
        api = api_args(sb, tmp_path / "state")
        path = write(tmp_path / "term.csv", term(until="28-01-2027"))
        first = await cli("run", str(path), "--results", str(tmp_path / "a.xlsx"), "--yes",
                          "--today", TODAY, *api, env=env)
        assert first.code == 0, first.err
        assert sb.stats()["created"] == 10

        checked = await cli("validate", str(tmp_path / "a.xlsx"), "--json", "--today", TODAY,
                            env=env)
        assert checked.code == 0, checked.out
        report = json.loads(checked.out)
        assert (report["rows"], report["valid"], report["expansions"]) == (10, 10, [])
        assert report["problems"] == []

        # the third Spanish lesson moves an hour later: its line alone is edited
        wb = openpyxl.load_workbook(tmp_path / "a.xlsx")
        ws = wb["Results"]
        col = {c.value: c.column for c in ws[1]}
        target = next(r for r in ws.iter_rows(min_row=2)
                      if (r[0].value, r[col["occurrence"] - 1].value) == (2, 3))
        session = target[col["sessionId"] - 1].value
        ws.cell(target[0].row, col["startTime"], "07:00 PM")
        ws.cell(target[0].row, col["endTime"], "08:00 PM")
        wb.save(tmp_path / "edited.xlsx")

        plan = await cli("run", str(tmp_path / "edited.xlsx"), "--dry-run", "--json",
                         "--results", str(tmp_path / "plan.xlsx"), "--today", TODAY, *api,
                         env=env)
        assert plan.code == 0, plan.err
        doc = json.loads(plan.out)
        assert doc["plan"] == {"create": 0, "update": 1, "unchanged": 9, "invalid": 0}
        [update] = [a for a in doc["actions"] if a["action"] == "update"]
        assert (update["sessionId"], update["occurrence"]) == (session, 3)
        assert update["changes"] == {"startTime": ["06:00 PM", "07:00 PM"],
                                     "endTime": ["07:00 PM", "08:00 PM"]}

        updating = await cli("run", str(tmp_path / "edited.xlsx"), "--update", "--results",
                             str(tmp_path / "b.xlsx"), "--yes", "--today", TODAY, *api, env=env)
        assert updating.code == 0, updating.err
        assert sb.stats()["created"] == 10 and sb.stats()["updated"] == 1
        held = {s["sessionId"]: s for s in sb.sessions()}
        assert held[str(session)]["sessionStartTime"] == "07:00 PM"
        statuses = [x["status"] for x in results_lines(tmp_path / "b.xlsx")]
        assert sorted(statuses) == ["exists"] * 9 + ["updated"]

        # the original sheet, run again, still knows every session (the same identities)
        again = await cli("run", str(path), "--results", str(tmp_path / "c.xlsx"), "--yes",
                          "--today", TODAY, *api, env=env)
        assert sb.stats()["created"] == 10
        assert again.code == 1  # the moved lesson now differs from the rule: changed
        lines = by_line(results_lines(tmp_path / "c.xlsx"))
        assert lines[(2, 3)]["status"] == "changed"
        assert {x["status"] for k, x in lines.items() if k != (2, 3)} == {"exists"}


async def test_the_upload_page_lists_the_repeating_rows_and_sends_every_session_once(
        tmp_path: Path) -> None:
    async with page_factory(tmp_path) as make_page:
        page = await make_page(sandbox=fast_sandbox())
        upload_id = await page.upload_ok(SAMPLE)
        resp = await page.client.get(f"/uploads/{upload_id}")
        assert resp.status == 200
        text = await resp.text()
        summary = re.search(r'id="summary">(.*?)</p>', text, re.S)
        assert summary is not None
        assert " ".join(summary.group(1).split()) == (
            "6 rows, 5 of them repeating: 53 sessions: <strong>53 valid</strong>, 0 errors, "
            "0 warnings")
        table = re.search(r'<table class="problems" id="expansions">(.*?)</table>', text, re.S)
        assert table is not None
        cells = re.findall(r"<tr><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>"
                           r"<td>([\d-]+)</td><td>([\d-]+)</td></tr>", table.group(1))
        assert cells[0] == ("2", "10", "12-04-2027", "28-06-2027")
        assert [int(c[1]) for c in cells] == [10, 6, 21, 10, 5]
        assert "Create sessions (53)" in text

        run_id = await page.start(upload_id, "create")
        final = await page.finish(run_id)
        assert final["state"] == "finished", final
        assert final["counts"] == {"created": 53} and final["done"] == 53
        stats = page.app_state.sandbox.stats()
        assert stats["created"] == 53 and stats["duplicates"] == 0
        resp = await page.client.get(final["results"])
        lines = workbook_rows(await resp.read())
        assert len(lines) == 53 and {x["status"] for x in lines} == {"created"}
        assert sum(1 for x in lines if x["occurrence"] is not None) == 52

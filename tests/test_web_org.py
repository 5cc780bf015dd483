"""The upload page knows the org (issue 11) and stays small at scale (issue 14).

Against the in-process sandbox over real loopback HTTP, as test_web.py: a sheet written with names
checks clean and runs; the org's problems (a date outside its batch) join the sheet's own in the
one table, each with its code; sessions Zoho already holds are reported ``exists`` and never sent;
names resolve offline from the org cache; an org that cannot be read, or no credentials, is a
warning on the page. The problems table shows the first 200 with the total, and a run's event
stream sends counts at most a few times a second (a fake clock, no sleeps).
"""

from __future__ import annotations

import asyncio
import csv
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakeclock import FakeClock  # tests/ is on sys.path (no __init__.py)
from test_web import (  # the route tests' helpers: a page client, sheets, the sandbox
    BATCH,
    COURSE,
    HEADER,
    MODULE,
    ROOT,
    TRAINER,
    MakePage,
    fast_sandbox,
    page_factory,
    settings_for,
    workbook_rows,
    write_sheet,
)

from bulkschedule.core.problems import Outcome, Status
from bulkschedule.sandbox.server import Sandbox
from bulkschedule.send.runner import OutcomeEvent
from bulkschedule.web.checking import CHECKED, SHOWN_PROBLEMS, read_json
from bulkschedule.web.runs import STREAM_INTERVAL, LiveRun, progress_events

BY_NAME = ROOT / "sample_data" / "sessions_by_name.xlsx"


@pytest.fixture
async def make_page(tmp_path: Path) -> AsyncIterator[MakePage]:
    async with page_factory(tmp_path) as factory:
        yield factory


def problem_rows(text: str) -> list[tuple[str, str, str, str]]:
    """(row, column, message, code) of each row of the page's problems table."""
    return [(row, column, html.unescape(message), code) for row, column, message, code in
            re.findall(r'<tr class="(?:error|warning)"><td class="num">(\w+)</td><td>(.*?)</td>'
                       r'<td class="value">.*?</td><td>.*?</td><td>(.*?)</td>'
                       r'<td class="code"><code>(.*?)</code></td></tr>', text)]


def summary_text(text: str) -> str:
    found = re.search(r'id="summary">(.*?)</p>', text, re.S)
    assert found, text
    return " ".join(found.group(1).split())


# ------------------------------------------------------------------------------------- names


async def test_a_sheet_written_with_names_checks_clean_and_runs(make_page: MakePage) -> None:
    page = await make_page(sandbox=fast_sandbox())
    upload_id = await page.upload_ok(BY_NAME)
    text = await (await page.client.get(f"/uploads/{upload_id}")).text()
    assert summary_text(text) == "40 rows: <strong>40 valid</strong>, 0 errors, 0 warnings"
    assert "No problems found." in text
    assert re.search(r'id="org">Checked against the org in the built-in sandbox: \d+ API calls?',
                     text)
    assert 'id="org-warning"' not in text

    run_id = await page.start(upload_id, "create")
    final = await page.finish(run_id)
    assert final["state"] == "finished" and final["counts"] == {"created": 40}
    sandbox = page.app_state.sandbox
    assert sandbox.stats()["created"] == 40 and sandbox.stats()["duplicates"] == 0
    rows = workbook_rows(await (await page.client.get(final["results"])).read())
    assert {r["status"] for r in rows} == {"created"}


async def test_names_resolve_offline_from_the_org_cache(make_page: MakePage,
                                                        tmp_path: Path) -> None:
    """Once the org has been read (and cached) for an API, a page that does not read the org
    still resolves names, from the cache, in the capped child."""
    state = tmp_path / "state"
    async with Sandbox(fast_sandbox()) as sb:
        settings = settings_for(state, api_base=sb.url)
        env = {"ZOHO_ACCESS_TOKEN": sb.token}
        offline = await make_page(settings=settings, state=state, env=env, check_org=False)
        first = await offline.upload_ok(BY_NAME)  # nothing cached yet: names need the org
        text = await (await offline.client.get(f"/uploads/{first}")).text()
        assert "0 valid" in summary_text(text)
        assert {code for *_, code in problem_rows(text)} == {"name.needs_online"}

        online = await make_page(settings=settings, state=state, env=env)
        await online.upload_ok(BY_NAME)  # reads the org, and caches its lists
        again = await offline.upload_ok(BY_NAME)  # the same page, which never reads the org
        text = await (await offline.client.get(f"/uploads/{again}")).text()
        assert summary_text(text) == "40 rows: <strong>40 valid</strong>, 0 errors, 0 warnings"


# ------------------------------------------------------------------------------ the org's checks


async def test_the_org_s_problems_join_the_table_with_their_codes(make_page: MakePage,
                                                                  tmp_path: Path) -> None:
    page = await make_page(sandbox=fast_sandbox())
    sheet = tmp_path / "term.csv"
    with sheet.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerow([COURSE, BATCH, MODULE, "In term", TRAINER, "Classroom", "01-03-2027",
                    "10:00 AM", "11:00 AM"])
        w.writerow([COURSE, BATCH, MODULE, "After term", TRAINER, "Classroom", "03-05-2027",
                    "10:00 AM", "11:00 AM"])
        w.writerow([COURSE, BATCH, MODULE, "Typo", "47834600000825100A", "Classroom",
                    "02-03-2027", "10:00 AM", "11:00 AM"])
    upload_id = await page.upload_ok(sheet)
    text = await (await page.client.get(f"/uploads/{upload_id}")).text()
    rows = problem_rows(text)
    assert [(row, column, code) for row, column, _, code in rows] == [
        ("3", "date", "org.date_outside_batch"), ("4", "trainerErecno", "id.not_digits")]
    assert "outside batch \"Spring term 2027\", which runs from 04-01-2027 to 26-03-2027" \
        in rows[0][2]
    assert summary_text(text) == "3 rows: <strong>1 valid</strong>, 2 errors, 0 warnings"
    assert "Create sessions (1)" in text
    # the annotated sheet has the org's problem too
    report = workbook_rows(await (await page.client.get(f"/uploads/{upload_id}/report.xlsx"))
                           .read(), "Problems")
    assert "org.date_outside_batch" in {r.get("code") for r in report}

    run_id = await page.start(upload_id, "dry-run")
    final = await page.finish(run_id)
    assert final["counts"] == {"invalid": 2, "would-create": 1}


async def test_sessions_zoho_already_holds_are_never_sent(make_page: MakePage,
                                                          tmp_path: Path) -> None:
    page = await make_page(sandbox=fast_sandbox())
    sandbox = page.app_state.sandbox
    held = sandbox.add_session(COURSE, BATCH, MODULE, name="Held", trainerErecno=TRAINER,
                               type="0", date="01-03-2027", startTime="10:00 AM",
                               endTime="11:00 AM")
    upload_id = await page.upload_ok(write_sheet(tmp_path / "s.csv", ["Held", "New"]))
    text = " ".join((await (await page.client.get(f"/uploads/{upload_id}")).text()).split())
    assert "1 row is already in Zoho: a run never creates it again." in text
    # ... and the plan says what a run does with it: nothing (it holds what the row says)
    plan = re.search(r'id="plan-counts">(.*?)</ul>', text)
    assert plan and re.findall(r'action-(\w+)">[^<]*</span> <span class="n">(\d+)<',
                               plan.group(1)) == [("create", "1"), ("update", "0"),
                                                  ("unchanged", "1"), ("invalid", "0")]
    run_id = await page.start(upload_id, "create")
    final = await page.finish(run_id)
    assert final["counts"] == {"created": 1, "exists": 1}
    assert sandbox.stats()["created"] == 1 and sandbox.stats()["creates"] == 1
    rows = {r["name"]: r for r in workbook_rows(await (await page.client.get(final["results"]))
                                                .read())}
    assert rows["Held"]["status"] == "exists"
    assert str(rows["Held"]["sessionId"]) == held["sessionId"]
    assert rows["Held"]["message"] == "already in Zoho"


async def test_an_org_that_cannot_be_read_is_a_warning(make_page: MakePage,
                                                       tmp_path: Path) -> None:
    page = await make_page(sandbox=fast_sandbox(org_reads=False))
    upload_id = await page.upload_ok(write_sheet(tmp_path / "s.csv", ["One", "Two"]))
    text = " ".join((await (await page.client.get(f"/uploads/{upload_id}")).text()).split())
    warning = re.search(r'id="org-warning">(.*?)</p>', text)
    assert warning and "Could not read the org" in warning.group(1)
    assert "going on with the offline checks" in warning.group(1)
    assert "2 rows: <strong>2 valid</strong>" in text
    run_id = await page.start(upload_id, "create")
    final = await page.finish(run_id)
    assert final["counts"] == {"created": 2}
    assert "could not read the org" in final["message"]


async def test_without_credentials_the_page_says_the_org_was_not_read(make_page: MakePage
                                                                      ) -> None:
    page = await make_page(env={})  # the real API, and no credentials anywhere
    upload_id = await page.upload_ok(BY_NAME)
    text = " ".join((await (await page.client.get(f"/uploads/{upload_id}")).text()).split())
    assert re.search(r'id="org-warning">Not checked against the org in Zoho: no credentials',
                     text)
    assert {code for *_, code in problem_rows(text)} == {"name.needs_online"}


# ------------------------------------------------------------------------------------- scale


async def test_the_page_shows_the_first_problems_with_the_total(make_page: MakePage,
                                                                tmp_path: Path) -> None:
    """A sheet with more problems than the table shows: the first 200, the total, and where
    the full list is; the stored summary stays small too."""
    page = await make_page()
    bad = SHOWN_PROBLEMS + 50
    sheet = write_sheet(tmp_path / "many.csv", [f"Row {i}" for i in range(bad)],
                        trainer="not-an-id")
    upload_id = await page.upload_ok(sheet)
    text = await (await page.client.get(f"/uploads/{upload_id}")).text()
    assert len(problem_rows(text)) == SHOWN_PROBLEMS
    flat = " ".join(text.split())
    assert f"Showing the first {SHOWN_PROBLEMS} of {bad} problems: the full list is in the " \
           f'<a href="/uploads/{upload_id}/report.xlsx" download>annotated sheet</a>' in flat
    stored = read_json(page.state / "uploads" / upload_id / CHECKED)
    assert len(stored["problems"]) == SHOWN_PROBLEMS and stored["problem_total"] == bad
    report = workbook_rows(await (await page.client.get(f"/uploads/{upload_id}/report.xlsx"))
                           .read(), "Problems")
    assert len(report) == bad


def outcome(row: int) -> OutcomeEvent:
    return OutcomeEvent(Outcome(row, Status.CREATED, str(478346000050000000 + row), None))


async def test_the_event_stream_sends_counts_a_few_times_a_second() -> None:
    """1,000 rows settled within a (fake) second: the stream sends a handful of snapshots of
    their counts, not a message per row, and the last one has every row."""
    clock = FakeClock()
    run = LiveRun(id=1, upload_id="0123456789abcdef", name="big.csv", dry_run=False,
                  total=1000, target="http://sandbox", results_path=Path("/nonexistent.xlsx"))
    sent: list[tuple[str, dict[str, Any]]] = []

    async def rows() -> None:
        for row in range(2, 1002):
            run.on_event(outcome(row))
            await clock.sleep(0.001)
        run.state = "finished"
        run.touch()

    async def tab() -> None:
        async for event in progress_events(run, clock=clock.time, sleep=clock.sleep):
            sent.append(event)

    started = clock.time()
    await clock.run(asyncio.gather(rows(), tab()))
    took = clock.time() - started
    assert took == pytest.approx(1.0, abs=0.01)  # the stream kept up: done came at the end
    # the first, at most one per interval, and done: not one per row
    assert 3 <= len(sent) <= 2 + 1.0 / STREAM_INTERVAL
    assert [name for name, _ in sent[:-1]] == ["progress"] * (len(sent) - 1)
    name, last = sent[-1]
    assert name == "done" and last["done"] == 1000 and last["counts"] == {"created": 1000}
    dones = [snap["done"] for _, snap in sent]
    assert dones == sorted(dones)
    assert all(set(snap) >= {"counts", "done", "rate", "eta"} for _, snap in sent)


async def test_a_quiet_run_still_gets_a_snapshot_every_few_seconds() -> None:
    clock = FakeClock()
    run = LiveRun(id=1, upload_id="0123456789abcdef", name="s.csv", dry_run=False, total=1,
                  target="http://sandbox", results_path=Path("/nonexistent.xlsx"))
    times: list[float] = []

    async def tab() -> None:
        async for _ in progress_events(run, clock=clock.time, sleep=clock.sleep,
                                       keepalive=5.0):
            times.append(clock.time())
            if len(times) == 3:
                run.state = "finished"

    await clock.run(tab())
    assert [t - times[0] for t in times] == [0.0, 5.0, 10.0, 15.0]


def test_a_live_run_counts_through_the_shared_tally() -> None:
    run = LiveRun(id=1, upload_id="0123456789abcdef", name="s.csv", dry_run=False, total=2,
                  target="http://sandbox", results_path=Path("/nonexistent.xlsx"))
    run.on_event(outcome(2))
    run.on_event(OutcomeEvent(Outcome(3, Status.INVALID, None, "bad date")))
    snap = run.snapshot()
    assert snap["done"] == 1 and snap["counts"] == {"created": 1, "invalid": 1}
    assert run.tally.done == 1 and snap["attention"] == []


async def test_an_org_that_answers_too_slowly_is_a_warning_not_a_wait(make_page: MakePage,
                                                                     tmp_path: Path) -> None:
    """Zoho's limit is locked for five minutes: neither the check nor the run start waits it
    out. The page says so, and the run goes on with the sheet's own checks (``org_timeout``
    is the contract's own bound, set short here)."""
    page = await make_page(sandbox=fast_sandbox(speed=1.0, start_locked=300.0), org_timeout=0.5)
    upload_id = await page.upload_ok(write_sheet(tmp_path / "s.csv", ["One", "Two"]))
    text = " ".join((await (await page.client.get(f"/uploads/{upload_id}")).text()).split())
    assert "The org in Zoho could not be read within 0.5 s" in text
    assert "2 rows: <strong>2 valid</strong>" in text
    run_id = await page.start(upload_id, "dry-run")
    final = await page.finish(run_id)
    assert final["counts"] == {"would-create": 2}
    assert "could not be read within 0.5 s" in final["message"]
    assert "sessions Zoho already holds were not looked for" in final["message"]

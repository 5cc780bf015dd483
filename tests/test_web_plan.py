"""The upload page's plan and updates (issue 12): a checked upload shows what a run would do
(rows to create, to update, unchanged, invalid) and what each update changes, old -> new; a run
started with "also apply updates" patches exactly the sessions that differ, one without it
reports them ``changed`` and patches nothing, and a dry run reports them ``would-update``.

Against the in-process sandbox over real loopback HTTP, as test_web.py: the admin's own way of
changing a term, the results workbook edited and uploaded again; a session edited in Zoho's own
screens (the sandbox, directly) seen on the page; and a page that cannot read the org, where the
rows are compared with what the journal last sent and the page says so.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from test_web import (  # the route tests' helpers: a page client, sheets, the sandbox
    MakePage,
    Page,
    fast_sandbox,
    page_factory,
    settings_for,
    workbook_rows,
    write_sheet,
)

from bulkschedule.sandbox.server import Sandbox
from bulkschedule.web import online as web_online
from bulkschedule.web.checking import CHECKED, read_json

OTHER_TRAINER = "478346000008251017"  # Priya Raman, in the sandbox's default org


@pytest.fixture
async def make_page(tmp_path: Path) -> AsyncIterator[MakePage]:
    async with page_factory(tmp_path) as factory:
        yield factory


def flat(text: str) -> str:
    return " ".join(text.split())


async def upload_page(page: Page, upload_id: str) -> str:
    return flat(await (await page.client.get(f"/uploads/{upload_id}")).text())


def plan_counts(text: str) -> dict[str, int]:
    """The page's plan: action -> rows (`plan-counts`)."""
    found = re.search(r'id="plan-counts">(.*?)</ul>', text)
    assert found, text
    return {action: int(n) for action, n in re.findall(
        r'<span class="badge action-([a-z]+)">[^<]*</span> <span class="n">(\d+)</span>',
        found.group(1))}


def changes_shown(text: str) -> list[tuple[str, str, list[str]]]:
    """(row, session, ["field: old → new", ...]) of each row of the page's changes table."""
    table = re.search(r'id="changes">(.*?)</table>', text)
    if table is None:
        return []
    out = []
    for row, session, cell in re.findall(
            r'<tr><td class="num">(\d+)</td><td class="value">(\d*)</td><td>(.*?)</td></tr>',
            table.group(1)):
        diffs = [f"{name}: {html.unescape(old)} → {html.unescape(new)}" for name, old, new in
                 re.findall(r'<code>(\w+)</code>: <span class="old">(.*?)</span> &rarr; '
                            r'<span class="new">(.*?)</span>', cell)]
        out.append((row, session, diffs))
    return out


async def start(page: Page, upload_id: str, mode: str, *, update: bool = False) -> int:
    data = {"upload": upload_id, "mode": mode, **({"update": "yes"} if update else {})}
    resp = await page.post("/runs", data)
    assert resp.status == 303, await resp.text()
    return int(resp.headers["Location"].rsplit("/", 1)[1])


async def results_of(page: Page, final: dict[str, Any]) -> list[dict[str, Any]]:
    return workbook_rows(await (await page.client.get(final["results"])).read())


def edited(data: bytes, path: Path, rows: dict[int, dict[str, str]]) -> Path:
    """The results workbook ``data`` with cells changed (sheet row -> column -> text), saved
    to ``path``: the admin's edit before uploading it again."""
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb["Results"]
    header = [c.value for c in ws[1]]
    for row, cells in rows.items():
        for column, value in cells.items():
            ws.cell(row=row, column=header.index(column) + 1, value=value)
    wb.save(path)
    return path


async def loaded(page: Page, tmp_path: Path, names: list[str]) -> tuple[str, bytes]:
    """A sheet of ``names`` uploaded and created: its upload id and results workbook."""
    upload_id = await page.upload_ok(write_sheet(tmp_path / "term.csv", names))
    final = await page.finish(await start(page, upload_id, "create"))
    assert final["counts"] == {"created": len(names)}
    return upload_id, await (await page.client.get(final["results"])).read()


# ------------------------------------------------------------------------- the results workbook


async def test_an_edited_results_workbook_shows_its_changes_and_updates_only_when_asked(
        make_page: MakePage, tmp_path: Path) -> None:
    page = await make_page(sandbox=fast_sandbox())
    sandbox = page.app_state.sandbox
    _, results = await loaded(page, tmp_path, ["One", "Two", "Three"])
    sid = {r["name"]: str(r["sessionId"]) for r in workbook_rows(results)}
    # the admin moves Two an hour later and gives Three to another trainer
    sheet = edited(results, tmp_path / "term.results.xlsx", {
        3: {"startTime": "11:00 AM", "endTime": "12:00 PM"}, 4: {"trainerErecno": OTHER_TRAINER}})
    upload_id = await page.upload_ok(sheet)

    text = await upload_page(page, upload_id)
    assert plan_counts(text) == {"create": 0, "update": 2, "unchanged": 1, "invalid": 0}
    assert changes_shown(text) == [
        ("3", sid["Two"], ["startTime: 10:00 AM → 11:00 AM", "endTime: 11:00 AM → 12:00 PM"]),
        ("4", sid["Three"], [f"trainerErecno: 478346000008251001 → {OTHER_TRAINER}"])]
    assert "compared with what Zoho lists now" in text
    assert re.search(r'<input type="checkbox" name="update" value="yes" id="update">\s?'
                     r'Also apply updates \(2 sessions differ from their rows\)', text)
    checked = read_json(page.state / "uploads" / upload_id / CHECKED)
    assert checked["plan"] == {"create": 0, "update": 2, "unchanged": 1, "invalid": 0}
    assert checked["update_total"] == 2 and checked["compared_with"] == "zoho"

    # A dry run: would-update, nothing sent.
    final = await page.finish(await start(page, upload_id, "dry-run", update=True))
    assert final["counts"] == {"would-update": 2, "exists": 1}
    assert sandbox.stats()["updates"] == 0
    # Without "also apply updates": changed, with what differs and how to apply it; no PATCH.
    final = await page.finish(await start(page, upload_id, "create"))
    assert final["counts"] == {"changed": 2, "exists": 1}
    assert sandbox.stats()["updates"] == 0
    attention = {a["row"]: a for a in final["attention"]}
    assert attention[3]["status"] == "changed"
    assert attention[3]["message"].startswith("startTime: 10:00 AM → 11:00 AM; endTime:")
    assert "run again with 'also apply updates' ticked" in attention[3]["message"]
    # With it: exactly the two edited sessions are patched, none created.
    run_id = await start(page, upload_id, "create", update=True)
    assert "Creating and updating sessions" in flat(
        await (await page.client.get(f"/runs/{run_id}")).text())
    final = await page.finish(run_id)
    assert final["counts"] == {"updated": 2, "exists": 1}
    assert final["attention"] == []
    stats = sandbox.stats()
    assert stats["updates"] == 2 and stats["creates"] == 3 and stats["created"] == 3
    rows = {r["name"]: r for r in await results_of(page, final)}
    assert rows["Two"]["status"] == "updated" and str(rows["Two"]["sessionId"]) == sid["Two"]
    held = {s["sessionId"]: s for s in sandbox.sessions()}
    assert held[sid["Two"]]["sessionStartTime"] == "11:00 AM"
    assert held[sid["Three"]]["trainerErecno"] == OTHER_TRAINER

    # Checked again, the same workbook has nothing left to update.
    again = await page.upload_ok(sheet)
    text = await upload_page(page, again)
    assert plan_counts(text) == {"create": 0, "update": 0, "unchanged": 3, "invalid": 0}
    assert 'id="changes"' not in text
    final = await page.finish(await start(page, again, "create", update=True))
    assert final["counts"] == {"exists": 3}
    assert sandbox.stats()["updates"] == 2


async def test_a_session_edited_in_zoho_shows_up_as_a_change(make_page: MakePage,
                                                             tmp_path: Path) -> None:
    """The same sheet again, after someone moved a session in Zoho's own screens: the page
    compares with what Zoho lists, so the row would put the session back."""
    page = await make_page(sandbox=fast_sandbox())
    sandbox = page.app_state.sandbox
    upload_id, results = await loaded(page, tmp_path, ["One", "Two"])
    sid = {r["name"]: str(r["sessionId"]) for r in workbook_rows(results)}
    sandbox.edit_session(sid["One"], endTime="12:30 PM")
    again = await page.upload_ok(tmp_path / "term.csv")
    text = await upload_page(page, again)
    assert plan_counts(text) == {"create": 0, "update": 1, "unchanged": 1, "invalid": 0}
    assert changes_shown(text) == [("2", sid["One"], ["endTime: 12:30 PM → 11:00 AM"])]
    final = await page.finish(await start(page, upload_id, "create", update=True))
    assert final["counts"] == {"updated": 1, "exists": 1}
    held = {s["sessionId"]: s for s in sandbox.sessions()}
    assert held[sid["One"]]["sessionEndTime"] == "11:00 AM"


async def test_a_new_sheet_plans_creates_and_invalid_rows(make_page: MakePage,
                                                          tmp_path: Path) -> None:
    page = await make_page(sandbox=fast_sandbox())
    sheet = write_sheet(tmp_path / "s.csv", ["One", "Two", ""])  # row 4: no name
    text = await upload_page(page, await page.upload_ok(sheet))
    assert plan_counts(text) == {"create": 2, "update": 0, "unchanged": 0, "invalid": 1}
    assert 'id="changes"' not in text
    assert re.search(r'id="update">\s?Also apply updates</label>', text)


# ------------------------------------------------------------------------- without the org


async def test_without_the_org_the_plan_compares_with_the_journal_and_says_so(
        make_page: MakePage, tmp_path: Path) -> None:
    """A page that cannot read the org (no credentials) on the state folder of earlier runs:
    the plan comes from what the journal last sent, so an edit in the workbook is seen and one
    made in Zoho is not, and the page says which."""
    state = tmp_path / "state"
    async with Sandbox(fast_sandbox()) as sb:
        settings = settings_for(state, api_base=sb.url)
        online = await make_page(settings=settings, state=state,
                                 env={"ZOHO_ACCESS_TOKEN": sb.token})
        _, results = await loaded(online, tmp_path, ["One", "Two"])
        sid = {r["name"]: str(r["sessionId"]) for r in workbook_rows(results)}
        sb.edit_session(sid["Two"], endTime="12:30 PM")  # in Zoho: not seen without the org
        sheet = edited(results, tmp_path / "term.results.xlsx",
                       {2: {"trainerErecno": OTHER_TRAINER}})
        offline = await make_page(settings=settings, state=state, env={})
        text = await upload_page(offline, await offline.upload_ok(sheet))
    assert "Not checked against the org in Zoho: no credentials" in text
    assert plan_counts(text) == {"create": 0, "update": 1, "unchanged": 1, "invalid": 0}
    assert changes_shown(text) == [
        ("2", sid["One"], [f"trainerErecno: 478346000008251001 → {OTHER_TRAINER}"])]
    assert "compared with what the journal last sent: Zoho was not read" in text


async def test_a_journal_that_cannot_be_used_costs_only_the_plan(make_page: MakePage,
                                                                 tmp_path: Path) -> None:
    page = await make_page(sandbox=fast_sandbox())
    page.app_state.reads.journal = lambda: (tmp_path / "not-a-folder.txt", "http://x")
    (tmp_path / "not-a-folder.txt").write_text("x")
    text = await upload_page(page, await page.upload_ok(write_sheet(tmp_path / "s.csv",
                                                                    ["One"])))
    warning = re.search(r'id="plan-warning">(.*?)</p>', text)
    assert warning and warning.group(1).startswith("What a run would do could not be worked out (")
    assert 'id="plan"' not in text
    assert "<strong>1 valid</strong>" in text  # the check itself stands


async def test_a_bug_in_the_plan_costs_only_the_plan(make_page: MakePage, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(web_online, "plan_sheet", broken)
    page = await make_page(sandbox=fast_sandbox())
    upload_id = await page.upload_ok(write_sheet(tmp_path / "s.csv", ["One"]))
    text = await upload_page(page, upload_id)
    warning = re.search(r'id="plan-warning">(.*?)</p>', text)
    assert warning and "(an internal error: see the server log)" in warning.group(1)
    assert "boom" not in text and "<strong>1 valid</strong>" in text
    final = await page.finish(await start(page, upload_id, "create"))
    assert final["counts"] == {"created": 1}  # the run makes its own plan

"""The upload page in a real browser: Debian's headless Chromium driven by Playwright for Python.

One walk through the three screens, as an admin would: upload the sheet with errors and read the
problems table, upload the valid sample, create its sessions in the in-process sandbox while the
progress panel updates itself (server-sent events, the page's own JavaScript), download the
results workbook, and find the run in the history; then upload that workbook edited, read the
plan's changes, and update the sessions with "also apply updates" ticked.

Needs ``pip install playwright`` (its driver ships in the wheel; no ``playwright install``) and
``apt-get install chromium``. Without either the test is skipped with the reason, never passed.
With ``BULKSCHEDULE_SCREENSHOTS=1`` it also writes the screenshots of ``docs/upload-page.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openpyxl
import pytest
from aiohttp import web as aioweb

from bulkschedule.app import job
from bulkschedule.app.config import Settings
from bulkschedule.sandbox.server import SandboxConfig, default_catalogue
from bulkschedule.web import server as web

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
VALID = ROOT / "sample_data" / "sessions.xlsx"
ERRORS = ROOT / "sample_data" / "sessions_with_errors.csv"
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
TODAY = dt.date(2026, 6, 1)
OTHER_TRAINER = "478346000008251017"  # in the sandbox's default org
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 30_000  # per step; a hung page fails the test instead of hanging the suite


@dataclass
class Server:
    url: str
    app: aioweb.Application

    async def lock_sandbox(self, seconds: float) -> None:
        """Make the sandbox refuse calls for a while, as Zoho's lockout would."""
        sandbox = self.app[web.STATE].sandbox
        assert sandbox is not None
        async with aiohttp.ClientSession() as http, \
                http.post(f"{sandbox.url}/__sandbox/lock", params={"seconds": str(seconds)}) \
                as resp:
            assert resp.status == 200


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """The app on a real loopback socket. The sandbox runs 30 calls / 60 s and a 60 s lock 15x
    faster: the 40 rows take a few seconds and a lockout four, long enough to watch both. It
    holds the default org, as ``serve --sandbox``'s does."""
    state = tmp_path / "state"
    app = web.make_app(Settings(state_dir=state, lock_seconds=60.0), state_dir=state, env={},
                       today=TODAY, sandbox=SandboxConfig(speed=15.0, lock_seconds=60.0,
                                                          catalogue=default_catalogue()))
    runner = aioweb.AppRunner(app, access_log=None)
    await runner.setup()
    site = aioweb.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Server(f"http://{host}:{port}", app)
    finally:
        await runner.cleanup()


async def test_upload_check_run_download_in_chromium(server: Server, tmp_path: Path) -> None:
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        pytest.skip("playwright is not installed: pip install playwright "
                    "(the wheel carries its driver; Chromium comes from apt)")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    shots = os.environ.get("BULKSCHEDULE_SCREENSHOTS") == "1"
    expected = job.load(ERRORS, today=TODAY)
    # ... plus the org's one: row 14 (20-11-2026) is outside the batch's term (Jan-Mar 2027)
    org_errors = 1

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                           args=ARGS)
        try:
            context = await browser.new_context(accept_downloads=True,
                                                viewport={"width": 1280, "height": 860})
            page = await context.new_page()
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text)
                    if msg.type == "error" else None)

            # 1. The sheet with errors: the problems table, row by row.
            await page.goto(server.url + "/")
            await page.set_input_files("#file", str(ERRORS))
            assert "sessions_with_errors.csv" in await page.text_content("#chosen") or ""
            await page.click("button[type=submit]")
            await page.wait_for_url(re.compile(r"/uploads/[0-9a-f]{16}$"))
            rows = page.locator("#problems tbody tr")
            assert await rows.count() == len(expected.problems) + org_errors
            summary = " ".join((await page.text_content("#summary") or "").split())
            assert summary.startswith(
                f"{expected.n_rows} rows: {len(expected.sessions) - org_errors} valid")
            table = await page.text_content("#problems") or ""
            assert "47834600000825100A" in table and "org.date_outside_batch" in table
            async with page.expect_download() as report_info:
                await page.click("#report")
            report = await report_info.value
            assert report.suggested_filename == "sessions_with_errors.report.xlsx"
            if shots:
                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SHOTS / "upload-problems.png"), full_page=True)
            # A dry run of its valid rows: instant, nothing sent.
            await page.click("#dry-run")
            await page.wait_for_url(re.compile(r"/runs/\d+$"))
            await page.wait_for_selector("#results")
            counts = [" ".join((t or "").split())
                      for t in await page.locator("#counts li").all_text_contents()]
            assert sorted(counts) == [f"invalid {len(expected.error_rows) + org_errors}",
                                      f"would-create {len(expected.sessions) - org_errors}"]

            # 2. The valid sample, created in the sandbox; the panel updates by itself.
            await page.goto(server.url + "/")
            await page.set_input_files("#file", str(VALID))
            await page.click("button[type=submit]")
            await page.wait_for_url(re.compile(r"/uploads/[0-9a-f]{16}$"))
            assert "40 valid" in (await page.text_content("#summary") or "")
            await page.click("#create")
            await page.wait_for_url(re.compile(r"/runs/\d+$"))
            run_id = page.url.rsplit("/", 1)[1]
            # At least 8 rows done (a regex: the page's CSP forbids Playwright's eval'd waits).
            await expect(page.locator("#done")).to_have_text(re.compile(r"^\s*([89]|[1-4]\d)\s*$"),
                                                             timeout=WAIT_MS)
            # Zoho locks us out mid-run: the panel shows the countdown, then carries on.
            await server.lock_sandbox(60.0)
            lock = page.locator("#lock")
            await expect(lock).to_be_visible(timeout=WAIT_MS)
            assert re.fullmatch(r"0:0[1-4]", (await page.text_content("#lock-left") or "").strip())
            if shots:
                await page.screenshot(path=str(SHOTS / "run-progress.png"), full_page=True)
            # The stream's `done` reloads the page, which then offers the results workbook.
            await page.wait_for_selector("#results")
            counts = " ".join((await page.text_content("#counts") or "").split())
            assert counts == "created 40"
            assert (await page.text_content("#state") or "").strip() == "Finished"
            async with page.expect_download() as results_info:
                await page.click("#results")
            download = await results_info.value
            assert download.suggested_filename == "sessions.results.xlsx"
            saved = tmp_path / "results.xlsx"
            await download.save_as(str(saved))
            wb = openpyxl.load_workbook(saved, read_only=True)
            try:
                table = list(wb["Results"].iter_rows(values_only=True))
            finally:
                wb.close()
            status = table[0].index("status")
            session = table[0].index("sessionId")
            assert len(table) == 41
            assert {r[status] for r in table[1:]} == {"created"}
            assert all(r[session] for r in table[1:])

            # 3. The history lists the run with its workbook.
            await page.click("header >> text=History")
            await page.wait_for_url(server.url + "/history")
            row = page.locator("#history tbody tr", has_text="sessions.xlsx").first
            assert run_id in (await row.text_content() or "")
            assert "40 created" in (await row.text_content() or "")
            assert await row.locator(f'a[href="/runs/{run_id}/results.xlsx"]').count() == 1
            if shots:
                await page.screenshot(path=str(SHOTS / "history.png"), full_page=True)

            # 4. The results workbook, edited and uploaded again: the plan shows the changes,
            # and a run with "also apply updates" ticked patches exactly those sessions.
            edited = tmp_path / "term.results.xlsx"
            wb = openpyxl.load_workbook(saved)
            ws = wb["Results"]
            header = [c.value for c in ws[1]]
            ws.cell(row=2, column=header.index("trainerErecno") + 1, value=OTHER_TRAINER)
            ws.cell(row=3, column=header.index("endTime") + 1, value="12:30 PM")
            wb.save(edited)
            await page.goto(server.url + "/")
            await page.set_input_files("#file", str(edited))
            await page.click("button[type=submit]")
            await page.wait_for_url(re.compile(r"/uploads/[0-9a-f]{16}$"))
            plan = [" ".join((t or "").split())
                    for t in await page.locator("#plan-counts li").all_text_contents()]
            assert plan == ["to create 0", "to update 2", "unchanged 38", "invalid 0"]
            changes = " ".join((await page.text_content("#changes tbody") or "").split())
            assert f"trainerErecno: {table[1][header.index('trainerErecno')]} → " \
                   f"{OTHER_TRAINER}" in changes
            assert "endTime: " in changes and "→ 12:30 PM" in changes
            if shots:
                await page.screenshot(path=str(SHOTS / "upload-plan.png"), full_page=True)
            await page.check("#update")
            await page.click("#create")
            await page.wait_for_url(re.compile(r"/runs/\d+$"))
            assert "Creating and updating sessions" in (await page.text_content(".target") or "")
            await page.wait_for_selector("#results")
            counts = [" ".join((t or "").split())
                      for t in await page.locator("#counts li").all_text_contents()]
            assert sorted(counts) == ["exists 38", "updated 2"]
            stats = server.app[web.STATE].sandbox.stats()
            assert stats["updates"] == 2 and stats["created"] == 40
            assert errors == [], errors  # no script error, no CSP violation
        finally:
            await browser.close()

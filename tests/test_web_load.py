"""The upload page under load (issue 15 §2): a bounded number of checks and a short queue (503
beyond), checks cancelled with their client, bodies that trickle in cut off, a quota, pruning
after a retention period, a crash in the reader that costs one upload and not the server, and
SIGTERM that stops within 10 s at a safe point. `serve` honours ``--state`` and
``$BULKSCHEDULE_STATE``.

Ordering uses asyncio events (and a multiprocessing event for a real child), never sleeps;
retention uses the fake clock. The only real-time bounds asserted are the contract's own: the
body timeout (set to half a second) and the 10 seconds of a SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import multiprocessing
import os
import re
import signal
import sys
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakeclock import FakeClock  # tests/ is on sys.path (no __init__.py)
from test_isolate import (  # the children's functions, by name
    allocate_in_steps,
    announce_then_wait,
)
from test_web import (  # the route tests' helpers: a page client, sheets, the event stream
    ERRORS,
    STREAM_TIMEOUT,
    MakePage,
    Page,
    page_factory,
    settings_for,
    sse,
    token_in,
    uploaded_files,
    write_sheet,
)

from bulkschedule.app.config import Settings
from bulkschedule.app.isolate import ReadLimits
from bulkschedule.sandbox.server import Sandbox, SandboxConfig, default_catalogue
from bulkschedule.send.journal import Journal
from bulkschedule.web import server as web
from bulkschedule.web import uploads as uploads_module
from bulkschedule.web.checking import Full, Gate
from bulkschedule.web.uploads import META

DAY = 86400.0
SIGTERM_BUDGET = 10.0  # the contract: a SIGTERM'd server is gone within 10 s


# ------------------------------------------------------------------------- in the child process


def abort_now() -> None:
    """A reader that dies as calamine does on a sparse 2 KB sheet: SIGABRT."""
    os.abort()


def spin() -> None:
    while True:
        pass


def crash_writing(folder: Path, validation: Any) -> bool:
    """An annotated sheet whose writing dies (as an allocation over the cap would)."""
    os.abort()


def fail_with_a_path() -> None:
    raise KeyError("/srv/bulkschedule/state/uploads")  # a bug whose message names a folder


# ----------------------------------------------------------------------------------- helpers


@pytest.fixture
async def make_page(tmp_path: Path) -> AsyncIterator[MakePage]:
    async with page_factory(tmp_path) as factory:
        yield factory


class HeldChecks:
    """Stands in for the check: each check waits for ``release`` (then does the real check),
    so a test can hold any number of them and count them."""

    def __init__(self, page: Page) -> None:
        self.uploads = page.app_state.uploads
        self.real = self.uploads.check
        self.release = asyncio.Event()
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.cancelled = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.waiting: asyncio.Queue[None] = asyncio.Queue()
        self.uploads.check = self.check
        gate = self.uploads.gate
        slot = gate.slot

        @contextlib.asynccontextmanager
        async def counted_slot() -> AsyncIterator[None]:
            self.waiting.put_nowait(None)  # admitted, now waiting for a check slot
            async with slot():
                yield

        gate.slot = counted_slot  # type: ignore[method-assign]

    async def check(self, folder: Path, meta: dict[str, Any]) -> dict[str, int]:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.put_nowait(meta["name"])
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.running -= 1
        return await self.real(folder, meta)


def tiny_sheet(tmp_path: Path, name: str) -> bytes:
    return write_sheet(tmp_path / name, [f"Session {name}"]).read_bytes()


def sparse_workbook() -> bytes:
    """Two cells, at A1 and XFD1048576: 2 KB that asks a naive reader for 512 GB."""
    files = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
            '.org/package/2006/content-types"><Default Extension="rels" ContentType="application'
            '/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            'ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType='
            '"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.'
            'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type='
            '"http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'officeDocument" Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats'
            '.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" '
            'r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type='
            '"http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>'),
        "xl/worksheets/sheet1.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.'
            'openxmlformats.org/spreadsheetml/2006/main"><dimension ref="A1:XFD1048576"/>'
            '<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>name</t></is></c></row>'
            '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>'
            '</sheetData></worksheet>'),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


# ------------------------------------------------------------------------------ the gate


async def test_checks_run_a_few_at_a_time_and_beyond_the_queue_get_503(
        make_page: MakePage, tmp_path: Path) -> None:
    page = await make_page(max_checks=2, check_queue=1)
    held = HeldChecks(page)
    token = await page.csrf()
    names = ["a.csv", "b.csv", "c.csv"]
    tasks = [asyncio.create_task(page.upload(n, tiny_sheet(tmp_path, n), csrf=token))
             for n in names]
    for _ in names:  # all three admitted: two checking, one queued for a slot
        await held.waiting.get()
    started = {await held.started.get(), await held.started.get()}
    assert held.running == 2 and held.started.empty()

    # A fourth is refused at once, before its body is stored, with when to come back.
    resp = await page.upload("d.csv", tiny_sheet(tmp_path, "d.csv"), csrf=token)
    assert resp.status == 503
    assert resp.headers["Retry-After"].isdigit()
    text = await resp.text()
    assert "try again" in text and 'action="/uploads"' in text
    assert not any(p.name == "d.csv" for p in uploaded_files(page.state))

    held.release.set()
    responses = await asyncio.gather(*tasks)
    assert [r.status for r in responses] == [303, 303, 303]
    assert held.peak == 2
    assert started | {await held.started.get()} == set(names)
    assert page.app_state.uploads.gate.admitted == 0
    assert await page.upload_ok(write_sheet(tmp_path / "e.csv", ["E"]))  # the gate is free


async def test_run_start_validation_goes_through_the_gate(make_page: MakePage) -> None:
    page = await make_page(max_checks=1, check_queue=0)
    upload_id = await page.upload_ok(ERRORS)
    uploads = page.app_state.uploads
    uploads.checked.clear()  # as after a restart: the run must read the sheet again
    with uploads.gate.admit():  # every place taken
        resp = await page.post("/runs", {"upload": upload_id, "mode": "dry-run"})
    assert resp.status == 503 and "Retry-After" in resp.headers
    assert "try again" in await resp.text()
    run_id = await page.start(upload_id, "dry-run")  # free again
    assert (await page.finish(run_id))["state"] == "finished"


def test_gate_counts_admissions_and_slots() -> None:
    gate = Gate(1, 1)
    with gate.admit(), gate.admit():
        with pytest.raises(Full), gate.admit():
            pass
        assert gate.admitted == 2
    assert gate.admitted == 0
    with pytest.raises(ValueError):
        Gate(0, 1)


# ------------------------------------------------------------------------------ cancellation


async def test_a_check_is_cancelled_when_its_client_goes_away(make_page: MakePage,
                                                              tmp_path: Path) -> None:
    page = await make_page()
    held = HeldChecks(page)
    token = await page.csrf()
    request = asyncio.create_task(page.upload("gone.csv", tiny_sheet(tmp_path, "gone.csv"),
                                              csrf=token))
    assert await held.started.get() == "gone.csv"
    request.cancel()  # the browser tab is closed: the connection drops
    with contextlib.suppress(asyncio.CancelledError):
        await request
    async with asyncio.timeout(STREAM_TIMEOUT):
        await held.cancelled.wait()
    uploads = page.app_state.uploads
    assert uploaded_files(page.state) == []  # nothing half-checked is kept
    assert uploads.gate.admitted == 0 and uploads.gate.running == 0
    assert uploads.receiving == set()


async def test_a_client_that_goes_away_kills_its_check_s_child(make_page: MakePage,
                                                                tmp_path: Path) -> None:
    page = await make_page()
    uploads = page.app_state.uploads
    receive, send = multiprocessing.get_context("forkserver").Pipe(duplex=False)
    unwound = asyncio.Event()

    async def hanging(folder: Path, meta: dict[str, Any]) -> dict[str, int]:
        try:
            result: dict[str, int] = await uploads.isolated(announce_then_wait, send,
                                                            name=meta["name"])
        finally:
            unwound.set()  # the child is killed and reaped before this runs
        return result

    uploads.check = hanging
    request = asyncio.create_task(page.upload("gone.csv", tiny_sheet(tmp_path, "gone.csv")))
    pid = await asyncio.to_thread(receive.recv)  # the child is running, and blocked for good
    assert len(uploads.children) == 1
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    async with asyncio.timeout(STREAM_TIMEOUT):
        await unwound.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped: no such process any more
    assert uploaded_files(page.state) == []
    assert len(uploads.children) == 0


async def test_stopping_the_server_kills_the_checks_and_says_so(make_page: MakePage,
                                                                 tmp_path: Path) -> None:
    page = await make_page()
    uploads = page.app_state.uploads
    receive, send = multiprocessing.get_context("forkserver").Pipe(duplex=False)

    async def hanging(folder: Path, meta: dict[str, Any]) -> dict[str, int]:
        result: dict[str, int] = await uploads.isolated(announce_then_wait, send,
                                                        name=meta["name"])
        return result

    uploads.check = hanging
    request = asyncio.create_task(page.upload("late.csv", tiny_sheet(tmp_path, "late.csv")))
    pid = await asyncio.to_thread(receive.recv)
    await uploads.shutdown()  # what SIGTERM does: the check's child is killed at once
    resp = await asyncio.wait_for(request, STREAM_TIMEOUT)
    assert resp.status == 503 and "server is stopping" in await resp.text()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert uploaded_files(page.state) == []


async def test_a_reader_that_aborts_costs_one_upload_not_the_server(
        make_page: MakePage, tmp_path: Path) -> None:
    page = await make_page()
    uploads = page.app_state.uploads
    real = uploads.check

    async def aborting(folder: Path, meta: dict[str, Any]) -> dict[str, int]:
        result: dict[str, int] = await uploads.isolated(abort_now, name=meta["name"])
        return result

    uploads.check = aborting
    resp = await page.upload("crash.csv", tiny_sheet(tmp_path, "crash.csv"))
    assert resp.status == 422
    text = await resp.text()
    assert "crash.csv: this sheet could not be checked" in text and "SIGABRT" in text
    assert uploaded_files(page.state) == []
    uploads.check = real
    assert await page.upload_ok(write_sheet(tmp_path / "next.csv", ["Next"]))


async def test_a_sparse_workbook_bomb_never_takes_the_server_down(make_page: MakePage) -> None:
    """The 2 KB sheet that made the reader abort the whole server: now one refused upload
    (however the reader ends: a crash in the child, or a limit that refuses it)."""
    page = await make_page()
    resp = await page.upload("bomb.xlsx", sparse_workbook())
    assert 400 <= resp.status < 500
    assert "Traceback" not in await resp.text()
    assert (await page.client.get("/")).status == 200
    assert uploaded_files(page.state) == []


async def test_the_page_s_caps_reach_its_checks(make_page: MakePage, tmp_path: Path) -> None:
    """The page's caps (``read_memory_mb``, ``read_cpu_seconds``) are those of every child its
    checks run (`Uploads.isolated`), and the page says which cap stopped a sheet."""
    page = await make_page(read_limits=ReadLimits(memory_mb=512, cpu_seconds=1))
    uploads = page.app_state.uploads
    assert uploads.limits == ReadLimits(memory_mb=512, cpu_seconds=1)
    work = {"big.csv": (allocate_in_steps, 640 << 20), "loop.csv": (spin,)}

    async def capped(folder: Path, meta: dict[str, Any]) -> dict[str, int]:
        func, *args = work[meta["name"]]
        result: dict[str, int] = await uploads.isolated(func, *args, name=meta["name"])
        return result

    uploads.check = capped
    resp = await page.upload("big.csv", tiny_sheet(tmp_path, "big.csv"))
    assert resp.status == 422
    assert "big.csv: this sheet could not be checked: it needed more than 512 MB of memory" \
        in " ".join((await resp.text()).split())
    resp = await page.upload("loop.csv", tiny_sheet(tmp_path, "loop.csv"))
    assert resp.status == 422
    assert "it needed more than 1 s of CPU time" in await resp.text()
    assert uploaded_files(page.state) == []


async def test_an_annotated_sheet_that_cannot_be_written_costs_only_its_download(
        make_page: MakePage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sheet was read and checked; only its annotated copy could not be written within
    the caps: the page shows the problems, says why there is no download, and runs work."""
    page = await make_page()
    monkeypatch.setattr(uploads_module, "write_annotated", crash_writing)
    upload_id = await page.upload_ok(ERRORS)
    text = " ".join((await (await page.client.get(f"/uploads/{upload_id}")).text()).split())
    assert "The annotated sheet could not be written: the reader crashed (SIGABRT)." in text
    assert 'id="report"' not in text and '<tr class="error">' in text
    assert (await page.client.get(f"/uploads/{upload_id}/report.xlsx")).status == 404
    run_id = await page.start(upload_id, "dry-run")
    assert (await page.finish(run_id))["state"] == "finished"


async def test_a_failed_check_shows_no_internals(make_page: MakePage, tmp_path: Path) -> None:
    page = await make_page()
    uploads = page.app_state.uploads

    async def failing(folder: Path, meta: dict[str, Any]) -> dict[str, int]:
        result: dict[str, int] = await uploads.isolated(fail_with_a_path, name=meta["name"])
        return result

    uploads.check = failing
    resp = await page.upload("bug.csv", tiny_sheet(tmp_path, "bug.csv"))
    assert resp.status == 422
    text = await resp.text()
    assert "bug.csv: this sheet could not be checked: an internal error" in text
    assert "/srv" not in text and "KeyError" not in text


# ------------------------------------------------------------------------------ slow bodies


async def test_a_body_that_trickles_in_is_cut_off(make_page: MakePage) -> None:
    page = await make_page(body_timeout=0.5)
    token = await page.csrf()
    cookie = page.client.session.cookie_jar.filter_cookies(page.client.make_url("/"))[web.COOKIE]
    boundary = "slowloris"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.csv"\r\n'
            "Content-Type: text/csv\r\n\r\nname\r\n").encode()
    request = (f"POST /uploads HTTP/1.1\r\nHost: 127.0.0.1:{page.client.port}\r\n"
               f"Origin: {page.origin}\r\nCookie: {web.COOKIE}={cookie.value}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Content-Length: {len(head) + 100_000}\r\n\r\n").encode() + head
    reader, writer = await asyncio.open_connection("127.0.0.1", page.client.port)
    try:
        writer.write(request)  # ... and then nothing more: the rest never comes
        await writer.drain()
        async with asyncio.timeout(STREAM_TIMEOUT):
            answer = await reader.read()  # to EOF: the server closes the connection
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"took longer than 0.5 seconds" in answer
    assert uploaded_files(page.state) == []
    assert page.app_state.uploads.used == 0


# ------------------------------------------------------------------------ quota and pruning


async def test_the_uploads_quota_refuses_what_would_overfill_it(make_page: MakePage,
                                                                tmp_path: Path) -> None:
    clock = FakeClock()
    page = await make_page(clock=clock.time)
    uploads = page.app_state.uploads
    first = await page.upload_ok(write_sheet(tmp_path / "first.csv", ["First"]))
    stored = uploaded_files(page.state)
    assert uploads.used == sum(p.stat().st_size for p in stored)  # the sheet, report, summary
    uploads.quota = uploads.used + 100  # room for 100 more bytes
    resp = await page.upload("big.csv", write_sheet(tmp_path / "big.csv",
                                                    [f"Row {i}" for i in range(20)]).read_bytes())
    assert resp.status == 507
    text = await resp.text()
    assert "no room left for uploads" in text and "quota" in text
    assert uploaded_files(page.state) == stored  # nothing of it kept, nothing else lost
    assert uploads.used == sum(p.stat().st_size for p in stored)
    # Once the first upload has passed its retention period it is pruned, and there is room.
    clock.advance(15 * DAY)
    second = await page.upload_ok(write_sheet(tmp_path / "second.csv", ["Second"]))
    assert uploads.upload_dir(first) is None and uploads.upload_dir(second) is not None
    assert uploads.used == sum(p.stat().st_size for p in uploaded_files(page.state))


async def test_uploads_are_pruned_after_the_retention_period_of_their_last_use(
        make_page: MakePage, tmp_path: Path) -> None:
    clock = FakeClock()
    state = tmp_path / "state"
    page = await make_page(clock=clock.time, state=state)
    used = await page.upload_ok(write_sheet(tmp_path / "used.csv", ["Used"]))
    idle = await page.upload_ok(write_sheet(tmp_path / "idle.csv", ["Idle"]))
    clock.advance(10 * DAY)
    run_id = await page.start(used, "dry-run")  # a run on it starts its retention again
    await page.finish(run_id)
    assert (await page.client.get(f"/runs/{run_id}/results.xlsx")).status == 200
    clock.advance(5 * DAY)  # idle: 15 days unused; used: 5 days since its run
    third = await page.upload_ok(write_sheet(tmp_path / "third.csv", ["Third"]))  # prunes
    assert (await page.client.get(f"/uploads/{idle}")).status == 404
    for upload_id in (used, third):
        assert (await page.client.get(f"/uploads/{upload_id}")).status == 200
    assert not (state / "uploads" / idle).exists()

    # A restart after another 15 days prunes at start, with what a crash left half-written.
    leftover = state / "uploads" / "0123456789abcdef"
    leftover.mkdir()
    (leftover / ".upload.part").write_bytes(b"half")
    clock.advance(15 * DAY)
    fresh = await make_page(clock=clock.time, state=state)
    assert uploaded_files(state) == []
    assert (await fresh.client.get(f"/runs/{run_id}/results.xlsx")).status == 404
    assert fresh.app_state.uploads.used == 0


async def test_an_upload_in_use_by_a_run_is_never_pruned(make_page: MakePage,
                                                         tmp_path: Path) -> None:
    clock = FakeClock()
    page = await make_page(clock=clock.time)
    uploads = page.app_state.uploads
    busy = await page.upload_ok(write_sheet(tmp_path / "busy.csv", ["Busy"]))
    clock.advance(30 * DAY)
    assert await uploads.prune(busy={busy}) == []
    assert (uploads.root / busy / META).is_file()
    assert await uploads.prune() == [busy]


async def test_no_retention_keeps_uploads_for_good(make_page: MakePage, tmp_path: Path) -> None:
    clock = FakeClock()
    page = await make_page(clock=clock.time, retention=None)
    kept = await page.upload_ok(write_sheet(tmp_path / "kept.csv", ["Kept"]))
    clock.advance(365 * DAY)
    await page.upload_ok(write_sheet(tmp_path / "more.csv", ["More"]))
    assert page.app_state.uploads.upload_dir(kept) is not None


async def test_limits_that_make_no_sense_are_refused(tmp_path: Path) -> None:
    for kwargs in ({"uploads_quota": 0}, {"retention": 0}, {"body_timeout": 0},
                   {"check_queue": -1}):
        with pytest.raises(web.WebError):
            web.make_app(settings_for(tmp_path), state_dir=tmp_path, **kwargs)


def test_the_page_s_limits_come_from_the_settings(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of the page's limits reaches `serve` from its flag, variable or default."""
    from click.testing import CliRunner

    from bulkschedule.cli.root import main

    seen: list[dict[str, Any]] = []

    async def fake_serve(settings: Settings, **kwargs: Any) -> None:
        seen.append(kwargs)

    monkeypatch.setattr(web, "serve", fake_serve)
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("BULKSCHEDULE_", "ZOHO_", "XDG_"))}
    env |= {"HOME": str(tmp_path / "home"), "BULKSCHEDULE_UPLOAD_RETENTION_DAYS": "2",
            "BULKSCHEDULE_READ_CPU_SECONDS": "9"}
    result = CliRunner().invoke(main, ["serve", "--checks", "3", "--uploads-quota-mb", "5",
                                       "--read-memory-mb", "512"], env=env)
    assert result.exit_code == 0, result.output
    assert seen[0]["max_checks"] == 3 and seen[0]["uploads_quota"] == 5 * 1024 * 1024
    assert seen[0]["retention"] == 2 * DAY
    assert seen[0]["read_limits"] == ReadLimits(memory_mb=512, cpu_seconds=9)
    result = CliRunner().invoke(main, ["serve", "--upload-retention-days", "0"], env=env)
    assert result.exit_code == 0, result.output
    assert seen[1]["retention"] is None  # 0: uploads are kept for good
    assert seen[1]["max_checks"] == (os.cpu_count() or 1)
    assert seen[1]["read_limits"] == ReadLimits(cpu_seconds=9)


# ------------------------------------------------------------------------- state and SIGTERM


def test_the_state_folder_of_serve(tmp_path: Path) -> None:
    default = Settings(state_dir=tmp_path / "default", sources={"state_dir": "default"})
    env = Settings(state_dir=tmp_path / "env", sources={"state_dir": "env BULKSCHEDULE_STATE"})
    flag = tmp_path / "flag"
    assert web.state_folder(default, flag, True) == (flag, False)
    assert web.state_folder(env, None, True) == (tmp_path / "env", False)
    assert web.state_folder(default, None, True) == (None, True)  # a rehearsal: temporary
    assert web.state_folder(default, None, False) == (tmp_path / "default", False)


async def start_serve(*args: str, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """``python -m bulkschedule serve ARGS`` and the URL it says it serves."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkschedule", "serve", "--port", "0", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env)
    assert proc.stderr is not None
    async with asyncio.timeout(STREAM_TIMEOUT):
        while line := (await proc.stderr.readline()).decode():
            if m := re.search(r"serving (http://\S+/)", line):
                return proc, m.group(1)
    raise AssertionError(f"serve did not start: {await proc.stderr.read()!r}")


def browser() -> aiohttp.ClientSession:
    """A client that keeps the page's cookie (aiohttp refuses cookies of IP hosts by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def form_upload(http: aiohttp.ClientSession, url: str, path: Path) -> str:
    token = token_in(await (await http.get(url)).text())
    form = aiohttp.FormData()
    form.add_field("csrf", token)
    form.add_field("file", path.read_bytes(), filename=path.name)
    resp = await http.post(url + "uploads", data=form, allow_redirects=False,
                           headers={"Origin": url.rstrip("/")})
    assert resp.status == 303, await resp.text()
    return resp.headers["Location"].rsplit("/", 1)[1]


async def stopped(proc: asyncio.subprocess.Process, within: float) -> tuple[int, str, float]:
    """SIGTERM, then (exit code, stderr, seconds taken); fails if it takes over ``within``."""
    assert proc.stderr is not None
    begun = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(within):
        err = (await proc.stderr.read()).decode()
        code = await proc.wait()
    return code, err, time.monotonic() - begun


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BULKSCHEDULE_", "ZOHO_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parents[1]),
                                                     os.environ.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


@pytest.mark.slow
async def test_sigterm_stops_a_run_at_a_safe_point_within_ten_seconds(tmp_path: Path) -> None:
    """The worst case: a run whose calls hang on the wire. SIGTERM: the server stops accepting,
    the run stops taking rows, its hanging calls get their grace and are then abandoned
    (unknown: the next run lists them), the results are written, and the process exits 0
    within 10 s. Every session the API holds is in the journal."""
    state = tmp_path / "state"
    sheet = write_sheet(tmp_path / "term.csv", [f"Term {i:02d}" for i in range(40)],
                        first=dt.date(2027, 1, 4))  # within the batch's term
    hold, hung, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def wire(seconds: float) -> None:
        """The sandbox's latency: short, until ``hold``; then calls hang before they count."""
        if hold.is_set():
            hung.set()
            await release.wait()
        else:
            await asyncio.sleep(seconds)

    config = SandboxConfig(rate_calls=10, rate_seconds=1.0, lock_seconds=300.0,
                           latency=(0.01, 0.01), sleep=wire, catalogue=default_catalogue())
    async with Sandbox(config) as sb:
        proc, url = await start_serve(
            "--api-base", sb.url, "--rate", "10/1", "--lock-seconds", "300",
            "--state", str(state), env=serve_env(ZOHO_ACCESS_TOKEN=sb.token))
        try:
            async with browser() as http:
                upload_id = await form_upload(http, url, sheet)
                token = token_in(await (await http.get(url + f"uploads/{upload_id}")).text())
                resp = await http.post(url + "runs", allow_redirects=False,
                                       data={"csrf": token, "upload": upload_id,
                                             "mode": "create"},
                                       headers={"Origin": url.rstrip("/")})
                assert resp.status == 303, await resp.text()
                run_id = int(resp.headers["Location"].rsplit("/", 1)[1])
                async with asyncio.timeout(STREAM_TIMEOUT), \
                        http.get(url + f"runs/{run_id}/events") as stream:
                    async for _, data in sse(stream):
                        if data["done"] >= 5:
                            break
            hold.set()
            async with asyncio.timeout(STREAM_TIMEOUT):
                await hung.wait()  # a call is on the wire and will not come back by itself
            code, err, took = await stopped(proc, SIGTERM_BUDGET)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            held = {s["sessionId"] for s in sb.sessions()}
            release.set()
    assert code == 0, err
    assert "Traceback" not in err
    assert took < SIGTERM_BUDGET
    with Journal(state) as journal:
        info = journal.run(run_id)
        entries = journal.entries()
    assert info is not None and info.finished_at is not None
    assert info.state == "interrupted"
    assert sum(info.counts.values()) == 40
    assert info.counts.get("unknown", 0) >= 1  # the hanging calls, abandoned at the deadline
    assert info.results_path and Path(info.results_path).is_file()
    created = {e.session_id for e in entries if e.status == "created"}
    assert len(created) >= 5
    assert created == held  # every session the API holds is journalled, with its id
    assert not [e for e in entries if e.status == "inflight"]  # every row settled


@pytest.mark.slow
async def test_serve_sandbox_keeps_its_state_where_the_environment_says(tmp_path: Path) -> None:
    state = tmp_path / "from-env"
    proc, url = await start_serve("--sandbox", "--speed", "60",
                                  env=serve_env(BULKSCHEDULE_STATE=str(state)))
    try:
        async with browser() as http:
            upload_id = await form_upload(http, url, write_sheet(tmp_path / "s.csv", ["S"]))
        code, err, _ = await stopped(proc, SIGTERM_BUDGET)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, err
    assert (state / "uploads" / upload_id / META).is_file()  # not a temporary folder

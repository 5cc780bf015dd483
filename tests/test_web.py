"""The upload page (`bulkschedule.web.server`) via aiohttp's test client: every route, bad uploads,
CSRF, login, and runs through the real pipeline against the in-process sandbox.

Assertions are on statuses, page content, stored files, journal rows and sandbox counters, never
on elapsed time. Runs use sped-up sandbox windows so each finishes in about a second; an event
stream that never ends fails its test after ``STREAM_TIMEOUT`` instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import html
import io
import json
import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openpyxl
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from bulkschedule.app import job
from bulkschedule.app.config import Settings
from bulkschedule.cli.root import main
from bulkschedule.sandbox.server import Sandbox, SandboxConfig, default_catalogue
from bulkschedule.send.journal import Journal
from bulkschedule.web import server as web

ROOT = Path(__file__).resolve().parents[1]
VALID = ROOT / "sample_data" / "sessions.xlsx"
ERRORS = ROOT / "sample_data" / "sessions_with_errors.csv"
TODAY = dt.date(2026, 6, 1)  # the samples' 2027 dates stay in the future whatever the real date
STREAM_TIMEOUT = 60.0
PASSWORD = "correct horse battery"
COURSE, BATCH, MODULE = "478346000019479103", "478346000019479115", "478346000019479119"
TRAINER = "478346000008251001"
HEADER = ["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
          "startTime", "endTime"]


# ------------------------------------------------------------------------------------- helpers


class Page:
    """A test client that behaves like the page's own forms: same-origin, with the CSRF token."""

    def __init__(self, client: TestClient, state: Path) -> None:
        self.client = client
        self.state = state

    @property
    def origin(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")

    @property
    def app_state(self) -> Any:
        return self.client.app[web.STATE]  # type: ignore[index]

    async def csrf(self, path: str = "/") -> str:
        resp = await self.client.get(path)
        return token_in(await resp.text())

    async def upload(self, name: str, data: bytes, *, fields: dict[str, str] | None = None,
                     csrf: str | None = "auto", headers: dict[str, str] | None = None,
                     csrf_after_file: bool = False) -> aiohttp.ClientResponse:
        token = await self.csrf() if csrf == "auto" else csrf
        form = aiohttp.FormData()
        if token is not None and not csrf_after_file:
            form.add_field("csrf", token)
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
        if token is not None and csrf_after_file:
            form.add_field("csrf", token)
        for key, value in (fields or {}).items():
            form.add_field(key, value)
        return await self.client.post("/uploads", data=form, allow_redirects=False,
                                      headers={"Origin": self.origin, **(headers or {})})

    async def upload_ok(self, path: Path, **kwargs: Any) -> str:
        resp = await self.upload(path.name, path.read_bytes(), **kwargs)
        assert resp.status == 303, await resp.text()
        location = resp.headers["Location"]
        assert re.fullmatch(r"/uploads/[0-9a-f]{16}", location)
        return location.rsplit("/", 1)[1]

    async def post(self, path: str, data: dict[str, str] | None = None, *,
                   csrf: str | None = "auto", headers: dict[str, str] | None = None
                   ) -> aiohttp.ClientResponse:
        form = dict(data or {})
        if csrf == "auto":
            form["csrf"] = await self.csrf()
        elif csrf is not None:
            form["csrf"] = csrf
        return await self.client.post(path, data=form, allow_redirects=False,
                                      headers={"Origin": self.origin} if headers is None
                                      else headers)

    async def start(self, upload_id: str, mode: str) -> int:
        resp = await self.post("/runs", {"upload": upload_id, "mode": mode})
        assert resp.status == 303, await resp.text()
        return int(resp.headers["Location"].rsplit("/", 1)[1])

    async def events(self, run_id: int) -> list[tuple[str, dict[str, Any]]]:
        """Every event of the run's stream, up to and including ``done``."""
        out: list[tuple[str, dict[str, Any]]] = []
        async with asyncio.timeout(STREAM_TIMEOUT):
            resp = await self.client.get(f"/runs/{run_id}/events")
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            async for name, data in sse(resp):
                out.append((name, data))
                if name == "done":
                    break
        return out

    async def finish(self, run_id: int) -> dict[str, Any]:
        name, data = (await self.events(run_id))[-1]
        assert name == "done"
        return data


async def sse(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    name, data = "message", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif not line and data:
            yield name, json.loads(data)
            name, data = "message", ""


def token_in(page: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert m, page
    return m.group(1)


def settings_for(state: Path, **kwargs: Any) -> Settings:
    values: dict[str, Any] = {"rate": "30/60", "lock_seconds": 300.0, "workers": 4}
    values.update(kwargs)
    return Settings(state_dir=state, **values)


def uploaded_files(state: Path) -> list[Path]:
    root = state / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def write_sheet(path: Path, names: list[str], *, first: dt.date = dt.date(2027, 3, 1),
                trainer: str = TRAINER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i, name in enumerate(names):
            day = first + dt.timedelta(days=i)
            w.writerow([COURSE, BATCH, MODULE, name, trainer, "Classroom",
                        day.strftime("%d-%m-%Y"), "10:00 AM", "11:00 AM"])
    return path


def workbook_rows(data: bytes, sheet: str = "Results") -> list[dict[str, Any]]:
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        rows = wb[sheet].iter_rows(values_only=True)
        header = next(rows)
        return [dict(zip(header, r, strict=False)) for r in rows]
    finally:
        wb.close()


def workbook_text(data: bytes) -> str:
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        return "\n".join(str(v) for ws in wb.worksheets for r in ws.iter_rows(values_only=True)
                         for v in r if v is not None)
    finally:
        wb.close()


MakePage = Callable[..., Awaitable[Page]]


@contextlib.asynccontextmanager
async def page_factory(tmp_path: Path) -> AsyncIterator[MakePage]:
    """Apps on test servers (``make_app`` keywords pass through), all closed at the end."""
    clients: list[TestClient] = []

    async def factory(*, settings: Settings | None = None, state: Path | None = None,
                      **kwargs: Any) -> Page:
        state = state or tmp_path / "state"
        kwargs.setdefault("env", {})
        kwargs.setdefault("today", TODAY)
        app = web.make_app(settings or settings_for(state), state_dir=state, **kwargs)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Page(client, state)

    try:
        yield factory
    finally:
        for client in reversed(clients):
            await client.close()


@pytest.fixture
async def make_page(tmp_path: Path) -> AsyncIterator[MakePage]:
    async with page_factory(tmp_path) as factory:
        yield factory


def fast_sandbox(**kwargs: Any) -> SandboxConfig:
    """30 calls / 60 s and a 300 s lock, 60x faster: 40 rows in about a second and a half. It
    holds the default org, as ``serve --sandbox``'s does (the samples' courses, trainers...)."""
    values: dict[str, Any] = {"rate_calls": 30, "rate_seconds": 60.0, "lock_seconds": 300.0,
                              "speed": 60.0, "catalogue": default_catalogue()}
    values.update(kwargs)
    return SandboxConfig(**values)


# --------------------------------------------------------------------------- access (unit level)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost",
                                  "app.localhost"])
def test_loopback_hosts(host: str) -> None:
    assert web.is_loopback(host)
    web.check_access(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_non_loopback_host_needs_a_password(host: str) -> None:
    assert not web.is_loopback(host)
    with pytest.raises(web.WebError, match="BULKSCHEDULE_WEB_PASSWORD"):
        web.check_access(host, None)
    web.check_access(host, PASSWORD)


def test_short_password_is_refused() -> None:
    with pytest.raises(web.WebError, match="at least 8"):
        web.check_access("0.0.0.0", "short")


@pytest.mark.parametrize(("given", "expected"), [
    ("../../../etc/passwd.csv", "passwd.csv"),
    ("..\\..\\windows\\evil.xlsx", "evil.xlsx"),
    ("/abs/path/term 1.CSV", "term 1.csv"),
    ("....csv", "sheet.csv"),
    (".hidden.xlsx", "hidden.xlsx"),
    ("<script>alert(1)</script>.csv", "script.csv"),
    ("a\x00b.csv", "a_b.csv"),
    ("résumé 2027.xlsx", "resume 2027.xlsx"),
    ("x" * 300 + ".csv", "x" * 80 + ".csv"),
])
def test_safe_name(given: str, expected: str) -> None:
    assert web.safe_name(given) == expected


def test_serve_command_refuses_a_public_host_without_password() -> None:
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"],
                                env={"BULKSCHEDULE_WEB_PASSWORD": ""})
    assert result.exit_code == 2
    assert "BULKSCHEDULE_WEB_PASSWORD" in result.output
    assert "Traceback" not in result.output


def test_serve_command_refuses_speed_without_sandbox() -> None:
    result = CliRunner().invoke(main, ["serve", "--speed", "5"])
    assert result.exit_code == 2
    assert "--speed only applies with --sandbox" in result.output


def test_serve_command_help() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--host", "--port", "--sandbox", "--password-env", "--max-upload-mb"):
        assert flag in result.output


async def test_serve_answers_on_loopback_and_cleans_up(tmp_path: Path) -> None:
    """`serve` as the command runs it: a real socket, the sandbox, a temporary state folder."""
    urls: list[str] = []
    ready = asyncio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    task = asyncio.create_task(web.serve(settings_for(tmp_path / "home-state"), port=0,
                                         sandbox=True, speed=60.0, on_ready=on_ready))
    try:
        await asyncio.wait_for(ready.wait(), STREAM_TIMEOUT)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", urls[0])
        async with aiohttp.ClientSession() as http, http.get(urls[0]) as resp:
            assert resp.status == 200
            assert 'class="badge sandbox"' in await resp.text()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not (tmp_path / "home-state").exists()  # a sandbox rehearsal keeps no state


async def test_serve_refuses_an_unusable_state_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(web.WebError, match="cannot use the state folder"):
        await web.serve(settings_for(blocker), port=0, state_dir=blocker)


# ------------------------------------------------------------------------- pages and headers


async def test_index_sets_a_strict_session_cookie_and_security_headers(make_page: MakePage
                                                                       ) -> None:
    page = await make_page()
    resp = await page.client.get("/")
    assert resp.status == 200
    text = await resp.text()
    assert 'action="/uploads"' in text and 'enctype="multipart/form-data"' in text
    token_in(text)
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{web.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in text  # no inline script: the CSP would block it anyway


async def test_static_files_are_served_and_cannot_escape(make_page: MakePage) -> None:
    page = await make_page()
    for name in ("app.js", "app.css"):
        resp = await page.client.get(f"/static/{name}")
        assert resp.status == 200, name
    for path in ("/static/../web.py", "/static/%2e%2e/web.py", "/static/..%2fweb.py"):
        resp = await page.client.get(path)
        assert resp.status in (403, 404), path
        assert "def make_app" not in await resp.text()


async def test_unknown_addresses_get_a_page_not_a_traceback(make_page: MakePage) -> None:
    page = await make_page()
    for path in ("/nope", "/runs/abc", "/runs/999", "/runs/999/results.xlsx",
                 "/runs/999/events", "/uploads/0123456789abcdef", "/uploads/..%2f..%2fetc",
                 "/uploads/0123456789abcdef/report.xlsx"):
        resp = await page.client.get(path)
        assert resp.status == 404, path
        assert "Traceback" not in await resp.text()
    resp = await page.client.get("/uploads")
    assert resp.status == 405


async def test_a_foreign_host_name_is_refused_without_a_password(make_page: MakePage) -> None:
    """DNS rebinding: a site that points its own name at 127.0.0.1 gets nothing."""
    page = await make_page()
    resp = await page.client.get("/", headers={"Host": f"evil.example:{page.client.port}"})
    assert resp.status == 403
    assert "loopback" in await resp.text()
    resp = await page.client.get("/", headers={"Host": f"localhost:{page.client.port}"})
    assert resp.status == 200


# ---------------------------------------------------------------------------------- uploads


async def test_upload_with_errors_shows_the_cli_s_problems(make_page: MakePage) -> None:
    page = await make_page()
    upload_id = await page.upload_ok(ERRORS)
    resp = await page.client.get(f"/uploads/{upload_id}")
    assert resp.status == 200
    text = await resp.text()

    expected = job.load(ERRORS, today=TODAY)  # what `bulkschedule validate` reports
    assert expected.errors and expected.sessions
    summary = re.search(r'id="summary">(.*?)</p>', text, re.S)
    assert summary
    assert " ".join(summary.group(1).split()) == (
        f"{expected.n_rows} rows: <strong>{len(expected.sessions)} valid</strong>, "
        f"{expected.errors} errors, {expected.warnings} warnings")
    rows = re.findall(r'<tr class="(error|warning)"><td class="num">(\w+)</td><td>(.*?)</td>'
                      r'<td class="value">(.*?)</td>', text)
    assert len(rows) == len(expected.problems)
    for (severity, row, column, value), p in zip(rows, expected.problems, strict=True):
        assert severity == p.severity
        assert row == (str(p.row) if p.row is not None else "sheet")
        assert column == html.escape(p.column or "")
        assert value == html.escape(p.value or "")
    assert "47834600000825100A" in text  # an offending value, shown where it is
    assert f'href="/uploads/{upload_id}/report.xlsx"' in text
    assert 'value="dry-run"' in text and 'value="create"' in text
    assert f"Create sessions ({len(expected.sessions)})" in text


async def test_annotated_sheet_download(make_page: MakePage) -> None:
    page = await make_page()
    upload_id = await page.upload_ok(ERRORS)
    resp = await page.client.get(f"/uploads/{upload_id}/report.xlsx")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    assert resp.headers["Content-Disposition"] == \
        'attachment; filename="sessions_with_errors.report.xlsx"'
    data = await resp.read()
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert "Problems" in wb.sheetnames
    problems = list(wb["Problems"].iter_rows(values_only=True))
    assert len(problems) - 1 == len(job.load(ERRORS, today=TODAY).problems)


async def test_valid_workbook_upload_is_stored_under_the_state_folder(make_page: MakePage
                                                                       ) -> None:
    page = await make_page()
    upload_id = await page.upload_ok(VALID)
    folder = page.state / "uploads" / upload_id
    assert (folder / "sessions.xlsx").read_bytes() == VALID.read_bytes()
    text = " ".join((await (await page.client.get(f"/uploads/{upload_id}")).text()).split())
    assert "40 rows: <strong>40 valid</strong>, 0 errors" in text
    assert "No problems found." in text
    assert re.search(r'id="create" class="primary"\s*>', text)  # enabled


@pytest.mark.parametrize(("name", "data", "status", "message"), [
    ("notes.txt", b"hello", 415, "only .xlsx and .csv"),
    ("sheet", b"a,b\n1,2\n", 415, "without an extension"),
    ("sessions.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, 415, "only .xlsx"),
    ("virus.xlsx", b"MZ\x90\x00" + b"\0" * 200, 415, "not an Excel workbook"),
    ("photo.csv", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + b"\0" * 100, 415, "binary data"),
    ("empty.csv", b"", 415, "the file is empty"),
    ("broken.xlsx", b"PK\x03\x04" + b"garbage" * 50, 415, "damaged"),
])
async def test_bad_uploads_are_refused_and_nothing_is_kept(
        make_page: MakePage, name: str, data: bytes, status: int, message: str) -> None:
    page = await make_page()
    resp = await page.upload(name, data)
    assert resp.status == status
    text = await resp.text()
    assert message in text
    assert 'action="/uploads"' in text  # the form again, to try another file
    assert uploaded_files(page.state) == []


async def test_zip_that_is_not_a_workbook_and_workbook_named_csv_are_refused(
        make_page: MakePage) -> None:
    page = await make_page()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "not a workbook")
    resp = await page.upload("archive.xlsx", buf.getvalue())
    assert resp.status == 415
    assert "zip archive, not an Excel workbook" in await resp.text()
    resp = await page.upload("sessions.csv", VALID.read_bytes())
    assert resp.status == 415
    assert "workbook saved with a .csv name" in await resp.text()
    assert uploaded_files(page.state) == []


async def test_unreadable_sheet_is_a_clear_message(make_page: MakePage) -> None:
    page = await make_page()
    resp = await page.upload("blank.csv", b"\n\n  \n")
    assert resp.status == 422
    text = await resp.text()
    assert "blank.csv" in text and "no header row" in text
    assert str(page.state) not in text  # the server's folders are not the user's business
    assert uploaded_files(page.state) == []


async def test_too_large_upload_is_refused_with_the_limit(make_page: MakePage) -> None:
    page = await make_page(max_upload=2000)
    body = ERRORS.read_bytes()
    assert len(body) > 2000
    resp = await page.upload("big.csv", body)  # refused while streaming
    assert resp.status == 413
    text = await resp.text()
    assert "larger than" in text and "upload limit" in text
    resp = await page.upload("huge.csv", b"a,b\n" * 100_000)  # refused by Content-Length
    assert resp.status == 413
    assert "upload limit" in await resp.text()
    assert uploaded_files(page.state) == []
    assert await page.upload_ok(write_sheet(page.state.parent / "small.csv", ["One"]))


@pytest.mark.parametrize("name", ["../../../../tmp/evil.csv", "..\\..\\evil.csv",
                                  "/etc/cron.d/evil.csv", "uploads/../../evil.csv",
                                  "..%2F..%2Fevil.csv"])
async def test_path_traversal_names_stay_inside_the_upload_folder(
        make_page: MakePage, tmp_path: Path, name: str) -> None:
    page = await make_page()
    sheet = write_sheet(tmp_path / "x.csv", ["Traversal test"])
    # Built by hand: aiohttp's client would percent-encode the slashes; a hostile client not.
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n'
            f"{await page.csrf()}\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f'name="file"; filename="{name}"\r\nContent-Type: text/csv\r\n\r\n').encode() \
        + sheet.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    resp = await page.client.post(
        "/uploads", data=body, allow_redirects=False,
        headers={"Origin": page.origin,
                 "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status == 303, await resp.text()
    upload_id = resp.headers["Location"].rsplit("/", 1)[1]
    files = uploaded_files(page.state)
    visible = [p for p in files if not p.name.startswith(".")]
    assert visible == [page.state / "uploads" / upload_id / "evil.csv"]
    assert all(p.is_relative_to(page.state / "uploads" / upload_id) for p in files)
    assert not (tmp_path / "evil.csv").exists()
    text = await (await page.client.get(f"/uploads/{upload_id}")).text()
    assert "<h1>evil.csv</h1>" in text


async def test_ids_from_the_form_must_be_digits_and_are_used(make_page: MakePage,
                                                              tmp_path: Path) -> None:
    page = await make_page()
    resp = await page.upload("s.csv", b"name\nx\n", fields={"course": "12ab"})
    assert resp.status == 400
    assert "Course ID must be digits" in await resp.text()
    assert uploaded_files(page.state) == []
    # A sheet without ID columns: the IDs typed on the form apply to every row, as --course...
    sheet = tmp_path / "no-ids.csv"
    with sheet.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER[3:])
        w.writerow(["Form IDs", TRAINER, "Classroom", "02-03-2027", "10:00 AM", "11:00 AM"])
    upload_id = await page.upload_ok(sheet, fields={"course": COURSE, "batch": BATCH,
                                                    "module": MODULE})
    text = " ".join((await (await page.client.get(f"/uploads/{upload_id}")).text()).split())
    assert "1 rows: <strong>1 valid</strong>, 0 errors" in text


async def test_cell_values_are_escaped(make_page: MakePage, tmp_path: Path) -> None:
    page = await make_page()
    sheet = write_sheet(tmp_path / "xss.csv", ["<img src=x onerror=alert(1)>"],
                        trainer="<script>alert('x')</script>")
    upload_id = await page.upload_ok(sheet)
    text = await (await page.client.get(f"/uploads/{upload_id}")).text()
    assert "<script>alert" not in text and "<img src=x" not in text
    # Escaped (Jinja2 spells the quote &#39;, html.escape &#x27;: either is safe).
    assert re.search(r"&lt;script&gt;alert\((&#x27;|&#39;)x(&#x27;|&#39;)\)&lt;/script&gt;", text)


# ------------------------------------------------------------------------------------- CSRF


async def test_upload_without_a_valid_csrf_token_is_refused(make_page: MakePage) -> None:
    page = await make_page()
    data = ERRORS.read_bytes()
    for kwargs in ({"csrf": None}, {"csrf": "0" * 64}, {"csrf_after_file": True}):
        resp = await page.upload("s.csv", data, **kwargs)  # type: ignore[arg-type]
        assert resp.status == 403, kwargs
        assert "reload the page" in await resp.text()
    assert uploaded_files(page.state) == []


async def test_csrf_token_is_tied_to_the_session(make_page: MakePage) -> None:
    page = await make_page()
    token = await page.csrf()
    page.client.session.cookie_jar.clear()  # another visitor (or an attacker) with our token
    resp = await page.upload("s.csv", ERRORS.read_bytes(), csrf=token)
    assert resp.status == 403


async def test_posts_need_a_same_origin_origin_or_referer(make_page: MakePage) -> None:
    page = await make_page()
    token = await page.csrf()
    form = {"upload": "0123456789abcdef", "mode": "dry-run", "csrf": token}
    for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Referer": "http://evil.example/page"}):
        resp = await page.client.post("/runs", data=form, headers=headers,
                                      allow_redirects=False)
        assert resp.status == 403, headers
        assert "Origin/Referer" in await resp.text()
    # A same-origin Referer is enough when the browser sends no Origin.
    resp = await page.client.post("/runs", data=form, allow_redirects=False,
                                  headers={"Referer": f"{page.origin}/uploads/x"})
    assert resp.status == 404  # past the CSRF checks: the upload does not exist
    resp = await page.upload("s.csv", ERRORS.read_bytes(), headers={"Origin": "http://evil.example"})
    assert resp.status == 403


async def test_run_form_without_token_is_refused(make_page: MakePage) -> None:
    page = await make_page()
    upload_id = await page.upload_ok(VALID)
    for csrf in (None, "f" * 64):
        resp = await page.post("/runs", {"upload": upload_id, "mode": "dry-run"}, csrf=csrf)
        assert resp.status == 403
    assert page.app_state.runs == {}


async def test_large_form_posts_are_refused(make_page: MakePage) -> None:
    page = await make_page()
    resp = await page.post("/runs", {"upload": "x" * 200_000, "mode": "dry-run"})
    assert resp.status == 413


# ------------------------------------------------------------------------------------- login


async def test_password_mode_requires_a_login_everywhere(make_page: MakePage) -> None:
    page = await make_page(password=PASSWORD)
    resp = await page.client.get("/history", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] in ("/login?next=%2Fhistory", "/login?next=/history")
    for path in ("/runs/1/results.xlsx", "/runs/1/events", "/uploads/0123456789abcdef/report.xlsx"):
        resp = await page.client.get(path, allow_redirects=False)
        assert resp.status == 401, path
    login = await page.client.get("/login?next=/history")
    assert login.status == 200
    token = token_in(await login.text())
    resp = await page.client.post("/uploads", data={"csrf": token}, allow_redirects=False,
                                  headers={"Origin": page.origin})
    assert resp.status == 401
    resp = await page.upload("s.csv", ERRORS.read_bytes(), csrf=token)
    assert resp.status == 401
    assert uploaded_files(page.state) == []
    # The static files stay public: the login page needs its style sheet.
    assert (await page.client.get("/static/app.css")).status == 200


async def test_login_with_the_password_opens_the_pages(make_page: MakePage) -> None:
    page = await make_page(password=PASSWORD)
    token = await page.csrf("/login")
    before = page.client.session.cookie_jar.filter_cookies(page.client.make_url("/"))[web.COOKIE]
    resp = await page.post("/login", {"password": "wrong password", "next": "/history"},
                           csrf=token)
    assert resp.status == 401
    assert "Wrong password" in await resp.text()
    resp = await page.post("/login", {"password": PASSWORD, "next": "/history"}, csrf=token)
    assert resp.status == 303
    assert resp.headers["Location"] == "/history"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    after = page.client.session.cookie_jar.filter_cookies(page.client.make_url("/"))[web.COOKIE]
    assert after.value != before.value  # a new session id at login (no fixation)
    assert (await page.client.get("/history", allow_redirects=False)).status == 200
    assert await page.upload_ok(ERRORS)
    # Log out: the session is gone server-side, not just the cookie.
    resp = await page.post("/logout")
    assert resp.status == 303
    page.client.session.cookie_jar.update_cookies({web.COOKIE: after.value})
    assert (await page.client.get("/history", allow_redirects=False)).status == 303


async def test_login_needs_its_csrf_token_and_a_local_next(make_page: MakePage) -> None:
    page = await make_page(password=PASSWORD)
    resp = await page.post("/login", {"password": PASSWORD}, csrf=None)
    assert resp.status == 403
    token = await page.csrf("/login")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        page.client.session.cookie_jar.clear()
        token = await page.csrf("/login")
        resp = await page.post("/login", {"password": PASSWORD, "next": target}, csrf=token)
        assert resp.status == 303
        assert resp.headers["Location"] == "/", target


async def test_repeated_wrong_passwords_are_throttled(make_page: MakePage) -> None:
    page = await make_page(password=PASSWORD)
    token = await page.csrf("/login")
    for _ in range(web.LOGIN_ATTEMPTS):
        resp = await page.post("/login", {"password": "guess guess"}, csrf=token)
        assert resp.status == 401
    resp = await page.post("/login", {"password": PASSWORD}, csrf=token)
    assert resp.status == 429  # even the right one, until the window passes
    assert "Retry-After" in resp.headers


async def test_password_mode_accepts_any_host_name(make_page: MakePage) -> None:
    """Behind a name (or bound to 0.0.0.0) the login protects the page, not the Host check."""
    page = await make_page(password=PASSWORD)
    resp = await page.client.get("/login", headers={"Host": "scheduler.example"})
    assert resp.status == 200


# -------------------------------------------------------------------------------------- runs


async def test_dry_run_sends_nothing_and_writes_results(make_page: MakePage) -> None:
    page = await make_page(sandbox=fast_sandbox())
    upload_id = await page.upload_ok(VALID)
    run_id = await page.start(upload_id, "dry-run")
    final = await page.finish(run_id)
    assert final["state"] == "finished"
    assert final["counts"] == {"would-create": 40}
    sandbox = page.app_state.sandbox
    assert sandbox.stats()["creates"] == 0 and sandbox.stats()["sessions"] == 0  # reads only
    resp = await page.client.get(final["results"])
    assert resp.status == 200
    assert resp.headers["Content-Disposition"] == 'attachment; filename="sessions.results.xlsx"'
    rows = workbook_rows(await resp.read())
    assert len(rows) == 40 and {r["status"] for r in rows} == {"would-create"}
    info = Journal(page.state).run(run_id)
    assert info is not None and info.dry_run and info.state == "finished"


async def test_create_run_streams_progress_and_every_session_is_created_once(
        make_page: MakePage) -> None:
    page = await make_page(sandbox=fast_sandbox())
    upload_id = await page.upload_ok(VALID)
    run_id = await page.start(upload_id, "create")

    resp = await page.client.get(f"/runs/{run_id}")
    assert resp.status == 200
    text = await resp.text()
    assert f"Run {run_id}: sessions.xlsx" in text
    assert 'id="progress"' in text

    events = await page.events(run_id)
    progress = [data for name, data in events if name == "progress"]
    name, final = events[-1]
    assert name == "done" and final["state"] == "finished"
    assert final["counts"] == {"created": 40} and final["done"] == 40
    dones = [p["done"] for p in progress]
    assert dones == sorted(dones)  # counts only go up
    assert all(p["total"] == 40 for p in progress)
    assert all({"rate", "eta", "lock_left", "counts", "state_text"} <= p.keys() for p in progress)

    stats = page.app_state.sandbox.stats()
    assert stats["created"] == 40 and stats["duplicates"] == 0 and stats["refused"] == 0
    assert stats["max_calls_in_window"] <= 30
    held = {s["sessionName"]: s["sessionId"] for s in page.app_state.sandbox.sessions()}

    resp = await page.client.get(f"/runs/{run_id}/results.xlsx")
    assert resp.status == 200
    rows = workbook_rows(await resp.read())
    assert {r["status"] for r in rows} == {"created"}
    assert {r["name"]: str(r["sessionId"]) for r in rows} == held

    # A reload after the end shows the outcome and the download, without a stream.
    text = await (await page.client.get(f"/runs/{run_id}")).text()
    assert "data-events" not in text and f'href="/runs/{run_id}/results.xlsx"' in text
    history = await (await page.client.get("/history")).text()
    assert f'<a href="/runs/{run_id}">{run_id}</a>' in history
    assert "40 created" in history
    # The same sheet again: the journal knows every row, nothing is sent twice.
    again = await page.start(upload_id, "create")
    final = await page.finish(again)
    assert final["counts"] == {"exists": 40}
    assert page.app_state.sandbox.stats()["created"] == 40


async def test_lockout_countdown_one_run_at_a_time_and_stop(make_page: MakePage) -> None:
    """A locked sandbox: the stream shows the countdown, a second start is refused, Stop ends
    the run with its rows pending and writes the results. (The org is not read here: its
    reads would wait out the lock before the run began.)"""
    page = await make_page(sandbox=fast_sandbox(speed=1.0, start_locked=300.0), check_org=False)
    upload_id = await page.upload_ok(VALID)
    run_id = await page.start(upload_id, "create")
    async with asyncio.timeout(STREAM_TIMEOUT):
        resp = await page.client.get(f"/runs/{run_id}/events")
        async for name, data in sse(resp):
            assert name == "progress", data
            if data["lock_left"] > 0:
                break
        resp.close()
    assert data["lock_left"] > 200  # counting down from Zoho's five minutes

    text = await (await page.client.get(f"/runs/{run_id}")).text()
    assert re.search(r'id="lock" role="alert"\s*>', text)  # the countdown is shown, not hidden

    second = await page.post("/runs", {"upload": upload_id, "mode": "dry-run"})
    assert second.status == 409
    assert f"Run {run_id}" in await second.text()

    resp = await page.post(f"/runs/{run_id}/stop")
    assert resp.status == 303
    text = await (await page.client.get(f"/runs/{run_id}")).text()
    assert "Stop now" in text
    # Calls waiting for the lock to end count as in flight; a second Stop abandons them
    # instead of waiting the runner's grace period (the page's "second Ctrl-C").
    resp = await page.post(f"/runs/{run_id}/stop")
    assert resp.status == 303
    final = await page.finish(run_id)
    assert final["state"] == "interrupted"
    assert set(final["counts"]) <= {"pending", "unknown"}
    assert sum(final["counts"].values()) == 40
    assert page.app_state.sandbox.stats()["created"] == 0
    resp = await page.client.get(f"/runs/{run_id}/results.xlsx")
    assert resp.status == 200
    assert Journal(page.state).run(run_id).state == "interrupted"  # type: ignore[union-attr]


async def test_runs_need_a_valid_upload_and_mode(make_page: MakePage, tmp_path: Path) -> None:
    page = await make_page(sandbox=fast_sandbox())
    resp = await page.post("/runs", {"upload": "../../etc", "mode": "create"})
    assert resp.status == 404
    upload_id = await page.upload_ok(VALID)
    resp = await page.post("/runs", {"upload": upload_id, "mode": "delete-everything"})
    assert resp.status == 400
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nonly a name\n")
    bad_id = await page.upload_ok(bad)
    text = await (await page.client.get(f"/uploads/{bad_id}")).text()
    assert re.search(r'id="create" class="primary" disabled', text)
    resp = await page.post("/runs", {"upload": bad_id, "mode": "create"})
    assert resp.status == 409
    assert "Nothing to send" in await resp.text()
    resp = await page.post("/runs/123/stop")
    assert resp.status == 404


async def test_sending_without_credentials_is_a_clear_error(make_page: MakePage) -> None:
    page = await make_page(env={})  # the real API, and no credentials anywhere
    upload_id = await page.upload_ok(VALID)
    resp = await page.post("/runs", {"upload": upload_id, "mode": "create"})
    assert resp.status == 503
    assert "no credentials" in await resp.text()
    assert page.app_state.runs == {}
    # A dry run needs no credentials (and sends nothing).
    run_id = await page.start(upload_id, "dry-run")
    assert (await page.finish(run_id))["counts"] == {"would-create": 40}


async def test_rejected_token_never_reaches_pages_or_downloads(make_page: MakePage,
                                                               tmp_path: Path) -> None:
    secret = "1000.deadbeefdeadbeefdeadbeef.cafebabecafebabe"
    async with Sandbox(fast_sandbox()) as sb:
        page = await make_page(settings=settings_for(tmp_path / "state", api_base=sb.url),
                               env={"ZOHO_ACCESS_TOKEN": secret})
        upload_id = await page.upload_ok(VALID)
        run_id = await page.start(upload_id, "create")
        events = await page.events(run_id)
        final = events[-1][1]
        assert final["state"] in ("failed", "finished")
        assert final["message"]  # says why (the token was refused)
        assert sb.stats()["created"] == 0
        seen = [json.dumps(events)]
        for path in (f"/runs/{run_id}", "/history", f"/runs/{run_id}/results.xlsx"):
            resp = await page.client.get(path)
            seen.append(workbook_text(await resp.read()) if path.endswith(".xlsx")
                        else await resp.text())
        assert all(secret not in s for s in seen)
        assert "deadbeef" not in "".join(seen)


async def test_web_and_cli_runs_share_one_budget(make_page: MakePage, tmp_path: Path) -> None:
    """A web run and a CLI-style run (job.send, as `run` calls it) on the same state folder at
    the same time never exceed the limit together: the sandbox counts every call."""
    state = tmp_path / "state"
    config = SandboxConfig(rate_calls=10, rate_seconds=1.0, lock_seconds=2.0,
                           catalogue=default_catalogue())
    async with Sandbox(config) as sb:
        settings = settings_for(state, api_base=sb.url, rate="10/1", lock_seconds=2.0)
        page = await make_page(settings=settings, state=state,
                               env={"ZOHO_ACCESS_TOKEN": sb.token})
        web_sheet = write_sheet(tmp_path / "web.csv", [f"Web {i:02d}" for i in range(15)])
        cli_sheet = write_sheet(tmp_path / "cli.csv", [f"CLI {i:02d}" for i in range(15)],
                                first=dt.date(2027, 1, 4))  # within the batch's term too
        upload_id = await page.upload_ok(web_sheet)
        validation = job.load(cli_sheet, today=TODAY)
        from bulkschedule.zoho.auth import StaticToken

        send = job.SendSettings(api_base=sb.url, state_dir=state, rate_calls=10,
                                rate_period=1.0, lock_seconds=2.0)
        cli_run = asyncio.create_task(job.send(
            validation, send, tokens=lambda s: StaticToken(sb.token),
            results_path=tmp_path / "cli.results.xlsx"))
        run_id = await page.start(upload_id, "create")
        final = await page.finish(run_id)
        cli_result = await asyncio.wait_for(cli_run, STREAM_TIMEOUT)
        assert final["counts"] == {"created": 15}
        assert cli_result.counts == {"created": 15}
        stats = sb.stats()
        assert stats["created"] == 30 and stats["refused"] == 0
        assert stats["max_calls_in_window"] <= 10


async def test_history_survives_a_restart_and_serves_only_its_own_files(
        make_page: MakePage, tmp_path: Path) -> None:
    state = tmp_path / "state"
    page = await make_page(sandbox=fast_sandbox(), state=state)
    upload_id = await page.upload_ok(VALID)
    run_id = await page.start(upload_id, "dry-run")
    await page.finish(run_id)
    # A CLI run in the same journal, with a results path outside the app's folders, and a
    # forged row pointing at the uploaded sheet itself.
    with Journal(state) as journal:
        cli_id = journal.start_run("/home/admin/term.xlsx", "https://people.zoho.com")
        journal.finish_run(cli_id, {"created": 3}, str(ROOT / "pyproject.toml"))
        forged = journal.start_run("x", "https://people.zoho.com")
        journal.finish_run(forged, {}, str(state / "uploads" / upload_id / "sessions.xlsx"))

    fresh = await make_page(sandbox=fast_sandbox(), state=state)  # the server restarted
    text = await (await fresh.client.get("/history")).text()
    assert f'href="/runs/{run_id}/results.xlsx"' in text
    assert "term.xlsx" in text and "/home/admin" not in text
    assert f'href="/runs/{cli_id}/results.xlsx"' not in text
    resp = await fresh.client.get(f"/runs/{run_id}/results.xlsx")
    assert resp.status == 200
    for other in (cli_id, forged):
        resp = await fresh.client.get(f"/runs/{other}/results.xlsx")
        assert resp.status == 404
        assert "[project]" not in await resp.text()
    text = await (await fresh.client.get(f"/runs/{run_id}")).text()
    assert "finished" in text and f'/runs/{run_id}/results.xlsx' in text
    final = await fresh.finish(run_id)  # the stream of a finished run: one `done` event
    assert final["state"] == "finished" and final["counts"] == {"would-create": 40}

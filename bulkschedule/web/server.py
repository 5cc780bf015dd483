"""The upload page: ``bulkschedule serve``, a small web front on the same pipeline as ``run``.

Why a server-rendered page and not a front-end build: an admin opens it on the machine that holds
the credentials, and everything it does is already a library call (`job.load`, `job.send`,
`results.write_report`, `Journal.runs`). Nothing new decides what is valid or how fast to send:
a web run goes through `job.send` to a `target` resolved as for the CLI, so it uses the same
journal (no duplicates), the same limiter (one budget shared with any CLI run on the same state
folder) and writes the same results workbook.

This module is the routes, the app and `serve`; the rest is one concern per module:

* `access`: who may use the page (loopback or password, sessions, CSRF, Origin);
* `uploads`: storing, checking and validating uploaded sheets, the quota and pruning;
* `checking`: a few checks at a time (`Gate`), each in capped child processes (`app.isolate`);
* `online`: the org's checks for an upload and a run, when the page can read the org;
* `runs`: runs on the server (one at a time, progress for any tab, shutdown at a safe point);
* `pages` and ``templates/``: the HTML (Jinja2, autoescaped).

Downloads are looked up by id and served only if this app wrote them; every value shown is
HTML-escaped by the templates, and messages pass through the log redactor. Limits and what the
operator must add: ``docs/security.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bulkschedule.app import isolate, job
from bulkschedule.app.config import Settings
from bulkschedule.app.isolate import ReadLimits
from bulkschedule.app.logs import redact
from bulkschedule.app.online import Online
from bulkschedule.app.target import Target, api, sandbox_config, to_sandbox
from bulkschedule.sandbox.server import Sandbox, SandboxConfig
from bulkschedule.send.journal import normalise_base
from bulkschedule.sheet.schema import Validation
from bulkschedule.web import pages
from bulkschedule.web.access import (
    ACCESS,
    COOKIE,
    LOGIN_ATTEMPTS,
    LOGIN_WINDOW,
    PASSWORD_ENV,
    SID,
    Access,
    Refused,
    WebError,
    add_headers,
    check_access,
    csrf_token,
    guard,
    is_loopback,
    local_path,
)
from bulkschedule.web.checking import Gate
from bulkschedule.web.online import ORG_TIMEOUT, OrgReads, TargetOrWhy
from bulkschedule.web.runs import Busy, LiveRun, Runs, progress_events
from bulkschedule.web.uploads import (
    CHECKED,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_QUOTA,
    DEFAULT_RETENTION,
    MULTIPART_OVERHEAD,
    PRUNE_EVERY,
    REPORT,
    Uploads,
    megabytes,
    read_json,
)
from bulkschedule.web.uploads import safe_name as safe_name
from bulkschedule.web.uploads import sniff_problem as sniff_problem

__all__ = [
    "COOKIE",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_UPLOAD",
    "DEFAULT_QUEUE",
    "DEFAULT_QUOTA",
    "DEFAULT_RETENTION",
    "LOGIN_ATTEMPTS",
    "PASSWORD_ENV",
    "STATE",
    "WebError",
    "check_access",
    "is_loopback",
    "make_app",
    "safe_name",
    "serve",
    "sniff_problem",
]

log = logging.getLogger("bulkschedule")

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
DEFAULT_QUEUE = 4  # uploads admitted beyond the checks running (receiving or waiting)
SHUTDOWN_TIMEOUT = 1.0  # after the runs: how long other requests may take before cancelling
FORM_LIMIT = 64 * 1024  # url-encoded forms (login, run buttons) are tiny
STATIC_DIR = Path(__file__).with_name("static")
_XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass
class _State:
    """The app: its settings and sandbox, and one object per concern."""

    settings: Settings
    state_dir: Path
    access: Access
    max_upload: int
    env: Mapping[str, str]
    sandbox_config: SandboxConfig | None
    uploads: Uploads
    book: Runs
    reads: OrgReads | None = None  # None: the org is never read (make_app's check_org)
    sandbox: Sandbox | None = None

    @property
    def runs(self) -> Mapping[int, LiveRun]:
        return self.book.live

    @property
    def api_base(self) -> str:
        return self.sandbox.url if self.sandbox is not None else self.settings.people_base

    def rate_text(self) -> str:
        calls, period = self.settings.rate_pair
        speed = self.sandbox_config.speed if self.sandbox_config is not None else 1.0
        return f"{calls} calls / {period:g} s" + (
            f", {speed:g}x faster (sandbox)" if speed != 1 else "")

    def target(self, dry_run: bool) -> Target:
        """Where a run goes (`bulkschedule.app.target`, as for the CLI): the sandbox, or the API
        with credentials read now, so a fixed secrets file needs no restart. `Refused` (503)
        with the reason when they are unusable, or missing and sending is asked for."""
        if self.sandbox is not None:
            return to_sandbox(self.sandbox, self.settings, state_dir=self.state_dir)
        try:
            return api(self.settings, env=self.env, need_credentials=not dry_run,
                       state_dir=self.state_dir)
        except job.JobError as err:
            raise Refused(503, ("" if dry_run else "cannot send: ") + redact(str(err))) \
                from None

    def org_target(self) -> TargetOrWhy:
        """Where the org is read: the sandbox, or the API when credentials are usable (read
        now, as for a run); otherwise why not, for the upload's page."""
        if self.sandbox is not None:
            return to_sandbox(self.sandbox, self.settings, state_dir=self.state_dir)
        try:
            return api(self.settings, env=self.env, need_credentials=True,
                       state_dir=self.state_dir)
        except job.JobError as err:
            return redact(str(err))

    def names_from(self) -> tuple[Path, str]:
        """The org cache names resolve from offline: this page's state folder and API."""
        return self.state_dir, normalise_base(self.api_base)

    async def org_for_run(self, validation: Validation, meta: Mapping[str, Any]) -> Online:
        """A run's online stage (`OrgReads.for_run`), or the validation as it is."""
        if self.reads is None:
            return Online(validation)
        return await self.reads.for_run(validation, meta.get("options", {}))

    def downloadable(self, results_path: str | None) -> bool:
        return self.uploads.owned_results(results_path) is not None


STATE: web.AppKey[_State] = web.AppKey("bulkschedule_web", _State)


def _view(request: web.Request) -> pages.View:
    st = request.app[STATE]
    current = st.book.current()
    return pages.View(csrf=csrf_token(request),
                      current_run=current.id if current is not None else None,
                      logout=st.access.password is not None
                      and st.access.authenticated(request.get(SID)),
                      sandbox=st.sandbox is not None)


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]
                  ) -> web.StreamResponse:
    """Every refusal is a page with a clear message and the right status, never a traceback."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except Refused as refused:
        page = pages.message_page(_view(request), refused.status, refused.message)
        page.headers.update(refused.headers)
        return page
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = {404: "There is nothing at this address.",
                405: "This address does not take that kind of request.",
                413: "The request is too large."}.get(exc.status, exc.reason)
        response = pages.message_page(_view(request), exc.status, text, title=exc.reason)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response


# -------------------------------------------------------------------------------------- handlers


async def index(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    return pages.upload_form(_view(request), st.max_upload)


async def login_page(request: web.Request) -> web.StreamResponse:
    access = request.app[ACCESS]
    target = local_path(request.query.get("next"))
    if access.password is None or access.authenticated(request.get(SID)):
        raise web.HTTPSeeOther(target)
    return pages.login_page(_view(request), None, 200, target)


async def login(request: web.Request) -> web.StreamResponse:
    access = request.app[ACCESS]
    form = await request.post()
    target = local_path(str(form.get("next") or "/"))
    if access.password is None:
        raise web.HTTPSeeOther(target)
    who = request.remote or "?"
    if access.throttled(who):
        response = pages.login_page(
            _view(request), "Too many wrong passwords: wait a minute and try again.", 429, target)
        response.headers["Retry-After"] = str(int(LOGIN_WINDOW))
        return response
    given = form.get("password")
    if not isinstance(given, str) or not access.password_ok(given):
        access.failed_login(who)
        log.warning("web: wrong password from %s", who)
        return pages.login_page(_view(request), "Wrong password.", 401, target)
    access.logout(request.get(SID))
    sid = access.login()  # a fresh id: a session fixed before the login is worth nothing
    response = web.HTTPSeeOther(target)
    response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/",
                        secure=request.secure or None)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    access = request.app[ACCESS]
    access.logout(request.get(SID))
    response = web.HTTPSeeOther("/login" if access.password is not None else "/")
    response.del_cookie(COOKIE, path="/")
    raise response


async def upload(request: web.Request) -> web.StreamResponse:
    """Stream the file to ``<state>/uploads/<id>/``, check it, validate it, redirect to it."""
    st = request.app[STATE]
    too_large = (f"The file is larger than {megabytes(st.max_upload)}, the upload limit. "
                 "Split the sheet, or remove unused rows and columns.")
    view = _view(request)
    if request.content_length is not None and \
            request.content_length > st.max_upload + MULTIPART_OVERHEAD:
        return pages.upload_form(view, st.max_upload, too_large, status=413)
    try:
        upload_id = await st.uploads.receive(
            request, max_upload=st.max_upload, too_large=too_large,
            token_ok=lambda given: st.access.token_ok(request, given),
            busy_uploads=st.book.busy_uploads)
    except Refused as refused:
        # The form again, with why; a 503 says when to retry, and after a 408 the rest of a
        # body that trickles in is not waited for.
        page = pages.upload_form(view, st.max_upload, refused.message, status=refused.status)
        page.headers.update(refused.headers)
        if refused.status == 408:
            await _send_and_hang_up(request, page)
        return page
    raise web.HTTPSeeOther(f"/uploads/{upload_id}")


async def _send_and_hang_up(request: web.Request, response: web.Response) -> None:
    """Answer, then close the connection at once: aiohttp would otherwise keep reading (and
    discarding) an unfinished body for up to 10 more seconds before closing."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()  # after what is buffered has been sent


def _upload_id(request: web.Request) -> tuple[str, Path]:
    upload_id = request.match_info["upload_id"]
    folder = request.app[STATE].uploads.upload_dir(upload_id)
    if folder is None:
        raise Refused(404, "There is no such upload (it may have been removed).")
    return upload_id, folder


async def upload_page(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    upload_id, folder = _upload_id(request)
    meta, checked = await asyncio.to_thread(
        lambda: (st.uploads.meta(folder), read_json(folder / CHECKED)))
    where = "the built-in sandbox" if st.sandbox is not None else "Zoho"
    return pages.upload_page(_view(request), upload_id, meta, checked, where=where,
                             api_base=st.api_base, rate=st.rate_text())


async def report(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    _, folder = _upload_id(request)
    path = folder / REPORT
    if not path.is_file():
        raise Refused(404, "This upload has no annotated sheet.")
    meta = await asyncio.to_thread(st.uploads.meta, folder)
    return _download(path, f"{Path(meta['name']).stem}.report.xlsx")


def _download(path: Path, name: str) -> web.FileResponse:
    return web.FileResponse(path, headers={
        "Content-Type": _XLSX_MEDIA,
        "Content-Disposition": f'attachment; filename="{safe_name(name)}"',
        "Cache-Control": "no-store",
    })


async def start_run(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    form = await request.post()
    upload_id = str(form.get("upload") or "")
    mode = form.get("mode")
    if mode not in ("dry-run", "create"):
        raise Refused(400, "Choose 'Dry run' or 'Create sessions'.")
    folder = st.uploads.upload_dir(upload_id)
    if folder is None:
        raise Refused(404, "There is no such upload (it may have been removed).")
    dry_run = mode == "dry-run"
    update = form.get("update") == "yes"  # "also apply updates"
    async with st.book.starting:
        current = st.book.current()
        if current is not None:
            return pages.busy_page(_view(request), current)
        target = st.target(dry_run)
        validation = await st.uploads.validation_for(upload_id, folder)
        meta = await asyncio.to_thread(st.uploads.meta, folder)
        found = Online(validation)
        if not validation.fatal and (validation.valid or any(
                p.code.startswith("name.") for p in validation.problems)):
            # names resolved, the org's problems, the sessions Zoho holds: as `run` does
            found = await st.org_for_run(validation, meta)
            validation = found.validation
        if validation.fatal or not validation.sessions:
            raise Refused(409, "Nothing to send: no row of this sheet is valid.")
        try:
            run = await st.book.start(upload_id, folder, meta, validation, dry_run=dry_run,
                                      target=target, zoho=found.zoho, update=update,
                                      note=found.warning)
        except Busy as busy:
            return pages.busy_page(_view(request), busy.run)
    await asyncio.to_thread(st.uploads.touch, folder)  # used: kept for another retention period
    log.info("web: run %s started (%s, %s)", run.id, meta["name"],
             "dry run" if dry_run else "create and update" if update else "create")
    raise web.HTTPSeeOther(f"/runs/{run.id}")


def _run_id(request: web.Request) -> int:
    text = request.match_info["run_id"]
    if not text.isdigit() or len(text) > 12:
        raise Refused(404, "There is no such run.")
    return int(text)


async def run_page(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    run_id = _run_id(request)
    live = st.book.get(run_id)
    if live is not None:
        return pages.progress_page(_view(request), live)
    info = await asyncio.to_thread(st.book.journal_run, run_id)
    if info is None:
        raise Refused(404, "There is no such run.")
    return pages.journal_run_page(_view(request), info,
                                  downloadable=st.downloadable(info.results_path))


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events (`runs.progress_events`): a snapshot now, then the counts as they
    change (at most a few a second), then ``done``. The run is on the server, so a reconnect
    simply picks up the current state."""
    st = request.app[STATE]
    run_id = _run_id(request)
    live = st.book.get(run_id)
    final: dict[str, Any] | None = None
    if live is None:
        info = await asyncio.to_thread(st.book.journal_run, run_id)
        if info is None:
            raise Refused(404, "There is no such run.")
        final = {"id": info.id, "state": info.state, "counts": info.counts,
                 "results": f"/runs/{info.id}/results.xlsx"
                 if st.downloadable(info.results_path) else None}
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    try:
        await response.write(b"retry: 2000\n\n")
        if final is not None:
            await _send(response, "done", final)
            return response
        assert live is not None
        stream = progress_events(live, closing=lambda: st.book.closing)
        async with contextlib.aclosing(stream):
            async for event, snap in stream:
                await _send(response, event, snap)
    except ConnectionResetError:
        pass  # the tab went away; the run does not care
    return response


async def _send(response: web.StreamResponse, event: str, data: Mapping[str, Any]) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


async def stop_run(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    run_id = _run_id(request)
    live = st.book.get(run_id)
    if live is None:
        raise Refused(404, "That run is not running here.")
    if live.finished:
        pass
    elif not live.stop.is_set():
        live.stop.set()
        live.state = "stopping"
        live.touch()
        log.info("web: run %s: stop asked", run_id)
    elif not live.hard_stop.is_set():
        # Asked twice, like a second Ctrl-C: abandon the calls in flight too (their rows
        # become "unknown", which the next run settles by listing before it sends).
        live.hard_stop.set()
        live.touch()
        log.info("web: run %s: stop now asked", run_id)
    raise web.HTTPSeeOther(f"/runs/{run_id}")


async def results(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    run_id = _run_id(request)
    info = await asyncio.to_thread(st.book.journal_run, run_id)
    if info is None:
        raise Refused(404, "There is no such run.")
    path = st.uploads.owned_results(info.results_path)
    if path is None:
        if info.finished_at is None:
            raise Refused(404, "The results workbook is written when the run ends.")
        raise Refused(404, "This run has no results workbook to download here (runs from the "
                            "command line keep theirs beside their sheet).")
    meta = await asyncio.to_thread(st.uploads.meta, path.parent)
    return _download(path, f"{Path(meta['name']).stem}.results.xlsx")


async def history(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    runs = await asyncio.to_thread(st.book.journal_runs, 50)
    return pages.history_page(_view(request), runs, st.downloadable)


# ------------------------------------------------------------------------------------------ app


def make_app(
    settings: Settings,
    *,
    state_dir: Path,
    sandbox: SandboxConfig | None = None,
    password: str | None = None,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    env: Mapping[str, str] | None = None,
    today: dt.date | None = None,
    max_checks: int | None = None,
    check_queue: int = DEFAULT_QUEUE,
    uploads_quota: int = DEFAULT_QUOTA,
    retention: float | None = DEFAULT_RETENTION,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    read_limits: ReadLimits | None = None,
    check_org: bool = True,
    org_timeout: float = ORG_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The upload page as an aiohttp Application.

    ``sandbox``: start an in-process sandbox with this config and send runs there with its
    static token (and its ``speed``); otherwise runs go to ``settings.people_base`` with the
    credentials found in ``env`` (default: the process environment) or the secrets file.
    ``password``: required to use the page (a login form); None means loopback-only access.
    Under load: ``max_checks`` sheets are checked at once (default: the number of cores) and
    ``check_queue`` more uploads admitted, the rest get 503; an upload must arrive within
    ``body_timeout`` seconds; ``<state>/uploads`` holds at most ``uploads_quota`` bytes, and an
    upload unused for ``retention`` seconds (None: kept for good) is removed. Each sheet is
    read in a child capped by ``read_limits`` (memory, CPU time: `bulkschedule.app.isolate`).
    With ``check_org`` (the default), checks and runs also check the sheet against the org when
    the page can read it (the sandbox, or credentials), each stage within ``org_timeout``
    seconds (`bulkschedule.web.online`).
    ``today`` pins validation's idea of today and ``clock`` the wall clock (tests).
    """
    if max_upload < 1:
        raise WebError("the upload limit must be at least 1 byte")
    state_dir = Path(state_dir)
    try:
        gate = Gate(max_checks or os.cpu_count() or 1, check_queue)
        uploads = Uploads(state_dir / "uploads", gate=gate, today=today, quota=uploads_quota,
                          retention=retention, body_timeout=body_timeout, clock=clock,
                          limits=read_limits)
        if org_timeout <= 0:
            raise ValueError("the org's time limit must be positive")
    except ValueError as err:
        raise WebError(str(err)) from None
    st = _State(settings=settings, state_dir=state_dir, access=Access(password or None),
                max_upload=max_upload, env=os.environ if env is None else env,
                sandbox_config=sandbox, uploads=uploads,
                book=Runs(state_dir, on_finished=lambda run: uploads.account(run.results_path)))
    uploads.names_from = st.names_from
    if check_org:
        st.reads = OrgReads(st.org_target, settings.max_age, org_timeout, journal=st.names_from)
        uploads.org = st.reads.check
    app = web.Application(middlewares=[_errors, guard], client_max_size=FORM_LIMIT)
    app[STATE] = st
    app[ACCESS] = st.access
    app.on_response_prepare.append(add_headers)

    async def prune_every_hour() -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            if st.uploads.prune_due():
                await st.uploads.prune(st.book.busy_uploads())

    async def lifecycle(app: web.Application) -> Any:
        await st.uploads.start()
        if st.uploads.retention is not None:
            await st.uploads.prune()
        pruner = asyncio.create_task(prune_every_hour())
        try:
            if st.sandbox_config is None:
                yield
                return
            async with Sandbox(st.sandbox_config) as sb:
                st.sandbox = sb
                yield
                st.sandbox = None
        finally:
            pruner.cancel()

    async def on_shutdown(app: web.Application) -> None:
        await asyncio.gather(st.book.shutdown(), st.uploads.shutdown())

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    r = app.router
    r.add_get("/", index)
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_post("/uploads", upload)
    r.add_get("/uploads/{upload_id}", upload_page)
    r.add_get("/uploads/{upload_id}/report.xlsx", report)
    r.add_post("/runs", start_run)
    r.add_get("/runs/{run_id}", run_page)
    r.add_get("/runs/{run_id}/events", events)
    r.add_get("/runs/{run_id}/results.xlsx", results)
    r.add_post("/runs/{run_id}/stop", stop_run)
    r.add_get("/history", history)
    r.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
    return app


def state_folder(settings: Settings, state_dir: Path | None, sandbox: bool
                 ) -> tuple[Path | None, bool]:
    """Where ``serve`` keeps its state: ``state_dir`` (``--state``), else the setting when
    anything sets it (``$BULKSCHEDULE_STATE``, the config file), else the default, except that
    a sandbox rehearsal with nothing set gets a temporary folder (None, True): it must never mix
    with the real journal."""
    if state_dir is not None:
        return state_dir, False
    if sandbox and settings.sources.get("state_dir", "default") == "default":
        return None, True
    return settings.state_dir, False


async def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    sandbox: bool = False,
    speed: float = 1.0,
    password: str | None = None,
    state_dir: Path | None = None,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    max_checks: int | None = None,
    uploads_quota: int = DEFAULT_QUOTA,
    retention: float | None = DEFAULT_RETENTION,
    read_limits: ReadLimits | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then stop within 10 seconds: stop accepting, bring a run in
    progress to a safe point (its calls in flight finish or are abandoned, every row sent is
    in the journal, the results are written), kill the checks running. A second signal
    abandons the calls in flight at once. Where the state goes: `state_folder`."""
    check_access(host, password)
    config = sandbox_config(settings, speed) if sandbox else None
    with contextlib.ExitStack() as stack:
        state_dir, temporary = state_folder(settings, state_dir, sandbox)
        if temporary or state_dir is None:
            state_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bulkschedule-web-")))
        try:
            (state_dir / "uploads").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WebError(f"cannot use the state folder {state_dir}: "
                           f"{err.strerror or err}") from None
        app = make_app(settings, state_dir=state_dir, sandbox=config, password=password,
                       max_upload=max_upload, max_checks=max_checks,
                       uploads_quota=uploads_quota, retention=retention,
                       read_limits=read_limits)
        runner = web.AppRunner(app, access_log=logging.getLogger("bulkschedule.web.access"),
                               handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        stop = asyncio.Event()
        warm: asyncio.Task[None] | None = None

        def on_signal() -> None:
            if stop.is_set():  # the second one: abandon the calls in flight now
                app[STATE].book.hard_stop_all()
            stop.set()

        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(signum, on_signal)
                    handled.append(signum)
            # The fork server's imports take seconds: pay them now, not on the first upload.
            warm = asyncio.create_task(isolate.warm())
            if on_ready is not None:
                on_ready(_url(runner, host))
            await stop.wait()
            log.info("web: stopping")
        finally:
            if warm is not None:
                warm.cancel()
            try:
                await runner.cleanup()  # a second signal during it still stops harder
            finally:
                for signum in handled:
                    loop.remove_signal_handler(signum)


def _url(runner: web.AppRunner, host: str) -> str:
    bound = runner.addresses[0] if runner.addresses else (host, 0)
    name, port = str(bound[0]), bound[1]
    if ":" in name:
        name = f"[{name}]"
    return f"http://{name}:{port}/"

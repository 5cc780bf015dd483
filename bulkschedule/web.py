"""The upload page: ``bulkschedule serve``, a small web front on the same pipeline as ``run``.

Why a server-rendered page and not a front-end build: an admin opens it on the machine that holds
the credentials, and everything it does is already a library call (`job.load`, `job.send`,
`results.write_report`, `Journal.runs`). So the pages are plain HTML rendered here, with one CSS
and one JavaScript file from ``bulkschedule/static/`` (drag and drop, live progress). Nothing
new decides what is valid or how fast to send: a web run goes through `job.send`, so it uses the
same journal (no duplicates), the same limiter (one budget shared with any CLI run on the same
state folder) and writes the same results workbook.

Runs live on the server, not in the tab: one asyncio task per run (one at a time), its progress
kept in memory and streamed as server-sent events, so a reload reconnects and shows where it is.
Finished runs come back from the journal's history.

Access rules (see ``docs/upload-page.md``):

* bound to loopback by default; on any other address a shared password is required;
* without a password the page answers only to loopback Host names (no DNS rebinding);
* every POST carries a token tied to the session cookie and a matching Origin (or Referer);
* uploads are stored as ``<state>/uploads/<random id>/<sanitised name>``: the client's name is
  never used as a path, and only ``.xlsx``/``.csv`` files whose content matches are kept;
* downloads are looked up by id and served only if this app wrote them;
* every value shown is HTML-escaped, and messages pass through the log redactor.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import datetime as dt
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
import unicodedata
import zipfile
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from aiohttp import BodyPartReader, web

from bulkschedule import job
from bulkschedule.logs import redact

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bulkschedule.config import Settings
    from bulkschedule.journal import RunInfo
    from bulkschedule.runner import Event
    from bulkschedule.sandbox import Sandbox, SandboxConfig
    from bulkschedule.schema import Validation

__all__ = [
    "DEFAULT_MAX_UPLOAD",
    "PASSWORD_ENV",
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
PASSWORD_ENV = "BULKSCHEDULE_WEB_PASSWORD"
MIN_PASSWORD = 8
ACCEPTED = (".xlsx", ".csv")
COOKIE = "bulkschedule_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL = 12 * 3600.0
MAX_SESSIONS = 1000
LOGIN_ATTEMPTS = 10  # failed logins per client address ...
LOGIN_WINDOW = 60.0  # ... in this many seconds, then 429
SHOWN_PROBLEMS = 1000  # rows of the problems table; the annotated sheet has them all
FORM_LIMIT = 64 * 1024  # url-encoded forms (login, run buttons) are tiny
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the small fields around the file
KEEPALIVE = 5.0  # seconds between progress snapshots when nothing happens
STOP_GRACE = 30.0  # on shutdown: how long a run may take to finish its calls in flight

_ID_RE = re.compile(r"[0-9a-f]{16}")
_SID_RE = re.compile(r"[0-9a-f]{64}")
_RESULTS_RE = re.compile(r"\.results-[0-9a-f]{16}\.xlsx")
_DIGITS_RE = re.compile(r"\d{1,19}")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
STATIC_DIR = Path(__file__).with_name("static")
SID: web.RequestKey[str] = web.RequestKey("bulkschedule_sid", str)
NEW_SID: web.RequestKey[str] = web.RequestKey("bulkschedule_new_sid", str)

META = ".meta.json"
CHECKED = ".validation.json"
REPORT = ".report.xlsx"
PARTIAL = ".upload.part"


class WebError(Exception):
    """The server cannot start as asked (e.g. a public address without a password)."""


class _Refused(Exception):
    """A request that gets a page with a message and a status instead of the normal answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ------------------------------------------------------------------------------ access helpers


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address to bind, or a Host header's name) is this machine only."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_access(host: str, password: str | None) -> None:
    """Refuse to serve a non-loopback address without a password (anyone on the network could
    otherwise create sessions with the admin's credentials)."""
    if password is not None and len(password) < MIN_PASSWORD:
        raise WebError(f"the web password must be at least {MIN_PASSWORD} characters")
    if not is_loopback(host) and not password:
        raise WebError(
            f"--host {host} is reachable from other machines: set a password in "
            f"${PASSWORD_ENV} (or name another variable with --password-env), or bind 127.0.0.1")


def _host_name(host_header: str) -> str:
    """The name part of a Host header: ``[::1]:8080`` -> ``[::1]``, ``a:80`` -> ``a``."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _same_origin(request: web.Request) -> bool:
    """The POST came from one of our own pages: its Origin (else Referer) names our host."""
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin == "null":
            return False
        source = origin
    else:
        source = request.headers.get("Referer", "")
    if not source:
        return False
    try:
        netloc = urlsplit(source).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == request.host.lower()


def _local_path(target: str | None) -> str:
    """Only same-site paths after a login: no open redirect to ``//evil`` or ``https://...``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# ------------------------------------------------------------------------------ upload helpers


def safe_name(client_name: str) -> str:
    """The client's file name reduced to a harmless leaf: ``../../x.csv`` -> ``x.csv``.

    Only the last path component (either slash) survives, reduced to letters, digits, ``._ -``,
    without leading dots (never hidden, never ``..``), at most 80 characters before the
    extension. It is a display name and the leaf inside a folder this app chose; never a path.
    """
    leaf = re.split(r"[\\/]", unquote(client_name))[-1]
    leaf = "".join(c for c in unicodedata.normalize("NFKD", leaf) if not unicodedata.combining(c))
    stem, dot, ext = leaf.rpartition(".")
    if not dot:
        stem, ext = leaf, ""
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", stem).strip(" ._-")[:80].rstrip(" .") or "sheet"
    ext = re.sub(r"[^a-z0-9]+", "", ext.lower())[:10]
    return f"{stem}.{ext}" if ext else stem


def _extension(client_name: str) -> str:
    """The extension the stored file will have (lower case, with its dot), or ""."""
    _, dot, ext = safe_name(client_name).rpartition(".")
    return f".{ext}" if dot else ""


def sniff_problem(path: Path, ext: str) -> str | None:
    """None if the content matches the extension, else why not (one line, for the page).

    The extension alone proves nothing: a renamed executable or a PDF must not reach the reader.
    An ``.xlsx`` must be a zip holding ``[Content_Types].xml``; a ``.csv`` must be text (UTF-8,
    UTF-16 with a BOM or Windows-1252, as the CLI's reader accepts), without binary bytes.
    """
    with path.open("rb") as fh:
        head = fh.read(65536)
    if not head:
        return "the file is empty"
    if ext == ".xlsx":
        if not head.startswith(_ZIP_MAGIC):
            return "this is not an Excel workbook (.xlsx); save the sheet as .xlsx or .csv"
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return "this .xlsx file is damaged (not a readable workbook)"
        if "[Content_Types].xml" not in names:
            return "this is a zip archive, not an Excel workbook"
        return None
    if head.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
        return "this is a workbook saved with a .csv name: upload it as .xlsx, or save as CSV"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            codecs.getincrementaldecoder("utf-16")().decode(head, final=False)
        except UnicodeDecodeError:
            return "this .csv file is not readable text"
        return None
    if b"\0" in head:
        return "this is not a text CSV file (it contains binary data)"
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        try:
            text = head.decode("cp1252")
        except UnicodeDecodeError:
            return "this .csv file is not readable text (unknown encoding)"
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\r\n\f")
    if controls > max(2, len(text) // 100):
        return "this is not a text CSV file (it contains binary data)"
    return None


def _digits_field(value: str, label: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not _DIGITS_RE.fullmatch(value):
        raise _Refused(400, f"{label} must be digits only (got {value[:40]!r})")
    return value


async def _small_field(part: BodyPartReader, limit: int = 256) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(1024):
        data += chunk
        if len(data) > limit:
            raise _Refused(400, f"the form field {part.name or '?'} is too long")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, f"the form field {part.name or '?'} is not text") from None


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh)
    tmp.replace(path)


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


# ------------------------------------------------------------------------------------ live runs


@dataclass
class LiveRun:
    """One run started from the page: what the progress stream shows, updated by runner events.

    It lives on the server so a reload (or a second tab) sees the same state; ``changed`` is
    replaced on every update so each waiting stream wakes once per change.
    """

    id: int
    upload_id: str
    name: str
    dry_run: bool
    total: int
    target: str
    results_path: Path
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    hard_stop: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)
    state: str = "starting"  # starting | running | stopping | finished | interrupted | failed
    counts: dict[str, int] = field(default_factory=dict)
    done: int = 0
    retries: int = 0
    lock_until: float | None = None
    message: str | None = None
    attention: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finished(self) -> bool:
        return self.state in ("finished", "interrupted", "failed")

    def touch(self) -> None:
        old, self.changed = self.changed, asyncio.Event()
        old.set()

    def on_event(self, event: Event) -> None:
        from bulkschedule.logs import log_lock, log_outcome
        from bulkschedule.problems import Status
        from bulkschedule.runner import LockEvent, OutcomeEvent, RetryEvent, StopEvent, WaitEvent

        if isinstance(event, OutcomeEvent):
            outcome = event.outcome
            status = str(outcome.status)
            self.counts[status] = self.counts.get(status, 0) + 1
            self.done += 1
            if outcome.status not in (Status.CREATED, Status.EXISTS, Status.WOULD_CREATE):
                self.attention.append({"row": outcome.row, "status": status,
                                       "message": redact(outcome.message or "")})
            log_outcome(log, outcome, sheet=self.name)
        elif isinstance(event, LockEvent):
            self.lock_until = event.until
            log_lock(log, event.until, event.reason)
        elif isinstance(event, WaitEvent):
            self.lock_until = time.time() + event.remaining
        elif isinstance(event, RetryEvent):
            self.retries += 1
        elif isinstance(event, StopEvent) and not self.stop.is_set():
            self.message = redact(event.reason)
        self.touch()

    def snapshot(self) -> dict[str, Any]:
        """Everything the progress panel shows, as JSON: counts, rate, ETA, lockout."""
        now = time.time()
        elapsed = max(time.monotonic() - self.started_mono, 1e-9)
        rate = self.done * 60 / elapsed
        lock_left = 0.0
        if self.lock_until is not None and not self.finished:
            lock_left = max(0.0, self.lock_until - now)
        eta = None
        if 0 < self.done < self.total and rate > 0 and not self.finished:
            eta = int((self.total - self.done) * 60 / rate + lock_left)
        return {
            "id": self.id,
            "state": self.state,
            "state_text": _STATE_TEXT.get(self.state, self.state),
            "dry_run": self.dry_run,
            "total": self.total,
            "done": self.done,
            "counts": dict(sorted(self.counts.items())),
            "rate": round(rate, 1),
            "eta": eta,
            "lock_left": round(lock_left, 1),
            "retries": self.retries,
            "message": self.message,
            "attention": list(self.attention),
            "results": f"/runs/{self.id}/results.xlsx"
            if self.finished and self.results_path.is_file() else None,
        }


class _Busy(Exception):
    def __init__(self, run: LiveRun) -> None:
        super().__init__(f"run {run.id} is still running")
        self.run = run


# ---------------------------------------------------------------------------------- app state


@dataclass
class _State:
    settings: Settings
    state_dir: Path
    password: str | None
    max_upload: int
    env: Mapping[str, str]
    today: dt.date | None
    sandbox_config: SandboxConfig | None
    sandbox: Sandbox | None = None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    sessions: OrderedDict[str, float] = field(default_factory=OrderedDict)
    failures: dict[str, deque[float]] = field(default_factory=dict)
    runs: OrderedDict[int, LiveRun] = field(default_factory=OrderedDict)
    checked: OrderedDict[str, Validation] = field(default_factory=OrderedDict)
    starting: asyncio.Lock = field(default_factory=asyncio.Lock)
    closing: bool = False

    @property
    def uploads(self) -> Path:
        return self.state_dir / "uploads"

    # -- sessions and tokens ---------------------------------------------------------------

    def csrf(self, sid: str) -> str:
        return hmac.new(self.secret, f"csrf:{sid}".encode(), hashlib.sha256).hexdigest()

    def token_ok(self, request: web.Request, given: str | None) -> bool:
        sid = request.get(SID)
        if not sid or not given:
            return False
        return hmac.compare_digest(self.csrf(sid), given)

    def authenticated(self, sid: str | None) -> bool:
        if self.password is None:
            return True
        if not sid:
            return False
        expires = self.sessions.get(sid)
        if expires is None or expires < time.monotonic():
            self.sessions.pop(sid, None)
            return False
        return True

    def login(self) -> str:
        sid = secrets.token_hex(32)
        self.sessions[sid] = time.monotonic() + SESSION_TTL
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return sid

    def password_ok(self, given: str) -> bool:
        assert self.password is not None
        # Hash both sides first: compare_digest is constant-time only for equal lengths.
        a = hashlib.sha256(given.encode("utf-8", "replace")).digest()
        b = hashlib.sha256(self.password.encode("utf-8")).digest()
        return hmac.compare_digest(a, b)

    def throttled(self, who: str) -> bool:
        now = time.monotonic()
        recent = self.failures.get(who)
        if recent is None:
            return False
        while recent and recent[0] < now - LOGIN_WINDOW:
            recent.popleft()
        return len(recent) >= LOGIN_ATTEMPTS

    def failed_login(self, who: str) -> None:
        if len(self.failures) > MAX_SESSIONS:
            self.failures.clear()
        self.failures.setdefault(who, deque()).append(time.monotonic())

    # -- uploads ---------------------------------------------------------------------------

    def upload_dir(self, upload_id: str) -> Path | None:
        if not _ID_RE.fullmatch(upload_id):
            return None
        folder = self.uploads / upload_id
        return folder if (folder / META).is_file() else None

    def meta(self, folder: Path) -> dict[str, Any]:
        data: dict[str, Any] = _read_json(folder / META)
        return data

    def load(self, folder: Path, meta: Mapping[str, Any]) -> Validation:
        """Read and validate an upload exactly as ``bulkschedule run`` would (blocking)."""
        options = meta.get("options", {})
        sheet = folder / meta["file"]
        try:
            return job.load(str(sheet), course=options.get("course"),
                            batch=options.get("batch"), module=options.get("module"),
                            month_first=bool(options.get("month_first")), today=self.today)
        except job.JobError as err:
            raise _Refused(422, str(err).replace(str(sheet), meta["name"])) from None

    def remember(self, upload_id: str, validation: Validation) -> None:
        self.checked[upload_id] = validation
        self.checked.move_to_end(upload_id)
        while len(self.checked) > 4:
            self.checked.popitem(last=False)

    async def validation_for(self, upload_id: str, folder: Path) -> Validation:
        cached = self.checked.get(upload_id)
        if cached is not None:
            return cached
        meta = await asyncio.to_thread(self.meta, folder)
        validation = await asyncio.to_thread(self.load, folder, meta)
        self.remember(upload_id, validation)
        return validation

    def owned_results(self, text: str | None) -> Path | None:
        """The results workbook a journal run names, if and only if this app wrote it."""
        if not text:
            return None
        try:
            path = Path(text).resolve(strict=True)
            root = self.uploads.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not path.is_relative_to(root) or not path.is_file():
            return None
        rel = path.relative_to(root).parts
        if len(rel) != 2 or not _ID_RE.fullmatch(rel[0]) or not _RESULTS_RE.fullmatch(rel[1]):
            return None
        return path

    # -- runs ------------------------------------------------------------------------------

    @property
    def target(self) -> str:
        if self.sandbox is not None:
            return self.sandbox.url
        return self.settings.people_base

    def rate_text(self) -> str:
        calls, period = self.settings.rate_pair
        text = f"{calls} calls / {period:g} s"
        speed = self.speed
        return text + (f", {speed:g}x faster (sandbox)" if speed != 1 else "")

    @property
    def speed(self) -> float:
        return self.sandbox_config.speed if self.sandbox_config is not None else 1.0

    def current(self) -> LiveRun | None:
        for run in self.runs.values():
            if not run.finished:
                return run
        return None

    def tokens(self, dry_run: bool) -> Callable[[Any], Any]:
        """The token provider factory for `job.send`, as the CLI builds it; `_Refused` (503)
        with the reason when sending is asked for and no usable credentials are configured."""
        if self.sandbox is not None:
            from bulkschedule.auth import StaticToken

            token = self.sandbox.token
            return lambda session: StaticToken(token)
        from bulkschedule.config import ConfigError, credential_problem, load_secrets
        from bulkschedule.logs import register_secret

        try:
            found = load_secrets(self.settings, self.env)
        except ConfigError as err:
            raise _Refused(503, redact(str(err))) from None
        for value in found.values():
            register_secret(value)
        problem = credential_problem(found)
        if problem and not dry_run:
            raise _Refused(503, f"cannot send: {problem}")
        settings, state_dir = self.settings, self.state_dir

        def tokens(session: Any) -> Any:
            from bulkschedule.auth import AuthError, from_env

            try:
                return from_env(dict(found), dc=settings.dc,
                                accounts_url=found.get("ZOHO_ACCOUNTS_URL"),
                                cache_dir=state_dir, session=session)
            except AuthError as err:
                raise job.JobError(str(err)) from None

        return tokens

    def send_settings(self) -> job.SendSettings:
        calls, period = self.settings.rate_pair
        s = self.settings
        return job.SendSettings(api_base=self.target, state_dir=self.state_dir, rate_calls=calls,
                                rate_period=period, lock_seconds=s.lock_seconds,
                                workers=s.workers, payload_style=s.payload_style,
                                speed=self.speed)

    def journal_runs(self, limit: int = 50) -> list[RunInfo]:
        from bulkschedule.journal import Journal

        with Journal(self.state_dir) as journal:
            return journal.runs(limit)

    def journal_run(self, run_id: int) -> RunInfo | None:
        from bulkschedule.journal import Journal

        with Journal(self.state_dir) as journal:
            return journal.run(run_id)

    async def start(self, upload_id: str, folder: Path, meta: Mapping[str, Any],
                    validation: Validation, *, dry_run: bool,
                    tokens: Callable[[Any], Any]) -> LiveRun:
        """Start `job.send` as a task and return its run once the journal has registered it.

        `job.send` registers the run in the journal before its first ``await``, so after the
        task's first step the newest run of this process for this sheet is ours; its journal
        id is the run's id everywhere (page, event stream, history, results download).
        """
        current = self.current()
        if current is not None:
            raise _Busy(current)
        sheet = str(folder / meta["file"])
        known = self.journal_runs(1)
        after = known[0].id if known else 0
        token = secrets.token_hex(8)
        results = folder / f".results-{token}.xlsx"
        run = LiveRun(id=0, upload_id=upload_id, name=meta["name"], dry_run=dry_run,
                      total=len(validation.sessions), target=self.target, results_path=results)
        run.task = asyncio.create_task(self._execute(run, validation, tokens))
        for _ in range(20):
            await asyncio.sleep(0)  # let the task take its first step (no timing involved)
            found = next((r for r in self.journal_runs(5) if r.id > after and r.file == sheet
                          and r.pid == os.getpid()), None)
            if found is not None:
                run.id = found.id
                break
            if run.task.done():
                break
        if run.id == 0:
            if run.task.done() and run.message:
                raise _Refused(422, run.message)
            run.stop.set()
            raise _Refused(500, "the run could not be registered in the journal")
        self.runs[run.id] = run
        while len(self.runs) > 20:
            oldest = next(iter(self.runs))
            if not self.runs[oldest].finished:
                break
            self.runs.pop(oldest)
        return run

    async def _execute(self, run: LiveRun, validation: Validation,
                       tokens: Callable[[Any], Any]) -> None:
        from bulkschedule.logs import log_summary

        def started(to_send: int, known: int) -> None:
            if run.state == "starting":
                run.state = "running"
            run.touch()

        if run.dry_run:
            run.state = "running"
        try:
            result = await job.send(
                validation, self.send_settings(), tokens=tokens, results_path=run.results_path,
                dry_run=run.dry_run, stop=run.stop, hard_stop=run.hard_stop,
                on_event=run.on_event, on_start=started,
                summary_extra={"file": run.name, "started from": "upload page"})
        except job.JobError as err:
            run.state, run.message = "failed", redact(str(err))
        except OSError as err:
            run.state = "failed"
            run.message = f"cannot write the results workbook: {err.strerror or err}"
        except asyncio.CancelledError:
            run.state, run.message = "interrupted", "the server stopped during the run"
            raise
        except Exception:
            log.exception("web run %s failed", run.id)
            run.state, run.message = "failed", "internal error: see the server log"
        else:
            run.counts = dict(result.counts)
            run.state = "interrupted" if run.stop.is_set() else "finished"
            if result.halted:
                run.message = redact(result.halted)
            log_summary(log, result.counts, sheet=run.name)
        finally:
            run.touch()

    async def shutdown(self) -> None:
        """Stop runs gracefully (calls in flight finish, results are written), then the streams."""
        self.closing = True
        tasks = [r.task for r in self.runs.values() if r.task is not None and not r.task.done()]
        for run in self.runs.values():
            run.stop.set()
            run.touch()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
            if pending:
                for run in self.runs.values():
                    run.hard_stop.set()
                _, pending = await asyncio.wait(pending, timeout=5.0)
                for task in pending:
                    task.cancel()
        for run in self.runs.values():
            run.touch()


STATE: web.AppKey[_State] = web.AppKey("bulkschedule_web", _State)


# ------------------------------------------------------------------------------------- rendering


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _nav(request: web.Request) -> str:
    st = request.app[STATE]
    items = ['<a href="/">Upload</a>', '<a href="/history">History</a>']
    current = st.current()
    if current is not None:
        items.append(f'<a class="live" href="/runs/{current.id}">Run {current.id} in '
                     "progress</a>")
    logout = ""
    if st.password is not None and st.authenticated(request.get(SID)):
        logout = (f'<form method="post" action="/logout" class="logout">{_csrf_input(request)}'
                  '<button type="submit" class="link">Log out</button></form>')
    badge = '<span class="badge sandbox">sandbox</span>' if st.sandbox is not None else ""
    return (f'<header><span class="brand">bulkschedule</span>{badge}<nav>{"".join(items)}</nav>'
            f"{logout}</header>")


def _csrf_input(request: web.Request) -> str:
    sid = request.get(SID)
    token = request.app[STATE].csrf(sid) if sid else ""
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{_e(token)}">'


def _page(request: web.Request, title: str, body: str, *, status: int = 200,
          nav: bool = True) -> web.Response:
    text = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} - bulkschedule</title>"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/app.css">'
        '<script src="/static/app.js" defer></script></head>'
        f"<body>{_nav(request) if nav else ''}<main>{body}</main></body></html>\n"
    )
    return web.Response(text=text, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def _message_page(request: web.Request, status: int, message: str, *,
                  title: str = "Cannot do that", extra: str = "") -> web.Response:
    body = (f'<h1>{_e(title)}</h1><p class="error" role="alert">{_e(message)}</p>{extra}'
            '<p><a href="/">Back to the upload page</a></p>')
    return _page(request, title, body, status=status)


def _upload_form(request: web.Request, error: str | None = None) -> str:
    st = request.app[STATE]
    alert = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    return f"""
<h1>Upload a sheet</h1>
{alert}
<form id="upload" method="post" action="/uploads" enctype="multipart/form-data"
      data-max-bytes="{st.max_upload}">
  {_csrf_input(request)}
  <label class="drop" id="drop">
    <strong>Drop a .xlsx or .csv file here</strong>
    <span>or choose one:</span>
    <input type="file" name="file" id="file" accept=".xlsx,.csv" required>
  </label>
  <p id="chosen" class="hint" aria-live="polite"></p>
  <details><summary>IDs for every row (when the sheet has no such column)</summary>
    <div class="options">
      <label>Course ID <input name="course" inputmode="numeric" pattern="[0-9]*"
        maxlength="19"></label>
      <label>Batch ID <input name="batch" inputmode="numeric" pattern="[0-9]*"
        maxlength="19"></label>
      <label>Module ID <input name="module" inputmode="numeric" pattern="[0-9]*"
        maxlength="19"></label>
      <label class="check"><input type="checkbox" name="month_first" value="1">
        Text dates are month first (03-04-2027 is 4 March)</label>
    </div>
  </details>
  <button type="submit" class="primary">Check the sheet</button>
  <p class="hint">.xlsx or .csv, up to {_megabytes(st.max_upload)}. Checking sends nothing:
  you choose a dry run or the real thing on the next page.</p>
</form>"""


def _problems_table(problems: list[dict[str, Any]]) -> str:
    if not problems:
        return '<p class="ok">No problems found.</p>'
    rows = []
    for p in problems[:SHOWN_PROBLEMS]:
        severity = p.get("severity") or ""
        rows.append(
            f'<tr class="{_e(severity)}"><td class="num">{_e(p.get("row") or "sheet")}</td>'
            f'<td>{_e(p.get("column") or "")}</td><td class="value">{_e(p.get("value") or "")}'
            f'</td><td><span class="badge {_e(severity)}">{_e(severity)}</span></td>'
            f'<td>{_e(p.get("message") or "")}</td></tr>')
    more = ""
    if len(problems) > SHOWN_PROBLEMS:
        more = (f'<p class="hint">Showing the first {SHOWN_PROBLEMS} of {len(problems)} problems;'
                " the annotated sheet marks them all.</p>")
    return ('<table class="problems" id="problems"><thead><tr><th>Row</th><th>Column</th>'
            "<th>Value</th><th>Severity</th><th>Problem</th></tr></thead><tbody>"
            + "".join(rows) + f"</tbody></table>{more}")


def _counts_html(counts: Mapping[str, int]) -> str:
    items = "".join(f'<li><span class="badge status-{_e(k)}">{_e(k)}</span> '
                    f'<span class="n">{_e(v)}</span></li>' for k, v in counts.items() if v)
    return f'<ul class="counts" id="counts">{items}</ul>'


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


_STATE_TEXT = {
    "starting": "Starting: checking the credentials",
    "running": "Running",
    "stopping": "Stopping: finishing the calls in flight",
    "finished": "Finished",
    "interrupted": "Stopped before the end",
    "failed": "Failed",
}


def _progress_html(request: web.Request, run: LiveRun) -> str:
    snap = run.snapshot()
    kind = "Dry run (nothing is sent)" if run.dry_run else "Creating sessions"
    pct = int(100 * snap["done"] / snap["total"]) if snap["total"] else 100
    lock_hidden = "" if snap["lock_left"] > 0 else " hidden"
    eta = _clock(snap["eta"]) if snap["eta"] is not None else "-"
    events = "" if run.finished else f' data-events="/runs/{run.id}/events"'
    stop = ""
    if not run.finished:
        again = run.stop.is_set()
        label = "Stop now" if again else "Stop"
        hint = ("abandons the calls in flight: their rows become unknown and the next run "
                "checks them" if again else "calls in flight finish; the rest stay pending")
        stop = (f'<form method="post" action="/runs/{run.id}/stop" id="stop-form">'
                f'{_csrf_input(request)}<button type="submit" class="danger">{label}</button>'
                f'<span class="hint"> ({hint})</span></form>')
    results = ""
    if snap["results"]:
        results = (f'<p><a class="button primary" id="results" href="{_e(snap["results"])}" '
                   "download>Download the results workbook</a></p>")
    message = f'<p class="error" id="message">{_e(snap["message"])}</p>' if snap["message"] \
        else '<p class="error" id="message" hidden></p>'
    attention = ""
    if snap["attention"]:
        rows = "".join(f'<tr><td class="num">{_e(a["row"])}</td><td><span class="badge status-'
                       f'{_e(a["status"])}">{_e(a["status"])}</span></td><td>{_e(a["message"])}'
                       "</td></tr>" for a in snap["attention"])
        attention = ('<h2>Rows needing attention</h2><table class="problems"><thead><tr>'
                     f"<th>Row</th><th>Status</th><th>Message</th></tr></thead><tbody>{rows}"
                     "</tbody></table>")
    return f"""
<h1>Run {run.id}: {_e(run.name)}</h1>
<p class="target">{_e(kind)} at <code>{_e(run.target)}</code>, started {_e(_when(run.started))}
</p>
<section class="progress" id="progress"{events} data-state="{_e(snap['state'])}">
  <p class="state" id="state">{_e(_STATE_TEXT.get(snap['state'], snap['state']))}</p>
  <progress class="bar" id="bar" max="{max(snap['total'], 1)}" value="{snap['done']}">{pct}%
  </progress>
  <p class="numbers"><span id="done">{snap['done']}</span> of <span id="total">{snap['total']}
  </span> rows &middot; <span id="rate">{snap['rate']}</span>/min &middot; ETA
  <span id="eta">{eta}</span></p>
  {_counts_html(snap['counts'])}
  <div class="lock" id="lock" role="alert"{lock_hidden}>Zoho's rate limit locked us out:
    resuming in <strong id="lock-left" data-left="{snap['lock_left']}">
    {_clock(snap['lock_left'])}</strong></div>
  {message}
  {stop}
  <div id="results-slot">{results}</div>
</section>
{attention}"""


# ---------------------------------------------------------------------------------- middleware


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]
                  ) -> web.StreamResponse:
    """Every refusal is a page with a clear message and the right status, never a traceback."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except _Refused as refused:
        return _message_page(request, refused.status, refused.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = {404: "There is nothing at this address.",
                405: "This address does not take that kind of request.",
                413: "The request is too large."}.get(exc.status, exc.reason)
        response = _message_page(request, exc.status, text, title=exc.reason)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response


@web.middleware
async def _guard(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]
                 ) -> web.StreamResponse:
    """Host check, session cookie, login, CSRF: in that order, before any handler runs."""
    st = request.app[STATE]
    if st.password is None and not is_loopback(_host_name(request.host)):
        # Without a password only loopback names are answered: a web page elsewhere cannot
        # point a hostname at 127.0.0.1 (DNS rebinding) and drive this one.
        raise _Refused(403, "this page only answers on its loopback address "
                            "(open it as http://127.0.0.1:PORT/)")
    sid = request.cookies.get(COOKIE, "")
    if not _SID_RE.fullmatch(sid):
        sid = secrets.token_hex(32)
        request[NEW_SID] = sid
    request[SID] = sid

    path = request.path
    public = path.startswith("/static/") or path == "/login"
    if not public and not st.authenticated(sid):
        if request.method == "GET" and not path.endswith((".xlsx", "/events")):
            raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
        raise _Refused(401, "log in first")

    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if not _same_origin(request):
            raise _Refused(403, "this form was not sent from this site (Origin/Referer check)")
        if not request.content_type.startswith("multipart/"):
            form = await request.post()
            given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
            if not st.token_ok(request, given if isinstance(given, str) else None):
                raise _Refused(403, "the form has expired or did not come from this site: "
                                    "reload the page and try again")
        elif path != "/uploads":
            raise _Refused(400, "this address does not take file uploads")
        # /uploads checks its token itself: it must come before the file in the stream.
    return await handler(request)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on every response, and the session cookie for new visitors."""
    h = response.headers
    h.setdefault("Content-Security-Policy",
                 "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                 "base-uri 'none'; object-src 'none'")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    sid = request.get(NEW_SID)
    if sid and COOKIE not in response.cookies:
        # Headers are already built when this hook runs: add the Set-Cookie line directly.
        jar: SimpleCookie = SimpleCookie()
        jar[COOKIE] = sid
        morsel = jar[COOKIE]
        morsel["httponly"] = True
        morsel["samesite"] = "Strict"
        morsel["path"] = "/"
        if request.secure:
            morsel["secure"] = True
        response.headers.add("Set-Cookie", morsel.OutputString())


# -------------------------------------------------------------------------------------- handlers


async def index(request: web.Request) -> web.StreamResponse:
    return _page(request, "Upload", _upload_form(request))


async def login_page(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    if st.password is None or st.authenticated(request.get(SID)):
        raise web.HTTPSeeOther(_local_path(request.query.get("next")))
    return _login(request, None, 200)


def _login(request: web.Request, error: str | None, status: int, target: str | None = None
           ) -> web.Response:
    alert = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    target = _local_path(target if target is not None else request.query.get("next"))
    body = f"""
<h1>Log in</h1>{alert}
<form method="post" action="/login" class="login">
  {_csrf_input(request)}
  <input type="hidden" name="next" value="{_e(target)}">
  <label>Password <input type="password" name="password" autocomplete="current-password"
    required autofocus></label>
  <button type="submit" class="primary">Log in</button>
</form>"""
    return _page(request, "Log in", body, status=status, nav=False)


async def login(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    form = await request.post()
    target = _local_path(str(form.get("next") or "/"))
    if st.password is None:
        raise web.HTTPSeeOther(target)
    who = request.remote or "?"
    if st.throttled(who):
        response = _login(request, "Too many wrong passwords: wait a minute and try again.",
                          429, target)
        response.headers["Retry-After"] = str(int(LOGIN_WINDOW))
        return response
    given = form.get("password")
    if not isinstance(given, str) or not st.password_ok(given):
        st.failed_login(who)
        log.warning("web: wrong password from %s", who)
        return _login(request, "Wrong password.", 401, target)
    old = request.get(SID)
    st.sessions.pop(old or "", None)
    sid = st.login()  # a fresh id: a session fixed before the login is worth nothing
    response = web.HTTPSeeOther(target)
    response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/",
                        secure=request.secure or None)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    st.sessions.pop(request.get(SID) or "", None)
    response = web.HTTPSeeOther("/login" if st.password is not None else "/")
    response.del_cookie(COOKIE, path="/")
    raise response


async def upload(request: web.Request) -> web.StreamResponse:
    """Stream the file to ``<state>/uploads/<id>/``, check it, validate it, redirect to it."""
    st = request.app[STATE]
    too_large = (f"The file is larger than {_megabytes(st.max_upload)}, the upload limit. "
                 "Split the sheet, or remove unused rows and columns.")
    if request.content_length is not None and \
            request.content_length > st.max_upload + MULTIPART_OVERHEAD:
        return _page(request, "Upload", _upload_form(request, too_large), status=413)
    try:
        return await _receive(request, too_large)
    except _Refused as refused:
        return _page(request, "Upload", _upload_form(request, refused.message),
                     status=refused.status)


async def _receive(request: web.Request, too_large: str) -> web.StreamResponse:
    st = request.app[STATE]
    if not request.content_type.startswith("multipart/form-data"):
        raise _Refused(400, "Send the file with the upload form.")
    token_ok = st.token_ok(request, request.headers.get(CSRF_HEADER))
    fields: dict[str, str] = {}
    upload_id = secrets.token_hex(8)
    folder = st.uploads / upload_id
    client_name: str | None = None
    size = 0
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise _Refused(400, "Send one file with the upload form.")
            if part.filename is None:
                value = await _small_field(part)
                fields[part.name or ""] = value
                if part.name == CSRF_FIELD:
                    token_ok = token_ok or st.token_ok(request, value)
                continue
            if part.name != "file" or client_name is not None:
                raise _Refused(400, "Send one file at a time.")
            if not token_ok:
                raise _Refused(403, "The form has expired or did not come from this site: "
                                    "reload the page and try again.")
            if not part.filename:
                raise _Refused(400, "Choose a .xlsx or .csv file first.")
            client_name = part.filename
            ext = _extension(client_name)
            if ext not in ACCEPTED:
                shown = f"'{ext}'" if ext else "without an extension"
                raise _Refused(415, f"{safe_name(client_name)}: a file {shown} cannot be "
                                    "checked; only .xlsx and .csv sheets are accepted.")
            folder.mkdir(parents=True, exist_ok=False)
            with (folder / PARTIAL).open("wb") as fh:
                while chunk := await part.read_chunk(256 * 1024):
                    size += len(chunk)
                    if size > st.max_upload:
                        raise _Refused(413, too_large)
                    fh.write(chunk)
    except _Refused:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except (ValueError, AssertionError, UnicodeDecodeError) as err:
        shutil.rmtree(folder, ignore_errors=True)
        raise _Refused(400, f"The upload could not be read ({err}); try again.") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if client_name is None:
        raise _Refused(400, "Choose a .xlsx or .csv file first.")
    try:
        options = {
            "course": _digits_field(fields.get("course", ""), "Course ID"),
            "batch": _digits_field(fields.get("batch", ""), "Batch ID"),
            "module": _digits_field(fields.get("module", ""), "Module ID"),
            "month_first": fields.get("month_first") in ("1", "on", "true"),
        }
        name = safe_name(client_name)
        meta = {"name": name, "file": name, "size": size, "options": options,
                "uploaded": time.time()}
        validation = await asyncio.to_thread(_store, st, folder, meta)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    st.remember(upload_id, validation)
    log.info("web: upload %s (%s, %d bytes): %d rows, %d valid, %d errors", upload_id, name,
             size, validation.n_rows, len(validation.sessions), validation.errors)
    raise web.HTTPSeeOther(f"/uploads/{upload_id}")


def _store(st: _State, folder: Path, meta: dict[str, Any]) -> Validation:
    """Blocking part of an upload: content check, validation, annotated sheet, summary."""
    from bulkschedule.results import write_report

    ext = _extension(meta["file"])
    problem = sniff_problem(folder / PARTIAL, ext)
    if problem:
        raise _Refused(415, f"{meta['name']}: {problem}.")
    (folder / PARTIAL).rename(folder / meta["file"])
    validation = st.load(folder, meta)
    write_report(folder / REPORT, validation)
    sheet = str(folder / meta["file"])
    summary = validation.to_json()
    summary["file"] = meta["name"]
    summary["fatal"] = validation.fatal
    summary["notes"] = [n.replace(sheet, meta["name"]) for n in validation.table.notes]
    _write_json(folder / CHECKED, summary)
    _write_json(folder / META, meta)  # last: an upload without it does not exist
    return validation


def _upload_id(request: web.Request) -> tuple[str, Path]:
    st = request.app[STATE]
    upload_id = request.match_info["upload_id"]
    folder = st.upload_dir(upload_id)
    if folder is None:
        raise _Refused(404, "There is no such upload (it may have been removed).")
    return upload_id, folder


async def upload_page(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    upload_id, folder = _upload_id(request)
    meta, checked = await asyncio.to_thread(
        lambda: (st.meta(folder), _read_json(folder / CHECKED)))
    valid = int(checked["valid"])
    notes = "".join(f"<li>{_e(n)}</li>" for n in checked.get("notes", []))
    notes = f'<ul class="notes">{notes}</ul>' if notes else ""
    if checked.get("fatal"):
        why = "A required column is missing, so nothing can be sent."
    elif not valid:
        why = "No row is valid, so there is nothing to send."
    else:
        why = ""
    disabled = " disabled" if why else ""
    current = st.current()
    busy = ""
    if current is not None:
        busy = (f'<p class="warn">Run {current.id} is in progress: <a href="/runs/{current.id}">'
                "watch it</a>. A new run can start when it ends.</p>")
    where = "the built-in sandbox" if st.sandbox is not None else "Zoho"
    body = f"""
<h1>{_e(meta['name'])}</h1>
<p class="summary" id="summary">{checked['rows']} rows: <strong>{valid} valid</strong>,
{checked['errors']} errors, {checked['warnings']} warnings</p>
{notes}
<p><a class="button" id="report" href="/uploads/{upload_id}/report.xlsx" download>Download the
annotated sheet</a> <span class="hint">(every problem marked in its cell)</span></p>
<form method="post" action="/runs" class="actions">
  {_csrf_input(request)}
  <input type="hidden" name="upload" value="{upload_id}">
  <button type="submit" name="mode" value="dry-run" id="dry-run"{disabled}>Dry run</button>
  <button type="submit" name="mode" value="create" id="create" class="primary"{disabled}>
    Create sessions ({valid})</button>
  <p class="hint">{_e(why) or f"Valid rows are sent to {where} (<code>{_e(st.target)}</code>) at "
  f"{_e(st.rate_text())}; rows with errors are never sent. Sessions already created are not "
  "sent again."}</p>
</form>
{busy}
<h2>Problems</h2>
{_problems_table(checked['problems'])}
<p><a href="/">Upload another sheet</a></p>"""
    return _page(request, meta["name"], body)


async def report(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    _, folder = _upload_id(request)
    path = folder / REPORT
    if not path.is_file():
        raise _Refused(404, "This upload has no annotated sheet.")
    meta = await asyncio.to_thread(st.meta, folder)
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
        raise _Refused(400, "Choose 'Dry run' or 'Create sessions'.")
    folder = st.upload_dir(upload_id)
    if folder is None:
        raise _Refused(404, "There is no such upload (it may have been removed).")
    dry_run = mode == "dry-run"
    async with st.starting:
        current = st.current()
        if current is not None:
            return _busy(request, current)
        tokens = st.tokens(dry_run)
        validation = await st.validation_for(upload_id, folder)
        if validation.fatal or not validation.sessions:
            raise _Refused(409, "Nothing to send: no row of this sheet is valid.")
        meta = await asyncio.to_thread(st.meta, folder)
        try:
            run = await st.start(upload_id, folder, meta, validation, dry_run=dry_run,
                                 tokens=tokens)
        except _Busy as busy:
            return _busy(request, busy.run)
    log.info("web: run %s started (%s, %s)", run.id, meta["name"],
             "dry run" if dry_run else "create")
    raise web.HTTPSeeOther(f"/runs/{run.id}")


def _busy(request: web.Request, run: LiveRun) -> web.Response:
    return _message_page(
        request, 409, f"Run {run.id} ({run.name}) is still running: one run at a time. Wait "
        "for it to finish, or stop it.", title="A run is in progress",
        extra=f'<p><a href="/runs/{run.id}">Watch run {run.id}</a></p>')


def _run_id(request: web.Request) -> int:
    text = request.match_info["run_id"]
    if not text.isdigit() or len(text) > 12:
        raise _Refused(404, "There is no such run.")
    return int(text)


async def run_page(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    run_id = _run_id(request)
    live = st.runs.get(run_id)
    if live is not None:
        return _page(request, f"Run {run_id}", _progress_html(request, live))
    info = await asyncio.to_thread(st.journal_run, run_id)
    if info is None:
        raise _Refused(404, "There is no such run.")
    return _page(request, f"Run {run_id}", _journal_run_html(st, info))


def _journal_run_html(st: _State, info: RunInfo) -> str:
    results = ""
    if st.owned_results(info.results_path):
        results = (f'<p><a class="button primary" id="results" href="/runs/{info.id}/results.xlsx"'
                   " download>Download the results workbook</a></p>")
    elif info.results_path:
        results = ('<p class="hint">Its results workbook was written by the command line: '
                   f"<code>{_e(Path(info.results_path).name)}</code></p>")
    kind = "Dry run" if info.dry_run else "Run"
    return f"""
<h1>Run {info.id}: {_e(Path(info.file).name)}</h1>
<p class="target">{kind} at <code>{_e(info.api_base)}</code>, started {_e(_when(info.started_at))}
{f", finished {_e(_when(info.finished_at))}" if info.finished_at else ""}</p>
<p class="state">{_e(info.state)}</p>
{_counts_html(info.counts)}
{results}"""


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a snapshot now, then one per change (or every few seconds), then
    ``done``. The run is on the server, so a reconnect simply picks up the current state."""
    st = request.app[STATE]
    run_id = _run_id(request)
    live = st.runs.get(run_id)
    final: dict[str, Any] | None = None
    if live is None:
        info = await asyncio.to_thread(st.journal_run, run_id)
        if info is None:
            raise _Refused(404, "There is no such run.")
        final = {"id": info.id, "state": info.state, "counts": info.counts,
                 "results": f"/runs/{info.id}/results.xlsx"
                 if st.owned_results(info.results_path) else None}
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
        while True:
            changed = live.changed
            snap = live.snapshot()
            await _send(response, "done" if live.finished else "progress", snap)
            if live.finished or st.closing:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), KEEPALIVE)
    except ConnectionResetError:
        pass  # the tab went away; the run does not care
    return response


async def _send(response: web.StreamResponse, event: str, data: Mapping[str, Any]) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


async def stop_run(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    run_id = _run_id(request)
    live = st.runs.get(run_id)
    if live is None:
        raise _Refused(404, "That run is not running here.")
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
    info = await asyncio.to_thread(st.journal_run, run_id)
    if info is None:
        raise _Refused(404, "There is no such run.")
    path = st.owned_results(info.results_path)
    if path is None:
        if info.finished_at is None:
            raise _Refused(404, "The results workbook is written when the run ends.")
        raise _Refused(404, "This run has no results workbook to download here (runs from the "
                            "command line keep theirs beside their sheet).")
    meta = await asyncio.to_thread(st.meta, path.parent)
    return _download(path, f"{Path(meta['name']).stem}.results.xlsx")


async def history(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    runs = await asyncio.to_thread(st.journal_runs, 50)
    if not runs:
        table = '<p class="hint">No runs yet.</p>'
    else:
        rows = []
        for info in runs:
            counts = ", ".join(f"{v} {k}" for k, v in sorted(info.counts.items()) if v)
            link = ""
            if st.owned_results(info.results_path):
                link = f'<a href="/runs/{info.id}/results.xlsx" download>results.xlsx</a>'
            elif info.results_path:
                link = '<span class="hint">command line</span>'
            rows.append(
                f'<tr><td class="num"><a href="/runs/{info.id}">{info.id}</a></td>'
                f"<td>{_e(_when(info.started_at))}</td><td>{_e(Path(info.file).name)}</td>"
                f'<td>{"dry run" if info.dry_run else "create"}</td>'
                f'<td><span class="badge state-{_e(info.state)}">{_e(info.state)}</span></td>'
                f"<td>{_e(counts or '-')}</td><td><code>{_e(info.api_base)}</code></td>"
                f"<td>{link}</td></tr>")
        table = ('<table class="history" id="history"><thead><tr><th>Run</th><th>Started</th>'
                 "<th>Sheet</th><th>Kind</th><th>State</th><th>Rows</th><th>API</th>"
                 "<th>Results</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    shown = "1 run" if len(runs) == 1 else f"{len(runs)} runs"
    body = (f"<h1>History</h1><p class=\"hint\">The last {shown} recorded in the journal, "
            "from this page and from the command line.</p>" + table)
    return _page(request, "History", body)


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
) -> web.Application:
    """The upload page as an aiohttp Application.

    ``sandbox``: start an in-process sandbox with this config and send runs there with its
    static token (and its ``speed``); otherwise runs go to ``settings.people_base`` with the
    credentials found in ``env`` (default: the process environment) or the secrets file.
    ``password``: required to use the page (a login form); None means loopback-only access.
    ``today`` pins validation's idea of today (tests).
    """
    if max_upload < 1:
        raise WebError("the upload limit must be at least 1 byte")
    st = _State(settings=settings, state_dir=Path(state_dir), password=password or None,
                max_upload=max_upload, env=os.environ if env is None else env, today=today,
                sandbox_config=sandbox)
    app = web.Application(middlewares=[_errors, _guard], client_max_size=FORM_LIMIT)
    app[STATE] = st
    app.on_response_prepare.append(_headers)

    async def lifecycle(app: web.Application) -> Any:
        st.uploads.mkdir(parents=True, exist_ok=True)
        if st.sandbox_config is None:
            yield
            return
        from bulkschedule.sandbox import Sandbox

        async with Sandbox(st.sandbox_config) as sb:
            st.sandbox = sb
            yield
            st.sandbox = None

    async def on_shutdown(app: web.Application) -> None:
        await st.shutdown()

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
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; a run in progress then finishes its calls and writes its
    results. With ``sandbox`` and no ``state_dir``, a temporary state folder is used (as
    ``run --sandbox`` does), so rehearsals never mix with the real journal."""
    check_access(host, password)
    sandbox_config = None
    if sandbox:
        from bulkschedule.sandbox import SandboxConfig

        calls, period = settings.rate_pair
        sandbox_config = SandboxConfig(rate_calls=calls, rate_seconds=period,
                                       lock_seconds=settings.lock_seconds, speed=speed)
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bulkschedule-web-"))) if sandbox \
                else settings.state_dir
        try:
            (state_dir / "uploads").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WebError(f"cannot use the state folder {state_dir}: "
                           f"{err.strerror or err}") from None
        app = make_app(settings, state_dir=state_dir, sandbox=sandbox_config, password=password,
                       max_upload=max_upload)
        runner = web.AppRunner(app, access_log=logging.getLogger("bulkschedule.web.access"),
                               shutdown_timeout=STOP_GRACE + 10)
        await runner.setup()
        loop = asyncio.get_running_loop()
        handled: list[int] = []
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            stop = asyncio.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(signum, stop.set)
                    handled.append(signum)
            if on_ready is not None:
                on_ready(_url(runner, host))
            await stop.wait()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            await runner.cleanup()


def _url(runner: web.AppRunner, host: str) -> str:
    bound = runner.addresses[0] if runner.addresses else (host, 0)
    name, port = str(bound[0]), bound[1]
    if ":" in name:
        name = f"[{name}]"
    return f"http://{name}:{port}/"

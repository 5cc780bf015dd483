"""The journal: SQLite in the state folder, the single source of truth about what may exist in Zoho.

The Create Session API has no idempotency key, so the only protection against creating a session
twice is to remember, durably and before every call, what has been (or may have been) sent. Every
row identity (API base + ``Request.identity``) moves through these journal states::

    (absent) -claim-> inflight -record_created-> created  (final: never sent again)
                         |     -record_failed--> failed   (nothing created: may be re-sent)
                         |     -release--------> released (nothing created: may be re-sent)
                         |     -record_unknown-> unknown  (may exist: list before re-sending)
                         `-- owner run dies ---> (stale)  (may exist: list before re-sending)

`Journal.claim` decides a row's fate *before* it takes a rate-limit slot, in one
``BEGIN IMMEDIATE`` transaction, so two processes sharing a state folder can never both mark the
same identity in flight.

Liveness of a run (is an ``inflight`` row still being worked on, or was its run killed?) is judged
from the ``runs`` table: the runner refreshes ``heartbeat_at`` every few seconds. A run is *dead*
when it has finished, when its heartbeat is older than ``stale_after`` seconds, or when it ran on
this host and its pid no longer exists. The pid check makes a crash visible at once on the same
machine; the heartbeat bound covers other hosts sharing the folder (and pid reuse). A live but
frozen run (a laptop suspended for longer than ``stale_after``) would be judged dead; its rows are
then reconciled by listing, which is still safe unless the frozen process wakes and completes a
call at the very moment the other run lists — see docs/duplicate-protection.md.

Other modules keep their own tables (prefixed ``pace_``) in the same file; this module owns
``rows`` and ``runs``.

When the journal cannot be used, nothing is sent and nothing is repaired: a state folder that
cannot be written, a file that cannot be a journal (refused before SQLite touches it, see
`send.faults`), a damaged one (a run reads every page first: `open_journal`), or another
process's write transaction held past the wait are each a `StateError` of one line naming the
folder or the file. A write that fails later (the disk is full) is one too, raised from `_tx`
after a rollback; the runner stops on it, and since a row is claimed here before its request
leaves, every row sent is at least ``inflight`` in the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from bulkschedule.core.request import Request
from bulkschedule.send.faults import (
    JournalBusy,
    check_folder,
    check_journal_file,
    damaged,
    state_error,
)

JOURNAL_FILE = "journal.sqlite3"
#: 2: ``sent`` and ``pending`` (what was last sent for a session, and an update not yet confirmed)
SCHEMA_VERSION = 2

#: Journal row states (the ``rows.status`` column).
INFLIGHT = "inflight"  # claimed by a run; a call may be on the wire
UNKNOWN = "unknown"  # a call may have created it; reconcile by listing before any resend
CREATED = "created"  # exists in Zoho with ``session_id``
FAILED = "failed"  # the server refused it (nothing created); a later run may try again
RELEASED = "released"  # claimed, then given back with nothing created (lockout, 5xx, stop)

#: Identities per query of `Journal.lookup_many` (SQLite allows at least 999 parameters).
LOOKUP_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at   REAL    NOT NULL,
    heartbeat_at REAL    NOT NULL,
    finished_at  REAL,
    pid          INTEGER NOT NULL,
    host         TEXT    NOT NULL,
    file         TEXT    NOT NULL DEFAULT '',
    api_base     TEXT    NOT NULL DEFAULT '',
    total        INTEGER NOT NULL DEFAULT 0,
    dry_run      INTEGER NOT NULL DEFAULT 0,
    status       TEXT    NOT NULL DEFAULT 'running',
    counts       TEXT    NOT NULL DEFAULT '{}',
    results_path TEXT
);
CREATE TABLE IF NOT EXISTS rows (
    api_base     TEXT    NOT NULL,
    identity     TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    session_id   TEXT,
    fingerprint  TEXT    NOT NULL DEFAULT '',
    run_id       INTEGER,
    sheet_row    INTEGER,
    path         TEXT    NOT NULL DEFAULT '',
    attempts     INTEGER NOT NULL DEFAULT 0,
    message      TEXT    NOT NULL DEFAULT '',
    updated_at   REAL    NOT NULL,
    sent         TEXT,
    pending      TEXT,
    PRIMARY KEY (api_base, identity)
);
CREATE INDEX IF NOT EXISTS rows_status ON rows (status);
"""
#: Columns added since version 1, for a journal written by an earlier version.
_ADDED_COLUMNS = (("sent", "TEXT"), ("pending", "TEXT"))
#: Made after the columns exist (an older journal gets them first).
_INDEXES = "CREATE INDEX IF NOT EXISTS rows_session ON rows (api_base, session_id)"


class ClaimKind(StrEnum):
    NEW = "new"  # now in flight for this run: send it
    CREATED = "created"  # already exists (``session_id``); ``changed`` if the details differ
    BUSY = "busy"  # in flight in a live run (maybe this one): never send twice; re-check later
    STALE = "stale"  # may exist (dead run / unknown reply); now ours: list before sending


@dataclass(frozen=True, slots=True)
class Claim:
    kind: ClaimKind
    session_id: str | None = None
    changed: bool = False  # CREATED with a different fingerprint
    owner_run: int | None = None  # BUSY/STALE: the run that held it
    message: str = ""  # BUSY/STALE: who held it, for the operator


@dataclass(frozen=True, slots=True)
class Entry:
    """What the journal knows about one identity (for dry runs, reports and the web page)."""

    api_base: str
    identity: str
    status: str
    session_id: str | None
    fingerprint: str
    run_id: int | None
    sheet_row: int | None
    path: str
    attempts: int
    message: str
    updated_at: float
    #: the ``sessionData`` last sent for this session (None: not recorded, e.g. found by listing)
    sent: dict[str, str] | None = None
    #: an update begun and not confirmed: what it sends (it may or may not have landed)
    pending: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: int
    started_at: float
    heartbeat_at: float
    finished_at: float | None
    pid: int
    host: str
    file: str
    api_base: str
    total: int
    dry_run: bool
    status: str  # running | finished | stopped | failed | ... (as given to finish_run)
    counts: dict[str, int]
    results_path: str | None
    alive: bool  # judged now: unfinished with a live heartbeat (and pid, on this host)

    @property
    def state(self) -> str:
        """``running``, the status given to finish_run, or ``interrupted`` (died unfinished)."""
        if self.finished_at is not None:
            return self.status
        return "running" if self.alive else "interrupted"


def normalise_base(api_base: str) -> str:
    """One spelling per API base: ``https://People.zoho.com/`` and ``…zoho.com`` share rows."""
    return api_base.strip().rstrip("/").lower()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host.

    On Windows ``os.kill(pid, 0)`` would *terminate* the process, so there we rely on the heartbeat
    alone and report every pid as alive.
    """
    if os.name == "nt":
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


class Journal:
    """One connection to ``<state>/journal.sqlite3``. Use one instance per process (or per test).

    Every public method that changes state runs in its own ``BEGIN IMMEDIATE`` transaction and
    commits before returning, so a crash right after a call leaves the journal telling the truth.
    A claim (and a run's start and finish, and `forget`) also waits for the disk, so it survives a
    power cut; a settled row, a note and a heartbeat do not need to (see `_tx`).
    Methods are synchronous and short (single-row statements); they are called from the event loop
    directly.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        stale_after: float = 90.0,
        busy_timeout: float = 30.0,
        lock_wait: float | None = None,
        host: str | None = None,
        pid: int | None = None,
        verify: bool = False,
        factory: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> None:
        """Open (or start) the journal of ``state_dir``.

        Any failure is a `StateError` naming the folder or the file, and a journal that cannot be
        read is refused before SQLite writes anything to it (see `send.faults`); ``verify`` also
        reads every page first (``PRAGMA quick_check``: about a second per 300 MB), which a run
        does before it sends. ``lock_wait`` bounds the wait for another process's write
        transaction while opening (default ``busy_timeout``; `open_journal` waits without
        blocking the event loop). ``factory`` is the connection class (tests inject one that
        fails).
        """
        self.state_dir = Path(state_dir)
        self._together = False  # inside `together`: writes join its transaction
        self.path = self.state_dir / JOURNAL_FILE
        self._clock = clock
        self.stale_after = stale_after
        self.host = host if host is not None else socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        check_folder(self.state_dir)
        check_journal_file(self.path)
        wait = busy_timeout if lock_wait is None else lock_wait
        try:
            # isolation_level=None: no implicit transactions; we open BEGIN IMMEDIATE ourselves,
            # and plain reads never linger in a transaction that would pin an old WAL snapshot.
            self._db = sqlite3.connect(self.path, timeout=wait, isolation_level=None,
                                       factory=factory)
        except sqlite3.Error as err:
            raise state_error(err, self.path) from err
        try:
            self._open(wait, busy_timeout, verify=verify)
        except BaseException as exc:
            self._db.close()
            if isinstance(exc, sqlite3.Error):
                raise state_error(exc, self.path) from exc
            raise

    def _open(self, lock_wait: float, busy_timeout: float, *, verify: bool) -> None:
        """Read the schema (and with ``verify`` every page) first, so a damaged file fails before
        anything is written; then the settings and our tables. Wait ``lock_wait`` for the write
        lock while opening, ``busy_timeout`` afterwards."""
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {int(lock_wait * 1000)}")
        self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if verify:
            problem = self._db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                raise damaged(self.path, f"it is damaged ({problem})")
        self._db.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed claim survives power loss too, not only a process crash.
        self._db.execute("PRAGMA synchronous = FULL")
        with self._tx(running=False) as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            have = {r["name"] for r in db.execute("PRAGMA table_info(rows)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in have:
                    db.execute(f"ALTER TABLE rows ADD COLUMN {name} {kind}")
            db.execute(_INDEXES)
            if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")

    # -- plumbing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self, *, running: bool = True, durable: bool = True
            ) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the database write lock up front (no upgrade deadlock).

        An SQLite error inside it (the disk is full, the file went bad, another process held the
        lock past the busy timeout) is rolled back and raised as a `StateError` naming the file:
        callers stop the run on it rather than carry on with a journal that no longer records.

        ``durable=False`` commits without waiting for the disk (``synchronous = NORMAL``): safe
        after a process crash, and after a power cut the write can only be lost together with
        every later one, since the next durable commit (the next claim) syncs the whole log. It
        is for records whose loss leaves a row as its claim left it, in flight for a run that is
        then dead, which the next run reconciles by listing before it sends (never twice): a
        settled row, a note, a heartbeat. A claim is always durable: it is what protects a send.
        At 20,000 rows that is one wait for the disk per row instead of two.
        """
        if self._together:  # inside `together`: its transaction (durable) holds this write
            yield self._db
            return
        try:
            if not durable:
                self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise state_error(err, self.path, running=running) from err
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):  # a failed COMMIT may have rolled back
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise state_error(exc, self.path, running=running) from exc
            raise
        finally:
            if not durable:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA synchronous = FULL")

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Make the writes inside one durable transaction: one wait for the disk for all of them
        (a group commit; a run's claims asked for in the same moment). If any write fails,
        none is kept, and the failure is the `StateError` a lone write would raise."""
        with self._tx():
            self._together = True
            try:
                yield
            finally:
                self._together = False

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> float:
        return self._clock()

    # -- runs -----------------------------------------------------------------------------------

    def start_run(
        self,
        file: str,
        api_base: str,
        *,
        total: int = 0,
        dry_run: bool = False,
        pid: int | None = None,
        host: str | None = None,
    ) -> int:
        """Register a run (alive from now on while it heartbeats) and return its id."""
        now = self.now()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (started_at, heartbeat_at, pid, host, file, api_base, total,"
                " dry_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    now,
                    self.pid if pid is None else pid,
                    self.host if host is None else host,
                    file,
                    normalise_base(api_base),
                    total,
                    int(dry_run),
                ),
            )
            run_id = cur.lastrowid
        assert run_id is not None
        return run_id

    def heartbeat(self, run_id: int) -> None:
        """Prove the run is alive, so its in-flight rows are not taken for a crashed run's."""
        with self._tx(durable=False) as db:
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (self.now(), run_id))

    def finish_run(
        self,
        run_id: int,
        counts: Mapping[str, int],
        results_path: str | None = None,
        *,
        status: str = "finished",
    ) -> None:
        """Close a run. Rows it still holds in flight are judged stale (reconciled) from now on."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, heartbeat_at = ?, status = ?, counts = ?,"
                " results_path = ? WHERE id = ?",
                (
                    self.now(),
                    self.now(),
                    status,
                    json.dumps(dict(counts), sort_keys=True),
                    results_path,
                    run_id,
                ),
            )

    def runs(self, limit: int = 20) -> list[RunInfo]:
        """Most recent runs first."""
        cur = self._db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [self._run_info(r) for r in cur.fetchall()]

    def run(self, run_id: int) -> RunInfo | None:
        r = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if r is None else self._run_info(r)

    def run_alive(self, run_id: int | None) -> bool:
        if run_id is None:
            return False
        r = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return r is not None and self._alive(r)

    def _run_info(self, r: sqlite3.Row) -> RunInfo:
        return RunInfo(
            id=r["id"],
            started_at=r["started_at"],
            heartbeat_at=r["heartbeat_at"],
            finished_at=r["finished_at"],
            pid=r["pid"],
            host=r["host"],
            file=r["file"],
            api_base=r["api_base"],
            total=r["total"],
            dry_run=bool(r["dry_run"]),
            status=r["status"],
            counts=json.loads(r["counts"] or "{}"),
            results_path=r["results_path"],
            alive=self._alive(r),
        )

    def _alive(self, run: sqlite3.Row) -> bool:
        if run["finished_at"] is not None:
            return False
        if self.now() - run["heartbeat_at"] > self.stale_after:
            return False
        return not (run["host"] == self.host and not pid_alive(run["pid"]))

    # -- rows -----------------------------------------------------------------------------------

    def claim(self, api_base: str, req: Request, run_id: int) -> Claim:
        """Decide atomically whether this run may send ``req`` (call before taking a rate slot).

        NEW and STALE leave the identity in flight for ``run_id``; CREATED and BUSY change nothing.
        """
        base = normalise_base(api_base)
        now = self.now()
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM rows WHERE api_base = ? AND identity = ?", (base, req.identity)
            ).fetchone()
            if row is not None and row["status"] == CREATED:
                return Claim(
                    ClaimKind.CREATED,
                    session_id=row["session_id"],
                    changed=row["fingerprint"] != req.fingerprint,
                )
            claim = Claim(ClaimKind.NEW)
            if row is not None and row["status"] in (INFLIGHT, UNKNOWN):
                claim = self._held(db, row, run_id)
                if claim.kind is ClaimKind.BUSY:
                    return claim
            db.execute(
                "INSERT INTO rows (api_base, identity, status, fingerprint, run_id, sheet_row,"
                " path, message, updated_at, sent) VALUES (?, ?, ?, ?, ?, ?, ?, '', ?, ?)"
                " ON CONFLICT (api_base, identity) DO UPDATE SET status = excluded.status,"
                " fingerprint = excluded.fingerprint, run_id = excluded.run_id,"
                " sheet_row = excluded.sheet_row, path = excluded.path,"
                " message = CASE WHEN ? THEN rows.message ELSE '' END,"
                " updated_at = excluded.updated_at, sent = excluded.sent",
                (
                    base,
                    req.identity,
                    INFLIGHT,
                    req.fingerprint,
                    run_id,
                    req.row,
                    req.path,
                    now,
                    _json(req.session_data),
                    claim.kind == ClaimKind.STALE,
                ),
            )
            return claim

    def _held(self, db: sqlite3.Connection, row: sqlite3.Row, run_id: int) -> Claim:
        """Who holds an identity that is in flight or unknown: BUSY if a live run (or this one)
        is sending it, else STALE (this run takes it over and lists before sending)."""
        owner: int | None = row["run_id"]
        run = (
            None
            if owner is None
            else db.execute("SELECT * FROM runs WHERE id = ?", (owner,)).fetchone()
        )
        who = (
            f"run #{owner}" if run is None else f"run #{owner} (pid {run['pid']} on {run['host']})"
        )
        if row["status"] == INFLIGHT and (
            owner == run_id or (run is not None and self._alive(run))
        ):
            return Claim(ClaimKind.BUSY, owner_run=owner, message=f"being sent by {who}")
        message = (
            f"left unconfirmed by {who}: {row['message']}"
            if row["status"] == UNKNOWN and row["message"]
            else f"left in flight by {who}, which stopped without confirming it"
        )
        return Claim(ClaimKind.STALE, owner_run=owner, message=message)

    def record_created(
        self,
        api_base: str,
        req: Request,
        run_id: int,
        session_id: str,
        *,
        attempts: int = 0,
        message: str = "",
        as_sent: bool = True,
    ) -> str:
        """Record that the session exists. Always written, owned or not: it is the truth.

        If the identity was already recorded as created under a *different* sessionId (a duplicate
        slipped through, e.g. a run judged dead came back), the first id is kept and the message
        names both so the operator can delete one. Returns the sessionId the journal now holds.

        ``as_sent=False``: the session was found in Zoho with details that differ from ``req``
        (or were not compared): neither its fingerprint nor what was sent is recorded, so a later
        run compares afresh instead of taking the row as unchanged.
        """
        base = normalise_base(api_base)
        with self._tx(durable=False) as db:
            row = db.execute(
                "SELECT status, session_id FROM rows WHERE api_base = ? AND identity = ?",
                (base, req.identity),
            ).fetchone()
            if row is not None and row["status"] == CREATED and row["session_id"] != session_id:
                db.execute(
                    "UPDATE rows SET attempts = attempts + ?, message = ?, updated_at = ?"
                    " WHERE api_base = ? AND identity = ?",
                    (
                        attempts,
                        f"possible duplicate: sessions {row['session_id']} and {session_id}"
                        " both exist for this row",
                        self.now(),
                        base,
                        req.identity,
                    ),
                )
                return str(row["session_id"])
            db.execute(
                "INSERT INTO rows (api_base, identity, status, session_id, fingerprint, run_id,"
                " sheet_row, path, attempts, message, updated_at, sent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (api_base, identity) DO UPDATE SET status = excluded.status,"
                " session_id = excluded.session_id, fingerprint = excluded.fingerprint,"
                " run_id = excluded.run_id, sheet_row = excluded.sheet_row, path = excluded.path,"
                " attempts = rows.attempts + excluded.attempts, message = excluded.message,"
                " updated_at = excluded.updated_at, sent = excluded.sent",
                (
                    base,
                    req.identity,
                    CREATED,
                    session_id,
                    req.fingerprint if as_sent else "",
                    run_id,
                    req.row,
                    req.path,
                    attempts,
                    message,
                    self.now(),
                    _json(req.session_data) if as_sent else None,
                ),
            )
            return session_id

    def record_failed(
        self, api_base: str, req: Request, run_id: int, message: str, *, attempts: int = 0
    ) -> bool:
        """The server refused the row: nothing was created, a later run may try again."""
        return self._settle(api_base, req, run_id, FAILED, message, attempts)

    def release(
        self, api_base: str, req: Request, run_id: int, *, attempts: int = 0, message: str = ""
    ) -> bool:
        """Give the row back with nothing created (lockout, 5xx, not sent), so a crash before the
        retry does not force a reconciliation."""
        return self._settle(api_base, req, run_id, RELEASED, message, attempts)

    def record_unknown(
        self, api_base: str, req: Request, run_id: int, message: str, *, attempts: int = 0
    ) -> bool:
        """The row may have been created: whoever claims it next must list before sending."""
        return self._settle(api_base, req, run_id, UNKNOWN, message, attempts)

    def note(
        self, api_base: str, req: Request, run_id: int, message: str, *, attempts: int = 0
    ) -> bool:
        """Record progress on a row this run still holds, keeping it in flight.

        Used after a lost reply while this run reconciles the row itself: marking it ``unknown``
        there would let another live run claim it as stale and list (and maybe send) at the same
        time. If this run dies meanwhile, the ``inflight`` row of a dead run is stale anyway.
        """
        with self._tx(durable=False) as db:
            cur = db.execute(
                "UPDATE rows SET message = ?, attempts = attempts + ?, updated_at = ?"
                " WHERE api_base = ? AND identity = ? AND run_id = ? AND status = ?",
                (
                    message,
                    attempts,
                    self.now(),
                    normalise_base(api_base),
                    req.identity,
                    run_id,
                    INFLIGHT,
                ),
            )
            return cur.rowcount == 1

    def _settle(
        self, api_base: str, req: Request, run_id: int, status: str, message: str, attempts: int
    ) -> bool:
        """Move a row this run holds to ``status``. A row another run has since taken over (we were
        judged dead) is left alone: its new owner decides. Returns whether anything changed."""
        with self._tx(durable=False) as db:
            cur = db.execute(
                "UPDATE rows SET status = ?, message = ?, attempts = attempts + ?, updated_at = ?"
                " WHERE api_base = ? AND identity = ? AND run_id = ? AND status IN (?, ?)",
                (
                    status,
                    message,
                    attempts,
                    self.now(),
                    normalise_base(api_base),
                    req.identity,
                    run_id,
                    INFLIGHT,
                    UNKNOWN,
                ),
            )
            return cur.rowcount == 1

    # -- updates ------------------------------------------------------------------------------

    def begin_update(self, api_base: str, req: Request, run_id: int) -> None:
        """Before an update of session ``req.session_id`` leaves: what it sends, as ``pending``
        on every identity recorded for that session (or on ``req``'s, recorded as created, if
        none is). Durable: a run that dies mid-update leaves the journal saying it may not have
        landed, so the next run sends it again (an update may be: it sets the same values)."""
        assert req.session_id is not None
        base = normalise_base(api_base)
        pending = _json(req.session_data)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE rows SET pending = ?, updated_at = ? WHERE api_base = ? AND session_id = ?",
                (pending, self.now(), base, req.session_id),
            )
            if cur.rowcount == 0:
                for identity in (req.identity, _session_identity(req.session_id)):
                    # the row's own identity, unless it is recorded as another session: then
                    # one of the session's own, so the update is on record either way
                    cur = db.execute(
                        "INSERT INTO rows (api_base, identity, status, session_id, fingerprint,"
                        " run_id, sheet_row, path, message, updated_at, pending)"
                        " VALUES (?, ?, ?, ?, '', ?, ?, ?, '', ?, ?)"
                        " ON CONFLICT (api_base, identity) DO UPDATE SET status = excluded.status,"
                        " session_id = excluded.session_id, fingerprint = '',"
                        " pending = excluded.pending, updated_at = excluded.updated_at"
                        " WHERE rows.status != 'created'",
                        (base, identity, CREATED, req.session_id, run_id, req.row, req.path,
                         self.now(), pending),
                    )
                    if cur.rowcount:
                        break

    def record_updated(self, api_base: str, req: Request, run_id: int, *,
                       attempts: int = 0) -> bool:
        """Session ``req.session_id`` now holds ``req``'s details: recorded as sent on every
        identity of that session, and ``req``'s own identity added if the journal lacked it (so
        the edited row, even without its sessionId, is that session from now on)."""
        assert req.session_id is not None
        base = normalise_base(api_base)
        now = self.now()
        sent = _json(req.session_data)
        with self._tx(durable=False) as db:
            db.execute(
                "UPDATE rows SET sent = ?, pending = NULL, fingerprint = ?, run_id = ?,"
                " attempts = attempts + ?, message = 'updated', updated_at = ?"
                " WHERE api_base = ? AND session_id = ?",
                (sent, req.fingerprint, run_id, attempts, now, base, req.session_id),
            )
            db.execute(
                "INSERT INTO rows (api_base, identity, status, session_id, fingerprint, run_id,"
                " sheet_row, path, message, updated_at, sent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'updated', ?, ?)"
                " ON CONFLICT (api_base, identity) DO UPDATE SET status = excluded.status,"
                " session_id = excluded.session_id, fingerprint = excluded.fingerprint,"
                " sent = excluded.sent, pending = NULL, message = excluded.message,"
                " updated_at = excluded.updated_at WHERE rows.status != 'created'",
                (base, req.identity, CREATED, req.session_id, req.fingerprint, run_id, req.row,
                 req.path, now, sent),
            )
        return True

    def by_session(self, api_base: str, session_ids: Iterable[str]) -> dict[str, Entry]:
        """sessionId -> what the journal knows of it (the latest entry when several identities
        name it), for the sessions given; changes nothing."""
        base = normalise_base(api_base)
        wanted = list(dict.fromkeys(session_ids))
        found: dict[str, Entry] = {}
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT * FROM rows WHERE api_base = ? AND status = ? AND session_id IN ({marks})"
                " ORDER BY updated_at",
                (base, CREATED, *chunk),
            )
            found.update((r["session_id"], _entry(r)) for r in rows)
        return found

    def lookup(self, api_base: str, req: Request) -> Entry | None:
        """What the journal knows about this row's identity (dry run, reports); changes nothing."""
        return self.entry(api_base, req.identity)

    def lookup_many(self, api_base: str, requests: Iterable[Request]) -> dict[str, Entry]:
        """`lookup` for many rows at once (a dry run's preview): identity -> what the journal
        knows, identities it has never seen left out. One query per `LOOKUP_CHUNK` identities
        instead of one per row, all read from one snapshot; changes nothing."""
        base = normalise_base(api_base)
        identities = list(dict.fromkeys(req.identity for req in requests))
        found: dict[str, Entry] = {}
        self._db.execute("BEGIN")  # a read transaction: every chunk sees the same journal
        try:
            for start in range(0, len(identities), LOOKUP_CHUNK):
                chunk = identities[start : start + LOOKUP_CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT * FROM rows WHERE api_base = ? AND identity IN ({marks})",
                    (base, *chunk),
                )
                found.update((r["identity"], _entry(r)) for r in rows)
        finally:
            self._db.execute("COMMIT")
        return found

    def entry(self, api_base: str, identity: str) -> Entry | None:
        r = self._db.execute(
            "SELECT * FROM rows WHERE api_base = ? AND identity = ?",
            (normalise_base(api_base), identity),
        ).fetchone()
        return None if r is None else _entry(r)

    def entries(self, api_base: str | None = None, *, status: str | None = None) -> list[Entry]:
        """Rows, optionally filtered (``status="unknown"``: the operator's to-check list)."""
        sql = "SELECT * FROM rows WHERE 1 = 1"
        args: list[Any] = []
        if api_base is not None:
            sql += " AND api_base = ?"
            args.append(normalise_base(api_base))
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        return [_entry(r) for r in self._db.execute(sql + " ORDER BY updated_at", args)]

    def forget(self, api_base: str, identity: str) -> bool:
        """Drop what the journal knows about an identity (after the operator deleted the session in
        Zoho, or checked by hand that an ``unknown`` row was not created). The next run sends it."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM rows WHERE api_base = ? AND identity = ?",
                (normalise_base(api_base), identity),
            )
            return cur.rowcount == 1


#: How long a run waits at start for another process's write transaction on the journal. The
#: journal's own transactions last milliseconds; one held for this long is stuck.
LOCK_WAIT = 30.0
#: What a run says (once) when it has to wait for the journal.
WAITING = "waiting for the journal, held by another run…"


async def open_journal(
    state_dir: str | os.PathLike[str],
    *,
    wait: float = LOCK_WAIT,
    on_wait: Callable[[str], None] | None = None,
    poll: float = 0.1,
    clock: Callable[[], float] = time.time,
    verify: bool = True,
    factory: type[sqlite3.Connection] = sqlite3.Connection,
) -> Journal:
    """Open the journal for a run, waiting up to ``wait`` seconds, without blocking the event loop,
    while another process holds its write lock.

    A short first try absorbs ordinary contention (another run's claim lasts milliseconds); if the
    lock is still held, ``on_wait`` hears `WAITING` (with the file) once, and the journal is tried
    again every ``poll`` seconds. Past ``wait``, a `JournalBusy`; any other trouble, a `StateError`
    at once. Every page is read (``verify``) before anything is written.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    first = min(wait, 0.2)
    told = False
    while True:
        try:
            # the first try read every page before it met the lock: no need to again
            return Journal(state_dir, clock=clock, lock_wait=0.0 if told else first,
                           verify=verify and not told, factory=factory)
        except JournalBusy as err:
            if loop.time() >= deadline:
                raise JournalBusy(
                    f"the journal {err.path} is still held by another run after {wait:g} s; "
                    "nothing was sent. Run again once that run has finished; a process stuck in "
                    "a write transaction (an open `sqlite3` shell?) must be stopped",
                    path=err.path) from err
            if not told and on_wait is not None:
                on_wait(f"{WAITING} ({err.path}; giving up after {wait:g} s)")
            told = True
        await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))


def _entry(r: sqlite3.Row) -> Entry:
    return Entry(
        api_base=r["api_base"],
        identity=r["identity"],
        status=r["status"],
        session_id=r["session_id"],
        fingerprint=r["fingerprint"],
        run_id=r["run_id"],
        sheet_row=r["sheet_row"],
        path=r["path"],
        attempts=r["attempts"],
        message=r["message"],
        updated_at=r["updated_at"],
        sent=_data(r["sent"]),
        pending=_data(r["pending"]),
    )


def _session_identity(session_id: str) -> str:
    """The identity an update records a session under when the row's own is another
    session's."""
    return f"sessionId:{session_id}"


def _json(data: Mapping[str, str]) -> str:
    return json.dumps(dict(data), ensure_ascii=False, separators=(",", ":"))


def _data(text: str | None) -> dict[str, str] | None:
    """A recorded ``sessionData``; None if there is none or it cannot be read (then it is as
    if nothing had been recorded: the row is compared afresh)."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): str(v) for k, v in data.items()}

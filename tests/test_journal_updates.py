"""The journal's side of updates (issue 12): what was sent (``sent``), an update in flight
(``pending``), sessions found by sessionId, and a journal written before both columns existed."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bulkschedule.core.request import Request
from bulkschedule.send.journal import (
    CREATED,
    FAILED,
    JOURNAL_FILE,
    LOOKUP_CHUNK,
    RELEASED,
    SCHEMA_VERSION,
    Journal,
)

BASE = "https://people.zoho.com"
T0 = 1_800_000_000.0
S1 = "478346000020113001"
S2 = "478346000020113002"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 1.0  # every write later than the last: "latest" is well defined
        return self.now


def req(row: int = 2, *, ident: str | None = None, start: str = "10:00 AM", fp: str | None = None,
        session_id: str | None = None) -> Request:
    data = {"name": f"Session {row}", "date": "04-01-2027", "startTime": start}
    return Request(row=row, course_id="1", batch_id="2", module_id="3", session_data=data,
                   identity=ident or f"session:3|Session {row}|04-01-2027|{start}",
                   fingerprint=fp or f"fp-{row}-{start}", session_id=session_id)


def update_of(r: Request, session_id: str, **change: Any) -> Request:
    """``r`` edited (``start``) and naming its session, as a results workbook row would."""
    edited = req(r.row, ident=r.identity, session_id=session_id, **change)
    return dataclasses.replace(edited, identity=r.identity)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "state", clock=Clock())
    yield j
    j.close()


def other_connection(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "state", clock=Clock(T0 + 10_000))


def created(journal: Journal, r: Request, session_id: str, **kw: Any) -> int:
    run = journal.start_run("term.xlsx", BASE)
    journal.claim(BASE, r, run)
    journal.record_created(BASE, r, run, session_id, **kw)
    return run


# ----------------------------------------------------------------------------- sent at claiming


def test_a_claim_records_what_it_sends_and_creating_keeps_it(journal: Journal) -> None:
    r = req(2)
    run = journal.start_run("term.xlsx", BASE)
    journal.claim(BASE, r, run)
    e = journal.lookup(BASE, r)
    assert e is not None and e.sent == r.session_data and e.pending is None
    journal.record_created(BASE, r, run, S1)
    e = journal.lookup(BASE, r)
    assert e is not None and (e.status, e.session_id, e.sent, e.fingerprint) == (
        CREATED, S1, r.session_data, r.fingerprint)


def test_created_not_as_sent_records_neither_fingerprint_nor_sent(journal: Journal) -> None:
    """A session found in Zoho with other details: a later run must compare afresh, so what the
    claim wrote as sent is dropped too."""
    r = req(2)
    created(journal, r, S1, as_sent=False)
    e = journal.lookup(BASE, r)
    assert e is not None and (e.status, e.session_id, e.fingerprint, e.sent) == (
        CREATED, S1, "", None)


# ------------------------------------------------------------------------------- begin_update


def test_begin_update_marks_every_identity_of_the_session_pending(journal: Journal,
                                                                  tmp_path: Path) -> None:
    a, b, other = req(2), req(3, ident="key:K3"), req(4)
    created(journal, a, S1)
    created(journal, b, S1)
    created(journal, other, S2)
    run = journal.start_run("term.results.xlsx", BASE)
    edit = req(9, start="11:00 AM", session_id=S1)  # a row of its own identity, naming S1
    journal.begin_update(BASE, edit, run)

    # seen by another connection at once: committed before the PATCH leaves
    with other_connection(tmp_path) as seen:
        for r in (a, b):
            e = seen.lookup(BASE, r)
            assert e is not None and e.pending == edit.session_data
            assert e.sent == r.session_data  # what was sent before is kept until confirmed
            assert e.status == CREATED and e.session_id == S1
        o = seen.lookup(BASE, other)
        assert o is not None and o.pending is None
        # the session had identities: the edited row's own is not added before it is confirmed
        assert seen.lookup(BASE, edit) is None


class _Recording(sqlite3.Connection):
    """Logs the statements the journal runs, to see how each transaction is committed."""

    log: ClassVar[list[str]] = []

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        _Recording.log.append(" ".join(sql.split()))
        return super().execute(sql, *args)


def test_begin_update_waits_for_the_disk_and_record_updated_need_not(tmp_path: Path) -> None:
    """The pending update must survive a power cut (the next run sends it again); its
    confirmation may be lost with everything after it (the update is then sent again)."""
    r = req(2)
    with Journal(tmp_path / "state", clock=Clock(), factory=_Recording) as journal:
        created(journal, r, S1)
        run = journal.start_run("term.xlsx", BASE)
        edit = update_of(r, S1, start="11:00 AM")

        _Recording.log.clear()
        journal.begin_update(BASE, edit, run)
        begin = list(_Recording.log)
        _Recording.log.clear()
        journal.record_updated(BASE, edit, run)
        confirm = list(_Recording.log)
    assert not any("synchronous = NORMAL" in s for s in begin)
    assert any(s.startswith("UPDATE rows SET pending") for s in begin)
    assert begin[-1] == "COMMIT"
    assert confirm[0] == "PRAGMA synchronous = NORMAL"


def test_begin_update_without_any_identity_of_the_session_adds_the_rows(journal: Journal) -> None:
    """A results-workbook row naming a session the journal never saw (created by hand, or in
    another state folder): recorded as that session's, pending, with nothing sent yet."""
    edit = req(2, session_id=S1)
    run = journal.start_run("term.results.xlsx", BASE)
    journal.begin_update(BASE, edit, run)
    e = journal.lookup(BASE, edit)
    assert e is not None
    assert (e.status, e.session_id, e.pending, e.sent, e.fingerprint, e.run_id, e.sheet_row) == (
        CREATED, S1, edit.session_data, None, "", run, 2)


@pytest.mark.parametrize("status", [FAILED, RELEASED])
def test_begin_update_takes_over_an_identity_that_was_never_created(journal: Journal,
                                                                    status: str) -> None:
    r = req(2)
    run = journal.start_run("term.xlsx", BASE)
    journal.claim(BASE, r, run)
    if status == FAILED:
        journal.record_failed(BASE, r, run, "refused")
    else:
        journal.release(BASE, r, run)
    edit = update_of(r, S1)
    journal.begin_update(BASE, edit, journal.start_run("again.xlsx", BASE))
    e = journal.lookup(BASE, r)
    assert e is not None and (e.status, e.session_id, e.pending, e.fingerprint) == (
        CREATED, S1, edit.session_data, "")


def test_begin_update_never_overwrites_an_identity_created_as_another_session(
        journal: Journal) -> None:
    r = req(2)
    created(journal, r, S2)
    edit = update_of(r, S1, start="11:00 AM")  # the row now names S1 in its sessionId cell
    journal.begin_update(BASE, edit, journal.start_run("again.xlsx", BASE))
    e = journal.lookup(BASE, r)
    assert e is not None and (e.status, e.session_id, e.pending, e.sent) == (
        CREATED, S2, None, r.session_data)
    # the update is on record all the same, under an identity of the session's own: a run that
    # dies mid-PATCH leaves the next one knowing it may not have landed
    held = journal.by_session(BASE, [S1])[S1]
    assert (held.identity, held.status, held.pending) == (
        f"sessionId:{S1}", CREATED, edit.session_data)
    journal.record_updated(BASE, edit, journal.start_run("again.xlsx", BASE))
    done = journal.by_session(BASE, [S1])[S1]
    assert (done.pending, done.sent) == (None, edit.session_data)
    again = journal.lookup(BASE, r)
    assert again is not None and again.session_id == S2


# ------------------------------------------------------------------------------ record_updated


def test_record_updated_confirms_on_every_identity_and_adds_the_rows(journal: Journal) -> None:
    a, b, other = req(2), req(3, ident="key:K3"), req(4)
    created(journal, a, S1)
    created(journal, b, S1)
    created(journal, other, S2)
    run = journal.start_run("term.results.xlsx", BASE)
    edit = req(9, start="11:00 AM", session_id=S1)
    journal.begin_update(BASE, edit, run)
    assert journal.record_updated(BASE, edit, run, attempts=2)

    for r in (a, b):
        e = journal.lookup(BASE, r)
        assert e is not None
        assert (e.status, e.session_id, e.pending, e.sent, e.fingerprint, e.message) == (
            CREATED, S1, None, edit.session_data, edit.fingerprint, "updated")
        assert (e.attempts, e.run_id) == (2, run)  # the create recorded none, the update 2
    mine = journal.lookup(BASE, edit)  # the edited row is that session from now on
    assert mine is not None and (mine.status, mine.session_id, mine.sent, mine.pending) == (
        CREATED, S1, edit.session_data, None)
    untouched = journal.lookup(BASE, other)
    assert untouched is not None and untouched.sent == other.session_data
    assert untouched.message != "updated"


def test_record_updated_after_a_pending_on_a_new_identity(journal: Journal) -> None:
    edit = req(2, session_id=S1)
    run = journal.start_run("term.results.xlsx", BASE)
    journal.begin_update(BASE, edit, run)
    journal.record_updated(BASE, edit, run, attempts=1)
    e = journal.lookup(BASE, edit)
    assert e is not None and (e.status, e.session_id, e.sent, e.pending, e.fingerprint) == (
        CREATED, S1, edit.session_data, None, edit.fingerprint)


def test_record_updated_leaves_an_identity_created_as_another_session(journal: Journal) -> None:
    r = req(2)
    created(journal, r, S2)
    edit = update_of(r, S1, start="11:00 AM")
    run = journal.start_run("again.xlsx", BASE)
    journal.record_updated(BASE, edit, run)
    e = journal.lookup(BASE, r)
    assert e is not None and (e.session_id, e.sent, e.fingerprint) == (
        S2, r.session_data, r.fingerprint)


# ---------------------------------------------------------------------------------- by_session


def test_by_session_finds_created_entries_by_session_id(journal: Journal) -> None:
    a, b, c = req(2), req(3, ident="key:K3"), req(4)
    created(journal, a, S1)
    created(journal, b, S1)  # later: the latest entry of S1
    created(journal, c, S2)
    failed = req(5)
    run = journal.start_run("x.xlsx", BASE)
    journal.claim(BASE, failed, run)
    journal.record_failed(BASE, failed, run, "refused")

    found = journal.by_session("https://People.zoho.com/", [S1, S2, S1, "478346000020119999"])
    assert sorted(found) == [S1, S2]
    assert found[S1].identity == b.identity and found[S2].identity == c.identity
    assert found[S1].sent == b.session_data
    assert journal.by_session(BASE, []) == {}
    assert journal.by_session("https://other.zoho.eu", [S1]) == {}


def test_by_session_reads_more_ids_than_one_query_takes(journal: Journal) -> None:
    run = journal.start_run("big.xlsx", BASE)
    n = LOOKUP_CHUNK + 7
    ids = [f"4783460000201{i:05d}" for i in range(n)]
    for i, sid in enumerate(ids):
        r = req(i + 2)
        journal.claim(BASE, r, run)
        journal.record_created(BASE, r, run, sid)
    found = journal.by_session(BASE, ids)
    assert len(found) == n and found[ids[-1]].sheet_row == n + 1


# --------------------------------------------------------------------------- an older journal


_SCHEMA_1 = """
CREATE TABLE runs (
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
CREATE TABLE rows (
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
    PRIMARY KEY (api_base, identity)
);
CREATE INDEX rows_status ON rows (status);
"""


def schema_1_journal(state: Path, r: Request) -> None:
    """A journal as version 1 wrote it: no ``sent`` or ``pending``, one run, one created row."""
    state.mkdir(parents=True)
    db = sqlite3.connect(state / JOURNAL_FILE, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(_SCHEMA_1)
        db.execute("INSERT INTO runs (started_at, heartbeat_at, finished_at, pid, host, file,"
                   " api_base, total, status, counts) VALUES (?, ?, ?, 1, 'h', 'old.xlsx', ?,"
                   " 1, 'finished', '{\"created\": 1}')", (T0 - 100, T0 - 50, T0 - 50, BASE))
        db.execute("INSERT INTO rows (api_base, identity, status, session_id, fingerprint,"
                   " run_id, sheet_row, path, attempts, message, updated_at)"
                   " VALUES (?, ?, 'created', ?, ?, 1, ?, ?, 1, '', ?)",
                   (BASE, r.identity, S1, r.fingerprint, r.row, r.path, T0 - 50))
        db.execute("PRAGMA user_version = 1")
    finally:
        db.close()


def test_a_schema_1_journal_gains_the_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    r = req(2)
    state = tmp_path / "state"
    schema_1_journal(state, r)

    with Journal(state, clock=Clock(), verify=True) as journal:
        e = journal.lookup(BASE, r)
        assert e is not None
        assert (e.status, e.session_id, e.fingerprint, e.attempts, e.sent, e.pending) == (
            CREATED, S1, r.fingerprint, 1, None, None)
        [old_run] = journal.runs()
        assert (old_run.file, old_run.counts) == ("old.xlsx", {"created": 1})
        assert journal.by_session(BASE, [S1])[S1].identity == r.identity
        # and the new columns work on the old rows
        run = journal.start_run("term.results.xlsx", BASE)
        edit = update_of(r, S1, start="11:00 AM")
        journal.begin_update(BASE, edit, run)
        assert journal.record_updated(BASE, edit, run)
        e = journal.lookup(BASE, r)
        assert e is not None and e.sent == edit.session_data and e.pending is None

    db = sqlite3.connect(state / JOURNAL_FILE)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        columns = {row[1] for row in db.execute("PRAGMA table_info(rows)")}
        assert {"sent", "pending"} <= columns
        indexes = {row[1] for row in db.execute("PRAGMA index_list(rows)")}
        assert "rows_session" in indexes
    finally:
        db.close()
    # opened again: nothing to add, nothing lost
    with Journal(state, clock=Clock()) as again:
        e = again.lookup(BASE, r)
        assert e is not None and e.sent == edit.session_data

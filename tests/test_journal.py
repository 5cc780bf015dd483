"""The journal: claim transitions, run liveness, cross-connection safety, persistence, history."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkschedule.core.request import Request
from bulkschedule.send.journal import (
    CREATED,
    FAILED,
    INFLIGHT,
    JOURNAL_FILE,
    RELEASED,
    UNKNOWN,
    ClaimKind,
    Journal,
    pid_alive,
)

BASE = "https://people.zoho.com"
T0 = 1_800_000_000.0


class Clock:
    """A settable wall clock for the journal's liveness judgement."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def req(row: int = 2, *, ident: str | None = None, fp: str = "fp-1") -> Request:
    return Request(
        row=row,
        course_id="100000000000000001",
        batch_id="200000000000000002",
        module_id="300000000000000003",
        session_data={"name": f"Session {row}"},
        identity=ident or f"300000000000000003/Session {row}/01-09-2025/09:00 AM",
        fingerprint=fp,
    )


def dead_pid() -> int:
    """The pid of a process that has certainly exited (and been reaped)."""
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(out.stdout)
    assert not pid_alive(pid)
    return pid


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def journal(tmp_path: Path, clock: Clock) -> Iterator[Journal]:
    j = Journal(tmp_path / "state", clock=clock)
    yield j
    j.close()


def test_file_lives_in_state_folder_in_wal_mode(tmp_path: Path, journal: Journal) -> None:
    assert journal.path == tmp_path / "state" / JOURNAL_FILE
    assert journal.path.exists()
    mode = sqlite3.connect(journal.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_new_then_created_exists_and_changed(journal: Journal) -> None:
    a = journal.start_run("a.xlsx", BASE)
    claim = journal.claim(BASE, req(), a)
    assert claim.kind is ClaimKind.NEW
    entry = journal.lookup(BASE, req())
    assert entry is not None and entry.status == INFLIGHT and entry.run_id == a

    journal.record_created(BASE, req(), a, "555000000000000001", attempts=1)
    b = journal.start_run("a.xlsx", BASE)
    same = journal.claim(BASE, req(), b)
    assert (same.kind, same.session_id, same.changed) == (
        ClaimKind.CREATED,
        "555000000000000001",
        False,
    )
    changed = journal.claim(BASE, req(fp="fp-2"), b)
    assert (changed.kind, changed.session_id, changed.changed) == (
        ClaimKind.CREATED,
        "555000000000000001",
        True,
    )
    # a CREATED claim changes nothing
    entry = journal.lookup(BASE, req())
    assert entry is not None
    assert (entry.status, entry.run_id, entry.fingerprint) == (CREATED, a, "fp-1")
    assert entry.attempts == 1


def test_writes_together_are_one_transaction(tmp_path: Path, journal: Journal) -> None:
    """`together`: claims (and any other write) inside it commit at once, each decided after the
    ones before it; a failure inside it keeps none of them; afterwards writes commit alone."""
    run = journal.start_run("a.xlsx", BASE)
    other = sqlite3.connect(journal.path)  # another process's view of the file
    with journal.together():
        kinds = [journal.claim(BASE, r, run).kind for r in (req(2), req(3), req(2))]
        # not committed yet: another connection sees none of it
        assert other.execute("SELECT count(*) FROM rows").fetchone()[0] == 0
    assert kinds == [ClaimKind.NEW, ClaimKind.NEW, ClaimKind.BUSY]
    assert other.execute("SELECT count(*) FROM rows").fetchone()[0] == 2

    with pytest.raises(RuntimeError), journal.together():
        journal.claim(BASE, req(4), run)
        journal.record_created(BASE, req(2), run, "555000000000000001")
        raise RuntimeError("a later write of the batch failed")
    assert journal.lookup(BASE, req(4)) is None
    entry = journal.lookup(BASE, req(2))
    assert entry is not None and entry.status == INFLIGHT  # the created record was rolled back

    journal.claim(BASE, req(5), run)  # alone again: committed at once
    assert other.execute("SELECT count(*) FROM rows").fetchone()[0] == 3
    other.close()


def test_identity_is_scoped_by_normalised_api_base(journal: Journal) -> None:
    run = journal.start_run("a.xlsx", BASE)
    journal.claim(BASE, req(), run)
    journal.record_created(BASE, req(), run, "1")
    assert journal.claim("HTTPS://People.Zoho.com/", req(), run).kind is ClaimKind.CREATED
    assert journal.claim("https://people.zoho.eu", req(), run).kind is ClaimKind.NEW


def test_busy_while_owner_alive_including_same_run(journal: Journal) -> None:
    a = journal.start_run("a.xlsx", BASE)
    b = journal.start_run("a.xlsx", BASE)
    assert journal.claim(BASE, req(), a).kind is ClaimKind.NEW
    busy = journal.claim(BASE, req(), b)
    assert busy.kind is ClaimKind.BUSY and busy.owner_run == a
    assert f"run #{a}" in busy.message and str(os.getpid()) in busy.message
    # the same identity twice in one run: the second waits for the first
    assert journal.claim(BASE, req(), a).kind is ClaimKind.BUSY
    entry = journal.lookup(BASE, req())
    assert entry is not None and entry.run_id == a  # BUSY took nothing over


def test_stale_when_owner_pid_is_gone(journal: Journal) -> None:
    crashed = journal.start_run("a.xlsx", BASE, pid=dead_pid())
    assert journal.claim(BASE, req(), crashed).kind is ClaimKind.NEW  # it claimed, then died
    me = journal.start_run("a.xlsx", BASE)
    stale = journal.claim(BASE, req(), me)
    assert stale.kind is ClaimKind.STALE and stale.owner_run == crashed
    assert "stopped without confirming" in stale.message
    # the stale row is now ours: a third run must not reconcile/send it at the same time
    other = journal.start_run("a.xlsx", BASE)
    assert journal.claim(BASE, req(), other).kind is ClaimKind.BUSY
    entry = journal.lookup(BASE, req())
    assert entry is not None and entry.run_id == me and entry.status == INFLIGHT


def test_other_host_pid_is_not_checked_but_heartbeat_is(journal: Journal, clock: Clock) -> None:
    remote = journal.start_run("a.xlsx", BASE, pid=dead_pid(), host="elsewhere")
    journal.claim(BASE, req(), remote)
    me = journal.start_run("a.xlsx", BASE)
    clock.now += 60
    assert journal.claim(BASE, req(), me).kind is ClaimKind.BUSY  # 60 s < stale_after
    journal.heartbeat(remote)
    clock.now += 89
    assert journal.claim(BASE, req(), me).kind is ClaimKind.BUSY  # the heartbeat kept it alive
    clock.now += 2
    assert journal.claim(BASE, req(), me).kind is ClaimKind.STALE  # 91 s without a heartbeat


def test_old_heartbeat_on_this_host_is_stale_too(journal: Journal, clock: Clock) -> None:
    frozen = journal.start_run("a.xlsx", BASE)  # our own (live) pid
    journal.claim(BASE, req(), frozen)
    clock.now += journal.stale_after + 1
    me = journal.start_run("a.xlsx", BASE)
    assert journal.claim(BASE, req(), me).kind is ClaimKind.STALE
    assert journal.run(frozen) is not None and journal.run(frozen).state == "interrupted"


def test_row_left_in_flight_by_a_finished_run_is_stale(journal: Journal) -> None:
    a = journal.start_run("a.xlsx", BASE)
    journal.claim(BASE, req(), a)
    journal.finish_run(a, {"unknown": 1})
    assert journal.claim(BASE, req(), journal.start_run("a.xlsx", BASE)).kind is ClaimKind.STALE


def test_unknown_is_stale_for_anyone_even_if_owner_alive(journal: Journal) -> None:
    a = journal.start_run("a.xlsx", BASE)
    journal.claim(BASE, req(), a)
    assert journal.record_unknown(BASE, req(), a, "no reply: read timeout", attempts=1)
    claim = journal.claim(BASE, req(), journal.start_run("a.xlsx", BASE))
    assert claim.kind is ClaimKind.STALE and "read timeout" in claim.message
    entry = journal.lookup(BASE, req())
    assert entry is not None and "read timeout" in entry.message  # history kept for the operator


def test_note_keeps_the_row_held_while_its_run_reconciles(journal: Journal) -> None:
    a = journal.start_run("a.xlsx", BASE)
    journal.claim(BASE, req(), a)
    assert journal.note(BASE, req(), a, "no reply: read timeout", attempts=1)
    entry = journal.lookup(BASE, req())
    assert entry is not None
    assert (entry.status, entry.attempts, entry.message) == (INFLIGHT, 1, "no reply: read timeout")
    b = journal.start_run("a.xlsx", BASE)
    assert journal.claim(BASE, req(), b).kind is ClaimKind.BUSY  # not STALE: a is reconciling
    assert not journal.note(BASE, req(), b, "not mine")


def test_release_and_failed_may_be_sent_again(journal: Journal) -> None:
    a = journal.start_run("a.xlsx", BASE)
    journal.claim(BASE, req(2), a)
    journal.claim(BASE, req(3), a)
    assert journal.release(BASE, req(2), a, attempts=1, message="locked out")
    assert journal.record_failed(BASE, req(3), a, "INVALID_INPUT", attempts=2)
    e2, e3 = journal.lookup(BASE, req(2)), journal.lookup(BASE, req(3))
    assert e2 is not None and e3 is not None
    assert (e2.status, e2.attempts) == (RELEASED, 1)
    assert (e3.status, e3.attempts, e3.message) == (FAILED, 2, "INVALID_INPUT")
    b = journal.start_run("a.xlsx", BASE)  # a is still alive: released/failed are not "busy"
    assert journal.claim(BASE, req(2), b).kind is ClaimKind.NEW
    assert journal.claim(BASE, req(3), b).kind is ClaimKind.NEW
    journal.record_created(BASE, req(3), b, "9", attempts=1)
    e3 = journal.lookup(BASE, req(3))
    assert e3 is not None and (e3.status, e3.attempts) == (CREATED, 3)  # attempts accumulate


def test_a_run_cannot_settle_a_row_it_no_longer_holds(journal: Journal, clock: Clock) -> None:
    slow = journal.start_run("a.xlsx", BASE)
    journal.claim(BASE, req(), slow)
    clock.now += journal.stale_after + 1
    taker = journal.start_run("a.xlsx", BASE)
    assert journal.claim(BASE, req(), taker).kind is ClaimKind.STALE
    assert not journal.release(BASE, req(), slow)
    assert not journal.record_failed(BASE, req(), slow, "x")
    assert not journal.record_unknown(BASE, req(), slow, "x")
    entry = journal.lookup(BASE, req())
    assert entry is not None and (entry.status, entry.run_id) == (INFLIGHT, taker)


def test_created_is_the_truth_and_a_duplicate_is_named(journal: Journal) -> None:
    a = journal.start_run("a.xlsx", BASE)
    journal.claim(BASE, req(), a)
    assert journal.record_created(BASE, req(), a, "111") == "111"
    assert journal.record_created(BASE, req(), a, "111") == "111"  # idempotent
    assert journal.record_created(BASE, req(), a, "222") == "111"  # first id kept
    entry = journal.lookup(BASE, req())
    assert entry is not None and entry.session_id == "111"
    assert "111" in entry.message and "222" in entry.message


def test_two_instances_on_one_file_act_as_two_processes(tmp_path: Path, clock: Clock) -> None:
    one = Journal(tmp_path / "s", clock=clock)
    two = Journal(tmp_path / "s", clock=clock)
    a, b = one.start_run("a.xlsx", BASE), two.start_run("a.xlsx", BASE)
    assert one.claim(BASE, req(), a).kind is ClaimKind.NEW
    assert two.claim(BASE, req(), b).kind is ClaimKind.BUSY
    one.record_created(BASE, req(), a, "777")
    claim = two.claim(BASE, req(), b)
    assert (claim.kind, claim.session_id) == (ClaimKind.CREATED, "777")
    assert [r.id for r in two.runs()] == [b, a]
    one.close()
    two.close()


def test_concurrent_claims_from_many_connections_grant_exactly_one(tmp_path: Path) -> None:
    """Threads with their own connections contend on the file lock exactly as processes do."""
    state = tmp_path / "s"
    Journal(state).close()  # schema in place
    n = 8
    barrier = threading.Barrier(n)
    kinds: list[ClaimKind] = []
    lock = threading.Lock()

    def contender() -> None:
        j = Journal(state)
        run = j.start_run("a.xlsx", BASE)
        barrier.wait()
        kind = j.claim(BASE, req(), run).kind
        with lock:
            kinds.append(kind)
        j.close()

    threads = [threading.Thread(target=contender) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(kinds) == sorted([ClaimKind.NEW] + [ClaimKind.BUSY] * (n - 1))


def test_survives_reopen(tmp_path: Path, clock: Clock) -> None:
    j = Journal(tmp_path / "s", clock=clock)
    run = j.start_run("a.xlsx", BASE, total=2)
    j.claim(BASE, req(2), run)
    j.record_created(BASE, req(2), run, "42", attempts=1)
    j.claim(BASE, req(3), run)
    j.record_unknown(BASE, req(3), run, "no reply")
    j.close()  # "crash" without finish_run

    again = Journal(tmp_path / "s", clock=clock)
    e2, e3 = again.lookup(BASE, req(2)), again.lookup(BASE, req(3))
    assert e2 is not None and (e2.status, e2.session_id) == (CREATED, "42")
    assert e3 is not None and e3.status == UNKNOWN
    nxt = again.start_run("a.xlsx", BASE)
    assert again.claim(BASE, req(2), nxt).kind is ClaimKind.CREATED
    assert again.claim(BASE, req(3), nxt).kind is ClaimKind.STALE
    assert again.entries(BASE, status=CREATED)[0].identity == req(2).identity
    again.close()


def test_runs_history(journal: Journal, clock: Clock) -> None:
    first = journal.start_run("term1.xlsx", BASE + "/", total=3)
    clock.now += 10
    journal.finish_run(first, {"created": 2, "failed": 1}, "/tmp/term1-results.xlsx")
    second = journal.start_run("term2.xlsx", BASE, total=5, dry_run=True)
    crashed = journal.start_run("term3.xlsx", BASE, pid=dead_pid())

    runs = journal.runs(limit=10)
    assert [r.id for r in runs] == [crashed, second, first]
    done = runs[2]
    assert done.file == "term1.xlsx" and done.api_base == BASE and done.total == 3
    assert done.counts == {"created": 2, "failed": 1}
    assert done.results_path == "/tmp/term1-results.xlsx"
    assert done.finished_at == T0 + 10 and done.state == "finished" and not done.alive
    assert runs[1].state == "running" and runs[1].dry_run and runs[1].alive
    assert runs[0].state == "interrupted"
    assert [r.id for r in journal.runs(limit=1)] == [crashed]
    journal.finish_run(second, {}, status="stopped")
    assert journal.run(second) is not None and journal.run(second).state == "stopped"


def test_forget_lets_the_row_be_sent_again(journal: Journal) -> None:
    run = journal.start_run("a.xlsx", BASE)
    journal.claim(BASE, req(), run)
    journal.record_created(BASE, req(), run, "1")
    assert journal.forget(BASE, req().identity)
    assert journal.lookup(BASE, req()) is None
    assert journal.claim(BASE, req(), run).kind is ClaimKind.NEW


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())

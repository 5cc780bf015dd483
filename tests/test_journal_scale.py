"""The journal's per-row costs at scale: a dry run's preview reads in bulk (`lookup_many`, the
same answers as one `lookup` per row), and a real run waits for the disk once per row, for the
claim that protects the send, not for the records that settle it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkschedule.core.request import Request
from bulkschedule.send import journal as journal_module
from bulkschedule.send.journal import CREATED, FAILED, INFLIGHT, UNKNOWN, Journal

BASE = "https://people.zoho.com"


def req(row: int, *, fp: str = "fp-1") -> Request:
    return Request(row=row, course_id="100000000000000001", batch_id="200000000000000002",
                   module_id="300000000000000003", session_data={"name": f"Session {row}"},
                   identity=f"300000000000000003/Session {row}/01-09-2025/09:00 AM",
                   fingerprint=fp)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "state") as j:
        yield j


def test_same_as_one_lookup_per_row(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "LOOKUP_CHUNK", 7)  # several chunks, one short
    reqs = [req(r) for r in range(2, 40)]
    run = journal.start_run("term.csv", BASE)
    for r in reqs[::3]:
        journal.claim(BASE, r, run)
        journal.record_created(BASE, r, run, f"4783460000{r.row:08d}")
    for r in reqs[1::5]:
        journal.claim(BASE, r, run)  # in flight
    for r in reqs[2::7]:
        journal.claim(BASE, r, run)
        journal.record_unknown(BASE, r, run, "no reply")
    journal.claim(BASE, reqs[4], run)
    journal.record_failed(BASE, reqs[4], run, "refused")
    other_base = req(99)
    journal.claim("https://people.zoho.eu", other_base, run)  # another API base: not ours

    asked = [*reqs, reqs[3], other_base]  # a repeated identity, and one this base never saw
    found = journal.lookup_many(" HTTPS://People.zoho.com/ ", asked)
    expected = {r.identity: e for r in asked if (e := journal.lookup(BASE, r)) is not None}
    assert found == expected
    assert {e.status for e in found.values()} == {CREATED, INFLIGHT, UNKNOWN, FAILED}
    assert other_base.identity not in found


def test_nothing_known_and_nothing_asked(journal: Journal) -> None:
    assert journal.lookup_many(BASE, [req(2), req(3)]) == {}
    assert journal.lookup_many(BASE, []) == {}


def test_leaves_no_transaction_open(journal: Journal, tmp_path: Path) -> None:
    journal.lookup_many(BASE, [req(2)])
    run = journal.start_run("term.csv", BASE)  # BEGIN IMMEDIATE would fail inside a transaction
    with Journal(tmp_path / "state") as other:  # and another connection can write at once
        other.claim(BASE, req(3), run)
    assert journal.lookup(BASE, req(3)) is not None


def test_only_what_protects_a_send_waits_for_the_disk(journal: Journal) -> None:
    """Claims commit at synchronous FULL; settling a row commits at NORMAL, then FULL again."""
    seen: list[tuple[str, int]] = []
    db = journal._db

    def trace(statement: str) -> None:
        if statement in ("COMMIT", "ROLLBACK"):
            seen.append((statement, db.execute("PRAGMA synchronous").fetchone()[0]))

    FULL, NORMAL = 2, 1
    run = journal.start_run("term.csv", BASE)
    db.set_trace_callback(trace)
    a, b, c, d = req(2), req(3), req(4), req(5)
    for r in (a, b, c, d):
        journal.claim(BASE, r, run)
    assert [level for _, level in seen] == [FULL] * 4
    seen.clear()
    journal.record_created(BASE, a, run, "478346000000000002")
    journal.record_failed(BASE, b, run, "refused")
    journal.release(BASE, c, run)
    journal.note(BASE, d, run, "listing")
    journal.record_unknown(BASE, d, run, "no reply")
    journal.heartbeat(run)
    assert [level for _, level in seen] == [NORMAL] * 6
    seen.clear()
    journal.forget(BASE, a.identity)
    journal.finish_run(run, {"created": 1})
    assert [level for _, level in seen] == [FULL] * 2
    db.set_trace_callback(None)
    assert db.execute("PRAGMA synchronous").fetchone()[0] == FULL
    assert journal.lookup(BASE, b).status == FAILED  # type: ignore[union-attr]


def test_a_failed_quick_write_leaves_the_connection_durable(journal: Journal) -> None:
    with pytest.raises(RuntimeError), journal._tx(durable=False):
        raise RuntimeError("boom")
    assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert not journal._db.in_transaction

"""The sandbox's session store answers its per-create questions from an index, so a rehearsal of
20,000 rows is not slowed down by the sandbox itself (a scan per create made it quadratic)."""

from __future__ import annotations

from bulkschedule.sandbox.store import FIRST_SESSION_ID, SessionStore


def plan(store: SessionStore, sql: str, args: tuple[object, ...] = ()) -> str:
    rows = store._conn.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
    return " ".join(str(r[-1]) for r in rows)


def test_duplicate_check_and_next_id_use_an_index() -> None:
    store = SessionStore(None)
    try:
        duplicate = plan(store, "SELECT 1 FROM sessions WHERE module_id=? AND name=? AND date=?"
                                " AND start_time=?", ("m", "n", "d", "t"))
        assert "USING INDEX sessions_identity" in duplicate or "COVERING INDEX" in duplicate
        assert "INDEX sessions_number" in plan(
            store, "SELECT MAX(CAST(session_id AS INTEGER)) FROM sessions")
    finally:
        store.close()


def test_answers_unchanged() -> None:
    store = SessionStore(None)
    try:
        assert store.next_id() == FIRST_SESSION_ID
        for i, sid in enumerate(("478346000050000009", "99", "478346000050000002")):
            store.add("c", "b", "m", {"sessionId": sid, "sessionName": f"n{i}",
                                      "sessionStartDate": "04-01-2027",
                                      "sessionStartTime": "10:00 AM"})
        assert store.next_id() == 478346000050000010
        assert store.is_duplicate("m", "n1", "04-01-2027", "10:00 AM")
        assert not store.is_duplicate("m", "n1", "04-01-2027", "11:00 AM")
    finally:
        store.close()

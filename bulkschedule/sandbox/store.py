"""The sessions the sandbox holds, in SQLite: ``:memory:`` by default, a file with ``db``.

One code path for both keeps the persistent mode honest. Calls are synchronous: the sandbox
handles one request at a time between awaits and each statement is tiny.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["FIRST_SESSION_ID", "SessionStore", "Stored"]

#: First session id handed out by an empty store: 18 digits, in the style of real Zoho ids.
FIRST_SESSION_ID: Final = 478346000050000001


@dataclass(frozen=True)
class Stored:
    """A stored session with the path it lives under."""

    course: str
    batch: str
    module: str
    record: dict[str, Any]


class SessionStore:
    """Sessions keyed by id, kept in creation order (an update keeps a session's place)."""

    def __init__(self, db: str | Path | None) -> None:
        self._conn = sqlite3.connect(str(db) if db else ":memory:", check_same_thread=False)
        self._conn.execute(
            """CREATE TABLE IF NOT EXISTS sessions (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                session_id TEXT NOT NULL UNIQUE,
                course_id TEXT NOT NULL, batch_id TEXT NOT NULL, module_id TEXT NOT NULL,
                name TEXT NOT NULL, date TEXT NOT NULL, start_time TEXT NOT NULL,
                record TEXT NOT NULL)"""
        )
        # Without these, every create scans every stored session twice (the duplicate check and
        # the next id): 4 ms a create at 20,000 sessions, the whole of a fast client's time.
        self._conn.execute("CREATE INDEX IF NOT EXISTS sessions_identity"
                           " ON sessions (module_id, name, date, start_time)")
        self._conn.execute("CREATE INDEX IF NOT EXISTS sessions_number"
                           " ON sessions (CAST(session_id AS INTEGER))")
        self._conn.commit()

    def next_id(self) -> int:
        row = self._conn.execute("SELECT MAX(CAST(session_id AS INTEGER)) FROM sessions").fetchone()
        return max(FIRST_SESSION_ID, (row[0] or 0) + 1)

    def is_duplicate(self, module: str, name: str, day: str, start: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sessions WHERE module_id=? AND name=? AND date=? AND start_time=?",
            (module, name, day, start),
        ).fetchone()
        return row is not None

    def add(self, course: str, batch: str, module: str, record: dict[str, Any]) -> None:
        self._conn.execute(
            "INSERT INTO sessions (session_id, course_id, batch_id, module_id, name, date,"
            " start_time, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (record["sessionId"], course, batch, module, record["sessionName"],
             record["sessionStartDate"], record["sessionStartTime"], json.dumps(record)),
        )
        self._conn.commit()

    def get(self, session_id: str) -> Stored | None:
        row = self._conn.execute(
            "SELECT course_id, batch_id, module_id, record FROM sessions WHERE session_id=?",
            (session_id,),
        ).fetchone()
        if row is None:
            return None
        return Stored(row[0], row[1], row[2], json.loads(row[3]))

    def replace(self, record: dict[str, Any]) -> None:
        """Store ``record`` in place of the session with its ``sessionId`` (which must exist)."""
        cursor = self._conn.execute(
            "UPDATE sessions SET name=?, date=?, start_time=?, record=? WHERE session_id=?",
            (record["sessionName"], record["sessionStartDate"], record["sessionStartTime"],
             json.dumps(record), record["sessionId"]),
        )
        self._conn.commit()
        if cursor.rowcount != 1:
            raise KeyError(record["sessionId"])

    def page(
        self, course: str, batch: str, module: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page in creation order, and whether more records follow it."""
        sql = "SELECT record FROM sessions WHERE course_id=? AND batch_id=?"
        args: list[Any] = [course, batch]
        if module is not None:
            sql += " AND module_id=?"
            args.append(module)
        rows = self._conn.execute(
            f"{sql} ORDER BY seq LIMIT ? OFFSET ?", (*args, limit + 1, offset)
        )
        records = [json.loads(r[0]) for r in rows.fetchall()]
        return records[:limit], len(records) > limit

    def all(self) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT record FROM sessions ORDER BY seq").fetchall()
        return [json.loads(r[0]) for r in rows]

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def clear(self) -> None:
        self._conn.execute("DELETE FROM sessions")
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()

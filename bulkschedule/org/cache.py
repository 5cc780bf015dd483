"""The org catalogue's cache: SQLite in the state folder, one list per (kind, parent), each with the
time it was fetched.

Why a cache: an org's courses, trainers and rooms change rarely, and every read costs a call from
the same 30-a-minute budget as the creates. ``--max-age`` (default 12 h) says how long a list is
trusted. Sessions are never cached: what Zoho already holds is always read fresh.

The cache is scoped by API base, so the sandbox's org and a real org never mix. It lives in its own
file (not the journal's) so a slow read never holds the journal's write lock.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_FILE = "org-cache.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (
    api_base   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    parent     TEXT NOT NULL,
    fetched_at REAL NOT NULL,
    items      TEXT NOT NULL,
    PRIMARY KEY (api_base, kind, parent)
);
"""


@dataclass(frozen=True, slots=True)
class Cached:
    """One cached list: its items as the catalogue stored them, and when they were fetched."""

    kind: str
    parent: str
    fetched_at: float
    items: list[dict[str, Any]]


class OrgCache:
    """Lists of the org by (kind, parent): ``("courses", "")``, ``("batches", course_id)``,
    ``("modules", batch_id)``, ``("trainers", "")``, ``("rooms", "")``."""

    def __init__(
        self, state_dir: Path, api_base: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / CACHE_FILE
        self.api_base = api_base
        self._clock = clock
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.executescript(_SCHEMA)

    @classmethod
    def existing(cls, state_dir: Path, api_base: str) -> OrgCache | None:
        """The cache if one was ever written there, else None: a plain ``validate`` must not
        create a state folder as a side effect."""
        return cls(state_dir, api_base) if (state_dir / CACHE_FILE).is_file() else None

    def __enter__(self) -> OrgCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"OrgCache({str(self.path)!r}, {self.api_base!r}, lists={len(self.lists())})"

    def get(self, kind: str, parent: str = "", *, max_age: float | None = None) -> Cached | None:
        """The cached list, or None when there is none or it is older than ``max_age`` seconds."""
        row = self._db.execute(
            "SELECT fetched_at, items FROM lists WHERE api_base=? AND kind=? AND parent=?",
            (self.api_base, kind, parent),
        ).fetchone()
        if row is None:
            return None
        fetched_at, items = float(row[0]), json.loads(row[1])
        if max_age is not None and self._clock() - fetched_at > max_age:
            return None
        return Cached(kind, parent, fetched_at, items)

    def put(self, kind: str, parent: str, items: Sequence[Mapping[str, Any]]) -> Cached:
        """Store a freshly read list (replacing the old one) and return it as cached."""
        now = self._clock()
        stored = [dict(item) for item in items]
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO lists (api_base, kind, parent, fetched_at, items) "
                "VALUES (?, ?, ?, ?, ?)",
                (self.api_base, kind, parent, now, json.dumps(stored, ensure_ascii=False)),
            )
        return Cached(kind, parent, now, stored)

    def lists(self) -> list[Cached]:
        """Every cached list of this API base, for ``org show``."""
        rows = self._db.execute(
            "SELECT kind, parent, fetched_at, items FROM lists WHERE api_base=? "
            "ORDER BY kind, parent",
            (self.api_base,),
        ).fetchall()
        return [Cached(k, p, float(f), json.loads(i)) for k, p, f, i in rows]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

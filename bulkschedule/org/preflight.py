"""Before validation: names in the ID columns become IDs. After it: the org view the checks need.

Names are resolved on the raw table, before the sheet's own checks, so a trainer typed by name in
one row and by ID in another is still seen double-booked, and every later stage (payloads, the
journal's identities) sees IDs only. Each resolved cell is remembered, so reports can show the
name as typed beside the ID it became.
"""

from __future__ import annotations

import re
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from bulkschedule.core.problems import Problem, error, sort_key
from bulkschedule.org.cache import OrgCache
from bulkschedule.org.catalogue import Catalogue, describe_batch
from bulkschedule.org.checks import OrgView, Row
from bulkschedule.org.resolve import Entry, Index, Resolution, is_id
from bulkschedule.sheet.columns import map_headers
from bulkschedule.sheet.parse import ParseError, parse_id
from bulkschedule.sheet.reader import Cells, RawTable
from bulkschedule.sheet.schema import Validation

T = TypeVar("T")

#: ID columns that accept a name, and the kind of thing each names.
NAME_COLUMNS: dict[str, str] = {
    "courseId": "course",
    "batchId": "batch",
    "moduleId": "module",
    "trainerErecno": "trainer",
    "roomId": "room",
}
_SCIENTIFIC = re.compile(r"\s*[+-]?\d+(?:[.,]\d*)?[eE][+-]?\d+\s*")
#: How ``template --online`` writes a batch ("Course › Batch") or a module ("Course › Batch ›
#: Module") in its drop-downs; the resolver reads the last part (the row's own course and batch
#: columns say which course and batch).
PATH_SEPARATOR = " › "
_EMAIL_IN_BRACKETS = re.compile(r"<\s*([^<>\s]+@[^<>\s]+)\s*>\s*$")


def typed_name(kind: str, text: str) -> str:
    """The name to look up in what an admin typed or picked: the last part of a drop-down's
    path, the email of a trainer picked as "Name <email>"."""
    if kind in ("batch", "module") and "›" in text:
        return text.rsplit("›", 1)[1].strip()
    if kind == "trainer" and (m := _EMAIL_IN_BRACKETS.search(text)):
        return m.group(1)
    return text
_LETTER = re.compile(r"[^\W\d_]")


def looks_like_name(cell: object) -> bool:
    """Text with two letters or more (or an email) that is not an ID in scientific notation:
    ``12a`` stays an ID typo, ``Asha Rao`` and ``asha@example.org`` are names."""
    if not isinstance(cell, str):
        return False
    text = cell.strip()
    if not text or is_id(text) or _SCIENTIFIC.fullmatch(text):
        return False
    return "@" in text or len(_LETTER.findall(text)) >= 2


@dataclass
class Names:
    """The outcome of resolving: the table with IDs, problems, and what each name became."""

    table: RawTable
    problems: list[Problem] = field(default_factory=list)
    #: (spreadsheet row, column) -> (name as typed, the ID it resolved to)
    resolved: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)
    #: cells that had a name problem: the sheet's "not an ID" message would only repeat it
    unresolved: set[tuple[int, str]] = field(default_factory=set)

    def drop_repeats(self, problems: Iterable[Problem]) -> list[Problem]:
        """``problems`` without the parse errors of cells already reported as names."""
        return [p for p in problems
                if p.row is None or p.column is None or (p.row, p.column) not in self.unresolved
                or p.code.startswith("name.")]


def _needs_online(text: str, kind: str) -> Resolution:
    return Resolution(None, "name.needs_online",
                      f'"{text}" is a {kind} name, and no list of the org\'s {kind}s is cached: '
                      "run with --online (or `bulkschedule org refresh`) to resolve names")


async def resolve_names(
    table: RawTable,
    catalogue: Catalogue,
    *,
    given: dict[str, str | None] | None = None,
) -> Names:
    """Replace every name in the ID columns of ``table`` by the ID it names.

    Lists are read only when a name needs them: the courses when a course is named, a course's
    batches when a batch of it is named, and so on; offline (``catalogue.source`` None) only what
    the cache holds is used, and a name it cannot settle says to use ``--online``. ``given``
    holds the --course/--batch/--module values, which fill blank cells (IDs only).
    """
    headers = map_headers(table.headers)
    columns = table.columns()
    index = {name: headers.index[name] for name in NAME_COLUMNS if name in headers.index}
    values = {name: columns[i].tolist() for name, i in index.items()}
    if not any(looks_like_name(v) for col in values.values() for v in col):
        return Names(table)
    resolver = _Resolver(table, catalogue, values, given or {})
    for name, kind in NAME_COLUMNS.items():
        if name in values or (given or {}).get(name):
            await resolver.column(name, kind)
    out = resolver.names
    if out.resolved:
        new_columns = list(columns)
        for name, i in index.items():
            new_columns[i] = Cells(values[name])
        resolved = RawTable.from_columns(table.file, table.sheet, table.headers, new_columns,
                                         table.row_numbers, table.notes,
                                         header_row=table.header_row)
        resolved.first_column = table.first_column
        resolved.holidays = table.holidays
        out.table = resolved
    return out


class _Resolver:
    """One pass over the ID columns, course first: a batch resolves within its row's course, a
    module within its row's batch. Names become IDs in ``values`` (the columns as lists)."""

    def __init__(self, table: RawTable, catalogue: Catalogue, values: dict[str, list[Any]],
                 given: dict[str, str | None]) -> None:
        self.table, self.catalogue, self.values, self.given = table, catalogue, values, given
        self.names = Names(table)
        n = len(table.row_numbers)
        self.ids: dict[str, list[str | None]] = {"course": [None] * n, "batch": [None] * n}
        self._indexes: dict[tuple[str, str], Index | None] = {}

    def cell(self, name: str, pos: int) -> object:
        column = self.values.get(name)
        if column is not None and column[pos] not in (None, ""):
            return column[pos]
        return self.given.get(name)

    def parent(self, kind: str, pos: int) -> tuple[str, ...]:
        if kind == "batch":
            return (self.ids["course"][pos] or "",)
        if kind == "module":
            return (self.ids["course"][pos] or "", self.ids["batch"][pos] or "")
        return ()

    async def lookup(self, kind: str, parent: tuple[str, ...]) -> Index | None:
        key = (kind, "/".join(parent))
        if key not in self._indexes:
            self._indexes[key] = await _index(self.catalogue, kind, parent)
        return self._indexes[key]

    async def column(self, name: str, kind: str) -> None:
        for pos in range(len(self.table.row_numbers)):
            raw = self.cell(name, pos)
            if isinstance(raw, str) and looks_like_name(raw):
                found = await self.resolve(name, kind, pos, raw.strip())
            else:
                found = _as_id(raw)
            if kind in self.ids:
                self.ids[kind][pos] = found

    async def resolve(self, name: str, kind: str, pos: int, text: str) -> str | None:
        """The ID a named cell names (written into its column), or None with its problem."""
        row = self.table.row_numbers[pos]
        parent = self.parent(kind, pos)
        if any(not p for p in parent):
            # its parent did not resolve: that cell's problem says why, and a second "not an
            # ID" here would only repeat it
            self.names.unresolved.add((row, name))
            return None
        found = await self.lookup(kind, parent)
        result = found.resolve(typed_name(kind, text)) if found else _needs_online(text, kind)
        if result.id is None:
            self.names.unresolved.add((row, name))
            self.names.problems.append(error(row, name, text, result.message,
                                             code=result.code or "name.unknown"))
            return None
        self.names.resolved[row, name] = (text, result.id)
        column = self.values.get(name)
        if column is not None and column[pos] not in (None, ""):
            column[pos] = result.id
        return result.id


def _as_id(raw: object) -> str | None:
    """The ID a cell holds, as the sheet's own parser reads one, or None (a blank cell, or one
    that is not an ID: the sheet's checks report it)."""
    if raw is None or raw == "":
        return None
    try:
        return parse_id(raw)
    except ParseError:
        return None


async def _index(catalogue: Catalogue, kind: str, parent: tuple[str, ...]) -> Index | None:
    if kind == "course":
        courses = await catalogue.courses()
        return None if courses is None else Index(
            "course", [Entry(c.id, c.name, c.state or "") for c in courses])
    if kind == "batch":
        batches = await catalogue.batches(parent[0])
        return None if batches is None else Index(
            "batch", [Entry(b.id, b.name, describe_batch(b)) for b in batches],
            where=f" in course {parent[0]}")
    if kind == "module":
        modules = await catalogue.modules(parent[0], parent[1])
        return None if modules is None else Index(
            "module", [Entry(m.id, m.name) for m in modules], where=f" in batch {parent[1]}")
    if kind == "trainer":
        trainers = await catalogue.trainers()
        return None if trainers is None else Index(
            "trainer", [Entry(t.erecno, t.name or t.email or t.erecno, t.email or "",
                              (t.email,) if t.email else ()) for t in trainers])
    rooms = await catalogue.rooms()
    return None if rooms is None else Index(
        "room", [Entry(r.id, r.name, r.location or "") for r in rooms])


async def org_view(
    catalogue: Catalogue,
    rows: Sequence[Row],
    *,
    list_sessions_of: Iterable[tuple[str, str, str]] = (),
) -> OrgView:
    """Read what the online checks need for ``rows``: courses, trainers and rooms; the batches of
    every course and the modules of every batch they name; the sessions Zoho holds in the
    modules ``list_sessions_of`` names (those with rows still to send)."""
    view = OrgView()
    courses = await catalogue.courses()
    view.courses = None if courses is None else {c.id: c for c in courses}
    trainers = await catalogue.trainers()
    view.trainers = None if trainers is None else {t.erecno: t for t in trainers}
    rooms = await catalogue.rooms()
    view.rooms = None if rooms is None else {r.id: r for r in rooms}
    known = view.courses or {}
    for course_id in sorted({r.course_id for r in rows} & set(known)):
        batches = await catalogue.batches(course_id)
        if batches is not None:
            view.batches[course_id] = {b.id: b for b in batches}
    for course_id, batch_id in sorted({(r.course_id, r.batch_id) for r in rows}):
        if batch_id in view.batches.get(course_id, {}):
            modules = await catalogue.modules(course_id, batch_id)
            if modules is not None:
                view.modules[batch_id] = {m.id: m for m in modules}
    for course_id, batch_id, module_id in sorted(set(list_sessions_of)):
        view.sessions[module_id] = await catalogue.sessions(course_id, batch_id, module_id)
    return view


def with_problems(
    validation: Validation,
    problems: Sequence[Problem],
    *,
    table: RawTable | None = None,
    names: Names | None = None,
) -> Validation:
    """``validation`` with more problems: rows with a new error leave ``sessions`` (they are
    invalid and never sent). ``table`` puts back the sheet as typed (names, not the IDs they
    became) for the reports, and ``names`` drops the parse errors its problems already cover."""
    merged = [*validation.problems, *problems]
    if names is not None:
        merged = names.drop_repeats(merged)
    merged.sort(key=sort_key)
    error_rows = set(validation.error_rows) | {p.row for p in problems
                                               if p.is_error and p.row is not None}
    sessions = [s for s in validation.sessions if s.row not in error_rows]
    out = Validation(table or validation.table, validation.headers, sessions, merged,
                     validation.fatal, error_rows, spec=validation.spec,
                     expansions=validation.expansions)
    out.resolved = dict(validation.resolved)
    if names is not None:
        out.resolved.update(names.resolved)
    return out


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits on I/O (name resolution from the cache alone) without an
    event loop, so the offline path stays synchronous; one that does wait is a bug."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("offline name resolution tried to read from Zoho")


def resolve_offline(
    table: RawTable, cache: OrgCache | None, *, given: dict[str, str | None] | None = None
) -> Names:
    """Names resolved from the cache alone (whatever its age): what ``validate`` does without
    ``--online``."""
    return drive(resolve_names(table, Catalogue(None, cache), given=given))

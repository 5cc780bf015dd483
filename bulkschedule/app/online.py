"""The online stage of ``validate --online`` and ``run``: names resolved through Zoho, the org
checks, and the sessions Zoho already holds.

Reads share the run's budget (`send.api.open_api`: the same lock gate and window as creates) and
are spent only where they can change an outcome: the sessions of every module the sheet touches
are listed (to find sessions Zoho holds, to compare each row with its session, and to list what
only Zoho holds: `send.plan`), while the org checks run only on rows that the journal has not
recorded as sent exactly so (the others cost no course, batch or module reads). When the org cannot
be read (a missing scope, 404, a reply of a shape the client cannot read) the stage says so in
one warning and the offline checks stand; ``strict`` callers (``validate --online``, ``org``)
get a `JobError` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp

from bulkschedule.app import job
from bulkschedule.core.errors import ApiError, AuthError, JobError, StateError
from bulkschedule.core.problems import Line
from bulkschedule.org.cache import OrgCache
from bulkschedule.org.catalogue import KINDS, Catalogue, Spent, ages, describe_batch
from bulkschedule.org.checks import OrgView, check, existing
from bulkschedule.org.lists import OrgLists, read_lists
from bulkschedule.org.preflight import org_view, resolve_names, with_problems
from bulkschedule.org.resolve import normalise_name
from bulkschedule.send.api import SendSettings, open_api
from bulkschedule.send.journal import CREATED, LOCK_WAIT, Journal, normalise_base, open_journal
from bulkschedule.send.limiter import Clock
from bulkschedule.send.plan import Plan, Zoho
from bulkschedule.sheet.payload import build_request
from bulkschedule.sheet.reader import RawTable
from bulkschedule.sheet.schema import SessionRow, Validation, validate
from bulkschedule.zoho.auth import TokenProvider
from bulkschedule.zoho.client import LmsClient
from bulkschedule.zoho.records import Batch, Course, ListedSession, Module, Room, Trainer
from bulkschedule.zoho.urls import check_base_url

log = logging.getLogger(__name__)

Pace = Callable[[], Awaitable[object]]
R = TypeVar("R")


@dataclass
class Online:
    """What the online stage found."""

    validation: Validation
    #: the sessions of the modules the sheet touches, and the rows they match; None if the
    #: listings could not be read
    zoho: Zoho | None = None
    spent: Spent = field(default_factory=Spent)
    calls: int = 0
    warning: str | None = None  #: why the org could not be read, when it could not

    @property
    def held(self) -> Mapping[Line, ListedSession]:
        """The sheet's sessions (by `Line`) that Zoho already holds (module, name, date and
        start time)."""
        return {} if self.zoho is None else self.zoho.matched

    def line(self) -> str:
        """The one line every reading command prints: calls spent, answers from the cache."""
        return self.spent.line(self.calls)


@dataclass(frozen=True)
class Reading:
    """How the sheet is read and validated (the same options the offline path takes)."""

    course: str | None = None
    batch: str | None = None
    module: str | None = None
    month_first: bool = False


class _Counter:
    """Counts every API call the stage makes (each page of a listing is one)."""

    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, pace: Pace) -> Pace:
        async def counted() -> object:
            self.calls += 1
            return await pace()

        return counted


async def _open_journal(settings: SendSettings) -> Journal:
    """The journal, as a run opens it: waiting (with a warning) for another run's write, and a
    state folder or journal that cannot be used a one-line `JobError`. The org cache lives in
    the same folder, so it is opened only after this."""
    try:
        return await open_journal(settings.state_dir, on_wait=log.warning)
    except StateError as err:
        raise JobError(str(err)) from err


def _unsettled(rows: Sequence[SessionRow], journal: Journal, base: str
               ) -> tuple[list[SessionRow], set[str]]:
    """(the rows the journal has not recorded as created exactly so, by their identity and
    without a sessionId of their own: only these need the org checks; the sessions the rows
    are, by sessionId or journal: their bookings are the rows' own)."""
    out = []
    own: set[str] = set()
    # a chunk of requests at a time: every row's at once was a second copy of the run's
    # requests, built beside the sheet's rows before the run builds its own (~0.7 KB a row)
    for start in range(0, len(rows), _UNSETTLED_CHUNK):
        chunk = rows[start:start + _UNSETTLED_CHUNK]
        requests = [build_request(row) for row in chunk]
        entries = journal.lookup_many(base, requests)
        for row, req in zip(chunk, requests, strict=True):
            entry = entries.get(req.identity)
            if req.session_id is not None:
                own.add(req.session_id)
            elif entry is not None and entry.session_id:
                own.add(entry.session_id)
            if req.session_id is not None or entry is None or entry.status != CREATED \
                    or entry.fingerprint != req.fingerprint:
                out.append(row)
    return out, own


#: How many rows' requests `_unsettled` builds and looks up at a time.
_UNSETTLED_CHUNK = 2000


def _zoho(rows: Sequence[SessionRow], sessions: Mapping[str, list[ListedSession]]) -> Zoho:
    return Zoho(dict(sessions), {line: f.session for line, f in
                                 existing(rows, OrgView(sessions=dict(sessions))).items()})


def _why(err: ApiError) -> str:
    """The failure, naming the read when it is known (`OrgUnavailable` carries it)."""
    return err.message


async def check_online(
    table: RawTable,
    validation: Validation,
    settings: SendSettings,
    *,
    tokens: Callable[[aiohttp.ClientSession], TokenProvider],
    reading: Reading,
    max_age: float,
    strict: bool = False,
    clock: Clock | None = None,
) -> Online:
    """Resolve names through Zoho, run the org checks and find the sessions Zoho holds.

    ``validation`` is the offline result for ``table`` (the sheet as typed). Rows that fail an
    online check become invalid. A `JobError` for no credentials or no connection; an org that
    cannot be read is a warning (a `JobError` when ``strict``).
    """
    try:
        base = check_base_url(settings.api_base)
    except ValueError as err:
        raise JobError(str(err)) from err
    counter = _Counter()
    journal = await _open_journal(settings)
    with journal, OrgCache(settings.state_dir, normalise_base(base)) as cache:
        async with open_api(base, settings, shared=journal.path, tokens=tokens, clock=clock,
                            wrap_pace=counter.wrap) as api:
            try:
                await api.tokens.token()
            except AuthError as err:
                raise JobError(f"cannot get an access token: {err}") from err
            catalogue = Catalogue(api.client, cache, max_age)
            found = Online(validation, spent=catalogue.spent)
            try:
                await _stage(found, table, catalogue, journal, base, reading)
            except ApiError as err:
                if strict:
                    raise JobError(f"cannot read the org: {_why(err)}") from err
                found.warning = (f"could not read the org ({_why(err)}); going on with the "
                                 "offline checks")
                await _held_only(found, catalogue)
            except aiohttp.ClientError as err:
                raise JobError(f"cannot reach {base}: {err}") from err
        found.calls = counter.calls
    return found


async def _stage(found: Online, table: RawTable, catalogue: Catalogue, journal: Journal,
                 base: str, reading: Reading) -> None:
    given = {"courseId": reading.course, "batchId": reading.batch, "moduleId": reading.module}
    names = await resolve_names(table, catalogue, given=given)
    validation = found.validation
    if names.resolved or names.problems:
        checked = validate(names.table, course=reading.course, batch=reading.batch,
                           module=reading.module, month_first=reading.month_first)
        validation = with_problems(checked, names.problems, table=table, names=names)
    found.validation = validation
    if validation.fatal or not validation.sessions:
        return
    every = validation.sessions
    rows, own = _unsettled(every, journal, base)
    modules = {(r.course_id, r.batch_id, r.module_id) for r in every}
    view = await org_view(catalogue, rows, list_sessions_of=modules)
    zoho = _zoho(every, view.sessions)
    found.zoho = zoho
    if rows:
        own |= {m.id for m in zoho.matched.values()}
        found.validation = with_problems(validation, check(rows, view, sheet_sessions=own))


async def _held_only(found: Online, catalogue: Catalogue) -> None:
    """The org's lists could not be read: still list the sessions of the modules the sheet
    touches (which reconciliation relies on anyway); if those fail too, the journal stands."""
    rows = [] if found.validation.fatal else found.validation.sessions
    if not rows:
        return
    from_listings: dict[str, list[ListedSession]] = {}
    try:
        for c, b, m in sorted({(r.course_id, r.batch_id, r.module_id) for r in rows}):
            from_listings[m] = await catalogue.sessions(c, b, m)
    except ApiError:
        return
    found.zoho = _zoho(rows, from_listings)


# --------------------------------------------------------------------------------------------
# the plan, before a run


async def plan_sheet(validation: Validation, state_dir: Path, api_base: str, zoho: Zoho | None,
                     *, wait: float = LOCK_WAIT) -> Plan:
    """`job.plan_for` with the journal of ``state_dir`` for ``api_base`` (the upload page's check:
    the plan without a run). The journal is opened as a run opens it, waiting at most ``wait``
    seconds for another run's write; one that cannot be used is a `JobError`."""
    try:
        journal = await open_journal(state_dir, wait=wait, on_wait=log.warning, verify=False)
    except StateError as err:
        raise JobError(str(err)) from err
    with journal:
        return job.plan_for(validation, journal, api_base, zoho)


# --------------------------------------------------------------------------------------------
# `bulkschedule org`: refresh, find, show


class _LazySource:
    """An `OrgSource` that opens the API on its first read, so ``org find`` answered from the
    cache needs neither credentials nor a connection."""

    def __init__(self, stack: AsyncExitStack, base: str, settings: SendSettings,
                 tokens: Callable[[aiohttp.ClientSession], TokenProvider], counter: _Counter,
                 shared: Path) -> None:
        self._stack, self._base, self._settings = stack, base, settings
        self._tokens, self._counter, self._shared = tokens, counter, shared
        self._client: LmsClient | None = None

    async def client(self) -> LmsClient:
        if self._client is None:
            api = await self._stack.enter_async_context(open_api(
                self._base, self._settings, shared=self._shared, tokens=self._tokens,
                wrap_pace=self._counter.wrap))
            try:
                await api.tokens.token()
            except AuthError as err:
                raise JobError(f"cannot get an access token: {err}") from err
            self._client = api.client
        return self._client

    async def list_courses(self) -> list[Course]:
        return await (await self.client()).list_courses()

    async def list_batches(self, course_id: str) -> list[Batch]:
        return await (await self.client()).list_batches(course_id)

    async def list_modules(self, course_id: str, batch_id: str) -> list[Module]:
        return await (await self.client()).list_modules(course_id, batch_id)

    async def list_active_trainers(self) -> list[Trainer]:
        return await (await self.client()).list_active_trainers()

    async def list_rooms(self) -> list[Room]:
        return await (await self.client()).list_rooms()

    async def list_sessions(self, course_id: str, batch_id: str, module_id: str | None = None
                            ) -> list[ListedSession]:
        return await (await self.client()).list_sessions(course_id, batch_id, module_id)


@dataclass(frozen=True)
class Found:
    """One entry of the org that ``org find`` matched, with what tells it apart."""

    kind: str
    id: str
    name: str
    detail: str
    within: str  #: "Course › Batch" for a module, the course for a batch

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "detail": self.detail,
                "within": self.within}


@dataclass
class OrgRead:
    """What an ``org`` command read: its entries (find) or lists (refresh), and the cost."""

    entries: list[Found] = field(default_factory=list)
    lists: dict[str, int] = field(default_factory=dict)
    choices: OrgLists = field(default_factory=OrgLists)
    spent: Spent = field(default_factory=Spent)
    calls: int = 0

    def line(self) -> str:
        return self.spent.line(self.calls)


async def _with_catalogue(
    settings: SendSettings,
    tokens: Callable[[aiohttp.ClientSession], TokenProvider],
    max_age: float,
    work: Callable[[Catalogue], Awaitable[OrgRead]],
) -> OrgRead:
    try:
        base = normalise_base(check_base_url(settings.api_base))
    except ValueError as err:
        raise JobError(str(err)) from err
    counter = _Counter()
    journal = await _open_journal(settings)
    with journal, OrgCache(settings.state_dir, base) as cache:
        async with AsyncExitStack() as stack:
            source = _LazySource(stack, base, settings, tokens, counter, journal.path)
            catalogue = Catalogue(source, cache, max_age)
            try:
                read = await work(catalogue)
            except ApiError as err:
                raise JobError(f"cannot read the org: {_why(err)}") from err
            except aiohttp.ClientError as err:
                raise JobError(f"cannot reach {base}: {err}") from err
    read.spent, read.calls = catalogue.spent, counter.calls
    return read


def _need(items: list[R] | None) -> list[R]:
    return [] if items is None else items


async def refresh(
    settings: SendSettings,
    tokens: Callable[[aiohttp.ClientSession], TokenProvider],
    courses: Sequence[str] = (),
) -> OrgRead:
    """``org refresh``: read courses, trainers and rooms afresh, and the batches and modules of
    each of ``courses`` (without, those are read when a sheet first needs them)."""

    async def work(catalogue: Catalogue) -> OrgRead:
        read = OrgRead()
        read.lists["courses"] = len(_need(await catalogue.courses()))
        read.lists["trainers"] = len(_need(await catalogue.trainers()))
        read.lists["rooms"] = len(_need(await catalogue.rooms()))
        for course_id in courses:
            batches = _need(await catalogue.batches(course_id))
            read.lists["batches"] = read.lists.get("batches", 0) + len(batches)
            for batch in batches:
                modules = _need(await catalogue.modules(course_id, batch.id))
                read.lists["modules"] = read.lists.get("modules", 0) + len(modules)
        return read

    return await _with_catalogue(settings, tokens, 0.0, work)


def _matches(text: str, *fields: str | None) -> bool:
    wanted = normalise_name(text)
    return any(wanted in normalise_name(f) for f in fields if f)


async def find(
    text: str,
    settings: SendSettings,
    tokens: Callable[[aiohttp.ClientSession], TokenProvider],
    *,
    kinds: Sequence[str] = KINDS,
    max_age: float,
) -> OrgRead:
    """``org find``: entries whose name (a trainer's email, a room's place) contains ``text``,
    from the cache, reading what is missing or older than ``max_age``."""

    async def work(catalogue: Catalogue) -> OrgRead:
        read = OrgRead()
        courses = _need(await catalogue.courses())
        if "course" in kinds:
            read.entries += [Found("course", c.id, c.name, c.state or "", "")
                             for c in courses if _matches(text, c.name)]
        if "batch" in kinds or "module" in kinds:
            for course in courses:
                for batch in _need(await catalogue.batches(course.id)):
                    if "batch" in kinds and _matches(text, batch.name):
                        read.entries.append(Found("batch", batch.id, batch.name,
                                                  describe_batch(batch), course.name))
                    if "module" not in kinds:
                        continue
                    for module in _need(await catalogue.modules(course.id, batch.id)):
                        if _matches(text, module.name):
                            read.entries.append(Found("module", module.id, module.name, "",
                                                      f"{course.name} › {batch.name}"))
        if "trainer" in kinds:
            read.entries += [Found("trainer", t.erecno, t.name, t.email or "", "")
                             for t in _need(await catalogue.trainers())
                             if _matches(text, t.name, t.email)]
        if "room" in kinds:
            read.entries += [Found("room", r.id, r.name, r.location or "", "")
                             for r in _need(await catalogue.rooms())
                             if _matches(text, r.name, r.location)]
        return read

    return await _with_catalogue(settings, tokens, max_age, work)


def cached(state_dir: Path, api_base: str, now: float) -> list[Mapping[str, object]]:
    """``org show``: what the cache holds for this API base, and how old each list is."""
    cache = OrgCache.existing(state_dir, normalise_base(api_base))
    if cache is None:
        return []
    with cache:
        return ages(cache, now)


@dataclass
class ListsRead:
    """``template --online``: the org's choices and what reading them cost."""

    lists: OrgLists
    spent: Spent
    calls: int

    def line(self) -> str:
        return self.spent.line(self.calls)


async def org_lists(
    settings: SendSettings,
    tokens: Callable[[aiohttp.ClientSession], TokenProvider],
    max_age: float,
) -> ListsRead:
    """Every course, batch, module, active trainer and room, for the template's drop-downs."""

    async def work(catalogue: Catalogue) -> OrgRead:
        return OrgRead(choices=await read_lists(catalogue))

    read = await _with_catalogue(settings, tokens, max_age, work)
    return ListsRead(read.choices, read.spent, read.calls)

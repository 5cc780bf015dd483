"""The org as a run needs it: courses, batches, modules, trainers and rooms from the cache when it
is fresh enough, from Zoho otherwise; the sessions Zoho holds, always fresh.

Reads are spent only where they can change an outcome: a course's batches are read when a row
names that course, a batch's modules when a row names that batch. `Catalogue` counts what it read
and what the cache answered, for the one line every reading command prints.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

from bulkschedule.core.constants import DEFAULT_MAX_AGE
from bulkschedule.core.errors import ApiError, OrgUnavailable
from bulkschedule.org.cache import OrgCache
from bulkschedule.zoho.records import Batch, Course, ListedSession, Module, Room, Trainer

KINDS = ("course", "batch", "module", "trainer", "room")

def endpoint(kind: str, parent: str) -> str:
    """The read behind a list, for messages: ``modules`` of ``c/b`` ->
    ``GET /api/v1/courses/c/batches/b/modules``."""
    ids = parent.split("/") if parent else []
    path = "/api/v1"
    for segment, ident in zip(("courses", "batches", "modules"), ids, strict=False):
        path += f"/{segment}/{ident}"
    return f"GET {path}/{kind}" if kind != "courses" or ids else "GET /api/v1/courses"


class OrgSource(Protocol):
    """The reads `Catalogue` makes: `bulkschedule.zoho.client.LmsClient` provides them."""

    async def list_courses(self) -> list[Course]: ...

    async def list_batches(self, course_id: str) -> list[Batch]: ...

    async def list_modules(self, course_id: str, batch_id: str) -> list[Module]: ...

    async def list_active_trainers(self) -> list[Trainer]: ...

    async def list_rooms(self) -> list[Room]: ...

    async def list_sessions(
        self, course_id: str, batch_id: str, module_id: str | None = None
    ) -> list[ListedSession]: ...


@dataclass
class Spent:
    """What reading the org cost: lists read from Zoho and lists the cache answered."""

    reads: int = 0
    cached: int = 0

    def line(self, calls: int | None = None) -> str:
        spent = f"{calls} API call{'s' if calls != 1 else ''}" if calls is not None else (
            f"{self.reads} list{'s' if self.reads != 1 else ''} read")
        return f"org: {spent}, {self.cached} answered from the cache"


R = TypeVar("R")


def _to_json(record: Any) -> dict[str, Any]:
    out = asdict(record)
    out.pop("raw", None)
    return {k: v.isoformat() if isinstance(v, dt.date | dt.time) else v for k, v in out.items()}


def _date(value: Any) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


_FROM_JSON: dict[type[Any], Callable[[dict[str, Any]], Any]] = {
    Course: lambda d: Course(**d),
    Batch: lambda d: Batch(**{**d, "start": _date(d["start"]), "end": _date(d["end"])}),
    Module: lambda d: Module(**d),
    Trainer: lambda d: Trainer(**d),
    Room: lambda d: Room(**d),
}


@dataclass
class Catalogue:
    """Reads through ``source`` and ``cache``; every list is kept for the rest of the run."""

    source: OrgSource | None  #: None offline: only what the cache holds
    cache: OrgCache | None  #: None: no cache was ever written (offline, nothing to resolve by)
    max_age: float = DEFAULT_MAX_AGE
    spent: Spent = field(default_factory=Spent)
    _memo: dict[tuple[str, str], list[Any]] = field(default_factory=dict, repr=False)

    async def courses(self) -> list[Course] | None:
        return await self._list("courses", "", Course, lambda s: s.list_courses())

    async def batches(self, course_id: str) -> list[Batch] | None:
        return await self._list("batches", course_id, Batch,
                                lambda s: s.list_batches(course_id))

    async def modules(self, course_id: str, batch_id: str) -> list[Module] | None:
        return await self._list("modules", f"{course_id}/{batch_id}", Module,
                                lambda s: s.list_modules(course_id, batch_id))

    async def trainers(self) -> list[Trainer] | None:
        return await self._list("trainers", "", Trainer, lambda s: s.list_active_trainers())

    async def rooms(self) -> list[Room] | None:
        return await self._list("rooms", "", Room, lambda s: s.list_rooms())

    async def sessions(self, course_id: str, batch_id: str, module_id: str
                       ) -> list[ListedSession]:
        """What Zoho holds in a module: never cached (it changes under us), read once a run."""
        key = ("sessions", f"{course_id}/{batch_id}/{module_id}")
        if key not in self._memo:
            if self.source is None:
                raise RuntimeError("reading sessions needs a connection (the caller checks)")
            try:
                self._memo[key] = await self.source.list_sessions(course_id, batch_id,
                                                                  module_id)
            except ApiError as err:
                raise OrgUnavailable(endpoint(*key), err) from err
            self.spent.reads += 1
        return list(self._memo[key])

    async def _list(
        self,
        kind: str,
        parent: str,
        record: type[R],
        read: Callable[[OrgSource], Awaitable[Sequence[R]]],
    ) -> list[R] | None:
        """The list from this run's memory, the cache (fresh enough), or Zoho; None offline with
        nothing cached."""
        key = (kind, parent)
        if key in self._memo:
            return list(self._memo[key])
        cached = None if self.cache is None else self.cache.get(
            kind, parent, max_age=None if self.source is None else self.max_age)
        if cached is not None:
            items = [_FROM_JSON[record](item) for item in cached.items]
            self.spent.cached += 1
        elif self.source is None:
            return None
        else:
            try:
                items = list(await read(self.source))
            except ApiError as err:
                raise OrgUnavailable(endpoint(kind, parent), err) from err
            if self.cache is not None:
                self.cache.put(kind, parent, [_to_json(i) for i in items])
            self.spent.reads += 1
        self._memo[key] = items
        return list(items)


def describe_batch(batch: Batch) -> str:
    """What tells a batch apart from a namesake: its dates."""
    if batch.start and batch.end:
        return f"{batch.start:%d-%m-%Y} to {batch.end:%d-%m-%Y}"
    return "no dates listed"


def ages(cache: OrgCache, now: float) -> list[Mapping[str, Any]]:
    """``org show``: each cached list with its size and age in seconds."""
    return [{"kind": c.kind, "parent": c.parent, "entries": len(c.items),
             "fetched_at": c.fetched_at, "age_seconds": round(now - c.fetched_at, 1)}
            for c in cache.lists()]

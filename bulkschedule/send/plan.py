"""The plan: what a run will do with each valid row, decided before anything is sent. Pure.

Which session a row is (issue 12's contract), first rule that applies:

1. the row's ``sessionId`` cell (a results workbook given back as input has one on every row);
2. the session the journal recorded for the row's identity (its ``key``, else module, name,
   date and start time);
3. a session Zoho lists in the row's module with the same name, date and start time.

A row that is no session yet is created. A row that is one is compared with what Zoho holds
when the module's listing was read (so an edit made in Zoho's own screens is seen), field by
field for the fields the listing shows, else with what the journal last sent: the same is
``unchanged``, a difference is an ``update`` with its changes (old → new). An update begun and
not confirmed (the journal's ``pending``) is sent again. A session named by a sessionId that
nothing can be compared with is left ``unchanged``: nothing is patched blindly.

Sessions Zoho lists in the modules the sheet touches that no row is are ``only_in_zoho``: shown
for the admin to review, never deleted (Zoho documents no delete call for sessions).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import overload

from bulkschedule.core.problems import Changes, Line
from bulkschedule.core.request import Request
from bulkschedule.send.journal import CREATED, Entry
from bulkschedule.zoho.matching import clean_name, minutes, one_date
from bulkschedule.zoho.records import ListedSession


class Action(StrEnum):
    """What the run does with a session (a row, or one session of a repeating row). The values
    are a contract (``run --dry-run --json``)."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    INVALID = "invalid"


#: How a plan's counts read to people (the dry run's line, the upload page), by action.
ACTION_WORDS: dict[str, str] = {Action.CREATE: "to create", Action.UPDATE: "to update",
                                Action.UNCHANGED: "unchanged", Action.INVALID: "invalid"}


#: The changes of a step that has none (most: every row to create), shared: a dict of its own
#: for each of a run's steps was 64 bytes a row kept until the results are written. Read-only.
NO_CHANGES: Changes = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Step:
    """One valid session's action (a row's, or one of a repeating row's sessions). ``req``
    names its session (``session_id``) for an update."""

    req: Request
    action: Action
    session_id: str | None = None
    changes: Changes = field(default_factory=lambda: NO_CHANGES)
    note: str = ""  # why, when it is not plain (for the message column)


@dataclass(frozen=True, slots=True)
class Zoho:
    """What the org's listings showed: the sessions of every module the sheet touches, and
    which listed session each of the sheet's sessions matches by module, name, date and start
    time (keyed by `Line`)."""

    modules: Mapping[str, Sequence[ListedSession]]
    matched: Mapping[Line, ListedSession]

    def by_id(self) -> dict[str, ListedSession]:
        return {s.id: s for sessions in self.modules.values() for s in sessions}


class Steps(Sequence[Step]):
    """A plan's steps, one per request in input order, without a `Step` kept for each plain
    create (every row of a first run): a create is made again whenever it is read, the rest are
    kept. (A Step a row was ~70 bytes a row kept until the results were written.) ``requests``
    is kept as it is, not copied."""

    __slots__ = ("_kept", "_requests")

    def __init__(self, requests: Sequence[Request], kept: Mapping[int, Step]) -> None:
        self._requests = requests
        self._kept = kept  # by position: every step that is not a plain create

    def __len__(self) -> int:
        return len(self._requests)

    @overload
    def __getitem__(self, i: int) -> Step: ...

    @overload
    def __getitem__(self, i: slice) -> list[Step]: ...

    def __getitem__(self, i: int | slice) -> Step | list[Step]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        req = self._requests[i]  # IndexError as a list's
        step = self._kept.get(i)
        return Step(req, Action.CREATE) if step is None else step

    def __iter__(self) -> Iterator[Step]:
        kept = self._kept
        for i, req in enumerate(self._requests):
            step = kept.get(i)
            yield Step(req, Action.CREATE) if step is None else step

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same steps (a list of them included), as a list is."""
        if isinstance(other, Steps | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # compared by value, as a list

    def __repr__(self) -> str:
        return f"Steps({list(self)!r})"


@dataclass
class Plan:
    steps: Sequence[Step]  # one per valid session, in input order (`Steps`, or a list)
    only_in_zoho: list[ListedSession] = field(default_factory=list)
    invalid: int = 0  # rows validation refused (they have no step)

    def counts(self) -> dict[str, int]:
        """``{"create", "update", "unchanged", "invalid"}`` (the JSON contract's ``plan``)."""
        found = Counter(str(s.action) for s in self.steps)
        found[str(Action.INVALID)] += self.invalid
        return {str(a): found.get(str(a), 0) for a in Action}

    def by_line(self) -> dict[Line, Step]:
        """The steps by session (`Request.line`)."""
        return {s.req.line: s for s in self.steps}


#: Listed type values meaning the sheet's "0" / "1".
_TYPES = {"0": "0", "classroom": "0", "1": "1", "e-learning": "1", "elearning": "1",
          "online": "1"}
#: What was compared with, for the note of an update.
NOTHING_TO_COMPARE = ("nothing to compare it with (the journal has no record of what was sent, "
                      "and Zoho's listing was not read): left as it is")
PENDING_AGAIN = "an earlier update was not confirmed: it is sent again"
NOT_RECORDED = "its details differ from what was last recorded (fields not recorded)"


def same(field_name: str, old: str | None, new: str | None) -> bool:
    """Whether two values of a ``sessionData`` field mean the same (formats Zoho may list them
    in: times as 10:00 or 10:00 AM, dates in any form, HTML-escaped text)."""
    if not old and not new:
        return True
    if old is None or new is None:
        return False
    if field_name in ("startTime", "endTime"):
        return minutes(old) == minutes(new) is not None or old == new
    if field_name in ("date", "lockUntil"):
        return one_date(old) == one_date(new) is not None or old == new
    if field_name == "type":
        return _TYPES.get(old.strip().lower(), old) == _TYPES.get(new.strip().lower(), new)
    if field_name in ("name", "description"):
        return clean_name(old) == clean_name(new)
    return old.strip() == new.strip()


def differences(old: Mapping[str, str], new: Mapping[str, str], *,
                fields: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
    """field -> (old, new) for every field that differs; ``fields`` limits the comparison to
    those a partial record (a listing) holds."""
    names = list(dict.fromkeys([*new, *old])) if fields is None else list(fields)
    return {f: (old.get(f, ""), new.get(f, "")) for f in names
            if not same(f, old.get(f), new.get(f))}


def make_plan(requests: Sequence[Request], *, journal: Mapping[str, Entry],
              sessions: Mapping[str, Entry], zoho: Zoho | None, invalid: int = 0,
              named_elsewhere: Iterable[str] = ()) -> Plan:
    """Decide every row's action.

    ``journal``: identity -> entry (`Journal.lookup_many`); ``sessions``: sessionId -> entry
    (`Journal.by_session`) for the sessions rows name; ``zoho``: the listings, or None when the
    org was not read. ``named_elsewhere``: sessionIds typed on rows that are not valid (kept
    off the `only_in_zoho` list: the sheet does name them).
    """
    listed = zoho.by_id() if zoho is not None else {}
    steps: dict[int, Step] = {}  # every step but a plain create, by position (`Steps`)
    taken: dict[str, Request] = {}  # sessionId -> the row (or row's session) that is it
    for i, req in enumerate(requests):
        step = _step(req, journal.get(req.identity), sessions, listed, zoho)
        if step.session_id is not None:
            first = taken.setdefault(step.session_id, req)
            if first is not req:
                step = Step(req, Action.INVALID, step.session_id, note=(
                    f"{first.where} is already session {step.session_id}: one row per "
                    "session"))
        if step.action is not Action.CREATE or step.req is not req or step.note \
                or step.session_id is not None or step.changes:
            steps[i] = step
    only: list[ListedSession] = []
    if zoho is not None:
        kept = set(taken) | set(named_elsewhere)
        only = [s for sessions_ in zoho.modules.values() for s in sessions_ if s.id not in kept]
    return Plan(Steps(requests, steps), only, invalid)


def _step(req: Request, entry: Entry | None, sessions: Mapping[str, Entry],
          listed: Mapping[str, ListedSession], zoho: Zoho | None) -> Step:
    if req.session_id is not None:
        target: str | None = req.session_id
        recorded = sessions.get(req.session_id)
    elif entry is not None and entry.status == CREATED and entry.session_id:
        target, recorded = entry.session_id, entry
    elif zoho is not None and req.line in zoho.matched:
        target, recorded = zoho.matched[req.line].id, None
    else:
        return Step(req, Action.CREATE)
    assert target is not None
    if recorded is None and entry is not None and entry.session_id == target:
        recorded = entry
    return _compared(dataclasses.replace(req, session_id=target), recorded,
                     listed.get(target), zoho)


def _compared(req: Request, recorded: Entry | None, holds: ListedSession | None,
              zoho: Zoho | None) -> Step:
    """Compare a row with its session: what Zoho lists, and what the journal last sent for the
    fields the listing leaves out."""
    new = req.session_data
    update = Step(req, Action.UPDATE, req.session_id)
    sent = recorded.sent if recorded is not None else None
    if recorded is not None and recorded.pending is not None:
        return dataclasses.replace(update, changes=differences(sent or {}, new),
                                   note=PENDING_AGAIN)
    if holds is None and zoho is not None and req.module_id in zoho.modules:
        # its module was listed without it: deleted in Zoho (or moved); Zoho's answer to the
        # update (404) says which
        return dataclasses.replace(update, note=(
            f"Zoho does not list session {req.session_id} in this module (deleted there?)"))
    if holds is not None or sent is not None:
        baseline = {**(sent or {}), **(holds.as_session_data() if holds is not None else {})}
        # a field a listing leaves out is blank or just not listed: only a full record of what
        # was sent tells which
        fields = [*baseline, *(f for f in new if f not in baseline)] if sent is not None \
            else list(baseline)
        changes = differences(baseline, new, fields=fields)
        if changes:
            return dataclasses.replace(update, changes=changes)
        return Step(req, Action.UNCHANGED, req.session_id)
    if recorded is not None and recorded.fingerprint:
        if recorded.fingerprint == req.fingerprint:
            return Step(req, Action.UNCHANGED, req.session_id)
        return dataclasses.replace(update, note=NOT_RECORDED)
    return Step(req, Action.UNCHANGED, req.session_id, note=NOTHING_TO_COMPARE)


__all__ = ["ACTION_WORDS", "Action", "Plan", "Step", "Steps", "Zoho", "differences", "make_plan",
           "same"]

"""The org the sandbox holds: courses, their batches (with term dates) and modules, trainers, rooms.

Why it exists: the commonest real failures (a module not in that batch, a date outside the batch,
an unknown trainer or room) can only be seen against an org, so the sandbox keeps one and answers
the LMS reads from it. It comes from a ``--data`` JSON file (`load_catalogue`) or is the
built-in `DEFAULT_ORG`, which holds every ID the sheets in ``sample_data/`` use
(``sample_data/catalogue.json`` is the same org written out by ``sample_data/make_by_name.py``).

Standard library only: this module is read by the option parser too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

__all__ = [
    "COURSE_STATES",
    "DEFAULT_ORG",
    "Batch",
    "Catalogue",
    "Course",
    "Room",
    "Trainer",
    "catalogue_from_dict",
    "default_catalogue",
    "display_date",
    "load_catalogue",
    "parse_ddmmyyyy",
]

ID_RE: Final = re.compile(r"^\d{1,19}$")
_DATE_RE: Final = re.compile(r"^(\d{2})-(\d{2})-(\d{4})$")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                  "Dec")
#: A course's publication state, as the courses listing's ``state`` filter names them.
COURSE_STATES: Final = ("drafted", "published", "disabled")
_TRAINER_STATUSES: Final = ("active", "inactive")


def parse_ddmmyyyy(text: str) -> date | None:
    """``"04-01-2027"`` -> that date; anything else (or an impossible date) -> None."""
    match = _DATE_RE.match(text)
    if not match:
        return None
    day, month, year = (int(g) for g in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None


def display_date(day: date) -> str:
    """``dd-MMM-yyyy`` as Zoho reads batch dates back (``22-Dec-2021``), whatever the locale."""
    return f"{day.day:02d}-{_MONTHS[day.month - 1]}-{day.year}"


@dataclass(frozen=True)
class Batch:
    """A batch runs between two dates; a session outside them is refused, as Zoho does."""

    id: str
    name: str
    start: date
    end: date
    modules: dict[str, str]  # module id -> name


@dataclass(frozen=True)
class Course:
    id: str
    name: str
    batches: dict[str, Batch]
    state: str = "published"


@dataclass(frozen=True)
class Trainer:
    """An LMS trainer: an employee (by erecno) who may be named on a session while active."""

    erecno: str
    name: str
    email: str = ""
    active: bool = True


@dataclass(frozen=True)
class Room:
    id: str
    name: str
    location_id: str = ""
    location: str = ""
    capacity: int = 0
    facilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalogue:
    """What exists in the simulated tenant; without one, any numeric id is accepted."""

    courses: dict[str, Course]
    trainers: dict[str, Trainer]
    rooms: dict[str, Room]

    def batch(self, course: str, batch: str) -> Batch | None:
        """The batch if it exists within that course."""
        found = self.courses.get(course)
        return found.batches.get(batch) if found is not None else None


def catalogue_from_dict(raw: Any, source: str) -> Catalogue:
    """The catalogue a ``--data`` document describes; ValueError names ``source`` and the place.

    Entries may be objects (``{"id": ..., "name": ...}``) or bare ids. Every problem is reported
    with its location in the document so a hand-edited catalogue is quick to fix.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: the catalogue must be a JSON object with 'courses'")

    def fail(where: str, why: str) -> ValueError:
        return ValueError(f"{source}: {where}: {why}")

    def entry(item: Any, where: str, id_keys: tuple[str, ...] = ("id",)) -> tuple[str, str]:
        if isinstance(item, str | int) and not isinstance(item, bool):
            ident, name = str(item), ""
        elif isinstance(item, dict):
            ident = next((str(item[k]) for k in id_keys if k in item), "")
            name = str(item.get("name", ""))
        else:
            raise fail(where, "expected an id or an object with an id")
        if not ID_RE.match(ident):
            raise fail(where, f"id must be numeric, got {ident!r}")
        return ident, name

    def items(obj: Any, key: str, where: str) -> list[Any]:
        value = obj.get(key, [])
        if not isinstance(value, list):
            raise fail(where, f"'{key}' must be a list")
        return value

    def choice(obj: Any, key: str, allowed: tuple[str, ...], default: str, where: str) -> str:
        value = str(obj.get(key, default)) if isinstance(obj, dict) else default
        if value not in allowed:
            raise fail(where, f"{key} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    courses: dict[str, Course] = {}
    for ci, c in enumerate(items(raw, "courses", "top level")):
        cwhere = f"courses[{ci}]"
        cid, cname = entry(c, cwhere)
        batches: dict[str, Batch] = {}
        for bi, b in enumerate(items(c, "batches", cwhere) if isinstance(c, dict) else []):
            bwhere = f"{cwhere}.batches[{bi}]"
            bid, bname = entry(b, bwhere)
            if not isinstance(b, dict):
                raise fail(bwhere, "a batch must be an object with startDate and endDate")
            dates: list[date] = []
            for keys in (("startDate", "start"), ("endDate", "end")):
                text = next((b[k] for k in keys if k in b), None)
                if text is None:
                    raise fail(bwhere, f"missing {keys[0]}")
                parsed = parse_ddmmyyyy(str(text))
                if parsed is None:
                    raise fail(bwhere, f"{keys[0]} must be dd-MM-yyyy, got {text!r}")
                dates.append(parsed)
            if dates[1] < dates[0]:
                raise fail(bwhere, "endDate is before startDate")
            modules = dict(
                entry(m, f"{bwhere}.modules[{mi}]")
                for mi, m in enumerate(items(b, "modules", bwhere))
            )
            batches[bid] = Batch(bid, bname, dates[0], dates[1], modules)
        state = choice(c, "state", COURSE_STATES, "published", cwhere)
        courses[cid] = Course(cid, cname, batches, state)

    trainers: dict[str, Trainer] = {}
    for i, t in enumerate(items(raw, "trainers", "top level")):
        where = f"trainers[{i}]"
        erecno, name = entry(t, where, ("erecno", "trainerErecno", "id"))
        email = str(t.get("email", "")) if isinstance(t, dict) else ""
        status = choice(t, "status", _TRAINER_STATUSES, "active", where)
        trainers[erecno] = Trainer(erecno, name, email, status == "active")

    rooms: dict[str, Room] = {}
    for i, r in enumerate(items(raw, "rooms", "top level")):
        where = f"rooms[{i}]"
        room_id, name = entry(r, where, ("id", "roomId"))
        rooms[room_id] = _room(room_id, name, r if isinstance(r, dict) else {}, where, fail)
    return Catalogue(courses, trainers, rooms)


def _room(room_id: str, name: str, raw: dict[str, Any], where: str,
          fail: Callable[[str, str], ValueError]) -> Room:
    """A room's optional parts: ``location`` (an object with id and name, or a name),
    ``capacity`` (a whole number) and ``facilities`` (a list of names)."""
    location = raw.get("location", "")
    if isinstance(location, dict):
        loc_id = str(location.get("id", location.get("locationId", "")))
        loc_name = str(location.get("name", ""))
    elif isinstance(location, str):
        loc_id, loc_name = "", location
    else:
        raise fail(where, "location must be an object with id and name, or a name")
    if loc_id and not ID_RE.match(loc_id):
        raise fail(where, f"location id must be numeric, got {loc_id!r}")
    capacity = raw.get("capacity", 0)
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise fail(where, f"capacity must be a whole number, got {capacity!r}")
    facilities = raw.get("facilities", [])
    if not isinstance(facilities, list) or not all(isinstance(f, str) for f in facilities):
        raise fail(where, "facilities must be a list of names")
    return Room(room_id, name, loc_id, loc_name, capacity, tuple(facilities))


def load_catalogue(path: str | Path) -> Catalogue:
    """Read a ``--data`` file: courses -> batches (dates dd-MM-yyyy) -> modules, trainers, rooms."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read catalogue: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not valid JSON: not UTF-8 text") from None
    return catalogue_from_dict(raw, str(path))


def _location(ident: str, name: str) -> dict[str, str]:
    return {"id": ident, "name": name}


_HEAD_OFFICE = _location("478346000010120001", "Head office")
_RIVERSIDE = _location("478346000010120017", "Riverside campus")

#: The org of ``run --sandbox`` and ``serve --sandbox``: every ID the sample sheets use, a second
#: batch and a second course with the same batch and module names (names resolve within their
#: course and batch), a drafted course, rooms at two locations. Three trainers, as the sample
#: sheets use (``auth --check`` reports how many the first page lists).
DEFAULT_ORG: Final[dict[str, Any]] = {
    "courses": [
        {
            "id": "478346000019479103", "name": "New starter programme", "state": "published",
            "batches": [
                {"id": "478346000019479115", "name": "Spring term 2027",
                 "startDate": "04-01-2027", "endDate": "26-03-2027",
                 "modules": [{"id": "478346000019479119", "name": "Foundations"},
                             {"id": "478346000019479131", "name": "Customer care"}]},
                {"id": "478346000019479143", "name": "Summer term 2027",
                 "startDate": "12-04-2027", "endDate": "02-07-2027",
                 "modules": [{"id": "478346000019479155", "name": "Foundations"},
                             {"id": "478346000019479167", "name": "Customer care"}]},
            ],
        },
        {
            "id": "478346000019480011", "name": "Leadership essentials", "state": "published",
            "batches": [
                {"id": "478346000019480023", "name": "Spring term 2027",
                 "startDate": "11-01-2027", "endDate": "26-03-2027",
                 "modules": [{"id": "478346000019480035", "name": "Leading a team"},
                             {"id": "478346000019480047", "name": "Coaching skills"}]},
            ],
        },
        {
            "id": "478346000019481003", "name": "Data protection refresher", "state": "drafted",
            "batches": [
                {"id": "478346000019481015", "name": "Autumn 2027",
                 "startDate": "06-09-2027", "endDate": "17-12-2027",
                 "modules": [{"id": "478346000019481027", "name": "Data protection in practice"}]},
            ],
        },
    ],
    "trainers": [
        {"erecno": "478346000008251001", "name": "Henry Adams",
         "email": "henry.adams@example.com", "status": "active"},
        {"erecno": "478346000008251017", "name": "Priya Raman",
         "email": "priya.raman@example.com", "status": "active"},
        {"erecno": "478346000008251033", "name": "Tomás Ortega",
         "email": "tomas.ortega@example.com", "status": "active"},
    ],
    "rooms": [
        {"id": "478346000010125093", "name": "Training Room A", "location": _HEAD_OFFICE,
         "capacity": 20, "facilities": ["Projector", "Whiteboard"]},
        {"id": "478346000010125107", "name": "Training Room B", "location": _HEAD_OFFICE,
         "capacity": 12, "facilities": ["Whiteboard"]},
        {"id": "478346000010125115", "name": "Riverside Suite", "location": _RIVERSIDE,
         "capacity": 40, "facilities": ["Projector", "Video conferencing"]},
    ],
}


def default_catalogue() -> Catalogue:
    """`DEFAULT_ORG` as a `Catalogue` (a fresh one each time: nothing shared between sandboxes)."""
    return catalogue_from_dict(DEFAULT_ORG, "the default org")

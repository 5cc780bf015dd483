"""How the org's entities look on the wire, in each field style.

Why styles: Zoho documents the LMS reads (courses, batches, modules, trainers, rooms) but not the
field names of their items, except rooms and one batch. A client must read every plausible
variant, so the sandbox can serve several (``SandboxConfig.field_style``) and tests drive the
client through each of them end to end. ``default`` is the most plausible reading; the others
spread the variants seen across Zoho People's APIs (docs/sandbox.md lists every field).

Fixed in every style, because Zoho documents them: rooms (``roomId``, ``name``,
``location{locationId, name}``, ``facilities``, ``capacity``), one batch's
``startDateAsDisplayString``/``endDateAsDisplayString`` (``dd-MMM-yyyy``), the envelope's
``message`` and ``hasMoreRecords``, and the session items (the create reply's names).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final, Literal

from bulkschedule.sandbox.catalogue import Batch, Course, Room, Trainer, display_date

__all__ = ["STYLES", "Shape"]

DateForm = Literal["display", "dd-MM-yyyy", "epoch"]


@dataclass(frozen=True)
class Shape:
    """One field style: the envelope's ``code`` and the names of each entity's fields."""

    code: str | int
    course_id: str
    course_name: str
    course_state: str
    batch_id: str
    batch_name: str
    #: where a batch's dates go in a listing item, and in which form
    batch_start: str
    batch_end: str
    dates: DateForm
    module_id: str
    module_name: str
    trainer_id: str
    #: one key for the whole name, or two for first and last name
    trainer_name: tuple[str, ...]
    trainer_email: str
    trainer_status: str

    # ------------------------------------------------------------------------------ rendering

    def _date(self, day: dt.date) -> str | int:
        if self.dates == "display":
            return display_date(day)
        if self.dates == "dd-MM-yyyy":
            return f"{day:%d-%m-%Y}"
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return int(midnight.timestamp() * 1000)

    def course(self, course: Course) -> dict[str, Any]:
        return {self.course_id: course.id, self.course_name: course.name,
                self.course_state: course.state}

    def batch(self, course: Course, batch: Batch, *, one: bool = False) -> dict[str, Any]:
        """A batch as listed; ``one``: as ``GET .../batches/{b}`` answers, with the documented
        display dates as well, whatever the style."""
        item: dict[str, Any] = {
            self.batch_id: batch.id, self.batch_name: batch.name, "courseId": course.id,
            "publishStatus": course.state,
            self.batch_start: self._date(batch.start), self.batch_end: self._date(batch.end),
        }
        if one:
            item["startDateAsDisplayString"] = display_date(batch.start)
            item["endDateAsDisplayString"] = display_date(batch.end)
        return item

    def module(self, course: Course, batch: Batch, module_id: str) -> dict[str, Any]:
        return {self.module_id: module_id, self.module_name: batch.modules[module_id],
                "batchId": batch.id, "courseId": course.id}

    def trainer(self, trainer: Trainer) -> dict[str, Any]:
        item: dict[str, Any] = {self.trainer_id: trainer.erecno}
        if len(self.trainer_name) == 2:
            first, _, last = trainer.name.partition(" ")
            item[self.trainer_name[0]], item[self.trainer_name[1]] = first, last
        else:
            item[self.trainer_name[0]] = trainer.name
        item[self.trainer_email] = trainer.email
        item[self.trainer_status] = "active" if trainer.active else "inactive"
        return item

    @staticmethod
    def room(room: Room) -> dict[str, Any]:
        """The documented room: the same in every style."""
        return {"roomId": room.id, "name": room.name,
                "location": {"locationId": room.location_id, "name": room.location},
                "facilities": list(room.facilities), "capacity": room.capacity}


#: One entry per `FIELD_STYLES` name (a test checks they agree).
STYLES: Final[dict[str, Shape]] = {
    "default": Shape(
        code="200", course_id="courseId", course_name="courseName", course_state="state",
        batch_id="batchId", batch_name="batchName", batch_start="startDateAsDisplayString",
        batch_end="endDateAsDisplayString", dates="display",
        module_id="moduleId", module_name="moduleName",
        trainer_id="erecno", trainer_name=("name",), trainer_email="email",
        trainer_status="employeeStatus"),
    "short": Shape(
        code="200", course_id="id", course_name="name", course_state="status",
        batch_id="id", batch_name="name", batch_start="startDate", batch_end="endDate",
        dates="dd-MM-yyyy", module_id="id", module_name="name",
        trainer_id="trainerErecno", trainer_name=("trainerName",), trainer_email="emailId",
        trainer_status="status"),
    "employee": Shape(
        code=200, course_id="courseId", course_name="name", course_state="publishStatus",
        batch_id="batchId", batch_name="name", batch_start="startDate", batch_end="endDate",
        dates="epoch", module_id="moduleId", module_name="name",
        trainer_id="employeeErecno", trainer_name=("FirstName", "LastName"),
        trainer_email="EmailID", trainer_status="Employeestatus"),
    "legacy": Shape(
        code=200, course_id="courseId", course_name="courseName", course_state="state",
        batch_id="batchId", batch_name="batchName", batch_start="startDate", batch_end="endDate",
        dates="display", module_id="moduleId", module_name="moduleName",
        trainer_id="erecNo", trainer_name=("employeeName",), trainer_email="email",
        trainer_status="employeeStatus"),
    "display": Shape(
        code="200", course_id="courseId", course_name="displayName", course_state="state",
        batch_id="batchId", batch_name="displayName", batch_start="startDate",
        batch_end="endDate", dates="epoch", module_id="moduleId", module_name="displayName",
        trainer_id="id", trainer_name=("displayName",), trainer_email="emailId",
        trainer_status="employeeStatus"),
}

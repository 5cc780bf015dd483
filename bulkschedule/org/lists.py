"""The org's choices for the template's drop-downs, as text the name resolver reads back: a course
by name, a batch as "Course › Batch", a module as "Course › Batch › Module", a trainer as
"Name <email>", a room by name (`org.preflight.typed_name`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bulkschedule.org.catalogue import Catalogue
from bulkschedule.org.preflight import PATH_SEPARATOR


@dataclass
class OrgLists:
    """The choices for each ID column, in the order the drop-downs show them."""

    columns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.columns.values())


async def read_lists(catalogue: Catalogue) -> OrgLists:
    """Every course, batch and module (as paths), active trainer and room of the org."""
    lists = OrgLists({"courseId": [], "batchId": [], "moduleId": [], "trainerErecno": [],
                      "roomId": []})
    for course in sorted(await catalogue.courses() or [], key=lambda c: c.name.casefold()):
        lists.columns["courseId"].append(course.name)
        for batch in sorted(await catalogue.batches(course.id) or [],
                            key=lambda b: (b.start or b.end or b.name, b.name)):
            lists.columns["batchId"].append(PATH_SEPARATOR.join((course.name, batch.name)))
            for module in await catalogue.modules(course.id, batch.id) or []:
                lists.columns["moduleId"].append(
                    PATH_SEPARATOR.join((course.name, batch.name, module.name)))
    for trainer in sorted(await catalogue.trainers() or [],
                          key=lambda t: (t.name or t.email or "").casefold()):
        label = trainer.name or trainer.email or trainer.erecno
        lists.columns["trainerErecno"].append(
            f"{label} <{trainer.email}>" if trainer.email and trainer.name else label)
    lists.columns["roomId"] = sorted((r.name for r in await catalogue.rooms() or []),
                                     key=str.casefold)
    return lists

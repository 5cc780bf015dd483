"""The upload page and the org in Zoho: the online stage of a check, and of a run.

When the page can read the org (the built-in sandbox, or usable credentials for the API), the
check of an upload adds the org's problems to the sheet's own (names resolved, the course, batch
and module path, the batch's dates, trainers, rooms, bookings) in the same table, and a run does
the same again just before it sends, so the sessions Zoho already holds are fresh: they become
`job.send`'s ``held`` (reported ``exists``, "already in Zoho", never sent). As ``bulkschedule
run``: non-strict, an org that cannot be read is a warning and the sheet's own checks stand.

The stage runs in the server process (it needs the network, the shared rate budget and the
journal) on the validation the capped child returned. Each stage has a time limit: an upload or
a Create button must not wait out a five-minute lockout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bulkschedule.app.logs import redact
from bulkschedule.app.online import Online, Reading, check_online
from bulkschedule.app.target import Target
from bulkschedule.core.errors import JobError
from bulkschedule.sheet.schema import Validation
from bulkschedule.web.access import Refused

ORG_TIMEOUT = 30.0  # seconds the online stage of a check or a run start may take
RETRY_AFTER = 60  # seconds a run refused for want of the org is told to wait

#: Where the org is read (a target with credentials, or the sandbox), or why it is not.
TargetOrWhy = Target | str


def reading(options: Mapping[str, Any]) -> Reading:
    """The upload form's options (path IDs for every row, month-first dates) as the stage's."""
    return Reading(course=options.get("course"), batch=options.get("batch"),
                   module=options.get("module"), month_first=bool(options.get("month_first")))


@dataclass
class OrgReads:
    """How the page reads the org: ``target`` says where, or why not (no credentials), each
    time it is asked (a fixed secrets file needs no restart); ``max_age`` is how long cached
    lists are trusted (the ``max_age`` setting); ``timeout`` bounds each stage."""

    target: Callable[[], TargetOrWhy]
    max_age: float
    timeout: float = ORG_TIMEOUT

    async def _stage(self, target: Target, validation: Validation,
                     options: Mapping[str, Any]) -> Online:
        async with asyncio.timeout(self.timeout):
            return await check_online(validation.table, validation, target.send,
                                      tokens=target.tokens, reading=reading(options),
                                      max_age=self.max_age)

    async def check(self, validation: Validation, options: Mapping[str, Any]
                    ) -> tuple[Validation, dict[str, Any]]:
        """An upload's stage: the validation with the org's problems, and what the page says
        about the org (``org_line``: calls spent and answers from the cache; ``org_warning``:
        why the org was not read; ``held``: rows Zoho already holds). Never fails."""
        target = self.target()
        if isinstance(target, str):
            return validation, {"org_warning": f"Not checked against the org in Zoho: {target}."}
        try:
            found = await self._stage(target, validation, options)
        except TimeoutError:
            return validation, {"org_warning": (
                f"The org in Zoho could not be read within {self.timeout:g} s (a lockout, or "
                "a slow connection): only the sheet's own checks ran. A run checks the org "
                "again before it sends.")}
        except JobError as err:
            return validation, {"org_warning": (
                f"The org in Zoho could not be read ({redact(str(err))}): only the sheet's own "
                "checks ran.")}
        info: dict[str, Any] = {"org_line": found.line().removeprefix("org: "),
                                "held": len(found.held)}
        if found.warning:
            warning = redact(found.warning)
            info["org_warning"] = f"{warning[:1].upper()}{warning[1:]}."
        return found.validation, info

    async def for_run(self, validation: Validation, options: Mapping[str, Any], *,
                      dry_run: bool) -> Online:
        """A run's stage, just before it sends: the validation with the org's problems and the
        rows Zoho already holds. As ``run``: a dry run without the org goes on with a warning;
        a run that would send is `Refused` (503) when the org cannot be reached in time."""
        target = self.target()
        if isinstance(target, str):
            return Online(validation)  # the upload's page has said so
        try:
            found = await self._stage(target, validation, options)
        except TimeoutError:
            why = (f"the org in Zoho could not be read within {self.timeout:g} s (a lockout, or "
                   "a slow connection)")
        except JobError as err:
            why = f"the org in Zoho could not be read: {redact(str(err))}"
        else:
            if found.warning:
                found.warning = redact(found.warning)
            return found
        if dry_run:
            return Online(validation, warning=f"{why}; only the sheet's own checks ran")
        raise Refused(503, f"Cannot start: {why}. Nothing was sent; try again in a minute.",
                      headers={"Retry-After": str(RETRY_AFTER)})

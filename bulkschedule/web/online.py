"""The upload page and the org in Zoho: the online stage of a check, and of a run.

When the page can read the org (the built-in sandbox, or usable credentials for the API), the
check of an upload adds the org's problems to the sheet's own (names resolved, the course, batch
and module path, the batch's dates, trainers, rooms, bookings) in the same table, and a run does
the same again just before it sends, so the sessions Zoho already holds are fresh: they become
`job.send`'s ``held`` (reported ``exists``, "already in Zoho", never sent). As ``bulkschedule
run``: non-strict, an org that cannot be read is a warning and the sheet's own checks stand.

The stage runs in the server process (it needs the network, the shared rate budget and the
journal) on the validation the capped child returned, in a worker thread with its own event
loop. Each stage has a time limit: an upload or a Create button must not wait out a five-minute
lockout (a sheet whose modules need more listings than the budget allows in that time is
checked without the org, with a warning saying so).
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

ORG_TIMEOUT = 30.0  # seconds the online stage of a check or a run start may take

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
        """`check_online` within the time limit, on its own event loop in a worker thread: its
        checks of a 100,000-row sheet are seconds of Python that must not stall the page's
        loop (measured: 7.5 s, 45 calls, against the sandbox), and a client that goes away
        leaves it to end by its time limit."""

        async def bounded() -> Online:
            async with asyncio.timeout(self.timeout):
                return await check_online(validation.table, validation, target.send,
                                          tokens=target.tokens, reading=reading(options),
                                          max_age=self.max_age)

        return await asyncio.to_thread(lambda: asyncio.run(bounded()))

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

    async def for_run(self, validation: Validation, options: Mapping[str, Any]) -> Online:
        """A run's stage, just before it sends: the validation with the org's problems and the
        rows Zoho already holds. Never fails: as ``run``, an org that cannot be read (or not
        in time) is the run's warning, and the run goes on with the sheet's own checks (its
        own failures, such as a refused token, are then the run's to report)."""
        target = self.target()
        if isinstance(target, str):
            return Online(validation)  # the upload's page has said so
        try:
            found = await self._stage(target, validation, options)
        except TimeoutError:
            return Online(validation, warning=(
                f"the org in Zoho could not be read within {self.timeout:g} s: only the "
                "sheet's own checks ran, and sessions Zoho already holds were not looked for "
                "(the journal still keeps runs on this state folder from creating any twice)"))
        except JobError as err:
            return Online(validation, warning=(
                f"the org in Zoho could not be read ({redact(str(err))}): only the sheet's own "
                "checks ran"))
        if found.warning:
            found.warning = redact(found.warning)
        return found

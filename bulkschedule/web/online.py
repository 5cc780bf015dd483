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

After the org, a check works out the plan (`app.online.plan_sheet`: what a run would do with
each row, create, update, unchanged or invalid, and what each update changes) from the journal
and the listings just read, as `job.send` will; nothing is sent and no run is registered. When
the org was not read the rows are compared with what the journal last sent, and the page says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkschedule.app.logs import redact
from bulkschedule.app.online import Online, Reading, check_online, plan_sheet
from bulkschedule.app.target import Target
from bulkschedule.core.errors import JobError
from bulkschedule.send.plan import Action, Plan, Zoho
from bulkschedule.sheet.schema import Validation
from bulkschedule.web.checking import SHOWN_PROBLEMS

log = logging.getLogger("bulkschedule")

ORG_TIMEOUT = 30.0  # seconds the online stage of a check or a run start may take

#: Where the org is read (a target with credentials, or the sandbox), or why it is not.
TargetOrWhy = Target | str
#: Where a run's journal is: the state folder and the API base its rows are recorded under.
JournalAt = Callable[[], tuple[Path, str]]


def reading(options: Mapping[str, Any]) -> Reading:
    """The upload form's options (path IDs for every row, month-first dates) as the stage's."""
    return Reading(course=options.get("course"), batch=options.get("batch"),
                   module=options.get("module"), month_first=bool(options.get("month_first")))


def plan_info(plan: Plan, *, listed: bool, shown: int = SHOWN_PROBLEMS) -> dict[str, Any]:
    """What the upload's page says about the plan (kept in its summary, as JSON): the rows per
    action, the first ``shown`` updates with their changes (field, old, new) and their total,
    the sessions only Zoho holds in the sheet's modules, and what the rows were compared with
    (``listed``: Zoho's listings; else what the journal last sent)."""
    updates = [s for s in plan.steps if s.action is Action.UPDATE]
    return {
        "plan": plan.counts(),
        "updates": [{"row": s.req.row, "session": s.session_id or "", "note": s.note,
                     "changes": [[name, old, new] for name, (old, new) in s.changes.items()]}
                    for s in updates[:shown]],
        "update_total": len(updates),
        "only_in_zoho": len(plan.only_in_zoho),
        "compared_with": "zoho" if listed else "journal",
    }


@dataclass
class OrgReads:
    """How the page reads the org: ``target`` says where, or why not (no credentials), each
    time it is asked (a fixed secrets file needs no restart); ``max_age`` is how long cached
    lists are trusted (the ``max_age`` setting); ``timeout`` bounds each stage. ``journal``
    says where the journal is, for the plan a check shows (None: no plan)."""

    target: Callable[[], TargetOrWhy]
    max_age: float
    timeout: float = ORG_TIMEOUT
    journal: JournalAt | None = None

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
        why the org was not read; ``held``: rows Zoho already holds) and about the plan
        (`plan_info`, or ``plan_warning``: why there is none). Never fails."""
        validation, info, zoho = await self._org(validation, options)
        info.update(await self._plan(validation, zoho))
        return validation, info

    async def _org(self, validation: Validation, options: Mapping[str, Any]
                   ) -> tuple[Validation, dict[str, Any], Zoho | None]:
        target = self.target()
        if isinstance(target, str):
            return validation, {"org_warning": f"Not checked against the org in Zoho: {target}."
                                }, None
        try:
            found = await self._stage(target, validation, options)
        except TimeoutError:
            return validation, {"org_warning": (
                f"The org in Zoho could not be read within {self.timeout:g} s (a lockout, or "
                "a slow connection): only the sheet's own checks ran. A run checks the org "
                "again before it sends.")}, None
        except JobError as err:
            return validation, {"org_warning": (
                f"The org in Zoho could not be read ({redact(str(err))}): only the sheet's own "
                "checks ran.")}, None
        info: dict[str, Any] = {"org_line": found.line().removeprefix("org: "),
                                "held": len(found.held)}
        if found.warning:
            warning = redact(found.warning)
            info["org_warning"] = f"{warning[:1].upper()}{warning[1:]}."
        return found.validation, info, found.zoho

    async def _plan(self, validation: Validation, zoho: Zoho | None) -> dict[str, Any]:
        """The plan of a checked upload (`plan_info`), in a worker thread (a 100,000-row
        sheet's requests, journal look-ups and comparisons take 7 to 13 s: measured in
        docs/upload-page.md), waiting at most the time limit for another run's write to the
        journal; or why there is none. Nothing when the sheet has no valid row or no journal
        is known. A client that goes away leaves the thread to finish (it only reads)."""
        if self.journal is None or validation.fatal or not validation.sessions:
            return {}
        state_dir, api_base = self.journal()
        try:
            plan = await asyncio.to_thread(lambda: asyncio.run(plan_sheet(
                validation, state_dir, api_base, zoho, wait=self.timeout)))
        except JobError as err:
            why = redact(str(err))
        except Exception:  # the plan is extra: a bug in it must not cost the check
            log.exception("web: the plan of a checked upload failed")
            why = "an internal error: see the server log"
        else:
            return plan_info(plan, listed=zoho is not None)
        return {"plan_warning": (f"What a run would do could not be worked out ({why}): a run "
                                 "works it out again before it sends.")}

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

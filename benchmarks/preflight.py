"""What knowing the org costs: reads spent before a 1,000-row run, cold and warm cache.

The sandbox holds 3 courses, 6 batches, 12 modules, 40 trainers and 20 rooms, and already 300 of
the sheet's sessions (created "in Zoho's own screens", unknown to the journal). The sheet is
checked online with a cold cache, again with a warm one, then sent; the sandbox counts every
call. Targets (issue 11): reads with a cold cache at most 5% of the rows, with a warm cache only
the session listings, and 0 duplicates.

    python benchmarks/preflight.py
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

from bulkschedule.app import job
from bulkschedule.app.online import Reading, check_online
from bulkschedule.core.problems import Status
from bulkschedule.sandbox.catalogue import catalogue_from_dict
from bulkschedule.sandbox.server import Sandbox, SandboxConfig
from bulkschedule.send.api import SendSettings
from bulkschedule.zoho.auth import StaticToken

ROWS, HELD = 1000, 300
BASE_ID = 478346000030000000


def org() -> dict[str, Any]:
    """3 courses x 2 batches x 2 modules, 40 trainers, 20 rooms; batches span 2027."""
    ident = iter(range(BASE_ID, BASE_ID + 10_000))
    courses = []
    for c in range(3):
        batches = []
        for b in range(2):
            modules = [{"id": str(next(ident)), "name": f"Module {m + 1}"} for m in range(2)]
            batches.append({"id": str(next(ident)), "name": f"Batch {b + 1}",
                            "startDate": "01-01-2027", "endDate": "31-12-2027",
                            "modules": modules})
        courses.append({"id": str(next(ident)), "name": f"Course {c + 1}", "state": "published",
                        "batches": batches})
    trainers = [{"erecno": str(next(ident)), "name": f"Trainer {t + 1}",
                 "email": f"trainer{t + 1}@example.com", "status": "active"} for t in range(40)]
    rooms = [{"id": str(next(ident)), "name": f"Room {r + 1}",
              "location": {"id": str(next(ident)), "name": "Campus"}} for r in range(20)]
    return {"courses": courses, "trainers": trainers, "rooms": rooms}


def sessions(data: dict[str, Any]) -> list[dict[str, str]]:
    """1,000 sessions with no double booking: each trainer and room teaches one hour a day."""
    modules = [(c["id"], b["id"], m["id"]) for c in data["courses"] for b in c["batches"]
               for m in b["modules"]]
    out = []
    for i in range(ROWS):
        course, batch, module = modules[i % len(modules)]
        day = dt.date(2027, 2, 1) + dt.timedelta(days=i // 40)
        hour = 8 + (i % 40) // 20 * 2
        out.append({"courseId": course, "batchId": batch, "moduleId": module,
                    "name": f"Session {i + 1:04d}",
                    "trainerErecno": data["trainers"][i % 40]["erecno"], "type": "Classroom",
                    "date": day.strftime("%d-%m-%Y"), "startTime": f"{hour:02d}:00",
                    "endTime": f"{hour + 1:02d}:00",
                    "roomId": data["rooms"][i % 20]["id"] if i % 40 < 20 else ""})
    return out


async def main() -> int:
    data = org()
    rows = sessions(data)
    with tempfile.TemporaryDirectory() as tmp:
        sheet = Path(tmp) / "term.csv"
        with sheet.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        config = SandboxConfig(rate_calls=100_000, rate_seconds=1, lock_seconds=1,
                               catalogue=catalogue_from_dict(data, "benchmark org"))
        async with Sandbox(config) as sb:
            for r in rows[:HELD]:  # already in Zoho, unknown to the journal
                fields = {k: v for k, v in r.items()
                          if k not in ("courseId", "batchId", "moduleId") and v}
                fields["type"] = "0"
                hour = int(fields["startTime"][:2])  # 8 or 10: the morning
                fields["startTime"] = f"{hour:02d}:00 AM"
                fields["endTime"] = f"{hour + 1:02d}:00 AM"
                sb.add_session(r["courseId"], r["batchId"], r["moduleId"], **fields)
            settings = SendSettings(api_base=sb.url, state_dir=Path(tmp) / "state",
                                    rate_calls=100_000, rate_period=1, workers=16)

            def tokens(_session: object) -> StaticToken:
                return StaticToken(sb.token)

            validation = job.load(sheet)
            figures = []
            for label in ("cold cache", "warm cache"):
                before = sb.stats()["reads"]
                found = await check_online(validation.table, validation, settings,
                                           tokens=tokens, reading=Reading(), max_age=3600)
                reads = sb.stats()["reads"] - before
                figures.append((label, reads, found.spent.cached, len(found.held),
                                found.validation.errors))
            result = await job.send(found.validation, settings, tokens=tokens,
                                    results_path=None, held=found.held)
            stored = sb.sessions()
            names = [s["sessionName"] for s in stored]
            duplicates = len(names) - len(set(names))
    print(f"{ROWS} rows over 12 modules, 40 trainers, 20 rooms; {HELD} already in Zoho")
    print(f"{'':12} {'reads':>6} {'% rows':>7} {'cache':>6} {'held':>5} {'errors':>7}")
    for label, reads, cached, held, errors in figures:
        print(f"{label:12} {reads:6d} {reads / ROWS:7.1%} {cached:6d} {held:5d} {errors:7d}")
    counts = result.counts
    print(f"sent: created {counts.get(str(Status.CREATED), 0)}, exists "
          f"{counts.get(str(Status.EXISTS), 0)}; sessions in the sandbox {len(stored)}, "
          f"duplicates {duplicates}")
    cold, warm = figures[0][1], figures[1][1]
    ok = cold <= ROWS * 0.05 and warm == 12 and duplicates == 0 and len(stored) == ROWS
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

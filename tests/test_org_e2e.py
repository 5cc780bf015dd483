"""Knowing the org, end to end: ``validate --online``, ``run``, ``org`` against the sandbox's org
over loopback HTTP (the CLI as a real subprocess), and the online stage's library call.

Every assertion is on a problem code, a status, a count of calls or sessions, or an exit code.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from test_e2e import TODAY, cli, cli_env, read_results

from bulkschedule.app.online import Reading, check_online
from bulkschedule.core.errors import JobError
from bulkschedule.sandbox.catalogue import DEFAULT_ORG, catalogue_from_dict
from bulkschedule.sandbox.server import Sandbox, SandboxConfig
from bulkschedule.send.api import SendSettings
from bulkschedule.sheet.reader import read_table
from bulkschedule.sheet.schema import validate
from bulkschedule.zoho.auth import StaticToken

pytestmark = pytest.mark.slow

COURSE, BATCH = "478346000019479103", "478346000019479115"  # Spring term 2027: 04-01..26-03
FOUNDATIONS, CARE = "478346000019479119", "478346000019479131"
SUMMER_FOUNDATIONS = "478346000019479155"  # a module of another batch
DRAFTED = ("478346000019481003", "478346000019481015", "478346000019481027")
HENRY, PRIYA = "478346000008251001", "478346000008251017"
ROOM_A = "478346000010125093"
HEADER = ["courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date",
          "startTime", "endTime", "roomId"]


def org(**extra: Any) -> SandboxConfig:
    """The default org plus two trainers called Asha Rao (for ambiguous names)."""
    data = json.loads(json.dumps(DEFAULT_ORG))
    data["trainers"] += [
        {"erecno": "478346000008251049", "name": "Asha Rao", "email": "asha.rao@example.com",
         "status": "active"},
        {"erecno": "478346000008251065", "name": "Asha  Rao", "email": "asha.r@example.com",
         "status": "active"},
    ]
    return SandboxConfig(rate_calls=50, rate_seconds=1, lock_seconds=1,
                         catalogue=catalogue_from_dict(data, "test org"), **extra)


def sheet(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def row(name: str, *, course: str = COURSE, batch: str = BATCH, module: str = FOUNDATIONS,
        trainer: str = HENRY, date: str = "10-02-2027", start: str = "10:00 AM",
        end: str = "11:00 AM", room: str = "") -> list[str]:
    return [course, batch, module, name, trainer, "Classroom", date, start, end, room]


def api_args(sb: Sandbox, state: Path) -> list[str]:
    return ["--api-base", sb.url, "--state", str(state), "--rate", "50/1", "--lock-seconds", "1"]


def calls_line(text: str) -> tuple[int, int]:
    m = re.search(r"org: (\d+) API calls?, (\d+) answered from the cache", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def by_row(out: str) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for p in json.loads(out)["problems"]:
        found.setdefault(p["row"], set()).add(p["code"])
    return found


async def test_validate_online_reports_every_org_check_by_row_and_code(tmp_path: Path) -> None:
    async with Sandbox(org()) as sb:
        sb.add_session(COURSE, BATCH, CARE, name="Held in Zoho", trainerErecno=PRIYA, type="0",
                       date="11-02-2027", startTime="09:30 AM", endTime="10:30 AM",
                       roomId=ROOM_A)
        path = sheet(tmp_path / "term.csv", [
            row("Fine"),                                                   # 2
            row("Wrong module", module=SUMMER_FOUNDATIONS, date="15-02-2027"),  # 3
            row("Too late", date="14-05-2027"),                            # 4
            row("Unknown trainer", trainer="478346000099999999", date="16-02-2027"),  # 5
            row("Unknown room", room="478346000099999998", date="17-02-2027"),  # 6
            row("Trainer busy", trainer=PRIYA, date="11-02-2027"),         # 7
            row("Room touches", date="11-02-2027", start="10:30 AM", end="11:30 AM",
                room=ROOM_A),                                              # 8: touching: fine
            row("Room clash", date="11-02-2027", start="10:00 AM", end="10:30 AM",
                room=ROOM_A, trainer="478346000008251033", module=CARE),   # 9
            row("Drafted course", course=DRAFTED[0], batch=DRAFTED[1], module=DRAFTED[2],
                date="14-09-2027"),                                        # 10
        ])
        done = await cli("validate", str(path), "--online", "--json", "--today", TODAY,
                         *api_args(sb, tmp_path / "state"), env=cli_env(tmp_path / "home"))
    assert done.code == 1, done.err
    codes = by_row(done.out)
    assert 2 not in codes and 8 not in codes
    assert codes[3] == {"org.module_not_in_batch"}
    assert codes[4] == {"org.date_outside_batch"}
    assert codes[5] == {"org.trainer_unknown"}
    assert codes[6] == {"org.room_unknown"}
    assert codes[7] == {"org.trainer_busy"}
    assert codes[9] == {"org.room_busy"}
    assert codes[10] == {"org.course_unpublished"}
    problems = {p["row"]: p for p in json.loads(done.out)["problems"]}
    assert "04-01-2027 to 26-03-2027" in problems[4]["message"]
    assert problems[10]["severity"] == "warning"
    calls, _ = calls_line(done.err)
    assert 0 < calls <= 12


async def test_names_resolve_uniquely_by_name_or_email_and_say_why_when_they_cannot(
        tmp_path: Path) -> None:
    async with Sandbox(org()) as sb:
        path = sheet(tmp_path / "names.csv", [
            row("By name", course="New starter programme", batch="spring term 2027",
                module="Foundations", trainer="Henry Adams", room="Training Room A"),   # 2
            row("By email", trainer="PRIYA.RAMAN@example.com", date="12-02-2027"),      # 3
            row("Ambiguous", trainer="asha rao", date="13-02-2027"),                     # 4
            row("Unknown", trainer="Henry Adamz", date="14-02-2027"),                    # 5
            row("Batch elsewhere", batch="Summer term 2028", date="15-02-2027"),         # 6
        ])
        env = cli_env(tmp_path / "home")
        args = [*api_args(sb, tmp_path / "state"), "--today", TODAY]
        done = await cli("validate", str(path), "--online", "--json", *args, env=env)
        assert done.code == 1, done.err
        codes = by_row(done.out)
        problems = {p["row"]: p["message"] for p in json.loads(done.out)["problems"]}
        assert 2 not in codes and 3 not in codes
        assert codes[4] == {"name.ambiguous"}
        assert "478346000008251049" in problems[4] and "asha.r@example.com" in problems[4]
        assert codes[5] == {"name.unknown"} and '"Henry Adams"' in problems[5]
        assert codes[6] == {"name.unknown"}  # no such batch in that course; no "not an ID" too
        online_calls, _ = calls_line(done.err)

        # offline, the same names resolve from the cache the online run filled: no call at all
        reads = sb.stats()["reads"]
        offline = await cli("validate", str(path), "--json", *args, env=env)
        assert by_row(offline.out) == codes
        assert sb.stats()["reads"] == reads
        assert online_calls > 0

        # the run sends the resolved rows with their IDs; the workbook keeps the names as typed
        results = tmp_path / "names.results.xlsx"
        ran = await cli("run", str(path), "--results", str(results), "--yes", *args, env=env)
        assert ran.code == 1, ran.err
        statuses = {r.row: r.status for r in read_results(results).values()}
        assert statuses == {2: "created", 3: "created", 4: "invalid", 5: "invalid",
                            6: "invalid"}
        held = {s["sessionName"]: s for s in sb.sessions()}
        assert held["By name"]["trainerErecno"] == HENRY
        assert held["By email"]["trainerErecno"] == PRIYA


async def test_a_name_needs_online_when_nothing_is_cached(tmp_path: Path) -> None:
    path = sheet(tmp_path / "names.csv", [row("By name", trainer="Henry Adams")])
    done = await cli("validate", str(path), "--json", "--state", str(tmp_path / "state"),
                     "--today", TODAY, env=cli_env(tmp_path / "home"))
    assert done.code == 1
    problem, = json.loads(done.out)["problems"]
    assert problem["code"] == "name.needs_online" and "--online" in problem["message"]
    assert not (tmp_path / "state").exists()  # a plain validate leaves no state behind


async def test_the_cache_keeps_the_org_and_max_age_says_how_long(tmp_path: Path) -> None:
    async with Sandbox(org()) as sb:
        env = cli_env(tmp_path / "home")
        state = tmp_path / "state"
        refreshed = await cli("org", "refresh", "--course", COURSE, *api_args(sb, state),
                              env=env)
        assert refreshed.code == 0, refreshed.err
        assert "3 courses" in refreshed.out and "5 trainers" in refreshed.out
        shown = await cli("org", "show", "--json", *api_args(sb, state), env=env)
        lists = {(x["kind"], x["parent"]): x for x in json.loads(shown.out)["lists"]}
        assert lists["courses", ""]["entries"] == 3
        assert lists["batches", COURSE]["entries"] == 2
        assert all(x["age_seconds"] >= 0 for x in lists.values())

        path = sheet(tmp_path / "term.csv",
                     [row("One"), row("Two", module=CARE, date="11-02-2027")])
        args = ["validate", str(path), "--online", "--today", TODAY, *api_args(sb, state)]
        warm = await cli(*args, env=env)
        calls, cached = calls_line(warm.out + warm.err)
        assert calls == 2 and cached >= 4  # only the two modules' session listings
        cold = await cli(*args, "--max-age", "0", env=env)
        calls, cached = calls_line(cold.out + cold.err)
        assert calls > 2 and cached == 0

        found = await cli("org", "find", "foundations", "--json", *api_args(sb, state), env=env)
        matches = json.loads(found.out)["matches"]
        assert {m["id"] for m in matches} == {FOUNDATIONS, SUMMER_FOUNDATIONS}
        assert {m["within"] for m in matches} == {"New starter programme › Spring term 2027",
                                                  "New starter programme › Summer term 2027"}
        none = await cli("org", "find", "zebra", *api_args(sb, state), env=env)
        assert none.code == 1


async def test_two_state_folders_one_after_the_other_create_nothing_twice(
        tmp_path: Path) -> None:
    async with Sandbox(org()) as sb:
        path = sheet(tmp_path / "term.csv",
                     [row(f"Session {i}", date=f"{10 + i:02d}-02-2027") for i in range(6)])
        env = cli_env(tmp_path / "home")
        first = await cli("run", str(path), "--results", str(tmp_path / "a.xlsx"), "--yes",
                          "--today", TODAY, *api_args(sb, tmp_path / "state-a"), env=env)
        assert first.code == 0, first.err
        created = sb.stats()["created"]
        assert created == 6
        second = await cli("run", str(path), "--results", str(tmp_path / "b.xlsx"), "--yes",
                           "--today", TODAY, *api_args(sb, tmp_path / "state-b"), env=env)
        assert second.code == 0, second.err
        assert sb.stats()["created"] == 6 and len(sb.sessions()) == 6
        again = read_results(tmp_path / "b.xlsx")
        assert {r.status for r in again.values()} == {"exists"}
        assert {r.message for r in again.values()} == {"already in Zoho"}
        ids = {s["sessionName"]: s["sessionId"] for s in sb.sessions()}
        assert all(r.session_id == ids[str(r.name)] for r in again.values())
        # and it was journalled: a third run in state-b reads only the module's session listing
        # (to compare each row with what Zoho holds now), no course, batch or module lists
        reads = sb.stats()["reads"]
        third = await cli("run", str(path), "--results", str(tmp_path / "c.xlsx"), "--yes",
                          "--today", TODAY, *api_args(sb, tmp_path / "state-b"), env=env)
        assert third.code == 0 and sb.stats()["reads"] == reads + 1
        assert sb.stats()["created"] == 6
        assert {r.status for r in read_results(tmp_path / "c.xlsx").values()} == {"exists"}


async def test_an_org_that_cannot_be_read_warns_and_the_run_goes_on(tmp_path: Path) -> None:
    async with Sandbox(org(org_reads=False)) as sb:
        sb.add_session(COURSE, BATCH, FOUNDATIONS, name="Already there", trainerErecno=HENRY,
                       type="0", date="10-02-2027", startTime="10:00 AM", endTime="11:00 AM")
        path = sheet(tmp_path / "term.csv", [row("Already there"),
                                             row("New one", date="11-02-2027")])
        env = cli_env(tmp_path / "home")
        args = ["--today", TODAY, *api_args(sb, tmp_path / "state")]
        strict = await cli("validate", str(path), "--online", *args, env=env)
        assert strict.code == 2 and "cannot read the org" in strict.err
        assert "/api/v1/" in strict.err  # names the endpoint
        done = await cli("run", str(path), "--results", str(tmp_path / "r.xlsx"), "--yes",
                         *args, env=env)
        assert done.code == 0, done.err
        assert re.search(r"warning: could not read the org .*offline checks", done.err)
        statuses = {r.name: r.status for r in read_results(tmp_path / "r.xlsx").values()}
        assert statuses == {"Already there": "exists", "New one": "created"}
        assert sb.stats()["created"] == 1


async def test_check_online_in_process_strict_and_lenient(tmp_path: Path) -> None:
    """The library call the CLI and the upload page share: strict raises, lenient warns."""
    path = sheet(tmp_path / "term.csv", [row("One")])
    table = read_table(path)
    offline = validate(table)
    async with Sandbox(org(org_reads=False)) as sb:
        settings = SendSettings(api_base=sb.url, state_dir=tmp_path / "state", rate_calls=50,
                                rate_period=1)
        lenient = await check_online(table, offline, settings,
                                     tokens=lambda _s: StaticToken(sb.token),
                                     reading=Reading(), max_age=3600)
        assert lenient.warning is not None and "7218" not in (lenient.warning or "")[:0]
        assert lenient.validation.valid == 1 and lenient.calls >= 1
        with pytest.raises(JobError, match="cannot read the org"):
            await check_online(table, offline, settings,
                               tokens=lambda _s: StaticToken(sb.token), reading=Reading(),
                               max_age=3600, strict=True)


async def test_template_online_offers_the_org_in_drop_downs_that_resolve_back(
        tmp_path: Path) -> None:
    async with Sandbox(org()) as sb:
        env = cli_env(tmp_path / "home")
        out = tmp_path / "template.xlsx"
        done = await cli("template", str(out), "--online", *api_args(sb, tmp_path / "state"),
                         env=env)
        assert done.code == 0, done.err
        wb = openpyxl.load_workbook(out)
        lists = wb["Lists"]
        assert lists.sheet_state == "hidden"
        columns = {lists.cell(1, c).value: [lists.cell(r, c).value
                                             for r in range(2, lists.max_row + 1)
                                             if lists.cell(r, c).value]
                   for c in range(1, lists.max_column + 1)}
        assert "New starter programme › Spring term 2027 › Foundations" in columns["moduleId"]
        assert "Henry Adams <henry.adams@example.com>" in columns["trainerErecno"]
        assert "Training Room A" in columns["roomId"] and len(columns["courseId"]) == 3
        header = [c.value for c in wb["Sessions"][1]]
        formulas = {str(dv.sqref).split(":")[0]: dv.formula1
                    for dv in wb["Sessions"].data_validations.dataValidation}
        module_col = openpyxl.utils.get_column_letter(header.index("moduleId") + 1)
        assert formulas[f"{module_col}2"].startswith("'Lists'!$")

        # the choices, as picked, resolve back to the IDs
        sessions = wb["Sessions"]
        picked = {"courseId": "New starter programme",
                  "batchId": "New starter programme › Spring term 2027",
                  "moduleId": "New starter programme › Spring term 2027 › Foundations",
                  "name": "Picked from the lists",
                  "trainerErecno": "Henry Adams <henry.adams@example.com>", "type": "Classroom",
                  "date": "10-02-2027", "startTime": "10:00 AM", "endTime": "11:00 AM",
                  "roomId": "Training Room A"}
        for name, value in picked.items():
            sessions.cell(2, header.index(name) + 1).value = value
        filled = tmp_path / "filled.xlsx"
        wb.save(filled)
        checked = await cli("validate", str(filled), "--online", "--json", "--today", TODAY,
                            *api_args(sb, tmp_path / "state"), env=env)
        assert checked.code == 0, checked.out + checked.err
        assert json.loads(checked.out)["valid"] == 1


async def test_reports_keep_the_names_as_typed_and_list_the_ids_they_became(
        tmp_path: Path) -> None:
    async with Sandbox(org()) as sb:
        path = sheet(tmp_path / "names.csv", [
            row("By name", course="New starter programme", trainer="Henry Adams"),
            row("By ID", date="11-02-2027"),
        ])
        env = cli_env(tmp_path / "home")
        args = [*api_args(sb, tmp_path / "state"), "--today", TODAY]
        report = tmp_path / "checked.xlsx"
        checked = await cli("validate", str(path), "--online", "--report", str(report), *args,
                            env=env)
        assert checked.code == 0, checked.out + checked.err
        results = tmp_path / "names.results.xlsx"
        ran = await cli("run", str(path), "--results", str(results), "--yes", *args, env=env)
        assert ran.code == 0, ran.err
    for workbook in (report, results):
        wb = openpyxl.load_workbook(workbook, read_only=True)
        names = [tuple(r) for r in wb["Names"].iter_rows(values_only=True)]
        assert names == [("row", "column", "typed", "id"),
                         (2, "courseId", "New starter programme", COURSE),
                         (2, "trainerErecno", "Henry Adams", HENRY)]
        wb.close()
    wb = openpyxl.load_workbook(results, read_only=True)
    header, first, *_ = wb["Results"].iter_rows(values_only=True)
    assert first[header.index("courseId")] == "New starter programme"  # as typed
    assert first[header.index("status")] == "created"
    wb.close()


async def test_validate_online_checks_each_session_of_a_repeating_row(tmp_path: Path) -> None:
    """Names resolved online re-validate the sheet with its holidays; every session is held to
    the batch's dates and to what Zoho holds, and a problem names its session's date."""
    async with Sandbox(org()) as sb:
        sb.add_session(COURSE, BATCH, FOUNDATIONS, name="Held in Zoho", trainerErecno=HENRY,
                       type="0", date="08-03-2027", startTime="10:30 AM", endTime="11:30 AM")
        path = tmp_path / "term.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([*HEADER, "repeat", "until"])
            w.writerow([*row("Weekly {n}", trainer="Henry Adams", date="01-03-2027"),
                        "weekly", "05-04-2027"])
        holidays = tmp_path / "holidays.csv"
        holidays.write_text("date,name\n15-03-2027,Staff day\n", encoding="utf-8")
        done = await cli("validate", str(path), "--online", "--json", "--today", TODAY,
                         "--holidays", str(holidays), *api_args(sb, tmp_path / "state"),
                         env=cli_env(tmp_path / "home"))
    assert done.code == 1, done.err
    data = json.loads(done.out)
    assert data["expansions"] == [{"row": 2, "sessions": 5, "first": "01-03-2027",
                                   "last": "05-04-2027"}]
    problems = [(p["row"], p["code"], p["message"]) for p in data["problems"]]
    outside = [m for r, c, m in problems if c == "org.date_outside_batch"]
    assert [m[:10] for m in outside] == ["29-03-2027", "05-04-2027"]
    (busy,) = [m for r, c, m in problems if c == "org.trainer_busy"]
    assert "on 08-03-2027" in busy and "Held in Zoho" in busy
    assert {r for r, _, _ in problems} == {2}
    assert not any(c.startswith("name.") for _, c, _ in problems)

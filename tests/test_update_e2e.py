"""Changing a term that is already loaded, end to end (issue 12): the results workbook edited and
run again, against the sandbox over loopback HTTP (the CLI as a real subprocess).

Every assertion is on a sandbox counter (creates, updates), a stored session, a status, a JSON
field or an exit code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import openpyxl
import pytest
from test_e2e import TODAY, cli, cli_env, read_results
from test_org_e2e import BATCH, COURSE, HENRY, PRIYA, ROOM_A, api_args, org, row, sheet

from bulkschedule.sandbox.server import Sandbox

pytestmark = pytest.mark.slow

FIVE = [row(f"Lesson {i}", date=f"{10 + i:02d}-02-2027") for i in range(5)]


def edit(results: Path, out: Path, changes: dict[int, dict[str, str]]) -> Path:
    """The admin's edit: the results workbook with some input cells changed, saved anew."""
    wb = openpyxl.load_workbook(results)
    ws = wb["Results"]
    col = {c.value: c.column for c in ws[1]}
    for r in ws.iter_rows(min_row=2):
        for name, value in changes.get(int(r[0].value), {}).items():
            ws.cell(r[0].row, col[name], value)
    wb.save(out)
    return out


def changes_column(path: Path) -> dict[int, str | None]:
    ws = openpyxl.load_workbook(path, read_only=True)["Results"]
    lines = ws.iter_rows(values_only=True)
    col = {name: i for i, name in enumerate(next(lines))}
    return {int(v[col["row"]]): v[col["changes"]] for v in lines}


def sheet_lines(path: Path, name: str) -> list[dict[str, object]]:
    wb = openpyxl.load_workbook(path, read_only=True)
    if name not in wb.sheetnames:
        return []
    lines = wb[name].iter_rows(values_only=True)
    header = next(lines)
    return [dict(zip(header, v, strict=True)) for v in lines]


def stored(sb: Sandbox) -> dict[str, dict[str, str]]:
    return {s["sessionId"]: s for s in sb.sessions()}


async def test_an_edited_results_workbook_updates_exactly_the_edited_rows(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    async with Sandbox(org()) as sb:
        api = api_args(sb, tmp_path / "state")
        path = sheet(tmp_path / "term.csv", FIVE)
        first = await cli("run", str(path), "--results", str(tmp_path / "a.xlsx"), "--yes",
                          "--today", TODAY, *api, env=env)
        assert first.code == 0, first.err
        assert sb.stats()["created"] == 5
        ids = {r.row: r.session_id for r in read_results(tmp_path / "a.xlsx").values()}
        edited = edit(tmp_path / "a.xlsx", tmp_path / "edited.xlsx", {
            2: {"startTime": "11:00 AM", "endTime": "12:00 PM"},
            3: {"trainerErecno": PRIYA},
            4: {"roomId": ROOM_A},
        })

        # read back as input: the results columns are not "unknown columns"
        checked = await cli("validate", str(edited), "--json", "--today", TODAY, env=env)
        assert checked.code == 0, checked.out
        assert not [p for p in json.loads(checked.out)["problems"]
                    if p["code"] == "header.unknown"]

        plan = await cli("run", str(edited), "--dry-run", "--json", "--results",
                         str(tmp_path / "plan.xlsx"), "--today", TODAY, *api, env=env)
        assert plan.code == 0, plan.err
        document = json.loads(plan.out)
        assert set(document) == {"file", "rows", "plan", "actions"}
        assert document["rows"] == 5
        assert document["plan"] == {"create": 0, "update": 3, "unchanged": 2, "invalid": 0}
        actions = {a["row"]: a for a in document["actions"]}
        assert set(actions) == {2, 3, 4, 5, 6}
        assert all(set(a) == {"row", "action", "sessionId", "changes"} for a in actions.values())
        assert actions[2]["changes"] == {"startTime": ["10:00 AM", "11:00 AM"],
                                         "endTime": ["11:00 AM", "12:00 PM"]}
        assert actions[3]["changes"] == {"trainerErecno": [HENRY, PRIYA]}
        assert actions[4]["changes"] == {"roomId": ["", ROOM_A]}
        assert {r: a["sessionId"] for r, a in actions.items()} == ids
        assert [actions[r]["action"] for r in (5, 6)] == ["unchanged", "unchanged"]
        assert {r.status for r in read_results(tmp_path / "plan.xlsx").values()} == {
            "would-update", "exists"}
        assert changes_column(tmp_path / "plan.xlsx") == {
            2: "startTime: 10:00 AM → 11:00 AM; endTime: 11:00 AM → 12:00 PM",
            3: f"trainerErecno: {HENRY} → {PRIYA}", 4: f"roomId: (none) → {ROOM_A}",
            5: None, 6: None}
        assert sb.stats()["updated"] == 0

        # without --update: nothing patched, the rows are changed (exit 1)
        plain = await cli("run", str(edited), "--results", str(tmp_path / "b.xlsx"), "--yes",
                          "--today", TODAY, *api, env=env)
        assert plain.code == 1
        assert sb.stats()["updated"] == 0
        statuses = {r.row: r.status for r in read_results(tmp_path / "b.xlsx").values()}
        assert statuses == {2: "changed", 3: "changed", 4: "changed", 5: "exists", 6: "exists"}
        assert "--update" in str(read_results(tmp_path / "b.xlsx")[2].message)

        # with --update: exactly the three edited rows are patched, nothing is created
        updating = await cli("run", str(edited), "--update", "--results",
                             str(tmp_path / "c.xlsx"), "--yes", "--today", TODAY, *api, env=env)
        assert updating.code == 0, updating.err
        assert sb.stats()["updated"] == 3 and sb.stats()["created"] == 5
        after = read_results(tmp_path / "c.xlsx")
        assert {r.row: r.status for r in after.values()} == {
            2: "updated", 3: "updated", 4: "updated", 5: "exists", 6: "exists"}
        assert {r.row: r.session_id for r in after.values()} == ids
        assert changes_column(tmp_path / "c.xlsx")[3] == f"trainerErecno: {HENRY} → {PRIYA}"
        held = stored(sb)
        assert len(held) == 5
        assert held[ids[2]]["sessionStartTime"] == "11:00 AM"
        assert held[ids[3]]["trainerErecno"] == PRIYA
        assert held[ids[4]]["roomId"] == ROOM_A

        # run again: nothing differs any more, nothing is patched
        again = await cli("run", str(edited), "--update", "--results", str(tmp_path / "d.xlsx"),
                          "--yes", "--today", TODAY, *api, env=env)
        assert again.code == 0, again.err
        assert sb.stats()["updated"] == 3 and sb.stats()["created"] == 5
        assert {r.status for r in read_results(tmp_path / "d.xlsx").values()} == {"exists"}


async def test_a_session_edited_in_zoho_shows_up_as_a_change(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    async with Sandbox(org()) as sb:
        api = api_args(sb, tmp_path / "state")
        path = sheet(tmp_path / "term.csv", FIVE[:2])
        first = await cli("run", str(path), "--results", str(tmp_path / "a.xlsx"), "--yes",
                          "--today", TODAY, *api, env=env)
        assert first.code == 0, first.err
        sid = read_results(tmp_path / "a.xlsx")[2].session_id
        assert sid is not None
        sb.edit_session(sid, startTime="02:00 PM", endTime="03:00 PM")

        plan = await cli("run", str(path), "--dry-run", "--json", "--results",
                         str(tmp_path / "plan.xlsx"), "--today", TODAY, *api, env=env)
        assert plan.code == 0, plan.err
        actions = {a["row"]: a for a in json.loads(plan.out)["actions"]}
        assert actions[2]["action"] == "update" and actions[2]["sessionId"] == sid
        assert actions[2]["changes"] == {"startTime": ["02:00 PM", "10:00 AM"],
                                         "endTime": ["03:00 PM", "11:00 AM"]}
        assert actions[3]["action"] == "unchanged"

        back = await cli("run", str(path), "--update", "--results", str(tmp_path / "b.xlsx"),
                         "--yes", "--today", TODAY, *api, env=env)
        assert back.code == 0, back.err
        assert stored(sb)[sid]["sessionStartTime"] == "10:00 AM"
        assert sb.stats()["updated"] == 1 and sb.stats()["created"] == 2


def first_lost_then_kept(rate: float) -> int:
    """A seed whose first draw loses a reply and whose second does not (the sandbox draws once
    per session reply when only ``lose_reply_rate`` is set)."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if rng.random() < rate <= rng.random():
            return seed
    raise AssertionError("no such seed")  # pragma: no cover


async def test_a_lost_patch_reply_is_sent_again_and_the_session_updated_once(
        tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    config = org(lose_reply_rate=0.5, seed=first_lost_then_kept(0.5))
    async with Sandbox(config) as sb:
        made = sb.add_session(COURSE, BATCH, row("x")[2], name="Lesson A", trainerErecno=HENRY,
                              type="0", date="10-02-2027", startTime="10:00 AM",
                              endTime="11:00 AM")
        sid = made["sessionId"]
        path = tmp_path / "term.csv"
        path.write_text(
            "sessionId,courseId,batchId,moduleId,name,trainerErecno,type,date,startTime,endTime\n"
            f"{sid},{COURSE},{BATCH},{row('x')[2]},Lesson A,{PRIYA},Classroom,10-02-2027,"
            "10:00 AM,11:00 AM\n", encoding="utf-8")
        done = await cli("run", str(path), "--update", "--results", str(tmp_path / "r.xlsx"),
                         "--yes", "--today", TODAY, *api_args(sb, tmp_path / "state"), env=env)
        assert done.code == 0, done.err
        stats = sb.stats()
        assert stats["replies_lost"] == 1 and stats["updated"] == 2 and stats["created"] == 0
        result = read_results(tmp_path / "r.xlsx")[2]
        assert (result.status, result.session_id, result.attempts) == ("updated", sid, 2)
        assert len(sb.sessions()) == 1 and stored(sb)[sid]["trainerErecno"] == PRIYA


async def test_a_session_deleted_in_zoho_fails_its_row_with_how_to_create_it_again(
        tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    async with Sandbox(org()) as sb:
        gone = "478346000099990001"
        path = tmp_path / "term.csv"
        path.write_text(
            "sessionId,courseId,batchId,moduleId,name,trainerErecno,type,date,startTime,endTime\n"
            f"{gone},{COURSE},{BATCH},{row('x')[2]},Lesson A,{PRIYA},Classroom,10-02-2027,"
            "10:00 AM,11:00 AM\n", encoding="utf-8")
        plan = await cli("run", str(path), "--dry-run", "--json", "--results",
                         str(tmp_path / "p.xlsx"), "--today", TODAY,
                         *api_args(sb, tmp_path / "state"), env=env)
        assert json.loads(plan.out)["actions"][0]["action"] == "update"
        assert "deleted there?" in str(read_results(tmp_path / "p.xlsx")[2].message)
        done = await cli("run", str(path), "--update", "--results", str(tmp_path / "r.xlsx"),
                         "--yes", "--today", TODAY, *api_args(sb, tmp_path / "state"), env=env)
        assert done.code == 1
        result = read_results(tmp_path / "r.xlsx")[2]
        assert result.status == "failed"
        assert "bulkschedule forget" in str(result.message) and gone in str(result.message)
        assert sb.stats()["created"] == 0 and not sb.sessions()


async def test_json_goes_with_dry_run_only(tmp_path: Path) -> None:
    path = sheet(tmp_path / "term.csv", FIVE[:1])
    done = await cli("run", str(path), "--json", "--offline", env=cli_env(tmp_path / "home"))
    assert done.code == 2 and "--json goes with --dry-run" in done.err


async def test_only_in_zoho_lists_a_session_no_row_is(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    async with Sandbox(org()) as sb:
        by_hand = sb.add_session(COURSE, BATCH, row("x")[2], name="Made by hand",
                                 trainerErecno=PRIYA, type="0", date="19-02-2027",
                                 startTime="02:00 PM", endTime="03:00 PM")
        path = sheet(tmp_path / "term.csv", FIVE[:2])
        done = await cli("run", str(path), "--results", str(tmp_path / "a.xlsx"), "--yes",
                         "--today", TODAY, *api_args(sb, tmp_path / "state"), env=env)
        assert done.code == 0, done.err
        only = sheet_lines(tmp_path / "a.xlsx", "Only in Zoho")
        assert [(o["name"], o["date"], o["startTime"], o["endTime"], o["trainerErecno"],
                 o["sessionId"]) for o in only] == [
            ("Made by hand", "19-02-2027", "02:00 PM", "03:00 PM", PRIYA, by_hand["sessionId"])]
        summary = {line["item"]: line["value"] for line in sheet_lines(tmp_path / "a.xlsx",
                                                                          "Summary")}
        assert summary["only in Zoho"] == 1
        assert len(sb.sessions()) == 3  # nothing deleted
        # offline, the org is not read: no such sheet (it would claim what it cannot know)
        offline = await cli("run", str(path), "--offline", "--results", str(tmp_path / "b.xlsx"),
                            "--yes", "--today", TODAY, *api_args(sb, tmp_path / "state"),
                            env=env)
        assert offline.code == 0, offline.err
        assert sheet_lines(tmp_path / "b.xlsx", "Only in Zoho") == []

"""send.plan: which session each row is, and what the run does with it. Pure: Requests, journal
Entries and ListedSessions are built here directly, nothing is read or sent."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from bulkschedule.core.request import Request
from bulkschedule.send.journal import CREATED, FAILED, INFLIGHT, Entry
from bulkschedule.send.plan import (
    NOT_RECORDED,
    NOTHING_TO_COMPARE,
    PENDING_AGAIN,
    Action,
    Plan,
    Step,
    Zoho,
    differences,
    make_plan,
    same,
)
from bulkschedule.zoho.records import ListedSession

BASE = "https://people.zoho.com"
M = "478346000019479119"
M2 = "478346000019479120"
T1 = "478346000008251001"
T2 = "478346000008251002"
ROOM = "478346000010125093"
S1 = "478346000020113001"
S2 = "478346000020113002"
S3 = "478346000020113003"
S4 = "478346000020113004"


def data(*, name: str = "Induction", date: str = "04-01-2027", start: str = "10:00 AM",
         end: str = "11:00 AM", trainer: str = T1, type_: str = "0",
         **extra: str) -> dict[str, str]:
    return {"name": name, "trainerErecno": trainer, "type": type_, "date": date,
            "startTime": start, "endTime": end, **extra}


def req(row: int, *, session_id: str | None = None, key: str | None = None, module: str = M,
        **fields: str) -> Request:
    d = data(**fields)
    identity = f"key:{key}" if key else f"session:{module}|{d['name']}|{d['date']}|{d['startTime']}"
    fp = json.dumps({"m": module, "d": d}, sort_keys=True)
    return Request(row=row, course_id="1", batch_id="2", module_id=module, session_data=d,
                   identity=identity, fingerprint=fp, session_id=session_id)


def entry(of: Request, session_id: str | None, *, status: str = CREATED,
          sent: dict[str, str] | None = None, pending: dict[str, str] | None = None,
          fingerprint: str = "") -> Entry:
    return Entry(api_base=BASE, identity=of.identity, status=status, session_id=session_id,
                 fingerprint=fingerprint, run_id=1, sheet_row=of.row, path=of.path, attempts=1,
                 message="", updated_at=0.0, sent=sent, pending=pending)


def listed(sid: str, *, name: str = "Induction", date: dt.date = dt.date(2027, 1, 4),
           start: dt.time = dt.time(10), end: dt.time | None = dt.time(11),
           trainer: str | None = T1, room: str | None = None, module: str | None = M,
           type_: str | None = "0", description: str | None = None) -> ListedSession:
    return ListedSession(id=sid, name=name, date=date, start=start, end=end,
                         trainer_erecno=trainer, room_id=room, module_id=module, type=type_,
                         description=description)


def one(r: Request, *, journal: dict[str, Entry] | None = None,
        sessions: dict[str, Entry] | None = None, zoho: Zoho | None = None) -> Step:
    plan = make_plan([r], journal=journal or {}, sessions=sessions or {}, zoho=zoho)
    [step] = plan.steps
    assert step.req.row == r.row
    return step


# ------------------------------------------------------------------------ which session a row is


def test_a_row_nothing_knows_is_created() -> None:
    step = one(req(2))
    assert (step.action, step.session_id, step.changes, step.note) == (Action.CREATE, None, {}, "")


def test_a_journal_entry_that_is_not_created_does_not_make_a_row_a_session() -> None:
    r = req(2)
    for status in (FAILED, INFLIGHT):
        step = one(r, journal={r.identity: entry(r, None, status=status)})
        assert step.action is Action.CREATE and step.session_id is None


def test_the_journal_names_the_session_of_a_row_without_a_session_id() -> None:
    r = req(2)
    step = one(r, journal={r.identity: entry(r, S1, sent=r.session_data)})
    assert (step.action, step.session_id, step.note) == (Action.UNCHANGED, S1, "")
    # the step's request names the session too (an update is sent to it)
    assert step.req.session_id == S1


def test_the_session_id_cell_wins_over_the_journal() -> None:
    """The row says S2; the journal recorded S1 for its identity: the row is S2, compared with
    what the journal holds for S2 (found by session)."""
    r = req(2, session_id=S2, start="11:00 AM")
    by_identity = entry(r, S1, sent=r.session_data)
    for_s2 = entry(req(7), S2, sent=data(start="10:00 AM"))
    step = one(r, journal={r.identity: by_identity}, sessions={S2: for_s2})
    assert step.action is Action.UPDATE and step.session_id == S2 == step.req.session_id
    assert step.changes == {"startTime": ("10:00 AM", "11:00 AM")}


def test_the_session_id_cell_uses_the_rows_own_journal_entry_when_it_names_that_session() -> None:
    r = req(2, session_id=S1, trainer=T2)
    step = one(r, journal={r.identity: entry(r, S1, sent=data(trainer=T1))})
    assert step.action is Action.UPDATE
    assert step.changes == {"trainerErecno": (T1, T2)}


def test_the_journal_wins_over_a_zoho_match() -> None:
    r = req(2)
    zoho = Zoho({M: [listed(S1), listed(S2)]}, {(2, 0): listed(S2)})
    step = one(r, journal={r.identity: entry(r, S1, sent=r.session_data)}, zoho=zoho)
    assert step.session_id == S1 and step.action is Action.UNCHANGED


def test_a_zoho_match_makes_a_row_that_session() -> None:
    r = req(2)
    zoho = Zoho({M: [listed(S1)]}, {(2, 0): listed(S1)})
    step = one(r, zoho=zoho)
    assert (step.action, step.session_id) == (Action.UNCHANGED, S1)


def test_a_listing_without_a_match_leaves_the_row_to_be_created() -> None:
    r = req(2)
    zoho = Zoho({M: [listed(S1, name="Something else")]}, {})
    assert one(r, zoho=zoho).action is Action.CREATE


# ------------------------------------------------------------------------------- the comparison


def test_compared_with_the_listing_field_by_field() -> None:
    r = req(2, start="10:00 AM", end="12:00 PM", trainer=T2, roomId=ROOM)
    held = listed(S1, end=dt.time(11), trainer=T1, room=None)
    step = one(r, zoho=Zoho({M: [held]}, {(2, 0): held}))
    assert step.action is Action.UPDATE and step.session_id == S1
    # the listing has no room: a field it leaves out is not compared without a record of what
    # was sent (it may be blank, or just not listed)
    assert step.changes == {"endTime": ("11:00 AM", "12:00 PM"), "trainerErecno": (T1, T2)}


def test_an_edit_made_in_zoho_is_seen_over_what_the_journal_sent() -> None:
    """The journal sent 10:00; someone moved the session to 10:30 in Zoho; the row still says
    10:00: the listing is what Zoho holds, so the row differs from it."""
    r = req(2)
    held = listed(S1, start=dt.time(10, 30))
    step = one(r, journal={r.identity: entry(r, S1, sent=r.session_data)},
               zoho=Zoho({M: [held]}, {}))
    assert step.action is Action.UPDATE
    assert step.changes == {"startTime": ("10:30 AM", "10:00 AM")}


def test_fields_the_listing_leaves_out_are_compared_with_what_was_sent() -> None:
    sent = data(description="Bring your badge", lockUntil="03-01-2027")
    r = req(2, description="Bring your badge", lockUntil="02-01-2027")
    held = listed(S1)  # lists neither description nor lockUntil
    step = one(r, journal={r.identity: entry(r, S1, sent=sent)}, zoho=Zoho({M: [held]}, {}))
    assert step.action is Action.UPDATE
    assert step.changes == {"lockUntil": ("03-01-2027", "02-01-2027")}


def test_with_a_record_of_what_was_sent_a_new_field_and_a_cleared_field_are_changes() -> None:
    sent = data(description="Bring your badge")
    r = req(2, roomId=ROOM)  # description cleared, room added
    step = one(r, journal={r.identity: entry(r, S1, sent=sent)})
    assert step.action is Action.UPDATE
    assert step.changes == {"description": ("Bring your badge", ""), "roomId": ("", ROOM)}


def test_same_as_what_was_sent_is_unchanged_without_a_listing() -> None:
    r = req(2, description="x")
    step = one(r, journal={r.identity: entry(r, S1, sent=dict(r.session_data))})
    assert (step.action, step.session_id, step.changes, step.note) == (
        Action.UNCHANGED, S1, {}, "")


def test_a_listing_in_other_formats_is_the_same_as_the_row() -> None:
    """Zoho lists the type as a word and the name HTML-escaped; as_session_data writes times
    and dates its own way: none of that is a change."""
    r = req(2, name="Health & safety", type_="0")
    held = listed(S1, name="Health &amp; safety", type_="Classroom")
    step = one(r, zoho=Zoho({M: [held]}, {(2, 0): held}))
    assert (step.action, step.changes) == (Action.UNCHANGED, {})


def test_an_update_begun_and_not_confirmed_is_sent_again() -> None:
    r = req(2, start="11:00 AM")
    pending = dict(r.session_data)
    # what was sent before the pending update; the pending one holds the row's values already
    e = entry(r, S1, sent=data(start="10:00 AM"), pending=pending)
    step = one(r, journal={r.identity: e})
    assert step.action is Action.UPDATE and step.note == PENDING_AGAIN
    assert step.changes == {"startTime": ("10:00 AM", "11:00 AM")}
    # even when the listing already shows the values (it may have landed): sent again, the
    # journal cannot know it was confirmed
    held = listed(S1, start=dt.time(11), end=dt.time(12))
    again = one(r, journal={r.identity: e}, zoho=Zoho({M: [held]}, {}))
    assert again.action is Action.UPDATE and again.note == PENDING_AGAIN


def test_a_pending_update_with_nothing_sent_before_lists_every_field() -> None:
    r = req(2, session_id=S1)
    e = entry(r, S1, pending=dict(r.session_data))  # begin_update on a row found by listing
    step = one(r, sessions={S1: e})
    assert step.action is Action.UPDATE and step.note == PENDING_AGAIN
    assert step.changes == {f: ("", v) for f, v in r.session_data.items()}


def test_a_legacy_entry_with_only_a_fingerprint_compares_fingerprints() -> None:
    r = req(2)
    same_fp = entry(r, S1, fingerprint=r.fingerprint)
    step = one(r, journal={r.identity: same_fp})
    assert (step.action, step.session_id, step.note) == (Action.UNCHANGED, S1, "")
    other_fp = entry(r, S1, fingerprint="an older fingerprint")
    step = one(r, journal={r.identity: other_fp})
    assert (step.action, step.session_id, step.note) == (Action.UPDATE, S1, NOT_RECORDED)
    assert step.changes == {}  # nothing recorded to say which fields


def test_a_session_with_nothing_to_compare_is_left_unchanged_with_a_note() -> None:
    r = req(2, session_id=S1)
    step = one(r)  # no journal, no listing
    assert (step.action, step.session_id, step.note) == (Action.UNCHANGED, S1, NOTHING_TO_COMPARE)
    # found by listing earlier and recorded without what was sent (as_sent=False): the same
    e = entry(r, S1, fingerprint="", sent=None)
    step = one(r, journal={r.identity: e})
    assert (step.action, step.note) == (Action.UNCHANGED, NOTHING_TO_COMPARE)
    # a listing was read, but not of this row's module: still nothing to compare it with
    step = one(r, zoho=Zoho({M2: [listed(S2, module=M2)]}, {}))
    assert (step.action, step.note) == (Action.UNCHANGED, NOTHING_TO_COMPARE)


def test_a_session_its_module_listing_lacks_is_an_update_that_zoho_will_answer() -> None:
    r = req(2, session_id=S1)
    step = one(r, journal={r.identity: entry(r, S1, sent=r.session_data)},
               zoho=Zoho({M: [listed(S2, name="Other")]}, {}))
    assert step.action is Action.UPDATE and step.session_id == S1
    assert S1 in step.note and "does not list" in step.note


# ------------------------------------------------------------------------------ across the rows


def test_a_second_row_naming_the_same_session_is_invalid() -> None:
    first, second = req(2, session_id=S1), req(5, session_id=S1, name="Other")
    plan = make_plan([first, second], journal={}, sessions={}, zoho=None)
    assert [s.action for s in plan.steps] == [Action.UNCHANGED, Action.INVALID]
    bad = plan.steps[1]
    assert bad.session_id == S1 and "row 2" in bad.note and S1 in bad.note


def test_a_row_naming_the_session_the_journal_gave_an_earlier_row_is_invalid() -> None:
    first = req(2, key="K1")
    second = req(3, session_id=S1, name="Renamed")
    plan = make_plan([first, second], journal={first.identity: entry(first, S1, sent=data())},
                     sessions={}, zoho=None)
    assert [s.action for s in plan.steps] == [Action.UNCHANGED, Action.INVALID]
    assert "row 2" in plan.steps[1].note


def test_only_in_zoho_lists_the_sessions_no_row_is() -> None:
    matched, named, stray, on_bad_row, by_journal = (
        listed(S1), listed(S2, name="B"), listed(S3, name="C"), listed(S4, name="D"),
        listed("478346000020113005", name="E", module=M2))
    zoho = Zoho({M: [matched, named, stray, on_bad_row], M2: [by_journal]}, {(2, 0): matched})
    r2, r3 = req(2), req(3, session_id=S2, name="B")
    r4 = req(4, module=M2, name="E")
    plan = make_plan([r2, r3, r4], journal={r4.identity: entry(r4, by_journal.id)},
                     sessions={}, zoho=zoho, named_elsewhere=[S4])
    assert plan.only_in_zoho == [stray]
    # without listings there is nothing to list
    assert make_plan([r2], journal={}, sessions={}, zoho=None).only_in_zoho == []


def test_a_session_named_by_a_second_row_is_not_only_in_zoho() -> None:
    held = listed(S1)
    plan = make_plan([req(2, session_id=S1), req(3, session_id=S1, name="x")], journal={},
                     sessions={}, zoho=Zoho({M: [held]}, {}))
    assert plan.only_in_zoho == []


def test_counts_cover_every_action_and_the_invalid_rows_validation_refused() -> None:
    r_new, r_same, r_diff, r_dup = req(2), req(3, session_id=S1), req(4, start="9:00 AM"), \
        req(5, session_id=S1, name="x")
    journal = {r_diff.identity: entry(r_diff, S2, sent=data())}
    plan = make_plan([r_new, r_same, r_diff, r_dup], journal=journal, sessions={}, zoho=None,
                     invalid=2)
    assert plan.counts() == {"create": 1, "update": 1, "unchanged": 1, "invalid": 3}
    assert list(plan.counts()) == ["create", "update", "unchanged", "invalid"]
    assert sorted(plan.by_line()) == [(2, 0), (3, 0), (4, 0), (5, 0)]
    assert plan.by_line()[(4, 0)].action is Action.UPDATE
    assert Plan([]).counts() == {"create": 0, "update": 0, "unchanged": 0, "invalid": 0}


# ------------------------------------------------------------------------------ same/differences


@pytest.mark.parametrize(("field", "old", "new"), [
    ("startTime", "10:00", "10:00 AM"),
    ("startTime", "22:00", "10:00 PM"),
    ("endTime", "9:05 am", "09:05 AM"),
    ("startTime", "soon", "soon"),
    ("date", "04-01-2027", "2027-01-04"),
    ("date", "4-Jan-2027", "04-01-2027"),
    ("lockUntil", "03-01-2027", "2027-01-03"),
    ("name", "Health &amp; safety", "Health & safety"),
    ("name", "  Induction   day ", "Induction day"),
    ("description", "a &lt;b&gt;", "a <b>"),
    ("type", "Classroom", "0"),
    ("type", "E-learning", "1"),
    ("type", "online", "1"),
    ("roomId", None, ""),
    ("roomId", "", None),
    ("roomId", f" {ROOM} ", ROOM),
    ("description", "   ", ""),
])
def test_same_tolerates_the_forms_zoho_may_list(field: str, old: str | None,
                                                 new: str | None) -> None:
    assert same(field, old, new)
    assert same(field, new, old)


@pytest.mark.parametrize(("field", "old", "new"), [
    ("startTime", "10:00", "10:00 PM"),
    ("startTime", "10:00 AM", "10:30 AM"),
    ("startTime", "soon", "later"),
    ("date", "04-01-2027", "05-01-2027"),
    ("date", "04-01-2027", "2027-04-01"),
    ("name", "Induction", "induction"),  # case is kept
    ("type", "Classroom", "1"),
    ("roomId", None, ROOM),
    ("roomId", ROOM, ""),
    ("trainerErecno", T1, T2),
])
def test_same_sees_real_differences(field: str, old: str | None, new: str | None) -> None:
    assert not same(field, old, new)
    assert not same(field, new, old)


def test_differences_limited_to_the_fields_given() -> None:
    old = {"name": "A", "startTime": "10:00 AM"}
    new = {"name": "A", "startTime": "11:00 AM", "roomId": ROOM}
    assert differences(old, new) == {"startTime": ("10:00 AM", "11:00 AM"), "roomId": ("", ROOM)}
    assert differences(old, new, fields=["name", "startTime"]) == {
        "startTime": ("10:00 AM", "11:00 AM")}
    assert differences(old, dict(old)) == {}

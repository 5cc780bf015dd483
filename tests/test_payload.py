"""Golden tests: the exact sessionData, identity and fingerprint for a SessionRow."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from bulkschedule.sheet.payload import build_request, identity_fields
from bulkschedule.sheet.schema import SessionRow

FULL = SessionRow(
    row=7,
    course_id="478346000019479103",
    batch_id="478346000019479115",
    module_id="478346000019479119",
    name="Session API Testing",
    trainer_erecno="478346000008251001",
    type="0",
    date=dt.date(2022, 1, 4),
    start=dt.time(10, 0),
    end=dt.time(11, 0),
    description="API testing",
    room_id="478346000010125093",
    lock_until=dt.date(2022, 1, 3),
    grade_category_id="478346000019553021",
)

MINIMAL = SessionRow(
    row=2,
    course_id="1",
    batch_id="2",
    module_id="3",
    name="Night shift briefing",
    trainer_erecno="478346000008251001",
    type="1",
    date=dt.date(2027, 12, 31),
    start=dt.time(0, 0),
    end=dt.time(12, 30),
)


def test_full_row_matches_the_documented_example() -> None:
    req = build_request(FULL)
    assert req.session_data == {
        "name": "Session API Testing",
        "trainerErecno": "478346000008251001",
        "type": "0",
        "date": "04-01-2022",
        "startTime": "10:00 AM",
        "endTime": "11:00 AM",
        "description": "API testing",
        "roomId": "478346000010125093",
        "lockUntil": "03-01-2022",
        "gradeCategoryId": "478346000019553021",
    }
    assert list(req.session_data) == ["name", "trainerErecno", "type", "date", "startTime",
                                      "endTime", "description", "roomId", "lockUntil",
                                      "gradeCategoryId"]
    assert (req.row, req.course_id, req.batch_id, req.module_id) == (
        7, "478346000019479103", "478346000019479115", "478346000019479119")
    assert req.path == ("/api/v1/courses/478346000019479103/batches/478346000019479115"
                        "/modules/478346000019479119/sessions")
    assert req.identity == "session:478346000019479119|Session API Testing|04-01-2022|10:00 AM"


def test_minimal_row_leaves_optional_fields_out_and_pads_12_hour_times() -> None:
    req = build_request(MINIMAL)
    assert req.session_data == {
        "name": "Night shift briefing",
        "trainerErecno": "478346000008251001",
        "type": "1",
        "date": "31-12-2027",
        "startTime": "12:00 AM",
        "endTime": "12:30 PM",
    }
    assert all(isinstance(v, str) for v in req.session_data.values())


def test_afternoon_times_are_zero_padded() -> None:
    row = MINIMAL._replace(start=dt.time(9, 5), end=dt.time(13, 0))
    data = build_request(row).session_data
    assert (data["startTime"], data["endTime"]) == ("09:05 AM", "01:00 PM")


def test_key_is_the_identity_when_given() -> None:
    req = build_request(FULL._replace(key="T1-W1-IND"))
    assert req.identity == "key:T1-W1-IND"
    assert "key" not in req.session_data


def test_fingerprint_is_sha256_of_canonical_json() -> None:
    req = build_request(MINIMAL)
    canonical = (
        '{"batchId":"2","courseId":"1","moduleId":"3","sessionData":{"date":"31-12-2027",'
        '"endTime":"12:30 PM","name":"Night shift briefing","startTime":"12:00 AM",'
        '"trainerErecno":"478346000008251001","type":"1"}}'
    )
    assert req.fingerprint == hashlib.sha256(canonical.encode()).hexdigest()


def test_fingerprint_changes_with_any_detail_but_not_with_row_or_key() -> None:
    base = build_request(FULL).fingerprint
    changed = [
        FULL._replace(course_id="9"),
        FULL._replace(batch_id="9"),
        FULL._replace(module_id="9"),
        FULL._replace(end=dt.time(11, 30)),
        FULL._replace(description="Other"),
        FULL._replace(room_id=None),
        FULL._replace(trainer_erecno="478346000008251002"),
    ]
    prints = {build_request(r).fingerprint for r in changed}
    assert base not in prints and len(prints) == len(changed)
    same = [FULL._replace(row=99), FULL._replace(key="k")]
    assert {build_request(r).fingerprint for r in same} == {base}


def test_non_ascii_names_fingerprint_as_utf8() -> None:
    req = build_request(MINIMAL._replace(name="Sécurité"))
    text = json.dumps({"batchId": "2", "courseId": "1", "moduleId": "3",
                       "sessionData": dict(req.session_data)},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert "Sécurité" in text
    assert req.fingerprint == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_identity_fields() -> None:
    assert identity_fields(build_request(FULL)) == {
        "moduleId": "478346000019479119",
        "name": "Session API Testing",
        "date": "04-01-2022",
        "startTime": "10:00 AM",
    }

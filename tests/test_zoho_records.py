"""The pure readers of the zoho layer: dates and times in every listed form, typed records,
and the classification of update replies and listing pages (no HTTP)."""

from __future__ import annotations

import json
from datetime import date, time

import pytest

from bulkschedule.core.errors import Rejected, ServerError
from bulkschedule.zoho.classify import (
    ROOMS,
    SESSIONS,
    UnreadableReply,
    classify_page,
    classify_update,
)
from bulkschedule.zoho.matching import dates, minutes, one_date
from bulkschedule.zoho.records import ListedSession, Source, read_sessions, read_trainers

SOURCE = Source("the listing (GET /x)", "/x")


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("22-12-2021", date(2021, 12, 22)),
        ("22-Dec-2021", date(2021, 12, 22)),
        ("22 December 2021", date(2021, 12, 22)),
        ("2021-12-22", date(2021, 12, 22)),
        ("2021-12-22T00:00:00+05:30", date(2021, 12, 22)),
        ("03/04/2022", date(2022, 4, 3)),  # ambiguous: Zoho's own order, day first
        (1640111400000, date(2021, 12, 22)),  # midnight in Kolkata (UTC+5:30)
        (1640160000000, date(2021, 12, 22)),  # midnight in Los Angeles (UTC-8)
        ("1640111400000", date(2021, 12, 22)),
        (1640111400000.0, date(2021, 12, 22)),
        ("31-02-2022", None),
        ("soon", None),
        (0, None),
        (True, None),
        (None, None),
    ],
)
def test_one_date(value: object, want: date | None) -> None:
    assert one_date(value) == want


def test_an_epoch_instant_may_fall_on_either_neighbouring_local_date() -> None:
    """For matching (where name and start must agree too), every date the instant can be on in
    a time zone between UTC-12 and UTC+14."""
    noon_utc = 1641297600000  # 2022-01-04 12:00 UTC
    assert dates(noon_utc) == {date(2022, 1, 4), date(2022, 1, 5)}
    late_utc = 1641340800000  # 2022-01-05 00:00 UTC
    assert dates(late_utc) == {date(2022, 1, 4), date(2022, 1, 5)}


@pytest.mark.parametrize(
    ("text", "want"),
    [("12:00 AM", 0), ("12:30 PM", 750), ("10 am", 600), ("22:00:00", 1320), ("13:00 PM", None)],
)
def test_minutes(text: str, want: int | None) -> None:
    assert minutes(text) == want


def test_as_session_data_writes_the_create_formats() -> None:
    s = ListedSession("1", "Night", date(2022, 1, 4), time(0, 5), time(12, 0), None, None, None,
                      None, None)
    assert s.as_session_data() == {
        "name": "Night", "date": "04-01-2022", "startTime": "12:05 AM", "endTime": "12:00 PM",
    }


def test_listed_sessions_compare_without_their_raw_item() -> None:
    item = {"sessionId": "1", "sessionName": "A", "date": "04-01-2022", "startTime": "9:00 AM"}
    (a,) = read_sessions([item], SOURCE)
    (b,) = read_sessions([{**item, "extra": "field"}], SOURCE)
    assert a == b and hash(a) == hash(b)


def test_trainer_first_and_last_name_in_lower_camel_case() -> None:
    (t,) = read_trainers([{"erecno": "1", "firstName": "Ada", "lastName": "Lovelace"}], SOURCE)
    assert t.name == "Ada Lovelace"


def test_unreadable_message_names_the_listing_and_the_fields() -> None:
    with pytest.raises(UnreadableReply) as info:
        read_trainers([{"erecno": "1"}, {"code": "x", "dept": "y"}], SOURCE)
    assert info.value.message.startswith("cannot read the listing (GET /x): an item has no name")
    assert info.value.seen == ("erecno",)


# --------------------------------------------------------------------------------------------
# classification without HTTP


def test_update_404_says_deleted_and_how_to_recreate() -> None:
    with pytest.raises(Rejected) as info:
        classify_update(404, {}, '{"code": 404, "message": "Not found"}', session_id="77")
    assert "session 77" in info.value.message and "deleted in Zoho" in info.value.message
    assert "bulkschedule forget" in info.value.message and info.value.status == 404


def test_update_returns_the_session_id_the_reply_names() -> None:
    body = json.dumps({"code": "200", "session": [{"sessionId": 78}]})
    assert classify_update(200, {}, body, session_id="77") == "78"


def test_a_page_without_a_list_is_a_server_error_for_sessions_and_unreadable_for_the_org() -> None:
    """Reconciliation retries a listing it could not read (ServerError); an org read that cannot
    be read will not improve by retrying (UnreadableReply)."""
    body = '{"code": 200, "stuff": [{"a": 1}]}'
    with pytest.raises(ServerError) as legacy:
        classify_page(200, {}, body, listing=SESSIONS)
    assert not isinstance(legacy.value, UnreadableReply)
    with pytest.raises(UnreadableReply) as strict:
        classify_page(200, {}, body, listing=ROOMS, endpoint="/api/v1/rooms")
    assert strict.value.endpoint == "/api/v1/rooms" and strict.value.seen == ("code", "stuff")

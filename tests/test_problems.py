"""The record types' JSON forms: built by hand for speed, so a new field must not be forgotten."""

from __future__ import annotations

import dataclasses

from bulkschedule.core.problems import Outcome, Status, error, warning


def test_problem_to_dict_has_every_field_as_asdict_would() -> None:
    for p in (error(3, "date", "31-02-2027", "no such day", code="date.impossible"),
              warning(None, "x", None, "ignored", code="header.unknown")):
        assert p.to_dict() == dataclasses.asdict(p)


def test_outcome_to_dict_has_every_field_with_the_status_as_text() -> None:
    o = Outcome(7, Status.EXISTS, "478346000050000001", "already in Zoho", 2)
    assert o.to_dict() == {**dataclasses.asdict(o), "status": "exists"}

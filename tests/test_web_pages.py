"""The page templates (`bulkschedule.web.pages`): every page rendered with hostile text in every
field it shows, which must come out escaped; and the environment's safety settings.

The route tests (test_web.py) prove the same for values that travel through a real upload;
these reach the fields an upload cannot set (run messages, journal paths, API bases, notes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import jinja2
import pytest
from aiohttp import web

from bulkschedule.send.journal import RunInfo
from bulkschedule.web import pages
from bulkschedule.web.runs import LiveRun

EVIL = "<script>alert(1)</script>\"'&"
VIEW = pages.View(csrf=EVIL, current_run=7, logout=True, sandbox=True)


def live_run(**kwargs: object) -> LiveRun:
    run = LiveRun(id=7, upload_id="0123456789abcdef", name=EVIL, dry_run=False, total=3,
                  target=EVIL, results_path=Path("/nonexistent/results.xlsx"))
    run.tally.counts = {EVIL: 1}
    run.message = EVIL
    run.attention.append({"row": EVIL, "status": EVIL, "message": EVIL})
    for key, value in kwargs.items():
        setattr(run, key, value)
    return run


def run_info() -> RunInfo:
    return RunInfo(id=9, started_at=1.8e9, heartbeat_at=1.8e9, finished_at=1.8e9 + 60, pid=1,
                   host="h", file=f"/home/{EVIL}/{EVIL}.xlsx", api_base=EVIL, total=2,
                   dry_run=False, status=EVIL, counts={EVIL: 2},
                   results_path=f"/srv/{EVIL}.xlsx", alive=False)


PAGES: dict[str, Callable[[], web.Response]] = {
    "message": lambda: pages.message_page(VIEW, 400, EVIL, title=EVIL,
                                          link=pages.Link(EVIL, EVIL)),
    "busy": lambda: pages.busy_page(VIEW, live_run()),
    "login": lambda: pages.login_page(VIEW, EVIL, 401, EVIL),
    "upload form": lambda: pages.upload_form(VIEW, 1024, EVIL),
    "upload": lambda: pages.upload_page(
        VIEW, "0123456789abcdef", {"name": EVIL},
        {"rows": 1, "valid": 1, "errors": 0, "warnings": 1, "notes": [EVIL],
         "problems": [{"row": EVIL, "column": EVIL, "value": EVIL, "severity": EVIL,
                       "message": EVIL, "code": EVIL}],
         "problem_total": 2, "org_line": EVIL, "org_warning": EVIL, "held": 2,
         "plan": {EVIL: 1, "update": 1}, "update_total": 3, "only_in_zoho": 1,
         "updates": [{"row": EVIL, "session": EVIL, "note": EVIL,
                      "changes": [[EVIL, EVIL, EVIL], [EVIL, "", ""]]}],
         "compared_with": EVIL, "plan_warning": EVIL},
        where=EVIL, api_base=EVIL, rate=EVIL),
    "progress": lambda: pages.progress_page(VIEW, live_run()),
    "progress with updates": lambda: pages.progress_page(VIEW, live_run(update=True)),
    "finished run": lambda: pages.journal_run_page(VIEW, run_info(), downloadable=False),
    "history": lambda: pages.history_page(VIEW, [run_info()], lambda path: False),
}


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_escapes_every_value(name: str) -> None:
    response = PAGES[name]()
    text = response.text or ""
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # Inside attributes too: no value can close its quotes.
    assert not re.search(r'="[^"]*"\'&', text)
    assert response.content_type == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    # The only script is the page's own file: the CSP forbids inline script anyway.
    assert re.findall(r"<script[^>]*>", text) == ['<script src="/static/app.js" defer>']


def test_paths_from_the_journal_show_only_their_file_name() -> None:
    text = pages.journal_run_page(VIEW, run_info(), downloadable=False).text or ""
    assert "/home/" not in text and "/srv/" not in text
    history = pages.history_page(VIEW, [run_info()], lambda path: False).text or ""
    assert "/home/" not in history


def test_the_environment_escapes_everything_and_refuses_unknown_names() -> None:
    assert pages.ENV.autoescape is True  # every template, whatever its file extension
    template = pages.ENV.from_string("{{ missing }}")
    with pytest.raises(jinja2.UndefinedError):
        template.render()


def test_templates_mark_nothing_safe() -> None:
    """Autoescape holds only while no template opts out of it."""
    for path in pages.TEMPLATES.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "|safe" not in text.replace(" ", ""), path.name
        assert "autoescape false" not in text, path.name


def test_stop_button_says_what_a_second_stop_does() -> None:
    run = live_run()
    assert ">Stop</button>" in (pages.progress_page(VIEW, run).text or "")
    run.stop.set()
    assert ">Stop now</button>" in (pages.progress_page(VIEW, run).text or "")
    run.state = "finished"
    text = pages.progress_page(VIEW, run).text or ""
    assert "stop-form" not in text and "data-events" not in text


def test_problems_table_shows_the_first_problems_and_the_total() -> None:
    """The summary keeps the first `SHOWN_PROBLEMS` and the total; the page shows those, the
    total, and where the full list is (the annotated sheet)."""
    problems = [{"row": i, "column": "name", "value": "", "severity": "error", "message": "x",
                 "code": "value.required"} for i in range(pages.SHOWN_PROBLEMS + 5)]
    text = pages.upload_page(VIEW, "0123456789abcdef", {"name": "s.csv"},
                             {"rows": 1, "valid": 0, "errors": 1, "warnings": 0,
                              "problems": problems, "problem_total": 12_345},
                             where="Zoho", api_base="https://x", rate="r").text or ""
    assert text.count('<tr class="error">') == pages.SHOWN_PROBLEMS
    text = " ".join(text.split())
    assert f"Showing the first {pages.SHOWN_PROBLEMS} of 12,345 problems" in text
    assert 'the full list is in the <a href="/uploads/0123456789abcdef/report.xlsx" download>' \
        in text
    assert re.search(r'id="create" class="primary" disabled', text)
    assert text.count("<code>value.required</code>") == pages.SHOWN_PROBLEMS


def test_a_short_list_says_nothing_about_the_rest() -> None:
    problems = [{"row": 2, "column": "name", "value": "", "severity": "error", "message": "x",
                 "code": "value.required"}]
    text = pages.upload_page(VIEW, "0123456789abcdef", {"name": "s.csv"},
                             {"rows": 1, "valid": 0, "errors": 1, "warnings": 0,
                              "problems": problems, "problem_total": 1},
                             where="Zoho", api_base="https://x", rate="r").text or ""
    assert "Showing the first" not in text and text.count('<tr class="error">') == 1

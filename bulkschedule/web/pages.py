"""The upload page's HTML: Jinja2 templates in ``web/templates/``, rendered from plain data.

Why Jinja2: it is the usual engine of aiohttp apps, and with ``autoescape=True`` every value
is escaped unless a template says otherwise, so a forgotten escape can no longer put a cell's
text into the page as markup (no template here marks anything safe). ``StrictUndefined``
turns a misspelt name into an error in the tests instead of an empty string on the page.
The environment is plain ``jinja2`` rather than ``aiohttp-jinja2``: each page is one function
of typed data, which needs neither its decorator nor its request-bound context.
``static/app.css`` and ``static/app.js`` (drag and drop, live progress from the event stream)
are the only other files. Routes live in `server`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from bulkschedule.send.journal import RunInfo
from bulkschedule.send.plan import ACTION_WORDS
from bulkschedule.web.access import CSRF_FIELD
from bulkschedule.web.checking import SHOWN_PROBLEMS
from bulkschedule.web.runs import STATE_TEXT, LiveRun
from bulkschedule.web.uploads import megabytes

__all__ = ["SHOWN_PROBLEMS", "View", "render"]

TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class View:
    """What every page needs besides its body: the visitor's form token and the header bar."""

    csrf: str = ""
    current_run: int | None = None  # a run in progress, linked from every page
    logout: bool = False  # a password is set and the visitor is logged in
    sandbox: bool = False


@dataclass(frozen=True)
class Link:
    href: str
    text: str


def clock(seconds: float | None) -> str:
    """``125`` -> ``2:05``: a countdown or an ETA."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def leaf(path: str) -> str:
    """The file name alone: a CLI run's folders are not the page's business."""
    return Path(path).name


def counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()) if v)


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,  # every template, whatever its extension
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
ENV.filters.update(clock=clock, when=when, leaf=leaf, megabytes=megabytes,
                   counts_text=counts_text)
ENV.globals.update(CSRF_FIELD=CSRF_FIELD, STATE_TEXT=STATE_TEXT)


def render(view: View, template: str, title: str, *, status: int = 200, nav: bool = True,
           **context: Any) -> web.Response:
    """One page: ``template`` inside ``base.html`` with the header bar (unless ``nav`` is off)."""
    text = ENV.get_template(template).render(view=view, title=title, nav=nav, **context)
    return web.Response(text=text, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def message_page(view: View, status: int, message: str, *, title: str = "Cannot do that",
                 link: Link | None = None) -> web.Response:
    return render(view, "message.html", title, status=status, message=message, link=link)


def busy_page(view: View, run: LiveRun) -> web.Response:
    return message_page(
        view, 409, f"Run {run.id} ({run.name}) is still running: one run at a time. Wait "
        "for it to finish, or stop it.", title="A run is in progress",
        link=Link(f"/runs/{run.id}", f"Watch run {run.id}"))


def login_page(view: View, error: str | None, status: int, target: str) -> web.Response:
    return render(view, "login.html", "Log in", status=status, nav=False, error=error,
                  target=target)


def upload_form(view: View, max_upload: int, error: str | None = None, *,
                status: int = 200) -> web.Response:
    """The first page: pick a sheet (and IDs for every row), then check it. ``error`` says why
    the last upload was refused."""
    return render(view, "upload_form.html", "Upload", status=status, max_upload=max_upload,
                  error=error)


#: How the upload's page names each action of the plan (`send.plan.Action`).
ACTION_TEXT = ACTION_WORDS


def upload_page(view: View, upload_id: str, meta: Mapping[str, Any],
                checked: Mapping[str, Any], *, where: str, api_base: str,
                rate: str) -> web.Response:
    """A checked upload: its summary, what the org said, the plan (rows per action, and what
    each update changes: the first `SHOWN_PROBLEMS`, with the total), the run buttons with the
    "also apply updates" choice, and its problems (the first `SHOWN_PROBLEMS`, with the total:
    the annotated sheet has them all)."""
    valid = int(checked["valid"])
    if checked.get("fatal"):
        why = "A required column is missing, so nothing can be sent."
    elif not valid:
        why = "No row is valid, so there is nothing to send."
    else:
        why = ""
    problems = checked["problems"]
    plan: Mapping[str, int] | None = checked.get("plan")
    return render(view, "upload.html", str(meta["name"]), upload_id=upload_id, meta=meta,
                  checked=checked, notes=checked.get("notes", []), valid=valid, why=why,
                  where=where, api_base=api_base, rate=rate,
                  problems=problems[:SHOWN_PROBLEMS],
                  total_problems=int(checked.get("problem_total", len(problems))),
                  org_line=checked.get("org_line"), org_warning=checked.get("org_warning"),
                  held=int(checked.get("held", 0)), report_error=checked.get("report_error"),
                  plan=plan, to_update=int(plan.get("update", 0)) if plan else 0,
                  updates=checked.get("updates", []),
                  update_total=int(checked.get("update_total", 0)),
                  only_in_zoho=int(checked.get("only_in_zoho", 0)),
                  compared_with=checked.get("compared_with"),
                  plan_warning=checked.get("plan_warning"), ACTION_TEXT=ACTION_TEXT,
                  expansions=checked.get("expansions", []),
                  expansion_total=int(checked.get("expansion_total", 0)))


def progress_page(view: View, run: LiveRun) -> web.Response:
    """A run's panel as it stands; app.js keeps it current from the event stream."""
    snap = run.snapshot()
    percent = int(100 * snap["done"] / snap["total"]) if snap["total"] else 100
    return render(view, "progress.html", f"Run {run.id}", run=run, snap=snap, percent=percent)


def journal_run_page(view: View, info: RunInfo, *, downloadable: bool) -> web.Response:
    """A run found only in the journal: finished, or started elsewhere (the CLI, a restart)."""
    return render(view, "journal_run.html", f"Run {info.id}", info=info,
                  downloadable=downloadable)


def history_page(view: View, runs: Sequence[RunInfo],
                 downloadable: Callable[[str | None], bool]) -> web.Response:
    """The journal's last runs, from this page and from the command line."""
    return render(view, "history.html", "History", runs=runs, downloadable=downloadable)

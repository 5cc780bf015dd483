"""The upload page's HTML: every page is a function of plain data, every value escaped.

No template engine and no front-end build: the pages are small, and f-strings with `e` around
every value keep the escaping visible. ``static/app.css`` and ``static/app.js`` (drag and drop,
live progress from the event stream) are the only other files. Routes live in `web`.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bulkschedule.web.access import CSRF_FIELD
from bulkschedule.web.runs import STATE_TEXT, LiveRun
from bulkschedule.web.uploads import megabytes

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bulkschedule.send.journal import RunInfo

SHOWN_PROBLEMS = 1000  # rows of the problems table; the annotated sheet has them all


@dataclass(frozen=True)
class View:
    """What every page needs besides its body: the visitor's form token and the header bar."""

    csrf: str = ""
    current_run: int | None = None  # a run in progress, linked from every page
    logout: bool = False  # a password is set and the visitor is logged in
    sandbox: bool = False


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def csrf_input(view: View) -> str:
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{e(view.csrf)}">'


def _nav(view: View) -> str:
    items = ['<a href="/">Upload</a>', '<a href="/history">History</a>']
    if view.current_run is not None:
        items.append(f'<a class="live" href="/runs/{view.current_run}">Run {view.current_run} in '
                     "progress</a>")
    logout = ""
    if view.logout:
        logout = (f'<form method="post" action="/logout" class="logout">{csrf_input(view)}'
                  '<button type="submit" class="link">Log out</button></form>')
    badge = '<span class="badge sandbox">sandbox</span>' if view.sandbox else ""
    return (f'<header><span class="brand">bulkschedule</span>{badge}<nav>{"".join(items)}</nav>'
            f"{logout}</header>")


def page(view: View, title: str, body: str, *, status: int = 200,
         nav: bool = True) -> web.Response:
    text = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} - bulkschedule</title>"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/app.css">'
        '<script src="/static/app.js" defer></script></head>'
        f"<body>{_nav(view) if nav else ''}<main>{body}</main></body></html>\n"
    )
    return web.Response(text=text, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def message_page(view: View, status: int, message: str, *, title: str = "Cannot do that",
                 extra: str = "") -> web.Response:
    body = (f'<h1>{e(title)}</h1><p class="error" role="alert">{e(message)}</p>{extra}'
            '<p><a href="/">Back to the upload page</a></p>')
    return page(view, title, body, status=status)


def busy_page(view: View, run: LiveRun) -> web.Response:
    return message_page(
        view, 409, f"Run {run.id} ({run.name}) is still running: one run at a time. Wait "
        "for it to finish, or stop it.", title="A run is in progress",
        extra=f'<p><a href="/runs/{run.id}">Watch run {run.id}</a></p>')


def login_page(view: View, error: str | None, status: int, target: str) -> web.Response:
    alert = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = f"""
<h1>Log in</h1>{alert}
<form method="post" action="/login" class="login">
  {csrf_input(view)}
  <input type="hidden" name="next" value="{e(target)}">
  <label>Password <input type="password" name="password" autocomplete="current-password"
    required autofocus></label>
  <button type="submit" class="primary">Log in</button>
</form>"""
    return page(view, "Log in", body, status=status, nav=False)


def upload_form(view: View, max_upload: int, error: str | None = None) -> str:
    """The first page: pick a sheet (and IDs for every row), then check it."""
    alert = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    return f"""
<h1>Upload a sheet</h1>
{alert}
<form id="upload" method="post" action="/uploads" enctype="multipart/form-data"
      data-max-bytes="{max_upload}">
  {csrf_input(view)}
  <label class="drop" id="drop">
    <strong>Drop a .xlsx or .csv file here</strong>
    <span>or choose one:</span>
    <input type="file" name="file" id="file" accept=".xlsx,.csv" required>
  </label>
  <p id="chosen" class="hint" aria-live="polite"></p>
  <details><summary>IDs for every row (when the sheet has no such column)</summary>
    <div class="options">
      <label>Course ID <input name="course" inputmode="numeric" pattern="[0-9]*"
        maxlength="19"></label>
      <label>Batch ID <input name="batch" inputmode="numeric" pattern="[0-9]*"
        maxlength="19"></label>
      <label>Module ID <input name="module" inputmode="numeric" pattern="[0-9]*"
        maxlength="19"></label>
      <label class="check"><input type="checkbox" name="month_first" value="1">
        Text dates are month first (03-04-2027 is 4 March)</label>
    </div>
  </details>
  <button type="submit" class="primary">Check the sheet</button>
  <p class="hint">.xlsx or .csv, up to {megabytes(max_upload)}. Checking sends nothing:
  you choose a dry run or the real thing on the next page.</p>
</form>"""


def upload_html(view: View, upload_id: str, meta: Mapping[str, Any],
                checked: Mapping[str, Any], *, where: str, api_base: str, rate: str) -> str:
    """A checked upload: its summary, the two run buttons, and its problems."""
    valid = int(checked["valid"])
    notes = "".join(f"<li>{e(n)}</li>" for n in checked.get("notes", []))
    notes = f'<ul class="notes">{notes}</ul>' if notes else ""
    if checked.get("fatal"):
        why = "A required column is missing, so nothing can be sent."
    elif not valid:
        why = "No row is valid, so there is nothing to send."
    else:
        why = ""
    disabled = " disabled" if why else ""
    busy = ""
    if view.current_run is not None:
        busy = (f'<p class="warn">Run {view.current_run} is in progress: <a href="/runs/'
                f'{view.current_run}">watch it</a>. A new run can start when it ends.</p>')
    return f"""
<h1>{e(meta['name'])}</h1>
<p class="summary" id="summary">{checked['rows']} rows: <strong>{valid} valid</strong>,
{checked['errors']} errors, {checked['warnings']} warnings</p>
{notes}
<p><a class="button" id="report" href="/uploads/{upload_id}/report.xlsx" download>Download the
annotated sheet</a> <span class="hint">(every problem marked in its cell)</span></p>
<form method="post" action="/runs" class="actions">
  {csrf_input(view)}
  <input type="hidden" name="upload" value="{upload_id}">
  <button type="submit" name="mode" value="dry-run" id="dry-run"{disabled}>Dry run</button>
  <button type="submit" name="mode" value="create" id="create" class="primary"{disabled}>
    Create sessions ({valid})</button>
  <p class="hint">{e(why) or f"Valid rows are sent to {where} (<code>{e(api_base)}</code>) at "
  f"{e(rate)}; rows with errors are never sent. Sessions already created are not "
  "sent again."}</p>
</form>
{busy}
<h2>Problems</h2>
{problems_table(checked['problems'])}
<p><a href="/">Upload another sheet</a></p>"""


def problems_table(problems: list[dict[str, Any]]) -> str:
    """The validation problems, as the CLI's table (the first `SHOWN_PROBLEMS`)."""
    if not problems:
        return '<p class="ok">No problems found.</p>'
    rows = []
    for p in problems[:SHOWN_PROBLEMS]:
        severity = p.get("severity") or ""
        rows.append(
            f'<tr class="{e(severity)}"><td class="num">{e(p.get("row") or "sheet")}</td>'
            f'<td>{e(p.get("column") or "")}</td><td class="value">{e(p.get("value") or "")}'
            f'</td><td><span class="badge {e(severity)}">{e(severity)}</span></td>'
            f'<td>{e(p.get("message") or "")}</td></tr>')
    more = ""
    if len(problems) > SHOWN_PROBLEMS:
        more = (f'<p class="hint">Showing the first {SHOWN_PROBLEMS} of {len(problems)} problems;'
                " the annotated sheet marks them all.</p>")
    return ('<table class="problems" id="problems"><thead><tr><th>Row</th><th>Column</th>'
            "<th>Value</th><th>Severity</th><th>Problem</th></tr></thead><tbody>"
            + "".join(rows) + f"</tbody></table>{more}")


def counts_html(counts: Mapping[str, int]) -> str:
    items = "".join(f'<li><span class="badge status-{e(k)}">{e(k)}</span> '
                    f'<span class="n">{e(v)}</span></li>' for k, v in counts.items() if v)
    return f'<ul class="counts" id="counts">{items}</ul>'


def clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def progress_html(view: View, run: LiveRun) -> str:
    """A run's panel as it stands; app.js keeps it current from the event stream."""
    snap = run.snapshot()
    kind = "Dry run (nothing is sent)" if run.dry_run else "Creating sessions"
    pct = int(100 * snap["done"] / snap["total"]) if snap["total"] else 100
    lock_hidden = "" if snap["lock_left"] > 0 else " hidden"
    eta = clock(snap["eta"]) if snap["eta"] is not None else "-"
    events = "" if run.finished else f' data-events="/runs/{run.id}/events"'
    stop = ""
    if not run.finished:
        again = run.stop.is_set()
        label = "Stop now" if again else "Stop"
        hint = ("abandons the calls in flight: their rows become unknown and the next run "
                "checks them" if again else "calls in flight finish; the rest stay pending")
        stop = (f'<form method="post" action="/runs/{run.id}/stop" id="stop-form">'
                f'{csrf_input(view)}<button type="submit" class="danger">{label}</button>'
                f'<span class="hint"> ({hint})</span></form>')
    results = ""
    if snap["results"]:
        results = (f'<p><a class="button primary" id="results" href="{e(snap["results"])}" '
                   "download>Download the results workbook</a></p>")
    message = f'<p class="error" id="message">{e(snap["message"])}</p>' if snap["message"] \
        else '<p class="error" id="message" hidden></p>'
    attention = ""
    if snap["attention"]:
        rows = "".join(f'<tr><td class="num">{e(a["row"])}</td><td><span class="badge status-'
                       f'{e(a["status"])}">{e(a["status"])}</span></td><td>{e(a["message"])}'
                       "</td></tr>" for a in snap["attention"])
        attention = ('<h2>Rows needing attention</h2><table class="problems"><thead><tr>'
                     f"<th>Row</th><th>Status</th><th>Message</th></tr></thead><tbody>{rows}"
                     "</tbody></table>")
    return f"""
<h1>Run {run.id}: {e(run.name)}</h1>
<p class="target">{e(kind)} at <code>{e(run.target)}</code>, started {e(when(run.started))}
</p>
<section class="progress" id="progress"{events} data-state="{e(snap['state'])}">
  <p class="state" id="state">{e(STATE_TEXT.get(snap['state'], snap['state']))}</p>
  <progress class="bar" id="bar" max="{max(snap['total'], 1)}" value="{snap['done']}">{pct}%
  </progress>
  <p class="numbers"><span id="done">{snap['done']}</span> of <span id="total">{snap['total']}
  </span> rows &middot; <span id="rate">{snap['rate']}</span>/min &middot; ETA
  <span id="eta">{eta}</span></p>
  {counts_html(snap['counts'])}
  <div class="lock" id="lock" role="alert"{lock_hidden}>Zoho's rate limit locked us out:
    resuming in <strong id="lock-left" data-left="{snap['lock_left']}">
    {clock(snap['lock_left'])}</strong></div>
  {message}
  {stop}
  <div id="results-slot">{results}</div>
</section>
{attention}"""


def journal_run_html(info: RunInfo, *, downloadable: bool) -> str:
    """A run found only in the journal: finished, or started elsewhere (the CLI, a restart)."""
    results = ""
    if downloadable:
        results = (f'<p><a class="button primary" id="results" href="/runs/{info.id}/results.xlsx"'
                   " download>Download the results workbook</a></p>")
    elif info.results_path:
        results = ('<p class="hint">Its results workbook was written by the command line: '
                   f"<code>{e(Path(info.results_path).name)}</code></p>")
    kind = "Dry run" if info.dry_run else "Run"
    return f"""
<h1>Run {info.id}: {e(Path(info.file).name)}</h1>
<p class="target">{kind} at <code>{e(info.api_base)}</code>, started {e(when(info.started_at))}
{f", finished {e(when(info.finished_at))}" if info.finished_at else ""}</p>
<p class="state">{e(info.state)}</p>
{counts_html(info.counts)}
{results}"""


def history_html(runs: Sequence[RunInfo], downloadable: Callable[[str | None], bool]) -> str:
    """The journal's last runs, from this page and from the command line."""
    if not runs:
        table = '<p class="hint">No runs yet.</p>'
    else:
        rows = []
        for info in runs:
            counts = ", ".join(f"{v} {k}" for k, v in sorted(info.counts.items()) if v)
            link = ""
            if downloadable(info.results_path):
                link = f'<a href="/runs/{info.id}/results.xlsx" download>results.xlsx</a>'
            elif info.results_path:
                link = '<span class="hint">command line</span>'
            rows.append(
                f'<tr><td class="num"><a href="/runs/{info.id}">{info.id}</a></td>'
                f"<td>{e(when(info.started_at))}</td><td>{e(Path(info.file).name)}</td>"
                f'<td>{"dry run" if info.dry_run else "create"}</td>'
                f'<td><span class="badge state-{e(info.state)}">{e(info.state)}</span></td>'
                f"<td>{e(counts or '-')}</td><td><code>{e(info.api_base)}</code></td>"
                f"<td>{link}</td></tr>")
        table = ('<table class="history" id="history"><thead><tr><th>Run</th><th>Started</th>'
                 "<th>Sheet</th><th>Kind</th><th>State</th><th>Rows</th><th>API</th>"
                 "<th>Results</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    shown = "1 run" if len(runs) == 1 else f"{len(runs)} runs"
    return (f"<h1>History</h1><p class=\"hint\">The last {shown} recorded in the journal, "
            "from this page and from the command line.</p>" + table)

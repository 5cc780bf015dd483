"""``bulkschedule org``: what the tool knows of the org in Zoho (refresh, find, show)."""

from __future__ import annotations

import asyncio
import json
import time

import click

from bulkschedule.app import online
from bulkschedule.app.config import Settings
from bulkschedule.app.target import api
from bulkschedule.cli.common import fail
from bulkschedule.cli.options import setting_options
from bulkschedule.core.errors import JobError
from bulkschedule.org.catalogue import KINDS


@click.group("org")
def org_group() -> None:
    """The org in Zoho: courses, batches, modules, trainers and rooms, cached in the state folder.

    Reads share the 30-a-minute budget with runs; each command says how many calls it spent.
    """


@org_group.command("refresh")
@click.option("--course", "courses", multiple=True, metavar="ID",
              help="Also read this course's batches and modules (repeat for more).")
@setting_options("send")
def refresh(settings: Settings, courses: tuple[str, ...]) -> None:
    """Read courses, active trainers and rooms afresh (and the batches and modules of each
    --course) and cache them. Exit code 2 when the org cannot be read."""
    target = api(settings)
    try:
        read = asyncio.run(online.refresh(target.send, target.tokens, courses))
    except JobError as err:
        fail(str(err))
    click.echo(", ".join(f"{n} {kind}" for kind, n in read.lists.items()) + " cached")
    click.echo(read.line())


@org_group.command("find")
@click.argument("text")
@click.option("--kind", type=click.Choice(KINDS), default=None,
              help="Only this kind of entry.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@setting_options("send")
def find(settings: Settings, text: str, kind: str | None, as_json: bool) -> None:
    """Find the ID of a course, batch, module, trainer or room whose name (a trainer's email, a
    room's location) contains TEXT, with what tells namesakes apart. From the cache, reading
    what is missing. Exit code 0 when something matched, 1 when nothing did, 2 when the org
    cannot be read."""
    target = api(settings, need_credentials=False)
    try:
        read = asyncio.run(online.find(text, target.send, target.tokens,
                                       kinds=(kind,) if kind else KINDS,
                                       max_age=settings.max_age))
    except JobError as err:
        fail(str(err), json_out={"text": text} if as_json else None)
    if as_json:
        click.echo(json.dumps({"text": text, "matches": [e.to_json() for e in read.entries],
                               "api_calls": read.calls, "from_cache": read.spent.cached}))
    else:
        for e in read.entries:
            extra = "; ".join(x for x in (e.detail, e.within) if x)
            click.echo(f"{e.kind:<8} {e.id:<20} {e.name}" + (f"  ({extra})" if extra else ""))
        if not read.entries:
            click.echo(f"nothing in the org matches {text!r}")
        click.echo(read.line(), err=True)
    raise SystemExit(0 if read.entries else 1)


@org_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@setting_options("send")
def show(settings: Settings, as_json: bool) -> None:
    """What is cached of the org, and how old each list is (older than --max-age is read
    afresh when needed)."""
    now = time.time()
    lists = online.cached(settings.state_dir, settings.people_base, now)
    if as_json:
        click.echo(json.dumps({"api_base": settings.people_base, "max_age": settings.max_age,
                               "lists": lists}))
        return
    if not lists:
        click.echo(f"nothing cached for {settings.people_base} (try `bulkschedule org refresh`)")
        return
    for item in lists:
        age = float(str(item["age_seconds"]))
        stale = "  (stale)" if age > settings.max_age else ""
        parent = f" of {item['parent']}" if item["parent"] else ""
        click.echo(f"{item['kind']}{parent}: {item['entries']} entries, fetched "
                   f"{_age(age)} ago{stale}")


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

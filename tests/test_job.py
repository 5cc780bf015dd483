"""`job.send` as every door calls it: one outcome event (so one log line) per input row, and the
journal run id reported at once. Against the sandbox over loopback, with a short window."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
from pathlib import Path

import pytest

from bulkschedule.app import job
from bulkschedule.app.config import Settings
from bulkschedule.app.logs import log_outcome
from bulkschedule.app.target import open_target
from bulkschedule.core.problems import Status
from bulkschedule.sandbox.server import Sandbox, SandboxConfig
from bulkschedule.send.journal import Journal
from bulkschedule.send.runner import Event, OutcomeEvent
from bulkschedule.zoho.auth import StaticToken

ROOT = Path(__file__).resolve().parents[1]
WITH_ERRORS = ROOT / "sample_data" / "sessions_with_errors.csv"
TODAY = dt.date(2026, 6, 1)  # the samples' 2027 dates stay in the future whatever the real date

pytestmark = pytest.mark.slow


def row_logger() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    logger = logging.getLogger(f"test-job-{id(out)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler(out))
    return logger, out


def send_settings(url: str, state: Path) -> job.SendSettings:
    return job.SendSettings(api_base=url, state_dir=state, rate_calls=30, rate_period=60.0,
                            lock_seconds=300.0, speed=60.0)


@pytest.mark.parametrize("dry_run", [True, False])
async def test_one_log_line_per_input_row_and_the_run_id_at_once(tmp_path: Path,
                                                                 dry_run: bool) -> None:
    validation = job.load(WITH_ERRORS, today=TODAY)
    assert validation.error_rows and validation.sessions  # both kinds of row, or no test
    logger, out = row_logger()
    events: list[Event] = []
    registered: list[int] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, OutcomeEvent):
            log_outcome(logger, event.outcome)

    def on_register(run_id: int) -> None:
        assert not events  # before anything is reported: the caller can name the run first
        registered.append(run_id)

    async with Sandbox(SandboxConfig(speed=60.0)) as sb:
        result = await job.send(
            validation, send_settings(sb.url, tmp_path / "state"),
            tokens=lambda s: StaticToken(sb.token), results_path=tmp_path / "r.xlsx",
            dry_run=dry_run, on_event=on_event, on_register=on_register)

    rows = [e.outcome.row for e in events if isinstance(e, OutcomeEvent)]
    assert sorted(rows) == sorted(validation.table.row_numbers)  # every row, exactly once
    lines = out.getvalue().splitlines()
    assert len(lines) == validation.n_rows
    assert {line.split(":")[0] for line in lines} == {f"row {r}" for r in rows}
    invalid = [r for r in rows if result.outcomes[(r, 0)].status == Status.INVALID]
    assert set(invalid) == set(validation.error_rows)
    assert rows[: len(invalid)] == sorted(invalid)  # known before anything is sent: first
    expected = {Status.WOULD_CREATE} if dry_run else {Status.CREATED}
    assert {o.status for o in result.outcomes.values()} - {Status.INVALID} == expected

    assert registered == [result.run_id]
    with Journal(tmp_path / "state") as journal:
        info = journal.run(result.run_id)
    assert info is not None and info.dry_run == dry_run and info.file == str(WITH_ERRORS)


async def test_rows_never_reached_are_reported_too(tmp_path: Path) -> None:
    """A stop before the first call: the runner reports the rows it was given, `job.send` the
    invalid ones; nothing is left out of the log."""
    validation = job.load(WITH_ERRORS, today=TODAY)
    stop = asyncio.Event()
    stop.set()
    seen: list[int] = []

    def on_event(event: Event) -> None:
        if isinstance(event, OutcomeEvent):
            seen.append(event.outcome.row)

    async with Sandbox(SandboxConfig(speed=60.0)) as sb:
        result = await job.send(
            validation, send_settings(sb.url, tmp_path / "state"),
            tokens=lambda s: StaticToken(sb.token), results_path=None, stop=stop,
            on_event=on_event)
        assert sb.stats()["created"] == 0
    assert sorted(seen) == sorted(validation.table.row_numbers)
    assert result.counts.get("pending", 0) == len(validation.sessions)


async def test_open_target_sandbox_uses_a_private_state_folder(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "real-state", rate="10/1", lock_seconds=1.0)
    async with open_target(settings, sandbox=True, speed=2.0) as target:
        assert target.sandbox is not None and target.api_base == target.sandbox.url
        assert target.send.state_dir != settings.state_dir
        assert (target.send.rate_calls, target.send.period) == (10, 0.5)
        assert await target.tokens(None).token() == target.sandbox.token  # type: ignore[arg-type]
    assert not (tmp_path / "real-state").exists()


def test_api_target_needs_credentials_only_to_send(tmp_path: Path) -> None:
    from bulkschedule.app.target import api

    settings = Settings(state_dir=tmp_path / "state", secrets_file=tmp_path / "none.toml")
    with pytest.raises(job.JobError, match="no credentials"):
        api(settings, env={})
    target = api(settings, env={}, need_credentials=False)  # a dry run sends nothing
    assert target.sandbox is None and target.send.state_dir == tmp_path / "state"
    with pytest.raises(job.JobError, match="no Zoho credentials"):
        target.tokens(None)  # type: ignore[arg-type]

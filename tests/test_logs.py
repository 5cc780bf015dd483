"""Log lines: JSON that parses, plain text without control characters, and no secrets anywhere."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import logging.handlers
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkschedule.app import logs
from bulkschedule.core.problems import Outcome, Status

ACCESS = "1000.0123456789abcdef0123456789abcdef.fedcba9876543210fedcba9876543210"
CLIENT_SECRET = "0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    logs.clear_secrets()
    logger = logging.getLogger(logs.LOGGER_NAME)
    saved = (logger.propagate, logger.level)
    yield
    # setup_logging stops propagation; other test modules rely on caplog seeing these records
    logger.propagate, logger.level = saved
    for handler in ours(logger):
        logger.removeHandler(handler)
        handler.close()
    logs.clear_secrets()


def ours(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers setup_logging added (pytest may attach capture handlers of its own)."""
    return [h for h in logger.handlers if getattr(h, "_bulkschedule", False)]


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_parse_with_fields() -> None:
    out = io.StringIO()
    logger = logs.setup_logging(None, "json", stream=out, is_tty=False)
    created_row = Outcome(7, Status.CREATED, "412762000001234567", "", 1)
    logs.log_outcome(logger, created_row, sheet="t.xlsx")
    logs.log_outcome(logger, Outcome(8, Status.FAILED, None, 'INVALID_INPUT "date"\nline2', 3))
    logs.log_lock(logger, 1_800_000_300.0, "HTTP 429")
    logs.log_summary(logger, {"created": 1, "failed": 1, "exists": 0})
    records = [json.loads(line) for line in lines(out)]
    assert len(records) == 4  # the newline inside a message did not split a record
    created, failed, lock, summary = records
    assert created["event"] == "row" and created["level"] == "INFO"
    assert created["row"] == 7 and created["status"] == "created"
    assert created["sessionId"] == "412762000001234567" and created["sheet"] == "t.xlsx"
    assert {"time", "level", "event", "message"} <= created.keys()
    assert failed["level"] == "ERROR" and failed["detail"] == 'INVALID_INPUT "date"\nline2'
    assert failed["attempts"] == 3 and failed["sessionId"] is None
    assert lock["event"] == "lockout" and lock["level"] == "WARNING"
    assert lock["until"].startswith("20") and lock["reason"] == "HTTP 429"
    assert summary["event"] == "summary" and summary["counts"]["created"] == 1
    assert summary["message"] == "summary: created=1 failed=1"


def test_text_is_one_plain_line_per_event() -> None:
    out = io.StringIO()
    logger = logs.setup_logging(None, "text", stream=out, is_tty=False)
    logs.log_outcome(logger, Outcome(8, Status.FAILED, None, "bad\r\n\x1b[31mred\x1b[0m\ttab", 2))
    logs.log_outcome(logger, Outcome(9, Status.CREATED, "412762000001234567"))
    got = lines(out)
    assert len(got) == 2
    assert got[0].endswith("ERROR row 8: failed attempts=2 - bad   [31mred [0m tab")
    assert got[1].endswith("INFO row 9: created sessionId=412762000001234567")
    for line in got:
        assert all(ch >= " " and ch != "\x7f" for ch in line)


def test_on_a_terminal_only_warnings_reach_the_stream() -> None:
    out = io.StringIO()
    logger = logs.setup_logging(None, "text", stream=out, is_tty=True)
    logs.log_outcome(logger, Outcome(2, Status.CREATED, "1"))
    logs.log_lock(logger, 1_800_000_000, "7209")
    assert len(lines(out)) == 1 and "lockout" in out.getvalue()


def test_registered_secret_and_token_shapes_are_redacted_everywhere(tmp_path: Path) -> None:
    out = io.StringIO()
    log_file = tmp_path / "logs" / "b.log"
    logger = logs.setup_logging(log_file, "json", stream=out, is_tty=False)
    logs.register_secret(CLIENT_SECRET)
    logs.register_secret("abc")  # too short to register: would mangle every line
    logger.info("posting client_secret %s", CLIENT_SECRET)
    logger.info("header Authorization: Zoho-oauthtoken %s", "anything-at-all")
    logger.info("bare token %s in text", ACCESS)
    logger.info("url https://x/oauth/v2/token?refresh_token=%s&grant_type=refresh_token", "r" * 30)
    logger.info('body {"access_token": "%s", "expires_in": 3600}', "z" * 40)
    logger.info("extra field", extra={"event": "auth", "detail": f"got {ACCESS}"})
    try:
        raise RuntimeError(f"failed with {CLIENT_SECRET}")
    except RuntimeError:
        logger.exception("crash")
    for text in (out.getvalue(), log_file.read_text(encoding="utf-8")):
        assert CLIENT_SECRET not in text and ACCESS not in text
        assert "anything-at-all" not in text and "r" * 30 not in text and "z" * 40 not in text
        assert text.count("***") >= 7
        records = [json.loads(line) for line in text.splitlines()]
        assert records[1]["message"] == "header Authorization: Zoho-oauthtoken ***"
        assert records[5]["detail"] == "got ***"
        assert "RuntimeError: failed with ***" in records[6]["exception"]


def test_redact_text_mode_and_other_loggers(tmp_path: Path) -> None:
    out = io.StringIO()
    logs.setup_logging(None, "text", stream=out, is_tty=False)
    logs.register_secret(CLIENT_SECRET)
    child = logging.getLogger("bulkschedule.zoho.client")
    child.warning("retrying with %s and %s", CLIENT_SECRET, ACCESS)
    assert lines(out)[0].endswith("WARNING retrying with *** and ***")


def test_short_values_not_registered() -> None:
    logs.register_secret("abc")
    logs.register_secret(None)
    assert logs.redact("abc def") == "abc def"


def test_rotating_file_handler_configured_and_setup_is_idempotent(tmp_path: Path) -> None:
    log_file = tmp_path / "nested" / "bulkschedule.log"
    logs.setup_logging(log_file, "text", stream=io.StringIO(), is_tty=False)
    logger = logs.setup_logging(log_file, "text", stream=io.StringIO(), is_tty=False)
    files = [h for h in ours(logger) if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert len(files) == 1 and len(ours(logger)) == 2  # no duplicate handlers on re-setup
    assert files[0].maxBytes == 5 * 1024 * 1024 and files[0].backupCount == 5
    assert Path(files[0].baseFilename) == log_file
    logger.info("hello")
    assert log_file.read_text(encoding="utf-8").rstrip().endswith("INFO hello")
    assert logger.propagate is False


def test_rotation_happens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_BYTES", 200)
    log_file = tmp_path / "b.log"
    logger = logs.setup_logging(log_file, "text", stream=io.StringIO(), is_tty=False)
    for i in range(20):
        logger.info("line %d %s", i, "x" * 40)
    assert (tmp_path / "b.log.1").exists() and log_file.stat().st_size <= 200


def test_bad_format_rejected() -> None:
    with pytest.raises(ValueError, match="yaml"):
        logs.setup_logging(None, "yaml", stream=io.StringIO())


def _redact_in_full(text: str) -> str:
    """`logs.redact` without its shortcut: every registered secret, then every pattern."""
    for secret in sorted(logs._secrets, key=len, reverse=True):
        text = text.replace(secret, logs.MASK)
    for pattern, replacement in logs._TOKEN_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@pytest.mark.parametrize("text", [
    "row 5: created sessionId=478346000010001234",
    "row 6: failed - INVALID_INPUT date",
    "Authorization: ZOHO-OAUTHTOKEN abc.def",
    "authorization: zoho-oauthtoken abc.def",
    "Bearer abcdef",
    "token 1000.0123456789abcdef.0123456789ABCDEF here",
    "https://x/token?REFRESH_TOKEN=abc&client_secret=def",
    '{"Access_Token": "abc", "x": 1}',
    # not ASCII: a case-blind pattern matches more than lower() maps (the long s is an s to it)
    "https://x/token?acce\u017fs_token=abc",
    "r\u00e9union room 1000.0123456789abcdef.0123456789abcdef",
])
def test_redact_shortcut_changes_nothing(text: str) -> None:
    """The quick test that skips the patterns never skips a line they would change."""
    logs.register_secret(CLIENT_SECRET)
    assert logs.redact(text) == _redact_in_full(text)
    assert logs.redact(text + " " + CLIENT_SECRET) == _redact_in_full(text + " " + CLIENT_SECRET)


def test_registered_secrets_longest_first_whenever_registered() -> None:
    logs.register_secret("abcdefgh")
    logs.register_secret("abcdefgh-and-more")
    assert logs.redact("x abcdefgh-and-more y abcdefgh") == "x *** y ***"
    logs.clear_secrets()
    assert logs.redact("abcdefgh") == "abcdefgh"


def test_text_time_is_each_record_own_second() -> None:
    formatter = logs.TextFormatter()

    def at(created: float) -> str:
        record = logging.LogRecord("bulkschedule", logging.INFO, "", 0, "hello", None, None)
        record.created = created
        return formatter.format(record)[:19]

    first, again, later = at(1_800_000_000.2), at(1_800_000_000.9), at(1_800_000_001.1)
    assert first == again == dt.datetime.fromtimestamp(1_800_000_000).strftime("%Y-%m-%d %H:%M:%S")
    assert later == dt.datetime.fromtimestamp(1_800_000_001).strftime("%Y-%m-%d %H:%M:%S")
    assert at(1_800_000_000.5) == first  # back to an earlier second

"""Logging for unattended runs: one line per row outcome and per lockout, never a secret.

Two formats. ``text`` is one plain line per event with no control characters, so cron mail and
``journalctl`` stay readable. ``json`` is one JSON object per line with fixed keys (``time``,
``level``, ``event``, ``message``) plus the event's fields (``row``, ``status``, ``sessionId``,
``detail``, ``until``, ...), for log shippers.

Redaction is done by a handler filter (so it covers records from every ``bulkschedule.*`` logger
and from libraries routed here) and again on the final formatted line (so a secret inside an
exception traceback is caught too). It replaces every value registered with `register_secret`
and anything shaped like a Zoho token, whoever logged it.

Stdlib only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import re
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal

from bulkschedule.core.problems import Outcome, Status

LOGGER_NAME = "bulkschedule"
MAX_BYTES = 5 * 1024 * 1024
BACKUP_COUNT = 5
MASK = "***"
#: Shorter values are not registered: redacting every "abc" would mangle the log and hide nothing
#: worth hiding (real Zoho secrets are 30-70 characters).
MIN_SECRET_LENGTH = 8

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
#: `_secrets`, longest first (no partial leftovers), rebuilt when one is registered: reading it
#: needs no lock, and a log line per row must not sort the set again.
_ordered: tuple[str, ...] = ()

_TOKEN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # the header as sent: "Authorization: Zoho-oauthtoken 1000.abc..."
    (re.compile(r"(Zoho-oauthtoken)\s+[^\s\"',;]+", re.IGNORECASE), r"\1 " + MASK),
    (re.compile(r"(Bearer)\s+[^\s\"',;]+"), r"\1 " + MASK),
    # Zoho access/refresh tokens: 1000.<hex>.<hex>
    (re.compile(r"\b1000\.[0-9a-fA-F]{8,}\.[0-9a-fA-F]{8,}\b"), MASK),
    # form/query parameters and JSON members that carry secrets
    (
        re.compile(r"\b(access_token|refresh_token|client_secret)=[^&\s\"']+", re.IGNORECASE),
        r"\1=" + MASK,
    ),
    (
        re.compile(
            r"(\"(?:access_token|refresh_token|client_secret)\"\s*:\s*\")[^\"]*", re.IGNORECASE
        ),
        r"\1" + MASK,
    ),
)


def _may_hold_token(text: str) -> bool:
    """Whether ``text`` may hold a match of `_TOKEN_PATTERNS`: a line without one (nearly every
    line) skips the five substitutions. Plain ``in`` tests on the lower-cased text, ten times
    faster than one case-blind regular expression; exact for ASCII text, so any other text is
    given to the patterns (a regular expression ignoring case matches more than lower() maps)."""
    if not text.isascii():
        return True
    low = text.lower()
    return ("oauthtoken" in low or "bearer" in low or "1000." in low or "access_token" in low
            or "refresh_token" in low or "client_secret" in low)


# Control characters (C0 except none, DEL, C1): a log line must not move the cursor, clear the
# terminal or split itself in two.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: LogRecord attributes that are not "extra" fields.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def register_secret(value: str | None) -> None:
    """Redact this exact value from every log record from now on (tokens, client secret).

    Call it as soon as a secret is loaded or minted, before anything could log it.
    """
    global _ordered
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _secrets_lock:
            _secrets.add(value)
            _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def clear_secrets() -> None:
    """Forget registered secrets (tests)."""
    global _ordered
    with _secrets_lock:
        _secrets.clear()
        _ordered = ()


def redact(text: str) -> str:
    """``text`` with registered secrets and token-shaped strings replaced by ``***``."""
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    if not _may_hold_token(text):
        return text
    for pattern, replacement in _TOKEN_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


#: Field types that cannot hold a secret.
_SCALARS = frozenset({int, float, bool, type(None)})


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


class RedactFilter(logging.Filter):
    """Rewrites each record in place: message (with its args), extra fields, exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        fields = vars(record)
        for key in fields.keys() - _STANDARD_ATTRS:
            value = fields[key]
            if value.__class__ is str:
                fields[key] = redact(value)
            elif value.__class__ not in _SCALARS:  # a row's line: numbers and None, mostly
                fields[key] = _redact_value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None  # exc_text now holds the (redacted) traceback
        return True


def _clean(text: str) -> str:
    return _CONTROL_RE.sub(" ", text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class TextFormatter(logging.Formatter):
    """``2026-11-27 03:00:01 INFO row 5: created sessionId=...``: plain, one line per record.

    A traceback, if any, follows on indented lines (each cleaned the same way).
    """

    _second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def format(self, record: logging.LogRecord) -> str:
        second, when = self._second
        if second != int(record.created):  # one strftime a second, not one a line
            second = int(record.created)
            when = dt.datetime.fromtimestamp(second).strftime("%Y-%m-%d %H:%M:%S")
            self._second = (second, when)
        line = f"{when} {record.levelname} {_clean(record.getMessage())}"
        if record.exc_text:
            line += "".join(f"\n    {_clean(t)}" for t in record.exc_text.splitlines())
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, local with offset), level, event, message, and
    every extra field. ``json.dumps`` escapes control characters, so a record is always one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, tz=dt.UTC).astimezone()
        obj: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "event": "log",
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            if key not in {"time", "level", "message"}:
                obj[key] = value
        if record.exc_text:
            obj["exception"] = record.exc_text
        return redact(json.dumps(obj, ensure_ascii=False, default=str))


def setup_logging(
    log_file: str | Path | None,
    log_format: Literal["text", "json"] | str = "text",
    *,
    stream: IO[str] | None = None,
    is_tty: bool | None = None,
) -> logging.Logger:
    """Configure the ``bulkschedule`` logger; safe to call again (previous handlers are replaced).

    - ``log_file``: a rotating file (5 MB x 5 backups) in ``log_format``; its folder is created.
    - ``stream`` (default stderr): gets the same lines only when it is *not* a terminal (cron,
      systemd, a pipe). On a terminal the CLI's own progress display reports, and log lines would
      tear it; warnings and errors still go through there.
    The logger does not propagate to the root logger, so nothing is printed twice.
    """
    if log_format not in {"text", "json"}:
        raise ValueError(f"log format {log_format!r} is not text or json")
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_bulkschedule", False):
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(logging.INFO)
    logger.propagate = False

    formatter: logging.Formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    out = stream if stream is not None else sys.stderr
    if is_tty is None:
        isatty = getattr(out, "isatty", None)
        is_tty = bool(isatty()) if callable(isatty) else False

    handlers: list[logging.Handler] = []
    stream_handler = logging.StreamHandler(out)
    stream_handler.setLevel(logging.WARNING if is_tty else logging.INFO)
    handlers.append(stream_handler)
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
            )
        )
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RedactFilter())
        handler._bulkschedule = True  # type: ignore[attr-defined]  # our mark on a stdlib handler
        logger.addHandler(handler)
    return logger


_OUTCOME_LEVELS: dict[str, int] = {
    Status.CREATED: logging.INFO,
    Status.EXISTS: logging.INFO,
    Status.WOULD_CREATE: logging.INFO,
    Status.CHANGED: logging.WARNING,
    Status.INVALID: logging.WARNING,
    Status.PENDING: logging.WARNING,
    Status.FAILED: logging.ERROR,
    Status.UNKNOWN: logging.ERROR,
}


def log_outcome(logger: logging.Logger, outcome: Outcome, *, sheet: str | None = None) -> None:
    """One line for one row: ``[term.xlsx] row 5: created sessionId=123``, or for a session of a
    repeating row ``row 5 (12-01-2027): created ...`` (its row and date). ``sheet`` names the
    file when one log covers several (the inbox)."""
    status = str(outcome.status)
    parts = [f"{outcome.where}: {status}"]
    if outcome.session_id:
        parts.append(f"sessionId={outcome.session_id}")
    if outcome.attempts > 1:
        parts.append(f"attempts={outcome.attempts}")
    text = " ".join(parts)
    if outcome.message:
        text += f" - {outcome.message}"
    if sheet:
        text = f"[{sheet}] {text}"
    extra: dict[str, Any] = {
        "event": "row",
        "row": outcome.row,
        **({"occurrence": outcome.occurrence, "date": outcome.date}
           if outcome.occurrence is not None else {}),
        "status": status,
        "sessionId": outcome.session_id,
        "detail": outcome.message,
        "attempts": outcome.attempts,
    }
    if sheet:
        extra["sheet"] = sheet
    logger.log(_OUTCOME_LEVELS.get(status, logging.INFO), text, extra=extra)


def log_lock(logger: logging.Logger, until: float, reason: str) -> None:
    """One line when a lockout starts: every worker waits until ``until`` (epoch seconds)."""
    when = dt.datetime.fromtimestamp(until, tz=dt.UTC).astimezone()
    logger.warning(
        "rate limit lockout until %s: %s",
        when.strftime("%H:%M:%S"),
        reason,
        extra={"event": "lockout", "until": when.isoformat(timespec="seconds"), "reason": reason},
    )


def log_summary(
    logger: logging.Logger, counts: Mapping[str, int], *, sheet: str | None = None
) -> None:
    """The closing line: ``summary: created=10 exists=2 failed=1`` (zero counts left out)."""
    shown = {k: v for k, v in counts.items() if v}
    text = "summary: " + (" ".join(f"{k}={v}" for k, v in shown.items()) or "no rows")
    if sheet:
        text = f"[{sheet}] {text}"
    extra: dict[str, Any] = {"event": "summary", "counts": dict(counts)}
    if sheet:
        extra["sheet"] = sheet
    logger.info(text, extra=extra)

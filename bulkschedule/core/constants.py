"""Every fixed list the tool knows, in one place: data centres, lockout and payload styles, exit
codes. Anything that offers a choice (a click option, a config key, the sandbox) reads it here, so
adding a data centre or a style is one entry."""

from __future__ import annotations

from enum import IntEnum
from typing import Final, Literal, get_args

#: data centre -> (People API base, accounts base). CA is zohocloud.ca, not zoho.ca.
DATA_CENTRES: Final[dict[str, tuple[str, str]]] = {
    "us": ("https://people.zoho.com", "https://accounts.zoho.com"),
    "eu": ("https://people.zoho.eu", "https://accounts.zoho.eu"),
    "in": ("https://people.zoho.in", "https://accounts.zoho.in"),
    "au": ("https://people.zoho.com.au", "https://accounts.zoho.com.au"),
    "jp": ("https://people.zoho.jp", "https://accounts.zoho.jp"),
    "cn": ("https://people.zoho.com.cn", "https://accounts.zoho.com.cn"),
    "ca": ("https://people.zohocloud.ca", "https://accounts.zohocloud.ca"),
    "sa": ("https://people.zoho.sa", "https://accounts.zoho.sa"),
    "uk": ("https://people.zoho.uk", "https://accounts.zoho.uk"),
}
DATA_CENTRE_NAMES: Final[tuple[str, ...]] = tuple(DATA_CENTRES)

#: How ``sessionData`` travels: the query string (as documented), a form body, or a JSON body.
PayloadStyle = Literal["query", "form", "json"]
PAYLOAD_STYLES: Final[tuple[PayloadStyle, ...]] = get_args(PayloadStyle)

#: The shapes of a lockout reply the sandbox can play: HTTP 429, 422 "Maximum limit exceeded",
#: or error code 7209 inside the envelope (the client recognises all three).
LockStyle = Literal["429", "422", "7209"]
LOCK_STYLES: Final[tuple[LockStyle, ...]] = get_args(LockStyle)

#: Where the sandbox's latency falls: before the call is counted ("arrival": a slow network or a
#: busy server, which is what trips a lockout) or after it, before the reply ("reply").
LatencyAt = Literal["arrival", "reply"]
LATENCY_AT: Final[tuple[LatencyAt, ...]] = get_args(LatencyAt)

#: The field names the sandbox's org listings use (Zoho publishes none): see docs/sandbox.md.
FieldStyle = Literal["default", "short", "employee", "legacy", "display"]
FIELD_STYLES: Final[tuple[FieldStyle, ...]] = get_args(FieldStyle)

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = get_args(LogFormat)

#: Zoho's documented threshold for the LMS APIs, and its lockout.
DEFAULT_RATE: Final = "30/60"
DEFAULT_LOCK_SECONDS: Final = 300.0
#: How long cached org lists (courses, batches, modules, trainers, rooms) are trusted: 12 hours.
DEFAULT_MAX_AGE: Final = 12 * 3600.0


class Exit(IntEnum):
    """Process exit codes, a contract that cron jobs and scripts rely on (README, "Exit codes")."""

    OK = 0  #: validate: no errors; run: every row created, now or earlier
    INCOMPLETE = 1  #: validate: some row has an error; run: some rows invalid, failed, unknown
    CANNOT_START = 2  #: unreadable sheet, bad flags or settings, no or rejected credentials
    SIGINT = 130  #: stopped by Ctrl-C, after writing the results workbook
    SIGTERM = 143  #: stopped by SIGTERM, after writing the results workbook


EXIT_OK: Final = Exit.OK
EXIT_INCOMPLETE: Final = Exit.INCOMPLETE
EXIT_CANNOT_START: Final = Exit.CANNOT_START
EXIT_SIGINT: Final = Exit.SIGINT
EXIT_SIGTERM: Final = Exit.SIGTERM

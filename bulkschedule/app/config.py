"""Settings and secrets: where every value comes from, checked once, before anything is sent.

Every non-secret setting is one entry of `SETTINGS` (like the sheet's ``COLUMNS``): its name
(also its config-file key), flag, environment variable, parser with bounds, default and help.
The command line's options (`bulkschedule.cli.options`), the precedence below, ``config show``
and the table in docs/configuration.md are all built from it, so a setting is added in one place.

Values come from four places with a fixed precedence: command-line flag > environment variable >
TOML config file > built-in default. Every resolved value records its source, so
``bulkschedule config show`` can answer "why is it using the EU data centre?" without guesswork.

Secrets never live in the config file (it gets copied, pasted into tickets and committed to
repositories). They come from the environment or from a separate secrets file that only its owner
can read; a group- or world-readable secrets file is refused rather than silently used, and so is
a credential holding a line break or another control character (it could never be sent).

Stdlib only, and no import of the HTTP client: ``config show`` must stay fast and must work on a
machine where the network stack is broken.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Protocol

from bulkschedule.core.constants import (
    DATA_CENTRE_NAMES,
    DATA_CENTRES,
    DEFAULT_LOCK_SECONDS,
    DEFAULT_MAX_AGE,
    DEFAULT_RATE,
    LOG_FORMATS,
    PAYLOAD_STYLES,
    LogFormat,
    PayloadStyle,
)
from bulkschedule.core.errors import ConfigError
from bulkschedule.core.files import atomic_write_text
from bulkschedule.core.numbers import (
    MAX_RATE_CALLS,
    MAX_RATE_SECONDS,
    parse_duration,
    parse_number,
    parse_rate,
)
from bulkschedule.core.text import mask
from bulkschedule.sheet.limits import MB, ReadLimits
from bulkschedule.sheet.limits import SETTINGS as LIMIT_SETTINGS

__all__ = [
    "SETTINGS",
    "ConfigError",
    "Setting",
    "Settings",
    "docs_table",
    "load_settings",
    "mask",
    "parse_rate",
    "show",
]

APP = "bulkschedule"

#: The config file is found before any setting is read, so it is not a setting itself.
CONFIG_ENV: Final = "BULKSCHEDULE_CONFIG"
CONFIG_FLAG: Final = "--config"
CONFIG_HELP: Final = (
    "Config file (default: $BULKSCHEDULE_CONFIG or ~/.config/bulkschedule/config.toml)."
)

#: The longest wait any setting may name (a lockout, a poll interval): a day. Anything longer is
#: a typo, and 1e308 seconds would overflow the clock arithmetic later.
MAX_SECONDS: Final = 86_400
#: Calls in flight at once: more than this only queues at the limiter.
MAX_WORKERS: Final = 64
#: The largest size a setting may name in MB (a terabyte): beyond it, a typo.
MAX_MEGABYTES: Final = 1_048_576


def _cores() -> int:
    """The default number of checks the upload page runs at once."""
    return os.cpu_count() or 1

#: Secret names: the environment variable names, also the keys of the secrets file and of the dict
#: returned by `load_secrets`. One vocabulary everywhere, so nothing needs translating.
SECRET_NAMES: tuple[str, ...] = (
    "ZOHO_ACCESS_TOKEN",
    "ZOHO_CLIENT_ID",
    "ZOHO_CLIENT_SECRET",
    "ZOHO_REFRESH_TOKEN",
    "ZOHO_ACCOUNTS_URL",
)
#: The names that are credentials (ZOHO_ACCOUNTS_URL is only a host; it is shown unmasked).
CREDENTIAL_NAMES: tuple[str, ...] = SECRET_NAMES[:4]
_REFRESH_SET: tuple[str, ...] = ("ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN")

#: Keys refused in the config file, with a pointer to the secrets file instead.
_SECRET_KEYS_IN_CONFIG = frozenset(
    {"client_secret", "refresh_token", "access_token", "client_id", "grant_code", "code"}
    | {n.lower() for n in SECRET_NAMES if n != "ZOHO_ACCOUNTS_URL"}
)


# --------------------------------------------------------------------------------------------
# paths


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _path(text: str, base_dir: Path | None, env: Mapping[str, str]) -> Path:
    p = _home(env) / text[2:] if text == "~" or text.startswith("~/") else Path(text)
    if not p.is_absolute():
        p = (base_dir or Path.cwd()) / p
    return p


def _xdg(env: Mapping[str, str], var: str, fallback: tuple[str, ...]) -> Path:
    # The XDG spec says relative values are invalid and must be ignored.
    value = env.get(var, "")
    if value and Path(value).is_absolute():
        return Path(value)
    return _home(env).joinpath(*fallback)


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/bulkschedule/config.toml``, else ``~/.config/bulkschedule/...``."""
    return _xdg(env, "XDG_CONFIG_HOME", (".config",)) / APP / "config.toml"


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/bulkschedule``, else ``~/.local/state/bulkschedule``.

    ``BULKSCHEDULE_STATE`` is not consulted here: it is the environment level of ``state_dir``.
    """
    return _xdg(env, "XDG_STATE_HOME", (".local", "state")) / APP


def default_secrets_path(env: Mapping[str, str]) -> Path:
    """Where ``bulkschedule auth`` writes when the config names no ``secrets_file``."""
    return _xdg(env, "XDG_CONFIG_HOME", (".config",)) / APP / "secrets.toml"


# --------------------------------------------------------------------------------------------
# kinds of value: each parses a flag's text, an environment variable or a TOML value, and says
# what it accepts (for the help and the docs). A ValueError says what is wrong, never where.


@dataclass(frozen=True, slots=True)
class Origin:
    """What a parser needs to know about where a value came from: relative paths are anchored
    at ``base_dir`` (the config file's folder for file values, else the working directory), and
    ``~`` at ``env["HOME"]``."""

    base_dir: Path | None
    env: Mapping[str, str]


class Kind(Protocol):
    """How one setting's values are read."""

    def parse(self, value: object, origin: Origin) -> Any: ...

    def allowed(self) -> str:
        """What is accepted, in a few words of Markdown (the docs table)."""
        ...

    def bounds(self) -> str | None:
        """The range a number must fall in, for the help text; None for non-numbers."""
        ...


def _as_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value.strip()


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a fixed list (case-insensitive). ``what`` names the list in the error, so a typo
    reads "unknown data centre 'xx'" rather than "is not one of"."""

    choices: tuple[str, ...]
    what: str | None = None

    def parse(self, value: object, origin: Origin) -> str:
        text = _as_text(value).lower()
        if text not in self.choices:
            listed = ", ".join(self.choices)
            if self.what:
                raise ValueError(f"unknown {self.what} {value!r}; one of {listed}")
            raise ValueError(f"{value!r} is not one of {listed}")
        return text

    def allowed(self) -> str:
        return " ".join(f"`{c}`" for c in self.choices)

    def bounds(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class Number:
    """A finite number within [low, high] (`core.numbers.parse_number`). With ``zero``, 0 means
    what it says (the inbox's watch interval: "run once") and is returned as None."""

    low: int
    high: int
    integer: bool = False
    zero: str | None = None

    def parse(self, value: object, origin: Origin) -> float | int | None:
        number = parse_number(value, integer=self.integer, low=self.low, high=self.high)
        return None if self.zero is not None and number == 0 else number

    def allowed(self) -> str:
        return f"{self.low:,} to {self.high:,}" + (f" (0: {self.zero})" if self.zero else "")

    def bounds(self) -> str:
        return f"{self.low:,} to {self.high:,}"


@dataclass(frozen=True, slots=True)
class Rate:
    """``N/SECONDS`` (`core.numbers.parse_rate`), kept as text without spaces."""

    def parse(self, value: object, origin: Origin) -> str:
        text = _as_text(value)
        parse_rate(text)
        return text.replace(" ", "")

    def allowed(self) -> str:
        return f"N/SECONDS, N up to {MAX_RATE_CALLS:,}, SECONDS up to {MAX_RATE_SECONDS:,.0f}"

    def bounds(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class Duration:
    """A duration: ``30m``, ``12h``, ``2d``, or seconds (`core.numbers.parse_duration`)."""

    def parse(self, value: object, origin: Origin) -> float:
        return parse_duration(value)

    def allowed(self) -> str:
        return "a duration such as `30m`, `12h` or `2d` (seconds without a unit)"

    def bounds(self) -> str | None:
        return "0 to a year"


@dataclass(frozen=True, slots=True)
class Url:
    """An http(s) URL; a trailing slash is dropped."""

    def parse(self, value: object, origin: Origin) -> str:
        base = _as_text(value).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return base

    def allowed(self) -> str:
        return "an `http(s)://` URL"

    def bounds(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class Switch:
    """true/false (TOML booleans, or yes/no, on/off, 1/0 as text)."""

    def parse(self, value: object, origin: Origin) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            low = value.strip().lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off"}:
                return False
        raise ValueError(f"{value!r} is not true/false")

    def allowed(self) -> str:
        return "`true` or `false`"

    def bounds(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class PathValue:
    """A file or folder path: ``~/`` is the home folder, a relative path is relative to the
    value's `Origin`."""

    def parse(self, value: object, origin: Origin) -> Path:
        if not isinstance(value, str | os.PathLike) or not str(value).strip():
            raise ValueError(f"{value!r} is not a path")
        return _path(str(value).strip(), origin.base_dir, origin.env)

    def allowed(self) -> str:
        return "a path"

    def bounds(self) -> str | None:
        return None


# --------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True, slots=True)
class Alias:
    """A flag that sets a setting to a fixed value (``--once`` is ``--watch 0``)."""

    flag: str
    value: object
    help: str

    @property
    def param(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting. ``name`` is both its key in the config file (``inbox.watch`` is ``watch`` in
    ``[inbox]``) and its attribute path in `Settings`.

    ``scope`` says which commands take its flag: "send" every command that talks to the API
    (run, inbox, auth, forget, serve, config show), "inbox" the inbox, "serve" the upload page,
    "read" both doors that read other people's sheets (inbox, serve); config show takes them all.
    A setting given on the command line as an argument (the inbox's DIR) names it in
    ``argument``; the command declares the argument under the name `param`.
    """

    name: str
    label: str  # for the docs table
    kind: Kind
    default: Any
    help: str  # the flag's help, without the default or the range (added from the fields)
    help_default: str | None = None  # the default as the help shows it; None: not shown
    flag: str | None = None
    env: str | None = None
    metavar: str | None = None
    scope: Literal["send", "inbox", "serve", "read"] = "send"
    folder: bool = False  # a folder path: the flag refuses an existing file
    aliases: tuple[Alias, ...] = ()
    argument: str | None = None
    default_from: Callable[[Mapping[str, str]], Any] | None = None  # computed from the env
    doc_default: str | None = None  # Markdown for the docs; None: the default value in `code`

    @property
    def param(self) -> str:
        """The command-line parameter's name (click's): ``--lock-seconds`` is ``lock_seconds``."""
        if self.flag:
            return self.flag.lstrip("-").replace("-", "_")
        return self.name.replace(".", "_")

    @property
    def spelling(self) -> str:
        """How an error names the command-line value: the flag, or the argument."""
        return self.flag or self.argument or f"--{self.param.replace('_', '-')}"

    @property
    def help_text(self) -> str:
        """The flag's help: the text, the default and the range."""
        text = self.help
        if self.help_default is not None:
            text += f" (default: {self.help_default})"
        text += "."
        if (bounds := self.kind.bounds()) is not None:
            text += f" From {bounds}."
        return text

    def default_for(self, env: Mapping[str, str]) -> Any:
        return self.default_from(env) if self.default_from else self.default


#: Every non-secret setting, in the order ``config show`` lists them.
SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("dc", "data centre", Choice(DATA_CENTRE_NAMES, "data centre"), default="us",
            help="Zoho data centre", help_default="us", flag="--dc", env="BULKSCHEDULE_DC"),
    Setting("api_base", "API base URL", Url(), default=None,
            help="The People API base URL (instead of --dc), e.g. a proxy or sandbox",
            flag="--api-base", env="BULKSCHEDULE_API_BASE", metavar="URL",
            doc_default="*(from the data centre)*"),
    Setting("rate", "rate", Rate(), default=DEFAULT_RATE, help="At most N calls in any SECONDS",
            help_default=f"{DEFAULT_RATE}, Zoho's limit", flag="--rate",
            env="BULKSCHEDULE_RATE", metavar="N/SECONDS"),
    Setting("lock_seconds", "lockout seconds", Number(0, MAX_SECONDS),
            default=DEFAULT_LOCK_SECONDS, help="How long a lockout lasts",
            help_default=f"{DEFAULT_LOCK_SECONDS:g}", flag="--lock-seconds",
            env="BULKSCHEDULE_LOCK_SECONDS", metavar="S"),
    Setting("workers", "workers", Number(1, MAX_WORKERS, integer=True), default=4,
            help="Calls in flight at once", help_default="4", flag="--workers",
            env="BULKSCHEDULE_WORKERS", metavar="N"),
    Setting("payload_style", "payload style", Choice(PAYLOAD_STYLES), default="query",
            help="How sessionData is sent", help_default="query", flag="--payload-style",
            env="BULKSCHEDULE_PAYLOAD_STYLE"),
    Setting("state_dir", "state folder", PathValue(), default=None, default_from=default_state_dir,
            help="State folder: journal, token cache",
            help_default="~/.local/state/bulkschedule or $BULKSCHEDULE_STATE", flag="--state",
            env="BULKSCHEDULE_STATE", metavar="DIR", folder=True,
            doc_default="`$XDG_STATE_HOME/bulkschedule`, else `~/.local/state/bulkschedule`"),
    Setting("max_rows", "sheet: most rows", Number(1, 10_000_000, integer=True),
            default=100_000, help="Refuse a sheet with more data rows than this",
            help_default="100,000", flag=LIMIT_SETTINGS["max_rows"].flag,
            env=LIMIT_SETTINGS["max_rows"].env, metavar="N"),
    Setting("max_columns", "sheet: most columns", Number(1, 16_384, integer=True),
            default=200, help="Refuse a sheet with more columns than this",
            help_default="200", flag=LIMIT_SETTINGS["max_columns"].flag,
            env=LIMIT_SETTINGS["max_columns"].env, metavar="N"),
    Setting("max_cell_chars", "sheet: most characters in a cell",
            Number(1, 10_000_000, integer=True), default=32_767,
            help="Refuse a cell holding more characters than this (Excel's own limit)",
            help_default="32,767", flag=LIMIT_SETTINGS["max_cell_chars"].flag,
            env=LIMIT_SETTINGS["max_cell_chars"].env, metavar="N"),
    Setting("max_part_mb", "sheet: most MB in a workbook part", Number(1, 100_000, integer=True),
            default=200, help="Refuse a workbook any part of which inflates to more MB than this",
            help_default="200", flag=LIMIT_SETTINGS["max_part_bytes"].flag,
            env=LIMIT_SETTINGS["max_part_bytes"].env, metavar="MB"),
    Setting("max_age", "org cache max age", Duration(), default=DEFAULT_MAX_AGE,
            help="How long cached courses, batches, modules, trainers and rooms are trusted",
            help_default="12h", flag="--max-age", env="BULKSCHEDULE_MAX_AGE", metavar="DURATION",
            doc_default="`12h`"),
    Setting("log_file", "log file", PathValue(), default=None,
            help="Also log to this (rotating) file", flag="--log-file",
            env="BULKSCHEDULE_LOG_FILE", metavar="PATH"),
    Setting("log_format", "log format", Choice(LOG_FORMATS), default="text",
            help="Log line format", help_default="text", flag="--log-format",
            env="BULKSCHEDULE_LOG_FORMAT"),
    Setting("secrets_file", "secrets file", PathValue(), default=None,
            default_from=default_secrets_path,
            help="The secrets file (mode 0600) with the credentials",
            doc_default="`$XDG_CONFIG_HOME/bulkschedule/secrets.toml`, else "
                        "`~/.config/bulkschedule/secrets.toml` (used only if it exists)"),
    Setting("inbox.all_or_nothing", "inbox: all-or-nothing", Switch(), default=False,
            help="A sheet with any error is rejected whole: nothing of it is sent",
            flag="--all-or-nothing", scope="inbox"),
    Setting("inbox.update", "inbox: apply updates", Switch(), default=False,
            help="Also update the sessions whose row differs from them (PATCH); without it "
                 "such rows are only reported 'changed'",
            flag="--update", scope="inbox"),
    Setting("inbox.stable_seconds", "inbox: stable seconds", Number(0, MAX_SECONDS),
            default=30.0, help="Skip files changed in the last S seconds, still being copied",
            help_default="30", flag="--stable-seconds", metavar="S", scope="inbox"),
    Setting("inbox.watch", "inbox: watch interval", Number(0, MAX_SECONDS, zero="run once"),
            default=None,
            help="Keep running, looking for new sheets every SECONDS (for a service)",
            flag="--watch", metavar="SECONDS", scope="inbox",
            aliases=(Alias("--once", 0, "Process what is ready, then exit (the default; for "
                                        "cron and timers)."),),
            doc_default="none (run once)"),
    Setting("inbox.holidays", "inbox: holidays", PathValue(), default=None,
            help="Dates no repeating row of any inbox sheet has a session on: a file with a "
                 "date or a range in the first column (besides a workbook's Holidays sheet)",
            scope="inbox", doc_default="none (only each workbook's Holidays sheet)"),
    Setting("inbox.dir", "inbox: folder", PathValue(), default=None, help="The inbox folder",
            scope="inbox", argument="DIR", doc_default="none (`inbox` without DIR then fails)"),
    Setting("read_memory_mb", "reading: memory cap (MB)", Number(64, MAX_MEGABYTES, integer=True),
            default=1024,
            help="Address space of the process that reads one sheet (inbox, upload page), in MB",
            help_default="1024", flag="--read-memory-mb", env="BULKSCHEDULE_READ_MEMORY_MB",
            metavar="MB", scope="read"),
    Setting("read_cpu_seconds", "reading: CPU cap (s)", Number(1, MAX_SECONDS, integer=True),
            default=60, help="CPU time of the process that reads one sheet (inbox, upload page)",
            help_default="60", flag="--read-cpu-seconds", env="BULKSCHEDULE_READ_CPU_SECONDS",
            metavar="S", scope="read"),
    Setting("web_checks", "upload page: checks at once", Number(1, 1024, integer=True),
            default=None, default_from=lambda env: _cores(),
            help="Uploaded sheets checked at once (more wait in a short queue)",
            help_default="the number of cores", flag="--checks", env="BULKSCHEDULE_WEB_CHECKS",
            metavar="N", scope="serve", doc_default="the number of cores"),
    Setting("uploads_quota_mb", "upload page: uploads quota (MB)",
            Number(1, MAX_MEGABYTES, integer=True), default=1024,
            help="Space for uploaded sheets, their reports and results workbooks, in MB",
            help_default="1024", flag="--uploads-quota-mb", env="BULKSCHEDULE_UPLOADS_QUOTA_MB",
            metavar="MB", scope="serve"),
    Setting("upload_retention_days", "upload page: retention (days)",
            Number(0, 3650, zero="keep uploads for good"), default=14.0,
            help="Remove an upload unused for this many days", help_default="14",
            flag="--upload-retention-days", env="BULKSCHEDULE_UPLOAD_RETENTION_DAYS",
            metavar="DAYS", scope="serve", doc_default="`14`"),
)

#: name -> setting, and every key `load_settings` accepts for a flag (param and name) -> setting.
BY_NAME: Final[dict[str, Setting]] = {s.name: s for s in SETTINGS}
_BY_KEY: Final[dict[str, Setting]] = {s.param: s for s in SETTINGS} | BY_NAME


def _file_keys() -> dict[str, frozenset[str]]:
    """The config file's keys by section (``""`` for the top level, ``"inbox"`` for [inbox])."""
    keys: dict[str, set[str]] = {"": set()}
    for s in SETTINGS:
        section, _, key = s.name.rpartition(".")
        keys.setdefault(section, set()).add(key)
    return {section: frozenset(names) for section, names in keys.items()}


_FILE_KEYS: Final = _file_keys()
_TOP_KEYS: Final = _FILE_KEYS[""] | {section for section in _FILE_KEYS if section}


@dataclass(slots=True)
class InboxSettings:
    """Defaults for ``bulkschedule inbox``. ``watch`` None means run once (the cron default)."""

    all_or_nothing: bool = False
    update: bool = False
    stable_seconds: float = 30.0
    watch: float | None = None
    holidays: Path | None = None  #: a file of dates no repeating row has a session on
    dir: Path | None = None


@dataclass(slots=True)
class Settings:
    """Every non-secret setting, resolved (one field per entry of `SETTINGS`; a test keeps the
    two in step). ``sources`` maps each name (inbox ones as ``inbox.<name>``, plus
    ``config_file``) to "flag", "env BULKSCHEDULE_X", "file /path" or "default"."""

    dc: str = "us"
    api_base: str | None = None
    rate: str = DEFAULT_RATE
    lock_seconds: float = DEFAULT_LOCK_SECONDS
    workers: int = 4
    payload_style: PayloadStyle = "query"
    state_dir: Path = field(default_factory=lambda: Path.home() / ".local" / "state" / APP)
    max_rows: int = 100_000
    max_columns: int = 200
    max_cell_chars: int = 32_767
    max_part_mb: int = 200
    max_age: float = DEFAULT_MAX_AGE
    log_file: Path | None = None
    log_format: LogFormat = "text"
    secrets_file: Path | None = None
    read_memory_mb: int = 1024
    read_cpu_seconds: int = 60
    web_checks: int = field(default_factory=_cores)
    uploads_quota_mb: int = 1024
    upload_retention_days: float | None = 14.0
    config_file: Path | None = None
    inbox: InboxSettings = field(default_factory=InboxSettings)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def rate_pair(self) -> tuple[int, float]:
        """``rate`` as (calls, seconds) for the limiter; already validated."""
        return parse_rate(self.rate)

    @property
    def read_limits(self) -> ReadLimits:
        """How much of a sheet the reader accepts (``--max-rows`` and the others)."""
        return ReadLimits(max_rows=self.max_rows, max_columns=self.max_columns,
                          max_cell_chars=self.max_cell_chars,
                          max_part_bytes=self.max_part_mb * MB)

    @property
    def people_base(self) -> str:
        """The People API base: ``api_base`` if set (sandbox, proxy), else the data centre's."""
        if self.api_base:
            return self.api_base
        return DATA_CENTRES[self.dc][0]

    @property
    def accounts_base(self) -> str:
        """The accounts (OAuth) host of the data centre; ``ZOHO_ACCOUNTS_URL`` overrides it."""
        return DATA_CENTRES[self.dc][1]

    def value(self, name: str) -> Any:
        """A setting by its name in `SETTINGS` (``"inbox.watch"``)."""
        holder: Any = self
        for part in name.split("."):
            holder = getattr(holder, part)
        return holder

    def given(self, name: str) -> bool:
        """Whether the setting came from the command line (not the environment or a file)."""
        return self.sources.get(name) == "flag"


# --------------------------------------------------------------------------------------------
# TOML files (the config file and the secrets file)


def _load_toml(fh: BinaryIO) -> dict[str, Any]:
    """``tomllib.load``, with every way a file can be unreadable as TOML turned into a
    ValueError whose message names a position, never the content (a secrets file is read so):
    syntax errors, bytes that are not UTF-8, and nesting deep enough to exhaust recursion."""
    try:
        return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:  # the message carries "(at line N, column M)"
        raise ValueError(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (at byte {exc.start})") from exc
    except RecursionError as exc:
        raise ValueError("arrays or tables nested too deeply") from exc


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return _load_toml(fh)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc


def _flatten_file(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Check the file's keys and flatten each section (``[inbox]``) into ``inbox.<key>``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key.lower() in _SECRET_KEYS_IN_CONFIG:
            raise ConfigError(
                f"{path}: '{key}' is a secret and does not belong in the config file; move it to "
                f'the secrets file (secrets_file = "...", mode 0600) or the environment '
                f"(see docs/credentials.md)"
            )
        if key not in _TOP_KEYS:
            raise ConfigError(
                f"{path}: unknown key '{key}'; known keys: {', '.join(sorted(_TOP_KEYS))}"
            )
        if key not in _FILE_KEYS:
            flat[key] = value
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: '{key}' must be a table ([{key}])")
        for sub, subvalue in value.items():
            if sub.lower() in _SECRET_KEYS_IN_CONFIG:
                raise ConfigError(f"{path}: '{key}.{sub}' is a secret; move it to the secrets file")
            if sub not in _FILE_KEYS[key]:
                raise ConfigError(
                    f"{path}: unknown key '{key}.{sub}'; known keys in [{key}]: "
                    f"{', '.join(sorted(_FILE_KEYS[key]))}"
                )
            flat[f"{key}.{sub}"] = subvalue
    return flat


# --------------------------------------------------------------------------------------------
# resolution

_RANK = {"flag": 3, "env": 2, "file": 1, "default": 0}


def load_settings(
    flags: Mapping[str, object | None],
    env: Mapping[str, str],
    config_path: str | None,
) -> Settings:
    """Resolve every setting: flag > environment > config file > built-in default.

    ``flags`` maps command-line parameter names (`Setting.param`, or the setting's name; other
    keys are ignored, so a command's whole parameter dict may be passed) to values, None meaning
    "not given". Empty environment variables count as unset (``Environment=X=`` in a systemd unit
    is a common way to blank one). The config file is ``config_path``, else
    ``BULKSCHEDULE_CONFIG``, else the XDG default; only the default may be missing.

    ``dc`` and ``api_base`` interact: ``api_base`` replaces the data centre's People host unless
    ``dc`` was given at a strictly higher level (``--dc eu`` on the command line beats an
    ``api_base`` in the file); ``dc`` always still names the accounts host.
    """
    if config_path:
        cfg_path, cfg_source, must_exist = _path(config_path, None, env), "flag", True
    elif env.get(CONFIG_ENV):
        cfg_path, cfg_source = _path(env[CONFIG_ENV], None, env), f"env {CONFIG_ENV}"
        must_exist = True
    else:
        cfg_path, cfg_source, must_exist = default_config_path(env), "default", False

    file_values: dict[str, Any] = {}
    cfg_loaded: Path | None = None
    if cfg_path.is_file():
        file_values = _flatten_file(_read_config_file(cfg_path), cfg_path)
        cfg_loaded = cfg_path
    elif must_exist:
        what = CONFIG_FLAG if cfg_source == "flag" else CONFIG_ENV
        raise ConfigError(f"{cfg_path}: config file not found (named by {what})")

    flag_values = {
        setting.name: value
        for key, value in flags.items()
        if (setting := _BY_KEY.get(key)) is not None and value is not None
    }
    resolved: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        resolved[setting.name], sources[setting.name] = _resolve_one(
            setting, flag_values, env, file_values, cfg_loaded)

    if resolved["api_base"] is not None:
        dc_rank = _RANK[sources["dc"].split()[0]]
        base_rank = _RANK[sources["api_base"].split()[0]]
        if sources["dc"] != "default" and dc_rank > base_rank:
            sources["api_base"] = f"unset: dc from {sources['dc']} beats {sources['api_base']}"
            resolved["api_base"] = None

    sources["config_file"] = (
        f"{cfg_source} (loaded)" if cfg_loaded else f"{cfg_source} (not present)"
    )
    top = {name: value for name, value in resolved.items() if "." not in name}
    inbox = {name.removeprefix("inbox."): value for name, value in resolved.items()
             if name.startswith("inbox.")}
    return Settings(**top, config_file=cfg_path, inbox=InboxSettings(**inbox), sources=sources)


def _resolve_one(
    setting: Setting,
    flags: Mapping[str, object],
    env: Mapping[str, str],
    file_values: Mapping[str, Any],
    cfg_path: Path | None,
) -> tuple[Any, str]:
    name = setting.name
    if name in flags:
        try:
            return setting.kind.parse(flags[name], Origin(None, env)), "flag"
        except ValueError as exc:
            raise ConfigError(f"{setting.spelling}: {exc}") from None
    if setting.env and env.get(setting.env, "").strip():
        try:
            return setting.kind.parse(env[setting.env], Origin(None, env)), f"env {setting.env}"
        except ValueError as exc:
            raise ConfigError(f"{setting.env}: {exc}") from None
    if name in file_values:
        assert cfg_path is not None
        try:
            value = setting.kind.parse(file_values[name], Origin(cfg_path.parent, env))
        except ValueError as exc:
            raise ConfigError(f"{cfg_path}: '{name}': {exc}") from None
        return value, f"file {cfg_path}"
    return setting.default_for(env), "default"


# --------------------------------------------------------------------------------------------
# the docs


def docs_table() -> str:
    """The settings table of docs/configuration.md, in Markdown (a test keeps the two equal)."""
    lines = [
        "| setting | flag | environment | config file | default | accepts |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        flags = [f"`{s.flag}`"] if s.flag else []
        flags += [f"`{alias.flag}`" for alias in s.aliases]
        if s.argument:
            flags.append(f"`{s.scope} {s.argument}`")
        section, _, key = s.name.rpartition(".")
        file_key = f"`[{section}] {key}`" if section else f"`{key}`"
        if s.doc_default is not None:
            default = s.doc_default
        else:
            default = "none" if s.default is None else f"`{_fmt(s.default)}`"
        lines.append(f"| {s.label} | {', '.join(flags) or '—'} | "
                     f"{f'`{s.env}`' if s.env else '—'} | {file_key} | {default} | "
                     f"{s.kind.allowed()} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# secrets


class Secrets(dict[str, str]):
    """The credentials found, keyed by `SECRET_NAMES`. A plain dict, plus ``sources``: where each
    value came from ("env ZOHO_X" or "file /path"), for ``config show``."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[str, str] = {}

    def put(self, name: str, value: str, source: str) -> None:
        self[name] = value
        self.sources[name] = source


def load_secrets(settings: Settings, env: Mapping[str, str]) -> Secrets:
    """Credentials from the environment if it holds any, else from the secrets file.

    The two are never mixed: if any credential variable is set, the file is not read, so a run
    always uses one coherent set and ``config show`` can say which. ``ZOHO_ACCOUNTS_URL`` from the
    environment applies either way (it is a host, not a secret). The default secrets file may be
    absent (then the result is empty: a dry run needs no credentials); a secrets file named in
    the config or by a flag must exist. Completeness is checked by `credential_problem`.
    """
    found = Secrets()
    if not any(env.get(n, "").strip() for n in CREDENTIAL_NAMES):
        path = settings.secrets_file
        named = settings.sources.get("secrets_file", "default") != "default"
        if path is not None and (path.exists() or named):
            for name, value in read_secrets_file(path).items():
                found.put(name, value, f"file {path}")
    for name in SECRET_NAMES:
        if env.get(name, "").strip():
            found.put(name, check_credential(name, env[name].strip()), f"env {name}")
    return found


def check_credential(name: str, value: str, where: str | None = None) -> str:
    """``value``, unless it holds a line break or another unprintable character: such a value
    can never go into an HTTP header, and finding out only when every request fails would leave
    every row `unknown`. The error names the variable (and ``where``, a file), never the value."""
    if not value.isprintable():
        place = f"{where}: '{name}'" if where else name
        raise ConfigError(
            f"{place} contains a line break or another control character; a credential is one "
            "line of printable text (check how it was pasted or exported)"
        )
    return value


def read_secrets_file(path: Path) -> dict[str, str]:
    """Read a TOML secrets file (``ZOHO_CLIENT_ID = "..."`` lines), refusing unsafe permissions.

    The permission check comes before reading: a secret that others could read is already leaked,
    and carrying on would hide that. Errors never quote file contents.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: secrets file not found (named by secrets_file)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the secrets file: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: the secrets file is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{path}: the secrets file is readable by others (mode {stat.S_IMODE(st.st_mode):04o});"
            f" refusing to use it. Fix with: chmod 600 '{path}'"
        )
    try:
        with path.open("rb") as fh:
            data = _load_toml(fh)
    except ValueError as exc:  # the message names a position, never the content
        raise ConfigError(f"{path}: secrets file is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the secrets file: {exc.strerror}") from None
    values: dict[str, str] = {}
    for key, value in data.items():
        if key not in SECRET_NAMES:
            raise ConfigError(
                f"{path}: unknown key '{key}' in the secrets file; known keys: "
                f"{', '.join(SECRET_NAMES)}"
            )
        if not isinstance(value, str):
            raise ConfigError(f"{path}: '{key}' must be a quoted string")
        if value.strip():
            values[key] = check_credential(key, value.strip(), str(path))
    return values


def credential_problem(secrets: Mapping[str, str]) -> str | None:
    """None if the secrets can authenticate; else one line saying what is missing (no values)."""
    if secrets.get("ZOHO_ACCESS_TOKEN"):
        return None
    present = [n for n in _REFRESH_SET if secrets.get(n)]
    if len(present) == len(_REFRESH_SET):
        return None
    if not present:
        return (
            "no credentials: set ZOHO_ACCESS_TOKEN, or ZOHO_CLIENT_ID + ZOHO_CLIENT_SECRET + "
            "ZOHO_REFRESH_TOKEN, or run 'bulkschedule auth' to write the secrets file"
        )
    missing = [n for n in _REFRESH_SET if n not in present]
    return f"incomplete credentials: {', '.join(missing)} missing (have {', '.join(present)})"


def _toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in {'"', "\\"}:
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def write_secrets(path: str | Path, values: Mapping[str, str]) -> Path:
    """Write the secrets file atomically with mode 0600 (for ``bulkschedule auth``).

    The temporary file is created 0600 from the start (mkstemp), so there is no moment at which
    the secret sits in a readable file; ``os.replace`` then swaps it in, so a crash leaves either
    the old file or the new one, never half a file. The folder is created 0700 if missing.
    """
    target = Path(path)
    for key in values:
        if key not in SECRET_NAMES:
            raise ValueError(f"unknown secret name {key!r}; expected one of {SECRET_NAMES}")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [
        "# bulkschedule credentials. Keep this file private (chmod 600); never commit it.",
        *(f"{key} = {_toml_string(values[key])}" for key in SECRET_NAMES if values.get(key)),
    ]
    atomic_write_text(target, "\n".join(lines) + "\n", private=True)
    return target


# --------------------------------------------------------------------------------------------
# config show


def show(settings: Settings, secrets: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """Rows (name, value, source) for ``bulkschedule config show``; credentials masked."""
    rows: list[tuple[str, str, str]] = [
        ("config_file", _fmt(settings.config_file), settings.sources.get("config_file", "")),
    ]
    for setting in SETTINGS:
        rows.append((setting.name, _fmt(settings.value(setting.name)),
                     settings.sources.get(setting.name, "default")))
    where: Mapping[str, str] = getattr(secrets, "sources", {})
    for name in SECRET_NAMES:
        value = secrets.get(name)
        if not value:
            rows.append((name, "(not set)", ""))
            continue
        shown = value if name == "ZOHO_ACCOUNTS_URL" else mask(value)
        rows.append((name, shown, where.get(name, "")))
    return rows


def _fmt(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

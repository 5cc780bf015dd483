"""Settings and secrets: where every value comes from, checked once, before anything is sent.

Non-secret settings come from four places with a fixed precedence: command-line flag > environment
variable > TOML config file > built-in default. Every resolved value records its source, so
``bulkschedule config show`` can answer "why is it using the EU data centre?" without guesswork.

Secrets never live in the config file (it gets copied, pasted into tickets and committed to
repositories). They come from the environment or from a separate secrets file that only its owner
can read; a group- or world-readable secrets file is refused rather than silently used.

Stdlib only, and no import of the HTTP client at module level: ``config show`` must stay fast and
must work on a machine where the network stack is broken.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulkschedule.core.constants import DATA_CENTRES, LOG_FORMATS, PAYLOAD_STYLES
from bulkschedule.core.errors import ConfigError
from bulkschedule.core.files import atomic_write_text
from bulkschedule.core.numbers import parse_number, parse_rate
from bulkschedule.core.text import mask

__all__ = ["ConfigError", "Settings", "load_settings", "mask", "parse_rate", "show"]

APP = "bulkschedule"

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


#: setting name -> environment variable. Inbox settings have no environment variable on purpose:
#: they belong to one deployment (the crontab line or the config file), not to a shell session.
ENV_NAMES: dict[str, str] = {
    "dc": "BULKSCHEDULE_DC",
    "api_base": "BULKSCHEDULE_API_BASE",
    "rate": "BULKSCHEDULE_RATE",
    "lock_seconds": "BULKSCHEDULE_LOCK_SECONDS",
    "workers": "BULKSCHEDULE_WORKERS",
    "payload_style": "BULKSCHEDULE_PAYLOAD_STYLE",
    "state_dir": "BULKSCHEDULE_STATE",
    "log_file": "BULKSCHEDULE_LOG_FILE",
    "log_format": "BULKSCHEDULE_LOG_FORMAT",
}
CONFIG_ENV = "BULKSCHEDULE_CONFIG"

#: flag key (as the CLI's click parameter is named) -> setting name. Keys not listed here are
#: ignored by `load_settings`, so the CLI can pass ``ctx.params`` straight through.
FLAG_NAMES: dict[str, str] = {
    "dc": "dc",
    "api_base": "api_base",
    "rate": "rate",
    "lock_seconds": "lock_seconds",
    "workers": "workers",
    "payload_style": "payload_style",
    "state": "state_dir",
    "state_dir": "state_dir",
    "log_file": "log_file",
    "log_format": "log_format",
    "secrets_file": "secrets_file",
    "all_or_nothing": "inbox.all_or_nothing",
    "stable_seconds": "inbox.stable_seconds",
    "watch": "inbox.watch",
    "inbox_dir": "inbox.dir",
}

_TOP_KEYS = frozenset(
    {"dc", "api_base", "rate", "lock_seconds", "workers", "payload_style", "state_dir"}
    | {"log_file", "log_format", "secrets_file", "inbox"}
)
_INBOX_KEYS = frozenset({"all_or_nothing", "stable_seconds", "watch", "dir"})

DEFAULTS: dict[str, Any] = {
    "dc": "us",
    "api_base": None,
    "rate": "30/60",
    "lock_seconds": 300.0,
    "workers": 4,
    "payload_style": "query",
    "log_file": None,
    "log_format": "text",
    "inbox.all_or_nothing": False,
    "inbox.stable_seconds": 30.0,
    "inbox.watch": None,
    "inbox.dir": None,
    # state_dir, secrets_file: computed from the environment (XDG), see _default_*.
}



@dataclass(slots=True)
class InboxSettings:
    """Defaults for ``bulkschedule inbox``. ``watch`` None means run once (the cron default)."""

    all_or_nothing: bool = False
    stable_seconds: float = 30.0
    watch: float | None = None
    dir: Path | None = None


@dataclass(slots=True)
class Settings:
    """Every non-secret setting, resolved. ``sources`` maps each name (inbox ones as
    ``inbox.<name>``, plus ``config_file``) to "flag", "env BULKSCHEDULE_X", "file /path" or
    "default"."""

    dc: str = "us"
    api_base: str | None = None
    rate: str = "30/60"
    lock_seconds: float = 300.0
    workers: int = 4
    payload_style: str = "query"
    state_dir: Path = field(default_factory=lambda: Path.home() / ".local" / "state" / APP)
    log_file: Path | None = None
    log_format: str = "text"
    secrets_file: Path | None = None
    config_file: Path | None = None
    inbox: InboxSettings = field(default_factory=InboxSettings)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def rate_pair(self) -> tuple[int, float]:
        """``rate`` as (calls, seconds) for the limiter; already validated."""
        return parse_rate(self.rate)

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


# --------------------------------------------------------------------------------------------
# value parsing and validation (shared by flags, environment and file)


def _as_number(value: object, *, integer: bool) -> float | int:
    return parse_number(value, integer=integer)


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
    raise ValueError(f"{value!r} is not true/false")


def _as_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value.strip()


def _convert(name: str, value: object, base_dir: Path | None, env: Mapping[str, str]) -> Any:
    """Turn a raw value (flag object, environment text or TOML value) into the setting's type.

    ``base_dir`` anchors relative paths: the config file's folder for file values (so a config
    file can say ``state_dir = "state"`` and mean next to itself), the working directory otherwise.
    """
    if name == "dc":
        dc = _as_text(value).lower()
        known = DATA_CENTRES
        if dc not in known:
            raise ValueError(f"unknown data centre {value!r}; one of {', '.join(known)}")
        return dc
    if name == "api_base":
        base = _as_text(value).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return base
    if name == "rate":
        text = _as_text(value)
        parse_rate(text)
        return text.replace(" ", "")
    if name == "lock_seconds":
        seconds = _as_number(value, integer=False)
        if seconds < 0:
            raise ValueError(f"{value!r} must be 0 or more")
        return seconds
    if name == "workers":
        workers = _as_number(value, integer=True)
        if workers < 1:
            raise ValueError(f"{value!r} must be 1 or more")
        return workers
    if name == "payload_style":
        style = _as_text(value).lower()
        if style not in PAYLOAD_STYLES:
            raise ValueError(f"{value!r} is not one of {', '.join(PAYLOAD_STYLES)}")
        return style
    if name == "log_format":
        fmt = _as_text(value).lower()
        if fmt not in LOG_FORMATS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_FORMATS)}")
        return fmt
    if name in {"state_dir", "log_file", "secrets_file", "inbox.dir"}:
        if not isinstance(value, str | os.PathLike) or not str(value).strip():
            raise ValueError(f"{value!r} is not a path")
        return _path(str(value).strip(), base_dir, env)
    if name == "inbox.all_or_nothing":
        return _as_bool(value)
    if name == "inbox.stable_seconds":
        seconds = _as_number(value, integer=False)
        if seconds < 0:
            raise ValueError(f"{value!r} must be 0 or more")
        return seconds
    if name == "inbox.watch":
        seconds = _as_number(value, integer=False)
        if seconds < 0:
            raise ValueError(f"{value!r} must be 0 (run once) or more")
        return None if seconds == 0 else seconds
    raise KeyError(name)  # pragma: no cover - programming error


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
# the config file


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:  # the message carries "(at line N, column M)"
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    return data


def _flatten_file(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Check the file's keys and flatten ``[inbox]`` into ``inbox.<key>``."""
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
        if key == "inbox":
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: 'inbox' must be a table ([inbox])")
            for sub, subvalue in value.items():
                if sub.lower() in _SECRET_KEYS_IN_CONFIG:
                    raise ConfigError(
                        f"{path}: 'inbox.{sub}' is a secret; move it to the secrets file"
                    )
                if sub not in _INBOX_KEYS:
                    raise ConfigError(
                        f"{path}: unknown key 'inbox.{sub}'; known keys in [inbox]: "
                        f"{', '.join(sorted(_INBOX_KEYS))}"
                    )
                flat[f"inbox.{sub}"] = subvalue
        else:
            flat[key] = value
    return flat


# --------------------------------------------------------------------------------------------
# resolution

_ORDER: tuple[str, ...] = (
    "dc",
    "api_base",
    "rate",
    "lock_seconds",
    "workers",
    "payload_style",
    "state_dir",
    "log_file",
    "log_format",
    "secrets_file",
    "inbox.all_or_nothing",
    "inbox.stable_seconds",
    "inbox.watch",
    "inbox.dir",
)
_RANK = {"flag": 3, "env": 2, "file": 1, "default": 0}


def load_settings(
    flags: Mapping[str, object | None],
    env: Mapping[str, str],
    config_path: str | None,
) -> Settings:
    """Resolve every setting: flag > environment > config file > built-in default.

    ``flags`` maps click parameter names (see `FLAG_NAMES`; others are ignored) to values, None
    meaning "not given". Empty environment variables count as unset (``Environment=X=`` in a
    systemd unit is a common way to blank one). The config file is ``config_path``, else
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
    if cfg_path.is_file():
        file_values = _flatten_file(_read_config_file(cfg_path), cfg_path)
        cfg_loaded: Path | None = cfg_path
    elif must_exist:
        what = "--config" if cfg_source == "flag" else CONFIG_ENV
        raise ConfigError(f"{cfg_path}: config file not found (named by {what})")
    else:
        cfg_loaded = None

    flag_values: dict[str, object] = {}
    for key, value in flags.items():
        name = FLAG_NAMES.get(key)
        if name is not None and value is not None:
            flag_values[name] = value

    resolved: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in _ORDER:
        value, source = _resolve_one(name, flag_values, env, file_values, cfg_loaded)
        resolved[name], sources[name] = value, source

    if resolved["api_base"] is not None:
        dc_rank = _RANK[sources["dc"].split()[0]]
        base_rank = _RANK[sources["api_base"].split()[0]]
        if sources["dc"] != "default" and dc_rank > base_rank:
            sources["api_base"] = f"unset: dc from {sources['dc']} beats {sources['api_base']}"
            resolved["api_base"] = None

    sources["config_file"] = (
        f"{cfg_source} (loaded)" if cfg_loaded else f"{cfg_source} (not present)"
    )
    return Settings(
        dc=resolved["dc"],
        api_base=resolved["api_base"],
        rate=resolved["rate"],
        lock_seconds=resolved["lock_seconds"],
        workers=resolved["workers"],
        payload_style=resolved["payload_style"],
        state_dir=resolved["state_dir"],
        log_file=resolved["log_file"],
        log_format=resolved["log_format"],
        secrets_file=resolved["secrets_file"],
        config_file=cfg_path,
        inbox=InboxSettings(
            all_or_nothing=resolved["inbox.all_or_nothing"],
            stable_seconds=resolved["inbox.stable_seconds"],
            watch=resolved["inbox.watch"],
            dir=resolved["inbox.dir"],
        ),
        sources=sources,
    )


def _resolve_one(
    name: str,
    flags: Mapping[str, object],
    env: Mapping[str, str],
    file_values: Mapping[str, Any],
    cfg_path: Path | None,
) -> tuple[Any, str]:
    if name in flags:
        try:
            return _convert(name, flags[name], None, env), "flag"
        except ValueError as exc:
            raise ConfigError(f"--{_flag_spelling(name)}: {exc}") from None
    env_name = ENV_NAMES.get(name)
    if env_name and env.get(env_name, "").strip():
        try:
            return _convert(name, env[env_name], None, env), f"env {env_name}"
        except ValueError as exc:
            raise ConfigError(f"{env_name}: {exc}") from None
    if name in file_values:
        assert cfg_path is not None
        try:
            return _convert(name, file_values[name], cfg_path.parent, env), f"file {cfg_path}"
        except ValueError as exc:
            raise ConfigError(f"{cfg_path}: '{name}': {exc}") from None
    if name == "state_dir":
        return default_state_dir(env), "default"
    if name == "secrets_file":
        return default_secrets_path(env), "default"
    return DEFAULTS[name], "default"


def _flag_spelling(name: str) -> str:
    spelled = {"state_dir": "state", "inbox.dir": "inbox-dir"}
    return spelled.get(name, name.removeprefix("inbox.").replace("_", "-"))


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
            found.put(name, env[name].strip(), f"env {name}")
    return found


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
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message names a position, never the content, so it is safe to show.
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
            values[key] = value.strip()
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
    values: dict[str, Any] = {
        "dc": settings.dc,
        "api_base": settings.api_base,
        "rate": settings.rate,
        "lock_seconds": settings.lock_seconds,
        "workers": settings.workers,
        "payload_style": settings.payload_style,
        "state_dir": settings.state_dir,
        "log_file": settings.log_file,
        "log_format": settings.log_format,
        "secrets_file": settings.secrets_file,
        "inbox.all_or_nothing": settings.inbox.all_or_nothing,
        "inbox.stable_seconds": settings.inbox.stable_seconds,
        "inbox.watch": settings.inbox.watch,
        "inbox.dir": settings.inbox.dir,
    }
    for name in _ORDER:
        rows.append((name, _fmt(values[name]), settings.sources.get(name, "default")))
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

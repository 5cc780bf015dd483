"""Settings precedence, validation, the secrets file and `config show` masking."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bulkschedule.app.config import (
    ConfigError,
    credential_problem,
    default_state_dir,
    load_secrets,
    load_settings,
    mask,
    read_secrets_file,
    show,
    write_secrets,
)

ACCESS = "1000.0123456789abcdef0123456789abcdef.fedcba9876543210fedcba9876543210"
SECRET = "0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
REFRESH = "1000.aaaabbbbccccddddeeeeffff00001111.2222333344445555666677778888999a"
CLIENT_ID = "1000.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment with a private HOME and nothing else, so the user's real config is unseen."""
    h = tmp_path / "home"
    h.mkdir()
    return {"HOME": str(h)}


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


# ---------------------------------------------------------------------------- precedence


def test_defaults_when_nothing_is_given(home: dict[str, str]) -> None:
    s = load_settings({}, home, None)
    assert (s.dc, s.api_base, s.rate, s.lock_seconds, s.workers) == ("us", None, "30/60", 300, 4)
    assert (s.payload_style, s.log_file, s.log_format) == ("query", None, "text")
    assert s.state_dir == Path(home["HOME"]) / ".local/state/bulkschedule"
    assert s.inbox.stable_seconds == 30 and s.inbox.watch is None and not s.inbox.all_or_nothing
    assert s.sources["dc"] == "default" and s.sources["rate"] == "default"
    assert s.sources["config_file"] == "default (not present)"
    assert s.rate_pair == (30, 60.0)
    assert s.people_base == "https://people.zoho.com"
    assert s.accounts_base == "https://accounts.zoho.com"


def test_each_level_beats_the_next(home: dict[str, str], tmp_path: Path) -> None:
    text = 'dc = "eu"\nrate = "20/60"\nworkers = 3\nlog_format = "json"\n'
    cfg = write(tmp_path / "c.toml", text)
    env = home | {"BULKSCHEDULE_DC": "in", "BULKSCHEDULE_RATE": "25/60"}
    s = load_settings({"dc": "au", "workers": None}, env, str(cfg))
    assert s.dc == "au" and s.sources["dc"] == "flag"  # flag > env > file
    assert s.rate == "25/60" and s.sources["rate"] == "env BULKSCHEDULE_RATE"  # env > file
    assert s.workers == 3 and s.sources["workers"] == f"file {cfg}"  # None flag = not given
    assert s.log_format == "json" and s.sources["log_format"] == f"file {cfg}"
    assert s.lock_seconds == 300 and s.sources["lock_seconds"] == "default"  # file > default
    assert s.sources["config_file"] == "flag (loaded)"
    assert s.people_base == "https://people.zoho.com.au"


def test_config_path_from_env_then_xdg_default(home: dict[str, str], tmp_path: Path) -> None:
    named = write(tmp_path / "named.toml", "workers = 7\n")
    s = load_settings({}, home | {"BULKSCHEDULE_CONFIG": str(named)}, None)
    assert s.workers == 7 and s.sources["config_file"] == "env BULKSCHEDULE_CONFIG (loaded)"

    xdg = tmp_path / "xdg"
    write(xdg / "bulkschedule" / "config.toml", "workers = 9\n")
    s = load_settings({}, home | {"XDG_CONFIG_HOME": str(xdg)}, None)
    assert s.workers == 9 and s.config_file == xdg / "bulkschedule" / "config.toml"

    write(Path(home["HOME"]) / ".config/bulkschedule/config.toml", "workers = 5\n")
    assert load_settings({}, home, None).workers == 5


def test_missing_explicit_config_is_an_error_missing_default_is_not(
    home: dict[str, str], tmp_path: Path
) -> None:
    load_settings({}, home, None)  # no file at the default path: fine
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found \(named by --conf"):
        load_settings({}, home, str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="named by BULKSCHEDULE_CONFIG"):
        load_settings({}, home | {"BULKSCHEDULE_CONFIG": str(tmp_path / "nope.toml")}, None)


def test_empty_env_var_counts_as_unset(home: dict[str, str]) -> None:
    s = load_settings({}, home | {"BULKSCHEDULE_WORKERS": "", "BULKSCHEDULE_DC": "  "}, None)
    assert s.workers == 4 and s.dc == "us" and s.sources["workers"] == "default"


def test_state_dir_precedence(home: dict[str, str], tmp_path: Path) -> None:
    assert default_state_dir(home) == Path(home["HOME"]) / ".local/state/bulkschedule"
    xdg = home | {"XDG_STATE_HOME": str(tmp_path / "xs")}
    assert load_settings({}, xdg, None).state_dir == tmp_path / "xs" / "bulkschedule"
    # a relative XDG value is invalid per the spec and ignored
    assert default_state_dir(home | {"XDG_STATE_HOME": "rel"}) == default_state_dir(home)
    env = xdg | {"BULKSCHEDULE_STATE": str(tmp_path / "st")}
    s = load_settings({}, env, None)
    assert s.state_dir == tmp_path / "st" and s.sources["state_dir"] == "env BULKSCHEDULE_STATE"
    s = load_settings({"state": str(tmp_path / "fl")}, env, None)
    assert s.state_dir == tmp_path / "fl" and s.sources["state_dir"] == "flag"


def test_relative_paths_in_file_are_relative_to_the_file(home: dict[str, str], tmp_path: Path):
    cfg = write(
        tmp_path / "etc" / "c.toml",
        'state_dir = "state"\nlog_file = "~/logs/b.log"\n[inbox]\ndir = "/srv/inbox"\n',
    )
    s = load_settings({}, home, str(cfg))
    assert s.state_dir == tmp_path / "etc" / "state"
    assert s.log_file == Path(home["HOME"]) / "logs" / "b.log"
    assert s.inbox.dir == Path("/srv/inbox")


def test_inbox_table_and_flags(home: dict[str, str], tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        "[inbox]\nall_or_nothing = true\nstable_seconds = 45\nwatch = 600\n",
    )
    s = load_settings({}, home, str(cfg))
    assert s.inbox.all_or_nothing is True and s.inbox.stable_seconds == 45
    assert s.inbox.watch == 600 and s.sources["inbox.watch"] == f"file {cfg}"
    # --once is passed as watch=0 so that it beats a watch interval in the file
    s = load_settings({"watch": 0, "all_or_nothing": False}, home, str(cfg))
    assert s.inbox.watch is None and s.sources["inbox.watch"] == "flag"
    assert s.inbox.all_or_nothing is False


def test_dc_given_higher_than_api_base_wins(home: dict[str, str], tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", 'api_base = "http://127.0.0.1:8765/"\n')
    s = load_settings({}, home, str(cfg))
    assert s.api_base == "http://127.0.0.1:8765" and s.people_base == "http://127.0.0.1:8765"
    s = load_settings({"dc": "eu"}, home, str(cfg))
    assert s.api_base is None and s.people_base == "https://people.zoho.eu"
    assert "beats" in s.sources["api_base"]
    s = load_settings({"api_base": "http://localhost:9"}, home | {"BULKSCHEDULE_DC": "eu"}, None)
    assert s.people_base == "http://localhost:9" and s.accounts_base == "https://accounts.zoho.eu"


def test_unknown_flag_keys_are_ignored(home: dict[str, str]) -> None:
    s = load_settings({"sheet": "x.xlsx", "dry_run": True, "workers": 2}, home, None)
    assert s.workers == 2


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('dc = "mars"', "dc"),
        ('rate = "30/0"', "rate"),
        ('rate = "0/60"', "rate"),
        ('rate = "fast"', "rate"),
        ("workers = 0", "workers"),
        ("workers = true", "workers"),
        ("workers = 2.5", "workers"),
        ("lock_seconds = -1", "lock_seconds"),
        ('payload_style = "xml"', "payload_style"),
        ('log_format = "yaml"', "log_format"),
        ('api_base = "people.zoho.com"', "api_base"),
    ],
)
def test_bad_values_in_file_name_the_file_and_key(
    home: dict[str, str], tmp_path: Path, line: str, key: str
) -> None:
    cfg = write(tmp_path / "c.toml", line + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, home, str(cfg))
    assert str(cfg) in str(err.value) and f"'{key}'" in str(err.value)


def test_bad_values_from_flag_and_env_name_them(home: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="BULKSCHEDULE_RATE: '30/0'"):
        load_settings({}, home | {"BULKSCHEDULE_RATE": "30/0"}, None)
    with pytest.raises(ConfigError, match="--workers"):
        load_settings({"workers": 0}, home, None)
    with pytest.raises(ConfigError, match="unknown data centre 'xx'"):
        load_settings({"dc": "xx"}, home, None)


def test_unknown_keys_refused(home: dict[str, str], tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "wrokers = 3\n")
    with pytest.raises(ConfigError, match=r"c\.toml: unknown key 'wrokers'"):
        load_settings({}, home, str(cfg))
    cfg = write(tmp_path / "d.toml", "[inbox]\nstable = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'inbox\.stable'"):
        load_settings({}, home, str(cfg))


def test_toml_syntax_error_gives_line(home: dict[str, str], tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", 'dc = "eu"\nrate = 30/60\n')
    with pytest.raises(ConfigError, match=r"c\.toml: not valid TOML: .*line 2"):
        load_settings({}, home, str(cfg))


@pytest.mark.parametrize("key", ["client_secret", "refresh_token", "access_token"])
def test_secret_in_config_file_refused(home: dict[str, str], tmp_path: Path, key: str) -> None:
    cfg = write(tmp_path / "c.toml", f'{key} = "{SECRET}"\n')
    with pytest.raises(ConfigError, match="move it to the secrets file") as err:
        load_settings({}, home, str(cfg))
    assert SECRET not in str(err.value)


# ---------------------------------------------------------------------------- secrets


def test_secrets_from_environment_win_and_are_not_mixed(home: dict[str, str], tmp_path: Path):
    secrets_file = write(tmp_path / "s.toml", f'ZOHO_REFRESH_TOKEN = "{REFRESH}"\n', 0o600)
    cfg = write(tmp_path / "c.toml", f'secrets_file = "{secrets_file}"\n')
    s = load_settings({}, home, str(cfg))
    found = load_secrets(s, home | {"ZOHO_ACCESS_TOKEN": ACCESS})
    assert dict(found) == {"ZOHO_ACCESS_TOKEN": ACCESS}
    assert found.sources == {"ZOHO_ACCESS_TOKEN": "env ZOHO_ACCESS_TOKEN"}
    found = load_secrets(s, home)
    assert dict(found) == {"ZOHO_REFRESH_TOKEN": REFRESH}
    assert found.sources["ZOHO_REFRESH_TOKEN"] == f"file {secrets_file}"


def test_accounts_url_from_env_applies_to_file_credentials(home: dict[str, str], tmp_path: Path):
    sf = write(tmp_path / "s.toml", f'ZOHO_CLIENT_ID = "{CLIENT_ID}"\n', 0o600)
    s = load_settings({"secrets_file": str(sf)}, home, None)
    found = load_secrets(s, home | {"ZOHO_ACCOUNTS_URL": "https://accounts.zoho.eu"})
    assert found["ZOHO_CLIENT_ID"] == CLIENT_ID
    assert found.sources["ZOHO_ACCOUNTS_URL"] == "env ZOHO_ACCOUNTS_URL"


def test_default_secrets_file_may_be_absent_named_one_may_not(home: dict[str, str], tmp_path):
    s = load_settings({}, home, None)
    assert dict(load_secrets(s, home)) == {}
    cfg = write(tmp_path / "c.toml", f'secrets_file = "{tmp_path / "gone.toml"}"\n')
    with pytest.raises(ConfigError, match="secrets file not found"):
        load_secrets(load_settings({}, home, str(cfg)), home)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_readable_secrets_file_refused_with_chmod_hint(tmp_path: Path, mode: int) -> None:
    sf = write(tmp_path / "s.toml", f'ZOHO_CLIENT_SECRET = "{SECRET}"\n', mode)
    with pytest.raises(ConfigError) as err:
        read_secrets_file(sf)
    msg = str(err.value)
    assert f"chmod 600 '{sf}'" in msg and f"{mode:04o}" in msg and SECRET not in msg


def test_private_secrets_file_accepted(tmp_path: Path) -> None:
    sf = write(
        tmp_path / "s.toml",
        f'ZOHO_CLIENT_ID = "{CLIENT_ID}"\nZOHO_CLIENT_SECRET = "{SECRET}"\n'
        f'ZOHO_REFRESH_TOKEN = "{REFRESH}"\n',
        0o600,
    )
    values = read_secrets_file(sf)
    assert values["ZOHO_CLIENT_SECRET"] == SECRET and credential_problem(values) is None


def test_secrets_file_unknown_key_and_bad_toml(tmp_path: Path) -> None:
    sf = write(tmp_path / "s.toml", f'client_secret = "{SECRET}"\n', 0o600)
    with pytest.raises(ConfigError, match="unknown key 'client_secret'") as err:
        read_secrets_file(sf)
    assert SECRET not in str(err.value)
    sf = write(tmp_path / "t.toml", f"ZOHO_CLIENT_SECRET = {SECRET}\n", 0o600)
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        read_secrets_file(sf)
    assert SECRET not in str(err.value)


def test_write_secrets_mode_0600_and_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "new" / "secrets.toml"
    odd = 'quote"back\\slash'
    values = {"ZOHO_CLIENT_ID": CLIENT_ID, "ZOHO_CLIENT_SECRET": odd, "ZOHO_REFRESH_TOKEN": REFRESH}
    write_secrets(target, values)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert read_secrets_file(target) == values
    assert [p.name for p in target.parent.iterdir()] == ["secrets.toml"]  # no temp file left
    # rewriting replaces, and keeps the mode even if the old file had been loosened
    os.chmod(target, 0o644)
    write_secrets(target, {"ZOHO_REFRESH_TOKEN": "1000.x"})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert read_secrets_file(target) == {"ZOHO_REFRESH_TOKEN": "1000.x"}
    with pytest.raises(ValueError, match="unknown secret name"):
        write_secrets(target, {"password": "x"})


def test_credential_problem_messages() -> None:
    assert credential_problem({"ZOHO_ACCESS_TOKEN": ACCESS}) is None
    assert "no credentials" in (credential_problem({}) or "")
    msg = credential_problem({"ZOHO_CLIENT_ID": CLIENT_ID, "ZOHO_CLIENT_SECRET": SECRET}) or ""
    assert "ZOHO_REFRESH_TOKEN missing" in msg and SECRET not in msg


# ---------------------------------------------------------------------------- show


def test_mask_never_shows_more_than_6_and_2() -> None:
    assert mask(ACCESS) == "1000.0…10"
    assert mask("short-secret") == "********"
    assert mask("x" * 23) == "********"
    shown = mask(SECRET).replace("…", "")
    assert len(shown) == 8 and shown == SECRET[:6] + SECRET[-2:]


def test_show_masks_secrets_and_reports_sources(home: dict[str, str], tmp_path: Path) -> None:
    sf = write(
        tmp_path / "s.toml",
        f'ZOHO_CLIENT_SECRET = "{SECRET}"\nZOHO_CLIENT_ID = "{CLIENT_ID}"\n'
        f'ZOHO_REFRESH_TOKEN = "{REFRESH}"\n',
        0o600,
    )
    cfg = write(tmp_path / "c.toml", f'dc = "eu"\nsecrets_file = "{sf}"\n')
    s = load_settings({"workers": 2}, home, str(cfg))
    rows = show(s, load_secrets(s, home | {"ZOHO_ACCOUNTS_URL": "https://accounts.zoho.eu"}))
    table = {name: (value, source) for name, value, source in rows}
    assert table["dc"] == ("eu", f"file {cfg}")
    assert table["workers"] == ("2", "flag")
    assert table["lock_seconds"] == ("300", "default")
    assert table["ZOHO_CLIENT_SECRET"] == (mask(SECRET), f"file {sf}")
    assert table["ZOHO_ACCESS_TOKEN"] == ("(not set)", "")
    assert table["ZOHO_ACCOUNTS_URL"] == ("https://accounts.zoho.eu", "env ZOHO_ACCOUNTS_URL")
    text = repr(rows)
    for secret in (SECRET, REFRESH, CLIENT_ID):
        assert secret not in text


def test_config_module_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, bulkschedule.app.config as c;"
        "c.load_settings({}, {'HOME': '/nonexistent'}, None);"
        "print(','.join(m for m in ('aiohttp','pandas','pandera','openpyxl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------------------- docs agree with code

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_data_centre_table_matches_client() -> None:
    from bulkschedule.core.constants import DATA_CENTRES

    rows = re.findall(
        r"^\| `(\w+)` \| `(https://[^`]+)` \| `(https://[^`]+)` \|$",
        (DOCS / "data-centres.md").read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    assert {dc: (people, accounts) for dc, people, accounts in rows} == DATA_CENTRES


def test_example_config_in_docs_loads(home: dict[str, str], tmp_path: Path) -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    cfg = write(tmp_path / "config.toml", block.group(1))
    s = load_settings({}, home, str(cfg))
    assert s.dc == "eu" and s.rate == "25/60" and s.inbox.dir == Path("/srv/bulkschedule/inbox")
    assert s.secrets_file == Path(home["HOME"]) / ".config/bulkschedule/secrets.toml"
    assert all(
        src == f"file {cfg}"
        for k, src in s.sources.items()
        if k not in {"api_base", "inbox.watch", "config_file"}
    )


# ---------------------------------------------------------------------------- the table


def test_the_table_and_the_settings_dataclass_agree() -> None:
    """Every entry of SETTINGS is a field of Settings (inbox ones of InboxSettings) with the
    same default, and every field is an entry: a setting is added in one place or the other
    fails here, not silently."""
    import dataclasses

    from bulkschedule.app.config import SETTINGS, InboxSettings, Settings

    top = {f.name for f in dataclasses.fields(Settings)} - {"inbox", "config_file", "sources"}
    inbox = {f"inbox.{f.name}" for f in dataclasses.fields(InboxSettings)}
    assert {s.name for s in SETTINGS} == top | inbox
    blank_env = {"HOME": "/nonexistent"}
    built = Settings()
    for s in SETTINGS:
        if s.default_from is None:
            assert built.value(s.name) == s.default_for(blank_env), s.name
    assert len({s.param for s in SETTINGS}) == len(SETTINGS)
    assert len({s.env for s in SETTINGS if s.env}) == len([s for s in SETTINGS if s.env])


def test_docs_table_is_generated_from_the_table() -> None:
    """docs/configuration.md carries `docs_table()` verbatim, so it lists every setting with its
    flag, variable, key, default and bounds (regenerate it with that function)."""
    from bulkschedule.app.config import SETTINGS, docs_table

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert docs_table() in text
    for s in SETTINGS:
        key = s.name.rpartition(".")[2]
        assert f"`{key}`" in text or f"] {key}`" in text, s.name


@pytest.mark.parametrize(
    ("line", "key", "shown"),
    [
        ("lock_seconds = 1e308", "lock_seconds", "0–86,400"),
        ("lock_seconds = inf", "lock_seconds", "finite"),
        ("lock_seconds = nan", "lock_seconds", "finite"),
        ("workers = 65", "workers", "1–64"),
        ("workers = 99999999999999999999999", "workers", "1–64"),
        ('rate = "99999999999999999999999/1"', "rate", "at most 1,000,000 calls"),
        ('rate = "30/1e2"', "rate", "N/SECONDS"),
        ("[inbox]\nstable_seconds = 1e9", "inbox.stable_seconds", "0–86,400"),
        ("[inbox]\nwatch = -5", "inbox.watch", "0–86,400"),
    ],
)
def test_numbers_are_bounded_in_the_file(
    home: dict[str, str], tmp_path: Path, line: str, key: str, shown: str
) -> None:
    cfg = write(tmp_path / "c.toml", line + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, home, str(cfg))
    assert str(cfg) in str(err.value) and f"'{key}'" in str(err.value)
    assert shown in str(err.value)


def test_numbers_are_bounded_from_flags_and_environment(home: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"^--lock-seconds: '1e308' is outside 0–86,400$"):
        load_settings({"lock_seconds": "1e308"}, home, None)
    with pytest.raises(ConfigError, match=r"^BULKSCHEDULE_WORKERS: '100' is outside 1–64$"):
        load_settings({}, home | {"BULKSCHEDULE_WORKERS": "100"}, None)
    with pytest.raises(ConfigError, match=r"^BULKSCHEDULE_RATE: .*at most 1,000,000 calls"):
        load_settings({}, home | {"BULKSCHEDULE_RATE": "99999999999999999999999/1"}, None)
    with pytest.raises(ConfigError, match=r"^--watch: "):
        load_settings({"watch": "86401"}, home, None)
    # the edges are allowed, and flags arrive as text
    s = load_settings({"lock_seconds": "86400", "workers": "64", "stable_seconds": "0"}, home, None)
    assert (s.lock_seconds, s.workers, s.inbox.stable_seconds) == (86400.0, 64, 0.0)


# ---------------------------------------------------------------------------- unreadable TOML


def test_config_file_not_utf8_is_not_valid_toml(home: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b'dc = "eu"\n# caf\xe9 in Latin-1\n')
    with pytest.raises(ConfigError, match=r"c\.toml: not valid TOML: not UTF-8 text \(at byte 15"):
        load_settings({}, home, str(cfg))


@pytest.mark.parametrize("nested", ["a = " + "[" * 50_000 + "]" * 50_000,
                                    "a = " + "{b = " * 5_000 + "1" + "}" * 5_000])
def test_config_file_nested_too_deeply_is_not_valid_toml(
    home: dict[str, str], tmp_path: Path, nested: str
) -> None:
    cfg = write(tmp_path / "c.toml", nested + "\n")
    with pytest.raises(ConfigError, match=r"c\.toml: not valid TOML: .*nested too deeply"):
        load_settings({}, home, str(cfg))


def test_secrets_file_not_utf8_or_too_deep_never_quotes_it(tmp_path: Path) -> None:
    sf = tmp_path / "s.toml"
    sf.write_bytes(f'ZOHO_CLIENT_SECRET = "{SECRET}\xff"\n'.encode("latin-1"))
    sf.chmod(0o600)
    with pytest.raises(ConfigError, match="secrets file is not valid TOML: not UTF-8") as err:
        read_secrets_file(sf)
    assert SECRET not in str(err.value)
    write(sf, "a = " + "[" * 50_000 + "]" * 50_000, 0o600)
    with pytest.raises(ConfigError, match=r"secrets file is not valid TOML: .*nested too deeply"):
        read_secrets_file(sf)


# ---------------------------------------------------------------------------- control characters


@pytest.mark.parametrize("name", ["ZOHO_ACCESS_TOKEN", "ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET",
                                  "ZOHO_REFRESH_TOKEN", "ZOHO_ACCOUNTS_URL"])
@pytest.mark.parametrize("bad", ["\r\n", "\n", "\r", "\x00", "\x1b", "\x85", "\u2028"])
def test_control_character_in_a_credential_from_the_environment(
    home: dict[str, str], name: str, bad: str
) -> None:
    value = f"{ACCESS[:20]}{bad}{ACCESS[20:]}"
    with pytest.raises(ConfigError) as err:
        load_secrets(load_settings({}, home, None), home | {name: value})
    msg = str(err.value)
    assert msg.startswith(f"{name} contains a line break or another control character")
    assert ACCESS[:20] not in msg and ACCESS[20:] not in msg and "\n" not in msg


def test_control_character_in_a_credential_from_the_secrets_file(
    home: dict[str, str], tmp_path: Path
) -> None:
    sf = write(tmp_path / "s.toml", f'ZOHO_REFRESH_TOKEN = "{REFRESH[:10]}\\r\\n{REFRESH[10:]}"\n',
               0o600)
    with pytest.raises(ConfigError) as err:
        read_secrets_file(sf)
    msg = str(err.value)
    assert msg.startswith(f"{sf}: 'ZOHO_REFRESH_TOKEN' contains a line break")
    assert REFRESH[:10] not in msg and REFRESH[10:] not in msg
    # a line break around the value is only whitespace: stripped, as before
    write(sf, f'ZOHO_REFRESH_TOKEN = "{REFRESH}\\n"\n', 0o600)
    assert read_secrets_file(sf) == {"ZOHO_REFRESH_TOKEN": REFRESH}

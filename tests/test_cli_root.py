"""The command group: lazy loading, options generated from the settings table, one error path.

What these guard: ``bulkschedule --help`` imports no command (so no pandas or aiohttp); every
setting's flag reaches its setting on every command that takes it (a renamed option cannot be
silently ignored); a bad number is one line naming the flag and the range; a `BulkscheduleError`
from any command becomes one line and its exit code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bulkschedule.app.config import (
    SETTINGS,
    Choice,
    Duration,
    Number,
    PathValue,
    Rate,
    Setting,
    Switch,
    Url,
)
from bulkschedule.cli import main
from bulkschedule.cli.root import COMMANDS, LazyGroup
from bulkschedule.core.errors import ConfigError, InboxBusy, JobError

HEAVY = ("pandas", "pandera", "openpyxl", "aiohttp", "numpy", "python_calamine")
#: The commands that talk to the API take every "send" setting; these also take the inbox ones.
SENDING = {"run": ("send",), "validate": ("send",), "template": ("send",),
           "inbox": ("send", "inbox", "read"),
           "auth": ("send",), "forget": ("send",), "serve": ("send", "serve", "read"),
           "config show": ("send", "inbox", "serve", "read"),
           "org refresh": ("send",), "org find": ("send",), "org show": ("send",)}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    """No BULKSCHEDULE_*/ZOHO_* variable and a private HOME, so no real config is read."""
    blank: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("ZOHO_", "BULKSCHEDULE_", "XDG_"))}
    return blank | {"HOME": str(tmp_path / "home")}


def command(path: str) -> click.Command:
    """A command by its words (``"config show"``), loaded as the group would."""
    ctx = click.Context(main)
    found: click.Command | None = main
    for word in path.split():
        assert isinstance(found, click.Group)
        found = found.get_command(ctx, word)
    assert found is not None
    return found


# ------------------------------------------------------------------------------ lazy loading


def test_help_lists_every_command_and_imports_none() -> None:
    code = (
        "import sys\n"
        "from bulkschedule.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {HEAVY!r}"
        " or m.startswith(('bulkschedule.app', 'bulkschedule.sheet', 'bulkschedule.send',"
        " 'bulkschedule.zoho', 'bulkschedule.web', 'bulkschedule.cli.run'))], file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "[]"
    listed = [line.split()[0] for line in out.stdout.split("Commands:")[1].splitlines()
              if line.strip()]
    assert listed == sorted(COMMANDS)
    for name, entry in COMMANDS.items():
        assert entry.short_help in " ".join(out.stdout.split()), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_loads_under_its_name_and_answers_help(name: str) -> None:
    cmd = command(name)
    assert cmd.name == name and cmd.short_help == COMMANDS[name].short_help
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


# ------------------------------------------------------------------------------ settings flags


def _options(cmd: click.Command) -> dict[str, click.Option]:
    return {flag: p for p in cmd.params if isinstance(p, click.Option) for flag in p.opts}


#: A command's own option that shares its flag with a setting of another scope: ``run
#: --update`` is the inbox's ``update`` setting for one run.
OWN_FLAGS = {"run": {"--update"}}


@pytest.mark.parametrize("path", sorted(SENDING))
def test_sending_commands_take_every_setting_flag_of_their_scopes(path: str) -> None:
    options = _options(command(path))
    for s in SETTINGS:
        if s.flag is None:
            continue
        if s.scope in SENDING[path]:
            assert s.flag in options, (path, s.flag)
            # generated from the table: its parameter is the setting's, its help the table's
            assert options[s.flag].name == s.param and options[s.flag].help == s.help_text
        elif s.flag in OWN_FLAGS.get(path, ()):
            assert s.flag in options, (path, s.flag)  # the command's own: see the next test
        else:
            assert s.flag not in options, (path, s.flag)
    assert "--config" in options


def test_a_command_s_own_option_named_like_another_scope_s_setting_stays_its_own(
        env: dict[str, str | None], tmp_path: Path) -> None:
    """``run --update`` reaches run (the inbox's ``update`` setting, of another scope, does
    not take it): the dry run's plan is printed, not a missing-argument crash."""
    sheet = tmp_path / "s.csv"
    sheet.write_text("courseId,batchId,moduleId,name,trainerErecno,type,date,startTime,endTime\n"
                     "478346000019479103,478346000019479115,478346000019479119,One,"
                     "478346000008251001,Classroom,01-03-2027,10:00 AM,11:00 AM\n")
    result = CliRunner().invoke(main, ["run", str(sheet), "--update", "--dry-run", "--json",
                                       "--offline", "--state", str(tmp_path / "state"),
                                       "--today", "2026-06-01"], env=env)
    assert result.exit_code == 0, result.output
    assert '"plan": {"create": 1, "update": 0, "unchanged": 0, "invalid": 0}' in result.stdout


@pytest.mark.parametrize("path", sorted(set(COMMANDS) - {"config"} - set(SENDING) | {"sandbox"}))
def test_other_commands_declare_no_setting_flag_by_hand(path: str) -> None:
    """A command outside SENDING has no option that looks like a setting's flag unless it is its
    own (the sandbox's --rate and --lock-seconds configure the stand-in, not a run)."""
    own = {"sandbox": {"--rate", "--lock-seconds"}}.get(path, set())
    flags = {s.flag for s in SETTINGS if s.flag} - own
    assert not flags & set(_options(command(path)))


def _sample(s: Setting, tmp_path: Path) -> list[str]:
    """A valid command-line value for the setting, as arguments after its flag."""
    kind = s.kind
    if isinstance(kind, Switch):
        return []
    if isinstance(kind, Choice):
        return [kind.choices[-1]]
    if isinstance(kind, Number):
        return [str(kind.high)]
    if isinstance(kind, Rate):
        return ["7/9"]
    if isinstance(kind, Url):
        return ["http://127.0.0.1:9"]
    if isinstance(kind, Duration):
        return ["90m"]
    assert isinstance(kind, PathValue)
    return [str(tmp_path / s.name)]


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.flag], ids=lambda s: s.name)
def test_each_flag_reaches_its_setting(setting: Setting, tmp_path: Path,
                                       env: dict[str, str | None]) -> None:
    assert setting.flag is not None
    args = ["config", "show", setting.flag, *_sample(setting, tmp_path)]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.split()[0] == setting.name)
    assert line.endswith("  flag"), line


def test_an_alias_sets_its_setting_and_excludes_the_flag(env: dict[str, str | None],
                                                         tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[inbox]\nwatch = 60\n")
    result = CliRunner().invoke(main, ["config", "show", "--config", str(cfg), "--once"], env=env)
    line = next(ln for ln in result.output.splitlines() if ln.startswith("inbox.watch"))
    assert line.split()[1:] == ["(none)", "flag"]
    result = CliRunner().invoke(main, ["config", "show", "--once", "--watch", "5"], env=env)
    assert result.exit_code == 2 and "--once and --watch exclude each other" in result.output


# ------------------------------------------------------------------------------ bounds


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["run", "x.csv", "--lock-seconds", "1e308"],
         "--lock-seconds: '1e308' is outside 0–86,400"),
        (["inbox", "x", "--workers", "65"], "--workers: '65' is outside 1–64"),
        (["forget", "x.csv", "--row", "2", "--workers", "0"], "--workers: '0' is outside 1–64"),
        (["config", "show", "--stable-seconds", "inf"], "--stable-seconds: 'inf' is not a finite"),
        (["auth", "--rate", "99999999999999999999999/1"], "--rate: '99999999999999999999999/1': "
                                                          "at most 1,000,000 calls"),
        (["serve", "--watch", "1"], "No such option"),  # inbox settings only where they apply
    ],
)
def test_a_bad_number_is_one_line_naming_the_flag_and_range(
    args: list[str], line: str, env: dict[str, str | None]
) -> None:
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    if line == "No such option":
        assert line in result.stderr
    else:
        assert result.stderr.startswith(f"bulkschedule: error: {line}")
        assert len(result.stderr.strip().splitlines()) == 1


def test_environment_numbers_are_bounded_too(env: dict[str, str | None]) -> None:
    result = CliRunner().invoke(main, ["config", "show"],
                                env=env | {"BULKSCHEDULE_LOCK_SECONDS": "1e308"})
    assert result.exit_code == 2
    assert result.stderr == ("bulkschedule: error: BULKSCHEDULE_LOCK_SECONDS: '1e308' is "
                             "outside 0–86,400\n")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["sandbox", "--lock-seconds", "1e308"], "--lock-seconds"),
        (["sandbox", "--token-ttl", "1e308"], "--token-ttl"),
        (["sandbox", "--fail-rate", "2"], "--fail-rate"),
        (["serve", "--speed", "1e308"], "--speed"),
        (["serve", "--port", "70000"], "--port"),
        (["run", "x.csv", "--speed", "nan"], "--speed"),
    ],
)
def test_command_numbers_use_the_same_parser(args: list[str], flag: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert f"Invalid value for '{flag}'" in result.output
    assert "is outside" in result.output or "finite" in result.output


# ------------------------------------------------------------------------------ one error path


def _group_raising(error: Exception) -> click.Group:
    group = LazyGroup("bulkschedule", lazy={})

    @group.command("boom")
    def boom() -> None:
        raise error

    return group


@pytest.mark.parametrize("error", [ConfigError("c.toml: unknown key 'x'"),
                                   JobError("sheet.csv: cannot read the file")])
def test_a_library_error_is_one_line_and_its_exit_code(error: Exception) -> None:
    result = CliRunner().invoke(_group_raising(error), ["boom"])
    assert result.exit_code == 2
    assert result.stderr == f"bulkschedule: error: {error}\n"
    assert result.stdout == ""


def test_an_error_with_a_multi_line_message_is_still_one_line() -> None:
    result = CliRunner().invoke(_group_raising(JobError("first\nsecond")), ["boom"])
    assert result.stderr == "bulkschedule: error: first second\n"


def test_an_error_that_is_not_a_failure_exits_0_on_stdout(tmp_path: Path) -> None:
    result = CliRunner().invoke(_group_raising(InboxBusy(tmp_path / "lock", 42)), ["boom"])
    assert result.exit_code == 0
    assert result.stdout == ("another bulkschedule inbox run is in progress (pid 42); nothing "
                             "to do\n")


def test_anything_else_is_not_swallowed() -> None:
    result = CliRunner().invoke(_group_raising(RuntimeError("a bug")), ["boom"])
    assert isinstance(result.exception, RuntimeError)

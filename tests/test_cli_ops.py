"""`bulkschedule config show` and `bulkschedule auth [--check]` through the real command line.

`config show` runs in-process (click's runner, with a controlled environment); `auth` runs in a
subprocess against the sandbox's token endpoint and API over loopback, like a user's shell would.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bulkschedule.cli.root import main
from bulkschedule.sandbox.server import Sandbox, SandboxConfig, load_catalogue

LONG_SECRET = "0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"  # long enough to be shown masked
IDS = ["--course", "478346000019479103", "--batch", "478346000019479115",
       "--module", "478346000019479119"]
LEAKS = ("sandbox-client-secret", "sandbox-refresh-token", "sandbox-grant-code")
CATALOGUE = Path(__file__).parents[1] / "sample_data" / "catalogue.json"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: private HOME and config folder, no ZOHO_* or BULKSCHEDULE_*."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("ZOHO_", "BULKSCHEDULE_", "XDG_"))}
    clean["HOME"] = str(tmp_path / "home")
    clean["XDG_CONFIG_HOME"] = str(tmp_path / "cfg")
    return clean


def invoke(args: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Run the CLI in-process with exactly ``env`` as the environment."""
    blank = {k: None for k in os.environ if k not in env}
    return CliRunner().invoke(main, args, env={**blank, **env}, catch_exceptions=False)


def rows(output: str) -> dict[str, tuple[str, str]]:
    """``config show`` lines -> {name: (value, source)}."""
    out: dict[str, tuple[str, str]] = {}
    for line in output.splitlines():
        name, _, rest = line.partition("  ")
        parts = [p for p in rest.strip().split("  ") if p.strip()]
        out[name.strip()] = (parts[0].strip() if parts else "",
                             parts[1].strip() if len(parts) > 1 else "")
    return out


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


# ------------------------------------------------------------------------------ config show


def test_config_show_precedence_flag_env_file_default(tmp_path: Path,
                                                      env: dict[str, str]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('dc = "eu"\nworkers = 3\nrate = "20/60"\nlock_seconds = 200\n'
                   '[inbox]\nall_or_nothing = true\n')
    env["BULKSCHEDULE_WORKERS"] = "5"
    env["BULKSCHEDULE_RATE"] = "25/60"
    result = invoke(["config", "show", "--config", str(cfg), "--rate", "10/60"], env)
    assert result.exit_code == 0, result.output
    shown = rows(result.output)
    assert shown["config_file"] == (str(cfg), "flag (loaded)")
    assert shown["rate"] == ("10/60", "flag")  # flag beats environment and file
    assert shown["workers"] == ("5", "env BULKSCHEDULE_WORKERS")  # environment beats file
    assert shown["dc"] == ("eu", f"file {cfg}")
    assert shown["lock_seconds"] == ("200", f"file {cfg}")
    assert shown["payload_style"] == ("query", "default")
    assert shown["inbox.all_or_nothing"] == ("true", f"file {cfg}")
    assert shown["ZOHO_CLIENT_SECRET"][0] == "(not set)"


def test_config_file_from_environment_and_missing_named_file(tmp_path: Path,
                                                             env: dict[str, str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("workers = 2\n")
    env["BULKSCHEDULE_CONFIG"] = str(cfg)
    shown = rows(invoke(["config", "show"], env).output)
    assert shown["workers"] == ("2", f"file {cfg}")
    env["BULKSCHEDULE_CONFIG"] = str(tmp_path / "typo.toml")
    result = invoke(["config", "show"], env)
    assert result.exit_code == 2
    assert "typo.toml: config file not found" in result.output


def test_config_show_masks_secrets_and_names_their_source(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    secrets = write_private(
        tmp_path / "cfg" / "bulkschedule" / "secrets.toml",
        f'ZOHO_CLIENT_ID = "1000.CLIENTIDCLIENTIDCLIENTID42"\n'
        f'ZOHO_CLIENT_SECRET = "{LONG_SECRET}"\nZOHO_REFRESH_TOKEN = "1000.abcdef.0123456789"\n')
    result = invoke(["config", "show"], env)
    assert result.exit_code == 0, result.output
    assert LONG_SECRET not in result.output
    assert "1000.abcdef.0123456789" not in result.output
    shown = rows(result.output)
    assert shown["ZOHO_CLIENT_SECRET"] == ("0a1b2c…78", f"file {secrets}")
    assert shown["ZOHO_REFRESH_TOKEN"] == ("********", f"file {secrets}")
    # The environment, when it holds credentials, replaces the file entirely.
    env["ZOHO_ACCESS_TOKEN"] = LONG_SECRET
    shown = rows(invoke(["config", "show"], env).output)
    assert shown["ZOHO_ACCESS_TOKEN"] == ("0a1b2c…78", "env ZOHO_ACCESS_TOKEN")
    assert shown["ZOHO_CLIENT_SECRET"][0] == "(not set)"


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_group_or_world_readable_secrets_file_refused(tmp_path: Path, env: dict[str, str],
                                                      mode: int) -> None:
    path = write_private(tmp_path / "cfg" / "bulkschedule" / "secrets.toml",
                         f'ZOHO_CLIENT_SECRET = "{LONG_SECRET}"\n', mode)
    for args in (["config", "show"], ["auth", "--check"],
                 ["inbox", str(tmp_path / "inbox"), "--state", str(tmp_path / "state")]):
        result = invoke(args, env)
        assert result.exit_code == 2, (args, result.output)
        assert f"{path}: the secrets file is readable by others (mode {mode:04o})" in \
            result.output
        assert "chmod 600" in result.output
        assert LONG_SECRET not in result.output


def test_secret_in_config_file_refused(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'client_secret = "{LONG_SECRET}"\n')
    result = invoke(["config", "show", "--config", str(cfg)], env)
    assert result.exit_code == 2
    assert "is a secret and does not belong in the config file" in result.output
    assert LONG_SECRET not in result.output


# ------------------------------------------------------------------------------ auth


async def cli(args: list[str], env: dict[str, str], stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkschedule", *args, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


ANSWERS = "sandbox-client-id\nsandbox-client-secret\nsandbox-grant-code\n"


@pytest.mark.slow
async def test_auth_writes_a_private_secrets_file_then_check_reads(
        tmp_path: Path, env: dict[str, str]) -> None:
    state = tmp_path / "state"
    secrets = tmp_path / "cfg" / "bulkschedule" / "secrets.toml"
    async with Sandbox(SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1)) as sb:
        env["ZOHO_ACCOUNTS_URL"] = sb.url
        code, out, err = await cli(["auth"], env, ANSWERS)
        assert code == 0, (out, err)
        assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
        text = secrets.read_text()
        assert 'ZOHO_REFRESH_TOKEN = "sandbox-refresh-token"' in text
        assert 'ZOHO_CLIENT_SECRET = "sandbox-client-secret"' in text
        assert f'ZOHO_ACCOUNTS_URL = "{sb.url}"' in text
        assert str(secrets) in out
        for leak in LEAKS:
            assert leak not in out + err
        assert sb.stats()["tokens_minted"] == 1

        # Not again without --force: and the grant code is not spent on a refused write.
        code, out, err = await cli(["auth"], env, "x\ny\nz\n")
        assert code == 2 and "already exists; use --force" in err
        assert sb.stats()["tokens_minted"] == 1

        # The check: a token (minted, then cached) and one paced read; nothing created.
        del env["ZOHO_ACCOUNTS_URL"]  # now it comes from the secrets file
        check = ["auth", "--check", "--api-base", sb.url, "--state", str(state), *IDS]
        code, out, err = await cli(check, env)
        assert code == 0, (out, err)
        assert "minted a new access token" in out and "read: OK" in out
        assert "nothing was created" in out
        code, out, err = await cli(check, env)
        assert code == 0, (out, err)
        assert "reused the cached access token" in out
        stats = sb.stats()
        assert stats["tokens_minted"] == 2  # the exchange, then one mint for both checks
        assert stats["creates"] == 0 and stats["sessions"] == 0
        assert stats["reads"] == 2
        for leak in LEAKS:
            assert leak not in out + err
        assert "1000." not in out + err  # no minted token either


@pytest.mark.slow
async def test_auth_check_ids_from_a_sheet_and_without_ids(tmp_path: Path,
                                                           env: dict[str, str]) -> None:
    sheet = Path(__file__).parents[1] / "sample_data" / "sessions.xlsx"
    state = tmp_path / "state"
    write_private(tmp_path / "cfg" / "bulkschedule" / "secrets.toml",
                  'ZOHO_CLIENT_ID = "sandbox-client-id"\n'
                  'ZOHO_CLIENT_SECRET = "sandbox-client-secret"\n'
                  'ZOHO_REFRESH_TOKEN = "sandbox-refresh-token"\n')
    config = SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1,
                           catalogue=load_catalogue(CATALOGUE))
    async with Sandbox(config) as sb:
        env["ZOHO_ACCOUNTS_URL"] = sb.url
        base = ["auth", "--check", "--api-base", sb.url, "--state", str(state)]
        code, out, err = await cli([*base, "--ids-from", str(sheet)], env)
        assert code == 0, (out, err)
        assert "read: OK, module 478346000019479119 of batch 478346000019479115 lists " \
               "0 sessions" in out
        assert "trainers" not in out  # with a module, the module is what is read
        assert sb.stats()["reads"] == 1
        # Without a module: one ID-free read of the trainers' first page instead.
        code, out, err = await cli(base, env)
        assert code == 0, (out, err)
        assert f"read: OK, 3 trainers listed (first page) at {sb.url}; nothing was created" \
            in out
        assert "not checked" not in out
        stats = sb.stats()
        assert (stats["reads"], stats["calls"]) == (2, 2)  # exactly one more read
        assert stats["creates"] == 0 and stats["sessions"] == 0


@pytest.mark.slow
async def test_auth_failures_exit_2_with_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    async with Sandbox(SandboxConfig(rate_calls=10, rate_seconds=1, lock_seconds=1)) as sb:
        env["ZOHO_ACCOUNTS_URL"] = sb.url
        # A wrong grant code: Zoho's invalid_code (in an HTTP 200) becomes advice.
        code, out, err = await cli(["auth"], env, "sandbox-client-id\nsandbox-client-secret\n"
                                                  "expired-code\n")
        assert code == 2 and "invalid_code" in err and "Generate a new code" in err
        assert "Traceback" not in err and "sandbox-client-secret" not in out + err
        # No answers on stdin at all.
        code, out, err = await cli(["auth", "--force"], env, "")
        assert code == 2 and "no client id given" in err
        # --check with a token the API rejects: the message names the fix.
        env["ZOHO_ACCESS_TOKEN"] = "not-a-valid-token"
        code, out, err = await cli(["auth", "--check", "--api-base", sb.url,
                                    "--state", str(tmp_path / "state"), *IDS], env)
        assert code == 2, (out, err)
        # Log lines may come first (stderr is not a terminal); the error is the last line.
        assert err.strip().splitlines()[-1].startswith("bulkschedule: error: ")
        assert "Traceback" not in err
        assert "access token was rejected" in err
        # Without a module too: the trainers' read is what rejects it.
        no_ids = ["auth", "--check", "--api-base", sb.url, "--state", str(tmp_path / "state")]
        code, out, err = await cli(no_ids, env)
        assert code == 2, (out, err)
        assert err.strip().splitlines()[-1].startswith("bulkschedule: error: ")
        assert "access token was rejected" in err
        assert "can only be checked by a read" not in err
        assert sb.stats()["unauthorized"] == 2 and sb.stats()["calls"] == 0
        # A valid static token needs no module: one read of the trainers' first page.
        env["ZOHO_ACCESS_TOKEN"] = sb.token
        code, out, err = await cli(no_ids, env)
        assert code == 0, (out, err)
        assert "credentials: using ZOHO_ACCESS_TOKEN as given" in out
        assert f"read: OK, 0 trainers listed (first page) at {sb.url}; nothing was created" \
            in out
        stats = sb.stats()
        assert (stats["reads"], stats["calls"]) == (1, 1)
        assert stats["creates"] == 0 and stats["sessions"] == 0
        assert sb.token not in out + err


def test_auth_usage_errors(env: dict[str, str]) -> None:
    result = invoke(["auth", "--check", "--course", "478346000019479103"], env)
    assert result.exit_code == 2 and "all three" in result.output
    result = invoke(["auth", *IDS], env)
    assert result.exit_code == 2 and "go with --check" in result.output


# ------------------------------------------------------------------------------ hostile config


@pytest.mark.parametrize("content", [b'dc = "eu"\nrate = "\xff/60"\n',
                                     b"a = " + b"[" * 50_000 + b"]" * 50_000 + b"\n"])
@pytest.mark.parametrize("command", [["config", "show"], ["inbox"], ["auth", "--check"]])
def test_unreadable_config_file_is_one_line_exit_2(tmp_path: Path, env: dict[str, str],
                                                   content: bytes, command: list[str]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_bytes(content)
    result = invoke([*command, "--config", str(cfg)], env)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"bulkschedule: error: {cfg}: not valid TOML: ")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output


def test_credential_with_a_line_break_refused_before_anything_is_sent(
        tmp_path: Path, env: dict[str, str]) -> None:
    """The token would make every request fail after the row was marked in flight (every row
    'unknown'); refused at start-up instead: exit 2, nothing written, the value never shown."""
    sheet = Path(__file__).parents[1] / "sample_data" / "sessions.xlsx"
    results = tmp_path / "out.results.xlsx"
    env["ZOHO_ACCESS_TOKEN"] = f"{LONG_SECRET}\r\n{LONG_SECRET}"
    # Nothing listens on port 9: had anything been sent, rows would fail (exit 1), not exit 2.
    result = invoke(["run", str(sheet), "--api-base", "http://127.0.0.1:9", "--yes",
                     "--state", str(tmp_path / "state"), "--results", str(results),
                     "--today", "2026-06-01"], env)
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("bulkschedule: error: ZOHO_ACCESS_TOKEN contains a line break")
    assert LONG_SECRET not in result.output + result.stderr
    assert not results.exists() and not (tmp_path / "state").exists()


def test_credential_with_a_line_break_in_the_secrets_file(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    path = write_private(tmp_path / "cfg" / "bulkschedule" / "secrets.toml",
                         f'ZOHO_CLIENT_SECRET = "{LONG_SECRET}\\n{LONG_SECRET}"\n')
    for args in (["config", "show"], ["auth", "--check"],
                 ["inbox", str(tmp_path / "inbox"), "--state", str(tmp_path / "state")]):
        result = invoke(args, env)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith(
            f"bulkschedule: error: {path}: 'ZOHO_CLIENT_SECRET' contains a line break"), args
        assert LONG_SECRET not in result.output + result.stderr


def test_auth_set_up_refuses_a_line_break_in_an_answer_from_the_environment(
        tmp_path: Path, env: dict[str, str]) -> None:
    env["ZOHO_ACCOUNTS_URL"] = "http://127.0.0.1:9"  # never reached
    env["ZOHO_CLIENT_ID"] = "1000.CLIENTIDCLIENTIDCLIENTID42"
    env["ZOHO_CLIENT_SECRET"] = f"{LONG_SECRET}\n{LONG_SECRET}"
    result = invoke(["auth"], env)
    assert result.exit_code == 2
    assert result.stderr.startswith("bulkschedule: error: ZOHO_CLIENT_SECRET contains a line")
    assert LONG_SECRET not in result.output + result.stderr
    assert not (tmp_path / "cfg" / "bulkschedule" / "secrets.toml").exists()

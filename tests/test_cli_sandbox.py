"""`bulkschedule sandbox` as an operator starts it: a real process on a real port."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

SESSION = {
    "name": "Induction",
    "trainerErecno": "478346000008251001",
    "type": "0",
    "date": "04-01-2027",
    "startTime": "10:00 AM",
    "endTime": "11:00 AM",
}
PATH = "/api/v1/courses/478346000019479103/batches/478346000019479115/modules/478346000019479119"


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkschedule", "sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no URL in {line!r}: {proc.stderr.read()}")
    return proc, m.group(1)


def _post(url: str, token: str = "sandbox-token") -> tuple[int, dict[str, object]]:
    query = urllib.parse.urlencode({"sessionData": json.dumps(SESSION)})
    req = urllib.request.Request(f"{url}{PATH}/sessions?{query}", method="POST",
                                 headers={"Authorization": f"Zoho-oauthtoken {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


@pytest.mark.slow
def test_sandbox_command_serves_enforces_its_window_and_stops_cleanly() -> None:
    proc, url = _start("--rate", "3/60", "--lock-seconds", "60", "--lock-style", "422",
                       "--token", "tok-for-this-test")
    try:
        statuses = [_post(url, "tok-for-this-test") for _ in range(4)]
        assert [s for s, _ in statuses[:3]] == [200, 200, 200]
        assert all(len(str(body["session"]["sessionId"])) == 18  # type: ignore[index]
                   for _, body in statuses[:3])
        assert statuses[3] == (422, {"code": 422, "message": "Maximum limit exceeded"})
        assert _post(url, "wrong-token")[0] == 401
        with urllib.request.urlopen(f"{url}/__sandbox/stats", timeout=10) as resp:
            stats = json.load(resp)
        assert stats["created"] == 3 and stats["refused"] == 1 and stats["lockouts"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "30/0"], "rate"),
        (["--latency", "5-1"], "latency"),
        (["--lock-style", "500"], "lock-style"),
    ],
)
def test_sandbox_command_refuses_bad_options_with_one_line(args: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "bulkschedule", "sandbox", *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert needle in proc.stderr.lower()
    assert "Traceback" not in proc.stderr


def test_sandbox_command_refuses_a_bad_catalogue(tmp_path: Path) -> None:
    bad = tmp_path / "catalogue.json"
    bad.write_text("{not json", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "bulkschedule", "sandbox", "--data", str(bad)],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONWARNINGS": "error"})
    assert proc.returncode == 2
    assert str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr


def _get(url: str, path: str, token: str = "sandbox-token") -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(f"{url}{path}",
                                 headers={"Authorization": f"Zoho-oauthtoken {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


SAMPLE_ORG = Path(__file__).resolve().parents[1] / "sample_data" / "catalogue.json"


@pytest.mark.slow
def test_sandbox_command_serves_the_sample_org() -> None:
    """`bulkschedule sandbox --data sample_data/catalogue.json`: the org reads an admin's tools
    make, and the batch dates enforced on create."""
    proc, url = _start("--data", str(SAMPLE_ORG))
    try:
        status, body = _get(url, "/api/v1/courses?startIndex=0&state=published")
        assert status == 200 and body["code"] == "200"
        assert [c["courseName"] for c in body["courses"]] == [  # type: ignore[attr-defined]
            "New starter programme", "Leadership essentials"]
        status, body = _get(url, PATH.rsplit("/modules/", 1)[0])
        assert body["batch"]["startDateAsDisplayString"] == "04-Jan-2027"  # type: ignore[index]
        status, body = _get(url, "/api/v1/trainers?employeeStatus=active")
        assert status == 200 and len(body["trainers"]) == 3  # type: ignore[arg-type]
        assert _post(url)[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in err


def _has_option(flag: str) -> bool:
    proc = subprocess.run([sys.executable, "-m", "bulkschedule", "sandbox", "--help"],
                          capture_output=True, text=True, timeout=30)
    return flag in proc.stdout


@pytest.mark.slow
def test_sandbox_command_latency_at_and_field_style() -> None:
    if not _has_option("--latency-at"):
        pytest.skip("the --latency-at and --field-style click options are not there yet")
    proc, url = _start("--data", str(SAMPLE_ORG), "--latency", "0.01", "--latency-at", "reply",
                       "--field-style", "employee")
    try:
        status, body = _get(url, "/api/v1/trainers")
        assert status == 200 and body["code"] == 200
        assert body["trainers"][0]["EmailID"] == "henry.adams@example.com"  # type: ignore[index]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    bad = subprocess.run([sys.executable, "-m", "bulkschedule", "sandbox", "--latency-at",
                          "midway"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

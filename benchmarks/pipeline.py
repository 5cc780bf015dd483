"""Benchmark: the whole pipeline at 100,000 rows, at the speed of its parts (issue 14).

Three measurements, each side by side in one run so the ratios hold on a loaded machine:

1. Whole processes on a generated 100,000-row CSV of 13 columns with 1,000 bad rows, against
   ``validate --json`` on the same file: ``validate --report OUT.xlsx`` (target <= 8x) and
   ``run --dry-run --results OUT.xlsx`` (target <= 12x, its log on stderr going to a file as
   under cron), each under 400 MB. With ``--before DIR`` the same commands run from that checkout
   too (in the same rounds), for the before/after table of docs/benchmarks.md.
2. The results workbook against the writer alone (XlsxWriter's constant-memory mode) writing the
   same cells with their styles, in one process, alternately: target <= 1.3x. openpyxl's
   write-only mode (the writer before) and rustpy-xlsxwriter (``--other-writers``) for the record.
3. Real runs against the sandbox (a separate process) at a rate the client cannot reach
   (``--rate 100000/1``, 16 workers): 20,000 rows at >= 500 rows a second end to end, and peak
   memory at 20,000 rows within 1.2x of that at 5,000.

Wall and CPU seconds (user + system) and peak RSS come from ``wait4``; "ratio" is median over
median. CPU time is the steadier figure when other processes share the cores, so both are shown.

    python benchmarks/pipeline.py [--rows 100000] [--bad 1000] [--repeat 3] [--before DIR]
                                  [--send-rows 5000,20000] [--skip processes,writer,send]
                                  [--other-writers DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from validate import make_csv, rows

HERE = Path(__file__).resolve().parent
AFTER = HERE.parent
DATA = HERE / "_data"
PY = sys.executable
TOKEN = "sandbox-token"
BASE_DAY = dt.date(2027, 1, 4)


# ------------------------------------------------------------------------------------ the data


def bad_rows(data: list[list[object]], bad: int) -> None:
    """Give ``bad`` evenly spread rows one error each, five kinds in turn."""
    step = len(data) // bad if bad else 0
    for k in range(bad):
        row = data[k * step + step // 2]
        kind = k % 5
        if kind == 0:
            row[6] = "31-02-2027"  # date: does not exist
        elif kind == 1:
            row[7] = "25:00"  # startTime: no hour 25
        elif kind == 2:
            row[0] = "4.78346E+17"  # courseId: rounded by Excel
        elif kind == 3:
            row[5] = "Webinar"  # type: not a session type
        else:
            row[8] = dt.time(7, 0)  # endTime before startTime


def sheet(n: int, bad: int) -> Path:
    """The generated sheet (kept in benchmarks/_data/, which git ignores)."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"pipeline-{n}-{bad}.csv"
    if not path.exists():
        data = rows(n)
        bad_rows(data, bad)
        make_csv(path, data)
    return path


def catalogue(path: Path) -> None:
    """The sandbox's org for the generated sessions: every ID `validate.rows` uses."""
    org = {
        "courses": [{"id": "478346000019479103", "name": "Scale course", "batches": [{
            "id": "478346000019479115", "name": "Scale batch", "startDate": "01-01-2027",
            "endDate": "31-12-2028",
            "modules": [{"id": str(478346000019479119 + 12 * i), "name": f"Module {i}"}
                        for i in range(40)]}]}],
        "trainers": [{"erecno": str(478346000008251001 + 16 * i), "name": f"Trainer {i}",
                      "email": f"trainer{i}@example.com", "status": "active"}
                     for i in range(500)],
        "rooms": [{"id": str(478346000010125093 + 14 * i), "name": f"Room {i}"}
                  for i in range(400)],
    }
    path.write_text(json.dumps(org), encoding="utf-8")


# ------------------------------------------------------------------------------- one process


@dataclass
class Sample:
    wall: float
    cpu: float
    peak_mb: float


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    @property
    def peak(self) -> float:
        return max(s.peak_mb for s in self.samples)


#: Where every child runs: ``python -m`` puts the working directory before PYTHONPATH, so a
#: child started inside a checkout would import that checkout whatever ``--before`` says.
#: (An empty folder, made by `main`.)
NEUTRAL = Path(tempfile.gettempdir())


def env_for(code: Path, *, lxml: bool = True) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(code), ZOHO_ACCESS_TOKEN=TOKEN)
    if not lxml:
        env["OPENPYXL_LXML"] = "False"  # openpyxl's own switch: as if lxml were not installed
    return env


def check_side(code: Path, env: dict[str, str]) -> None:
    """The child of a side imports that side's code (not an editable install, not the cwd)."""
    found = subprocess.run([PY, "-c", "import bulkschedule; print(bulkschedule.__file__)"],
                           env=env, cwd=NEUTRAL, capture_output=True, text=True, check=True)
    if not Path(found.stdout.strip()).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"a child meant to run {code} imports {found.stdout.strip()}")


def measure(argv: Sequence[str], env: dict[str, str], *, ok: Sequence[int] = (0, 1),
            stderr_to: Path | None = None) -> Sample:
    """Wall, CPU and peak RSS of one child process, from wait4's own rusage."""
    err = stderr_to.open("wb") if stderr_to else subprocess.PIPE
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env,
                            stdin=subprocess.DEVNULL, cwd=NEUTRAL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if stderr_to:
        err.close()  # type: ignore[union-attr]
    elif proc.stderr:
        text = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if code not in ok:
            raise SystemExit(f"{' '.join(argv)} exited {code}: {text[-2000:]}")
    if code not in ok:
        raise SystemExit(f"{' '.join(argv)} exited {code}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


# ------------------------------------------------------------------------------ 1. processes


def processes(path: Path, sides: dict[str, tuple[Path, bool]], repeat: int, tmp: Path) -> bool:
    """validate --json, validate --report, run --dry-run --results, per side, alternately."""
    def commands(side: str) -> dict[str, list[str]]:
        out = tmp / side
        return {
            "validate --json": [PY, "-m", "bulkschedule", "validate", str(path), "--json"],
            "validate --report": [PY, "-m", "bulkschedule", "validate", str(path), "--report",
                                  str(out / "report.xlsx")],
            "run --dry-run --results": [PY, "-m", "bulkschedule", "run", str(path), "--dry-run",
                                        "--results", str(out / "results.xlsx"), "--state",
                                        str(out / "state")],
        }

    for side, (code, lxml) in sides.items():  # does it do the work? (and warms the file cache)
        (tmp / side).mkdir(exist_ok=True)
        summary = json.loads(subprocess.run(commands(side)["validate --json"], env=env_for(
            code, lxml=lxml), capture_output=True, text=True, check=False, cwd=NEUTRAL).stdout)
        if summary["rows"] != n_rows(path) or summary["errors"] == 0:
            raise SystemExit(f"{side}: unexpected validate output {str(summary)[:300]}")
    series = {(side, name): Series() for side in sides for name in commands(side)}
    for round_ in range(repeat):
        for side, (code, lxml) in sides.items():
            for name, argv in commands(side).items():
                shutil.rmtree(tmp / side / "state", ignore_errors=True)
                sample = measure(argv, env_for(code, lxml=lxml),
                                 stderr_to=tmp / side / "stderr.log")
                series[side, name].samples.append(sample)
                print(f"  round {round_ + 1} {side:<6} {name:<24} {sample.wall:7.2f} s "
                      f"{sample.cpu:7.2f} cpu {sample.peak_mb:6.0f} MB", file=sys.stderr,
                      flush=True)
    for side in sides:  # every row was written
        if workbook_rows(tmp / side / "results.xlsx", "Results") != n_rows(path) + 1:
            raise SystemExit(f"{side}: the results workbook does not hold every row")
        log = (tmp / side / "stderr.log").read_text(encoding="utf-8")
        log_lines = len(re.findall(r"^\S+ \S+ [A-Z]+ row \d+: ", log, re.MULTILINE))
        print(f"  {side}: the dry run logged {log_lines} row lines off a terminal",
              file=sys.stderr)

    targets = {"validate --report": 8.0, "run --dry-run --results": 12.0}
    print(f"\n1. whole processes, {n_rows(path):,} rows ({path.name}); ratio = median over the "
          "median of validate --json of the same code")
    head = (f"{'side':<7}{'command':<26}{'wall s':>8}{'ratio':>7}{'cpu s':>8}{'ratio':>7}"
            f"{'peak MB':>9}{'target':>16}")
    print(head + "\n" + "-" * len(head))
    ok = True
    for side in sides:
        ref = series[side, "validate --json"]
        for name in commands(side):
            s = series[side, name]
            wall, cpu = s.median("wall") / ref.median("wall"), s.median("cpu") / ref.median("cpu")
            target = targets.get(name)
            verdict = ""
            if target is not None:
                met = wall <= target and s.peak < 400
                verdict = f"<={target:g}x <400 {'ok' if met else 'MISS'}"
                ok &= met or side != "after"
            print(f"{side:<7}{name:<26}{s.median('wall'):>8.2f}{wall:>7.2f}{s.median('cpu'):>8.2f}"
                  f"{cpu:>7.2f}{s.peak:>9.0f}{verdict:>16}")
    return ok


def n_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for _ in f) - 1


def workbook_rows(path: Path, sheet_name: str) -> int:
    """Rows of one sheet, as a read-only reader sizes it."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    try:
        return int(wb[sheet_name].max_row or 0)
    finally:
        wb.close()


# ---------------------------------------------------------------------------------- 2. writer


def writer_child(path: Path, repeat: int) -> None:
    """In the child (the code under test on sys.path): the results workbook of a dry run against
    the writer it is written with, XlsxWriter in constant-memory mode, writing the same cells with
    their styles; and, for the record, openpyxl's write-only mode (what wrote it before) and
    rustpy-xlsxwriter when it is installed. Alternately; CPU seconds as JSON."""
    import xlsxwriter as xw
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import PatternFill
    from openpyxl.xml import LXML

    from bulkschedule.app import job, results
    from bulkschedule.core.problems import Outcome, Status

    validation = job.load(path)
    outcomes = job.complete(validation, {(r, 0): Outcome(r, Status.WOULD_CREATE)
                                         for r in validation.table.row_numbers
                                         if r not in validation.error_rows})
    inputs = results._input_columns(validation)
    header = ["row", "occurrence", *(name for _, name in inputs), *results.RESULT_COLUMNS]
    text = [i for i, name in enumerate(header)
            if results._is_id_column(name, validation.spec) or name == "sessionId"]
    status_at = header.index("status")
    lines = []
    for r, values in zip(validation.table.row_numbers, validation.table.rows, strict=True):
        o = outcomes[(r, 0)]
        lines.append([r, None, *(values[i] for i, _ in inputs), str(o.status), o.session_id,
                      o.message or None, o.attempts])
    out = Path(tempfile.mkdtemp(prefix="bulkschedule-writer-"))

    def xlsxwriter() -> None:
        """The same cells with their styles in XlsxWriter's constant-memory mode, the way its
        documentation writes cells: one call a cell, a Format for Text and each status fill."""
        wb = xw.Workbook(str(out / "xlsxwriter.xlsx"), {"constant_memory": True})
        ws = wb.add_worksheet("Results")
        text_format = wb.add_format({"num_format": "@"})
        fills = {s: wb.add_format({"bg_color": f"#{c}", "pattern": 1})
                 for s, c in results.STATUS_COLOURS.items()}
        ws.write_row(0, 0, header)
        texts = set(text)
        for r, line in enumerate(lines, start=1):
            for c, value in enumerate(line):
                if value is None:
                    continue
                if c == status_at:
                    ws.write_string(r, c, value, fills[value])
                elif isinstance(value, str):
                    ws.write_string(r, c, value, text_format if c in texts else None)
                else:
                    ws.write_number(r, c, value)
        wb.close()

    def ours() -> None:
        results.write_results(out / "ours.xlsx", validation, outcomes, {"file": str(path)})

    def openpyxl_styled() -> None:
        """The same cells with their styles in openpyxl's write-only mode, as openpyxl documents
        it (a WriteOnlyCell each): what wrote the results workbook before."""
        fills = {s: PatternFill(fill_type="solid", start_color=c, end_color=c)
                 for s, c in results.STATUS_COLOURS.items()}
        wb = Workbook(write_only=True)
        ws = wb.create_sheet("Results")
        ws.append(header)
        for line in lines:
            row: list[object] = list(line)
            for i in text:
                if isinstance(row[i], str):
                    cell = WriteOnlyCell(ws, row[i])
                    cell.number_format = "@"
                    row[i] = cell
            cell = WriteOnlyCell(ws, line[status_at])
            cell.fill = fills[line[status_at]]
            row[status_at] = cell
            ws.append(row)
        wb.save(out / "styled.xlsx")

    def rustpy() -> None:
        """rustpy-xlsxwriter, values only: it styles whole columns or rows, never one cell."""
        import rustpy_xlsxwriter as rx

        records = ({h: v for h, v in zip(header, line, strict=True)} for line in lines)
        rx.write_worksheet(records, str(out / "rustpy.xlsx"), sheet_name="Results")

    writers = [("xlsxwriter", xlsxwriter), ("ours", ours), ("openpyxl", openpyxl_styled)]
    try:
        __import__("rustpy_xlsxwriter")
    except ImportError:
        pass
    else:
        writers.append(("rustpy", rustpy))
    cpu: dict[str, list[float]] = {name: [] for name, _ in writers}
    for _ in range(repeat):
        for name, f in writers:
            start = time.process_time()
            f()
            cpu[name].append(time.process_time() - start)
            print(f"  writer {name:<10} {cpu[name][-1]:6.2f} cpu", file=sys.stderr, flush=True)
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"cpu": cpu, "lxml": LXML, "cells": len(lines) * len(header),
                      "xlsxwriter": xw.__version__}))


def writer(path: Path, code: Path, repeat: int, others: Path | None) -> bool:
    argv = [PY, str(Path(__file__).resolve()), "--writer-child", str(path), "--repeat",
            str(repeat)]
    env = env_for(code)
    if others is not None:  # where rustpy-xlsxwriter is installed, to compare
        env["PYTHONPATH"] += os.pathsep + str(others)
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True, check=True,
                          cwd=NEUTRAL)
    found = json.loads(done.stdout)
    med = {k: statistics.median(v) for k, v in found["cpu"].items()}
    print(f"\n2. the results workbook against the writer alone, {found['cells']:,} cells of the "
          f"Results sheet (CPU s, median)")
    ref = med["xlsxwriter"]
    print(f"{'XlsxWriter ' + found['xlsxwriter'] + ' constant_memory, the same cells':<58}"
          f"{ref:>8.2f}")
    ratio = med["ours"] / ref
    print(f"{'write_results (3 sheets, widths, atomic)':<58}{med['ours']:>8.2f}   "
          f"{ratio:.2f}x the same cells   target <=1.3x {'ok' if ratio <= 1.3 else 'MISS'}")
    others = {"openpyxl": f"openpyxl write-only, the same cells (lxml "
                          f"{'on' if found['lxml'] else 'off'})",
              "rustpy": "rustpy-xlsxwriter, values only (no cell styles)"}
    for name, label in others.items():
        if name in med:
            print(f"{label:<58}{med[name]:>8.2f}   {med[name] / ref:.2f}x XlsxWriter")
    return ratio <= 1.3


# ------------------------------------------------------------------------------------ 3. send


def start_sandbox(code: Path, org: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The sandbox in a process of its own (its output to ``log``, so it never blocks on a full
    pipe), and its URL once it listens."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "bulkschedule", "sandbox", "--port", "0", "--rate", "100000/1", "--data",
             str(org)], env=env_for(code), stdout=subprocess.DEVNULL, stderr=out, cwd=NEUTRAL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"listening on (\S+)", log.read_text(errors="replace"))
        if found:
            return proc, found.group(1)
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the sandbox did not start: {log.read_text(errors='replace')[-500:]}")


def sandbox_stats(url: str) -> dict[str, int]:
    from urllib.request import urlopen

    with urlopen(f"{url}/__sandbox/stats", timeout=10) as reply:  # the sandbox, on loopback
        return json.loads(reply.read())  # type: ignore[no-any-return]


def send(sides: dict[str, tuple[Path, bool]], counts: list[int], repeat: int, tmp: Path) -> bool:
    """Real runs against the sandbox, alternately per side and row count."""
    org = tmp / "org.json"
    catalogue(org)
    sheets = {}
    for n in counts:
        sheets[n] = tmp / f"send-{n}.csv"
        make_csv(sheets[n], rows(n))
    series = {(side, n): Series() for side in sides for n in counts}
    for round_ in range(repeat):
        for side, (code, lxml) in sides.items():
            for n in counts:
                state = tmp / f"state-{side}-{n}"
                shutil.rmtree(state, ignore_errors=True)
                proc, url = start_sandbox(AFTER, org, tmp / "sandbox.log")
                try:
                    argv = [PY, "-m", "bulkschedule", "run", str(sheets[n]), "--api-base", url,
                            "--rate", "100000/1", "--workers", "16", "--yes", "--state",
                            str(state), "--results", str(tmp / f"results-{side}-{n}.xlsx")]
                    sample = measure(argv, env_for(code, lxml=lxml), ok=(0,),
                                     stderr_to=tmp / f"send-{side}-{n}.log")
                    stats = sandbox_stats(url)
                finally:
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                if stats["created"] != n or stats["duplicates"]:
                    raise SystemExit(f"{side} {n}: sandbox saw {stats}")
                series[side, n].samples.append(sample)
                print(f"  round {round_ + 1} {side:<6} send {n:>6} rows {sample.wall:7.2f} s "
                      f"{n / sample.wall:7.0f} rows/s {sample.peak_mb:6.0f} MB", file=sys.stderr,
                      flush=True)

    small, big = min(counts), max(counts)
    print("\n3. real runs against the sandbox (--rate 100000/1, 16 workers), whole process")
    head = f"{'side':<7}{'rows':>7}{'wall s':>8}{'rows/s':>8}{'cpu s':>8}{'peak MB':>9}"
    print(head + "\n" + "-" * len(head))
    ok = True
    for side in sides:
        for n in counts:
            s = series[side, n]
            print(f"{side:<7}{n:>7}{s.median('wall'):>8.2f}{n / s.median('wall'):>8.0f}"
                  f"{s.median('cpu'):>8.2f}{s.peak:>9.0f}")
        rate = big / series[side, big].median("wall")
        grow = series[side, big].peak / series[side, small].peak
        met = rate >= 500 and grow <= 1.2
        print(f"{side:<7}{big:,} rows at {rate:.0f} rows/s (target >= 500); peak memory "
              f"{grow:.2f}x that at {small:,} rows (target <= 1.2) {'ok' if met else 'MISS'}")
        ok &= met or side != "after"
    return ok


# ------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--bad", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", type=Path, metavar="DIR",
                    help="a checkout of the code before (e.g. a copy of main) to run alongside")
    ap.add_argument("--before-lxml", action="store_true",
                    help="let the before side use lxml (main did not depend on it: off by "
                         "default)")
    ap.add_argument("--send-rows", default="5000,20000")
    ap.add_argument("--skip", default="", help="comma-separated: processes, writer, send")
    ap.add_argument("--other-writers", type=Path, metavar="DIR",
                    help="a folder holding rustpy_xlsxwriter (pip install --target DIR "
                         "rustpy-xlsxwriter): the writer comparison includes it")
    ap.add_argument("--writer-child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer_child:
        writer_child(args.writer_child, args.repeat)
        return 0

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    sides: dict[str, tuple[Path, bool]] = {"after": (AFTER, True)}
    if args.before:
        sides = {"before": (args.before.resolve(), args.before_lxml), **sides}
    global NEUTRAL
    NEUTRAL = Path(tempfile.mkdtemp(prefix="bulkschedule-pipeline-cwd-"))
    for code, lxml in sides.values():
        check_side(code, env_for(code, lxml=lxml))
    path = sheet(args.rows, args.bad)
    load = os.getloadavg()[0]
    print(f"{args.rows:,} rows, {args.bad:,} bad, {args.repeat} rounds, {os.cpu_count()} CPUs, "
          f"load {load:.1f}; sides: " + ", ".join(f"{k} {v[0]}" for k, v in sides.items()))
    ok = True
    with tempfile.TemporaryDirectory(prefix="bulkschedule-pipeline-") as tmp:
        if "processes" not in skip:
            ok &= processes(path, sides, args.repeat, Path(tmp))
        if "writer" not in skip:
            ok &= writer(path, AFTER, args.repeat, args.other_writers)
        if "send" not in skip:
            counts = [int(n) for n in args.send_rows.split(",")]
            ok &= send(sides, counts, args.repeat, Path(tmp))
    shutil.rmtree(NEUTRAL, ignore_errors=True)
    print("\ntargets met" if ok else "\nTARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

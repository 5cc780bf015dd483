"""Benchmark: `bulkschedule validate` on 100,000 rows against a bare read of the same file.

Whole process against whole process (imports and interpreter exit included), measured side by
side in one run (alternately, after one untimed run of each), so the ratios hold on any machine.
Targets (issue 2): CSV within 3x of `pandas.read_csv(path, dtype=str)`, xlsx within 2x of a
python-calamine read, peak memory under 1 GB. "ratio" is median over median; "pairs" is the
range of the per-run ratios (each of our runs against the bare run just before it).

    python benchmarks/validate.py [--rows 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
HEADERS = [
    "courseId", "batchId", "moduleId", "name", "trainerErecno", "type", "date", "startTime",
    "endTime", "description", "roomId", "lockUntil", "gradeCategoryId",
]


def rows(n: int) -> list[list[object]]:
    """A realistic term at scale: 500 trainers, 400 rooms, one session each a day, no overlaps."""
    base = dt.date(2027, 1, 4)
    out: list[list[object]] = []
    for i in range(n):
        day = base + dt.timedelta(days=i // 500)
        hour = 8 + (i % 9)
        out.append([
            "478346000019479103",
            "478346000019479115",
            str(478346000019479119 + (i % 40) * 12),
            f"Session {i:06d}: module {i % 40}",
            str(478346000008251001 + (i % 500) * 16),
            "Classroom" if i % 3 else "E-learning",
            day,
            dt.time(hour, 0),
            dt.time(hour + 1, 30),
            "Bring your badge" if i % 5 == 0 else "",
            str(478346000010125093 + (i % 400) * 14) if i % 3 else "",
            day - dt.timedelta(days=1) if i % 7 == 0 else None,
            "478346000019553021" if i % 11 == 0 else "",
        ])
    return out


def make_csv(path: Path, data: list[list[object]]) -> None:
    def cell(v: object) -> str:
        if isinstance(v, dt.date):
            return v.strftime("%d-%m-%Y")
        if isinstance(v, dt.time):
            return v.strftime("%I:%M %p")
        return "" if v is None else str(v)

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADERS)
        for r in data:
            w.writerow([cell(v) for v in r])


def make_xlsx(path: Path, data: list[list[object]]) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Sessions")
    ws.append(HEADERS)
    for r in data:
        ws.append([None if v == "" else v for v in r])
    wb.save(path)


def run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process, via wait4's own rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{argv} exited {code}: {err}")
    if proc.stderr:
        proc.stderr.close()
    return seconds, usage.ru_maxrss / 1024


def measure(
    bare: list[str], ours: list[str], repeat: int
) -> tuple[list[float], list[float], float]:
    """Bare and ours alternately, after one untimed run of each (file cache), so a burst of load
    on a shared machine hits both sides alike. Returns both lists of seconds and our peak RSS."""
    run(bare)
    run(ours)
    t_bare, t_ours, peaks = [], [], []
    for _ in range(repeat):
        t_bare.append(run(bare)[0])
        seconds, peak = run(ours)
        t_ours.append(seconds)
        peaks.append(peak)
    return t_bare, t_ours, max(peaks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    csv_path = DATA / f"sessions-{args.rows}.csv"
    xlsx_path = DATA / f"sessions-{args.rows}.xlsx"
    if not csv_path.exists() or not xlsx_path.exists():
        print(f"generating {args.rows} rows ...", flush=True)
        data = rows(args.rows)
        make_csv(csv_path, data)
        make_xlsx(xlsx_path, data)

    py = sys.executable
    cases = [
        ("csv",
         [py, "-c", f"import pandas; pandas.read_csv({str(csv_path)!r}, dtype=str)"],
         [py, "-m", "bulkschedule", "validate", str(csv_path), "--json"], 3.0),
        ("xlsx", [py, "-c", "from python_calamine import CalamineWorkbook; "
                  f"CalamineWorkbook.from_path({str(xlsx_path)!r}).get_sheet_by_index(0).to_python()"],
         [py, "-m", "bulkschedule", "validate", str(xlsx_path), "--json"], 2.0),
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.rows} rows, {args.repeat} runs each, {os.cpu_count()} CPUs, load {load:.2f}")
    print(f"{'file':<6}{'bare read s':>12}{'validate s':>12}{'ratio':>8}{'pairs':>12}{'target':>8}"
          f"{'peak MB':>10}")
    ok = True
    for name, bare, ours, target in cases:
        # fast because it checked nothing? The JSON must account for every row.
        out = subprocess.run(ours, capture_output=True, text=True, check=False).stdout
        summary = json.loads(out)
        if summary["rows"] != args.rows or summary["valid"] + summary["errors"] == 0:
            raise SystemExit(f"{name}: unexpected validate output: {out[:300]}")
        t_bare, t_ours, peak = measure(bare, ours, args.repeat)
        ratio = statistics.median(t_ours) / statistics.median(t_bare)
        pairs = [o / b for o, b in zip(t_ours, t_bare, strict=True)]
        ok &= ratio <= target and peak < 1024
        print(f"{name:<6}{statistics.median(t_bare):>12.2f}{statistics.median(t_ours):>12.2f}"
              f"{ratio:>8.2f}{f'{min(pairs):.2f}-{max(pairs):.2f}':>12}"
              f"{'<=' + str(target):>8}{peak:>10.0f}")
    print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()

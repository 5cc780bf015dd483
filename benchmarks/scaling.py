"""Benchmark: does validation scale linearly? Time and memory per row at 100,000 and 1,000,000 rows.

Each size is validated in a child process (imports and exit included) with the row limit raised
to the size; the same run on a 1,000-row file is subtracted, so what is left is the cost of the
rows themselves. Target (issue 15): the time per row at 1,000,000 rows within 1.5x of that at
100,000, and memory per row about the same (proportional).

Two kinds of sheet: ``valid`` (the realistic term of benchmarks/validate.py, every row valid)
and ``duplicates`` (every row twice: half the rows are errors, each with its problem in the
JSON), since a file full of errors costs far more per row than a clean one.

    python benchmarks/scaling.py                      # csv, valid, 100000 and 1000000 rows
    python benchmarks/scaling.py --kind valid,duplicates --format csv,xlsx --repeat 3
    python benchmarks/scaling.py --cli        # through `validate --max-rows N --max-part-mb M`

By default the child calls the reader and the validator as ``validate --json`` does, passing the
raised limits as a `ReadLimits` (``--cli`` uses the command's flags, once it has them). The part
limit is raised with the row limit: a 1,000,000-row sheet's XML inflates to about 600 MB.
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
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
sys.path.insert(0, str(HERE))
from validate import HEADERS  # noqa: E402  # one list of columns for both benchmarks

BASE_ROWS = 1_000

CHILD = """
import json, sys
from bulkschedule.sheet.limits import ReadLimits
from bulkschedule.sheet.reader import read_table
from bulkschedule.sheet.schema import preload, validate
path, limit = sys.argv[1], int(sys.argv[2])
if not path.endswith(".csv"):
    preload()  # as app.job.load does for workbooks
# a 1,000,000-row sheet's XML is about 600 MB: the part limit is raised with the row limit
table = read_table(path, limits=ReadLimits(max_rows=limit, max_part_bytes=limit * 2_000))
print(json.dumps(validate(table).to_json()))
"""


def row(i: int) -> list[str]:
    """Row i of the term in benchmarks/validate.py (500 trainers, 400 rooms, one session each a
    day, no overlaps), as CSV text, computed one at a time so a million rows cost no memory."""
    day = dt.date(2027, 1, 4) + dt.timedelta(days=i // 500)
    hour = 8 + (i % 9)
    return [
        "478346000019479103",
        "478346000019479115",
        str(478346000019479119 + (i % 40) * 12),
        f"Session {i:06d}: module {i % 40}",
        str(478346000008251001 + (i % 500) * 16),
        "Classroom" if i % 3 else "E-learning",
        day.strftime("%d-%m-%Y"),
        dt.time(hour, 0).strftime("%I:%M %p"),
        dt.time(hour + 1, 30).strftime("%I:%M %p"),
        "Bring your badge" if i % 5 == 0 else "",
        str(478346000010125093 + (i % 400) * 14) if i % 3 else "",
        (day - dt.timedelta(days=1)).strftime("%d-%m-%Y") if i % 7 == 0 else "",
        "478346000019553021" if i % 11 == 0 else "",
    ]


def rows_of(kind: str, n: int) -> Iterator[list[str]]:
    if kind == "valid":
        return (row(i) for i in range(n))
    return (row(i // 2) for i in range(n))  # "duplicates": each session twice in a row


def write_csv(path: Path, kind: str, n: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADERS)
        w.writerows(rows_of(kind, n))


def write_xlsx(path: Path, kind: str, n: int) -> None:
    """Inline-string cells written straight into the zip (openpyxl would take minutes)."""
    def xml_row(r: int, cells: list[str]) -> str:
        return f'<row r="{r}">' + "".join(
            f'<c r="{_col(j)}{r}" t="inlineStr"><is><t>{escape(v)}</t></is></c>'
            for j, v in enumerate(cells, 1) if v) + "</row>"

    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("[Content_Types].xml",
                   '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"><Default Extension="rels" ContentType='
                   '"application/vnd.openxmlformats-package.relationships+xml"/><Default '
                   'Extension="xml" ContentType="application/xml"/><Override PartName='
                   '"/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
                   'officedocument.spreadsheetml.sheet.main+xml"/></Types>')
        z.writestr("_rels/.rels", f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" '
                   f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", f'<workbook {ns} xmlns:r="{rel}"><sheets><sheet '
                   'name="Sessions" sheetId="1" r:id="rId1"/></sheets></workbook>')
        z.writestr("xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{pkg}"><Relationship '
                   f'Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
                   "</Relationships>")
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as f:
            f.write(f"<worksheet {ns}><sheetData>{xml_row(1, HEADERS)}".encode())
            batch: list[str] = []
            for r, cells in enumerate(rows_of(kind, n), 2):
                batch.append(xml_row(r, cells))
                if len(batch) == 10_000:
                    f.write("".join(batch).encode())
                    batch.clear()
            f.write(("".join(batch) + "</sheetData></worksheet>").encode())


def _col(j: int) -> str:
    return chr(64 + j)  # 13 columns: A..M


#: Runs the measured command as its only child, so RUSAGE_CHILDREN is that child's peak alone;
#: reads the (possibly large) JSON there and reports only what the benchmark needs.
HELPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
rows = json.loads(p.stdout)["rows"] if p.returncode in (0, 1) else None
print(json.dumps([seconds, peak, p.returncode, rows, p.stderr.decode()[-300:]]))
"""


def measure_once(path: Path, n: int, cli: bool) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one validation of ``path`` with the row limit at n."""
    py = sys.executable
    limit = str(max(n, 100_000))
    target = ([py, "-m", "bulkschedule", "validate", str(path), "--max-rows", limit,
               "--max-part-mb", str(int(limit) * 2_000 // 1_000_000), "--json"]
              if cli else [py, "-c", CHILD, str(path), limit])
    out = subprocess.run([py, "-c", HELPER, *target], capture_output=True, text=True,
                         check=True).stdout
    seconds, peak, code, rows, err = json.loads(out)
    if code not in (0, 1) or rows != n:
        raise SystemExit(f"{path.name}: exited {code} having seen {rows} rows: {err}")
    return float(seconds), float(peak)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="100000,1000000")
    ap.add_argument("--kind", default="valid", help="valid,duplicates")
    ap.add_argument("--format", default="csv", help="csv,xlsx")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cli", action="store_true", help="run `validate --max-rows N --json`")
    args = ap.parse_args()
    sizes = [int(s) for s in args.rows.split(",")]
    DATA.mkdir(exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load {load:.2f}; medians of {args.repeat} runs; the "
          f"{BASE_ROWS:,}-row run is subtracted")
    print(f"{'file':<22}{'rows':>10}{'seconds':>9}{'peak MB':>9}{'us/row':>9}{'KB/row':>8}"
          f"{'x first':>9}")
    ok = True
    for fmt in args.format.split(","):
        for kind in args.kind.split(","):
            base: tuple[float, float] | None = None
            per_row0: float | None = None
            for n in [BASE_ROWS, *sizes]:
                path = DATA / f"scaling-{kind}-{n}.{fmt}"
                if not path.exists():
                    print(f"generating {path.name} ...", flush=True)
                    (write_csv if fmt == "csv" else write_xlsx)(path, kind, n)
                runs = [measure_once(path, n, args.cli) for _ in range(args.repeat)]
                seconds = statistics.median(r[0] for r in runs)
                peak = statistics.median(r[1] for r in runs)
                if base is None:
                    base = (seconds, peak)
                    print(f"{path.name:<22}{n:>10,}{seconds:>9.2f}{peak:>9.0f}")
                    continue
                per_row = (seconds - base[0]) / (n - BASE_ROWS) * 1e6
                kb_row = (peak - base[1]) * 1024 / (n - BASE_ROWS)
                per_row0 = per_row0 or per_row
                ratio = per_row / per_row0
                ok &= ratio <= 1.5
                print(f"{path.name:<22}{n:>10,}{seconds:>9.2f}{peak:>9.0f}{per_row:>9.1f}"
                      f"{kb_row:>8.2f}{ratio:>9.2f}")
    print("linear within 1.5x" if ok else "NOT LINEAR (over 1.5x)")


if __name__ == "__main__":
    main()

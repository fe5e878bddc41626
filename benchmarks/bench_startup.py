#!/usr/bin/env python3
"""`allora-bundle --help` start-up against `python -c "import typer"` (the floor of any typer CLI), with hyperfine.

usage: python benchmarks/bench_startup.py [--runs N]

Target (issue 2): ≤ 1.5× the wall time of importing typer. Exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    if not shutil.which("hyperfine"):
        print("hyperfine is not installed", file=sys.stderr)
        return 2
    py = shlex.quote(sys.executable)
    ours = f"{py} -m allora_gitops.cli.bundle --help"
    floor = f"{py} -c 'import typer'"
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "hyperfine.json"
        subprocess.run(
            ["hyperfine", "-N", "--warmup", "5", "--runs", str(args.runs), "--export-json", str(report), ours, floor],
            check=True, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL,
        )
        results = json.loads(report.read_text())["results"]
    # medians: the machine is shared, means chase outliers
    ours_t, floor_t = (r["median"] for r in results)
    ratio = ours_t / floor_t
    print(f"python -c 'import typer': {floor_t * 1000:.0f} ms median")
    print(f"allora-bundle --help:     {ours_t * 1000:.0f} ms median")
    print(f"ratio:                    {ratio:.2f}  (target ≤ {TARGET})  {'PASS' if ratio <= TARGET else 'FAIL'}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

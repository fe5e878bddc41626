#!/usr/bin/env python3
"""`allora-bundle build` against the obvious alternative, `tar --exclude… -cf - . | gzip -6`, in the same run.

usage: python benchmarks/bench_build.py [--bundle DIR] [--rounds N] [--keep]

Without --bundle, makes the 170 MB benchmark bundle (mostly float32 weights)
with benchmarks/make_bundle.py in a temporary directory. Rounds alternate the
two commands so that machine load hits both alike; the medians are compared.
Targets (issue 2): build wall ≤ 0.35× tar|gzip -6, archive ≤ 1.05× its size.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from allora_gitops import constants as C  # noqa: E402

WALL_TARGET = 0.35
SIZE_TARGET = 1.05


def tar_excludes() -> list[str]:
    """The guide's default excludes, spelled for GNU tar."""
    out = []
    for pattern in C.DEFAULT_EXCLUDES:
        p = pattern.rstrip("/")
        out.append(f"--exclude=./{p.lstrip('/')}" if pattern.startswith("/") else f"--exclude={p}")
    return out


def timed(cmd: list[str], env: dict | None = None, shell: bool = False) -> float:
    start = time.perf_counter()
    subprocess.run(cmd if not shell else " ".join(cmd), shell=shell, check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="bundle directory (default: make the 170 MB benchmark bundle)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        bundle = args.bundle
        if bundle is None:
            bundle = tmp / "bundle"
            subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_bundle.py"), str(bundle)], check=True,
                           stdout=subprocess.DEVNULL)
        bundle = bundle.resolve()
        baseline_out = tmp / "baseline.tar.gz"
        ours_out = tmp / "ours"
        baseline = ["cd", shlex.quote(str(bundle)), "&&", "tar", *tar_excludes(), "-cf", "-", ".", "|", "gzip", "-6",
                    ">", shlex.quote(str(baseline_out))]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        ours = [sys.executable, "-m", "allora_gitops.cli.bundle", "build", str(bundle), "-o", str(ours_out)]

        base_times, our_times = [], []
        for i in range(args.rounds):
            base_times.append(timed(baseline, shell=True))
            our_times.append(timed(ours, env=env))
            print(f"round {i + 1}: tar|gzip -6 {base_times[-1]:.2f} s   allora-bundle build {our_times[-1]:.2f} s", flush=True)

        (archive,) = ours_out.glob("*.tar.gz")
        base_t, our_t = statistics.median(base_times), statistics.median(our_times)
        base_size, our_size = baseline_out.stat().st_size, archive.stat().st_size
        raw = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
        wall_ratio, size_ratio = our_t / base_t, our_size / base_size
        print()
        print(f"bundle:              {bundle} ({raw / 1e6:.0f} MB on disk, excluded junk included)")
        print(f"tar | gzip -6:       {base_t:.2f} s median, {base_size / 1e6:.1f} MB")
        print(f"allora-bundle build: {our_t:.2f} s median (validate + build), {our_size / 1e6:.1f} MB")
        print(f"wall ratio:          {wall_ratio:.3f}  (target ≤ {WALL_TARGET})  {'PASS' if wall_ratio <= WALL_TARGET else 'FAIL'}")
        print(f"size ratio:          {size_ratio:.4f} (target ≤ {SIZE_TARGET})  {'PASS' if size_ratio <= SIZE_TARGET else 'FAIL'}")
        return 0 if wall_ratio <= WALL_TARGET and size_ratio <= SIZE_TARGET else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

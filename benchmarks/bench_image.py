"""What the layer cache buys, and what the storage driver costs: ``build-image`` cold, then after a
code-only change of the bundle, on each storage driver asked for.

Each driver gets a private containers storage (deleted afterwards) holding only the
test stand-in base image (tests/fixtures/images.py, made once per machine). Same run,
same bundle, same CA bundle for pip, so the ratios compare like with like:

- rebuild / cold on one driver: what keying the requirements layer on requirements.txt saves;
- overlay / vfs: what the portable default (vfs, works unprivileged and in containers) costs.

    python benchmarks/bench_image.py [--drivers vfs,overlay]

Slow: a cold vfs build is several minutes on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.images import ensure_base_image, write_storage_conf  # noqa: E402


def build(target: Path, base: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.gitops", "build-image", str(target), "--base-image", base,
         "--pip-cert", env.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"), "--no-record"],
        env=env, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"build-image failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def run_driver(driver: str, work: Path) -> tuple[float, float]:
    root = work / driver
    conf = write_storage_conf(root)
    conf.write_text(conf.read_text().replace('driver = "vfs"', f'driver = "{driver}"'))
    env = dict(os.environ, CONTAINERS_STORAGE_CONF=str(conf), STORAGE_DRIVER=driver, BUILDAH_ISOLATION="chroot",
               PYTHONPATH=str(ROOT))
    saved = {k: os.environ.get(k) for k in ("CONTAINERS_STORAGE_CONF", "STORAGE_DRIVER")}
    os.environ.update(CONTAINERS_STORAGE_CONF=str(conf), STORAGE_DRIVER=driver)
    try:
        subprocess.run(["buildah", "--storage-driver", driver, "pull", "-q", f"oci-archive:{ensure_archive()}"],
                       env=env, check=True, capture_output=True)
        bundle = work / f"bundle-{driver}"
        shutil.copytree(ROOT / "examples" / "linear-forecaster", bundle)
        cold = build(bundle, BASE_REF, env)
        runner = bundle / "src" / "linear_forecaster" / "runner.py"
        runner.write_text(runner.read_text() + "\n# code-only change\n")
        rebuild = build(bundle, BASE_REF, env)
        return cold, rebuild
    finally:
        subprocess.run(["buildah", "--storage-driver", driver, "rm", "--all"], env=env, capture_output=True)
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        shutil.rmtree(root, ignore_errors=True)


BASE_REF = "localhost/allora-test/python:3.11-slim"
_ARCHIVE: list[Path] = []


def ensure_archive() -> Path:
    if not _ARCHIVE:
        _ARCHIVE.append(ensure_base_image().archive)
    return _ARCHIVE[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drivers", default="vfs,overlay", help="comma-separated storage drivers (default: vfs,overlay)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        work = Path(tmp)
        # the base image is made (or imported) in a scratch vfs storage first, so every driver starts equal
        scratch = write_storage_conf(work / "scratch")
        os.environ["CONTAINERS_STORAGE_CONF"] = str(scratch)
        ensure_archive()
        results = {}
        for driver in [d.strip() for d in args.drivers.split(",") if d.strip()]:
            results[driver] = run_driver(driver, work)
            cold, rebuild = results[driver]
            print(f"{driver:8s} cold {cold:7.1f}s   code-only rebuild {rebuild:7.1f}s   rebuild/cold {rebuild / cold:.2f}", flush=True)
        if "vfs" in results and "overlay" in results:
            print(f"overlay/vfs: cold {results['overlay'][0] / results['vfs'][0]:.2f}, "
                  f"rebuild {results['overlay'][1] / results['vfs'][1]:.2f}")


if __name__ == "__main__":
    main()

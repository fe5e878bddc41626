"""Environments with uv against pip: the first ``allora-bundle run`` environment, and the image's.

The bundle needs numpy + scikit-learn + joblib (scipy and threadpoolctl come with them).

run (always): ``ensure_environment`` — what the first ``allora-bundle run`` does, in a fresh state
directory, so nothing is reused but the installer's own cache — against the obvious alternative,
``python -m venv DIR`` + ``DIR/bin/pip install -r requirements.txt``. Caches warm on both sides: each
side is run once untimed (downloads and built wheels cached), then the sides alternate ``--repeat``
times; medians reported.
``ensure_environment`` with ``ALLORA_GITOPS_INSTALLER=pip`` (the fallback) is shown too. Target: uv/pip ≤ 0.25.

image (``--image``): ``allora-gitops build-image`` of the same bundle, cold — each build in its own
containers storage holding only the test stand-in base image (tests/fixtures/images.py), imported
untimed — once as rendered (uv) and once on the pip fallback (forced by a pip.conf build secret, which
uv cannot read). No cache on either side inside a build. Slow: minutes per build on vfs, where
copying every layer dominates; ``--driver overlay`` shows the installers' share better.

    python benchmarks/bench_environments.py [--repeat 3] [--image [--driver vfs|overlay]]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REQUIREMENTS = "numpy==2.4.6\nscikit-learn==1.9.1\njoblib==1.6.0\n"
CA_BUNDLE = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"


def first_run_environment(work: Path, installer: str) -> float:
    """Seconds for ensure_environment in a fresh state directory (a subprocess: nothing imported is shared)."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    code = (
        "import sys, pathlib\n"
        "from allora_gitops.runner.environment import EnvironmentSpec, ensure_environment\n"
        "env = ensure_environment(EnvironmentSpec(requirements=sys.argv[1], requirements_dir=pathlib.Path(sys.argv[2])))\n"
        "assert env.created\n"
    )
    env = dict(os.environ, ALLORA_GITOPS_HOME=str(state), PYTHONPATH=str(ROOT), ALLORA_GITOPS_INSTALLER=installer)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, REQUIREMENTS, str(work)], env=env, check=True)
    took = time.perf_counter() - started
    _check_imports(next(p for p in (state / "runtimes").iterdir() if p.is_dir()) / "bin" / "python")
    shutil.rmtree(state)
    return took


def venv_and_pip(work: Path) -> float:
    """Seconds for ``python -m venv DIR`` + ``DIR/bin/pip install -r requirements.txt``."""
    target = Path(tempfile.mkdtemp(prefix="venv-", dir=work)) / "venv"
    requirements = work / "requirements.txt"
    requirements.write_text(REQUIREMENTS)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    subprocess.run([str(target / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r", str(requirements)],
                   check=True, stderr=subprocess.DEVNULL)
    took = time.perf_counter() - started
    _check_imports(target / "bin" / "python")
    shutil.rmtree(target.parent)
    return took


def _check_imports(python: Path) -> None:
    subprocess.run([str(python), "-c", "import numpy, sklearn, joblib, scipy"], check=True)


def bench_run(repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-env-", dir=os.environ.get("ALLORA_BENCH_TMP")) as tmp:
        work = Path(tmp)
        sides = {
            "ensure_environment (uv)": lambda: first_run_environment(work, "uv"),
            "ensure_environment (pip fallback)": lambda: first_run_environment(work, "pip"),
            "python -m venv + pip install -r": lambda: venv_and_pip(work),
        }
        for fn in sides.values():
            fn()  # warm each side's cache
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(repeat):  # alternating, so a busy machine weighs on every side alike
            for name, fn in sides.items():
                times[name].append(fn())
        medians = {}
        for name, taken in times.items():
            medians[name] = statistics.median(taken)
            print(f"{name:36s} median {medians[name]:6.2f} s   ({', '.join(f'{t:.2f}' for t in taken)})", flush=True)
        uv, pip = medians["ensure_environment (uv)"], medians["python -m venv + pip install -r"]
        print(f"first run environment, uv / (venv + pip): {uv / pip:.3f}  (target <= 0.25)")
        print(f"pip fallback / (venv + pip): {medians['ensure_environment (pip fallback)'] / pip:.3f}")


# --- the image --------------------------------------------------------------------------------------


def make_bundle(work: Path) -> Path:
    bundle = work / "bundle"
    shutil.copytree(ROOT / "examples" / "linear-forecaster", bundle, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    (bundle / "requirements.txt").write_text(REQUIREMENTS)
    runner = bundle / "src" / "linear_forecaster" / "runner.py"
    runner.write_text("import joblib  # noqa: F401\nimport sklearn  # noqa: F401\n" + runner.read_text())
    return bundle


def cold_build(work: Path, name: str, bundle: Path, extra: list[str], driver: str) -> float:
    from tests.fixtures.images import ensure_base_image, write_storage_conf

    archive = ensure_base_image().archive
    root = work / f"storage-{name}"
    conf = write_storage_conf(root)
    conf.write_text(conf.read_text().replace('driver = "vfs"', f'driver = "{driver}"'))
    env = dict(os.environ, CONTAINERS_STORAGE_CONF=str(conf), STORAGE_DRIVER=driver, BUILDAH_ISOLATION="chroot",
               PYTHONPATH=str(ROOT))
    try:
        subprocess.run(["buildah", "--storage-driver", driver, "pull", "-q", f"oci-archive:{archive}"],
                       env=env, check=True, capture_output=True)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "allora_gitops.cli.gitops", "build-image", str(bundle), "--base-image",
             "localhost/allora-test/python:3.11-slim", "--pip-cert", CA_BUNDLE, "--no-record", *extra],
            env=env, capture_output=True, text=True,
        )
        took = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"build-image ({name}) failed:\n{proc.stderr[-3000:]}")
        # uv says "Resolved 27 packages in …", pip "Installing collected packages" (the RUN text names both)
        used_uv = re.search(r"Resolved \d+ packages? in", proc.stderr) is not None and "Installing collected packages" not in proc.stderr
        if used_uv != (name == "uv"):
            raise SystemExit(f"the {name} build did not install with {name}:\n{proc.stderr[-3000:]}")
        return took
    finally:
        subprocess.run(["buildah", "--storage-driver", driver, "rm", "--all"], env=env, capture_output=True)
        subprocess.run(["buildah", "--storage-driver", driver, "rmi", "--all", "--force"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def bench_image(driver: str) -> None:
    from tests.fixtures.images import ensure_base_image, write_storage_conf

    with tempfile.TemporaryDirectory(prefix="bench-env-image-", dir=os.environ.get("ALLORA_BENCH_TMP")) as tmp:
        work = Path(tmp)
        os.environ["CONTAINERS_STORAGE_CONF"] = str(write_storage_conf(work / "scratch"))
        ensure_base_image()  # made once per machine (debootstrap), outside the timings
        bundle = make_bundle(work)
        pip_conf = work / "pip.conf"
        pip_conf.write_text("[global]\ndisable-pip-version-check = true\n")
        uv = cold_build(work, "uv", bundle, [], driver)
        print(f"image build ({driver}), uv:  {uv:7.1f} s", flush=True)
        pip = cold_build(work, "pip", bundle, ["--pip-conf", str(pip_conf)], driver)
        print(f"image build ({driver}), pip: {pip:7.1f} s", flush=True)
        print(f"image build ({driver}), uv / pip: {uv / pip:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per side (after one warm-up run)")
    parser.add_argument("--image", action="store_true", help="also build the image both ways (slow)")
    parser.add_argument("--driver", default="vfs", help="buildah storage driver for --image (vfs, or overlay where it works)")
    parser.add_argument("--no-run", action="store_true", help="skip the run-environment comparison")
    args = parser.parse_args()
    if not args.no_run:
        bench_run(args.repeat)
    if args.image:
        bench_image(args.driver)


if __name__ == "__main__":
    main()

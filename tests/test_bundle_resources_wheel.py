"""templates/ and blueprints/ are found from a checkout and from an installed wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from allora_gitops import resources
from tests.conftest import REPO_ROOT


def test_found_in_a_checkout():
    assert resources.blueprints_dir() == REPO_ROOT / "blueprints"
    assert (resources.blueprints_dir() / "bundle" / "cookiecutter.json").is_file()


@pytest.mark.slow
def test_found_in_an_installed_wheel_and_init_works_from_it(tmp_path):
    # build from a copy: the checkout stays clean, and data dirs another piece of work has not landed yet
    # (the force-include list names them all) get a placeholder
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv*", "dist", "__pycache__", "*.egg-info"))
    for name in ("templates", "blueprints"):
        if not (src / name).is_dir():
            (src / name).mkdir()
            (src / name / "PLACEHOLDER").write_text("")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = dist.glob("allora_gitops-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "allora_gitops/_data/blueprints/bundle/cookiecutter.json" in names
    assert "allora_gitops/bundle/bip39_english.txt" in names
    assert "allora_runtime/contract.py" in names  # allora_gitops imports the runtime's contract
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True, capture_output=True,
    )
    code = (
        "import sys; from allora_gitops import resources; from allora_gitops.cli.bundle import main\n"
        "print(resources.blueprints_dir())\n"
        "sys.argv = ['allora-bundle', 'init', 'from-wheel']; main()\n"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(site / "allora_gitops" / "_data" / "blueprints")
    assert (work / "from-wheel" / "src" / "from_wheel" / "runner.py").is_file()
    assert not list((work / "from-wheel").rglob("__pycache__"))  # pip compiled the installed blueprint; init leaves that behind

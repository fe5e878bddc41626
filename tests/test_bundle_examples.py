"""Every example bundle validates, builds reproducibly, and its training script reproduces the shipped artifact."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest

from allora_gitops.bundle.archive import build_archive, inspect_archive
from allora_gitops.bundle.validate import validate_bundle
from tests.conftest import EXAMPLES

ALL = sorted(p.name for p in EXAMPLES.iterdir() if (p / "model.yaml").is_file())
ARTIFACT = {"linear-forecaster": "artifacts/weights.npy", "seasonal-profile": "artifacts/profile.json"}


def test_there_are_examples():
    assert {"linear-forecaster", "seasonal-profile"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_example_validates_and_builds(name, tmp_path):
    report = validate_bundle(EXAMPLES / name)
    assert [p for p in report.problems if p.code != "not-installed"] == []
    first = build_archive(EXAMPLES / name, tmp_path / "a")
    second = build_archive(EXAMPLES / name, tmp_path / "b")
    assert first.sha256 == second.sha256
    info = inspect_archive(first.path)
    assert info.manifest.name == name
    assert "train.py" not in {f.path for f in info.files}


@pytest.mark.parametrize("name", ALL)
def test_training_script_reproduces_the_shipped_artifact(name, tmp_path):
    if name == "linear-forecaster" and importlib.util.find_spec("numpy") is None:
        pytest.skip("numpy is not installed here")
    copy = tmp_path / name
    shutil.copytree(EXAMPLES / name, copy)
    (copy / ARTIFACT[name]).unlink()
    subprocess.run([sys.executable, "train.py"], cwd=copy, check=True, capture_output=True)
    assert (copy / ARTIFACT[name]).read_bytes() == (EXAMPLES / name / ARTIFACT[name]).read_bytes()

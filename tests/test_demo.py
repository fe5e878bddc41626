"""The README's main-job command, end to end (its setup step skipped: this interpreter is the environment)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, cli_env


@pytest.mark.slow
def test_demo_runs_the_main_job_from_another_directory(tmp_path):
    env = cli_env({"SETUP": "0", "VENV": sys.prefix})
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / ".ci" / "demo")],
        cwd=tmp_path,  # not the checkout: the script must find everything itself
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "✅ Bundle initialized successfully!" in out
    assert "review branch: deploy/linear-forecaster/testnet/1.0.0" in out
    assert "0 findings" in out
    assert "already there, no new commit" in out
    assert proc.stdout.rstrip().endswith("== demo passed")
    work = re.search(r"(/\S*/allora-demo\.\w+)/", out)
    assert work and not Path(work.group(1)).exists()  # the demo cleans up its work directory

"""The README's main-job command, end to end (its setup step skipped: this interpreter is the environment)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psutil
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
    assert "nothing to do: the open review deploy/linear-forecaster/testnet/1.0.0 already holds this change" in out
    # the platform: serve on loopback, demo-model pushed through the API, the runtime's results recorded
    url = re.search(r"^serving (http://127\.0\.0\.1:\d+) ", out, re.M)
    assert url, out[-3000:]
    assert f"logged in to {url.group(1)}; token saved in " in out
    deployment = re.search(r"^deployment ([0-9a-f-]{36}): commit [0-9a-f]{12} on deploy/demo-model/testnet/0\.1\.0$", out, re.M)
    assert deployment, out[-3000:]
    assert "1005 → 42.0 (" in out
    assert "recorded: 5 predictions of demo-model through the API, success rate 100.0%" in out
    assert f"the page: open {url.group(1)}/deployments/{deployment.group(1)} (all of demo's deployments: {url.group(1)}/)" in out
    # secrets stay in their 0600 files: the API token shows by its prefix only, the pod's token not at all
    assert re.search(r"token agp_[0-9a-f]{8} for demo, expires [0-9T:+.-]+: shown once", out)
    assert not re.search(r"agp_[0-9a-f]{8}_\S", out) and "eyJ" not in out
    assert proc.stdout.rstrip().endswith("== demo passed")
    work = re.search(r"(/\S*/allora-demo\.\w+)/", out)
    assert work and not Path(work.group(1)).exists()  # the demo cleans up its work directory
    # and stops what it started: the server and its embedded PostgreSQL
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if work.group(1) in " ".join(p.info["cmdline"] or ())]
    assert left == []

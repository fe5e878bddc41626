"""The generated CI installs allora-gitops with the exact line its workflows run, from ci.install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from allora_gitops import constants as C
from tests.conftest import REPO_ROOT
from tests.fixtures.git import remote_file


def install_step(workflow_text: str) -> str:
    """The shell script of the workflow step that installs allora-gitops (its name says so)."""
    workflow = yaml.safe_load(workflow_text)
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    [step] = [s for s in steps if str(s.get("name", "")).startswith("Install") and "allora-gitops" in s["name"]]
    return step["run"]


def test_both_workflows_install_from_ci_install(cli, tmp_path, gitops_home):
    repo = tmp_path / "d.git"
    req = "allora-gitops[platform] @ git+https://git.example.com/tools/allora-gitops@0123456789abcdef0123456789abcdef01234567"
    assert cli("gitops", "repo", "init", repo, "--bare", "--ci-install", req).code == 0
    for workflow in (C.CI_WORKFLOW_FILE, C.CI_IMAGES_WORKFLOW_FILE):
        script = install_step(remote_file(repo, "main", workflow))
        assert f'"$RUNNER_TEMP/venv/bin/pip" install --disable-pip-version-check --quiet "{req}"' in script


def test_ci_install_default_is_where_this_tool_came_from_or_nothing_with_a_warning(cli, tmp_path, gitops_home):
    """No release is on any index: the default never pins one (``==0.1.0`` would install nothing anywhere)."""
    from allora_gitops.gitops.settings import default_ci_install

    default = default_ci_install()
    assert default is None or default.startswith("allora-gitops[platform] @ ")
    repo = tmp_path / "r.git"
    r = cli("gitops", "repo", "init", repo, "--bare")
    assert r.code == 0
    warning = "warning: CI cannot install allora-gitops yet: it is on no package index"
    assert (f"CI installs {default} (change it with" in r.out) == (default is not None)
    assert (warning in r.err) == (default is None)  # an editable checkout install (this one): unset, and said so
    assert "==" not in remote_file(repo, "main", C.REPO_MARKER_FILE)


def test_with_ci_install_unset_every_workflow_stops_at_its_install_step_saying_how_to_set_it(cli, tmp_path, gitops_home):
    repo = tmp_path / "r.git"
    assert cli("gitops", "repo", "init", repo, "--bare", "--ci-install", "allora-gitops[platform] @ https://files.example.com/a.whl").code == 0
    r = cli("gitops", "repo", "config", "--repo", repo, "ci.install", "null", "--branch", "main")
    assert r.code == 0, r.err
    assert yaml.safe_load(remote_file(repo, "main", C.REPO_MARKER_FILE))["ci"] == {"install": None}
    for workflow in (C.CI_WORKFLOW_FILE, C.CI_IMAGES_WORKFLOW_FILE, C.CI_SANDBOXES_WORKFLOW_FILE):
        script = install_step(remote_file(repo, "main", workflow))
        assert "pip" not in script.replace("python3 -m venv", "")
        runner = tmp_path / "runner"
        runner.mkdir(exist_ok=True)
        env = {"PATH": os.environ["PATH"], "RUNNER_TEMP": str(runner), "GITHUB_PATH": str(tmp_path / "github_path")}
        proc = subprocess.run(["bash", "-e", "-c", script.replace("sudo ", "")], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, (workflow, proc.stdout, proc.stderr)
        assert proc.stdout.startswith("::error file=.allora-gitops.yaml::ci.install is not set, so CI cannot install allora-gitops."), proc.stdout
        assert "allora-gitops repo config ci.install 'allora-gitops[platform] @ https://" in proc.stdout


@pytest.mark.slow
def test_the_workflow_install_line_installs_a_working_tool_in_a_fresh_venv(cli, tmp_path, gitops_home):
    # a wheel of this checkout, as a release pipeline would publish it
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv*", "dist", "__pycache__", "*.egg-info"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = dist.glob("allora_gitops-*.whl")
    repo = tmp_path / "deployments"
    r = cli("gitops", "repo", "init", repo, "--ci-install", f"allora-gitops[platform] @ {wheel.as_uri()}")
    assert r.code == 0, r.err
    script = install_step((repo / C.CI_WORKFLOW_FILE).read_text())
    runner_temp, github_path = tmp_path / "runner", tmp_path / "github_path"
    runner_temp.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RUNNER_TEMP": str(runner_temp), "GITHUB_PATH": str(github_path)}
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "SSL_CERT_FILE", "PIP_CACHE_DIR", "XDG_CACHE_HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))  # the machine's pip cache: no re-download
    proc = subprocess.run(["bash", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=900, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bin_dir = github_path.read_text().strip()
    assert bin_dir == str(runner_temp / "venv" / "bin")
    # the next steps run with that directory on PATH
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    version = subprocess.run(["allora-gitops", "--version"], env=env, capture_output=True, text=True)
    assert (version.returncode, version.stdout) == (0, "allora-gitops 0.1.0\n")
    assert shutil.which("allora-gitops", path=env["PATH"]) == str(Path(bin_dir) / "allora-gitops")
    verify = subprocess.run(["allora-gitops", "verify", "."], env=env, capture_output=True, text=True, cwd=repo)
    assert verify.returncode == 0 and verify.stderr.startswith("verify: 1 overlay, 0 Dockerfiles, "), verify.stderr  # a fresh repository: only the platform's own platform/
    assert verify.stderr.endswith(" checked; 0 findings\n"), verify.stderr

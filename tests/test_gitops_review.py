"""`repo init`, `diff`, `list`, `status` through the CLI, on real repositories and real `kubectl kustomize`."""

from __future__ import annotations

import json
import subprocess

import pytest

from allora_gitops import constants as C
from allora_gitops.gitops.repo import TreeChange, parse_remote, persist
from tests.fixtures.git import TEMPLATE_REPO_URL, git, remote_branches, remote_file, sample_deployment


def _publish(remote, tree, branch, message="m\n", **kw):
    return persist(parse_remote(remote), TreeChange(files=tree, **kw), branch=branch, message=message)


# --- repo init -----------------------------------------------------------------------


def test_repo_init_bare_creates_main_with_marker_readme_and_workflow(cli, tmp_path, gitops_home):
    target = tmp_path / "deployments.git"
    r = cli("gitops", "repo", "init", target, "--bare", "--repo-url", "https://git.example.com/p/d.git")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0].startswith(f"created bare repository {target} (")
    assert "Argo CD will clone https://git.example.com/p/d.git" in r.out
    assert git(target, "rev-parse", "--is-bare-repository").strip() == "true"
    assert git(target, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    files = git(target, "ls-tree", "-r", "--name-only", "main").split()
    for expected in (C.REPO_MARKER_FILE, C.CI_WORKFLOW_FILE, "README.md", "deployments/README.md", "builds/README.md"):
        assert expected in files
    marker = remote_file(target, "main", C.REPO_MARKER_FILE)
    assert f"kind: {C.REPO_MARKER_KIND}\n" in marker and "repo_url: https://git.example.com/p/d.git\n" in marker
    assert git(target, "log", "--format=%an|%s", "main").strip() == f"{C.COMMIT_AUTHOR_NAME}|{C.init_commit_message().strip()}"


def test_repo_init_work_tree_is_committed_and_clean(cli, tmp_path, gitops_home):
    target = tmp_path / "deployments"
    r = cli("gitops", "repo", "init", target)
    assert r.code == 0, r.err
    status = subprocess.run(["git", "-C", str(target), "status", "--porcelain"], capture_output=True, text=True, check=True)
    assert status.stdout == ""
    assert (target / C.REPO_MARKER_FILE).is_file()
    assert subprocess.run(["git", "-C", str(target), "branch", "--show-current"], capture_output=True, text=True).stdout.strip() == "main"


def test_repo_init_into_an_existing_empty_bare_repository(cli, tmp_path, gitops_home):
    target = tmp_path / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", str(target)], check=True)
    r = cli("gitops", "repo", "init", target, "--bare")
    assert r.code == 0, r.err
    assert C.REPO_MARKER_FILE in git(target, "ls-tree", "--name-only", "main").split()


def test_repo_init_refuses_a_non_empty_directory_and_unknown_network(cli, tmp_path, gitops_home):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "x").write_text("x")
    r = cli("gitops", "repo", "init", target)
    assert (r.code, r.err) == (1, f"error: {target} exists and is not empty; repo init only creates new repositories\n")
    r = cli("gitops", "repo", "init", tmp_path / "new", "--network", "devnet")
    assert (r.code, r.err) == (2, "error: networks: unknown network 'devnet'; known networks: testnet, mainnet\n")
    assert not (tmp_path / "new").exists()


def test_repo_init_workflow_passes_zizmor(gitops_template_repo, tmp_path):
    from tests.fixtures.workflows import zizmor_findings

    text = remote_file(gitops_template_repo, "main", C.CI_WORKFLOW_FILE)
    assert zizmor_findings(text, tmp_path / "allora-gitops.yaml") == []
    assert "allora-gitops verify . --changed-since" in text and "allora-gitops diff --repo ." in text
    assert "{%" not in text and "cookiecutter" not in text


# --- diff ----------------------------------------------------------------------------


@pytest.fixture
def v1_on_main_v2_on_branch(gitops_remote):
    _publish(gitops_remote, sample_deployment("alpha", "testnet", "1.0.0"), "main")
    _publish(
        gitops_remote,
        sample_deployment("alpha", "testnet", "2.0.0", topic=7),
        "deploy/alpha/testnet/2.0.0",
        replace_dirs=("deployments/alpha/overlays/testnet",),
    )
    return gitops_remote


def test_diff_shows_object_changes_and_a_summary(cli, v1_on_main_v2_on_branch):
    r = cli("gitops", "diff", "--repo", v1_on_main_v2_on_branch, "deploy/alpha/testnet/2.0.0")
    assert r.code == 1, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("# main...deploy/alpha/testnet/2.0.0: merge base ") and " → deploy/alpha/testnet/2.0.0 (" in lines[0]
    assert "#   alpha on testnet: changed (1 changed)" in lines
    assert "#     version: 1.0.0 → 2.0.0" in lines
    assert "#     image: registry.example.com/allora/alpha:1.0.0 → registry.example.com/allora/alpha:2.0.0" in lines
    assert "#     topic: 1 → 7" in lines
    assert "#   A builds/alpha/2.0.0/build.yaml" in lines
    assert "--- main: Deployment.apps/allora-models/alpha-testnet-model" in lines
    assert "-        image: registry.example.com/allora/alpha:1.0.0" in lines
    assert "+        image: registry.example.com/allora/alpha:2.0.0" in lines


def test_diff_shows_only_the_branch_own_change_when_main_moved_on(cli, v1_on_main_v2_on_branch):
    """Three-dot: a review branch made before another model was published on main does not "remove" that model."""
    _publish(v1_on_main_v2_on_branch, sample_deployment("beta", "testnet", "1.0.0"), "main")
    r = cli("gitops", "diff", "--repo", v1_on_main_v2_on_branch, "--json", "deploy/alpha/testnet/2.0.0")
    assert r.code == 1, r.err
    report = json.loads(r.out)
    assert [(o["name"], o["network"], o["status"]) for o in report["overlays"]] == [("alpha", "testnet", "changed")]
    assert report["base_commit"] == git(v1_on_main_v2_on_branch, "merge-base", "main", "deploy/alpha/testnet/2.0.0").strip()
    assert "beta" not in r.out


def test_diff_of_identical_refs_exits_0(cli, v1_on_main_v2_on_branch):
    r = cli("gitops", "diff", "--repo", v1_on_main_v2_on_branch, "--base", "main", "main")
    assert r.code == 0, r.err
    assert "no change in the rendered manifests" in r.out


def test_diff_ignores_formatting_only_changes(cli, gitops_remote):
    tree = sample_deployment("alpha", "testnet", "1.0.0")
    _publish(gitops_remote, tree, "main")
    path = "deployments/alpha/overlays/testnet/settings.yaml"
    reformatted = dict(tree)
    reformatted[path] = "# a comment\n" + tree[path].replace("          env:", "          env: ").replace('value: "1"', "value: '1'")
    _publish(gitops_remote, reformatted, "fmt")
    r = cli("gitops", "diff", "--repo", gitops_remote, "fmt")
    assert r.code == 0, r.out
    assert "#   alpha on testnet: unchanged (no object changes)" in r.out.splitlines()


def test_diff_added_and_removed_overlays(cli, gitops_remote):
    _publish(gitops_remote, sample_deployment("alpha", "testnet", "1.0.0"), "main")
    _publish(gitops_remote, {}, "retire", delete_dirs=("deployments/alpha/overlays/testnet",))
    r = cli("gitops", "diff", "--repo", gitops_remote, "retire")
    assert r.code == 1
    assert "#   alpha on testnet: removed (1 removed)" in r.out.splitlines()
    assert "#     removed deployment (was 1.0.0)" in r.out.splitlines()
    r = cli("gitops", "diff", "--repo", gitops_remote, "--base", "retire", "main")
    # three-dot: main is where retire forked from, so merging main into retire changes nothing
    assert (r.code, r.out.splitlines()[-1]) == (0, "#   no change in the rendered manifests")
    _publish(gitops_remote, sample_deployment("alpha", "mainnet", "1.0.0"), "main")
    r = cli("gitops", "diff", "--repo", gitops_remote, "--base", "retire", "main")
    assert "#   alpha on mainnet: added (1 added)" in r.out.splitlines()


def test_diff_json(cli, v1_on_main_v2_on_branch):
    r = cli("gitops", "diff", "--repo", v1_on_main_v2_on_branch, "--json", "deploy/alpha/testnet/2.0.0")
    assert r.code == 1
    report = json.loads(r.out)
    assert report["differs"] is True
    assert [(o["name"], o["network"], o["status"]) for o in report["overlays"]] == [("alpha", "testnet", "changed")]


def test_diff_errors_exit_2(cli, gitops_remote, tmp_path):
    r = cli("gitops", "diff", "--repo", gitops_remote, "no-such-branch")
    assert (r.code, r.err) == (2, f"error: {gitops_remote} has no branch or commit 'no-such-branch'\n")
    broken = sample_deployment("alpha", "testnet", "1.0.0")
    broken["deployments/alpha/overlays/testnet/kustomization.yaml"] += "resources:\n  - missing.yaml\n"
    _publish(gitops_remote, broken, "broken")
    r = cli("gitops", "diff", "--repo", gitops_remote, "broken")
    assert r.code == 2 and r.err.startswith("error: kubectl kustomize failed: ")
    r = cli("gitops", "diff", "--repo", tmp_path / "nothing-here", "x")
    assert (r.code, r.err) == (2, f"error: {tmp_path / 'nothing-here'} is not a git repository\n")


def test_diff_in_a_pull_request_checkout(cli_proc, v1_on_main_v2_on_branch, tmp_path):
    """What the CI workflow runs: a clone with origin/main, HEAD on the branch."""
    work = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", "-b", "deploy/alpha/testnet/2.0.0", str(v1_on_main_v2_on_branch), str(work)], check=True)
    r = cli_proc("gitops", "diff", "--repo", ".", "--base", "origin/main", "HEAD", cwd=work)
    assert r.code == 1, r.err
    assert "#     version: 1.0.0 → 2.0.0" in r.out.splitlines()


def test_diff_over_a_url_uses_the_cache(cli, v1_on_main_v2_on_branch, gitops_home):
    r = cli("gitops", "diff", "--repo", v1_on_main_v2_on_branch.as_uri(), "deploy/alpha/testnet/2.0.0")
    assert r.code == 1, r.err
    assert "#     version: 1.0.0 → 2.0.0" in r.out.splitlines()


# --- list / status ----------------------------------------------------------------------


def test_list_and_status_from_the_repository(cli, gitops_remote):
    tree = sample_deployment("alpha", "testnet", "1.0.0")
    tree.update(sample_deployment("alpha", "mainnet", "0.9.0", topic=3))
    tree.update(sample_deployment("beta", "testnet", "2.1.0"))
    _publish(gitops_remote, tree, "main")
    r = cli("gitops", "list", "--repo", gitops_remote, "--no-db")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "NETWORK", "VERSION", "SHA256", "STATUS", "COMMIT", "IMAGE", "PENDING"]
    assert [l.split()[:3] for l in lines[1:]] == [["alpha", "mainnet", "0.9.0"], ["alpha", "testnet", "1.0.0"], ["beta", "testnet", "2.1.0"]]
    r = cli("gitops", "list", "--repo", gitops_remote, "--no-db", "--network", "mainnet", "--json")
    rows = json.loads(r.out)
    assert [(x["name"], x["version"], x["image"]) for x in rows] == [("alpha", "0.9.0", "registry.example.com/allora/alpha:0.9.0")]
    r = cli("gitops", "status", "alpha", "--repo", gitops_remote, "--no-db", "--json")  # status reads every overlay file
    assert [(x["network"], x["topic_id"]) for x in json.loads(r.out)] == [("mainnet", "3"), ("testnet", "1")]
    r = cli("gitops", "status", "alpha", "--repo", gitops_remote, "--no-db")
    assert r.code == 0
    assert "alpha on testnet" in r.out and "  version: 1.0.0" in r.out and "  memory_limit: 512Mi" in r.out
    r = cli("gitops", "status", "gamma", "--repo", gitops_remote, "--no-db")
    assert (r.code, r.err) == (1, "error: gamma is not deployed on main and has no live deployment record\n")
    r = cli("gitops", "list", "--no-db")
    assert (r.code, r.err) == (2, "error: --no-db needs --repo: there would be nothing to read\n")


def test_list_of_an_empty_repository(cli, gitops_remote):
    r = cli("gitops", "list", "--repo", gitops_remote, "--no-db")
    assert (r.code, r.out) == (0, "no deployments\n")
    assert remote_branches(gitops_remote) == ["main"]
    assert TEMPLATE_REPO_URL in remote_file(gitops_remote, "main", C.REPO_MARKER_FILE)


def test_initialised_repository_passes_verify(cli, gitops_template_repo, tmp_path):
    work = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(gitops_template_repo), str(work)], check=True)
    assert (work / C.ARGOCD_DIR / "applicationset.yaml").is_file() and (work / C.ARGOCD_DIR / "appproject.yaml").is_file()
    assert TEMPLATE_REPO_URL in (work / C.ARGOCD_DIR / "applicationset.yaml").read_text()
    r = cli("gitops", "verify", work)
    assert r.code == 0, r.out + r.err

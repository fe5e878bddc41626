"""``.allora-gitops.yaml``: written by repo init, changed by repo config, obeyed by render/publish/promote/rollback."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from allora_gitops import constants as C
from tests.fixtures.git import git, merge_into_main, remote_branches, remote_file
from tests.test_publish import NAME, make_bundle, rows

pytest.importorskip("tests.fixtures.postgres")
try:
    from tests.fixtures.postgres import _migrated_template  # noqa: F401
except ImportError:
    pass


@pytest.fixture
def gitops(cli, database_url, gitops_home, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLORA_DATABASE_URL", database_url)
    monkeypatch.setenv("ALLORA_STORE_URL", (tmp_path / "objects").as_uri())
    return lambda *args: cli("gitops", *args)


def init(cli, path: Path, *extra: str) -> Path:
    r = cli("gitops", "repo", "init", path, "--bare", "--repo-url", "https://git.example.com/p/d.git", *extra)
    assert r.code == 0, r.err
    return path


def settings_of(repo: Path, ref: str = "main") -> dict:
    return yaml.safe_load(remote_file(repo, ref, C.REPO_MARKER_FILE))


# --- repo init / repo config ----------------------------------------------------------------------


def test_repo_init_writes_every_repository_setting(cli, tmp_path, gitops_home):
    repo = init(
        cli, tmp_path / "d.git", "--namespace", "team-a", "--image-registry", "ghcr.io/org", "--store", "s3://bucket/bundles",
        "--docs-url", "https://docs.example.com/allora-gitops/",
    )  # fmt: skip
    assert settings_of(repo) == {
        "kind": "AlloraGitopsRepository",
        "layout_version": 1,
        "created_by": f"allora-gitops {__import__('allora_gitops').__version__}",
        "repo_url": "https://git.example.com/p/d.git",
        "default_branch": "main",
        "namespace": "team-a",
        "networks": ["testnet", "mainnet"],
        "image_registry": "ghcr.io/org",
        "object_store": "s3://bucket/bundles",
        "monitoring": True,
        "monitoring_namespace": "monitoring",
        "low_balance_threshold_uallo": None,
        "docs_url": "https://docs.example.com/allora-gitops",
        "default_owner": None,
        "dns": {"cluster_dns_namespace": "kube-system", "node_local_address": "169.254.20.10"},
        "images": {"require_digest": ["mainnet"]},
        "sandbox": {"wallet_secret": "allora-sandbox-wallet", "commit": "review", "max_per_user": 2},
        "resources": {"max_cpu": "16", "max_memory": "64Gi", "max_gpus": 8},
        "system_packages": {"allowed": []},
        "remote_artifacts": {"max_bytes": 20 * 1024**3, "allow_private_addresses": False},
        "gpu": {
            "base_image": None,
            "node_selector": {},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "value": None, "effect": "NoSchedule"}],
        },
        "ci": {"install": settings_of(repo)["ci"]["install"]},
    }
    project = yaml.safe_load(remote_file(repo, "main", "argocd/appproject.yaml"))
    assert [d["namespace"] for d in project["spec"]["destinations"]] == ["team-a"]


def test_repo_config_shows_and_changes_a_setting_on_a_review_branch(cli, tmp_path, gitops_home):
    repo = init(cli, tmp_path / "d.git")
    r = cli("gitops", "repo", "config", "--repo", repo, "namespace")
    assert (r.code, r.out) == (0, "allora-models\n")
    r = cli("gitops", "repo", "config", "--repo", repo)
    assert r.code == 0 and "node_local_address: 169.254.20.10\n" in r.out
    r = cli("gitops", "repo", "config", "--repo", repo, "namespace", "team-b")
    assert r.code == 0, r.err
    assert r.out.startswith("set namespace on config/namespace: commit ")
    assert settings_of(repo, "config/namespace")["namespace"] == "team-b"
    assert settings_of(repo)["namespace"] == "allora-models"  # main changes when the branch is merged
    project = yaml.safe_load(remote_file(repo, "config/namespace", "argocd/appproject.yaml"))
    assert [d["namespace"] for d in project["spec"]["destinations"]] == ["team-b"]  # argocd/ follows


def test_repo_config_ci_install_rewrites_both_workflows(cli, tmp_path, gitops_home):
    repo = init(cli, tmp_path / "d.git")
    wheel = "allora-gitops[platform] @ https://files.example.com/allora_gitops-0.1.0-py3-none-any.whl"
    r = cli("gitops", "repo", "config", "--repo", repo, "ci.install", wheel, "--branch", "main")
    assert r.code == 0, r.err
    for workflow in (C.CI_WORKFLOW_FILE, C.CI_IMAGES_WORKFLOW_FILE):
        assert f'install --disable-pip-version-check --quiet "{wheel}"' in remote_file(repo, "main", workflow)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("namespace", "Team_B", "error: namespace: 'Team_B' is not a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)"),
        ("dns.node_local_address", "nodelocal", "error: dns.node_local_address: 'nodelocal' is not an IP address"),
        ("ci.install", "requests==2", "error: ci.install: installs requests, not allora-gitops"),
        ("ci.install", "allora-gitops; rm -rf /", "error: ci.install: not a pip requirement: Expected a marker variable or quoted string"),
        ("colour", "blue", "error: unknown setting 'colour'; known settings: "),
        ("kind", "Other", "error: kind is written by allora-gitops and cannot be set"),
        ("resources.max_cpu", "lots", "error: resources.max_cpu: 'lots' is not a Kubernetes CPU quantity like 250m, 0.5 or 2"),
        ("resources.max_gpus", "4096", "error: resources.max_gpus: "),
    ],
)
def test_repo_config_refuses_a_bad_value(cli, tmp_path, gitops_home, key, value, message):
    repo = init(cli, tmp_path / "d.git")
    before = remote_branches(repo)
    r = cli("gitops", "repo", "config", "--repo", repo, key, value)
    assert r.code == 2 and r.err.startswith(message) and len(r.err.splitlines()) == 1, r.err
    assert remote_branches(repo) == before


def test_repo_config_refuses_a_namespace_that_would_strand_the_deployments(gitops, cli, records, tmp_path):
    # the AppProject follows the setting, the overlays would not: Argo CD would refuse every model
    repo = init(cli, tmp_path / "d.git")
    assert gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", "--branch", "main").code == 0
    main = git(repo, "rev-parse", "main")
    r = cli("gitops", "repo", "config", "--repo", repo, "namespace", "team-b")
    assert (r.code, r.err) == (
        2,
        f"error: namespace: 1 deployment(s) run in allora-models ({NAME}/testnet) and the AppProject would no longer allow it; "
        "retire them first and publish them again once the new namespace is merged\n",
    )
    assert remote_branches(repo) == ["main"] and git(repo, "rev-parse", "main") == main  # nothing pushed
    assert cli("gitops", "repo", "config", "--repo", repo, "monitoring", "false").code == 0  # other keys still change


def test_an_invalid_settings_file_is_named_with_its_line(cli, tmp_path, gitops_home):
    from allora_gitops.errors import GitOpsError
    from allora_gitops.gitops.settings import parse_repository_settings

    with pytest.raises(GitOpsError) as exc:
        parse_repository_settings("kind: AlloraGitopsRepository\nrepo_url: https://x/y.git\nnamespace: Team_B\n", ".allora-gitops.yaml")
    assert exc.value.lines()[1].startswith(".allora-gitops.yaml:3:12: error: namespace: 'Team_B' is not a Kubernetes namespace")


def test_a_settings_file_that_expands_without_bound_is_refused_with_one_line():
    from allora_gitops.errors import GitOpsError
    from allora_gitops.gitops.settings import parse_repository_settings

    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join('*' + chr(97 + i) for _ in range(9))}]\n" for i in range(8)
    )
    with pytest.raises(GitOpsError) as exc:
        parse_repository_settings(laughs, ".allora-gitops.yaml")
    assert exc.value.lines()[0] == "error: invalid repository settings in .allora-gitops.yaml"
    assert len(exc.value.lines()) == 2 and exc.value.lines()[1].startswith(".allora-gitops.yaml")


# --- render ---------------------------------------------------------------------------------------


def test_render_into_a_repository_refuses_another_namespace_and_never_touches_argocd(cli, tmp_path, gitops_home):
    repo = tmp_path / "deployments"
    r = cli("gitops", "repo", "init", repo, "--repo-url", "https://git.example.com/p/d.git")
    assert r.code == 0, r.err
    argocd = {p.name: p.read_text() for p in (repo / "argocd").iterdir()}
    bundle = make_bundle(tmp_path)
    r = cli("gitops", "render", bundle, "--network", "testnet", "--namespace", "team-b", "-o", repo)
    assert r.code == 2 and r.err == (
        f"error: --namespace team-b contradicts {repo / C.REPO_MARKER_FILE} (namespace: allora-models); leave the flag out, "
        "or change the setting with `allora-gitops repo config namespace VALUE`\n"
    )
    assert not (repo / "deployments" / NAME).exists() and not (repo / "builds" / NAME).exists()  # nothing written
    r = cli("gitops", "render", bundle, "--network", "testnet", "--repo-url", "https://other.example.com/x.git", "-o", repo)
    assert r.code == 2 and "--repo-url https://other.example.com/x.git contradicts" in r.err
    r = cli("gitops", "render", bundle, "--network", "testnet", "-o", repo)
    assert r.code == 0, r.err
    assert {p.name: p.read_text() for p in (repo / "argocd").iterdir()} == argocd
    overlay = (repo / f"deployments/{NAME}/overlays/testnet/kustomization.yaml").read_text()
    assert "namespace: allora-models" in overlay or 'namespace: "allora-models"' in overlay


def test_network_defaults_to_model_yaml(cli, tmp_path, gitops_home):
    out = tmp_path / "out"
    r = cli("gitops", "render", make_bundle(tmp_path), "-o", out)
    assert r.code == 0, r.err
    assert (out / f"deployments/{NAME}/overlays/testnet/kustomization.yaml").is_file()  # the example says testnet


def _egress_to_dns(tree_dir: Path) -> list[dict]:
    policy = yaml.safe_load((tree_dir / f"deployments/{NAME}/base/networkpolicy.yaml").read_text())
    return [rule for rule in policy["spec"]["egress"] if {p["port"] for p in rule["ports"]} == {53}]


def test_node_local_dns_is_allowed_on_udp_and_tcp_53(cli, tmp_path, gitops_home):
    out = tmp_path / "out"
    assert cli("gitops", "render", make_bundle(tmp_path), "--network", "testnet", "-o", out).code == 0
    [rule] = _egress_to_dns(out)
    assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in rule["to"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}} in rule["to"]


def test_dns_egress_follows_the_repository_settings(cli, tmp_path, gitops_home):
    remote = init(cli, tmp_path / "d.git")
    for key, value in (("dns.node_local_address", "169.254.25.10"), ("dns.cluster_dns_namespace", "dns-system")):
        assert cli("gitops", "repo", "config", "--repo", remote, key, value, "--branch", "main").code == 0
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(remote), str(work))
    assert cli("gitops", "render", make_bundle(tmp_path), "--network", "testnet", "-o", work).code == 0
    [rule] = _egress_to_dns(work)
    assert rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dns-system"}}},
        {"ipBlock": {"cidr": "169.254.25.10/32"}},
    ]


# --- publish / promote / rollback -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--namespace", "team-b"), "--namespace team-b contradicts .allora-gitops.yaml on main (namespace: allora-models)"),
        (("--image-registry", "ghcr.io/other"), "--image-registry ghcr.io/other contradicts .allora-gitops.yaml on main (image_registry: ghcr.io/org)"),
        (("--store", "s3://elsewhere/x"), "--store s3://elsewhere/x contradicts .allora-gitops.yaml on main (object_store: "),
        (("--network", "mainnet"), "--network mainnet is not allowed by .allora-gitops.yaml on main (networks: testnet)"),
    ],
)
def test_publish_refuses_a_flag_that_contradicts_the_settings(gitops, cli, records, tmp_path, flags, message):
    repo = init(cli, tmp_path / "d.git", "--image-registry", "ghcr.io/org", "--store", (tmp_path / "objects").as_uri(), "--network", "testnet")
    main = git(repo, "rev-parse", "main")
    r = gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", *flags)
    assert r.code == 2 and r.err.splitlines()[-1].startswith(f"error: {message}") and r.err.count("error:") == 1, r.err
    assert remote_branches(repo) == ["main"] and git(repo, "rev-parse", "main") == main  # nothing pushed
    assert records.list_bundles() == []  # nothing recorded
    assert not list((tmp_path / "objects").rglob("*.tar.gz"))  # nothing uploaded


def test_publish_refuses_resources_beyond_the_repositorys_maxima_before_anything_is_written(gitops, cli, records, tmp_path):
    repo = init(cli, tmp_path / "d.git", "--store", (tmp_path / "objects").as_uri())
    assert settings_of(repo)["resources"] == {"max_cpu": "16", "max_memory": "64Gi", "max_gpus": 8}
    main = git(repo, "rev-parse", "main")
    r = gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", "--cpu", "1" + "0" * 30, "--memory", "1Pi")
    assert r.code == 2, r.err
    assert r.err.splitlines()[-3:] == [
        "error: invalid deployment settings",
        "error: cpu: '1000000000000000000000000000000' cores is more than 16, the repository's maximum (resources.max_cpu in .allora-gitops.yaml)",
        "error: memory: '1Pi' is more than 64Gi, the repository's maximum (resources.max_memory in .allora-gitops.yaml)",
    ]
    assert remote_branches(repo) == ["main"] and git(repo, "rev-parse", "main") == main  # nothing pushed
    assert records.list_bundles() == []  # nothing recorded
    assert not list((tmp_path / "objects").rglob("*.tar.gz"))  # nothing uploaded


def test_publish_takes_registry_namespace_and_store_from_the_settings(gitops, cli, records, tmp_path):
    store = tmp_path / "team-store"
    repo = init(cli, tmp_path / "d.git", "--image-registry", "ghcr.io/org", "--namespace", "team-a", "--store", store.as_uri())
    r = gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", "--branch", "main", "--json")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    assert result["image"].startswith(f"ghcr.io/org/{NAME}:1.0.0-") and result["archive_url"].startswith(store.as_uri())
    assert not [w for w in result["warnings"] if "this machine" in w]  # a local repository: file:// and localhost work for it
    overlay = remote_file(repo, "main", f"deployments/{NAME}/overlays/testnet/kustomization.yaml")
    assert "namespace: team-a" in overlay or 'namespace: "team-a"' in overlay


def test_promote_takes_publish_settings(gitops, cli, records, tmp_path):
    repo = init(cli, tmp_path / "d.git")
    assert gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", "--branch", "main").code == 0
    r = gitops("promote", NAME, "--from", "testnet", "--to", "mainnet", "--repo", repo, "--polling-interval", "300", "--memory", "1Gi", "--wallet", "lf-mainnet")
    assert r.code == 0, r.err
    patch = remote_file(repo, "promote/linear-forecaster/mainnet/1.0.0", f"deployments/{NAME}/overlays/mainnet/deployment-patch.yaml")
    env = {e["name"]: e.get("value") for e in yaml.safe_load(patch)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ALLORA_POLLING_INTERVAL"] == "300"
    assert '"1Gi"' in patch or "1Gi" in patch


def test_rollback_that_changes_nothing_adds_no_row(gitops, cli, records, tmp_path):
    repo = init(cli, tmp_path / "d.git")
    assert gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", "--branch", "main").code == 0
    before = [(d.id, d.status) for d in rows(records)]
    r = gitops("rollback", NAME, "--network", "testnet", "--to", "1.0.0", "--repo", repo)
    assert r.code == 0, r.err
    assert [(d.id, d.status) for d in rows(records)] == before
    assert remote_branches(repo) == ["main"]
    assert r.out.startswith(f"{NAME} 1.0.0 on testnet: nothing to do: main already runs {NAME} 1.0.0 on testnet like this")


def test_promote_and_rollback_fetch_the_archive_from_the_store_publish_recorded(gitops, cli, records, tmp_path):
    # no object_store setting: publish --store OTHER records the archive there; later commands, given no
    # --store, must not look in this operator's default store (where it is not)
    repo = init(cli, tmp_path / "d.git")
    other = tmp_path / "other-store"
    bundle = make_bundle(tmp_path)
    assert gitops("publish", bundle, "--repo", repo, "--network", "testnet", "--branch", "main", "--store", other.as_uri()).code == 0
    r = gitops("promote", NAME, "--from", "testnet", "--to", "mainnet", "--repo", repo, "--branch", "main", "--wallet", "lf-mainnet")
    assert r.code == 0, r.err
    assert f"==> fetch: archive {other.as_uri()}/bundles/{NAME}/1.0.0/" in r.err
    r = gitops("rollback", NAME, "--network", "testnet", "--to", "1.0.0", "--repo", repo)
    assert r.code == 0, r.err
    assert r.out.startswith(f"{NAME} 1.0.0 on testnet: nothing to do: main already runs {NAME} 1.0.0 on testnet like this")


def test_rollback_to_an_unknown_version_lists_the_known_ones(gitops, cli, records, tmp_path):
    repo = init(cli, tmp_path / "d.git")
    assert gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", "--branch", "main").code == 0
    r = gitops("rollback", NAME, "--to", "0.9.0", "--repo", repo)
    assert (r.code, r.err) == (1, f"error: no bundle {NAME} 0.9.0 in the records database; known versions: 1.0.0\n")


# --- a remote that is not on this machine ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def git_daemon(tmp_path):
    """``git daemon`` on loopback serving tmp_path/served: a remote that is a URL, not a path."""
    served = tmp_path / "served"
    served.mkdir()
    port = _free_port()
    proc = subprocess.Popen(
        ["git", "daemon", "--export-all", "--enable=receive-pack", f"--base-path={served}", "--listen=127.0.0.1", f"--port={port}", "--reuseaddr", str(served)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield served, f"git://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_publish_warns_that_file_and_localhost_work_on_one_machine_only(gitops, cli, git_daemon, tmp_path):
    served, base_url = git_daemon
    init(cli, served / "d.git")
    r = gitops("publish", make_bundle(tmp_path), "--repo", f"{base_url}/d.git", "--network", "testnet", "--dry-run", "--json")
    assert r.code == 0, r.err
    warnings = [w for w in json.loads(r.out)["warnings"] if w.startswith("the ")]  # (validation warnings come first)
    assert [w.split(" is ", 1)[0] for w in warnings] == [
        f"the archive URL {(tmp_path / 'objects').as_uri()}/bundles/{NAME}/1.0.0/" + warnings[0].split("/1.0.0/", 1)[1].split(" ", 1)[0],
        "the image registry localhost:5000",
    ]
    assert f"==> warning: {warnings[1]}" in r.err


# --- records follow the repository ----------------------------------------------------------------


def test_a_review_branch_deleted_unmerged_is_abandoned_and_not_listed(gitops, cli, records, tmp_path):
    repo = init(cli, tmp_path / "d.git")
    assert gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet").code == 0
    branch = "deploy/linear-forecaster/testnet/1.0.0"
    r = gitops("list", "--repo", repo, "--json")
    assert [(x["status"], x["branch"], x["in_repo"]) for x in json.loads(r.out)] == [("committed", branch, False)]
    git(repo, "branch", "-D", branch)
    r = gitops("sync", "--repo", repo)
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        f"{NAME} 1.0.0 on testnet: committed → abandoned ({branch} was deleted without being merged into main)",
        f"records follow {repo} main: 1 change(s)",
    ]
    assert [d.status for d in rows(records)] == ["abandoned"]
    assert (gitops("list", "--repo", repo).out) == "no deployments\n"


def test_history_shows_each_network_with_commit_date_and_state(gitops, cli, records, tmp_path):
    repo = init(cli, tmp_path / "d.git")
    assert gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", "--branch", "main").code == 0
    assert gitops("publish", make_bundle(tmp_path, version="1.1.0"), "--repo", repo, "--network", "testnet").code == 0
    assert gitops("promote", NAME, "--from", "testnet", "--to", "mainnet", "--repo", repo, "--wallet", "lf-mainnet").code == 0
    merge_into_main(repo, "promote/linear-forecaster/mainnet/1.0.0")
    r = gitops("history", NAME, "--repo", repo, "--json")
    assert r.code == 0, r.err
    got = [(h["network"], h["version"], h["status"], h["branch"]) for h in json.loads(r.out)]
    assert got == [  # per network, the releases in the order they were made
        ("mainnet", "1.0.0", "merged", "promote/linear-forecaster/mainnet/1.0.0"),
        ("testnet", "1.0.0", "merged", "main"),
        ("testnet", "1.1.0", "committed", "deploy/linear-forecaster/testnet/1.1.0"),
    ]
    assert all(h["commit"] and h["date"] for h in json.loads(r.out))
    text = gitops("history", NAME).out.splitlines()
    assert text[0] == "mainnet" and text[1].split() == ["KIND", "VERSION", "STATUS", "COMMIT", "DATE", "BRANCH", "BY"]


def test_list_json_fills_topic_fee_tier_and_resources(gitops, cli, records, tmp_path):
    repo = init(cli, tmp_path / "d.git")
    assert gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", "--branch", "main", "--cpu", "500m").code == 0
    [row] = json.loads(gitops("list", "--repo", repo, "--json").out)
    assert (row["topic_id"], row["fee_tier"], row["cpu_request"], row["cpu_limit"], row["memory_request"], row["status"]) == (
        "69", "STANDARD", "500m", "1", "256Mi", "merged"  # twice the request, as the API server stores it
    )


@pytest.mark.slow
def test_checkov_kustomize_mode_on_a_published_repository_fails_nothing(gitops, cli, records, tmp_path):
    """checkov -d REPO --framework kustomize scans bases and overlays as they are in the repository."""
    from tests.test_render import find_checkov

    repo = init(cli, tmp_path / "d.git")
    bundle = make_bundle(tmp_path)
    assert gitops("publish", bundle, "--repo", repo, "--network", "testnet", "--branch", "main", "--secret-store", "vault").code == 0
    assert gitops("publish", bundle, "--repo", repo, "--network", "mainnet", "--branch", "main", "--wallet", "lf-mainnet").code == 0
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(repo), str(work))
    proc = subprocess.run(
        [find_checkov(), "-d", str(work), "--framework", "kustomize", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    reports = json.loads(proc.stdout)
    [report] = reports if isinstance(reports, list) else [reports]
    assert report["check_type"] == "kustomize"
    assert (report["summary"]["failed"], report["summary"]["parsing_errors"]) == (0, 0), [(c["check_id"], c["file_path"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert report["summary"]["passed"] > 200
    skipped = sorted({c["check_id"] for c in report["results"]["skipped_checks"]})
    assert skipped == ["CKV_K8S_35", "CKV_K8S_40", "CKV_K8S_43"]  # each skip carries its reason (README, annotations); 35: the platform/ API reads its credentials from env


def test_publish_shows_validation_warnings_on_stderr_and_in_json(gitops, cli, records, tmp_path):
    repo = init(cli, tmp_path / "d.git")
    bundle = make_bundle(tmp_path)
    (bundle / "requirements.txt").write_text((bundle / "requirements.txt").read_text() + "tinyfakepkg==1.0\n")
    runner = bundle / "src" / "linear_forecaster" / "runner.py"
    runner.write_text("import tinyfakepkg  # noqa: F401\n" + runner.read_text())
    r = gitops("publish", bundle, "--repo", repo, "--network", "testnet", "--json")
    assert r.code == 0, r.err
    [warning] = json.loads(r.out)["warnings"]
    assert warning.startswith(f"{bundle}/src/linear_forecaster/runner.py:1") and "warning: tinyfakepkg is not installed here" in warning
    assert f"==> warning: {warning}" in r.err.splitlines()


def test_promote_and_rollback_refuse_a_contradicting_flag_and_push_nothing(gitops, cli, records, tmp_path):
    repo = init(cli, tmp_path / "d.git", "--network", "testnet")
    assert gitops("publish", make_bundle(tmp_path), "--repo", repo, "--network", "testnet", "--branch", "main").code == 0
    main, rows_before = git(repo, "rev-parse", "main"), len(rows(records))
    r = gitops("promote", NAME, "--from", "testnet", "--to", "mainnet", "--repo", repo, "--wallet", "lf-mainnet")
    assert r.code == 2 and r.err.splitlines()[-1].startswith("error: --network mainnet is not allowed by .allora-gitops.yaml on main"), r.err
    r = gitops("rollback", NAME, "--to", "1.0.0", "--repo", repo, "--namespace", "team-b")
    assert r.code == 2 and r.err.splitlines()[-1].startswith("error: --namespace team-b contradicts .allora-gitops.yaml on main"), r.err
    assert remote_branches(repo) == ["main"] and git(repo, "rev-parse", "main") == main and len(rows(records)) == rows_before


def test_publishing_a_merged_deployment_again_keeps_its_row_merged(gitops, cli, records, tmp_path):
    repo = init(cli, tmp_path / "d.git")
    bundle = make_bundle(tmp_path)
    for _ in range(2):
        r = gitops("publish", bundle, "--repo", repo, "--network", "testnet", "--branch", "main")
        assert r.code == 0, r.err
    assert r.out.startswith(f"{NAME} 1.0.0 on testnet: nothing to do: main already runs {NAME} 1.0.0 on testnet like this")
    assert [d.status for d in rows(records)] == ["merged"]

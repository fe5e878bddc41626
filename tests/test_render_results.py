"""Results reporting in the rendered overlay (--results-url): projected token, env, egress; off by default."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from allora_gitops.errors import SettingsError
from allora_gitops.redact import shown_value
from tests.test_render import find_checkov, nested

RESULTS_URL = "http://allora-platform.allora-platform.svc.cluster.local/api/v1/results"  # the blueprint's platform/ Service
OVERLAY = "deployments/linear-forecaster/overlays/testnet"


@pytest.fixture
def results_repo(tmp_path, make_spec) -> Path:
    from allora_gitops.render import write_tree
    from allora_gitops.render.tree import render_deployment

    root = tmp_path / "gitops"
    write_tree(render_deployment(make_spec("testnet", secret_store="allora-vault", results_url=RESULTS_URL)), root)
    return root


def built(overlay: Path) -> dict[tuple[str, str], dict]:
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True).stdout
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out)}


def test_the_overlay_with_results_reporting_matches_its_snapshot(snapshot, make_spec):
    from allora_gitops.render.tree import render_overlay

    tree = render_overlay(make_spec("testnet", secret_store="allora-vault", results_url=RESULTS_URL))
    plain = render_overlay(make_spec("testnet", secret_store="allora-vault"))
    changed = {p[len(OVERLAY) + 1 :]: t for p, t in tree.items() if plain.get(p) != t}
    assert sorted(changed) == ["deployment-patch.yaml", "kustomization.yaml", "networkpolicy-results.yaml"]  # the rest is as without
    snapshot.snapshot_dir = Path(__file__).parent / "snapshots" / "test_render_results"
    snapshot.assert_match_dir(nested(changed), "overlay")


def test_the_pod_gets_a_projected_token_the_url_and_egress_to_the_platform_only(results_repo):
    objects = built(results_repo / OVERLAY)
    pod = objects[("Deployment", "linear-forecaster-testnet")]["spec"]["template"]["spec"]
    [model] = pod["containers"]
    env = {e["name"]: e.get("value") for e in model["env"]}
    assert env["ALLORA_RESULTS_URL"] == RESULTS_URL
    assert "ALLORA_RESULTS_TOKEN_FILE" not in env  # the runtime's default is the mount below
    mounts = {m["name"]: m for m in model["volumeMounts"]}
    assert mounts["platform-token"] == {"name": "platform-token", "mountPath": "/var/run/secrets/allora/platform-token", "readOnly": True}
    assert {"tmp", "wallet"} <= mounts.keys()  # the base's mounts are kept
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["platform-token"]["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "allora-platform", "expirationSeconds": 3600, "path": "token"}}
    ]
    assert pod["serviceAccountName"] == "linear-forecaster-testnet"  # whose identity the token proves
    assert pod["automountServiceAccountToken"] is False  # no Kubernetes API token besides it
    policy = objects[("NetworkPolicy", "linear-forecaster-results-testnet")]["spec"]
    assert policy["policyTypes"] == ["Egress"]
    assert policy["egress"] == [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "allora-platform"}}}],
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 8080, "protocol": "TCP"}],  # the Service's and the pod's
        }
    ]
    assert policy["podSelector"] == objects[("NetworkPolicy", "linear-forecaster-testnet")]["spec"]["podSelector"]


def test_verify_and_strict_schemas_pass_with_results_reporting_on(cli, results_repo):
    """allora-gitops verify (schemas, CRDs, policy rules) and kubernetes-validate strict on every object."""
    from allora_gitops.verify.kustomize import build_overlay
    from allora_gitops.verify.schemas import schema_errors

    result = cli("gitops", "verify", results_repo)
    assert (result.code, result.out) == (0, "")
    assert result.err == "verify: 1 overlay, 1 Dockerfile, 0 Argo CD files checked; 0 findings\n"
    objects = build_overlay(results_repo / OVERLAY).objects
    assert sorted(o["kind"] for o in objects).count("NetworkPolicy") == 2
    assert {o["kind"]: schema_errors(o) for o in objects} == {o["kind"]: [] for o in objects}


@pytest.mark.slow
def test_checkov_reports_nothing_with_results_reporting_on(results_repo, tmp_path):
    scan = tmp_path / "scan"
    scan.mkdir()
    out = subprocess.run(["kubectl", "kustomize", str(results_repo / OVERLAY)], capture_output=True, text=True, check=True).stdout
    (scan / "testnet.yaml").write_text(out)
    proc = subprocess.run(
        [find_checkov(), "-d", str(scan), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    summary = report["summary"]
    assert summary["failed"] == 0, proc.stdout[:3000]
    assert summary["passed"] > 50 and summary["parsing_errors"] == 0
    assert sorted({c["check_id"] for c in report["results"]["skipped_checks"]}) == ["CKV_K8S_40", "CKV_K8S_43"]


def test_off_by_default_and_the_base_never_changes(make_spec):
    from allora_gitops.render import render_base, render_deployment

    plain = render_deployment(make_spec("testnet"))
    assert not any("platform-token" in text or "ALLORA_RESULTS_URL" in text for text in plain.values())
    assert not any(path.endswith("networkpolicy-results.yaml") for path in plain)
    assert render_base(make_spec("testnet", results_url=RESULTS_URL)) == render_base(make_spec("testnet"))


@pytest.mark.parametrize(
    "url",
    [
        "https://platform.example.com/api/v1/results",  # not a cluster Service: the egress could not name it
        "http://allora-platform/api/v1/results",
        "http://allora-platform.allora-platform.svc:99999/api/v1/results",
        "ftp://allora-platform.allora-platform.svc/api/v1/results",
    ],
)
def test_a_results_url_that_is_not_a_cluster_service_is_refused(make_spec, url):
    with pytest.raises(SettingsError) as caught:
        make_spec("testnet", results_url=url)
    assert str(caught.value) == (
        f"results-url: {shown_value(url)} is not a cluster Service URL like http://allora-platform.allora-platform.svc:8000/api/v1/results"
        " (the pod's egress is opened to that namespace and port only)"
    )


def test_render_takes_results_url(cli, tmp_path):
    from tests.conftest import EXAMPLES

    result = cli("gitops", "render", EXAMPLES / "linear-forecaster", "--network", "testnet", "--results-url", RESULTS_URL, "-o", tmp_path)
    assert result.code == 0, result.err
    patch = (tmp_path / OVERLAY / "deployment-patch.yaml").read_text()
    assert f"value: {RESULTS_URL!r}".replace("'", '"') in patch or f"value: {RESULTS_URL}" in patch
    assert (tmp_path / OVERLAY / "networkpolicy-results.yaml").is_file()

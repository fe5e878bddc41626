"""The repository blueprint's platform/ manifests: the API deployed by Argo CD, held to the models' pod rules."""

from __future__ import annotations

import subprocess

import yaml

from allora_gitops import constants as C
from allora_gitops.verify.policy import check_network_policies, check_object


def _rendered(tmp_path) -> list[dict]:
    from allora_gitops.gitops.scaffold import init_repo
    from allora_gitops.gitops.settings import RepositorySettings

    repo = tmp_path / "deployments"
    init_repo(repo, RepositorySettings(repo_url="https://git.example.com/platform/allora-deployments.git"))
    out = subprocess.run(["kubectl", "kustomize", str(repo / "platform")], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d], repo


def test_platform_manifests_render_and_meet_the_pod_rules(tmp_path):
    objects, repo = _rendered(tmp_path)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == [
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount", "ServiceMonitor",
    ]  # fmt: skip
    assert {o["metadata"]["namespace"] for o in objects} == {"allora-platform"}
    problems = [(o["kind"], rule, msg) for o in objects for rule, msg in check_object(o, service=True)]
    assert problems == []  # liveness: the API has an HTTP probe, not the models' exec one (service=True)
    assert list(check_network_policies(objects)) == []
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    from_models = [r for r in policy["spec"]["ingress"] if r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "allora-models"]
    assert from_models and from_models[0]["ports"] == [{"port": 8080, "protocol": "TCP"}]  # the models' results reporting
    from_argocd = [r for r in policy["spec"]["ingress"] if r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "argocd"]
    assert [list(r["from"][0]) for r in from_argocd] == [["namespaceSelector"]]
    assert from_argocd[0]["ports"] == [{"port": 8080, "protocol": "TCP"}]  # Argo CD's notifications reporting syncs
    # Prometheus scrapes the API's /metrics (the allora_chain_* series the AlloraChain* alerts read): without the
    # ServiceMonitor and this ingress rule, those alerts could never fire in a cluster set up from this repository
    from_prometheus = [r for r in policy["spec"]["ingress"] if r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == C.MONITORING_NAMESPACE]
    assert from_prometheus and from_prometheus[0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    (service,) = [o for o in objects if o["kind"] == "Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]] and endpoint["path"] == "/metrics"
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "allora-platform-metrics", "key": "token"}}

    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it; Argo CD would reset it on every sync
    (hpa,) = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (pdb,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a drain never waits on the budget forever
    assert pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    pod = deployment["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert "command" not in api and api["args"][:1] == ["serve"]  # the image's entrypoint: tini -- allora-gitops
    assert pod["securityContext"]["runAsUser"] == C.PLATFORM_UID
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz" and api["readinessProbe"]["httpGet"]["path"] == "/api/health"
    assert [c["args"] for c in pod["initContainers"]] == [["db", "upgrade"]]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in api["env"] if "valueFrom" in e}
    assert secret_env == {
        "ALLORA_DATABASE_URL": "allora-platform-database",
        "AWS_ACCESS_KEY_ID": "allora-platform-store",
        "AWS_SECRET_ACCESS_KEY": "allora-platform-store",
    }
    assert {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} == {"allora-platform-git"}
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config["data"]["ALLORA_GITOPS_REPO"] == "https://git.example.com/platform/allora-deployments.git"
    assert not any(k in config["data"] for k in ("ALLORA_DATABASE_URL", "AWS_SECRET_ACCESS_KEY"))
    # behind the TLS ingress: its forwarded headers believed, the session cookie Secure whatever they say
    assert (config["data"]["FORWARDED_ALLOW_IPS"], config["data"]["ALLORA_API_SECURE_COOKIES"]) == ("*", "true")
    assert int(config["data"]["ALLORA_API_SHUTDOWN_GRACE_SECONDS"]) <= 30 < pod["terminationGracePeriodSeconds"]

    app = yaml.safe_load((repo / "platform" / "argocd" / "application.yaml").read_text())
    assert (app["kind"], app["spec"]["source"]["path"], app["spec"]["destination"]["namespace"]) == ("Application", "platform", "allora-platform")
    assert app["spec"]["source"]["repoURL"] == "https://git.example.com/platform/allora-deployments.git"


def test_the_platform_manifests_point_to_sections_the_repository_readme_has(tmp_path):
    """A comment that says where to read on must name a section that exists: the ConfigMap sent operators to
    README "Results reporting" for mounting the issuer's CA and token, a section neither README had."""
    import re

    _, repo = _rendered(tmp_path)
    headings = {line.lstrip("#").strip() for line in (repo / "README.md").read_text().splitlines() if line.startswith("## ")}
    cited = {
        (path.name, section)
        for path in sorted((repo / "platform").glob("*.yaml"))
        for section in re.findall(r'README(?:\.md)?,? "([^"]+)"', path.read_text())
    }
    assert cited  # the ConfigMap's pointer for the in-cluster issuer's CA and token
    assert {(name, s) for name, s in cited if s not in headings} == set()
    section = (repo / "README.md").read_text().split("## Results reporting: the cluster's issuer", 1)[1].split("\n## ", 1)[0]
    for needed in ("ALLORA_API_POD_JWKS_CA_FILE", "ALLORA_API_POD_JWKS_TOKEN_FILE", "serviceAccountToken", "kube-root-ca.crt"):
        assert needed in section


DIGEST = "sha256:" + "ab" * 32


def test_the_platform_image_digest_is_written_back_on_a_review_branch_and_verify_checks_platform(gitops_remote, tmp_path):
    """The write-back of ``build-platform-image --push --write-back`` (the registry check is the image test's)."""
    from allora_gitops.image.platform import pin_platform_image
    from allora_gitops.verify.repo import verify_repo
    from tests.fixtures.git import git, remote_branches

    image = "registry.example.com/acme/allora-gitops:0.2.0"
    pinned = pin_platform_image(str(gitops_remote), image, DIGEST, check_registry=False)
    assert (pinned["branch"], pinned["created"]) == ("pin/platform/0.2.0", True)
    assert pin_platform_image(str(gitops_remote), image, DIGEST, check_registry=False) == {**pinned, "created": False}
    assert "pin/platform/0.2.0" in remote_branches(gitops_remote)
    assert git(gitops_remote, "log", "-1", "--format=%B", "pin/platform/0.2.0").startswith(f"pin(platform): {image} to {DIGEST}")

    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", "-b", "pin/platform/0.2.0", str(gitops_remote), str(work)], check=True)
    kustomization = (work / "platform" / "kustomization.yaml").read_text()
    assert "# the project's Dockerfile, built and pinned here by digest" in kustomization  # comments kept
    out = subprocess.run(["kubectl", "kustomize", str(work / "platform")], capture_output=True, text=True, check=True).stdout
    (deployment,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert {c["image"] for c in [*pod["containers"], *pod["initContainers"]]} == {f"registry.example.com/acme/allora-gitops:0.2.0@{DIGEST}"}  # the tag for people, the digest for the runtime
    assert not any(str(v).startswith("CKV_K8S_43=") for v in deployment["metadata"]["annotations"].values())
    report = verify_repo(work, require_digest=False)
    assert "platform" in report.overlays and report.findings == []

    # verify holds platform/ to the schemas and the pod rules like any overlay
    hpa = work / "platform" / "horizontalpodautoscaler.yaml"
    hpa.write_text(hpa.read_text().replace("minReplicas: 2", "minReplicas: two"))
    manifest = work / "platform" / "deployment.yaml"
    manifest.write_text(manifest.read_text().replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"))
    found = {(p.file, p.code) for p in verify_repo(work, require_digest=False).findings}
    assert found == {("platform", "schema"), ("platform", "read-only-root-filesystem")}, found


def test_build_platform_image_refuses_bad_requests_before_building(cli, tmp_path):
    cases = {
        ("--tag", "Registry.Example.com/Acme:0.1"): "--tag",
        ("--tag", f"registry.example.com/acme/allora-gitops@{DIGEST}"): "expected REPO:TAG",
        ("--tag", "registry.example.com/acme/allora-gitops:0.1", "--write-back", str(tmp_path)): "--write-back pins the pushed digest: add --push",
        ("--tag", "registry.example.com/acme/allora-gitops:0.1", "--context", str(tmp_path)): f"{tmp_path} has no Dockerfile",
        ("--tag", "registry.example.com/acme/allora-gitops:0.1", "--pip-cert", str(tmp_path / "none.pem")): "--pip-cert",
    }
    for args, needle in cases.items():
        result = cli("gitops", "build-platform-image", *args)
        assert result.code == 2 and len(result.lines) == 1 and result.lines[0].startswith("error: ") and needle in result.err, (args, result)
        assert "Traceback" not in result.err

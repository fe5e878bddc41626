"""The repository blueprint's platform/ manifests: the API deployed by Argo CD, held to the models' pod rules."""

from __future__ import annotations

import subprocess

import yaml

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
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount"]
    assert {o["metadata"]["namespace"] for o in objects} == {"allora-platform"}
    problems = [(o["kind"], rule, msg) for o in objects for rule, msg in check_object(o) if rule != "liveness-probe"]
    assert problems == []  # liveness: the API has an HTTP probe, not the models' exec one
    assert list(check_network_policies(objects)) == []
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    from_models = [r for r in policy["spec"]["ingress"] if r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "allora-models"]
    assert from_models and from_models[0]["ports"] == [{"port": 8080, "protocol": "TCP"}]  # the models' results reporting
    from_argocd = [r for r in policy["spec"]["ingress"] if r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "argocd"]
    assert [list(r["from"][0]) for r in from_argocd] == [["namespaceSelector"]]
    assert from_argocd[0]["ports"] == [{"port": 8080, "protocol": "TCP"}]  # Argo CD's notifications reporting syncs

    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert api["command"][:2] == ["allora-gitops", "serve"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz" and api["readinessProbe"]["httpGet"]["path"] == "/api/health"
    assert [c["command"] for c in pod["initContainers"]] == [["allora-gitops", "db", "upgrade"]]
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

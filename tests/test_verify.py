"""``allora-gitops verify``: clean repositories pass, planted problems are each found, exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

BIP39_TEST_VECTOR = " ".join(["abandon"] * 11 + ["about"])  # the BIP-39 specification's first test vector


def add_to_kustomization(overlay: Path, key: str, item) -> None:
    path = overlay / "kustomization.yaml"
    data = yaml.safe_load(path.read_text())
    data.setdefault(key, []).append(item)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def plant(repo: Path, make_spec, name: str) -> Path:
    """Render another deployment (named ``name``) into ``repo`` and return its testnet overlay."""
    from allora_gitops.render import render_deployment, write_tree

    write_tree(render_deployment(make_spec("testnet", name=name)), repo)
    return repo / "deployments" / name / "overlays" / "testnet"


def findings_by_overlay(report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in report.findings:
        out.setdefault(p.file, []).append(p.code)
    return out


def test_a_rendered_repository_is_clean(cli, example_repo):
    result = cli("gitops", "verify", example_repo)
    assert (result.code, result.out) == (0, "")
    assert result.err == "verify: 2 overlays, 1 Dockerfile, 3 Argo CD files checked; 0 findings\n"
    result = cli("gitops", "verify", example_repo, "--json")
    report = json.loads(result.out)
    assert result.code == 0 and report["ok"] is True and report["findings"] == []
    assert report["checked"]["overlays"] == [
        "deployments/linear-forecaster/overlays/mainnet",
        "deployments/linear-forecaster/overlays/testnet",
    ]
    assert report["checked"]["dockerfiles"] == ["builds/linear-forecaster/1.0.0/Dockerfile"]
    # the notifications ConfigMap is validated (core schema, policy rules) like every Argo CD file
    assert report["checked"]["files"] == ["argocd/applicationset.yaml", "argocd/appproject.yaml", "argocd/notifications-cm.yaml"]


def test_planted_problems_each_get_their_own_finding(cli, example_repo, make_spec):
    from allora_gitops.verify import verify_repo

    root = plant(example_repo, make_spec, "root-model")
    (root / "root-patch.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: root-model\nspec:\n  template:\n    spec:\n"
        "      containers:\n        - name: model\n          securityContext:\n            runAsUser: 0\n            runAsNonRoot: false\n"
    )
    add_to_kustomization(root, "patches", {"path": "root-patch.yaml"})

    nomem = plant(example_repo, make_spec, "nomem-model")
    add_to_kustomization(
        nomem,
        "patches",
        {"target": {"kind": "Deployment"}, "patch": "- op: remove\n  path: /spec/template/spec/containers/0/resources/limits/memory\n"},
    )

    leak = plant(example_repo, make_spec, "leak-model")
    (leak / "configmap.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"wallet": BIP39_TEST_VECTOR}})
    )
    add_to_kustomization(leak, "resources", "configmap.yaml")

    latest = plant(example_repo, make_spec, "latest-model")
    k = yaml.safe_load((latest / "kustomization.yaml").read_text())
    k["images"][0]["newTag"] = "latest"
    (latest / "kustomization.yaml").write_text(yaml.safe_dump(k, sort_keys=False))

    broken = plant(example_repo, make_spec, "broken-model")
    add_to_kustomization(broken, "resources", "missing.yaml")

    report = verify_repo(example_repo)
    assert findings_by_overlay(report) == {
        "deployments/root-model/overlays/testnet": ["run-as-non-root"],
        "deployments/nomem-model/overlays/testnet": ["resources"],
        "deployments/leak-model/overlays/testnet": ["secret-value", "argocd-kind"],  # the AppProject allows no ConfigMap
        "deployments/latest-model/overlays/testnet": ["image-pinned"],
        "deployments/broken-model/overlays/testnet": ["kustomize"],
    }
    messages = {p.file.split("/")[1]: p.message for p in report.findings if p.code != "argocd-kind"}
    assert messages["root-model"] == (
        "Deployment/root-model-testnet: container model may run as root: set runAsNonRoot: true and runAsUser: 1000"
    )
    assert messages["nomem-model"] == "Deployment/nomem-model-testnet: container model has no limits.memory"
    assert messages["leak-model"] == (
        "ConfigMap/settings-testnet: ConfigMap key wallet holds what looks like a wallet mnemonic or private key"
    )
    assert messages["latest-model"] == (
        "Deployment/latest-model-testnet: container model: image localhost:5000/allora/latest-model:latest uses the mutable tag latest"
    )
    assert messages["broken-model"].startswith("kustomize build failed: ") and "missing.yaml" in messages["broken-model"]
    assert BIP39_TEST_VECTOR not in json.dumps(report.to_dict())  # a finding never repeats the secret

    result = cli("gitops", "verify", example_repo)
    assert result.code == 1
    assert len(result.out.splitlines()) == 6
    assert (
        "deployments/nomem-model/overlays/testnet: error: Deployment/nomem-model-testnet: "
        "container model has no limits.memory [resources]"
    ) in result.out.splitlines()


def test_schema_typos_secrets_and_lint_findings(example_repo):
    from allora_gitops.verify import verify_repo

    overlay = example_repo / "deployments/linear-forecaster/overlays/mainnet"
    patch = overlay / "deployment-patch.yaml"
    patch.write_text(patch.read_text().replace("      volumes:", "      restartPolicyy: Always\n      volumes:"))
    (overlay / "secret.yaml").write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: wallet\nstringData:\n  mnemonic: x\n")
    add_to_kustomization(overlay, "resources", "secret.yaml")
    dockerfile = example_repo / "builds/linear-forecaster/1.0.0/Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("FROM ${BASE_IMAGE}\n", "FROM python\n"))
    appset = example_repo / "argocd/applicationset.yaml"
    appset.write_text(appset.read_text().replace("selfHeal: true", "selfHeal: true\n          selfHealing: true"))

    report = verify_repo(example_repo)
    got = sorted((p.file, p.code) for p in report.findings)
    assert got == [
        ("argocd/applicationset.yaml", "schema"),
        ("builds/linear-forecaster/1.0.0/Dockerfile", "hadolint:DL3006"),
        ("deployments/linear-forecaster/overlays/mainnet", "argocd-kind"),  # the AppProject allows no Secret
        ("deployments/linear-forecaster/overlays/mainnet", "schema"),
        ("deployments/linear-forecaster/overlays/mainnet", "secret-value"),
    ], report.findings
    schema = [p.message for p in report.findings if p.code == "schema"]
    assert "Deployment/linear-forecaster-mainnet: schema: spec.template.spec: Additional properties are not allowed ('restartPolicyy' was unexpected)" in schema
    lint = next(p for p in report.findings if p.code.startswith("hadolint"))
    assert lint.line is not None and lint.message.startswith("DL3006: ")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_changed_since_limits_work_to_what_the_branch_touched(cli, example_repo, make_spec):
    from allora_gitops.render import render_deployment, write_tree

    write_tree(render_deployment(make_spec("testnet", name="other-model")), example_repo)
    git(example_repo, "init", "-q", "-b", "main")
    git(example_repo, "add", "-A")
    git(example_repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    git(example_repo, "checkout", "-qb", "deploy/linear-forecaster/mainnet/1.0.1")

    result = cli("gitops", "verify", example_repo, "--changed-since", "main", "--json")
    assert result.code == 0
    assert json.loads(result.out)["checked"] == {"overlays": [], "dockerfiles": [], "files": []}

    patch = example_repo / "deployments/linear-forecaster/overlays/mainnet/deployment-patch.yaml"
    patch.write_text(patch.read_text().replace('"42"', '"43"'))
    result = cli("gitops", "verify", example_repo, "--changed-since", "main", "--json")
    assert json.loads(result.out)["checked"]["overlays"] == ["deployments/linear-forecaster/overlays/mainnet"]

    # A base change concerns every network of that model, and nothing else.
    base = example_repo / "deployments/linear-forecaster/base/deployment.yaml"
    base.write_text(base.read_text().replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"))
    result = cli("gitops", "verify", example_repo, "--changed-since", "main", "--json")
    report = json.loads(result.out)
    assert result.code == 1
    assert report["checked"]["overlays"] == [
        "deployments/linear-forecaster/overlays/mainnet",
        "deployments/linear-forecaster/overlays/testnet",
    ]
    assert sorted(f["code"] for f in report["findings"] if f["severity"] == "error") == ["read-only-root-filesystem"] * 2
    # on a review branch the unpinned mainnet overlay is a warning: merged, it would fail verify on main
    assert [(f["file"], f["code"]) for f in report["findings"] if f["severity"] == "warning"] == [
        ("deployments/linear-forecaster/overlays/mainnet", "image-digest")
    ]

    result = cli("gitops", "verify", example_repo, "--changed-since", "no-such-ref")
    assert result.code == 2
    assert result.lines[0].startswith("error: --changed-since no-such-ref: ")


def test_verify_cannot_check_a_missing_directory(cli, tmp_path):
    result = cli("gitops", "verify", tmp_path / "nope")
    assert (result.code, result.lines) == (2, [f"error: {tmp_path / 'nope'} is not a directory"])


def test_verify_refuses_a_directory_that_is_not_a_gitops_repository(cli, tmp_path):
    """Run from the wrong directory (a bundle, say), verify must not report success after checking nothing."""
    (tmp_path / "src").mkdir()
    result = cli("gitops", "verify", tmp_path)
    assert (result.code, result.lines) == (
        2,
        [f"error: {tmp_path} is not a GitOps repository: no deployments/, builds/ or argocd/ (create one with `allora-gitops repo init`)"],
    )


@pytest.mark.parametrize(
    "value, key, secret",
    [
        (BIP39_TEST_VECTOR, "notes", True),
        ("the quick brown fox jumps over the lazy dog and then some more", "notes", False),
        ("ab" * 32, "private_key", True),
        ("ab" * 32, "bundle-sha256", False),
    ],
)
def test_secret_detection(value, key, secret):
    from allora_gitops.verify.policy import looks_secret

    assert looks_secret(key, value) is secret


def test_batched_kustomize_gives_each_overlay_exactly_its_own_objects(example_repo, make_spec):
    from allora_gitops.verify.kustomize import build_overlay, build_overlays

    for name in ("alpha-model", "beta-model"):
        plant(example_repo, make_spec, name)
    overlays = sorted(example_repo.glob("deployments/*/overlays/*"))
    assert len(overlays) == 4
    batched = build_overlays(overlays, jobs=1)  # one batch of four
    for result in batched:
        alone = build_overlay(result.overlay)
        assert result.error is None and alone.error is None
        key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
        assert sorted(result.objects, key=key) == sorted(alone.objects, key=key)
    # A broken overlay in a batch is reported on its own; its neighbours still build.
    add_to_kustomization(overlays[0], "resources", "missing.yaml")
    results = build_overlays(overlays, jobs=1)
    assert [r.error is None for r in results] == [False, True, True, True]
    assert "missing.yaml" in results[0].error and not results[0].error.startswith("E1")


def test_the_package_ships_the_crd_schemas_it_validates_against():
    from allora_gitops.verify.crds import CRD_DIR, known_kinds, regenerate

    assert known_kinds() == [
        ("argoproj.io/v1alpha1", "AppProject"),
        ("argoproj.io/v1alpha1", "Application"),
        ("argoproj.io/v1alpha1", "ApplicationSet"),
        ("external-secrets.io/v1", "ExternalSecret"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ]
    upstream = Path(__file__).resolve().parents[2] / "shared" / "crds"  # shared/ beside the checkout
    if upstream.is_dir():  # where the originals live: regenerating gives the same bytes
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for path in regenerate(upstream, Path(tmp)):
                assert path.read_bytes() == (CRD_DIR / path.name).read_bytes()


# --- what Argo CD would refuse ----------------------------------------------------------------------


def test_an_overlay_outside_the_appproject_destinations_is_found(example_repo, make_spec):
    from allora_gitops.render import render_deployment, write_tree
    from allora_gitops.verify import verify_repo

    write_tree(render_deployment(make_spec("testnet", name="team-b-model", namespace="team-b")), example_repo)
    report = verify_repo(example_repo)
    found = [(p.file, p.code, p.message) for p in report.findings]
    assert found == [
        (
            "deployments/team-b-model/overlays/testnet",
            "argocd-destination",
            "namespace team-b is not a destination of AppProject allora-models (argocd/appproject.yaml allows: allora-models); "
            "Argo CD refuses to sync it",
        )
    ]


def test_a_kind_the_appproject_does_not_allow_is_found(example_repo, make_spec):
    from allora_gitops.verify import verify_repo

    overlay = plant(example_repo, make_spec, "with-config")
    (overlay / "configmap.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: b\n")
    (overlay / "role.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: extra\nrules: []\n"
    )
    add_to_kustomization(overlay, "resources", "configmap.yaml")
    add_to_kustomization(overlay, "resources", "role.yaml")
    report = verify_repo(example_repo)
    kinds = sorted(p.message.split(" is not")[0] for p in report.findings if p.code == "argocd-kind")
    assert kinds == ["kind ClusterRole.rbac.authorization.k8s.io", "kind ConfigMap"]
    assert all(p.file == "deployments/with-config/overlays/testnet" for p in report.findings if p.code == "argocd-kind")


def test_colliding_application_names_are_found(example_repo, make_spec):
    from allora_gitops.render import render_deployment, write_tree
    from allora_gitops.verify import verify_repo

    # deployments/a-b/overlays/testnet and deployments/a/overlays/b-testnet both become the Application "a-b-testnet"
    write_tree(render_deployment(make_spec("testnet", name="a-b")), example_repo)
    write_tree(render_deployment(make_spec("testnet", name="a")), example_repo)
    (example_repo / "deployments/a/overlays/testnet").rename(example_repo / "deployments/a/overlays/b-testnet")
    report = verify_repo(example_repo)
    [finding] = [p for p in report.findings if p.code == "argocd-app-name"]
    assert (finding.file, finding.message) == (
        "argocd/applicationset.yaml",
        "Application name a-b-testnet is generated for 2 overlays (deployments/a/overlays/b-testnet, deployments/a-b/overlays/testnet); "
        "Argo CD keeps one Application per name: rename one deployment",
    )


def test_what_argo_cd_would_keep_out_of_sync_or_undo_is_found():
    """A quantity the API server rewrites (argo-cd #17682) and a Job TTL that self-heal undoes (argo-cd #13851)."""
    from allora_gitops.verify.policy import check_object

    def job(**spec) -> dict:
        container = {"name": "model", "image": "r/m:1", "resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"},
                                                                       "limits": {"cpu": "1", "memory": "1Gi"}}}
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "annotations": spec.pop("annotations", {})},
                "spec": {**spec, "template": {"spec": {"containers": [container]}}}}  # fmt: skip

    found = [(rule, message) for rule, message in check_object(job(ttlSecondsAfterFinished=600)) if rule in ("canonical-quantity", "job-ttl")]
    assert found == [
        ("job-ttl", "ttlSecondsAfterFinished under Argo CD's self-heal: the TTL deletes the finished Job, Argo CD creates it again "
                    "and it runs again; drop it (sandbox prune removes the Job) or make the Job a sync hook"),
        ("canonical-quantity", "container model: requests.cpu 0.5 is stored by the API server as 500m; Argo CD would show it OutOfSync for ever"),
        ("canonical-quantity", "container model: requests.memory 1024Mi is stored by the API server as 1Gi; Argo CD would show it OutOfSync for ever"),
    ]  # fmt: skip
    hook = job(ttlSecondsAfterFinished=600, annotations={"argocd.argoproj.io/hook": "PostSync"})
    assert "job-ttl" not in [rule for rule, _ in check_object(hook)]  # a hook Job's deletion is intended


def test_the_notifications_configmap_is_validated_strictly(example_repo):
    """argocd/notifications-cm.yaml goes through kubernetes-validate's strict schema like every rendered object."""
    from allora_gitops.verify import verify_repo

    path = example_repo / "argocd" / "notifications-cm.yaml"
    assert path.is_file()
    path.write_text(path.read_text().replace("\ndata:\n", "\nstringData:\n", 1))  # a Secret's field on a ConfigMap

    report = verify_repo(example_repo)

    assert [(p.file, p.code) for p in report.findings] == [("argocd/notifications-cm.yaml", "schema")]
    assert "stringData" in report.findings[0].message

"""Rendering: whole-tree snapshots, determinism, and what a careful reviewer checks in the output."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from allora_gitops import constants as C
from allora_gitops.errors import RenderError, SettingsError
from tests.fixtures.rendered import EXAMPLE_SHA256


def nested(tree: dict[str, str]) -> dict:
    """{"a/b/c": text} → {"a": {"b": {"c": text}}}, the shape pytest-snapshot's assert_match_dir wants."""
    out: dict = {}
    for path, text in tree.items():
        node = out
        *dirs, name = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = text
    return out


@pytest.mark.parametrize("network", ["testnet", "mainnet"])
def test_whole_tree_matches_snapshot(snapshot, example_trees, network):
    snapshot.snapshot_dir = Path(__file__).parent / "snapshots" / "test_render" / network
    snapshot.assert_match_dir(nested(example_trees[network]), "tree")


def test_rendering_is_deterministic_and_the_base_depends_on_the_name_only(make_spec):
    from allora_gitops.render import render_base, render_deployment

    a = render_deployment(make_spec("testnet", secret_store="vault"))
    b = render_deployment(make_spec("testnet", secret_store="vault"))
    assert a == b
    # Another network, other resources, another version: the shared base does not move.
    other = make_spec("mainnet", memory="2Gi", cpu="1", topic_id=7)
    assert render_base(other) == render_base(make_spec("testnet"))
    assert all(not p.startswith("deployments/linear-forecaster/overlays/testnet") for p in render_deployment(other))


def test_image_reference_is_derived_from_version_and_digest(make_spec):
    spec = make_spec("testnet", image_registry="registry.example.com/team/")
    assert spec.image == f"registry.example.com/team/linear-forecaster:1.0.0-{EXAMPLE_SHA256[:12]}"
    assert C.image_tag("1.0.0+build.5", EXAMPLE_SHA256) == f"1.0.0_build.5-{EXAMPLE_SHA256[:12]}"


def test_resources_come_from_runtime_then_flags(make_spec):
    spec = make_spec("testnet")
    assert (spec.cpu, spec.cpu_limit, spec.memory) == ("250m", "500m", "256Mi")  # runtime.cpu_cores 0.25, memory_mb 256
    spec = make_spec("testnet", cpu="1.5", memory="2Gi")
    assert (spec.cpu, spec.cpu_limit, spec.memory) == ("1500m", "3", "2Gi")  # as the API server stores them


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"network": "devnet"}, "network: Input should be 'testnet' or 'mainnet' (got 'devnet')"),
        ({"network": "testnet", "topic_id": 0}, "topic-id: Input should be greater than 0 (got 0)"),
        ({"network": "testnet", "topic_id": -3}, "topic-id: Input should be greater than 0 (got -3)"),
        ({"network": "testnet", "memory": "2 GB"}, "memory: '2 GB' is not a Kubernetes memory quantity like 512Mi or 2Gi"),
        ({"network": "testnet", "memory": "500m"}, "memory: '500m' is not a Kubernetes memory quantity like 512Mi or 2Gi"),
        ({"network": "testnet", "cpu": "two"}, "cpu: 'two' is not a Kubernetes CPU quantity like 250m, 0.5 or 2"),
        # memory units on a CPU quantity: 2Gi used to become 2000m
        ({"network": "testnet", "cpu": "2Gi"}, "cpu: '2Gi' is not a Kubernetes CPU quantity like 250m, 0.5 or 2"),
        ({"network": "testnet", "cpu": "1", "cpu_limit": "4Mi"}, "cpu-limit: '4Mi' is not a Kubernetes CPU quantity like 250m, 0.5 or 2"),
        ({"network": "testnet", "cpu": "1", "cpu_limit": "500m"}, "cpu-limit: 500m is below the cpu request 1"),
        # absurd asks: refused by the maxima (the repository's resources.*, else 16 cores / 64Gi)
        (
            {"network": "testnet", "cpu": "1" + "0" * 30},
            "cpu: '1000000000000000000000000000000' cores is more than 16, the repository's maximum (resources.max_cpu in .allora-gitops.yaml)",
        ),
        ({"network": "testnet", "cpu": "1", "cpu_limit": "17"}, "cpu-limit: '17' cores is more than 16, the repository's maximum (resources.max_cpu in .allora-gitops.yaml)"),
        ({"network": "testnet", "memory": "1Ei"}, "memory: '1Ei' is more than 64Gi, the repository's maximum (resources.max_memory in .allora-gitops.yaml)"),
        ({"network": "testnet", "memory": "3Gi", "max_memory": "2Gi"}, "memory: '3Gi' is more than 2Gi, the repository's maximum (resources.max_memory in .allora-gitops.yaml)"),
        ({"network": "testnet", "base_image": "python:latest"}, "base-image: 'python:latest' is not a pinned image reference like python:3.11-slim or repo@sha256:…"),
        ({"network": "testnet", "image_registry": "Bad Registry"}, "image-registry: 'Bad Registry' is not an image registry/repository prefix like registry.example.com/team"),
        ({"network": "testnet", "wallet_secret": "Wallet_1"}, "wallet-secret: 'Wallet_1' is not a Kubernetes object name (lowercase letters, digits, '-' and '.')"),
        ({"network": "testnet", "archive_url": "https://user:pw@example.com/x.tar.gz"}, "archive-url: must be one line without quotes, spaces or credentials"),
    ],
)
def test_invalid_settings_are_one_clear_error(example_manifest, settings, message):
    from allora_gitops.render import DeploymentSettings, DeploymentSpec

    with pytest.raises(SettingsError) as err:
        DeploymentSpec.complete(example_manifest, sha256=EXAMPLE_SHA256, archive_size=1, settings=DeploymentSettings(**settings))
    assert err.value.lines() == [f"error: {message}"]
    assert err.value.exit_code == 2


def test_several_bad_settings_are_reported_together(example_manifest):
    from allora_gitops.render import DeploymentSettings, DeploymentSpec

    with pytest.raises(SettingsError) as err:
        DeploymentSpec.complete(
            example_manifest,
            sha256=EXAMPLE_SHA256,
            archive_size=1,
            settings=DeploymentSettings(network="devnet", topic_id=0, memory="2 GB"),
        )
    assert err.value.lines() == [
        "error: invalid deployment settings",
        "error: network: Input should be 'testnet' or 'mainnet' (got 'devnet')",
        "error: topic-id: Input should be greater than 0 (got 0)",
        "error: memory: '2 GB' is not a Kubernetes memory quantity like 512Mi or 2Gi",
    ]


def test_template_errors_name_the_template_and_line():
    from allora_gitops.render.environment import render_template

    with pytest.raises(RenderError) as err:
        render_template("builds/build.yaml.j2", C=C)
    assert err.value.message == "template builds/build.yaml.j2:1: 'spec' is undefined"


def test_filters_escape_instead_of_templates():
    from allora_gitops.render.environment import docker_json, in_single_quotes, to_yaml, yaml_scalar

    assert yaml_scalar('a: "b"\nc') == '"a: \\"b\\"\\nc"'
    assert yaml.safe_load(yaml_scalar("yes")) == "yes"  # never a YAML 1.1 boolean
    assert to_yaml({"b": [1, {"c": "x"}], "a": {}, "on": "a/b"}, indent=2) == 'a: {}\n  b:\n    - 1\n    - c: "x"\n  "on": "a/b"'
    assert docker_json('say "hi"\n') == '"say \\"hi\\"\\n"'
    assert in_single_quotes("https://pypi.example.com/simple") == "https://pypi.example.com/simple"
    with pytest.raises(ValueError, match="cannot be placed in a shell string"):
        in_single_quotes("https://x/'; rm -rf /; '")


def test_dockerfile_honours_constraints_and_extra_indexes(make_spec, example_manifest):
    from allora_gitops.render import DeploymentSettings, DeploymentSpec, render_build

    env = example_manifest.environment.model_copy(
        update={"constraints": "constraints.txt", "extra_index_urls": ["https://download.pytorch.org/whl/cpu"]}
    )
    manifest = example_manifest.model_copy(update={"environment": env})
    spec = DeploymentSpec.complete(
        manifest, sha256=EXAMPLE_SHA256, archive_size=1, settings=DeploymentSettings(network="testnet", base_image="python@sha256:" + "a" * 64)
    )
    tree = render_build(spec)
    dockerfile = tree["builds/linear-forecaster/1.0.0/Dockerfile"]
    assert "COPY requirements.txt constraints.txt ./" in dockerfile
    assert "--extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt -c constraints.txt allora-sdk==1.3.0" in dockerfile
    assert f"ARG BASE_IMAGE=python@sha256:{'a' * 64}\n" in dockerfile
    build = yaml.safe_load(tree["builds/linear-forecaster/1.0.0/build.yaml"])
    assert build["constraints_file"] == "constraints.txt"
    assert build["image"] == spec.image and build["archive"]["sha256"] == EXAMPLE_SHA256


def test_write_tree_parses_every_yaml_first_and_writes_nothing_when_one_is_broken(tmp_path):
    from allora_gitops.render import write_tree

    tree = {"a/ok.yaml": "a: 1\n", "b/broken.yaml": "a: [1\n", "c/Dockerfile": "FROM x\n"}
    with pytest.raises(RenderError) as err:
        write_tree(tree, tmp_path / "out")
    assert err.value.lines()[0] == "error: the rendered tree is invalid; nothing was written"
    assert err.value.problems[0].file == "b/broken.yaml"
    assert not (tmp_path / "out").exists()
    with pytest.raises(RenderError):
        write_tree({"../escape.yaml": "a: 1\n"}, tmp_path / "out")
    assert not (tmp_path / "escape.yaml").exists()


def _go_if_first_segment(text: str, first: str) -> str:
    """Evaluate the ApplicationSet's one conditional, ``{{if eq (index .path.segments 0) \"X\"}}A{{else}}B{{end}}``."""
    pattern = re.compile(r'\{\{if eq \(index \.path\.segments 0\) \\"([^"\\]+)\\"\}\}(.*?)\{\{else\}\}(.*?)\{\{end\}\}')
    return pattern.sub(lambda m: m.group(2) if m.group(1) == first else m.group(3), text)


def test_every_overlay_builds_and_every_object_validates_strictly(example_repo):
    """kubectl kustomize for each overlay; core kinds strict for KUBERNETES_VERSION; CRD kinds against the real CRDs."""
    from allora_gitops.verify.kustomize import build_overlays
    from allora_gitops.verify.schemas import schema_errors

    overlays = sorted(example_repo.glob("deployments/*/overlays/*"))
    assert [o.name for o in overlays] == ["mainnet", "testnet"]
    kinds = set()
    for result in build_overlays(overlays):
        assert result.error is None, result.error
        for obj in result.objects:
            kinds.add(obj["kind"])
            assert schema_errors(obj) == [], obj["kind"]
            assert obj["metadata"]["namespace"] == C.NAMESPACE
    assert kinds == {"Deployment", "ServiceAccount", "NetworkPolicy", "PodDisruptionBudget", "ExternalSecret", "PodMonitor", "PrometheusRule"}
    argocd = [yaml.safe_load((example_repo / "argocd" / f).read_text()) for f in ("appproject.yaml", "applicationset.yaml")]
    for obj in argocd:
        assert schema_errors(obj) == []
    # The Applications the ApplicationSet generates, one per overlay, validate against the Application CRD.
    appset = argocd[1]
    for overlay in overlays:
        path = overlay.relative_to(example_repo).as_posix()
        text = json.dumps(appset["spec"]["template"])
        text = _go_if_first_segment(text, path.split("/")[0])
        text = text.replace("{{index .path.segments 1}}", path.split("/")[1])
        text = text.replace("{{.path.basename}}", overlay.name).replace("{{.path.path}}", path)
        template = json.loads(text)
        app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", **template}
        app["metadata"]["namespace"] = "argocd"
        assert "{{" not in json.dumps(app)
        assert schema_errors(app) == []
    # And the schemas are really strict: a misspelt field is an error.
    broken = dict(argocd[0], spec={**argocd[0]["spec"], "sourceRepo": ["x"]})
    assert schema_errors(broken) == ["spec: Additional properties are not allowed ('sourceRepo' was unexpected)"]


def find_checkov() -> str:
    import shutil
    import sys

    beside = Path(sys.executable).parent / "checkov"
    found = str(beside) if beside.exists() else shutil.which("checkov")
    assert found, "checkov is needed (bash .ci/setup links it beside the interpreter)"
    return found


@pytest.mark.slow
def test_checkov_and_hadolint_report_nothing(example_repo, tmp_path):
    """checkov scans what the cluster receives (kustomize output, monitoring on) plus the Dockerfile, argocd/ and the dashboard."""
    from allora_gitops.verify.kustomize import build_overlays
    from allora_gitops.verify.tools import find_tool

    scan = tmp_path / "scan"
    scan.mkdir()
    overlays = sorted(example_repo.glob("deployments/*/overlays/*"))
    for overlay in overlays:
        proc = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True)
        (scan / f"{overlay.name}.yaml").write_text(proc.stdout)
    assert all(r.error is None for r in build_overlays(overlays))
    dockerfile = example_repo / "builds/linear-forecaster/1.0.0/Dockerfile"
    (scan / "Dockerfile").write_text(dockerfile.read_text())
    for f in (example_repo / "argocd").iterdir():
        (scan / f.name).write_text(f.read_text())
    from allora_gitops.render import write_tree
    from allora_gitops.render.dashboard import render_dashboard

    write_tree(render_dashboard(), example_repo)
    proc = subprocess.run(["kubectl", "kustomize", str(example_repo / "monitoring")], capture_output=True, text=True, check=True)
    (scan / "monitoring.yaml").write_text(proc.stdout)
    proc = subprocess.run(
        [find_checkov(), "-d", str(scan), "--framework", "kubernetes,dockerfile", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    summary = {r["check_type"]: r["summary"] for r in reports}
    assert set(summary) == {"kubernetes", "dockerfile"}
    assert summary["kubernetes"]["failed"] == 0 and summary["dockerfile"]["failed"] == 0, proc.stdout[:3000]
    assert summary["kubernetes"]["passed"] > 100 and summary["kubernetes"]["parsing_errors"] == 0
    skipped = sorted({c["check_id"] for r in reports for c in r["results"]["skipped_checks"]})
    assert skipped == ["CKV_DOCKER_7", "CKV_K8S_40", "CKV_K8S_43"]  # each listed with its reason in the README
    hadolint = subprocess.run([find_tool("hadolint", ""), "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert (hadolint.returncode, hadolint.stdout, hadolint.stderr) == (0, "", "")


def test_rendered_manifests_carry_the_security_defaults(example_repo):
    from allora_gitops.verify.kustomize import build_overlay

    objects = {o["kind"]: o for o in build_overlay(example_repo / "deployments/linear-forecaster/overlays/mainnet").objects}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "fsGroup": 1000, "runAsGroup": 1000, "runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["exec"]["command"] == ["python", "/workspace/bootstrap.pyz", "--healthcheck"]
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert container["image"] == f"localhost:5000/allora/linear-forecaster:1.0.0-{EXAMPLE_SHA256[:12]}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ALLORA_TOPIC_ID"] == "42" and env["ALLORA_NETWORK"] == "mainnet" and env["ALLORA_FEE_TIER"] == "PRIORITY"
    assert env[C.WALLET_DIR_ENV] == C.WALLET_DIR_IN_POD and "ALLORA_MNEMONIC" not in env
    wallet = next(v for v in pod["volumes"] if v["name"] == "wallet")
    assert wallet["secret"]["secretName"] == "linear-forecaster-mainnet-wallet"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["wallet"] == {"name": "wallet", "mountPath": C.WALLET_DIR_IN_POD, "readOnly": True}
    assert mounts["tmp"]["mountPath"] == "/tmp"
    policy = objects["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"] == objects["Deployment"]["spec"]["selector"]["matchLabels"]
    assert [p["port"] for rule in policy["egress"] for p in rule["ports"]] == [53, 53, 443]
    assert "ExternalSecret" not in objects  # mainnet names an existing Secret


def test_render_cli_writes_the_tree_and_refuses_bad_inputs(cli_proc, tmp_path):
    out = tmp_path / "repo"
    bundle = Path(__file__).parent.parent / "examples" / "linear-forecaster"
    ok = cli_proc("gitops", "render", bundle, "--network", "testnet", "--archive-url", "s3://b/k.tar.gz", "-o", out)
    assert ok.code == 0, ok.err
    assert (out / "deployments/linear-forecaster/overlays/testnet/kustomization.yaml").is_file()
    assert (out / "builds/linear-forecaster/1.0.0/build.yaml").is_file()
    assert not (out / "argocd").exists()  # only with --repo-url

    bad = tmp_path / "bad"
    for args, line in [
        (["--network", "devnet"], "error: network: Input should be 'testnet' or 'mainnet' (got 'devnet')"),
        (["--network", "testnet", "--topic-id", "0"], "error: topic-id: Input should be greater than 0 (got 0)"),
        (
            ["--network", "testnet", "--topic-id", "9" * 20],
            f"error: topic-id: Input should be less than or equal to 9223372036854775807 (got {'9' * 20})",
        ),
        (["--network", "testnet", "--memory", "2 GB"], "error: memory: '2 GB' is not a Kubernetes memory quantity like 512Mi or 2Gi"),
    ]:
        result = cli_proc("gitops", "render", bundle, *args, "-o", bad)
        assert (result.code, result.lines) == (2, [line])
        assert not bad.exists()


def test_render_into_a_file_or_a_blocked_path_is_one_line_and_writes_nothing(cli_proc, tmp_path):
    from allora_gitops.render import write_tree

    bundle = Path(__file__).parent.parent / "examples" / "linear-forecaster"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    result = cli_proc("gitops", "render", bundle, "--network", "testnet", "--archive-url", "s3://b/k.tar.gz", "-o", a_file)
    assert (result.code, result.lines) == (1, [f"error: {a_file} is not a directory; nothing was written"])
    assert a_file.read_text() == "mine\n"

    # "b/" is a file in the output: "a/ok.yaml" (sorted first) must not be written either, nor its directory left behind
    out = tmp_path / "repo"
    out.mkdir()
    (out / "b").write_text("in the way\n")
    with pytest.raises(RenderError) as err:
        write_tree({"a/ok.yaml": "a: 1\n", "b/c/d.yaml": "a: 2\n"}, out)
    assert err.value.lines() == [f"error: cannot write {out / 'b/c/d.yaml'}: Not a directory; nothing was written"]
    assert sorted(p.name for p in out.iterdir()) == ["b"]


def test_render_cli_refuses_a_bundle_that_fails_validation(cli_proc, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "linear-forecaster", bundle)
    text = (bundle / "model.yaml").read_text().replace('name: "linear-forecaster"', 'name: "Linear_Forecaster"')
    (bundle / "model.yaml").write_text(text)
    out = tmp_path / "repo"
    result = cli_proc("gitops", "render", bundle, "--network", "testnet", "-o", out)
    assert result.code == 1
    problem = [line for line in result.lines if "model.yaml:3:7: error: " in line]
    assert len(problem) == 1 and "name 'Linear_Forecaster' must be a lowercase DNS-1123 label" in problem[0]
    assert not out.exists()


def test_render_from_a_directory_or_its_built_archive_gives_the_same_tree(cli_proc, tmp_path):
    from allora_gitops.bundle.archive import build_archive

    bundle = Path(__file__).parent.parent / "examples" / "linear-forecaster"
    built = build_archive(bundle, tmp_path / "dist")
    args = ["--network", "mainnet", "--archive-url", "s3://b/k.tar.gz", "--repo-url", "https://git.example.com/r.git"]
    from_dir = cli_proc("gitops", "render", bundle, *args, "-o", tmp_path / "a")
    from_archive = cli_proc("gitops", "render", built.path, *args, "-o", tmp_path / "b")
    assert from_dir.code == 0 and from_archive.code == 0, from_dir.err + from_archive.err
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 16  # argocd/ holds 3 files (notifications-cm.yaml), deployments 13
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)
    build = yaml.safe_load((tmp_path / "b/builds/linear-forecaster/1.0.0/build.yaml").read_text())
    assert build["archive"] == {"url": "s3://b/k.tar.gz", "sha256": built.sha256, "size": built.size}
    assert build["image"] == f"localhost:5000/allora/linear-forecaster:1.0.0-{built.sha256[:12]}"
    assert from_archive.err.strip() == f"rendered linear-forecaster 1.0.0 for mainnet: image {build['image']}"


def test_the_default_archive_url_is_the_stores_url_for_the_archive(example_manifest, monkeypatch, tmp_path):
    from allora_gitops.render import DeploymentSettings, DeploymentSpec

    def url(**env):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        return DeploymentSpec.complete(
            example_manifest, sha256=EXAMPLE_SHA256, archive_size=1, settings=DeploymentSettings(network="testnet")
        ).archive_url

    monkeypatch.delenv(C.STORE_URL_ENV, raising=False)
    key = C.archive_object_key("linear-forecaster", "1.0.0", EXAMPLE_SHA256)
    assert url(ALLORA_GITOPS_HOME=str(tmp_path)) == (tmp_path / "objects" / key).as_uri()
    assert url(ALLORA_STORE_URL="s3://bundles/prod") == f"s3://bundles/prod/{key}"
    assert not (tmp_path / "objects").exists()  # rendering creates nothing

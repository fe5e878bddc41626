"""model.yaml's model configuration end to end through render: environment.variables and environment.secrets in the
container's env (a Secret reference or an ExternalSecret key), environment.system_packages and artifacts.remote in the
Dockerfile, runtime.gpus as a limit with its placement and base image — each checked by kubectl kustomize, the strict
schemas, the policy and hadolint (``verify_repo`` runs all four), and each refusal as one clear line.
"""

from __future__ import annotations

import pytest
import yaml

from allora_gitops import constants as C
from allora_gitops.errors import SettingsError
from tests.conftest import EXAMPLES
from tests.fixtures.rendered import EXAMPLE_ARCHIVE_URL, EXAMPLE_SHA256

DIGEST = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
CUDA_IMAGE = "registry.example.com/ml/cuda-python:{python}-12.4.1"
CONFIG = f"""\
  variables:
    LOG_LEVEL: "debug"
    WINDOW: 24
  secrets: [MARKET_API_KEY, MARKET_API_SECRET]
  system_packages: [libgomp1, jq]
artifacts:
  remote:
    - path: artifacts/weights.bin
      url: https://models.example.com/linear/weights.bin
      sha256: "{DIGEST}"
"""


def configured_text(gpus: int | None = 1) -> str:
    text = (EXAMPLES / "linear-forecaster" / "model.yaml").read_text()
    pip = '  pip_requirements: "requirements.txt"\n'
    text = text.replace(pip, pip + CONFIG)
    return text.replace("cpu_cores: 0.25", f"cpu_cores: 0.25\n  gpus: {gpus}") if gpus else text


@pytest.fixture(scope="module")
def configured():
    from allora_gitops.bundle.manifest import load_manifest_text

    return load_manifest_text(configured_text(), "model.yaml").manifest


SECRETS = {"MARKET_API_KEY": "market-data/api-key", "MARKET_API_SECRET": "market-data/api-secret"}
REPO_SETTINGS = dict(
    system_packages_allowed=("libgomp1", "jq", "ffmpeg"),
    gpu_base_image=CUDA_IMAGE,
    gpu_node_selector={"nvidia.com/gpu.present": "true"},
)


def spec_of(manifest, network="testnet", **settings):
    from allora_gitops.render import DeploymentSettings, DeploymentSpec

    settings.setdefault("archive_url", EXAMPLE_ARCHIVE_URL)
    return DeploymentSpec.complete(manifest, sha256=EXAMPLE_SHA256, archive_size=4242, settings=DeploymentSettings(network=network, **settings))


def deployment(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment")


def test_the_configured_bundle_renders_into_a_clean_repository(example_repo, configured):
    """testnet through a secret store (ExternalSecret), mainnet with plain Secret references: verify finds nothing."""
    from allora_gitops.render import write_tree, render_deployment
    from allora_gitops.verify import verify_repo
    from allora_gitops.verify.kustomize import build_overlay
    from allora_gitops.verify.schemas import schema_errors

    testnet = spec_of(configured, secrets={"MARKET_API_KEY": "teams/quant/market-data/api-key", "MARKET_API_SECRET": "teams/quant/market-data/secret"},
                      secret_store="allora-vault", **REPO_SETTINGS)  # fmt: skip
    mainnet = spec_of(configured, "mainnet", secrets=SECRETS, wallet_secret="linear-forecaster-mainnet-wallet", **REPO_SETTINGS)
    write_tree({**render_deployment(testnet), **render_deployment(mainnet)}, example_repo)

    report = verify_repo(example_repo)  # kustomize, strict schemas + CRDs, policy, the AppProject, hadolint
    assert report.findings == [], [str(p) for p in report.findings]
    assert len(report.overlays) == 2 and report.dockerfiles == ["builds/linear-forecaster/1.0.0/Dockerfile"]

    overlays = example_repo / "deployments/linear-forecaster/overlays"
    objects = {n: build_overlay(overlays / n).objects for n in ("testnet", "mainnet")}
    for obj in objects["testnet"] + objects["mainnet"]:
        assert schema_errors(obj) == [], obj["kind"]
    for network, objs in objects.items():
        pod = deployment(objs)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "debug"} and env["WINDOW"]["value"] == "24"
        assert env["BUNDLE_ROOT"]["value"] == C.BUNDLE_ROOT_IN_IMAGE  # the base's env is kept beside the model's
        assert container["resources"]["limits"][C.GPU_RESOURCE] == "1"
        assert C.GPU_RESOURCE not in container["resources"]["requests"]  # an extended resource's request defaults to its limit
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert pod["tolerations"] == [{"effect": "NoSchedule", "key": C.GPU_RESOURCE, "operator": "Exists"}]
        assert all("value" not in env[n] for n in SECRETS)
    # mainnet: each variable reads the operator's Secret and key directly
    env = {e["name"]: e for e in deployment(objects["mainnet"])["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MARKET_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "market-data", "key": "api-key"}}
    assert env["MARKET_API_SECRET"]["valueFrom"] == {"secretKeyRef": {"name": "market-data", "key": "api-secret"}}
    assert not [o for o in objects["mainnet"] if o["kind"] == "ExternalSecret"]
    # checkov's "secrets as files" is skipped, with its reason, only where secrets are env vars by model.yaml's contract
    annotations = deployment(objects["mainnet"])["metadata"]["annotations"]
    assert annotations["checkov.io/skip3"].startswith("CKV_K8S_35=model.yaml environment.secrets are environment variables by contract")
    # testnet: one ExternalSecret makes the Secret the env reads, one key per variable, from the store's keys
    env = {e["name"]: e for e in deployment(objects["testnet"])["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MARKET_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "linear-forecaster-testnet-env", "key": "MARKET_API_KEY"}}
    (external,) = [o for o in objects["testnet"] if o["kind"] == "ExternalSecret" and o["metadata"]["name"] == "linear-forecaster-env-testnet"]
    assert external["spec"]["target"]["name"] == "linear-forecaster-testnet-env"
    assert external["spec"]["data"] == [
        {"secretKey": "MARKET_API_KEY", "remoteRef": {"key": "teams/quant/market-data", "property": "api-key"}},
        {"secretKey": "MARKET_API_SECRET", "remoteRef": {"key": "teams/quant/market-data", "property": "secret"}},
    ]
    # the CUDA-capable base image of the repository settings, with the bundle's Python
    build = yaml.safe_load((example_repo / "builds/linear-forecaster/1.0.0/build.yaml").read_text())
    assert build["base_image"] == "registry.example.com/ml/cuda-python:3.11-12.4.1"
    assert build["remote_artifacts"] == {"max_bytes": C.DEFAULT_REMOTE_ARTIFACT_MAX_BYTES, "allow_private_addresses": False}


def test_the_dockerfile_installs_the_packages_and_copies_the_remote_artifacts_by_digest(configured):
    from allora_gitops.render import render_build

    dockerfile = render_build(spec_of(configured, secrets=SECRETS, **REPO_SETTINGS))["builds/linear-forecaster/1.0.0/Dockerfile"]
    lines = dockerfile.splitlines()
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN apt-get update"))
    assert lines[install - 1] == "# hadolint ignore=DL3008"
    assert lines[install + 1] == " && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgomp1 jq \\"
    assert lines[install + 2] == " && rm -rf /var/lib/apt/lists/*"
    # in the runtime stage, before the venv and the user switch (apt needs root)
    assert lines.index("FROM ${BASE_IMAGE}") < install < lines.index("COPY --from=build /opt/venv /opt/venv") < lines.index("USER 1000:1000")
    copy = f"COPY {C.BUILD_CONTEXT_REMOTE_ARTIFACTS}/{DIGEST} {C.BUNDLE_ROOT_IN_IMAGE}/artifacts/weights.bin"
    check = (
        f'RUN test "$(sha256sum {C.BUNDLE_ROOT_IN_IMAGE}/artifacts/weights.bin)" = '
        f"'{DIGEST}  {C.BUNDLE_ROOT_IN_IMAGE}/artifacts/weights.bin'"
    )
    # before the bundle's code: a code-only change never copies the weights again
    assert lines.index(copy) < lines.index(check) < lines.index(f"COPY --from=build {C.BUNDLE_ROOT_IN_IMAGE} {C.BUNDLE_ROOT_IN_IMAGE}")


def test_a_bundle_without_the_new_keys_renders_as_before(make_spec):
    from allora_gitops.render import render_deployment

    tree = render_deployment(make_spec("testnet", secret_store="allora-vault"))
    text = "\n".join(tree.values())
    assert "apt-get" not in text and C.GPU_RESOURCE not in text and "secretKeyRef" not in text and "remote-artifacts" not in text
    assert "CKV_K8S_35" not in text


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"secrets": {"MARKET_API_KEY": "market-data/api-key"}},
         "secret: model.yaml declares the secret MARKET_API_SECRET but it is not mapped; pass --secret MARKET_API_SECRET=SECRET/KEY"),
        ({"secrets": {**SECRETS, "OTHER": "x/y"}},
         "secret: 'OTHER' is not declared in model.yaml's environment.secrets (declared: MARKET_API_KEY, MARKET_API_SECRET)"),
        ({"secrets": {**SECRETS, "MARKET_API_KEY": "sk-live-4f3c2a1b"}},
         "secret: MARKET_API_KEY: expected SECRET/KEY (a Secret's name and one of its keys)"),
        ({"secrets": {**SECRETS, "MARKET_API_KEY": "Market_Data/api key"}},
         "secret: MARKET_API_KEY: the KEY of SECRET/KEY is not a Secret key (letters, digits, '-', '_' and '.')"),
        ({"secrets": {**SECRETS, "MARKET_API_KEY": "Market_Data/api-key"}},
         "secret: MARKET_API_KEY: the SECRET of SECRET/KEY is not a Kubernetes Secret name (lowercase letters, digits, '-' and '.')"),
        ({"secrets": SECRETS, "system_packages_allowed": ("libgomp1",)},
         "system-packages: jq is not in the repository's allow-list (system_packages.allowed: libgomp1); "
         "an admin allows them with `allora-gitops repo config system_packages.allowed libgomp1,jq`"),
        ({"secrets": SECRETS, "system_packages_allowed": ()},
         "system-packages: libgomp1, jq are not in the repository's allow-list (system_packages.allowed: none)"),
        ({"secrets": SECRETS, "gpu_base_image": None},
         "base-image: runtime.gpus is 1 but no CUDA-capable base image is set; set gpu.base_image in .allora-gitops.yaml"),
    ],
)
def test_each_deployment_refusal_is_one_line_naming_what_to_do(configured, settings, message):
    merged = {**REPO_SETTINGS, **settings}
    with pytest.raises(SettingsError) as err:
        spec_of(configured, **merged)
    assert str(err.value).startswith(message) and not err.value.problems, str(err.value)
    assert "sk-live" not in str(err.value)  # a pasted value is never quoted back


def test_several_refusals_come_together(configured):
    with pytest.raises(SettingsError) as err:
        spec_of(configured, system_packages_allowed=())
    assert [p.message.split(":")[0] for p in err.value.problems] == ["secret", "secret", "system-packages", "base-image"]


def test_an_explicit_base_image_serves_a_gpu_bundle_and_outside_a_repository_nothing_is_enforced(configured):
    spec = spec_of(configured, secrets=SECRETS, base_image="nvcr.io/nvidia/pytorch:24.05-py3")
    assert spec.base_image == "nvcr.io/nvidia/pytorch:24.05-py3"
    assert spec.gpu_tolerations == ({"key": C.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)


def test_the_gpu_policy_rule(configured):
    from allora_gitops.verify.policy import check_object

    def pod(resources: dict, **spec) -> dict:
        container = {
            "name": "model", "image": "r/x:1", "resources": resources, "livenessProbe": {"exec": {"command": ["true"]}},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        }  # fmt: skip
        return {"kind": "Pod", "spec": {"automountServiceAccountToken": False, "containers": [container], **spec}}

    base = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    gpu = {"requests": base["requests"], "limits": {**base["limits"], C.GPU_RESOURCE: "2"}}
    toleration = [{"key": C.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    assert list(check_object(pod(gpu, tolerations=toleration))) == []
    assert list(check_object(pod(gpu, nodeSelector={"gpu": "a100"}))) == []
    assert list(check_object(pod(base))) == []
    assert list(check_object(pod(gpu))) == [
        ("gpu", "the pod uses nvidia.com/gpu but has no nodeSelector, affinity or toleration for GPU nodes (gpu.* in .allora-gitops.yaml)")
    ]
    assert list(check_object(pod(base, tolerations=toleration))) == [
        ("gpu", "the pod tolerates the nvidia.com/gpu taint but uses no GPU: it would hold a GPU node's place")
    ]
    half = {"requests": base["requests"], "limits": {**base["limits"], C.GPU_RESOURCE: "0.5"}}
    assert list(check_object(pod(half, tolerations=toleration))) == [  # both rules hold: 0.5 is also no canonical form
        ("canonical-quantity", "container model: limits.nvidia.com/gpu 0.5 is stored by the API server as 500m; Argo CD would show it OutOfSync for ever"),
        ("gpu", "container model: limits.nvidia.com/gpu must be a whole number of GPUs, got '0.5'"),
    ]
    unequal = {"requests": {**base["requests"], C.GPU_RESOURCE: "1"}, "limits": gpu["limits"]}
    assert list(check_object(pod(unequal, tolerations=toleration))) == [
        ("gpu", "container model: requests.nvidia.com/gpu (1) must equal the limit (2)")
    ]


def test_a_re_render_keeps_the_mapping_the_live_overlay_has(configured):
    from allora_gitops.render import render_deployment
    from allora_gitops.render.tree import secret_mapping_of_overlay

    for store in (None, "allora-vault"):
        mapping = {"MARKET_API_KEY": "teams/q/market/api-key", "MARKET_API_SECRET": "teams/q/market/secret"} if store else SECRETS
        tree = render_deployment(spec_of(configured, secrets=mapping, secret_store=store, **REPO_SETTINGS))
        overlay = C.deployment_overlay_dir("linear-forecaster", "testnet") + "/"
        files = {p[len(overlay):]: t for p, t in tree.items() if p.startswith(overlay)}
        assert secret_mapping_of_overlay(files) == mapping
    assert secret_mapping_of_overlay({}) == {}


def files_of(root) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_render_cli_maps_secrets_and_refuses_a_malformed_mapping(cli, tmp_path):
    bundle = tmp_path / "bundle"
    import shutil

    shutil.copytree(EXAMPLES / "linear-forecaster", bundle, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    (bundle / "model.yaml").write_text(configured_text(gpus=None))
    out = tmp_path / "repo"
    args = ("gitops", "render", bundle, "-o", out, "--archive-url", EXAMPLE_ARCHIVE_URL)
    r = cli(*args, "--secret", "MARKET_API_KEY=market-data/api-key", "--secret", "MARKET_API_SECRET=market-data/api-secret")
    assert r.code == 0, r.err
    patch = yaml.safe_load((out / C.deployment_overlay_dir("linear-forecaster", "testnet") / "deployment-patch.yaml").read_text())
    env = {e["name"]: e for e in patch["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MARKET_API_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "market-data", "key": "api-secret"}
    written = files_of(out)

    r = cli(*args, "--secret", "MARKET_API_KEY")
    assert (r.code, r.err) == (2, "error: --secret MARKET_API_KEY: expected NAME=SECRET/KEY\n")
    r = cli(*args, "--secret", "MARKET_API_KEY=a/b", "--secret", "MARKET_API_KEY=c/d")
    assert (r.code, r.err) == (2, "error: --secret MARKET_API_KEY: given twice\n")
    r = cli(*args, "--secret", "MARKET_API_KEY=market-data/api-key")
    assert r.code == 2 and r.err == (
        "error: secret: model.yaml declares the secret MARKET_API_SECRET but it is not mapped; pass --secret MARKET_API_SECRET=SECRET/KEY"
        ' (API: secrets: {"MARKET_API_SECRET": "SECRET/KEY"})\n'
    )
    assert files_of(out) == written  # the refused renders wrote nothing


def test_repository_settings_for_model_configuration_are_set_from_the_command_line():
    from allora_gitops.errors import UsageError
    from allora_gitops.gitops.settings import RepositorySettings, settings_keys, set_setting

    s = RepositorySettings(repo_url="https://git.example.com/p/d.git")
    assert {"system_packages.allowed", "remote_artifacts.max_bytes", "remote_artifacts.allow_private_addresses",
            "gpu.base_image", "gpu.node_selector", "gpu.tolerations"} <= set(settings_keys())  # fmt: skip
    s = set_setting(s, "system_packages.allowed", "libgomp1, ffmpeg")
    s = set_setting(s, "remote_artifacts.allow_private_addresses", "true")
    s = set_setting(s, "remote_artifacts.max_bytes", "1073741824")
    s = set_setting(s, "gpu.base_image", CUDA_IMAGE)
    s = set_setting(s, "gpu.node_selector", '{nvidia.com/gpu.present: "true"}')
    s = set_setting(s, "gpu.tolerations", "[{key: gpu-pool, operator: Equal, value: a100, effect: NoSchedule}]")
    d = s.deployment_defaults()
    assert d["system_packages_allowed"] == ("libgomp1", "ffmpeg") and d["artifact_allow_private"] is True and d["artifact_max_bytes"] == 1 << 30
    assert d["gpu_base_image"] == CUDA_IMAGE and d["gpu_node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert d["gpu_tolerations"] == ({"key": "gpu-pool", "operator": "Equal", "value": "a100", "effect": "NoSchedule"},)
    for key, raw, message in (
        ("system_packages.allowed", "libgomp1,Bad_Name", "system_packages.allowed: 'Bad_Name' is not a Debian package name"),
        ("gpu.base_image", "cuda:latest", "gpu.base_image: 'cuda:latest' is not a pinned image reference"),
        ("gpu.tolerations", "[{operator: Sometimes}]", "gpu.tolerations: Input should be 'Exists' or 'Equal'"),
        ("remote_artifacts.max_bytes", "0", "remote_artifacts.max_bytes: Input should be greater than 0"),
    ):
        with pytest.raises(UsageError) as err:
            set_setting(s, key, raw)
        assert str(err.value).startswith(message), str(err.value)


def test_a_sandbox_of_the_configured_bundle_keeps_its_env_secrets_and_gpu_placement(configured, tmp_path):
    """The sandbox Job is the Deployment's pod: the model's env, its Secret references and the GPU node placement."""
    from allora_gitops.render import write_tree
    from allora_gitops.render.sandbox import SandboxRun, render_sandbox
    from allora_gitops.verify import verify_repo
    from allora_gitops.verify.kustomize import build_overlay

    spec = spec_of(configured, secrets=SECRETS, wallet_secret="allora-sandbox-wallet", **REPO_SETTINGS)
    write_tree(render_sandbox(spec, SandboxRun(1800, "2026-12-01T01:00:00Z", "alice", "allora-sandbox-wallet")), tmp_path / "repo")
    report = verify_repo(tmp_path / "repo")
    assert report.findings == [], [str(p) for p in report.findings]
    (directory,) = (tmp_path / "repo" / C.SANDBOXES_DIR).iterdir()
    job = next(o for o in build_overlay(directory).objects if o["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["LOG_LEVEL"]["value"] == "debug" and env["MARKET_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "market-data", "key": "api-key"}
    assert pod["containers"][0]["resources"]["limits"][C.GPU_RESOURCE] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and pod["tolerations"][0]["key"] == C.GPU_RESOURCE


def test_run_sets_the_variables_model_yaml_gives_the_container(cli, tmp_path, monkeypatch):
    """`allora-bundle run` is the container's adapter: environment.variables reach the function as they would there
    (over the caller's value), and a declared secret comes from the caller's environment, as from its Secret."""
    bundle = tmp_path / "env-probe"
    assert cli("bundle", "init", "env-probe", "--dir", bundle).code == 0
    text = (bundle / "model.yaml").read_text()
    text = text.replace(
        '  pip_requirements: "requirements.txt"\n',
        '  pip_requirements: "requirements.txt"\n  variables:\n    WINDOW: 24\n  secrets: [MARKET_API_KEY]\n',
    )
    (bundle / "model.yaml").write_text(text)
    (bundle / "src" / "env_probe" / "runner.py").write_text(
        "import os\n\ndef run(nonce):\n    return float(os.environ['WINDOW']) + len(os.environ.get('MARKET_API_KEY', ''))\n"
    )
    monkeypatch.setenv("WINDOW", "7")
    monkeypatch.setenv("MARKET_API_KEY", "abc")
    result = cli("bundle", "run", bundle, "--here", "-n", "1000")
    assert result.code == 0, result.err
    assert result.out.startswith("1000 → 27.0 ")


def test_validate_imports_with_the_variables_model_yaml_gives_the_container(cli, tmp_path):
    """A module reading an environment.variables value at import is not an import error: the probe sets them too."""
    bundle = tmp_path / "env-import"
    assert cli("bundle", "init", "env-import", "--dir", bundle).code == 0
    text = (bundle / "model.yaml").read_text()
    (bundle / "model.yaml").write_text(
        text.replace('  pip_requirements: "requirements.txt"\n', '  pip_requirements: "requirements.txt"\n  variables:\n    WINDOW: 24\n')
    )
    (bundle / "src" / "env_import" / "runner.py").write_text(
        "import os\n\nWINDOW = int(os.environ['WINDOW'])\n\n\ndef run(nonce):\n    return float(WINDOW)\n"
    )
    result = cli("bundle", "validate", bundle)
    assert result.code == 0, result.out + result.err
    assert "KeyError" not in result.out + result.err


def test_the_image_smoke_test_imports_with_the_variables_model_yaml_gives_the_container(cli, tmp_path):
    """`bootstrap.pyz --check` (the Dockerfile's last RUN) has no Deployment env: it sets environment.variables itself,
    never over a value the environment has."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    bundle = tmp_path / "env-check"
    assert cli("bundle", "init", "env-check", "--dir", bundle).code == 0
    text = (bundle / "model.yaml").read_text()
    (bundle / "model.yaml").write_text(
        text.replace('  pip_requirements: "requirements.txt"\n', '  pip_requirements: "requirements.txt"\n  variables:\n    WINDOW: 24\n')
    )
    (bundle / "src" / "env_check" / "runner.py").write_text(
        "import os\n\nWINDOW = int(os.environ['WINDOW'])\n\n\ndef run(nonce):\n    return float(WINDOW)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "WINDOW"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    command = [sys.executable, "-m", "allora_runtime", "--check", "--bundle-root", str(bundle)]
    checked = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert '"value": 24.0' in checked.stdout
    kept = subprocess.run(command, env={**env, "WINDOW": "5"}, capture_output=True, text=True, timeout=120)
    assert kept.returncode == 0 and '"value": 5.0' in kept.stdout


@pytest.mark.parametrize("pasted", ["4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318", "sk live 9f8e7d6c", "abandon " * 11 + "about"])
def test_a_secret_value_passed_as_the_whole_secret_option_is_never_echoed(cli, tmp_path, pasted):
    """`--secret VALUE` (the value pasted instead of NAME=SECRET/KEY) is a usage error that never quotes the argument."""
    r = cli("gitops", "render", EXAMPLES / "linear-forecaster", "-o", tmp_path / "repo", "--secret", pasted)
    assert (r.code, r.err) == (2, "error: --secret …: expected NAME=SECRET/KEY\n")
    assert not (tmp_path / "repo").exists()

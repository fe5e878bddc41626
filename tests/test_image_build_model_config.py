"""One real image build of a bundle with a system package and a remote artifact (model.yaml's model configuration).

The bundle is the linear-forecaster example with its weights moved out of the archive into ``artifacts.remote``,
served over https from loopback (tests/fixtures/artifacts.py, trusted through SSL_CERT_FILE), and with ``jq`` in
``environment.system_packages``; its module asserts ``jq`` is on PATH and loads the weights at import, so the
image's smoke test (``bootstrap.pyz --check``) passes only when both really landed. The build directory is rendered
the way publish renders it from repository settings that allow loopback (remote_artifacts.allow_private_addresses)
and list ``jq`` (system_packages.allowed). The refusals (a wrong sha256, loopback not allowed) stop before the
builder starts, so they cost no build.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from allora_gitops import constants as C
from tests.conftest import cli_env
from tests.fixtures.artifacts import remote_weights_bundle
from tests.test_image_build import host_ca_bundle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def gitops(*args, ca: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    """``allora-gitops`` trusting ``ca``, with the state directory (the artifact cache) beside the CA file."""
    env = {"SSL_CERT_FILE": str(ca), "ALLORA_GITOPS_HOME": str(ca.parent / "state")}
    return subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.gitops", *map(str, args)],
        capture_output=True, text=True, env=cli_env(env), timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def trust_bundle(artifact_server, directory: Path) -> Path:
    """The host's CA bundle plus the test server's CA: what an operator behind a private CA points SSL_CERT_FILE at."""
    path = directory / "ca-bundle.pem"
    path.write_bytes(host_ca_bundle().read_bytes() + b"\n" + artifact_server.ca_file.read_bytes())
    return path


@pytest.fixture(scope="module")
def trust(artifact_server, tmp_path_factory) -> Path:
    return trust_bundle(artifact_server, tmp_path_factory.mktemp("trust"))


def build_dir_for(bundle: Path, root: Path, **settings) -> Path:
    """builds/<name>/<version>/ as publish renders it (the archive in a file:// store), with the repository's settings."""
    from allora_gitops.bundle.archive import build_archive
    from allora_gitops.render import DeploymentSettings, DeploymentSpec, render_build, write_tree
    from allora_gitops.storage.objects import open_store

    archive = build_archive(bundle, root / "dist")
    store = open_store((root / "store").as_uri())
    put = store.put_file(C.archive_object_key(archive.manifest.name, archive.manifest.version, archive.sha256), archive.path, archive.sha256)
    spec = DeploymentSpec.complete(
        archive.manifest, sha256=archive.sha256, archive_size=archive.size,
        settings=DeploymentSettings(network="testnet", archive_url=put.url, **settings),
    )  # fmt: skip
    write_tree(render_build(spec), root / "repo")
    return root / "repo" / C.build_dir(spec.name, spec.version)


ALLOWING = {"artifact_allow_private": True, "system_packages_allowed": ("jq",)}


@pytest.fixture(scope="module")
def built(base_image, artifact_server, trust, tmp_path_factory):
    root = tmp_path_factory.mktemp("model-config-image")
    bundle = remote_weights_bundle(root / "remote-weights", artifact_server, system_packages=("jq",), require_tools=("jq",))
    (bundle / ".allorabundleignore").write_text("/artifacts/weights.npy\n")
    build_dir = build_dir_for(bundle, root, **ALLOWING)
    hits_before = sum(artifact_server.hits.values())
    proc = gitops(
        "build-image", build_dir, "--base-image", base_image.ref, "--pip-cert", host_ca_bundle(), "--no-record", "--json", ca=trust,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-5000:]
    return {"result": json.loads(proc.stdout), "log": proc.stderr, "bundle": bundle, "fetches": sum(artifact_server.hits.values()) - hits_before}


def run_in(image: str, *command: str) -> subprocess.CompletedProcess:
    container = subprocess.run(["buildah", "--storage-driver", "vfs", "from", "--pull=false", image], capture_output=True, text=True, check=True)
    name = container.stdout.strip().splitlines()[-1]
    try:
        return subprocess.run(
            ["buildah", "--storage-driver", "vfs", "run", "--isolation", "chroot", name, "--", *command], capture_output=True, text=True, timeout=300
        )
    finally:
        subprocess.run(["buildah", "--storage-driver", "vfs", "rm", name], capture_output=True)


def test_the_image_holds_the_system_package_and_the_remote_weights_and_its_smoke_test_passed(built):
    log, image = built["log"], built["result"]["image"]
    assert "apt-get install -y --no-install-recommends jq" in log
    assert "fetching artifacts/weights.npy from https://localhost:" in log and built["fetches"] == 1
    assert '"python", "/workspace/bootstrap.pyz", "--check"' in log  # the smoke test step ran (and passed: exit 0)
    weights = (Path(__file__).parent.parent / "examples/linear-forecaster/artifacts/weights.npy").read_bytes()
    probe = run_in(image, "sh", "-c", f"command -v jq; sha256sum {C.BUNDLE_ROOT_IN_IMAGE}/artifacts/weights.npy; "
                                      f"stat -c '%u:%g %a' {C.BUNDLE_ROOT_IN_IMAGE}/artifacts/weights.npy; ls /var/lib/apt/lists")  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert lines[0] == "/usr/bin/jq"
    assert lines[1] == f"{hashlib.sha256(weights).hexdigest()}  {C.BUNDLE_ROOT_IN_IMAGE}/artifacts/weights.npy"
    assert lines[2] == "0:0 644"  # root's, read-only to the runtime user like the rest of the bundle
    assert lines[3:] == []  # apt's lists were removed in the same layer
    dry = run_in(image, "python", C.BOOTSTRAP_IN_IMAGE, "--dry-run", "--nonce", "1000")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert [json.loads(x)["event"] for x in dry.stdout.splitlines() if x.startswith("{")].count("prediction") == 1

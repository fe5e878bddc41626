"""End to end: build the rendered Dockerfile of the example bundle into a real image, run it, look inside.

No registry is reachable here, so the base image is the debootstrap stand-in for
``python:3.11-slim`` (tests/fixtures/images.py), and pip and uv inside the build reach
PyPI only through the host's CA bundle, passed as the ``pipcert`` build secret.
Two builds in all (vfs storage is slow): the GitOps build directory, then a
code-only change of the bundle from its source directory, which must reuse the
requirements layers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from allora_gitops import constants as C
from tests.conftest import EXAMPLES, cli_env
from tests.test_image import IMAGE_REPO, make_build_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

EXAMPLE = EXAMPLES / "linear-forecaster"
EXTRA_TAG = "localhost/allora-test/linear-forecaster:candidate"


def host_ca_bundle() -> Path:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail("no CA bundle on this machine to hand pip as the pipcert build secret")


def gitops(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.gitops", *map(str, args)],
        capture_output=True, text=True, env=cli_env(), timeout=timeout, stdin=subprocess.DEVNULL,
    )


def buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["buildah", "--storage-driver", "vfs", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} failed: {proc.stderr}")
    return proc


@dataclass
class Built:
    result: dict
    log: str
    seconds: float
    archive_sha256: str
    oci_archive: Path
    database_url: str
    deployment_id: str


@pytest.fixture(scope="module")
def first_build(base_image, tmp_path_factory, shared_database_url) -> Built:
    """The example published the way publish leaves it (archive in a store, builds/ rendered, a live
    deployment row), then ``build-image builds/linear-forecaster/1.0.0``."""
    from allora_gitops.bundle.archive import build_archive
    from allora_gitops.db.records import Records

    root = tmp_path_factory.mktemp("image-e2e")
    archive = build_archive(EXAMPLE, root / "dist")
    build_dir = make_build_dir(root / "repo", archive, store_root=root / "store")
    database_url = shared_database_url
    with Records(database_url) as records:
        bundle = records.register_bundle(
            name="linear-forecaster", version="1.0.0", sha256=archive.sha256, size=archive.size,
            archive_url=(root / "store" / C.archive_object_key("linear-forecaster", "1.0.0", archive.sha256)).as_uri(), python_version="3.11", manifest=archive.manifest,
        )
        deployment = records.create_deployment(
            bundle_id=bundle.id, network="testnet", topic_id=69, wallet_secret_name="linear-forecaster-testnet-wallet",
            repo_url="https://git.example.com/platform/gitops.git", repo_branch="deploy/linear-forecaster/testnet/1.0.0",
        )
    oci = root / "image.oci.tar"
    started = time.perf_counter()
    proc = gitops(
        "build-image", build_dir, "--base-image", base_image.ref, "--pip-cert", host_ca_bundle(),
        "--output", f"oci-archive:{oci}", "--database-url", database_url, "--tag", EXTRA_TAG, "--json",
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"\nfirst build (GitOps build dir, empty cache): {seconds:.1f}s")
    return Built(json.loads(proc.stdout), proc.stderr, seconds, archive.sha256, oci, database_url, deployment.id)


@pytest.fixture(scope="module")
def container(first_build):
    """A working container of the built image (its config: USER 1000:1000, the venv on PATH)."""
    name = buildah("from", "--pull=false", first_build.result["image"]).stdout.strip().splitlines()[-1]
    yield name
    buildah("rm", name, check=False)


def run_in(container: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["buildah", "--storage-driver", "vfs", "run", "--isolation", "chroot", container, "--", *command],
        capture_output=True, text=True, timeout=300,
    )


def expected_prediction(nonce: int) -> float:
    """The example's own run(nonce), computed here with the host's numpy."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from src.linear_forecaster.runner import run; print(repr(run(int(sys.argv[2]))))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(EXAMPLE), str(nonce)], capture_output=True, text=True, check=True)
    return float(out.stdout)


# --- the image is built, tagged as the overlay expects, exported, and recorded ------------------------


def test_image_is_tagged_exported_and_recorded(first_build):
    from allora_gitops.db.records import Records
    from tests.fixtures.images import buildah_images

    image = f"{IMAGE_REPO}:1.0.0-{first_build.archive_sha256[:12]}"
    assert first_build.result["image"] == image and first_build.result["reference"] == image
    assert first_build.result["tags"] == [image, EXTRA_TAG]
    assert {image, EXTRA_TAG} <= buildah_images()
    assert "[2/2] STEP" in first_build.log and "pip install" in first_build.log  # the build streamed its log
    # uv installed the environment ("Resolved N packages in …"), not the pip fallback
    assert re.search(r"Resolved \d+ packages? in", first_build.log) and "Installing collected packages" not in first_build.log
    with tarfile.open(first_build.oci_archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == image
    with Records(first_build.database_url) as records:
        assert records.get_deployment(first_build.deployment_id).container_image == image
    assert first_build.result["recorded_deployments"] == [first_build.deployment_id]


# --- it runs: check, dry-run, as UID 1000, the bundle read-only -------------------------------------------


def test_image_runs_check_and_a_dry_run_prediction(container):
    check = run_in(container, "python", C.BOOTSTRAP_IN_IMAGE, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    dry = run_in(container, "python", C.BOOTSTRAP_IN_IMAGE, "--dry-run", "--nonce", "1000")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    events = [json.loads(line) for line in dry.stdout.splitlines() if line.startswith("{")]
    predictions = [e for e in events if e["event"] == "prediction"]
    assert [p["nonce"] for p in predictions] == [1000]
    assert float(predictions[0]["value"]) == expected_prediction(1000)


def test_image_cmd_runs_the_runtime_under_its_init(container, first_build):
    config = json.loads(buildah("inspect", "--type", "image", first_build.result["image"]).stdout)
    assert config["OCIv1"]["config"]["Cmd"] == [C.INIT_IN_IMAGE, "--", "python", C.BOOTSTRAP_IN_IMAGE]
    # the init is PID 1 and reaps; it forwards signals to the runtime (here: a dry run stopped by its count)
    dry = run_in(container, C.INIT_IN_IMAGE, "--", "python", C.BOOTSTRAP_IN_IMAGE, "--dry-run", "--count", "1", "--interval", "1")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert all(line.startswith("{") for line in dry.stdout.splitlines() if line.strip())


def test_image_runs_as_uid_1000(container):
    ids = run_in(container, "sh", "-c", "id -u; id -g")
    assert ids.returncode == 0, ids.stderr
    assert ids.stdout.split() == ["1000", "1000"]


def test_bundle_is_read_only_to_the_runtime_user(container):
    probe = (
        "set -u; cd /workspace/bundle; "
        "for f in model.yaml src/linear_forecaster/runner.py artifacts/weights.npy; do "
        "  [ -r \"$f\" ] || echo \"unreadable $f\"; [ -w \"$f\" ] && echo \"writable $f\"; "
        "  echo \"owner $(stat -c %u:%g \"$f\")\"; "
        "done; "
        "touch /workspace/bundle/new 2>/dev/null && echo 'created a file'; "
        "echo x >> /workspace/bundle/model.yaml 2>/dev/null && echo 'appended'; "
        "true"
    )
    out = run_in(container, "sh", "-c", probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:-1] == ["owner 0:0"] * 3


def run_as_the_pod(container: str, *command: str) -> subprocess.CompletedProcess:
    """``command`` in the image the way the Deployment runs it: UID 1000 (no passwd entry), the image's
    environment, the root filesystem read-only and ``/tmp`` an empty writable volume (the emptyDir)."""
    config = json.loads(buildah("inspect", "--type", "container", container).stdout)
    env = config["OCIv1"]["config"].get("Env") or []
    root = buildah("mount", container).stdout.strip()
    script = (
        'set -e; root="$1"; shift; mount --bind "$root" "$root"; mount -o remount,bind,ro "$root"; '
        'mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"; exec chroot --userspec=1000:1000 "$root" /usr/bin/env -i "$@"'
    )
    try:
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", root, *env, *command],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        buildah("umount", container, check=False)


def test_a_bundle_caching_under_home_predicts_with_a_read_only_root(container, tmp_path):
    """Path.home() is $HOME=/tmp in the image: a library caching under ~/.cache writes into the /tmp volume."""
    bundle = tmp_path / "cache-bundle"
    shutil.copytree(EXAMPLE, bundle, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    runner = bundle / "src" / "linear_forecaster" / "runner.py"
    text = runner.read_text()
    head, sep, body = text.partition("def run(")
    signature, colon_nl, rest = body.partition(":\n")
    cache_lines = (
        "    from pathlib import Path as _Path\n"
        "    _cache = _Path.home() / '.cache' / 'linear-forecaster'\n"
        "    _cache.mkdir(parents=True, exist_ok=True)\n"
        "    (_cache / 'last-nonce').write_text(str(nonce))\n"
    )
    runner.write_text(head + sep + signature + colon_nl + cache_lines + rest)
    buildah("copy", container, str(bundle), "/workspace/cache-bundle")
    dry = run_as_the_pod(
        container, "python", C.BOOTSTRAP_IN_IMAGE, "--dry-run", "--nonce", "1000", "--bundle-root", "/workspace/cache-bundle"
    )
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    events = [json.loads(line) for line in dry.stdout.splitlines() if line.startswith("{")]
    [prediction] = [e for e in events if e["event"] == "prediction"]
    assert float(prediction["value"]) == expected_prediction(1000)
    probe = run_as_the_pod(container, "python", "-c", "import os, pathlib; print(pathlib.Path.home(), os.environ['XDG_CACHE_HOME'], os.getuid())")
    assert probe.stdout.split() == ["/tmp", "/tmp/.cache", "1000"], probe.stderr


# --- what is not in it ---------------------------------------------------------------------------------


def layer_members(oci_archive: Path):
    """(layer index, member, file bytes or None) of every layer of the exported image."""
    with tarfile.open(oci_archive) as outer:
        index = json.load(outer.extractfile("index.json"))
        digest = index["manifests"][0]["digest"].split(":", 1)[1]
        manifest = json.load(outer.extractfile(f"blobs/sha256/{digest}"))
        for i, layer in enumerate(manifest["layers"]):
            blob = outer.extractfile(f"blobs/sha256/{layer['digest'].split(':', 1)[1]}")
            with tarfile.open(fileobj=blob, mode="r|*") as tar:
                for member in tar:
                    yield i, member, tar


TOOLCHAIN = {"gcc", "cc", "c++", "g++", "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-gcc-12", "as", "ld", "make", "cc1"}


def test_image_layers_hold_no_toolchain_pip_cache_env_file_or_build_secret(first_build):
    ca = host_ca_bundle().read_bytes()
    ca_digest, ca_size = hashlib.sha256(ca).hexdigest(), len(ca)
    found: list[str] = []
    names = 0
    for i, member, tar in layer_members(first_build.oci_archive):
        names += 1
        path = member.name.lstrip("./")
        base = path.rsplit("/", 1)[-1]
        if base in TOOLCHAIN and ("/bin/" in f"/{path}" or "/libexec/" in f"/{path}"):
            found.append(f"layer {i}: compiler toolchain {path}")
        if "/.cache/pip" in f"/{path}" or path.startswith("root/.cache"):
            found.append(f"layer {i}: pip cache {path}")
        if base == ".env" or base.startswith(".env."):
            found.append(f"layer {i}: env file {path}")
        if base in ("pip.conf", "pipconf", "pipcert") or path.startswith("run/secrets/") and member.isfile():
            found.append(f"layer {i}: build secret {path}")
        if path.endswith(C.BUILD_CONTEXT_ARCHIVE):
            found.append(f"layer {i}: the bundle archive {path}")
        if member.isfile() and member.size == ca_size:
            data = tar.extractfile(member).read()
            if hashlib.sha256(data).hexdigest() == ca_digest:
                found.append(f"layer {i}: the host CA bundle handed to pip, at {path}")
    assert names > 1000  # really looked at the whole image
    assert found == []
    config = buildah("inspect", "--type", "image", first_build.result["image"]).stdout
    assert "PIP_CERT" not in config and "PIP_CONFIG_FILE" not in config


# --- a code-only change reuses the requirements layers ----------------------------------------------------


def diff_ids(image: str) -> list[str]:
    data = json.loads(buildah("inspect", "--type", "image", image).stdout)
    return data["OCIv1"]["rootfs"]["diff_ids"]


def test_code_only_change_reuses_the_requirements_layers(first_build, base_image, tmp_path):
    bundle = tmp_path / "linear-forecaster"
    shutil.copytree(EXAMPLE, bundle)
    runner = bundle / "src" / "linear_forecaster" / "runner.py"
    runner.write_text(runner.read_text() + "\n# a code-only change: same requirements, new bundle digest\n")
    started = time.perf_counter()
    proc = gitops(
        "build-image", bundle, "--base-image", base_image.ref, "--pip-cert", host_ca_bundle(), "--no-record", "--json",
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    second = json.loads(proc.stdout)
    print(f"\nfirst build {first_build.seconds:.1f}s, code-only rebuild {seconds:.1f}s ({first_build.seconds / seconds:.2f}x)")
    assert second["sha256"] != first_build.archive_sha256 and second["image"] != first_build.result["image"]
    assert "Installing collected packages" not in proc.stderr  # neither pip
    assert not re.search(r"Resolved \d+ packages? in", proc.stderr)  # nor uv ran again: the layer was reused

    first_layers, second_layers = diff_ids(first_build.result["image"]), diff_ids(second["image"])
    base_layers = diff_ids(base_image.ref)
    # base + venv + bootstrap (+ metadata-only steps) are the same layers; only the bundle and what follows differ
    shared = 0
    while shared < min(len(first_layers), len(second_layers)) and first_layers[shared] == second_layers[shared]:
        shared += 1
    assert shared >= len(base_layers) + 2, (first_layers, second_layers)
    assert len(first_layers) - shared <= 2
    # Both times are printed for the report; how much faster depends on the storage driver and the disk
    # (vfs copies the whole root filesystem per layer), so the speed itself is measured by bench_image.py.
    buildah("rmi", second["image"], check=False)


def test_a_failing_build_names_its_dockerfile_step_and_tags_nothing(first_build, base_image, tmp_path):
    """A bundle whose function fails: pip is cached, the smoke test step fails, the error names its line."""
    from allora_gitops.render import DeploymentSettings, DeploymentSpec, render_build
    from allora_gitops.bundle.manifest import load_manifest
    from tests.fixtures.images import buildah_images

    bundle = tmp_path / "linear-forecaster"
    shutil.copytree(EXAMPLE, bundle)
    runner = bundle / "src" / "linear_forecaster" / "runner.py"
    runner.write_text(runner.read_text().replace("    return round(", "    raise RuntimeError('model broke')\n    return round("))
    before = buildah_images()
    proc = gitops("build-image", bundle, "--base-image", base_image.ref, "--pip-cert", host_ca_bundle(), "--no-record")
    assert proc.returncode == 1, proc.stderr[-3000:]
    spec = DeploymentSpec.complete(
        load_manifest(bundle / "model.yaml").manifest, sha256="0" * 64, archive_size=1, settings=DeploymentSettings(network="testnet")
    )
    dockerfile = render_build(spec)[f"{C.build_dir(spec.name, spec.version)}/Dockerfile"].splitlines()
    line = next(i for i, text in enumerate(dockerfile, start=1) if text.startswith("RUN [") and "--check" in text)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert errors[0] == f"error: the image build failed at Dockerfile:{line}: {dockerfile[line - 1]}"
    assert buildah_images() == before  # nothing new tagged


def test_push_to_a_real_registry_records_and_writes_back_the_digest(first_build, base_image, oci_registry, gitops_remote, tmp_path):
    """Publish with the loopback registry as image registry, then build (all layers cached), push and write back."""
    from allora_gitops.db.records import Records

    configured = gitops("repo", "config", "--repo", gitops_remote, "image_registry", oci_registry.prefix(), "--branch", "main")
    assert configured.returncode == 0, configured.stderr[-2000:]  # the registry is a repository setting
    published = gitops(
        "publish", EXAMPLE, "--repo", gitops_remote, "--network", "testnet",
        "--store", (tmp_path / "store").as_uri(), "--database-url", first_build.database_url, "--json",
    )  # fmt: skip
    assert published.returncode == 0, published.stderr[-2000:]
    publish = json.loads(published.stdout)
    image = publish["image"]
    assert image.startswith(oci_registry.prefix() + "/")

    proc = gitops(
        "build-image", EXAMPLE, "--image-registry", oci_registry.prefix(), "--base-image", base_image.ref,
        "--pip-cert", host_ca_bundle(), "--database-url", first_build.database_url,
        "--push", "--write-back", gitops_remote, "--json",
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    repository = image.rsplit(":", 1)[0]
    served = oci_registry.manifest_digest(repository.split("/", 1)[1], image.rsplit(":", 1)[1])
    assert result["pushed_digest"] == served and served.startswith("sha256:")
    with Records(first_build.database_url) as records:
        row = records.get_deployment(publish["release_id"])
    assert row.container_image == f"{image}@{served}"
    review = C.review_branch("linear-forecaster", "testnet", "1.0.0")
    assert result["pinned_overlays"] == [{"network": "testnet", "branch": review, "commit": result["pinned_overlays"][0]["commit"], "created": True}]
    work = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", "-b", review, str(gitops_remote), str(work)], check=True)
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(work / C.deployment_overlay_dir("linear-forecaster", "testnet"))], capture_output=True, text=True, check=True
    ).stdout
    assert [line.strip() for line in rendered.splitlines() if line.strip().startswith("image:")] == [f"image: {image}@{served}"]


def test_push_to_an_unreachable_registry_is_one_line_and_writes_nothing_back(first_build, base_image, unreachable_registry, gitops_remote):
    before = subprocess.run(["git", "--git-dir", str(gitops_remote), "for-each-ref"], capture_output=True, text=True).stdout

    proc = gitops(
        "build-image", EXAMPLE, "--image-registry", f"{unreachable_registry}/allora", "--base-image", base_image.ref,
        "--pip-cert", host_ca_bundle(), "--no-record", "--push", "--write-back", gitops_remote,
    )  # fmt: skip

    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot push {unreachable_registry}/allora/linear-forecaster:"), proc.stderr[-2000:]
    assert subprocess.run(["git", "--git-dir", str(gitops_remote), "for-each-ref"], capture_output=True, text=True).stdout == before

"""build-image without building: references, Dockerfile steps, the build context, and every input
that must be refused before a builder starts (so no image is ever tagged from a bad input)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from allora_gitops import constants as C
from allora_gitops.errors import ImageBuildError
from allora_gitops.image.builder import StepTracker, check_reference, parse_dockerfile_steps, qualify_reference
from tests.conftest import EXAMPLES

EXAMPLE = EXAMPLES / "linear-forecaster"
IMAGE_REPO = f"{C.DEFAULT_IMAGE_REGISTRY}/linear-forecaster"


# --- references ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, qualified",
    [
        ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
        ("team/python:3.11", "docker.io/team/python:3.11"),
        ("localhost/allora-test/python:3.11-slim", "localhost/allora-test/python:3.11-slim"),
        ("localhost:5000/allora/x:1", "localhost:5000/allora/x:1"),
        ("ghcr.io/org/python@sha256:" + "a" * 64, "ghcr.io/org/python@sha256:" + "a" * 64),
        ("python@sha256:" + "b" * 64, "docker.io/library/python@sha256:" + "b" * 64),
    ],
)
def test_short_names_are_qualified_like_docker_does(ref, qualified):
    assert qualify_reference(ref) == qualified


@pytest.mark.parametrize(
    "ref, message",
    [
        ("python@sha256:abc", "a pinned reference ends with @sha256:<64 hex digits>"),
        ("Registry.example.com/Team/App:1", "repository names must be lowercase"),
        ("two words", "is not an image reference"),
        ("", "is not an image reference"),
    ],
)
def test_bad_references_are_refused(ref, message):
    with pytest.raises(ImageBuildError) as err:
        check_reference(ref, "--base-image")
    assert message in err.value.message


# --- following Dockerfile steps ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered_dockerfile(make_spec) -> str:
    from allora_gitops.render import render_build

    spec = make_spec("testnet")
    return render_build(spec)[f"{C.build_dir(spec.name, spec.version)}/Dockerfile"]


def test_steps_are_numbered_per_stage_like_the_builders(rendered_dockerfile):
    steps = parse_dockerfile_steps(rendered_dockerfile)
    lines = rendered_dockerfile.splitlines()
    assert [s.index for s in steps if s.stage == 1][0] == 1 and steps[0].text.startswith("FROM ${BASE_IMAGE} AS build")
    check = [s for s in steps if "--check" in s.text][0]
    assert check.stage == 2 and lines[check.line - 1].startswith("RUN [")
    pip = [s for s in steps if "pip install" in s.text][0]
    assert pip.stage == 1 and lines[pip.line - 1].startswith("RUN --mount=type=secret")


def test_a_buildah_failure_is_traced_to_its_dockerfile_line(rendered_dockerfile):
    steps = parse_dockerfile_steps(rendered_dockerfile)
    check = [s for s in steps if "--check" in s.text][0]
    tracker = StepTracker.for_dockerfile(rendered_dockerfile)
    for line in (
        "[1/2] STEP 1/7: FROM localhost/allora-test/python:3.11-slim AS build",
        f"[2/2] STEP {check.index}/{check.index}: {check.text}",
        '{"event": "check_failed"}',
        "Error: building at STEP \"RUN python ...\": exit status 4",
    ):
        tracker.feed(line)
    assert tracker.describe_failure() == f"Dockerfile:{check.line}: {check.text}"


def test_a_buildkit_failure_is_traced_to_its_dockerfile_line(rendered_dockerfile):
    steps = parse_dockerfile_steps(rendered_dockerfile)
    pip = [s for s in steps if "pip install" in s.text][0]
    tracker = StepTracker.for_dockerfile(rendered_dockerfile)
    for line in (
        "#5 [build 1/7] FROM docker.io/library/python:3.11-slim",
        f"#9 [build {pip.index}/7] RUN --mount=type=secret,id=pipcert pip install",
        "#10 [stage-1 2/12] COPY --from=build /opt/venv /opt/venv",
        "#9 ERROR: process did not complete successfully: exit code: 1",
    ):
        tracker.feed(line)
    assert tracker.describe_failure() == f"Dockerfile:{pip.line}: {pip.text}"


# --- the build context ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_archive(tmp_path_factory):
    from allora_gitops.bundle.archive import build_archive

    return build_archive(EXAMPLE, tmp_path_factory.mktemp("dist"))


def test_context_holds_the_four_files_and_requirements_from_the_archive(tmp_path, example_archive, rendered_dockerfile):
    from allora_gitops.image.context import assemble_context
    from allora_gitops.runtime import render_runtime_archive

    ctx = assemble_context(
        tmp_path / "ctx",
        dockerfile=rendered_dockerfile,
        archive=example_archive.path,
        archive_sha256=example_archive.sha256,
        archive_origin="test",
    )
    assert sorted(p.name for p in ctx.root.iterdir()) == ["Dockerfile", "bootstrap.pyz", "bundle.tar.gz", "requirements.txt"]
    assert (ctx.root / "requirements.txt").read_bytes() == (EXAMPLE / "requirements.txt").read_bytes()
    assert (ctx.root / "bootstrap.pyz").read_bytes() == render_runtime_archive()
    assert (ctx.root / "bundle.tar.gz").read_bytes() == example_archive.path.read_bytes()
    assert ctx.python_version == "3.11" and not ctx.has_constraints


def test_context_copies_constraints_when_the_bundle_names_them(tmp_path, rendered_dockerfile):
    from allora_gitops.bundle.archive import build_archive
    from allora_gitops.image.context import assemble_context

    bundle = tmp_path / "bundle"
    shutil.copytree(EXAMPLE, bundle)
    (bundle / "constraints.txt").write_text("numpy<3\n")
    manifest = (bundle / "model.yaml").read_text().replace(
        'pip_requirements: "requirements.txt"', 'pip_requirements: "requirements.txt"\n  constraints: "constraints.txt"'
    )
    (bundle / "model.yaml").write_text(manifest)
    built = build_archive(bundle, tmp_path / "dist")
    ctx = assemble_context(
        tmp_path / "ctx", dockerfile=rendered_dockerfile, archive=built.path, archive_sha256=built.sha256, archive_origin="t"
    )
    assert ctx.has_constraints and (ctx.root / "constraints.txt").read_text() == "numpy<3\n"


def test_context_refuses_an_archive_that_is_not_the_reviewed_one(tmp_path, example_archive, rendered_dockerfile):
    from allora_gitops.image.context import assemble_context

    wrong = "0" * 64
    with pytest.raises(ImageBuildError) as err:
        assemble_context(
            tmp_path / "ctx",
            dockerfile=rendered_dockerfile,
            archive=example_archive.path,
            archive_sha256=wrong,
            archive_origin="s3://b/k.tar.gz",
        )
    assert err.value.message == (
        f"the bundle archive from s3://b/k.tar.gz has sha256 {example_archive.sha256}, but the build metadata says {wrong}; "
        "refusing to build an image from an archive nobody reviewed"
    )
    assert not (tmp_path / "ctx").exists()


# --- build directories: build.yaml and the store ----------------------------------------------------


def make_build_dir(root: Path, archive, *, store_root: Path, sha256: str | None = None) -> Path:
    """Publish-like: the archive in a file:// store, builds/<name>/<version>/ rendered to point at it."""
    from allora_gitops.render import DeploymentSettings, DeploymentSpec, render_build, write_tree
    from allora_gitops.storage.objects import open_store

    store = open_store(store_root.as_uri())
    key = C.archive_object_key(archive.manifest.name, archive.manifest.version, archive.sha256)
    put = store.put_file(key, archive.path, archive.sha256)
    spec = DeploymentSpec.complete(
        archive.manifest,
        sha256=sha256 or archive.sha256,
        archive_size=archive.size,
        settings=DeploymentSettings(network="testnet", archive_url=put.url),
    )
    write_tree(render_build(spec), root)
    return root / C.build_dir(spec.name, spec.version)


def test_build_yaml_problems_carry_their_position(tmp_path):
    from allora_gitops.image.metadata import load_build_metadata

    path = tmp_path / "build.yaml"
    path.write_text("name: x\nversion: 1.0.0\narchive:\n  url: file:///a\n  sha256: nothex\nimage: r/x:1\n")
    with pytest.raises(ImageBuildError) as err:
        load_build_metadata(path)
    assert [str(p) for p in err.value.problems] == [f"{path}:5:11: error: archive.sha256: 'nothex' is not a lowercase hex sha256"]


def test_archive_is_fetched_from_the_store_build_yaml_names(tmp_path, example_archive):
    from allora_gitops.image.build import plan_from_build_dir

    build_dir = make_build_dir(tmp_path / "repo", example_archive, store_root=tmp_path / "store")
    work = tmp_path / "work"
    work.mkdir()
    plan, archive = plan_from_build_dir(build_dir, work, None)
    assert archive.read_bytes() == example_archive.path.read_bytes()
    assert plan.image == f"{IMAGE_REPO}:1.0.0-{example_archive.sha256[:12]}"
    assert plan.base_image == "python:3.11-slim" and plan.python_version == "3.11"


def test_archive_is_fetched_from_an_s3_store(tmp_path, example_archive, s3_store_url):
    from allora_gitops.image.build import plan_from_build_dir
    from allora_gitops.render import DeploymentSettings, DeploymentSpec, render_build, write_tree
    from allora_gitops.storage.objects import open_store

    key = C.archive_object_key("linear-forecaster", "1.0.0", example_archive.sha256)
    put = open_store(s3_store_url).put_file(key, example_archive.path, example_archive.sha256)
    assert put.url == f"{s3_store_url}/{key}"
    spec = DeploymentSpec.complete(
        example_archive.manifest, sha256=example_archive.sha256, archive_size=example_archive.size,
        settings=DeploymentSettings(network="testnet", archive_url=put.url),
    )
    write_tree(render_build(spec), tmp_path / "repo")
    work = tmp_path / "work"
    work.mkdir()
    plan, archive = plan_from_build_dir(tmp_path / "repo" / C.build_dir("linear-forecaster", "1.0.0"), work, None)
    assert archive.read_bytes() == example_archive.path.read_bytes() and plan.sha256 == example_archive.sha256


def test_an_archive_url_outside_any_store_needs_store(tmp_path, example_archive):
    from allora_gitops.image.build import fetch_archive

    with pytest.raises(ImageBuildError) as err:
        fetch_archive("https://example.com/x.tar.gz", tmp_path / "a.tar.gz", example_archive.sha256,
                      name="linear-forecaster", version="1.0.0", store_url=None)
    key = C.archive_object_key("linear-forecaster", "1.0.0", example_archive.sha256)
    assert err.value.message == (
        f"cannot fetch https://example.com/x.tar.gz: it is not under the key {key} of a store; "
        "pass --store URL to say where the archive lives"
    )


# --- the command: bad inputs fail before any build, and no image is tagged ---------------------------


def test_tampered_archive_in_the_store_is_refused(cli_proc, tmp_path, example_archive, image_storage):
    from tests.fixtures.images import buildah_images

    build_dir = make_build_dir(tmp_path / "repo", example_archive, store_root=tmp_path / "store")
    key = C.archive_object_key("linear-forecaster", "1.0.0", example_archive.sha256)
    stored = tmp_path / "store" / key
    stored.write_bytes(stored.read_bytes() + b"tampered")
    result = cli_proc("gitops", "build-image", build_dir, "--no-record")
    assert result.code == 1, result.err
    assert result.lines[-1].startswith(f"error: object {stored.as_uri()} is corrupted: its sha256 is ")
    assert result.lines[-1].endswith(f", expected {example_archive.sha256}")
    assert buildah_images() == set()


def test_build_yaml_digest_that_does_not_match_the_archive_is_refused(cli_proc, tmp_path, example_archive, image_storage):
    from tests.fixtures.images import buildah_images

    wrong = "f" * 64
    build_dir = make_build_dir(tmp_path / "repo", example_archive, store_root=tmp_path / "store", sha256=wrong)
    # build.yaml now says `wrong` while its URL still points at the real archive's object
    result = cli_proc("gitops", "build-image", build_dir, "--no-record")
    assert result.code == 1, result.err
    stored = (tmp_path / "store" / C.archive_object_key("linear-forecaster", "1.0.0", example_archive.sha256)).as_uri()
    assert result.lines == [
        f"error: the bundle archive from {stored} has sha256 {example_archive.sha256}, but the build metadata says {wrong}; "
        "refusing to build an image from an archive nobody reviewed"
    ]
    assert buildah_images() == set()


def test_missing_builder_is_a_clear_error(cli_proc, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = cli_proc("gitops", "build-image", EXAMPLE, "--no-record", env={"PATH": str(empty)})
    assert result.code == 1
    assert result.lines == [
        "error: no image builder can run here: buildah is not installed (Debian/Ubuntu: apt-get install buildah); "
        "docker is not installed; install buildah (no daemon needed) or start a docker daemon"
    ]


def test_docker_without_a_daemon_is_a_clear_error(cli_proc):
    if shutil.which("docker") is None:
        pytest.skip("no docker client on this machine: the 'not installed' case is covered above")
    result = cli_proc("gitops", "build-image", EXAMPLE, "--builder", "docker", "--no-record", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.code == 1
    assert len(result.lines) == 1 and result.lines[0].startswith("error: no image builder can run here: docker cannot reach a daemon: ")


def test_unknown_base_image_is_refused_before_building(cli_proc, image_storage):
    from tests.fixtures.images import buildah_images

    result = cli_proc(
        "gitops", "build-image", EXAMPLE, "--base-image", "localhost/allora-test/no-such-python:3.11", "--no-record"
    )
    assert result.code == 1, result.err
    error = result.lines[-1]
    assert error.startswith(
        "error: base image localhost/allora-test/no-such-python:3.11 is not in the local image storage and cannot be pulled ("
    )
    assert error.endswith("); pass --base-image with an image this machine has or can pull")
    assert "STEP" not in result.err  # the build never started
    assert buildah_images() == set()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--output", "tar:/tmp/x"], "error: --output 'tar:/tmp/x': expected oci-archive:PATH"),
        (["--output", "oci-archive:/no/such/dir/img.tar"], "error: --output: directory /no/such/dir does not exist"),
        (["--pip-cert", "/no/such/ca.pem"], "error: --pip-cert /no/such/ca.pem: no such file"),
        (["--base-image", "python@sha256:123"], "error: --base-image 'python@sha256:123': a pinned reference ends with @sha256:<64 hex digits>"),
        (["--builder", "podman"], "error: unknown builder 'podman'; use buildah, docker or auto"),
    ],
)
def test_bad_flags_are_refused(cli_proc, args, message):
    result = cli_proc("gitops", "build-image", EXAMPLE, "--no-record", *args)
    assert result.lines == [message]
    assert result.code == (1 if "builder" in message or "--base-image" in message else 2)


def test_help_lists_the_flags(cli_proc):
    result = cli_proc("gitops", "build-image", "--help")
    assert result.code == 0
    for flag in ("--builder", "--base-image", "--tag", "--push", "--output", "--pip-cert", "--pip-conf", "--store"):
        assert flag in result.out


# --- the GitOps repository's CI builds changed builds/ directories with this command -----------------


def test_repo_init_adds_an_images_workflow_that_passes_zizmor(gitops_template_repo, tmp_path):
    import yaml

    from tests.fixtures.git import remote_file
    from tests.fixtures.workflows import zizmor_findings

    text = remote_file(gitops_template_repo, "main", C.CI_IMAGES_WORKFLOW_FILE)
    assert zizmor_findings(text, tmp_path / "images.yaml") == []
    assert "{%" not in text and "cookiecutter" not in text
    doc = yaml.safe_load(text)
    assert doc[True]["pull_request"]["paths"] == ["builds/**"] and doc[True]["push"]["paths"] == ["builds/**"]
    script = doc["jobs"]["build"]["steps"][-1]["run"]
    assert '"$RUNNER_TEMP/venv/bin/allora-gitops" build-image "$dir" --builder buildah --no-record $push' in script
    assert "git diff --name-only --diff-filter=AM \"$base\" HEAD -- builds/" in script


def test_the_images_workflow_picks_changed_build_directories(gitops_template_repo, tmp_path):
    """The workflow's selection of build directories, run on a real diff (the build itself is replaced by echo)."""
    import subprocess

    import yaml

    from tests.fixtures.git import remote_file

    text = remote_file(gitops_template_repo, "main", C.CI_IMAGES_WORKFLOW_FILE)
    script = yaml.safe_load(text)["jobs"]["build"]["steps"][-1]["run"]
    script = script.replace('sudo --preserve-env=AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_ENDPOINT_URL,AWS_DEFAULT_REGION \\\n', "")
    script = script.replace('"$RUNNER_TEMP/venv/bin/allora-gitops"', "echo allora-gitops")
    repo = tmp_path / "repo"

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    repo.mkdir()
    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    for rel in ("builds/a/1.0.0/build.yaml", "builds/a/1.0.0/Dockerfile", "deployments/a/base/x.yaml"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("x\n")
    git("add", ".")
    git("commit", "-qm", "one")
    git("branch", "base")
    for rel in ("builds/a/1.1.0/build.yaml", "builds/a/1.1.0/Dockerfile", "builds/b/2.0.0/build.yaml", "deployments/b/base/x.yaml"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("y\n")
    (repo / "builds/README.md").write_text("readme\n")
    git("add", ".")
    git("commit", "-qm", "two")
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env = {"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(runner_temp), "EVENT": "pull_request", "BASE_REF": "base"}
    subprocess.run(["git", "-C", str(repo), "update-ref", "refs/remotes/origin/base", "base"], check=True)
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    built = [line for line in proc.stdout.splitlines() if line.startswith("allora-gitops")]
    assert built == [
        "allora-gitops build-image builds/a/1.1.0 --builder buildah --no-record",
        "allora-gitops build-image builds/b/2.0.0 --builder buildah --no-record",
    ]
    env.update(EVENT="push", BEFORE=subprocess.run(["git", "-C", str(repo), "rev-parse", "base"], capture_output=True, text=True).stdout.strip())
    env.update(GH_TOKEN="t0ken", GITHUB_SERVER_URL="https://github.com", GITHUB_REPOSITORY="org/deployments")
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True, text=True)
    write_back = "--write-back https://x-access-token:t0ken@github.com/org/deployments.git"  # the digests go back on pin/ branches
    assert [line for line in proc.stdout.splitlines() if line.startswith("allora-gitops")] == [
        f"allora-gitops build-image builds/a/1.1.0 --builder buildah --no-record --push {write_back}",
        f"allora-gitops build-image builds/b/2.0.0 --builder buildah --no-record --push {write_back}",
    ]

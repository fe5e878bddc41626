"""``allora-bundle login``: the token is checked against the platform, then saved with mode 0600 — or
refused with one line, nothing saved. Real servers on loopback: the platform (uvicorn) and, for a URL
that is not a platform, Python's own http.server answering with an HTML page."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import cli_env
from tests.fixtures.platform import free_port, platform_server  # noqa: F401  (fixture)

try:  # conftest's star import leaves out underscore names; the postgres fixtures need this one
    from tests.fixtures.postgres import _migrated_template  # noqa: F401
except ImportError:
    pass


def login(platform_url: str, token: str, config: Path) -> subprocess.CompletedProcess:
    env = cli_env({"XDG_CONFIG_HOME": str(config)})
    env.pop("ALLORA_PLATFORM_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.bundle", "login", "--platform", platform_url],
        input=token + "\n", env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_login_checks_the_token_then_saves_it_0600(platform_server, tmp_path):
    platform = platform_server
    token = platform.token("alice")
    config = tmp_path / "config"

    refused = login(platform.url, token[:-1] + ("a" if token[-1] != "a" else "b"), config)
    assert refused.returncode == 1, refused.stderr
    assert "the platform refused the request (401)" in refused.stderr and "Traceback" not in refused.stderr
    assert not (config / "allora-gitops" / "platform.json").exists()

    proc = login(platform.url + "/", token, config)
    assert proc.returncode == 0, proc.stderr
    saved = config / "allora-gitops" / "platform.json"
    assert f"logged in to {platform.url}; token saved in {saved}" in proc.stdout
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    assert json.loads(saved.read_text()) == {"platform": platform.url, "token": token}


def test_login_to_a_url_that_is_not_a_platform_says_so(tmp_path):
    (tmp_path / "www" / "api").mkdir(parents=True)
    (tmp_path / "www" / "api" / "bundles").write_text("<html>a web page</html>\n")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path / "www")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(url, timeout=1.0)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        proc = login(url, "agp_0123abcd_" + "a" * 43, tmp_path / "config")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {url} answered /api/bundles with application/octet-stream, not the platform's JSON: is this the allora-gitops platform's URL?"
    ]
    assert not (tmp_path / "config" / "allora-gitops" / "platform.json").exists()


def test_login_over_plain_http_to_another_host_warns_before_sending_the_token(tmp_path):
    # .invalid never resolves (RFC 6761): the warning must come before any connection attempt
    proc = login("http://platform.invalid:8080", "agp_0123abcd_" + "a" * 43, tmp_path / "config")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "warning: http://platform.invalid:8080 is plain http: your API token crosses the network unencrypted; use https://"
    assert len(lines) == 2 and lines[1].startswith("error: ") and "agp_0123abcd_" not in proc.stderr


def test_cleartext_warning_spares_https_and_loopback():
    from allora_gitops.api.client import cleartext_warning

    for quiet in ("https://platform.example.com", "http://127.0.0.1:8000", "http://127.9.9.9", "http://[::1]:80", "http://localhost:8000",
                  "http://api.localhost"):  # fmt: skip
        assert cleartext_warning(quiet) is None, quiet
    for loud in ("http://platform.example.com", "HTTP://10.0.0.5:8000", "http://[2001:db8::1]/", "http://localhost.example.com"):
        assert cleartext_warning(loud) and "plain http" in cleartext_warning(loud), loud


def test_serve_stopped_by_sigterm_stops_the_embedded_postgres_it_started(tmp_path, gitops_remote):
    """Kubernetes and systemd stop the server with SIGTERM: its exit hooks must run, so the embedded
    PostgreSQL it started does not outlive it (uvicorn re-raised the signal and the process died first)."""
    import os
    import signal

    home = tmp_path / "home"
    env = cli_env({"ALLORA_GITOPS_HOME": str(home), "ALLORA_GITOPS_REPO": str(gitops_remote)})
    env.pop("ALLORA_DATABASE_URL", None)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "allora_gitops.cli.gitops", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180  # a loaded CI machine: initdb + start + migrations + uvicorn
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        pid_file = home / "postgres" / "data" / "postmaster.pid"
        if not pid_file.exists():
            proc.kill()
            raise AssertionError(f"the embedded PostgreSQL did not start (serve exit {proc.wait()}): {proc.stderr.read().decode()[-2000:]}")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not pid_file.exists(), "the embedded PostgreSQL outlived `serve`"

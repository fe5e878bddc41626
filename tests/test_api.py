"""The platform API end to end: a real uvicorn on loopback, real PostgreSQL, SeaweedFS and a bare git remote.

Uploads with the guide's curl command (real ``curl``) and with ``allora-bundle push``; owners, tokens and
wallets; every refusal as one problem object; the upload streamed and cut off; concurrent pushes.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from tests.fixtures.bundles import make_bundle
from tests.fixtures.git import git, merge_into_main, remote_branches, remote_file
from tests.fixtures.platform import platform_server  # noqa: F401  (fixture)

try:  # conftest's star import leaves out underscore names; the postgres fixtures need this one
    from tests.fixtures.postgres import _migrated_template  # noqa: F401
except ImportError:
    pass

NAME = "linear-forecaster"
WALLET = "alice-wallet"


def build(bundle_dir: Path) -> Path:
    """``allora-bundle build`` into the bundle's dist/: the archive path."""
    from allora_gitops.bundle.archive import build_archive

    return build_archive(bundle_dir, bundle_dir / "dist").path


def curl_upload(platform, archive: Path, token: str | None, cwd: Path) -> tuple[int, dict]:
    """The guide's command, step 8, with the real curl (plus -s -w to read the status)."""
    args = ["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", f"{platform.url}/api/bundles", "-F", f"bundle=@dist/{archive.name}"]
    if token is not None:
        args += ["-H", f"Authorization: Bearer {token}"]
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    body, _, status = proc.stdout.rpartition("\n")
    return int(status), json.loads(body)


def bundle_push(platform, *args: str, token: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(platform.env, ALLORA_PLATFORM_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.bundle", "push", *args, "--platform", platform.url],
        env=env, capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


def count_bundles(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM model_bundles").fetchone()[0]


def assert_problem(response: httpx.Response, status: int, *needles: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    for needle in needles:
        assert needle in response.text, response.text
    return body


def test_guide_curl_then_push_deploy_then_status(platform_server, tmp_path):
    platform = platform_server
    token = platform.token("alice", wallets=(WALLET,))
    v1 = make_bundle(tmp_path)
    archive = build(v1)

    status, body = curl_upload(platform, archive, token, cwd=v1)
    assert status == 201, body
    assert (body["name"], body["version"], body["created"]) == (NAME, "1.0.0", True)
    assert body["sha256"] == __import__("hashlib").sha256(archive.read_bytes()).hexdigest()
    assert body["size"] == archive.stat().st_size and body["warnings"] == []
    # the same bytes again: 200, no new row
    status, again = curl_upload(platform, archive, token, cwd=v1)
    assert (status, again["created"], again["sha256"]) == (200, False, body["sha256"])
    assert count_bundles(platform.database_url) == 1

    # allora-bundle push --deploy of a new version: built, uploaded, deployed on a review branch
    v2 = make_bundle(tmp_path, version="1.0.1", weight="v2")
    proc = bundle_push(platform, str(v2), "--deploy", token=token)
    assert proc.returncode == 0, proc.stderr
    assert f"uploaded: {NAME} 1.0.1 sha256 " in proc.stdout
    branch = f"deploy/{NAME}/testnet/1.0.1"
    m = re.search(r"^deployment ([0-9a-f-]{36}): commit ([0-9a-f]{12}) on (\S+)$", proc.stdout, re.M)
    assert m and m.group(3) == branch, proc.stdout
    assert branch in remote_branches(platform.repo)
    tree = git(platform.repo, "ls-tree", "-r", "--name-only", branch).split()
    assert f"deployments/{NAME}/base/kustomization.yaml" in tree
    assert f"deployments/{NAME}/overlays/testnet/kustomization.yaml" in tree
    assert any(p.startswith(f"builds/{NAME}/1.0.1/") for p in tree)
    overlay = "\n".join(remote_file(platform.repo, branch, p) or "" for p in tree if p.startswith(f"deployments/{NAME}/overlays/testnet/"))
    assert WALLET in overlay

    # GET /api/deployments/{id}: what status shows
    got = httpx.get(f"{platform.url}/api/deployments/{m.group(1)}", headers=platform.headers(token))
    assert got.status_code == 200, got.text
    d = got.json()
    assert (d["name"], d["version"], d["network"], d["status"], d["branch"], d["wallet"]) == (NAME, "1.0.1", "testnet", "committed", branch, WALLET)
    assert d["commit"].startswith(m.group(2))
    listed = httpx.get(f"{platform.url}/api/deployments", headers=platform.headers(token)).json()
    assert [x["id"] for x in listed] == [m.group(1)]
    bundles = httpx.get(f"{platform.url}/api/bundles", headers=platform.headers(token)).json()
    assert sorted(b["version"] for b in bundles) == ["1.0.0", "1.0.1"]
    assert {b["published_by"] for b in bundles} == {"alice"}

    # the token never lands in the log, the database or the repository
    assert_token_nowhere(platform, token)


def assert_token_nowhere(platform, token: str) -> None:
    import psycopg

    assert token not in platform.log.read_text(errors="replace")
    secret_part = token[len("agp_12345678_"):]  # what follows the prefix (the prefix itself is stored)
    with psycopg.connect(platform.database_url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            dump = "\n".join(str(r) for r in conn.execute(f'SELECT * FROM "{table}"'))  # noqa: S608 - our own table names
            assert secret_part not in dump, table
    history = subprocess.run(["git", "--git-dir", str(platform.repo), "log", "--all", "-p"], capture_output=True, text=True).stdout
    assert secret_part not in history


def test_tokens_owners_and_wallets(platform_server, tmp_path):
    platform = platform_server
    alice = platform.token("alice", wallets=(WALLET,))
    bob = platform.token("bob", wallets=("bob-wallet",))
    admin = platform.token("root", admin=True)
    v1 = make_bundle(tmp_path)
    archive = build(v1)
    status, body = curl_upload(platform, archive, alice, cwd=v1)
    assert status == 201

    api = httpx.Client(base_url=platform.url, timeout=120)
    # no token, a malformed one, an unknown one: 401, the same answer
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer agp_00000000_" + "A" * 43}, {"Authorization": alice}):
        r = api.get("/api/bundles", headers=headers)
        assert_problem(r, 401, "a valid API token is required")
        assert r.headers["www-authenticate"].startswith("Bearer")
    status, refused = curl_upload(platform, archive, None, cwd=v1)
    assert status == 401 and refused["status"] == 401

    # bob sees nothing of alice's: 404, never 403 (no existence leak)
    assert_problem(api.get(f"/api/bundles/{NAME}/1.0.0", headers=platform.headers(bob)), 404)
    assert api.get("/api/bundles", headers=platform.headers(bob)).json() == []
    assert api.get(f"/api/bundles/{NAME}/1.0.0", headers=platform.headers(alice)).status_code == 200
    assert api.get(f"/api/bundles/{NAME}/1.0.0", headers=platform.headers(admin)).status_code == 200
    deploy = {"bundle": {"name": NAME, "version": "1.0.0"}, "network": "testnet", "wallet": "bob-wallet"}
    assert_problem(api.post("/api/deployments", json=deploy, headers=platform.headers(bob)), 404)
    # bob may not take alice's name either: names are one namespace, so a push says it is taken (never by whom)
    status, taken = curl_upload(platform, archive, bob, cwd=v1)
    assert status == 409 and taken["detail"] == f"the bundle name '{NAME}' is taken; choose another name in model.yaml"
    assert "alice" not in json.dumps(taken)

    # a wallet not assigned to alice: 403, nothing committed
    branches = remote_branches(platform.repo)
    r = api.post("/api/deployments", json=dict(deploy, wallet="bob-wallet"), headers=platform.headers(alice))
    assert_problem(r, 403, "the wallet Secret is not assigned to alice (got 'bob-wallet')")
    # a private key pasted as the wallet name (it is a valid Secret name): refused, and never echoed
    pasted = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    r = api.post("/api/deployments", json=dict(deploy, wallet=pasted), headers=platform.headers(alice))
    assert_problem(r, 403, "not assigned to alice (got a value that looks like a secret, not shown)")
    assert pasted not in r.text and pasted not in platform.log.read_text(errors="replace")
    assert remote_branches(platform.repo) == branches
    # her own (the only one, so the default): a review branch
    r = api.post("/api/deployments", json={k: v for k, v in deploy.items() if k != "wallet"}, headers=platform.headers(alice))
    assert r.status_code == 201, r.text
    change = r.json()
    assert change["branch"] == f"deploy/{NAME}/testnet/1.0.0" and change["committed"] and change["deployment_id"]
    assert any("1.0.0" in line for line in change["summary"])
    dep = change["deployment_id"]
    assert_problem(api.get(f"/api/deployments/{dep}", headers=platform.headers(bob)), 404)
    assert_problem(api.post(f"/api/deployments/{dep}/retire", headers=platform.headers(bob)), 404)
    assert api.get("/api/deployments", headers=platform.headers(bob)).json() == []
    assert api.get(f"/api/deployments/{dep}", headers=platform.headers(admin)).status_code == 200
    # admin taken away: the same token now sees only its own (none), at the next request
    admin_cli = [sys.executable, "-m", "allora_gitops.cli.gitops", "user-admin", "root"]
    taken = subprocess.run(admin_cli + ["--revoke"], env=platform.env, capture_output=True, text=True, timeout=60)
    assert taken.returncode == 0 and taken.stdout.strip() == "root is no longer an admin", taken.stderr
    assert_problem(api.get(f"/api/deployments/{dep}", headers=platform.headers(admin)), 404)
    assert api.get("/api/deployments", headers=platform.headers(admin)).json() == []
    given = subprocess.run(admin_cli, env=platform.env, capture_output=True, text=True, timeout=60)
    assert given.returncode == 0 and given.stdout.strip() == "root is now an admin"
    assert api.get(f"/api/deployments/{dep}", headers=platform.headers(admin)).status_code == 200
    nobody = subprocess.run(admin_cli[:-1] + ["nobody"], env=platform.env, capture_output=True, text=True, timeout=60)
    assert nobody.returncode == 2 and "no user 'nobody'" in nobody.stderr and "Traceback" not in nobody.stderr

    # same name + version with other bytes: 409, the first stays
    other = make_bundle(tmp_path / "other", weight="other bytes")
    status, clash = curl_upload(platform, build(other), alice, cwd=other)
    assert status == 409 and "already registered with sha256" in clash["detail"]

    # path traversal in any parameter: refused before anything is read
    for path in (f"/api/bundles/..%2F..%2Fetc/1.0.0", f"/api/bundles/{NAME}/..", f"/api/bundles/{NAME}/%2E%2E",
                 f"/api/bundles/../../etc/passwd", "/api/deployments/..%2Fsecrets", "/api/deployments/1%20OR%201=1"):  # fmt: skip
        # curl --path-as-is: sent exactly so, not normalised by the client
        proc = subprocess.run(
            ["curl", "-s", "--path-as-is", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {alice}", platform.url + path],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        text, _, code = proc.stdout.rpartition("\n")
        assert code in ("404", "422"), (path, proc.stdout)
        assert json.loads(text)["status"] == int(code) and NAME + '"' not in text
    bad = dict(deploy, wallet="../../etc/passwd")
    assert_problem(api.post("/api/deployments", json=bad, headers=platform.headers(alice)), 422, "wallet")
    bad = {"bundle": {"name": "../x", "version": "1.0.0"}, "network": "testnet"}
    assert_problem(api.post("/api/deployments", json=bad, headers=platform.headers(alice)), 422, "bundle.name")

    # revoked and expired tokens: 401
    from allora_gitops.api.auth import open_accounts

    expiring = platform.token("alice", expires_at=datetime.now(timezone.utc) + timedelta(seconds=1))
    accounts, conn = open_accounts(platform.database_url)
    with conn:
        accounts.revoke_token(bob)
        conn.connection.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE prefix = %s", (expiring[:12],))
    assert_problem(api.get("/api/bundles", headers=platform.headers(bob)), 401)
    assert_problem(api.get("/api/bundles", headers=platform.headers(expiring)), 401)
    assert api.get("/api/bundles", headers=platform.headers(alice)).status_code == 200

    # once the review branch is merged, retire through the API: a review branch removing the overlay
    merge_into_main(platform.repo, change["branch"])
    r = api.post(f"/api/deployments/{dep}/retire", headers=platform.headers(alice))
    assert r.status_code == 201, r.text
    assert r.json()["branch"] == f"retire/{NAME}/testnet"
    for token in (alice, bob, admin, expiring):
        assert_token_nowhere(platform, token)


def _tar_gz(entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(data[info.name]) if info.name in data else None)
    return buf.getvalue()


def test_unsafe_archives_are_refused_and_nothing_is_stored(platform_server, tmp_path, s3_server):
    platform = platform_server
    token = platform.token("alice", wallets=(WALLET,))
    api = httpx.Client(base_url=platform.url, timeout=120, headers=platform.headers(token))

    # a mnemonic in the bundle: 422 naming the file
    leaky = make_bundle(tmp_path)
    words = " ".join(["abandon"] * 11 + ["about"])  # the BIP-39 test vector: a valid checksum
    (leaky / "artifacts" / "wallet.txt").write_text(f"seed = {words}\n")
    archive = tmp_path / "leaky.tar.gz"  # `allora-bundle build` refuses it: made by hand, as an old or foreign build could
    archive.write_bytes(_leaky_archive(leaky))
    with open(archive, "rb") as fh:
        r = api.post("/api/bundles", files={"bundle": (archive.name, fh, "application/gzip")})
    body = assert_problem(r, 422, "artifacts/wallet.txt", "BIP-39 mnemonic")
    assert words not in r.text and "/tmp" not in body["detail"]

    def tar_member(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, linkname, 0
        return info

    for label, member in (
        ("path with '..'", tar_member("../escape.txt")),
        ("link to", tar_member("link", tarfile.SYMTYPE, "/etc/passwd")),
        ("device or special file", tar_member("dev", tarfile.CHRTYPE)),
    ):
        bad = _tar_gz([tar_member("model.yaml"), member], {})
        r = api.post("/api/bundles", files={"bundle": ("bad.tar.gz", bad, "application/gzip")})
        assert_problem(r, 422, label)

    assert count_bundles(platform.database_url) == 0
    import psycopg

    with psycopg.connect(platform.database_url) as conn:  # a refused upload claims no name either
        assert conn.execute("SELECT count(*) FROM bundle_owners").fetchone()[0] == 0
    bucket, _, _prefix = platform.store_url[len("s3://"):].partition("/")
    listed = s3_server.client().list_objects_v2(Bucket=bucket)
    assert listed.get("KeyCount", 0) == 0

    # not multipart, no file field: one problem each
    assert_problem(api.post("/api/bundles", content=b"x", headers={"Content-Type": "application/gzip"}), 415)
    assert_problem(api.post("/api/bundles", files={"other": ("a.tar.gz", b"x")}), 422, "no file field 'bundle'")


def _leaky_archive(bundle_dir: Path) -> bytes:
    """A well-formed bundle archive (manifest and digests right) that carries a mnemonic: what an old or hand-made build could send."""
    import hashlib

    files: dict[str, bytes] = {}
    for path in sorted(bundle_dir.rglob("*")):
        if path.is_file() and "dist" not in path.parts and "__pycache__" not in path.parts:
            files[path.relative_to(bundle_dir).as_posix()] = path.read_bytes()
    manifest = {"format": 1, "name": NAME, "version": "1.0.0",
                "files": {p: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for p, b in files.items()}}  # fmt: skip
    files[".allora-manifest.json"] = json.dumps(manifest).encode()
    entries = []
    for name, data in files.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        entries.append(info)
    return _tar_gz(entries, files)


def test_openapi_lists_every_endpoint_and_errors_are_problems(platform_server):
    platform = platform_server
    doc = httpx.get(f"{platform.url}/api/openapi.json").json()
    paths = doc["paths"]
    assert set(paths) >= {
        "/api/bundles", "/api/bundles/{name}/{version}", "/api/deployments", "/api/deployments/{deployment_id}",
        "/api/deployments/{deployment_id}/promote", "/api/deployments/{deployment_id}/rollback",
        "/api/deployments/{deployment_id}/retire", "/api/health", "/healthz",
    }  # fmt: skip
    assert set(paths["/api/bundles"]) == {"get", "post"}
    assert "multipart/form-data" in paths["/api/bundles"]["post"]["requestBody"]["content"]
    assert httpx.get(f"{platform.url}/api/health").json()["status"] == "ok"
    assert_problem(httpx.get(f"{platform.url}/api/nothing-here"), 404)
    assert_problem(httpx.delete(f"{platform.url}/api/bundles"), 405)
    # the bearer scheme is declared, and every /api route but health requires it and documents its 401
    assert doc["components"]["securitySchemes"]["token"] == {**doc["components"]["securitySchemes"]["token"], "type": "http", "scheme": "bearer"}
    for path, methods in paths.items():
        for method, op in methods.items():
            protected = (path.startswith("/api/") and path != "/api/health") or path == "/metrics"  # the chain series are per user
            # model pods prove who they are with their own token; Argo CD's notifications with a webhook token of its own
            scheme = {("post", "/api/v1/results"): "podToken", ("post", "/api/v1/logs"): "podToken",
                      ("post", "/api/v1/argocd/events"): "argocdToken"}.get((method, path), "token")  # fmt: skip
            assert (op.get("security") == [{scheme: []}]) == protected, (method, path)
            assert ("401" in op["responses"]) == protected, (method, path)

    # a JSON body beyond 64 KB is refused before authentication and before it is held in memory,
    # whether its length is declared or it arrives chunked
    big = b'{"bundle": {"name": "' + b"a" * (1 << 20) + b'"}}'
    for content in (big, iter([big[i:i + 8192] for i in range(0, len(big), 8192)])):
        r = httpx.post(f"{platform.url}/api/deployments", content=content, headers={"Content-Type": "application/json"})
        assert_problem(r, 413, "larger than 64 KB")
    # a body that is not JSON says so and where, not "field 1"
    r = httpx.post(f"{platform.url}/api/deployments", content=b'{"bundle": ', headers={"Content-Type": "application/json"})
    assert_problem(r, 422, "the request is invalid: body: not valid JSON (Expecting value at character 11)")
    # a small one still reaches the routes (no token: 401)
    assert_problem(httpx.post(f"{platform.url}/api/deployments", json={"bundle": {}}), 401)


class RssSampler:
    """Peak RSS of a process, sampled every 20 ms in a thread while the block runs."""

    def __init__(self, pid: int):
        import psutil

        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.baseline = self.peak

    def __enter__(self):
        import threading

        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, self.process.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _zeros_form(total: int, sent: list[int]):
    """A multipart body with ``total`` bytes of file data, generated as it is sent (chunked: no Content-Length)."""
    boundary = "testboundary1234"
    yield (f'--{boundary}\r\nContent-Disposition: form-data; name="bundle"; filename="big.tar.gz"\r\n\r\n').encode()
    chunk = b"\0" * (1 << 20)
    while sent[0] < total:
        sent[0] += len(chunk)
        yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def _post_unbounded(platform, token: str, total: int) -> tuple[int | None, int]:
    """(status or None when the server closed before answering, bytes the client got to send)."""
    sent = [0]
    headers = {"Content-Type": "multipart/form-data; boundary=testboundary1234", **platform.headers(token)}
    try:
        r = httpx.post(f"{platform.url}/api/bundles", content=_zeros_form(total, sent), headers=headers, timeout=300)
        status = r.status_code
        if status == 413:
            assert_problem(r, 413, "larger than the limit")
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        status = None
    return status, sent[0]


def test_an_upload_over_the_limit_is_cut_off_while_streaming(platform_server, tmp_path):
    platform = platform_server
    token = platform.token("alice")
    subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.gitops", "user-limits", "alice", "--max-upload-mb", "2"],
        env=platform.env, check=True, capture_output=True,
    )  # fmt: skip
    # declared too large: refused before a byte of the body is read (only the headers are sent)
    import socket

    host, port = platform.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /api/bundles HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {3 << 20}\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):  # the server answers and closes: read to the end
            chunks.append(chunk)
        reply = b"".join(chunks).decode()
    assert reply.startswith("HTTP/1.1 413 "), reply
    assert "application/problem+json" in reply and "limit of 2 MB" in reply
    # chunked (no length): cut off once past the limit, the rest never read
    status, sent = _post_unbounded(platform, token, 64 << 20)
    assert status in (413, None)
    assert sent < 48 << 20, f"the server read {sent >> 20} MB of a 64 MB body with a 2 MB limit"
    assert count_bundles(platform.database_url) == 0


@pytest.mark.slow
def test_600_mb_is_cut_off_and_a_170_mb_upload_is_never_held_in_memory(platform_server, tmp_path):
    """Memory does not follow the upload's size. The server is warmed up first (one small upload loads the
    archive reader, boto3 and its S3 client: code, not data), then its RSS is sampled during the big ones."""
    platform = platform_server
    token = platform.token("alice")
    small = make_bundle(tmp_path / "small")
    status, _ = curl_upload(platform, build(small), token, cwd=small)
    assert status == 201

    with RssSampler(platform.process.pid) as cut:
        status, sent = _post_unbounded(platform, token, 600 << 20)
    assert status in (413, None)
    assert sent < 590 << 20, f"the server read {sent >> 20} MB of a 600 MB body"

    big = make_bundle(tmp_path, version="2.0.0")
    import os

    with open(big / "artifacts" / "weights.bin", "wb") as fh:
        for _ in range(170):
            fh.write(os.urandom(1 << 20))
    archive = build(big)
    with RssSampler(platform.process.pid) as rss:
        status, body = curl_upload(platform, archive, token, cwd=big)
    assert status == 201, body
    assert body["size"] == archive.stat().st_size > 170 << 20
    print(f"\nserver RSS: warm {rss.baseline >> 20} MB; peak {cut.peak >> 20} MB while refusing 600 MB; "
          f"peak {rss.peak >> 20} MB during a {body['size'] >> 20} MB upload")  # fmt: skip
    assert cut.peak - cut.baseline < 32 << 20, f"RSS grew by {(cut.peak - cut.baseline) >> 20} MB while refusing 600 MB"
    assert rss.peak - rss.baseline < 32 << 20, f"RSS grew by {(rss.peak - rss.baseline) >> 20} MB during a 170 MB upload"


def test_eight_clients_push_at_once_and_the_same_bundle_twice_makes_one_row(platform_server, tmp_path):
    platform = platform_server
    token = platform.token("alice", wallets=(WALLET,))
    archives = [build(make_bundle(tmp_path / str(i), name=f"model-{i}")) for i in range(8)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "allora_gitops.cli.bundle", "push", str(a), "--deploy", "--platform", platform.url],
            env=dict(platform.env, ALLORA_PLATFORM_TOKEN=token), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for a in archives
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    branches = remote_branches(platform.repo)
    assert sorted(b for b in branches if b.startswith("deploy/")) == sorted(f"deploy/model-{i}/testnet/1.0.0" for i in range(8))
    assert count_bundles(platform.database_url) == 8
    listed = httpx.get(f"{platform.url}/api/deployments", headers=platform.headers(token)).json()
    assert sorted(d["name"] for d in listed) == sorted(f"model-{i}" for i in range(8))
    assert {d["status"] for d in listed} == {"committed"}

    # the same new bundle twice at once: one row, one 201 and one 200
    twin = make_bundle(tmp_path / "twin", name="twin")
    archive = build(twin)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: curl_upload(platform, archive, token, cwd=twin), range(2)))
    assert sorted(status for status, _ in results) == [200, 201]
    assert count_bundles(platform.database_url) == 9


def test_the_live_deployment_limit_holds_under_concurrent_requests(platform_server, tmp_path):
    platform = platform_server
    token = platform.token("carol", wallets=("carol-wallet",))
    subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.gitops", "user-limits", "carol", "--max-live-deployments", "1"],
        env=platform.env, check=True, capture_output=True,
    )  # fmt: skip
    api = httpx.Client(base_url=platform.url, timeout=300, headers=platform.headers(token))
    for name in ("first", "second"):
        d = make_bundle(tmp_path, name=name)
        with open(build(d), "rb") as fh:
            assert api.post("/api/bundles", files={"bundle": (f"{name}.tar.gz", fh)}).status_code == 201
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda n: api.post("/api/deployments", json={"bundle": {"name": n, "version": "1.0.0"}}), ("first", "second")))
    assert sorted(r.status_code for r in answers) == [201, 403], [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 403)
    assert_problem(refused, 403, "carol has 1 live deployment(s), the limit")
    assert len(api.get("/api/deployments").json()) == 1


def test_promote_and_rollback_through_the_api(platform_server, tmp_path):
    platform = platform_server
    token = platform.token("alice", wallets=(WALLET,))
    api = httpx.Client(base_url=platform.url, timeout=300, headers=platform.headers(token))
    for version in ("1.0.0", "1.1.0"):
        d = make_bundle(tmp_path, version=version, weight=version)
        with open(build(d), "rb") as fh:
            assert api.post("/api/bundles", files={"bundle": (f"{version}.tar.gz", fh)}).status_code == 201

    def deploy(version: str) -> dict:
        r = api.post("/api/deployments", json={"bundle": {"name": NAME, "version": version}, "network": "testnet"})
        assert r.status_code == 201, r.text
        merge_into_main(platform.repo, r.json()["branch"])
        return r.json()

    first = deploy("1.0.0")
    r = api.post(f"/api/deployments/{first['deployment_id']}/promote", json={"network": "mainnet", "wallet": WALLET})
    assert r.status_code == 201, r.text
    assert (r.json()["action"], r.json()["branch"]) == ("promote", f"promote/{NAME}/mainnet/1.0.0")
    assert remote_file(platform.repo, r.json()["branch"], f"deployments/{NAME}/overlays/mainnet/kustomization.yaml")

    second = deploy("1.1.0")
    r = api.post(f"/api/deployments/{second['deployment_id']}/rollback", json={"version": "1.0.0"})
    assert r.status_code == 201, r.text
    assert (r.json()["action"], r.json()["branch"], r.json()["version"]) == ("rollback", f"rollback/{NAME}/testnet/1.0.0", "1.0.0")
    assert_problem(api.post(f"/api/deployments/{second['deployment_id']}/rollback", json={"version": "0.9.0"}), 404, "no bundle")
    assert_problem(api.post(f"/api/deployments/{second['deployment_id']}/promote", json={"network": "devnet"}), 422, "network")


def test_an_unreachable_gitops_remote_is_the_platforms_problem_not_a_conflict(tmp_path, database_url, s3_store_url, gitops_home):
    """A remote that cannot be reached is a 503 (try later, tell the platform team), not a 409 the caller could resolve."""
    from tests.fixtures.platform import start_platform, stop_platform

    platform = start_platform(
        tmp_path, database_url=database_url, repo=tmp_path / "gone.git", store_url=s3_store_url,
        env={**{k: v for k, v in os.environ.items() if k.startswith("AWS_")}, "ALLORA_GITOPS_HOME": str(gitops_home)},
    )  # fmt: skip
    try:
        token = platform.token("alice", wallets=(WALLET,))
        v1 = make_bundle(tmp_path / "v1")
        status, _ = curl_upload(platform, build(v1), token, cwd=v1)
        assert status == 201
        r = httpx.post(f"{platform.url}/api/deployments", json={"bundle": {"name": NAME, "version": "1.0.0"}},
                       headers=platform.headers(token), timeout=120)  # fmt: skip
        assert_problem(r, 503, "cannot reach the GitOps repository")
    finally:
        stop_platform(platform)


def test_serve_workers_starts_that_many_processes_with_the_flags_settings(tmp_path, database_url, s3_store_url, gitops_remote, gitops_home):
    """`--workers N` runs N processes (uvicorn ignored it when given an app object), and each has the settings
    given as flags, not only those of the environment."""
    import psutil

    from tests.fixtures.platform import start_platform, stop_platform

    platform = start_platform(
        tmp_path, database_url=database_url, repo=gitops_remote, store_url=s3_store_url,
        env={**{k: v for k, v in os.environ.items() if k.startswith("AWS_")}, "ALLORA_GITOPS_HOME": str(gitops_home)},
        extra_args=("--workers", "2", "--max-upload-mb", "1"),
    )  # fmt: skip
    try:
        workers = [p for p in psutil.Process(platform.process.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in psutil.Process(platform.process.pid).children()]
        token = platform.token("alice")
        for _ in range(4):  # whichever worker answers
            r = httpx.post(f"{platform.url}/api/bundles", files={"bundle": ("big.tar.gz", b"\0" * (2 << 20))},
                           headers=platform.headers(token), timeout=60)  # fmt: skip
            assert_problem(r, 413, "limit of 1 MB")
    finally:
        stop_platform(platform)

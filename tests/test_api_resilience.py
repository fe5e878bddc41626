"""Nothing waits while holding the database (issue 21.2), through the real server (uvicorn on loopback) and a real
PostgreSQL: 120 stalled uploads (bodies trickling, and stalled inside a part's headers) leave other users, the
health endpoints and the pods' result posts answering within a second on a pool of 4 connections; the upload
deadlines and the per-user cap; a hanging JWKS URL; readiness that says "database down" only when it is; and
SIGTERM ending the server within 30 s whatever its clients do."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from datetime import datetime, timezone

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from allora_gitops.api.podidentity import JWKS_MIN_INTERVAL_SECONDS
from tests.fixtures.jwks import JwksServer
from tests.fixtures.platform import start_platform, stop_platform
from tests.test_podidentity import ISSUER, create_two_deployments, jwks, projected_token

BOUNDARY = "allora-test-boundary"
POOL_SIZE = 4
PER_USER = 3
FAST = 1.0  # seconds: what "still answers" means here


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def serve(tmp_path, database_url, jwks_setting: str, **env) -> "Platform":  # noqa: F821
    (tmp_path / "spool").mkdir(exist_ok=True)
    return start_platform(
        tmp_path, database_url=database_url, repo=tmp_path / "unused-repo", store_url=(tmp_path / "store").as_uri(),
        env={"ALLORA_GITOPS_HOME": str(tmp_path / "state"), "ALLORA_API_POD_JWKS": jwks_setting, "ALLORA_API_POD_ISSUER": ISSUER,
             "ALLORA_API_DB_POOL_SIZE": str(POOL_SIZE), "ALLORA_API_UPLOADS_PER_USER": str(PER_USER),
             "ALLORA_API_UPLOAD_DIR": str(tmp_path / "spool"), **env},
    )  # fmt: skip


def stalled_upload(url: str, token: str, *, inside_part_headers: bool) -> socket.socket:
    """A multipart upload that declares 1 MB and stops: after the part's first bytes, or halfway through its headers."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST /api/bundles HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {1 << 20}\r\n\r\n"
    )
    part = f"--{BOUNDARY}\r\nContent-Disposition: form-da" if inside_part_headers else (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"b.tar.gz\"\r\n\r\n" + "x" * 100
    )  # fmt: skip
    sock.sendall((head + part).encode())
    return sock


def trickle(sockets: list[socket.socket], stop: threading.Event) -> None:
    while not stop.wait(0.5):
        for s in sockets:
            try:
                s.sendall(b"x")
            except OSError:
                pass


def timed(call) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    answer = call()
    return time.monotonic() - started, answer


def result(nonce: int) -> dict:
    return {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"), "event": "prediction", "nonce": nonce, "value": 0.5}


def server_connections(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'allora-gitops serve'").fetchone()[0]


@pytest.mark.slow
def test_120_stalled_uploads_take_nothing_from_others_and_sigterm_ends_the_server_within_30_s(tmp_path, database_url, records, key):
    create_two_deployments(records)
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(("cluster-key", key))))
    server = serve(tmp_path, database_url, str(keys))
    stop = threading.Event()
    sockets: list[socket.socket] = []
    try:
        uploaders = [server.token(f"uploader-{i}") for i in range(40)]
        bob = server.token("bob")
        trickling = []
        for i, token in enumerate(uploaders):
            for j in range(PER_USER):
                s = stalled_upload(server.url, token, inside_part_headers=(i + j) % 2 == 0)
                sockets.append(s)
                if (i + j) % 2:
                    trickling.append(s)
        assert len(sockets) == 120
        threading.Thread(target=trickle, args=(trickling, stop), daemon=True).start()
        time.sleep(2)  # every one authenticated and streaming
        # they are in the route, counted: the next upload of a user at the cap is refused at once
        took, refused = timed(lambda: httpx.post(f"{server.url}/api/bundles", files={"bundle": ("b.tar.gz", b"x")},
                                                 headers=server.headers(uploaders[0]), timeout=10))  # fmt: skip
        assert refused.status_code == 429 and took < FAST, refused.text
        assert refused.json()["detail"] == f"{PER_USER} uploads of yours are in progress on this server; wait for one to finish"

        pod = projected_token(key, "cluster-key")
        for round_ in range(5):
            for call in (
                lambda: httpx.get(f"{server.url}/api/bundles", headers=server.headers(bob), timeout=10),
                lambda: httpx.get(f"{server.url}/healthz", timeout=10),
                lambda: httpx.get(f"{server.url}/api/health", timeout=10),
                lambda: httpx.post(f"{server.url}/api/v1/results", json={"results": [result(round_)]},
                                   headers={"Authorization": f"Bearer {pod}"}, timeout=10),
            ):  # fmt: skip
                took, answer = timed(call)
                assert answer.status_code == 200 and took < FAST, (answer.request.url.path, took, answer.text)
        assert httpx.get(f"{server.url}/api/health", timeout=10).json()["database"] == "ok"
        assert server_connections(database_url) <= POOL_SIZE  # 120 uploads in flight, no connection held for them
        assert records.connection.execute("SELECT count(*) FROM submission_results").fetchone()[0] == 5

        started = time.monotonic()
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=40)
        assert time.monotonic() - started <= 30  # the grace period (20 s by default), whatever the clients do
        assert list((tmp_path / "spool").iterdir()) == []  # the cut-off uploads left nothing behind
    finally:
        stop.set()
        for s in sockets:
            s.close()
        stop_platform(server)


def test_an_upload_that_stops_or_crawls_is_cut_off_and_leaves_nothing(tmp_path, database_url, records, key):
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(("cluster-key", key))))
    server = serve(tmp_path, database_url, str(keys), ALLORA_API_UPLOAD_IDLE_SECONDS="2", ALLORA_API_UPLOAD_TOTAL_SECONDS="4")
    stop = threading.Event()
    try:
        alice = server.token("alice")
        stalled = stalled_upload(server.url, alice, inside_part_headers=True)
        crawling = stalled_upload(server.url, alice, inside_part_headers=False)
        threading.Thread(target=trickle, args=([crawling], stop), daemon=True).start()
        answers = {}
        for name, sock in (("stalled", stalled), ("crawling", crawling)):
            sock.settimeout(10)
            started = time.monotonic()
            raw = b""
            while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                raw += chunk
            answers[name] = (time.monotonic() - started, raw.decode())
        took, text = answers["stalled"]
        assert text.startswith("HTTP/1.1 408 ") and 1.5 < took < 4, (took, text)
        assert '"detail":"the upload sent nothing for 2 s; nothing was stored"' in text and "connection: close" in text.lower()
        took, text = answers["crawling"]
        assert text.startswith("HTTP/1.1 408 ") and '"detail":"the upload took longer than 4 s; nothing was stored"' in text
        assert list((tmp_path / "spool").iterdir()) == []
        assert records.connection.execute("SELECT count(*) FROM model_bundles").fetchone()[0] == 0
    finally:
        stop.set()
        stop_platform(server)


@pytest.mark.slow
def test_a_hanging_jwks_url_keeps_known_keys_working_fails_unknown_kids_fast_and_sigterm_still_ends_the_server(
    tmp_path, database_url, records, key
):
    create_two_deployments(records)
    issuer = JwksServer(json.dumps(jwks(("cluster-key", key))))
    server = serve(tmp_path, database_url, issuer.url, ALLORA_API_SHUTDOWN_GRACE_SECONDS="5")
    try:
        pod = {"Authorization": f"Bearer {projected_token(key, 'cluster-key')}"}
        first = httpx.post(f"{server.url}/api/v1/results", json={"results": [result(1)]}, headers=pod, timeout=10)
        assert first.status_code == 200, first.text
        issuer.mode = "hang"
        time.sleep(JWKS_MIN_INTERVAL_SECONDS)  # an unknown kid sooner after a good fetch is simply unknown (401)
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        unknown = {"Authorization": f"Bearer {projected_token(stranger, 'rotated-key')}"}

        def unknown_kid():
            return httpx.post(f"{server.url}/api/v1/results", json={"results": [result(99)]}, headers=unknown, timeout=10)

        outcomes: list = []
        threads = [threading.Thread(target=lambda: outcomes.append(timed(unknown_kid))) for _ in range(10)]
        for t in threads:
            t.start()
        for nonce in range(2, 22):  # known keys meanwhile: answered from the last good set
            took, answer = timed(lambda: httpx.post(f"{server.url}/api/v1/results", json={"results": [result(nonce)]}, headers=pod, timeout=10))
            assert answer.status_code == 200 and took < FAST, (took, answer.text)
        for t in threads:
            t.join()
        assert [a.status_code for _, a in outcomes] == [503] * 10 and max(took for took, _ in outcomes) <= FAST, sorted(t for t, _ in outcomes)
        assert outcomes[0][1].json()["detail"] == "the cluster's ServiceAccount keys (JWKS) cannot be fetched"
        assert issuer.requests == 2  # the start's fetch, and one (hanging) fetch for the ten unknown kids
        assert httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200
        assert records.connection.execute("SELECT count(*) FROM submission_results").fetchone()[0] == 21

        started = time.monotonic()
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=40)
        assert time.monotonic() - started <= 30
    finally:
        issuer.stop()
        stop_platform(server)


def test_readiness_says_database_down_only_when_it_is(tmp_path, pg_server_url, pg_migrated_template, key):
    from tests.fixtures.postgres import _admin, _fresh_database, _with_database

    name = _fresh_database(pg_server_url, pg_migrated_template)
    url = _with_database(pg_server_url, name)
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(("cluster-key", key))))
    server = serve(tmp_path, url, str(keys), ALLORA_API_DB_POOL_SIZE="1")
    try:
        assert httpx.get(f"{server.url}/api/health", timeout=10).json() == {"status": "ok", "version": httpx.get(f"{server.url}/healthz").json()["version"], "database": "ok"}
        _admin(pg_server_url, f'DROP DATABASE "{name}" WITH (FORCE)')
        took, down = timed(lambda: httpx.get(f"{server.url}/api/health", timeout=30))
        assert down.status_code == 503 and down.json()["detail"] == "the database is down: it does not answer", down.text
        assert took < 10
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200  # the process lives: liveness holds
    finally:
        stop_platform(server)

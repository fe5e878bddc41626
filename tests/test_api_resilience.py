"""Nothing waits while holding the database (issue 21.2), through the real server (uvicorn on loopback) and a real
PostgreSQL: 120 stalled uploads (bodies trickling, and stalled inside a part's headers) leave other users, the
health endpoints and the pods' result posts answering within a second on a pool of 4 connections; the upload
deadlines and the per-user cap; a hanging JWKS URL; readiness that says "database down" only when it is; and
SIGTERM ending the server within 30 s whatever its clients do."""

from __future__ import annotations

import json
import os
import re
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
        others = httpx.Client(base_url=server.url, timeout=10)  # made before the clock (its TLS context is not the server's time)
        for round_ in range(5):
            for call in (
                lambda: others.get("/api/bundles", headers=server.headers(bob)),
                lambda: others.get("/healthz"),
                lambda: others.get("/api/health"),
                lambda: others.post("/api/v1/results", json={"results": [result(round_)]}, headers={"Authorization": f"Bearer {pod}"}),
            ):  # fmt: skip
                took, answer = timed(call)
                assert answer.status_code == 200 and took < FAST, (answer.request.url.path, took, answer.text)
        others.close()
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

        clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(11)]  # made (TLS context and all) before the clock

        def unknown_kid(client: httpx.Client):
            return client.post("/api/v1/results", json={"results": [result(99)]}, headers=unknown)

        outcomes: list = []
        threads = [threading.Thread(target=lambda c=c: outcomes.append(timed(lambda: unknown_kid(c)))) for c in clients[1:]]
        for t in threads:
            t.start()
        for nonce in range(2, 22):  # known keys meanwhile: answered from the last good set
            took, answer = timed(lambda: clients[0].post("/api/v1/results", json={"results": [result(nonce)]}, headers=pod))
            assert answer.status_code == 200 and took < FAST, (took, answer.text)
        for t in threads:
            t.join()
        for c in clients:
            c.close()
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
        # anonymous: no version (the server's build is shown to token holders only)
        assert httpx.get(f"{server.url}/api/health", timeout=10).json() == {"status": "ok", "database": "ok"}
        _admin(pg_server_url, f'DROP DATABASE "{name}" WITH (FORCE)')
        took, down = timed(lambda: httpx.get(f"{server.url}/api/health", timeout=30))
        assert down.status_code == 503 and down.json()["detail"] == "the records database is unavailable; try again shortly", down.text
        assert took < 10
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200  # the process lives: liveness holds
    finally:
        stop_platform(server)


def test_the_pool_works_through_pgbouncer_in_transaction_mode(tmp_path, pg_server_url, database_url, records, key):
    """No session state across transactions: uploads (claim + record in one transaction), sign-in sessions and
    pods' results through a real PgBouncer in transaction mode, with more requests than server connections."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.fixtures.bundles import make_bundle
    from tests.fixtures.pgbouncer import start_pgbouncer
    from tests.test_api import build

    create_two_deployments(records)
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(("cluster-key", key))))
    bouncer = start_pgbouncer(pg_server_url, pool_mode="transaction")
    server = serve(tmp_path, bouncer.url(database_url), str(keys))
    try:
        alice = server.token("alice")
        archives = [build(make_bundle(tmp_path / f"b{i}", name=f"model-{i}")) for i in range(3)]

        def push(archive):
            with open(archive, "rb") as fh:
                return httpx.post(f"{server.url}/api/bundles", files={"bundle": (archive.name, fh)}, headers=server.headers(alice), timeout=60)

        pod = {"Authorization": f"Bearer {projected_token(key, 'cluster-key')}"}
        with ThreadPoolExecutor(8) as pool:
            pushed = list(pool.map(push, archives))
            posted = list(pool.map(lambda n: httpx.post(f"{server.url}/api/v1/results", json={"results": [result(n)]}, headers=pod, timeout=30), range(20)))
        assert [p.status_code for p in pushed] == [201] * 3, [p.text for p in pushed]
        assert {p.status_code for p in posted} == {200}
        assert sorted(b["name"] for b in httpx.get(f"{server.url}/api/bundles", headers=server.headers(alice), timeout=10).json()) == ["model-0", "model-1", "model-2"]
        with httpx.Client(base_url=server.url, timeout=10) as client:
            form = client.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
            assert client.post("/login", data={"token": alice, "csrf": csrf}).status_code == 303
            assert client.get("/").status_code == 200
        assert httpx.get(f"{server.url}/api/health", timeout=10).json()["database"] == "ok"
        assert records.connection.execute("SELECT count(*) FROM submission_results").fetchone()[0] == 20
    finally:
        stop_platform(server)
        bouncer.stop()


def test_the_settings_have_bounds_and_reach_worker_processes_unchanged(monkeypatch, tmp_path):
    from allora_gitops.api.settings import ApiSettings, load_api_settings, settings_environment
    from allora_gitops.errors import UsageError

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    defaults = load_api_settings(repo=str(tmp_path))
    assert (defaults.db_pool_size, defaults.upload_idle_seconds, defaults.uploads_per_user, defaults.shutdown_grace_seconds,
            defaults.pod_jwks_max_stale_seconds, defaults.pod_token_max_lifetime_seconds, defaults.secure_cookies) == (
        10, 30, 4, 20, 3600, 86400, False)  # fmt: skip
    for name, value, message in (
        ("ALLORA_API_SHUTDOWN_GRACE_SECONDS", "45", "$ALLORA_API_SHUTDOWN_GRACE_SECONDS must be at most 30 (Kubernetes' default grace period)"),
        ("ALLORA_API_DB_POOL_SIZE", "0", "$ALLORA_API_DB_POOL_SIZE must be at least 1"),
        ("ALLORA_API_UPLOAD_IDLE_SECONDS", "soon", "$ALLORA_API_UPLOAD_IDLE_SECONDS must be a whole number, not 'soon'"),
        ("ALLORA_API_SECURE_COOKIES", "maybe", "$ALLORA_API_SECURE_COOKIES must be true or false, not 'maybe'"),
        # a CA bundle that cannot be loaded stops the start, naming the file (it logged a bare FileNotFoundError per fetch)
        ("ALLORA_API_POD_JWKS_CA_FILE", str(tmp_path / "no-ca.crt"),
         f"cannot load the CA bundle {tmp_path / 'no-ca.crt'} ($ALLORA_API_POD_JWKS_CA_FILE): No such file or directory"),
        ("ALLORA_API_POD_JWKS_CA_FILE", str(garbage),
         f"cannot load the CA bundle {garbage} ($ALLORA_API_POD_JWKS_CA_FILE): NO_CERTIFICATE_OR_CRL_FOUND"),
    ):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(UsageError) as caught:
                load_api_settings(repo=str(tmp_path))
            assert str(caught.value) == message
    monkeypatch.setenv("ALLORA_API_UPLOADS_PER_USER", "2")
    monkeypatch.setenv("ALLORA_API_SECURE_COOKIES", "true")
    ca_file = "/etc/ssl/certs/ca-certificates.crt"  # any loadable bundle
    monkeypatch.setenv("ALLORA_API_POD_JWKS_CA_FILE", ca_file)
    chosen = load_api_settings(repo=str(tmp_path))
    assert (chosen.uploads_per_user, chosen.secure_cookies, chosen.pod_jwks_ca_file) == (2, True, ca_file)
    for name in list(os.environ):
        if name.startswith("ALLORA_API_"):
            monkeypatch.delenv(name)
    for name, value in settings_environment(chosen).items():
        monkeypatch.setenv(name, value)
    assert load_api_settings() == chosen and isinstance(chosen, ApiSettings)


def test_a_json_body_that_never_ends_is_cut_off_too(tmp_path, database_url, key):
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(("cluster-key", key))))
    server = serve(tmp_path, database_url, str(keys), ALLORA_API_UPLOAD_IDLE_SECONDS="2")
    try:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /api/v1/results HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"res")
            started = time.monotonic()
            first = sock.recv(4096)
            took = time.monotonic() - started
            rest = iter(lambda: sock.recv(4096), b"")  # the server closes: the head and the body may come apart
            answer = (first + b"".join(rest)).decode()
        assert answer.startswith("HTTP/1.1 408 ") and 1.5 < took < 4, answer
        assert '"detail":"the request body did not arrive within 2 s"' in answer
    finally:
        stop_platform(server)

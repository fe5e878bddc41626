"""The server's connection pool under more requests than connections (issue 21 items 2 and 6), through the real
server (uvicorn on loopback) and a real PostgreSQL.

The fault these pin down: a request that borrowed a pooled connection in a dependency then waited for a worker
thread to run its route, while every worker thread was taken by other requests waiting for a connection — so a
burst of result posts larger than the thread pool (40) answered 503 "no database connection within 5 s" although
the database sat idle (benchmarks/bench_load.py: 1,103 of 1,651 posts). Waiting for a connection now happens in the
event loop, in line, and a request holds one only while it runs.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.platform import start_platform, stop_platform
from tests.test_api_resilience import result
from tests.test_podidentity import ISSUER, create_two_deployments, jwks, projected_token

BURST = 120  # concurrent result posts: three times the request thread pool (anyio's default, 40)


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def serve(tmp_path, database_url, key, pool_size: int, pool_timeout: int, **env):
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(("cluster-key", key))))
    return start_platform(
        tmp_path, database_url=database_url, repo=tmp_path / "unused-repo", store_url=(tmp_path / "store").as_uri(),
        env={"ALLORA_GITOPS_HOME": str(tmp_path / "state"), "ALLORA_API_POD_JWKS": str(keys), "ALLORA_API_POD_ISSUER": ISSUER,
             "ALLORA_API_DB_POOL_SIZE": str(pool_size), "ALLORA_API_DB_POOL_TIMEOUT_SECONDS": str(pool_timeout), **env},
    )  # fmt: skip


def test_a_burst_of_result_posts_and_api_calls_on_a_pool_of_2_is_answered_whole_and_stored_once(tmp_path, database_url, records, key):
    create_two_deployments(records)
    server = serve(tmp_path, database_url, key, pool_size=2, pool_timeout=3)
    try:
        bob = server.token("bob")
        pod = {"Authorization": f"Bearer {projected_token(key, 'cluster-key')}"}
        start = threading.Barrier(BURST + 10)

        def post(nonce: int) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                start.wait()
                return client.post("/api/v1/results", json={"results": [result(nonce)]}, headers=pod)

        def api_call(_: int) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                start.wait()
                return client.get("/api/deployments", headers=server.headers(bob))

        with ThreadPoolExecutor(BURST + 10) as threads:
            posts = [threads.submit(post, n) for n in range(1, BURST + 1)]
            calls = [threads.submit(api_call, n) for n in range(10)]
            answers = [f.result() for f in posts + calls]
        statuses = sorted({a.status_code for a in answers})
        assert statuses == [200], [a.text for a in answers if a.status_code != 200][:3]
        assert sum(a.json()["stored"] for a in answers[:BURST]) == BURST
        stored = records.connection.execute("SELECT count(*), count(DISTINCT nonce) FROM submission_results").fetchone()
        assert tuple(stored) == (BURST, BURST)  # each exactly once
    finally:
        stop_platform(server)


def test_when_every_connection_stays_taken_the_answer_is_a_503_with_retry_after_and_the_server_recovers(tmp_path, database_url, records, key):
    """Saturation is real only when the connections stay taken: here a table lock makes every post wait in the
    database, on a pool of 1 waiting at most 1 s; the answer is 503 with ``Retry-After`` (the runtime's reporter
    retries it), not a hang, and once the lock goes the same posts are stored."""
    import psycopg

    create_two_deployments(records)
    server = serve(tmp_path, database_url, key, pool_size=1, pool_timeout=1)
    pod = {"Authorization": f"Bearer {projected_token(key, 'cluster-key')}"}
    try:
        assert httpx.post(f"{server.url}/api/v1/results", json={"results": [result(1)]}, headers=pod, timeout=10).status_code == 200
        with psycopg.connect(database_url) as locker:
            locker.execute("LOCK TABLE submission_results IN ACCESS EXCLUSIVE MODE")
            with ThreadPoolExecutor(4) as threads:
                held = threads.submit(httpx.post, f"{server.url}/api/v1/results", json={"results": [result(2)]}, headers=pod, timeout=30)
                time.sleep(0.5)  # that one holds the only connection, waiting on the lock
                started = time.monotonic()
                busy = httpx.post(f"{server.url}/api/v1/results", json={"results": [result(3)]}, headers=pod, timeout=30)
                took = time.monotonic() - started
                assert busy.status_code == 503 and busy.headers.get("retry-after") == "1", busy.text
                assert took < 3, took
                assert "no database connection within 1 s" in busy.json()["detail"]
                locker.rollback()  # the lock goes: the held post finishes
                assert held.result().status_code == 200
        again = httpx.post(f"{server.url}/api/v1/results", json={"results": [result(3)]}, headers=pod, timeout=10)
        assert again.status_code == 200 and again.json()["stored"] == 1
    finally:
        stop_platform(server)


def test_an_idle_client_connection_stays_open_for_the_keep_alive_setting_then_closes(tmp_path, database_url, key):
    """uvicorn's default (5 s) closed idle connections before the clients that reuse them (a pod every 10 s, a proxy
    after 60 s): a request sent as it closed got no answer at all. The server keeps them ``$ALLORA_API_KEEP_ALIVE_SECONDS``
    (75 s by default; 2 here, to watch both sides of it)."""
    import socket

    server = serve(tmp_path, database_url, key, pool_size=2, pool_timeout=3, ALLORA_API_KEEP_ALIVE_SECONDS="2")
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    try:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for idle in (0, 1.2):  # within the keep-alive: the same connection answers again
                time.sleep(idle)
                sock.sendall(request)
                answer, chunk = b"", b"-"
                while chunk and not answer.endswith(b'{"status":"ok"}'):  # the head and the body may come apart
                    chunk = sock.recv(4096)
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200 "), answer
            time.sleep(3)  # past it: the server has closed the connection already (recv sees its end at once)
            sock.settimeout(0.5)
            assert sock.recv(4096) == b""
    finally:
        stop_platform(server)


def test_archive_checks_run_on_threads_of_their_own_at_a_lower_cpu_priority():
    """An upload's archive check (unpack and hash up to 500 MB) runs beside the result posts of the same process:
    on its own threads, two at most, niced, so that a post or a page preempts it instead of waiting behind it."""
    import os
    import threading
    from types import SimpleNamespace

    from allora_gitops.api.bundles import ARCHIVE_CHECK_NICENESS, ARCHIVE_CHECKS_PER_PROCESS, archive_checks

    app = SimpleNamespace(state=SimpleNamespace())
    executor = archive_checks(app)
    assert archive_checks(app) is executor and executor._max_workers == ARCHIVE_CHECKS_PER_PROCESS == 2

    def where() -> tuple[str, int]:
        return threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    try:
        name, nice = executor.submit(where).result(timeout=10)
    finally:
        executor.shutdown()
    assert name.startswith("archive-check")
    assert nice == os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + ARCHIVE_CHECK_NICENESS

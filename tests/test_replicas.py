"""Replicas behind a pooler: ``serve`` processes on one database through a real PgBouncer in transaction mode.

What one process may keep to itself breaks with two: a session-level advisory lock is the case found (lock,
check and unlock each run on whichever server connection PgBouncer lends), so the accounts' deploy path takes a
transaction-level one; the end-to-end test splits uploads, deploys, pods' results and pages between two
replicas and counts what arrived.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from allora_gitops.api.auth import Accounts
from allora_gitops.errors import RecordConflict


def _principal(database_url: str, user: str):
    with psycopg.connect(database_url, autocommit=True) as conn:
        accounts = Accounts(conn)
        secret, _ = accounts.create_token(user)
        return accounts.authenticate(secret)


def test_one_deploy_change_per_user_at_a_time_through_pgbouncer_transaction_mode(database_url):
    """Two replicas' connections, one PgBouncer server connection: the second waits until the first's block ends.
    (A session lock let both in at once here: PgBouncer lent the second request the server connection that
    already held the lock, and PostgreSQL's session locks are re-entrant.)"""
    from tests.fixtures.pgbouncer import start_pgbouncer

    alice = _principal(database_url, "alice")
    bouncer = start_pgbouncer(database_url, pool_mode="transaction", pool_size=1)
    url = bouncer.url(database_url)
    try:
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as one, psycopg.connect(url, autocommit=True, prepare_threshold=None) as two:
            events: list[str] = []
            first_inside = threading.Event()

            def first():
                with Accounts(one).deploying(alice):
                    events.append("first in")
                    first_inside.set()
                    time.sleep(1.0)
                    events.append("first out")

            def second():
                first_inside.wait(10)
                with Accounts(two).deploying(alice):
                    events.append("second in")

            threads = [threading.Thread(target=first), threading.Thread(target=second)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert events == ["first in", "first out", "second in"]
            # nothing outlives the blocks: no advisory lock left on any server connection
            with psycopg.connect(database_url, autocommit=True) as direct:
                left = direct.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]
            assert left == 0
    finally:
        bouncer.stop()


def test_a_deploy_change_waits_its_turn_then_is_a_409_and_another_user_never_waits(database_url):
    alice, bob = _principal(database_url, "alice"), _principal(database_url, "bob")
    with psycopg.connect(database_url, autocommit=True) as one, psycopg.connect(database_url, autocommit=True) as two:
        with Accounts(one).deploying(alice):
            started = time.monotonic()
            with pytest.raises(RecordConflict) as caught:
                with Accounts(two).deploying(alice, wait_seconds=0.5):
                    pass
            assert time.monotonic() - started >= 0.5
            assert str(caught.value) == "another deployment change of alice is still in progress after 0.5 s; try again"
            with Accounts(two).deploying(bob, wait_seconds=0):  # another user's lock: at once
                pass
            assert two.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        # an error inside the block ends the transaction and the lock with it
        with pytest.raises(ValueError):
            with Accounts(one).deploying(alice):
                raise ValueError("publish failed")
        assert one.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with Accounts(two).deploying(alice, wait_seconds=0):
            pass


@pytest.fixture(scope="module")
def pod_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def replicas(tmp_path, database_url, s3_store_url, gitops_remote, pod_key):
    """Two ``serve`` replicas through one PgBouncer (3 server connections for 2 × 10 pooled client ones)."""
    import json
    import os

    from tests.fixtures.platform import start_replicas, stop_replicas
    from tests.test_podidentity import ISSUER, jwks

    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(("cluster-key", pod_key))))
    started = start_replicas(
        tmp_path, 2, database_url=database_url, repo=gitops_remote, store_url=s3_store_url, pool_size=3,
        env={**{k: v for k, v in os.environ.items() if k.startswith("AWS_")}, "ALLORA_API_POD_JWKS": str(keys), "ALLORA_API_POD_ISSUER": ISSUER},
    )  # fmt: skip
    try:
        yield started
    finally:
        stop_replicas(started)


def _count(database_url: str, sql: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


@pytest.mark.slow
def test_two_replicas_split_uploads_deploys_results_and_pages_and_lose_or_duplicate_nothing(replicas, tmp_path, pod_key):
    import re
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.fixtures.bundles import make_bundle
    from tests.fixtures.git import remote_branches
    from tests.test_api import build, curl_upload
    from tests.test_podidentity import projected_token

    a, b = replicas[0], replicas[1]
    alice = replicas.token("alice", wallets=("alice-wallet",))
    carol = replicas.token("carol", wallets=("carol-wallet",))
    subprocess.run([sys.executable, "-m", "allora_gitops.cli.gitops", "user-limits", "carol", "--max-live-deployments", "1"],
                   env=a.env, check=True, capture_output=True)  # fmt: skip
    names = [f"model-{i}" for i in range(4)]
    archives = {n: build(make_bundle(tmp_path / "bundles", name=n)) for n in [*names, "twin", "first", "second"]}

    def push_deploy(i: int) -> subprocess.CompletedProcess:  # allora-bundle push --deploy, alternating replicas
        server = replicas[i % 2]
        return subprocess.run(
            [sys.executable, "-m", "allora_gitops.cli.bundle", "push", str(archives[names[i]]), "--deploy", "--platform", server.url],
            env=dict(server.env, ALLORA_PLATFORM_TOKEN=alice), capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    def upload_twin(server) -> int:  # the same bytes to both replicas at once
        return curl_upload(server, archives["twin"], alice, cwd=archives["twin"].parent.parent)[0]

    def carol_deploys(pair) -> httpx.Response:  # two deploys past carol's limit of one, one through each replica
        server, name = pair
        with open(archives[name], "rb") as fh:
            assert httpx.post(f"{server.url}/api/bundles", files={"bundle": (f"{name}.tar.gz", fh)}, headers=server.headers(carol), timeout=120).status_code == 201
        return httpx.post(f"{server.url}/api/deployments", json={"bundle": {"name": name, "version": "1.0.0"}}, headers=server.headers(carol), timeout=300)

    with ThreadPoolExecutor(8) as pool:
        deploys = pool.map(push_deploy, range(len(names)))
        twins = pool.map(upload_twin, (a, b))
        limited = pool.map(carol_deploys, ((a, "first"), (b, "second")))
        deploys, twins, limited = list(deploys), list(twins), list(limited)
    for proc in deploys:
        assert proc.returncode == 0, proc.stderr
    ids = {re.search(r"^deployment ([0-9a-f-]{36}): commit", p.stdout, re.M).group(1) for p in deploys}
    assert sorted(twins) == [200, 201]
    assert sorted(r.status_code for r in limited) == [201, 403], [r.text for r in limited]

    # pods report through either replica, the same batch sometimes through both (a retry after a lost answer)
    def report(job) -> httpx.Response:
        server, name, nonces = job
        token = projected_token(pod_key, "cluster-key", sa=f"{name}-testnet")
        results = [{"ts": "2026-01-31T12:00:00.000Z", "event": "prediction", "nonce": n, "value": n / 10} for n in nonces]
        return httpx.post(f"{server.url}/api/v1/results", json={"results": results}, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    jobs = [(replicas[k % 2], name, range(1 + 10 * k, 21 + 10 * k)) for name in names for k in range(3)]  # nonces 1..40, overlapping
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(report, jobs))
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers if r.status_code != 200]
    assert sum(r.json()["stored"] for r in answers) == 4 * 40
    assert sum(r.json()["already_recorded"] for r in answers) == 4 * 20

    # the sign-in form from one replica is posted to the other, and the session works on both (cookies are per host)
    with httpx.Client(timeout=30) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(f"{a.url}/login").text).group(1)
        assert client.post(f"{b.url}/login", data={"token": alice, "csrf": csrf}).status_code == 303
        for server in (a, b):
            page = client.get(f"{server.url}/")
            assert page.status_code == 200 and all(n in page.text for n in names)
        for i, deployment_id in enumerate(sorted(ids)):
            assert client.get(f"{replicas[i % 2].url}/deployments/{deployment_id}").status_code == 200
    for server in (a, b):
        listed = httpx.get(f"{server.url}/api/deployments", headers=server.headers(alice), timeout=30).json()
        assert sorted(d["id"] for d in listed) == sorted(ids)

    # counted afterwards, on the database itself and the GitOps remote: each thing once
    db = replicas.database_url
    assert _count(db, "SELECT count(*) FROM model_bundles") == len(names) + 3
    assert _count(db, "SELECT count(*) FROM deployments") == len(names) + 1
    assert _count(db, "SELECT count(*) FROM submission_results") == 4 * 40
    assert _count(db, "SELECT count(DISTINCT (deployment_id, nonce)) FROM submission_results") == 4 * 40
    deploy_branches = sorted(x for x in remote_branches(a.repo) if x.startswith("deploy/"))
    carols = [x for x in deploy_branches if x.split("/")[1] in ("first", "second")]
    assert sorted(set(deploy_branches) - set(carols)) == sorted(f"deploy/{n}/testnet/1.0.0" for n in names) and len(carols) == 1
    assert "Traceback" not in replicas.logs()

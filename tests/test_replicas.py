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

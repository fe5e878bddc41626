"""``RecordsPool.lease``: a request waits for a connection in the event loop, never on a worker thread (real
PostgreSQL). The server's dependencies and routes run on anyio's worker threads; when waiting for a connection
took a worker, the requests holding the connections could find none left to run on (benchmarks/bench_load.py)."""

from __future__ import annotations

import anyio
import anyio.to_thread
import pytest

from allora_gitops.db.connection import DatabaseBusy, RecordsPool


def test_a_request_holding_the_connection_still_gets_a_worker_while_others_wait_for_one(database_url):
    """One worker thread, one connection, three requests: each holds the connection while it runs on the worker.
    Had the waiters waited on the worker, the holder could never run and the leases would time out."""
    pool = RecordsPool(database_url, max_size=1, timeout=5)
    order: list[str] = []

    async def request(name: str) -> None:
        async with pool.lease() as conn:
            order.append(f"{name} leased")
            value = await anyio.to_thread.run_sync(lambda: conn.execute("SELECT pg_sleep(0.2), 7").fetchone()[1])
            order.append(f"{name} ran {value}")

    async def main() -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1
        with anyio.fail_after(4):
            async with anyio.create_task_group() as tg:
                for name in ("a", "b", "c"):
                    tg.start_soon(request, name)
                    await anyio.sleep(0.01)  # in this order: first come, first served

    try:
        anyio.run(main)
    finally:
        pool.close()
    assert order == ["a leased", "a ran 7", "b leased", "b ran 7", "c leased", "c ran 7"]


def test_a_lease_not_free_within_the_timeout_is_database_busy_and_a_waiter_that_gives_up_costs_nothing(database_url):
    pool = RecordsPool(database_url, max_size=1, timeout=0.3)

    async def main() -> str:
        held = anyio.Event()
        release = anyio.Event()

        async def holder() -> None:
            async with pool.lease():
                held.set()
                await release.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await held.wait()
            with pytest.raises(DatabaseBusy) as busy:
                async with pool.lease():
                    pass
            with anyio.move_on_after(0.1):  # a client that went away while waiting
                async with pool.lease():
                    pass
            release.set()
        async with pool.lease(timeout=1) as conn:  # nothing leaked: the one connection is free again
            assert (await anyio.to_thread.run_sync(lambda: conn.execute("SELECT 1").fetchone()))[0] == 1
        return str(busy.value)

    try:
        message = anyio.run(main)
    finally:
        pool.close()
    assert message == "no database connection within 0.3 s (all 1 of this server's are in use, or the database does not answer); try again"


def test_a_lease_given_back_inside_a_transaction_is_rolled_back(database_url):
    pool = RecordsPool(database_url, max_size=1, timeout=2)

    async def main() -> tuple:
        async with pool.lease() as conn:
            await anyio.to_thread.run_sync(lambda: conn.execute("BEGIN") and conn.execute("CREATE TEMP TABLE left_open (x int)"))
        async with pool.lease() as conn:
            status = conn.info.transaction_status
            found = await anyio.to_thread.run_sync(lambda: conn.execute("SELECT to_regclass('pg_temp.left_open')").fetchone()[0])
        return status, found

    try:
        status, found = anyio.run(main)
    finally:
        pool.close()
    assert int(status) == 0 and found is None  # idle, and what the first borrower left open is gone

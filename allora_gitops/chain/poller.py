"""The chain reader inside ``serve``: its own thread and event loop, one leader among replicas.

Every ``interval`` seconds the leader reads each live deployment that has a worker address (``reader``), at most
``concurrency`` reads at a time, each bounded by ``timeout``; once a network's endpoint has failed in a round
(no answer in time, unreachable), that network's reads not yet started are stored with the same failure
instead of each waiting out the timeout, so one hanging endpoint never holds up the other networks; stores one observation per read (a failed read
too) and prunes those older than the retention. A deployment whose read failed is not read again before its
backoff (``interval`` × 2^(failures−1), at most ``max_backoff``) has passed. Leadership is a PostgreSQL
session advisory lock held on a connection of its own (not through a transaction-mode pooler: the lock is a
session's); a replica that does not hold it only tries again each interval. Nothing here runs on the
server's request threads or event loop, and the SDK is imported only when there is something to read.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Mapping, Optional

from allora_gitops.errors import UsageError

INTERVAL_ENV = "ALLORA_CHAIN_POLL_INTERVAL"  # seconds; 0 turns the poller off
CONCURRENCY_ENV = "ALLORA_CHAIN_POLL_CONCURRENCY"
TIMEOUT_ENV = "ALLORA_CHAIN_TIMEOUT"  # seconds per deployment read
RETENTION_ENV = "ALLORA_CHAIN_RETENTION_HOURS"
MAX_BACKOFF_ENV = "ALLORA_CHAIN_MAX_BACKOFF"  # seconds
# where the leader lock is taken: a direct (or session-pooled) PostgreSQL URL when the server's own goes through a
# transaction-mode pooler, where a session lock would stay on whichever server connection took it
LOCK_DATABASE_URL_ENV = "ALLORA_CHAIN_LOCK_DATABASE_URL"
LEADER_LOCK_KEY = 0x616C6F7261636861  # pg advisory lock key ("alorachа"): one chain poller per database


@dataclass(frozen=True)
class PollerSettings:
    interval: float = 60.0
    concurrency: int = 8
    timeout: float = 10.0
    retention: timedelta = timedelta(days=7)
    max_backoff: float = 900.0
    endpoints: Mapping[str, str] = field(default_factory=dict)  # network → gRPC URL (reader.endpoint_overrides)
    lock_database_url: Optional[str] = None  # None: the server's database URL

    @classmethod
    def from_environment(cls, env: Optional[Mapping[str, str]] = None) -> "PollerSettings":
        """``$ALLORA_CHAIN_POLL_INTERVAL`` (60), ``…_POLL_CONCURRENCY`` (8), ``$ALLORA_CHAIN_TIMEOUT`` (10),
        ``$ALLORA_CHAIN_RETENTION_HOURS`` (168), ``$ALLORA_CHAIN_MAX_BACKOFF`` (900), ``$ALLORA_CHAIN_ENDPOINTS``;
        UsageError naming the variable for a bad value."""
        from allora_gitops.chain.reader import ENDPOINTS_ENV, endpoint_overrides

        env = os.environ if env is None else env

        def number(name: str, default: float, minimum: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise UsageError(f"${name} must be a number, not {raw[:40]!r}") from None
            if not value >= minimum or value != value or value == float("inf"):
                raise UsageError(f"${name} must be at least {minimum:g}")
            return value

        interval = number(INTERVAL_ENV, 60.0, 0)
        if 0 < interval < 1:  # every round opens a database connection and reads every deployment: not a busy loop
            raise UsageError(f"${INTERVAL_ENV} must be 0 (off) or at least 1 (seconds)")
        return cls(
            interval=interval, concurrency=int(number(CONCURRENCY_ENV, 8, 1)),
            timeout=number(TIMEOUT_ENV, 10.0, 0.1), retention=timedelta(hours=number(RETENTION_ENV, 168, 1)),
            max_backoff=number(MAX_BACKOFF_ENV, 900.0, 1), endpoints=endpoint_overrides(env.get(ENDPOINTS_ENV, "")),
            lock_database_url=env.get(LOCK_DATABASE_URL_ENV, "").strip() or None,
        )  # fmt: skip


@dataclass
class _Backoff:
    failures: int = 0
    next_at: float = 0.0


class ChainPoller:
    """``start()`` a daemon thread running ``run()``; ``stop()`` ends it. ``poll_once()`` is one round (tests call it)."""

    def __init__(self, database_url: str, settings: PollerSettings, clock=time.monotonic):
        self.database_url = database_url
        self.settings = settings
        self.clock = clock
        self.backoff: dict[str, _Backoff] = {}
        self.attempts = 0  # reads started, since the start (for tests and the log)
        self.is_leader = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock_conn: Any = None

    # -- lifecycle

    def start(self) -> "ChainPoller":
        self._thread = threading.Thread(target=self._thread_main, name="allora-chain-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._release()

    def _thread_main(self) -> None:
        asyncio.run(self.run())

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._lead():
                    await self.poll_once()
            except Exception as exc:  # noqa: BLE001 - the poller must outlive a bad round (database restart, …)
                _log(f"chain poller: round failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
                self._release()
            await self._pause(self.settings.interval)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` or until ``stop()``. No executor (``asyncio.to_thread``): once the interpreter is
        exiting it refuses new work, and the thread would die with a traceback while exit hooks still run."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.25))

    def _lead(self) -> bool:
        """Hold (or take) the advisory lock on the dedicated connection; False when another replica holds it."""
        from allora_gitops.db.connection import connect

        if self._lock_conn is not None:
            try:
                self._lock_conn.execute("SELECT 1")
                return True
            except Exception:  # noqa: BLE001 - the session (and the lock with it) is gone
                self._release()
        conn = connect(self.settings.lock_database_url or self.database_url, application_name="allora-gitops chain poller")
        if conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()[0]:
            self._lock_conn, self.is_leader = conn, True
            return True
        conn.close()
        return False

    def _release(self) -> None:
        conn, self._lock_conn, self.is_leader = self._lock_conn, None, False
        if conn is not None:
            try:
                conn.close()  # ends the session: the lock goes with it
            except Exception:  # noqa: BLE001
                pass

    # -- one round

    async def poll_once(self) -> int:
        """Read every live deployment due for a read; store the observations; prune. → reads attempted."""
        from allora_gitops.chain.store import live_workers, prune_observations
        from allora_gitops.db.connection import connect

        conn = connect(self.database_url, application_name="allora-gitops chain reader")
        try:
            now = self.clock()
            due = [w for w in live_workers(conn) if w.address and self.backoff.get(w.deployment_id, _Backoff()).next_at <= now]
            if due:
                await self._read_all(conn, due)
            prune_observations(conn, self.settings.retention)
            return len(due)
        finally:
            conn.close()

    async def _read_all(self, conn, due: list) -> None:
        from allora_gitops.chain.reader import read_workers
        from allora_gitops.chain.store import store_observation

        outcomes, attempts = await read_workers(
            due, endpoints=self.settings.endpoints, timeout=self.settings.timeout, concurrency=self.settings.concurrency
        )
        self.attempts += attempts
        now = self.clock()
        for worker, standing, error in outcomes:
            store_observation(conn, worker, standing, error)
            state = self.backoff.setdefault(worker.deployment_id, _Backoff())
            if standing is not None:
                state.failures, state.next_at = 0, 0.0
            else:
                state.failures += 1
                state.next_at = now + min(self.settings.interval * 2 ** (state.failures - 1), self.settings.max_backoff)


def _log(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def start_poller(database_url: Optional[str], env: Optional[Mapping[str, str]] = None) -> Optional[ChainPoller]:
    """The poller ``serve`` runs, or None when ``$ALLORA_CHAIN_POLL_INTERVAL`` is 0 or there is no database URL."""
    settings = PollerSettings.from_environment(env)
    if settings.interval <= 0 or not database_url:
        return None
    return ChainPoller(database_url, settings).start()

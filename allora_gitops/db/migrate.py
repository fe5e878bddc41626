"""A small forward-only migration runner for the plain SQL files in ``db/migrations``.

Why our own and not Alembic: the schema is a handful of SQL files that a DBA can
read as they are. The runner's promises:

- each migration runs in its own transaction, so a failing file leaves the schema
  exactly as it was before that file (earlier files stay applied);
- ``schema_migrations`` records version, name, sha256 of the file and when it was applied;
- a session-level advisory lock serialises concurrent runners, and the applied set is
  re-read under the lock, so each migration is applied exactly once;
- an applied migration whose file changed since (checksum drift) is refused, as is a
  database that has migrations this code does not know (it is newer than we are).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from allora_gitops.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_lock key: the first 8 bytes of sha256("allora-gitops schema migrations"), as a signed bigint.
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"allora-gitops schema migrations").digest()[:8], "big", signed=True)
LOCK_TIMEOUT_SECONDS = 120.0

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
        return not self.pending and not self.drifted and not self.unknown


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
            return MigrationState(known, _read_applied(conn))

    def check(self) -> MigrationState:
        """The state, after refusing drift and a database newer than this code."""
        state = self.status()
        _refuse_inconsistent(state)
        return state

    def upgrade(self, on_applied=None) -> list[Migration]:
        """Apply every pending migration; return those this call applied (empty when up to date)."""
        from allora_gitops.db.connection import connect, translate_error

        known = load_migrations(self.directory)
        applied_now: list[Migration] = []
        with connect(self.database_url) as conn:
            _acquire_lock(conn)
            try:
                with conn.transaction():
                    conn.execute(SCHEMA_MIGRATIONS_DDL)
                state = MigrationState(known, _read_applied(conn))  # re-read under the lock
                _refuse_inconsistent(state)
                for migration in state.pending:
                    try:
                        with conn.transaction():
                            conn.execute(migration.sql)
                            conn.execute(
                                "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                                (migration.version, migration.name, migration.sha256),
                            )
                    except Exception as exc:  # noqa: BLE001 - turned into one line naming the file
                        raise MigrationError(
                            f"migration {migration.path.name} failed, nothing of it was applied: {translate_error(exc)}"
                        ) from exc
                    applied_now.append(migration)
                    if on_applied is not None:
                        on_applied(migration)
            finally:
                _release_lock(conn)
        return applied_now


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
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise MigrationError(
                f"another migration has held the lock for over {LOCK_TIMEOUT_SECONDS:.0f} s; is a `db upgrade` stuck?"
            )
        time.sleep(0.05)


def _release_lock(conn) -> None:
    try:
        conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    except Exception:  # noqa: BLE001 - closing the session releases it anyway
        pass

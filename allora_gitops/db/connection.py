"""Opening connections, and saying which database we mean without leaking its password."""

from __future__ import annotations

from allora_gitops.errors import DatabaseError
from allora_gitops.redact import display_url, redact_message

__all__ = ["connect", "display_url", "translate_error"]

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
        raise DatabaseError(f"cannot connect to the database {display_url(database_url)}: {reason}") from None


def translate_error(exc: BaseException) -> str:
    """One line for a database error: the server's message plus the constraint it names, never the parameters."""
    diag = getattr(exc, "diag", None)
    message = (getattr(diag, "message_primary", None) or _first_line(exc)).strip()
    constraint = getattr(diag, "constraint_name", None)
    if constraint and constraint not in message:
        message += f" (constraint {constraint})"
    return message


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # libpq says "connection to server at "h" (addr), port p failed: <reason>"; keep the reason.
    return line

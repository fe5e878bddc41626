"""Who is calling: users (or teams), their API tokens, the bundle names they own and the wallets they may use.

A token is ``agp_<8 hex>_<43 url-safe chars>`` (256 random bits). The database keeps only its sha256
and the ``agp_<8 hex>`` prefix, which identifies it in ``token list`` and ``token revoke``; the token
itself is printed once by ``token create`` and never stored, logged or returned again. sha256 rather
than a slow password hash because the token is random, not chosen: there is nothing to brute-force
(the same reasoning as GitHub's and PyPI's API tokens).

Everything here works on one psycopg connection (autocommit), so the API and the CLI share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator, Optional

from allora_gitops.errors import DatabaseError, RecordConflict, UsageError
from allora_gitops.redact import looks_like_secret, shown_value

TOKEN_PREFIX = "agp_"
_TOKEN = re.compile(r"^agp_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_USER = re.compile(r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DURATION = re.compile(r"^(\d+)([hdw])$")
DEPLOY_LOCK_WAIT_SECONDS = 120.0  # a publish pushes to the GitOps remote: seconds, rarely a minute


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    user_id: str
    name: str
    is_admin: bool
    max_live_deployments: Optional[int]  # None: the server's setting
    max_upload_bytes: Optional[int]


@dataclass(frozen=True)
class TokenInfo:
    prefix: str
    user: str
    is_admin: bool
    created_at: datetime
    expires_at: Optional[datetime]
    revoked_at: Optional[datetime]
    last_used_at: Optional[datetime]

    def to_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


def token_prefix(token: str) -> Optional[str]:
    """The shown part (``agp_<8 hex>``) of a well-formed token; None for anything else."""
    m = _TOKEN.match(token or "")
    return TOKEN_PREFIX + m.group(1) if m else None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """(token, prefix): a fresh random token and the part of it that may be shown."""
    prefix = TOKEN_PREFIX + secrets.token_hex(4)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def parse_expiry(text: Optional[str], now: Optional[datetime] = None) -> Optional[datetime]:
    """``30d`` / ``12h`` / ``2w`` from now, or an ISO 8601 date or time (UTC when no zone); None for none.

    Raises UsageError for anything else or a time in the past.
    """
    if text is None:
        return None
    text = text.strip()
    if text.lower() == "never":  # spelled out: an empty --expires '' (an unset shell variable) is not "never"
        return None
    now = now or datetime.now(timezone.utc)
    m = _DURATION.match(text)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        try:
            when = now + {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]
        except OverflowError:  # past year 9999 (or past timedelta's own range)
            raise UsageError(f"--expires {text!r} is too far ahead: at most the year 9999, or 'never'") from None
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"--expires {shown_value(text)}: give a duration (12h, 30d, 2w), an ISO date or 'never'") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        try:
            when = when.astimezone(timezone.utc)  # stored as timestamptz: 9999-12-31T23:30-01:00 has no UTC time
        except OverflowError:
            raise UsageError(f"--expires {text!r} has no UTC time between the years 1 and 9999") from None
    if when <= now:
        raise UsageError(f"--expires {text!r} is in the past")
    return when


def check_user_name(name: str) -> str:
    if not _USER.match(name or "") or len(name) > 63:
        raise UsageError(f"user name {shown_value(name)}: lower-case letters, digits, '-', '.', '_' (at most 63), starting and ending alphanumeric")
    return name


def check_wallet_secret_name(name: str) -> str:
    """A Kubernetes Secret name (DNS subdomain, at most 253): the format half of the database's
    ``wallet_assignments`` check, asked first; the "looks like a key" half stays the database's."""
    if not _SECRET_NAME.match(name or "") or len(name) > 253:
        raise UsageError("wallet Secret name: lower-case letters, digits, '-' and '.' (at most 253), starting and ending alphanumeric")
    return name


class Accounts:
    """Users, tokens, name ownership and wallet assignments on one autocommit psycopg connection."""

    def __init__(self, conn):
        self._conn = conn

    @property
    def connection(self):
        """The psycopg connection (autocommit) these accounts work on."""
        return self._conn

    # --- users and tokens ---------------------------------------------------------------------
    def ensure_user(self, name: str, *, admin: Optional[bool] = None) -> str:
        """The user's id, creating the user when new; ``admin`` given = set the flag."""
        check_user_name(name)
        row = self._conn.execute(
            """INSERT INTO platform_users (name, is_admin) VALUES (%s, coalesce(%s, false))
               ON CONFLICT (name) DO UPDATE SET is_admin = coalesce(%s, platform_users.is_admin)
               RETURNING id::text""",
            (name, admin, admin),
        ).fetchone()
        return row[0]

    def set_limits(self, name: str, *, max_live_deployments: Optional[int] = None, max_upload_bytes: Optional[int] = None,
                   reset: bool = False) -> tuple[Optional[int], Optional[int]]:
        """Change only the limits given (None = leave as it is); ``reset`` puts both back to the server's setting.

        Returns (max_live_deployments, max_upload_bytes) as stored afterwards, None meaning the server's
        setting. Raises UsageError for an unknown user.
        """
        user_id = self._user_id(name)
        if reset:
            changes = {"max_live_deployments": None, "max_upload_bytes": None}
        else:
            changes = {k: v for k, v in (("max_live_deployments", max_live_deployments), ("max_upload_bytes", max_upload_bytes)) if v is not None}
        if changes:
            assignments = ", ".join(f"{column} = %s" for column in changes)  # column names from the fixed pairs above
            self._conn.execute(f"UPDATE platform_users SET {assignments} WHERE id = %s", (*changes.values(), user_id))
        row = self._conn.execute("SELECT max_live_deployments, max_upload_bytes FROM platform_users WHERE id = %s", (user_id,)).fetchone()
        return row[0], row[1]

    def set_admin(self, name: str, admin: bool) -> None:
        """Grant or take away ``name``'s admin flag; their tokens' next request sees the change.

        Raises UsageError for an unknown user.
        """
        self._conn.execute("UPDATE platform_users SET is_admin = %s WHERE id = %s", (admin, self._user_id(name)))

    def create_token(self, user: str, *, admin: Optional[bool] = None, expires_at: Optional[datetime] = None) -> tuple[str, TokenInfo]:
        """(token, info): the token is returned once and only its sha256 and prefix are stored."""
        user_id = self.ensure_user(user, admin=admin)
        token, prefix = new_token()
        self._conn.execute(
            "INSERT INTO api_tokens (user_id, prefix, sha256, expires_at) VALUES (%s, %s, %s, %s)",
            (user_id, prefix, token_sha256(token), expires_at),
        )
        return token, self._tokens("WHERE t.prefix = %s", (prefix,))[0]

    def list_tokens(self, user: Optional[str] = None) -> list[TokenInfo]:
        if user is None:
            return self._tokens("", ())
        return self._tokens("WHERE u.name = %s", (user,))

    def revoke_token(self, prefix: str) -> TokenInfo:
        """Revoke by prefix (``agp_xxxxxxxx``, or the whole token); revoking twice is harmless."""
        prefix = token_prefix(prefix) or prefix
        row = self._conn.execute(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE prefix = %s RETURNING prefix", (prefix,)
        ).fetchone()
        if row is None:
            raise UsageError(f"no token with prefix {shown_value(prefix)} (see `allora-gitops token list`)")
        return self._tokens("WHERE t.prefix = %s", (prefix,))[0]

    def authenticate(self, token: str) -> Optional[Principal]:
        """The token's user when the token is known, not revoked and not expired; else None."""
        prefix = token_prefix(token)
        found = self.live_token(prefix) if prefix else None
        if found is None or not hmac.compare_digest(found[0], token_sha256(token)):
            return None
        self._conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE prefix = %s", (prefix,))
        return found[1]

    def live_token(self, prefix: str) -> Optional[tuple[str, Principal]]:
        """(stored sha256, user) of the token with ``prefix`` (``agp_<8 hex>``) when it is neither revoked nor
        expired; else None. The sha256 never leaves the server: the web session signs with it (api/web.py)."""
        row = self._conn.execute(
            """SELECT t.sha256, u.id::text, u.name, u.is_admin, u.max_live_deployments, u.max_upload_bytes
               FROM api_tokens t JOIN platform_users u ON u.id = t.user_id
               WHERE t.prefix = %s AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())""",
            (prefix,),
        ).fetchone()
        return None if row is None else (row[0], Principal(*row[1:]))

    # --- ownership ----------------------------------------------------------------------------
    def claim_name(self, principal: Principal, name: str) -> None:
        """Make ``principal`` the owner of bundle ``name`` if nobody is; refuse a name another user owns."""
        self._conn.execute(
            "INSERT INTO bundle_owners (name, user_id) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (name, principal.user_id)
        )
        owner = self.owner_of(name)
        if owner != principal.user_id and not principal.is_admin:  # taken: never say by whom (api/bundles.py)
            raise RecordConflict(f"the bundle name {name!r} is taken; choose another name in model.yaml")

    def owner_of(self, name: str) -> Optional[str]:
        row = self._conn.execute("SELECT user_id::text FROM bundle_owners WHERE name = %s", (name,)).fetchone()
        return row[0] if row else None

    def may_see(self, principal: Principal, name: str) -> bool:
        return principal.is_admin or self.owner_of(name) == principal.user_id

    def owned_names(self, principal: Principal) -> Optional[set[str]]:
        """Names the caller may see; None = every name (an admin)."""
        if principal.is_admin:
            return None
        rows = self._conn.execute("SELECT name FROM bundle_owners WHERE user_id = %s", (principal.user_id,)).fetchall()
        return {r[0] for r in rows}

    def live_deployments(self, principal: Principal) -> int:
        """How many of the caller's deployments are live, as ``live_deployments`` (migration 0008) defines it:
        its live release runs, or a change of it waits for review. Merging and `sync` free no slot."""
        row = self._conn.execute(
            "SELECT count(*) FROM live_deployments WHERE owner = %s AND kind = 'deployment'", (principal.name,)
        ).fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def deploying(self, principal: Principal, *, wait_seconds: float = DEPLOY_LOCK_WAIT_SECONDS) -> Iterator[None]:
        """One deployment change of ``principal`` at a time across every replica, so the live-deployment limit is
        checked and used atomically: a *transaction*-level advisory lock (``pg_try_advisory_xact_lock``) held by a
        transaction on this connection for the whole block, released by its end whatever happens.

        Transaction-level because a session lock does not survive a pooler in transaction mode (PgBouncer): lock,
        check and unlock may each run on a different server connection, so the unlock misses and a second request
        that lands on the locking server connection takes the same lock again. A waiter polls (short transactions,
        each given back to the pooler) rather than blocking inside one, so waiters never hold the pooler's server
        connections that the holder's own writes need. Raises ``RecordConflict`` (409) after ``wait_seconds``.
        """
        import time

        key = f"allora-platform-deploy:{principal.user_id}"
        deadline, pause = time.monotonic() + wait_seconds, 0.05
        while True:
            with self._conn.transaction():  # an exception in the block rolls it back and ends the lock with it
                if self._conn.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]:
                    yield
                    return
            if time.monotonic() >= deadline:
                raise RecordConflict(f"another deployment change of {principal.name} is still in progress after {wait_seconds:g} s; try again")
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    # --- wallets ------------------------------------------------------------------------------
    def assign_wallet(self, user: str, secret_name: str) -> None:
        """Allow ``user`` (created when new) the wallet Secret ``secret_name``; a refused name creates nothing.

        Raises UsageError for a malformed user or Secret name (the value is never echoed: it may be a pasted key).
        """
        check_user_name(user)
        check_wallet_secret_name(secret_name)
        with self._conn.transaction():  # the user and the assignment, or neither
            user_id = self.ensure_user(user)
            try:
                self._conn.execute(
                    "INSERT INTO wallet_assignments (user_id, secret_name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (user_id, secret_name)
                )
            except Exception as exc:  # the database's own check (a name that looks like a key)
                from allora_gitops.db.connection import refusal_error

                raise refusal_error(exc, "assign the wallet") from None

    def unassign_wallet(self, user: str, secret_name: str) -> bool:
        row = self._conn.execute(
            "DELETE FROM wallet_assignments WHERE user_id = %s AND secret_name = %s RETURNING 1", (self._user_id(user), secret_name)
        ).fetchone()
        return row is not None

    def wallets_of(self, user: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT w.secret_name FROM wallet_assignments w JOIN platform_users u ON u.id = w.user_id WHERE u.name = %s ORDER BY 1",
            (user,),
        ).fetchall()
        return [r[0] for r in rows]

    def may_use_wallet(self, principal: Principal, secret_name: str) -> bool:
        """Admins too: a wallet is used only when assigned, so every use is on record."""
        row = self._conn.execute(
            "SELECT 1 FROM wallet_assignments WHERE user_id = %s AND secret_name = %s", (principal.user_id, secret_name)
        ).fetchone()
        return row is not None

    # --- model secrets (model.yaml environment.secrets): the same rule as wallets -------------------
    def assign_secret(self, user: str, secret_name: str) -> None:
        user_id = self.ensure_user(user)
        try:
            self._conn.execute(
                "INSERT INTO secret_assignments (user_id, secret_name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (user_id, secret_name)
            )
        except Exception as exc:  # a CHECK refusal: say which rule, never echo the value (it may be a pasted key)
            from allora_gitops.db.connection import translate_error

            raise DatabaseError(f"the database refused the Secret name: {translate_error(exc)}") from None

    def unassign_secret(self, user: str, secret_name: str) -> bool:
        row = self._conn.execute(
            "DELETE FROM secret_assignments WHERE user_id = %s AND secret_name = %s RETURNING 1", (self._user_id(user), secret_name)
        ).fetchone()
        return row is not None

    def secrets_of(self, user: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT s.secret_name FROM secret_assignments s JOIN platform_users u ON u.id = s.user_id WHERE u.name = %s ORDER BY 1",
            (user,),
        ).fetchall()
        return [r[0] for r in rows]

    def may_use_secret(self, principal: Principal, secret_name: str) -> bool:
        """Admins too, like wallets: every Secret a model reads is on record as assigned."""
        row = self._conn.execute(
            "SELECT 1 FROM secret_assignments WHERE user_id = %s AND secret_name = %s", (principal.user_id, secret_name)
        ).fetchone()
        return row is not None

    # --- plumbing -----------------------------------------------------------------------------
    def _user_id(self, name: str) -> str:
        row = self._conn.execute("SELECT id::text FROM platform_users WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise UsageError(f"no user {shown_value(name)} (a user is created by `allora-gitops token create --user "
                             f"{'NAME' if looks_like_secret(name) else name}`)")
        return row[0]

    def _tokens(self, where: str, params: tuple) -> list[TokenInfo]:
        rows = self._conn.execute(
            f"""SELECT t.prefix, u.name, u.is_admin, t.created_at, t.expires_at, t.revoked_at, t.last_used_at
                FROM api_tokens t JOIN platform_users u ON u.id = t.user_id {where} ORDER BY t.created_at""",
            params,
        ).fetchall()
        return [TokenInfo(*r) for r in rows]


def open_accounts(database_url: Optional[str]):
    """(Accounts, connection) on the migrated records database; the caller closes the connection."""
    from allora_gitops.db import open_records

    records = open_records(database_url)
    return Accounts(records.connection), records

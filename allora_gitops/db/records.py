"""The records API the CLI uses: bundles, deployments, their releases and states, submission results.

A **deployment** is a model on a network (``Deployment``: a stable id, an owner, the live release); each
reviewed change of it (publish, promote, rollback, retire, pin) is a **release** (``ReleaseRecord``, the
rows of the ``releases`` table, migration 0008). ``get_deployment``/``list_deployments``/``current_deployment``/
``create_deployment``/``set_deployment_status`` predate 0008 and work on releases (their old rows).

The rules live here *and* in the database (CHECK constraints, a status trigger), so the
API gives a clear message first and a hand-written UPDATE still cannot break them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from allora_gitops.errors import DatabaseError, RecordConflict

if TYPE_CHECKING:
    from allora_gitops.db.paging import DeploymentFilter  # noqa: F401

DEPLOYMENT_STATUSES = ("pending", "committed", "merged", "synced", "failed", "abandoned", "retiring", "retired", "superseded")
# pending → committed (review branch) → merged (on the base branch) → synced (cluster feedback);
# committed → abandoned (branch deleted unmerged); live → retiring (retire on a review branch) → retired.
# merged/synced → superseded once a later release of the same deployment is live (0008).
# The same machine is enforced by the database (migrations 0001, 0003, 0008).
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"committed", "failed", "retired"}),
    "committed": frozenset({"merged", "synced", "failed", "abandoned", "retiring", "retired"}),
    "merged": frozenset({"synced", "failed", "retiring", "retired", "superseded"}),
    "synced": frozenset({"failed", "retiring", "retired", "superseded"}),
    # replaced on the base branch by a later release; merged again only when git shows it running again
    "superseded": frozenset({"merged", "retired"}),
    "failed": frozenset({"retired"}),
    "abandoned": frozenset(),
    "retiring": frozenset({"retired", "merged"}),
    "retired": frozenset(),
}
SUBMISSION_STATUSES = ("success", "error", "timeout")
WALLET_SECRET_KINDS = ("Secret", "ExternalSecret")
# a release in one of these is "live": publishing the same settings again reuses it
ACTIVE_STATUSES = ("pending", "committed", "merged", "synced")
RELEASE_ACTIONS = ("publish", "promote", "rollback", "retire", "pin")
OPEN_STATUSES = ("pending", "committed")  # a release waiting for review
ON_BASE_STATUSES = ("merged", "synced")  # a release the base branch holds (the live one, if not superseded)
PLATFORM_OWNER = "platform"  # the reserved owner of what the CLI publishes without --owner (0008)
# How an operator adds a platform user: a token (or a wallet assignment) creates one; there is no `user add`.
_ADD_USER = "add one with `allora-gitops token create --user {user}` (or `allora-gitops wallet assign SECRET --user {user}`)"


@dataclass(frozen=True)
class Deployment:
    """A model on a network: the stable identity its releases share (``releases`` holds the changes)."""

    id: str
    name: str
    network: str
    kind: str
    owner: str
    live_release_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class BundleRecord:
    id: str
    name: str
    version: str
    sha256: str
    size: int
    archive_url: str
    python_version: str
    manifest: dict[str, Any]
    published_by: str | None
    created_at: datetime
    updated_at: datetime
    created: bool = field(default=False, compare=False)  # True when the call that returned it inserted it


@dataclass(frozen=True)
class ReleaseRecord:
    """One release: a reviewed change of a deployment (``deployment_id``). ``id`` is the release's own id,
    which results point at; ``action`` is publish, promote, rollback, retire or pin."""

    id: str
    bundle_id: str
    name: str
    version: str
    bundle_sha256: str
    network: str
    topic_id: int
    fee_tier: str
    status: str
    status_message: str | None
    container_image: str | None
    wallet_secret_kind: str
    wallet_secret_name: str
    repo_url: str
    repo_branch: str
    commit_sha: str | None
    retire_branch: str | None
    retire_commit_sha: str | None
    created_at: datetime
    updated_at: datetime
    kind: str = "deployment"  # or "sandbox" (0005)
    expires_at: datetime | None = None  # sandboxes: when `sandbox prune` removes it
    owner: str | None = None  # sandboxes: who started it (the per-user limit counts these)
    # seconds between polls: the recorded one (0007), else the bundle's allora.polling_interval; None: neither
    polling_interval: int | None = None
    deployment_id: str | None = None  # the deployment (name + network) this release belongs to (0008)
    action: str = "publish"
    created_by: str | None = None  # who made the release (a platform user, or the CLI's owner)
    created: bool = field(default=False, compare=False)


DeploymentRecord = ReleaseRecord  # the name rows had before 0008, when a deployment row was one release


@dataclass(frozen=True)
class SubmissionRecord:
    id: str
    deployment_id: str
    nonce: int
    prediction: str | None
    tx_hash: str | None
    status: str
    error_message: str | None
    created_at: datetime


_BUNDLE_COLUMNS = "id::text, name, version, sha256, size_bytes, archive_url, python_version, manifest, published_by, created_at, updated_at"
_DEPLOYMENT_SELECT = """
SELECT d.id::text, d.bundle_id::text, b.name, b.version, b.sha256, d.network, d.topic_id, d.fee_tier, d.status,
       d.status_message, d.container_image, d.wallet_secret_kind, d.wallet_secret_name, d.repo_url, d.repo_branch,
       d.commit_sha, d.retire_branch, d.retire_commit_sha, d.created_at, d.updated_at, d.kind, d.expires_at, d.owner,
       coalesce(d.polling_interval, CASE WHEN jsonb_typeof(b.manifest #> '{allora,polling_interval}') = 'number'
                                         THEN least((b.manifest #>> '{allora,polling_interval}')::numeric, 2147483647)::int END),
       d.deployment_id::text, d.action, d.created_by
FROM releases d JOIN model_bundles b ON b.id = d.bundle_id
"""
_DEPLOYMENTS_COLUMNS = "id::text, name, network, kind, owner, live_release_id::text, created_at, updated_at"
_SUBMISSION_COLUMNS = "id::text, deployment_id::text, nonce, prediction, tx_hash, status, error_message, created_at"


def _reading(method):
    """Reads fail as one ``DatabaseError`` line too (e.g. the server went away)."""
    import functools

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _Refusal("read the records"):
            return method(*args, **kwargs)

    return wrapper


class Records:
    """A connection to a migrated records database. Use as a context manager, or call ``close()``."""

    def __init__(self, database_url: str, conn=None):
        from allora_gitops.db.connection import connect

        self.database_url = database_url
        self._conn = conn if conn is not None else connect(database_url)

    def close(self) -> None:
        self._conn.close()

    @property
    def connection(self):
        """The psycopg connection (autocommit), for the function APIs such as ``db.results``."""
        return self._conn

    def __enter__(self) -> "Records":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- bundles ------------------------------------------------------------------------------
    def register_bundle(
        self,
        *,
        name: str,
        version: str,
        sha256: str,
        size: int,
        archive_url: str,
        python_version: str,
        manifest: Any,
        published_by: str | None = None,
    ) -> BundleRecord:
        """Record a stored archive. Idempotent on name + version + sha256; another sha256 for the same
        name + version is refused (a version names one set of bytes forever)."""
        manifest_doc = _manifest_dict(manifest)
        with self._write("register the bundle"):
            with self._conn.transaction():
                row = self._conn.execute(
                    f"""INSERT INTO model_bundles (name, version, sha256, size_bytes, archive_url, python_version, manifest, published_by)
                        VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)
                        ON CONFLICT (name, version) DO NOTHING
                        RETURNING {_BUNDLE_COLUMNS}""",
                    (name, version, sha256, size, archive_url, python_version, json.dumps(manifest_doc), published_by),
                ).fetchone()
                if row is not None:
                    return _bundle(row, created=True)
                existing = self.get_bundle(name, version)
        if existing is None:  # deleted between the two statements: unheard of, but say so
            raise DatabaseError(f"bundle {name} {version} vanished while it was being registered; try again")
        if existing.sha256 != sha256:
            raise RecordConflict(
                f"bundle {name} {version} is already registered with sha256 {existing.sha256}, "
                f"not {sha256}; a version names one archive forever: bump the version"
            )
        return existing

    @_reading
    def get_bundle(self, name: str, version: str) -> BundleRecord | None:
        row = self._conn.execute(
            f"SELECT {_BUNDLE_COLUMNS} FROM model_bundles WHERE name = %s AND version = %s", (name, version)
        ).fetchone()
        return _bundle(row) if row else None

    @_reading
    def find_bundle_by_sha256(self, sha256: str) -> list[BundleRecord]:
        rows = self._conn.execute(
            f"SELECT {_BUNDLE_COLUMNS} FROM model_bundles WHERE sha256 = %s ORDER BY created_at", (sha256,)
        ).fetchall()
        return [_bundle(r) for r in rows]

    @_reading
    def list_bundles(self, name: str | None = None) -> list[BundleRecord]:
        """Newest first; only ``name``'s versions when given."""
        if name is None:
            rows = self._conn.execute(f"SELECT {_BUNDLE_COLUMNS} FROM model_bundles ORDER BY created_at DESC, name").fetchall()
        else:
            rows = self._conn.execute(
                f"SELECT {_BUNDLE_COLUMNS} FROM model_bundles WHERE name = %s ORDER BY created_at DESC", (name,)
            ).fetchall()
        return [_bundle(r) for r in rows]

    # --- deployments and releases -------------------------------------------------------------
    def create_release(
        self,
        *,
        bundle_id: str,
        network: str,
        topic_id: int,
        wallet_secret_name: str,
        repo_url: str,
        repo_branch: str,
        fee_tier: str = "STANDARD",
        wallet_secret_kind: str = "Secret",
        container_image: str | None = None,
        kind: str = "deployment",
        expires_at: datetime | None = None,
        owner: str | None = None,
        polling_interval: int | None = None,
        action: str = "publish",
        created_by: str | None = None,
    ) -> ReleaseRecord:
        """A new release in ``pending`` (its deployment created on first use), or the open one (pending or
        committed) on the same review branch with exactly these settings (``created`` False), so re-running a
        publish adds no row. A sandbox (``kind="sandbox"``) has an ``expires_at`` and an ``owner`` (who started
        it). ``polling_interval`` (seconds, what the overlay runs with) is recorded, and updated on the reused
        row: it is a fact for the lifecycle, not part of its identity. The deployment's owner is the bundle
        name's (``bundle_owners``), else the reserved ``platform``. ``created_by`` is who made the release (the API's
        caller); without one (the CLI) it is the deployment's owner, so every release says who."""
        if wallet_secret_kind not in WALLET_SECRET_KINDS:
            raise DatabaseError(f"wallet secret kind must be one of {', '.join(WALLET_SECRET_KINDS)}, not {wallet_secret_kind!r}")
        if action not in RELEASE_ACTIONS:
            raise DatabaseError(f"unknown release action {action!r} (one of {', '.join(RELEASE_ACTIONS)})")
        settings = (bundle_id, network, topic_id, fee_tier, wallet_secret_kind, wallet_secret_name, repo_url, repo_branch)
        with self._write("create the release"):
            with self._conn.transaction():
                # serialise creators of the same bundle+network so "find or insert" is atomic
                self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"deployment:{bundle_id}:{network}",))
                existing = self._conn.execute(
                    _DEPLOYMENT_SELECT
                    + """WHERE d.bundle_id = %s AND d.network = %s AND d.topic_id = %s AND d.fee_tier = %s
                         AND d.wallet_secret_kind = %s AND d.wallet_secret_name = %s AND d.repo_url = %s
                         AND d.repo_branch = %s AND d.container_image IS NOT DISTINCT FROM %s
                         AND d.status = ANY(%s) AND d.kind = %s AND d.expires_at IS NOT DISTINCT FROM %s
                         AND d.owner IS NOT DISTINCT FROM %s AND d.action = %s
                         ORDER BY d.created_at DESC LIMIT 1""",
                    (*settings, container_image, list(OPEN_STATUSES), kind, expires_at, owner, action),
                ).fetchone()
                if existing and (polling_interval is None or existing[23] == polling_interval):
                    return _deployment(existing)
                if existing:
                    self._conn.execute("UPDATE releases SET polling_interval = %s WHERE id = %s", (polling_interval, existing[0]))
                    return _deployment(self._conn.execute(_DEPLOYMENT_SELECT + "WHERE d.id = %s", (existing[0],)).fetchone())
                deployment_id = self._ensure_deployment(bundle_id, network, kind)
                new_id = self._conn.execute(
                    """INSERT INTO releases (bundle_id, network, topic_id, fee_tier, wallet_secret_kind,
                                             wallet_secret_name, repo_url, repo_branch, container_image,
                                             kind, expires_at, owner, polling_interval, deployment_id, action, created_by)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                               coalesce(%s, (SELECT owner FROM deployments WHERE id = %s::uuid))) RETURNING id::text""",
                    (*settings, container_image, kind, expires_at, owner, polling_interval, deployment_id, action, created_by, deployment_id),
                ).fetchone()[0]
                row = self._conn.execute(_DEPLOYMENT_SELECT + "WHERE d.id = %s", (new_id,)).fetchone()
        return _deployment(row, created=True)

    create_deployment = create_release  # the name from before 0008

    def _ensure_deployment(self, bundle_id: str, network: str, kind: str) -> str:
        """The id of the deployment of ``bundle_id``'s name on ``network``, created (owned as the name is) if new."""
        row = self._conn.execute(
            """INSERT INTO deployments (name, network, kind, owner)
               SELECT b.name, %s, %s, coalesce(u.name, %s) FROM model_bundles b
               LEFT JOIN bundle_owners o ON o.name = b.name LEFT JOIN platform_users u ON u.id = o.user_id
               WHERE b.id = %s
               ON CONFLICT (name, network, kind) DO UPDATE SET name = EXCLUDED.name
               RETURNING id::text""",
            (network, kind, PLATFORM_OWNER, bundle_id),
        ).fetchone()
        if row is None:
            raise RecordConflict(f"no bundle {bundle_id}")
        return row[0]

    @_reading
    def get_deployment_by_id(self, deployment_id: str) -> Deployment | None:
        """The deployment (name + network) with this id; None when there is none."""
        row = self._conn.execute(f"SELECT {_DEPLOYMENTS_COLUMNS} FROM deployments WHERE id = %s", (_uuid(deployment_id),)).fetchone()
        return Deployment(*row) if row else None

    @_reading
    def find_deployment(self, name: str, network: str, kind: str = "deployment") -> Deployment | None:
        row = self._conn.execute(
            f"SELECT {_DEPLOYMENTS_COLUMNS} FROM deployments WHERE name = %s AND network = %s AND kind = %s", (name, network, kind)
        ).fetchone()
        return Deployment(*row) if row else None

    @_reading
    def list_deployment_entities(
        self, *, name: str | None = None, network: str | None = None, kind: str = "deployment", owner: str | None = None
    ) -> list[Deployment]:
        """Deployments (one per name and network), by name then network; filtered when given."""
        where, params = ["kind = %s"], [kind]
        for column, value in (("name", name), ("network", network), ("owner", owner)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        rows = self._conn.execute(
            f"SELECT {_DEPLOYMENTS_COLUMNS} FROM deployments WHERE {' AND '.join(where)} ORDER BY name, network", params
        ).fetchall()
        return [Deployment(*r) for r in rows]

    @_reading
    def page_deployments(self, f: "DeploymentFilter", *, after: str | None = None, limit: int = 50) -> tuple[list[Deployment], str | None]:
        """One page of deployments by name then network (``db.paging``: keyset, filters and visibility in SQL) and
        the cursor of the next page (None on the last). ``UsageError`` for a bad cursor or limit."""
        from allora_gitops.db.paging import check_limit, decode_cursor, deployment_page_sql, encode_cursor

        key = decode_cursor(after, "d", 2) if after is not None else None
        sql, params = deployment_page_sql(f, key, check_limit(limit))
        rows = [Deployment(*r) for r in self._conn.execute(sql, params).fetchall()]
        if len(rows) <= limit:
            return rows, None
        return rows[:limit], encode_cursor("d", [rows[limit - 1].name, rows[limit - 1].network])

    @_reading
    def releases_of(self, deployment_ids: list[str]) -> dict[str, list[ReleaseRecord]]:
        """deployment id → its releases, oldest first, for a page of deployments in one statement."""
        out: dict[str, list[ReleaseRecord]] = {i: [] for i in deployment_ids}
        if deployment_ids:
            rows = self._conn.execute(
                _DEPLOYMENT_SELECT + "WHERE d.deployment_id = ANY(%s::uuid[]) ORDER BY d.created_at, d.id", ([_uuid(i) for i in deployment_ids],)
            ).fetchall()
            for r in map(_deployment, rows):
                out[r.deployment_id].append(r)
        return out

    @_reading
    def page_releases(self, deployment_ids: list[str], *, after: str | None = None, limit: int = 50) -> tuple[list[ReleaseRecord], str | None]:
        """The releases of these deployments in the order they were made (created_at, id), one page, and the next
        page's cursor (None on the last): what ``history`` pages through."""
        from allora_gitops.db.paging import check_limit, decode_cursor, encode_cursor

        check_limit(limit)
        where, params = "d.deployment_id = ANY(%s::uuid[])", [[_uuid(i) for i in deployment_ids]]
        if after is not None:
            at, rid = decode_cursor(after, "r", 2)
            where += " AND (d.created_at, d.id) > (%s, %s::uuid)"
            params += [_cursor_time(at), _cursor_uuid(rid)]
        rows = self._conn.execute(_DEPLOYMENT_SELECT + f"WHERE {where} ORDER BY d.created_at, d.id LIMIT %s", [*params, limit + 1]).fetchall()
        found = [_deployment(r) for r in rows]
        if len(found) <= limit:
            return found, None
        last = found[limit - 1]
        return found[:limit], encode_cursor("r", [last.created_at.isoformat(), last.id])

    @_reading
    def list_releases(self, deployment_id: str) -> list[ReleaseRecord]:
        """The releases of one deployment, oldest first (the order they were made in)."""
        rows = self._conn.execute(
            _DEPLOYMENT_SELECT + "WHERE d.deployment_id = %s ORDER BY d.created_at, d.id", (_uuid(deployment_id),)
        ).fetchall()
        return [_deployment(r) for r in rows]

    @_reading
    def is_live(self, name: str, network: str) -> bool:
        """Whether the deployment of ``name`` on ``network`` is live (the view ``live_deployments``, 0008: its
        live release runs, or a change of it waits for review)."""
        row = self._conn.execute(
            "SELECT 1 FROM live_deployments WHERE name = %s AND network = %s AND kind = 'deployment'", (name, network)
        ).fetchone()
        return row is not None

    @_reading
    def count_live(self, owner: str) -> int:
        """How many deployments of ``owner`` are live (``live_deployments``): what the per-user limit counts."""
        return int(self._conn.execute(
            "SELECT count(*) FROM live_deployments WHERE owner = %s AND kind = 'deployment'", (owner,)
        ).fetchone()[0])

    @_reading
    def results_by_version(self, deployment_id: str, kind: str = "submission", *, days: int = 7) -> list[dict[str, Any]]:
        """Per version of a deployment (in the order its releases were made): results of ``kind`` over the last
        ``days`` days (a bounded window: the page's cost does not grow with the deployment's age), how many
        succeeded, the success rate (None without results) and the p95 latency in ms — versions side by side."""
        rows = self._conn.execute(
            """SELECT b.version, count(s.id), count(s.id) FILTER (WHERE s.status = 'success'),
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY s.latency_ms)
               FROM releases r JOIN model_bundles b ON b.id = r.bundle_id
               LEFT JOIN submission_results s ON s.deployment_id = r.id AND s.kind = %s
                                              AND s.created_at >= now() - make_interval(days => %s)
               WHERE r.deployment_id = %s AND r.action <> 'retire'
               GROUP BY b.version ORDER BY min(r.created_at)""",
            (kind, days, _uuid(deployment_id)),
        ).fetchall()
        return [{"version": v, "count": n, "success": ok, "success_rate": (ok / n if n else None), "p95_ms": p95} for v, n, ok, p95 in rows]

    def settle_live_release(self, deployment_id: str, live_release_id: str | None, reason: str) -> list[ReleaseRecord]:
        """Make ``live_release_id`` (None: nothing) the deployment's live release, as git says: every other
        merged/synced release of it becomes ``superseded``, and a superseded one git shows running is merged
        again. Returns the releases whose state changed (their new state)."""
        changed = []
        with self._write("record the live release"):
            with self._conn.transaction():
                self._conn.execute(
                    "UPDATE deployments SET live_release_id = %s WHERE id = %s AND live_release_id IS DISTINCT FROM %s",
                    (live_release_id, _uuid(deployment_id), live_release_id),
                )
                rows = self._conn.execute(
                    """UPDATE releases SET status = 'superseded', status_message = %s
                       WHERE deployment_id = %s AND status = ANY(%s) AND id IS DISTINCT FROM %s RETURNING id""",
                    (reason, deployment_id, list(ON_BASE_STATUSES), live_release_id),
                ).fetchall()
                if live_release_id is not None:
                    rows += self._conn.execute(
                        """UPDATE releases SET status = 'merged', status_message = %s
                           WHERE id = %s AND status = 'superseded' RETURNING id""",
                        (f"the base branch runs it again", live_release_id),
                    ).fetchall()
                for (rid,) in rows:
                    changed.append(_deployment(self._conn.execute(_DEPLOYMENT_SELECT + "WHERE d.id = %s", (rid,)).fetchone()))
        return changed

    def deployment_lock(self, name: str, network: str):
        """Hold the change lock of ``name`` on ``network`` (a session advisory lock, shared by every process and
        replica): comparing with what runs, recording the release and pushing it happen one change at a time,
        so two identical publishes make one release and the second is told there is nothing to do."""
        import contextlib

        key = f"allora-release:{name}:{network}"

        @contextlib.contextmanager
        def held():
            with self._write("lock the deployment"):
                self._conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    self._conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))

        return held()

    def set_owner(self, name: str, user: str) -> int:
        """Transfer bundle ``name`` and its deployments to the existing platform user ``user``; returns how
        many deployments moved. ``RecordConflict`` for an unknown user or name."""
        with self._write("transfer the name"):
            with self._conn.transaction():
                found = self._conn.execute("SELECT id FROM platform_users WHERE name = %s", (user,)).fetchone()
                if found is None:
                    raise RecordConflict(f"no platform user {user!r}: {_ADD_USER.format(user=user)}")
                known = self._conn.execute(
                    "SELECT 1 FROM model_bundles WHERE name = %s UNION SELECT 1 FROM bundle_owners WHERE name = %s", (name, name)
                ).fetchone()
                if known is None:
                    raise RecordConflict(f"no bundle named {name!r} in the records")
                self._conn.execute(
                    """INSERT INTO bundle_owners (name, user_id) VALUES (%s, %s)
                       ON CONFLICT (name) DO UPDATE SET user_id = EXCLUDED.user_id""",
                    (name, found[0]),
                )
                return self._conn.execute("UPDATE deployments SET owner = %s WHERE name = %s", (user, name)).rowcount

    @_reading
    def check_cli_owner(self, name: str, owner: str) -> None:
        """What :meth:`claim_for_cli` would refuse, checked before anything is stored: ``RecordConflict`` when
        ``owner`` is no platform user (``platform`` always is), whether or not ``name`` has an owner already."""
        if owner == PLATFORM_OWNER:
            return
        if self._conn.execute("SELECT 1 FROM platform_users WHERE name = %s", (owner,)).fetchone() is None:
            raise RecordConflict(f"no platform user {owner!r} to own {name}: {_ADD_USER.format(user=owner)}")

    def claim_for_cli(self, name: str, owner: str) -> str:
        """Record ``owner`` (an existing platform user, or the reserved ``platform``) as the owner of bundle
        ``name`` if it has none; returns the owner the name has. The CLI is the operator's tool: it may publish
        a name whoever owns it, but it never takes one over silently (``owner set`` does that)."""
        with self._write("record the owner"):
            with self._conn.transaction():
                if owner == PLATFORM_OWNER:
                    self._conn.execute("INSERT INTO platform_users (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (owner,))
                user = self._conn.execute("SELECT id FROM platform_users WHERE name = %s", (owner,)).fetchone()
                if user is None:
                    raise RecordConflict(f"no platform user {owner!r} to own {name}: {_ADD_USER.format(user=owner)}")
                self._conn.execute(
                    "INSERT INTO bundle_owners (name, user_id) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (name, user[0])
                )
                row = self._conn.execute(
                    "SELECT u.name FROM bundle_owners o JOIN platform_users u ON u.id = o.user_id WHERE o.name = %s", (name,)
                ).fetchone()
        return row[0]

    def set_release_status(
        self,
        deployment_id: str,
        status: str,
        *,
        commit_sha: str | None = None,
        message: str | None = None,
        container_image: str | None = None,
        retire_branch: str | None = None,
        retire_commit_sha: str | None = None,
    ) -> DeploymentRecord:
        """Move a deployment along the machine of ``ALLOWED_TRANSITIONS``.

        Setting the status it already has is a no-op (besides updating the given fields); a
        step the machine does not allow raises ``RecordConflict``. ``committed`` needs a commit sha;
        ``retiring`` records where the retire change is (``retire_branch``, ``retire_commit_sha``).
        """
        if status not in DEPLOYMENT_STATUSES:
            raise DatabaseError(f"unknown deployment status {status!r} (one of {', '.join(DEPLOYMENT_STATUSES)})")
        with self._write("change the deployment status"):
            with self._conn.transaction():
                current = self._conn.execute(
                    "SELECT status, commit_sha FROM releases WHERE id = %s FOR UPDATE", (_uuid(deployment_id),)
                ).fetchone()
                if current is None:
                    raise RecordConflict(f"no deployment {deployment_id}")
                old = current[0]
                if status != old and status not in ALLOWED_TRANSITIONS[old]:
                    allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[old])) or "none: it is final"
                    raise RecordConflict(
                        f"deployment {deployment_id} is {old}; it cannot become {status} (allowed: {allowed})"
                    )
                if status == "committed" and commit_sha is None and current[1] is None:
                    raise DatabaseError(f"deployment {deployment_id}: status committed needs the commit sha")
                self._conn.execute(
                    """UPDATE releases SET status = %s,
                           commit_sha = coalesce(%s, commit_sha),
                           status_message = CASE WHEN %s::text IS NULL THEN status_message ELSE allora_redact_secrets(%s::text) END,
                           container_image = coalesce(%s, container_image),
                           retire_branch = coalesce(%s, retire_branch),
                           retire_commit_sha = coalesce(%s, retire_commit_sha)
                       WHERE id = %s""",
                    (status, commit_sha, message, message, container_image, retire_branch, retire_commit_sha, deployment_id),
                )
                row = self._conn.execute(_DEPLOYMENT_SELECT + "WHERE d.id = %s", (deployment_id,)).fetchone()
        return _deployment(row)

    set_deployment_status = set_release_status  # the name from before 0008

    @_reading
    def get_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        row = self._conn.execute(_DEPLOYMENT_SELECT + "WHERE d.id = %s", (_uuid(deployment_id),)).fetchone()
        return _deployment(row) if row else None

    @_reading
    def list_deployments(
        self, *, name: str | None = None, network: str | None = None, status: str | None = None, kind: str | None = "deployment"
    ) -> list[DeploymentRecord]:
        """Newest change first, filtered by bundle name, network, status and kind (None: every kind) when given."""
        where, params = [], []
        for column, value in (("b.name", name), ("d.network", network), ("d.status", status), ("d.kind", kind)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        sql = _DEPLOYMENT_SELECT + (f"WHERE {' AND '.join(where)} " if where else "") + "ORDER BY d.updated_at DESC, d.created_at DESC"
        return [_deployment(r) for r in self._conn.execute(sql, params).fetchall()]

    @_reading
    def current_deployment(self, name: str, network: str) -> DeploymentRecord | None:
        """The release of ``name`` on ``network`` that runs: the deployment's live release (as git last said),
        else the most recent live one (pending/committed/merged/synced) when none was settled yet."""
        row = self._conn.execute(
            _DEPLOYMENT_SELECT
            + """JOIN deployments t ON t.id = d.deployment_id AND t.live_release_id = d.id
                 WHERE t.name = %s AND t.network = %s AND t.kind = 'deployment' AND d.status = ANY(%s)""",
            (name, network, list(ACTIVE_STATUSES)),
        ).fetchone()
        if row is None:
            row = self._conn.execute(
                _DEPLOYMENT_SELECT
                + "WHERE b.name = %s AND d.network = %s AND d.status = ANY(%s) AND d.kind = 'deployment' ORDER BY d.created_at DESC LIMIT 1",
                (name, network, list(ACTIVE_STATUSES)),
            ).fetchone()
        return _deployment(row) if row else None

    live_release = current_deployment

    # --- submissions --------------------------------------------------------------------------
    def record_submission(
        self,
        deployment_id: str,
        *,
        nonce: int,
        status: str,
        prediction: Any = None,
        tx_hash: str | None = None,
        error_message: str | None = None,
    ) -> SubmissionRecord:
        """Store one submission outcome. Free text (prediction, error) is redacted of secret-looking parts."""
        if status not in SUBMISSION_STATUSES:
            raise DatabaseError(f"unknown submission status {status!r} (one of {', '.join(SUBMISSION_STATUSES)})")
        if prediction is not None and not isinstance(prediction, str):
            prediction = json.dumps(prediction, sort_keys=True, default=str) if isinstance(prediction, dict) else str(prediction)
        with self._write("record the submission"), self._conn.transaction():
            # one row per (deployment, nonce, kind) across every partition (0016): its key holds the time
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"results:{_uuid(deployment_id)}",))
            if self._conn.execute(
                "SELECT 1 FROM submission_results WHERE deployment_id = %s AND nonce = %s AND kind = 'submission'",
                (_uuid(deployment_id), nonce),
            ).fetchone():
                raise DatabaseError(f"could not record the submission: the result of nonce {nonce} exists already")
            row = self._conn.execute(
                f"""INSERT INTO submission_results (deployment_id, nonce, prediction, tx_hash, status, error_message)
                    VALUES (%s, %s, allora_redact_secrets(%s), %s, %s, allora_redact_secrets(%s))
                    RETURNING {_SUBMISSION_COLUMNS}""",
                (_uuid(deployment_id), nonce, prediction, tx_hash, status, error_message),
            ).fetchone()
        return SubmissionRecord(*row)

    @_reading
    def list_submissions(self, deployment_id: str, limit: int = 100) -> list[SubmissionRecord]:
        rows = self._conn.execute(
            f"SELECT {_SUBMISSION_COLUMNS} FROM submission_results WHERE deployment_id = %s ORDER BY created_at DESC LIMIT %s",
            (_uuid(deployment_id), limit),
        ).fetchall()
        return [SubmissionRecord(*r) for r in rows]

    # --- plumbing -----------------------------------------------------------------------------
    def _write(self, what: str) -> "_Refusal":
        return _Refusal(what)


class _Refusal:
    """Turns a database refusal (constraint, trigger, lost connection) into one ``DatabaseError`` line."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, DatabaseError):
            return False
        import psycopg

        from allora_gitops.db.connection import refusal_error

        if isinstance(exc, psycopg.Error):
            raise refusal_error(exc, self.what) from None
        return False



_BAD_CURSOR = "invalid cursor: it is not a cursor this list gave out: pass the `next` value of the previous page unchanged"


def _cursor_time(value: str) -> datetime:
    from allora_gitops.errors import UsageError

    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(_BAD_CURSOR) from None
    if at.tzinfo is None:
        raise UsageError(_BAD_CURSOR)
    return at


def _cursor_uuid(value: str) -> str:
    import uuid

    from allora_gitops.errors import UsageError

    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise UsageError(_BAD_CURSOR) from None


def _uuid(value: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise DatabaseError(f"not a record id: {value!r}") from None


def _manifest_dict(manifest: Any) -> dict[str, Any]:
    if hasattr(manifest, "model_dump"):
        return manifest.model_dump(mode="json", exclude_none=True)
    if isinstance(manifest, dict):
        return manifest
    raise DatabaseError(f"manifest must be a mapping or a BundleManifest, not {type(manifest).__name__}")


def _bundle(row, created: bool = False) -> BundleRecord:
    return BundleRecord(*row, created=created)


def _deployment(row, created: bool = False) -> DeploymentRecord:
    return DeploymentRecord(*row, created=created)

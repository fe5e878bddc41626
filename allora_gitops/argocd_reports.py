"""What Argo CD reports back: its notifications webhook's events, checked, matched to a release and kept.

Argo CD's notifications controller calls ``POST /api/v1/argocd/events`` (``api/argocd.py``) with the body
the templates of ``argocd/notifications-cm.yaml`` render (``render/notifications.py``): one JSON object per
trigger — ``deployed`` (synced and healthy, once per revision), ``sync-failed``, ``health-degraded`` — with
the Application's name, its source path, the synced revision, sync status, health, Argo CD's message and
Argo CD's time for it. :func:`record_event` keeps it in ``argocd_reports`` (migration 0009) when

- the Application is one of ours: its path is ``deployments/<name>/overlays/<network>``, its name
  ``<name>-<network>`` (the ApplicationSet's), and the records know a deployment of that name and network;
- the revision runs a release of it: a release whose commit *is* the revision, else (a merge commit on the
  base branch) the release the base branch's tree at that revision runs — same version and bundle sha256,
  its commit an ancestor of the revision (read from the GitOps repository, when the server has one);
- it is news: not a replay of a report already kept (same Application, revision, event and time), not older
  than the newest report of another revision of the Application (a stale revision).

Anything else is *ignored*, with the reason in the answer (``Outcome``): Argo CD logs it, nobody retries.

The webhook's token is a kind of its own (``aga_<8 hex>_<43 chars>``), never a user's API token: stored as
its sha256 with a shown prefix (``argocd_tokens``), made and rotated by ``allora-gitops argocd rotate-token``;
rotating lets the previous tokens work for a grace period while the Secret is updated.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Literal, Optional, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from allora_gitops import constants as C

TOKEN_PREFIX = "aga_"
_TOKEN = re.compile(r"^aga_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_SHA = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")
_APPLICATION = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
EVENTS = ("deployed", "sync-failed", "health-degraded")
MESSAGE_MAX = 2000  # characters of Argo CD's message kept (the column's limit)
RESOURCES_MAX = 1000  # resources of one Application read for health messages


# --- the webhook token ----------------------------------------------------------------------------------


def new_argocd_token() -> tuple[str, str]:
    """(token, prefix): a fresh random webhook token and the part of it that may be shown."""
    prefix = TOKEN_PREFIX + secrets.token_hex(4)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


@dataclass(frozen=True)
class ArgoCDToken:
    prefix: str
    created_at: datetime
    expires_at: Optional[datetime]
    last_used_at: Optional[datetime]

    def to_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


def rotate_argocd_token(conn, grace: timedelta = timedelta(0)) -> tuple[str, ArgoCDToken]:
    """A new webhook token (returned once; only its sha256 is stored); the live ones expire after ``grace``."""
    token, prefix = new_argocd_token()
    with conn.transaction():
        conn.execute(
            "UPDATE argocd_tokens SET expires_at = least(coalesce(expires_at, 'infinity'), now() + %s) "
            "WHERE expires_at IS NULL OR expires_at > now()",
            (grace,),
        )
        conn.execute("INSERT INTO argocd_tokens (prefix, sha256) VALUES (%s, %s)", (prefix, _sha256(token)))
    return token, list_argocd_tokens(conn)[-1]


def list_argocd_tokens(conn) -> list[ArgoCDToken]:
    rows = conn.execute("SELECT prefix, created_at, expires_at, last_used_at FROM argocd_tokens ORDER BY created_at, prefix").fetchall()
    return [ArgoCDToken(*r) for r in rows]


def check_argocd_token(conn, token: str) -> bool:
    """Whether ``token`` is a live webhook token (known, not expired). A user's API token never is."""
    m = _TOKEN.match(token or "")
    if m is None:
        return False
    row = conn.execute(
        "SELECT sha256 FROM argocd_tokens WHERE prefix = %s AND (expires_at IS NULL OR expires_at > now())", (TOKEN_PREFIX + m.group(1),)
    ).fetchone()
    if row is None or not hmac.compare_digest(row[0], _sha256(token)):
        return False
    conn.execute("UPDATE argocd_tokens SET last_used_at = now() WHERE prefix = %s", (TOKEN_PREFIX + m.group(1),))
    return True


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- the event --------------------------------------------------------------------------------------------


class ArgoCDResource(BaseModel):
    """One entry of the Application's ``status.resources`` (only what a health message needs)."""

    model_config = ConfigDict(extra="ignore")

    kind: str = ""
    name: str = ""
    health: Optional[dict[str, Any]] = None


class ArgoCDEvent(BaseModel):
    """The body the notification templates render (``render/notifications.py``); times as Argo CD writes them (RFC 3339)."""

    model_config = ConfigDict(extra="forbid")

    event: Literal["deployed", "sync-failed", "health-degraded"]
    application: str = Field(max_length=253)
    path: str = Field(max_length=1000)
    revision: str
    sync_status: Literal["Synced", "OutOfSync", "Unknown"]
    health_status: Literal["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"]
    operation_phase: Optional[str] = Field(default=None, max_length=40)
    message: Optional[str] = Field(default=None, max_length=100_000)
    resources: Optional[list[ArgoCDResource]] = Field(default=None, max_length=RESOURCES_MAX)
    reported_at: datetime

    @field_validator("application")
    @classmethod
    def _application(cls, v: str) -> str:
        if not _APPLICATION.match(v):
            raise ValueError("is not an Argo CD Application name")
        return v

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str) -> str:
        if not _SHA.match(v):
            raise ValueError("is not a git commit sha (40 or 64 lowercase hex digits)")
        return v

    @field_validator("reported_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("needs a time zone (Argo CD writes RFC 3339 UTC)")
        return v

    def full_message(self) -> Optional[str]:
        """Argo CD's own words: the message sent, else the messages of the resources that are not healthy."""
        parts = [self.message.strip()] if self.message and self.message.strip() else []
        if not parts and self.resources:
            for r in self.resources:
                health = r.health or {}
                if health.get("status") in ("Degraded", "Missing") and health.get("message"):
                    parts.append(f"{r.kind}/{r.name}: {health['message']}")
        text = "; ".join(" ".join(p.split()) for p in parts)
        return text[:MESSAGE_MAX] if text else None


@dataclass(frozen=True)
class Outcome:
    """What became of one event: recorded (on ``release_commit``) or ignored, with the reason either way."""

    recorded: bool
    reason: str
    application: str
    revision: str
    name: Optional[str] = None
    network: Optional[str] = None
    release_commit: Optional[str] = None

    def to_dict(self) -> dict:
        return {**asdict(self), "ignored": not self.recorded}


class RepositoryView(Protocol):
    """What the matching needs from the GitOps repository (``GitRepositoryView``); absent: exact commits only."""

    def has(self, revision: str) -> bool: ...

    def runs(self, revision: str, name: str, network: str) -> Optional[tuple[Optional[str], Optional[str]]]: ...

    def is_ancestor(self, commit: str, revision: str) -> bool: ...


class GitRepositoryView:
    """The base branch of the platform's GitOps repository (fetched once per view), as ``RepositoryView``."""

    def __init__(self, repo: str, base_branch: str):
        from allora_gitops.gitops.repo import parse_remote, read_ref

        self.git, self.tip = read_ref(parse_remote(repo), base_branch)

    def has(self, revision: str) -> bool:
        return self.git.run("cat-file", "-e", f"{revision}^{{commit}}", check=False).status == 0

    def runs(self, revision: str, name: str, network: str):
        from allora_gitops.gitops.layout import read_deployments
        from allora_gitops.gitops.repo import Snapshot

        for facts in read_deployments(Snapshot(self.git, revision), name=name, full=False):
            if facts.network == network:
                return facts.version, facts.sha256
        return None

    def is_ancestor(self, commit: str, revision: str) -> bool:
        from allora_gitops.gitops.sync import is_ancestor

        return is_ancestor(self.git, commit, revision)


def parse_application_path(path: str) -> Optional[tuple[str, str]]:
    """(name, network) of ``deployments/<name>/overlays/<network>``; None for any other path (a sandbox, the platform)."""
    parts = path.strip("/").split("/")
    if len(parts) == 4 and parts[0] == C.DEPLOYMENTS_DIR and parts[2] == "overlays" and parts[3] in C.NETWORKS:
        return parts[1], parts[3]
    return None


@dataclass(frozen=True)
class ReleaseRef:
    """What matching needs of a recorded release: its commit, version and bundle sha256."""

    commit: str
    version: str
    sha256: str


def recorded_releases(records: Any, name: str, network: str) -> list[ReleaseRef]:
    """The committed releases of ``name`` on ``network`` the records know, newest first (the records API's view)."""
    rows = sorted(records.list_deployments(name=name, network=network), key=lambda d: d.created_at, reverse=True)
    return [ReleaseRef(d.commit_sha, d.version, d.bundle_sha256) for d in rows if d.commit_sha]


def record_event(
    conn, event: ArgoCDEvent, releases_of: Callable[[str, str], list[ReleaseRef]], repository: Optional[RepositoryView] = None
) -> Outcome:
    """Check ``event`` and keep it (rules in the module docstring); never raises for an event that is merely not ours.

    ``releases_of(name, network)``: the recorded releases, newest first (``recorded_releases`` over the records API).
    """
    app, rev = event.application, event.revision

    def ignored(reason: str, **kw) -> Outcome:
        return Outcome(False, reason, app, rev, **kw)

    where = parse_application_path(event.path)
    if where is None or app != f"{where[0]}-{where[1]}":
        return ignored(f"unknown application {app} (path {event.path!r}): not a deployment overlay of this platform")
    name, network = where
    releases = releases_of(name, network)
    if not releases:
        return ignored(f"unknown application {app}: no release of {name} on {network} is recorded", name=name, network=network)
    kept = conn.execute(
        "SELECT event, reported_at FROM argocd_reports WHERE application = %s AND revision = %s", (app, rev)
    ).fetchone()
    if kept is not None and kept[1] >= event.reported_at:
        if kept[0] == event.event and kept[1] == event.reported_at:
            return ignored(f"replay: this {event.event} report of {rev[:12]} is already recorded", name=name, network=network)
        return ignored(f"stale: a newer report of {rev[:12]} ({kept[0]} at {kept[1].isoformat()}) is recorded", name=name, network=network)
    newest = conn.execute(
        "SELECT revision, reported_at FROM argocd_reports WHERE application = %s AND revision <> %s ORDER BY reported_at DESC LIMIT 1",
        (app, rev),
    ).fetchone()
    if newest is not None and newest[1] > event.reported_at:
        return ignored(
            f"stale revision: {app} already reported {newest[0][:12]} at {newest[1].isoformat()}, after this report of {rev[:12]}",
            name=name, network=network,
        )  # fmt: skip
    release = _release_of(releases, rev, name, network, repository)
    if release is None:
        return ignored(f"revision {rev[:12]} runs no recorded release of {name} on {network}", name=name, network=network)
    conn.execute(
        """INSERT INTO argocd_reports (application, revision, name, network, release_commit, event, sync_status, health_status,
                                       operation_phase, message, reported_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, allora_redact_secrets(%s), %s)
           ON CONFLICT (application, revision) DO UPDATE SET
               release_commit = EXCLUDED.release_commit, event = EXCLUDED.event, sync_status = EXCLUDED.sync_status,
               health_status = EXCLUDED.health_status, operation_phase = EXCLUDED.operation_phase, message = EXCLUDED.message,
               reported_at = EXCLUDED.reported_at, received_at = now()
           WHERE argocd_reports.reported_at < EXCLUDED.reported_at""",
        (app, rev, name, network, release, event.event, event.sync_status, event.health_status, event.operation_phase,
         event.full_message(), event.reported_at),
    )  # fmt: skip
    return Outcome(True, f"{event.event}: {event.sync_status}, {event.health_status}", app, rev, name, network, release)


def _release_of(releases: list[ReleaseRef], revision: str, name: str, network: str, repository: Optional[RepositoryView]) -> Optional[str]:
    """The commit of the release ``revision`` runs: the release committed as it, else the one its tree runs (newest first)."""
    for release in releases:
        if release.commit == revision:
            return release.commit
    if repository is None or not repository.has(revision):
        return None
    running = repository.runs(revision, name, network)
    if running is None:
        return None
    version, sha256 = running
    for release in releases:
        if release.version == version and (not sha256 or release.sha256 == sha256) and repository.is_ancestor(release.commit, revision):
            return release.commit
    return None


# --- reading -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgoCDReport:
    """The newest report Argo CD sent about a release (joined on its commit)."""

    application: str
    revision: str
    event: str
    sync_status: str
    health_status: str
    message: Optional[str]
    reported_at: datetime
    received_at: datetime

    @property
    def failed(self) -> bool:
        """A sync failure or a degradation: what status and pages show with Argo CD's message."""
        return self.event in ("sync-failed", "health-degraded") or self.health_status == "Degraded"

    def to_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


def reports_by_commit(conn, commits: list[Optional[str]]) -> dict[str, ArgoCDReport]:
    """release commit → its newest Argo CD report, for the commits that have one."""
    wanted = sorted({c for c in commits if c})
    if not wanted:
        return {}
    rows = conn.execute(
        """SELECT DISTINCT ON (release_commit) release_commit, application, revision, event, sync_status, health_status, message,
                  reported_at, received_at
           FROM argocd_reports WHERE release_commit = ANY(%s) ORDER BY release_commit, reported_at DESC""",
        (wanted,),
    ).fetchall()
    return {r[0]: ArgoCDReport(*r[1:]) for r in rows}

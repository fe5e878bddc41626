"""Sandbox runs: a bundle on testnet for at most an hour with the platform's wallet (the guide's Dry-run Mode).

``start_sandbox`` follows publish's safe order — validate and check everything first (network,
duration, wallet, owner, the per-user limit), then store the archive, record the bundle and a
deployment row of kind ``sandbox``, render ``sandboxes/<name>-<sha12>/`` (pure) and commit it on a
review branch or directly (the ``sandbox.commit`` repository setting), with push retry.

``prune_sandboxes`` removes every sandbox directory whose ``sandbox-expires-at`` has passed, in
one commit on the base branch (Argo CD then deletes the Application and its Job), and retires
their rows. The clock is a parameter, so the rule is tested without waiting an hour.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Optional

from allora_gitops import constants as C
from allora_gitops.errors import GitOpsError, UsageError
from allora_gitops.gitops.repo import Snapshot, TreeChange, check_repository, parse_remote, persist

Clock = Callable[[], datetime]
_DURATION = re.compile(r"^\s*(\d+)\s*([smh]?)\s*$")
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``1h`` or plain seconds → seconds; at most an hour (``C.SANDBOX_MAX_SECONDS``).

    Raises :class:`UsageError` for anything else (exit 2).
    """
    m = _DURATION.match(str(text))
    if not m:
        raise UsageError(f"--duration {text!r}: expected seconds, or a number with s, m or h (e.g. 30m, 1h)")
    seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if not 0 < seconds <= C.SANDBOX_MAX_SECONDS:
        raise UsageError(f"--duration {text}: a sandbox runs for more than 0 s and at most {C.SANDBOX_MAX_SECONDS // 60} minutes")
    return seconds


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> Optional[datetime]:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass
class SandboxRequest:
    source: Path
    repo: str
    owner: str
    duration: str = "1h"
    topic_id: Optional[int] = None
    network: str = C.SANDBOX_NETWORK
    wallet_secret: Optional[str] = None  # refused unless it is the platform's sandbox wallet
    image_registry: Optional[str] = None
    base_branch: str = C.DEFAULT_BRANCH
    store_url: Optional[str] = None
    database_url: Optional[str] = None
    secrets: Optional[dict[str, str]] = None  # model.yaml environment.secrets: NAME → "SECRET/KEY" (names only)


@dataclass
class SandboxResult:
    name: str
    version: str
    sha256: str
    directory: str
    branch: str
    commit: str
    committed: bool
    expires_at: str
    duration_seconds: int
    owner: str
    image: str
    deployment_id: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SandboxInfo:
    """One ``sandboxes/<dir>/`` as its kustomization says."""

    directory: str
    name: str
    version: str
    sha256: str
    owner: str
    expires_at: Optional[datetime]


def read_sandboxes(snapshot: Snapshot) -> list[SandboxInfo]:
    """Every sandbox directory of a commit, from the annotations of its kustomization (sorted by directory)."""
    from allora_gitops.gitops.layout import load_yaml_documents

    paths = sorted(p for p in snapshot.files(C.SANDBOXES_DIR) if p.count("/") == 2 and p.endswith("/kustomization.yaml"))
    texts = snapshot.read_many(paths)
    found = []
    for path in paths:
        docs = load_yaml_documents(texts.get(path, ""))
        annotations = (docs[0].get("commonAnnotations") if docs and isinstance(docs[0], dict) else None) or {}
        found.append(
            SandboxInfo(
                directory=path.rsplit("/", 1)[0],
                name=str(annotations.get(C.ANNOTATION_BUNDLE_NAME, "")),
                version=str(annotations.get(C.ANNOTATION_BUNDLE_VERSION, "")),
                sha256=str(annotations.get(C.ANNOTATION_BUNDLE_SHA256, "")),
                owner=str(annotations.get(C.ANNOTATION_SANDBOX_OWNER, "")),
                expires_at=parse_rfc3339(annotations.get(C.ANNOTATION_SANDBOX_EXPIRES, "")),
            )
        )
    return found


def expired(sandbox: SandboxInfo, now: datetime) -> bool:
    """Time is up — or the directory says no end time at all, which a sandbox must not lack."""
    return sandbox.expires_at is None or sandbox.expires_at <= now


def _check_request(request: SandboxRequest, settings) -> int:
    if request.network != C.SANDBOX_NETWORK:
        raise GitOpsError(
            f"sandboxes run on {C.SANDBOX_NETWORK} only (with the platform's wallet), not {request.network}; "
            "use `allora-gitops publish` for mainnet"
        )
    if request.wallet_secret is not None and request.wallet_secret != settings.sandbox.wallet_secret:
        raise GitOpsError(
            f"a sandbox runs with the platform's sandbox wallet Secret {settings.sandbox.wallet_secret}, never a user's "
            f"(--wallet-secret {request.wallet_secret} refused)"
        )
    if not _OWNER.match(request.owner or ""):
        raise UsageError(f"--owner {request.owner!r}: letters, digits, . _ @ - (at most 63), starting with a letter or digit")
    return parse_duration(request.duration)


def _base_settings(remote, heads: dict[str, str], base_branch: str):
    from allora_gitops.gitops.repo import RepoCache, require_marker

    git = RepoCache(remote).git  # check_repository fetched the base tip into the cache
    return Snapshot(git, heads[base_branch]), require_marker(git, heads[base_branch], remote, base_branch)


def start_sandbox(request: SandboxRequest, *, clock: Clock = utc_now, step: Callable[[str, str], None] = lambda _s, _m: None) -> SandboxResult:
    """Validate, store, record and commit one sandbox run; see the module docstring for the order.

    Raises :class:`GitOpsError` for mainnet, a user's wallet, or an owner at the per-user limit
    (before anything is stored or recorded); :class:`UsageError` for a bad duration or owner.
    """
    from allora_gitops.bundle.source import resolve_source
    from allora_gitops.publish import _commit_and_record, _records, _spec
    from allora_gitops.render import DeploymentSettings
    from allora_gitops.render.sandbox import SandboxRun, render_sandbox
    from allora_gitops.storage.objects import open_store

    remote = parse_remote(request.repo)
    heads = check_repository(remote, request.base_branch)
    base, settings = _base_settings(remote, heads, request.base_branch)
    seconds = _check_request(request, settings)
    now = clock()
    expires = now + timedelta(seconds=seconds)
    _check_limit(read_sandboxes(base), request.owner, None, settings.sandbox.max_per_user, now)
    with tempfile.TemporaryDirectory(prefix="allora-sandbox-") as tmp:
        built = resolve_source(Path(request.source), Path(tmp))
        manifest = built.manifest
        name, version = manifest.name, manifest.version
        step("validate", f"{name} {version} sha256 {built.sha256}")
        store = open_store(request.store_url)
        key = C.archive_object_key(name, version, built.sha256)
        options = DeploymentSettings(
            network=request.network, topic_id=request.topic_id, image_registry=request.image_registry,
            wallet_secret=settings.sandbox.wallet_secret, secrets=request.secrets,
        ).over(settings.deployment_defaults())  # namespace, DNS, monitoring: as for deployments
        spec = _spec(manifest, built.sha256, built.size, options, store.url_for(key))
        run = SandboxRun(duration_seconds=seconds, expires_at=rfc3339(expires), owner=request.owner, wallet_secret=settings.sandbox.wallet_secret)
        tree = render_sandbox(spec, run)
        directory = C.sandbox_dir(name, built.sha256)
        branch = request.base_branch if settings.sandbox.commit == "direct" else C.sandbox_branch(name, built.sha256)
        _check_not_taken(read_sandboxes(base), directory, request.owner, now)
        if branch in heads and branch != request.base_branch:
            from allora_gitops.gitops.repo import RepoCache

            cache = RepoCache(remote)
            _check_not_taken(read_sandboxes(Snapshot(cache.git, cache.fetch(branch, heads[branch]))), directory, request.owner, now)
        with _records(request.database_url) as records:
            put = store.put_file(key, built.path, built.sha256)
            step("upload", f"{'uploaded' if put.uploaded else 'already stored'}: {put.url}")
            bundle = records.register_bundle(
                name=name, version=version, sha256=built.sha256, size=built.size, archive_url=put.url,
                python_version=manifest.python.version, manifest=manifest,
            )  # fmt: skip
            deployment = records.create_deployment(
                bundle_id=bundle.id, network=request.network, topic_id=spec.topic_id, fee_tier=spec.fee_tier,
                wallet_secret_name=settings.sandbox.wallet_secret, repo_url=remote.display, repo_branch=branch,
                container_image=spec.image, kind="sandbox", expires_at=expires, owner=request.owner,
                polling_interval=spec.polling_interval,
            )  # fmt: skip
            step("deployment", f"sandbox row {deployment.id} until {run.expires_at}")

            def change(snapshot: Snapshot) -> TreeChange:
                # re-checked on the tip every push attempt: two sandboxes started at once cannot both pass the limit
                sandboxes = read_sandboxes(snapshot)
                _check_not_taken(sandboxes, directory, request.owner, now)
                _check_limit(sandboxes, request.owner, directory, settings.sandbox.max_per_user, now)
                return TreeChange(files=tree, replace_dirs=(directory,))

            persisted = _commit_and_record(
                records=records, deployment=deployment, remote=remote, change=change, branch=branch,
                base_branch=request.base_branch, message=C.sandbox_commit_message(name, version, built.sha256, run.expires_at),
                step=step, heads=heads,
            )  # fmt: skip
    return SandboxResult(
        name=name, version=version, sha256=built.sha256, directory=directory, branch=branch, commit=persisted.commit,
        committed=persisted.created, expires_at=run.expires_at, duration_seconds=seconds, owner=request.owner,
        image=spec.image, deployment_id=deployment.id,
    )  # fmt: skip


def _check_not_taken(sandboxes: list[SandboxInfo], directory: str, owner: str, now: datetime) -> None:
    """Refuse to replace another owner's running sandbox of the same bundle (its directory is NAME-SHA12, not per owner).

    The same owner starting it again replaces it (a new end time); an expired one may be taken over.
    """
    for s in sandboxes:
        if s.directory == directory and s.owner != owner and not expired(s, now):
            raise GitOpsError(
                f"{directory} already runs for {s.owner} until {rfc3339(s.expires_at)}; "
                "one sandbox per bundle at a time: wait for it to end or run `allora-gitops sandbox prune`"
            )


def _check_limit(sandboxes: list[SandboxInfo], owner: str, directory: Optional[str], limit: int, now: datetime) -> None:
    running = [s.directory for s in sandboxes if s.owner == owner and s.directory != directory and not expired(s, now)]
    if len(running) >= limit:
        raise GitOpsError(
            f"{owner} already runs {len(running)} sandbox(es) ({', '.join(running)}); the limit is {limit} at a time "
            "(sandbox.max_per_user): wait for one to end or run `allora-gitops sandbox prune`"
        )


@dataclass
class PruneResult:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    branch: str = C.DEFAULT_BRANCH
    commit: Optional[str] = None
    retired_rows: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def prune_sandboxes(
    repo: str,
    *,
    base_branch: str = C.DEFAULT_BRANCH,
    clock: Clock = utc_now,
    database_url: Optional[str] = None,
    record: bool = True,
    dry_run: bool = False,
) -> PruneResult:
    """Remove every expired ``sandboxes/*`` directory from ``base_branch`` in one commit; retire their rows.

    The set is computed again on the tip after a rejected push, so a sandbox added meanwhile is
    kept and one already removed is not removed twice.
    """
    remote = parse_remote(repo)
    now = clock()
    result = PruneResult(branch=base_branch)

    def change(snapshot: Snapshot) -> TreeChange:
        sandboxes = read_sandboxes(snapshot)
        result.removed = [s.directory for s in sandboxes if expired(s, now)]
        result.kept = [s.directory for s in sandboxes if not expired(s, now)]
        return TreeChange(delete_dirs=tuple(result.removed))

    # A look first (nothing pushed), so that the commit message can list what goes.
    persist(remote, change, branch=base_branch, base_branch=base_branch, message="sandbox prune\n", dry_run=True)
    if dry_run or not result.removed:
        return result
    message = C.sandbox_prune_message([d.rsplit("/", 1)[1] for d in result.removed])
    result.commit = persist(remote, change, branch=base_branch, base_branch=base_branch, message=message).commit
    if record:
        result.retired_rows = _retire_rows(result.removed, database_url)
    return result


def _retire_rows(directories: list[str], database_url: Optional[str]) -> list[str]:
    from allora_gitops.publish import _records

    gone = {d.rsplit("/", 1)[1] for d in directories}
    retired = []
    with _records(database_url) as records:
        for row in records.list_deployments(kind="sandbox"):
            if f"{row.name}-{row.bundle_sha256[:12]}" in gone and row.status != "retired":
                records.set_deployment_status(row.id, "retired", message="sandbox time is up (sandbox prune)")
                retired.append(row.id)
    return retired


def list_sandboxes(
    repo: Optional[str], ref: str = C.DEFAULT_BRANCH, *, database_url: Optional[str] = None, use_database: bool = True, clock: Clock = utc_now
) -> list[dict]:
    """Sandboxes in ``ref`` of the repository and live sandbox rows of the records, one dict each (by directory).

    ``state``: ``running`` when the directory is on ``ref`` (Argo CD runs what the base branch holds),
    ``expired`` past its end time, ``committed`` for a row whose directory is not on ``ref`` (waiting
    for review on its branch: nothing runs yet). Without a repository the record's own state decides.
    """
    now = clock()
    rows: dict[str, dict] = {}
    if repo is not None:
        from allora_gitops.gitops.repo import read_ref

        git, commit = read_ref(parse_remote(repo), ref)
        for s in read_sandboxes(Snapshot(git, commit)):
            rows[s.directory] = {
                "sandbox": s.directory.rsplit("/", 1)[1], "name": s.name, "version": s.version, "sha256": s.sha256,
                "owner": s.owner, "expires_at": rfc3339(s.expires_at) if s.expires_at else None,
                "state": "expired" if expired(s, now) else "running", "in_repo": True,
            }  # fmt: skip
    if use_database:
        from allora_gitops.publish import _records

        with _records(database_url) as records:
            for d in records.list_deployments(kind="sandbox"):
                if d.status == "retired":
                    continue
                directory = C.sandbox_dir(d.name, d.bundle_sha256)
                row = rows.setdefault(directory, {
                    "sandbox": directory.rsplit("/", 1)[1], "name": d.name, "version": d.version, "sha256": d.bundle_sha256,
                    "owner": d.owner, "expires_at": rfc3339(d.expires_at) if d.expires_at else None,
                    "state": _row_state(d, now, on_ref=False if repo is not None else None),
                    "in_repo": repo is None, "branch": d.repo_branch,
                })  # fmt: skip
                row["status"], row["deployment_id"] = d.status, d.id
    return [rows[k] for k in sorted(rows)]


def _row_state(row, now: datetime, on_ref: Optional[bool]) -> str:
    """A sandbox row's state when its directory was not found on the ref read (``on_ref`` False) or none was read (None)."""
    if row.expires_at and row.expires_at <= now:
        return "expired"
    if on_ref is False or row.status == "committed":
        return "committed"
    return "running"

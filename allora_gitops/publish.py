"""The product's main job: from a bundle to a reviewed commit in a GitOps repository.

``publish_bundle`` composes the pieces in an order that makes every failure safe
to re-run:

1. validate (a directory is built into an archive first) and check the settings
   — pure, nothing touched yet;
2. open the records database and refuse a name + version already recorded with
   another sha256 — before anything is uploaded;
3. upload the archive to the object store, keyed by content (skipped when present);
4. register the bundle;
5. render the deployment tree (pure);
6. create the deployment row (``pending``; the live row with the same settings
   is reused, so a re-run adds no row);
7. apply the tree on the review branch, commit, push with retry (no commit when
   the tree is already there);
8. mark the row ``committed`` with the commit sha — or ``failed`` with the reason.

So: no commit unless the archive is stored and the bundle recorded; a failed
push leaves the row ``failed`` and nothing local to clean; a re-run (after any
failure, even SIGKILL) finds what is already done and completes the rest.

``promote``, ``rollback`` and ``retire`` reuse steps 5–8.
"""

from __future__ import annotations

import contextlib
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from allora_gitops import constants as C
from allora_gitops.errors import AlloraGitopsError, GitOpsError, RecordConflict, UsageError
from allora_gitops.gitops.layout import DeploymentFacts, collect_facts, load_yaml_documents, read_deployments, summarise_change
from allora_gitops.gitops.repo import (
    Persisted,
    Remote,
    RepoCache,
    Snapshot,
    TreeChange,
    check_repository,
    parse_remote,
    persist,
    require_marker,
)

if TYPE_CHECKING:
    from allora_gitops.gitops.settings import RepositorySettings
    from allora_gitops.render import DeploymentSettings

StepFn = Callable[[str, str], None]  # (step name, what happened)

PUBLISH_STEPS = ("validate", "repository", "records", "upload", "register", "render", "deployment", "commit", "record")


@dataclass
class Target:
    """Where a change goes, and where the records are."""

    repo: str
    branch: Optional[str] = None  # default: a review branch named after the change
    base_branch: str = C.DEFAULT_BRANCH
    store_url: Optional[str] = None
    database_url: Optional[str] = None
    dry_run: bool = False
    owner: Optional[str] = None  # the platform user a name without an owner is recorded for (CLI: --owner)
    actor: Optional[str] = None  # who makes the change (the API's caller), recorded on the release


@dataclass
class PublishResult:
    action: str  # publish | promote | rollback | retire
    name: str
    network: str
    version: Optional[str]
    sha256: Optional[str]
    repo: str
    branch: str
    base_branch: str
    commit: Optional[str] = None
    committed: bool = False  # a new commit was pushed
    dry_run: bool = False
    archive_url: Optional[str] = None
    uploaded: Optional[bool] = None
    bundle_registered: Optional[bool] = None
    deployment_id: Optional[str] = None  # the deployment (name + network): stable across its releases
    deployment_created: Optional[bool] = None  # a new release row was recorded
    deployment_status: Optional[str] = None  # the release's state
    release_id: Optional[str] = None  # the release this change is (results of its version point at it)
    nothing_to_do: Optional[str] = None  # why no release was made: the base branch or an open review holds it
    open_review: Optional[str] = None  # the open review branch that already holds this change
    wallet: Optional[str] = None  # the wallet Secret (or ExternalSecret) the deployment signs with
    owner: Optional[str] = None  # who owns the name (and so the deployment)
    image: Optional[str] = None
    changed_files: list[dict[str, str]] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # also printed on stderr as they are found
    diff: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.dry_run:
            d.pop("diff")
        return d


def _quiet(_step: str, _message: str) -> None:
    pass


def check_network(network: str) -> None:
    """Refuse a network name that is not one of ``C.NETWORKS``.

    Raises :class:`UsageError` (exit 2): a bad ``--network``/``--from``/``--to`` is a usage error, as
    ``render`` and a network not allowed by ``.allora-gitops.yaml`` already are.
    """
    if network not in C.NETWORKS:
        from allora_runtime.settings import rest_network_problem

        problem = rest_network_problem(network)
        if problem is not None:
            raise UsageError(problem)
        raise UsageError(f"unknown network {network!r}; known networks: {', '.join(C.NETWORKS)}")


# --- pieces ----------------------------------------------------------------------------


def keep_secret_mapping(git, commit: str, manifest, network: str, settings: "DeploymentSettings") -> "DeploymentSettings":
    """``settings`` with the environment.secrets mappings the live overlay on ``network`` already has (names only),
    for every declared secret the operator did not map again; a given ``--secret`` wins."""
    from allora_gitops.render.tree import ENV_EXTERNALSECRET, secret_mapping_of_overlay

    declared = manifest.environment.secrets
    if not declared or all(n in (settings.secrets or {}) for n in declared):
        return settings
    overlay = C.deployment_overlay_dir(manifest.name, network)
    files = git.read_many(commit, [f"{overlay}/deployment-patch.yaml", f"{overlay}/{ENV_EXTERNALSECRET}"])
    live = secret_mapping_of_overlay({path.rsplit("/", 1)[-1]: text for path, text in files.items()})
    kept = {n: live[n] for n in declared if n in live}
    return settings.model_copy(update={"secrets": {**kept, **(settings.secrets or {})}})


def _spec(manifest, sha256: str, size: int, settings: "DeploymentSettings", archive_url: str | None):
    from allora_gitops.render import DeploymentSpec

    return DeploymentSpec.complete(
        manifest, sha256=sha256, archive_size=size, settings=settings.model_copy(update={"archive_url": archive_url})
    )


def apply_repository_settings(
    repo: "RepositorySettings",
    options: "DeploymentSettings",
    target: Target,
    network: str,
    recorded: dict[str, Any] | None = None,
) -> tuple["DeploymentSettings", Target]:
    """Options completed by the repository settings (after what was given, before what was recorded).

    Raises UsageError (exit 2) when a given option contradicts the settings: nothing is touched yet.
    """
    from allora_gitops.gitops.settings import check_flags

    where = f"{C.REPO_MARKER_FILE} on {target.base_branch}"
    check_flags(repo, where, namespace=options.namespace, image_registry=options.image_registry, store=target.store_url, network=network)
    if repo.object_store and not target.store_url:
        target = Target(**{**asdict(target), "store_url": repo.object_store})
    return options.over({**(recorded or {}), **repo.deployment_defaults()}), target


def works_on_one_machine(remote: Remote, archive_url: str | None, image: str | None) -> list[str]:
    """Warnings for what a cluster elsewhere cannot reach: a file:// archive, a localhost registry — with a remote repository."""
    if remote.local_path is not None:
        return []
    out = []
    if archive_url and archive_url.startswith("file://"):
        out.append(
            f"the archive URL {archive_url} is a path on this machine, but {remote.display} is not: "
            "set object_store (`allora-gitops repo config object_store s3://BUCKET/PREFIX`)"
        )
    host = (image or "").split("/", 1)[0]
    if host.split(":", 1)[0] in ("localhost", "127.0.0.1", "[::1]"):
        out.append(
            f"the image registry {host} is this machine's, but {remote.display} is not: "
            "set image_registry (`allora-gitops repo config image_registry REGISTRY/PREFIX`)"
        )
    return out


def _warn(result: PublishResult, step: StepFn, warnings: list[str]) -> None:
    for w in warnings:
        result.warnings.append(w)
        step("warning", w)


def _deployment_change(snapshot: Snapshot, tree: dict[str, str], name: str, network: str, version: str) -> TreeChange:
    """A re-rendered deployment replaces its directories whole (stale files go), builds of other versions stay.

    Digests already pinned on ``snapshot`` for the same image are kept (:func:`carry_pins`).
    """
    from allora_gitops.gitops.pin import carry_pins

    return TreeChange(
        files=carry_pins(snapshot, tree, name),
        replace_dirs=(C.deployment_base_dir(name), C.deployment_overlay_dir(name, network), C.build_dir(name, version)),
    )


class _DeploymentChange:
    """The change that (re)deploys ``tree``, as :func:`persist` applies it to each tip it tries; it remembers
    the deployment's facts on that tip (``before``) and the files written (``after``, pins carried), for the summary."""

    def __init__(self, tree: dict[str, str], name: str, network: str, version: str):
        self.tree, self.name, self.network, self.version = tree, name, network, version
        self.before: DeploymentFacts | None = None
        self.after = tree

    def __call__(self, snapshot: Snapshot) -> TreeChange:
        self.before = current_facts(snapshot, self.name, self.network)
        delta = _deployment_change(snapshot, self.tree, self.name, self.network, self.version)
        self.after = delta.files
        return delta

    def facts_after(self) -> DeploymentFacts:
        return facts_of_tree(self.after, self.name, self.network)


def facts_of_tree(tree: dict[str, str], name: str, network: str) -> DeploymentFacts:
    facts = DeploymentFacts(name=name, network=network)
    overlay = C.deployment_overlay_dir(name, network) + "/"
    for path in sorted(tree):
        if path.startswith(overlay) and path.endswith((".yaml", ".yml")):
            collect_facts(load_yaml_documents(tree[path]), facts)
    if facts.version:
        build = tree.get(f"{C.build_dir(name, facts.version)}/{C.BUILD_METADATA_FILE}")
        if build:
            docs = load_yaml_documents(build)
            meta = docs[0] if docs and isinstance(docs[0], dict) else {}
            facts.image = facts.image or meta.get("image")
            if not facts.sha256 and isinstance(meta.get("archive"), dict):
                facts.sha256 = meta["archive"].get("sha256")
    return facts


def current_facts(snapshot: Snapshot, name: str, network: str) -> DeploymentFacts | None:
    for facts in read_deployments(snapshot, name=name):
        if facts.network == network:
            return facts
    return None


def compare_url(repo_url: str, base_branch: str, branch: str) -> str | None:
    """The web page comparing ``branch`` with ``base_branch`` (GitHub/Gitea/GitLab-style ``/compare/A...B``),
    for an http(s) remote without credentials; None otherwise."""
    if not repo_url.startswith(("https://", "http://")) or "@" in repo_url.split("//", 1)[1].split("/", 1)[0]:
        return None
    web = repo_url[:-4] if repo_url.endswith(".git") else repo_url
    return f"{web}/compare/{base_branch}...{branch}"


def review_hints(remote: Remote, persisted: Persisted, *, retire: bool = False) -> list[str]:
    """What to do next with a change: the review branch, how to diff it, the compare page, the merge
    (``retire``: the merge removes the deployment, Argo CD prunes it; it deploys nothing).

    The repository is named by ``remote.display`` (never the URL as given): the lines reach terminals, the
    API's answers and logs, and a URL may carry a password or an access token.
    """
    if persisted.branch == persisted.base_branch:
        return [f"committed directly to {persisted.branch}: Argo CD {'prunes' if retire else 'deploys'} it at the next sync"]
    lines = [
        f"review branch: {persisted.branch} (from {persisted.base_branch})",
        f"diff: allora-gitops diff --repo {remote.display} --base {persisted.base_branch} {persisted.branch}",
    ]
    compare = compare_url(remote.display, persisted.base_branch, persisted.branch)
    if compare:
        lines.append(f"compare: {compare}")
    lines.append(f"then merge {persisted.branch} into {persisted.base_branch} (a pull request) to {'retire it' if retire else 'deploy'}")
    return lines


@contextlib.contextmanager
def _records(database_url: str | None) -> Iterator[Any]:
    from allora_gitops.db import open_records

    records = open_records(database_url)
    try:
        yield records
    finally:
        with contextlib.suppress(Exception):
            records.close()


def _commit_and_record(
    *,
    records,
    deployment,
    remote: Remote,
    change,
    branch: str,
    base_branch: str,
    message: str,
    step: StepFn,
    heads: dict[str, str] | None = None,
) -> Persisted:
    """Steps 7–8: persist, then move the row to committed — or to failed with the reason."""
    try:
        persisted = persist(
            remote, change, branch=branch, base_branch=base_branch, message=message,
            on_step=lambda msg: step("commit", msg), heads=heads,
        )  # fmt: skip
    except AlloraGitopsError as exc:
        if deployment is not None:
            with contextlib.suppress(Exception):
                records.set_deployment_status(deployment.id, "failed", message=exc.message)
        raise
    if deployment is not None:
        try:
            records.set_deployment_status(deployment.id, "committed", commit_sha=persisted.commit)
            if persisted.branch == base_branch:  # committed straight to the base branch: merged (and live) as it lands
                records.set_deployment_status(deployment.id, "merged", message=f"committed directly to {base_branch}")
                records.settle_live_release(deployment.deployment_id, deployment.id, f"replaced on {base_branch} by {persisted.commit[:12]}")
        except RecordConflict:
            # A re-run (or an identical publish running beside this one) found the change merged already: it stays so.
            now = records.get_deployment(deployment.id)
            if now is None or now.status not in ("merged", "synced"):
                raise
    return persisted


def _announce_commit(step: StepFn, persisted: Persisted) -> None:
    if persisted.created:
        n = len(persisted.changed)
        retry = f" after {persisted.attempts} attempts" if persisted.attempts > 1 else ""
        step("commit", f"pushed {persisted.commit[:12]} to {persisted.branch} ({n} file(s) changed){retry}")
    elif persisted.branch_existed or persisted.branch == persisted.base_branch:
        step("commit", f"nothing to commit: {persisted.branch} already holds this change ({persisted.commit[:12]})")
    else:
        step("commit", f"nothing to commit: {persisted.base_branch} already holds this change ({persisted.commit[:12]})")


# --- what runs, what waits, what is new --------------------------------------------------------


@dataclass
class ReleasePlan:
    """Where a change goes: ``branch``, or nothing to do (``nothing``: why; ``open_review``: the branch that holds it)."""

    branch: str
    heads: dict[str, str]  # the remote's branches as the plan saw them (after the deployment's lock was taken)
    nothing: Optional[str] = None
    open_review: Optional[str] = None
    open_release: Any = None  # the committed release on ``open_review``


def unique_branch(wanted: str, taken: set[str]) -> str:
    """``wanted``, or ``wanted-r2``, ``-r3`` … when a branch of that name exists or a release used it: a version
    that returns (roll forward after a rollback) gets a review branch of its own, never a merged one again."""
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-r{n}" in taken:
        n += 1
    return f"{wanted}-r{n}"


def plan_release(
    *,
    records,
    remote: Remote,
    cache: RepoCache,
    heads: dict[str, str],
    change,
    name: str,
    network: str,
    wanted_branch: str,
    explicit_branch: bool,
    base_branch: str,
    what: str,
) -> ReleasePlan:
    """Compare ``change`` with what runs: the base branch holds it → nothing to do; an open review (a committed
    release whose branch is still there) holds it → nothing, name it; otherwise a release on ``wanted_branch``
    (made unique unless the caller named it). A pending release whose branch holds it (an interrupted run) is
    completed on that branch. States are reconciled with git first."""
    from allora_gitops.gitops.sync import is_ancestor, reconcile

    heads = cache.remote_heads()  # as they are now (after the deployment's lock was taken), every branch
    if records is not None:
        reconcile(records, remote, base_branch, name=name)
    trial = persist(remote, change, branch=base_branch, base_branch=base_branch, message="dry run\n", dry_run=True, heads=heads, cache=cache)
    if not trial.changed:
        return ReleasePlan(branch=base_branch, heads=heads, nothing=f"{base_branch} already runs {what} on {network} like this")
    if explicit_branch:
        return ReleasePlan(branch=wanted_branch, heads=heads)
    releases = [r for r in (records.list_deployments(name=name, network=network) if records is not None else []) if r.repo_url == remote.display]
    open_releases = {r.repo_branch: r for r in sorted(releases, key=lambda r: r.created_at) if r.status in ("pending", "committed")}
    candidates = [b for b in open_releases if b in heads and b != base_branch]
    if wanted_branch in heads and wanted_branch not in candidates and not any(r.repo_branch == wanted_branch for r in releases):
        candidates.append(wanted_branch)  # a branch without a record (the records were lost, or another tool made it)
    for branch in candidates:
        held = persist(remote, change, branch=branch, base_branch=base_branch, message="dry run\n", dry_run=True, heads=heads, cache=cache)
        if held.changed or is_ancestor(cache.git, heads[branch], heads[base_branch]):
            continue  # it holds something else, or it was merged (then the base branch would hold this change)
        found = open_releases.get(branch)
        if found is not None and found.status == "committed":
            return ReleasePlan(branch=branch, heads=heads, nothing=f"the open review {branch} already holds this change: merge it to deploy",
                               open_review=branch, open_release=found)  # fmt: skip
        return ReleasePlan(branch=branch, heads=heads)
    # a branch that never reached the remote (a failed or interrupted push) may be used again
    taken = set(heads) | {r.repo_branch for r in releases if r.status not in ("pending", "failed")}
    taken |= {r.retire_branch for r in releases if r.retire_branch}
    return ReleasePlan(branch=unique_branch(wanted_branch, taken), heads=heads)


def wallet_warnings(wallet: str, network: str) -> list[str]:
    """A wallet Secret whose name names another network (``m-testnet-wallet`` on mainnet) is probably the wrong one."""
    import re

    words = set(re.split(r"[-._]", wallet))
    others = [n for n in C.NETWORKS if n != network and n in words]
    if not others:
        return []
    return [f"the wallet Secret {wallet} names {others[0]}, but this deployment is on {network}: check it is the right wallet"]


def require_wallet(network: str, wallet: Optional[str], flag: str = "--wallet") -> None:
    """Mainnet signs with real funds: its wallet is never a default, it is named (``UsageError`` otherwise)."""
    if network == "mainnet" and not wallet:
        raise UsageError(f"a mainnet deployment needs its wallet named: give {flag} NAME (the Secret holding the wallet)")


def wallet_line(spec) -> str:
    kind = "ExternalSecret" if spec.secret_store else "Secret"
    return f"wallet: {kind} {spec.wallet_secret}"


def wanted_owner(owner: Optional[str], repo_settings) -> str:
    """``--owner``, else ``default_owner`` of the repository settings, else the reserved ``platform``."""
    from allora_gitops.db.records import PLATFORM_OWNER

    return owner or getattr(repo_settings, "default_owner", None) or PLATFORM_OWNER


def resolve_owner(records, name: str, owner: Optional[str], repo_settings) -> str:
    """The owner a CLI publish records for ``name`` (:func:`wanted_owner`); a name that has an owner keeps it
    (``owner set`` transfers)."""
    return records.claim_for_cli(name, wanted_owner(owner, repo_settings))


def owner_kept(name: str, asked: Optional[str], owner: str) -> list[str]:
    """The warning when ``--owner`` asked for another owner than the one ``name`` keeps (never silent)."""
    if not asked or asked == owner:
        return []
    return [f"--owner {asked} not recorded: {name} belongs to {owner} and keeps its owner (transfer it: `allora-gitops owner set {name} {asked}`)"]


# --- publish ------------------------------------------------------------------------------


def publish_bundle(
    source: Path,
    network: str | None,
    target: Target,
    options: "DeploymentSettings | None" = None,
    *,
    step: StepFn = _quiet,
) -> PublishResult:
    """Publish ``source`` on ``network`` (None: model.yaml's ``allora.network``), following the steps above.

    The repository settings (``.allora-gitops.yaml`` on the base branch) complete ``options``; an option that
    contradicts them raises UsageError before anything is uploaded, recorded or pushed.
    """
    from allora_gitops.bundle.source import resolve_source
    from allora_gitops.render import DeploymentSettings, render_deployment
    from allora_gitops.storage.objects import open_store

    options = options or DeploymentSettings()
    if network is not None:
        check_network(network)
    remote = parse_remote(target.repo)
    cache = RepoCache(remote)

    def check() -> tuple[dict[str, str], "RepositorySettings"]:
        heads = check_repository(remote, target.base_branch, None, cache, every_branch=True)
        return heads, require_marker(cache.git, heads[target.base_branch], remote, target.base_branch)

    # The repository check (git subprocesses, maybe network) runs beside validation and the database
    # opening, on the other core; its verdict is awaited before anything is uploaded or recorded.
    pool = ThreadPoolExecutor(max_workers=1)
    checking = pool.submit(check)
    pool.shutdown(wait=False)
    with tempfile.TemporaryDirectory(prefix="allora-publish-") as tmp, contextlib.ExitStack() as stack:
        # 1. validate (and build a directory), check the settings: nothing touched yet
        validation_warnings: list = []
        built = resolve_source(Path(source), Path(tmp), validation_warnings)
        manifest = built.manifest
        name, version = manifest.name, manifest.version
        network = network or manifest.allora.network
        step("validate", f"{name} {version} sha256 {built.sha256} ({built.size} bytes, {built.file_count} files)")
        records = None
        if not target.dry_run:
            try:
                records = stack.enter_context(_records(target.database_url))
            except BaseException:
                with contextlib.suppress(Exception):
                    checking.result()  # a repository problem is the more useful message when both fail
                raise
        heads, repo_settings = checking.result()
        step("repository", f"{remote.display} {target.base_branch} at {heads[target.base_branch][:12]} (initialised by allora-gitops)")
        options, target = apply_repository_settings(repo_settings, options, target, network)
        require_wallet(network, options.wallet_secret)  # still before anything is uploaded, recorded or pushed
        store = open_store(target.store_url)
        key = C.archive_object_key(name, version, built.sha256)
        archive_url = store.url_for(key)
        options = keep_secret_mapping(cache.git, heads[target.base_branch], manifest, network, options)
        spec = _spec(manifest, built.sha256, built.size, options.model_copy(update={"network": network}), archive_url)
        branch = target.branch or C.review_branch(name, network, version)
        tree = render_deployment(spec)

        result = PublishResult(
            action="publish", name=name, network=network, version=version, sha256=built.sha256,
            repo=remote.display, branch=branch, base_branch=target.base_branch, dry_run=target.dry_run,
            archive_url=archive_url, image=spec.image,
        )  # fmt: skip
        result.wallet = spec.wallet_secret
        _warn(result, step, [str(p) for p in validation_warnings] + works_on_one_machine(remote, archive_url, spec.image)
              + wallet_warnings(spec.wallet_secret, network))  # fmt: skip

        change = _DeploymentChange(tree, name, network, version)

        if target.dry_run:
            step("render", f"{len(tree)} files")
            persisted = persist(
                remote, change, branch=branch, base_branch=target.base_branch, message="dry run\n", dry_run=True,
                heads=heads, cache=cache,
            )  # fmt: skip
            result.diff = persisted.diff
            result.changed_files = [{"status": s, "path": p} for s, p in persisted.changed]
            result.summary = summarise_change(change.before, change.facts_after()) if persisted.changed else []
            step("commit", f"dry run: {len(persisted.changed)} file(s) would change on {branch}; nothing was uploaded, recorded or pushed")
            return result

        # 2. a version names one archive forever: refuse a clash before uploading anything
        existing = records.get_bundle(name, version)
        if existing is not None and existing.sha256 != built.sha256:
            raise RecordConflict(
                f"bundle {name} {version} is already registered with sha256 {existing.sha256}, "
                f"not {built.sha256}; a version names one archive forever: bump the version"
            )
        records.check_cli_owner(name, wanted_owner(target.owner, repo_settings))  # an unknown owner: before any upload
        step("records", "database ready" + (f"; {name} {version} already registered" if existing else ""))
        # 3. upload (content-addressed: skipped when present)
        put = store.put_file(key, built.path, built.sha256)
        result.uploaded = put.uploaded
        step("upload", f"{'uploaded' if put.uploaded else 'already stored'}: {put.url}")
        # 4. register
        bundle = records.register_bundle(
            name=name, version=version, sha256=built.sha256, size=built.size, archive_url=put.url,
            python_version=manifest.python.version, manifest=manifest,
        )  # fmt: skip
        result.bundle_registered = bundle.created
        step("register", f"bundle {'registered' if bundle.created else 'already registered'} ({bundle.id})")
        result.owner = resolve_owner(records, name, target.owner, repo_settings)
        _warn(result, step, owner_kept(name, target.owner, result.owner))
        # 5. render (done above: pure)
        step("render", f"{len(tree)} files for {name} on {network}, image {spec.image}")
        # 5b. compare with what runs: the base branch, then the open reviews (one change of a deployment at a time)
        stack.enter_context(records.deployment_lock(name, network))
        plan = plan_release(
            records=records, remote=remote, cache=cache, heads=heads, change=change, name=name, network=network,
            wanted_branch=branch, explicit_branch=target.branch is not None, base_branch=target.base_branch,
            what=f"{name} {version}",
        )  # fmt: skip
        if plan.nothing:
            return _nothing_to_do(result, plan, records, name, network, step, change, spec)
        branch, heads = plan.branch, plan.heads
        result.branch = branch
        # 6. the release row
        deployment = records.create_deployment(
            bundle_id=bundle.id, network=network, topic_id=spec.topic_id, fee_tier=spec.fee_tier,
            wallet_secret_name=spec.wallet_secret,
            wallet_secret_kind="ExternalSecret" if spec.secret_store else "Secret",
            repo_url=remote.display, repo_branch=branch, container_image=spec.image,
            polling_interval=spec.polling_interval, action="publish", created_by=target.actor,
        )  # fmt: skip
        _record_ids(result, deployment)
        step("deployment", f"{'new' if deployment.created else 'reusing'} release {deployment.id} of deployment {deployment.deployment_id} ({deployment.status})")
        # 7–8. commit, push, record (the same change as a dry run shows)
        persisted = _commit_and_record(
            records=records, deployment=deployment, remote=remote, change=change, branch=branch,
            base_branch=target.base_branch, message=C.publish_commit_message(name, version, network, built.sha256),
            step=step, heads=heads,
        )  # fmt: skip
        _announce_commit(step, persisted)
        step("record", f"release {deployment.id} committed at {persisted.commit[:12]}")
    after = change.facts_after()
    _finish(result, persisted, remote, target, change.before, after, spec)
    at = len(result.review) - (persisted.branch != persisted.base_branch)  # before "then merge …"
    result.review[at:at] = pin_step(after, repo_settings.images.require_digest, remote.display, persisted.branch, persisted.base_branch)
    return result


def pin_step(facts, networks, repo: str, branch: str, base_branch: str) -> list[str]:
    """The next step for a network that must run a digest on the base branch (``images.require_digest``), unless pinned."""
    from allora_gitops.gitops.pin import pin_command

    if facts is None or facts.network not in networks or not facts.image or "@" in facts.image:
        return []
    return [
        f"pin the image before the merge ({facts.network} runs a digest on {base_branch}; verify fails there otherwise), "
        f"once it is built and pushed: {pin_command(facts.name, facts.image, repo, facts.network, facts.version, branch)}"
    ]


def _record_ids(result: PublishResult, release) -> None:
    result.deployment_id, result.release_id, result.deployment_created = release.deployment_id, release.id, release.created


def _nothing_to_do(result: PublishResult, plan: ReleasePlan, records, name: str, network: str, step: StepFn, change, spec) -> PublishResult:
    """The result of a change that the base branch or an open review already holds: no row, no commit."""
    result.nothing_to_do, result.open_review = plan.nothing, plan.open_review
    result.branch = plan.branch
    found = plan.open_release or records.current_deployment(name, network)
    if found is not None and found.deployment_id:
        result.deployment_id, result.release_id, result.deployment_status = found.deployment_id, found.id, found.status
        result.commit = found.commit_sha
    result.deployment_created = False
    target = records.find_deployment(name, network)
    result.owner = result.owner or (target.owner if target is not None else None)
    result.summary = [wallet_line(spec)]
    step("commit", f"nothing to do: {plan.nothing}")
    return result


def _finish(result: PublishResult, persisted: Persisted, remote: Remote, target: Target, old, new, spec=None) -> PublishResult:
    result.commit = persisted.commit
    result.committed = persisted.created
    if result.deployment_id:
        result.deployment_status = "merged" if persisted.branch == persisted.base_branch else "committed"
    result.changed_files = [{"status": s, "path": p} for s, p in persisted.changed]
    result.summary = summarise_change(old, new) if persisted.changed else []
    if spec is not None:  # the wallet is said out loud in every change, changed or not
        result.summary.append(wallet_line(spec))
    result.review = review_hints(remote, persisted)
    return result


# --- promote / rollback / retire --------------------------------------------------------------


def _bundle_record(records, name: str, version: str):
    bundle = records.get_bundle(name, version)
    if bundle is None:
        known = [b.version for b in records.list_bundles(name)]
        listed = f"; known versions: {', '.join(known)}" if known else "; publish it first"
        raise GitOpsError(f"no bundle {name} {version} in the records database{listed}")
    return bundle


def _read_main(remote: Remote, base_branch: str) -> Snapshot:
    from allora_gitops.gitops.repo import read_ref, require_marker

    git, commit = read_ref(remote, base_branch)
    require_marker(git, commit, remote, base_branch)
    return Snapshot(git, commit)


def _recorded_defaults(records, name: str, network: str, version: str | None = None) -> dict[str, Any]:
    """Settings a previous deployment of ``name`` on ``network`` used (topic, fee tier, wallet), to keep them."""
    for d in records.list_deployments(name=name, network=network):
        if version is None or d.version == version:
            out: dict[str, Any] = {"topic_id": d.topic_id, "fee_tier": d.fee_tier}
            if d.wallet_secret_kind == "Secret":
                out["wallet_secret"] = d.wallet_secret_name
            if d.container_image and "/" in d.container_image:
                out["image_registry"] = d.container_image.rsplit("/", 1)[0]
            return out
    return {}


def _redeploy(
    *,
    action: str,
    name: str,
    network: str,
    version: str,
    target: Target,
    options: "DeploymentSettings",
    defaults: dict[str, Any],
    branch: str,
    message: str,
    need_archive: bool,
    step: StepFn,
) -> PublishResult:
    """Render a recorded bundle version for ``network`` and commit it: promote and rollback."""
    from allora_gitops.bundle.manifest import BundleManifest
    from allora_gitops.render import render_deployment
    from allora_gitops.storage.objects import open_store, store_of

    check_network(network)
    remote = parse_remote(target.repo)
    cache = RepoCache(remote)
    heads = check_repository(remote, target.base_branch, branch, cache, every_branch=True)
    repo_settings = require_marker(cache.git, heads[target.base_branch], remote, target.base_branch)
    options, target = apply_repository_settings(repo_settings, options, target, network, defaults)
    require_wallet(network, options.wallet_secret)
    with _records(target.database_url) as records, tempfile.TemporaryDirectory(prefix=f"allora-{action}-") as tmp, records.deployment_lock(name, network):
        bundle = _bundle_record(records, name, version)
        step("records", f"{name} {version} sha256 {bundle.sha256}")
        key = C.archive_object_key(name, version, bundle.sha256)
        # no --store and no object_store setting: the archive is where publish recorded it
        store = open_store(target.store_url or store_of(bundle.archive_url, key))
        if need_archive:
            # fetched and re-read, so the rendering comes from the archive itself, not from the records
            from allora_gitops.bundle.source import resolve_source

            local = store.get_file(key, Path(tmp) / C.archive_filename(name, version), bundle.sha256)
            built = resolve_source(local, Path(tmp))
            manifest, size = built.manifest, built.size
            step("fetch", f"archive {store.url_for(key)} verified")
        else:
            if not store.exists(key, bundle.sha256):
                raise GitOpsError(f"the archive of {name} {version} is missing from the store {store.url}; publish it again")
            manifest, size = BundleManifest.model_validate(bundle.manifest), bundle.size
            step("fetch", f"archive {store.url_for(key)} present")
        options = keep_secret_mapping(cache.git, heads[target.base_branch], manifest, network, options)
        spec = _spec(manifest, bundle.sha256, size, options.model_copy(update={"network": network}), bundle.archive_url)
        tree = render_deployment(spec)
        step("render", f"{len(tree)} files for {name} {version} on {network}, image {spec.image}")
        result = PublishResult(
            action=action, name=name, network=network, version=version, sha256=bundle.sha256, repo=remote.display,
            branch=branch, base_branch=target.base_branch, dry_run=target.dry_run, archive_url=bundle.archive_url,
            image=spec.image,
        )  # fmt: skip
        result.wallet = spec.wallet_secret
        _warn(result, step, works_on_one_machine(remote, bundle.archive_url, spec.image) + wallet_warnings(spec.wallet_secret, network))
        change = _DeploymentChange(tree, name, network, version)

        if target.dry_run:
            trial = persist(
                remote, change, branch=branch, base_branch=target.base_branch, message=message, dry_run=True, heads=heads, cache=cache
            )
            result.diff, result.commit = trial.diff, trial.commit
            result.changed_files = [{"status": s, "path": p} for s, p in trial.changed]
            result.summary = (summarise_change(change.before, change.facts_after()) if trial.changed else []) + [wallet_line(spec)]
            return result
        plan = plan_release(
            records=records, remote=remote, cache=cache, heads=heads, change=change, name=name, network=network,
            wanted_branch=branch, explicit_branch=target.branch is not None, base_branch=target.base_branch,
            what=f"{name} {version}",
        )  # fmt: skip
        if plan.nothing:
            return _nothing_to_do(result, plan, records, name, network, step, change, spec)
        branch, heads = plan.branch, plan.heads
        result.branch = branch
        deployment = records.create_deployment(
            bundle_id=bundle.id, network=network, topic_id=spec.topic_id, fee_tier=spec.fee_tier,
            wallet_secret_name=spec.wallet_secret, wallet_secret_kind="ExternalSecret" if spec.secret_store else "Secret",
            repo_url=remote.display, repo_branch=branch, container_image=spec.image,
            polling_interval=spec.polling_interval, action=action, created_by=target.actor,
        )  # fmt: skip
        _record_ids(result, deployment)
        result.owner = records.find_deployment(name, network).owner
        step("deployment", f"{'new' if deployment.created else 'reusing'} release {deployment.id} of deployment {deployment.deployment_id}")
        persisted = _commit_and_record(
            records=records, deployment=deployment, remote=remote, change=change, branch=branch,
            base_branch=target.base_branch, message=message, step=step, heads=heads,
        )  # fmt: skip
        _announce_commit(step, persisted)
    after = change.facts_after()
    _finish(result, persisted, remote, target, change.before, after, spec)
    at = len(result.review) - (persisted.branch != persisted.base_branch)  # before "then merge …"
    result.review[at:at] = pin_step(after, repo_settings.images.require_digest, remote.display, persisted.branch, persisted.base_branch)
    return result


def publish_recorded(name: str, version: str, network: str, target: Target, options: "DeploymentSettings | None" = None, *, step: StepFn = _quiet) -> PublishResult:
    """Publish a bundle that is already stored and recorded (an upload through the API): steps 5–8 of
    ``publish_bundle``, rendered from the recorded manifest — the same branch, commit message and rows."""
    from allora_gitops.render import DeploymentSettings

    options = options or DeploymentSettings()
    check_network(network)
    with _records(target.database_url) as records:
        bundle = _bundle_record(records, name, version)
    return _redeploy(
        action="publish", name=name, network=network, version=version, target=target, options=options,
        defaults={}, branch=target.branch or C.review_branch(name, network, version),
        message=C.publish_commit_message(name, version, network, bundle.sha256), need_archive=False, step=step,
    )  # fmt: skip


def promote(name: str, from_network: str, to_network: str, target: Target, options: "DeploymentSettings | None" = None, *, step: StepFn = _quiet) -> PublishResult:
    """Deploy on ``to_network`` the version that runs on ``from_network`` (as the base branch says).

    ``options`` are publish's (topic, fee tier, polling interval, resources, registry, wallet …); what they
    leave out comes from the repository settings, then from the last deployment on ``to_network``.
    """
    from allora_gitops.render import DeploymentSettings

    options = options or DeploymentSettings()
    check_network(from_network)
    check_network(to_network)
    if from_network == to_network:
        raise GitOpsError("--from and --to name the same network")
    remote = parse_remote(target.repo)
    facts = current_facts(_read_main(remote, target.base_branch), name, from_network)
    if facts is None or not facts.version:
        raise GitOpsError(f"{name} is not deployed on {from_network} in {target.base_branch}; nothing to promote")
    step("read", f"{name} runs {facts.version} on {from_network}")
    with _records(target.database_url) as records:
        defaults = _recorded_defaults(records, name, to_network)
    if facts.image and "/" in facts.image.partition("@")[0]:
        # the same image moves on: from the registry it runs from (and was pinned in), not the platform default
        defaults["image_registry"] = facts.image.partition("@")[0].rsplit("/", 1)[0]
    return _redeploy(
        action="promote", name=name, network=to_network, version=facts.version, target=target, options=options,
        defaults=defaults, branch=target.branch or C.promote_branch(name, to_network, facts.version),
        message=C.promote_commit_message(name, facts.version, from_network, to_network, facts.sha256 or ""),
        need_archive=False, step=step,
    )  # fmt: skip


def rollback(name: str, network: str | None, version: str, target: Target, options: "DeploymentSettings | None" = None, *, step: StepFn = _quiet) -> PublishResult:
    """Deploy an earlier version again: its archive comes back from the store and is rendered anew.

    ``network`` None: that version's model.yaml ``allora.network``. An unknown version raises GitOpsError
    listing the recorded ones.
    """
    from allora_gitops.render import DeploymentSettings

    options = options or DeploymentSettings()
    if network is not None:
        check_network(network)  # a bad flag is refused before the records are opened
    with _records(target.database_url) as records:
        bundle = _bundle_record(records, name, version)
        network = network or (bundle.manifest or {}).get("allora", {}).get("network") or C.NETWORKS[0]
        check_network(network)
        defaults = _recorded_defaults(records, name, network, version) or _recorded_defaults(records, name, network)
    return _redeploy(
        action="rollback", name=name, network=network, version=version, target=target, options=options,
        defaults=defaults, branch=target.branch or C.rollback_branch(name, network, version),
        message=C.rollback_commit_message(name, version, network, bundle.sha256), need_archive=True, step=step,
    )  # fmt: skip


def retire(name: str, network: str, target: Target, *, step: StepFn = _quiet) -> PublishResult:
    """Remove the overlay (Argo CD prunes what it deployed); the whole deployment when it was the last one.

    Like publish, it compares with what runs: a deployment the base branch no longer runs, or whose open
    retire review is still waiting, is nothing to do (said, exit 0). The change is a ``retire`` release."""
    check_network(network)
    remote = parse_remote(target.repo)
    cache = RepoCache(remote)
    heads = check_repository(remote, target.base_branch, None, cache, every_branch=True)
    require_marker(cache.git, heads[target.base_branch], remote, target.base_branch)
    wanted = target.branch or C.retire_branch(name, network)
    result = PublishResult(
        action="retire", name=name, network=network, version=None, sha256=None, repo=remote.display,
        branch=wanted, base_branch=target.base_branch, dry_run=target.dry_run,
    )  # fmt: skip
    old: list[DeploymentFacts | None] = [current_facts(Snapshot(cache.git, cache.fetch(target.base_branch, heads[target.base_branch])), name, network)]

    def change(snapshot: Snapshot) -> TreeChange:
        if current_facts(snapshot, name, network) is None:
            return TreeChange()  # a re-run: the branch already removes it
        others = [f for f in read_deployments(snapshot, name=name) if f.network != network]
        gone = C.deployment_dir(name) if not others else C.deployment_overlay_dir(name, network)
        return TreeChange(delete_dirs=(gone,))

    if old[0] is None:
        if target.dry_run:
            raise GitOpsError(f"{name} is not deployed on {network} in {target.base_branch}; nothing to retire")
        with _records(target.database_url) as records:
            if records.find_deployment(name, network) is None:
                raise GitOpsError(f"{name} is not deployed on {network} in {target.base_branch}; nothing to retire")
            from allora_gitops.gitops.sync import reconcile

            reconcile(records, remote, target.base_branch, name=name)
            result.nothing_to_do = f"{target.base_branch} no longer runs {name} on {network}"
            result.deployment_id = records.find_deployment(name, network).id
        step("commit", f"nothing to do: {result.nothing_to_do}")
        return result
    if target.dry_run:
        persisted = persist(remote, change, branch=wanted, base_branch=target.base_branch, message="dry run\n", dry_run=True)
        result.diff = persisted.diff
        result.changed_files = [{"status": s, "path": p} for s, p in persisted.changed]
        result.summary = summarise_change(old[0], None)
        return result
    with _records(target.database_url) as records, records.deployment_lock(name, network):
        plan = plan_release(
            records=records, remote=remote, cache=cache, heads=heads, change=change, name=name, network=network,
            wanted_branch=wanted, explicit_branch=target.branch is not None, base_branch=target.base_branch,
            what=f"{name} without a deployment",
        )  # fmt: skip
        if plan.nothing:
            result.nothing_to_do, result.open_review, result.branch = plan.nothing, plan.open_review, plan.branch
            if plan.open_release is not None:
                result.deployment_id, result.release_id = plan.open_release.deployment_id, plan.open_release.id
            step("commit", f"nothing to do: {plan.nothing}")
            return result
        branch, heads = plan.branch, plan.heads
        result.branch = branch
        live = [d for d in records.list_deployments(name=name, network=network) if d.status in ("pending", "committed", "merged", "synced", "retiring") and d.action != "retire"]
        runs = records.current_deployment(name, network)
        bundle = records.get_bundle(name, old[0].version) if old[0].version else None
        release = None
        if runs is not None and bundle is not None:
            release = records.create_release(
                bundle_id=bundle.id, network=network, topic_id=runs.topic_id, fee_tier=runs.fee_tier,
                wallet_secret_name=runs.wallet_secret_name, wallet_secret_kind=runs.wallet_secret_kind,
                repo_url=remote.display, repo_branch=branch, container_image=runs.container_image,
                action="retire", created_by=target.actor,
            )  # fmt: skip
            _record_ids(result, release)
        persisted = _commit_and_record(
            records=records, deployment=release, remote=remote, change=change, branch=branch,
            base_branch=target.base_branch, message=C.retire_commit_message(name, network), step=step, heads=heads,
        )  # fmt: skip
        _announce_commit(step, persisted)
        # Every live record of it (older versions too): none of them runs once this is merged. Until then
        # it is `retiring`; `list`, `status` and `sync` move it to `retired` when git shows the merge.
        state = "retired" if branch == target.base_branch else "retiring"
        for d in live:
            if d.status == "pending":
                records.set_deployment_status(d.id, "retired", message=f"retired on {branch} before it was committed")
                continue
            records.set_deployment_status(
                d.id, state, message=f"retired on {branch} at {persisted.commit[:12]}",
                retire_branch=branch, retire_commit_sha=persisted.commit,
            )  # fmt: skip
            step("record", f"release {d.id} ({d.version}) {state}")
        if release is None and live:
            result.deployment_id = live[0].deployment_id
        result.deployment_status = None if release is None else ("merged" if branch == target.base_branch else "committed")
    if old[0] is not None:
        result.version, result.sha256 = old[0].version, old[0].sha256
    result.commit, result.committed = persisted.commit, persisted.created
    result.changed_files = [{"status": s, "path": p} for s, p in persisted.changed]
    result.summary = summarise_change(old[0], None) if persisted.changed else []
    result.review = review_hints(remote, persisted, retire=True)
    return result

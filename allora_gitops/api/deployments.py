"""``/api/deployments``: deploy a recorded bundle through the publish pipeline (a review branch), list, show,
promote, roll back and retire — what ``allora-gitops publish/promote/rollback/retire/list/status`` do."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, Iterator, Literal, Optional

from fastapi import APIRouter, Depends, Path as PathParam, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from allora_gitops import constants as C
from allora_gitops.api.dependencies import Caller, caller
from allora_gitops.api.problems import ApiError
from allora_gitops.api.bundles import NAME_PATTERN, VERSION_PATTERN
from allora_gitops.api.settings import ApiSettings

router = APIRouter(tags=["deployments"])
Network = Literal[C.NETWORKS]  # type: ignore[valid-type]
FeeTier = Literal[C.FEE_TIERS]  # type: ignore[valid-type]
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
RECENT_MAX = 200  # GET /api/deployments/{id}?recent=N
PAGE_SIZE, MAX_PAGE_SIZE = 100, 500  # GET /api/deployments?limit=N (db/paging.py)
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class BundleRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Optional[str] = Field(None, pattern=NAME_PATTERN, max_length=C.MAX_NAME_LENGTH)
    version: Optional[str] = Field(None, pattern=VERSION_PATTERN, max_length=64)
    sha256: Optional[str] = Field(None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_way(self):
        if not ((self.name and self.version) or self.sha256):
            raise ValueError("give name and version, or sha256")
        return self


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpu: Optional[str] = Field(None, pattern=QUANTITY_PATTERN, max_length=32)
    cpu_limit: Optional[str] = Field(None, pattern=QUANTITY_PATTERN, max_length=32)
    memory: Optional[str] = Field(None, pattern=QUANTITY_PATTERN, max_length=32)


SECRETS_HELP = (
    "model.yaml's environment.secrets, each mapped to a key of a Secret assigned to the caller: "
    '{"NAME": "SECRET/KEY"} (names only; the value stays in the Secret). Default: the mapping the live deployment has'
)
SecretMapping = dict[
    Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=253)],
    Annotated[str, StringConstraints(max_length=507)],
]


class DeploymentRequest(BaseModel):
    """A deployment of an uploaded bundle. ``wallet`` is the *name* of a Secret assigned to the caller, never a key."""

    model_config = ConfigDict(extra="forbid")
    bundle: BundleRef
    network: Optional[Network] = Field(None, description="Default: allora.network in the bundle's model.yaml")
    wallet: Optional[str] = Field(None, pattern=SECRET_NAME_PATTERN, max_length=253,
                                  description="Default on testnet: the caller's only assigned wallet; mainnet needs it named")
    topic_id: Optional[int] = Field(None, gt=0, le=C.MAX_TOPIC_ID)
    fee_tier: Optional[FeeTier] = None
    polling_interval: Optional[int] = Field(None, gt=0, le=86400)
    resources: Resources = Resources()
    secrets: Optional[SecretMapping] = Field(None, description=SECRETS_HELP)


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: Network
    wallet: Optional[str] = Field(None, pattern=SECRET_NAME_PATTERN, max_length=253,
                                  description="Default on testnet: the wallet the deployment uses; mainnet needs it named")
    secrets: Optional[SecretMapping] = Field(None, description=SECRETS_HELP)
    topic_id: Optional[int] = Field(None, gt=0, le=C.MAX_TOPIC_ID)
    fee_tier: Optional[FeeTier] = None


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(..., pattern=VERSION_PATTERN, max_length=64)
    topic_id: Optional[int] = Field(None, gt=0, le=C.MAX_TOPIC_ID)


class StageOut(BaseModel):
    stage: str
    at: Optional[str] = Field(None, description="When its evidence was recorded (running: newest result; active: newest successful submission)")


class LifecycleOut(BaseModel):
    """pending → committed → merged → image built → running → active, or a side state (failed, abandoned,
    retiring, retired); see allora_gitops/lifecycle.py."""

    stage: str
    reason: str
    polling_interval: int = Field(description="Seconds; running and active are judged in multiples of it")
    reached: list[StageOut]


class ReleaseOut(BaseModel):
    """One release: a reviewed change of a deployment (publish, promote, rollback, retire, pin)."""

    release_id: str
    kind: str
    version: str
    sha256: str
    status: str = Field(description="pending, committed → merged | abandoned; superseded once a later release is live; failed")
    commit: Optional[str]
    branch: str
    by: Optional[str] = Field(None, description="Who made it (the API caller; none for CLI publishes)")
    at: Optional[str]
    wallet: str
    image: Optional[str]
    message: Optional[str]


class PendingOut(BaseModel):
    version: str
    branch: str
    kind: str
    release_id: str
    status: str


class DeploymentEntryOut(BaseModel):
    """A deployment (a model on a network): what runs (``live_version``: null when nothing does) and what waits."""

    id: str
    name: str
    network: str
    owner: str
    live_version: Optional[str]
    status: str
    live: Optional[ReleaseOut]
    pending: list[PendingOut]
    retired: bool
    lifecycle: Optional[LifecycleOut] = Field(None, description="Of the live release, else of the newest pending one")


class DeploymentOut(BaseModel):
    id: str = Field(description="The deployment's id (a model on a network), stable across its releases")
    release_id: Optional[str] = Field(None, description="The release shown: the live one, else the newest")
    live_version: Optional[str] = None
    pending: list[PendingOut] = []
    owner: Optional[str] = None
    name: str
    version: str
    sha256: str
    network: str
    topic_id: int
    fee_tier: str
    status: str
    status_message: Optional[str]
    image: Optional[str]
    wallet: str
    branch: str
    commit: Optional[str]
    compare_url: Optional[str]
    created_at: str
    updated_at: str
    polling_interval: Optional[int] = Field(None, description="Seconds between polls (recorded, else the bundle's)")
    lifecycle: Optional[LifecycleOut] = None
    results: Optional[dict[str, Any]] = Field(
        None, description="GET /api/deployments/{id} only: the last submissions (each with its explorer_url), success rate "
                          "and p50/p95/p99 latency per window (1h, 24h, 7d) and kind, error types with counts per window",
    )  # fmt: skip
    resources: Optional[dict] = Field(None, description="GET one: CPU, memory against limits, restarts from Prometheus (allora_gitops.prometheus)")
    chain: Optional[dict] = Field(None, description="GET one: what the chain says of its worker (allora_gitops.chain.store.ChainView)")


class ChangeOut(BaseModel):
    """What a deploy/promote/rollback/retire did: the review branch and what changes once it is merged
    (the wallet Secret always named), or why there was nothing to do."""

    action: str
    deployment_id: Optional[str] = Field(description="The deployment (model + network)")
    release_id: Optional[str] = Field(None, description="The release made (or the open one that holds this change)")
    deployment_created: Optional[bool] = Field(description="A new release was recorded")
    nothing_to_do: Optional[str] = Field(None, description="Why nothing was made: the base branch or an open review holds it")
    open_review: Optional[str] = None
    wallet: Optional[str] = Field(None, description="The wallet Secret the deployment signs with")
    owner: Optional[str] = None
    name: str
    network: str
    version: Optional[str]
    sha256: Optional[str]
    branch: str
    base_branch: str
    commit: Optional[str]
    committed: bool
    compare_url: Optional[str]
    summary: list[str]
    changed_files: list[dict[str, str]]
    review: list[str]
    warnings: list[str] = Field([], description="What the reviewer should check (e.g. a wallet Secret named for another network)")


def deployment_out(d, settings: ApiSettings, lifecycle=None, results: Optional[dict[str, Any]] = None, resources=None, entry=None) -> DeploymentOut:
    """The API's view of a release (``ReleaseRecord``) of a deployment, with its ``lifecycle.Lifecycle``, results
    summary and ``prometheus.ResourceUsage`` when given; ``entry`` (``inventory.entry_of``) adds live and pending."""
    from allora_gitops.publish import compare_url

    extra = {}
    if entry is not None:
        extra = {"live_version": entry["live_version"], "pending": entry["pending"], "owner": entry["owner"]}
    return DeploymentOut(
        **extra, id=d.deployment_id or d.id, release_id=d.id, name=d.name, version=d.version, sha256=d.bundle_sha256, network=d.network, topic_id=d.topic_id,
        fee_tier=d.fee_tier, status=d.status, status_message=d.status_message, image=d.container_image,
        wallet=d.wallet_secret_name, branch=d.repo_branch, commit=d.commit_sha,
        compare_url=compare_url(d.repo_url, settings.base_branch, d.repo_branch) if d.repo_branch != settings.base_branch else None,
        created_at=d.created_at.isoformat(), updated_at=d.updated_at.isoformat(), polling_interval=d.polling_interval,
        lifecycle=LifecycleOut(**lifecycle.to_dict()) if lifecycle is not None else None, results=results,
        resources=resources.to_dict() if resources is not None else None,
    )  # fmt: skip


def change_out(result) -> ChangeOut:
    from allora_gitops.publish import compare_url

    return ChangeOut(
        action=result.action, deployment_id=result.deployment_id, deployment_created=result.deployment_created,
        release_id=result.release_id, nothing_to_do=result.nothing_to_do, open_review=result.open_review,
        wallet=result.wallet, owner=result.owner,
        name=result.name, network=result.network, version=result.version, sha256=result.sha256, branch=result.branch,
        base_branch=result.base_branch, commit=result.commit, committed=result.committed,
        compare_url=compare_url(result.repo, result.base_branch, result.branch) if result.branch != result.base_branch else None,
        summary=result.summary, changed_files=result.changed_files, review=result.review, warnings=result.warnings,
    )  # fmt: skip


def _target(settings: ApiSettings, c: Optional[Caller] = None, *, dry_run: bool = False):
    from allora_gitops.publish import Target

    return Target(repo=settings.repo, base_branch=settings.base_branch, store_url=settings.store_url, database_url=settings.database_url,
                  actor=c.principal.name if c is not None else None, dry_run=dry_run)  # fmt: skip


def _owned_deployment(deployment_id: str, c: Caller):
    """The release to show of the deployment ``deployment_id`` (its live one, else its newest) when the caller may
    see it; 404 otherwise (whether it exists is not the caller's business). A release's id (what results and
    pods name) finds its deployment too."""
    target = c.records.get_deployment_by_id(deployment_id)
    if target is None:
        release = c.records.get_deployment(deployment_id)
        target = c.records.get_deployment_by_id(release.deployment_id) if release is not None and release.deployment_id else None
    if target is None or not c.accounts.may_see(c.principal, target.name):
        raise ApiError(404, f"no deployment {deployment_id}")
    releases = c.records.list_releases(target.id)
    from allora_gitops.gitops.inventory import live_release_in

    shown = live_release_in(target, releases) or (releases[-1] if releases else None)
    if shown is None:
        raise ApiError(404, f"no deployment {deployment_id}")
    return shown


def _entry(c: Caller, d) -> dict:
    from allora_gitops.gitops.inventory import entry_of

    target = c.records.get_deployment_by_id(d.deployment_id)
    return entry_of(target, c.records.list_releases(target.id))


def _require_mainnet_wallet(network: str, wallet: Optional[str]) -> None:
    if network == "mainnet" and not wallet:
        raise ApiError(422, "a mainnet deployment needs its wallet named: field 'wallet' (the Secret holding it) is required")


def _answer(result, response: Response) -> ChangeOut:
    """201 for a change made, 200 when there was nothing to do (the base branch or an open review holds it)."""
    if result.nothing_to_do:
        response.status_code = 200
    return change_out(result)


def _check_wallet(c: Caller, wallet: str) -> None:
    from allora_gitops.redact import shown_value

    if not c.accounts.may_use_wallet(c.principal, wallet):  # quoted as errors quote values: a pasted key is withheld
        raise ApiError(403, f"the wallet Secret is not assigned to {c.principal.name} (got {shown_value(wallet)}); "
                            "an admin assigns wallets (`allora-gitops wallet assign`)")


def _check_secrets(c: Caller, secrets: Optional[dict[str, str]]) -> None:
    """Each mapped Secret must be assigned to the caller (``allora-gitops secret assign``), like a wallet."""
    for name, target in (secrets or {}).items():
        secret = target.rpartition("/")[0]
        if not secret or not c.accounts.may_use_secret(c.principal, secret):  # the name only: the target may be a pasted value
            raise ApiError(403, f"secrets.{name}: the Secret is not assigned to {c.principal.name}; "
                                "an admin assigns Secrets (`allora-gitops secret assign SECRET --user USER`)")


def _only_wallet(c: Caller) -> str:
    names = c.accounts.wallets_of(c.principal.name)
    if len(names) != 1:
        assigned = ", ".join(names) if names else "none"
        raise ApiError(422, f"name the wallet Secret to use (field 'wallet'); assigned to {c.principal.name}: {assigned}")
    return names[0]


@contextlib.contextmanager
def admitted(c: Caller, name: str, network: str) -> Iterator[None]:
    """The one admission check of every path that can make a deployment live or revive it (deploy, re-publish,
    promote, rollback — also of a retired deployment): a new release of a deployment that is live already
    replaces what runs and is admitted; otherwise the caller's live deployments (``live_deployments``,
    migration 0008) must be under their limit. Held for the whole change under the caller's lock
    (``Accounts.deploying``: one change per user at a time, on every replica), so concurrent requests
    cannot overshoot. 403 when refused, before anything is written."""
    p = c.principal
    limit = p.max_live_deployments if p.max_live_deployments is not None else c.settings.max_live_deployments
    with c.accounts.deploying(p):
        if not c.records.is_live(name, network) and c.accounts.live_deployments(p) >= limit:
            raise ApiError(403, f"{p.name} has {limit} live deployment(s), the limit; retire one first")
        yield


def find_bundle(c: Caller, ref: BundleRef):
    """The bundle ``ref`` names when the caller may see it; 404 otherwise (another user's is not the caller's business)."""
    if ref.sha256:
        found = [b for b in c.records.find_bundle_by_sha256(ref.sha256) if c.accounts.may_see(c.principal, b.name)]
        found = [b for b in found if (ref.name in (None, b.name)) and (ref.version in (None, b.version))]
        bundle = found[0] if len(found) == 1 else None
    else:
        bundle = c.records.get_bundle(ref.name, ref.version) if c.accounts.may_see(c.principal, ref.name) else None
    if bundle is None:
        raise ApiError(404, "no such bundle: upload it first (POST /api/bundles)")
    return bundle


def deploy_bundle(body: DeploymentRequest, c: Caller, *, dry_run: bool = False):
    """``POST /api/deployments`` and the console's deploy form: every check, then ``publish_recorded`` onto a review
    branch; ``dry_run``: the same checks and rendering, nothing written (``PublishResult.diff`` holds the change).
    Raises ApiError 403/404/422 and the pipeline's errors."""
    from allora_gitops.publish import publish_recorded
    from allora_gitops.render import DeploymentSettings

    bundle = find_bundle(c, body.bundle)
    network = body.network or (bundle.manifest.get("allora") or {}).get("network") or "testnet"
    _require_mainnet_wallet(network, body.wallet)
    wallet = body.wallet or _only_wallet(c)
    _check_wallet(c, wallet)
    _check_secrets(c, body.secrets)
    options = DeploymentSettings(
        topic_id=body.topic_id, fee_tier=body.fee_tier, polling_interval=body.polling_interval, cpu=body.resources.cpu,
        cpu_limit=body.resources.cpu_limit, memory=body.resources.memory, wallet_secret=wallet, secrets=body.secrets,
    )  # fmt: skip
    with admitted(c, bundle.name, network):
        return publish_recorded(bundle.name, bundle.version, network, _target(c.settings, c, dry_run=dry_run), options)


@router.post("/deployments", summary="Deploy an uploaded bundle: the publish pipeline onto a review branch", status_code=201,
             response_model=ChangeOut, responses={403: {}, 404: {}, 409: {}, 422: {}})  # fmt: skip
def create_deployment(
    body: DeploymentRequest,
    response: Response,
    c: Caller = Depends(caller),
):
    return _answer(deploy_bundle(body, c), response)


@router.get("/deployments", summary="The caller's deployments (every one for an admin): one per model and network, what runs and what waits; "
            "a page at a time by name, the next page's address in the Link header (rel=next)",
            response_model=list[DeploymentEntryOut], responses={400: {}})  # fmt: skip
def list_deployments(
    response: Response,
    network: Optional[Network] = None,
    all: bool = Query(False, description="Also the retired deployments (nothing runs, nothing waits)"),  # noqa: A002
    owner: Optional[str] = Query(None, max_length=63, description="Only this owner's deployments (a platform user's name)"),
    state: Optional[Literal["live", "waiting", "retired"]] = Query(None, description="live: its live release runs; waiting: a change waits for review; retired: neither"),
    prefix: Optional[str] = Query(None, max_length=C.MAX_NAME_LENGTH, description="Only names starting with this"),
    after: Optional[str] = Query(None, max_length=1000, description="The cursor of the previous page (its Link rel=next); opaque"),
    limit: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Deployments per page"),
    c: Caller = Depends(caller),
):
    from urllib.parse import urlencode

    from allora_gitops.db.paging import DeploymentFilter
    from allora_gitops.errors import UsageError
    from allora_gitops.gitops.inventory import entries_page
    from allora_gitops.lifecycle import deployments_lifecycles

    f = DeploymentFilter(owner=owner, network=network, state=state, name_prefix=prefix, include_retired=all,
                         visible_to=None if c.principal.is_admin else c.principal.user_id)  # fmt: skip
    try:
        entries, shown, next_cursor = entries_page(c.records, f, after=after, limit=limit)
    except UsageError as exc:
        raise ApiError(400, f"after: {exc.message}") from None
    lifecycles = deployments_lifecycles(c.records.connection, [r for r in shown if r is not None])
    for e, r in zip(entries, shown):
        if r is not None:
            e["lifecycle"] = lifecycles[r.id].to_dict()
    if next_cursor is not None:
        query = {k: v for k, v in (("network", network), ("owner", owner), ("state", state), ("prefix", prefix)) if v is not None}
        query.update({"all": "true"} if all else {}, **({"limit": str(limit)} if limit != PAGE_SIZE else {}), after=next_cursor)
        response.headers["Link"] = f'</api/deployments?{urlencode(query)}>; rel="next"'
    return entries


@router.get("/deployments/{deployment_id}", summary="One deployment: its live release (else the newest), pending reviews, lifecycle, results",
            response_model=DeploymentOut, responses={404: {}})  # fmt: skip
def get_deployment(
    deployment_id: str = PathParam(..., pattern=UUID_PATTERN),
    recent: int = Query(10, ge=0, le=RECENT_MAX, description="How many recent results to include"),
    c: Caller = Depends(caller),
):
    from allora_gitops.lifecycle import deployment_status

    d = _owned_deployment(deployment_id, c)
    found = deployment_status(c.records.connection, d, recent=recent)
    from allora_gitops.api.chain import deployment_chain

    out = deployment_out(d, c.settings, found.lifecycle, found.results_dict(), read_deployment_resources(c.settings, d), entry=_entry(c, d))
    out.chain = deployment_chain(c.records, d)
    return out


@router.get("/deployments/{deployment_id}/releases", summary="The deployment's releases in the order they were made",
            response_model=list[ReleaseOut], responses={404: {}})  # fmt: skip
def list_releases(
    deployment_id: str = PathParam(..., pattern=UUID_PATTERN),
    c: Caller = Depends(caller),
):
    from allora_gitops.gitops.inventory import release_dict

    d = _owned_deployment(deployment_id, c)
    return [release_dict(r) for r in c.records.list_releases(d.deployment_id)]


def read_deployment_resources(settings: ApiSettings, d):
    """``prometheus.deployment_resources`` of the DeploymentRecord ``d`` with the server's Prometheus URL, models'
    namespace and GitOps repository (the API's GET and the deployment page). Never raises; at most ~1.5 s."""
    from allora_gitops.prometheus import deployment_resources

    return deployment_resources(settings.prometheus_url, settings.models_namespace, d.name, d.network, d.status,
                                repo=settings.repo, ref=settings.base_branch)  # fmt: skip


def promote_change(d, body: PromoteRequest, c: Caller, *, dry_run: bool = False):
    """Promote the release ``d`` (from :func:`owned_deployment`) to ``body.network``: the route's and the console's."""
    from allora_gitops.publish import promote
    from allora_gitops.render import DeploymentSettings

    _require_mainnet_wallet(body.network, body.wallet)
    wallet = body.wallet or d.wallet_secret_name
    _check_wallet(c, wallet)
    _check_secrets(c, body.secrets)
    options = DeploymentSettings(topic_id=body.topic_id, fee_tier=body.fee_tier, wallet_secret=wallet, secrets=body.secrets)
    with admitted(c, d.name, body.network):
        return promote(d.name, d.network, body.network, _target(c.settings, c, dry_run=dry_run), options)


def rollback_change(d, body: RollbackRequest, c: Caller, *, dry_run: bool = False):
    """Deploy ``body.version`` of the release ``d``'s bundle again on its network: the route's and the console's."""
    from allora_gitops.publish import rollback
    from allora_gitops.render import DeploymentSettings

    _check_wallet(c, d.wallet_secret_name)
    if c.records.get_bundle(d.name, body.version) is None:
        raise ApiError(404, f"no bundle {d.name} {body.version}")
    options = DeploymentSettings(topic_id=body.topic_id, wallet_secret=d.wallet_secret_name)
    with admitted(c, d.name, d.network):  # a rollback of a retired deployment revives it
        return rollback(d.name, d.network, body.version, _target(c.settings, c, dry_run=dry_run), options)


def retire_change(d, c: Caller, *, dry_run: bool = False):
    """Remove the release ``d``'s deployment (a review branch): the route's and the console's."""
    from allora_gitops.publish import retire

    return retire(d.name, d.network, _target(c.settings, c, dry_run=dry_run))


owned_deployment = _owned_deployment


@router.post("/deployments/{deployment_id}/promote", summary="Deploy this deployment's running version on another network",
             status_code=201, response_model=ChangeOut, responses={403: {}, 404: {}, 409: {}})  # fmt: skip
def promote_deployment(
    body: PromoteRequest,
    response: Response,
    deployment_id: str = PathParam(..., pattern=UUID_PATTERN),
    c: Caller = Depends(caller),
):
    return _answer(promote_change(_owned_deployment(deployment_id, c), body, c), response)


@router.post("/deployments/{deployment_id}/rollback", summary="Deploy an earlier version of this deployment's bundle again",
             status_code=201, response_model=ChangeOut, responses={403: {}, 404: {}, 409: {}})  # fmt: skip
def rollback_deployment(
    body: RollbackRequest,
    response: Response,
    deployment_id: str = PathParam(..., pattern=UUID_PATTERN),
    c: Caller = Depends(caller),
):
    return _answer(rollback_change(_owned_deployment(deployment_id, c), body, c), response)


@router.post("/deployments/{deployment_id}/retire", summary="Remove this deployment (a review branch; Argo CD prunes it once merged)",
             status_code=201, response_model=ChangeOut, responses={404: {}, 409: {}})  # fmt: skip
def retire_deployment(
    response: Response,
    deployment_id: str = PathParam(..., pattern=UUID_PATTERN),
    c: Caller = Depends(caller),
):
    return _answer(retire_change(_owned_deployment(deployment_id, c), c), response)

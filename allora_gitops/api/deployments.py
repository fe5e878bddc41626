"""``/api/deployments``: deploy a recorded bundle through the publish pipeline (a review branch), list, show,
promote, roll back and retire — what ``allora-gitops publish/promote/rollback/retire/list/status`` do."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from fastapi import APIRouter, Depends, Path as PathParam, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from allora_gitops import constants as C
from allora_gitops.api.app import ApiError, Caller, caller
from allora_gitops.api.bundles import NAME_PATTERN, VERSION_PATTERN
from allora_gitops.api.settings import ApiSettings

router = APIRouter(tags=["deployments"])
Network = Literal[C.NETWORKS]  # type: ignore[valid-type]
FeeTier = Literal[C.FEE_TIERS]  # type: ignore[valid-type]
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
RECENT_MAX = 200  # GET /api/deployments/{id}?recent=N
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
    wallet: Optional[str] = Field(None, pattern=SECRET_NAME_PATTERN, max_length=253, description="Default: the caller's only assigned wallet")
    topic_id: Optional[int] = Field(None, gt=0, le=C.MAX_TOPIC_ID)
    fee_tier: Optional[FeeTier] = None
    polling_interval: Optional[int] = Field(None, gt=0, le=86400)
    resources: Resources = Resources()
    secrets: Optional[SecretMapping] = Field(None, description=SECRETS_HELP)


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: Network
    wallet: Optional[str] = Field(None, pattern=SECRET_NAME_PATTERN, max_length=253)
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


class DeploymentOut(BaseModel):
    id: str
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
    """What a deploy/promote/rollback/retire did: the review branch and what changes once it is merged."""

    action: str
    deployment_id: Optional[str]
    deployment_created: Optional[bool]
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


def deployment_out(d, settings: ApiSettings, lifecycle=None, results: Optional[dict[str, Any]] = None, resources=None) -> DeploymentOut:
    """The API's view of a DeploymentRecord, with its ``lifecycle.Lifecycle``, results summary and
    ``prometheus.ResourceUsage`` when given."""
    from allora_gitops.publish import compare_url

    return DeploymentOut(
        id=d.id, name=d.name, version=d.version, sha256=d.bundle_sha256, network=d.network, topic_id=d.topic_id,
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
        name=result.name, network=result.network, version=result.version, sha256=result.sha256, branch=result.branch,
        base_branch=result.base_branch, commit=result.commit, committed=result.committed,
        compare_url=compare_url(result.repo, result.base_branch, result.branch) if result.branch != result.base_branch else None,
        summary=result.summary, changed_files=result.changed_files, review=result.review,
    )  # fmt: skip


def _target(settings: ApiSettings):
    from allora_gitops.publish import Target

    return Target(repo=settings.repo, base_branch=settings.base_branch, store_url=settings.store_url, database_url=settings.database_url)


def _owned_deployment(deployment_id: str, c: Caller):
    """The deployment when the caller may see it; 404 otherwise (whether it exists is not the caller's business)."""
    d = c.records.get_deployment(deployment_id)
    if d is None or not c.accounts.may_see(c.principal, d.name):
        raise ApiError(404, f"no deployment {deployment_id}")
    return d


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


def _check_live_limit(c: Caller, name: str, network: str) -> None:
    p = c.principal
    limit = p.max_live_deployments if p.max_live_deployments is not None else c.settings.max_live_deployments
    already = c.records.current_deployment(name, network) is not None  # a new version of a live deployment replaces it
    if not already and c.accounts.live_deployments(p) >= limit:
        raise ApiError(403, f"{p.name} has {limit} live deployment(s), the limit; retire one first")


@router.post("/deployments", summary="Deploy an uploaded bundle: the publish pipeline onto a review branch", status_code=201,
             response_model=ChangeOut, responses={403: {}, 404: {}, 409: {}, 422: {}})  # fmt: skip
def create_deployment(
    body: DeploymentRequest,
    c: Caller = Depends(caller),
):
    from allora_gitops.publish import publish_recorded
    from allora_gitops.render import DeploymentSettings

    ref = body.bundle
    if ref.sha256:
        found = [b for b in c.records.find_bundle_by_sha256(ref.sha256) if c.accounts.may_see(c.principal, b.name)]
        found = [b for b in found if (ref.name in (None, b.name)) and (ref.version in (None, b.version))]
        bundle = found[0] if len(found) == 1 else None
    else:
        bundle = c.records.get_bundle(ref.name, ref.version) if c.accounts.may_see(c.principal, ref.name) else None
    if bundle is None:
        raise ApiError(404, "no such bundle: upload it first (POST /api/bundles)")
    network = body.network or (bundle.manifest.get("allora") or {}).get("network") or "testnet"
    wallet = body.wallet or _only_wallet(c)
    _check_wallet(c, wallet)
    _check_secrets(c, body.secrets)
    options = DeploymentSettings(
        topic_id=body.topic_id, fee_tier=body.fee_tier, polling_interval=body.polling_interval, cpu=body.resources.cpu,
        cpu_limit=body.resources.cpu_limit, memory=body.resources.memory, wallet_secret=wallet, secrets=body.secrets,
    )  # fmt: skip
    with c.accounts.deploying(c.principal):
        _check_live_limit(c, bundle.name, network)
        return change_out(publish_recorded(bundle.name, bundle.version, network, _target(c.settings), options))


@router.get("/deployments", summary="The caller's deployments (every one for an admin), newest change first", response_model=list[DeploymentOut])
def list_deployments(
    network: Optional[Network] = None,
    c: Caller = Depends(caller),
):
    from allora_gitops.lifecycle import deployments_lifecycles

    names = c.accounts.owned_names(c.principal)
    found = [d for d in c.records.list_deployments(network=network) if names is None or d.name in names]
    lifecycles = deployments_lifecycles(c.records.connection, found)
    return [deployment_out(d, c.settings, lifecycles[d.id]) for d in found]


@router.get("/deployments/{deployment_id}", summary="One deployment: version, image, topic, status, branch, commit, lifecycle, results",
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

    out = deployment_out(d, c.settings, found.lifecycle, found.results_dict(), read_deployment_resources(c.settings, d))
    out.chain = deployment_chain(c.records, d)
    return out


def read_deployment_resources(settings: ApiSettings, d):
    """``prometheus.deployment_resources`` of the DeploymentRecord ``d`` with the server's Prometheus URL, models'
    namespace and GitOps repository (the API's GET and the deployment page). Never raises; at most ~1.5 s."""
    from allora_gitops.prometheus import deployment_resources

    return deployment_resources(settings.prometheus_url, settings.models_namespace, d.name, d.network, d.status,
                                repo=settings.repo, ref=settings.base_branch)  # fmt: skip


@router.post("/deployments/{deployment_id}/promote", summary="Deploy this deployment's running version on another network",
             status_code=201, response_model=ChangeOut, responses={403: {}, 404: {}, 409: {}})  # fmt: skip
def promote_deployment(
    body: PromoteRequest,
    deployment_id: str = PathParam(..., pattern=UUID_PATTERN),
    c: Caller = Depends(caller),
):
    from allora_gitops.publish import promote
    from allora_gitops.render import DeploymentSettings

    d = _owned_deployment(deployment_id, c)
    wallet = body.wallet or d.wallet_secret_name
    _check_wallet(c, wallet)
    _check_secrets(c, body.secrets)
    options = DeploymentSettings(topic_id=body.topic_id, fee_tier=body.fee_tier, wallet_secret=wallet, secrets=body.secrets)
    with c.accounts.deploying(c.principal):
        _check_live_limit(c, d.name, body.network)
        return change_out(promote(d.name, d.network, body.network, _target(c.settings), options))


@router.post("/deployments/{deployment_id}/rollback", summary="Deploy an earlier version of this deployment's bundle again",
             status_code=201, response_model=ChangeOut, responses={403: {}, 404: {}, 409: {}})  # fmt: skip
def rollback_deployment(
    body: RollbackRequest,
    deployment_id: str = PathParam(..., pattern=UUID_PATTERN),
    c: Caller = Depends(caller),
):
    from allora_gitops.publish import rollback
    from allora_gitops.render import DeploymentSettings

    d = _owned_deployment(deployment_id, c)
    _check_wallet(c, d.wallet_secret_name)
    if c.records.get_bundle(d.name, body.version) is None:
        raise ApiError(404, f"no bundle {d.name} {body.version}")
    options = DeploymentSettings(topic_id=body.topic_id, wallet_secret=d.wallet_secret_name)
    return change_out(rollback(d.name, d.network, body.version, _target(c.settings), options))


@router.post("/deployments/{deployment_id}/retire", summary="Remove this deployment (a review branch; Argo CD prunes it once merged)",
             status_code=201, response_model=ChangeOut, responses={404: {}, 409: {}})  # fmt: skip
def retire_deployment(
    deployment_id: str = PathParam(..., pattern=UUID_PATTERN),
    c: Caller = Depends(caller),
):
    from allora_gitops.publish import retire

    d = _owned_deployment(deployment_id, c)
    return change_out(retire(d.name, d.network, _target(c.settings)))

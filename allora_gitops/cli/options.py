"""The options of allora-gitops commands, declared once (typer ``Annotated`` aliases).

``render``, ``publish``, ``promote`` and ``rollback`` take the same deployment
options with the same help (:func:`with_deployment_options` adds them and hands
the command the one settings model, ``DeploymentSettings``). Light on purpose:
typer only.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Annotated, Any, Callable, List, Optional

import typer

REPO_HELP = "The GitOps repository: a URL or a path (a bare repository works). Must be initialised by `repo init`."

# --- what the deployment runs with (DeploymentSettings) ------------------------------------
NetworkOpt = Annotated[Optional[str], typer.Option("--network", help="testnet or mainnet (default: model.yaml's allora.network).")]
TopicIdOpt = Annotated[Optional[int], typer.Option("--topic-id", help="Topic to submit to (default: the last one used on this network, else allora.topic_id).")]
FeeTierOpt = Annotated[Optional[str], typer.Option("--fee-tier", help="ECO, STANDARD or PRIORITY (default: model.yaml's allora.fee_tier).")]
PollingIntervalOpt = Annotated[Optional[int], typer.Option("--polling-interval", help="Seconds between polls for a submission window (default: allora.polling_interval).")]
CpuOpt = Annotated[Optional[str], typer.Option("--cpu", help="CPU request in cores, e.g. 250m or 1 (default: runtime.cpu_cores, else 250m).")]
CpuLimitOpt = Annotated[Optional[str], typer.Option("--cpu-limit", help="CPU limit (default: twice the request).")]
MemoryOpt = Annotated[Optional[str], typer.Option("--memory", help="Memory request and limit, e.g. 512Mi (default: runtime.memory_mb, else 512Mi).")]
ImageRegistryOpt = Annotated[Optional[str], typer.Option("--image-registry", help="Registry/prefix of the image (default: image_registry in .allora-gitops.yaml).")]
WalletSecretOpt = Annotated[Optional[str], typer.Option("--wallet", "--wallet-secret", help="Kubernetes Secret holding the wallet (default on testnet: NAME-NETWORK-wallet; mainnet needs it named).")]
SecretStoreOpt = Annotated[Optional[str], typer.Option("--secret-store", help="Create the wallet Secret with an ExternalSecret from this external-secrets store.")]
SecretStoreKindOpt = Annotated[Optional[str], typer.Option("--secret-store-kind", help="Kind of --secret-store: ClusterSecretStore (default) or SecretStore.")]
WalletRemoteKeyOpt = Annotated[Optional[str], typer.Option("--wallet-remote-key", help="Key of the wallet in the store (default: allora/NAME/NETWORK).")]
BaseImageOpt = Annotated[Optional[str], typer.Option("--base-image", help="Base image (default: python:VERSION-slim); pin it with repo@sha256:….")]
MonitoringOpt = Annotated[Optional[bool], typer.Option("--monitoring/--no-monitoring", help="Render a PodMonitor and PrometheusRule for the deployment (default: monitoring in .allora-gitops.yaml, else on).")]
LowBalanceThresholdOpt = Annotated[Optional[int], typer.Option("--low-balance-threshold", min=0, metavar="UALLO", help="AlloraLowWalletBalance fires below this many uallo (default: low_balance_threshold_uallo in .allora-gitops.yaml, else 10^18 = 1 ALLO).")]
ResultsUrlOpt = Annotated[Optional[str], typer.Option("--results-url", help="Report each result to the platform API at this cluster Service URL (a projected ServiceAccount token, egress to it; default: off).")]
SecretOpt = Annotated[Optional[List[str]], typer.Option("--secret", metavar="NAME=SECRET/KEY", help="Map model.yaml's environment.secrets entry NAME to key KEY of Secret SECRET (with --secret-store: property KEY of the store's key SECRET); repeatable. Names only: the value stays in the Secret.")]
NamespaceOpt = Annotated[Optional[str], typer.Option("--namespace", help="Namespace of the models (default: namespace in .allora-gitops.yaml, else allora-models).")]

# --- where the change goes -------------------------------------------------------------------
RepoOpt = Annotated[str, typer.Option("--repo", help=REPO_HELP)]
StoreOpt = Annotated[Optional[str], typer.Option("--store", help="Object store, file://DIR or s3://bucket/prefix (default: object_store in .allora-gitops.yaml, else $ALLORA_STORE_URL, else under the state directory).")]
DatabaseUrlOpt = Annotated[Optional[str], typer.Option("--database-url", help="PostgreSQL URL of the records (default: $ALLORA_DATABASE_URL, else an embedded server).")]
BranchOpt = Annotated[Optional[str], typer.Option("--branch", help="Branch to commit on (default: a review branch named after the change; the base branch commits directly).")]
BaseBranchOpt = Annotated[str, typer.Option("--base", help="The branch Argo CD deploys; review branches start from it.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the file diff; upload, record and push nothing.")]
OwnerOpt = Annotated[Optional[str], typer.Option("--owner", help="Platform user who owns the name when it has no owner yet (default: default_owner in .allora-gitops.yaml, else platform).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (steps still go to stderr).")]

# Every option DeploymentSettings holds, in the order --help lists them.
DEPLOYMENT_OPTIONS = (
    ("network", NetworkOpt), ("topic_id", TopicIdOpt), ("fee_tier", FeeTierOpt), ("polling_interval", PollingIntervalOpt),
    ("cpu", CpuOpt), ("cpu_limit", CpuLimitOpt), ("memory", MemoryOpt), ("image_registry", ImageRegistryOpt),
    ("wallet_secret", WalletSecretOpt), ("secret_store", SecretStoreOpt), ("secret_store_kind", SecretStoreKindOpt),
    ("wallet_remote_key", WalletRemoteKeyOpt), ("base_image", BaseImageOpt), ("namespace", NamespaceOpt),
    ("monitoring", MonitoringOpt), ("low_balance_threshold", LowBalanceThresholdOpt), ("results_url", ResultsUrlOpt),
    ("secrets", SecretOpt),
)  # fmt: skip


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def parse_secret_options(values: Optional[list[str]]) -> Optional[dict[str, str]]:
    """``["NAME=SECRET/KEY", …]`` as ``{NAME: "SECRET/KEY"}``; UsageError (exit 2) for a malformed or repeated NAME.

    Only the NAME is ever quoted back: what follows ``=`` is meant to be a reference, but may be a pasted value.
    """
    from allora_gitops.errors import UsageError
    from allora_gitops.redact import shown_value

    if not values:
        return None
    out: dict[str, str] = {}
    for raw in values:
        name, eq, target = raw.partition("=")
        name = name.strip()
        # without '=' the whole argument may be the pasted value: quote only what is shaped like a variable name
        shown = name if _ENV_NAME.fullmatch(name) and shown_value(name).startswith("'") else "…"
        if not eq or not name or not target:
            raise UsageError(f"--secret {shown}: expected NAME=SECRET/KEY")
        if name in out:
            raise UsageError(f"--secret {shown}: given twice")
        out[name] = target.strip()
    return out


def _with_options(func: Callable[..., Any], options: list[tuple[str, Any, Any]], keyword: str, build: Callable[[dict], Any]):
    """``func`` with ``options`` (name, Annotated alias, default) appended to its signature for typer; the
    command gets them as one ``keyword`` argument, made by ``build`` from their values."""
    signature = inspect.signature(func)
    own = [  # typer needs the annotations themselves (the modules use `from __future__ import annotations`)
        p.replace(annotation=eval(p.annotation, func.__globals__)) if isinstance(p.annotation, str) else p  # noqa: S307
        for p in signature.parameters.values()
        if p.name != keyword
    ]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=alias) for name, alias, default in options]
    names = [name for name, _, _ in options]

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in names}
        return func(*args, **{keyword: build(given)}, **kwargs)

    command.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in own + added if p.annotation is not inspect.Parameter.empty}
    return command


def with_deployment_options(*, network: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command every deployment option (``DEPLOYMENT_OPTIONS``), declared here once.

    The command receives them as one ``settings: DeploymentSettings`` keyword (without ``network``
    when ``network`` is False: the command names the network its own way, e.g. promote's ``--to``).
    """

    def build(values: dict) -> Any:
        from allora_gitops.render import DeploymentSettings

        return DeploymentSettings(**{**values, "secrets": parse_secret_options(values.get("secrets"))})

    options = [(name, alias, None) for name, alias in DEPLOYMENT_OPTIONS if network or name != "network"]
    return lambda func: _with_options(func, options, "settings", build)


TARGET_OPTIONS = (
    ("repo", RepoOpt, ...), ("store", StoreOpt, None), ("database_url", DatabaseUrlOpt, None), ("branch", BranchOpt, None),
    ("base", BaseBranchOpt, "main"), ("dry_run", DryRunOpt, False), ("owner", OwnerOpt, None),
)  # fmt: skip


def with_target_options(*, store: bool = True, owner: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options saying where a change goes (``TARGET_OPTIONS``); it receives one ``target: Target``."""

    def build(values: dict) -> Any:
        from allora_gitops.publish import Target

        return Target(
            repo=values["repo"], branch=values["branch"], base_branch=values["base"], store_url=values.get("store"),
            database_url=values["database_url"], dry_run=values["dry_run"], owner=values.get("owner"),
        )  # fmt: skip

    options = [o for o in TARGET_OPTIONS if (store or o[0] != "store") and (owner or o[0] != "owner")]
    return lambda func: _with_options(func, options, "target", build)

"""``allora-gitops render``: flags → DeploymentSettings → one rendered tree → files. No side effects beyond -o."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)


def render_cmd(
    source: Path = typer.Argument(..., help="Bundle directory or built archive (.tar.gz)."),
    network: str = typer.Option(..., "--network", help="testnet or mainnet."),
    topic_id: Optional[int] = typer.Option(None, "--topic-id", help="Topic to submit to (default: allora.topic_id)."),
    fee_tier: Optional[str] = typer.Option(None, "--fee-tier", help="ECO, STANDARD or PRIORITY (default: model.yaml)."),
    polling_interval: Optional[int] = typer.Option(None, "--polling-interval", help="Seconds between polls (default: model.yaml)."),
    cpu: Optional[str] = typer.Option(None, "--cpu", help="CPU request, e.g. 250m (default: runtime.cpu_cores, else 250m)."),
    cpu_limit: Optional[str] = typer.Option(None, "--cpu-limit", help="CPU limit (default: twice the request)."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Memory request and limit, e.g. 512Mi (default: runtime.memory_mb)."),
    image_registry: Optional[str] = typer.Option(None, "--image-registry", help="Registry/prefix of the image (default: localhost:5000/allora)."),
    wallet_secret: Optional[str] = typer.Option(None, "--wallet-secret", help="Secret holding the wallet (default: NAME-NETWORK-wallet)."),
    secret_store: Optional[str] = typer.Option(None, "--secret-store", help="Render an ExternalSecret from this external-secrets store."),
    secret_store_kind: Optional[str] = typer.Option(None, "--secret-store-kind", help="ClusterSecretStore (default) or SecretStore."),
    wallet_remote_key: Optional[str] = typer.Option(None, "--wallet-remote-key", help="Key in the store (default: allora/NAME/NETWORK)."),
    base_image: Optional[str] = typer.Option(None, "--base-image", help="Base image (default: python:VER-slim; repo@sha256:… pins it)."),
    archive_url: Optional[str] = typer.Option(None, "--archive-url", help="Where the archive is stored (default: the local store's URL for it)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Namespace of the models (default: allora-models)."),
    monitoring: Optional[bool] = typer.Option(None, "--monitoring/--no-monitoring", help="Render a PodMonitor and PrometheusRule (default: on)."),
    low_balance_threshold: Optional[int] = typer.Option(
        None, "--low-balance-threshold", min=0, metavar="UALLO", help="AlloraLowWalletBalance fires below this many uallo (default: 10^18 = 1 ALLO)."
    ),
    monitoring_namespace: Optional[str] = typer.Option(
        None, "--monitoring-namespace", help="The namespace Prometheus runs in, admitted to the metrics port (default: monitoring)."
    ),
    results_url: Optional[str] = typer.Option(
        None, "--results-url",
        help="Report each result to the platform API at this cluster Service URL (projected token, egress to it; default: off).",
    ),  # fmt: skip
    repo_url: Optional[str] = typer.Option(None, "--repo-url", help="Also render argocd/ for this GitOps repository URL, and monitoring/ (the Grafana dashboard)."),
    target_revision: str = typer.Option("main", "--target-revision", help="Branch Argo CD follows (with --repo-url)."),
    output: Path = typer.Option(Path("."), "-o", "--output", help="GitOps repository directory to write into."),
) -> None:
    """Render the Dockerfile, build metadata and Kustomize base/overlay of a bundle (and argocd/ with --repo-url)."""
    import tempfile

    from allora_gitops.render import ArgoCDSettings, DeploymentSettings, render_argocd, render_deployment, write_tree
    from allora_gitops.render.source import spec_from_source

    settings = DeploymentSettings(
        network=network,
        topic_id=topic_id,
        fee_tier=fee_tier,
        polling_interval=polling_interval,
        cpu=cpu,
        cpu_limit=cpu_limit,
        memory=memory,
        image_registry=image_registry,
        wallet_secret=wallet_secret,
        secret_store=secret_store,
        secret_store_kind=secret_store_kind,
        wallet_remote_key=wallet_remote_key,
        base_image=base_image,
        archive_url=archive_url,
        namespace=namespace,
        monitoring=monitoring,
        low_balance_threshold=low_balance_threshold,
        monitoring_namespace=monitoring_namespace,
        results_url=results_url,
    )
    with tempfile.TemporaryDirectory(prefix="allora-render-") as work:
        spec = spec_from_source(source, settings, Path(work))
    tree = render_deployment(spec)
    if repo_url:
        from allora_gitops.render.dashboard import render_dashboard

        tree.update(render_argocd(ArgoCDSettings(repo_url=repo_url, target_revision=target_revision, namespace=spec.namespace)))
        tree.update(render_dashboard(spec.monitoring_namespace))
    for path in write_tree(tree, output):
        typer.echo(str(path))
    typer.echo(f"rendered {spec.name} {spec.version} for {spec.network}: image {spec.image}", err=True)

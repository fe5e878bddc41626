"""``allora-gitops render``: flags → DeploymentSettings → one rendered tree → files. No side effects beyond -o."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from allora_gitops.cli.options import with_deployment_options

if TYPE_CHECKING:
    from allora_gitops.render import DeploymentSettings


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)


@with_deployment_options()
def render_cmd(
    source: Path = typer.Argument(..., help="Bundle directory or built archive (.tar.gz)."),
    archive_url: Optional[str] = typer.Option(None, "--archive-url", help="Where the archive is stored (default: the local store's URL for it)."),
    repo_url: Optional[str] = typer.Option(None, "--repo-url", help="Also render argocd/ for this GitOps repository URL, and monitoring/ (the Grafana dashboard); not into a repository with .allora-gitops.yaml: repo init wrote them."),
    monitoring_namespace: Optional[str] = typer.Option(
        None, "--monitoring-namespace", help="The namespace Prometheus runs in, admitted to the metrics port (default: monitoring_namespace in .allora-gitops.yaml, else monitoring)."
    ),
    target_revision: str = typer.Option("main", "--target-revision", help="Branch Argo CD follows (with --repo-url)."),
    output: Path = typer.Option(Path("."), "-o", "--output", help="GitOps repository directory to write into."),
    *,
    settings: "DeploymentSettings",
) -> None:
    """Render the Dockerfile, build metadata and Kustomize base/overlay of a bundle (and argocd/ with --repo-url).

    Into a repository made by `repo init`, its .allora-gitops.yaml gives the namespace and the image
    registry, a flag that contradicts it is refused (exit 2), and argocd/ is left as it is.
    """
    import tempfile

    from allora_gitops.render import ArgoCDSettings, render_argocd, render_deployment, write_tree
    from allora_gitops.render.source import spec_from_source

    settings = settings.model_copy(update={"archive_url": archive_url, "monitoring_namespace": monitoring_namespace})
    repo_settings = _repository_settings(output)
    if repo_settings is not None:
        from allora_gitops.gitops.settings import check_flags

        check_flags(
            repo_settings, str(output / ".allora-gitops.yaml"), namespace=settings.namespace,
            image_registry=settings.image_registry, repo_url=repo_url, network=settings.network,
            monitoring_namespace=monitoring_namespace,
        )  # fmt: skip
        settings = settings.over(repo_settings.deployment_defaults())
    with tempfile.TemporaryDirectory(prefix="allora-render-") as work:
        spec = spec_from_source(source, settings, Path(work))
    if repo_settings is not None and settings.network is None:
        from allora_gitops.gitops.settings import check_flags

        check_flags(repo_settings, str(output / ".allora-gitops.yaml"), network=spec.network)
    tree = render_deployment(spec)
    if repo_url and repo_settings is None:
        from allora_gitops.render.dashboard import render_dashboard

        tree.update(render_argocd(ArgoCDSettings(repo_url=repo_url, target_revision=target_revision, namespace=spec.namespace)))
        tree.update(render_dashboard(spec.monitoring_namespace))
    for path in write_tree(tree, output):
        typer.echo(str(path))
    typer.echo(f"rendered {spec.name} {spec.version} for {spec.network}: image {spec.image}", err=True)


def _repository_settings(output: Path):
    """The settings of the repository rendered into, or None when ``output`` is not one."""
    from allora_gitops import constants as C
    from allora_gitops.gitops.settings import parse_repository_settings

    path = output / C.REPO_MARKER_FILE
    if not path.is_file():
        return None
    return parse_repository_settings(path.read_bytes(), str(path))

"""``allora-gitops build-platform-image``: flags → PlatformImageRequest → ``build_platform_image``. Build logs go to
stderr, the result to stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("build-platform-image")(build_platform_image_cmd)


def build_platform_image_cmd(
    tag: str = typer.Option(..., "--tag", help="REPO:TAG of the image, e.g. ghcr.io/acme/allora-gitops:0.1.0."),
    context: Optional[Path] = typer.Option(None, "--context", help="A checkout of allora-gitops (default: the one running)."),
    builder: str = typer.Option("auto", "--builder", help="buildah, docker, or auto (buildah when it runs here, else docker)."),
    base_image: Optional[str] = typer.Option(None, "--base-image", help="The Dockerfile's BASE_IMAGE; REPO@sha256:… pins it."),
    pip_cert: Optional[Path] = typer.Option(None, "--pip-cert", help="CA bundle for pip, passed as the build secret pipcert."),
    pip_conf: Optional[Path] = typer.Option(None, "--pip-conf", help="pip.conf (index URL, credentials), passed as the build secret pipconf."),
    push: bool = typer.Option(False, "--push", help="Push the image to its registry (credentials: the builder's auth file)."),
    write_back: Optional[str] = typer.Option(
        None, "--write-back", metavar="REPO", help="After --push: pin the digest in this GitOps repository's platform/ (a review branch)."
    ),
    base: str = typer.Option("main", "--base", help="With --write-back: the branch Argo CD deploys."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Build the platform's own image (`allora-gitops serve`) from the project's Dockerfile; optionally push it and
    pin its digest in a GitOps repository's platform/ manifests."""
    import json

    from allora_gitops.cli.app import eprint
    from allora_gitops.image.platform import PlatformImageRequest, build_platform_image

    result = build_platform_image(
        PlatformImageRequest(
            image=tag, context=context, builder=builder, base_image=base_image, pip_cert=pip_cert, pip_conf=pip_conf,
            push=push, write_back_repo=write_back, write_back_base=base,
        ),
        say=lambda message: eprint(f"==> {message}"),
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(f"{result.image}@{result.digest}" if result.digest else result.image)
    if result.pinned:
        typer.echo(f"pinned platform/ to {result.digest} on {result.pinned['branch']} ({result.pinned['commit'][:12]})", err=True)

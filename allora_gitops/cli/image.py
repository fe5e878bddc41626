"""``allora-gitops build-image``: flags → ImageBuildRequest → ``build_image``. Build logs go to stderr, the result to stdout."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("build-image")(build_image_cmd)
    app.command("pin-image")(pin_image_cmd)


def build_image_cmd(
    target: Path = typer.Argument(
        ..., metavar="SOURCE|BUILD_DIR", help="Bundle directory or archive, or a GitOps repo's builds/NAME/VERSION directory."
    ),
    builder: str = typer.Option("auto", "--builder", help="buildah, docker, or auto (buildah when it runs here, else docker)."),
    base_image: Optional[str] = typer.Option(
        None, "--base-image", help="Base image (default: build.yaml's base_image, else python:VER-slim); REPO@sha256:… pins it."
    ),
    tags: List[str] = typer.Option([], "--tag", help="Another reference to tag the image with (repeatable)."),
    push: bool = typer.Option(False, "--push", help="Push every tag to its registry (credentials: the builder's auth file)."),
    output: Optional[str] = typer.Option(None, "--output", help="Also write the image as oci-archive:PATH."),
    pip_cert: Optional[Path] = typer.Option(None, "--pip-cert", help="CA bundle for pip, passed as the build secret pipcert."),
    pip_conf: Optional[Path] = typer.Option(None, "--pip-conf", help="pip.conf (index URL, credentials), passed as the build secret pipconf."),
    store: Optional[str] = typer.Option(None, "--store", help="Object store holding the archive (default: from build.yaml's archive.url)."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help="Records database (default: $ALLORA_DATABASE_URL, else the embedded one if it exists)."),
    image_registry: Optional[str] = typer.Option(None, "--image-registry", help="SOURCE only: registry/prefix of the image (as render)."),
    record: bool = typer.Option(True, "--record/--no-record", help="Record the image reference on the bundle's live deployment rows."),
    write_back: Optional[str] = typer.Option(
        None, "--write-back", metavar="REPO", help="After --push: pin the digest in this GitOps repository's overlays (a review branch)."
    ),
    base: str = typer.Option("main", "--base", help="With --write-back: the branch Argo CD deploys."),
    networks: List[str] = typer.Option([], "--network", help="With --write-back: only this network's overlay (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Build the container image of a bundle with buildah (no daemon) or docker, tag it as the overlay expects,
    and optionally push it or write an OCI archive."""
    import json

    from allora_gitops.image.build import ImageBuildRequest, build_image

    result = build_image(
        ImageBuildRequest(
            target=target,
            builder=builder,
            base_image=base_image,
            tags=tuple(tags),
            push=push,
            output=output,
            pip_cert=pip_cert,
            pip_conf=pip_conf,
            store_url=store,
            database_url=database_url,
            image_registry=image_registry,
            record=record,
            write_back_repo=write_back,
            write_back_base=base,
            write_back_networks=tuple(networks),
        )
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(result.reference)
    extra = [f"tags: {', '.join(result.tags)}", f"{result.seconds:.0f}s"]
    if result.output:
        extra.append(f"written to {result.output}")
    if result.pushed_digest:
        extra.append(f"pushed {result.pushed_digest}")
    typer.echo(f"built {result.name} {result.version} as {result.image} ({'; '.join(extra)})", err=True)
    for pin in result.pinned:
        typer.echo(f"pinned {pin['network']} overlay on {pin['branch']} ({pin['commit'][:12]})", err=True)


def pin_image_cmd(
    name: str = typer.Argument(..., help="The deployment (bundle name) whose overlays run the image."),
    image: str = typer.Option(..., "--image", help="REPO:TAG as the overlays reference it."),
    digest: str = typer.Option(..., "--digest", help="sha256:… of the pushed manifest; the registry must hold it."),
    repo: str = typer.Option(..., "--repo", help="The GitOps repository: a URL or a path."),
    version: Optional[str] = typer.Option(None, "--version", help="Bundle version: finds the open review branch deploy/NAME/NETWORK/VERSION."),
    networks: List[str] = typer.Option([], "--network", help="Only this network's overlay (repeatable; default: every one running IMAGE)."),
    branch: Optional[str] = typer.Option(None, "--branch", help="Commit here (default: the open review branch, else pin/NAME/NETWORK/VERSION)."),
    base: str = typer.Option("main", "--base", help="The branch Argo CD deploys."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write a pushed image's digest into the overlays that run it (kustomize `images[].digest`), after checking the registry holds it."""
    import json

    from allora_gitops.cli.app import eprint
    from allora_gitops.gitops.pin import PinRequest, pin_image

    result = pin_image(
        PinRequest(
            repo=repo, name=name, image=image, digest=digest, version=version,
            networks=tuple(networks), branch=branch, base_branch=base,
        ),
        say=lambda message: eprint(f"==> pin: {message}"),
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    for o in result.overlays:
        state = f"commit {o.commit[:12]}" if o.created else f"already pinned (at {o.commit[:12]})"
        typer.echo(f"pinned {name} on {o.network} to {digest}: {state} on {o.branch}")

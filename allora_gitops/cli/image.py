"""``allora-gitops build-image``: flags → ImageBuildRequest → ``build_image``. Build logs go to stderr, the result to stdout."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("build-image")(build_image_cmd)


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

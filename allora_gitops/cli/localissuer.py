"""``allora-gitops local-issuer init|token``: a ServiceAccount issuer for local development (api/localissuer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

ONLY_LOCAL = "for local development only: a shared server is configured with its cluster's JWKS"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="local-issuer",
        help=f"A stand-in for a cluster's ServiceAccount issuer, so a runtime outside a cluster can report results ({ONLY_LOCAL}).",
        no_args_is_help=True,
    )
    app.add_typer(group)

    @group.command("init")
    def init_cmd(directory: Path = typer.Argument(..., help="Where the signing key (0600) and its JWKS are kept.")) -> None:
        """Make a signing key and its JWKS in DIRECTORY (an existing one is kept); print the settings `serve` needs."""
        from allora_gitops.api.localissuer import LocalIssuer
        from allora_gitops.api.settings import POD_ISSUER_ENV, POD_JWKS_ENV
        from allora_gitops.cli.app import eprint

        issuer, created = LocalIssuer.create(directory)
        eprint(f"{'created' if created else 'kept'} the local issuer in {directory} ({ONLY_LOCAL})")
        typer.echo(f"export {POD_JWKS_ENV}={issuer.jwks_path.resolve()}")
        typer.echo(f"export {POD_ISSUER_ENV}={issuer.issuer}")

    @group.command("token")
    def token_cmd(
        directory: Path = typer.Argument(..., help="The local issuer's directory (`local-issuer init`)."),
        name: str = typer.Argument(..., help="The bundle name of the deployment whose pod the token stands for."),
        network: str = typer.Option(..., "--network", help="The deployment's network (its ServiceAccount is NAME-NETWORK)."),
        namespace: Optional[str] = typer.Option(None, "--namespace", help="The models' namespace (default: allora-models)."),
        duration: int = typer.Option(3600, "--duration", min=60, max=86400, help="Seconds the token is valid (the kubelet's default: 3600)."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the token to this file (mode 0600), as the kubelet does; default: print it."),
    ) -> None:
        """A projected ServiceAccount token for NAME's pod on NETWORK, signed by the local issuer (like `kubectl create token`)."""
        from allora_gitops import constants as C
        from allora_gitops.api.localissuer import LocalIssuer, LocalIssuerError
        from allora_gitops.atomic import write_atomic
        from allora_gitops.cli.app import eprint

        from allora_gitops.bundle.manifest import check_bundle_name
        from allora_gitops.errors import UsageError

        if network not in C.NETWORKS:
            raise UsageError(f"--network must be one of {', '.join(C.NETWORKS)}, not {network!r}")
        try:
            check_bundle_name(name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        service_account = f"{name}-{network}"
        token = LocalIssuer.load(directory).token(service_account, namespace or C.NAMESPACE, lifetime=duration)
        if output is None:
            typer.echo(token)
            return
        try:
            write_atomic(output, (token + "\n").encode("ascii"), mode=0o600)
        except OSError as exc:
            raise LocalIssuerError(f"{output}: cannot write the token ({exc.strerror})") from None
        eprint(f"token for ServiceAccount {namespace or C.NAMESPACE}/{service_account} in {output}, valid {duration} s")

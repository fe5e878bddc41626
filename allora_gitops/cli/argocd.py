"""``allora-gitops argocd``: the webhook token Argo CD's notifications controller reports back with."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Optional

import typer

from allora_gitops.cli.serve import DATABASE_URL_HELP

_GRACE = re.compile(r"^(\d+)([smhd]?)$")


def parse_grace(text: str) -> timedelta:
    """``0``, ``90s``, ``15m``, ``1h``, ``2d`` → a timedelta; UsageError otherwise."""
    from allora_gitops.errors import UsageError

    m = _GRACE.match(text.strip())
    if m is None:
        raise UsageError(f"--grace {text!r}: give a duration such as 0, 15m, 1h or 2d")
    return timedelta(seconds=int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])


def register(app: typer.Typer) -> None:
    group = typer.Typer(name="argocd", help="Argo CD reporting back: the notifications webhook token.", no_args_is_help=True)
    app.add_typer(group)

    @group.command("rotate-token")
    def rotate_token(
        grace: str = typer.Option("1h", "--grace", help="How long the previous tokens keep working (0: not at all)."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """Make a new webhook token and print it once (only its sha256 is stored); the old ones expire after --grace."""
        from allora_gitops import constants as C
        from allora_gitops.argocd_reports import rotate_argocd_token
        from allora_gitops.cli.app import eprint
        from allora_gitops.db import open_records

        delta = parse_grace(grace)
        with open_records(database_url) as records:
            token, info = rotate_argocd_token(records.connection, delta)
        typer.echo(token)
        eprint(
            f"Argo CD webhook token {info.prefix}: shown once. Put it in {C.ARGOCD_NOTIFICATIONS_SECRET} (namespace "
            f"{C.ARGOCD_NAMESPACE}) under the key {C.ARGOCD_WEBHOOK_TOKEN_KEY}; the previous tokens "
            + ("stop working now" if not delta else f"keep working for {grace}")
        )

    @group.command("tokens")
    def tokens(
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """The webhook tokens by prefix, creation, expiry and last use (never the token)."""
        from allora_gitops.argocd_reports import list_argocd_tokens
        from allora_gitops.db import open_records

        with open_records(database_url) as records:
            found = list_argocd_tokens(records.connection)
        if as_json:
            typer.echo(json.dumps([t.to_dict() for t in found], indent=2))
            return
        for t in found:
            typer.echo(f"{t.prefix}  created {t.created_at:%Y-%m-%d %H:%M}  "
                       + (f"expires {t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "no expiry"))  # fmt: skip
        if not found:
            typer.echo("no Argo CD webhook tokens (make one with `allora-gitops argocd rotate-token`)")

"""``allora-gitops serve`` (the platform API), ``token create|list|revoke``, ``wallet assign|unassign|list``, ``user limits``."""

from __future__ import annotations

import json
from typing import Optional

import typer

DATABASE_URL_HELP = "PostgreSQL URL (default: $ALLORA_DATABASE_URL, else the embedded server)."
DEFAULT_TOKEN_EXPIRY = "90d"  # a forgotten token stops working on its own; `--expires never` is a choice, not a default


def _accounts(database_url: Optional[str]):
    from allora_gitops.api.auth import open_accounts

    return open_accounts(database_url)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 in a container)."),
        port: int = typer.Option(8080, "--port", help="TCP port (0 = any free port; the chosen one is printed)."),
        repo: Optional[str] = typer.Option(None, "--repo", help="The GitOps repository (default: $ALLORA_GITOPS_REPO)."),
        base: Optional[str] = typer.Option(None, "--base", help="The branch Argo CD deploys (default: $ALLORA_GITOPS_BASE_BRANCH, else main)."),
        store: Optional[str] = typer.Option(None, "--store", help="Object store (default: $ALLORA_STORE_URL, else under the state directory)."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
        max_upload_mb: Optional[int] = typer.Option(None, "--max-upload-mb", help="Upload limit per request (default: $ALLORA_API_MAX_UPLOAD_MB, else 500)."),
        max_live_deployments: Optional[int] = typer.Option(None, "--max-live-deployments", help="Live deployments per user (default: $ALLORA_API_MAX_LIVE_DEPLOYMENTS, else 10)."),
        prometheus_url: Optional[str] = typer.Option(
            None, "--prometheus-url", help="Prometheus to read CPU, memory and restarts from (default: $ALLORA_PROMETHEUS_URL, else not shown)."
        ),
        workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (replicas scale further: the server keeps no state)."),
        forwarded_allow_ips: Optional[str] = typer.Option(
            None, "--forwarded-allow-ips",
            help="Proxies whose X-Forwarded-Proto/-For are believed: comma-separated addresses or networks, or '*' "
                 "(default: $FORWARDED_ALLOW_IPS, else 127.0.0.1). Behind a TLS ingress this makes cookies Secure.",
        ),
    ) -> None:
        """Serve the platform API (upload bundles, deploy them through review branches) with uvicorn."""
        import signal
        import sys

        import uvicorn

        from allora_gitops.api.app import create_app
        from allora_gitops.api.settings import load_api_settings, settings_environment
        from allora_gitops.db import open_records
        from allora_gitops.explorer import check_explorer_settings

        settings = load_api_settings(
            repo=repo, base_branch=base, store_url=store, database_url=database_url,
            max_upload_mb=max_upload_mb, max_live_deployments=max_live_deployments, prometheus_url=prometheus_url,
        )  # fmt: skip
        with open_records(settings.database_url) as checked:  # fail now, with one line, when the database is not ready
            resolved_database_url = checked.database_url
        from allora_gitops.chain.poller import start_poller

        # the chain reader: its own thread and event loop, one leader among replicas (allora_gitops/chain/poller.py)
        poller = start_poller(resolved_database_url)
        if poller is not None:  # stopped before the exit hooks registered earlier (the embedded PostgreSQL's) run
            import atexit

            atexit.register(poller.stop)
        from allora_gitops.db.result_partitions import PartitionKeeper, partition_width, partitions_ahead

        partition_width(), partitions_ahead()  # a malformed setting fails here, with one line
        check_explorer_settings()  # a malformed $ALLORA_EXPLORER_TX_URL_* fails here, not on every page
        # the results' partitions ahead: now, then every hour; one replica at a time (an advisory lock)
        keeper = PartitionKeeper(resolved_database_url).start()
        import atexit

        atexit.register(keeper.stop)
        # uvicorn drains on SIGTERM, then raises the signal again; its default action would end the process
        # before the exit hooks run, leaving the embedded PostgreSQL running: leave like the shell says instead
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        # SIGTERM: stop accepting, give requests in flight the grace period, then end whatever clients do (slow
        # uploads, stalled bodies): within Kubernetes' default 30 s. Idle keep-alive connections are closed after
        # settings.keep_alive_seconds (longer than a proxy's or a pod's idle time: api/settings.py), at once on SIGTERM.
        common = dict(host=host, port=port, log_level="info", access_log=True, server_header=False, proxy_headers=True,
                      forwarded_allow_ips=forwarded_allow_ips, timeout_graceful_shutdown=settings.shutdown_grace_seconds,
                      timeout_keep_alive=settings.keep_alive_seconds)  # fmt: skip
        if workers <= 1:
            uvicorn.Server(uvicorn.Config(create_app(settings), **common)).run()
            return
        # uvicorn starts several worker processes only from an import string: each builds the app from the
        # environment, so the settings resolved here (flags included) are handed over through it
        import os

        os.environ.update(settings_environment(settings))
        uvicorn.run("allora_gitops.api.app:create_app_from_environment", factory=True, workers=workers, **common)

    token = typer.Typer(name="token", help="API tokens: create (printed once), list, revoke.", no_args_is_help=True)
    app.add_typer(token)

    @token.command("create")
    def token_create(
        user: str = typer.Option(..., "--user", help="The user (or team) the token acts as; created when new."),
        admin: bool = typer.Option(False, "--admin", help="Make the user an admin (sees and changes everything)."),
        expires: str = typer.Option(
            DEFAULT_TOKEN_EXPIRY, "--expires", help="30d, 12h, 2w, an ISO date, or never (spelled out: a token that never expires)."
        ),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """Create a token and print it once: only its sha256 and prefix are stored."""
        from allora_gitops.api.auth import parse_expiry
        from allora_gitops.cli.app import eprint

        when = parse_expiry(expires)
        accounts, conn = _accounts(database_url)
        with conn:
            secret, info = accounts.create_token(user, admin=True if admin else None, expires_at=when)
        typer.echo(secret)
        eprint(f"token {info.prefix} for {info.user}{' (admin)' if info.is_admin else ''}"
               f"{', expires ' + info.expires_at.isoformat() if info.expires_at else ''}: shown once, store it now")  # fmt: skip

    @token.command("list")
    def token_list(
        user: Optional[str] = typer.Option(None, "--user", help="Only this user's tokens."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Tokens by prefix, user, expiry and revocation (never the token)."""
        accounts, conn = _accounts(database_url)
        with conn:
            tokens = accounts.list_tokens(user)
        if as_json:
            typer.echo(json.dumps([t.to_dict() for t in tokens], indent=2))
            return
        from datetime import datetime, timezone

        now = datetime.now(timezone.utc)
        for t in tokens:
            if t.revoked_at:
                state = "revoked"
            elif t.expires_at is None:
                state = "no expiry"
            else:  # past its time a token is refused: say so, not "expires" with a date already gone
                state = f"{'expired' if t.expires_at <= now else 'expires'} {t.expires_at:%Y-%m-%d %H:%M}"
            typer.echo(f"{t.prefix}  {t.user}{' (admin)' if t.is_admin else ''}  {state}")
        if not tokens:
            typer.echo("no tokens")

    @token.command("revoke")
    def token_revoke(
        prefix: str = typer.Argument(..., help="The token's prefix (agp_xxxxxxxx), as `token list` shows it."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """Revoke a token: the next request with it is refused (401)."""
        accounts, conn = _accounts(database_url)
        with conn:
            info = accounts.revoke_token(prefix)
        typer.echo(f"revoked {info.prefix} ({info.user})")

    wallet = typer.Typer(name="wallet", help="Which wallet Secrets (names, never values) a user may deploy with.", no_args_is_help=True)
    app.add_typer(wallet)

    @wallet.command("assign")
    def wallet_assign(
        secret: str = typer.Argument(..., help="The Kubernetes Secret's name (or external-secret key) holding a wallet."),
        user: str = typer.Option(..., "--user"),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """Allow USER to reference the wallet Secret SECRET in deployments."""
        accounts, conn = _accounts(database_url)
        with conn:
            accounts.assign_wallet(user, secret)
        typer.echo(f"{user} may use wallet {secret}")

    @wallet.command("unassign")
    def wallet_unassign(
        secret: str = typer.Argument(...),
        user: str = typer.Option(..., "--user"),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """Stop USER from referencing SECRET in new deployments (running ones keep it until changed)."""
        accounts, conn = _accounts(database_url)
        with conn:
            removed = accounts.unassign_wallet(user, secret)
        typer.echo(f"{user} may no longer use wallet {secret}" if removed else f"{secret} was not assigned to {user}")

    @wallet.command("list")
    def wallet_list(
        user: str = typer.Option(..., "--user"),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """The wallet Secrets USER may use."""
        accounts, conn = _accounts(database_url)
        with conn:
            names = accounts.wallets_of(user)
        typer.echo("\n".join(names) if names else f"no wallet assigned to {user}")

    secret = typer.Typer(
        name="secret", help="Which Secrets (names, never values) a user may map into a model's environment (model.yaml environment.secrets).",
        no_args_is_help=True,
    )
    app.add_typer(secret)

    @secret.command("assign")
    def secret_assign(
        name: str = typer.Argument(..., help="The Kubernetes Secret's name (or the secret store's key)."),
        user: str = typer.Option(..., "--user"),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """Allow USER to map keys of the Secret NAME into their models' environment (API: secrets)."""
        accounts, conn = _accounts(database_url)
        with conn:
            accounts.assign_secret(user, name)
        typer.echo(f"{user} may map Secret {name}")

    @secret.command("unassign")
    def secret_unassign(
        name: str = typer.Argument(...),
        user: str = typer.Option(..., "--user"),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """Stop USER from mapping NAME in new deployments (running ones keep it until changed)."""
        accounts, conn = _accounts(database_url)
        with conn:
            removed = accounts.unassign_secret(user, name)
        typer.echo(f"{user} may no longer map Secret {name}" if removed else f"{name} was not assigned to {user}")

    @secret.command("list")
    def secret_list(
        user: str = typer.Option(..., "--user"),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """The Secrets USER may map."""
        accounts, conn = _accounts(database_url)
        with conn:
            names = accounts.secrets_of(user)
        typer.echo("\n".join(names) if names else f"no Secret assigned to {user}")

    owner = typer.Typer(name="owner", help="Who owns a bundle name (and so its deployments).", no_args_is_help=True)
    app.add_typer(owner)

    @owner.command("set")
    def owner_set(
        name: str = typer.Argument(..., help="The bundle name."),
        user: str = typer.Argument(..., help="An existing platform user (or platform, the reserved owner)."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """Transfer NAME and every deployment of it to USER (an admin's command: API users never change owners)."""
        from allora_gitops.db import open_records

        with open_records(database_url) as records:
            moved = records.set_owner(name, user)
        typer.echo(f"{name} now belongs to {user} ({moved} deployment(s))")

    @app.command("user-admin")
    def user_admin(
        user: str = typer.Argument(...),
        revoke: bool = typer.Option(False, "--revoke", help="Take admin away (the user keeps their own bundles and deployments)."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """Make USER an admin (sees and changes everything), or with --revoke an ordinary user again."""
        accounts, conn = _accounts(database_url)
        with conn:
            accounts.set_admin(user, not revoke)
        typer.echo(f"{user} is {'no longer' if revoke else 'now'} an admin")

    @app.command("user-limits")
    def user_limits(
        user: str = typer.Argument(...),
        max_live_deployments: Optional[int] = typer.Option(None, "--max-live-deployments", min=0, help="Live deployments USER may have."),
        max_upload_mb: Optional[int] = typer.Option(None, "--max-upload-mb", min=1, help="USER's upload limit per request."),
        reset: bool = typer.Option(False, "--reset", help="Both limits back to the server's settings."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP),
    ) -> None:
        """Set USER's own limits: only the options given change; --reset returns both to the server's settings;
        no option shows them."""
        from allora_gitops.errors import UsageError

        if reset and (max_live_deployments is not None or max_upload_mb is not None):
            raise UsageError("--reset returns both limits to the server's settings: give it alone, then set what differs")
        accounts, conn = _accounts(database_url)
        with conn:
            live, upload = accounts.set_limits(user, max_live_deployments=max_live_deployments,
                                               max_upload_bytes=max_upload_mb << 20 if max_upload_mb else None, reset=reset)  # fmt: skip
        typer.echo(f"{user}: live deployments {live if live is not None else 'server setting'}, "
                   f"upload {_megabytes(upload) if upload is not None else 'server setting'}")  # fmt: skip


def _megabytes(size: int) -> str:
    return f"{size >> 20} MB" if size % (1 << 20) == 0 else f"{size / (1 << 20):.1f} MB"

"""``allora-gitops chain status|set-address``: what the chain says of each live deployment's worker."""

from __future__ import annotations

import json
from typing import Optional

import typer

from allora_gitops.cli.db import DATABASE_URL_HELP


def register(app: typer.Typer) -> None:
    chain = typer.Typer(name="chain", help="Read the chain: eligibility, score, missed windows of live deployments.", no_args_is_help=True)
    app.add_typer(chain)

    @chain.command("status")
    def status_cmd(
        name: Optional[str] = typer.Argument(None, help="A bundle name (default: every live deployment)."),
        network: Optional[str] = typer.Option(None, "--network", help="Only this network."),
        timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for the chain."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP, show_default=False),
    ) -> None:
        """Read the chain now for each live deployment (window status, can_submit_worker_payload, score EMA, the
        topic's lowest score, reward fraction, balance), record the reads, and say what they mean.

        Exit 1 when a read failed (one line each: "chain unreachable: …") or NAME has no live deployment."""
        from allora_gitops.chain.observe import observe_now
        from allora_gitops.db import open_records
        from allora_gitops.errors import GitOpsError

        with open_records(database_url) as records:
            views = observe_now(records.connection, name=name, network=network, timeout=timeout)
        if not views:
            raise GitOpsError((f"{name} has no live deployment" if name else "no live deployment") + (f" on {network}" if network else ""))
        if as_json:
            typer.echo(json.dumps([v.to_dict() for v in views], indent=2))
        else:
            for v in views:
                head = f"{v.name} on {v.network} (topic {v.topic_id}"
                head += f", worker {v.address})" if v.address else ")"
                typer.echo(head)
                for line in v.summary:
                    typer.echo(f"  {line}")
                if v.reachable:
                    typer.echo(
                        f"  score EMA {_text(v.score_ema)} (topic's lowest {_text(v.lowest_score)}), reward fraction {_text(v.reward_fraction)},"
                        f" balance {_text(v.balance_uallo)} uallo, window {'open' if v.window_open else 'closed'} at nonce {v.current_nonce}"
                    )
        if any(v.reachable is False for v in views):
            raise typer.Exit(1)

    @chain.command("set-address")
    def set_address_cmd(
        name: str = typer.Argument(..., help="The bundle name of a live deployment."),
        address: str = typer.Argument(..., help="Its worker's public address (allo1…)."),
        network: Optional[str] = typer.Option(None, "--network", help="Its network (needed when NAME is live on several)."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP, show_default=False),
    ) -> None:
        """Record the worker address of NAME's live deployment (an admin's record; the runtime's report replaces it)."""
        from allora_gitops.chain.store import address_problem, record_worker_address
        from allora_gitops.db import open_records
        from allora_gitops.db.results import live_deployment
        from allora_gitops.errors import UsageError
        from allora_gitops.redact import shown_value

        problem = address_problem(address)
        if problem:  # a key or mnemonic pasted here is never echoed (shown_value withholds it)
            if not shown_value(address).startswith(("'", '"')):
                raise UsageError("this looks like a wallet's key or mnemonic (not shown), not its address: give the public address (allo1…)")
            raise UsageError(f"{shown_value(address)} is {problem}")
        with open_records(database_url) as records:
            d = live_deployment(records, name, network)
            changed = record_worker_address(records.connection, d.id, address, "admin")
        typer.echo(f"{d.name} on {d.network}: worker {address}" + ("" if changed else " (unchanged: the runtime's report is kept)"))


def _text(value) -> str:
    return "–" if value is None else str(value)

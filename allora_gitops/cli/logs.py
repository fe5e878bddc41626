"""``allora-bundle logs``: a deployment's model log through the platform API (like ``truss model-logs``);
``allora-gitops logs``: the same log read from the records database, for the platform team."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from allora_gitops.cli.push import PLATFORM_HELP

FOLLOW_POLL_SECONDS = 1.0  # the shipper is at most ~0.3 s behind the model: a line shows within about 1.5 s
FIRST_CURSOR = "0-0"  # before every line (db/logs.py encode_cursor)
LEVEL_STYLE = {"warning": "yellow", "error": "red", "critical": "bold red"}


def register(app: typer.Typer) -> None:
    @app.command("logs")
    def logs_cmd(
        name: Optional[str] = typer.Argument(None, help="The bundle name (default: name in ./model.yaml)."),
        network: Optional[str] = typer.Option(None, "--network", help="testnet or mainnet (needed when NAME runs on both)."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines as they arrive (Ctrl-C stops)."),
        since: Optional[str] = typer.Option(None, "--since", help="Lines from this long ago (10m, 2h, 7d) or an ISO 8601 time; default: the last 200."),
        level: Optional[str] = typer.Option(None, "--level", help="Only this level and above: debug, info, warning, error, critical."),
        platform: Optional[str] = typer.Option(None, "--platform", help=PLATFORM_HELP),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per line (ts, level, event, pod, message)."),
    ) -> None:
        """Print what NAME's model printed (stdout, stderr, warnings, tracebacks) and the runtime's own lines."""
        from allora_gitops.api.client import PlatformClient, cleartext_warning, load_credentials
        from allora_gitops.cli.app import eprint

        name = name or _name_from_manifest()
        credentials = load_credentials(platform)
        if warning := cleartext_warning(credentials.platform):
            eprint(warning)
        show = _printer(as_json)
        with PlatformClient(credentials) as client:
            answer = client.logs(name, network=network, since=since, level=level, limit=1000 if since else 200)
            for line in answer["lines"]:
                show(line)
            cursor = answer.get("cursor") or FIRST_CURSOR  # an empty log: whatever comes is new
            try:
                while follow:
                    time.sleep(FOLLOW_POLL_SECONDS)
                    answer = client.logs(name, network=network, after=cursor, level=level, limit=1000)
                    for line in answer["lines"]:
                        show(line)
                    cursor = answer.get("cursor") or cursor
            except KeyboardInterrupt:  # Ctrl-C is how a follow ends: not an error
                return


def register_platform(app: typer.Typer) -> None:
    from allora_gitops.cli.db import DATABASE_URL_HELP

    @app.command("logs")
    def platform_logs_cmd(
        name: str = typer.Argument(..., help="The bundle name of the deployment."),
        network: Optional[str] = typer.Option(None, "--network", help="testnet or mainnet (needed when NAME runs on both)."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines as they arrive (Ctrl-C stops)."),
        since: Optional[str] = typer.Option(None, "--since", help="Lines from this long ago (10m, 2h, 7d) or an ISO 8601 time; default: the last 200."),
        level: Optional[str] = typer.Option(None, "--level", help="Only this level and above: debug, info, warning, error, critical."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per line (ts, level, event, pod, message)."),
        database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_URL_HELP, show_default=False),
    ) -> None:
        """Print what NAME's model printed, from the records (every owner's; what `allora-bundle logs` shows its owner)."""
        from allora_gitops.api.logs import parse_since
        from allora_gitops.db import open_records
        from allora_gitops.db.logs import check_level, read_logs
        from allora_gitops.errors import UsageError

        show = _printer(as_json)
        with open_records(database_url) as records:
            found = records.list_deployments(name=name, network=network)
            networks = sorted({d.network for d in found})
            if not found:
                raise UsageError(f"no deployment of {name}" + (f" on {network}" if network else ""))
            if len(networks) > 1:
                raise UsageError(f"{name} is deployed on {' and '.join(networks)}: choose one with --network")
            ids, wanted, start = [d.id for d in found], check_level(level), parse_since(since)
            lines = read_logs(records.connection, ids, since=start, level=wanted, limit=1000 if start else 200, newest=start is None)
            for line in lines:
                show(line.to_dict())
            cursor = lines[-1].cursor if lines else FIRST_CURSOR
            try:
                while follow:
                    time.sleep(FOLLOW_POLL_SECONDS)
                    for line in read_logs(records.connection, ids, after=cursor, level=wanted):
                        show(line.to_dict())
                        cursor = line.cursor
            except KeyboardInterrupt:
                return


def _name_from_manifest() -> str:
    from allora_gitops.errors import UsageError

    path = Path("model.yaml")
    if not path.is_file():
        raise UsageError("which deployment? give NAME, or run this in the bundle's directory (its model.yaml names it)")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"model.yaml: cannot read the bundle's name ({type(exc).__name__}); give NAME") from None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise UsageError("model.yaml has no name: give NAME")
    return name


def _printer(as_json: bool):
    if as_json:
        return lambda line: typer.echo(json.dumps({k: line.get(k) for k in ("ts", "level", "event", "pod", "message")}, ensure_ascii=False))

    def show(line: dict) -> None:
        level = line.get("level", "info")
        prefix = f"{line.get('ts', '')} {level.upper():<8}"
        if line.get("event") not in ("print", "log"):
            prefix += f" [{line.get('event')}]"
        typer.secho(f"{prefix} {line.get('message', '')}", fg=None if level not in LEVEL_STYLE else LEVEL_STYLE[level].split()[-1],
                    bold=level == "critical")  # fmt: skip

    return show

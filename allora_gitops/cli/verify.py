"""``allora-gitops verify``: kustomize build, schemas, policy rules and hadolint over a GitOps repository."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_cmd)


def verify_cmd(
    repo_dir: Path = typer.Argument(
        Path("."), help="GitOps repository checkout, or a bare repository (its base branch is read) (default: the current directory)."
    ),
    changed_since: Optional[str] = typer.Option(None, "--changed-since", help="Only what changed since this git ref (e.g. origin/main)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ref: Optional[str] = typer.Option(None, "--ref", help="A bare repository only: check this branch or commit instead of its base branch."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="kustomize builds in parallel (default: CPU count)."),
    require_digest: Optional[bool] = typer.Option(
        None, "--require-digest/--no-require-digest",
        help="Overlays of the networks in images.require_digest (default mainnet) must be pinned by digest "
        "(default: when the checkout is on the base branch).",
    ),
) -> None:
    """Check every overlay, Dockerfile and Argo CD file. Exit 0 clean, 1 findings, 2 could not check."""
    import json

    from allora_gitops.errors import UsageError
    from allora_gitops.verify import is_bare_repository, verify_bare, verify_repo

    if is_bare_repository(repo_dir):
        if changed_since:
            raise UsageError("--changed-since needs a checkout; a bare repository is checked whole (--ref picks the branch)")
        report = verify_bare(repo_dir, ref=ref, jobs=jobs, require_digest=require_digest)
    elif ref is not None:
        raise UsageError(f"--ref is for bare repositories; {repo_dir} is a checkout (check out {ref} instead)")
    else:
        report = verify_repo(repo_dir, changed_since=changed_since, jobs=jobs, require_digest=require_digest)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        for problem in report.findings:
            typer.echo(f"{problem} [{problem.code}]")
        typer.echo(
            f"verify: {_count(report.overlays, 'overlay')}, {_count(report.dockerfiles, 'Dockerfile')}, "
            f"{_count(report.files, 'Argo CD file')} checked; {_count(report.findings, 'finding')}",
            err=True,
        )
    if not report.ok:
        raise typer.Exit(1)


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"

"""``allora-gitops diff``: the rendered-manifest diff between two refs of a GitOps repository."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("diff")
    def diff_cmd(
        head: Optional[str] = typer.Argument(None, help="The branch (or, in a local repository, any ref) to review. Default: HEAD of a local repository."),
        repo: str = typer.Option(..., "--repo", help="The GitOps repository: a URL, or a path (work tree or bare)."),
        base: str = typer.Option("main", "--base", help="What the branch is compared with."),
        as_json: bool = typer.Option(False, "--json", help="Print a machine-readable report."),
    ) -> None:
        """Diff the objects `kubectl kustomize` renders at two refs. Exit 0 same, 1 differs, 2 error."""
        import json

        from allora_gitops.errors import AlloraGitopsError, ReviewError
        from allora_gitops.gitops.repo import parse_remote
        from allora_gitops.gitops.review import diff_refs

        try:
            remote = parse_remote(repo)
            if head is None and remote.local_path is None:
                raise ReviewError("name the branch to review: allora-gitops diff --repo URL BRANCH")
            result = diff_refs(remote, base, head or "HEAD")
        except AlloraGitopsError as exc:
            if isinstance(exc, ReviewError):
                raise
            raise ReviewError(exc.message, exc.problems) from exc
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            typer.echo(result.text(), nl=False)
        raise typer.Exit(1 if result.differs else 0)

"""``allora-gitops repo init``: a new GitOps repository from the ``blueprints/gitops-repo`` cookiecutter.

Render first (a tree of path → text: the blueprint plus the Argo CD wiring),
write second: into a new directory with a first commit, or straight into a new
bare repository (no checkout at all), so the result can serve as the remote of
``publish`` at once.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from allora_gitops import __version__
from allora_gitops import constants as C
from allora_gitops.errors import GitOpsError
from allora_gitops.gitops.settings import RepositorySettings


@dataclass
class InitResult:
    path: Path
    bare: bool
    commit: str
    branch: str
    files: list[str] = field(default_factory=list)


def render_repo(settings: RepositorySettings, repo_name: str = "allora-deployments") -> dict[str, str]:
    """The whole initial tree: blueprint files, ``.allora-gitops.yaml`` and ``argocd/``."""
    from cookiecutter.generate import generate_context, generate_files

    from allora_gitops.resources import blueprints_dir

    context = {
        "repo_name": repo_name,
        "repo_url": settings.repo_url,
        "default_branch": settings.default_branch,
        "networks": ",".join(settings.networks),
        "namespace": settings.namespace,
        "ci_install": settings.ci.install or "",  # "": the workflows' install step stops and says to set ci.install
        "monitoring_namespace": settings.monitoring_namespace,
        "tool_version": __version__,  # the platform's own image tag (platform/)
    }
    blueprint = blueprints_dir() / "gitops-repo"
    with tempfile.TemporaryDirectory(prefix="allora-repo-init-") as tmp:
        # generate_* rather than cookiecutter(): no prompt, no hooks, no replay file in the user's home.
        full_context = generate_context(str(blueprint / "cookiecutter.json"), extra_context=context)
        out = Path(generate_files(str(blueprint), full_context, output_dir=tmp, accept_hooks=False))
        tree = {p.relative_to(out).as_posix(): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}
    tree[C.REPO_MARKER_FILE] = settings.to_yaml()
    tree.update(render_argocd_tree(settings))
    from allora_gitops.render.dashboard import render_dashboard

    tree.update(render_dashboard(settings.monitoring_namespace))
    return tree


def render_argocd_tree(settings: RepositorySettings) -> dict[str, str]:
    """``argocd/``: AppProject + ApplicationSet, rendered by the templates (``allora_gitops.render``)."""
    from allora_gitops.render import ArgoCDSettings, render_argocd

    return dict(
        render_argocd(
            ArgoCDSettings(repo_url=settings.repo_url, target_revision=settings.default_branch, namespace=settings.namespace)
        )
    )


# What the settings decide: `repo config` re-renders exactly these (deployments/ and builds/ are publish's).
MANAGED_PREFIXES = (C.REPO_MARKER_FILE, f"{C.ARGOCD_DIR}/", ".github/workflows/")


def render_managed(settings: RepositorySettings) -> dict[str, str]:
    """The files of a repository that follow from its settings alone: the settings file, ``argocd/``, the CI workflows."""
    return {p: t for p, t in render_repo(settings).items() if p.startswith(MANAGED_PREFIXES)}


def _check_target(path: Path, bare: bool) -> None:
    if path.exists():
        if not path.is_dir():
            raise GitOpsError(f"{path} exists and is not a directory")
        entries = [e for e in path.iterdir()]
        if entries and not (bare and _is_empty_bare(path)):
            raise GitOpsError(f"{path} exists and is not empty; repo init only creates new repositories")


def _is_empty_bare(path: Path) -> bool:
    from allora_gitops.gitops.repo import GitDir

    if not (path / "HEAD").is_file() or not (path / "objects").is_dir():
        return False
    g = GitDir(path)
    return g.run("rev-parse", "--is-bare-repository", check=False).out.strip() == "true" and not g.run(
        "for-each-ref", "--count=1", check=False
    ).out.strip()


def init_repo(path: Path, settings: RepositorySettings, *, bare: bool = False, repo_name: str | None = None) -> InitResult:
    """Create the repository at ``path`` with one commit on the default branch."""
    from git import Repo

    from allora_gitops.gitops.repo import GitDir, TreeChange, _commit_env, build_tree

    path = Path(path).expanduser().absolute()
    _check_target(path, bare)
    tree = render_repo(settings, repo_name or path.name.removesuffix(".git") or "allora-deployments")
    message = C.init_commit_message()
    branch = settings.default_branch
    if bare:
        created = not (path / "HEAD").exists()
        try:
            Repo.init(str(path), bare=True, mkdir=True)
            g = GitDir(path)
            g.run("symbolic-ref", "HEAD", f"refs/heads/{branch}")
            tree_id = build_tree(g, None, TreeChange(files=tree))
            commit = g.run("commit-tree", tree_id, env=_commit_env(), stdin=message.encode()).out.strip()
            g.run("update-ref", f"refs/heads/{branch}", commit, "")
        except BaseException:
            if created:
                _remove_tree(path)
            raise
        return InitResult(path, True, commit, branch, sorted(tree))
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        for rel, text in tree.items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        repo = Repo.init(str(path), initial_branch=branch)
        g = GitDir(Path(repo.git_dir))
        # Plumbing, like every other commit of the tool: no hooks, no signing prompt, a fixed author.
        tree_id = build_tree(g, None, TreeChange(files=tree))
        commit = g.run("commit-tree", tree_id, env=_commit_env(), stdin=message.encode()).out.strip()
        g.run("update-ref", f"refs/heads/{branch}", commit, "")
        repo.git.reset("--quiet")  # the index follows the new commit; the files are already in place
    except BaseException:
        if created:
            _remove_tree(path)
        raise
    return InitResult(path, False, commit, branch, sorted(tree))


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def default_repo_url(path: Path) -> str:
    return Path(os.path.abspath(path)).as_uri()

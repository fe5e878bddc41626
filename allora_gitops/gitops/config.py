"""``repo config``: the settings of a GitOps repository as its base branch holds them, and a change to them
committed on a review branch with what follows from them re-rendered.

The model of the file and its parsing live in :mod:`allora_gitops.gitops.settings`, which imports nothing of the
repository writer; this module is where settings meet the repository (``gitops/repo.py``).
"""

from __future__ import annotations

from allora_gitops import constants as C
from allora_gitops.errors import UsageError
from allora_gitops.gitops.settings import RepositorySettings, set_setting


def read_settings(repo: str, base_branch: str = C.DEFAULT_BRANCH) -> RepositorySettings:
    """The settings on ``base_branch`` of ``repo`` (a URL or a path)."""
    from allora_gitops.gitops.repo import parse_remote, read_ref, require_marker

    remote = parse_remote(repo)
    git, commit = read_ref(remote, base_branch)
    return require_marker(git, commit, remote, base_branch)


def config_branch(key: str) -> str:
    return f"config/{key.replace('.', '-')}"


def change_setting(repo: str, key: str, raw: str, *, base_branch: str = C.DEFAULT_BRANCH, branch: str | None = None, dry_run: bool = False):
    """Set ``key`` and re-render what follows from the settings (``argocd/``, the CI workflows); commit on a review branch.

    Returns the ``Persisted`` of the push (or of the dry run). Raises UsageError for an unknown key or a bad
    value, and for a new ``namespace`` while deployments exist: their overlays stay in the old namespace,
    which the re-rendered AppProject would no longer allow, so Argo CD would refuse every one of them.
    """
    from allora_gitops.gitops.layout import read_deployments
    from allora_gitops.gitops.repo import Snapshot, TreeChange, parse_remote, persist, require_marker
    from allora_gitops.gitops.scaffold import render_managed

    remote = parse_remote(repo)
    target = branch or config_branch(key)

    def change(snapshot: Snapshot) -> TreeChange:
        assert snapshot.commit is not None
        current = require_marker(snapshot.git, snapshot.commit, remote, target)
        changed = set_setting(current, key, raw)
        if changed.namespace != current.namespace:
            stranded = [f"{d.name}/{d.network}" for d in read_deployments(snapshot, full=False)]
            if stranded:
                raise UsageError(
                    f"namespace: {len(stranded)} deployment(s) run in {current.namespace} ({', '.join(stranded[:3])}"
                    f"{', …' if len(stranded) > 3 else ''}) and the AppProject would no longer allow it; "
                    "retire them first and publish them again once the new namespace is merged"
                )
        return TreeChange(files=render_managed(changed))

    return persist(remote, change, branch=target, base_branch=base_branch, message=f"config: set {key}\n", dry_run=dry_run)

"""Repository settings read from the marker file (``.allora-gitops.yaml``) for image pinning and sandboxes.

Every key is optional; a missing file or key means the default. One function reads them all,
so the keys can move into the repository settings model without touching their callers.

.. code-block:: yaml

    images:
      require_digest: [mainnet]      # networks whose overlays must be pinned on the base branch
    sandbox:
      wallet_secret: allora-sandbox-wallet  # the platform's testnet wallet Secret (never a user's)
      commit: review                 # review: a sandbox/… branch; direct: the base branch
      max_per_user: 2                # concurrent sandboxes per owner
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from allora_gitops.errors import GitOpsError

SANDBOX_COMMIT_MODES = ("review", "direct")


@dataclass(frozen=True)
class PinningAndSandboxSettings:
    require_digest: tuple[str, ...] = ("mainnet",)
    sandbox_wallet_secret: str = "allora-sandbox-wallet"
    sandbox_commit: str = "review"
    sandbox_max_per_user: int = 2


def repository_settings(text: Optional[str], where: str = ".allora-gitops.yaml") -> PinningAndSandboxSettings:
    """Parse the marker file's ``images:`` and ``sandbox:`` sections; ``text`` None means no file.

    Raises :class:`GitOpsError` naming ``where`` and the key for a value of the wrong shape.
    """
    from allora_gitops.gitops.layout import load_yaml_documents

    docs = load_yaml_documents(text or "")
    data: dict[str, Any] = docs[0] if docs and isinstance(docs[0], dict) else {}
    images = _section(data, "images", where)
    sandbox = _section(data, "sandbox", where)
    defaults = PinningAndSandboxSettings()
    require = images.get("require_digest", list(defaults.require_digest))
    if not isinstance(require, list) or not all(isinstance(n, str) for n in require):
        raise GitOpsError(f"{where}: images.require_digest must be a list of network names")
    wallet = sandbox.get("wallet_secret", defaults.sandbox_wallet_secret)
    if not isinstance(wallet, str) or not wallet:
        raise GitOpsError(f"{where}: sandbox.wallet_secret must be the name of a Secret")
    commit = sandbox.get("commit", defaults.sandbox_commit)
    if commit not in SANDBOX_COMMIT_MODES:
        raise GitOpsError(f"{where}: sandbox.commit must be one of {', '.join(SANDBOX_COMMIT_MODES)}, not {commit!r}")
    limit = sandbox.get("max_per_user", defaults.sandbox_max_per_user)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise GitOpsError(f"{where}: sandbox.max_per_user must be a whole number of at least 1")
    return PinningAndSandboxSettings(
        require_digest=tuple(require), sandbox_wallet_secret=wallet, sandbox_commit=commit, sandbox_max_per_user=limit
    )


def _section(data: dict, key: str, where: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise GitOpsError(f"{where}: {key} must be a mapping")
    return value

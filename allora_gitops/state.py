"""Where the CLI keeps its local state (embedded database, default object store, caches).

One directory, so a user can see, back up or delete everything the tool keeps:
``$ALLORA_GITOPS_HOME`` when set, else ``$XDG_DATA_HOME/allora-gitops``, else
``~/.local/share/allora-gitops``. Pure path arithmetic: nothing is created here,
each user of a sub-directory creates it when it needs it (``state_dir``).
"""

from __future__ import annotations

import os
from pathlib import Path

from allora_gitops.constants import STATE_HOME_ENV
from allora_gitops.errors import StateError

APP_DIR_NAME = "allora-gitops"


def state_home() -> Path:
    """The state directory (absolute; not created)."""
    explicit = os.environ.get(STATE_HOME_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    # The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return (base / APP_DIR_NAME).resolve()


def state_dir(*parts: str) -> Path:
    """A sub-directory of the state directory, created (private to the user) when missing."""
    return ensure_state_dir(state_home().joinpath(*parts))


def ensure_state_dir(path: Path) -> Path:
    """``path`` created (private to the user) when missing; a StateError naming it when that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateError(
            f"cannot create {path}: {exc.strerror}; set {STATE_HOME_ENV} to a writable directory"
        ) from None
    return path

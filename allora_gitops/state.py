"""Where the CLI keeps its local state (caches, embedded database, default object store).

``$ALLORA_GITOPS_HOME`` when set, else ``$XDG_DATA_HOME/allora-gitops``, else
``~/.local/share/allora-gitops``. Pure path arithmetic: nothing is created here.
"""

from __future__ import annotations

import os
from pathlib import Path

from allora_gitops.constants import STATE_HOME_ENV

APP_DIR_NAME = "allora-gitops"


def state_home() -> Path:
    """The state directory (absolute; not created)."""
    explicit = os.environ.get(STATE_HOME_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return (base / APP_DIR_NAME).resolve()

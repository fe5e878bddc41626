"""Where the data directories live: inside an installed wheel, or beside the package in a checkout.

The wheel carries ``templates/`` and ``blueprints/`` under ``allora_gitops/_data``
(hatch force-include); a source checkout or an editable install has them at the repository root.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def data_dir(name: str) -> Path:
    """Return the directory ``name`` (``templates`` or ``blueprints``)."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"allora-gitops is installed without its {name}/ directory")


def templates_dir() -> Path:
    return data_dir("templates")


def blueprints_dir() -> Path:
    return data_dir("blueprints")

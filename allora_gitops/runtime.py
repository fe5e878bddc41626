"""The in-container runtime (the ``allora_runtime`` package) packed as one file: a deterministic zipapp.

Why a zipapp and not a wheel installed into the image's virtualenv: one ``COPY`` of one
file, ``python /workspace/bootstrap.pyz`` runs it with any Python the image has, the
same bytes run under ``allora-bundle run`` in a virtualenv that never installs it, and
the bytes depend only on the package's source (sorted entries, fixed timestamps and
modes), so the image layer that holds it is reused until the runtime itself changes.
See https://docs.python.org/3/library/zipapp.html for the format.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import allora_runtime

# The zip root's __main__.py: what ``python bootstrap.pyz`` runs.
_ZIP_MAIN = b"from allora_runtime.__main__ import run\n\nrun()\n"
_SHEBANG = b"#!/usr/bin/env python3\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def runtime_source_dir() -> Path:
    """The ``allora_runtime`` package directory (in a checkout or an installed wheel)."""
    return Path(allora_runtime.__file__).resolve().parent


def render_runtime_archive() -> bytes:
    """The zipapp bytes: ``__main__.py`` + ``allora_runtime/*.py``; equal sources give equal bytes."""
    source = runtime_source_dir()
    members = [("__main__.py", _ZIP_MAIN)]
    members += [(f"allora_runtime/{path.name}", path.read_bytes()) for path in sorted(source.glob("*.py"))]
    buffer = io.BytesIO()
    buffer.write(_SHEBANG)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            info.create_system = 3  # unix, so the mode above is read back the same everywhere
            archive.writestr(info, data, compresslevel=9)
    return buffer.getvalue()


def write_runtime_archive(dest: Path) -> str:
    """Write the zipapp to ``dest`` (a file path); return its sha256 (hex)."""
    data = render_runtime_archive()
    dest.write_bytes(data)
    return hashlib.sha256(data).hexdigest()

"""``builds/<name>/<version>/build.yaml``: what an image build needs to know, loaded with source positions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from allora_gitops import constants as C
from allora_gitops.errors import ImageBuildError, Problem

BUILD_METADATA_FILE = C.BUILD_METADATA_FILE
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ArchiveRef(BaseModel):
    # Extra keys are allowed: build.yaml is written by the renderer and may grow.
    model_config = ConfigDict(extra="allow", frozen=True)

    url: str = Field(description="Where the bundle archive is stored (file://, s3://, or a path).")
    sha256: str = Field(description="Hex sha256 of the .tar.gz bytes.")
    size: Optional[int] = Field(default=None, ge=0)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not SHA256_HEX.match(v):
            raise ValueError(f"{v!r} is not a lowercase hex sha256")
        return v


class RemoteArtifactPolicy(BaseModel):
    """The repository's remote_artifacts settings, as render wrote them for this build."""

    model_config = ConfigDict(extra="allow", frozen=True)

    max_bytes: int = Field(C.DEFAULT_REMOTE_ARTIFACT_MAX_BYTES, gt=0)
    allow_private_addresses: bool = False


class BuildMetadata(BaseModel):
    """The contract between the renderer (which writes build.yaml) and build-image (which reads it)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    version: str
    python_version: str = C.DEFAULT_PYTHON
    archive: ArchiveRef
    image: str = Field(description="The full image reference the overlay uses.")
    base_image: Optional[str] = None
    remote_artifacts: RemoteArtifactPolicy = RemoteArtifactPolicy()

    @property
    def default_base_image(self) -> str:
        return self.base_image or f"python:{self.python_version}-slim"


def load_build_metadata(path: Path, display: Optional[str] = None) -> BuildMetadata:
    """Load build.yaml; every problem is reported as ``file:line:col: message``."""
    from allora_gitops.boundedyaml import YamlError, load_yaml
    from allora_gitops.bundle.manifest import position_of

    file = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImageBuildError(f"{file} not found: a build directory holds Dockerfile and {BUILD_METADATA_FILE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageBuildError(f"cannot read {file}: {exc}") from None
    try:
        data = load_yaml(text, file, positions=True)
    except YamlError as exc:
        raise ImageBuildError(f"{file} is not valid YAML", exc.problems) from None
    if not isinstance(data, dict):
        raise ImageBuildError(f"{file} is not valid build metadata", [Problem("top level must be a mapping", file, 1, 1)])
    try:
        return BuildMetadata.model_validate(_plain(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            line, col = position_of(data, loc)
            dotted = ".".join(str(p) for p in loc)
            msg = "is required" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
            problems.append(Problem(f"'{dotted}' {msg}" if err["type"] == "missing" else f"{dotted}: {msg}", file, line, col))
        raise ImageBuildError(f"{file} is not valid build metadata", problems) from None


def _plain(node):
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return str(node)

"""Parse a pip requirements file line by line, as PEP 508 requirements, with positions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from allora_gitops.errors import Problem

_COMMENT = re.compile(r"(^|\s)#.*$")
# Options that change where packages come from: they belong in model.yaml (extra_index_urls) or build secrets.
_INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-index")
_EDITABLE = ("-e", "--editable")
_URL_USERINFO = re.compile(r"://([^/\s@]+)@")  # no scheme part: that would backtrack quadratically on a long line
SHOWN_CHARS = 80  # a requirement is quoted in messages up to this length: a pasted blob must not flood the terminal


def _has_credentials(line: str) -> bool:
    """A URL with a password or token in it; ``git+ssh://git@host`` names a user, not a secret."""
    for m in _URL_USERINFO.finditer(line):
        if ":" in m.group(1) or not line[: m.start()].endswith("ssh"):
            return True
    return False


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


@dataclass(frozen=True)
class ParsedRequirement:
    name: str  # canonical distribution name
    text: str
    line: int
    pinned: bool


def read_requirements(path: Path, file: str) -> tuple[str | None, list[Problem]]:
    """The text of a requirements file, or the problem that stops it being read (unreadable, not UTF-8: pip refuses it too)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(f"cannot read: {exc.strerror}", file, code="requirements")]
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", file, line, col, code="requirements")]


def parse_requirements(text: str, file: str) -> tuple[list[ParsedRequirement], list[Problem]]:
    """Every requirement of the file, and a problem for each line that is not one (or is unpinned)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    reqs: list[ParsedRequirement] = []
    problems: list[Problem] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i + 1
        line = lines[i]
        while line.endswith("\\") and i + 1 < len(lines):  # pip's line continuation
            i += 1
            line = line[:-1] + lines[i]
        i += 1
        line = _COMMENT.sub("", line).strip()
        if not line:
            continue
        col = len(lines[start - 1]) - len(lines[start - 1].lstrip()) + 1
        if line.startswith("-"):
            option = line.split(None, 1)[0].split("=", 1)[0]
            if option in _EDITABLE:
                problems.append(Problem("editable requirements cannot be installed in an image; pin a released version", file, start, col, code="requirements"))
            elif option in _INDEX_OPTIONS:
                problems.append(
                    Problem(
                        f"{option} does not belong in the requirements file; use environment.extra_index_urls in model.yaml "
                        "(credentials go in build secrets)",
                        file, start, col, code="requirements",
                    )
                )
            else:
                problems.append(Problem(f"pip option {option} is passed to pip unchecked", file, start, col, "warning", "requirements"))
            continue
        if _has_credentials(line):  # checked before parsing, so no message below can quote the credential
            problems.append(
                Problem(
                    "a URL with credentials (user:token@) would ship in the archive and the image; "
                    "install from an index configured in a pip.conf build secret instead",
                    file, start, col, code="secret",
                )
            )
            continue
        spec = re.split(r"\s+--?[a-z]", line, maxsplit=1)[0].strip()  # drop per-requirement options (--hash=…)
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0]
            problems.append(Problem(f"not a valid PEP 508 requirement: {reason}", file, start, col, code="requirements"))
            continue
        specs = list(req.specifier)
        pinned = bool(req.url) or (len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version)
        reqs.append(ParsedRequirement(canonicalize_name(req.name), spec, start, pinned))
        if not pinned:
            problems.append(
                Problem(
                    f"'{_shown(spec)}' is not pinned; use an exact version ({_shown(req.name)}==X.Y.Z) so every image build installs the same code",
                    file, start, col, "warning", "unpinned",
                )
            )
    return reqs, problems


# Import names that differ from the distribution that provides them (the common ones in model code).
_MODULE_TO_DISTS = {
    "sklearn": ("scikit-learn",),
    "skimage": ("scikit-image",),
    "PIL": ("pillow",),
    "yaml": ("pyyaml",),
    "cv2": ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
    "bs4": ("beautifulsoup4",),
    "dateutil": ("python-dateutil",),
    "dotenv": ("python-dotenv",),
    "jwt": ("pyjwt",),
    "Crypto": ("pycryptodome",),
    "attr": ("attrs",),
    "google": ("protobuf", "google-cloud-storage", "google-api-core"),
    "talib": ("ta-lib",),
    "torchvision": ("torchvision",),
    "sentencepiece": ("sentencepiece",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "allora_sdk": ("allora-sdk",),
    "dateparser": ("dateparser",),
    "pandas_ta": ("pandas-ta",),
}


def provided_by(module: str, reqs: list[ParsedRequirement]) -> ParsedRequirement | None:
    """The requirement that would provide top-level ``module``, if any."""
    from packaging.utils import canonicalize_name

    top = module.split(".", 1)[0]
    candidates = {canonicalize_name(top)} | {canonicalize_name(d) for d in _MODULE_TO_DISTS.get(top, ())}
    for req in reqs:
        if req.name in candidates or req.name.replace("-", "") == top.lower().replace("_", ""):
            return req
    return None

"""Read a pip requirements file by pip's own grammar, with positions, and say what would not install in the image."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

from allora_gitops.errors import Problem

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
    """The text of a requirements file, or the problem that stops it being read.

    Decoded as pip decodes it (:func:`allora_gitops.bundle.text.decode_text`: a BOM-marked UTF-8/16/32
    file is fine, anything else must be UTF-8).
    """
    from allora_gitops.bundle.text import BundleTextError, decode_text

    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(f"cannot read: {exc.strerror}", file, code="requirements")]
    try:
        return decode_text(raw, file, code="requirements"), []
    except BundleTextError as exc:
        return None, exc.problems


def _pip_parse(text: str):
    """pip's own reading of a requirements file (pip-requirements-parser vendors pip's ``req_file.py``).

    That library reads files only: the text goes through a temporary file with a UTF-8 BOM, so it
    decodes exactly what we decoded, whatever the machine's locale.
    """
    import tempfile

    from pip_requirements_parser import RequirementsFile

    with tempfile.TemporaryDirectory(prefix="allora-req-") as tmp:
        path = Path(tmp) / "requirements.txt"
        path.write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
        return RequirementsFile.from_file(str(path), include_nested=False)


def quoted_line(line: str) -> str:
    """A requirements line as it may be printed: shortened, and not at all when it holds a secret."""
    from allora_gitops.bundle.secrets import scan_bytes

    if _has_credentials(line) or scan_bytes("", line.encode("utf-8", "replace")):
        return "(not shown: it holds a secret)"
    return repr(_shown(line.strip()))


def parse_requirements(text: str, file: str) -> tuple[list[ParsedRequirement], list[Problem]]:
    """Every requirement of the file, and a problem for each line that is not one (or is unpinned).

    Lines are split, joined and stripped of comments by pip's own rules (a full-line comment never
    continues onto the next line, even when it ends in ``\\``). ``-r``/``-c`` are refused: the
    file is installed from a copy (``run``) and alone in the image's first build stage, so another
    file it names would be missing there — validate says so rather than letting the build fail.
    """
    from packaging.utils import canonicalize_name
    from pip_requirements_parser import InstallRequirement, InvalidRequirementLine, OptionLine

    parsed = _pip_parse(text)
    lines = text.splitlines()
    reqs: list[ParsedRequirement] = []
    problems: list[Problem] = []

    def add(message: str, line: int, severity: str = "error", code: str = "requirements") -> None:
        raw = lines[line - 1] if 0 < line <= len(lines) else ""
        problems.append(Problem(message, file, line, len(raw) - len(raw.lstrip()) + 1, severity, code))

    items = [*parsed.requirements, *parsed.options, *parsed.invalid_lines]
    for item in sorted(items, key=lambda i: i.line_number):
        line, written = item.line_number, item.line
        if _has_credentials(written):  # checked first, so no message below can quote the credential
            add("a URL with credentials (user:token@) would ship in the archive and the image; "
                "install from an index configured in a pip.conf build secret instead", line, code="secret")
        elif isinstance(item, OptionLine):
            _check_option(item, add)
        elif isinstance(item, InvalidRequirementLine):
            add(f"invalid requirement {quoted_line(written)}: {_reason(item.error_message or '')}", line)
        elif isinstance(item, InstallRequirement):
            if item.is_editable:
                add("editable requirements cannot be installed in an image; pin a released version", line)
            elif item.name is None:
                add(f"{quoted_line(written)} is a local path; the image installs requirements before the bundle is "
                    "copied in, so build a wheel and publish it to an index", line)
            else:
                spec = re.split(r"\s+--?[a-z]", written, maxsplit=1)[0].strip()  # without per-requirement options (--hash=…)
                pinned = item.link is not None or bool(item.is_pinned)
                reqs.append(ParsedRequirement(canonicalize_name(item.name), spec, line, pinned))
                if not pinned:
                    add(f"'{_shown(spec)}' is not pinned; use an exact version ({_shown(item.name)}==X.Y.Z) "
                        "so every image build installs the same code", line, "warning", "unpinned")
    return reqs, problems


def _reason(message: str) -> str:
    """packaging's parse error as pip prints it: the reason first, pip's hint (``= … Did you mean ==?``) after."""
    first = message.splitlines()[0].removeprefix("Invalid requirement:").strip(" :") if message else ""
    hint, sep, reason = first.partition("?: ")
    return f"{reason} ({hint}?)" if sep else (first or "not a requirement")


def _check_option(item, add) -> None:
    """Report an option line: those that change where packages come from, or what is installed, have a better place."""
    option = item.line.split(None, 1)[0].split("=", 1)[0]
    line = item.line_number
    if option in ("-r", "--requirement"):
        add(f"{option} names another requirements file, which would be missing where the image installs this one; "
            "list its requirements here", line)
    elif option in ("-c", "--constraint"):
        add(f"{option} names a constraints file from inside the requirements file; "
            "set environment.constraints in model.yaml instead", line)
    elif option in _EDITABLE:
        add("editable requirements cannot be installed in an image; pin a released version", line)
    elif option in _INDEX_OPTIONS:
        add(f"{option} does not belong in the requirements file; use environment.extra_index_urls in model.yaml "
            "(credentials go in build secrets)", line)
    else:
        add(f"pip option {option} is passed to pip unchecked", line, "warning")


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
    "pkg_resources": ("setuptools",),
    "OpenSSL": ("pyopenssl",),
    "serial": ("pyserial",),
    "magic": ("python-magic",),
    "Cryptodome": ("pycryptodomex",),
    "lightgbm": ("lightgbm",),
    "xgboost": ("xgboost",),
}


def provided_by(module: str, reqs: list[ParsedRequirement]) -> ParsedRequirement | None:
    """The requirement that would provide top-level ``module``, if any can be told from names alone.

    Matches: the known differing names above; the distribution's own name (``-``/``_``/case aside);
    its first word, after a ``python-``/``py-`` prefix (``azure-storage-blob`` → ``azure``,
    ``google-cloud-storage`` → ``google``, ``python-telegram-bot`` → ``telegram``).
    """
    from packaging.utils import canonicalize_name

    top = module.split(".", 1)[0]
    wanted = top.lower().replace("_", "")
    candidates = {canonicalize_name(top)} | {canonicalize_name(d) for d in _MODULE_TO_DISTS.get(top, ())}
    for req in reqs:
        words = req.name.removeprefix("python-").removeprefix("py-").split("-")
        if req.name in candidates or req.name.replace("-", "") == wanted or words[0] == wanted:
            return req
    return None


def distribution_for(module: str) -> str:
    """The distribution to add for a missing top-level ``module``: the well-known one, else the module's own name."""
    top = module.split(".", 1)[0]
    return _MODULE_TO_DISTS.get(top, (top.replace("_", "-").lower(),))[0]


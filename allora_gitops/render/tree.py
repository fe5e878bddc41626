"""Render pure, write separately: a tree is ``{repo-relative path: text}``.

``render_deployment`` and ``render_argocd`` touch no disk; ``write_tree``
parses every YAML file back (and refuses the whole tree on the first broken
one) before writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from allora_gitops import constants as C
from allora_gitops.errors import Problem, RenderError
from allora_gitops.render.environment import render_template
from allora_gitops.render.spec import DeploymentSpec

# checkov rules the rendered Deployment cannot satisfy, each with the reason (also listed in docs/reference/rendering.md).
CHECKOV_SKIPS = (
    ("CKV_K8S_40", "the runtime contract fixes UID 1000 (guide: Container Security); runAsNonRoot is enforced"),
    ("CKV_K8S_43", "the image is built after rendering; its tag is derived from the bundle sha256 and never reused"),
)
# Only on an overlay whose model.yaml declares environment.secrets (the overlay's patch adds it beside the base's two).
ENV_SECRETS_CHECKOV_SKIP = (
    "CKV_K8S_35", "model.yaml environment.secrets are environment variables by contract; they reference a Secret, never hold a value",
)
IMAGE_DIGEST_CHECK = "CKV_K8S_43"  # dropped from an overlay once its image is pinned (gitops/pin.py)


def checkov_skip_annotation(check: str) -> str:
    """The annotation key the base Deployment carries the skip of ``check`` under (``checkov.io/skipN``)."""
    return f"checkov.io/skip{[c for c, _ in CHECKOV_SKIPS].index(check) + 1}"


HEALTHCHECK_COMMAND = ("python", C.BOOTSTRAP_IN_IMAGE, "--healthcheck")
# Never egress to cluster-internal or link-local networks (cloud metadata endpoints live there).
PRIVATE_CIDRS = ("10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16")

ENV_EXTERNALSECRET = "externalsecret-env.yaml"  # environment.secrets through a secret store
RESULTS_NETWORKPOLICY = "networkpolicy-results.yaml"  # egress to the platform API, with --results-url only
_BASE = ("kustomization.yaml", "serviceaccount.yaml", "deployment.yaml", "networkpolicy.yaml", "poddisruptionbudget.yaml")


@dataclass(frozen=True)
class ArgoCDSettings:
    """Where Argo CD finds the GitOps repository and where the models run."""

    repo_url: str
    target_revision: str = "main"
    namespace: str = C.NAMESPACE
    argocd_namespace: str = C.ARGOCD_NAMESPACE
    project: str = C.ARGOCD_PROJECT
    destination_server: str = "https://kubernetes.default.svc"


# Every kind the deployment templates render: the AppProject allows exactly these.
ALLOWED_KINDS = (
    ("", "ServiceAccount"),
    ("apps", "Deployment"),
    ("batch", "Job"),  # sandboxes/<name>-<sha12>/ (render/sandbox.py)
    ("external-secrets.io", "ExternalSecret"),
    ("monitoring.coreos.com", "PodMonitor"),
    ("monitoring.coreos.com", "PrometheusRule"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("policy", "PodDisruptionBudget"),
)


def _context(spec: DeploymentSpec) -> dict:
    return {
        "spec": spec,
        "labels": {
            C.LABEL_NAME: spec.name,
            C.LABEL_COMPONENT: "model",
            C.LABEL_PART_OF: C.PART_OF,
            C.LABEL_MANAGED_BY: C.MANAGED_BY,
        },
        "C": C,
        "checkov_skips": CHECKOV_SKIPS,
        "env_secrets_skip": (f"checkov.io/skip{len(CHECKOV_SKIPS) + 1}", "=".join(ENV_SECRETS_CHECKOV_SKIP)),
        "healthcheck": list(HEALTHCHECK_COMMAND),
        "private_cidrs": PRIVATE_CIDRS,
        "constraints": spec.manifest.environment.constraints,
        "extra_index_urls": spec.manifest.environment.extra_index_urls,
        "system_packages": spec.manifest.environment.system_packages,
        "remote_artifacts": spec.manifest.remote_artifacts,
        "version_label": spec.version.replace("+", "_"),
    }


def render_base(spec: DeploymentSpec, ctx: dict | None = None) -> dict[str, str]:
    """``deployments/<name>/base/``: depends on the bundle name only, so every network shares it."""
    ctx = ctx or _context(spec)
    base = C.deployment_base_dir(spec.name)
    return {f"{base}/{f}": render_template(f"kustomize/base/{f}.j2", **ctx) for f in _BASE}


def render_overlay(spec: DeploymentSpec, ctx: dict | None = None) -> dict[str, str]:
    """``deployments/<name>/overlays/<network>/``: image, settings, resources, wallet reference."""
    ctx = ctx or _context(spec)
    overlay = C.deployment_overlay_dir(spec.name, spec.network)
    files = ["kustomization.yaml", "deployment-patch.yaml"] + (["externalsecret.yaml"] if spec.secret_store else [])
    if spec.secret_store and spec.secret_refs:
        files.append(ENV_EXTERNALSECRET)
    if spec.results_url:
        files.append(RESULTS_NETWORKPOLICY)
    if spec.monitoring:
        from allora_gitops.render.monitoring import MONITORING_FILES, monitoring_context

        ctx = {**ctx, "monitoring": monitoring_context(spec)}
        files += MONITORING_FILES
    return {f"{overlay}/{f}": render_template(f"kustomize/overlay/{f}.j2", **ctx) for f in files}


def render_build(spec: DeploymentSpec, ctx: dict | None = None) -> dict[str, str]:
    """``builds/<name>/<version>/``: the Dockerfile and the metadata a CI job builds the image from."""
    ctx = ctx or _context(spec)
    build = C.build_dir(spec.name, spec.version)
    return {
        f"{build}/Dockerfile": render_template("dockerfile/Dockerfile.j2", **ctx),
        f"{build}/{C.BUILD_METADATA_FILE}": render_template("builds/build.yaml.j2", **ctx),
    }


def render_deployment(spec: DeploymentSpec) -> dict[str, str]:
    """Every file one deployment needs in the GitOps repository, sorted by path."""
    ctx = _context(spec)
    tree = {**render_base(spec, ctx), **render_overlay(spec, ctx), **render_build(spec, ctx)}
    return dict(sorted(tree.items()))


def secret_mapping_of_overlay(files: Mapping[str, str]) -> dict[str, str]:
    """The ``{NAME: "SECRET/KEY"}`` an overlay was rendered with (its deployment-patch and env ExternalSecret), so a
    re-render keeps what the operator mapped before. ``files``: file name in the overlay → text. Names only."""
    import yaml

    def docs(name: str) -> list:
        try:
            return [d for d in yaml.safe_load_all(files.get(name) or "") if isinstance(d, dict)]
        except yaml.YAMLError:
            return []

    remote = {}
    for doc in docs(ENV_EXTERNALSECRET):
        for item in (doc.get("spec") or {}).get("data") or []:
            ref = item.get("remoteRef") or {} if isinstance(item, dict) else {}
            if item.get("secretKey") and ref.get("key") and ref.get("property"):
                remote[str(item["secretKey"])] = f"{ref['key']}/{ref['property']}"
    mapping = {}
    for doc in docs("deployment-patch.yaml"):
        for container in ((((doc.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []:
            for env in container.get("env") or [] if isinstance(container, dict) else []:
                ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}) if isinstance(env, dict) else {}
                name = env.get("name") if isinstance(env, dict) else None
                if name and ref.get("name") and ref.get("key"):
                    mapping[str(name)] = remote.get(str(name)) or f"{ref['name']}/{ref['key']}"
    return mapping


def render_argocd(settings: ArgoCDSettings) -> dict[str, str]:
    """``argocd/``: the AppProject, the ApplicationSet over ``deployments/*/overlays/*`` and the notifications
    ConfigMap through which Argo CD reports each sync back to the platform (``render/notifications.py``)."""
    ctx = {
        "argocd": settings,
        "C": C,
        "allowed_kinds": ALLOWED_KINDS,
        # Go templates, filled in by the ApplicationSet controller for each overlay (or sandbox) directory.
        "app_name": f'{{{{if eq (index .path.segments 0) "{C.SANDBOXES_DIR}"}}}}sandbox-{{{{.path.basename}}}}'
        "{{else}}{{index .path.segments 1}}-{{.path.basename}}{{end}}",
        "app_network": f'{{{{if eq (index .path.segments 0) "{C.SANDBOXES_DIR}"}}}}{C.SANDBOX_NETWORK}{{{{else}}}}{{{{.path.basename}}}}{{{{end}}}}',

        "app_path": "{{.path.path}}",
    }
    from allora_gitops.render.notifications import render_notifications

    return {
        f"{C.ARGOCD_DIR}/appproject.yaml": render_template("argocd/appproject.yaml.j2", **ctx),
        f"{C.ARGOCD_DIR}/applicationset.yaml": render_template("argocd/applicationset.yaml.j2", **ctx),
        **render_notifications(),
    }


def check_tree(tree: Mapping[str, str]) -> None:
    """Parse every YAML file back; one RenderError listing each broken file."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~100x ruamel's pure-Python parser
    problems = []
    for path, text in tree.items():
        if Path(path).is_absolute() or ".." in Path(path).parts:
            problems.append(Problem("path escapes the output directory", path, code="path"))
            continue
        if path.endswith((".yaml", ".yml")):
            try:
                # Composing (libyaml parses, no Python objects built) proves the syntax and the document shapes.
                docs = list(yaml.compose_all(text, Loader=loader))
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                problems.append(
                    Problem(
                        f"rendered YAML does not parse: {getattr(exc, 'problem', None) or exc}",
                        path,
                        mark.line + 1 if mark else None,
                        mark.column + 1 if mark else None,
                        code="yaml",
                    )
                )
                continue
            if not docs or any(not isinstance(d, yaml.MappingNode) for d in docs):
                problems.append(Problem("rendered YAML is not a mapping", path, code="yaml"))
    if problems:
        raise RenderError("the rendered tree is invalid; nothing was written", problems)


def write_tree(tree: Mapping[str, str], root: Path) -> list[Path]:
    """Check the whole tree, then write all of it under ``root`` or nothing; returns the paths written."""
    from allora_gitops.atomic import write_files_atomic

    check_tree(tree)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise RenderError(f"{root} is not a directory; nothing was written")
    files = {root / rel: text.encode("utf-8") for rel, text in sorted(tree.items())}
    try:
        write_files_atomic(files)
    except OSError as exc:
        raise RenderError(f"cannot write {exc.filename}: {exc.strerror}; nothing was written") from None
    return list(files)

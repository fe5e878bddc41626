"""The one template context of a deployment's rendered files, and the constants it carries.

``render/tree.py`` (base and overlays), ``render/monitoring.py`` (PodMonitor, PrometheusRule) and
``render/sandbox.py`` all render from :func:`template_context`, so a label or a skip is defined once.
"""

from __future__ import annotations

from allora_gitops import constants as C
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


def template_context(spec: DeploymentSpec) -> dict:
    """What every deployment template is rendered with (``templates/kustomize/**``, the Dockerfile, the monitoring
    files): the spec, the common labels, the checkov skips, the health check, the private ranges egress avoids,
    and the manifest's environment sections."""
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

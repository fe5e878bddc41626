"""``sandboxes/<name>-<sha12>/``: one bounded run of a bundle on testnet, as a ``batch/v1`` Job (pure render).

The guide's Dry-run Mode: a model runs for at most an hour with the platform's testnet wallet,
before anyone stakes on mainnet. The Job's pod is the deployment's pod — the base Deployment's
template with the overlay's patch applied — so pod security, probes, resources, the wallet mount
and the NetworkPolicy are exactly those of a deployment; only the lifecycle differs:
``activeDeadlineSeconds`` (the duration, at most an hour), ``backoffLimit: 0`` (a failed run is a
result, not something to retry) and ``restartPolicy: Never``. The runtime also gets
``ALLORA_MAX_RUNTIME`` so it exits 0 on time and the Job completes cleanly.

Under Argo CD's automated sync with ``selfHeal`` (the ApplicationSet's policy) two things follow:

- **No** ``ttlSecondsAfterFinished``: the TTL controller would delete the finished Job, self-heal
  would create it again from git, and the sandbox would run again with the platform's wallet, for
  ever (airbyte #15202, argo-cd #13851). A finished Job stays (Healthy, with its pod's logs) until
  ``sandbox prune`` removes the directory; Argo CD then prunes it. Sync hooks were the other way and
  were not taken: a hook Job runs again on every sync, and a hook is not shown as the Application's
  own resource.
- **A new Job name per run** (:func:`job_name`): a Job's pod template is immutable, so a restarted
  sandbox (same bundle, new end time) under the old name would fail every sync (argo-cd #14910);
  under a new name Argo CD creates the new Job and prunes the old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allora_gitops import constants as C
from allora_gitops.render.environment import render_template
from allora_gitops.render.spec import DeploymentSpec
from allora_gitops.render.context import template_context
from allora_gitops.render.tree import render_base, render_overlay

SANDBOX_LABEL = f"{C.LABEL_PREFIX}/sandbox"


@dataclass(frozen=True)
class SandboxRun:
    """What makes a sandbox more than a deployment: how long, until when, whose, with which wallet."""

    duration_seconds: int  # 1..C.SANDBOX_MAX_SECONDS
    expires_at: str  # RFC 3339 UTC, e.g. 2026-12-01T01:00:00Z
    owner: str
    wallet_secret: str  # the platform's sandbox wallet Secret

    @property
    def run_id(self) -> str:
        """8 hex digits naming this run: a restart (a new end time) gets another, so another Job name."""
        import hashlib

        return hashlib.sha256(f"{self.expires_at}/{self.duration_seconds}".encode()).hexdigest()[:8]


# The Job name is <job_name()> + kustomize's nameSuffix "-sandbox-<sha12>" (21 characters). The pods get it as
# the batch.kubernetes.io/job-name label, whose values hold at most 63 characters.
JOB_NAME_MAX = 63 - len("-sandbox-") - 12


def job_name(spec: DeploymentSpec, run: SandboxRun) -> str:
    """``<name>-<run_id>``, the bundle name shortened so that the full Job name fits a label value (63)."""
    return f"{spec.name[: JOB_NAME_MAX - len(run.run_id) - 1].rstrip('-.')}-{run.run_id}"


def sandbox_name(spec: DeploymentSpec) -> str:
    """``<name>-<sha12>``: one sandbox per archive (a re-run of the same bytes is the same sandbox)."""
    return C.sandbox_dir(spec.name, spec.sha256).rsplit("/", 1)[1]


def render_sandbox(spec: DeploymentSpec, run: SandboxRun) -> dict[str, str]:
    """Every file of ``sandboxes/<name>-<sha12>/``: kustomization, ServiceAccount, NetworkPolicy, Job (+ PodMonitor)."""
    ctx = template_context(spec)
    base = render_base(spec, ctx)
    overlay = render_overlay(spec, ctx)
    base_dir, overlay_dir = C.deployment_base_dir(spec.name), C.deployment_overlay_dir(spec.name, spec.network)
    deployment = _load(base[f"{base_dir}/deployment.yaml"])
    patch = _load(overlay[f"{overlay_dir}/deployment-patch.yaml"])
    job = _job(deployment, patch, spec, run)
    root = C.sandbox_dir(spec.name, spec.sha256)
    kustomization = render_template(
        "sandbox/kustomization.yaml.j2", spec=spec, run=run, C=C, sandbox=sandbox_name(spec), sandbox_label=SANDBOX_LABEL
    )
    tree = {
        f"{root}/kustomization.yaml": kustomization,
        f"{root}/serviceaccount.yaml": base[f"{base_dir}/serviceaccount.yaml"],
        f"{root}/networkpolicy.yaml": base[f"{base_dir}/networkpolicy.yaml"],
        f"{root}/job.yaml": render_template("sandbox/job.yaml.j2", job=job, run=run),
    }
    podmonitor = overlay.get(f"{overlay_dir}/podmonitor.yaml")
    if podmonitor is not None:  # scraped like a deployment; no PrometheusRule: an hour-long trial pages nobody
        tree[f"{root}/podmonitor.yaml"] = render_template("sandbox/podmonitor.yaml.j2", podmonitor=_sandbox_podmonitor(podmonitor, spec))
    return tree


def _sandbox_podmonitor(text: str, spec: DeploymentSpec) -> dict:
    """The deployment's PodMonitor, selecting this sandbox's pods (kustomize leaves a CRD's selector alone)."""
    podmonitor = _load(text)
    labels = podmonitor["spec"]["selector"]["matchLabels"]
    labels[C.LABEL_INSTANCE] = sandbox_name(spec)
    labels[SANDBOX_LABEL] = "true"
    return podmonitor


def _job(deployment: dict, patch: dict, spec: DeploymentSpec, run: SandboxRun) -> dict:
    template = deployment["spec"]["template"]
    pod = dict(template["spec"])
    patched = patch["spec"]["template"]["spec"]
    pod["containers"] = _merge_named(pod["containers"], patched.get("containers", []), _merge_container)
    pod["volumes"] = _merge_named(pod.get("volumes", []), patched.get("volumes", []), lambda _a, b: b)
    for key in ("nodeSelector", "tolerations"):  # runtime.gpus: the Job runs where the Deployment would
        if key in patched:
            pod[key] = patched[key]
    pod["restartPolicy"] = "Never"
    for volume in pod["volumes"]:
        if volume["name"] == "wallet":
            volume["secret"] = {**volume["secret"], "secretName": run.wallet_secret}
    for container in pod["containers"]:
        container["env"] = _merge_named(
            container.get("env", []), [{"name": C.MAX_RUNTIME_ENV, "value": str(run.duration_seconds)}], lambda _a, b: b
        )
    metadata = {k: v for k, v in deployment["metadata"].items() if k in ("labels", "annotations")}
    metadata = {"name": job_name(spec, run), **metadata}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "activeDeadlineSeconds": run.duration_seconds,
            "backoffLimit": 0,
            "template": {"metadata": template.get("metadata", {}), "spec": pod},
        },
    }


def _merge_named(items: list[dict], patches: list[dict], merge) -> list[dict]:
    """A strategic merge of lists keyed by ``name`` (how kustomize merges containers, env and volumes)."""
    out = [dict(i) for i in items]
    index = {i["name"]: n for n, i in enumerate(out)}
    for p in patches:
        if p["name"] in index:
            out[index[p["name"]]] = merge(out[index[p["name"]]], p)
        else:
            out.append(dict(p))
    return out


def _merge_container(container: dict, patch: dict) -> dict:
    merged = {**container, **{k: v for k, v in patch.items() if k != "env"}}
    merged["env"] = _merge_named(container.get("env", []), patch.get("env", []), lambda _a, b: b)
    return merged


def _load(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))

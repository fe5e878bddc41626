"""Our policy rules over built objects: PRODUCT.md's security defaults plus no secret values and pinned images.

Each rule yields ``(rule, message)`` for one object; ``verify`` turns them
into one finding per object and rule. Rules read plain dicts (kustomize output).
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from allora_gitops import constants as C
from allora_gitops.bundle.secrets import is_mnemonic

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
RULES = (
    "run-as-non-root",
    "read-only-root-filesystem",
    "no-privilege-escalation",
    "drop-all-capabilities",
    "seccomp-runtime-default",
    "no-service-account-token",
    "resources",
    "liveness-probe",
    "host-namespaces",
    "image-pinned",
    "secret-value",
    "network-policy",
    "gpu",
    "canonical-quantity",
    "job-ttl",
)
ARGOCD_HOOK_ANNOTATION = "argocd.argoproj.io/hook"
_HEX64 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_WORDS = re.compile(r"^[a-z]{3,8}( [a-z]{3,8}){11,23}$")
_SECRETISH = re.compile(r"(mnemonic|private|secret|passw|token|seed|key)", re.IGNORECASE)


def pod_spec(obj: dict) -> dict | None:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    if kind in WORKLOAD_KINDS:
        return (spec.get("template") or {}).get("spec")
    return None


def _containers(pod: dict) -> list[dict]:
    return [c for key in ("initContainers", "containers") for c in (pod.get(key) or []) if isinstance(c, dict)]


PROBE_HANDLERS = ("exec", "httpGet", "grpc", "tcpSocket")


def check_object(obj: dict, *, service: bool = False) -> Iterator[tuple[str, str]]:
    """(rule, message) for each pod rule ``obj`` breaks. A model's container needs the exec liveness probe of its
    runtime; a ``service`` (the blueprint's platform API) needs a liveness probe of any handler (its HTTP /healthz)."""
    yield from _secret_values(obj)
    pod = pod_spec(obj)
    if pod is None:
        return
    pod_sc = pod.get("securityContext") or {}
    if obj.get("kind") == "Job" and "ttlSecondsAfterFinished" in (obj.get("spec") or {}):
        if ARGOCD_HOOK_ANNOTATION not in ((obj.get("metadata") or {}).get("annotations") or {}):
            yield "job-ttl", ("ttlSecondsAfterFinished under Argo CD's self-heal: the TTL deletes the finished Job, Argo CD creates "
                              "it again and it runs again; drop it (sandbox prune removes the Job) or make the Job a sync hook")
    if pod.get("automountServiceAccountToken") is not False:
        yield "no-service-account-token", "automountServiceAccountToken must be false (models never call the Kubernetes API)"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            yield "host-namespaces", f"{key} must not be true"
    yield from _gpu_placement(pod)
    for c in _containers(pod):
        name = c.get("name", "?")
        sc = c.get("securityContext") or {}

        def eff(key: str) -> Any:
            return sc.get(key, pod_sc.get(key))

        uid = eff("runAsUser")
        if uid == 0 or (eff("runAsNonRoot") is not True) or sc.get("runAsGroup") == 0:
            yield "run-as-non-root", f"container {name} may run as root: set runAsNonRoot: true and runAsUser: {C.RUNTIME_UID}"
        if sc.get("readOnlyRootFilesystem") is not True:
            yield "read-only-root-filesystem", f"container {name} needs readOnlyRootFilesystem: true"
        if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged"):
            yield "no-privilege-escalation", f"container {name} needs allowPrivilegeEscalation: false and no privileged mode"
        drop = [str(d).upper() for d in ((sc.get("capabilities") or {}).get("drop") or [])]
        if "ALL" not in drop or (sc.get("capabilities") or {}).get("add"):
            yield "drop-all-capabilities", f"container {name} must drop ALL capabilities and add none"
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield "seccomp-runtime-default", f"container {name} needs seccompProfile RuntimeDefault"
        res = c.get("resources") or {}
        missing = [
            f"{part}.{what}"
            for part in ("requests", "limits")
            for what in ("cpu", "memory")
            if not (res.get(part) or {}).get(what)
        ]
        if missing:
            yield "resources", f"container {name} has no {', '.join(missing)}"
        for part in ("requests", "limits"):
            for what, value in ((res.get(part) or {}) if isinstance(res.get(part), dict) else {}).items():
                stored = _stored_quantity(value)
                if stored is not None and stored != str(value):
                    yield "canonical-quantity", (f"container {name}: {part}.{what} {value} is stored by the API server as {stored}; "
                                                 "Argo CD would show it OutOfSync for ever")
        if c in (pod.get("containers") or []):
            probe = c.get("livenessProbe") or {}
            if service and not any(probe.get(h) for h in PROBE_HANDLERS):
                yield "liveness-probe", f"container {name} needs a livenessProbe"
            elif not service and not probe.get("exec"):
                yield "liveness-probe", f"container {name} needs an exec livenessProbe (python {C.BOOTSTRAP_IN_IMAGE} --healthcheck)"
        problem = image_problem(c.get("image"))
        if problem:
            yield "image-pinned", f"container {name}: {problem}"
        yield from _gpu_problems(name, res)
        for env in c.get("env") or []:
            env_name = str(env.get("name", ""))
            if "value" in env and (env_name in ("ALLORA_MNEMONIC", "ALLORA_PRIVATE_KEY") or looks_secret(env_name, env["value"])):
                yield "secret-value", f"container {name}: env {env_name} holds a literal credential; mount the wallet Secret as files"


def _gpus(resources: dict, part: str) -> Any:
    return (resources.get(part) or {}).get(C.GPU_RESOURCE)


def _gpu_problems(name: str, res: dict) -> Iterator[tuple[str, str]]:
    """An extended resource is whole devices, set as a limit; a request, if any, must equal it (Kubernetes' rule)."""
    limit, request = _gpus(res, "limits"), _gpus(res, "requests")
    if limit is None and request is None:
        return
    if limit is None:
        yield "gpu", f"container {name} requests {C.GPU_RESOURCE} without a limit; set limits.{C.GPU_RESOURCE}"
        return
    if not re.fullmatch(r"[1-9][0-9]*", str(limit)):
        yield "gpu", f"container {name}: limits.{C.GPU_RESOURCE} must be a whole number of GPUs, got {limit!r}"
    elif request is not None and str(request) != str(limit):
        yield "gpu", f"container {name}: requests.{C.GPU_RESOURCE} ({request}) must equal the limit ({limit})"


def _gpu_placement(pod: dict) -> Iterator[tuple[str, str]]:
    """GPU pods go to GPU nodes (a nodeSelector or a toleration of the GPU taint); other pods never tolerate that taint,
    or they take a GPU node's place without using its GPUs."""
    wants = any(_gpus(c.get("resources") or {}, part) for c in _containers(pod) for part in ("limits", "requests"))
    tolerates = any(
        isinstance(t, dict) and (t.get("key") == C.GPU_RESOURCE or (t.get("key") is None and t.get("operator") == "Exists"))
        for t in pod.get("tolerations") or []
    )
    if wants and not (tolerates or pod.get("nodeSelector") or pod.get("affinity")):
        yield "gpu", f"the pod uses {C.GPU_RESOURCE} but has no nodeSelector, affinity or toleration for GPU nodes (gpu.* in .allora-gitops.yaml)"
    if tolerates and not wants:
        yield "gpu", f"the pod tolerates the {C.GPU_RESOURCE} taint but uses no GPU: it would hold a GPU node's place"


def _stored_quantity(value: Any) -> str | None:
    """The API server's form of a quantity (``render/quantity.py``); None for what is not a quantity (schemas say so)."""
    from allora_gitops.render.quantity import canonical_quantity

    try:
        return canonical_quantity(str(value))
    except ValueError:
        return None


def image_problem(image: Any) -> str | None:
    if not isinstance(image, str) or not image:
        return "no image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} has no tag or digest"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image} uses the mutable tag latest"
    return None


def _secret_values(obj: dict) -> Iterator[tuple[str, str]]:
    kind = obj.get("kind")
    if kind == "Secret" and (obj.get("data") or obj.get("stringData")):
        yield "secret-value", "Secret holds values in the repository; use an ExternalSecret or a Secret created out of band"
        return
    if kind == "ConfigMap":
        for section in ("data", "binaryData"):
            for key, value in (obj.get(section) or {}).items():
                if looks_secret(str(key), value):
                    yield "secret-value", f"ConfigMap key {key} holds what looks like a wallet mnemonic or private key"


def looks_secret(key: str, value: Any) -> bool:
    """A BIP-39 mnemonic (checksum-valid) anywhere, or a 64-hex value under a key that names a secret."""
    if not isinstance(value, str):
        return False
    text = " ".join(value.split())
    if _WORDS.match(text) and is_mnemonic(text.split()):
        return True
    return bool(_HEX64.match(text) and _SECRETISH.search(key))


def check_network_policies(objects: list[dict]) -> Iterator[tuple[dict, str, str]]:
    """Every workload needs a NetworkPolicy that selects its pods and restricts both directions."""
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    for obj in objects:
        pod = pod_spec(obj)
        if pod is None:
            continue
        spec = obj.get("spec") or {}
        template = spec.get("template") or ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        labels = ((template.get("metadata") or {}) if obj.get("kind") != "Pod" else (obj.get("metadata") or {})).get("labels") or {}
        ok = False
        for pol in policies:
            pspec = pol.get("spec") or {}
            match = (pspec.get("podSelector") or {}).get("matchLabels") or {}
            if all(labels.get(k) == v for k, v in match.items()) and {"Ingress", "Egress"} <= set(pspec.get("policyTypes") or []):
                ok = True
                break
        if not ok:
            yield obj, "network-policy", "no NetworkPolicy selects these pods with both Ingress and Egress policy types"


def unpinned_images(objects: list[dict]) -> Iterator[tuple[dict, str]]:
    """(object, message) for every container image not referenced by digest (``…@sha256:…``)."""
    for obj in objects:
        pod = pod_spec(obj)
        for c in _containers(pod) if pod is not None else ():
            image = c.get("image")
            if not (isinstance(image, str) and "@sha256:" in image):
                yield obj, f"container {c.get('name', '?')}: image {image} is not pinned by digest"

"""``argocd/notifications-cm.yaml``: Argo CD's notifications controller reports every model Application back to the platform.

Three triggers (Argo CD's ``expr`` conditions), each with a webhook template whose body is the JSON
``POST /api/v1/argocd/events`` reads (``argocd_reports.ArgoCDEvent``):

- ``on-allora-deployed``: the sync succeeded and the Application is Healthy — once per synced revision
  (``oncePer``), so a healthy Application is reported once, not at every reconciliation;
- ``on-allora-sync-failed``: the sync operation ended in ``Failed`` or ``Error``;
- ``on-allora-health-degraded``: the Application's health is ``Degraded``.

The webhook service ``allora-platform`` posts to the platform's Service with ``Authorization: Bearer
$allora-platform-webhook-token``: Argo CD reads that value from ``argocd-notifications-secret``
(``allora-gitops argocd rotate-token`` makes it; the repository never holds it). The AppProject
subscribes its Applications to the three triggers (``notifications.argoproj.io/subscribe.…`` annotations,
``render/tree.py``), so only model Applications report, never the platform's own.

The bodies are Go templates evaluated by Argo CD against the Application (``.app``, an unstructured
object): each value is ``{{toJson <field>}}`` (sprig's ``toJson``, which Argo CD's templates have), so
Argo CD's messages reach the platform as valid JSON strings whatever they contain, and a missing field
is ``null``. Each template reads only fields its trigger guarantees (``operationState`` exists when a
sync finished), because a Go template fails on a field of a missing object.
"""

from __future__ import annotations

from allora_gitops import constants as C
from allora_gitops.render.environment import render_template

# Argo CD expr conditions (https://argo-cd.readthedocs.io/en/stable/operator-manual/notifications/triggers/)
TRIGGERS = {
    "on-allora-deployed": {
        "description": "Synced and healthy: the platform records the release as running, once per revision",
        "when": "app.status.operationState != nil and app.status.operationState.phase in ['Succeeded'] and app.status.health.status == 'Healthy'",
        "oncePer": "app.status.sync.revision",
        "send": "allora-deployed",
    },
    "on-allora-sync-failed": {
        "description": "The sync failed: the platform shows Argo CD's message on the release",
        "when": "app.status.operationState != nil and app.status.operationState.phase in ['Error', 'Failed']",
        "send": "allora-sync-failed",
    },
    "on-allora-health-degraded": {
        "description": "The Application is Degraded: the platform shows Argo CD's message on the release",
        "when": "app.status.health.status == 'Degraded'",
        "send": "allora-health-degraded",
    },
}

_COMMON = (
    ("application", ".app.metadata.name"),
    ("path", ".app.spec.source.path"),
    ("revision", ".app.status.sync.revision"),
    ("sync_status", ".app.status.sync.status"),
    ("health_status", ".app.status.health.status"),
)
# event → the fields of its body after the common ones (Application fields its trigger guarantees)
BODIES = {
    "deployed": (
        ("operation_phase", ".app.status.operationState.phase"),
        ("message", ".app.status.operationState.message"),
        ("reported_at", ".app.status.operationState.finishedAt"),
    ),
    "sync-failed": (
        ("operation_phase", ".app.status.operationState.phase"),
        ("message", ".app.status.operationState.message"),
        ("reported_at", ".app.status.operationState.finishedAt"),
    ),
    "health-degraded": (
        ("message", ".app.status.health.message"),
        ("resources", ".app.status.resources"),  # each resource's health message, when the Application's says nothing
        ("reported_at", ".app.status.reconciledAt"),
    ),
}


def webhook_body(event: str) -> str:
    """The Go template of ``event``'s request body: a JSON object, one ``{{toJson <field>}}`` per value."""
    lines = [f'  "event": "{event}"'] + [f'  "{key}": {{{{toJson {field}}}}}' for key, field in (*_COMMON, *BODIES[event])]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def render_notifications(platform_url: str = C.PLATFORM_SERVICE_URL) -> dict[str, str]:
    """``argocd/notifications-cm.yaml`` (the ConfigMap ``argocd-notifications-cm`` in Argo CD's namespace)."""
    templates = {f"allora-{event}": webhook_body(event) for event in BODIES}
    text = render_template(
        "argocd/notifications-cm.yaml.j2", C=C, platform_url=platform_url.rstrip("/"), triggers=TRIGGERS, templates=templates,
    )
    return {f"{C.ARGOCD_DIR}/notifications-cm.yaml": text}

"""The monitoring objects of one deployment: a PodMonitor and a PrometheusRule (prometheus-operator).

The alerts are a table here (name, PromQL, ``for``, severity, summary) so that the
rendered ``prometheusrule.yaml``, the rule unit tests and the documentation (the generated metrics and alerts
reference, the runbooks page its ``runbook_url`` annotations point at) all read the same definitions. Thresholds come from the guide's "Monitoring &
Observability" section (more than 3 consecutive submission errors, resource
usage above 80 % of limits, crashes and restarts) and from the deployment
(polling interval, heartbeat age, low-balance threshold).

Series the expressions rely on:

* the runtime's own metrics (``allora_*``, see the docs' metrics and alerts reference), scraped through the
  PodMonitor, which copies the pod labels into ``allora_model``,
  ``allora_network`` and ``allora_deployment``;
* Prometheus's own ``up`` of that scrape target (0 when the scrape fails);
* the platform server's chain series (``allora_chain_*``, allora_gitops/chain/metrics.py), which carry
  ``allora_deployment``, ``allora_model`` and ``allora_network`` themselves (the server's own target labels,
  such as its ``namespace``, say nothing about the deployment, so these alerts select on ``allora_deployment``);
* kube-state-metrics (``kube_deployment_status_replicas_available``,
  ``kube_pod_container_status_waiting_reason``,
  ``kube_pod_container_status_restarts_total``,
  ``kube_pod_container_resource_limits``) and the kubelet's cAdvisor
  (``container_memory_working_set_bytes``, ``container_cpu_usage_seconds_total``),
  as kube-prometheus-stack scrapes them (``namespace``/``pod``/``container`` labels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Optional

from allora_gitops import constants as C

# The rendered container's name (templates/kustomize/base/deployment.yaml.j2).
CONTAINER = "model"
# An alert's runbook in the documentation site (mkdocs, directory URLs: docs/how-to/runbooks.md), under the
# repository's docs_url; the anchors are the <a id="runbook-…"> of that page.
RUNBOOK_PATH = "how-to/runbooks/#runbook-{anchor}"
# Pod label → the target label every alert and dashboard panel selects on.
TARGET_LABELS = (
    ("allora_model", "__meta_kubernetes_pod_label_app_kubernetes_io_name"),
    ("allora_network", "__meta_kubernetes_pod_label_allora_network_network"),
    ("allora_deployment", "__meta_kubernetes_pod_label_app_kubernetes_io_instance"),
)
CONSECUTIVE_FAILURES_THRESHOLD = 3  # the guide: "more than 3 consecutive submission errors"
RESOURCE_LIMIT_RATIO = 0.8  # the guide: "resource usage above 80 % of limits"
NO_SUCCESS_POLLS = 5  # AlloraNoRecentSuccess: this many polling intervals (plus one run) without a valid prediction
RESTARTS_PER_HOUR = 3  # AlloraRestarts: this many container restarts within an hour
CRASHLOOP_WINDOW = "5m"  # AlloraCrashLooping: longer than a run between two back-offs
CRASHLOOP_FOR = "10m"  # longer than the window: one crash (one 10 s back-off) never fires
CRASHLOOP_FOR_TEXT = "10 minutes"
METRICS_MISSING_WINDOW = "5m"  # AlloraMetricsMissing: ten scrape intervals without one heartbeat sample
CHAIN_SCORE_FOR = "30m"  # AlloraChainScoreBelowLowest: a score EMA moves slowly; one epoch under is noise
MISSED_WINDOWS_PER_HOUR = 3  # AlloraChainMissedWindows: more than this many windows missed within an hour
SAMPLE_LIMIT = 1000  # the runtime exposes ~60 series; far more means a label carries an unbounded value
SCRAPE_INTERVAL = "30s"
MONITORING_FILES = ["podmonitor.yaml", "prometheusrule.yaml"]  # in the overlay, beside kustomization.yaml


@dataclass(frozen=True)
class Alert:
    """One alerting rule; ``for_`` is a Prometheus duration (``5m``); ``runbook_url`` None: no annotation."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    labels: Mapping[str, str]
    runbook_url: Optional[str] = None


def runbook_url(docs_url: Optional[str], alert: str) -> Optional[str]:
    """The runbook of ``alert`` in the documentation hosted at ``docs_url`` (the repository's ``docs_url``
    setting); None when the repository names no documentation site (nothing is guessed)."""
    if not docs_url:
        return None
    return f"{docs_url.rstrip('/')}/{RUNBOOK_PATH.format(anchor=alert.lower())}"


@dataclass(frozen=True)
class MonitoringContext:
    """What the monitoring templates receive besides the spec."""

    alerts: tuple[Alert, ...]
    labels: Mapping[str, str]  # what every alert of the deployment carries besides its severity
    target_labels: tuple[tuple[str, str], ...] = TARGET_LABELS
    sample_limit: int = SAMPLE_LIMIT
    scrape_interval: str = SCRAPE_INTERVAL


def runtime_selector(namespace: str, instance: str) -> str:
    """The PromQL label matchers of a deployment's runtime series (the PodMonitor's target labels)."""
    return f'namespace="{namespace}",allora_deployment="{instance}"'


def pod_selector(namespace: str, instance: str) -> str:
    """Matchers of the deployment's pods in cAdvisor/kube-state-metrics series: ``<instance>-<rs hash>-<pod hash>``."""
    return f'namespace="{namespace}",pod=~"{instance}-[a-z0-9]+-[a-z0-9]+",container="{CONTAINER}"'


def chain_selector(instance: str) -> str:
    """Matchers of a deployment's ``allora_chain_*`` series (exported by the platform server, not the pod)."""
    return f'allora_deployment="{instance}"'


def alert_labels(spec) -> dict[str, str]:
    """The labels every alert of a deployment carries (besides ``severity``): what Alertmanager routes on."""
    return {"allora_model": spec.name, "allora_network": spec.network, "allora_deployment": spec.instance, "namespace": spec.namespace}


def alerts(spec) -> tuple[Alert, ...]:
    """The alerts of one deployment (a ``DeploymentSpec``), in the documentation's order."""
    ns, inst = spec.namespace, spec.instance
    rt = runtime_selector(ns, inst)
    deployment = f'namespace="{ns}",deployment="{inst}"'
    pod = pod_selector(ns, inst)
    labels = alert_labels(spec)
    no_success_after = NO_SUCCESS_POLLS * spec.polling_interval + int(spec.manifest.runtime.max_seconds)
    threshold = spec.low_balance_threshold
    ratio = RESOURCE_LIMIT_RATIO

    def alert(name, expr, for_, severity, summary, description) -> Alert:
        return Alert(name, expr, for_, severity, summary, description, {**labels, "severity": severity}, runbook_url(spec.docs_url, name))

    return (
        alert(
            "AlloraModelDown",
            f'max by (namespace, deployment) (kube_deployment_status_replicas_available{{{deployment}}}) < 1',
            "5m",
            "critical",
            f"{inst}: no available replica",
            f"The model {spec.name} on {spec.network} has had no available replica for 5 minutes; it submits nothing.",
        ),
        alert(
            "AlloraCrashLooping",
            # A crash loop alternates back-off (the waiting reason present) with short runs (absent): a
            # plain `for:` restarts at every run. The window bridges the runs, `for:` longer than the window
            # lets a single crash pass (kubernetes-mixin KubePodCrashLooping, PR #678).
            f"max by (namespace, pod) (max_over_time(kube_pod_container_status_waiting_reason"
            f'{{{pod},reason="CrashLoopBackOff"}}[{CRASHLOOP_WINDOW}])) >= 1',
            CRASHLOOP_FOR,
            "critical",
            f"{inst}: the container keeps crashing (CrashLoopBackOff)",
            "{{ $labels.pod }} has been in CrashLoopBackOff again and again for "
            f"{CRASHLOOP_FOR_TEXT}; between back-offs it runs too briefly to submit.",
        ),
        alert(
            "AlloraMetricsMissing",
            # Every runtime alert vanishes with its series: a failed scrape (sampleLimit, a NetworkPolicy)
            # sets up to 0; an unselected PodMonitor or a dropped target leaves no series at all.
            f"(max by (namespace, allora_deployment) (up{{{rt}}}) == 0"
            f" or absent_over_time(allora_heartbeat_timestamp_seconds{{{rt}}}[{METRICS_MISSING_WINDOW}]))"
            f" and on (namespace) (max by (namespace) (kube_deployment_status_replicas_available{{{deployment}}}) >= 1)",
            "5m",
            "warning",
            f"{inst}: a replica is available but Prometheus receives none of its runtime metrics",
            "The runtime's series are missing (the scrape fails or finds no target), so every runtime alert"
            " of this deployment is blind.",
        ),
        alert(
            "AlloraConsecutiveFailures",
            f"max by (namespace, allora_deployment) (allora_consecutive_failures{{{rt}}}) > {CONSECUTIVE_FAILURES_THRESHOLD}",
            "1m",
            "warning",
            f"{inst}: more than {CONSECUTIVE_FAILURES_THRESHOLD} predictions in a row failed",
            "{{ $value }} consecutive prediction or submission failures; see allora_prediction_failures_total by reason.",
        ),
        alert(
            "AlloraNoRecentSuccess",
            # Before the first success the gauge is 0: count from the process start instead.
            f"time() - max by (namespace, allora_deployment) ((allora_last_success_timestamp_seconds{{{rt}}} > 0)"
            f" or process_start_time_seconds{{{rt}}}) > {no_success_after}",
            "1m",
            "critical",
            f"{inst}: no valid prediction for {no_success_after} s ({NO_SUCCESS_POLLS} polling intervals)",
            "The runtime runs but has not produced a valid prediction for {{ $value | humanizeDuration }}.",
        ),
        alert(
            "AlloraHighMemory",
            f"max by (namespace, pod) (container_memory_working_set_bytes{{{pod}}})"
            f" / max by (namespace, pod) (kube_pod_container_resource_limits{{{pod},resource=\"memory\"}}) > {ratio}",
            "15m",
            "warning",
            f"{inst}: memory above {ratio:.0%} of its limit",
            "The container uses {{ $value | humanizePercentage }} of its memory limit; it will be OOM-killed at 100 %.",
        ),
        alert(
            "AlloraHighCPU",
            f"max by (namespace, pod) (rate(container_cpu_usage_seconds_total{{{pod}}}[5m]))"
            f" / max by (namespace, pod) (kube_pod_container_resource_limits{{{pod},resource=\"cpu\"}}) > {ratio}",
            "15m",
            "warning",
            f"{inst}: CPU above {ratio:.0%} of its limit",
            "The container uses {{ $value | humanizePercentage }} of its CPU limit and is being throttled.",
        ),
        alert(
            "AlloraRestarts",
            f"sum by (namespace) (increase(kube_pod_container_status_restarts_total{{{pod}}}[1h])) >= {RESTARTS_PER_HOUR}",
            "0m",
            "warning",
            f"{inst}: the container restarted {RESTARTS_PER_HOUR} or more times within an hour",
            "{{ $value | humanize }} restarts in the last hour (crash, OOM kill or failed liveness probe).",
        ),
        alert(
            "AlloraHeartbeatStale",
            f"time() - max by (namespace, allora_deployment) (allora_heartbeat_timestamp_seconds{{{rt}}}) > {spec.heartbeat_max_age}",
            "2m",
            "critical",
            f"{inst}: the runtime's heartbeat is older than {spec.heartbeat_max_age} s",
            "The event loop is stuck; the liveness probe will restart the container.",
        ),
        alert(
            "AlloraLowWalletBalance",
            f"min by (namespace, allora_deployment) (allora_wallet_balance_uallo{{{rt}}}) < {threshold}",
            "10m",
            "warning",
            f"{inst}: wallet balance below {threshold} uallo",
            "The wallet holds {{ $value }} uallo; submissions fail once it cannot pay the fees. Top it up.",
        ),
        *chain_alerts(spec, alert),
    )


def chain_alerts(spec, alert) -> tuple[Alert, ...]:
    """What the chain says (the platform's reader, allora_gitops/chain): eligibility, score, missed windows."""
    from allora_gitops.chain.metrics import GAUGES

    inst, topic = spec.instance, spec.topic_id
    sel = chain_selector(inst)
    by = "max by (allora_deployment)"
    registered, whitelisted, active, score, lowest, missed = (
        "allora_chain_registered", "allora_chain_whitelisted", "allora_chain_topic_active", "allora_chain_score_ema",
        "allora_chain_topic_lowest_score", "allora_chain_missed_windows",
    )  # fmt: skip
    assert {registered, whitelisted, active, score, lowest, missed} <= GAUGES.keys()  # the names the server exports
    return (
        alert(  # the standing series vanish while reads fail (chain/metrics.py): without this the alerts above go quiet
            "AlloraChainReadFailing", f"{by} (allora_chain_up{{{sel}}}) == 0", "15m", "warning",
            f"{inst}: the platform cannot read the chain for this deployment",
            "The platform's chain reader has not read this worker's standing for 15 minutes; the other AlloraChain alerts "
            "are blind meanwhile. `allora-gitops chain status` says why (endpoint down, another network, a bad answer).",
        ),
        alert(
            "AlloraChainNotRegistered", f"{by} ({registered}{{{sel}}}) == 0", "15m", "critical",
            f"{inst}: the worker is not registered on topic {topic}",
            "The chain does not list the worker as registered on the topic; the runtime registers it when it starts. Its payloads are refused.",
        ),
        alert(
            "AlloraChainNotWhitelisted", f"{by} ({whitelisted}{{{sel}}}) == 0", "5m", "critical",
            f"{inst}: the worker is not whitelisted on topic {topic}",
            "can_submit_worker_payload is false: the chain refuses the worker's payloads. Ask the topic's creator to whitelist the address.",
        ),
        alert(
            "AlloraChainTopicInactive", f"{by} ({active}{{{sel}}}) == 0", "15m", "warning",
            f"{inst}: topic {topic} is inactive",
            "The topic opens no worker windows while inactive (too little stake or fees); the worker submits nothing.",
        ),
        alert(
            "AlloraChainScoreBelowLowest", f"{by} ({score}{{{sel}}}) < {by} ({lowest}{{{sel}}})", CHAIN_SCORE_FOR, "warning",
            f"{inst}: score EMA below the topic's lowest active inferer score",
            "The worker's score EMA ({{ $value }}) is under the topic's lowest active score: it is at risk of being dropped from the active set.",
        ),
        alert(
            "AlloraChainMissedWindows", f"{by} ({missed}{{{sel}}}) - {by} ({missed}{{{sel}}} offset 1h) > {MISSED_WINDOWS_PER_HOUR}",
            "0m", "warning",
            f"{inst}: more than {MISSED_WINDOWS_PER_HOUR} windows missed within an hour",
            "{{ $value }} more windows of the topic closed without a successful submission recorded in the last hour.",
        ),
    )


def monitoring_context(spec, for_overrides: Optional[Mapping[str, str]] = None) -> MonitoringContext:
    """The template context; ``for_overrides`` (alert name → duration) shortens ``for:`` in tests."""
    table = alerts(spec)
    if for_overrides:
        table = tuple(replace(a, for_=for_overrides.get(a.name, a.for_)) for a in table)
    return MonitoringContext(alerts=table, labels=alert_labels(spec))


def render_rule_file(spec, for_overrides: Optional[Mapping[str, str]] = None) -> str:
    """The PrometheusRule's ``spec`` as a plain Prometheus rule file (``groups:``), for promtool and tests."""
    from allora_gitops.render.environment import render_template
    from allora_gitops.render.context import template_context

    ctx = template_context(spec)
    ctx["monitoring"] = monitoring_context(spec, for_overrides)
    return rule_file_of(render_template("kustomize/overlay/prometheusrule.yaml.j2", **ctx))


def rule_file_of(prometheus_rule: str) -> str:
    """The ``spec`` of a PrometheusRule document, as the text of a Prometheus rule file."""
    import yaml

    doc = yaml.safe_load(prometheus_rule)
    return yaml.safe_dump(doc["spec"], sort_keys=False)

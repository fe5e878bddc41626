"""One shared Grafana dashboard for every deployment, built with grafana-foundation-sdk.

A ``deployment`` variable (values of ``allora_deployment`` in
``allora_model_info``) picks the deployment, so a thousand deployments are one
dashboard rather than a thousand. It ships in ``monitoring/`` of the GitOps
repository as a ConfigMap carrying the Grafana sidecar's label
(``grafana_dashboard: "1"``, kube-prometheus-stack's default), for the
monitoring namespace. Panels answer the guide's "Monitoring & Observability"
questions: success rate, latency p50/p95/p99, consecutive failures, failures by
reason, submissions, fees and gas, wallet balance, CPU and memory against the
limits, restarts.
"""

from __future__ import annotations

import json
from functools import lru_cache

from allora_gitops import constants as C

DASHBOARD_UID = "allora-models"
DASHBOARD_FILE = "allora-models.json"
GRAFANA_DASHBOARD_LABEL = "grafana_dashboard"  # the kube-prometheus-stack Grafana sidecar's default label
CONFIGMAP_NAME = "allora-models-dashboard"
RT = 'allora_deployment="$deployment"'
POD = 'namespace="$namespace",pod=~"$deployment-[a-z0-9]+-[a-z0-9]+",container="model"'


@lru_cache(maxsize=1)
def dashboard_model() -> dict:
    """The dashboard as a Grafana JSON model (a dict; built once per process)."""
    from grafana_foundation_sdk.builders import common, dashboard as db
    from grafana_foundation_sdk.builders import prometheus, stat, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

    ds = DataSourceRef(type_val="prometheus", uid="${datasource}")

    def query(expr: str, legend: str = "", ref: str = "A"):
        return prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref)

    def series(title: str, unit: str, *targets, width: int = 12, description: str = ""):
        panel = timeseries.Panel().title(title).unit(unit).datasource(ds).height(8).span(width).description(description)
        for t in targets:
            panel = panel.with_target(t)
        return panel

    def last(title: str, unit: str, expr: str, description: str = ""):
        return (
            stat.Panel().title(title).unit(unit).datasource(ds).height(8).span(6).description(description)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .with_target(query(expr))
        )  # fmt: skip

    def against_limit(resource: str, unit: str, used: str, legend: str):
        limit = f'max(kube_pod_container_resource_limits{{{POD},resource="{resource.lower()}"}})'
        return series(f"{resource} against the limit", unit, query(used, legend, "A"), query(limit, "limit", "B"), width=8)

    rate = "[$__rate_interval]"
    builder = (
        db.Dashboard("Allora models")
        .uid(DASHBOARD_UID)
        .tags(["allora"])
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            db.QueryVariable("deployment")
            .label("Deployment")
            .datasource(ds)
            .query("label_values(allora_model_info, allora_deployment)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        .with_variable(
            db.QueryVariable("namespace")
            .label("Namespace")
            .datasource(ds)
            .query(f"label_values(allora_model_info{{{RT}}}, namespace)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        .with_row(db.Row("Predictions").id(101))
        .with_panel(
            last(
                "Success rate",
                "percentunit",
                f"sum(rate(allora_predictions_total{{{RT}}}{rate})) / (sum(rate(allora_predictions_total{{{RT}}}{rate}))"
                f" + sum(rate(allora_prediction_failures_total{{{RT}}}{rate})))",
            )
        )
        .with_panel(
            last("Consecutive failures", "none", f"max(allora_consecutive_failures{{{RT}}})", "AlloraConsecutiveFailures fires above 3")
        )
        .with_panel(
            series(
                "Latency p50 / p95 / p99",
                "s",
                *(
                    query(
                        f"histogram_quantile({q}, sum by (le) (rate(allora_prediction_latency_seconds_bucket{{{RT}}}{rate})))",
                        f"p{int(q * 100)}",
                        ref,
                    )
                    for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
                ),
            )
        )
        .with_panel(
            series(
                "Predictions and failures by reason",
                "reqps",
                query(f"sum(rate(allora_predictions_total{{{RT}}}{rate}))", "valid", "A"),
                query(f"sum by (reason) (rate(allora_prediction_failures_total{{{RT}}}{rate}))", "{{reason}}", "B"),
            )
        )
        .with_panel(
            series(
                "Submissions by result",
                "short",
                query(f"sum by (result, error_type) (increase(allora_submissions_total{{{RT}}}{rate}))", "{{result}} {{error_type}}"),
            )
        )
        .with_row(db.Row("Chain").id(102))
        .with_panel(
            series(
                "Fees paid and gas used (per hour)",
                "short",
                query(f"sum(increase(allora_fees_paid_uallo_total{{{RT}}}[1h]))", "fees (uallo)", "A"),
                query(f"sum(increase(allora_gas_used_total{{{RT}}}[1h]))", "gas", "B"),
            )
        )
        .with_panel(series("Wallet balance", "short", query(f"min(allora_wallet_balance_uallo{{{RT}}})", "uallo")))
        .with_row(db.Row("Container").id(103))
        .with_panel(against_limit("CPU", "short", f"sum(rate(container_cpu_usage_seconds_total{{{POD}}}[5m]))", "used (cores)"))
        .with_panel(against_limit("Memory", "bytes", f"max(container_memory_working_set_bytes{{{POD}}})", "working set"))
        .with_panel(
            series(
                "Restarts (per hour)",
                "short",
                query(f"sum(increase(kube_pod_container_status_restarts_total{{{POD}}}[1h]))", "restarts"),
                width=8,
            )
        )
    )
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def render_dashboard(namespace: str = C.MONITORING_NAMESPACE) -> dict[str, str]:
    """``monitoring/``: the dashboard ConfigMap and a kustomization placing it in ``namespace``."""
    from allora_gitops.render.environment import render_template

    ctx = {
        "C": C,
        "namespace": namespace,
        "configmap": CONFIGMAP_NAME,
        "label": GRAFANA_DASHBOARD_LABEL,
        "file": DASHBOARD_FILE,
        "dashboard_json": json.dumps(dashboard_model(), indent=2, sort_keys=True, ensure_ascii=False),
    }
    return {
        f"{C.MONITORING_DIR}/kustomization.yaml": render_template("monitoring/kustomization.yaml.j2", **ctx),
        f"{C.MONITORING_DIR}/grafana-dashboard.yaml": render_template("monitoring/grafana-dashboard.yaml.j2", **ctx),
    }

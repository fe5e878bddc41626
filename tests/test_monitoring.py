"""Monitoring objects in the rendered tree: switchable, strictly valid against the CRDs, every rule through promtool."""

from __future__ import annotations

import yaml

OVERLAY = "deployments/linear-forecaster/overlays/testnet"


def test_monitoring_is_on_by_default_and_off_with_no_monitoring(make_spec, cli, tmp_path):
    from allora_gitops.render import render_deployment

    on = render_deployment(make_spec("testnet"))
    off = render_deployment(make_spec("testnet", monitoring=False))
    assert set(on) - set(off) == {f"{OVERLAY}/podmonitor.yaml", f"{OVERLAY}/prometheusrule.yaml"}
    assert "podmonitor.yaml" not in off[f"{OVERLAY}/kustomization.yaml"]
    assert yaml.safe_load(on[f"{OVERLAY}/kustomization.yaml"])["resources"][-2:] == ["podmonitor.yaml", "prometheusrule.yaml"]

    from tests.conftest import EXAMPLES

    result = cli("gitops", "render", EXAMPLES / "linear-forecaster", "--network", "testnet", "--no-monitoring", "-o", tmp_path)
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / OVERLAY).iterdir()) == ["deployment-patch.yaml", "kustomization.yaml"]


def test_the_scrape_target_and_rules_select_only_their_own_deployment(example_repo):
    from allora_gitops.verify.kustomize import build_overlay

    objects = {o["kind"]: o for o in build_overlay(example_repo / OVERLAY).objects}
    pm, rule, deployment = objects["PodMonitor"], objects["PrometheusRule"], objects["Deployment"]
    assert pm["metadata"]["name"] == rule["metadata"]["name"] == "linear-forecaster-testnet"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = pm["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "linear-forecaster", "app.kubernetes.io/instance": "linear-forecaster-testnet"}
    assert all(pod_labels[k] == v for k, v in selector.items())
    port = pm["spec"]["podMetricsEndpoints"][0]["port"]
    assert [p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]] == [port]
    # The relabelled source labels exist on the pod (Prometheus turns '.', '/' and '-' into '_').
    sources = {r["sourceLabels"][0] for r in pm["spec"]["podMetricsEndpoints"][0]["relabelings"]}
    assert sources == {"__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in k) for k in pod_labels} & sources
    assert len(sources) == 3
    for r in rule["spec"]["groups"][0]["rules"]:
        assert r["labels"]["allora_deployment"] == "linear-forecaster-testnet", r["alert"]
        assert "linear-forecaster-testnet" in r["expr"] and "mainnet" not in r["expr"], r["alert"]


def test_verify_finds_a_broken_rule_expression_and_a_misspelt_podmonitor_field(example_repo):
    from allora_gitops.verify import verify_repo

    rules = example_repo / OVERLAY / "prometheusrule.yaml"
    doc = yaml.safe_load(rules.read_text())
    doc["spec"]["groups"][0]["rules"][1]["expr"] = "rate(allora_predictions_total[5m] > 1"
    rules.write_text(yaml.safe_dump(doc))
    monitor = example_repo / OVERLAY / "podmonitor.yaml"
    doc = yaml.safe_load(monitor.read_text())
    doc["spec"]["podMetricsEndpoint"] = doc["spec"].pop("podMetricsEndpoints")
    monitor.write_text(yaml.safe_dump(doc))

    report = verify_repo(example_repo)
    mine = sorted((p.code, p.message) for p in report.findings if p.file == OVERLAY)
    assert mine == [
        (
            "promtool",
            'PrometheusRule/linear-forecaster-testnet: promtool: group "allora.linear-forecaster-testnet", rule 2,'
            ' "AlloraCrashLooping": could not parse expression: 1:38: parse error: unclosed left parenthesis',
        ),
        ("schema", "PodMonitor/linear-forecaster-testnet: schema: spec: Additional properties are not allowed ('podMetricsEndpoint' was unexpected)"),
    ]
    # the other network's overlay stays clean
    assert not [p for p in report.findings if p.file != OVERLAY]


def test_the_shared_dashboard_matches_its_snapshot_and_every_query_parses(snapshot, tmp_path):
    """One dashboard for all deployments; each panel's PromQL (variables filled in) passes promtool."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    from allora_gitops.render.dashboard import render_dashboard

    tree = render_dashboard()
    snapshot.snapshot_dir = Path(__file__).parent / "snapshots" / "test_monitoring"
    snapshot.assert_match_dir({"monitoring": {Path(p).name: t for p, t in tree.items()}}, "dashboard")
    cm = yaml.safe_load(tree["monitoring/grafana-dashboard.yaml"])
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    model = json.loads(cm["data"]["allora-models.json"])
    assert [v["name"] for v in model["templating"]["list"]] == ["datasource", "deployment", "namespace"]
    titles = [p["title"] for p in model["panels"] if p["type"] != "row"]
    assert titles == [
        "Success rate", "Consecutive failures", "Latency p50 / p95 / p99", "Predictions and failures by reason",
        "Submissions by result", "Fees paid and gas used (per hour)", "Wallet balance", "CPU against the limit",
        "Memory against the limit", "Restarts (per hour)",
    ]  # fmt: skip
    exprs = [t["expr"] for p in model["panels"] for t in p.get("targets") or []]
    filled = [
        e.replace("$__rate_interval", "2m").replace("$deployment", "linear-forecaster-testnet").replace("$namespace", "allora-models")
        for e in exprs
    ]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(filled)]}]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    proc = subprocess.run([shutil.which("promtool"), "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_verify_checks_the_dashboard_configmap(example_repo):
    from allora_gitops.render import write_tree
    from allora_gitops.render.dashboard import render_dashboard
    from allora_gitops.verify import verify_repo

    write_tree(render_dashboard(), example_repo)
    report = verify_repo(example_repo)
    assert "monitoring/grafana-dashboard.yaml" in report.files and report.findings == []
    path = example_repo / "monitoring/grafana-dashboard.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["lables"] = doc["metadata"].pop("labels")
    path.write_text(yaml.safe_dump(doc))
    assert [(p.file, p.code) for p in verify_repo(example_repo).findings] == [("monitoring/grafana-dashboard.yaml", "schema")]


def test_repo_init_ships_the_dashboard_and_an_alertmanager_route_amtool_accepts(tmp_path):
    import shutil
    import subprocess

    from allora_gitops.gitops.scaffold import render_repo
    from allora_gitops.gitops.settings import RepositorySettings

    tree = render_repo(RepositorySettings(repo_url="https://git.example.com/platform/models.git"))
    assert {"monitoring/kustomization.yaml", "monitoring/grafana-dashboard.yaml", "monitoring/alertmanager/alertmanager.yml"} <= set(tree)
    config = tmp_path / "alertmanager.yml"
    config.write_text(tree["monitoring/alertmanager/alertmanager.yml"])
    amtool = shutil.which("amtool")
    assert amtool, "amtool is needed (Debian package prometheus-alertmanager; bash .ci/setup installs it)"
    proc = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout

    def receiver(*labels: str) -> str:
        out = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}", *labels], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    dep = "allora_deployment=linear-forecaster-testnet"
    assert receiver("alertname=AlloraModelDown", "severity=critical", dep) == "allora-critical"
    assert receiver("alertname=AlloraConsecutiveFailures", "severity=warning", dep) == "allora-warning"
    assert receiver("alertname=KubeNodeNotReady", "severity=critical") == "default"
    # kustomize builds monitoring/ into the monitoring namespace
    from allora_gitops.render import write_tree

    write_tree(tree, tmp_path / "repo")
    built = subprocess.run(["kubectl", "kustomize", str(tmp_path / "repo/monitoring")], capture_output=True, text=True, check=True)
    cm = yaml.safe_load(built.stdout)
    assert (cm["kind"], cm["metadata"]["namespace"]) == ("ConfigMap", "monitoring")

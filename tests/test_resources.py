"""A deployment's resources (CPU, memory against limits, restarts) read from a real Prometheus scraping a
running runtime: on the deployment page, in ``GET /api/deployments/{id}`` and in ``status NAME``; "metrics
not configured" without a URL; one line, never a 500, when Prometheus is down or does not answer."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess

import httpx
import pytest
import yaml

from allora_gitops.api.auth import Accounts
from allora_gitops.prometheus import check_prometheus_url, instant_query, read_resources, resource_queries, series_query
from tests.fixtures.platform import start_platform, stop_platform
from tests.fixtures.prometheus import Prometheus
from tests.fixtures.runtime import RunningBootstrap, bootstrap_env, free_port, make_bundle
from tests.test_podidentity import create_two_deployments
from tests.test_web import sign_in

NS = "allora-models"
INSTANCE = "linear-forecaster-testnet"
OVERLAY = "deployments/linear-forecaster/overlays/testnet"


def test_the_prometheus_url_is_checked_and_its_credentials_never_printed(cli):
    assert check_prometheus_url("http://prometheus.monitoring.svc:9090/") == "http://prometheus.monitoring.svc:9090"
    assert check_prometheus_url("https://user:s3cret@prom.example.com/prefix") == "https://user:s3cret@prom.example.com/prefix"
    for bad in ("ftp://user:s3cret@prom.example.com", "https://user:s3cret@prom.example.com/?x=1", "prom:9090", "http://:s3cret@:99999"):
        r = cli("gitops", "status", "linear-forecaster", "--prometheus-url", bad)
        assert r.code == 2, (bad, r.out, r.err)
        assert r.err.startswith("error: the Prometheus URL must be http(s)://host[:port][/path] without a query"), r.err
        assert "s3cret" not in r.err + r.out and "Traceback" not in r.err
    r = cli("gitops", "serve", "--repo", "/nonexistent", "--prometheus-url", "ftp://user:s3cret@prom.example.com")
    assert r.code == 2 and "s3cret" not in r.err and "the Prometheus URL must be" in r.err


def test_every_query_parses_under_promtool(tmp_path):
    queries = resource_queries(NS, INSTANCE)
    exprs = [instant_query(queries), series_query(queries), *queries.values()]
    rules = {"groups": [{"name": "resources", "rules": [{"record": f"resources:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    proc = subprocess.run([shutil.which("promtool"), "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


POD = f'namespace="{NS}",pod="{INSTANCE}-5d9c7b6f4-x7k2p",container="model"'
RUNTIME = f'namespace="{NS}",allora_deployment="{INSTANCE}",pod="{INSTANCE}-5d9c7b6f4-x7k2p"'
PROCESS_SERIES = [
    (f"process_cpu_seconds_total{{{RUNTIME}}}", "0+6x30"),  # 0.1 core
    (f"process_resident_memory_bytes{{{RUNTIME}}}", "52428800x30"),
    (f"process_start_time_seconds{{{RUNTIME}}}", "100x15 200x15"),  # one restart
]
CLUSTER_SERIES = [
    (f"container_cpu_usage_seconds_total{{{POD}}}", "0+15x30"),  # 0.25 core
    (f"container_memory_working_set_bytes{{{POD}}}", "104857600x30"),
    (f"kube_pod_container_status_restarts_total{{{POD}}}", "0x10 1x10 2x10"),
    (f'kube_pod_container_resource_limits{{{POD},resource="cpu",unit="core"}}', "0.5x30"),
    (f'kube_pod_container_resource_limits{{{POD},resource="memory",unit="byte"}}', "536870912x30"),
    # the same deployment on mainnet is not this one
    (f'container_memory_working_set_bytes{{namespace="{NS}",pod="linear-forecaster-mainnet-5d9c7b6f4-x7k2p",container="model"}}', "999x30"),
]


@pytest.mark.parametrize(
    "series, expected",
    [
        (CLUSTER_SERIES + PROCESS_SERIES, [  # cAdvisor and kube-state-metrics win over the runtime's own series
            ('{allora_query="cpu", source="cadvisor"}', 0.25), ('{allora_query="memory", source="cadvisor"}', 104857600),
            ('{allora_query="restarts", source="kube-state-metrics"}', 2),
            ('{allora_query="cpu_limit"}', 0.5), ('{allora_query="memory_limit"}', 536870912),
        ]),
        (PROCESS_SERIES, [  # no cluster sources (the e2e test's case): the runtime's series, no limits
            ('{allora_query="cpu", source="process"}', 0.1), ('{allora_query="memory", source="process"}', 52428800),
            ('{allora_query="restarts", source="process"}', 1),
        ]),
    ],
    ids=["cluster", "runtime-only"],
)  # fmt: skip
def test_the_query_prefers_cadvisor_and_kube_state_metrics_under_promtool(tmp_path, series, expected):
    """The real PromQL engine (``promtool test rules``) evaluates the one instant query over series shaped
    like kube-prometheus-stack's and the PodMonitor's."""
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in series],
            "promql_expr_test": [{"expr": instant_query(resource_queries(NS, INSTANCE)), "eval_time": "30m",
                                  "exp_samples": [{"labels": labels, "value": value} for labels, value in expected]}],
        }],
    }  # fmt: skip
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run([shutil.which("promtool"), "test", "rules", str(tmp_path / "test.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_a_closed_port_and_a_silent_server_are_one_line_each():
    port = free_port()  # nothing listens there
    down = read_resources(f"http://user:s3cret@127.0.0.1:{port}", NS, INSTANCE)
    assert down.configured and not down.has_values
    assert down.error.startswith(f"Prometheus at http://user:***@127.0.0.1:{port} is unreachable: "), down.error
    assert "\n" not in down.error and "s3cret" not in str(down.to_dict())
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        slow = read_resources(url, NS, INSTANCE, timeout=0.5)
    assert slow.error == f"Prometheus at {url} did not answer within 0.5 s"
    assert read_resources(None, NS, INSTANCE).to_dict()["configured"] is False


def merged(records, d):
    """``d`` reviewed and merged: its pods run (a pending deployment is not looked up)."""
    records.set_deployment_status(d.id, "committed", commit_sha="c" * 40)
    return records.set_deployment_status(d.id, "merged")


@pytest.fixture
def observed(tmp_path, database_url, records, gitops_remote, make_spec):
    """linear-forecaster on testnet: its record, its rendered overlay on main of a real bare repository, its
    runtime (dry run) serving /metrics, and a real Prometheus scraping it with the PodMonitor's labels."""
    from allora_gitops.gitops.repo import TreeChange, parse_remote, persist
    from allora_gitops.render import render_deployment

    tree = render_deployment(make_spec("testnet"))
    persist(parse_remote(gitops_remote), TreeChange(files=tree), branch="main", message="linear-forecaster on testnet\n")
    a, b = create_two_deployments(records)
    a = merged(records, a)
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return sum(i * i for i in range(20000)) * 1e-12\n")
    port = free_port()
    labels = {"namespace": NS, "allora_deployment": INSTANCE, "allora_model": "linear-forecaster", "allora_network": "testnet"}
    (tmp_path / "prom").mkdir()
    prom = Prometheus(tmp_path / "prom", f"127.0.0.1:{port}", labels)
    env = bootstrap_env(ALLORA_METRICS_PORT=str(port), ALLORA_METRICS_ADDRESS="127.0.0.1", ALLORA_BUNDLE_SHA256="ab" * 32)
    runtimes = [RunningBootstrap(bundle, "--dry-run", "--start-nonce", "1", "--interval", "0.05", env=env)]

    def restart() -> None:
        """The container restarts: a new process behind the same scrape target."""
        runtimes[-1].stop(signal.SIGTERM)
        runtimes.append(RunningBootstrap(bundle, "--dry-run", "--start-nonce", "1", "--interval", "0.05", env=env))

    try:
        # rate() needs two scrapes of the process counters
        prom.wait("two scrapes", lambda: prom.value(f'count_over_time(process_cpu_seconds_total{{allora_deployment="{INSTANCE}"}}[1m]) >= 2'))
        yield prom, a, restart
    finally:
        for runtime in runtimes:
            runtime.kill()
        prom.stop()


def page_and_api(tmp_path, database_url, records, repo, d, env: dict[str, str]) -> tuple[httpx.Response, httpx.Response]:
    """alice (owner of ``d``) opens its page and ``GET /api/deployments/{id}`` on a server started with ``env``."""
    server = start_platform(
        tmp_path, database_url=database_url, repo=repo, store_url=(tmp_path / "store").as_uri(),
        env={"ALLORA_GITOPS_HOME": str(tmp_path / "state"), **env},
    )  # fmt: skip
    try:
        alice = server.token("alice")
        accounts = Accounts(records.connection)
        accounts.claim_name(accounts.authenticate(alice), d.name)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            sign_in(client, alice)
            return client.get(f"/deployments/{d.id}"), client.get(f"/api/deployments/{d.id}", headers=server.headers(alice))
    finally:
        stop_platform(server)


@pytest.mark.slow  # ~15 s: Prometheus and the runtime start, two scrapes
def test_the_page_the_api_and_status_show_cpu_and_memory_from_a_real_prometheus(observed, tmp_path, database_url, records, gitops_remote, make_spec, cli):
    from allora_gitops.render.spec import quantity_value

    prom, a, restart = observed
    prom_url = f"http://127.0.0.1:{prom.port}"
    spec = make_spec("testnet")
    cpu_limit, memory_limit = quantity_value(spec.cpu_limit), quantity_value(spec.memory)
    page, api = page_and_api(tmp_path, database_url, records, gitops_remote, a, {"ALLORA_PROMETHEUS_URL": prom_url})
    assert page.status_code == 200, page.text
    (tmp_path / "resources-page.html").write_text(page.text)  # an artefact to look at
    table = re.search(r'<table id="resources">.*?</table>', page.text, re.S).group(0)
    memory = re.search(r'<th scope="row">Memory</th><td class="num">([0-9.]+) MiB</td>\s*<td class="num">([0-9]+) MiB</td>', table)
    assert memory, table
    assert 5 < float(memory.group(1)) < 1024 and int(memory.group(2)) == memory_limit / 2**20  # a Python process's RSS, the overlay's limit
    cpu = re.search(r'<th scope="row">CPU</th><td class="num">([0-9.e-]+) cores</td>\s*<td class="num">([0-9.]+) cores</td>', table)
    assert cpu and float(cpu.group(2)) == cpu_limit, table
    assert "<td>process</td>" in table  # no cAdvisor here: the runtime's own process_* series
    assert "Limits from the overlay on the base branch of the GitOps repository" in page.text and "Metrics are not configured" not in page.text
    assert len(re.findall(r'class="memory-point"', page.text)) >= 1 and len(re.findall(r'class="cpu-point"', page.text)) >= 1
    assert 'id="resources-error"' not in page.text

    assert api.status_code == 200
    res = api.json()["resources"]
    assert res["configured"] is True and res["error"] is None and res["source"] == "process"
    assert res["memory_limit_bytes"] == memory_limit and res["limits_source"] == "repository"
    assert 0 < res["memory_ratio"] < 1 and res["restarts"] == 0 and res["memory_series"]

    status = cli("gitops", "status", "linear-forecaster", "--repo", str(gitops_remote), "--database-url", database_url,
                 "--prometheus-url", prom_url, "--json")  # fmt: skip
    assert status.code == 0, status.err
    rows = [r for r in json.loads(status.out) if r["network"] == "testnet"]
    assert rows[0]["resources"]["memory_limit_bytes"] == memory_limit and rows[0]["resources"]["memory_bytes"] > 0
    text = cli("gitops", "status", "linear-forecaster", "--repo", str(gitops_remote), "--database-url", database_url, "--prometheus-url", prom_url)
    line = next(x for x in text.out.splitlines() if x.startswith("  resources: "))
    assert re.fullmatch(rf"  resources: cpu [0-9.e-]+ of {cpu_limit:g} cores \([0-9.]+%\), memory [0-9.]+ MiB of {memory_limit / 2**20:.1f} MiB"
                        r" \([0-9.]+%\), 0 restarts in 24h", line), line  # fmt: skip

    # a short window at one point a second: a real series, not one point
    series = read_resources(prom_url, NS, INSTANCE, series_seconds=20, step_seconds=1)
    assert len(series.memory_series) >= 2 and all(v > 0 for _, v in series.memory_series)

    restart()  # a new start time on the same target is a restart
    again = prom.wait("the restart seen", lambda: (r := read_resources(prom_url, NS, INSTANCE)).restarts and r)
    assert (again.restarts, again.restarts_source, again.error) == (1, "process", None)


def test_without_a_url_the_page_says_metrics_are_not_configured_and_a_closed_port_is_one_line(tmp_path, database_url, records):
    a, b = create_two_deployments(records)
    closed = free_port()
    for env, expected, pending in (
        ({"ALLORA_PROMETHEUS_URL": f"http://127.0.0.1:{closed}"}, "Resources are not read: the deployment is pending, so no pod runs it.", True),
        ({}, "Metrics are not configured: this server has no Prometheus URL", False),
        ({"ALLORA_PROMETHEUS_URL": f"http://127.0.0.1:{closed}"}, f'<p class="error" id="resources-error">Prometheus at http://127.0.0.1:{closed} is unreachable: ', False),
    ):  # fmt: skip
        if not pending and records.get_deployment(a.id).status == "pending":
            merged(records, a)
        page, response = page_and_api(tmp_path, database_url, records, tmp_path / "unused-repo", a, env)
        api = response.json()
        assert page.status_code == 200 and expected in page.text, page.text
        assert '<table id="recent">' in page.text  # the rest of the page is there
        assert api["resources"]["configured"] is bool(env) and (api["resources"]["not_read"] is not None) is pending


def test_the_overlays_limits_are_read_from_git_once_a_minute_not_per_view(tmp_path, gitops_remote, make_spec):
    # without kube-state-metrics every page view wants the limits: the second view must not fetch again
    import shutil

    from allora_gitops.gitops.repo import TreeChange, parse_remote, persist
    from allora_gitops.prometheus import LIMITS_TTL_SECONDS, _limits_cache, repository_limits
    from allora_gitops.render import render_deployment
    from allora_gitops.render.spec import quantity_value

    spec = make_spec("testnet")
    persist(parse_remote(gitops_remote), TreeChange(files=render_deployment(spec)), branch="main", message="linear-forecaster on testnet\n")
    repo = str(gitops_remote)
    first = repository_limits(repo, "main", "linear-forecaster", "testnet")
    assert first is not None and first.memory_bytes and first.memory_bytes >= quantity_value("64Mi")
    shutil.rmtree(gitops_remote)  # the Git server is gone: only a cached answer can come back
    assert repository_limits(repo, "main", "linear-forecaster", "testnet") == first
    assert LIMITS_TTL_SECONDS <= 60
    cache, _lock = _limits_cache()
    cache.clear()  # as when the minute has passed
    from allora_gitops.errors import AlloraGitopsError

    with pytest.raises(AlloraGitopsError):  # asked again: git is read, and it is gone
        repository_limits(repo, "main", "linear-forecaster", "testnet")
